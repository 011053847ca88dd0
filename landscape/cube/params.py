"""Stored parameters (``[store] params = true``): how a cell's final state_dict lies in the cube.

The contract between the measure that writes it (landscape.measures.stored_params) and the readers
(landscape.read.cell_state, landscape.cell_model). A model's state_dict is split in two flat
vectors, each in the state_dict's own order: ``params`` over the ``parameter`` dim, in the training
dtype (a float32 cube holds its float32 parameters bit for bit), and ``buffers`` over ``buffer``
(only for a model with persistent buffers) in float64, which holds float32 and float64 buffers and
integer ones (BatchNorm's ``num_batches_tracked``) below 2**53 exactly. The names, shapes and
dtypes are the cube attr ``params_layout`` (JSON). Each cell's vector is one chunk, checksummed
with the rest of the cell.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

PARAMS, BUFFERS = "params", "buffers"
PARAMETER_DIM, BUFFER_DIM = "parameter", "buffer"
LAYOUT_ATTR = "params_layout"
#: Integers float64 holds exactly (a buffer beyond it cannot be stored).
EXACT_INT = 2**53
#: Kinds of buffer dtypes float64 holds exactly: floats up to 64 bits, integers, booleans.
BUFFER_KINDS = "fiub"


@dataclass(frozen=True)
class Entry:
    """One tensor of the state_dict: its name, shape and numpy dtype name (float32, int64, ...)."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class StateLayout:
    params: tuple[Entry, ...]
    buffers: tuple[Entry, ...]

    def to_attr(self) -> str:
        return json.dumps({group: [[e.name, list(e.shape), e.dtype] for e in entries]
                           for group, entries in ((PARAMS, self.params), (BUFFERS, self.buffers))})

    @classmethod
    def from_attr(cls, text: str) -> StateLayout:
        raw = json.loads(text)
        return cls(*(tuple(Entry(str(n), tuple(int(k) for k in s), str(d)) for n, s, d in raw[g]) for g in (PARAMS, BUFFERS)))

    def unflatten(self, params: np.ndarray, buffers: np.ndarray | None) -> dict[str, np.ndarray]:
        """The state_dict as numpy arrays in their recorded shapes and dtypes (exact: the values were
        stored in a type that holds them)."""
        state: dict[str, np.ndarray] = {}
        for entries, flat in ((self.params, params), (self.buffers, buffers)):
            offset = 0
            for e in entries:
                state[e.name] = np.asarray(flat[offset:offset + e.size]).astype(e.dtype).reshape(e.shape)
                offset += e.size
        return state
