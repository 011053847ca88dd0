"""The one training loop and its two backends (landscape.train): the cubes are the ones the two
trainers it replaced wrote, the measurement hook gives the same values in both backends, and the
device is a run setting that the cube records.

The reference digests (tests/reference/digests.json) were recorded from the code before the loop
was unified; ``python tests/test_engine.py --record`` records them again from the current code.
"""
from __future__ import annotations

import hashlib
import json
import platform
import shlex
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

from landscape import Split, Task
from landscape.cli import main
from landscape.errors import TaskError
from landscape.run.driver import run_grid
from landscape.spec import EvalConfig, TrainConfig
from landscape.tasks import make_task
from landscape.train import train_cell, train_cells

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "reference" / "digests.json"
#: Per-run variables that are not results: wall time and the write checksums.
SKIPPED = ("seconds", "checksum")
#: Reduced versions of shipped specs, each a few seconds on one core. Cell batches of 2-3 form (16-18
#: cells; the plan cuts a grid into about 8 cell batches), so both backends run; cells stop early in
#: teacher-student. Recorded before the loop was unified (commit 37566b2) and again, from the one
#: loop, when the plan stopped depending on --jobs (which regrouped the cells).
CASES: dict[str, list[str]] = {
    "teacher-student": ["grids/teacher-student.toml", "--set", "axes.alpha={ logspace = [-1, 1, 4] }",
                        "--set", "axes.N=[25, 50, 75, 100]", "--set", "train.steps=300", "--set", "eval.every=50",
                        "--set", "train.stop_window=2", "--set", "train.stop_rtol=0.5"],
    "toy-addition": ["grids/toy-addition.toml", "--set", "axes.alpha=[0.5, 2.0, 8.0]",
                     "--set", "axes.m=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5]",
                     "--set", "train.steps=200", "--set", "train.lr_decay_every=80", "--set", "eval.every=50"],
    "modular-addition": ["grids/modular-addition.toml", "--set", "task_options.p=7", "--set", "task_options.d_model=16",
                         "--set", "task_options.n_heads=2", "--set", "task_options.d_head=8",
                         "--set", "task_options.d_mlp=32", "--set", "axes.alpha=[0.4, 0.63, 1.0, 1.6]",
                         "--set", "axes.N=[20, 25, 30, 35]", "--set", "train.steps=40", "--set", "eval.every=10"],
    "digits-cnn": ["examples/digits_cnn/digits_cnn.toml", "--set", "axes.alpha=[0.3, 0.6, 1.0, 3.0]",
                   "--set", "axes.N=[50, 100, 150, 200]", "--set", "train.steps=60", "--set", "eval.every=20",
                   "--set", "task_options.channels=4"],
    "modular-mlp-per-cell": ["grids/modular-mlp.toml", "--set", "task_options.p=7", "--set", "task_options.width=32",
                             "--set", "axes.N=[39]", "--set", "axes.seed=[0, 1, 2]", "--set", "train.steps=300",
                             "--set", "eval.points=12", "--set", "train.max_batch_cells=1"],
}
RUN = ["--jobs", "1", "--threads", "1", "--quiet"]


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def arrays(path: Path) -> dict[str, np.ndarray]:
    """Every variable and coordinate but SKIPPED; strings as fixed-width unicode, whatever zarr gave."""
    with xr.open_zarr(path) as ds:
        out = {}
        for name in sorted(n for n in [*ds.data_vars, *ds.coords] if n not in SKIPPED):
            values = np.ascontiguousarray(ds[name].values)
            if values.dtype.kind in "OUST":
                values = np.array([str(v) for v in values.ravel()]).reshape(values.shape)
            out[name] = values
        return out


def digest(path: Path) -> dict[str, str]:
    """sha256 of each variable's and coordinate's raw array bytes, with its dtype and shape."""
    return {name: f"{v.dtype.str}{v.shape}:{hashlib.sha256(v.tobytes()).hexdigest()}"
            for name, v in arrays(path).items()}


def run(case: str, out: Path, extra: list[str] = ()) -> int:
    return main(["grid", *CASES[case], "--out", str(out), *RUN, *extra])


