"""The grid runner: plan the cells of a spec, train them on parallel workers, write the cube.

Workers (loky processes on this machine, or the workers of a dask.distributed cluster) train one
batch of cells each and return a few KB per cell; the driver alone writes the cube, as results
arrive, under an exclusive lock (landscape.lock). Rerunning the same command trains only the
cells still pending.

The batch plan is a function of the spec and the device only (not of --jobs, so one spec gives one
cube on any worker count), fixed when the cube is created and stored in its attrs: whether cells
train batched (landscape.train.probe's probe), and how many cells share a batch. Every cell is always
trained with the same batch-mates, so a resumed grid equals an uninterrupted one: a batch with any
pending cell is trained whole again, and only its pending cells are written.
"""
from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import json
import logging
import math
import os
import re
import signal
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch

from landscape import cube, fingerprint, limits
from landscape.cube.schema import checked_levels
from landscape.train.probe import Batching, decide
from landscape.errors import StoreError, TaskError, UserError, first_line, printable, task_errors
from landscape.train.norm import global_norm
from landscape.progress import Bar, DaskChannel, DirectChannel, Report, SocketChannel
from landscape.cube.schema import CURVES, FIXED_PREFIX, SCHEMA_VERSION, STATUS_PENDING, TRANSITION, reference_metric
from landscape.read.dichotomy import cell_transition
from landscape.read.dynamics import first_reach
from landscape.spec import Spec, TrainConfig, apply_overrides, read_spec_file, resolve, spec_differences
from landscape.tasks import Task, make_task
from landscape.tasks.base import Split
from landscape.tasks.registry import SEARCH_DIRS, importable, resolve_task, same_class, search_beside
from landscape.train import (
    CellResult, cell_eval_steps, cell_steps, check_device, check_task_outputs, device_kind, device_name,
    resolve_device, rows_per_step, train_cell, train_cells,
)

BACKENDS = ("loky", "dask")
#: Environment variable of the test suite: interrupt the driver after it has written k cells,
#: as "k" (Ctrl-C) or "k:KILL" (any signal name): a deterministic place to interrupt a grid.
STOP_AFTER_ENV = "LANDSCAPE_STOP_AFTER_CELLS"
#: Torch threads per worker when --threads is not given (default: cores // jobs). Threads are fixed
#: by --jobs, not raised when there are fewer batches than workers: on a busy machine OpenMP
#: threads wait for each other at every parallel region, and a small model ran 9x slower with 2
#: threads than with 1 in one process at load 8 on 2 cores, 2.1-2.8x slower at load 3-5 (measured:
#: one teacher-student cell, 4,000 steps, 14-17 s against 29-48 s); the test suite sets 1.
THREADS_ENV = "LANDSCAPE_THREADS"
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


@dataclass(frozen=True)
class RunSummary:
    total: int
    already_done: int
    ran: int
    #: Finished cells that did not read back as written (cube.verify_cells), recomputed and counted in ``ran``.
    repaired: int = 0


class Terminated(KeyboardInterrupt):
    """SIGTERM (from ``timeout``, systemd, ``scancel``): stops the grid as Ctrl-C does."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM (``terminated``) stopped the grid; ``stored`` cells are in the cube."""

    def __init__(self, out: Path, stored: int, total: int, terminated: bool = False):
        super().__init__(out, stored, total)
        self.out, self.stored, self.total, self.terminated = out, stored, total, terminated


class WorkerFailed(StoreError):
    """A batch did not come back: its task raised or exited, or its worker process died."""


class ClusterLost(UserError):
    """The dask cluster went away mid-run (the finished cells are stored)."""


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


def batch_cells(spec: Spec, batching: Batching, cells: int, device: str) -> int:
    """How many cells share a batch: a function of the spec and the device only.

    The smallest of the spec's cap (``train.max_batch_cells``, 0 = auto: AUTO_BATCH_CELLS for the
    device) and the grid's cells over PLAN_BATCHES for the device, so that there are batches for
    several workers, which evens out batches that finish early (stopping) and bounds what an interrupt loses.
    """
    if not batching.batched:
        return 1
    cap = spec.train.max_batch_cells or AUTO_BATCH_CELLS[device]
    return max(1, min(cap, math.ceil(cells / PLAN_BATCHES[device])))


