"""The thumb figure: train and test maps over (w, N) with labelled contours (paper Fig 3b, 5a-b).

At small N only a narrow band of w around α ≈ 1 reaches a low test error; the band widens with
data, so the test-error contours form a thumb whose tip is the critical data size N_c. A cube whose
figure metric is the loss (regression, Fig 5) gets loss maps on a log colour scale instead.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm, Normalize
from matplotlib.contour import ContourSet
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy.interpolate import RegularGridInterpolator
from scipy.ndimage import gaussian_filter

from landscape.read.analysis import (FIGURE_METRICS, INSIDE, average_seeds, critical_data_size, done, from_scale,
                                levels_of, metric_of, to_scale, validate_level)
from landscape.errors import UserError
from plots.style import (PALETTE, W_LABEL, add_alpha_axis, add_legend, axis_label, mark_alpha_one, mark_missing_cells,
                         new_figure, sampled_log_edges, set_title, styled, ticks_at_samples)

_COLORBAR_LABEL = {"err": "error (1 − accuracy)", "loss": "loss"}
#: A loss map's colours span this many decades below its lowest level and above its highest (at
#: most): the contours' neighbourhood gets the colours, however far the loss runs off (QM9: 1e-12 to 1e9).
_LOSS_DECADES = 2
CONTOUR_COLOR = PALETTE[0]
# Contours are traced on the map resampled this many times finer in log w and log N, so that
# between grid points they follow log-linear interpolation (as the thumb tips do), not linear.
_UPSAMPLE = 8
#: Least distance between two contour labels, in panel widths/heights: about a label's length.
#: Contour pieces shorter than this get no label, which would hide them.
_LABEL_SPACING = 0.1
_LABEL_FRACTIONS = np.linspace(0.1, 0.9, 17)  # where along a contour piece a label may go


@styled
def thumb_figure(cube: xr.Dataset, levels: Sequence[float] | None = None, smooth: float | None = None) -> Figure:
    """Train and test maps of the cube's figure metric (error, or loss on a log colour scale), both
    axes log in data coordinates, seeds averaged.

    Each map gets labelled contours at ``levels`` (default the cube's, :func:`levels_of`), a star at
    the thumb tip (critical data size) of each level inside the grid (tips outside are listed in
    the panel), and the α = 1 line. ``smooth`` applies a gaussian of that many grid cells (NaN-aware;
    to log10 of a loss) before contouring and is written in the title; off by default.
    """
    metric = metric_of(cube)
    levels = levels_of(cube) if levels is None else levels
    maps_of = [f"train_{metric}", f"test_{metric}"]
    for var in maps_of:
        for level in levels:
            validate_level(var, level)
    if smooth is not None and not smooth > 0:
        raise UserError(f"--smooth {smooth:g}: the gaussian sigma must be positive (in grid cells)")
    axis = cube.attrs["axis"]
    maps = average_seeds(cube)
    if smooth is not None:
        for var in maps_of:
            smoothed = xr.apply_ufunc(_smooth, to_scale(done(maps, var), var), kwargs={"sigma": smooth})
            maps[var] = from_scale(smoothed, var)
    w, n = cube["w"].values, cube[axis].values.astype(float)
    w_edges, n_edges = sampled_log_edges(w), sampled_log_edges(n)
    status = maps["status"].transpose(axis, "w").values
    fig, axes = new_figure(2, panel_width=4.6)
    colours = _colour_scale(metric, levels, [done(maps, var).values for var in maps_of])
    any_tip = False
    for var, ax in zip(maps_of, axes):
        z = done(maps, var).transpose(axis, "w").values
        # Raised to the colour scale's floor: a log scale would blank a loss of exactly 0 like a missing cell.
        shown = np.ma.masked_invalid(np.maximum(z, colours.vmin))
        mesh = ax.pcolormesh(w_edges, n_edges, shown, cmap="Reds", norm=colours)
        ax.set_xscale("log")  # before the contours: their labels are placed on the final axes
        ax.set_yscale("log")
        ax.set_xlim(w_edges[0], w_edges[-1])
        ax.set_ylim(n_edges[0], n_edges[-1])
        ticks_at_samples(ax.yaxis, n)
        thumb_contours(ax, w, n, z, levels, var)
        tipped, outside = _mark_tips(ax, critical_data_size(maps, list(levels), var), axis)
        any_tip |= tipped
        missing = mark_missing_cells(ax, w_edges, n_edges, status)
        alpha_one = mark_alpha_one(ax, cube.attrs["w0"])
        if outside:
            ax.text(0.98, 0.02, "\n".join(outside), transform=ax.transAxes, ha="right", va="bottom", fontsize=9,
                    bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
        ax.grid(False)
        ax.set_title(f"{var.split('_')[0]} {FIGURE_METRICS[metric]}")
        ax.set_xlabel(W_LABEL)
        ax.set_ylabel(axis_label(cube))
        add_alpha_axis(ax, cube.attrs["w0"])
    handles = missing + [alpha_one]  # both maps share the status, so either panel's handles serve
    if any_tip:
        handles.append(Line2D([], [], ls="none", marker="*", ms=12, color=CONTOUR_COLOR, mec="white",
                              label=f"thumb tip ${axis}_c$ of the level beside it"))
    extend = "neither" if metric == "err" else "both"  # a loss's colours saturate beyond the range
    fig.colorbar(mesh, ax=axes, label=_COLORBAR_LABEL[metric], shrink=0.9, extend=extend)
    add_legend(fig, handles, ncols=len(handles))
    note = f"gaussian smoothing σ = {smooth:g} grid cells" if smooth else None
    set_title(fig, cube, f"train and test {FIGURE_METRICS[metric]} maps", note=note)
    return fig


def _colour_scale(metric: str, levels: Sequence[float], maps: list[np.ndarray]) -> Normalize:
    """An error from 0 to 1; a loss in log, over the maps' positive values, cut to
    :data:`_LOSS_DECADES` beyond the levels so that the contours do not sit in one shade."""
    if metric == "err":
        return Normalize(0, 1)
    values = np.concatenate([m.ravel() for m in maps])
    positive = values[np.isfinite(values) & (values > 0)]
    low, high = min(levels) / 10**_LOSS_DECADES, max(levels) * 10**_LOSS_DECADES
    if positive.size:
        low, high = max(low, positive.min()), min(high, positive.max())
    return LogNorm(low, high) if low < high else LogNorm(min(levels) / 10, max(levels) * 10)


def thumb_contours(ax: Axes, w: np.ndarray, n: np.ndarray, z: np.ndarray, levels: Sequence[float], var: str) -> None:
    """Labelled dashed contours of ``z`` (rows ``n``, columns ``w``) of ``var`` at ``levels`` on log axes,
    traced on the log-log interpolation the thumb tips use (also over other maps: the sharpness map)."""
    if w.size < 2 or n.size < 2 or np.isfinite(z).sum() < 4:
        return  # a line or a point has no contours
    log_w, log_n = np.log10(w), np.log10(n)
    # The grid's own rows and columns are on the fine grid, so the contours pass through the thumb
    # tips (which lie on a grid column) exactly.
    fine_w, fine_n = _finer(log_w), _finer(log_n)
    grid_n, grid_w = np.meshgrid(fine_n, fine_w, indexing="ij")
    # On the scale the thumb tips are interpolated on (a loss in log10), so contours run through them.
    fine = from_scale(RegularGridInterpolator((log_n, log_w), to_scale(z, var))((grid_n, grid_w)), var)
    if np.nanmin(fine) > max(levels) or np.nanmax(fine) < min(levels):
        return  # matplotlib would warn that no contour levels were found
    lines = ax.contour(10.0 ** grid_w, 10.0 ** grid_n, np.ma.masked_invalid(fine), levels=sorted(levels),
                       colors=CONTOUR_COLOR, linestyles="--", linewidths=1.4)
    for label in ax.clabel(lines, fmt=lambda v: f"{v:g}", fontsize=9, manual=_label_points(ax, lines)):
        label.set_bbox({"facecolor": "white", "alpha": 0.9, "lw": 0, "pad": 0.6})  # over neighbouring contours


def _finer(grid: np.ndarray) -> np.ndarray:
    """``grid`` with :data:`_UPSAMPLE` - 1 evenly spaced points between each of its ends' steps,
    keeping every point of ``grid`` itself (a grid not evenly spaced has them off the even ones)."""
    fine = np.union1d(np.linspace(grid[0], grid[-1], (grid.size - 1) * _UPSAMPLE + 1), grid)
    return fine[np.append(True, np.diff(fine) > 1e-9 * max(1.0, np.ptp(grid)))]


def _label_points(ax: Axes, lines: ContourSet) -> list[tuple[float, float]]:
    """Where to label each contour piece: level i of n near the fraction (i + 1) / (n + 1) of its
    length, moved along the piece until it is clear of the labels placed before; no label where
    no place is clear, nor on pieces shorter than a label.

    Where the error jumps within one grid cell the contours run side by side, and matplotlib's own
    placement puts their labels at one height, on top of each other.
    """
    to_axes = ax.transData + ax.transAxes.inverted()  # distances in panel fractions, as a reader sees them
    paths = lines.get_paths()
    placed: list[np.ndarray] = []
    points = []
    for i, path in enumerate(paths):
        preferred = (i + 1) / (len(paths) + 1)
        fractions = sorted(_LABEL_FRACTIONS, key=lambda f: abs(f - preferred))
        for piece in path.to_polygons(closed_only=False):
            xy = to_axes.transform(piece)
            length = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(xy, axis=0).T))])
            if length[-1] < _LABEL_SPACING:
                continue
            for f in fractions:
                k = min(int(np.searchsorted(length, f * length[-1])), len(piece) - 1)
                if all(np.hypot(*(xy[k] - p)) >= _LABEL_SPACING for p in placed):
                    placed.append(xy[k])
                    points.append(tuple(piece[k]))
                    break
    return points


def _mark_tips(ax: Axes, tips: xr.Dataset, axis: str) -> tuple[bool, list[str]]:
    """Star each tip inside the grid. Returns whether any was drawn, and a line per other position
    naming its levels, e.g. "N_c below grid: 0.3, 0.4"."""
    elsewhere: dict[str, list[str]] = {}
    drawn = False
    for level in tips["level"].values:
        tip = tips.sel(level=level)
        where = str(tip["position"].values)
        if where == INSIDE:
            at = (float(tip["w_tip"]), float(tip[f"{axis}_c"]))
            ax.plot(*at, ls="none", marker="*", ms=14, color=CONTOUR_COLOR, mec="white", zorder=5)
            # Which contour the star closes: tips of several levels can sit close together.
            ax.annotate(f"{level:g}", at, xytext=(7, -3), textcoords="offset points", fontsize=8, fontweight="bold",
                        color=CONTOUR_COLOR, zorder=6, bbox={"facecolor": "white", "alpha": 0.8, "lw": 0, "pad": 0.4})
            drawn = True
        else:
            elsewhere.setdefault(where, []).append(f"{level:g}")
    notes = [f"${axis}_c$ {where.replace('_', ' ')}: {', '.join(lv)}" for where, lv in elsewhere.items()]
    return drawn, notes


def _smooth(z: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing that ignores missing cells (normalised convolution) and keeps them missing."""
    finite = np.isfinite(z)
    weight = gaussian_filter(finite.astype(float), sigma, mode="nearest")
    total = gaussian_filter(np.where(finite, z, 0.0), sigma, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finite, total / weight, np.nan)
