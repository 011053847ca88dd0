"""Grokking-dynamics pieces: derived times, the log eval schedule, the delay prediction."""
import math

import numpy as np
import pytest
import torch
import xarray as xr

from pathlib import Path

from landscape.cli import main
from landscape.read.dynamics import delay_prediction, loglog_slope
from landscape.read.dynamics import first_reach, predict_delay
from tests.conftest import TINY_TS
from landscape.spec import EvalConfig
from landscape.train import eval_steps


def test_first_reach_on_synthetic_curves():
    steps = np.array([0, 10, 100, 1000, 10000])
    err = np.array([
        [0.9, 0.5, 0.04, 0.0, 0.0],    # reaches 95% accuracy at step 100
        [0.9, 0.9, 0.9, 0.2, 0.1],     # never
        [0.05, 0.5, 0.5, 0.5, 0.5],    # at step 0 (then forgets: first reach still counts)
        [0.9, np.nan, np.nan, np.nan, np.nan],  # stopped early without reaching
    ])
    t = first_reach(steps, err, 0.95)
    assert t[0] == 100 and np.isnan(t[1]) and t[2] == 0 and np.isnan(t[3])
    assert first_reach(steps, err[1], 0.8) == 1000


def test_log_eval_schedule():
    s = eval_steps(100_000, EvalConfig(every="log", points=30))
    assert s[0] == 0 and s[1] == 1 and s[-1] == 100_000
    assert np.all(np.diff(s) > 0) and len(s) <= 31
    ratios = s[10:][1:] / s[10:][:-1]
    assert np.allclose(ratios, ratios.mean(), rtol=0.05)  # evenly spaced in log once past the rounding
    np.testing.assert_array_equal(eval_steps(250, EvalConfig(every=100)), [0, 100, 200, 250])


def test_delay_prediction_matches_pure_decay():
    """Zero loss gradient: AdamW only decays, and the norm crosses w_c when predicted."""
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(50))
    w_init = float(p.detach().norm())
    w_c, lr, gamma = w_init / 5.0, 1e-2, 0.5
    opt = torch.optim.AdamW([p], lr=lr, weight_decay=gamma)
    steps = 0
    while float(p.detach().norm()) > w_c:
        opt.zero_grad()
        (0.0 * p.sum()).backward()
        opt.step()
        steps += 1
    predicted = predict_delay(w_init, w_c, gamma, lr)
    assert math.ceil(predicted - 1e-9) == steps
    assert predicted == pytest.approx(math.log(5.0) / (lr * gamma), rel=0.01)


def test_delay_prediction_edge_cases():
    assert predict_delay(1.0, 2.0, 0.1, 1e-3) == 0.0
    assert predict_delay(2.0, 1.0, 0.0, 1e-3) == math.inf
    assert math.isnan(predict_delay(2.0, 1.0, 1.0, 2.0))  # lr gamma >= 1: no geometric decay
    with pytest.raises(ValueError):
        predict_delay(2.0, 1.0, 0.1, 1e-3, rule="adam")


DYNAMICS = ["--set", "axes.alpha=[0.5, 2.0]", "--set", "axes.N=[40]", "--set", "axes.wd=[0.1, 1.0]",
            "--set", "train.optimizer=adamw", "--set", "train.lr=1e-2", "--set", "train.constrain_norm=false",
            "--set", "train.steps=300", "--set", "eval.every=log", "--set", "eval.points=20",
            "--set", "task_options.threshold=0.01", "--set", "eval.level=0.9"]


LANDSCAPE = ["--set", "axes.N=[20, 80]", "--set", "axes.alpha=[0.25, 0.5, 1.0, 2.0]", "--set", "train.lr=1e-2",
             "--set", "train.steps=400", "--set", "task_options.threshold=0.01"]


def _tiny_cube(tmp_path_factory, name: str, overrides: list[str]) -> Path:
    """The tiny teacher-student spec with ``overrides``, run once per module."""
    tmp = tmp_path_factory.mktemp(name)
    spec = tmp / "tiny.toml"
    spec.write_text(TINY_TS)
    out = tmp / f"{name}.zarr"
    assert main([str(a) for a in ("grid", spec, "--out", out, "--quiet", *overrides)]) == 0
    return out


@pytest.fixture(scope="module")
def dynamics_cube(tmp_path_factory) -> Path:
    return _tiny_cube(tmp_path_factory, "dyn", DYNAMICS)


