"""One cell's slice as an HDF5 surface file in the layout of loss-landscape's ``plot_surface.py``
(Li et al. 2018, tomgoldstein/loss-landscape), so that its ``plot_1D.py``, ``plot_2D.py`` and
``h52vtp.py`` (ParaView) read it:

- ``xcoordinates`` (and ``ycoordinates`` for a 2-D slice): the slice's coefficients;
- ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``: accuracies in percent, as its
  ``evaluation.eval_loss`` returns them. A 2-D array is indexed [y, x]: its points are enumerated by
  ``np.meshgrid(x, y)`` and its plots draw ``contour(*np.meshgrid(x, y), Z)``.

The file's attrs say which cube and cell it came from and how the directions are regenerated (the
cube's ``slice_*`` attrs). Needs the optional extra ``h5`` (h5py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from landscape.errors import UserError
from landscape.read.cells import select_cell

#: The cube's slice variables by the surface file's names, and whether the value is an accuracy.
NAMES = {"train_loss": ("slice_train_loss", False), "train_acc": ("slice_train_err", True),
         "test_loss": ("slice_test_loss", False), "test_acc": ("slice_test_err", True)}
AXES = (("slice_x", "xcoordinates"), ("slice_y", "ycoordinates"))


def surface(ds: xr.Dataset, cell: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The datasets and attrs of the surface file of ``cell`` (landscape.read.cells.select_cell)."""
    if "slice_train_loss" not in ds:
        raise UserError("the cube has no slices: its spec has no [measure] slice = {...}")
    index = select_cell(ds, cell)
    data: dict[str, np.ndarray] = {}
    for dim, name in AXES:
        if dim in ds["slice_train_loss"].dims:
            data[name] = ds[dim].values.astype(np.float64)
    for name, (variable, accuracy) in NAMES.items():
        values = ds[variable].isel(index).transpose(*(d for d, _ in AXES[::-1] if d in ds[variable].dims)).values
        data[name] = 100.0 * (1.0 - values) if accuracy else values.astype(np.float64)
    if not np.isfinite(data["train_loss"]).any():
        raise UserError(f"cell {cell!r} has no slice values (not computed yet, or diverged)")
    attrs = {"cell": ",".join(f"{d}={ds[d].values[i]}" for d, i in index.items()),
             **{k: v for k, v in ds.attrs.items() if k.startswith("slice_")}}
    return data, attrs


def export(ds: xr.Dataset, cell: str, out: str | Path, source: str = "") -> Path:
    """Write ``cell``'s slice of ``ds`` to the HDF5 file ``out``; returns its path."""
    data, attrs = surface(ds, cell)
    try:
        import h5py
    except ImportError:
        raise UserError("HDF5 export needs h5py: pip install 'landscape[h5]'") from None
    out = Path(out)
    with h5py.File(out, "w") as f:
        for name, values in data.items():
            f[name] = values
        for key, value in {**attrs, "source": source}.items():
            f.attrs[key] = value
    return out
