"""Tasks from outside the package: the example, import paths, entry points, the Python API, and
models with Dropout and BatchNorm (train/eval modes, the batching probe)."""
from __future__ import annotations

import dataclasses
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

import landscape
from landscape.train.probe import decide
from landscape.cli import main
from landscape.run.plan import default_init_norm
from landscape.spec import EvalConfig, TrainConfig, load_spec
from landscape.tasks import make_task
from landscape.train import evaluate, eval_rows, init_cell, train_cell, train_cells
from tests.conftest import ROOT
from tests.outside_task import DropoutBatchNormTask

EXAMPLE = ROOT / "examples" / "digits_cnn" / "digits_cnn.toml"
TINY_EXAMPLE = ["axes.alpha=[0.5, 3.0]", "axes.N=[40, 80]", "train.steps=30", "eval.every=15"]
BN_SPEC = {
    "task": "tests.outside_task:DropoutBatchNormTask",
    "axes": {"alpha": [1.0, 3.0], "N": [60, 120], "seed": [0]},
    "train": {"optimizer": "adam", "lr": 1e-2, "batch_size": 20, "steps": 40},
    "eval": {"every": 20},
}


def test_example_runs_from_the_cli_and_from_python_alike(tmp_path):
    """The spec names the task by import path; loky workers import it the same way. The Python API
    takes the class itself. Both give the same cube."""
    from examples.digits_cnn.digits_cnn import DigitsCNN

    cli, api = tmp_path / "cli.zarr", tmp_path / "api.zarr"
    args = [a for item in TINY_EXAMPLE for a in ("--set", item)]
    assert main(["grid", str(EXAMPLE), "--out", str(cli), "--jobs", "2", "--quiet", *args]) == 0
    summary = landscape.run_grid(EXAMPLE, api, overrides=TINY_EXAMPLE, task=DigitsCNN, jobs=1, progress=False)
    assert summary.ran == 4
    a, b = xr.open_zarr(cli), xr.open_zarr(api)
    for ds in (a, b):
        assert (ds["status"] == 1).all()
        np.testing.assert_allclose(ds["norm"].values, np.broadcast_to(ds["w"].values[:, None, None], (2, 2, 1)),
                                   rtol=1e-5)
    assert a.attrs["task"] == b.attrs["task"] == DigitsCNN.name
    assert a.attrs["task_ref"] == b.attrs["task_ref"] == "examples.digits_cnn.digits_cnn:DigitsCNN"
    assert a.attrs["batched"] == 1, a.attrs["batching"]
    for name in ("train_loss", "test_loss", "test_err", "test_loss_curve"):
        np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-5, err_msg=name)


def test_a_class_defined_in_a_notebook_reaches_the_workers(tmp_path):
    """No import path reaches a class made at run time: it travels to the loky workers by value."""
    namespace: dict = {}
    exec(textwrap.dedent("""
        from tests.outside_task import DropoutBatchNormTask
        class NotebookTask(DropoutBatchNormTask):
            name = "notebook"
    """), namespace)
    summary = landscape.run_grid(BN_SPEC, tmp_path / "nb.zarr", task=namespace["NotebookTask"], jobs=2, progress=False)
    assert summary.ran == 4
    assert (xr.open_zarr(tmp_path / "nb.zarr")["status"] == 1).all()


