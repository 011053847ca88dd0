"""Render every kind of figure of a cube into a directory, as PNG and PDF."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import xarray as xr
from matplotlib.figure import Figure

from landscape.analysis import DEFAULT_LEVELS
from landscape.errors import UserError
from plots.goldilocks import goldilocks_figure
from plots.lu import lu_figure
from plots.style import save
from plots.thumb import thumb_figure

#: Figure kinds in the order they are drawn; each writes <kind>.png and <kind>.pdf.
KINDS = ("lu", "thumb", "goldilocks")


def render(
    cube: xr.Dataset,
    out_dir: str | Path,
    kinds: Sequence[str] | None = None,
    levels: Sequence[float] = DEFAULT_LEVELS,
    smooth: float | None = None,
    values: Sequence[float] | None = None,
) -> list[Path]:
    """Draw the requested kinds (default all) and write them; return the paths written.

    ``levels`` sets the contours of the thumb and the bands of the Goldilocks figure, ``smooth``
    the thumb's optional gaussian, ``values`` the axis values of the LU curves.
    """
    kinds = list(dict.fromkeys(kinds or KINDS))
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise UserError(f"unknown figure kind {unknown[0]!r} (choose from {', '.join(KINDS)})")
    builders: dict[str, Callable[[], Figure]] = {
        "lu": lambda: lu_figure(cube, values),
        "thumb": lambda: thumb_figure(cube, levels, smooth),
        "goldilocks": lambda: goldilocks_figure(cube, levels),
    }
    # Draw everything before writing anything: bad input found by a later kind leaves no partial output.
    figures = {kind: builders[kind]() for kind in kinds}
    return [path for kind, fig in figures.items() for path in save(fig, out_dir, kind)]
