"""Slices around every cell and the init-to-final interpolation (landscape.measures.slice_cells),
through grid runs: what the cube holds, how its attrs regenerate the directions, both backends alike."""
import copy

import numpy as np
import pytest
import torch

from landscape import cube
from landscape.measures.directions import direction_seed, directions
from landscape.measures.functional import constrained_mask, flat_params
from landscape.measures.slice_cells import INTERP_T, SliceMeasure
from landscape.measures.slices import evaluate, plane
from landscape.run.driver import run_grid
from landscape.spec import resolve
from landscape.train import evaluate as evaluate_cell
from landscape.train import init_cell, train_cell

POINTS, SPAN = 5, 0.5


def spec_of(kind: str, **train) -> dict:
    return {"task": "teacher-student", "axes": {"alpha": [1.0, 2.0], "N": [20], "seed": [0, 1]},
            "train": {"steps": 40, **train}, "eval": {"every": 20},
            "measure": {"slice": {"dims": 2, "points": POINTS, "span": SPAN, "directions": kind, "seed": 3},
                        "interpolation": kind == "filter"}}


@pytest.fixture(scope="module")
def cubes(tmp_path_factory, one_torch_thread):
    """The filter grid batched and per cell, and the sphere grid."""
    out = tmp_path_factory.mktemp("slices")
    runs = {"filter": spec_of("filter"), "per-cell": spec_of("filter", max_batch_cells=1), "sphere": spec_of("sphere")}
    for name, spec in runs.items():
        run_grid(spec, out / f"{name}.zarr", jobs=1, device="cpu", progress=False)
    return {name: cube.open_cube(out / f"{name}.zarr") for name in runs}


def test_the_cube_holds_slices_and_how_to_regenerate_them(cubes):
    ds = cubes["filter"]
    assert ds["slice_train_loss"].dims == ("w", "N", "seed", "slice_x", "slice_y")
    np.testing.assert_allclose(ds["slice_x"].values, np.linspace(-SPAN, SPAN, POINTS))
    assert ds["interp_test_err"].dims == ("w", "N", "seed", "interp")
    np.testing.assert_allclose(ds["interp"].values, INTERP_T)
    assert ds.attrs["slice_directions"] == "filter" and ds.attrs["slice_seed"] == 3
    assert "direction_seed" in ds.attrs["slice_seed_rule"] and "zeroed" in ds.attrs["slice_zeroed"]
    assert ds.attrs["slice_path"] == ds.attrs["interp_path"] == "linear-head"  # a Sequential starting with Linear
    assert ds.attrs["batched"] and not cubes["per-cell"].attrs["batched"]
    for name in ("slice_train_loss", "slice_test_loss", "slice_train_err", "slice_test_err"):
        assert np.isfinite(ds[name].values).all(), name


@pytest.mark.parametrize("kind", ["filter", "sphere"])
def test_the_slice_centre_is_the_cells_final_train_loss(cubes, kind):
    ds = cubes[kind]
    centre = ds["slice_train_loss"].isel(slice_x=POINTS // 2, slice_y=POINTS // 2)
    np.testing.assert_allclose(centre.values, ds["train_loss"].values, rtol=1e-5)
    np.testing.assert_allclose(ds["slice_test_err"].isel(slice_x=POINTS // 2, slice_y=POINTS // 2).values,
                               ds["test_err"].values)
    assert (ds["slice_train_loss"].max(("slice_x", "slice_y")) > centre).all()  # the directions move the point


def test_batched_and_per_cell_runs_slice_alike(cubes):
    for name in ("slice_train_loss", "slice_test_loss", "interp_train_loss", "interp_test_loss"):
        np.testing.assert_allclose(cubes["filter"][name].values, cubes["per-cell"][name].values, rtol=1e-4, err_msg=name)


def test_the_interpolation_runs_from_the_init_to_the_final_point(cubes):
    ds = cubes["filter"]
    spec = resolve(spec_of("filter"))
    task = spec.make_task()
    split = task.data(20)
    t0, t1 = list(INTERP_T).index(0.0), list(INTERP_T).index(1.0)
    np.testing.assert_allclose(ds["interp_train_loss"].isel(interp=t1).values, ds["train_loss"].values, rtol=1e-5)
    for i, w in enumerate(ds["w"].values):
        for j, seed in enumerate(ds["seed"].values):
            init, _ = init_cell(task, float(w), int(seed))
            loss, _ = evaluate_cell(task, init, split.train_x, split.train_y, torch.arange(len(split.train_y)))
            np.testing.assert_allclose(ds["interp_train_loss"].values[i, 0, j, t0], loss, rtol=1e-5)
            assert ds["train_loss"].values[i, 0, j] < loss  # training went down the line


class Keeping(SliceMeasure):
    """The slice measure, keeping a copy of the model it measured."""

    def __call__(self, model, at):
        self.model = copy.deepcopy(model)
        return super().__call__(model, at)


def test_sphere_points_regenerated_from_the_attrs_have_norm_w(cubes):
    ds = cubes["sphere"]
    spec = resolve(spec_of("sphere"))
    task = spec.make_task()
    split = task.data(20)
    w, seed = float(ds["w"].values[1]), int(ds["seed"].values[1])
    measure = Keeping(spec, task, spec.measure.slice)
    result = train_cell(task, split, w, seed, spec.train, spec.eval, measures=[measure])
    np.testing.assert_allclose(result.measures["slice_train_loss"], ds["slice_train_loss"].values[1, 0, 1], rtol=1e-4)
    # The rule the cube records: directions of its kind, seeded by direction_seed(slice seed, cell seed).
    model = measure.model.double()
    mask = constrained_mask(model, task.constrained_parameters(model))
    dirs = directions(ds.attrs["slice_directions"], model, direction_seed(ds.attrs["slice_seed"], seed), mask, 2)
    pts = plane(flat_params(model), dirs, POINTS, SPAN, "sphere", mask)
    norms = torch.linalg.vector_norm(pts.flat() * mask, dim=1)
    np.testing.assert_allclose(norms.numpy(), w, rtol=1e-6)
    loss, _, _ = evaluate(model, pts, split.train_x.double(), split.train_y.double(), task.loss, task.errors)
    np.testing.assert_allclose(loss.reshape(POINTS, POINTS).numpy(), result.measures["slice_train_loss"], rtol=1e-4)
