"""One cell of a cube named on the command line: ``"w=1.5,N=200,seed=0"``.

Every cell dim with more than one value must be named; a dim with one value may be left out. Numbers
match a coordinate to a relative 1e-6 (the cube's w values are products like alpha * w0).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from landscape.errors import UserError

#: A variable over the cell dims in every cube.
CELL_VARIABLE = "train_loss"


def cell_dims(ds: xr.Dataset) -> tuple[str, ...]:
    return tuple(str(d) for d in ds[CELL_VARIABLE].dims)


def select_cell(ds: xr.Dataset, text: str, flag: str = "--cell") -> dict[str, int]:
    """The index along each cell dim of the cell ``text`` names."""
    dims = cell_dims(ds)
    named: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep or key not in dims:
            raise UserError(f"{flag} {text!r}: {part!r} should be DIM=VALUE with DIM one of {', '.join(dims)}")
        named[key] = value.strip()
    index = {}
    for d in dims:
        values = ds[d].values
        if d not in named:
            if len(values) > 1:
                raise UserError(f"{flag} {text!r} names no {d} (values: {_listed(values)})")
            index[d] = 0
            continue
        hits = np.flatnonzero(_matches(values, named[d]))
        if len(hits) == 0:
            raise UserError(f"{flag} {text!r}: {d} has no value {named[d]} (values: {_listed(values)})")
        index[d] = int(hits[0])
    return index


def _matches(values: np.ndarray, text: str) -> np.ndarray:
    if np.issubdtype(values.dtype, np.number):
        try:
            number = float(text)
        except ValueError:
            return np.zeros(len(values), dtype=bool)
        return np.isclose(values.astype(float), number, rtol=1e-6, atol=0)
    return np.array([str(v) == text for v in values])


def _listed(values: Any) -> str:
    return ", ".join(f"{v:g}" if isinstance(v, (float, np.floating)) else str(v) for v in values)
