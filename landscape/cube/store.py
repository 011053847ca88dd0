"""The cube: one xarray Dataset in zarr holding every cell of a grid. It is the contract with plots.

Dims ``w``, the task's axis (``N``, ``m``, ...), ``seed`` and ``step``. The store is created as
metadata only: no chunk is written, and zarr reads an absent chunk as its fill value (NaN for
floats, 0 for integers, so status 0 = pending), which keeps creation at a fraction of a second
whatever the grid's size. The driver, the only writer, then fills one cell at a time into its own
chunks: the values with their ``checksum`` (crc32 of the cell's values), then status, the commit
mark, so an interrupted run never leaves a half-written cell marked done. ``verify`` reads the
finished cells back against their checksums: a resumed grid recomputes the damaged ones, and the
readers (``open_cube(..., verify=True)``) refuse a damaged cube in one line.
"""
from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import math
import os
import shutil
import uuid
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import dask.array as da
import numpy as np
import xarray as xr

from landscape.cube.schema import (AXIS_ROLES, CURVES, KINDS, METRICS, SCHEMA_VERSION, STATUS_DIVERGED, STATUS_DONE,
                                   STATUS_PENDING, TRANSITION, TRANSITION_DEFINITION, CellResult, Quantity,
                                   reference_metric)
from landscape.cube.verify import _damaged, _show, checksums, describe_damage, verify_cells
from landscape.errors import StoreError, UserError, first_line
from landscape.safeio import read_bounded

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
    "checksum": {"long_name": "crc32 of the cell's values as written (landscape.cube.checksums); 0 while pending"},
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
    quantities: Sequence[Quantity] = (),
    measure_coords: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """An all-pending cube with the full schema; ``coords`` gives the values along each of ``dims``.

    ``steps`` is the union of every cell's eval steps (cells whose step budget depends on their
    axis value evaluate at their own subset). ``layers`` names the task's parameter groups, whose
    norms ``layer_norm_curve`` holds. ``extra_curves`` / ``extra_values`` (name -> long name) are a
    task's own per-eval scalars and per-cell constants (``Task.extra_curves``, ``Task.extra_values``):
    ``<name>_curve`` and ``<name>``. ``quantities`` are the run's measurements (Quantity), over the
    cell dims plus their own, whose coordinates ``measure_coords`` gives.
    """
    extra_curves, extra_values = extra_curves or {}, extra_values or {}
    shape = tuple(len(coords[d]) for d in dims)

    def pending(extra: tuple[int, ...] = (), dtype: Any = float) -> Any:
        """An unwritten variable: a lazy constant, so creating the cube writes none of its chunks."""
        return da.full(shape + extra, np.nan if np.dtype(dtype).kind == "f" else 0, dtype=dtype, chunks=-1)

    data: dict[str, Any] = {m: (dims, pending()) for m in METRICS}
    data["norm"] = (dims, pending())
    data["seconds"] = (dims, pending())
    data["steps"] = (dims, pending(dtype=np.int64))
    data["status"] = (dims, pending(dtype=np.int8))
    for name in ("t_fit", "t_gen"):
        data[name] = (dims, pending())
    for name in ("fit_reached", "gen_reached"):
        data[name] = (dims, pending(dtype=np.int8))
    for m in (*CURVES, *extra_curves):
        data[f"{m}_curve"] = (dims + ("step",), pending((len(steps),)))
    data["layer_norm_curve"] = (dims + ("layer", "step"), pending((len(layers), len(steps))))
    for name in extra_values:
        data[name] = (dims, pending())
    measure_coords = dict(measure_coords or {})
    for q in quantities:
        own = tuple(len(measure_coords[d]) for d in q.dims)
        data[q.name] = (dims + q.dims, pending(own, q.dtype))
        if q.curve:
            data[f"{q.name}_curve"] = (dims + q.dims + ("step",), pending(own + (len(steps),), q.dtype))
    if reference_metric(extra_values):
        data[TRANSITION] = (dims, pending())
    data["checksum"] = (dims, pending(dtype=np.int64))
    w = np.asarray(coords["w"], dtype=float)
    coord_vars = {d: (d, np.asarray(coords[d]), _AXIS_ATTRS.get(d, {})) for d in dims}
    coord_vars["w"] = ("w", w, {"long_name": "global parameter norm ‖θ‖₂ (initial norm when unconstrained)", "units": "1"})
    coord_vars[axis] = (axis, np.asarray(coords[axis]), {"long_name": axis_long_name})
    coord_vars["alpha"] = ("w", w / w0, {"long_name": "initial scale α = w/w₀", "units": "1"})
    coord_vars["step"] = ("step", np.asarray(steps, dtype=np.int64), {"long_name": "optimizer step", "units": "steps"})
    coord_vars["layer"] = ("layer", np.asarray(layers, dtype=object), {"long_name": "parameter group (Task.parameter_groups)"})
    for d, values in measure_coords.items():
        values = np.asarray(values)
        coord_vars[d] = (d, values.astype(object) if values.dtype.kind == "U" else values)
    ds = xr.Dataset(data, coords=coord_vars, attrs={**attrs, "w0": float(w0), "axis": axis})
    for name, a in _VAR_ATTRS.items():
        ds[name].attrs.update(a)
    for m in CURVES:
        long_name = _VAR_ATTRS[m]["long_name"].split(" (")[0] + " at each eval step"
        ds[f"{m}_curve"].attrs.update({**_VAR_ATTRS[m], "long_name": long_name})
    ds["layer_norm_curve"].attrs.update({"long_name": "L2 norm of each parameter group at each eval step", "units": "1"})
    for name, long_name in extra_curves.items():
        ds[f"{name}_curve"].attrs["long_name"] = long_name
    for name, long_name in extra_values.items():
        ds[name].attrs["long_name"] = long_name
    for q in quantities:
        ds[q.name].attrs.update({"long_name": q.long_name, "units": q.units})
        if q.curve:
            ds[f"{q.name}_curve"].attrs.update({"long_name": f"{q.long_name} at each eval step", "units": q.units})
    if TRANSITION in ds:
        ds[TRANSITION].attrs.update({"long_name": "measured kernel-to-rich transition", "units": "steps",
                                     "definition": TRANSITION_DEFINITION})
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
    """Write the template ``ds`` as a store of metadata and coordinates; its variables' chunks are
    left unwritten (they read as fill values until ``write_cell``). ``overwrite`` replaces only a
    cube this program wrote (``check_replaceable``)."""
    path = Path(path)
    # One chunk per cell (all its steps, layers and measurement dims together): each cell's write
    # touches only its own chunks.
    cell_dims = set(ds["status"].dims)
    chunks = {name: {"chunks": tuple(1 if d in cell_dims else ds.sizes[d] for d in ds[name].dims)}
              for name in ds.data_vars}
    try:
        # Write to a fresh temporary folder first, so a crash mid-creation never leaves a half-made
        # cube, and no name a user may have taken (``<cube>.partial``) is ever reused or deleted.
        tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:12]}")
        tmp.mkdir()  # not mkdtemp: its mode 0700 would become the cube's
    except OSError as e:
        raise StoreError(f"cannot create {path}: {e.strerror or e}") from None
    try:
        # zarr format 2 with consolidated metadata: readable by zarr 2.x and 3.x and by other tools.
        # compute=False: only metadata and coordinates are written, never the (lazy) variables.
        ds.to_zarr(tmp, mode="w-", encoding=chunks, consolidated=True, zarr_format=2, compute=False)
        if overwrite and os.path.lexists(path):
            check_replaceable(path, overwrite)  # again, right before deleting: the path may have changed
            shutil.rmtree(path)
        tmp.rename(path)
    except OSError as e:
        raise StoreError(f"cannot create {path}: {e.strerror or e}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


#: Entries of a cube's folder besides one folder per variable: zarr's group metadata, and the
#: write probe of landscape.run.preflight.check_writable (left behind only by a driver killed in mid-probe).
_CUBE_FILES = (".zattrs", ".zgroup", ".zmetadata")
PROBE_PREFIX = ".landscape-probe-"
#: Largest metadata file (.zattrs, .zarray, .zmetadata) a reader reads: a cube of 10^5 cells has ~100 kB.
METADATA_LIMIT = 64 << 20


def not_own_cube(path: Path, whole: bool = True) -> str | None:
    """Why the existing ``path`` is not a cube this program wrote, or None when it is one: a zarr-2
    group whose root attrs carry this package's version, with a ``status`` array, and (``whole``)
    nothing in it but zarr's entries. A damaged cube of ours still qualifies, so that --overwrite
    can repair it."""
    if path.is_symlink() or not path.is_dir():
        return "exists and is not a zarr directory"
    try:
        attrs = json.loads(read_bounded(path / ".zattrs", METADATA_LIMIT, follow_symlinks=False))
    except (OSError, ValueError, RecursionError):
        return "is not a zarr cube (no readable .zattrs)"
    if not isinstance(attrs, dict) or "version_landscape" not in attrs or not (path / "status" / ".zarray").is_file():
        return "is not a landscape cube (its attrs are not landscape's)"
    if not whole:
        return None
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.is_file(follow_symlinks=False) and entry.name in _CUBE_FILES:
                continue
            if entry.is_dir(follow_symlinks=False) and (entry.name.startswith(PROBE_PREFIX)
                                                        or os.path.isfile(os.path.join(entry.path, ".zarray"))):
                continue
            return f"holds {entry.name!r}, which is not part of a landscape cube"
    return None


def check_replaceable(path: Path, overwrite: bool) -> None:
    """An existing ``path`` must be a cube this program wrote, to be resumed or, with ``overwrite``,
    replaced (and then hold nothing else, which would be deleted with it); anything else is refused,
    untouched."""
    why = not_own_cube(path, whole=overwrite) if os.path.lexists(path) else None
    if why:
        action = "--overwrite replaces only a cube this program wrote" if overwrite else "name a new path for the cube"
        raise UserError(f"--out {path} {why}; {action} (nothing was changed)")


#: Attrs every reader needs; a cube without one of them is damaged.
REQUIRED_ATTRS = ("task", "spec", "w0", "axis", "data_source", "created")


def open_cube(path: str | Path, verify: bool = False) -> xr.Dataset:
    """Open a cube lazily; a path that is not a landscape cube, or whose attrs or coordinates are
    damaged, is a UserError. ``verify``: also read back every finished cell (``verify``) and refuse
    a damaged cube, naming the first damaged variable and cell."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist")
    if path.is_dir():
        _check_entries(path)
    try:
        with warnings.catch_warnings():  # a store without consolidated metadata opens anyway: no warning line
            warnings.simplefilter("ignore", RuntimeWarning)
            # chunks=None: lazy arrays read by zarr itself, not one dask task per chunk; with a chunk
            # per cell that reads a 10^4-cell cube 12x faster (info: 24 s against 282 s, measured).
            ds = xr.open_zarr(path, chunks=None)
    except Exception as e:  # zarr raises several types for "not a store", and codecs for damaged coordinates
        raise UserError(f"{path} is not a zarr cube, or cannot be read ({type(e).__name__}: {first_line(e)})") from None
    if "spec" not in ds.attrs or "status" not in ds:
        raise UserError(f"{path} is a zarr store but not a landscape cube (no spec/status)")
    _check_attrs(path, ds)
    if verify:
        read: dict[str, np.ndarray] = {}
        status, damage = verify_cells(ds, path, read)
        if damage:
            raise UserError(describe_damage(path, ds, damage) + "; rerun `landscape grid` with the same spec to repair")
        if read:
            ds = _in_memory(ds, status, read)
    return ds


def _check_entries(path: Path) -> None:
    """Every entry of the store is a folder or a regular file, and its metadata files are of a
    bounded size: a FIFO or a device in a cube would hang a reader, and zarr reads metadata whole."""
    folders = [path]
    while folders:
        with os.scandir(folders.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(Path(entry.path))
                elif not entry.is_file(follow_symlinks=False):
                    raise _damaged(path, f"{Path(entry.path).relative_to(path)} is not a regular file")
                elif entry.name.startswith(".z") and entry.stat(follow_symlinks=False).st_size > METADATA_LIMIT:
                    raise _damaged(path, f"{Path(entry.path).relative_to(path)} is larger than {METADATA_LIMIT} bytes")


#: Deepest nesting of the spec attr: a spec is tables of tables a few levels deep; a deeper one is
#: damage, not something to recurse into.
SPEC_DEPTH = 16


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests containers more than ``limit`` levels deep (walked level by level, not recursively)."""
    level = [value]
    for _ in range(limit):
        level = [v for x in level if isinstance(x, (dict, list)) for v in (x.values() if isinstance(x, dict) else x)]
    return any(isinstance(x, (dict, list)) for x in level)


def _in_memory(ds: xr.Dataset, status: np.ndarray, finished_values: dict[str, np.ndarray]) -> xr.Dataset:
    """The cube with its per-cell variables as arrays: the finished cells' values as just read and
    verified, fill values elsewhere. zarr looks up every chunk of a variable it reads, pending or not,
    which made `info` on a 10^5-cell cube take two minutes."""
    finished = tuple(np.argwhere(status != STATUS_PENDING).T)
    data: dict[str, Any] = {"status": (ds["status"].dims, status.astype(ds["status"].dtype), ds["status"].attrs)}
    for name, cells in finished_values.items():
        var = ds[name]
        full = np.full(var.shape, np.nan if np.issubdtype(var.dtype, np.floating) else 0, dtype=var.dtype)
        full[finished] = cells
        data[name] = (var.dims, full, var.attrs)
    return ds.assign(data)


def _check_attrs(path: Path, ds: xr.Dataset) -> None:
    def damaged(what: str) -> UserError:
        return _damaged(path, what)

    for name in REQUIRED_ATTRS:
        if name not in ds.attrs:
            raise damaged(f"attr {name!r} is missing")
    try:
        spec = json.loads(ds.attrs["spec"])
    except (TypeError, ValueError, RecursionError) as e:
        raise damaged(f"attr 'spec' is not valid JSON ({first_line(e)})") from None
    if not isinstance(spec, dict):
        raise damaged("attr 'spec' is not a JSON table")
    if _deeper_than(spec, SPEC_DEPTH):
        raise damaged(f"attr 'spec' is nested deeper than {SPEC_DEPTH} levels")
    try:
        w0 = float(ds.attrs["w0"])
    except (TypeError, ValueError):
        w0 = math.nan
    if not (math.isfinite(w0) and w0 > 0):
        raise damaged(f"attr 'w0' = {ds.attrs['w0']!r} is not a positive number")
    if ds.attrs["axis"] not in ds["status"].dims:
        raise damaged(f"attr 'axis' = {ds.attrs['axis']!r} is not a dimension of the cube")
    axes = spec.get("axes")
    if isinstance(axes, dict):  # the coordinates are the spec's axes (w from alpha by w0)
        for name, values in axes.items():
            coord = "w" if name == "alpha" else name
            if coord not in ds.coords:
                raise damaged(f"coordinate {coord!r} is missing")
            stored = ds[coord].values / w0 if name == "alpha" else ds[coord].values
            if not _same_values(stored, values):
                raise damaged(f"coordinate {coord!r} does not match the spec's axes.{name}")
    _check_schema_attrs(ds.attrs, damaged)


def _check_schema_attrs(attrs: Mapping[str, Any], damaged: Callable[[str], UserError]) -> None:
    """The attrs that say what the cube is (schema version 2 on; version-1 cubes have none)."""
    version = attrs.get("schema_version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise damaged(f"attr 'schema_version' = {version!r} is not a schema version")
    if version > SCHEMA_VERSION:
        raise UserError(f"the cube has schema version {version}, newer than this landscape's "
                        f"{SCHEMA_VERSION}: upgrade landscape to read it")
    if version < 2:
        return
    for name, allowed in (("kind", KINDS), ("axis_role", AXIS_ROLES)):
        if attrs.get(name) not in allowed:
            raise damaged(f"attr {name!r} = {_show(attrs.get(name))} is none of {', '.join(allowed)}")
    refs = attrs.get("reference_predictors")
    if not (isinstance(refs, list) and all(isinstance(r, str) for r in refs)):
        raise damaged(f"attr 'reference_predictors' = {_show(refs)} is not a list of names")


def _same_values(stored: np.ndarray, given: list[Any]) -> bool:
    if len(stored) != len(given):
        return False
    try:
        return bool(np.allclose(np.asarray(stored, dtype=float), np.asarray(given, dtype=float), rtol=1e-9, atol=0))
    except (TypeError, ValueError):
        return [str(v) for v in stored] == [str(v) for v in given]


def stored_spec(ds: xr.Dataset) -> dict[str, Any]:
    return json.loads(ds.attrs["spec"])


def write_cell(path: str | Path, dims: tuple[str, ...], index: tuple[int, ...], result: CellResult, steps: np.ndarray,
               times: Mapping[str, float]) -> None:
    """Write one finished cell into its region. Status goes last: it is the commit mark.

    ``steps`` is the cube's step coordinate (the cell's own eval steps are a subset of it) and
    ``times`` the cell's ``t_fit``, ``t_gen`` and, for a run with references, ``t_transition``:
    measured by the run layer (the readers' rules), so that the store imports none of them.
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
    # Measures come as float64; zarr casts them to their variable's dtype (Quantity.dtype), exactly
    # for values that were of that dtype, as stored parameters are.
    for name, v in result.measures.items():
        cell[name] = (dims + result.measure_dims[name], np.asarray(v, dtype=float).reshape(one + np.shape(v)))
    for name, v in result.measure_curves.items():
        cell[f"{name}_curve"] = (dims + result.measure_dims[name] + ("step",), on_steps(np.asarray(v, dtype=float)))
    cell["norm"] = (dims, np.full(one, result.norm))
    cell["seconds"] = (dims, np.full(one, result.seconds))
    cell["steps"] = (dims, np.full(one, result.steps, dtype=np.int64))
    for name in ("fit", "gen"):
        t = times[f"t_{name}"]
        cell[f"t_{name}"] = (dims, np.full(one, t))
        cell[f"{name}_reached"] = (dims, np.full(one, np.isfinite(t), dtype=np.int8))
    if TRANSITION in times and (Path(path) / TRANSITION).is_dir():  # cubes made before t_transition have none
        cell[TRANSITION] = (dims, np.full(one, times[TRANSITION] if done else np.nan))
    if (Path(path) / "checksum").is_dir():  # cubes made before checksums existed have none
        cell["checksum"] = (dims, checksums({n: v for n, (_, v) in cell.items()}, len(dims)).reshape(one))
    status = STATUS_DONE if done else STATUS_DIVERGED
    # write_empty_chunks: a chunk equal to the fill value (a diverged cell's NaN) is written too, so
    # that every finished cell has all its chunks and a missing one is damage.
    try:
        xr.Dataset(cell).to_zarr(path, region=region, consolidated=False, write_empty_chunks=True)
        xr.Dataset({"status": (dims, np.full(one, status, dtype=np.int8))}).to_zarr(
            path, region=region, consolidated=False, write_empty_chunks=True)
    except OSError as e:
        raise StoreError(f"cannot write to {path}: {e.strerror or e}") from None
