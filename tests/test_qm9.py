"""Task qm9: molecule graphs checked by hand, the graph cache, collation, the NNConv model, the task."""
import importlib.util

import numpy as np
import pytest
import torch
import xarray as xr

if importlib.util.find_spec("rdkit") is None or importlib.util.find_spec("qm9pack") is None:
    pytest.skip("needs the qm9 extra (rdkit, qm9pack): pip install -e '.[qm9]'", allow_module_level=True)

from landscape.data.cache import CACHE_ENV  # noqa: E402
from landscape.data import qm9 as qm9data  # noqa: E402
from landscape.data.graphs import GraphSet  # noqa: E402
from landscape.errors import UserError  # noqa: E402
from landscape.run.driver import run_grid  # noqa: E402
from landscape.models.graph import GraphRegressor  # noqa: E402
from landscape.tasks.qm9 import Qm9, Qm9Options  # noqa: E402

POOL = 40  # molecules in the test cache: the first 40 of QM9, built in well under a second
SINGLE, DOUBLE, TRIPLE, AROMATIC = range(4)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A cache file of the first POOL molecules where the task looks for it ($LANDSCAPE_CACHE)."""
    directory = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(directory))
        path = qm9data.cache_path()
        qm9data.save_molecules(qm9data.build_molecules(qm9data.read_rows(POOL)), path)
        yield path


def features(element, z, aromatic=0, hybrid=None, num_h=0):
    row = [0] * 11
    row["HCNOF".index(element)] = 1
    row[5], row[6], row[10] = z, aromatic, num_h
    if hybrid:
        row[{"sp": 7, "sp2": 8, "sp3": 9}[hybrid]] = 1
    return row


def test_first_rows_are_qm9_in_index_order():
    rows = list(qm9data.read_rows(3))
    assert [(r.index, r.smiles, r.n_atoms) for r in rows] == [(1, "C", 5), (2, "N", 4), (3, "O", 3)]
    assert rows[0].polarizability == pytest.approx(13.21)  # methane, bohr^3


def test_hydrogen_cyanide_by_hand():
    x, edge_index, bonds = qm9data.molecule_graph("C#N")  # atoms C0 N1 H2
    assert x.tolist() == [features("C", 6, hybrid="sp", num_h=1), features("N", 7, hybrid="sp"), features("H", 1)]
    assert edge_index.T.tolist() == [[0, 1], [0, 2], [1, 0], [2, 0]]
    assert bonds.tolist() == [TRIPLE, SINGLE, TRIPLE, SINGLE]


def test_methane_by_hand():
    x, edge_index, bonds = qm9data.molecule_graph("C")
    assert x.tolist() == [features("C", 6, hybrid="sp3", num_h=4)] + [features("H", 1)] * 4
    assert edge_index.shape == (2, 8) and bonds.tolist() == [SINGLE] * 8


def test_pyrrole_is_aromatic():
    x, edge_index, bonds = qm9data.molecule_graph("N1C=CC=C1")  # QM9 molecule 50: N0 C1..C4, then H5..H9
    assert x.tolist() == ([features("N", 7, 1, "sp2", 1)] + [features("C", 6, 1, "sp2", 1)] * 4
                          + [features("H", 1)] * 5)
    assert edge_index.shape == (2, 20)
    assert sorted(bonds.tolist()) == [SINGLE] * 10 + [AROMATIC] * 10
    ring = {tuple(e) for e, b in zip(edge_index.T.tolist(), bonds) if b == AROMATIC}
    assert ring == {(0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (1, 0), (2, 1), (3, 2), (4, 3), (0, 4)}


def test_built_graphs_match_atom_counts_and_skip_bad_rows():
    rows = list(qm9data.read_rows(POOL))
    bad = qm9data.Row(index=-1, smiles="C(C)(C)(C)(C)C", n_atoms=6, polarizability=0.0)  # pentavalent C
    molecules = qm9data.build_molecules(rows[:5] + [bad] + rows[5:])
    assert len(molecules) == POOL and molecules.skipped.tolist() == [-1]
    np.testing.assert_array_equal(np.diff(molecules.node_offsets), [r.n_atoms for r in rows])
    np.testing.assert_array_equal(molecules.qm9_index, [r.index for r in rows])
    # every bond twice, once each way, within its molecule
    for g in range(POOL):
        e = molecules.edge_index[:, molecules.edge_offsets[g] : molecules.edge_offsets[g + 1]].T.tolist()
        assert sorted(e) == sorted([j, i] for i, j in e)
        assert max(map(max, e)) < rows[g].n_atoms


def test_cache_round_trip(cache, tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(cache.parent))
    assert qm9data.cache_path() == cache
    assert "qm9pack1.0.3" in cache.name and f"-v{qm9data.FORMAT_VERSION}." in cache.name
    built = qm9data.build_molecules(qm9data.read_rows(POOL))
    loaded = qm9data.load_molecules(cache)
    for name in ("node_features", "edge_index", "bond_type", "node_offsets", "edge_offsets", "polarizability",
                 "qm9_index", "skipped"):
        a, b = getattr(built, name), getattr(loaded, name)
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)
    assert not list(cache.parent.glob(".*.tmp"))  # written atomically, nothing left behind


def test_select_collates_and_shifts_edges(cache):
    molecules = qm9data.load_molecules(cache)
    graphs = molecules.graphs(np.arange(10))
    assert isinstance(graphs, GraphSet) and len(graphs) == 10
    b = graphs.select(torch.tensor([3, 0]))  # C#C (4 atoms) then C (5 atoms)
    assert b.num_graphs == 2 and b.batch.tolist() == [0] * 4 + [1] * 5
    assert b.x[:, 5].tolist() == [6, 6, 1, 1, 6, 1, 1, 1, 1]
    assert b.edge_index.shape == (2, 6 + 8)
    assert b.edge_index[:, :6].max() == 3 and b.edge_index[:, 6:].min() == 4  # methane's nodes come after
    assert b.edge_attr.argmax(1).tolist() == [TRIPLE, SINGLE, TRIPLE, SINGLE, SINGLE, SINGLE] + [SINGLE] * 8
    whole = graphs.select(torch.arange(10))
    assert len(whole.x) == molecules.node_offsets[10]


def test_model_gives_one_number_per_graph(cache):
    graphs = qm9data.load_molecules(cache).graphs(np.arange(POOL))
    torch.manual_seed(0)
    model = GraphRegressor()
    out = model(graphs.select(torch.arange(7)))
    assert out.shape == (7, 1) and torch.isfinite(out).all()
    # graphs do not see each other: alone, a graph gets the same prediction
    alone = model(graphs.select(torch.tensor([3])))
    torch.testing.assert_close(alone[0], out[3])


def test_nnconv_matches_torch_geometric(cache):
    pyg = pytest.importorskip("torch_geometric.nn", reason="needs torch_geometric: pip install -e '.[pyg]'")
    graphs = qm9data.load_molecules(cache).graphs(np.arange(POOL))
    b = graphs.select(torch.arange(POOL))
    torch.manual_seed(0)
    model = GraphRegressor()
    h, reference = b.x, b.x
    for conv in (model.conv1, model.conv2):
        theirs = pyg.NNConv(conv.fan_in, conv.fan_out, torch.nn.Sequential(
            torch.nn.Linear(4, 32), torch.nn.ReLU(), torch.nn.Linear(32, conv.fan_in * conv.fan_out)))  # aggr "add"
        theirs.nn.load_state_dict(conv.edge_net.state_dict())
        theirs.lin.weight.data.copy_(conv.root.weight)
        theirs.bias.data.copy_(conv.bias)
        h = torch.relu(conv(h, b.edge_index, b.edge_attr))
        reference = torch.relu(theirs(reference, b.edge_index, b.edge_attr))
        torch.testing.assert_close(h, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(model(b), model.head(pyg.global_add_pool(reference, b.batch)), rtol=1e-5, atol=1e-4)


def test_task_splits_first_n_molecules(cache, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(cache.parent))
    task = Qm9(Qm9Options())
    assert task.pool_size == POOL and f"{POOL} molecules" in task.data_source and "bohr^3" in task.data_source
    split = task.data(11)
    assert len(split.train_x) == len(split.test_x) == 5 == task.train_size(11)
    polarizability = qm9data.load_molecules(cache).polarizability
    ys = sorted(split.train_y[:, 0].tolist() + split.test_y[:, 0].tolist())
    # 10 of the first 11 molecules, each once
    assert len(set(ys) & set(np.float32(polarizability[:11]).tolist())) == len(set(ys)) and len(ys) == 10
    batch = task.select(split.train_x, torch.arange(5))
    assert task.build_model()(batch).shape == split.train_y.shape
    other = Qm9(Qm9Options(split_seed=1)).data(11)
    assert not torch.equal(other.train_y, split.train_y)
    torch.testing.assert_close(task.data(11).train_y, split.train_y)  # fixed per seed


def test_errors_count_molecules_beyond_tolerance(cache, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(cache.parent))
    task = Qm9(Qm9Options(tolerance=1.0))
    pred, target = torch.tensor([[10.0], [10.5], [12.0]]), torch.tensor([[10.0], [10.0], [10.0]])
    assert task.errors(pred, target).tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("options, match", [
    ({"tolerance": 0.0}, "tolerance"), ({"tolerance": float("nan")}, "tolerance"),
    ({"tolerance": float("inf")}, "tolerance"), ({"split_seed": -1}, "split_seed"),
])
def test_bad_options_are_user_errors(options, match):
    with pytest.raises(UserError, match=match):
        Qm9Options(**options)


def test_bad_axis_values_are_user_errors(cache, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(cache.parent))
    task = Qm9(Qm9Options())
    with pytest.raises(UserError, match="need >= 2"):
        task.check_axis([1, 10])
    with pytest.raises(UserError, match="larger than"):
        task.check_axis([POOL + 1])
    with pytest.raises(UserError, match="data-dir"):
        Qm9(Qm9Options(), data_dir="/tmp")


TINY = {"task": "qm9", "axes": {"alpha": [0.5, 1.0, 2.0], "N": [10, 20], "seed": [0]},
        "train": {"optimizer": "adam", "lr": 1e-3, "batch_size": 4, "steps": 30}, "eval": {"every": 10}}


def test_tiny_grid_end_to_end(cache, tmp_path, monkeypatch, one_torch_thread):
    monkeypatch.setenv(CACHE_ENV, str(cache.parent))
    out = tmp_path / "qm9.zarr"
    assert run_grid(TINY, out, jobs=1, progress=False).ran == 6  # one job: in this process, which sees the cache
    ds = xr.open_zarr(out)
    assert (ds["status"] == 1).all() and (ds["steps"] == 30).all()
    assert not ds.attrs["batched"] and "vectorizable = False" in ds.attrs["batching"]
    assert "bohr^3" in ds.attrs["data_source"]
    assert ds.attrs["figure_metric"] == "loss" and ds.attrs["figure_levels"] == [1.0, 3.0, 10.0]
    np.testing.assert_allclose(ds["norm"].values, np.broadcast_to(ds["w"].values[:, None, None], ds["norm"].shape), rtol=1e-5)
    assert set(ds["layer"].values) == {"conv1", "conv2", "head"}
    first, last = ds["train_loss_curve"].isel(step=0), ds["train_loss_curve"].isel(step=-1)
    assert (last < first).all()  # 30 steps already pull the outputs towards ~20-40 bohr^3
