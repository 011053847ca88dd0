"""``make bench``: the engine's throughput against a plain per-cell loop, measured in one process.

Run as ``python -m benchmarks.bench``. Every number is a ratio or a rate measured in this run on
this machine; nothing is compared against figures from elsewhere. Sections:

1. sgemm peak: torch.mm on 2048x2048 float32 with 1 thread and with all threads.
2. Reference loop vs engine, 1 thread, the same MNIST cells and steps. The reference is written
   the plain way, like the Omnigrok notebooks: torch DataLoader, AdamW(foreach=False), the
   global norm summed in Python and the rescale looped over the parameters. The engine is the
   grid's worker function (``train_cell_batch``: one cell batch, trained stacked).
3. Achieved GFLOP/s of the engine (matmul FLOPs counted by torch's FlopCounterMode) against the
   peaks of section 1, and its matmul kernels alone (profiler self time, counted by name over one
   whole profiled run and checked to add up within that run's CPU time; "not measured" when they
   do not): the ceiling of section 2's ratio if nothing but the matmuls took time.
4. jobs=1 against jobs=all through the worker function under joblib/loky, and the peak RSS of
   each worker.
5. Convergence stopping (opt-in) against the fixed budget on a small MNIST grid over 2 seeds,
   through the real grid runner: the steps it saves and its paired bias (sign test).
6. The batched path against the per-cell path, 1 thread, for models other than the MNIST MLP:
   the outside-task example (a CNN with cross-entropy) and the tasks of other architectures.
7. The cost of ``train.dtype = "float64"``: section 2's engine batch in float32 and float64.
8. GPU (only when CUDA is available): per-cell loop vs vectorized batches of 16, 64, 256 cells
   and the projected time of the paper's 588 x 10,000-step grid.
7. IMDb LSTM (Omnigrok Fig. 4's model on random token ids): cell-steps/s of the per-cell path on
   nn.LSTM and on the matmul LSTM, and of the batched path (the matmul LSTM under vmap).
10. landscape.measures against its peers (benchmarks.bench_measure), 1 thread, per CPU second,
   side by side in this run: a 21x21 slice against loss-landscapes, lambda_max against PyHessian
   (per cell and cells batched), and the cost of the default [measure] against training the cell.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import resource
import tempfile
import time
from pathlib import Path
from typing import Callable

import joblib
import numpy as np
import torch
import xarray as xr
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.flop_counter import FlopCounterMode

from landscape.run.driver import run_grid
from landscape.run.plan import AUTO_BATCH_CELLS, Cell, all_cells, default_init_norm, norm_values, plan_cell_batches, schedules
from landscape.run.worker import train_cell_batch
from landscape.read.analysis import paired_comparison
from landscape.spec import EvalConfig, Spec, TrainConfig, load_spec
from landscape.tasks.base import Split, Task
from landscape.train import eval_steps, rows_per_step

SPEC = Path(__file__).resolve().parents[1] / "grids" / "mnist.toml"
CORES = os.cpu_count() or 1
#: Section 2's cells: 4 norms x 2 training-set sizes x 2 seeds, 200 steps at batch 100.
THROUGHPUT = ["axes.alpha=[0.5, 1.0, 2.0, 4.0]", "axes.N=[500, 2000]", "axes.seed=[0, 1]",
              "train.steps=200", "eval.every=100", "train.stop_window=0", "train.stop_loss=0.0"]
#: Section 5's grid: the default MNIST spec on 5 norms x 3 sizes x 2 seeds, and the stopping rule tried.
STOPPING = ["axes.alpha={logspace = [-1, 1, 5]}", "axes.N=[100, 1000, 4000]", "axes.seed=[0, 1]",
            "train.steps=2000", "eval.every=100"]
STOP_RULE = ["train.stop_window=3", "train.stop_rtol=0.01", "train.stop_loss=1e-5"]
ROOT = Path(__file__).resolve().parents[1]
#: Section 6: (label, spec file, overrides) of each model whose two training paths are compared.
PATHS = [
    ("digits CNN, cross-entropy (examples/digits_cnn)", ROOT / "examples" / "digits_cnn" / "digits_cnn.toml",
     ["axes.alpha=[0.5, 1.0, 2.0, 4.0]", "axes.N=[200, 1300]", "axes.seed=[0, 1]", "train.steps=100",
      "eval.every=50"]),
    ("modular-addition transformer, p = 31, full batch", ROOT / "grids" / "modular-addition.toml",
     ["axes.alpha=[0.4, 0.63, 1.0, 1.6]", "axes.N=[192, 480]", "train.steps=40", "eval.every=20"]),
]


def sgemm_gflops(threads: int, n: int = 2048, reps: int = 8) -> float:
    """Best-of-reps float32 matmul rate with ``threads`` torch threads: per CPU second with one
    thread (as section 2 and 3 measure the engine), per wall second with more."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    clock = time.process_time if threads == 1 else time.perf_counter
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = math.inf
    for _ in range(reps):
        t = clock()
        torch.mm(a, b)
        best = min(best, clock() - t)
    torch.set_num_threads(before)
    return 2 * n**3 / best / 1e9


