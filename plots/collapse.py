"""The collapse maps: the softmax-collapse fraction and the normalized margin at the cells' end
over (w, N), seeds averaged, with the test-error thumb contours drawn over them: where on the
sphere ‖θ‖ = w do models collapse (Prieto et al. 2025), and how large is their margin there."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from landscape.read.analysis import FIGURE_METRICS, average_seeds, levels_of, metric_of, validate_level
from landscape.read.progress import map_measures
from plots.style import (W_LABEL, add_alpha_axis, add_legend, axis_label, mark_alpha_one, mark_missing_cells,
                         new_figure, sampled_log_edges, set_title, styled, ticks_at_samples)
from plots.thumb import CONTOUR_COLOR, thumb_contours

#: Title and colour map of each map measure: a fraction on a fixed 0..1 scale, a margin on its own.
_MAPS = {"softmax_collapse": ("softmax-collapse fraction (p_y = 1 in the training dtype)", "Purples"),
         "normalized_margin": (r"normalized margin (min margin / $\|\theta\|^L$)", "viridis")}


def available(cube: xr.Dataset) -> bool:
    return bool(map_measures(cube))


@styled
def collapse_figure(cube: xr.Dataset, levels: Sequence[float] | None = None) -> Figure:
    """One map per measure the cube has, seeds averaged, pending cells hatched, diverged crossed."""
    metric = metric_of(cube)
    levels = levels_of(cube) if levels is None else levels
    test = f"test_{metric}"
    for level in levels:
        validate_level(test, level)
    axis = cube.attrs["axis"]
    names = map_measures(cube)
    maps = average_seeds(cube, names)
    w, n = cube["w"].values, cube[axis].values.astype(float)
    w_edges, n_edges = sampled_log_edges(w), sampled_log_edges(n)
    status = maps["status"].transpose(axis, "w").values
    z_test = maps[test].transpose(axis, "w").values
    fig, axes = new_figure(len(names), panel_width=5.2)
    missing: list = []
    for name, ax in zip(names, axes):
        z = maps[name].where(maps["status"] == 1).transpose(axis, "w").values
        title, cmap = _MAPS[name]
        finite = z[np.isfinite(z)]
        norm = Normalize(0, 1) if name == "softmax_collapse" or not finite.size else Normalize(finite.min(), finite.max())
        mesh = ax.pcolormesh(w_edges, n_edges, np.ma.masked_invalid(z), cmap=cmap, norm=norm)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(w_edges[0], w_edges[-1])
        ax.set_ylim(n_edges[0], n_edges[-1])
        ticks_at_samples(ax.yaxis, n)
        thumb_contours(ax, w, n, z_test, levels, test)
        missing = mark_missing_cells(ax, w_edges, n_edges, status)
        alpha_one = mark_alpha_one(ax, cube.attrs["w0"])
        ax.grid(False)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel(W_LABEL)
        ax.set_ylabel(axis_label(cube))
        add_alpha_axis(ax, cube.attrs["w0"])
        fig.colorbar(mesh, ax=ax, shrink=0.9)
    contour = Line2D([], [], color=CONTOUR_COLOR, ls="--", lw=1.4, label=f"test {FIGURE_METRICS[metric]} contours (the thumb)")
    add_legend(fig, [contour, *missing, alpha_one], ncols=4)
    set_title(fig, cube, "softmax collapse and margin at the end (seeds averaged)")
    return fig
