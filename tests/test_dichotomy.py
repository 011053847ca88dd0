"""The Dichotomy tasks, the transition measures, and a tiny run end to end."""
import json
import math

import numpy as np
import pytest
import torch
import xarray as xr

from landscape.cli import main
from landscape.read.dichotomy import cosine_crossover, fit, metric_jump, predicted_transition, transition_step, transitions
from landscape.tasks import make_task

SMALL = {"diag-sparse": {"d": 40, "n_test": 100}, "diag-misgrok": {"d": 40, "n_test": 100},
         "matrix-completion": {"d": 8}}
N = {"diag-sparse": 20, "diag-misgrok": 10, "matrix-completion": 30}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_models_are_2_homogeneous_with_zero_initial_output(name):
    task = make_task(name, SMALL[name])
    split = task.data(N[name])
    model = task.build_model()
    assert torch.count_nonzero(model(split.test_x)) == 0  # u = v, U = V: the symmetrized init
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
        before = model(split.test_x)
        for p in model.parameters():
            p.mul_(2.5)
        after = model(split.test_x)
    assert before.abs().max() > 0
    torch.testing.assert_close(after, 2.5 ** 2 * before, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_task_references_and_extras(name):
    task = make_task(name, SMALL[name])
    split = task.data(N[name])
    values = task.measure_extra_values(split)
    assert set(values) == set(task.extra_values)
    assert all(0 <= values[k] <= 1 for k in values if k.endswith("_err"))
    refs = task.references(split)
    assert task.references(task.data(N[name])) is refs  # solved once per training set
    model = task.build_model()
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
        curves = task.measure_extra_curves(model, split)
    assert set(curves) == set(task.extra_curves) and all(-1 <= v <= 1 for v in curves.values())


def test_diag_data_prefixes_and_labels():
    task = make_task("diag-sparse", {"d": 30, "k": 3, "n_test": 50})
    small, large = task.data(10), task.data(25)
    torch.testing.assert_close(small.train_x, large.train_x[:10])
    assert set(large.train_y.tolist()) <= {-1.0, 1.0}
    truth = torch.sign(large.train_x[:, :3] @ torch.as_tensor(task.teacher[:3], dtype=torch.float32))
    torch.testing.assert_close(large.train_y, truth)
    errors = task.errors(torch.tensor([2.0, -1.0, 0.0]), torch.tensor([1.0, 1.0, -1.0]))
    torch.testing.assert_close(errors, torch.tensor([0.0, 1.0, 0.5]))


def test_matrix_completion_split_covers_every_entry_once():
    task = make_task("matrix-completion", {"d": 7})
    split = task.data(10)
    flat = torch.cat([split.train_x, split.test_x]) @ torch.tensor([7, 1])
    assert sorted(flat.tolist()) == list(range(49))
    i, j = split.train_x.T
    torch.testing.assert_close(split.train_y, (i * j).float() / 49)


def test_transition_step_needs_the_kernel_side_first():
    steps = np.array([0, 1, 10, 100, 1000])
    to_kernel = np.array([[np.nan, 0.1, 0.1, 0.5, 0.9], [0.9, 0.9, 0.9, 0.9, 0.9]])
    to_rich = np.array([[np.nan, 0.9, 0.9, 0.3, 0.1], [0.1, 0.1, 0.1, 0.1, 0.1]])
    t = transition_step(steps, to_kernel, to_rich)
    assert t[0] == 100 and np.isnan(t[1])  # the second run is never on the kernel side
    assert cosine_crossover(steps, [np.nan, 0.99, 0.98, 0.5, 0.3], [np.nan, 0.3, 0.4, 0.6, 0.99]) == 100
    # Misgrokking: chance at step 0 (near the rich level), the kernel level once fitted, then down.
    assert metric_jump(steps, [0.5, 0.0, 0.0, 0.1, 0.4], 0.0, 0.45) == 1000
    assert np.isnan(metric_jump(steps, [0.5, 0.0, 0.0, 0.1, 0.2], 0.0, 0.45))
    # A catapult: cosines cross and cross back in the first steps; the transition is the last crossing.
    steps = np.array([0, 1, 2, 3, 10, 100, 1000, 2000])
    cos_kernel = [np.nan, 0.2, -0.01, 0.3, 0.5, 0.5, 0.3, np.nan]
    cos_rich = [np.nan, 0.0, 0.01, 0.1, 0.2, 0.3, 0.6, np.nan]  # NaN: the cell stopped
    assert cosine_crossover(steps, cos_kernel, cos_rich) == 1000


def test_predicted_transition_and_fit():
    assert predicted_transition(128.0, 0.01, 0.01) == pytest.approx(math.log(128) / 1e-4)
    assert math.isinf(predicted_transition(128.0, 0.01, 0.0))
    alpha, lr_wd = np.array([16.0, 64.0, 256.0]), np.array([1e-4, 2e-4, 4e-4])
    measured = np.log(alpha / 2.0) / lr_wd  # alpha_c = 2
    tr = xr.Dataset({"predicted": ("run", np.log(alpha) / lr_wd), "crossover": ("run", measured),
                     "lr_wd": ("run", lr_wd)})
    result = fit(tr, "crossover")
    assert result["alpha_c"] == pytest.approx(2.0) and result["runs"] == 3
    exact = fit(tr.assign(crossover=tr["predicted"]), "crossover")
    assert exact["slope"] == pytest.approx(1.0) and exact["alpha_c"] == pytest.approx(1.0)


def test_tiny_diag_sparse_run_end_to_end(tmp_path):
    out, figs = tmp_path / "diag.zarr", tmp_path / "figs"
    args = ["grid", "grids/diag-sparse.toml", "--out", str(out), "--quiet", "--jobs", "1",
            "--set", "task_options.d=100", "--set", "task_options.n_test=200", "--set", "axes.N=[30]",
            "--set", "axes.alpha=[8.0]", "--set", "axes.wd=[0.2]", "--set", "train.steps=1500",
            "--set", "eval.points=30"]
    assert main(args) == 0
    ds = xr.open_zarr(out).load()
    assert (ds["status"] == 1).all() and ds.attrs["w0"] == pytest.approx(1.0)
    cos_k, cos_r = ds["cos_kernel_curve"].values.ravel(), ds["cos_rich_curve"].values.ravel()
    assert np.isnan(cos_k[0]) and cos_k[1] > 0.8 > cos_r[1]  # w = 0 at init, then the kernel regime
    assert cos_r[-1] > cos_r[1]
    assert 0 <= ds["rich_test_err"].item() < ds["kernel_test_err"].item() <= 1
    assert "cosine" in ds["cos_kernel_curve"].attrs["long_name"]
    tr = transitions(ds)
    assert tr["predicted"].item() == pytest.approx(math.log(8) / (0.01 * 0.2))
    assert json.loads(ds.attrs["spec"])["train"]["optimizer"] == "sgd"
    assert main(["plot", str(out), "--out", str(figs), "--kind", "dichotomy", "--kind", "transition"]) == 0
    assert {p.name for p in figs.iterdir()} >= {"dichotomy.png", "transition.png"}


def test_transition_figure_keeps_alpha_1_runs_off_its_log_axes(monkeypatch):
    """alpha = 1 predicts t_g = 0: the log-log panel must not try to draw it (its limits broke)."""
    import plots.dichotomy as figure

    tr = xr.Dataset({"predicted": ("run", [0.0, 7675.0, 15351.0]), "crossover": ("run", [19692.0, 22634.0, 29905.0]),
                     "jump": ("run", [17132.0, 19692.0, 29905.0]), "lr_wd": ("run", [3e-4] * 3)})
    monkeypatch.setattr(figure, "transitions", lambda cube: tr)
    fig = figure.transition_figure(xr.Dataset(attrs={"task": "modular-mlp", "data_source": "test"}))
    left = fig.axes[0]
    lo, hi = left.get_xlim()
    assert 1e3 < lo < 7675 and 15351 < hi < 1e5, (lo, hi)
    assert any("right panel only" in t.get_text() for t in left.texts)