def reference_cell(task: Task, split: Split, w: float, seed: int, train: TrainConfig, evalc: EvalConfig,
                   device: str = "cpu") -> np.ndarray:
    """The plain per-cell loop (Omnigrok-notebook style). Returns the train/test loss at each eval."""
    torch.manual_seed(seed)
    model = task.build_model().to(device)
    params = list(model.parameters())
    with torch.no_grad():
        norm = torch.sqrt(sum((p**2).sum() for p in params))
        for p in params:
            p.mul_(w / norm)
    opt = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay, foreach=False)
    loader = DataLoader(TensorDataset(split.train_x, split.train_y), batch_size=train.batch_size or len(split.train_x),
                        shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(seed))
    evals = set(eval_steps(train.steps, evalc).tolist())
    sets = [(split.train_x.to(device), split.train_y.to(device)), (split.test_x.to(device), split.test_y.to(device))]
    losses = []
    batches = cycle_epochs(loader)
    for step in range(train.steps + 1):
        if step in evals:
            with torch.no_grad():
                losses.append([float(task.loss(model(x), y)) for x, y in sets]
                              + [float(task.errors(model(x), y).mean()) for x, y in sets])
        if step == train.steps:
            break
        xb, yb = next(batches)
        loss = task.loss(model(xb.to(device)), yb.to(device))
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            norm = torch.sqrt(sum((p**2).sum() for p in params))
            for p in params:
                p.mul_(w / norm)
    return np.array(losses)


MATMUL_KERNELS = frozenset({"aten::mm", "aten::bmm", "aten::addmm", "aten::baddbmm"})
#: How far the profiled ops' self times may exceed the run's own wall time (the profiler's clock
#: and perf_counter differ by rounding and by the profiler's bookkeeping).
PARTS_TOLERANCE = 0.1
#: Least share of a core the profiled run must get: the profiler times ops by the wall clock, so
#: on a core shared with another job its kernel times include the other job's turns.
LEAST_CORE_SHARE = 0.85


@dataclasses.dataclass(frozen=True)
class KernelTimes:
    """One profiled run: seconds in matmul kernels and in all ops (profiler self times: wall-clock,
    and disjoint), the run's wall and process CPU seconds; ``calls`` matmul kernel calls."""

    matmul: float
    ops: float
    wall: float
    cpu: float
    calls: int


