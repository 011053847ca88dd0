"""The progress measures in every cell (``[measure] progress``, landscape.measures.progress_hook): what
a task declares reaches the cube over the declared dims, the same in both backends; the functions
themselves are tested in test_progress_measures.py."""
import numpy as np
import pytest
import torch
import xarray as xr

from landscape.errors import UserError
from landscape.measures.hook import MeasurePoint
from landscape.measures.progress_hook import ProgressMeasures, check_declarations
from landscape.measures.progress_measures import excluded_logits, restricted_logits
from landscape.measures.suite import cell_measures
from landscape.run.driver import run_grid
from landscape.spec import TrainConfig, resolve
from landscape.tasks import make_task
from landscape.tasks.modular_mlp import ModularMlp
from landscape.train import train_cell, train_cells

TINY = {"p": 7, "d_model": 8, "n_heads": 2, "d_head": 4, "d_mlp": 16}
SPEC = {"task": "modular-addition", "task_options": TINY, "axes": {"alpha": [1.0, 2.0], "N": [30]},
        "train": {"steps": 20, "optimizer": "adamw", "lr": 1e-2, "constrain_norm": False}, "eval": {"every": 10},
        "measure": {"progress": True}}


def point(task, split, dtype="float32", step=0):
    return MeasurePoint(task, split, 1.0, 0, step, True, TrainConfig(dtype=dtype), torch.device("cpu"), dict)


def test_off_unless_asked_for():
    spec = resolve({**SPEC, "measure": {}})
    assert cell_measures(spec, spec.make_task()) == []


def test_both_backends_record_the_same_measures():
    spec = resolve(SPEC)
    task = spec.make_task()
    split = task.data(30)
    torch.set_num_threads(1)
    alone = [train_cell(task, split, w, 0, spec.train, spec.eval, measures=cell_measures(spec, task)) for w in (1.0, 2.0)]
    together = train_cells(task, [split, split], [1.0, 2.0], [0, 0], spec.train, spec.eval,
                           measures=cell_measures(spec, task))
    names = [q.name for q in cell_measures(spec, task)[0].quantities]
    assert set(alone[0].measure_curves) == set(names)
    for a, b in zip(alone, together):
        for name in names:
            assert np.isfinite(a.measure_curves[name]).all(), name
            np.testing.assert_allclose(a.measure_curves[name], b.measure_curves[name], rtol=1e-4, atol=1e-6, err_msg=name)
            np.testing.assert_array_equal(a.measures[name], a.measure_curves[name][..., -1])


def test_fourier_measures_of_a_model_add_up():
    task = make_task("modular-addition", TINY)
    measure = ProgressMeasures(task, 0)
    assert list(measure.coords["frequency"]) == [1, 2, 3] and list(measure.coords["key"]) == [1]
    torch.manual_seed(0)
    model = task.build_model().eval()
    split = task.data(30)
    got = measure(model, point(task, split))
    grid = task.fourier_grid(30)
    assert (grid.labels == (grid.inputs[:, 0] + grid.inputs[:, 1]) % 7).all()  # the a-major grid
    assert sorted(grid.train_rows.tolist()) == sorted((split.train_x[:, 0] * 7 + split.train_x[:, 1]).tolist())
    logits = model(grid.inputs).detach().double()[:, :7]
    freqs = got["key_frequencies"].astype(int).tolist()
    assert freqs == [int(np.argmax(got["fourier_power"])) + 1]
    np.testing.assert_allclose(restricted_logits(logits, 7, freqs) + excluded_logits(logits, 7, freqs), logits)
    excluded = excluded_logits(logits, 7, freqs)[grid.train_rows]
    expected = torch.nn.functional.cross_entropy(excluded, grid.labels[grid.train_rows])
    np.testing.assert_allclose(got["excluded_loss"], float(expected), rtol=1e-10)


def test_collapse_counts_in_the_training_dtype():
    """Scaled up 2^deg-fold by a homogeneous model, logits round p_y to 1 in float32 before float64."""
    task = make_task("modular-mlp", {"p": 7, "width": 16})
    measure = ProgressMeasures(task, 0)
    torch.manual_seed(0)
    model = task.build_model()
    torch.nn.init.normal_(model.output.weight)
    split = task.data(40)
    base = measure(model, point(task, split))
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(12.0)
    single = measure(model, point(task, split))
    double = measure(model.double(), point(task, type(split)(*(t.double() if t.is_floating_point() else t for t in
                                                               (split.train_x, split.train_y, split.test_x, split.test_y))),
                                             "float64"))
    assert single["softmax_collapse"] > double["softmax_collapse"]
    assert single["zero_loss"] >= double["zero_loss"]
    # Homogeneous of degree 2: scaling theta leaves the normalized margin as it was.
    np.testing.assert_allclose(single["normalized_margin"], base["normalized_margin"], rtol=1e-4)


def test_a_declaration_the_task_cannot_have_is_refused():
    class NotHomogeneous(ModularMlp):
        homogeneity_degree = None

    with pytest.raises(UserError, match="homogeneity_degree"):
        check_declarations(NotHomogeneous(NotHomogeneous.Options(p=7, width=4)))

    class Margins(ModularMlp):
        progress_measures = ("margin",)

    with pytest.raises(UserError, match="extra_curves"):
        check_declarations(Margins(Margins.Options(p=7, width=4)))


@pytest.mark.parametrize("task, options, expected", [
    ("modular-addition", TINY, {"softmax_collapse", "min_margin", "restricted_loss"}),
    ("modular-mlp", {"p": 7, "width": 16}, {"softmax_collapse", "normalized_margin", "excluded_loss"})])
def test_landscape_cells_end_with_their_measures_in_the_cube(tmp_path, task, options, expected):
    spec = {**SPEC, "task": task, "task_options": options, "axes": {"alpha": [0.5, 1.0], "N": [20, 30], "seed": [0]}}
    out = tmp_path / "c.zarr"
    run_grid(spec, out, jobs=1, progress=False)
    with xr.open_zarr(out) as ds:
        for name in expected:
            assert ds[name].dims == ("w", "N", "seed"), name
            assert ds[f"{name}_curve"].dims == ("w", "N", "seed", "step"), name
            assert np.isfinite(ds[name].values).all(), name
        assert ds["effective_rank"].dims == ("w", "N", "seed", "weight")
        assert ds["fourier_power"].dims == ("w", "N", "seed", "frequency")
        assert ds["key_frequencies_curve"].dims == ("w", "N", "seed", "key", "step")
        assert list(ds["frequency"].values) == [1, 2, 3]
        assert set(ds["key_frequencies"].values.ravel()) <= {1, 2, 3}
