"""The GPU check: what a first machine with CUDA must show before the engine is trusted on one.

Run through scripts/gpu-check.sh (which also installs what the GPU image lacks). Prints, in about
five minutes on one data-centre GPU:
1. for each quick spec, the cube trained with ``--device cuda`` against the same spec with
   ``--device cpu``: the largest relative difference of the final losses and the status counts;
2. the cell-steps per second of the MNIST MLP batch at 16, 64, 256 and 1,024 cells per cell
   batch, the measurement behind the automatic cell-batch size on CUDA;
3. the wall time of grids/mnist.toml on CUDA, and from it an estimate for grids/mnist-paper.toml.
"""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from landscape.cube import open_cube  # noqa: E402
from landscape.spec import load_spec  # noqa: E402

#: name, spec, overrides: small enough that the CPU run takes seconds on the GPU machine's cores.
QUICK = [
    ("teacher-student", "grids/teacher-student.toml", ["train.steps=1000"]),
    ("toy-addition", "grids/toy-addition.toml",
     ["axes.alpha={logspace=[-0.5,0.5,4]}", "axes.m=[0.0,0.5,1.0]", "train.steps=600"]),
    ("modular-addition", "grids/modular-addition.toml",
     ["axes.alpha=[0.63,1.0,1.6]", "axes.N=[384,480]", "train.steps=200"]),
    ("digits-cnn", "examples/digits_cnn/digits_cnn.toml", ["train.steps=300"]),
    ("qm9", "grids/qm9.toml", ["axes.alpha=[0.4,1.0,2.5]", "axes.N=[100,1000]", "train.steps=200"]),
    ("imdb-small", "grids/imdb-small.toml", ["axes.alpha=[0.5,1.0,2.0]", "axes.N=[100,300]", "train.epochs=1"]),
]
BATCH_SIZES = (16, 64, 256, 1024)


#: The device under test: cuda, or cpu for a smoke run of this script itself (--smoke: tiny sizes).
DEVICE = "cuda"
SMOKE = False


def grid(spec: str, overrides: list[str], out: Path, device: str, extra: list[str] = ()) -> float:
    """Run ``landscape grid`` as a user would; returns its wall time, raises with its last line on failure."""
    args = [sys.executable, "-m", "landscape.cli", "grid", spec, "--out", str(out), "--device", device,
            "--quiet", *extra, *(a for o in overrides for a in ("--set", o))]
    start = time.perf_counter()
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError((done.stderr.strip().splitlines() or ["no message"])[-1])
    return time.perf_counter() - start


def compare(a: Path, b: Path) -> str:
    ca, cb = open_cube(a), open_cube(b)
    worst = 0.0
    for var in ("train_loss", "test_loss"):
        x, y = ca[var].values.astype(float), cb[var].values.astype(float)
        both = np.isfinite(x) & np.isfinite(y)
        worst = max(worst, float(np.max(np.abs(x[both] - y[both]) / np.maximum(np.abs(x[both]), 1e-8), initial=0)))
    counts = [{int(s): int(n) for s, n in zip(*np.unique(c["status"].values, return_counts=True))} for c in (ca, cb)]
    return f"max rel diff of final losses {worst:.2e}; statuses {DEVICE} {counts[0]} cpu {counts[1]}"


def section_quick(tmp: Path) -> None:
    print(f"1. quick specs, --device {DEVICE} against --device cpu")
    corpus = tmp / "imdb"
    subprocess.run([sys.executable, "-m", "tests.imdb_files", str(corpus), "2000"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    for name, spec, overrides in QUICK[:2] if SMOKE else QUICK:
        extra = ["--data-dir", str(corpus)] if name.startswith("imdb") else []
        try:
            t_cuda = grid(spec, overrides, tmp / f"{name}-cuda.zarr", DEVICE, extra)
            t_cpu = grid(spec, overrides, tmp / f"{name}-cpu.zarr", "cpu", extra)
        except RuntimeError as e:
            print(f"  {name:18} not run: {e}")
            continue
        print(f"  {name:18} {DEVICE} {t_cuda:6.1f} s, cpu {t_cpu:6.1f} s; "
              f"{compare(tmp / f'{name}-cuda.zarr', tmp / f'{name}-cpu.zarr')}")


def section_batch_sizes() -> None:
    from landscape.train import train_cells

    print(f"2. MNIST MLP (N = 1000, minibatch 100), cell-steps per second by cells per cell batch, {DEVICE}")
    spec = load_spec(ROOT / "grids/mnist.toml", ["axes.N=[1000]"])
    task = spec.make_task()
    split = task.data(1000)
    train = dataclasses.replace(spec.train, steps=20 if SMOKE else 300)
    evalc = dataclasses.replace(spec.eval, every=train.steps)
    sync = torch.cuda.synchronize if DEVICE.startswith("cuda") else (lambda: None)
    for cells in BATCH_SIZES[:1] if SMOKE else BATCH_SIZES:
        args = ([split] * cells, list(np.geomspace(2.0, 80.0, cells)), [0] * cells)
        train_cells(task, *args, dataclasses.replace(train, steps=5), evalc, DEVICE)  # warm-up
        sync()
        start = time.perf_counter()
        train_cells(task, *args, train, evalc, DEVICE)
        sync()
        rate = cells * train.steps / (time.perf_counter() - start)
        print(f"  {cells:5d} cells per cell batch: {rate:10.0f} cell-steps/s")


def section_mnist(tmp: Path) -> None:
    print(f"3. grids/mnist.toml on {DEVICE}, and an estimate for grids/mnist-paper.toml")
    seconds = grid("grids/mnist.toml", ["train.steps=20"] if SMOKE else [], tmp / "mnist.zarr", DEVICE)
    small = load_spec(ROOT / "grids/mnist.toml", ["train.steps=20"] if SMOKE else [])
    paper = load_spec(ROOT / "grids/mnist-paper.toml", [])

    def cell_steps(spec) -> int:
        return len(spec.norm_values) * len(spec.axis_values) * len(spec.seeds) * spec.train.steps

    ratio = cell_steps(paper) / cell_steps(small)
    print(f"  mnist.toml: {seconds:.0f} s wall for {cell_steps(small):,} cell-steps")
    print(f"  mnist-paper.toml: {cell_steps(paper):,} cell-steps = {ratio:.1f}x, about {seconds * ratio / 60:.0f} min "
          "at the same rate (its N up to 60,000 needs the full MNIST files via --data-dir; larger N cost more per eval)")


def main() -> None:
    global DEVICE, SMOKE
    SMOKE = "--smoke" in sys.argv  # on the CPU, to check this script itself: tiny sizes, cpu against cpu
    DEVICE = "cpu" if SMOKE else "cuda"
    if not SMOKE and not torch.cuda.is_available():
        sys.exit("gpu-check: torch.cuda.is_available() is False here; run it on a machine with a GPU")
    name = "cpu (smoke run)" if SMOKE else torch.cuda.get_device_name()
    print(f"gpu-check: {name}, torch {torch.__version__}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory() as tmp:
        for section in (lambda: section_quick(Path(tmp)), section_batch_sizes, lambda: section_mnist(Path(tmp))):
            start = time.perf_counter()
            section()
            print(f"  ({time.perf_counter() - start:.0f} s)\n", flush=True)


if __name__ == "__main__":
    main()