def matmul_times(fn: Callable[[], object]) -> KernelTimes:
    """Profile one whole run of ``fn()``: matmul kernels counted by name over every event, all ops'
    self time, and the run's own wall and CPU time, so that the parts can be checked against the whole."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    averages = prof.key_averages()
    matmul = [e for e in averages if e.key in MATMUL_KERNELS]
    return KernelTimes(matmul=sum(e.self_cpu_time_total for e in matmul) / 1e6,
                       ops=sum(e.self_cpu_time_total for e in averages) / 1e6, wall=wall, cpu=cpu,
                       calls=sum(e.count for e in matmul))


def matmul_share(times: KernelTimes, tolerance: float = PARTS_TOLERANCE,
                 least_core: float = LEAST_CORE_SHARE) -> float | str:
    """The matmul kernels' share of the profiled run's time, or why it cannot be told.

    The parts must add up within the one run: matmuls within all ops, all ops within its wall time
    (up to ``tolerance``); and the run must have had its core (CPU time at least ``least_core`` of
    wall time). The profiler's times are wall-clock: set against the CPU time of another run on a
    loaded machine they gave shares over 100% ("everything else is -82%")."""
    if times.calls == 0 or not times.matmul > 0:
        return "no matmul kernel in the profile"
    if not (times.wall > 0 and times.cpu > 0):
        return "the profiled run took no time"
    if times.cpu < least_core * times.wall:
        return (f"the core was shared: the profiled run got {times.cpu / times.wall:.0%} of it "
                f"(at least {least_core:.0%} needed)")
    if times.ops > times.wall * (1 + tolerance):
        return (f"the profiled ops' {times.ops:.2f} s exceed the run's {times.wall:.2f} s by more than "
                f"{tolerance:.0%}")
    if times.matmul > times.ops:
        return f"matmul kernels {times.matmul:.2f} s exceed all ops {times.ops:.2f} s"
    return min(times.matmul / times.wall, 1.0)


def matmul_ceiling(reference_cpu: float, engine_cpu: float, share: float) -> float:
    """Section 2's ratio if the engine spent nothing but its matmul time (its share of its own CPU time)."""
    if not (0 < share <= 1 and reference_cpu > 0 and engine_cpu > 0):
        raise ValueError(f"no ceiling from share {share!r}, reference {reference_cpu!r} s, engine {engine_cpu!r} s")
    return reference_cpu / (engine_cpu * share)


def cycle_epochs(loader: DataLoader):
    while True:
        yield from loader


def flops(task: Task, spec: Spec, cells: list[Cell]) -> float:
    """Matmul FLOPs of training ``cells`` as specified: steps x (forward + backward) + evals x forward."""
    torch.manual_seed(0)
    model = task.build_model()
    per_value = {}
    for c in cells:
        if c.value not in per_value:
            split = task.data(c.value)
            rows = rows_per_step(len(split.train_x), spec.train.batch_size)
            with FlopCounterMode(display=False) as train_count:
                task.loss(model(split.train_x[:rows]), split.train_y[:rows]).backward()
            with FlopCounterMode(display=False) as eval_count, torch.no_grad():
                model(split.train_x[:1000])
            eval_rows = (min(len(split.train_x), spec.eval.samples or math.inf)
                         + min(len(split.test_x), spec.eval.samples or math.inf))
            per_eval = eval_count.get_total_flops() / min(1000, len(split.train_x)) * eval_rows
            n_evals = len(eval_steps(spec.train.steps, spec.eval))
            per_value[c.value] = train_count.get_total_flops() * spec.train.steps + per_eval * n_evals
    return float(sum(per_value[c.value] for c in cells))


