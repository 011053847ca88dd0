"""The grokking interventions in the engine (``train.loss``, ``train.orthograd``, ``train.grokfast``):
each gives the same curves per cell and stacked, also when cells leave the batch early; lamb 0 is
the baseline bit for bit; each sweeps as an axis into one cube; bad values are refused in one line.
The wrappers and the loss themselves are tested in test_interventions.py."""
import dataclasses

import numpy as np
import pytest
import torch
import xarray as xr

from landscape.cli import main
from landscape.cube.schema import CURVES
from landscape.errors import UserError
from landscape.interventions.stablemax import stablemax_cross_entropy
from landscape.measures.hook import MeasurePoint
from landscape.measures.progress_hook import ProgressMeasures
from landscape.measures.progress_measures import classification_measures
from landscape.run.driver import run_grid
from landscape.spec import EvalConfig, TrainConfig, resolve
from landscape.tasks import make_task
from landscape.train import train_cell, train_cells
from landscape.train.objective import objective

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = {"p": 7, "d_model": 8, "n_heads": 2, "d_head": 4, "d_mlp": 16}
BASE = TrainConfig(optimizer="adamw", lr=1e-2, steps=30, constrain_norm=False)
SPEC = {"task": "modular-addition", "task_options": TINY, "axes": {"alpha": [1.0, 2.0], "N": [30]},
        "train": {"steps": 20, "optimizer": "adamw", "lr": 1e-2, "constrain_norm": False}, "eval": {"every": 10}}
INTERVENTIONS = {
    "grokfast": {"grokfast_alpha": 0.9, "grokfast_lamb": 2.0},
    "orthograd": {"orthograd": True},
    "stablemax": {"loss": "stablemax"},
    "all, on the sphere": {"grokfast_lamb": 2.0, "orthograd": True, "loss": "stablemax", "constrain_norm": True},
}
TRAIN_LOSS = CURVES.index("train_loss")


@pytest.fixture(scope="module")
def modular():
    task = make_task("modular-addition", TINY)
    return task, task.data(30)


