"""The vectorized trainer: a cell's result is its own, whatever batch it trains in."""
import dataclasses

import numpy as np
import pytest
import torch

from landscape.run.plan import AUTO_BATCH_CELLS, all_cells, cell_batch_size, plan_cell_batches, schedules
from landscape.run.worker import train_cell_batch
from landscape.train.probe import BackendChoice
from landscape.spec import EvalConfig, TrainConfig, load_spec
from landscape.tasks import make_task
from landscape.cube.schema import CURVES, STATUS_DIVERGED, STATUS_DONE
from landscape.train import BatchOrder, minibatches, train_cell, train_cells

TRAIN_LOSS, TEST_LOSS, NORM = CURVES.index("train_loss"), CURVES.index("test_loss"), CURVES.index("norm")
MNIST_TRAIN = TrainConfig(optimizer="adamw", lr=1e-3, batch_size=50, steps=30)
MNIST_EVAL = EvalConfig(every=10, samples=200)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def mnist():
    return make_task("mnist", {})


@pytest.fixture(scope="module")
def batch16(mnist, one_torch_thread):
    """16 MNIST cells with two training-set sizes, four norms and two seeds, trained together."""
    splits = {n: mnist.data(n) for n in (100, 300)}
    cells = [(n, w, s) for n in (100, 300) for w in (3.0, 8.0, 20.0, 60.0) for s in (0, 1)]
    results = train_cells(mnist, [splits[n] for n, _, _ in cells], [w for _, w, _ in cells],
                          [s for _, _, s in cells], MNIST_TRAIN, MNIST_EVAL)
    return splits, cells, results


def finals(result, rows=(TRAIN_LOSS, TEST_LOSS)):
    return result.curves[list(rows), -1]


def test_batch_order_matches_minibatches():
    steps = iter(minibatches(23, 5, torch.Generator().manual_seed(3)))
    order = BatchOrder(23, 5, torch.Generator().manual_seed(3))
    taken = torch.cat([order.take(k) for k in (1, 7, 2, 13, 4)])
    assert taken.shape == (27, 5)
    for row in taken:
        assert torch.equal(row, next(steps))


def test_cell_alone_matches_cell_in_a_batch_of_16(mnist, batch16):
    splits, cells, results = batch16
    for i in (0, 5, 10, 15):
        n, w, s = cells[i]
        alone = train_cells(mnist, [splits[n]], [w], [s], MNIST_TRAIN, MNIST_EVAL)[0]
        np.testing.assert_allclose(finals(alone), finals(results[i]), rtol=1e-4, err_msg=str(cells[i]))
        assert alone.steps == results[i].steps == MNIST_TRAIN.steps


def test_vectorized_matches_per_cell_training(mnist, batch16):
    splits, cells, results = batch16
    for i in (1, 6, 9, 14):
        n, w, s = cells[i]
        ref = train_cell(mnist, splits[n], w, s, MNIST_TRAIN, MNIST_EVAL)
        # Same init and batch order; only float summation order differs (bmm vs addmm), so the
        # step-0 evals agree to float precision and the trajectories stay close.
        np.testing.assert_allclose(results[i].curves[:, 0], ref.curves[:, 0], rtol=1e-5)
        np.testing.assert_allclose(finals(results[i]), finals(ref), rtol=1e-2, err_msg=str(cells[i]))
        assert abs(results[i].curves[CURVES.index("test_err"), -1] - ref.curves[CURVES.index("test_err"), -1]) <= 0.01


def test_each_cell_keeps_its_own_norm(batch16):
    _, cells, results = batch16
    for (_, w, _), r in zip(cells, results):
        assert r.status == STATUS_DONE
        np.testing.assert_allclose(r.norm, w, rtol=1e-5)
        np.testing.assert_allclose(r.curves[NORM], w, rtol=1e-5)


def test_divergence_stays_in_its_cell():
    task = make_task("teacher-student", {})
    train, evalc = TrainConfig(optimizer="adam", lr=1e-3, steps=40), EvalConfig(every=20)
    split = task.data(30)
    ws = [2.0, 1e20, 5.0]
    results = train_cells(task, [split] * 3, ws, [0] * 3, train, evalc)
    assert [r.status for r in results] == [STATUS_DONE, STATUS_DIVERGED, STATUS_DONE]
    assert results[1].steps == 0 and np.isnan(results[1].curves[TRAIN_LOSS, 1:]).all()
    for i in (0, 2):
        alone = train_cells(task, [split], [ws[i]], [0], train, evalc)[0]
        np.testing.assert_allclose(finals(results[i]), finals(alone), rtol=1e-4)


