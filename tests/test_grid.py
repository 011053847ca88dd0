"""End-to-end grids through the CLI: schema, resume, spec mismatch, dask backend."""
import json
import signal
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from landscape.run.driver import run_grid
from landscape.cli import main
from tests.stop_after import SCRIPT


def run_cli(*args: str) -> int:
    return main([str(a) for a in args])


def test_small_teacher_student_grid(tiny_spec, tmp_path, capsys):
    out = tmp_path / "ts.zarr"
    assert run_cli("grid", tiny_spec, "--out", out, "--jobs", "2", "--quiet") == 0
    ds = xr.open_zarr(out)
    assert dict(ds.sizes) == {"w": 3, "N": 2, "seed": 1, "step": 4, "layer": 3}
    for name in ("train_loss", "test_loss", "train_err", "test_err", "norm", "steps", "seconds", "status"):
        assert ds[name].dims == ("w", "N", "seed"), name
    for name in ("train_loss_curve", "test_loss_curve", "train_err_curve", "test_err_curve"):
        assert ds[name].dims == ("w", "N", "seed", "step")
    assert (ds["status"] == 1).all()
    assert (ds["steps"] == 60).all()
    np.testing.assert_allclose(ds["norm"].values, np.broadcast_to(ds["w"].values[:, None, None], (3, 2, 1)), rtol=1e-5)
    np.testing.assert_allclose(ds["alpha"].values, [0.5, 1.0, 2.0])
    np.testing.assert_allclose(ds["w"].values / ds.attrs["w0"], ds["alpha"].values)
    np.testing.assert_array_equal(ds["step"].values, [0, 20, 40, 60])
    np.testing.assert_allclose(ds["train_loss"].values, ds["train_loss_curve"].isel(step=-1).values)
    assert ds["train_loss_curve"].isel(step=-1).mean() < ds["train_loss_curve"].isel(step=0).mean()
    spec = json.loads(ds.attrs["spec"])
    assert spec["train"]["steps"] == 60 and spec["axes"]["N"] == [20, 40]
    for key in ("task", "data_source", "created", "version_torch", "version_numpy", "version_landscape"):
        assert ds.attrs[key]
    assert ds["test_loss"].attrs["long_name"]
    assert ds.attrs["figure_metric"] == "err" and ds.attrs["figure_levels"] == [0.1, 0.2, 0.3, 0.4]
    assert run_cli("info", out) == 0
    assert "3/3" not in capsys.readouterr().out  # 6 cells, not 3
    assert run_cli("info", out) == 0 and "6/6 cells finished" in capsys.readouterr().out


def test_rerun_finished_grid_computes_nothing(tiny_spec, tmp_path, capsys):
    out = tmp_path / "ts.zarr"
    assert run_cli("grid", tiny_spec, "--out", out, "--jobs", "1", "--quiet") == 0
    before = xr.open_zarr(out)["seconds"].values.copy()
    capsys.readouterr()
    assert run_cli("grid", tiny_spec, "--out", out, "--jobs", "1", "--quiet") == 0
    assert "0 computed now, 6 already there" in capsys.readouterr().out
    np.testing.assert_array_equal(xr.open_zarr(out)["seconds"].values, before)


def test_different_spec_is_refused_unless_overwrite(tiny_spec, tmp_path, capsys):
    out = tmp_path / "ts.zarr"
    assert run_cli("grid", tiny_spec, "--out", out, "--quiet") == 0
    capsys.readouterr()
    assert run_cli("grid", tiny_spec, "--out", out, "--quiet", "--set", "train.steps=40") == 2
    err = capsys.readouterr().err
    assert "different spec" in err and len(err.strip().splitlines()) == 1
    assert (xr.open_zarr(out)["steps"] == 60).all()  # untouched
    assert run_cli("grid", tiny_spec, "--out", out, "--quiet", "--set", "train.steps=40", "--overwrite") == 0
    assert (xr.open_zarr(out)["steps"] == 40).all()


