"""Training one grid cell: default init rescaled to norm w, then optimise on the sphere.

The loop is deliberately flat (nanoGPT style): build, rescale, step, evaluate at eval steps.
Training runs in ``model.train()``, evaluation in ``model.eval()`` without grad, so Dropout is off
and BatchNorm uses (and never updates) its running statistics on eval data. Random layers draw from
a stream that depends only on the cell's seed and the step (``step_seed``), which the batched
trainer reproduces.
"""
from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from landscape.dtypes import cast, torch_dtype
from landscape.errors import UserError
from landscape.norm import NormConstrained, global_norm, project_to_sphere
from landscape.schema import CURVES, METRICS, STATUS_DIVERGED, STATUS_DONE, STATUS_PENDING  # noqa: F401 (re-exported)
from landscape.spec import EvalConfig, TrainConfig
from landscape.tasks.base import Split, Task

_EVAL_CHUNK = 8192  # rows per forward pass at eval time, to bound memory on 60k-sample sets
#: Steps between progress reports (a report costs microseconds; the bar moves within a second).
PROGRESS_EVERY = 32


@dataclass
class CellResult:
    """What a worker sends back: a few KB per cell."""

    eval_steps: np.ndarray  # the cell's own eval steps (a subset of the cube's step coordinate)
    curves: np.ndarray  # (len(CURVES), n_evals), NaN where not reached
    layer_norms: np.ndarray  # (parameter groups, n_evals): norm of each Task.parameter_groups group
    norm: float
    steps: int
    seconds: float
    status: int
    #: The task's ``extra_curves`` (name -> values at each eval) and ``extra_values``; empty for most tasks.
    extra_curves: dict[str, np.ndarray] = field(default_factory=dict)
    extra_values: dict[str, float] = field(default_factory=dict)


def eval_steps(steps: int, evalc: EvalConfig, per_epoch: int = 1) -> np.ndarray:
    """Steps at which a cell is evaluated: 0, then every k steps, log-spaced or at every epoch's end
    (``per_epoch`` steps apart), and always the last."""
    if evalc.every == "log":
        # Log spacing keeps a 10^5-step run to a few dozen evals; rounding merges the early ones.
        grid = np.rint(np.logspace(0, np.log10(steps), evalc.points)).astype(np.int64)
    else:
        grid = np.arange(0, steps + 1, per_epoch if evalc.every == "epoch" else evalc.every)
    return np.unique(np.concatenate([[0], grid, [steps]]))


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps in one pass over n samples (an epoch drops its last incomplete minibatch)."""
    return 1 if full_batch(n, batch_size) else n // batch_size


def cell_steps(train: TrainConfig, n: int) -> int:
    """Optimizer steps of a cell with n training samples: ``train.steps``, or ``train.epochs`` passes."""
    return train.epochs * steps_per_epoch(n, train.batch_size) if train.epochs else train.steps


def cell_eval_steps(train: TrainConfig, evalc: EvalConfig, n: int) -> np.ndarray:
    """The eval steps of a cell with n training samples; the last one is its step budget."""
    return eval_steps(cell_steps(train, n), evalc, steps_per_epoch(n, train.batch_size))


def step_seed(seed: int, step: int) -> int:
    """Seed of the random layers (Dropout) at one step of a cell: its own stream, whatever else runs."""
    return (int(seed) * 1_000_003 + int(step)) % (1 << 63)


def make_optimizer(train: TrainConfig, params: list[torch.nn.Parameter], fused: bool = False) -> torch.optim.Optimizer:
    # foreach kernels: one launch per parameter group instead of one per tensor; fused: one kernel
    # for the whole update (on CPU about 3x faster than foreach for Adam, but contiguous params only).
    classes = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    if train.optimizer not in classes:
        raise ValueError(f"unknown optimizer {train.optimizer!r}")
    impl = {"fused": True} if fused else {"foreach": True}
    if train.optimizer != "sgd":
        impl["betas"] = (train.beta1, train.beta2)
    return classes[train.optimizer](params, lr=train.lr, weight_decay=train.weight_decay, **impl)


def make_scheduler(opt: torch.optim.Optimizer, train: TrainConfig, start: int = 0) -> torch.optim.lr_scheduler.StepLR | None:
    """The step decay of ``train`` on ``opt``, stepped once per optimizer step; None when off.

    ``start`` > 0 continues the schedule from that step on a fresh optimizer (the vectorized trainer
    rebuilds its optimizer when cells leave the batch): its lr is set to the decayed value first.
    """
    if train.lr_decay_every == 0:
        return None
    for group in opt.param_groups:
        group["lr"] = train.lr * train.lr_decay_factor ** (start // train.lr_decay_every)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=train.lr_decay_every, gamma=train.lr_decay_factor)
    scheduler.last_epoch = start  # StepLR decays when its step count reaches a multiple of step_size
    return scheduler


def full_batch(n: int, batch_size: int) -> bool:
    return batch_size == 0 or batch_size >= n


class BatchOrder:
    """A cell's minibatch indices: shuffled epochs (each drops its last incomplete batch), cycled.

    ``take(k)`` returns the next ``k`` steps' indices as one (k, batch_size) tensor, so a
    vectorized trainer draws many steps at once; ``minibatches`` yields the same order step by step.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.rows = torch.empty(0, batch_size, dtype=torch.long)

    def take(self, k: int) -> torch.Tensor:
        per_epoch = self.n // self.batch_size
        epochs = [self.rows]
        have = len(self.rows)
        while have < k:
            perm = torch.randperm(self.n, generator=self.generator)
            epochs.append(perm[: per_epoch * self.batch_size].view(per_epoch, self.batch_size))
            have += per_epoch
        rows = torch.cat(epochs) if len(epochs) > 1 else self.rows
        self.rows = rows[k:]
        return rows[:k]


