"""The plan of a grid: its cells, their step schedules, and how they are cut into cell batches."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from landscape.errors import UserError
from landscape.spec import Spec
from landscape.tasks import Task
from landscape.train import (
    cell_eval_steps,
)
from landscape.train.norm import global_norm
from landscape.train.probe import BackendChoice

#: Largest batch the planner picks by itself: on CPU the cell-steps/s of the MNIST MLP stop
#: growing at about 16 cells (bench); on a GPU far larger batches still pay off.
AUTO_BATCH_CELLS = {"cpu": 16, "cuda": 256}


#: How many batches the planner cuts a grid into at least, where the cap allows: a constant per
#: device, not --jobs, so that a cell's batch-mates (and with them its float32 rounding) are the
#: same on any worker count. 8 on CPU keeps up to 8 workers busy with one batch each (idle workers'
#: cores are not handed to busy ones: THREADS_ENV); on a GPU one worker feeds it, 2 bound what an interrupt loses.
PLAN_BATCHES = {"cpu": 8, "cuda": 2}


@dataclass(frozen=True)
class Cell:
    index: tuple[int, ...]  # position along spec.cell_dims
    w: float
    value: Any  # along the task's axis
    seed: int
    settings: dict[str, float]  # training-setting axis values (wd, lr), empty for landscapes


def default_init_norm(task: Task, seed: int = 0) -> float:
    """w0: the global norm of the task's default init under ``seed``, the reference for alpha."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = task.build_model()
    return float(global_norm(task.constrained_parameters(model)))


def norm_values(spec: Spec, w0: float) -> list[float]:
    return [v * w0 for v in spec.norm_values] if spec.norm_axis == "alpha" else list(spec.norm_values)


def all_cells(spec: Spec, w: list[float], shape: tuple[int, ...]) -> list[Cell]:
    """Every cell of the grid, in grid order."""
    values = {"w": w, spec.axis: spec.axis_values, **spec.train_axes, "seed": spec.seeds}
    cells = []
    for index in np.ndindex(shape):
        at = {d: values[d][i] for d, i in zip(spec.cell_dims, index)}
        cells.append(Cell(index, at["w"], at[spec.axis], at["seed"], {k: at[k] for k in spec.train_axes}))
    return cells


def schedules(spec: Spec, task: Task) -> dict[Any, np.ndarray]:
    """The eval steps of the cells at each axis value (they differ only when training counts epochs)."""
    by_size = bool(spec.train.epochs) or spec.eval.every == "epoch"
    return {v: cell_eval_steps(spec.cell_train({}, v), spec.eval, task.train_size(v) if by_size else 1)
            for v in spec.axis_values}


def cell_batch_size(spec: Spec, backend_choice: BackendChoice, cells: int, device: str) -> int:
    """How many cells share a batch: a function of the spec and the device only.

    The smallest of the spec's cap (``train.max_batch_cells``, 0 = auto: AUTO_BATCH_CELLS for the
    device) and the grid's cells over PLAN_BATCHES for the device, so that there are batches for
    several workers, which evens out batches that finish early (stopping) and bounds what an interrupt loses.
    """
    if not backend_choice.stacked:
        return 1
    cap = spec.train.max_batch_cells or AUTO_BATCH_CELLS[device]
    return max(1, min(cap, math.ceil(cells / PLAN_BATCHES[device])))


def plan_cell_batches(spec: Spec, cells: list[Cell], size: int, by_seed: bool,
                      steps_of: Mapping[Any, np.ndarray]) -> list[list[Cell]]:
    """Cells with one training config and eval schedule (and one seed when ``by_seed``), ordered by
    axis value, cut into batches of at most ``size`` cells of nearly equal sizes.

    Batches of the last axis values (the largest N) are handed out first: they tend to run longest
    (more to evaluate, slower to converge), so the short ones fill in behind them at the end.
    """
    if size <= 1:
        return [[c] for c in cells]
    groups: dict[Any, list[Cell]] = {}
    for c in cells:
        key = (spec.cell_train(c.settings, c.value), tuple(steps_of[c.value]), c.seed if by_seed else None)
        groups.setdefault(key, []).append(c)
    batches = []
    for group in groups.values():
        group.sort(key=lambda c: (c.index[1:], c.index[0]))  # axis value, settings, seed, then w
        bounds = np.linspace(0, len(group), math.ceil(len(group) / size) + 1).round().astype(int)
        batches += [group[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
    return sorted(batches, key=lambda b: -b[-1].index[1])


@dataclass(frozen=True)
class Plan:
    """What a cube fixes at creation and every resume reuses: the path its cells train on."""

    backend_choice: BackendChoice
    cell_batch_size: int
    device: str

    def attrs(self) -> dict[str, Any]:
        return {"batched": int(self.backend_choice.stacked), "batching": self.backend_choice.reason,
                "batch_random": int(self.backend_choice.random), "batch_cells": self.cell_batch_size,
                "batch_plan_device": self.device}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Plan:
        # Cubes planned per --jobs also hold batch_plan_jobs: their batch_cells is what they keep.
        try:
            return cls(BackendChoice(bool(attrs["batched"]), str(attrs["batching"]), bool(attrs["batch_random"])),
                       int(attrs["batch_cells"]), str(attrs["batch_plan_device"]))
        except KeyError as e:
            raise UserError(f"the cube's batch plan attr {e} is missing; the cube is damaged: recompute it "
                            "with --overwrite") from None


def cell_names(spec: Spec, cells: list[Cell], most: int = 3) -> str:
    """``cell (w=2.5, N=20, seed=0)`` for a report line: the cells' coordinates, the first ``most`` of them."""
    def name(c: Cell) -> str:
        at = {"w": f"{c.w:.4g}", spec.axis: c.value, **c.settings, "seed": c.seed}
        return "(" + ", ".join(f"{d}={at[d]}" for d in spec.cell_dims) + ")"

    shown = ", ".join(name(c) for c in cells[:most])
    more = f" and {len(cells) - most} more" if len(cells) > most else ""
    return f"cell{'s' if len(cells) > 1 else ''} {shown}{more}"
