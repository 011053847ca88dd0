"""The Goldilocks figure: the band of w that generalizes, and w_c, against the task's axis.

It is the thumb turned on its side: each band is a horizontal slice of a test-error (or, for a
loss cube, test-loss) contour, so the zone visibly widens with data while w_c stays near α ≈ 1.
"""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from landscape.read.analysis import (INSIDE, average_seeds, critical_data_size, critical_norm, goldilocks_zone, levels_of,
                                metric_of, seed_summary)
from plots.style import (W_LABEL, add_alpha_axis, add_legend, axis_label, collapse_status, log_edges, mark_alpha_one,
                         mark_missing_points, missing_point_handles, new_figure, set_title, styled, ticks_at_samples)


@styled
def goldilocks_figure(cube: xr.Dataset, levels: Sequence[float] | None = None) -> Figure:
    """Nested Goldilocks bands test_<metric> <= level (seed-averaged, as on the thumb), w_c and the thumb tips.

    The metric and the default levels are the cube's (:func:`metric_of`, :func:`levels_of`). w_c
    is the test-loss argmin, averaged over seeds with the standard deviation as error bars when
    there are several.
    """
    axis, metric = cube.attrs["axis"], metric_of(cube)
    levels = levels_of(cube) if levels is None else levels
    n = cube[axis].values.astype(float)
    maps = average_seeds(cube)
    tips = critical_data_size(maps, list(levels))
    fig, (ax,) = new_figure(1, panel_width=6.0)
    handles = []
    any_tip = grid_edge = False
    ordered = sorted(levels, reverse=True)  # widest band first, so narrower ones stay visible on top
    for level, colour in zip(ordered, mpl.colormaps["Blues"](np.linspace(0.25, 0.8, len(ordered)))):
        band = goldilocks_zone(maps, level)
        lo, hi = band["w_lo"].values, band["w_hi"].values
        for edge, at_grid_edge, open_side in ((lo, band["lo_at_grid_edge"].values, "v"),
                                              (hi, band["hi_at_grid_edge"].values, "^")):
            ax.plot(n[~at_grid_edge], edge[~at_grid_edge], ls="none", marker="_", ms=12, mew=2, color=colour)
            # An edge where the grid ends is not the zone's: a hollow arrow, pointing where it may go on.
            ax.plot(n[at_grid_edge], edge[at_grid_edge], ls="none", marker=open_side, ms=8, mew=1.5, mfc="white",
                    mec="black", zorder=4)
            grid_edge |= bool(at_grid_edge.any())
        tip = tips.sel(level=level)
        x = n
        if str(tip["position"].values) == INSIDE:
            # The band closes at the thumb tip, as the contour does on the thumb figure.
            tip_n, tip_w = float(tip[f"{axis}_c"]), float(tip["w_tip"])
            ax.plot(tip_n, tip_w, marker="*", ms=13, color=colour, mec="black", zorder=5)
            any_tip = True
            x, lo, hi = np.append(n, tip_n), np.append(lo, tip_w), np.append(hi, tip_w)
        order = np.argsort(x)
        ax.fill_between(x[order], lo[order], hi[order], color=colour, lw=0, alpha=0.8)
        handles.append(Patch(color=colour, label=f"test {metric} ≤ {level:g}"))
    norm = critical_norm(cube)
    handles.append(ax.errorbar(n, seed_summary(norm, "w_c").values, yerr=_spread(norm), color="black", marker="o",
                               ms=5, capsize=3, label=r"$w_c$ (argmin test loss)"))
    handles.append(mark_alpha_one(ax, cube.attrs["w0"], vertical=False))
    if any_tip:
        handles.append(Line2D([], [], ls="none", marker="*", ms=13, color="white", mec="black",
                              label=f"thumb tip ${axis}_c$"))
    if grid_edge:
        handles.append(Line2D([], [], ls="none", marker="^", ms=8, mew=1.5, mfc="white", mec="black",
                              label="(grid edge): the band reaches the grid's end"))
    handles += missing_point_handles(mark_missing_points(ax, n, collapse_status(cube["status"], keep=axis)))
    ax.set_xscale("log")
    ax.set_yscale("log")
    ticks_at_samples(ax.xaxis, n)
    ax.set_ylim(*log_edges(cube["w"].values)[[0, -1]])
    ax.set_xlabel(axis_label(cube))
    ax.set_ylabel(W_LABEL)
    add_alpha_axis(ax, cube.attrs["w0"], side="right")
    add_legend(fig, handles, ncols=4)
    set_title(fig, cube, "Goldilocks zone against data")
    return fig


def _spread(norm: xr.Dataset) -> np.ndarray | None:
    """Seed standard deviation of w_c where it is defined; no error bars for a single seed."""
    if "w_c_std" not in norm:
        return None
    std = norm["w_c_std"].values
    return np.where(np.isfinite(std), std, 0.0) if np.isfinite(std).any() else None
