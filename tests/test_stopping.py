"""Convergence-based stopping: the rule, both trainers, the cube, and bad spec values."""
import numpy as np
import pytest
import xarray as xr

from landscape.cli import main
from landscape.spec import EvalConfig, TrainConfig
from landscape.tasks import make_task
from landscape.cube.schema import CURVES, STATUS_DONE
from landscape.train import converged, eval_steps, train_cell, train_cells
from tests.test_cli_errors import expect_bad_input

TRAIN_LOSS = CURVES.index("train_loss")
EVAL = EvalConfig(every=10)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def task():
    return make_task("teacher-student", {})


def test_rule_window_tolerance_and_target():
    window = TrainConfig(stop_window=2, stop_rtol=0.1)
    assert not converged([1.0, 0.5], window).item()  # not enough evals yet
    assert not converged([1.0, 0.5, 0.4], window).item()  # 0.4 is 20% below 1.0: still improving
    assert converged([1.0, 0.5, 0.48, 0.47], window).item()  # best of last 2 not 10% below 0.5
    assert converged([0.0, 0.0, 0.0], window).item()  # a zero loss cannot improve
    assert not converged([1.0, np.nan, 0.3], window).item()
    target = TrainConfig(stop_loss=0.2)
    assert not converged([1.0, 0.21], target).item() and converged([1.0, 0.2], target).item()
    off = TrainConfig()
    assert not converged([1.0, 1.0, 1.0, 1.0, 1.0], off).item()
    batch = converged(np.array([[1.0, 0.5, 0.49, 0.48], [1.0, 0.5, 0.3, 0.1]]), window)
    assert batch.tolist() == [True, False]


def _reference_and_target(task, split, w, seed, train):
    """A run without stopping and a stop_loss it first reaches at eval k."""
    ref = train_cell(task, split, w, seed, train, EVAL)
    k = 3
    assert (np.diff(ref.curves[TRAIN_LOSS, : k + 1]) < 0).all()
    return ref, float(ref.curves[TRAIN_LOSS, k]) * (1 + 1e-6), k


def test_per_cell_target_loss_stop(task):
    train = TrainConfig(optimizer="adam", lr=1e-3, steps=80)
    split = task.data(40)
    ref, target, k = _reference_and_target(task, split, 4.0, 0, train)
    stopped = train_cell(task, split, 4.0, 0, TrainConfig(optimizer="adam", lr=1e-3, steps=80, stop_loss=target), EVAL)
    evals = eval_steps(80, EVAL)
    assert stopped.status == STATUS_DONE and stopped.steps == evals[k] < 80
    np.testing.assert_array_equal(stopped.curves[:, : k + 1], ref.curves[:, : k + 1])  # identical up to the stop
    assert np.isnan(stopped.curves[:, k + 1 :]).all()  # the curve ends there


def test_vectorized_cells_stop_independently(task):
    base = dict(optimizer="adam", lr=1e-3, steps=80)
    split = task.data(40)
    ref, target, k = _reference_and_target(task, split, 4.0, 0, TrainConfig(**base))
    train = TrainConfig(**base, stop_loss=target)
    ws, seeds = [4.0, 0.5, 4.0, 9.0], [0, 0, 1, 2]
    batch = train_cells(task, [split] * 4, ws, seeds, train, EVAL)
    for w, s, r in zip(ws, seeds, batch):
        alone = train_cell(task, split, w, s, train, EVAL)
        assert r.steps == alone.steps, (w, s)
        reached = ~np.isnan(r.curves[TRAIN_LOSS])
        np.testing.assert_array_equal(reached, ~np.isnan(alone.curves[TRAIN_LOSS]))
        np.testing.assert_allclose(r.curves[:, reached], alone.curves[:, reached], rtol=1e-4)
    assert batch[0].steps == eval_steps(80, EVAL)[k]
    assert len({r.steps for r in batch}) > 1  # the batch did not stop together