def record(where: Path) -> None:
    """Run every case and write this machine's entry of the digests (the other machines' are kept),
    and, with ``arrays``, the arrays of the tolerance fallback."""
    cases = {}
    for case in CASES:
        out = where / f"{case}.zarr"
        assert run(case, out, ["--overwrite"]) == 0
        cases[case] = {"command": shlex.join(["landscape", "grid", *CASES[case], "--out", f"{case}.zarr", *RUN]),
                       "digests": digest(out)}
    ref = reference()
    others = [r for r in ref["references"] if (r["cpu_model"], r["torch"]) != (cpu_model(), torch.__version__)]
    ref["references"] = [*others, {"cpu_model": cpu_model(), "torch": torch.__version__,
                                   "python": platform.python_version(), "recorded_from": "python tests/test_engine.py --record",
                                   "cases": cases}]
    REFERENCE.write_text(json.dumps(ref, indent=1) + "\n")


def reference() -> dict:
    return json.loads(REFERENCE.read_text())


def this_machine(ref: dict) -> dict | None:
    """The reference recorded on this processor with this torch, if any."""
    return next((r for r in ref["references"] if (r["cpu_model"], r["torch"]) == (cpu_model(), torch.__version__)), None)


@pytest.mark.parametrize("case", list(CASES))
def test_cubes_are_the_ones_the_two_old_trainers_wrote(case, tmp_path):
    out = tmp_path / f"{case}.zarr"
    assert run(case, out, ["--device", "cpu"]) == 0
    mine = this_machine(reference())
    if mine is not None:
        assert digest(out) == mine["cases"][case]["digests"]
    else:  # a processor or torch without a reference: its CPU kernels round differently
        expected = np.load(REFERENCE.parent / f"{case}.npz")
        got = arrays(out)
        assert sorted(got) == sorted(expected.files)
        for name in expected.files:
            if got[name].dtype.kind == "f":
                # Rounding differences compound over training: 2.5e-6 relative in teacher-student and
                # 1.4e-3 in toy-addition's layer norms on an AMD EPYC against the Intel arrays. 1e-2
                # still catches a changed computation, which moves these values by far more.
                np.testing.assert_allclose(got[name], expected[name], rtol=1e-2, atol=1e-6, err_msg=name)
            else:
                np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


