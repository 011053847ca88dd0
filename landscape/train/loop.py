"""The training loop, written once for both backends (nanoGPT style: flat, top to bottom).

A backend holds the cells still training: one model (landscape.train.single) or many stacked under
vmap (landscape.train.stacked). It knows how to advance them k steps, evaluate them, take their
group norms, hand out each cell's model for the task's own measurements, and drop cells that
finished. This loop owns everything else: the walk over eval steps, divergence, the stopping rule,
time accounting, progress, the task's measurements and the per-cell results.
"""
from __future__ import annotations

import time
import warnings
from typing import Callable, Iterator, Protocol, Sequence

import numpy as np
import torch

from landscape.cube.schema import CURVES, STATUS_DIVERGED, STATUS_DONE, CellResult
from landscape.measures.hook import CellMeasure, MeasurePoint, quantities_of
from landscape.spec import TrainConfig
from landscape.tasks.base import Split, Task

#: Steps between progress reports (a report costs microseconds; the bar moves within a second).
PROGRESS_EVERY = 32
CPU = torch.device("cpu")
_NORM = CURVES.index("norm")


class Backend(Protocol):
    """The cells still training, in the order they were given (finished ones dropped)."""

    count: int  # cells at the start
    groups: int  # parameter groups (Task.parameter_groups) per cell

    def advance(self, first_step: int, k: int) -> None:
        """Train every cell steps ``first_step`` ... ``first_step + k - 1``."""

    def evaluate(self) -> np.ndarray:
        """(cells, len(CURVES)): train loss, test loss, train err, test err and norm, in eval mode."""

    def group_norms(self) -> np.ndarray:
        """(cells, groups): the norm of each parameter group of each cell."""

    def models(self) -> Iterator[torch.nn.Module]:
        """Each cell's model on the CPU in eval mode, one at a time (for ``measure``)."""

    def optimizer_state(self, position: int) -> dict[str, dict[str, torch.Tensor]]:
        """The optimizer state of the cell at ``position`` among those still training, by parameter
        name and shaped as the model's parameters (copies)."""

    def keep(self, keep: np.ndarray) -> None:
        """Drop the cells where ``keep`` is False."""


@torch.no_grad()
def measure(task: Task, model: torch.nn.Module, split: Split) -> list[float]:
    """The task's ``extra_curves`` of one cell now: the one hook through which both backends measure.

    ``model`` and ``split`` are on the CPU whatever the device, so a task's measurement code does
    not deal with devices.
    """
    measured = task.measure_extra_curves(model, split)
    return [measured[name] for name in task.extra_curves]


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


def run_cells(backend: Backend, task: Task, splits: list[Split], evals: np.ndarray, train: TrainConfig,
              start: float, progress: Callable[[int], None] | None = None, measured: bool = True,
              measures: Sequence[CellMeasure] = (), cells: Sequence[tuple[float, int]] = (),
              device: torch.device = CPU) -> list[CellResult]:
    """Train the backend's cells through ``evals``; ``splits`` are the cells' (CPU) data for the
    task's measurements (``measured``: its extra curves and values; the batching probe's few rows are
    no split of the task), ``start`` the wall time at which setting the cells up began.

    ``measures`` (landscape.measures.hook) run at each cell's last eval, and at every eval where they
    ask to, on cells that have not diverged; ``cells`` gives each cell's (w, seed) for them.

    ``seconds`` of a cell is its share of the wall time: each stretch between evals is divided
    equally among the cells still training. ``progress`` is called with the cell-steps done since
    its last call.
    """
    count = backend.count
    curves = np.full((count, len(CURVES), len(evals)), np.nan)
    layer_norms = np.full((count, backend.groups, len(evals)), np.nan)
    names = list(task.extra_curves) if measured else []
    extra = np.full((count, len(names), len(evals)), np.nan)
    measures = list(measures) if measured else []
    quantities, coords = quantities_of(measures)
    shape_of = {q.name: tuple(len(coords[d]) for d in q.dims) for q in quantities}
    finals = {q.name: np.full((count, *shape_of[q.name]), np.nan) for q in quantities}
    trends = {q.name: np.full((count, *shape_of[q.name], len(evals)), np.nan) for q in quantities if q.curve}
    steps = np.zeros(count, dtype=np.int64)
    last = np.zeros(count, dtype=np.int64)  # each cell's last eval
    seconds = np.zeros(count)
    status = np.full(count, STATUS_DONE, dtype=np.int8)
    active = np.arange(count)  # the cells still training, as the backend holds them
    step, mark = 0, start
    for k, at in enumerate(evals):
        while step < at:
            chunk = min(at - step, PROGRESS_EVERY)
            backend.advance(step, chunk)
            step += chunk
            if progress is not None:
                progress(chunk * len(active))
        curves[active, :, k] = backend.evaluate()
        layer_norms[active, :, k] = backend.group_norms()
        diverged = ~np.isfinite(curves[active, 0, k]) | ~np.isfinite(curves[active, 1, k])
        leaving = diverged | converged(curves[active, 0, : k + 1], train) | (at == evals[-1])
        due = [m for m in measures if m.every_eval or leaving.any()]
        if names or due:
            for pos, (i, model) in enumerate(zip(active, backend.models(), strict=True)):  # strict: runs to its end
                if names:
                    extra[i, :, k] = measure(task, model, splits[i])
                if diverged[pos]:
                    continue
                point = MeasurePoint(task, splits[i], cells[i][0], cells[i][1], int(at), bool(leaving[pos]), train,
                                     device, lambda pos=pos: backend.optimizer_state(pos))
                for m in due:
                    if m.every_eval or leaving[pos]:
                        for name, value in m(model, point).items():
                            finals[name][i] = value
                            if name in trends:
                                trends[name][i, ..., k] = value
        now = time.perf_counter()
        seconds[active] += (now - mark) / len(active)
        mark = now
        if leaving.any():
            status[active[diverged]] = STATUS_DIVERGED
            for v in finals.values():  # a diverged cell ends with nothing measured, as its metrics
                v[active[diverged]] = np.nan
            steps[active[leaving]] = at
            last[active[leaving]] = k
            active = active[~leaving]
            if len(active) == 0:
                break
            backend.keep(~leaving)
    return [CellResult(eval_steps=evals, curves=curves[i], layer_norms=layer_norms[i],
                       norm=float(curves[i, _NORM, last[i]]), steps=int(steps[i]), seconds=float(seconds[i]),
                       status=int(status[i]),
                       extra_curves=dict(zip(names, extra[i])),
                       extra_values=task.measure_extra_values(splits[i]) if measured else {},
                       measures={name: v[i] for name, v in finals.items()},
                       measure_curves={name: v[i] for name, v in trends.items()},
                       measure_dims={q.name: q.dims for q in quantities}) for i in range(count)]
