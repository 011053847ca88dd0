"""Slices around every cell and the init-to-final interpolation (landscape.measures.slice_cells),
through grid runs: what the cube holds, how its attrs regenerate the directions, both backends alike."""
import copy

import numpy as np
import pytest
import torch

from landscape import cube
from landscape.cli import main
from landscape.errors import UserError
from landscape.measures.directions import direction_seed, directions
from landscape.measures.functional import constrained_mask, flat_params
from landscape.measures.slice_cells import INTERP_T, SliceMeasure
from landscape.measures.slices import evaluate, plane, slice_path
from landscape.read.hdf5 import surface
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
def paths(tmp_path_factory, one_torch_thread):
    """The filter grid batched and per cell, and the sphere grid."""
    out = tmp_path_factory.mktemp("slices")
    runs = {"filter": spec_of("filter"), "per-cell": spec_of("filter", max_batch_cells=1), "sphere": spec_of("sphere")}
    for name, spec in runs.items():
        run_grid(spec, out / f"{name}.zarr", jobs=1, device="cpu", progress=False)
    return {name: out / f"{name}.zarr" for name in runs}


@pytest.fixture(scope="module")
def cubes(paths):
    return {name: cube.open_cube(path, verify=True) for name, path in paths.items()}


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


def test_the_hdf5_export_is_loss_landscapes_surface_file(paths, cubes, tmp_path, capsys):
    h5py = pytest.importorskip("h5py", reason="HDF5 export needs the h5 extra (pip install -e '.[h5]')")
    ds = cubes["sphere"]
    w = ds["w"].values[1]
    out = tmp_path / "slice.h5"
    assert main(["export", str(paths["sphere"]), "--cell", f"w={w},N=20,seed=1", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    cell = ds.isel(w=1, N=0, seed=1)
    with h5py.File(out, "r") as f:
        assert set(f) == {"xcoordinates", "ycoordinates", "train_loss", "train_acc", "test_loss", "test_acc"}
        np.testing.assert_array_equal(f["xcoordinates"][:], ds["slice_x"].values)
        np.testing.assert_array_equal(f["ycoordinates"][:], ds["slice_y"].values)
        for name, variable in (("train_loss", "slice_train_loss"), ("test_loss", "slice_test_loss")):
            assert f[name].shape == (POINTS, POINTS)
            # plot_surface.py's layout: rows along y (its points are enumerated by np.meshgrid(x, y)).
            np.testing.assert_array_equal(f[name][:], cell[variable].values.T)
        np.testing.assert_allclose(f["test_acc"][:], 100 * (1 - cell["slice_test_err"].values.T))
        assert f.attrs["slice_directions"] == "sphere" and f.attrs["cell"].endswith("N=20,seed=1")


@pytest.mark.parametrize("cell, message", [
    ("w=1e9,N=20,seed=0", "w=1e9 is not in the cube"),
    ("N=20,seed=0", "give w too"),
    ("x=1,seed=0", "'x=1' is not KEY=VALUE"),
])
def test_export_refuses_bad_cells_in_one_line(paths, tmp_path, capsys, cell, message):
    assert main(["export", str(paths["filter"]), "--cell", cell, "--out", str(tmp_path / "s.h5")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "s.h5").exists()


def test_export_needs_a_cube_with_slices(cubes):
    with pytest.raises(UserError, match="no slices"):
        surface(cubes["filter"].drop_vars([v for v in cubes["filter"] if v.startswith("slice_")]), "w=1")


class Branching(torch.nn.Module):
    """A model whose forward branches on its data: vmap cannot run it."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3, 2)

    def forward(self, x):
        out = self.layer(x)
        return out if bool(out.sum() > 0) else -out


@pytest.mark.parametrize("model, path", [
    (torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2)), "linear-head"),
    (torch.nn.Sequential(torch.nn.Tanh(), torch.nn.Linear(3, 2)), "vmap"),
    (Branching(), "loop"),
])
def test_the_path_is_known_before_evaluating_and_is_the_one_that_runs(model, path):
    x, y = torch.randn(6, 3), torch.randn(6, 2)
    assert slice_path(model, x) == path
    pts = plane(flat_params(model), directions("filter", model, 0, torch.ones(1), 1), 3)
    assert evaluate(model, pts, x, y, torch.nn.functional.mse_loss, lambda p, t: (p - t).abs().mean(1))[2] == path
