"""What a worker runs: one batch of cells, trained by the backend the plan chose, on its device."""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import torch
from landscape.run.progress import Report

from landscape.errors import task_errors
from landscape.measures.hook import CellMeasure
from landscape.measures.suite import cell_measures
from landscape.run.plan import Cell, cell_names
from landscape.spec import Spec, TrainConfig, resolve
from landscape.tasks import Task, make_task
from landscape.tasks.base import Split
from landscape.tasks.registry import search_beside
from landscape.train import (
    CellResult,
    cell_steps,
    resolve_device,
    rows_per_step,
    train_cell,
    train_cells,
)


@functools.lru_cache(maxsize=2)
def _worker_task(ref: str | type[Task], options_json: str, data_dir: str | None) -> Task:
    return make_task(ref, json.loads(options_json), data_dir)


def worker_device(name: str) -> str:
    """The device a worker trains on: ``name`` resolved on the worker's own machine. A plain ``cuda``
    on a dask worker that sees several GPUs is the GPU of the worker's index (LocalCluster names its
    workers 0, 1, ...), so each worker has its own; a worker that sees one (dask-cuda sets
    CUDA_VISIBLE_DEVICES per worker) uses it."""
    device = resolve_device(name)
    if device != "cuda" or torch.cuda.device_count() < 2:
        return device
    try:
        from distributed import get_worker

        index = get_worker().name
    except (ImportError, ValueError):  # not on a dask worker
        return device
    return f"cuda:{int(index) % torch.cuda.device_count()}" if str(index).isdigit() else device


def train_cell_batch(task_ref: str | type[Task], spec_dict: dict[str, Any], data_dir: str | None, cells: list[Cell],
              threads: int, stacked: bool, report: Report | None = None,
              device: str = "cpu", search: tuple[str, ...] = ()) -> list[tuple[Cell, CellResult]]:
    """Worker entry point: everything it needs arrives as plain data (or the task class itself, when
    no import path reaches it); the task is built once per process. ``search``: the driver's
    registry.SEARCH_DIRS, where an outside task's module may live.

    Cells that take equally many rows per step and share a training config and eval schedule train
    together as one batched model when ``batched``; otherwise each goes through ``train_cell``.
    """
    for directory in search:
        search_beside(directory)
    spec = resolve({**spec_dict, "task": task_ref})
    device = worker_device(device)
    with task_errors(spec.task_class, f"building it in a worker for {cell_names(spec, cells)} on {device}"):
        task = _worker_task(task_ref, json.dumps(spec.task_options, sort_keys=True), data_dir)
    before = torch.get_num_threads()
    torch.set_num_threads(min(threads, task.max_threads or threads))
    try:
        splits = {}  # one data set per axis value, shared by the cells that have it
        for c in cells:
            if c.value not in splits:
                with task_errors(type(task), f"task.data({c.value!r}) for {cell_names(spec, [c])}"):
                    splits[c.value] = task.data(c.value)
        measures = cell_measures(spec, task)
        parts: dict[Any, list[Cell]] = {}
        for c in cells:
            train, n = spec.cell_train(c.settings, c.value), len(splits[c.value].train_y)
            parts.setdefault((train, rows_per_step(n, train.batch_size), cell_steps(train, n)), []).append(c)
        out = []
        for (train, _, budget), part in parts.items():
            out += _train_part(task, spec, splits, part, train, stacked, _CellProgress(report, budget), device, measures)
        return out
    finally:
        torch.set_num_threads(before)


def _train_part(task: Task, spec: Spec, splits: dict[Any, Split], part: list[Cell], train: TrainConfig,
                stacked: bool, progress: _CellProgress, device: str,
                measures: list[CellMeasure]) -> list[tuple[Cell, CellResult]]:
    """Cells of one training config and rows per step: one by one, or as one batched model; an
    exception of the task's own code names the task, the cells and the device."""
    if len(part) == 1 or not stacked:
        out = []
        for c in part:
            with task_errors(type(task), f"training {cell_names(spec, [c])} on {device}"):
                out.append((c, progress.finished(train_cell(task, splits[c.value], c.w, c.seed, train, spec.eval,
                                                            progress.steps, device, measures=measures))))
        return out
    with task_errors(type(task), f"training {cell_names(spec, part)} on {device}"):
        results = train_cells(task, [splits[c.value] for c in part], [c.w for c in part], [c.seed for c in part],
                              train, spec.eval, device, progress.steps, measures=measures)
    return list(zip(part, [progress.finished(r) for r in results]))


@dataclass
class _CellProgress:
    """Forwards a trainer's step counts to the driver, and a finished cell's unrun steps as skipped."""

    report: Report | None
    budget: int

    def steps(self, n: int) -> None:
        if self.report is not None:
            self.report(n)

    def finished(self, result: CellResult) -> CellResult:
        if self.report is not None and result.steps < self.budget:
            self.report(0, self.budget - result.steps)
        return result