def close(a, b):
    np.testing.assert_allclose(a.curves, b.curves, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", INTERVENTIONS)
def test_per_cell_and_stacked_give_the_same_curves(modular, name):
    task, split = modular
    train = dataclasses.replace(BASE, **INTERVENTIONS[name])
    evalc = EvalConfig(every=10)
    together = train_cells(task, [split, split], [1.0, 2.0], [0, 0], train, evalc)
    baseline = train_cell(task, split, 1.0, 0, BASE, evalc)
    for w, stacked in zip((1.0, 2.0), together):
        close(train_cell(task, split, w, 0, train, evalc), stacked)
    assert not np.allclose(together[0].curves[TRAIN_LOSS, 1:], baseline.curves[TRAIN_LOSS, 1:])  # it does something


def test_grokfast_state_survives_cells_leaving_the_batch(modular):
    """One cell meets stop_loss early; the other's EMA (and Adam's moments) must carry over."""
    task, split = modular
    evalc = EvalConfig(every=5)
    train = dataclasses.replace(BASE, **INTERVENTIONS["grokfast"], orthograd=True)
    ws = (3.0, 0.5)
    free = [train_cell(task, split, w, 0, train, evalc) for w in ws]
    # Stop where the first cell is at step 10, above anything the second ever reaches.
    level = float(free[0].curves[TRAIN_LOSS, 2]) * (1 + 1e-6)
    assert (free[0].curves[TRAIN_LOSS, :2] > level).all() and (free[1].curves[TRAIN_LOSS] > level).all()
    stopping = dataclasses.replace(train, stop_loss=level)
    together = train_cells(task, [split, split], list(ws), [0, 0], stopping, evalc)
    alone = [train_cell(task, split, w, 0, stopping, evalc) for w in ws]
    assert together[0].steps == alone[0].steps == 10 and together[1].steps == train.steps
    for a, b in zip(alone, together):
        assert a.steps == b.steps
        close(a, b)


def test_lamb_zero_is_the_baseline_bit_for_bit(modular):
    task, split = modular
    evalc = EvalConfig(every=10)
    off = dataclasses.replace(BASE, grokfast_alpha=0.5, grokfast_lamb=0.0)
    for run in (lambda t: train_cell(task, split, 1.0, 0, t, evalc),
                lambda t: train_cells(task, [split, split], [1.0, 2.0], [0, 0], t, evalc)[1]):
        np.testing.assert_array_equal(run(off).curves, run(BASE).curves)


def test_axes_sweep_the_interventions_into_one_cube(tmp_path):
    one = {**SPEC, "axes": {**SPEC["axes"], "alpha": [1.0]}, "train": {**SPEC["train"], "grokfast": {"alpha": 0.9}}}
    spec = {**one, "axes": {**one["axes"], "grokfast": [0, 2], "loss": ["task", "stablemax"], "orthograd": [False, True]}}
    resolved = resolve(spec)
    assert resolved.cell_dims == ("w", "N", "loss", "orthograd", "grokfast", "seed")  # TRAIN_AXES order
    assert resolve(resolved.to_dict()) == resolved
    out = tmp_path / "c.zarr"
    run_grid(spec, out, jobs=1, progress=False)
    base = tmp_path / "base.zarr"
    run_grid(one, base, jobs=1, progress=False)
    with xr.open_zarr(out) as ds, xr.open_zarr(base) as ref:
        assert list(ds["grokfast"].values) == [0.0, 2.0]
        assert list(ds["loss"].values) == ["task", "stablemax"]
        assert list(ds["orthograd"].values) == [False, True]
        curve = ds["train_loss_curve"]
        assert np.isfinite(curve.values).all()
        baseline = curve.sel(grokfast=0.0, loss="task", orthograd=False)
        # The baseline's own cube of one cell trains per cell, the 8 cells' cube stacked: equal to rounding.
        np.testing.assert_allclose(baseline.values, ref["train_loss_curve"].values, rtol=1e-5)
        for other in (dict(grokfast=2.0, loss="task", orthograd=False), dict(grokfast=0.0, loss="stablemax", orthograd=False),
                      dict(grokfast=0.0, loss="task", orthograd=True)):
            assert not np.allclose(curve.sel(**other).values[..., 1:], baseline.values[..., 1:]), other
    assert main(["info", str(out)]) == 0
    assert main(["plot", str(out), "--out", str(tmp_path / "figures")]) == 0


def test_default_spec_stores_no_intervention_keys():
    train = resolve(SPEC).to_dict()["train"]
    assert not {"loss", "orthograd", "grokfast_alpha", "grokfast_lamb"} & set(train)
    table = resolve({**SPEC, "train": {**SPEC["train"], "grokfast": {"alpha": 0.9, "lamb": 2}}})
    assert (table.train.grokfast_alpha, table.train.grokfast_lamb) == (0.9, 2)
    assert resolve(table.to_dict()) == table


@pytest.mark.parametrize("change, message", [
    ({"train": {"grokfast": {"alpha": 1.5}}}, "train.grokfast.alpha = 1.5"),
    ({"train": {"grokfast": {"lamb": -1}}}, "train.grokfast.lamb = -1"),
    ({"train": {"grokfast": {"lam": 1}}}, "train.grokfast = "),
    ({"train": {"grokfast": 2}}, "train.grokfast = 2"),
    ({"train": {"orthograd": 3}}, "train.orthograd = 3"),
    ({"train": {"loss": "hinge"}}, "train.loss = 'hinge'"),
    ({"axes": {"grokfast": [0, -1]}}, "axes.grokfast: -1.0"),
    ({"axes": {"loss": ["task", "mse"]}}, "axes.loss: 'mse'"),
    ({"axes": {"orthograd": [0, 1]}}, "axes.orthograd: 0"),
])
def test_bad_values_are_refused_in_one_line(change, message):
    spec = {**SPEC, "train": {**SPEC["train"], **change.get("train", {})}, "axes": {**SPEC["axes"], **change.get("axes", {})}}
    with pytest.raises(UserError, match="^" + message.replace("(", r"\(").replace(".", r"\.")) as e:
        resolve(spec)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("where", [{"train": {"loss": "stablemax"}}, {"axes": {"loss": ["task", "stablemax"]}}])
def test_stablemax_needs_a_softmax_classifier(tmp_path, where):
    spec = {"task": "teacher-student", "axes": {"alpha": [1.0], "N": [20], **where.get("axes", {})},
            "train": {"steps": 5, **where.get("train", {})}}
    out = tmp_path / "c.zarr"
    with pytest.raises(UserError, match="^train.loss = 'stablemax' needs a softmax classifier") as e:
        run_grid(spec, out, jobs=1, progress=False)
    assert "\n" not in str(e.value) and not out.exists()


def test_objective_and_progress_measures_follow_train_loss(modular):
    task, split = modular
    torch.manual_seed(0)
    model = task.build_model().eval()
    train = TrainConfig(loss="stablemax")
    pred = model(split.train_x)
    torch.testing.assert_close(objective(task, train)(pred, split.train_y), stablemax_cross_entropy(pred, split.train_y))
    assert objective(task, TrainConfig()) == task.loss
    at = MeasurePoint(task, split, 1.0, 0, 0, True, train, torch.device("cpu"), dict)
    got = ProgressMeasures(task, 0)(model, at)
    want = classification_measures(model, split.train_x, split.train_y, ["nlm_cosine"], torch.float32, "stablemax")
    np.testing.assert_allclose(got["nlm_cosine"], want["nlm_cosine"], rtol=1e-6)
    ce = classification_measures(model, split.train_x, split.train_y, ["nlm_cosine"], torch.float32, "cross_entropy")
    assert ce["nlm_cosine"] != want["nlm_cosine"]
