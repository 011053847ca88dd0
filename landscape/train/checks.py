"""Checks of what a task's own code returns, shared by both backends and the driver's preflight."""
from __future__ import annotations

from typing import Any

import torch

from landscape.dtypes import cast, torch_dtype
from landscape.errors import UserError
from landscape.tasks.base import Split, Task

#: Samples of the driver's check of a task's loss() and errors(), before any store exists.
PREFLIGHT_ROWS = 256


def check_outputs(task: Task, loss: Any, errors: Any, rows: int, cells: int | None = None) -> None:
    """UserError unless ``loss`` is one number (per cell, for ``cells`` batched cells) and ``errors``
    one value in [0, 1] per sample of the ``rows`` evaluated: an outside task's ``errors()`` that
    returns logits would otherwise put negative error rates in the cube."""
    where = f"task {task.name!r} ({type(task).__module__}:{type(task).__qualname__})"
    per_cell = () if cells is None else (cells,)
    if not isinstance(loss, torch.Tensor) or tuple(loss.shape) != per_cell:
        shape = tuple(loss.shape) if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise UserError(f"{where}: loss() returned {shape}, not one number (the mean over the samples)")
    if not isinstance(errors, torch.Tensor) or tuple(errors.shape) != (*per_cell, rows):
        shape = tuple(errors.shape) if isinstance(errors, torch.Tensor) else type(errors).__name__
        raise UserError(f"{where}: errors() returned {shape} for {rows} samples, not one 0/1 error per sample")
    values = errors.double()
    if bool(((values < 0) | (values > 1)).any()):  # NaN passes: a diverged cell is recorded as such
        raise UserError(f"{where}: errors() returned values in [{float(values.min()):.4g}, {float(values.max()):.4g}], "
                        "not per-sample errors in [0, 1] (logits?)")


def check_task_outputs(task: Task, split: Split, dtype: str) -> None:
    """Evaluate the seed-0 default init on a few training samples, so that a task whose loss() or
    errors() has the wrong shape or range is refused before a store is created."""
    from landscape.train.single import evaluate  # the backend imports this module

    split = cast(split, torch_dtype(dtype))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = task.build_model().to(torch_dtype(dtype))
    evaluate(task, model, split.train_x, split.train_y, torch.arange(min(PREFLIGHT_ROWS, len(split.train_y))))
