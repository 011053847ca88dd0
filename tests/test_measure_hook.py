"""The measurement hook (landscape.measures.hook): a measure declared once runs in both backends at
the evals it asks for, and its quantities reach the cube over their own dims, one chunk per cell."""
import json

import numpy as np
import pytest

from landscape import cube
from landscape.cube.schema import Quantity
from landscape.measures.hook import quantities_of
from landscape.spec import resolve
from landscape.train import train_cell, train_cells


class ParamNorms:
    """The norm of the model's first two parameter tensors, and the sum of Adam's second moments."""

    quantities = (Quantity("first_norms", "norms of the first two tensors", ("tensor",), curve=True),
                  Quantity("second_moment", "sum of Adam's exp_avg_sq"))
    coords = {"tensor": np.array(["w1", "b1"], dtype=object)}

    def __init__(self, every_eval: bool):
        self.every_eval = every_eval
        self.calls: list[tuple[int, bool]] = []

    def __call__(self, model, at):
        self.calls.append((at.step, at.final))
        tensors = list(model.parameters())[:2]
        moments = at.optimizer_state()
        return {"first_norms": np.array([float(t.detach().norm()) for t in tensors]),
                "second_moment": np.array(sum(float(s["exp_avg_sq"].sum()) for s in moments.values()))}


@pytest.fixture(scope="module")
def setup():
    spec = resolve({"task": "teacher-student", "axes": {"alpha": [1.0, 2.0], "N": [20]},
                    "train": {"steps": 40}, "eval": {"every": 10}})
    task = spec.make_task()
    return spec, task, task.data(20)


def test_both_backends_measure_alike_at_every_eval(setup):
    spec, task, split = setup
    alone = [train_cell(task, split, w, 0, spec.train, spec.eval, measures=[ParamNorms(True)]) for w in (1.0, 2.0)]
    batched = train_cells(task, [split, split], [1.0, 2.0], [0, 0], spec.train, spec.eval,
                          measures=[ParamNorms(True)])
    for a, b in zip(alone, batched):
        assert a.measure_curves["first_norms"].shape == (2, len(a.eval_steps))
        assert np.isfinite(a.measure_curves["first_norms"]).all()
        np.testing.assert_allclose(a.measure_curves["first_norms"], b.measure_curves["first_norms"], rtol=1e-5)
        np.testing.assert_allclose(a.measures["first_norms"], a.measure_curves["first_norms"][:, -1])
        np.testing.assert_allclose(a.measures["second_moment"], b.measures["second_moment"], rtol=1e-5)
        assert a.measures["second_moment"] > 0  # the optimizer state reached the measure


def test_a_measure_at_the_end_runs_once_per_cell(setup):
    spec, task, split = setup
    m = ParamNorms(False)
    train_cells(task, [split, split], [1.0, 2.0], [0, 0], spec.train, spec.eval, measures=[m])
    assert m.calls == [(40, True), (40, True)]


def test_quantities_reach_the_cube_over_their_own_dims(setup, tmp_path):
    spec, task, split = setup
    measure = ParamNorms(True)
    result = train_cell(task, split, 1.0, 0, spec.train, spec.eval, measures=[measure])
    quantities, coords = quantities_of([measure])
    steps = result.eval_steps
    ds = cube.template(dims=("w", "N", "seed"), coords={"w": [1.0, 2.0], "N": [20], "seed": [0]}, axis="N",
                       axis_long_name="N", w0=1.0, steps=steps, attrs=cube.standard_attrs("t", "{}", "synthetic"),
                       layers=list(task.parameter_groups(task.build_model())), quantities=quantities, measure_coords=coords)
    out = tmp_path / "c.zarr"
    cube.create(out, ds)
    cube.write_cell(out, ("w", "N", "seed"), (1, 0, 0), result, steps, {"t_fit": np.nan, "t_gen": np.nan})
    back = cube.open_cube(out)
    assert back["first_norms"].dims == ("w", "N", "seed", "tensor")
    assert back["first_norms_curve"].dims == ("w", "N", "seed", "tensor", "step")
    assert list(back["tensor"].values) == ["w1", "b1"]
    np.testing.assert_allclose(back["first_norms"].values[1, 0, 0], result.measures["first_norms"])
    assert np.isnan(back["first_norms"].values[0, 0, 0]).all()  # the pending cell
    assert json.loads((out / "first_norms" / ".zarray").read_text())["chunks"] == [1, 1, 1, 2]


def test_names_of_two_measures_must_not_clash():
    with pytest.raises(ValueError, match="same cube variable"):
        quantities_of([ParamNorms(True), ParamNorms(False)])
