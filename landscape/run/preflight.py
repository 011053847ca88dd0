"""Checks before a store is created, each refusal one line naming the value: where the cube goes
(``resolve_out``, ``check_writable``), what the task's outputs look like, and what a grid may cost:

- Norms: w = alpha w0 must be a finite number in the training dtype.
- Evals: at most MAX_EVALS per cell; every eval records every curve, so ``train.steps = 10^12``
  with an eval every 100 steps would be 10^10 evals before a single step is trained.
- A worker's memory: the training data of the largest axis value (a small probe of the task's data,
  scaled up when the axis counts training samples) plus the activations of one
  training step (the full batch unless ``train.batch_size``), counted on a forward pass of a few
  rows. It is a lower bound: autograd's buffers and batched cells come on top.
- The cube's memory: readers (``info``, plots, the verification on resume) hold whole variables;
  the curves are cells x evals x (curves + parameter groups) x 8 bytes.
- Stored parameters (``[store] params``): cells x parameters x the dtype's size on the disk of
  ``--out``, and x 8 bytes in memory, where the verification reads them back.

The cell count is the spec's own limit (``landscape.spec.MAX_CELLS``).
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import torch

from landscape import cube
from landscape.cube.schema import CURVES
from landscape.dtypes import torch_dtype
from landscape.errors import UserError, task_errors
from landscape.measures.hook import quantities_of
from landscape.measures.stored_params import params_measures
from landscape.measures.suite import cell_measures
from landscape.spec import EvalConfig, Spec, TrainConfig
from landscape.tasks import Split, Task
from landscape.train import EVAL_CHUNK, cell_steps, check_task_outputs, full_batch, steps_per_epoch
from landscape.train.objective import objective

#: Most evals of one cell (its curves' length).
MAX_EVALS = 100_000
#: Per-cell scalars of a cube beside the curves (final metrics, norm, steps, seconds, status, ...).
_SCALARS = 16
_GIB = 2**30
#: Training-set size of the data probe.
PROBE_SIZE = 64


def check(spec: Spec, task: Task, w: Sequence[float]) -> None:
    """Refuse the grid, in one line, if its norms ``w`` are not finite in the training dtype or it
    cannot fit in memory; call it before anything is created."""
    check_norms(spec, w)
    check_measure(spec, task)
    for loss in spec.train_axes.get("loss", [spec.train.loss]):
        objective(task, dataclasses.replace(spec.train, loss=loss))  # a UserError if the task cannot have it
    if spec.eval.points > MAX_EVALS:
        raise UserError(f"eval.points = {spec.eval.points:,} is more than the limit of {MAX_EVALS:,} evals per cell")
    if not _size_dependent(spec):
        check_evals(spec, eval_count(spec.train, spec.eval, 1), "")
    check_worker_memory(spec, task)
    sizes = {v: task.train_size(v) for v in spec.axis_values} if _size_dependent(spec) else {}
    for value, n in sizes.items():
        check_evals(spec, eval_count(spec.cell_train({}, value), spec.eval, n), f" at {spec.axis} = {value}")
    check_cube_memory(spec, task, sizes)


def check_norms(spec: Spec, w: Sequence[float]) -> None:
    largest = float(torch.finfo(torch_dtype(spec.train.dtype)).max)
    for given, norm in zip(spec.norm_values, w):
        if not abs(norm) <= largest:
            shown = "" if spec.norm_axis == "w" else f" gives w = {norm:.3g}, which"
            raise UserError(f"axes.{spec.norm_axis} = {given:g}{shown} is beyond the largest {spec.train.dtype} "
                            f"({largest:.3g})")


def check_measure(spec: Spec, task: Task) -> None:
    """The [measure] values that depend on the model: no more eigenvalues than parameters."""
    if spec.measure.hessian_top:
        params = sum(p.numel() for p in task.build_model().parameters() if p.requires_grad)
        if spec.measure.hessian_top > params:
            raise UserError(f"measure.hessian_top = {spec.measure.hessian_top:,} is more than the model's "
                            f"{params:,} parameters")


def eval_count(train: TrainConfig, evalc: EvalConfig, n: int) -> int:
    """Evals of a cell with n training samples, at most (``train.eval_steps`` without building them)."""
    if evalc.every == "log":
        return evalc.points + 2
    every = steps_per_epoch(n, train.batch_size) if evalc.every == "epoch" else int(evalc.every)
    return cell_steps(train, n) // every + 2


def check_evals(spec: Spec, count: int, where: str) -> None:
    if count > MAX_EVALS:
        every = (f"eval.points = {spec.eval.points}" if spec.eval.every == "log"
                 else f"eval.every = {spec.eval.every!r}, train.steps = {spec.train.steps}, train.epochs = {spec.train.epochs}")
        raise UserError(f"{every} gives {count:,} evals per cell{where}, more than the limit of {MAX_EVALS:,}; "
                        "evaluate less often")


def check_worker_memory(spec: Spec, task: Task) -> None:
    """One cell of the largest axis value: its training data plus one training step's activations."""
    itemsize = torch_dtype(spec.train.dtype).itemsize
    split, value, scale = _probe(spec, task)
    data = (_nbytes(split.train_x, itemsize) + _nbytes(split.train_y, itemsize)) * scale
    data += _nbytes(split.test_x, itemsize) + _nbytes(split.test_y, itemsize)
    rows = round(len(split.train_y) * scale)
    step_rows = rows if full_batch(rows, spec.train.batch_size) else spec.train.batch_size
    activations = _activation_floats_per_row(task, split) * max(step_rows, min(rows, EVAL_CHUNK)) * itemsize
    available = psutil.virtual_memory().available
    if data + activations > available:
        raise UserError(
            f"axes.{spec.axis} = {value}: one cell needs at least {_gib(data + activations)} (training data "
            f"{_gib(data)}, activations of a {step_rows:,}-row training step {_gib(activations)}), more than the "
            f"{_gib(available)} of memory available; use smaller axes.{spec.axis} or a train.batch_size")


