"""The grid runner: plan the cells of a spec, train them on parallel workers, write the cube.

Workers (loky processes on this machine, or the workers of a dask.distributed cluster) train one
batch of cells each and return a few KB per cell; the driver alone writes the cube, as results
arrive, under an exclusive lock (landscape.run.lock). Rerunning the same command trains only the
cells still pending.

The batch plan is a function of the spec and the device only (not of --jobs, so one spec gives one
cube on any worker count), fixed when the cube is created and stored in its attrs: whether cells
train batched (landscape.train.probe's probe), and how many cells share a batch. Every cell is always
trained with the same batch-mates, so a resumed grid equals an uninterrupted one: a batch with any
pending cell is trained whole again, and only its pending cells are written.
"""
from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from landscape.run.progress import Bar

from landscape import cube
from landscape.cube.schema import (
    CURVES,
    FIXED_PREFIX,
    SCHEMA_VERSION,
    STATUS_PENDING,
    TRANSITION,
    checked_levels,
    reference_metric,
)
from landscape.errors import StoreError, TaskError, UserError, printable, task_errors
from landscape.measures.hook import attrs_of, quantities_of
from landscape.measures.suite import cell_measures
from landscape.read.dichotomy import cell_transition
from landscape.read.dynamics import first_reach
from landscape.run import fingerprint, preflight
from landscape.run.executors import BACKENDS, ClusterLost, _Executor, quiet_threads
from landscape.run.plan import (
    Plan,
    all_cells,
    cell_batch_size,
    cell_names,
    default_init_norm,
    norm_values,
    plan_cell_batches,
    schedules,
)
from landscape.run.preflight import resolve_out
from landscape.spec import Spec, apply_overrides, read_spec_file, resolve, spec_differences
from landscape.tasks import Task
from landscape.tasks.registry import SEARCH_DIRS, importable, resolve_task, same_class, search_beside
from landscape.train import (
    CellResult,
    check_device,
    device_kind,
    device_name,
    resolve_device,
)
from landscape.train.probe import decide



#: Torch threads per worker when --threads is not given (default: cores // jobs). Threads are fixed
#: by --jobs, not raised when there are fewer batches than workers: on a busy machine OpenMP
#: threads wait for each other at every parallel region, and a small model ran 9x slower with 2
#: threads than with 1 in one process at load 8 on 2 cores, 2.1-2.8x slower at load 3-5 (measured:
#: one teacher-student cell, 4,000 steps, 14-17 s against 29-48 s); the test suite sets 1.
THREADS_ENV = "LANDSCAPE_THREADS"


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
    backend_choice = decide(task, spec, w0)
    cells = int(np.prod([len(v) for v in (spec.norm_values, spec.axis_values, *spec.train_axes.values(), spec.seeds)]))
    kind = device_kind(device)
    plan = Plan(backend_choice, cell_batch_size(spec, backend_choice, cells, kind), kind)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        layers = list(task.parameter_groups(task.build_model()))
    measures = cell_measures(spec, task)
    quantities, measure_coords = quantities_of(measures)
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
               "figure_levels": checked_levels(task.figure_metric, task.figure_levels), **attrs_of(measures)},
        extra_curves=task.extra_curves,
        extra_values=task.extra_values,
        quantities=quantities,
        measure_coords=measure_coords,
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
    on_cell_written: Callable[[tuple[int, ...]], None] | None = None,
) -> RunSummary:
    """Compute every pending cell of a grid into the cube at ``out``; rerunning resumes.

    ``spec`` is a spec file, a spec dict (as the TOML reads) or a ``Spec``; ``overrides`` are
    ``--set`` strings such as ``"train.steps=600"``; ``task`` is a Task subclass to use in place
    of the spec's task name (e.g. one defined in a notebook). ``jobs = 0`` uses every core;
    ``threads`` is the torch threads of each worker (0: $LANDSCAPE_THREADS, else cores // jobs).
    ``accept_versions`` resumes a cube computed with other torch or landscape versions (the data,
    the task's code and w0 must still match: landscape.run.fingerprint).
    ``device`` is auto (CUDA when available), cpu, cuda or cuda:N; on dask each worker resolves it
    on its own machine (see ``worker_device``). ``on_cell_written`` is called with the index of each
    cell (along ``spec.cell_dims``) once it is stored, e.g. to interrupt a grid at a known place.
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
    preflight.check_run(spec, the_task, norm_values(spec, w0), out, overwrite)
    steps_of = schedules(spec, the_task)

    from landscape.run.lock import cube_lock

    with sigterm_stops(), cube_lock(out):
        executor = _Executor(backend, scheduler, jobs)
        try:
            if executor.client is not None:
                _check_workers_import(executor.client, _task_ref(spec))
            threads = 1 if backend == "dask" else threads or _env_threads() or max(1, cores // jobs)
            return _run(spec, the_task, out, overwrite, executor, threads, device, steps_of, progress,
                        accept_versions, on_cell_written)
        finally:
            executor.close(interrupted=sys.exc_info()[0] is not None)


def _run(spec: Spec, task: Task, out: Path, overwrite: bool, executor: _Executor, threads: int, device: str,
         steps_of: Mapping[Any, np.ndarray], progress: bool, accept_versions: bool,
         on_cell_written: Callable[[tuple[int, ...]], None] | None) -> RunSummary:
    with task_errors(type(task), "probing whether its cells train batched, before the cube is made"):
        plan = prepare_store(spec, task, out, overwrite, device, steps_of, accept_versions)
    stored = cube.open_cube(out)
    status, damage = cube.verify_cells(stored, out)  # status over spec.cell_dims, the store's dims
    for d in damage:  # a damaged cell is pending again: rewritten whole, with its batch-mates' help
        status[d.index] = STATUS_PENDING
    cells = all_cells(spec, list(stored["w"].values), status.shape)
    pending = {c.index for c in cells if status[c.index] == STATUS_PENDING}
    already_done = status.size - len(pending)
    batches = [b for b in plan_cell_batches(spec, cells, plan.cell_batch_size, plan.backend_choice.random, steps_of)
               if any(c.index in pending for c in b)]
    evals = stored["step"].values
    total = status.size
    budget = sum(int(steps_of[c.value][-1]) for b in batches for c in b)
    bar = Bar(budget, total, already_done, task.name, progress)
    channel = executor.channel(bar)
    calls = [(_task_ref(spec), spec.to_dict(), task.data_dir, b, threads, plan.backend_choice.stacked, channel.report(),
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
                if on_cell_written is not None:
                    on_cell_written(cell.index)
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

