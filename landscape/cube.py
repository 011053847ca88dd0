"""The cube: one xarray Dataset in zarr holding every cell of a grid. It is the contract with plots.

Dims ``w``, the task's axis (``N``, ``m``, ...), ``seed`` and ``step``. The store is created in
full as a template (status 0 everywhere), then the driver, the only writer, fills one cell at a
time into its own chunks, status last, so an interrupted run never leaves a half-written cell
marked done. zarr writes each chunk atomically (temp file + rename).
"""
from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import xarray as xr

from landscape.dynamics import first_reach
from landscape.errors import UserError
from landscape.schema import CURVES, METRICS, STATUS_DIVERGED, STATUS_DONE, STATUS_PENDING

if TYPE_CHECKING:  # the cube is read by torch-free code (plots, info); only the writer sees a CellResult
    from landscape.train import CellResult

_VAR_ATTRS: dict[str, dict[str, str]] = {
    "train_loss": {"long_name": "reduced training loss (final eval)", "units": "1"},
    "test_loss": {"long_name": "reduced test loss (final eval)", "units": "1"},
    "train_err": {"long_name": "training error, 1 - accuracy (final eval)", "units": "1"},
    "test_err": {"long_name": "test error, 1 - accuracy (final eval)", "units": "1"},
    "norm": {"long_name": "global L2 norm of the constrained parameters (at the end)", "units": "1"},
    "steps": {"long_name": "optimizer steps run", "units": "steps"},
    "seconds": {"long_name": "wall time of the cell (trained in a batch: its share of the batch's time)", "units": "s"},
    "status": {"long_name": "cell status", "flag_values": "0 1 2", "flag_meanings": "pending done diverged"},
    "t_fit": {"long_name": "first eval step with train accuracy >= eval level (NaN: never)", "units": "steps"},
    "t_gen": {"long_name": "first eval step with test accuracy >= eval level (NaN: never)", "units": "steps"},
    "fit_reached": {"long_name": "train accuracy reached the eval level", "flag_values": "0 1"},
    "gen_reached": {"long_name": "test accuracy reached the eval level", "flag_values": "0 1"},
}
VERSIONED = ("landscape", "torch", "numpy", "xarray", "zarr")


_AXIS_ATTRS: dict[str, dict[str, str]] = {
    "wd": {"long_name": "weight decay γ", "units": "1"},
    "lr": {"long_name": "learning rate η", "units": "1"},
    "seed": {"long_name": "cell seed (init and batch order)"},
}


def template(
    *,
    dims: tuple[str, ...],
    coords: dict[str, list[Any]],
    axis: str,
    axis_long_name: str,
    w0: float,
    steps: np.ndarray,
    attrs: dict[str, Any],
    layers: list[str],
    extra_curves: Mapping[str, str] | None = None,
    extra_values: Mapping[str, str] | None = None,
) -> xr.Dataset:
    """An all-pending cube with the full schema; ``coords`` gives the values along each of ``dims``.

    ``steps`` is the union of every cell's eval steps (cells whose step budget depends on their
    axis value evaluate at their own subset). ``layers`` names the task's parameter groups, whose
    norms ``layer_norm_curve`` holds. ``extra_curves`` / ``extra_values`` (name -> long name) are a
    task's own per-eval scalars and per-cell constants (``Task.extra_curves``, ``Task.extra_values``):
    ``<name>_curve`` and ``<name>``.
    """
    extra_curves, extra_values = extra_curves or {}, extra_values or {}
    shape = tuple(len(coords[d]) for d in dims)
    nan = np.full(shape, np.nan)
    data: dict[str, Any] = {m: (dims, nan.copy()) for m in METRICS}
    data["norm"] = (dims, nan.copy())
    data["seconds"] = (dims, nan.copy())
    data["steps"] = (dims, np.zeros(shape, dtype=np.int64))
    data["status"] = (dims, np.full(shape, STATUS_PENDING, dtype=np.int8))
    for name in ("t_fit", "t_gen"):
        data[name] = (dims, nan.copy())
    for name in ("fit_reached", "gen_reached"):
        data[name] = (dims, np.zeros(shape, dtype=np.int8))
    for m in (*CURVES, *extra_curves):
        data[f"{m}_curve"] = (dims + ("step",), np.full(shape + (len(steps),), np.nan))
    data["layer_norm_curve"] = (dims + ("layer", "step"), np.full(shape + (len(layers), len(steps)), np.nan))
    for name in extra_values:
        data[name] = (dims, nan.copy())
    w = np.asarray(coords["w"], dtype=float)
    coord_vars = {d: (d, np.asarray(coords[d]), _AXIS_ATTRS.get(d, {})) for d in dims}
    coord_vars["w"] = ("w", w, {"long_name": "global parameter norm ‖θ‖₂ (initial norm when unconstrained)", "units": "1"})
    coord_vars[axis] = (axis, np.asarray(coords[axis]), {"long_name": axis_long_name})
    coord_vars["alpha"] = ("w", w / w0, {"long_name": "initial scale α = w/w₀", "units": "1"})
    coord_vars["step"] = ("step", np.asarray(steps, dtype=np.int64), {"long_name": "optimizer step", "units": "steps"})
    coord_vars["layer"] = ("layer", np.asarray(layers, dtype=object), {"long_name": "parameter group (Task.parameter_groups)"})
    ds = xr.Dataset(data, coords=coord_vars, attrs={**attrs, "w0": float(w0), "axis": axis})
    for name, a in _VAR_ATTRS.items():
        ds[name].attrs.update(a)
    for m in CURVES:
        ds[f"{m}_curve"].attrs.update({**_VAR_ATTRS[m], "long_name": _VAR_ATTRS[m]["long_name"].split(" (")[0] + " at each eval step"})
    ds["layer_norm_curve"].attrs.update({"long_name": "L2 norm of each parameter group at each eval step", "units": "1"})
    for name, long_name in extra_curves.items():
        ds[f"{name}_curve"].attrs["long_name"] = long_name
    for name, long_name in extra_values.items():
        ds[name].attrs["long_name"] = long_name
    return ds