def test_window_stop_ends_a_plateau(task):
    """alpha tiny: the output is ~0 and the loss flat, so a window of 3 evals ends the cell early."""
    train = TrainConfig(optimizer="adam", lr=1e-4, steps=200, stop_window=3, stop_rtol=0.01)
    r = train_cells(task, [task.data(40)] * 2, [0.01, 8.0], [0, 0], train, EVAL)
    assert r[0].steps == 30  # evals 0, 10, 20, 30: no 1% gain over the first
    assert r[1].steps > r[0].steps


def test_grid_records_steps_and_ends_curves(tiny_spec, tmp_path):
    out = tmp_path / "stop.zarr"
    args = ["grid", tiny_spec, "--out", out, "--quiet", "--set", "train.steps=200", "--set", "eval.every=20",
            "--set", "train.stop_window=2", "--set", "train.stop_rtol=0.2"]
    assert main([str(a) for a in args]) == 0
    ds = xr.open_zarr(out)
    assert (ds["status"] == 1).all()
    steps = ds["steps"].values
    assert steps.min() < 200 and set(np.unique(steps)) <= set(range(0, 201, 20))
    curve = ds["train_loss_curve"].values
    ended = ds["step"].values > steps[..., None]
    assert np.isnan(curve[ended]).all() and np.isfinite(curve[~ended]).all()  # NaN after each cell's stop
    last = ds["train_loss_curve"].sel(step=ds["steps"]).values
    np.testing.assert_allclose(ds["train_loss"].values, last)


@pytest.mark.parametrize("override,match", [
    ("train.stop_window=-1", "train.stop_window = -1 must be >= 0"),
    ("train.stop_rtol=1.5", "train.stop_rtol = 1.5 must be in [0, 1)"),
    ("train.stop_rtol=-0.1", "train.stop_rtol = -0.1 must be in [0, 1)"),
    ("train.stop_loss=-1.0", "train.stop_loss = -1.0 must be a finite number >= 0"),
    ("train.stop_loss=inf", "train.stop_loss = inf is not a finite number"),
    ("train.max_batch_cells=-2", "train.max_batch_cells = -2 must be >= 0"),
    ("train.stop_window=2.5", "train.stop_window = 2.5 should be an int"),
])
def test_bad_stopping_values(capsys, tiny_spec, tmp_path, override, match):
    out = tmp_path / "out.zarr"
    expect_bad_input(capsys, ["grid", tiny_spec, "--out", out, "--quiet", "--set", override], match, out)


def test_paired_comparison_catches_a_biased_stopping_rule(tiny_spec, tmp_path):
    """Stopping is validated cell by cell over seeds against the fixed budget (a sign test), not by
    a median: an eager rule that stops while the loss still falls is caught; equal cubes are not."""
    from landscape import run_grid
    from landscape.read.analysis import paired_comparison
    from landscape.spec import load_spec

    grid = ["axes.alpha=[0.5, 2.0]", "axes.seed=[0, 1, 2]", "train.steps=200", "eval.every=20"]
    off, eager = tmp_path / "off.zarr", tmp_path / "eager.zarr"
    run_grid(tiny_spec, off, overrides=grid, jobs=1, progress=False)
    run_grid(tiny_spec, eager, overrides=grid + ["train.stop_window=1", "train.stop_rtol=0.5"], jobs=1, progress=False)
    a, b = xr.open_zarr(eager), xr.open_zarr(off)
    assert int(a["steps"].sum()) < int(b["steps"].sum())
    biased = paired_comparison(a, b, "test_loss")
    # A cell that runs its whole budget in both cubes may differ by float32 rounding (~1e-8): in
    # the eager cube its batch-mate left the batch early. The sign test still catches the rule.
    assert biased["cells"] == 12 and biased["lower"] <= 1 and biased["higher"] >= 9 and biased["p_value"] < 0.05, biased
    same = paired_comparison(b, b, "test_loss")
    assert same["higher"] == same["lower"] == 0 and same["p_value"] == 1.0
    assert load_spec("grids/mnist.toml").train.stop_window == 0  # the default landscape is the fixed budget
