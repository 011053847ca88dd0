"""The measurement hook: what a cell measures at its evals beyond losses, the same in both backends.

A :class:`CellMeasure` declares the cube variables it fills (``quantities``, landscape.cube.schema
.Quantity, with ``coords`` for their own dims) and measures one cell's model at a time. The training
loop (landscape.train.loop) calls every measure of a run at the cell's last eval, and at every eval
when the measure's ``every_eval`` is set, through each backend's ``models()``: one CPU module per
cell, whatever the backend and device. A measure that wants the run's device moves a copy there.

:func:`landscape.measures.suite.cell_measures` builds a run's measures from its spec
(``[measure]``) and what the task declares.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from landscape.cube.schema import Quantity
from landscape.spec import TrainConfig
from landscape.tasks.base import Split, Task


@dataclass(frozen=True)
class MeasurePoint:
    """What a measure may know of the cell it measures, now."""

    task: Task
    split: Split  # the cell's data on the CPU, in train.dtype
    w: float  # the cell's norm target (its initial norm when unconstrained)
    seed: int
    step: int
    final: bool  # the cell's last eval
    train: TrainConfig  # the cell's own training config (its axis values applied)
    device: torch.device  # the device the cell trains on
    #: The optimizer's per-parameter state of this cell by parameter name, shaped as the model's
    #: parameters (Adam's exp_avg_sq for its preconditioner); built on call, as it copies.
    optimizer_state: Callable[[], dict[str, dict[str, torch.Tensor]]]


class CellMeasure(Protocol):
    """One kind of measurement of a run's cells."""

    quantities: tuple[Quantity, ...]
    coords: dict[str, np.ndarray]  # the values along each of the quantities' own dims
    every_eval: bool  # also at every eval, not only the cell's last
    #: Optional: cube attrs the measure records (how to regenerate what it measured); read with
    #: :func:`attrs_of`, so a measure without them needs none.
    attrs: dict[str, Any]

    def __call__(self, model: nn.Module, at: MeasurePoint) -> dict[str, np.ndarray]:
        """Each quantity's value for ``model`` (eval mode, on the CPU), shaped by its dims."""


def quantities_of(measures: Sequence[CellMeasure]) -> tuple[list[Quantity], dict[str, np.ndarray]]:
    """All quantities of ``measures`` and the coordinates of their dims, for the cube's template."""
    names = [q.name for m in measures for q in m.quantities]
    if len(set(names)) < len(names):
        raise ValueError(f"two measures declare the same cube variable among {names}")
    coords: dict[str, Any] = {}
    for m in measures:
        for dim, values in m.coords.items():
            if dim in coords and not np.array_equal(coords[dim], values):
                raise ValueError(f"two measures give dim {dim!r} different coordinates")
            coords[dim] = values
    return [q for m in measures for q in m.quantities], coords


def attrs_of(measures: Sequence[CellMeasure]) -> dict[str, Any]:
    """The cube attrs of all ``measures`` (``attrs``, {} where a measure has none)."""
    merged: dict[str, Any] = {}
    for m in measures:
        for name, value in getattr(m, "attrs", {}).items():
            if name in merged and merged[name] != value:
                raise ValueError(f"two measures give cube attr {name!r} different values")
            merged[name] = value
    return merged
