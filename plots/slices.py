"""Slices of the landscape around chosen cells' final points (Li et al. 2018): 2-D contours of the
train and test loss with a 3-D surface of the train loss, or 1-D lines. The directions are the
cube's (``measure.slice.directions``): filter-normalized, or geodesic on the sphere ‖θ‖ = w."""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr
from matplotlib.colors import LogNorm, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, MaxNLocator

from landscape.read.cells import cell_label
from plots.cell_lines import cell_lines_figure
from plots.runs import spec_of
from plots.style import set_title, styled

#: Filled contour levels per slice panel (log spaced over the row's losses).
_LEVELS = 14


def available(cube: xr.Dataset) -> bool:
    return all(f"slice_{s}_{m}" in cube for s in ("train", "test") for m in ("loss", "err"))


def coefficient_label(cube: xr.Dataset, k: int) -> str:
    """What the slice coordinate ``k`` (0 or 1) measures, by the cube's own directions."""
    directions = spec_of(cube).get("measure", {}).get("slice", {}).get("directions", "filter")
    name = "ab"[k]
    if directions == "sphere":
        return f"geodesic angle ${name}$ along $d_{k + 1}$ (rad)"
    return f"coefficient ${name}$ along $\\delta_{k + 1}$ (filter-normalized)"


@styled
def slice_figure(cube: xr.Dataset, cells: list[dict[str, Any]]) -> Figure:
    """Per cell a row: train-loss and test-loss contours (log colours shared by the row) with the
    cell's own point at the centre, and the train-loss surface in 3-D (log10 height). A 1-D slice:
    loss and error lines (:func:`cell_lines_figure`)."""
    if "slice_y" not in cube["slice_train_loss"].dims:
        fig = cell_lines_figure(cube, cells, "slice", "slice_x", coefficient_label(cube, 0), mark=0.0)
        set_title(fig, cube, "1-D slices around the final point")
        return fig
    x, y = cube["slice_x"].values, cube["slice_y"].values
    fig = Figure(figsize=(14.5, 3.9 * len(cells) + 1.2), layout="constrained")
    grid = fig.add_gridspec(len(cells), 3)
    for r, cell in enumerate(cells):
        at = cube.sel(cell)
        losses = [at[f"slice_{s}_loss"].transpose("slice_x", "slice_y").values for s in ("train", "test")]
        positive = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in losses])
        if not positive.size:
            continue  # left empty: the cell has no slice (render's cell choice avoids this)
        lo, hi = positive.min(), max(positive.max(), positive.min() * 1.001)
        # Log colours only where the loss spans a decade: over a narrower range a log scale has no
        # tick to label (a small-w cell's slice varies by a few percent).
        log = hi / lo >= 10
        norm = LogNorm(lo, hi) if log else Normalize(lo, hi)
        levels = np.geomspace(lo, hi, _LEVELS) if log else np.linspace(lo, hi, _LEVELS)
        for k, (split, z) in enumerate(zip(("train", "test"), losses)):
            ax = fig.add_subplot(grid[r, k])
            shown = np.ma.masked_where(~(np.isfinite(z) & (z > 0)), z).T  # rows y, columns x
            filled = ax.contourf(x, y, shown, levels=levels, norm=norm, cmap="viridis", extend="neither")
            ax.contour(x, y, shown, levels=levels, colors="white", linewidths=0.5, alpha=0.6)
            ax.plot(0, 0, marker="*", ms=12, color="#D55E00", mec="white", ls="none")
            ax.set_aspect("equal")
            ax.xaxis.set_major_locator(MaxNLocator(5))
            ax.yaxis.set_major_locator(MaxNLocator(5))
            ax.grid(False)
            ax.set_xlabel(coefficient_label(cube, 0))
            ax.set_ylabel(coefficient_label(cube, 1))
            ax.set_title(f"{split} loss, {cell_label(cube, cell)}", fontsize=10)
        fig.colorbar(filled, ax=fig.axes[-2:], label="loss", ticks=LogLocator() if log else MaxNLocator(5), shrink=0.9)
        surface = fig.add_subplot(grid[r, 2], projection="3d")
        gx, gy = np.meshgrid(x, y, indexing="ij")
        height = np.where(losses[0] > 0, losses[0], np.nan)
        surface.plot_surface(gx, gy, np.log10(height) if log else height, cmap="viridis",
                             norm=None, linewidth=0, antialiased=True)
        surface.zaxis.set_major_locator(MaxNLocator(3))
        surface.zaxis.labelpad = 10  # clear of the tick labels, which may be long (0.09115)
        surface.set_box_aspect(None, zoom=0.82)  # room for the z label inside the panel
        surface.set_xlabel("$a$")
        surface.set_ylabel("$b$")
        surface.set_zlabel(r"$\log_{10}$ train loss" if log else "train loss")
        surface.set_title(f"train-loss surface, {cell_label(cube, cell)}", fontsize=10)
    set_title(fig, cube, "2-D slices around the final point (star: the cell itself)")
    return fig