def minibatches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor | None]:
    """Index tensors of shuffled epochs, cycled; ``None`` means the full batch."""
    if full_batch(n, batch_size):
        while True:
            yield None
    order = BatchOrder(n, batch_size, generator)
    while True:
        yield from order.take(n // batch_size)


def eval_rows(n: int, samples: int) -> torch.Tensor:
    """The rows evaluated at each eval step: all n, or a fixed random subset of ``samples`` rows."""
    if samples == 0 or samples >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:samples]


def converged(train_loss: np.ndarray, train: TrainConfig) -> np.ndarray:
    """Whether cells may stop now, given their train-loss curves up to the current eval (last axis).

    True where the loss reached ``train.stop_loss``, or where the best loss of the last
    ``train.stop_window`` evals is not ``train.stop_rtol`` (relative) below the best one before them.
    """
    loss = np.asarray(train_loss, dtype=float)
    stop = np.zeros(loss.shape[:-1], dtype=bool)
    if train.stop_loss > 0:
        stop |= loss[..., -1] <= train.stop_loss
    window = train.stop_window
    if window > 0 and loss.shape[-1] > window:
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: never a stop
            before, recent = np.nanmin(loss[..., :-window], -1), np.nanmin(loss[..., -window:], -1)
            stop |= recent >= before * (1 - train.stop_rtol)
    return stop


@torch.no_grad()
def evaluate(task: Task, model: torch.nn.Module, x: Any, y: torch.Tensor, rows: torch.Tensor) -> tuple[float, float]:
    """Mean loss and mean error over samples ``rows`` of (x, y), in chunks, in eval mode."""
    model.eval()
    loss_sum, err_sum = 0.0, 0.0
    for start in range(0, len(rows), _EVAL_CHUNK):
        chunk = rows[start : start + _EVAL_CHUNK]
        pred, yb = model(task.select(x, chunk)), y[chunk]
        loss, errors = task.loss(pred, yb), task.errors(pred, yb)
        check_outputs(task, loss, errors, len(chunk))
        loss_sum += float(loss) * len(chunk)
        err_sum += float(errors.sum())
    model.train()
    return loss_sum / len(rows), err_sum / len(rows)


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


#: Samples of the driver's check of a task's loss() and errors(), before any store exists.
PREFLIGHT_ROWS = 256


