"""A measured variable of a landscape cube as a map over (w, N), with the test-metric contours of the
thumb drawn over it (plots.thumb.thumb_contours), so that one reads where on the sphere the measure
changes relative to the Goldilocks zone. The sharpness and collapse figures draw their panels so."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.collections import QuadMesh
from matplotlib.lines import Line2D

from landscape.read.analysis import FIGURE_METRICS, levels_of, metric_of, validate_level
from plots.style import (W_LABEL, add_alpha_axis, axis_label, mark_alpha_one, mark_missing_cells, sampled_log_edges,
                         ticks_at_samples)
from plots.thumb import CONTOUR_COLOR, thumb_contours


def contour_levels(cube: xr.Dataset, levels: Sequence[float] | None) -> Sequence[float]:
    """The contour levels of the test metric (default the cube's), checked against the metric."""
    levels = levels_of(cube) if levels is None else levels
    for level in levels:
        validate_level(f"test_{metric_of(cube)}", level)
    return levels


def map_panel(ax: Axes, cube: xr.Dataset, shown: np.ndarray, averaged: xr.Dataset, levels: Sequence[float],
              **mesh: object) -> tuple[QuadMesh, list[Line2D]]:
    """``shown`` (rows the axis, columns w; masked cells left blank) on log axes with the contours of
    ``averaged``'s test metric at ``levels``, its pending cells hatched and diverged ones crossed, and
    α = 1 marked; ``mesh`` goes to pcolormesh. Returns the mesh and the legend handles of the marks."""
    axis, w0 = cube.attrs["axis"], cube.attrs["w0"]
    test = f"test_{metric_of(cube)}"
    w, n = cube["w"].values, cube[axis].values.astype(float)
    w_edges, n_edges = sampled_log_edges(w), sampled_log_edges(n)
    quad = ax.pcolormesh(w_edges, n_edges, shown, **mesh)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(w_edges[0], w_edges[-1])
    ax.set_ylim(n_edges[0], n_edges[-1])
    ticks_at_samples(ax.yaxis, n)
    thumb_contours(ax, w, n, averaged[test].transpose(axis, "w").values, levels, test)
    missing = mark_missing_cells(ax, w_edges, n_edges, averaged["status"].transpose(axis, "w").values)
    alpha_one = mark_alpha_one(ax, w0)
    ax.grid(False)
    ax.set_xlabel(W_LABEL)
    ax.set_ylabel(axis_label(cube))
    add_alpha_axis(ax, w0)
    return quad, [*missing, alpha_one]


def contour_handle(cube: xr.Dataset) -> Line2D:
    """The legend entry of the thumb contours."""
    return Line2D([], [], color=CONTOUR_COLOR, ls="--", lw=1.4,
                  label=f"test {FIGURE_METRICS[metric_of(cube)]} contours (the thumb)")
