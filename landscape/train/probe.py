"""Whether a task's cells train as one batched model or one by one: decided by the engine, per grid.

The probe trains two copies of one cell for two steps on a few samples through the batched trainer
(landscape.train.stacked) and compares them with the one-model backend. A model that vmap cannot run,
or whose batched result differs, falls back to the per-cell path; the cube records which path ran
and why (attrs ``batched`` and ``batching``). A task's ``vectorizable`` attribute overrides the probe.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch

from landscape.errors import first_line
from landscape.spec import EvalConfig, Spec
from landscape.tasks.base import Split, Task
from landscape.train import train_cell

#: Samples the probe trains and evaluates on.
PROBE_ROWS = 8
#: Largest relative difference between batched and per-cell curves the probe accepts (float32
#: rounding in two steps stays far below it; a wrong batching rule lands far above).
PROBE_RTOL = 1e-3


@dataclass(frozen=True)
class BackendChoice:
    """Which backend trains a grid's cells: stacked (many cells under vmap) or single (one model per
    cell), and why; the cube keeps it as attrs ``batched`` and ``batching``."""

    stacked: bool
    reason: str
    #: The model draws random numbers (Dropout): a batch then holds cells of one seed only, so
    #: that each cell's random stream is the one it has alone.
    random: bool = False


def decide(task: Task, spec: Spec, w0: float) -> BackendChoice:
    """Probe (or read the task's override) whether ``spec``'s cells can train batched; ``w0`` is the
    task's init norm (the grid's alpha = 1)."""
    if spec.train.max_batch_cells == 1:
        return BackendChoice(False, "train.max_batch_cells = 1 asks for the per-cell path")
    if task.vectorizable is False:
        return BackendChoice(False, f"task {task.name!r} sets vectorizable = False")
    split = task.data(spec.axis_values[0])
    if not isinstance(split.train_x, torch.Tensor):
        return BackendChoice(False, f"the inputs of task {task.name!r} are not one tensor "
                               "(the task collates its own minibatches)")
    random = _draws_random_numbers(task, split)
    if task.vectorizable is True:
        return BackendChoice(True, f"task {task.name!r} sets vectorizable = True", random)
    return _probe(task, spec, split, random, w0)


def _tiny(split: Split) -> Split:
    return Split(split.train_x[:PROBE_ROWS], split.train_y[:PROBE_ROWS], split.test_x[:PROBE_ROWS],
                 split.test_y[:PROBE_ROWS])


def _draws_random_numbers(task: Task, split: Split) -> bool:
    """Whether the model's training forward draws random numbers (vmap's randomness check)."""
    from torch.func import functional_call, vmap

    with torch.random.fork_rng():
        model = task.build_model().train()
    state = {k: v.detach().unsqueeze(0) for k, v in [*model.named_parameters(), *model.named_buffers()]}
    try:
        vmap(lambda s, x: functional_call(model, s, (x,)), in_dims=(0, None), randomness="error")(
            state, split.train_x[:PROBE_ROWS])
    except RuntimeError as e:
        return "randomness" in str(e)
    except Exception:
        return False  # the probe proper reports why the model does not batch
    return False


def _probe(task: Task, spec: Spec, split: Split, random: bool, w0: float) -> BackendChoice:
    from landscape.train import train_cells

    tiny = _tiny(split)
    w = spec.norm_values[0] * w0 if spec.norm_axis == "alpha" else spec.norm_values[0]
    seed = spec.seeds[0]
    train = dataclasses.replace(spec.train, steps=2, epochs=0, batch_size=0, stop_window=0, stop_loss=0.0,
                                lr_decay_every=0)
    evalc = EvalConfig(every=1, samples=0, points=2, level=spec.eval.level)
    try:
        with torch.random.fork_rng():
            # Its few rows are no split of the task: the task's own measurements are left out.
            alone = train_cell(task, tiny, w, seed, train, evalc, measured=False)
            stacked = train_cells(task, [tiny, tiny], [w, w], [seed, seed], train, evalc, measured=False)
    except Exception as e:  # whatever vmap or the model raises: the reason is the message
        return BackendChoice(False, f"the model does not run batched under torch.func.vmap: "
                               f"{type(e).__name__}: {first_line(e)}", random)
    worst = max(_relative_difference(alone.curves, b.curves) for b in stacked)
    if not worst <= PROBE_RTOL:
        return BackendChoice(False, f"batched and per-cell results differ by {worst:.2g} (relative) after 2 steps", random)
    return BackendChoice(True, f"probe: 2 steps batched match the per-cell path (max relative difference {worst:.1g})",
                    random)


def _relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return 0.0 if np.array_equal(np.isfinite(a), np.isfinite(b)) else np.inf
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(a), 1e-6)))