def library_versions() -> dict[str, str]:
    out = {}
    for pkg in VERSIONED:
        try:
            out[f"version_{pkg}"] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            out[f"version_{pkg}"] = "unknown"
    return out


def standard_attrs(task: str, spec_json: str, data_source: str) -> dict[str, Any]:
    return {
        "task": task,
        "spec": spec_json,
        "data_source": data_source,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **library_versions(),
    }


def create(path: str | Path, ds: xr.Dataset, overwrite: bool = False) -> None:
    path = Path(path)
    if overwrite and path.exists():
        shutil.rmtree(path)
    # One chunk per cell (all its steps and layers together): each cell's write touches only its own chunks.
    chunks = {name: {"chunks": tuple(ds.sizes[d] if d in ("step", "layer") else 1 for d in ds[name].dims)}
              for name in ds.data_vars}
    # Write to a temporary name first, so a crash mid-creation never leaves a half-made cube.
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    # zarr format 2 with consolidated metadata: readable by zarr 2.x and 3.x and by other tools.
    ds.to_zarr(tmp, mode="w-", encoding=chunks, consolidated=True, zarr_format=2)
    tmp.rename(path)


def open_cube(path: str | Path) -> xr.Dataset:
    """Open a cube lazily; a path that is not a landscape cube is a UserError."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist")
    try:
        ds = xr.open_zarr(path)
    except Exception as e:  # zarr raises several types for "not a store"
        raise UserError(f"{path} is not a zarr cube ({type(e).__name__})") from None
    if "spec" not in ds.attrs or "status" not in ds:
        raise UserError(f"{path} is a zarr store but not a landscape cube (no spec/status)")
    return ds


def stored_spec(ds: xr.Dataset) -> dict[str, Any]:
    return json.loads(ds.attrs["spec"])


def write_cell(
    path: str | Path, dims: tuple[str, ...], index: tuple[int, ...], result: CellResult, steps: np.ndarray, level: float
) -> None:
    """Write one finished cell into its region. Status goes last: it is the commit mark.

    ``steps`` is the cube's step coordinate (the cell's own eval steps are a subset of it) and
    ``level`` the accuracy for t_fit / t_gen.
    """
    region = {d: slice(i, i + 1) for d, i in zip(dims, index)}
    one = (1,) * len(dims)
    at = np.searchsorted(steps, result.eval_steps)

    def on_steps(values: np.ndarray) -> np.ndarray:
        """A cell's per-eval values (last axis) spread onto the cube's step coordinate, NaN elsewhere."""
        out = np.full(values.shape[:-1] + (len(steps),), np.nan)
        out[..., at] = values
        return out.reshape(one + out.shape)

    done = result.status == STATUS_DONE
    evaluated = np.flatnonzero(~np.isnan(result.curves[0]))
    final = result.curves[:, evaluated[-1]] if (done and len(evaluated)) else np.full(len(CURVES), np.nan)
    cell = {m: (dims, np.full(one, v)) for m, v in zip(METRICS, final)}
    cell.update({f"{m}_curve": (dims + ("step",), on_steps(result.curves[i])) for i, m in enumerate(CURVES)})
    cell["layer_norm_curve"] = (dims + ("layer", "step"), on_steps(result.layer_norms))
    cell.update({f"{m}_curve": (dims + ("step",), on_steps(v)) for m, v in result.extra_curves.items()})
    cell.update({name: (dims, np.full(one, v)) for name, v in result.extra_values.items()})
    cell["norm"] = (dims, np.full(one, result.norm))
    cell["seconds"] = (dims, np.full(one, result.seconds))
    cell["steps"] = (dims, np.full(one, result.steps, dtype=np.int64))
    for name, err in (("fit", result.curves[CURVES.index("train_err")]), ("gen", result.curves[CURVES.index("test_err")])):
        t = first_reach(result.eval_steps, err, level)
        cell[f"t_{name}"] = (dims, np.full(one, t))
        cell[f"{name}_reached"] = (dims, np.full(one, np.isfinite(t), dtype=np.int8))
    xr.Dataset(cell).to_zarr(path, region=region, consolidated=False)
    status = STATUS_DONE if done else STATUS_DIVERGED
    xr.Dataset({"status": (dims, np.full(one, status, dtype=np.int8))}).to_zarr(path, region=region, consolidated=False)