@pytest.mark.parametrize("sig", ["INT", "KILL"])
def test_interrupted_grid_resumes_without_recomputing(tiny_spec, tmp_path, sig):
    """Interrupted at a deterministic place (after 2 written cells), whatever the machine's speed."""
    out = tmp_path / "ts.zarr"
    cmd = [sys.executable, "-m", "landscape", "grid", str(tiny_spec), "--out", str(out), "--jobs", "1", "--quiet",
           "--set", "train.max_batch_cells=1"]
    first = subprocess.run([sys.executable, SCRIPT, f"2:{sig}", *cmd[1:]], capture_output=True, text=True, timeout=600)
    if sig == "INT":
        assert first.returncode == 130, first.stderr
        assert "2/6 cells are stored" in first.stderr and "rerun the same command to resume" in first.stderr
    else:
        assert first.returncode == -signal.SIGKILL
    stored = xr.open_zarr(out)
    finished = stored["status"].values == 1
    assert finished.sum() == 2
    seconds_before = stored["seconds"].values[finished].copy()

    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert "4 computed now, 2 already there" in rerun.stdout
    second = xr.open_zarr(out)
    assert (second["status"] == 1).all()
    np.testing.assert_array_equal(second["seconds"].values[finished], seconds_before)


def test_resumed_grid_equals_an_uninterrupted_one(tiny_spec, tmp_path):
    """Batched cells keep their batch-mates across a resume, so every value is bit for bit the same."""
    whole, resumed = tmp_path / "whole.zarr", tmp_path / "resumed.zarr"
    # 16 cells: the plan (cells / PLAN_BATCHES, capped) cuts batches of two.
    args = ["--jobs", "1", "--quiet", "--set", "train.max_batch_cells=2",
            "--set", "axes.alpha=[0.5, 1.0, 2.0, 4.0]", "--set", "axes.N=[20, 40, 60, 80]"]
    assert run_cli("grid", tiny_spec, "--out", whole, *args) == 0
    # Interrupted mid-way through the second batch of two.
    cmd = [sys.executable, SCRIPT, "3", "-m", "landscape", "grid", str(tiny_spec), "--out", str(resumed), *args]
    assert subprocess.run(cmd, capture_output=True, timeout=600).returncode == 130
    assert int((xr.open_zarr(resumed)["status"].values == 1).sum()) == 3
    assert run_cli("grid", tiny_spec, "--out", resumed, *args) == 0
    a, b = xr.open_zarr(whole), xr.open_zarr(resumed)
    assert a.attrs["batched"] == 1 and a.attrs["batch_cells"] == 2
    for name in ("train_loss", "test_loss", "train_err", "test_err", "norm", "train_loss_curve", "layer_norm_curve"):
        np.testing.assert_array_equal(a[name].values, b[name].values, err_msg=name)


def test_progress_counts_cell_steps_from_the_workers(tiny_spec, tmp_path, monkeypatch):
    """The bar hears from the workers while they train: more reports than batches, and every step."""
    from landscape.run import progress

    seen = []
    monkeypatch.setattr(progress.Bar, "advance", lambda self, steps, skipped=0: seen.append((steps, skipped)))
    spec = tiny_spec.read_text().replace("steps = 60", "steps = 600")
    path = tmp_path / "long.toml"
    path.write_text(spec)
    summary = run_grid(path, tmp_path / "p.zarr", jobs=1, progress=False,
                            overrides=["train.max_batch_cells=3", "eval.every=200"])
    assert summary.ran == 6
    assert sum(steps for steps, _ in seen) == 6 * 600
    assert len(seen) >= 2 * 600 // 32  # 2 batches: a report every 32 steps at least, not one per batch


def test_spec_mismatch_names_the_fields(tiny_spec, tmp_path, capsys):
    out = tmp_path / "ts.zarr"
    assert run_cli("grid", tiny_spec, "--out", out, "--quiet") == 0
    capsys.readouterr()
    assert run_cli("grid", tiny_spec, "--out", out, "--quiet", "--set", "train.steps=40", "--set", "train.lr=0.01") == 2
    err = capsys.readouterr().err.strip()
    assert "train.lr: stored 0.001, given 0.01" in err and "train.steps: stored 60, given 40" in err
    assert len(err.splitlines()) == 1


