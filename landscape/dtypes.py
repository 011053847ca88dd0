"""Float precision of a cell (``train.dtype``): the torch dtype of a name, and casting (or moving)
task data to it (to a device)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def torch_dtype(name: str) -> torch.dtype:
    return DTYPES[name]


def cast(obj: Any, dtype: torch.dtype) -> Any:
    """``obj`` with every floating tensor in it cast to ``dtype``: tensors, and tuples, lists, dicts
    and dataclasses of them; integer tensors (labels, token ids, indices) and other values unchanged."""
    return _map_tensors(obj, lambda t: t.to(dtype) if t.is_floating_point() else t)


def move(obj: Any, device: torch.device | str) -> Any:
    """``obj`` with every tensor in it (as for ``cast``) on ``device``; on its device already: unchanged."""
    return _map_tensors(obj, lambda t: t.to(device))


def _map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: _map_tensors(getattr(obj, f.name), fn)
                                           for f in dataclasses.fields(obj) if f.init})
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # NamedTuple
        return type(obj)(*(_map_tensors(v, fn) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_map_tensors(v, fn) for v in obj)
    if isinstance(obj, dict):
        return {k: _map_tensors(v, fn) for k, v in obj.items()}
    return obj