@pytest.fixture(scope="module")
def landscape_cube(tmp_path_factory) -> Path:
    return _tiny_cube(tmp_path_factory, "land", LANDSCAPE)


def test_tiny_teacher_student_dynamics_grid(dynamics_cube):
    ds = xr.open_zarr(dynamics_cube)
    assert (ds["status"] == 1).all()
    for name in ("t_fit", "t_gen", "fit_reached", "gen_reached", "norm_curve"):
        assert name in ds
    recomputed = first_reach(ds["step"].values, ds["train_err_curve"].values, 0.9)
    np.testing.assert_array_equal(np.isnan(recomputed), np.isnan(ds["t_fit"].values))
    np.testing.assert_array_equal(ds["fit_reached"].values == 1, np.isfinite(ds["t_fit"].values))
    assert np.nanmax(ds["t_fit"].values) <= 300
    assert ds["fit_reached"].values.any()


@pytest.mark.parametrize("override,match", [
    ("eval.level=1.5", "eval.level = 1.5 must be in (0, 1]"),
    ("eval.level=0", "eval.level = 0 must be in (0, 1]"),
    ("axes.wd=[-0.1]", "axes.wd: -0.1 must be >= 0"),
    ("train.weight_decay=-1", "train.weight_decay = -1 must be >= 0"),
])
def test_bad_dynamics_input(capsys, tiny_spec, tmp_path, override, match):
    assert main(["grid", str(tiny_spec), "--out", str(tmp_path / "x.zarr"), "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err
    assert not (tmp_path / "x.zarr").exists()


def test_loglog_slope():
    gamma = np.array([0.03, 0.1, 0.3, 1.0])
    slope, _ = loglog_slope(gamma, 50.0 / gamma)
    assert slope == pytest.approx(-1.0)
    assert np.isnan(loglog_slope([1.0], [2.0])[0])


def test_delay_prediction_from_cubes(dynamics_cube, landscape_cube):
    dyn, land = xr.open_zarr(dynamics_cube), xr.open_zarr(landscape_cube)
    delays = delay_prediction(dyn, land)
    assert set(delays.data_vars) >= {"predicted", "predicted_edge", "measured", "w_c", "w_hi"}
    w_c = float(delays["w_c"].sel(N=40))
    lo, hi = sorted(float(x) for x in land["w"].values[[0, -1]])
    assert lo <= w_c <= hi  # interpolated between the N = 20 and N = 80 rows
    for w, gamma in ((dyn["w"].values[1], 1.0),):
        expected = predict_delay(float(w), w_c, gamma, 1e-2)
        assert float(delays["predicted"].sel(w=w, wd=gamma, N=40)) == pytest.approx(expected)


def test_dynamics_figures(dynamics_cube, landscape_cube, tmp_path, capsys):
    out = tmp_path / "figs"
    assert main(["plot", str(dynamics_cube), "--out", str(out), "--landscape", str(landscape_cube)]) == 0
    for kind in ("grokking", "times-wd", "prediction"):
        assert (out / f"{kind}.png").stat().st_size > 0 and (out / f"{kind}.pdf").stat().st_size > 0
    assert not (out / "lu.png").exists()  # landscape kinds do not apply to a dynamics cube

    from plots.grokking import grokking_figure
    from plots.timescales import times_figure

    ds = xr.open_zarr(dynamics_cube)
    fig = grokking_figure(ds)
    curves = [ax for ax in fig.axes if ax.get_ylabel() == "accuracy"]
    assert len(curves) == 4 and all(ax.get_xscale() == "symlog" for ax in curves)
    assert any("norm" in ax.get_ylabel() for ax in fig.axes)
    times = times_figure(ds, "wd").axes[0]
    assert times.get_xscale() == "log" and times.get_yscale() == "log" and "gamma" in times.get_xlabel()


def test_prediction_needs_matching_task(dynamics_cube, landscape_cube, tmp_path, capsys):
    land = xr.open_zarr(landscape_cube).compute()
    for var in land.variables.values():
        var.encoding = {}
    land.attrs["task"] = land.attrs["task_ref"] = "mnist"
    other = tmp_path / "other.zarr"
    land.to_zarr(other, zarr_format=2, consolidated=True)  # as the engine writes cubes
    assert main(["plot", str(dynamics_cube), "--out", str(tmp_path / "f"), "--landscape", str(other)]) == 2
    assert "landscape cube is for task 'mnist'" in capsys.readouterr().err