def path_rates(spec: Spec) -> tuple[float, float]:
    """Cell-steps per CPU second of the per-cell and the batched path on every cell of ``spec``, one
    thread, best of three interleaved rounds (the first round of each also pays its warm-up)."""
    task = spec.make_task()
    cells = all_cells(spec, norm_values(spec, default_init_norm(task)),
                           (len(spec.norm_values), len(spec.axis_values), len(spec.seeds)))
    work = len(cells) * spec.train.steps
    best = [math.inf, math.inf]
    for _ in range(3):
        for i, stacked in enumerate((False, True)):
            cpu = wall_and_cpu(lambda: train_cell_batch(spec.task, spec.to_dict(), None, cells, 1, stacked=stacked))[1]
            best[i] = min(best[i], cpu)
    return work / best[0], work / best[1]


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def wall_and_cpu(fn) -> tuple[float, float]:
    """Wall and CPU seconds of ``fn()`` in this process. With one torch thread the CPU time is what
    the run takes on a core of its own, so it stays fair when other jobs share the machine."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - wall, time.process_time() - cpu


def worker(spec_dict: dict, cells: list[Cell], threads: int) -> tuple[int, int, float]:
    """The grid's worker function, plus this process's id and peak RSS (bytes)."""
    t = time.perf_counter()
    train_cell_batch(spec_dict["task"], spec_dict, None, cells, threads, stacked=True)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB
    return os.getpid(), rss, time.perf_counter() - t


def parallel(spec: Spec, batches: list[list[Cell]], jobs: int, threads: int) -> tuple[float, list]:
    with joblib.parallel_config(backend="loky"):
        return timed(lambda: joblib.Parallel(n_jobs=jobs)(
            joblib.delayed(worker)(spec.to_dict(), b, threads) for b in batches))


def loadavg() -> str:
    """Other jobs on the machine skew wall times; each section says how busy it was."""
    return f"   [load average {os.getloadavg()[0]:.2f}]"


def row(name: str, value: str, note: str = "") -> str:
    return f"  {name:<52} {value:>14}  {note}"


def target(ok: bool, text: str) -> str:
    return f"[{'met' if ok else 'MISSED'}: {text}]"


def main() -> None:
    start = time.perf_counter()
    torch.set_num_threads(1)
    print(f"landscape bench  {dt.datetime.now().isoformat(timespec='seconds')}  torch {torch.__version__}  "
          f"{CORES} cores  load average at start {os.getloadavg()[0]:.2f}")

    print("\n1. sgemm peak (torch.mm 2048x2048 float32)" + loadavg())
    peak1, peak_all = sgemm_gflops(1), sgemm_gflops(CORES)
    print(row("1 thread", f"{peak1:.1f} GFLOP/s", "per CPU second"))
    print(row(f"{CORES} threads", f"{peak_all:.1f} GFLOP/s", "per wall second"))

    print("\n2. reference per-cell loop vs engine, 1 thread, same cells and steps" + loadavg())
    spec = load_spec(SPEC, THROUGHPUT)
    task = spec.make_task()
    w0 = default_init_norm(task)
    cells = all_cells(spec, norm_values(spec, w0), (len(spec.norm_values), len(spec.axis_values),
                                                              len(spec.seeds)))
    splits = {v: task.data(v) for v in spec.axis_values}
    cell_steps = len(cells) * spec.train.steps

    def reference():
        for c in cells:
            reference_cell(task, splits[c.value], c.w, c.seed, spec.train, spec.eval)

    def engine():
        train_cell_batch(spec.task, spec.to_dict(), None, cells, 1, stacked=True)

    warm = dataclasses.replace(spec, train=dataclasses.replace(spec.train, steps=5))
    train_cell_batch(warm.task, warm.to_dict(), None, cells, 1, stacked=True)  # first-call costs (vmap tracing, task build)
    reference_cell(task, splits[cells[0].value], cells[0].w, 0, warm.train, warm.eval)
    ref, eng = np.full(2, math.inf), np.full(2, math.inf)  # best (wall, cpu) seconds
    for _ in range(3):  # interleaved, best of three: a busy neighbour hurts both alike
        ref = np.minimum(ref, wall_and_cpu(reference))
        eng = np.minimum(eng, wall_and_cpu(engine))
    print(row("cells x steps", f"{len(cells)} x {spec.train.steps}", f"MNIST MLP 784-200-200-10, batch "
              f"{spec.train.batch_size}, N in {spec.axis_values}, evals every {spec.eval.every}"))
    print(row("", "per wall s", "per CPU s (best of 3 each)"))
    print(row("(a) reference loop, cell-steps", f"{cell_steps / ref[0]:.0f}", f"{cell_steps / ref[1]:.0f}"))
    print(row("(b) engine (one vectorized batch), cell-steps", f"{cell_steps / eng[0]:.0f}", f"{cell_steps / eng[1]:.0f}"))
    speedup = ref / eng
    print(row("ratio (b)/(a)", f"{speedup[0]:.2f}x", f"{speedup[1]:.2f}x " + target(speedup[1] >= 2, ">= 2x")))

    print("\n3. achieved GFLOP/s of the engine" + loadavg())
    work = flops(task, spec, cells)
    gf1 = work / eng / 1e9
    print(row("FLOPs of section 2's cells (FlopCounterMode)", f"{work / 1e9:.1f} GFLOP"))
    print(row("engine, 1 thread, GFLOP/s", f"{gf1[0]:.1f}", f"{gf1[1]:.1f} per CPU s = {gf1[1] / peak1:.0%} of the "
              f"1-thread peak " + target(gf1[1] >= 0.6 * peak1, ">= 60%")))
    times = matmul_times(engine)
    share = matmul_share(times)
    if isinstance(share, str):
        print(row("engine's matmul kernels alone (profiler self time)", "not measured", share))
    else:
        print(row("engine's matmul kernels alone (profiler self time)", f"{work / times.matmul / 1e9:.1f} GFLOP/s",
                  f"{work / times.matmul / 1e9 / peak1:.0%} of the 1-thread peak; {times.calls} kernel calls are "
                  f"{share:.0%} of the profiled run's time, everything else (optimizer, projection, gathers, "
                  f"elementwise) {1 - share:.0%}"))
        print(row("ratio (b)/(a) if nothing but the matmuls took time", f"{matmul_ceiling(ref[1], eng[1], share):.2f}x",
                  "the ceiling of section 2's ratio: (a) over (b)'s matmul share of (b)"))

    print(f"\n4. jobs=1 vs jobs={CORES} through the worker function (loky), "
          f"{len(cells) * 2} cells in batches of {AUTO_BATCH_CELLS['cpu'] // 2}" + loadavg())
    spec2 = load_spec(SPEC, THROUGHPUT + ["axes.seed=[0, 1, 2, 3]"])
    cells2 = all_cells(spec2, norm_values(spec2, w0), (len(spec2.norm_values), len(spec2.axis_values),
                                                                 len(spec2.seeds)))
    batches = plan_cell_batches(spec2, cells2, AUTO_BATCH_CELLS["cpu"] // 2, False, schedules(spec2, task))
    work2 = flops(task, spec2, cells2)
    steps2 = len(cells2) * spec2.train.steps
    parallel(warm, [b[:2] for b in batches[:CORES]], CORES, 1)  # start the workers, build the task in each
    results: dict[tuple[int, int], tuple[float, list]] = {}
    for _ in range(3):  # interleaved, best of three
        for setting in ((1, 1), (1, CORES), (CORES, 1)):
            seconds, per_worker = parallel(spec2, batches, *setting)
            if seconds < results.get(setting, (math.inf,))[0]:
                results[setting] = seconds, per_worker
    for (jobs, threads), (seconds, _) in results.items():
        print(row(f"jobs={jobs}, {threads} torch thread(s) each", f"{steps2 / seconds:.0f} cell-steps/s",
                  f"{work2 / seconds / 1e9:.1f} GFLOP/s"))
    scaling = results[1, 1][0] / results[CORES, 1][0]
    gf_all = work2 / results[CORES, 1][0] / 1e9
    print(row(f"jobs={CORES} / jobs=1 (1 thread each)", f"{scaling:.2f}x", target(scaling >= 0.9 * CORES,
                                                                                   f">= {0.9 * CORES:.1f}x")))
    print(row(f"jobs={CORES} / jobs=1 with {CORES} threads", f"{results[1, CORES][0] / results[CORES, 1][0]:.2f}x"))
    print(row(f"engine, jobs={CORES}", f"{gf_all:.1f} GFLOP/s",
              f"{gf_all / peak_all:.0%} of {CORES}-thread peak " + target(gf_all >= 0.6 * peak_all, ">= 60%")))
    rss: dict[int, int] = {}
    for _, per_worker in results.values():  # ru_maxrss is a lifetime peak: the last reading counts
        for pid, peak, _ in per_worker:
            rss[pid] = max(rss.get(pid, 0), peak)
    workers = [v for pid, v in rss.items() if pid != os.getpid()]
    print(row(f"peak RSS per loky worker ({len(workers)})", f"{max(workers) / 2**20:.0f} MiB",
              ", ".join(f"{v / 2**20:.0f}" for v in sorted(workers)) + " MiB (ru_maxrss; jobs=1 runs in this "
              f"process: {rss[os.getpid()] / 2**20:.0f} MiB, the whole bench)"))

    print("\n5. convergence stopping (opt-in) vs the fixed budget, grids/mnist.toml on a small grid, "
          "real grid runner, all cores" + loadavg())
    stop_spec = load_spec(SPEC, STOPPING + STOP_RULE)
    t = stop_spec.train
    print(row("grid", f"{len(stop_spec.norm_values)} alpha x {len(stop_spec.axis_values)} N x {len(stop_spec.seeds)} seeds",
              f"N = {stop_spec.axis_values}, {t.steps} steps, evals every {stop_spec.eval.every}; stopping: "
              f"window {t.stop_window} evals, rtol {t.stop_rtol}, target loss {t.stop_loss}"))
    with tempfile.TemporaryDirectory() as tmp:
        cubes = {}
        for name, extra in (("fixed budget", []), ("stopping", STOP_RULE)):
            path = Path(tmp) / f"{len(cubes)}.zarr"
            seconds, _ = timed(lambda: run_grid(SPEC, path, overrides=STOPPING + extra, progress=False))
            cubes[name] = xr.open_zarr(path).load()
            print(row(name, f"{int(cubes[name]['steps'].sum())} steps", f"{seconds:.1f} s wall"))
    cut = float(cubes["fixed budget"]["steps"].sum() / cubes["stopping"]["steps"].sum())
    print(row("total steps fixed / stopping", f"{cut:.2f}x"))
    for var in ("test_err", "test_loss"):
        pc = paired_comparison(cubes["stopping"], cubes["fixed budget"], var)
        print(row(f"{var}: stopping higher / lower / equal", f"{pc['higher']} / {pc['lower']} / {pc['equal']}",
                  f"of {pc['cells']} cells; sign test p = {pc['p_value']:.3g}; median |delta| {pc['median_abs']:.4f}, "
                  f"max {pc['max_abs']:.4f}"))

    print("\n6. batched vs per-cell path, 1 thread, same cells and steps (cell-steps per CPU second, best of 3)"
          + loadavg())
    for label, path, overrides in PATHS:
        per_cell, stacked = path_rates(load_spec(path, overrides))
        print(row(label, f"{stacked / per_cell:.2f}x", f"per-cell {per_cell:.0f}, batched {stacked:.0f}"))

    imdb_section()

    print("\n8. float64 against float32, section 2's engine batch, 1 thread" + loadavg())
    f64 = dataclasses.replace(spec, train=dataclasses.replace(spec.train, dtype="float64"))
    seconds64 = min(wall_and_cpu(lambda: train_cell_batch(f64.task, f64.to_dict(), None, cells, 1, stacked=True))[1]
                    for _ in range(2))
    print(row("float32, cell-steps per CPU s", f"{cell_steps / eng[1]:.0f}"))
    print(row("float64, cell-steps per CPU s", f"{cell_steps / seconds64:.0f}",
              f"float64 costs {seconds64 / eng[1]:.2f}x the time of float32"))

    print("\n9. GPU")
    if torch.cuda.is_available():
        gpu_section(task, spec)
    else:
        print("  skipped: torch.cuda.is_available() is False on this machine")
    measure_section()
    print(f"\nload average at end {os.getloadavg()[0]:.2f}; bench took {time.perf_counter() - start:.0f} s")


def measure_section() -> None:
    from benchmarks.bench_measure import bench_measure_cost, bench_slice, bench_top_eigenvalue
    print("\n10. landscape.measures against loss-landscapes 3.0.6 and PyHessian 0.1, 1 thread, CPU s" + loadavg())
    for widths, act, goal in (((784, 200, 200, 10), nn.ReLU, 3.0), ((5, 100, 100, 5), nn.Tanh, 5.0)):
        s = bench_slice(widths, activation=act)
        print(row(f"21x21 slice, {s['model']} MLP, 2,000 samples", f"{s['ratio']:.2f}x",
                  f"engine {s['engine_cpu_s']:.2f} s ({s['engine_path']}), random_plane {s['baseline_cpu_s']:.2f} s, "
                  f"max rel diff {s['max_rel_diff']:.1e} {target(s['ratio'] >= goal, f'>= {goal:.0f}x')}"))
    e = bench_top_eigenvalue()
    if "ratio" in e:
        print(row("lambda_max to 1e-3, MNIST MLP, per cell", f"{e['ratio']:.2f}x",
                  f"Lanczos {e['engine_cpu_s']:.2f} s ({e['engine_iterations']} it, err {e['engine_rel_err']:.0e}), "
                  f"PyHessian {e['pyhessian_cpu_s']:.2f} s at tol {e['pyhessian_tol']:.0e} (at its defaults "
                  f"{e['pyhessian_defaults_cpu_s']:.2f} s, err {e['pyhessian_defaults_rel_err']:.0e}) "
                  f"{target(e['ratio'] >= 2, '>= 2x')}"))
        print(row(f"lambda_max to 1e-3, {e['cells']} cells batched", f"{e['ratio_batched']:.2f}x",
                  f"{e['batched_cpu_s_per_cell']:.2f} s per cell, worst err {e['batched_rel_err']:.0e} "
                  f"{target(e['ratio_batched'] >= 2, '>= 2x')}"))
    else:
        print(row("lambda_max against PyHessian", "not measured", "pyhessian is not installed (extra peers)"))
    c = bench_measure_cost()
    print(row("cost of the default [measure], fraction of training", f"{c['fraction']:.2f}",
              f"hessian_top = 1 + trace, ambient and reduced, on {c['n_train']} samples: {c['measure_cpu_s']:.1f} s; "
              f"training the cell ({c['steps']} steps): {c['train_cpu_s']:.1f} s"))


def gpu_section(task: Task, spec: Spec) -> None:
    """Per-cell loop vs vectorized batches on the GPU; projects the paper's 588 x 10k grid."""
    from landscape.train import train_cells

    torch.set_num_threads(CORES)
    split = task.data(max(spec.axis_values))
    train = dataclasses.replace(spec.train, steps=200)
    evalc = dataclasses.replace(spec.eval, every=100)
    sync = torch.cuda.synchronize
    reference_cell(task, split, 1.0, 0, dataclasses.replace(train, steps=5), evalc, "cuda")
    sync()
    seconds, _ = timed(lambda: [reference_cell(task, split, 10.0, s, train, evalc, "cuda") for s in range(4)] and sync())
    loop = 4 * train.steps / seconds
    print(row("per-cell loop on cuda", f"{loop:.0f} cell-steps/s"))
    best = loop
    for cells in (16, 64, 256):
        args = ([split] * cells, [10.0] * cells, list(range(cells)), train, evalc, "cuda")
        train_cells(task, [split] * cells, [10.0] * cells, list(range(cells)),
                    dataclasses.replace(train, steps=5), evalc, "cuda")
        sync()
        seconds, _ = timed(lambda: train_cells(*args) and sync())
        rate = cells * train.steps / seconds
        best = max(best, rate)
        print(row(f"vectorized, {cells} cells", f"{rate:.0f} cell-steps/s", f"{rate / loop:.1f}x the loop"))
    hours = 588 * 10_000 / best / 3600
    print(row("paper grid 588 cells x 10,000 steps, projected", f"{hours:.2f} h",
              "at the best rate above, one GPU, embedded-data evals"))



