"""Cells of a cube named on the command line, ``"w=..,N=.."``, read against the cube's own grid: the
cells a per-cell figure draws (``--cells``; by default the best-test cell and the extreme w at its
axis value) and the one cell ``landscape export`` writes (``--cell``)."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from landscape.cube.schema import STATUS_DONE
from landscape.errors import UserError
from landscape.read.analysis import metric_of

#: A given value picks the nearest stored one when within this relative distance (values printed
#: to four digits, ``w=3.162``, still match); further off it is refused, naming the stored values.
_TOLERANCE = 0.05


def parse_cells(cube: xr.Dataset, texts: Sequence[str], flag: str = "--cells") -> list[dict[str, Any]]:
    """One ``.sel`` dict per cell named in ``texts`` (each repeatable option value may hold several,
    ';'-separated). Keys are the cube's cell dims, or ``alpha`` for w; ``seed`` defaults to the first
    and a dim with one value to it; any other dim must be given."""
    dims = list(cube["status"].dims)
    cells = []
    for text in (part.strip() for t in texts for part in t.split(";")):
        if not text:
            continue
        given: dict[str, str] = {}
        for item in text.split(","):
            key, sep, value = item.partition("=")
            key = key.strip()
            if not sep or key not in (*dims, "alpha"):
                raise UserError(f"{flag} {text!r}: {item.strip()!r} is not KEY=VALUE with KEY one of "
                                f"{', '.join(dims + ['alpha'])}")
            given["w" if key == "alpha" else key] = value if key != "alpha" else f"alpha:{value}"
        cell = {}
        for d in dims:
            stored = cube[d].values
            if d in given:
                cell[d] = _nearest(cube, d, given[d], text, flag)
            elif stored.size == 1 or d == "seed":
                cell[d] = stored[0]
            else:
                raise UserError(f"{flag} {text!r}: give {d} too ({d}: {_listing(stored)})")
        cells.append(cell)
    return cells


def _nearest(cube: xr.Dataset, dim: str, text: str, cell: str, flag: str) -> Any:
    by_alpha = text.startswith("alpha:")
    stored = cube["alpha"].values if by_alpha else cube[dim].values
    name = "alpha" if by_alpha else dim
    value = text.removeprefix("alpha:")
    try:
        x = float(value)
    except ValueError:
        raise UserError(f"{flag} {cell!r}: {name}={value.strip()} is not a number") from None
    stored_f = stored.astype(float)
    i = int(np.argmin(np.abs(stored_f - x)))
    if not abs(stored_f[i] - x) <= _TOLERANCE * max(abs(x), abs(stored_f[i]), 1e-12):
        raise UserError(f"{flag} {cell!r}: {name}={value.strip()} is not in the cube ({name}: {_listing(stored)})")
    return cube[dim].values[i]


def select_cell(cube: xr.Dataset, text: str, flag: str = "--cell") -> dict[str, int]:
    """The index along each cell dim of the one cell ``text`` names (as :func:`parse_cells`)."""
    cells = parse_cells(cube, [text], flag)
    if len(cells) != 1:
        raise UserError(f"{flag} {text!r}: name one cell, e.g. \"w=1.5,N=200\"")
    return {d: int(np.flatnonzero(cube[d].values == v)[0]) for d, v in cells[0].items()}


def _listing(values: np.ndarray) -> str:
    return ", ".join(f"{v:.4g}" if isinstance(v, float | np.floating) else str(v) for v in values)


def default_cells(cube: xr.Dataset, var: str) -> list[dict[str, Any]]:
    """The finished cell with the lowest test metric among those that measured ``var``, and the
    smallest and largest w measured at its other coordinates: a sharp, a Goldilocks and a flat cell."""
    dims = list(cube["status"].dims)
    measured = (cube["status"] == STATUS_DONE) & cube[var].notnull().any([d for d in cube[var].dims if d not in dims])
    test = cube[f"test_{metric_of(cube)}"].where(measured).compute()
    if not bool(measured.any()):
        raise UserError(f"no finished cell of the cube has {var} (every cell is pending or diverged)")
    best = dict(zip(dims, np.unravel_index(int(np.nanargmin(np.where(measured, test.values, np.nan))), test.shape)))
    along_w = measured.isel({d: i for d, i in best.items() if d != "w"}).values
    ws = np.flatnonzero(along_w)
    picks = list(dict.fromkeys([best["w"], int(ws[0]), int(ws[-1])]))
    return [{d: cube[d].values[best[d] if d != "w" else i] for d in dims} for i in sorted(picks)]


def cell_label(cube: xr.Dataset, cell: dict[str, Any]) -> str:
    """E.g. "α=1, N=100" (seed only when the cube has several): the cell's grid values."""
    parts = [f"α={float(cube['alpha'].sel(w=cell['w'])):.3g}"]
    parts += [f"{d}={v:.3g}" if isinstance(v, float | np.floating) else f"{d}={v}" for d, v in cell.items()
              if d != "w" and (d != "seed" or cube.sizes["seed"] > 1)]
    return ", ".join(parts)
