"""Train and test loss and error along a 1-D coordinate of a few cells (a 1-D slice, the
interpolation from init to the final point): the shared drawing of those line figures."""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from landscape.read.cells import cell_label
from plots.style import PALETTE, add_legend, new_figure

_SPLITS = {"train": "-", "test": "--"}


def cell_lines_figure(cube: xr.Dataset, cells: list[dict[str, Any]], prefix: str, coord: str, xlabel: str,
                      mark: float | None = None) -> Figure:
    """Loss (log y) and error against ``coord`` of ``<prefix>_<split>_<metric>``, a colour per cell,
    train solid and test dashed; ``mark``: a vertical line there (the cell's own point)."""
    fig, (loss_ax, err_ax) = new_figure(2, panel_width=4.6)
    x = cube[coord].values
    handles = []
    for cell, colour in zip(cells, PALETTE):
        at = cube.sel(cell)
        for split, ls in _SPLITS.items():
            loss_ax.plot(x, at[f"{prefix}_{split}_loss"].values, color=colour, ls=ls, lw=1.8)
            err_ax.plot(x, at[f"{prefix}_{split}_err"].values, color=colour, ls=ls, lw=1.8)
        handles.append(Line2D([], [], color=colour, lw=2, label=cell_label(cube, cell)))
    losses = np.concatenate([cube.sel(c)[f"{prefix}_{s}_loss"].values for c in cells for s in _SPLITS])
    if (np.isfinite(losses) & (losses > 0)).any():
        loss_ax.set_yscale("log", nonpositive="mask")
    err_ax.set_ylim(-0.03, 1.03)
    for ax, what in ((loss_ax, "loss"), (err_ax, "error (1 − accuracy)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel(what)
        if mark is not None:
            ax.axvline(mark, color="0.4", lw=1, ls=":")
    handles += [Line2D([], [], color="0.3", ls=ls, lw=1.8, label=split) for split, ls in _SPLITS.items()]
    add_legend(fig, handles, ncols=min(len(handles), 5))
    return fig
