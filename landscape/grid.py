"""The grid runner: plan the cells of a spec, train them on parallel workers, write the cube.

Workers (joblib's loky processes, or a dask.distributed cluster through joblib's dask backend)
train one cell each and return a few KB; the driver alone writes the cube, as results arrive.
Rerunning the same command trains only the cells still pending.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import signal
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import joblib
import numpy as np
import torch
from tqdm.auto import tqdm

from landscape import cube
from landscape.errors import UserError
from landscape.norm import global_norm
from landscape.spec import Spec, resolve
from landscape.tasks import Task, make_task
from landscape.train import STATUS_PENDING, CellResult, eval_steps, train_cell

BACKENDS = ("loky", "dask")


@dataclass(frozen=True)
class Cell:
    index: tuple[int, ...]  # position along spec.cell_dims
    w: float
    value: Any  # along the task's axis
    seed: int
    settings: dict[str, float]  # training-setting axis values (wd, lr), empty for landscapes


@dataclass(frozen=True)
class RunSummary:
    total: int
    already_done: int
    ran: int


def default_init_norm(task: Task, seed: int = 0) -> float:
    """w0: the global norm of the task's default init under ``seed``, the reference for alpha."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = task.build_model()
    return float(global_norm(task.constrained_parameters(model)))


def norm_values(spec: Spec, w0: float) -> list[float]:
    return [v * w0 for v in spec.norm_values] if spec.norm_axis == "alpha" else list(spec.norm_values)


def plan(spec: Spec, w: list[float], status: np.ndarray) -> list[Cell]:
    """The pending cells, in grid order."""
    values = {"w": w, spec.axis: spec.axis_values, **spec.train_axes, "seed": spec.seeds}
    cells = []
    for index in np.ndindex(status.shape):
        if status[index] != STATUS_PENDING:
            continue
        at = {d: values[d][i] for d, i in zip(spec.cell_dims, index)}
        cells.append(Cell(index, at["w"], at[spec.axis], at["seed"], {k: at[k] for k in spec.train_axes}))
    return cells


@functools.lru_cache(maxsize=2)
def _worker_task(name: str, options_json: str, data_dir: str | None) -> Task:
    return make_task(name, json.loads(options_json), data_dir)


def run_cell(spec_dict: dict[str, Any], data_dir: str | None, cell: Cell, threads: int) -> tuple[Cell, CellResult]:
    """Worker entry point: everything it needs arrives as plain data, the task is built once per process."""
    torch.set_num_threads(threads)
    spec = resolve(spec_dict)
    task = _worker_task(spec.task, json.dumps(spec.task_options, sort_keys=True), data_dir)
    return cell, train_cell(task, task.data(cell.value), cell.w, cell.seed, spec.cell_train(cell.settings), spec.eval)


def check_writable(out: Path) -> None:
    """Fail before any training if the cube could not be written (probing beats os.access as root)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a zarr directory")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryDirectory(dir=out.parent, prefix=".landscape-probe-").cleanup()
    except OSError as e:
        raise UserError(f"--out {out} is not writable: {e.strerror or e}") from None


def prepare_store(spec: Spec, task: Task, out: Path, overwrite: bool) -> None:
    """Create the template cube, or check that an existing one holds this very spec."""
    w0 = default_init_norm(task)
    if out.exists() and not overwrite:
        existing = cube.open_cube(out)
        if cube.stored_spec(existing) != spec.to_dict():
            raise UserError(
                f"{out} holds a different spec (stored task {existing.attrs.get('task')!r}); "
                "use --overwrite to replace it, or another --out"
            )
        if existing.attrs.get("data_source") != task.data_source:
            raise UserError(
                f"{out} was computed on {existing.attrs.get('data_source')!r}, not {task.data_source!r}; "
                "use --overwrite or another --out"
            )
        return
    ds = cube.template(
        dims=spec.cell_dims,
        coords={"w": norm_values(spec, w0), spec.axis: spec.axis_values, **spec.train_axes, "seed": spec.seeds},
        axis=task.axis,
        axis_long_name=task.axis_long_name,
        w0=w0,
        steps=eval_steps(spec.train.steps, spec.eval),
        attrs=cube.standard_attrs(spec.task, spec.to_json(), task.data_source),
    )
    cube.create(out, ds, overwrite=overwrite)


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, so a cell is never half written."""
    received: list[Any] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda *a: received.append(a))
    except ValueError:  # not in the main thread: nothing to defer
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:
            raise KeyboardInterrupt


@contextlib.contextmanager
def parallel_backend(backend: str, scheduler: str | None, jobs: int) -> Iterator[int]:
    """Enter the joblib backend; yields the number of parallel workers and torch threads per cell."""
    if backend == "loky":
        with joblib.parallel_config(backend="loky"):
            yield jobs
        return
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            client = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as e:
            raise UserError(f"--scheduler {scheduler}: cannot reach a dask scheduler ({e})") from None
        cluster = None
    else:
        cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        workers = sum(client.nthreads().values()) or 1
        with joblib.parallel_config(backend="dask"):
            yield workers
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def run_grid(
    spec: Spec,
    out: str | Path,
    *,
    jobs: int = 0,
    backend: str = "loky",
    scheduler: str | None = None,
    overwrite: bool = False,
    data_dir: str | None = None,
    progress: bool = True,
) -> RunSummary:
    """Compute every pending cell of ``spec`` into the cube at ``out``."""
    out = Path(out)
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend!r} (known: {', '.join(BACKENDS)})")
    if jobs < 0:
        raise UserError(f"--jobs {jobs} must be >= 0 (0 = all cores)")
    if scheduler and backend != "dask":
        raise UserError("--scheduler needs --backend dask")
    cores = os.cpu_count() or 1
    jobs = jobs or cores
    task = spec.make_task(data_dir)
    task.check_axis(spec.axis_values)
    check_writable(out)

    with parallel_backend(backend, scheduler, jobs) as workers:
        prepare_store(spec, task, out, overwrite)
        stored = cube.open_cube(out)
        status = stored["status"].transpose(*spec.cell_dims).values
        cells = plan(spec, list(stored["w"].values), status)
        total = status.size
        evals = stored["step"].values
        threads = 1 if backend == "dask" else max(1, cores // min(jobs, max(len(cells), 1)))
        n_jobs = min(workers, max(len(cells), 1))
        bar = tqdm(total=total, initial=total - len(cells), unit="cell", desc=spec.task,
                   disable=not progress, file=sys.stderr, dynamic_ncols=True)
        results = joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            joblib.delayed(run_cell)(spec.to_dict(), task.data_dir, c, threads) for c in cells
        )
        ran = 0
        try:
            for cell, result in results:
                with deferred_interrupt():
                    cube.write_cell(out, spec.cell_dims, cell.index, result, evals, spec.eval.level)
                ran += 1
                bar.update(1)
        finally:
            bar.close()
            if hasattr(results, "close"):
                results.close()
    return RunSummary(total=total, already_done=total - len(cells), ran=ran)