def check_cube_memory(spec: Spec, task: Task, sizes: dict[Any, int]) -> None:
    cells = math.prod(len(v) for v in (spec.norm_values, spec.axis_values, *spec.train_axes.values(), spec.seeds))
    # The step coordinate is the union of the cells' schedules: one schedule, or at most their sum.
    evals = (sum(eval_count(spec.cell_train({}, v), spec.eval, n) for v, n in sizes.items()) if sizes
             else eval_count(spec.train, spec.eval, 1))
    curves = len(CURVES) + len(task.extra_curves) + _parameter_groups(task)
    quantities, coords = quantities_of(cell_measures(spec, task))
    measured = sum(math.prod(len(coords[d]) for d in q.dims) * (1 + (evals if q.curve else 0)) for q in quantities)
    size = cells * (evals * curves + _SCALARS + measured) * 8
    available = psutil.virtual_memory().available
    if size > available:
        raise UserError(
            f"the cube would hold {_gib(size)} ({cells:,} cells x ({evals:,} evals x {curves} curves + {measured:,} "
            f"measured values) x 8 bytes), more than the {_gib(available)} of memory available to read it back "
            "(info, plot, resume); evaluate or measure less often (eval.every, eval.points, measure.every) or use "
            "fewer cells")


def check_stored_params(spec: Spec, task: Task, out: Path) -> None:
    """``[store] params``: the cells' parameters and buffers fit on the disk of ``out`` and in memory."""
    cells = math.prod(len(v) for v in (spec.norm_values, spec.axis_values, *spec.train_axes.values(), spec.seeds))
    for m in params_measures(spec, task):
        quantities, coords = quantities_of([m])
        values = {q.name: len(coords[q.dims[0]]) for q in quantities}
        disk = cells * sum(n * np.dtype(q.dtype).itemsize for q, n in zip(quantities, values.values()))
        where = next(p for p in (out, *out.parents) if p.exists())
        free = shutil.disk_usage(where).free
        memory, available = cells * sum(values.values()) * 8, psutil.virtual_memory().available
        shown = " + ".join(f"{n:,} {name}" for name, n in values.items())
        if disk > free:
            raise UserError(f"store.params = true would keep {_sized(disk)} ({cells:,} cells x ({shown}) in "
                            f"{spec.train.dtype}), more than the {_sized(free)} free on the disk of {where}; "
                            "use fewer cells or another --out")
        if memory > available:
            raise UserError(f"store.params = true: {_sized(memory)} ({cells:,} cells x ({shown}) x 8 bytes) would not fit "
                            f"in the {_sized(available)} of memory available to read them back (info, resume); use fewer cells")


def _size_dependent(spec: Spec) -> bool:
    """Whether a cell's steps and evals depend on its training-set size (as in plan.schedules)."""
    return spec.train.epochs != 0 or spec.eval.every == "epoch"


