"""Training one grid cell: default init rescaled to norm w, then optimise on the sphere.

The loop is deliberately flat (nanoGPT style): build, rescale, step, evaluate at eval steps.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from landscape.norm import NormConstrained, global_norm, project_to_sphere
from landscape.spec import EvalConfig, TrainConfig
from landscape.tasks.base import Split, Task

#: Final-value names; ``CellResult.curves`` holds these, then the global norm, at each eval.
METRICS = ("train_loss", "test_loss", "train_err", "test_err")
CURVES = METRICS + ("norm",)
STATUS_PENDING, STATUS_DONE, STATUS_DIVERGED = 0, 1, 2
_EVAL_CHUNK = 8192  # rows per forward pass at eval time, to bound memory on 60k-sample sets


@dataclass
class CellResult:
    """What a worker sends back: a few KB per cell."""

    curves: np.ndarray  # (len(CURVES), n_evals), NaN where not reached
    norm: float
    steps: int
    seconds: float
    status: int


def eval_steps(steps: int, evalc: EvalConfig) -> np.ndarray:
    """Steps at which a cell is evaluated: 0, then every k steps or log-spaced, and always the last."""
    if evalc.every == "log":
        # Log spacing keeps a 10^5-step run to a few dozen evals; rounding merges the early ones.
        grid = np.rint(np.logspace(0, np.log10(steps), evalc.points)).astype(np.int64)
    else:
        grid = np.arange(0, steps + 1, evalc.every)
    return np.unique(np.concatenate([[0], grid, [steps]]))


def make_optimizer(name: str, params: list[torch.nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    # foreach kernels: one launch per parameter group instead of one per tensor.
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, foreach=True)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, foreach=True)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, foreach=True)
    raise ValueError(f"unknown optimizer {name!r}")


def minibatches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor | None]:
    """Index tensors of shuffled epochs, cycled; ``None`` means the full batch."""
    if batch_size == 0 or batch_size >= n:
        while True:
            yield None
    while True:
        perm = torch.randperm(n, generator=generator)
        for start in range(0, n - batch_size + 1, batch_size):
            yield perm[start : start + batch_size]


def eval_subset(n: int, samples: int) -> torch.Tensor | None:
    """A fixed subset of ``samples`` rows (the same at every eval step), or None for all rows."""
    if samples == 0 or samples >= n:
        return None
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:samples]


@torch.no_grad()
def evaluate(task: Task, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean loss and mean error over (x, y), in chunks."""
    loss_sum, err_sum = 0.0, 0.0
    for start in range(0, len(x), _EVAL_CHUNK):
        xb, yb = x[start : start + _EVAL_CHUNK], y[start : start + _EVAL_CHUNK]
        pred = model(xb)
        loss_sum += float(task.loss(pred, yb)) * len(xb)
        err_sum += float(task.errors(pred, yb).sum())
    return loss_sum / len(x), err_sum / len(x)


def train_cell(task: Task, split: Split, w: float, seed: int, train: TrainConfig, evalc: EvalConfig) -> CellResult:
    start_time = time.perf_counter()
    torch.manual_seed(seed)  # one init direction per seed, shared by every w and N
    model = task.build_model()
    params = task.constrained_parameters(model)
    project_to_sphere(params, w)
    opt = make_optimizer(train.optimizer, list(model.parameters()), train.lr, train.weight_decay)
    if train.constrain_norm:
        opt = NormConstrained(opt, params, w)

    x, y = split.train_x, split.train_y
    batches = minibatches(len(x), train.batch_size, torch.Generator().manual_seed(seed))
    train_pick, test_pick = eval_subset(len(x), evalc.samples), eval_subset(len(split.test_x), evalc.samples)
    eval_sets = (
        (x, y) if train_pick is None else (x[train_pick], y[train_pick]),
        (split.test_x, split.test_y) if test_pick is None else (split.test_x[test_pick], split.test_y[test_pick]),
    )
    evals = eval_steps(train.steps, evalc)
    curves = np.full((len(CURVES), len(evals)), np.nan)
    status, step, k = STATUS_DONE, 0, 0

    model.train()
    for step in range(train.steps + 1):
        if step == evals[k]:
            (tr_loss, tr_err), (te_loss, te_err) = (evaluate(task, model, *s) for s in eval_sets)
            curves[:, k] = tr_loss, te_loss, tr_err, te_err, float(global_norm(params))
            k += 1
            if not (math.isfinite(tr_loss) and math.isfinite(te_loss)):
                status = STATUS_DIVERGED
                break
        if step == train.steps:
            break
        idx = next(batches)
        xb, yb = (x, y) if idx is None else (x[idx], y[idx])
        loss = task.loss(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return CellResult(
        curves=curves,
        norm=float(global_norm(params)),
        steps=step,
        seconds=time.perf_counter() - start_time,
        status=status,
    )