@pytest.mark.parametrize("ref,match", [
    ("nosuchmodule_xyz:Task", "no module 'nosuchmodule_xyz' in the installed packages"),
    ("tests.outside_task:Missing", "has no 'Missing'"),
    ("tests.outside_task:NotATask", "is not a subclass of landscape.Task"),
    ("landscape.tasks.base:Task", "does not implement"),
    ("tests.outside_task", "unknown task"),
])
def test_bad_task_paths_are_one_line_errors_without_a_store(capsys, tiny_spec, tmp_path, ref, match):
    out = tmp_path / "out.zarr"
    assert main(["grid", str(tiny_spec), "--out", str(out), "--set", f"task={ref}"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err and "Traceback" not in err, err
    assert not out.exists()


def test_installed_packages_register_tasks_through_entry_points(tmp_path, monkeypatch):
    """A distribution on sys.path that declares ``landscape.tasks`` entry points adds task names."""
    dist = tmp_path / "blobs_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: blobs-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[landscape.tasks]\nblobs = tests.outside_task:DropoutBatchNormTask\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = load_spec(_write(tmp_path, {**BN_SPEC, "task": "blobs"}))
    assert spec.task == "blobs" and spec.make_task().name == "dropout-bn"
    summary = landscape.run_grid(spec, tmp_path / "ep.zarr", jobs=1, progress=False)
    assert summary.ran == 4 and xr.open_zarr(tmp_path / "ep.zarr").attrs["task_ref"] == "blobs"


def test_top_level_exports_what_a_notebook_needs():
    for name in ("Task", "Split", "run_grid", "load_spec", "open_cube", "critical_norm", "goldilocks_zone",
                 "critical_data_size", "lu_mismatch"):
        assert callable(getattr(landscape, name)), name


@pytest.fixture(scope="module")
def bn_task():
    return make_task(DropoutBatchNormTask, {})


def test_evaluation_of_the_same_weights_is_deterministic(bn_task):
    """Eval mode: Dropout off, BatchNorm on its running statistics, which evaluation never changes."""
    model, _ = init_cell(bn_task, 5.0, seed=0)
    split = bn_task.data(100)
    model.train()
    model(split.train_x[:50])  # one training forward: the running statistics move off their init
    stats = model[1].running_mean.clone()
    rows = eval_rows(len(split.test_y), 0)
    first = evaluate(bn_task, model, split.test_x, split.test_y, rows)
    second = evaluate(bn_task, model, split.test_x, split.test_y, rows)
    assert first == second
    assert torch.equal(model[1].running_mean, stats)  # test data never updates them
    assert model.training  # back in train mode for the next step


def test_dropout_batchnorm_batched_cells_match_their_per_cell_runs(bn_task, one_torch_thread):
    """Stacked BatchNorm buffers and the per-seed dropout stream: a batch gives each cell its own run
    (in float64, so that agreement to 1e-9 shows the very same dropout masks and running statistics)."""
    train = TrainConfig(optimizer="adam", lr=1e-2, batch_size=20, steps=30, dtype="float64")
    evalc = EvalConfig(every=10)
    splits, ws = [bn_task.data(60), bn_task.data(120)], [2.0, 6.0]
    stacked = train_cells(bn_task, splits, ws, [1, 1], train, evalc)
    for split, w, result in zip(splits, ws, stacked):
        alone = train_cell(bn_task, split, w, 1, train, evalc)
        np.testing.assert_allclose(result.curves, alone.curves, rtol=1e-9)
        np.testing.assert_allclose(result.layer_norms, alone.layer_norms, rtol=1e-9)


def test_probe_batches_dropout_batchnorm_models_one_seed_per_batch(bn_task, tmp_path):
    spec = load_spec(_write(tmp_path, BN_SPEC))
    decision = decide(bn_task, spec, default_init_norm(bn_task))
    assert decision.stacked and decision.random, decision
    summary = landscape.run_grid(spec, tmp_path / "bn.zarr", jobs=1, progress=False,
                                 overrides=["axes.seed=[0, 1]"])
    ds = xr.open_zarr(tmp_path / "bn.zarr")
    assert summary.ran == 8 and (ds["status"] == 1).all()
    assert ds.attrs["batched"] == 1 and ds.attrs["batch_random"] == 1


def test_a_model_vmap_cannot_run_falls_back_with_its_reason(tmp_path):
    class ItemInForward(DropoutBatchNormTask):
        def build_model(self) -> torch.nn.Module:
            return _Scaled(super().build_model())

    task = make_task(ItemInForward, {})
    spec = load_spec(_write(tmp_path, BN_SPEC))
    spec = dataclasses.replace(spec, task_class=ItemInForward)
    decision = decide(task, spec, default_init_norm(task))
    assert not decision.stacked and "vmap" in decision.reason, decision


class _Scaled(torch.nn.Module):
    """Data-dependent Python control flow: fine alone, impossible under vmap."""

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.inner(x)
        return out * 2 if float(out.sum()) > 0 else out


def _write(tmp_path: Path, spec: dict) -> Path:
    """A spec dict as a TOML file (the path the CLI reads)."""
    lines = [f'task = "{spec["task"]}"']
    for section in ("axes", "train", "eval"):
        lines.append(f"[{section}]")
        lines += [f"{k} = {v!r}".replace("'", '"') for k, v in spec[section].items()]
    path = tmp_path / f"spec{len(list(tmp_path.glob('spec*.toml')))}.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ce_and_mse_mnist_differ_only_in_targets_and_loss():
    mse, ce = make_task("mnist", {}), make_task("mnist", {"loss": "ce"})
    a, b = mse.data(100), ce.data(100)
    assert a.train_y.shape == (100, 10) and b.train_y.dtype == torch.long and b.train_y.shape == (100,)
    assert torch.equal(a.train_y.argmax(1), b.train_y)
    logits = torch.randn(100, 10)
    assert torch.equal(mse.errors(logits, a.train_y), ce.errors(logits, b.train_y))
    assert float(ce.loss(logits, b.train_y)) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, b.train_y)))


def test_ce_mnist_runs_batched(tmp_path):
    spec = ROOT / "grids" / "mnist-ce.toml"
    summary = landscape.run_grid(spec, tmp_path / "ce.zarr", jobs=1, progress=False,
                                 overrides=["axes.alpha=[1.0, 4.0]", "axes.N=[100]", "train.steps=20", "eval.every=10"])
    ds = xr.open_zarr(tmp_path / "ce.zarr")
    assert summary.ran == 2 and ds.attrs["batched"] == 1
    assert json.loads(ds.attrs["spec"])["task_options"]["loss"] == "ce"