def imdb_section(cells: int = 4, steps: int = 3) -> None:
    """The IMDb task's model and loss on the per-cell path (nn.LSTM; the matmul LSTM) and
    the batched path (the matmul LSTM under vmap), ``cells`` cells x ``steps`` clipped Adam steps of
    50 reviews x 500 tokens, 1 thread, evals cut to 10 rows. Token ids are random: the rates do not
    depend on the words, so no corpus is needed."""
    from landscape.tasks.imdb import Imdb, ImdbOptions
    from landscape.train import train_cell, train_cells

    class RandomTokens(Imdb):
        def __init__(self, options: ImdbOptions):
            Task.__init__(self, options)
            self.vectorizable = options.lstm == "matmul"

        @property
        def data_source(self) -> str:
            return "random token ids"

        def data(self, value: int) -> Split:
            g = torch.Generator().manual_seed(0)
            x = torch.randint(0, self.options.vocab + 1, (value, self.options.length), generator=g, dtype=torch.int32)
            y = torch.randint(0, 2, (value,), generator=g).float()
            return Split(x[:100], y[:100], x[100:], y[100:])

    torch.set_num_threads(1)
    train = TrainConfig(optimizer="adam", lr=1e-3, batch_size=50, steps=steps, grad_clip=5.0)
    evalc = EvalConfig(every=steps, samples=10)
    print(f"\n7. IMDb LSTM, {cells} cells x {steps} steps, batch 50 x 500 tokens, 1 thread" + loadavg())
    for hidden in (256, 128):
        print(row(f"hidden {hidden}, cell-steps", "per wall s", "per CPU s"))
        tasks = {lstm: RandomTokens(ImdbOptions(hidden=hidden, lstm=lstm)) for lstm in ("torch", "matmul")}
        split = tasks["torch"].data(150)
        w = [default_init_norm(tasks["torch"]) * a for a in np.geomspace(0.5, 4, cells)]

        def per_cell(task: Task) -> Callable[[], object]:
            return lambda: [train_cell(task, split, wi, 0, train, evalc) for wi in w]

        runs = {
            "(a) per cell, nn.LSTM": per_cell(tasks["torch"]),
            "(b) per cell, matmul LSTM": per_cell(tasks["matmul"]),
            f"(c) batched, matmul LSTM, vmap over {cells} cells": lambda: train_cells(
                tasks["matmul"], [split] * cells, w, [0] * cells, train, evalc),
        }
        train_cell(tasks["matmul"], split, w[0], 0, dataclasses.replace(train, steps=1), evalc)  # first-call costs
        rates = {}
        for name, fn in runs.items():
            wall, cpu = wall_and_cpu(fn)
            rates[name] = np.array([cells * steps / wall, cells * steps / cpu])
            print(row(name, f"{rates[name][0]:.2f}", f"{rates[name][1]:.2f}"))
        a, b, c = rates.values()
        print(row("ratio (c)/(a): batched vs per cell on nn.LSTM", f"{c[0] / a[0]:.2f}x", f"{c[1] / a[1]:.2f}x"))
        print(row("ratio (b)/(a): matmul vs nn.LSTM, per cell", f"{b[0] / a[0]:.2f}x", f"{b[1] / a[1]:.2f}x"))


if __name__ == "__main__":
    main()
