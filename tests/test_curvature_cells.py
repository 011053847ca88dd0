"""Curvature in every cell (landscape.measures.curvature_measure): a grid's cube holds the ambient and
reduced Hessian of every cell, equal to a dense Hessian of the cell's final model, the same in both
backends, as curves when measured at every eval, with the edge-of-stability threshold."""
import copy

import numpy as np
import pytest
import torch
from torch.func import functional_call

from landscape import cube
from landscape.measures.curvature_measure import DENSITY_GRID, density_on_grid
from landscape.measures.functional import flat_params, layout_of
from landscape.run.driver import run_grid
from landscape.spec import resolve
from landscape.models.mlp import mlp
from landscape.tasks.teacher_student import WIDTHS, TeacherStudent
from landscape.train import train_cell


class SmallStudent(TeacherStudent):
    """The teacher-student task with a 5-8-5 student (93 parameters), so that a dense Hessian of a
    cell takes milliseconds (the task's own 5-100-100-5 student has 11,205 parameters)."""

    name = "small-student"

    def build_model(self) -> torch.nn.Module:
        return mlp((WIDTHS[0], 8, WIDTHS[-1]), torch.nn.Tanh)


SPEC = {"task": "teacher-student", "axes": {"w": [2.0, 4.0], "N": [20, 40], "seed": [0]},
        "train": {"optimizer": "sgd", "lr": 0.05, "steps": 30, "dtype": "float64"}, "eval": {"every": 10},
        "measure": {"hessian_top": 2, "hessian_trace": True, "trace_probes": 16}}
pytestmark = pytest.mark.usefixtures("one_torch_thread")  # in-process training and measuring
NAMES = [f"hessian_{q}_{kind}" for q in ("top", "residual", "iterations", "trace") for kind in ("ambient", "reduced")]


def _spec(**changes):
    spec = copy.deepcopy(SPEC)
    for section, values in changes.items():
        spec[section] = {**spec[section], **values}
    return spec


def _grid(tmp_path, name, **changes):
    out = tmp_path / f"{name}.zarr"
    run_grid(_spec(**changes), out, task=SmallStudent, jobs=1, threads=1, progress=False)
    return cube.open_cube(out)


@pytest.fixture(scope="module")
def batched(tmp_path_factory):
    return _grid(tmp_path_factory.mktemp("curv"), "batched")


class FinalModel:
    """A measure that keeps a copy of the cell's final model and its data in the training dtype
    (to rerun a cell and get its weights)."""

    quantities = ()
    coords: dict = {}
    every_eval = False

    def __call__(self, model, at):
        self.model, self.split = copy.deepcopy(model), at.split
        return {}


def _final_model(spec_dict, w, n, seed):
    spec = resolve({**spec_dict, "task": SmallStudent})
    task = spec.make_task()
    keep = FinalModel()
    train_cell(task, task.data(n), w, seed, spec.cell_train({}, n), spec.eval, measures=[keep])
    return task, keep.split, keep.model


def _dense(task, split, model):
    """Dense ambient Hessian, and the reduced one projected by hand, at the model's parameters."""
    layout = layout_of(model)
    theta = flat_params(model)

    def loss(t):
        return task.loss(functional_call(model, layout.unflatten(t), (split.train_x,)), split.train_y)

    H = torch.autograd.functional.hessian(loss, theta)
    g = torch.autograd.functional.jacobian(loss, theta)
    w2 = theta @ theta  # teacher-student constrains all its parameters
    P = torch.eye(len(theta), dtype=theta.dtype) - torch.outer(theta, theta) / w2
    R = P @ (H - (theta @ g) / w2 * torch.eye(len(theta), dtype=theta.dtype)) @ P
    return torch.linalg.eigvalsh(H).flip(0), torch.linalg.eigvalsh(R).flip(0), H.trace(), R.trace()


