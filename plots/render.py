"""Render every kind of figure of a cube into a directory, as PNG and PDF."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from landscape.read.analysis import is_landscape, over_representation
from landscape.read.cells import default_cells, parse_cells
from landscape.read.curvature import SPACES
from landscape.read.dichotomy import is_dichotomy
from landscape.read.dynamics import delay_prediction
from landscape.errors import UserError
from plots import collapse, density, interpolation, sharpness, slices, stability
from plots.dichotomy import dichotomy_figure, transition_figure
from plots.goldilocks import goldilocks_figure
from plots.grokking import grokking_figure
from plots.lu import lu_figure
from plots.messiness import maps_figure
from plots.style import save
from plots.thumb import thumb_figure
from plots.timescales import prediction_figure, times_figure

#: Figure kinds of a reduced landscape, in the order they are drawn; each writes <kind>.png/.pdf.
KINDS = ("lu", "thumb", "goldilocks")
#: Figure kinds of a landscape over (w, m): loss maps with the region boundary, and the LU curves.
MESSINESS_KINDS = ("maps", "lu")
#: Figure kinds of dynamics cubes with cosine curves to kernel and rich references (Dichotomy):
#: the runs against the references, and the transition against log(alpha)/(eta lambda).
DICHOTOMY_KINDS = ("dichotomy", "transition")


#: Figure kinds of the measurements (issue 25), drawn for the cells ``--cells`` names: the variable
#: each needs tells whether the cube has it, and which cells the default picks.
CELL_KINDS = {"slice": ("slice_train_loss", slices.available), "density": (None, density.available),
              "interpolation": ("interp_train_loss", interpolation.available)}


def available_kinds(cube: xr.Dataset, landscape: xr.Dataset | None = None) -> tuple[str, ...]:
    """What can be drawn from this cube: its sweeps and the variables it has decide, never its task name."""
    measured = tuple(k for k, (_, has) in CELL_KINDS.items() if has(cube))
    if is_landscape(cube):
        if over_representation(cube):
            return MESSINESS_KINDS + measured
        return (KINDS + (("sharpness",) if sharpness.available(cube) else ())
                + (("collapse",) if collapse.available(cube) else ()) + measured)
    swept = {d for d in cube["status"].dims if cube.sizes[d] > 1}
    return tuple(k for k, ok in (("grokking", True), ("times-wd", "wd" in swept),
                                 ("times-axis", cube.attrs["axis"] in swept), ("prediction", landscape is not None),
                                 *((k, is_dichotomy(cube)) for k in DICHOTOMY_KINDS),
                                 ("edge-of-stability", stability.available(cube)))
                 if ok) + measured


def render(
    cube: xr.Dataset,
    out_dir: str | Path,
    kinds: Sequence[str] | None = None,
    levels: Sequence[float] | None = None,
    smooth: float | None = None,
    values: Sequence[float] | None = None,
    landscape: xr.Dataset | None = None,
    cells: Sequence[str] | None = None,
) -> list[Path]:
    """Draw the requested kinds (default all) and write them; return the paths written.

    ``levels`` sets the contours of the thumb and the bands of the Goldilocks figure (default the
    cube's own, :func:`landscape.read.analysis.levels_of`), ``smooth`` the thumb's optional gaussian,
    ``values`` the axis values of the LU curves. For a dynamics cube, ``landscape`` (a landscape
    cube of the same task) enables the delay-prediction panel. ``cells`` ("w=..,N=..", see
    :func:`landscape.read.cells.parse_cells`) chooses the cells of the slice, density and
    interpolation figures (default :func:`landscape.read.cells.default_cells`).
    """
    _check_grid(cube)
    possible = available_kinds(cube, landscape)
    kinds = list(dict.fromkeys(kinds or possible))
    if cells:
        parse_cells(cube, cells)  # refused in one line even when no chosen kind draws cells
    unknown = [k for k in kinds if k not in possible]
    if unknown:
        raise UserError(f"figure kind {unknown[0]!r} is not available for this cube (choose from {', '.join(possible)})")
    builders: dict[str, Callable[[], Figure]] = {
        "lu": lambda: lu_figure(cube, values),
        "maps": lambda: maps_figure(cube, smooth=smooth or 0.0),
        "thumb": lambda: thumb_figure(cube, levels, smooth),
        "goldilocks": lambda: goldilocks_figure(cube, levels),
        "grokking": lambda: grokking_figure(cube),
        "times-wd": lambda: times_figure(cube, "wd"),
        "times-axis": lambda: times_figure(cube, cube.attrs["axis"]),
        "prediction": lambda: prediction_figure(cube, delay_prediction(cube, landscape)),
        "dichotomy": lambda: dichotomy_figure(cube),
        "transition": lambda: transition_figure(cube),
        "sharpness": lambda: sharpness.sharpness_figure(cube, levels),
        "collapse": lambda: collapse.collapse_figure(cube, levels),
        "edge-of-stability": lambda: stability.stability_figure(cube),
        "slice": lambda: slices.slice_figure(cube, chosen("slice")),
        "density": lambda: density.density_figure(cube, chosen("density")),
        "interpolation": lambda: interpolation.interpolation_figure(cube, chosen("interpolation")),
    }

    def chosen(kind: str) -> list[dict]:
        if cells:
            return parse_cells(cube, cells)
        var = CELL_KINDS[kind][0] or next(density.density_var(s) for s in SPACES if density.density_var(s) in cube)
        return default_cells(cube, var)

    # Draw everything before writing anything: bad input found by a later kind leaves no partial output.
    figures = {kind: builders[kind]() for kind in kinds}
    return [path for kind, fig in figures.items() for path in save(fig, out_dir, kind)]


def _check_grid(cube: xr.Dataset) -> None:
    """Refuse a cube with a grid value no axis can place (alpha = inf, NaN) or one it holds twice (m = [0.0, 0])."""
    for dim in cube["status"].dims:
        values = np.asarray(cube[dim].values)
        if np.issubdtype(values.dtype, np.number) and not np.isfinite(values).all():
            bad = values[~np.isfinite(values)][0]
            raise UserError(f"the cube's {dim} grid holds {bad}: figures need finite grid values")
        unique, counts = np.unique(values, return_counts=True)
        if (counts > 1).any():
            raise UserError(f"the cube's {dim} grid holds {unique[counts > 1][0]} twice: figures need distinct grid values")
