"""The sharpness map: λ_max of the train-loss Hessian over (w, N), reduced (on the sphere ‖θ‖ = w,
the landscape the cells trained on) and ambient, with the test-error thumb contours drawn over it,
so that one reads whether the Goldilocks zone is flatter or sharper than its surroundings."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from landscape.read.analysis import FIGURE_METRICS, average_seeds, levels_of, metric_of, validate_level
from landscape.read.curvature import SPACES, per_cell, top_var
from plots.style import (W_LABEL, add_alpha_axis, add_legend, axis_label, mark_alpha_one, mark_missing_cells,
                         new_figure, sampled_log_edges, set_title, styled, ticks_at_samples)
from plots.thumb import CONTOUR_COLOR, thumb_contours

#: The symbol of each space's top eigenvalue, as the panels and colour bars write it.
LAMBDA = {"ambient": r"$\lambda_{\max}(H)$", "reduced": r"$\lambda_{\max}(H_{\mathrm{red}})$"}
SPACE_WORDS = {"ambient": "ambient Hessian (all of θ)", "reduced": "reduced Hessian (on the sphere ‖θ‖ = w)"}


def available(cube: xr.Dataset) -> bool:
    return any(top_var(s) in cube for s in SPACES)


@styled
def sharpness_figure(cube: xr.Dataset, levels: Sequence[float] | None = None) -> Figure:
    """One map per measured space (reduced first), log colour scale shared by both, seeds averaged;
    the test-metric contours at ``levels`` (default the cube's) as on the thumb, pending cells hatched,
    diverged ones crossed; a cell with λ_max ≤ 0 (a saddle on the sphere) is left blank."""
    metric = metric_of(cube)
    levels = levels_of(cube) if levels is None else levels
    test = f"test_{metric}"
    for level in levels:
        validate_level(test, level)
    axis = cube.attrs["axis"]
    cells = per_cell(cube)
    spaces = [s for s in reversed(SPACES) if f"lmax_{s}" in cells]
    w, n = cube["w"].values, cube[axis].values.astype(float)
    w_edges, n_edges = sampled_log_edges(w), sampled_log_edges(n)
    maps = [cells[f"lmax_{s}"].transpose(axis, "w").values for s in spaces]
    positive = np.concatenate([m[np.isfinite(m) & (m > 0)] for m in maps])
    norm = LogNorm(positive.min(), positive.max()) if positive.size and positive.min() < positive.max() else LogNorm(0.1, 10)
    averaged = average_seeds(cube)
    z_test = averaged[test].transpose(axis, "w").values
    status = averaged["status"].transpose(axis, "w").values
    fig, axes = new_figure(len(spaces), panel_width=4.6)
    missing: list = []
    for space, lam, ax in zip(spaces, maps, axes):
        shown = np.ma.masked_where(~(np.isfinite(lam) & (lam > 0)), lam)
        mesh = ax.pcolormesh(w_edges, n_edges, shown, cmap="YlOrBr", norm=norm)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(w_edges[0], w_edges[-1])
        ax.set_ylim(n_edges[0], n_edges[-1])
        ticks_at_samples(ax.yaxis, n)
        thumb_contours(ax, w, n, z_test, levels, test)
        missing = mark_missing_cells(ax, w_edges, n_edges, status)
        alpha_one = mark_alpha_one(ax, cube.attrs["w0"])
        ax.grid(False)
        ax.set_title(f"{LAMBDA[space]}, {SPACE_WORDS[space]}", fontsize=10)
        ax.set_xlabel(W_LABEL)
        ax.set_ylabel(axis_label(cube))
        add_alpha_axis(ax, cube.attrs["w0"])
    fig.colorbar(mesh, ax=axes, label=r"$\lambda_{\max}$ of the train-loss Hessian", shrink=0.9)
    contour = Line2D([], [], color=CONTOUR_COLOR, ls="--", lw=1.4,
                     label=f"test {FIGURE_METRICS[metric]} contours (the thumb)")
    add_legend(fig, [contour, *missing, alpha_one], ncols=4)
    set_title(fig, cube, "sharpness maps (seeds averaged)")
    return fig