def test_every_cell_holds_ambient_and_reduced_curvature(batched):
    for name in NAMES + ["hessian_trace_ambient_stderr", "hessian_trace_reduced_stderr", "stability_threshold"]:
        assert np.isfinite(batched[name].values).all(), name
    assert batched["hessian_top_ambient"].dims == ("w", "N", "seed", "eigen")
    assert list(batched["eigen"].values) == [0, 1]
    top = batched["hessian_top_ambient"].values
    assert (top[..., 0] >= top[..., 1]).all()  # largest first
    assert "reduced (Riemannian Hessian on the sphere" in batched["hessian_top_reduced"].attrs["long_name"]
    np.testing.assert_allclose(batched["stability_threshold"].values, 2 / 0.05)  # sgd: 2 / lr
    assert "adam_sharpness" not in batched


def test_stored_eigenvalues_equal_a_dense_hessian_of_the_final_model(batched):
    w, n = 4.0, 40
    task, split, model = _final_model(SPEC, w, n, 0)
    ambient, reduced, tr_ambient, tr_reduced = _dense(task, split, model)
    cell = batched.sel(w=w, N=n, seed=0)
    np.testing.assert_allclose(cell["hessian_top_ambient"].values, ambient[:2].numpy(), rtol=1e-4)
    np.testing.assert_allclose(cell["hessian_top_reduced"].values, reduced[:2].numpy(), rtol=1e-4)
    assert (cell["hessian_residual_ambient"].values < 1e-4 * abs(ambient[0].item())).all()
    for kind, dense in (("ambient", tr_ambient), ("reduced", tr_reduced)):
        err = float(cell[f"hessian_trace_{kind}_stderr"])
        assert abs(float(cell[f"hessian_trace_{kind}"]) - float(dense)) <= 3 * err + 1e-9, kind


def test_both_backends_measure_alike(batched, tmp_path):
    per_cell = _grid(tmp_path, "per_cell", train={"max_batch_cells": 1})
    for name in ("hessian_top_ambient", "hessian_top_reduced", "hessian_trace_ambient", "hessian_trace_reduced"):
        np.testing.assert_allclose(per_cell[name].values, batched[name].values, rtol=1e-4, err_msg=name)


def test_measured_at_every_eval_a_curve_ending_at_the_final_value(tmp_path):
    c = _grid(tmp_path, "curves", axes={"w": [2.0], "N": [20]}, measure={"every": "eval", "density": True})
    curve = c["hessian_top_reduced_curve"].values[0, 0, 0]  # eigen x step
    assert curve.shape == (2, len(c["step"])) and np.isfinite(curve).all()
    np.testing.assert_allclose(curve[:, -1], c["hessian_top_reduced"].values[0, 0, 0])
    density = c["hessian_density_ambient"].values[0, 0, 0]
    assert c["hessian_density_ambient"].dims[-1] == "eigenvalue"
    np.testing.assert_allclose(np.trapezoid(density, c["eigenvalue"].values), 1.0, rtol=1e-9)


def test_adamw_sharpness_and_its_threshold(tmp_path):
    c = _grid(tmp_path, "adamw", axes={"w": [2.0], "N": [20]},
              train={"optimizer": "adamw", "lr": 1e-2, "beta1": 0.9}, measure={"hessian_top": 1})
    assert np.isfinite(c["adam_sharpness"].values).all() and (c["adam_sharpness"].values > 0).all()
    np.testing.assert_allclose(c["stability_threshold"].values, 38 / 1e-2)


def test_density_integrates_to_one_with_outliers_off_the_grid():
    nodes = torch.tensor([[0.0, 1.0, 5e4, float("nan")]], dtype=torch.float64)
    weights = torch.tensor([[0.5, 0.3, 0.2, 0.0]], dtype=torch.float64)
    density = density_on_grid(nodes, weights)
    np.testing.assert_allclose(np.trapezoid(density, DENSITY_GRID), 1.0)
    assert DENSITY_GRID[np.argmax(density)] == pytest.approx(0.0, abs=1e-3)
