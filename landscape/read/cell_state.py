"""One cell's stored parameters and buffers (``[store] params = true``) as a numpy state_dict,
the cell named by its coordinates: ``cell_state(cube, w=2.0, N=200, seed=0)``.

Each cell dim is named by keyword (``alpha`` may stand for ``w``); a dim with one value may be left
out. A value must match a coordinate to a relative 1e-6 (w values are products like alpha * w0):
another cell's weights are never handed back in place of the one asked for. The cell's values are
checked against its checksum, reading only its own chunks.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from landscape.cube.params import BUFFERS, LAYOUT_ATTR, PARAMS, StateLayout
from landscape.cube.schema import STATUS_DIVERGED, STATUS_PENDING
from landscape.cube.store import open_cube
from landscape.cube.verify import cell_matches
from landscape.errors import UserError


def as_cube(cube: str | Path | xr.Dataset) -> xr.Dataset:
    return cube if isinstance(cube, xr.Dataset) else open_cube(cube)


def cell_index(ds: xr.Dataset, coords: dict[str, Any]) -> dict[str, int]:
    """The index along each cell dim of the cell whose coordinates ``coords`` gives."""
    dims = ds["status"].dims
    coords = dict(coords)
    if "alpha" in coords:
        if "w" in coords:
            raise UserError("name the cell's norm as w or as alpha, not both")
        coords["w"] = coords.pop("alpha") * float(ds.attrs["w0"])
    unknown = sorted(set(coords) - set(dims))
    if unknown:
        raise UserError(f"the cube has no dim {unknown[0]!r} (its cell dims: {', '.join(dims)}, or alpha for w)")
    index = {}
    for d in dims:
        values = ds[d].values
        if d not in coords:
            if len(values) > 1:
                raise UserError(f"name the cell's {d} (values: {_listed(values)})")
            index[d] = 0
            continue
        hits = np.flatnonzero(np.isclose(values.astype(float), float(coords[d]), rtol=1e-6, atol=0))
        if not len(hits):
            raise UserError(f"{d} = {coords[d]!r} is not in the cube (values: {_listed(values)})")
        index[d] = int(hits[0])
    return index


def cell_state(cube: str | Path | xr.Dataset, **coords: Any) -> dict[str, np.ndarray]:
    """The cell's final state_dict (parameters, then buffers) in its recorded shapes and dtypes."""
    ds = as_cube(cube)
    if PARAMS not in ds or LAYOUT_ATTR not in ds.attrs:
        raise UserError("the cube holds no parameters: run its grid with [store] params = true")
    index = cell_index(ds, coords)
    status = int(ds["status"].isel(index).values)
    named = ", ".join(f"{d}={ds[d].values[i]:g}" for d, i in index.items())
    if status == STATUS_PENDING:
        raise UserError(f"cell {named} is pending: rerun `landscape grid` to train it")
    if status == STATUS_DIVERGED:
        raise UserError(f"cell {named} diverged: it has no final parameters")
    if not cell_matches(ds, index):
        raise UserError(f"cell {named} is damaged (values do not match its checksum): rerun `landscape grid` to repair it")
    buffers = ds[BUFFERS].isel(index).values if BUFFERS in ds else None
    return StateLayout.from_attr(ds.attrs[LAYOUT_ATTR]).unflatten(ds[PARAMS].isel(index).values, buffers)


def _listed(values: np.ndarray) -> str:
    return ", ".join(f"{v:g}" for v in values)