def check_task_outputs(task: Task, split: Split, dtype: str) -> None:
    """Evaluate the seed-0 default init on a few training samples, so that a task whose loss() or
    errors() has the wrong shape or range is refused before a store is created."""
    split = cast(split, torch_dtype(dtype))
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = task.build_model().to(torch_dtype(dtype))
    evaluate(task, model, split.train_x, split.train_y, torch.arange(min(PREFLIGHT_ROWS, len(split.train_y))))


def init_cell(task: Task, w: float, seed: int, dtype: str = "float32") -> tuple[torch.nn.Module, list[torch.nn.Parameter]]:
    """A cell's model at step 0 and its constrained parameters: the seed's default init, in ``dtype``,
    rescaled to norm w. The init is drawn in float32 whatever the dtype, so float64 cells start at
    the same point."""
    torch.manual_seed(seed)  # one init direction per seed, shared by every w and axis value
    model = task.build_model().to(torch_dtype(dtype))
    params = task.constrained_parameters(model)
    project_to_sphere(params, w)
    return model, params


def group_norms(groups: dict[str, list[torch.nn.Parameter]]) -> list[float]:
    return [float(global_norm(ps)) for ps in groups.values()]


def train_cell(task: Task, split: Split, w: float, seed: int, train: TrainConfig, evalc: EvalConfig,
               progress: Callable[[int], None] | None = None) -> CellResult:
    """Train one cell; ``progress`` is called with the steps done since its last call."""
    start_time = time.perf_counter()
    model, params = init_cell(task, w, seed, train.dtype)
    groups = task.parameter_groups(model)
    opt = make_optimizer(train, list(model.parameters()))
    scheduler = make_scheduler(opt, train)  # on the inner optimizer: StepLR checks its type
    if train.constrain_norm:
        opt = NormConstrained(opt, params, w)

    split = cast(split, torch_dtype(train.dtype))
    x, y = split.train_x, split.train_y
    n = len(y)
    batches = minibatches(n, train.batch_size, torch.Generator().manual_seed(seed))
    whole = task.select(x, torch.arange(n)) if full_batch(n, train.batch_size) else None
    sets = ((x, y, eval_rows(n, evalc.samples)), (split.test_x, split.test_y, eval_rows(len(split.test_y), evalc.samples)))
    evals = cell_eval_steps(train, evalc, n)
    curves = np.full((len(CURVES), len(evals)), np.nan)
    layer_norms = np.full((len(groups), len(evals)), np.nan)
    extra = np.full((len(task.extra_curves), len(evals)), np.nan)
    status, step, k, reported = STATUS_DONE, 0, 0, 0

    model.train()
    for step in range(evals[-1] + 1):
        if progress is not None and (step - reported >= PROGRESS_EVERY or step == evals[k]) and step > reported:
            progress(step - reported)
            reported = step
        if step == evals[k]:
            (tr_loss, tr_err), (te_loss, te_err) = (evaluate(task, model, *s) for s in sets)
            curves[:, k] = tr_loss, te_loss, tr_err, te_err, float(global_norm(params))
            layer_norms[:, k] = group_norms(groups)
            if task.extra_curves:
                model.eval()
                with torch.no_grad():
                    measured = task.measure_extra_curves(model, split)
                model.train()
                extra[:, k] = [measured[name] for name in task.extra_curves]
            k += 1
            if not (math.isfinite(tr_loss) and math.isfinite(te_loss)):
                status = STATUS_DIVERGED
                break
            if converged(curves[0, :k], train):
                break
        if step == evals[-1]:
            break
        idx = next(batches)
        xb, yb = (whole, y) if idx is None else (task.select(x, idx), y[idx])
        torch.default_generator.manual_seed(step_seed(seed, step))
        loss = task.loss(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if train.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip, foreach=True)
        opt.step()
        if scheduler is not None:
            scheduler.step()

    return CellResult(
        eval_steps=evals,
        curves=curves,
        layer_norms=layer_norms,
        norm=float(global_norm(params)),
        steps=step,
        seconds=time.perf_counter() - start_time,
        status=status,
        extra_curves=dict(zip(task.extra_curves, extra)),
        extra_values=task.measure_extra_values(split),
    )
