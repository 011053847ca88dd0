"""The collapse maps: the softmax-collapse fraction and the normalized margin at the cells' end
over (w, N), seeds averaged, with the test-error thumb contours drawn over them: where on the
sphere ‖θ‖ = w do models collapse (Prieto et al. 2025), and how large is their margin there."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from landscape.read.analysis import average_seeds
from landscape.read.progress import map_measures
from plots.cell_map import contour_handle, contour_levels, map_panel
from plots.style import add_legend, new_figure, set_title, styled

#: Title and colour map of each map measure: a fraction on a fixed 0..1 scale, a margin on its own.
_MAPS = {"softmax_collapse": ("softmax-collapse fraction (p_y = 1 in the training dtype)", "Purples"),
         "normalized_margin": (r"normalized margin (min margin / $\|\theta\|^L$)", "viridis")}


def available(cube: xr.Dataset) -> bool:
    return bool(map_measures(cube))


@styled
def collapse_figure(cube: xr.Dataset, levels: Sequence[float] | None = None) -> Figure:
    """One map per measure the cube has, seeds averaged, pending cells hatched, diverged crossed."""
    levels = contour_levels(cube, levels)
    axis = cube.attrs["axis"]
    names = map_measures(cube)
    maps = average_seeds(cube, names)
    fig, axes = new_figure(len(names), panel_width=5.2)
    marks: list = []
    for name, ax in zip(names, axes):
        z = maps[name].where(maps["status"] == 1).transpose(axis, "w").values
        title, cmap = _MAPS[name]
        finite = z[np.isfinite(z)]
        norm = Normalize(0, 1) if name == "softmax_collapse" or not finite.size else Normalize(finite.min(), finite.max())
        mesh, marks = map_panel(ax, cube, np.ma.masked_invalid(z), maps, levels, cmap=cmap, norm=norm)
        ax.set_title(title, fontsize=10)
        fig.colorbar(mesh, ax=ax, shrink=0.9)
    add_legend(fig, [contour_handle(cube), *marks], ncols=4)
    set_title(fig, cube, "softmax collapse and margin at the end (seeds averaged)")
    return fig
