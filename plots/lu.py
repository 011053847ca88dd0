"""The LU figure: reduced train and test curves against w for a few values of the task's axis.

Train loss is L-shaped and test loss U-shaped in w (paper Fig 2a for teacher-student, Fig 3c for
MNIST); the critical norm w_c and the Goldilocks band sit at the bottom of the U.
"""
from __future__ import annotations

from collections.abc import Sequence

import matplotlib as mpl
import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from landscape.read.analysis import average_seeds, critical_norm, done, goldilocks_zone, seed_summary
from landscape.errors import UserError
from plots.style import (PALETTE, W_LABEL, add_alpha_axis, add_legend, collapse_status, mark_alpha_one,
                         mark_missing_points, missing_point_handles, new_figure, set_title, styled)

_PANELS = (("loss", "reduced loss"), ("err", "error (1 − accuracy)"))
#: The Goldilocks bars' strip along the bottom of each panel: its base (above the pending/diverged
#: marks) and the height of one curve's row, in panel fractions.
_BAND_BASE, _BAND_ROW = 0.05, 0.045


def choose_values(cube: xr.Dataset, values: Sequence[float] | None = None) -> list:
    """The axis values to draw: the requested ones (each must be on the grid), else the smallest, middle and largest."""
    axis = cube.attrs["axis"]
    grid = np.sort(cube[axis].values)
    if values is None:
        return list(dict.fromkeys([grid[0], grid[len(grid) // 2], grid[-1]]))
    chosen = []
    for value in values:
        match = np.flatnonzero(np.isclose(grid, value))
        if match.size == 0:
            raise UserError(f"{axis}={value:g} is not on the cube's grid ({', '.join(f'{g:g}' for g in grid)})")
        chosen.append(grid[match[0]])
    return list(dict.fromkeys(chosen))


@styled
def lu_figure(cube: xr.Dataset, values: Sequence[float] | None = None, threshold: float | None = None) -> Figure:
    """Loss (log y, unless no loss is positive) and error panels against w (log x) for each chosen axis value.

    Curves are means over finished seeds, with the seed range shaded when there are several. w_c
    (dotted) is the test-loss argmin; the shaded band is the Goldilocks zone of the cube's metric
    (:func:`landscape.read.analysis.goldilocks_zone`): test_err <= 0.2 or test_loss <= 1.5 x its best by
    default, test_<metric> <= ``threshold`` when given.
    """
    axis = cube.attrs["axis"]
    chosen = choose_values(cube, values)
    mean = average_seeds(cube)
    w_c = seed_summary(critical_norm(cube), "w_c")
    band = goldilocks_zone(mean, threshold)
    w = cube["w"].values
    fig, axes = new_figure(2)
    marked: set[int] = set()
    banded: list[str] = []  # colours of the curves whose Goldilocks band is drawn
    critical = grid_edge = False  # whether any w_c is drawn, any band stops at the grid's end
    for (kind, ylabel), ax in zip(_PANELS, axes):
        for row, (value, color) in enumerate(zip(chosen, PALETTE)):
            at = {axis: value}
            for split, ls in (("train", "--"), ("test", "-")):
                ax.plot(w, mean[f"{split}_{kind}"].sel(at).values, ls=ls, marker="o", ms=4, color=color)
                _shade_seed_range(ax, cube, f"{split}_{kind}", at, color)
            if _draw_band(ax, band.sel(at), color, row):
                banded.append(color)
                grid_edge |= bool(band["lo_at_grid_edge"].sel(at)) or bool(band["hi_at_grid_edge"].sel(at))
            if np.isfinite(float(w_c.sel(at))):
                _mark_critical_norm(ax, float(w_c.sel(at)), color, row)
                critical = True
            marked |= mark_missing_points(ax, w, collapse_status(cube["status"].sel(at), keep="w"), color)
        mark_alpha_one(ax, cube.attrs["w0"])
        ax.set_xscale("log")
        if kind == "err":
            ax.set_ylim(-0.03, 1.03)
        elif _any_positive(mean.sel({axis: chosen}), kind):  # a log axis with no positive data cannot place ticks
            ax.set_yscale("log", nonpositive="mask")
        if np.isfinite(band["w_lo"].sel({axis: chosen}).values).any():
            _reserve_bottom(ax, _band_y(len(chosen)))
        ax.set_xlabel(W_LABEL)
        ax.set_ylabel(ylabel)
        add_alpha_axis(ax, cube.attrs["w0"])
    banded = list(dict.fromkeys(banded))  # both panels added each colour
    legend = _legend(axis, chosen, _criterion(band), banded, critical, grid_edge)
    add_legend(fig, legend + missing_point_handles(marked), ncols=6)
    set_title(fig, cube, "reduced train (dashed) and test (solid) curves")
    return fig


def _any_positive(shown: xr.Dataset, kind: str) -> bool:
    return any(bool((shown[f"{split}_{kind}"] > 0).any()) for split in ("train", "test"))


def _shade_seed_range(ax: Axes, cube: xr.Dataset, var: str, at: dict, color: str) -> None:
    if cube.sizes.get("seed", 1) < 2:
        return
    per_seed = done(cube, var).sel(at)
    lo, hi = per_seed.min("seed").values, per_seed.max("seed").values
    ax.fill_between(cube["w"].values, lo, hi, color=color, alpha=0.15, lw=0)


def _mark_critical_norm(ax: Axes, w_c: float, color: str, row: int) -> None:
    """w_c as a dotted line over the α = 1 line, and a triangle along the top, one row per curve, so
    that w_c stays visible where it sits at α = 1 or at the same w as another curve's."""
    ax.axvline(w_c, color=color, ls=":", lw=1.5, zorder=2.5)
    ax.plot([w_c], [0.97 - 0.055 * row], marker="v", ms=7, color=color, transform=ax.get_xaxis_transform(),
            clip_on=False, zorder=3)


def _band_y(row: float) -> float:
    """Height (panel fraction) of a Goldilocks bar's row, counted from the bottom strip's base."""
    return _BAND_BASE + _BAND_ROW * row


def _draw_band(ax: Axes, band: xr.Dataset, color: str, row: int) -> bool:
    """The Goldilocks zone of one curve as a bar in its own row of a strip along the bottom: shaded
    spans of several curves overlapped into one grey-green. An end at the grid's end gets an arrow
    head pointing out (the zone may go on). Returns whether there was a zone to draw."""
    lo, hi = float(band["w_lo"]), float(band["w_hi"])
    if not np.isfinite(lo):
        return False
    y = _band_y(row + 0.5)
    strip = ax.get_xaxis_transform()
    ax.plot([lo, hi], [y, y], color=color, lw=5, alpha=0.6, solid_capstyle="butt", transform=strip, zorder=2)
    for w, at_edge, head in ((lo, band["lo_at_grid_edge"], "<"), (hi, band["hi_at_grid_edge"], ">")):
        if bool(at_edge):
            ax.plot([w], [y], marker=head, ms=7, color=color, mec="black", mew=0.8, transform=strip, zorder=3)
    return True


def _reserve_bottom(ax: Axes, fraction: float) -> None:
    """Lower the y range so that its bottom ``fraction`` holds no data: the Goldilocks bars' strip,
    with no y ticks in it (it has no y scale)."""
    lo, hi = ax.get_ylim()
    for ticks, locate in ((ax.get_yticks(), ax.yaxis.set_major_locator),
                          (ax.get_yticks(minor=True), ax.yaxis.set_minor_locator)):
        locate(mpl.ticker.FixedLocator([t for t in ticks if lo <= t <= hi]))
    forward, inverse = (np.log10, lambda v: 10.0**v) if ax.get_yscale() == "log" else (float, float)
    low, high = forward(lo), forward(hi)
    ax.set_ylim(inverse(high - (high - low) / (1 - fraction)), hi)


def _criterion(band: xr.Dataset) -> str:
    """E.g. "test err ≤ 0.2", "test loss ≤ 1.5 × best", from the zone's attrs."""
    name = band.attrs["var"].replace("_", " ")
    if "relative" in band.attrs:
        return f"{name} ≤ {band.attrs['relative']:g} × best"
    return f"{name} ≤ {band.attrs['threshold']:g}"


def _legend(axis: str, chosen: list, criterion: str, banded: list[str], critical: bool, grid_edge: bool) -> list:
    """The curves' entries, then only the marks drawn: w_c, the Goldilocks bars (a swatch per colour)."""
    handles = [Line2D([], [], color=c, marker="o", ms=4, label=f"${axis}$ = {v:g}") for v, c in zip(chosen, PALETTE)]
    handles += [Line2D([], [], color="black", ls="--", label="train"), Line2D([], [], color="black", ls="-", label="test")]
    if critical:
        handles.append(Line2D([], [], color="black", ls=":", marker="v", ms=6, label=r"$w_c$ (argmin test loss)"))
    if banded:
        label = f"Goldilocks: {criterion}"
        handles.append(tuple(Patch(color=c, alpha=0.6, label=label) for c in banded))
    if grid_edge:
        handles.append(Line2D([], [], ls="none", marker=">", ms=7, color="white", mec="black", label="(grid edge)"))
    return handles + [Line2D([], [], color="0.25", ls="-.", label=r"$\alpha = 1$")]
