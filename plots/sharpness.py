"""The sharpness map: λ_max of the train-loss Hessian over (w, N), reduced (on the sphere ‖θ‖ = w,
the landscape the cells trained on) and ambient, with the test-error thumb contours drawn over it,
so that one reads whether the Goldilocks zone is flatter or sharper than its surroundings."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure

from landscape.read.analysis import average_seeds
from landscape.read.curvature import SPACES, per_cell, top_var
from plots.cell_map import contour_handle, contour_levels, map_panel
from plots.style import add_legend, new_figure, set_title, styled

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
    levels = contour_levels(cube, levels)
    axis = cube.attrs["axis"]
    cells = per_cell(cube)
    spaces = [s for s in reversed(SPACES) if f"lmax_{s}" in cells]
    maps = [cells[f"lmax_{s}"].transpose(axis, "w").values for s in spaces]
    positive = np.concatenate([m[np.isfinite(m) & (m > 0)] for m in maps])
    norm = LogNorm(positive.min(), positive.max()) if positive.size and positive.min() < positive.max() else LogNorm(0.1, 10)
    averaged = average_seeds(cube)
    fig, axes = new_figure(len(spaces), panel_width=4.6)
    marks: list = []
    for space, lam, ax in zip(spaces, maps, axes):
        shown = np.ma.masked_where(~(np.isfinite(lam) & (lam > 0)), lam)
        mesh, marks = map_panel(ax, cube, shown, averaged, levels, cmap="YlOrBr", norm=norm)
        ax.set_title(f"{LAMBDA[space]}, {SPACE_WORDS[space]}", fontsize=10)
    fig.colorbar(mesh, ax=axes, label=r"$\lambda_{\max}$ of the train-loss Hessian", shrink=0.9)
    add_legend(fig, [contour_handle(cube), *marks], ncols=4)
    set_title(fig, cube, "sharpness maps (seeds averaged)")
    return fig
