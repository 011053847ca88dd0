"""The grid runner: plan the cells of a spec, train them on parallel workers, write the cube.

Workers (joblib's loky processes, or a dask.distributed cluster through joblib's dask backend)
train one batch of cells each and return a few KB per cell; the driver alone writes the cube, as
results arrive. Rerunning the same command trains only the cells still pending.

Batches: the pending cells of a vectorizable task are grouped by their training config, ordered by
axis value (so a batch holds few distinct training sets) and cut into batches of at most
``batch_cells`` cells, which a worker trains as one batched model (landscape.vectorized). Other
tasks, and ``train.max_batch_cells = 1``, train one cell per batch with ``train_cell``.
"""
from __future__ import annotations

import contextlib
import functools
import json
import math
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
from landscape.schema import FIXED_PREFIX
from landscape.spec import Spec, resolve
from landscape.tasks import Task, make_task
from landscape.train import STATUS_PENDING, CellResult, eval_steps, train_cell
from landscape.vectorized import rows_per_step, train_cells

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


#: Largest batch the planner picks by itself: on CPU the cell-steps/s of the MNIST MLP stop
#: growing at about 16 cells (bench); on a GPU far larger batches still pay off.
AUTO_BATCH_CELLS = {"cpu": 16, "cuda": 256}


def worker_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def batch_cells(spec: Spec, task: Task, pending: int, workers: int, device: str) -> int:
    """How many cells one worker trains at once.

    The smallest of: the spec's cap (``train.max_batch_cells``, 0 = auto: AUTO_BATCH_CELLS for the
    device), what fits in a worker's share of the device memory (an estimate per cell: parameters,
    gradients and optimizer moments, and the activations of one step), and half an equal share of
    the pending cells: every worker gets at least two batches, which evens out batches that finish
    early (stopping) and bounds what an interrupt loses (a batch is written when it is done).
    """
    if not task.vectorizable or pending == 0:
        return 1
    cap = spec.train.max_batch_cells or AUTO_BATCH_CELLS[device]
    share = math.ceil(pending / (2 * max(workers, 1)))
    return max(1, min(cap, share, _cells_in_memory(spec, task, workers, device)))


def _cells_in_memory(spec: Spec, task: Task, workers: int, device: str) -> int:
    import psutil

    with torch.random.fork_rng():
        model = task.build_model()
    activations = 0  # floats per row: the outputs of every leaf module

    def count(module: torch.nn.Module, args: Any, output: Any) -> None:
        nonlocal activations
        activations += output.numel() if isinstance(output, torch.Tensor) else 0

    hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(task.data(spec.axis_values[0]).train_x[:1])
    for h in hooks:
        h.remove()
    # rows per step: at most the minibatch; full batch needs the largest training set
    rows = spec.train.batch_size or max(len(task.data(v).train_x) for v in spec.axis_values)
    per_cell = 4 * (6 * sum(p.numel() for p in model.parameters()) + 3 * rows * activations)
    free = torch.cuda.mem_get_info()[0] if device == "cuda" else psutil.virtual_memory().available
    return max(1, int(0.5 * free / max(workers, 1) // per_cell))


def plan_batches(spec: Spec, cells: list[Cell], size: int) -> list[list[Cell]]:
    """Cells with one training config, ordered by axis value, cut into batches of at most ``size``.

    Batches of the last axis values (the largest N) are handed out first: they tend to run longest
    (more to evaluate, slower to converge), so the short ones fill in behind them at the end.
    """
    if size <= 1:
        return [[c] for c in cells]
    groups: dict[Any, list[Cell]] = {}
    for c in cells:
        groups.setdefault(spec.cell_train(c.settings), []).append(c)
    batches = []
    for group in groups.values():
        group.sort(key=lambda c: (c.index[1:], c.index[0]))  # axis value, settings, seed, then w
        bounds = np.linspace(0, len(group), math.ceil(len(group) / size) + 1).round().astype(int)
        batches += [group[a:b] for a, b in zip(bounds[:-1], bounds[1:])]  # nearly equal sizes
    return sorted(batches, key=lambda b: -b[-1].index[1])


def run_batch(spec_dict: dict[str, Any], data_dir: str | None, cells: list[Cell], threads: int) -> list[tuple[Cell, CellResult]]:
    """Worker entry point: everything it needs arrives as plain data, the task is built once per process.

    Cells that take equally many rows per step (a full-batch cell takes its whole set) and share a
    training config train together as one batched model; a lone cell, or a task that cannot be
    vectorized, goes through ``train_cell``.
    """
    spec = resolve(spec_dict)
    task = _worker_task(spec.task, json.dumps(spec.task_options, sort_keys=True), data_dir)
    torch.set_num_threads(min(threads, task.max_threads or threads))
    splits = {}  # one data set per axis value, shared by the cells that have it
    for c in cells:
        if c.value not in splits:
            splits[c.value] = task.data(c.value)
    parts: dict[Any, list[Cell]] = {}
    for c in cells:
        train = spec.cell_train(c.settings)
        parts.setdefault((train, rows_per_step(len(splits[c.value].train_x), train.batch_size)), []).append(c)
    out = []
    for (train, _), part in parts.items():
        if len(part) == 1 or not task.vectorizable or train.max_batch_cells == 1:
            out += [(c, train_cell(task, splits[c.value], c.w, c.seed, train, spec.eval)) for c in part]
            continue
        results = train_cells(task, [splits[c.value] for c in part], [c.w for c in part], [c.seed for c in part],
                              train, spec.eval, worker_device())
        out += zip(part, results)
    return out


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
        attrs={**cube.standard_attrs(spec.task, spec.to_json(), task.data_source),
               **{FIXED_PREFIX + name: value for name, value in task.fixed.items()}},
        extra_curves=task.extra_curves,
        extra_values=task.extra_values,
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
    task = spec.make_task(data_dir)
    device = worker_device()
    # A GPU: one worker feeding it big batches; on CPU all cores by default.
    jobs = jobs or (1 if device == "cuda" and backend == "loky" and task.vectorizable else cores)
    task.check_axis(spec.axis_values)
    check_writable(out)

    with parallel_backend(backend, scheduler, jobs) as workers:
        prepare_store(spec, task, out, overwrite)
        stored = cube.open_cube(out)
        status = stored["status"].transpose(*spec.cell_dims).values
        cells = plan(spec, list(stored["w"].values), status)
        total = status.size
        evals = stored["step"].values
        batches = plan_batches(spec, cells, batch_cells(spec, task, len(cells), workers, device))
        # torch threads per worker x workers = cores. Threads are fixed by --jobs, not raised when
        # there are fewer batches than workers: spare OpenMP threads spin, and on a busy machine a
        # small model ran 10x slower with 2 threads than with 1 (measured).
        threads = 1 if backend == "dask" else max(1, cores // jobs)
        n_jobs = min(workers, max(len(batches), 1))
        bar = tqdm(total=total, initial=total - len(cells), unit="cell", desc=spec.task,
                   disable=not progress, file=sys.stderr, dynamic_ncols=True)
        results = joblib.Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            joblib.delayed(run_batch)(spec.to_dict(), task.data_dir, b, threads) for b in batches
        )
        ran = 0
        try:
            for batch in results:
                for cell, result in batch:
                    with deferred_interrupt():
                        cube.write_cell(out, spec.cell_dims, cell.index, result, evals, spec.eval.level)
                    ran += 1
                    bar.update(1)
        finally:
            bar.close()
            if hasattr(results, "close"):
                results.close()
    return RunSummary(total=total, already_done=total - len(cells), ran=ran)