def test_modular_mlp_trained_batched_matches_one_cell_per_cell_batch(tmp_path):
    """Its extra curves no longer keep it per cell; batched, it rounds differently but lands on the same cells."""
    out = tmp_path / "batched.zarr"
    batched_case = CASES["modular-mlp-per-cell"][:-2]  # without its train.max_batch_cells=1
    assert main(["grid", *batched_case, "--out", str(out), *RUN]) == 0
    assert run("modular-mlp-per-cell", tmp_path / "per-cell.zarr") == 0  # on this processor, not the reference's
    expected = arrays(tmp_path / "per-cell.zarr")
    with xr.open_zarr(out) as ds:
        assert ds.attrs["batched"] == 1, ds.attrs["batching"]
        assert ds.attrs["batch_cells"] > 1
        np.testing.assert_array_equal(ds["status"].values, expected["status"])
        # At the largest alpha the run catapults (its train loss climbs from 1.9 to ~500 before it fits),
        # which amplifies rounding: from step ~20 the two paths part (test loss 8% apart at the end on
        # an AMD EPYC, equal to 1e-4 on the Intel machine by luck). Those cells must both fit; every
        # other cell must agree to the end.
        curve = expected["train_loss_curve"]
        calm = np.nanmax(curve, axis=-1) < 10 * curve[..., 0]
        assert calm.sum() >= calm.size // 2
        assert (ds["train_loss"].values[~calm] < 1e-5).all() and (expected["train_loss"][~calm] < 1e-5).all()
        for name in ("train_loss", "test_loss", "norm", "kernel_test_err", "rich_test_err"):
            np.testing.assert_allclose(ds[name].values[calm], expected[name][calm], rtol=1e-4, atol=1e-6, err_msg=name)
        for name in ("cos_kernel_curve", "cos_rich_curve", "min_margin_curve", "train_loss_curve"):
            np.testing.assert_allclose(ds[name].values[calm], expected[name][calm], rtol=1e-4, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("name, options, n", [("modular-mlp", {"p": 7, "width": 16}, 30),
                                              ("diag-sparse", {"d": 20, "n_test": 50}, 12),
                                              ("matrix-completion", {"d": 6}, 20)])
def test_the_measurement_hook_gives_both_backends_the_same_values(name, options, n):
    """At step 0 both backends hold the very same model: equal bits; after steps, equal to rounding."""
    task = make_task(name, options)
    split = task.data(n)
    train = TrainConfig(optimizer="sgd", lr=0.05, steps=4, constrain_norm=False)
    evalc = EvalConfig(every=2)
    ws, seeds = [1.0, 3.0], [0, 1]
    torch.set_num_threads(1)
    alone = [train_cell(task, split, w, seed, train, evalc) for w, seed in zip(ws, seeds)]
    together = train_cells(task, [split, split], ws, seeds, train, evalc)
    for a, b in zip(alone, together):
        assert set(a.extra_curves) == set(b.extra_curves) == set(task.extra_curves)
        assert a.extra_values == b.extra_values and set(a.extra_values) == set(task.extra_values)
        for curve in task.extra_curves:
            np.testing.assert_array_equal(a.extra_curves[curve][0], b.extra_curves[curve][0], err_msg=curve)
            np.testing.assert_allclose(a.extra_curves[curve], b.extra_curves[curve], rtol=1e-4, atol=1e-6,
                                       err_msg=curve)


def test_device_cpu_runs_and_the_cube_records_it(tmp_path, capsys):
    out = tmp_path / "cpu.zarr"
    assert run("teacher-student", out, ["--device", "cpu", "--set", "train.steps=20", "--set", "eval.every=10"]) == 0
    with xr.open_zarr(out) as ds:
        assert ds.attrs["device"] == "cpu" and ds.attrs["device_name"] == cpu_model()
        assert (ds["status"] == 1).all()
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    assert f"device:      cpu ({cpu_model()})" in capsys.readouterr().out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_device_cuda_without_cuda_is_one_line_and_no_store(tmp_path, capsys, device):
    out = tmp_path / "cuda.zarr"
    assert run("teacher-student", out, ["--device", device]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--device {device}: CUDA is not available" in err
    assert not out.exists()


def test_an_unknown_device_is_one_line(tmp_path, capsys):
    assert run("teacher-student", tmp_path / "x.zarr", ["--device", "gpu"]) == 2
    assert "--device 'gpu' is not a device" in capsys.readouterr().err
    assert not (tmp_path / "x.zarr").exists()


def test_resuming_on_another_kind_of_device_is_refused(tmp_path, capsys):
    """CPU and CUDA round differently: a cube's cells come from one kind of device."""
    import zarr

    out, short = tmp_path / "ts.zarr", ["--device", "cpu", "--set", "train.steps=20", "--set", "eval.every=10"]
    assert run("teacher-student", out, short) == 0
    zarr.open_group(str(out), mode="r+").attrs.update({"device": "cuda", "device_name": "a GPU"})
    capsys.readouterr()
    assert run("teacher-student", out, short) == 2
    assert "was computed on cuda (a GPU), not cpu; resume it with --device cuda" in capsys.readouterr().err


class CudaOnlyTask(Task):
    """A user's task whose model insists on CUDA."""

    name = "cuda-only"

    def data(self, value: int) -> Split:
        x = torch.randn(40, 3, generator=torch.Generator().manual_seed(0))
        return Split(x[:value], x[:value, :1], x[value:], x[value:, :1])

    @property
    def data_source(self) -> str:
        return "synthetic"

    def build_model(self) -> torch.nn.Module:
        return _ToCuda()

    def errors(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((pred - target).abs() > 0.1).float().squeeze(-1)


class _ToCuda(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x.to("cuda")) if self.training else self.lin(x)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_a_task_failing_on_its_device_names_task_cell_and_device(tmp_path):
    spec = {"task": "cuda-only", "axes": {"alpha": [1.0], "N": [20], "seed": [0]},
            "train": {"optimizer": "sgd", "lr": 0.1, "steps": 4, "max_batch_cells": 1}, "eval": {"every": 2}}
    with pytest.raises(TaskError) as failure:  # the task's own error: exit 2, finished cells kept
        run_grid(spec, tmp_path / "c.zarr", task=CudaOnlyTask, jobs=1, device="cpu", progress=False)
    message = str(failure.value)
    assert "\n" not in message and message.startswith("task 'cuda-only' raised ")
    assert "training cell (w=" in message and "N=20, seed=0) on cpu" in message and "CUDA" in message
    assert "0/1 cells are stored, rerun the same command to resume" in message


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    import os
    import tempfile

    os.environ.setdefault("LANDSCAPE_THREADS", "1")
    REFERENCE.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        record(Path(tmp))