def _probe(spec: Spec, task: Task) -> tuple[Split, Any, float]:
    """Data standing for the largest cell, cheaply: (a split, the axis value it stands for, the factor
    by which that value's training data outgrow the split's).

    When the axis counts training samples (the data of value n have n rows), PROBE_SIZE samples
    scaled up to the largest value; otherwise the data of the grid's first value.
    """
    values = spec.axis_values
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        size = min(PROBE_SIZE, *values)
        try:
            task.check_axis([size])
        except UserError:
            size = min(values)  # the task refuses small sizes: probe its smallest one
        split = task.data(size)
        if len(split.train_y) == size:
            return split, max(values), max(values) / size
    return task.data(values[0]), values[0], 1.0


def _nbytes(obj: Any, float_size: int) -> float:
    """Bytes of the tensors and arrays in ``obj`` once floats are cast to the training dtype."""
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        floating = obj.dtype.is_floating_point if isinstance(obj, torch.Tensor) else np.issubdtype(obj.dtype, np.floating)
        size = float_size if floating else obj.itemsize if isinstance(obj, np.ndarray) else obj.element_size()
        return float(obj.numel() if isinstance(obj, torch.Tensor) else obj.size) * size
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return sum(_nbytes(getattr(obj, f.name), float_size) for f in dataclasses.fields(obj))
    if isinstance(obj, dict):
        return sum(_nbytes(v, float_size) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_nbytes(v, float_size) for v in obj)
    return 0.0


def _activation_floats_per_row(task: Task, split: Split) -> float:
    """Floats the model's leaf modules output per input row, on a forward pass of two rows."""
    counts: list[int] = []
    with torch.random.fork_rng():
        model = task.build_model().eval()
    hooks = [m.register_forward_hook(lambda m, i, out: counts.append(out.numel() if torch.is_tensor(out) else 0))
             for m in model.modules() if next(m.children(), None) is None]
    rows = min(2, len(split.train_y))
    with torch.no_grad():
        model(task.select(split.train_x, torch.arange(rows)))
    for h in hooks:
        h.remove()
    return sum(counts) / rows


def _parameter_groups(task: Task) -> int:
    with torch.random.fork_rng():
        return len(task.parameter_groups(task.build_model()))


def _gib(size: float) -> str:
    return f"{size / _GIB:.1f} GiB"


def _sized(size: float) -> str:
    """Bytes in GiB, or in MiB below one GiB (a parameter store is often smaller)."""
    return _gib(size) if size >= _GIB else f"{size / 2**20:.1f} MiB"


#: Files that make a folder a zarr store (format 2 group or array, format 3).
ZARR_MARKS = (".zgroup", ".zarray", "zarr.json")


def resolve_out(out: str | Path) -> Path:
    """``--out`` as an absolute path with ``..`` and symlinks resolved: what --overwrite may replace
    is decided on the real folder, and aliases of one cube share one lock."""
    if not isinstance(out, (str, os.PathLike)) or not str(out).strip():
        raise UserError(f"--out {out!r} should name the cube's folder, e.g. results/mnist.zarr")
    path = Path(os.path.realpath(out))
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        raise UserError(f"--out {out} is the working directory or a folder above it; "
                        "name the cube's own folder, e.g. results/mnist.zarr")
    store = next((p for p in path.parents if any((p / name).exists() for name in ZARR_MARKS)), None)
    if store is not None:  # a cube inside a store would become part of it, and that store no cube of ours
        raise UserError(f"--out {out} is inside the zarr store {store}; put the cube beside it, not in it")
    return path


def check_writable(out: Path) -> None:
    """Fail before any training if the cube could not be written (probing beats os.access as root)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a zarr directory")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for where in (out.parent, out) if out.exists() else (out.parent,):
            tempfile.TemporaryDirectory(dir=where, prefix=cube.PROBE_PREFIX).cleanup()
    except OSError as e:
        raise UserError(f"--out {out} is not writable: {e.strerror or e}") from None


def check_run(spec: Spec, task: Task, w: Sequence[float], out: Path, overwrite: bool) -> None:
    """Everything a grid is checked for before training starts: its cost, the path of its cube,
    the task's outputs on its default init, and that the cube can be written."""
    check_stored_params(spec, task, out)  # before check's memory total, which counts them too, says less
    check(spec, task, w)
    cube.check_replaceable(out, overwrite)
    with task_errors(spec.task_class, "evaluating its default init in the driver"):
        check_task_outputs(task, task.data(spec.axis_values[0]), spec.train.dtype)
    check_writable(out)
