"""Float precision of a cell (``train.dtype``): the torch dtype of a name, and casting task data to it."""
from __future__ import annotations

import dataclasses
from typing import Any

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def torch_dtype(name: str) -> torch.dtype:
    return DTYPES[name]


def cast(obj: Any, dtype: torch.dtype) -> Any:
    """``obj`` with every floating tensor in it cast to ``dtype``: tensors, and tuples, lists, dicts
    and dataclasses of them; integer tensors (labels, token ids, indices) and other values unchanged."""
    if isinstance(obj, torch.Tensor):
        return obj.to(dtype) if obj.is_floating_point() else obj
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: cast(getattr(obj, f.name), dtype)
                                           for f in dataclasses.fields(obj) if f.init})
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # NamedTuple
        return type(obj)(*(cast(v, dtype) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(cast(v, dtype) for v in obj)
    if isinstance(obj, dict):
        return {k: cast(v, dtype) for k, v in obj.items()}
    return obj
