"""A cell's trained model, rebuilt from a cube whose grid ran with ``[store] params = true``:
``landscape.cell_model(cube, w=2.0, N=200, seed=0)``, for an analysis of one's own on any cell.

The task comes from the cube's spec (its task and task_options, as a worker builds it), the model
from the task in the cube's training dtype, the weights from the cell's stored state_dict
(landscape.read.cell_state), loaded strictly: the model is the cell's, bit for bit.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import xarray as xr
from torch import nn

from landscape.cube.store import stored_spec
from landscape.dtypes import torch_dtype
from landscape.read.cell_state import as_cube, cell_state
from landscape.spec import resolve
from landscape.tasks.base import Task


def cell_model(cube: str | Path | xr.Dataset, *, task: type[Task] | None = None, data_dir: str | None = None,
               **coords: Any) -> nn.Module:
    """The model of the cell at ``coords`` (``w`` or ``alpha``, the task's axis, any training-setting
    axis, ``seed``; a dim with one value may be left out), in eval mode on the CPU. ``task``: the
    Task class, for a cube of a task no import path reaches (one defined in a notebook)."""
    ds = as_cube(cube)
    state = cell_state(ds, **coords)
    raw = stored_spec(ds)
    spec = resolve({**raw, "task": task or raw["task"]})
    with torch.random.fork_rng():  # the init is overwritten; the caller's random stream stays as it was
        model = spec.make_task(data_dir).build_model().to(torch_dtype(spec.train.dtype))
    model.load_state_dict({name: torch.from_numpy(value) for name, value in state.items()})
    return model.eval()