def plan_batches(spec: Spec, cells: list[Cell], size: int, by_seed: bool, steps_of: Mapping[Any, np.ndarray]) -> list[list[Cell]]:
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


def run_batch(task_ref: str | type[Task], spec_dict: dict[str, Any], data_dir: str | None, cells: list[Cell],
              threads: int, batched: bool, report: Report | None = None,
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
        parts: dict[Any, list[Cell]] = {}
        for c in cells:
            train, n = spec.cell_train(c.settings, c.value), len(splits[c.value].train_y)
            parts.setdefault((train, rows_per_step(n, train.batch_size), cell_steps(train, n)), []).append(c)
        out = []
        for (train, _, budget), part in parts.items():
            out += _train_part(task, spec, splits, part, train, batched, _CellProgress(report, budget), device)
        return out
    finally:
        torch.set_num_threads(before)


def _train_part(task: Task, spec: Spec, splits: dict[Any, Split], part: list[Cell], train: TrainConfig,
                batched: bool, progress: _CellProgress, device: str) -> list[tuple[Cell, CellResult]]:
    """Cells of one training config and rows per step: one by one, or as one batched model; an
    exception of the task's own code names the task, the cells and the device."""
    if len(part) == 1 or not batched:
        out = []
        for c in part:
            with task_errors(type(task), f"training {cell_names(spec, [c])} on {device}"):
                out.append((c, progress.finished(train_cell(task, splits[c.value], c.w, c.seed, train, spec.eval,
                                                            progress.steps, device))))
        return out
    with task_errors(type(task), f"training {cell_names(spec, part)} on {device}"):
        results = train_cells(task, [splits[c.value] for c in part], [c.w for c in part], [c.seed for c in part],
                              train, spec.eval, device, progress.steps)
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


#: Files that make a folder a zarr store (format 2 group or array, format 3).
ZARR_MARKS = (".zgroup", ".zarray", "zarr.json")


def resolve_out(out: str | Path) -> Path:
    """``--out`` as an absolute path with ``..`` and symlinks resolved: what --overwrite may replace
    is decided on the real folder, and aliases of one cube share one lock."""
    if not isinstance(out, (str, os.PathLike)) or not str(out).strip():
        raise UserError(f"--out {out!r} should name the cube's folder, e.g. results/mnist.zarr")
    path = Path(os.path.realpath(out))
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        raise UserError(f"--out {out} is the working directory or a folder above it; "
                        "name the cube's own folder, e.g. results/mnist.zarr")
    store = next((p for p in path.parents if any((p / name).exists() for name in ZARR_MARKS)), None)
    if store is not None:  # a cube inside a store would become part of it, and that store no cube of ours
        raise UserError(f"--out {out} is inside the zarr store {store}; put the cube beside it, not in it")
    return path


def check_writable(out: Path) -> None:
    """Fail before any training if the cube could not be written (probing beats os.access as root)."""
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a zarr directory")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        for where in (out.parent, out) if out.exists() else (out.parent,):
            tempfile.TemporaryDirectory(dir=where, prefix=cube.PROBE_PREFIX).cleanup()
    except OSError as e:
        raise UserError(f"--out {out} is not writable: {e.strerror or e}") from None


@dataclass(frozen=True)
class Plan:
    """What a cube fixes at creation and every resume reuses: the path its cells train on."""

    batching: Batching
    batch_cells: int
    device: str

    def attrs(self) -> dict[str, Any]:
        return {"batched": int(self.batching.batched), "batching": self.batching.reason,
                "batch_random": int(self.batching.random), "batch_cells": self.batch_cells,
                "batch_plan_device": self.device}

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> Plan:
        # Cubes planned per --jobs also hold batch_plan_jobs: their batch_cells is what they keep.
        try:
            return cls(Batching(bool(attrs["batched"]), str(attrs["batching"]), bool(attrs["batch_random"])),
                       int(attrs["batch_cells"]), str(attrs["batch_plan_device"]))
        except KeyError as e:
            raise UserError(f"the cube's batch plan attr {e} is missing; the cube is damaged: recompute it "
                            "with --overwrite") from None


def prepare_store(spec: Spec, task: Task, out: Path, overwrite: bool, device: str,
                  steps_of: Mapping[Any, np.ndarray], accept_versions: bool = False) -> Plan:
    """Create the template cube with its plan, or check that an existing one holds this very spec
    (computed on the same data, task code, w0 and, unless ``accept_versions``, library versions)
    and return the plan stored in it."""
    w0 = default_init_norm(task)
    inputs = fingerprint.attrs(task, spec.axis_values)
    if out.exists() and not overwrite:
        existing = cube.open_cube(out)
        stored = cube.stored_spec(existing)
        if isinstance(stored.get("task"), str) and same_class(stored["task"], _stored_name(existing.attrs),
                                                               spec.task_class):
            stored["task"] = spec.task  # one class, reached once as a script's and once by its import path
        differences = spec_differences(stored, spec.to_dict())
        if differences:
            raise UserError(f"{out} holds a different spec ({'; '.join(differences[:3])}"
                            f"{'; ...' if len(differences) > 3 else ''}); use --overwrite to replace it, or another --out")
        if existing.attrs.get("data_source") != task.data_source:
            raise UserError(
                f"{out} was computed on {existing.attrs.get('data_source')!r}, not {task.data_source!r}; "
                "use --overwrite or another --out"
            )
        fingerprint.check_resume(existing.attrs, {**inputs, "w0": w0, **cube.library_versions()}, str(out),
                                 accept_versions)
        _check_resume_device(out, existing.attrs, device)
        return Plan.from_attrs(existing.attrs)
    batching = decide(task, spec, w0)
    cells = int(np.prod([len(v) for v in (spec.norm_values, spec.axis_values, *spec.train_axes.values(), spec.seeds)]))
    kind = device_kind(device)
    plan = Plan(batching, batch_cells(spec, batching, cells, kind), kind)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        layers = list(task.parameter_groups(task.build_model()))
    ds = cube.template(
        dims=spec.cell_dims,
        coords={"w": norm_values(spec, w0), spec.axis: spec.axis_values, **spec.train_axes, "seed": spec.seeds},
        axis=task.axis,
        axis_long_name=task.axis_long_name,
        w0=w0,
        steps=np.unique(np.concatenate(list(steps_of.values()))),
        layers=layers,
        attrs={**cube.standard_attrs(task.name, spec.to_json(), task.data_source), "task_ref": spec.task, **inputs,
               "schema_version": SCHEMA_VERSION, "kind": spec.kind, "axis_role": task.axis_role,
               "reference_predictors": list(task.reference_predictors),
               **{FIXED_PREFIX + name: value for name, value in task.fixed.items()},
               "dtype": spec.train.dtype, **plan.attrs(), **device_attrs(device),
               "figure_metric": task.figure_metric,
               "figure_levels": checked_levels(task.figure_metric, task.figure_levels)},
        extra_curves=task.extra_curves,
        extra_values=task.extra_values,
    )
    with deferred_interrupt():  # a half-made store is never left behind
        cube.create(out, ds, overwrite=overwrite)
    return plan


#: The signals that stop a grid cleanly: held while a cell or the store is written.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def device_attrs(device: str) -> dict[str, str]:
    """The cube's record of where its cells train: ``device`` as given to the workers and its name
    (a dask worker resolves ``auto`` itself: the driver cannot name its device)."""
    name = "chosen by each dask worker" if device == "auto" else device_name(device)
    return {"device": device, "device_name": name}


def _check_resume_device(out: Path, attrs: Mapping[str, Any], device: str) -> None:
    """A cube's cells come from one kind of device (CPU or CUDA round differently); the index of a
    GPU may change. Cubes from before the device was recorded resume anywhere."""
    stored = attrs.get("device")
    if stored is not None and stored != "auto" and device != "auto" and device_kind(stored) != device_kind(device):
        raise UserError(f"{out} was computed on {stored} ({attrs.get('device_name')}), not {device}; resume it "
                        f"with --device {stored}, or use --overwrite or another --out")


def _stored_name(attrs: Mapping[str, Any]) -> str | None:
    """The task's own name in a cube's attrs (None in cubes made before task_ref, whose task is the reference)."""
    return attrs.get("task") if "task_ref" in attrs else None


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, so a cell is never half written."""
    received: list[int] = []
    try:
        previous = {s: signal.signal(s, lambda signum, frame: received.append(signum)) for s in STOP_SIGNALS}
    except ValueError:  # not in the main thread: nothing to defer
        yield
        return
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if received:  # delivered again to the handler it was held from
            signal.raise_signal(received[0])


@contextlib.contextmanager
def sigterm_stops() -> Iterator[None]:
    """Turn SIGTERM into ``Terminated`` for the block, so it stops a grid as Ctrl-C does: finished
    cells kept, workers stopped, one line."""
    def stop(signum: int, frame: Any) -> None:
        # Senders often repeat SIGTERM (systemd, impatient scripts): the grid is stopping already,
        # and a second Terminated would break off the teardown that stops the workers.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not in the main thread: the caller owns the signals
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _Executor:
    """Where batches run: the driver itself, loky worker processes, or a dask cluster."""

    def __init__(self, backend: str, scheduler: str | None, jobs: int):
        self.backend, self.client, self.cluster, self.pool = backend, None, None, None
        if backend == "dask":
            from distributed import Client, LocalCluster

            if scheduler:
                try:
                    self.client = Client(scheduler, timeout="10s")
                except (OSError, TimeoutError, ValueError) as e:
                    raise UserError(f"--scheduler {scheduler}: cannot reach a dask scheduler ({e})") from None
            else:
                # The scheduler's HTTP server starts even without a dashboard, on port 8787 unless told
                # otherwise, and warns when that port is taken: any free port will do here.
                with safe_path():
                    self.cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                                dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"})
                self.client = Client(self.cluster)
            self.workers = sum(self.client.nthreads().values()) or 1
        else:
            self.workers = jobs

    def channel(self, bar: Bar) -> SocketChannel | DirectChannel | DaskChannel:
        if self.client is not None:
            return DaskChannel(bar, self.client, f"landscape-progress-{uuid.uuid4().hex}")
        return DirectChannel(bar) if self.workers == 1 else SocketChannel(bar)

    def results(self, calls: list[tuple[Any, ...]], names: Callable[[list[Cell]], str]
                ) -> Iterator[list[tuple[Cell, CellResult]]]:
        """Results of ``run_batch(*call)`` for every call, as they finish; a batch that fails (its
        task raises or exits, its worker dies) is a ``WorkerFailed`` that ``names`` its cells."""
        if self.client is not None:
            yield from self._dask(calls, names)
        elif self.workers == 1:  # one job: train in the driver, no worker process to start
            for call in calls:
                with _batch_failure(call[3], names):
                    batch = run_batch(*call)
                yield batch
        else:
            yield from self._loky(calls, names)

    def _loky(self, calls: list[tuple[Any, ...]], names: Callable[[list[Cell]], str]
              ) -> Iterator[list[tuple[Cell, CellResult]]]:
        from joblib.externals.loky import get_reusable_executor

        with safe_path():  # also for the workers loky starts again, and its resource tracker
            # Idle workers live a minute: a grid after a grid (tests, notebooks) reuses them.
            self.pool = get_reusable_executor(max_workers=min(self.workers, len(calls)) or 1, reuse=True, timeout=60,
                                              initializer=die_with_parent, initargs=(os.getpid(),))
            # Left-over futures are not cancelled here: close() kills the workers, and loky's manager then
            # fails them itself (cancelling them first makes its thread print an InvalidStateError traceback).
            futures = {self.pool.submit(run_batch, *call): call[3] for call in calls}
            for future in concurrent.futures.as_completed(futures):
                with _batch_failure(futures[future], names):
                    batch = future.result()
                yield batch

    def _dask(self, calls: list[tuple[Any, ...]], names: Callable[[list[Cell]], str]
              ) -> Iterator[list[tuple[Cell, CellResult]]]:
        from distributed import as_completed

        futures = {self.client.submit(run_batch, *call, pure=False): call[3] for call in calls}
        try:
            for future in as_completed(futures):
                try:
                    batch = future.result()
                except (KeyboardInterrupt, UserError):
                    raise
                except Exception as e:
                    # A killed scheduler cancels every future ("scheduler-connection-lost") while
                    # the client still tries to reconnect.
                    if isinstance(e, concurrent.futures.CancelledError) or self.client.status != "running":
                        raise ClusterLost(f"lost the dask cluster ({type(e).__name__}: {first_line(e)})") from None
                    with _batch_failure(futures[future], names):
                        raise
                yield batch
        finally:
            for f in futures:
                f.cancel()

    def close(self, interrupted: bool) -> None:
        if self.pool is not None and interrupted:
            quiet_threads()  # loky's manager thread can trip over a shutdown mid-queue (KeyError, InvalidStateError)
            self.pool.shutdown(wait=False, kill_workers=True)  # stop training that nobody will write
        if self.client is not None:
            # Closing a client whose scheduler is gone logs the aborted reconnect, traceback and all.
            quiet = logging.getLogger("distributed.client")
            level = quiet.level
            quiet.setLevel(logging.CRITICAL)
            with contextlib.suppress(Exception):
                self.client.close()
            quiet.setLevel(level)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()


@contextlib.contextmanager
def _batch_failure(cells: list[Cell], names: Callable[[list[Cell]], str]) -> Iterator[None]:
    """Report a batch that did not come back as a ``WorkerFailed`` naming its cells. A task's
    ``sys.exit()`` is a failure too, not the grid's own exit status (0 for ``sys.exit()``)."""
    from joblib.externals.loky.process_executor import BrokenProcessPool

    try:
        yield
    except (KeyboardInterrupt, UserError, StoreError):
        raise
    except SystemExit as e:
        raise WorkerFailed(f"the task called sys.exit({e.code!r}) while training {names(cells)}") from e
    except BrokenProcessPool as e:
        codes = re.search(r"exit codes of the workers are (.*)", str(e))
        raise WorkerFailed(f"a worker process died{f' (exit {codes[1]})' if codes else ''} while training "
                           f"{names(cells)}") from e
    except Exception as e:
        raise WorkerFailed(f"{names(cells)} failed: {type(e).__name__}: {first_line(e)}") from e


def die_with_parent(parent: int) -> None:
    """Loky worker initializer: end this worker when the driver dies, however it dies (kill -9
    included), rather than train on for nobody. Linux delivers SIGKILL on the parent's death; elsewhere
    a thread watches the parent's PID."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # 1 = PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError):
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the driver died before the signal was armed
        os._exit(1)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


@contextlib.contextmanager
def safe_path() -> Iterator[None]:
    """PYTHONSAFEPATH=1 for the Python processes started in the block (workers, trackers): they start
    as `python -m`/`-c`, which would put their cwd first on sys.path before they take the driver's,
    so a joblib.py there would shadow the installed one (Python >= 3.11). Restored afterwards: a
    user's own later subprocesses keep their usual path."""
    before = os.environ.get("PYTHONSAFEPATH")
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONSAFEPATH", None)
        else:
            os.environ["PYTHONSAFEPATH"] = before


def quiet_threads() -> None:
    """From now on, drop the tracebacks of background threads (loky's manager, the progress reader)
    that die in the teardown after an interrupt or a failure: they would bury the one line that matters."""
    threading.excepthook = lambda args: None


def as_spec(spec: Spec | Mapping[str, Any] | str | Path, overrides: list[str] | tuple[str, ...] = (),
            task: type[Task] | None = None) -> Spec:
    """A Spec from a spec file, a spec dict or a Spec, with ``--set``-style overrides and an optional
    Task class in place of the spec's task name."""
    if isinstance(spec, Spec):
        if not overrides and task is None:
            return spec
        raw = spec.to_dict() | {"task": spec.task_class or spec.task}
    elif isinstance(spec, Mapping):
        raw = dict(spec)
    else:
        raw = read_spec_file(spec)
    if task is not None:
        raw["task"] = task
    return resolve(apply_overrides(raw, overrides))


def run_grid(
    spec: Spec | Mapping[str, Any] | str | Path,
    out: str | Path,
    *,
    overrides: list[str] | tuple[str, ...] = (),
    task: type[Task] | None = None,
    jobs: int = 0,
    threads: int = 0,
    backend: str = "loky",
    scheduler: str | None = None,
    device: str = "auto",
    overwrite: bool = False,
    data_dir: str | None = None,
    progress: bool = True,
    accept_versions: bool = False,
) -> RunSummary:
    """Compute every pending cell of a grid into the cube at ``out``; rerunning resumes.

    ``spec`` is a spec file, a spec dict (as the TOML reads) or a ``Spec``; ``overrides`` are
    ``--set`` strings such as ``"train.steps=600"``; ``task`` is a Task subclass to use in place
    of the spec's task name (e.g. one defined in a notebook). ``jobs = 0`` uses every core;
    ``threads`` is the torch threads of each worker (0: $LANDSCAPE_THREADS, else cores // jobs).
    ``accept_versions`` resumes a cube computed with other torch or landscape versions (the data,
    the task's code and w0 must still match: landscape.fingerprint).
    ``device`` is auto (CUDA when available), cpu, cuda or cuda:N; on dask each worker resolves it
    on its own machine (see ``worker_device``).
    """
    out = resolve_out(out)
    for name, value in (("jobs", jobs), ("threads", threads)):
        if not isinstance(value, int) or isinstance(value, bool):
            raise UserError(f"--{name} {value!r} should be a whole number")
    if backend not in BACKENDS:
        raise UserError(f"--backend {backend!r} (known: {', '.join(BACKENDS)})")
    if jobs < 0:
        raise UserError(f"--jobs {jobs} must be >= 0 (0 = all cores)")
    if threads < 0:
        raise UserError(f"--threads {threads} must be >= 0 (0 = cores / jobs)")
    if scheduler and backend != "dask":
        raise UserError("--scheduler needs --backend dask")
    device = check_device(device) if backend == "dask" else resolve_device(device)
    spec = as_spec(spec, overrides, task)
    cores = os.cpu_count() or 1
    with task_errors(spec.task_class, "building the task and its default init in the driver"):
        the_task = spec.make_task(data_dir)
        w0 = default_init_norm(the_task)
    if data_dir and not the_task.reads_data_dir:
        print(printable(f"landscape: warning: --data-dir {data_dir} is ignored: task {spec.task} reads no data files"),
              file=sys.stderr)
    # A GPU: one worker feeding it big batches; on CPU all cores by default.
    jobs = jobs or (1 if device_kind(device) == "cuda" and backend == "loky" else cores)
    the_task.check_axis(spec.axis_values)
    limits.check(spec, the_task, norm_values(spec, w0))
    cube.check_replaceable(out, overwrite)
    with task_errors(spec.task_class, "evaluating its default init in the driver"):
        check_task_outputs(the_task, the_task.data(spec.axis_values[0]), spec.train.dtype)
    check_writable(out)
    steps_of = schedules(spec, the_task)

    from landscape.lock import cube_lock

    with sigterm_stops(), cube_lock(out):
        executor = _Executor(backend, scheduler, jobs)
        try:
            if executor.client is not None:
                _check_workers_import(executor.client, _task_ref(spec))
            threads = 1 if backend == "dask" else threads or _env_threads() or max(1, cores // jobs)
            return _run(spec, the_task, out, overwrite, executor, threads, device, steps_of, progress,
                        accept_versions)
        finally:
            executor.close(interrupted=sys.exc_info()[0] is not None)


def _run(spec: Spec, task: Task, out: Path, overwrite: bool, executor: _Executor, threads: int, device: str,
         steps_of: Mapping[Any, np.ndarray], progress: bool, accept_versions: bool) -> RunSummary:
    with task_errors(type(task), "probing whether its cells train batched, before the cube is made"):
        plan = prepare_store(spec, task, out, overwrite, device, steps_of, accept_versions)
    stored = cube.open_cube(out)
    status, damage = cube.verify_cells(stored, out)  # status over spec.cell_dims, the store's dims
    for d in damage:  # a damaged cell is pending again: rewritten whole, with its batch-mates' help
        status[d.index] = STATUS_PENDING
    cells = all_cells(spec, list(stored["w"].values), status.shape)
    pending = {c.index for c in cells if status[c.index] == STATUS_PENDING}
    already_done = status.size - len(pending)
    batches = [b for b in plan_batches(spec, cells, plan.batch_cells, plan.batching.random, steps_of)
               if any(c.index in pending for c in b)]
    evals = stored["step"].values
    total = status.size
    budget = sum(int(steps_of[c.value][-1]) for b in batches for c in b)
    stop_after = _stop_after()
    bar = Bar(budget, total, already_done, task.name, progress)
    channel = executor.channel(bar)
    calls = [(_task_ref(spec), spec.to_dict(), task.data_dir, b, threads, plan.batching.batched, channel.report(),
              device, tuple(SEARCH_DIRS)) for b in batches]
    ran = 0
    try:
        for batch in executor.results(calls, functools.partial(cell_names, spec)):
            for cell, result in batch:
                if cell.index not in pending:
                    continue  # a batch-mate written before: trained again only to keep the batch whole
                with deferred_interrupt():  # a Ctrl-C held here is raised after the cell counts as stored
                    cube.write_cell(out, spec.cell_dims, cell.index, result, evals, cell_times(result, spec.eval.level))
                    pending.discard(cell.index)
                ran += 1
                bar.cell_written()
                if stop_after and ran == stop_after[0]:
                    os.kill(os.getpid(), stop_after[1])
    except KeyboardInterrupt as e:
        quiet_threads()
        raise Interrupted(out, total - len(pending), total, isinstance(e, Terminated)) from None
    except (StoreError, ClusterLost, TaskError) as e:
        quiet_threads()
        raise type(e)(f"{e}; {total - len(pending)}/{total} cells are stored, rerun the same command to resume") from None
    finally:
        channel.close()
        bar.close()
    return RunSummary(total=total, already_done=already_done, ran=ran, repaired=len(damage))


def cell_times(result: CellResult, level: float) -> dict[str, float]:
    """A cell's t_fit and t_gen at accuracy ``level`` and, for a run with references, its t_transition:
    by the readers' rules (``first_reach``, ``cell_transition``), measured here so the store need not know them."""
    times = {f"t_{name}": first_reach(result.eval_steps, result.curves[CURVES.index(err)], level)
             for name, err in (("fit", "train_err"), ("gen", "test_err"))}
    metric = reference_metric(result.extra_values)
    if metric:
        times[TRANSITION] = cell_transition(result.eval_steps, result.curves[CURVES.index(metric)],
                                            result.extra_values, metric)
    return times


def cell_names(spec: Spec, cells: list[Cell], most: int = 3) -> str:
    """``cell (w=2.5, N=20, seed=0)`` for a report line: the cells' coordinates, the first ``most`` of them."""
    def name(c: Cell) -> str:
        at = {"w": f"{c.w:.4g}", spec.axis: c.value, **c.settings, "seed": c.seed}
        return "(" + ", ".join(f"{d}={at[d]}" for d in spec.cell_dims) + ")"

    shown = ", ".join(name(c) for c in cells[:most])
    more = f" and {len(cells) - most} more" if len(cells) > most else ""
    return f"cell{'s' if len(cells) > 1 else ''} {shown}{more}"


def _task_ref(spec: Spec) -> str | type[Task]:
    """What workers resolve the task from: its stored name or import path, or the class itself
    when no import path reaches it (a class defined in __main__ or a notebook: pickled by value)."""
    if spec.task_class is None or ":" not in spec.task or importable(spec.task_class):
        return spec.task
    return spec.task_class


def _check_workers_import(client: Any, ref: str | type[Task]) -> None:
    """Refuse, before the cube exists, a dask cluster whose workers cannot import the task (a class
    passed by value travels pickled, with nothing to import)."""
    if not isinstance(ref, str):
        return
    errors = {address: e for address, e in client.run(_import_error, ref, tuple(SEARCH_DIRS)).items() if e}
    if errors:
        address = sorted(errors)[0]
        more = f" (and {len(errors) - 1} more workers)" if len(errors) > 1 else ""
        raise UserError(f"dask worker {address}{more} cannot import the task: {errors[address]}")


def _import_error(ref: str, search: tuple[str, ...]) -> str | None:
    """On a worker: why the task ``ref`` does not resolve there, or None."""
    for directory in search:
        search_beside(directory)
    try:
        resolve_task(ref)
    except UserError as e:
        return str(e)
    return None


def _env_threads() -> int:
    """$LANDSCAPE_THREADS: torch threads per worker, e.g. 1 on a machine that others keep busy."""
    text = os.environ.get(THREADS_ENV, "")
    if not text:
        return 0
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"{THREADS_ENV}={text!r} should be a positive integer")
    return int(text)


def _stop_after() -> tuple[int, int] | None:
    text = os.environ.get(STOP_AFTER_ENV)
    if not text:
        return None
    count, _, name = text.partition(":")
    return int(count), getattr(signal, f"SIG{name or 'INT'}")