def test_unconstrained_weight_decay_matches_per_cell():
    """Dynamics settings: no projection, decoupled weight decay; the norm moves as per cell."""
    task = make_task("teacher-student", {})
    train = TrainConfig(optimizer="adamw", lr=1e-3, weight_decay=1.0, steps=40, constrain_norm=False)
    evalc = EvalConfig(every=20)
    splits = [task.data(20), task.data(40)]  # full batch, different N: one batch per N
    for split in splits:
        vec = train_cells(task, [split, split], [3.0, 9.0], [0, 1], train, evalc)
        for r, (w, s) in zip(vec, [(3.0, 0), (9.0, 1)]):
            ref = train_cell(task, split, w, s, train, evalc)
            np.testing.assert_allclose(r.curves, ref.curves, rtol=1e-4)
            np.testing.assert_allclose(r.norm, ref.norm, rtol=1e-5)
            assert abs(r.norm - w) > 1e-3 * w  # free to move


def test_cells_with_different_rows_per_step_are_refused(mnist):
    with pytest.raises(ValueError, match="rows per step"):
        train_cells(mnist, [mnist.data(30), mnist.data(200)], [5.0, 5.0], [0, 0], MNIST_TRAIN, MNIST_EVAL)


def test_plan_cell_batches_groups_configs_and_caps_size(tiny_spec):
    spec = load_spec(tiny_spec, ["axes.alpha=[0.5, 1.0, 2.0, 4.0]", "axes.N=[20, 40, 80]", "axes.lr=[1e-3, 1e-2]"])
    task = spec.make_task()
    cells = all_cells(spec, [1.0, 2.0, 3.0, 4.0], (4, 3, 2, 1))
    steps_of = schedules(spec, task)
    batches = plan_cell_batches(spec, cells, 5, False, steps_of)
    assert sorted(c.index for b in batches for c in b) == sorted(c.index for c in cells)
    for b in batches:
        assert 1 <= len(b) <= 5
        assert len({c.settings["lr"] for c in b}) == 1  # one training config per batch
        values = [c.value for c in b]
        assert values == sorted(values)  # ordered by the task's axis: few data sets per batch
    assert plan_cell_batches(spec, cells, 1, False, steps_of) == [[c] for c in cells]
    stacked = BackendChoice(True, "probe")
    assert cell_batch_size(spec, stacked, len(cells), "cpu") == min(AUTO_BATCH_CELLS["cpu"], 3)
    capped = dataclasses.replace(spec, train=dataclasses.replace(spec.train, max_batch_cells=2))
    assert cell_batch_size(capped, stacked, len(cells), "cpu") == 2
    assert cell_batch_size(spec, BackendChoice(False, "no"), len(cells), "cpu") == 1


def test_random_models_batch_one_seed_at_a_time(tiny_spec):
    spec = load_spec(tiny_spec, ["axes.seed=[0, 1]"])
    cells = all_cells(spec, [1.0, 2.0, 3.0], (3, 2, 2))
    steps_of = schedules(spec, spec.make_task())
    assert any(len({c.seed for c in b}) > 1 for b in plan_cell_batches(spec, cells, 12, False, steps_of))
    assert all(len({c.seed for c in b}) == 1 for b in plan_cell_batches(spec, cells, 12, True, steps_of))


def test_per_cell_plan_never_calls_the_batched_trainer(tiny_spec, monkeypatch):
    spec = load_spec(tiny_spec)
    cells = all_cells(spec, [1.0, 2.0, 3.0], (3, 2, 1))

    def refuse(*args, **kwargs):
        raise AssertionError("train_cells called on the per-cell path")

    monkeypatch.setattr("landscape.run.worker.train_cells", refuse)
    out = train_cell_batch(spec.task, spec.to_dict(), None, cells[:2], 1, stacked=False)
    assert [c for c, _ in out] == cells[:2] and all(r.status == STATUS_DONE for _, r in out)
