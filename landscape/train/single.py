"""The one-model backend: a cell as the task's own nn.Module, a torch optimizer and
``norm.NormConstrained`` (default init rescaled to norm w, then optimised on the sphere).

Training runs in ``model.train()``, evaluation in ``model.eval()`` without grad, so Dropout is off
and BatchNorm uses (and never updates) its running statistics on eval data. Random layers draw from
a stream that depends only on the cell's seed and the step (``step_seed``), which the stacked
backend reproduces.
"""
from __future__ import annotations

import copy
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from landscape.dtypes import cast, move, torch_dtype
from landscape.measures.functional import LossFn
from landscape.measures.hook import CellMeasure
from landscape.train.norm import NormConstrained, global_norm, project_to_sphere
from landscape.spec import EvalConfig, TrainConfig
from landscape.tasks.base import Split, Task
from landscape.train.checks import check_outputs
from landscape.train.loop import CellResult, run_cells
from landscape.train.objective import objective
from landscape.train.optim import innermost, make_chain, make_scheduler
from landscape.train.steps import cell_eval_steps, eval_rows, full_batch, minibatches, seed_step

EVAL_CHUNK = 8192  # rows per forward pass at eval time, to bound memory on 60k-sample sets


def select(task: Task, x: Any, rows: torch.Tensor, device: torch.device | None = None) -> Any:
    """The model input of samples ``rows`` (on the CPU) of ``x``, on ``device``.

    A tensor ``x`` already lives on the device and is indexed there; other inputs (graphs that the
    task collates itself) stay on the CPU and only the collated minibatch moves.
    """
    if isinstance(x, torch.Tensor):
        return task.select(x, rows.to(x.device))
    return task.select(x, rows) if device is None or device.type == "cpu" else move(task.select(x, rows), device)


@torch.no_grad()
def evaluate(task: Task, model: torch.nn.Module, x: Any, y: torch.Tensor, rows: torch.Tensor,
             device: torch.device | None = None, loss_fn: LossFn | None = None) -> tuple[float, float]:
    """Mean loss (``loss_fn``, the task's loss by default) and mean error over samples ``rows`` of
    (x, y), in chunks, in eval mode."""
    loss_fn = loss_fn or task.loss
    model.eval()
    loss_sum, err_sum = 0.0, 0.0
    for start in range(0, len(rows), EVAL_CHUNK):
        chunk = rows[start : start + EVAL_CHUNK]
        pred, yb = model(select(task, x, chunk, device)), y[chunk.to(y.device)]
        loss, errors = loss_fn(pred, yb), task.errors(pred, yb)
        check_outputs(task, loss, errors, len(chunk))
        loss_sum += float(loss) * len(chunk)
        err_sum += float(errors.sum())
    model.train()
    return loss_sum / len(rows), err_sum / len(rows)


def init_cell(task: Task, w: float, seed: int, dtype: str = "float32") -> tuple[torch.nn.Module, list[torch.nn.Parameter]]:
    """A cell's model at step 0 and its constrained parameters: the seed's default init, in ``dtype``,
    rescaled to norm w. The init is drawn in float32 on the CPU whatever the dtype and device, so
    every cell of a seed starts at the same point."""
    torch.manual_seed(seed)  # one init direction per seed, shared by every w and axis value
    model = task.build_model().to(torch_dtype(dtype))
    params = task.constrained_parameters(model)
    project_to_sphere(params, w)
    return model, params


def group_norms(groups: dict[str, list[torch.nn.Parameter]]) -> list[float]:
    return [float(global_norm(ps)) for ps in groups.values()]


class OneModel:
    """The loop's backend for one cell (landscape.train.loop.Backend)."""

    count = 1

    def __init__(self, task: Task, split: Split, w: float, seed: int, train: TrainConfig, evalc: EvalConfig,
                 device: torch.device):
        self.task, self.train, self.seed, self.device = task, train, seed, device
        model, _ = init_cell(task, w, seed, train.dtype)
        self.model = model.to(device)
        self.params = task.constrained_parameters(self.model)  # after the move: the device's tensors
        self.groups_of = task.parameter_groups(self.model)
        self.groups = len(self.groups_of)
        self.loss = objective(task, train)
        opt = make_chain(train, list(self.model.parameters()))
        self.scheduler = make_scheduler(innermost(opt), train)
        self.opt = NormConstrained(opt, self.params, w) if train.constrain_norm else opt

        self.split = cast(split, torch_dtype(train.dtype))
        self.x, self.y = self._on_device(self.split.train_x), self.split.train_y.to(device)
        n = len(self.y)
        # The minibatch order is drawn on the CPU, so it is the same on every device; indices move.
        self.batches = minibatches(n, train.batch_size, torch.Generator().manual_seed(seed))
        self.whole = select(task, self.x, torch.arange(n), device) if full_batch(n, train.batch_size) else None
        test_x, test_y = self._on_device(self.split.test_x), self.split.test_y.to(device)
        self.sets = ((self.x, self.y, eval_rows(n, evalc.samples)),
                     (test_x, test_y, eval_rows(len(test_y), evalc.samples)))
        self.model.train()

    def _on_device(self, x: Any) -> Any:
        return x.to(self.device) if isinstance(x, torch.Tensor) else x

    def advance(self, first_step: int, k: int) -> None:
        for step in range(first_step, first_step + k):
            idx = next(self.batches)
            xb, yb = (self.whole, self.y) if idx is None else (select(self.task, self.x, idx, self.device),
                                                                self.y[idx.to(self.device)])
            seed_step(self.seed, step, self.device)
            loss = self.loss(self.model(xb), yb)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.train.grad_clip:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.train.grad_clip, foreach=True)
            self.opt.step()
            if self.scheduler is not None:
                self.scheduler.step()

    def evaluate(self) -> np.ndarray:
        (tr_loss, tr_err), (te_loss, te_err) = (evaluate(self.task, self.model, *s, self.device, self.loss)
                                                  for s in self.sets)
        return np.array([[tr_loss, te_loss, tr_err, te_err, float(global_norm(self.params))]])

    def group_norms(self) -> np.ndarray:
        return np.array([group_norms(self.groups_of)])

    def models(self) -> Iterator[torch.nn.Module]:
        model = self.model if self.device.type == "cpu" else copy.deepcopy(self.model).cpu()
        model.eval()
        yield model
        self.model.train()

    def optimizer_state(self, position: int) -> dict[str, dict[str, torch.Tensor]]:
        state = self.opt.state  # the torch optimizer's, through any wrappers
        return {n: {k: v.detach().clone() for k, v in state[p].items()}
                for n, p in self.model.named_parameters() if state.get(p)}

    def keep(self, keep: np.ndarray) -> None:
        """Nothing to drop: when its one cell finishes, the loop ends."""


def train_cell(task: Task, split: Split, w: float, seed: int, train: TrainConfig, evalc: EvalConfig,
               progress: Callable[[int], None] | None = None, device: str | torch.device = "cpu",
               measured: bool = True, measures: Sequence[CellMeasure] = ()) -> CellResult:
    """Train one cell; ``progress`` is called with the steps done since its last call; ``measured``:
    with the task's extra curves and values and the run's ``measures`` (landscape.measures.hook)."""
    start = time.perf_counter()
    backend = OneModel(task, split, w, seed, train, evalc, torch.device(device))
    evals = cell_eval_steps(train, evalc, len(split.train_y))
    return run_cells(backend, task, [backend.split], evals, train, start, progress, measured, measures, [(w, seed)],
                     backend.device)[0]
