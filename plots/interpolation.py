"""The linear interpolation from each chosen cell's init (t = 0) to its final point (t = 1)
(Goodfellow et al. 2015): a monotone fall means no barrier between them."""
from __future__ import annotations

from typing import Any

import xarray as xr
from matplotlib.figure import Figure

from plots.cell_lines import cell_lines_figure
from plots.style import set_title, styled


def available(cube: xr.Dataset) -> bool:
    return all(f"interp_{s}_{m}" in cube for s in ("train", "test") for m in ("loss", "err"))


@styled
def interpolation_figure(cube: xr.Dataset, cells: list[dict[str, Any]]) -> Figure:
    fig = cell_lines_figure(cube, cells, "interp", "interp", r"$t$ in $\theta = (1 - t)\,\theta_0 + t\,\theta_T$")
    set_title(fig, cube, "interpolation from init (t = 0) to the final point (t = 1)")
    return fig