def test_diverging_cell_gets_status_2_and_grid_continues(tiny_spec, tmp_path):
    out = tmp_path / "ts.zarr"
    assert run_cli("grid", tiny_spec, "--out", out, "--quiet", "--set", "axes.alpha=[1.0, 1e20]") == 0
    ds = xr.open_zarr(out)
    np.testing.assert_array_equal(ds["status"].values[:, :, 0], [[1, 1], [2, 2]])
    assert np.isnan(ds["test_loss"].values[1]).all()
    assert np.isfinite(ds["test_loss"].values[0]).all()


def test_dask_backend_matches_loky(tiny_spec, tmp_path):
    from distributed import LocalCluster

    loky, dask_local, dask_remote = tmp_path / "loky.zarr", tmp_path / "dask.zarr", tmp_path / "remote.zarr"
    assert run_cli("grid", tiny_spec, "--out", loky, "--jobs", "2", "--quiet") == 0
    assert run_cli("grid", tiny_spec, "--out", dask_local, "--jobs", "2", "--backend", "dask", "--quiet") == 0
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster:
        assert run_cli("grid", tiny_spec, "--out", dask_remote, "--backend", "dask",
                       "--scheduler", cluster.scheduler_address, "--quiet") == 0
    a = xr.open_zarr(loky)
    for other in (dask_local, dask_remote):
        b = xr.open_zarr(other)
        assert (b["status"] == 1).all()
        for name in ("train_loss", "test_loss", "train_err", "test_err", "test_loss_curve"):
            np.testing.assert_allclose(b[name].values, a[name].values, rtol=1e-6, err_msg=name)


def test_training_setting_axis_and_log_evals(tiny_spec, tmp_path):
    """A dynamics-style grid: constraint off, a weight-decay axis, log-spaced evals, norm curves."""
    out = tmp_path / "dyn.zarr"
    args = ["--set", "axes.wd=[0.0, 1.0]", "--set", "train.optimizer=adamw", "--set", "train.constrain_norm=false",
            "--set", "eval.every=log", "--set", "eval.points=5", "--set", "axes.alpha=[2.0]", "--set", "train.steps=100"]
    assert run_cli("grid", tiny_spec, "--out", out, "--quiet", *args) == 0
    ds = xr.open_zarr(out)
    assert ds["status"].dims == ("w", "N", "wd", "seed")
    np.testing.assert_array_equal(ds["step"].values, [0, 1, 3, 10, 32, 100])
    norm = ds["norm_curve"].sel(N=20, seed=0).isel(w=0)
    np.testing.assert_allclose(norm.isel(step=0), ds["w"].values[0], rtol=1e-5)  # starts at w = alpha * w0
    # decoupled decay p <- p (1 - lr wd) per step shrinks the wd=1 run's norm well below the wd=0 run's
    assert float(norm.sel(wd=1.0).isel(step=-1)) < float(norm.sel(wd=0.0).isel(step=-1)) * 0.95
    assert json.loads(ds.attrs["spec"])["axes"]["wd"] == [0.0, 1.0]


def test_epochs_per_axis_value_give_each_cell_its_budget(tiny_spec, tmp_path):
    """ "K/N" epochs: the step budget depends on N; the cube's steps are the union of the cells' evals."""
    out = tmp_path / "ep.zarr"
    args = ["--set", 'train.epochs="800/N"', "--set", "train.batch_size=8", "--set", "eval.every=epoch"]
    assert run_cli("grid", tiny_spec, "--out", out, "--quiet", "--jobs", "1", *args) == 0
    ds = xr.open_zarr(out)
    np.testing.assert_array_equal(ds["steps"].sel(seed=0).values, [[80, 100]] * 3)  # 40 x 20//8, 20 x 40//8
    steps = ds["step"].values
    assert set(steps) == set(range(0, 81, 2)) | set(range(0, 101, 5))
    small = ds["train_loss_curve"].sel(N=20, seed=0).isel(w=0).values
    own = (steps % 2 == 0) & (steps <= 80)
    assert np.isfinite(small[own]).all() and np.isnan(small[~own]).all()
    np.testing.assert_allclose(ds["train_loss"].sel(N=20).values, ds["train_loss_curve"].sel(N=20, step=80).values)
