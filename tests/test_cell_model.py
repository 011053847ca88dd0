"""[store] params = true: each cell's final state_dict in the cube, bit for bit, and
landscape.cell_model rebuilding the cell's model from it (landscape.cube.params)."""
from __future__ import annotations

import shutil
from collections import namedtuple

import numpy as np
import pytest
import torch

import landscape
from landscape import UserError, open_cube, run_grid
from landscape.cli import main
from landscape.spec import resolve

GRID = {"task": "teacher-student", "axes": {"alpha": [1.0, 2.0], "N": [20, 40], "seed": [0]},
        "train": {"steps": 40}, "eval": {"every": 20}, "store": {"params": True}}


def grid(tmp_path, name, spec=GRID, **train):
    spec = {**spec, "train": {**spec["train"], **train}}
    out = tmp_path / f"{name}.zarr"
    run_grid(spec, out, jobs=1, device="cpu", progress=False)
    return open_cube(out, verify=True), out


@pytest.fixture(scope="module")
def cubes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("params")
    return {"batched": grid(tmp, "batched"), "per-cell": grid(tmp, "per-cell", max_batch_cells=1)}


def train_loss(ds, model, **cell):
    """The cell's train loss recomputed on its own data, as the engine evaluates it."""
    task = resolve(landscape.cube.stored_spec(ds)).make_task()
    split = task.data(cell[ds.attrs["axis"]])
    with torch.no_grad():
        pred = model(task.select(split.train_x, torch.arange(len(split.train_y))))
        return float(task.loss(pred, split.train_y))


@pytest.mark.parametrize("path", ["batched", "per-cell"])
def test_cell_model_reproduces_every_cells_train_loss(cubes, path):
    ds, out = cubes[path]
    assert ds.attrs["batched"] == int(path == "batched")
    assert ds["params"].dims == ("w", "N", "seed", "parameter") and ds["params"].dtype == np.float32
    assert "buffers" not in ds  # an MLP has none
    for i, w in enumerate(ds["w"].values):
        for j, n in enumerate(ds["N"].values):
            model = landscape.cell_model(out if i else ds, w=w, N=int(n), seed=0)  # a path or an open cube
            assert not model.training
            flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy()
            np.testing.assert_array_equal(flat, ds["params"].values[i, j, 0])  # the stored bits
            loss = train_loss(ds, model, N=int(n))
            np.testing.assert_allclose(loss, ds["train_loss"].values[i, j, 0], rtol=1e-6)
            np.testing.assert_allclose(float(flat.astype(float) @ flat.astype(float)) ** 0.5,
                                       ds["norm"].values[i, j, 0], rtol=1e-5)


def test_both_paths_store_the_same_cells(cubes):
    np.testing.assert_allclose(cubes["batched"][0]["params"].values, cubes["per-cell"][0]["params"].values,
                               rtol=1e-4, atol=1e-6)


def test_cells_are_named_by_their_coordinates(cubes):
    ds, _ = cubes["batched"]
    by_alpha = landscape.cell_model(ds, alpha=2.0, N=20)  # a dim of one value (seed) may be left out
    np.testing.assert_array_equal(next(by_alpha.parameters()).detach().numpy().reshape(-1),
                                  ds["params"].values[1, 0, 0][:next(by_alpha.parameters()).numel()])
    with pytest.raises(UserError, match=r"N = 30 is not in the cube \(values: 20, 40\)"):
        landscape.cell_model(ds, w=ds["w"].values[0], N=30)
    with pytest.raises(UserError, match="name the cell's N"):
        landscape.cell_model(ds, w=ds["w"].values[0])
    with pytest.raises(UserError, match="no dim 'lr'"):
        landscape.cell_model(ds, w=ds["w"].values[0], N=20, lr=0.1)


def test_a_batchnorm_model_round_trips_its_buffers(tmp_path):
    spec = {"task": "tests.outside_task:DropoutBatchNormTask", "axes": {"alpha": [1.0], "N": [60], "seed": [0]},
            "train": {"steps": 30, "batch_size": 20}, "eval": {"every": 10}, "store": {"params": True}}
    ds, out = grid(tmp_path, "bn", spec)
    model = landscape.cell_model(out, N=60)
    bn = model[1]
    assert int(bn.num_batches_tracked) == 30 and bn.num_batches_tracked.dtype == torch.int64
    assert ds["buffers"].dtype == np.float64 and ds["buffers"].dims[-1] == "buffer"
    state = landscape.cell_state(out, N=60)
    assert set(state) == set(model.state_dict())
    for name, value in model.state_dict().items():
        assert value.dtype == torch.from_numpy(state[name]).dtype, name
        np.testing.assert_array_equal(value.numpy(), state[name], err_msg=name)
    assert not np.allclose(bn.running_mean.numpy(), 0)  # the running statistics, not a fresh init
    np.testing.assert_allclose(train_loss(ds, model, N=60), ds["train_loss"].values[0, 0, 0], rtol=1e-6)


def test_a_damaged_params_chunk_is_found(tmp_path, capsys):
    _, out = grid(tmp_path, "damaged", {**GRID, "axes": {"alpha": [1.0, 2.0], "N": [20], "seed": [0]}})
    assert main(["info", str(out)]) == 0
    first, second = out / "params" / "0.0.0.0", out / "params" / "1.0.0.0"
    first.write_bytes(second.read_bytes())  # a valid chunk, of the other cell: only its checksum tells
    assert main(["info", str(out)]) != 0
    assert "cell w=8.746, N=20, seed=0 is damaged (values do not match its checksum)" in capsys.readouterr().err
    with pytest.raises(UserError, match="is damaged"):
        open_cube(out, verify=True)
    with pytest.raises(UserError, match=r"cell w=8\.746\d*, N=20, seed=0 is damaged \(values do not match its checksum\)"):
        landscape.cell_model(out, alpha=1.0)
    landscape.cell_model(out, alpha=2.0)  # the other cell is whole
    spec = {**GRID, "axes": {"alpha": [1.0, 2.0], "N": [20], "seed": [0]}}
    assert run_grid(spec, out, jobs=1, device="cpu", progress=False).ran == 1  # a resume recomputes the damaged cell
    repaired = open_cube(out, verify=True)
    first = landscape.cell_model(repaired, alpha=1.0)
    np.testing.assert_array_equal(torch.cat([p.detach().reshape(-1) for p in first.parameters()]).numpy(),
                                  repaired["params"].values[0, 0, 0])


def test_the_preflight_refuses_params_that_would_not_fit_on_the_disk(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 100, 100))
    out = tmp_path / "full.zarr"
    with pytest.raises(UserError, match=r"store.params = true would keep 0.2 MiB \(4 cells x \(11,205 params\) in "
                                        r"float32\), more than the 0.0 MiB free on the disk of "):
        run_grid(GRID, out, jobs=1, device="cpu", progress=False)
    assert not out.exists()


def test_without_store_params_the_cube_is_unchanged(tmp_path):
    ds, out = grid(tmp_path, "plain", {k: v for k, v in GRID.items() if k != "store"})
    assert "params" not in ds and "parameter" not in ds.dims and "params_layout" not in ds.attrs
    assert "store" not in landscape.cube.stored_spec(ds)
    with pytest.raises(UserError, match=r"holds no parameters: run its grid with \[store\] params = true"):
        landscape.cell_model(out, w=ds["w"].values[0], N=20)
