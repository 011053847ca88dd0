"""The thumb figure: train- and test-error maps over (w, N) with labelled contours (paper Fig 3b).

At small N only a narrow band of w around α ≈ 1 reaches a low test error; the band widens with
data, so the test-error contours form a thumb whose tip is the critical data size N_c.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.contour import ContourSet
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from scipy.interpolate import RegularGridInterpolator
from scipy.ndimage import gaussian_filter

from landscape.analysis import DEFAULT_LEVELS, INSIDE, average_seeds, critical_data_size, done, validate_level
from landscape.errors import UserError
from plots.style import (PALETTE, W_LABEL, add_alpha_axis, add_legend, axis_label, log_edges, mark_alpha_one,
                         mark_missing_cells, new_figure, set_title, styled)

_MAPS = (("train_err", "train error"), ("test_err", "test error"))
_CONTOUR_COLOR = PALETTE[0]
# Contours are traced on the map resampled this many times finer in log w and log N, so that
# between grid points they follow log-linear interpolation (as the thumb tips do), not linear.
_UPSAMPLE = 8
#: Least distance between two contour labels, in panel widths/heights: about a label's length.
#: Contour pieces shorter than this get no label, which would hide them.
_LABEL_SPACING = 0.1
_LABEL_FRACTIONS = np.linspace(0.1, 0.9, 17)  # where along a contour piece a label may go


@styled
def thumb_figure(cube: xr.Dataset, levels: Sequence[float] = DEFAULT_LEVELS, smooth: float | None = None) -> Figure:
    """Train- and test-error maps, both axes log in data coordinates, seeds averaged.

    Each map gets labelled contours at ``levels``, a star at the thumb tip (critical data size)
    of each level inside the grid (tips outside are listed in the panel), and the α = 1 line.
    ``smooth`` applies a gaussian of that many grid cells (NaN-aware) before contouring and is
    written in the title; off by default.
    """
    for var, _ in _MAPS:
        for level in levels:
            validate_level(var, level)
    if smooth is not None and not smooth > 0:
        raise UserError(f"--smooth {smooth:g}: the gaussian sigma must be positive (in grid cells)")
    axis = cube.attrs["axis"]
    maps = average_seeds(cube)
    if smooth is not None:
        for var, _ in _MAPS:
            maps[var] = xr.apply_ufunc(_smooth, done(maps, var), kwargs={"sigma": smooth})
    w, n = cube["w"].values, cube[axis].values.astype(float)
    w_edges, n_edges = log_edges(w), log_edges(n)
    status = maps["status"].transpose(axis, "w").values
    fig, axes = new_figure(2, panel_width=4.6)
    any_tip = False
    for (var, name), ax in zip(_MAPS, axes):
        z = done(maps, var).transpose(axis, "w").values
        mesh = ax.pcolormesh(w_edges, n_edges, np.ma.masked_invalid(z), cmap="Reds", vmin=0, vmax=1)
        ax.set_xscale("log")  # before the contours: their labels are placed on the final axes
        ax.set_yscale("log")
        ax.set_xlim(w_edges[0], w_edges[-1])
        ax.set_ylim(n_edges[0], n_edges[-1])
        _contours(ax, w, n, z, levels)
        tipped, outside = _mark_tips(ax, critical_data_size(maps, list(levels), var), axis)
        any_tip |= tipped
        missing = mark_missing_cells(ax, w_edges, n_edges, status)
        alpha_one = mark_alpha_one(ax, cube.attrs["w0"])
        if outside:
            ax.text(0.98, 0.02, "\n".join(outside), transform=ax.transAxes, ha="right", va="bottom", fontsize=9,
                    bbox={"facecolor": "white", "alpha": 0.8, "lw": 0})
        ax.grid(False)
        ax.set_title(name)
        ax.set_xlabel(W_LABEL)
        ax.set_ylabel(axis_label(cube))
        add_alpha_axis(ax, cube.attrs["w0"])
    handles = missing + [alpha_one]  # both maps share the status, so either panel's handles serve
    if any_tip:
        handles.append(Line2D([], [], ls="none", marker="*", ms=12, color=_CONTOUR_COLOR, mec="white",
                              label=f"thumb tip ${axis}_c$"))
    fig.colorbar(mesh, ax=axes, label="error (1 − accuracy)", shrink=0.9)
    add_legend(fig, handles, ncols=len(handles))
    note = f"gaussian smoothing σ = {smooth:g} grid cells" if smooth else None
    set_title(fig, cube, "train and test error maps", note=note)
    return fig


def _contours(ax: Axes, w: np.ndarray, n: np.ndarray, z: np.ndarray, levels: Sequence[float]) -> None:
    if w.size < 2 or n.size < 2 or np.isfinite(z).sum() < 4:
        return  # a line or a point has no contours
    log_w, log_n = np.log10(w), np.log10(n)
    fine_w = np.linspace(log_w[0], log_w[-1], (w.size - 1) * _UPSAMPLE + 1)
    fine_n = np.linspace(log_n[0], log_n[-1], (n.size - 1) * _UPSAMPLE + 1)
    grid_n, grid_w = np.meshgrid(fine_n, fine_w, indexing="ij")
    fine = RegularGridInterpolator((log_n, log_w), z)((grid_n, grid_w))
    if np.nanmin(fine) > max(levels) or np.nanmax(fine) < min(levels):
        return  # matplotlib would warn that no contour levels were found
    lines = ax.contour(10.0 ** grid_w, 10.0 ** grid_n, np.ma.masked_invalid(fine), levels=sorted(levels),
                       colors=_CONTOUR_COLOR, linestyles="--", linewidths=1.4)
    for label in ax.clabel(lines, fmt=lambda v: f"{v:g}", fontsize=9, manual=_label_points(ax, lines)):
        label.set_bbox({"facecolor": "white", "alpha": 0.9, "lw": 0, "pad": 0.6})  # over neighbouring contours


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
            ax.plot(float(tip["w_tip"]), float(tip[f"{axis}_c"]), ls="none", marker="*", ms=14,
                    color=_CONTOUR_COLOR, mec="white", zorder=5)
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
