"""The spectral density of the train-loss Hessian (stochastic Lanczos quadrature, Ghorbani et al.
2019) of a few cells, ambient and reduced: the bulk near 0 and the outliers that set λ_max."""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from landscape.read.cells import cell_label
from landscape.read.curvature import SPACES
from plots.sharpness import SPACE_WORDS
from plots.style import PALETTE, add_legend, new_figure, set_title, styled


def density_var(space: str) -> str:
    return f"hessian_density_{space}"


def available(cube: xr.Dataset) -> bool:
    return any(density_var(s) in cube for s in SPACES)


@styled
def density_figure(cube: xr.Dataset, cells: list[dict[str, Any]]) -> Figure:
    """One panel per measured space, a line per cell over the eigenvalue grid, log density (zeros
    and NaN masked)."""
    spaces = [s for s in SPACES if density_var(s) in cube]
    fig, axes = new_figure(len(spaces), panel_width=4.8)
    grid = cube["eigenvalue"].values
    for space, ax in zip(spaces, axes):
        for cell, colour in zip(cells, PALETTE):
            density = cube[density_var(space)].sel(cell).values
            ax.plot(grid, np.where(density > 0, density, np.nan), color=colour, lw=1.6)
        ax.set_yscale("log", nonpositive="mask")
        ax.set_xlabel(r"eigenvalue $\lambda$")
        ax.set_ylabel(r"spectral density $\rho(\lambda)$")
        ax.set_title(SPACE_WORDS[space], fontsize=10)
    add_legend(fig, [Line2D([], [], color=c, lw=2, label=cell_label(cube, cell)) for cell, c in zip(cells, PALETTE)],
               ncols=4)
    set_title(fig, cube, "Hessian spectral density (stochastic Lanczos quadrature)")
    return fig
