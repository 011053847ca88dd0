"""The measure behind ``[store] params = true``: each cell's final state_dict, flat, into the cube
(the layout: landscape.cube.params). It runs at the cell's last eval like any CellMeasure, so both
backends store alike; a diverged cell stores NaN, as its metrics."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from landscape.cube.params import (BUFFER_DIM, BUFFER_KINDS, BUFFERS, EXACT_INT, LAYOUT_ATTR, PARAMETER_DIM, PARAMS, Entry,
                                    StateLayout)
from landscape.cube.schema import Quantity
from landscape.dtypes import torch_dtype
from landscape.errors import UserError
from landscape.measures.hook import CellMeasure, MeasurePoint
from landscape.spec import Spec
from landscape.tasks.base import Task


def state_layout(model: nn.Module) -> StateLayout:
    """The layout of ``model``'s state_dict: its parameters, then its persistent buffers; a buffer
    whose dtype float64 cannot hold (complex, bfloat16) is refused."""
    state = model.state_dict(keep_vars=True)
    is_param = {name for name, _ in model.named_parameters(remove_duplicate=False)}

    def entry(name: str) -> Entry:
        dtype = str(state[name].dtype).removeprefix("torch.")
        if name not in is_param and (dtype == "bfloat16" or not hasattr(np, dtype) or np.dtype(dtype).kind not in BUFFER_KINDS):
            raise UserError(f"store.params = true: buffer {name!r} is {dtype}, which the cube cannot hold exactly")
        return Entry(name, tuple(state[name].shape), dtype)

    return StateLayout(tuple(entry(n) for n in state if n in is_param), tuple(entry(n) for n in state if n not in is_param))


class StoredParams:
    """``params`` over ``parameter`` in the training dtype, ``buffers`` over ``buffer`` in float64."""

    every_eval = False

    def __init__(self, layout: StateLayout, dtype: str):
        self.layout = layout
        self.quantities: tuple[Quantity, ...] = (
            Quantity(PARAMS, "final parameters, flat in params_layout order", (PARAMETER_DIM,), dtype=dtype),)
        self.coords = {PARAMETER_DIM: np.arange(sum(e.size for e in layout.params))}
        if layout.buffers:
            self.quantities += (Quantity(BUFFERS, "final buffers, flat in params_layout order", (BUFFER_DIM,)),)
            self.coords[BUFFER_DIM] = np.arange(sum(e.size for e in layout.buffers))
        self.attrs = {LAYOUT_ATTR: layout.to_attr()}

    def __call__(self, model: nn.Module, at: MeasurePoint) -> dict[str, np.ndarray]:
        state = model.state_dict()
        out = {PARAMS: _flat(state, self.layout.params)}
        if self.layout.buffers:
            out[BUFFERS] = _flat(state, self.layout.buffers)
            if np.abs(out[BUFFERS]).max(initial=0) >= EXACT_INT:
                raise ValueError(f"a buffer of the cell (w={at.w:g}, seed={at.seed}) exceeds 2**53, beyond float64's integers")
        return out


def _flat(state: dict[str, torch.Tensor], entries: tuple[Entry, ...]) -> np.ndarray:
    # float64 holds every value exactly (the store casts params back to their own dtype).
    return torch.cat([state[e.name].detach().reshape(-1).to(torch.float64) for e in entries]).numpy()


def params_measures(spec: Spec, task: Task) -> list[CellMeasure]:
    """The stored-parameters measure when ``[store] params = true``, else none."""
    if not spec.store.params:
        return []
    with torch.random.fork_rng():  # the layout only: the run's random stream untouched
        model = task.build_model().to(torch_dtype(spec.train.dtype))
    return [StoredParams(state_layout(model), spec.train.dtype)]
