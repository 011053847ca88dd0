"""Tasks with a messiness axis m (toy-addition, mnist-repr), and the lr schedule / betas they need."""
import json

import numpy as np
import pytest
import torch
import xarray as xr

from landscape.cli import main
from landscape.errors import UserError
from landscape.spec import TrainConfig, EvalConfig, load_spec
from landscape.tasks import make_task
from landscape.tasks.mnist_repr import TEMPLATE_VALUES
from landscape.cube.schema import CURVES
from landscape.train import make_optimizer, make_scheduler, train_cell, train_cells

TOY = """
task = "toy-addition"
[axes]
alpha = [1.0, 3.0, 8.0]
m = [0.0, 0.1, 0.2]
[train]
optimizer = "adam"
lr = 1e-2
beta2 = 0.99
steps = 40
lr_decay_every = 15
lr_decay_factor = 0.2
[eval]
every = 20
"""

MNIST_REPR = """
task = "mnist-repr"
[task_options]
N = 60
[axes]
alpha = [0.5, 1.0, 3.0]
m = [0, 0.5, 1]
[train]
optimizer = "adamw"
batch_size = 30
steps = 20
[eval]
every = 10
"""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread, as in a grid worker; two on a busy 2-core machine stall each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write(tmp_path, text, name="spec.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text,fixed_n", [(TOY, 45), (MNIST_REPR, 60)])
def test_small_m_grid_end_to_end(tmp_path, capsys, text, fixed_n):
    out = str(tmp_path / "cube.zarr")
    assert main(["grid", write(tmp_path, text), "--out", out, "--jobs", "1", "--quiet"]) == 0
    ds = xr.open_zarr(out)
    assert ds["test_loss"].dims == ("w", "m", "seed") and ds.attrs["axis"] == "m"
    assert (ds["status"] == 1).all()
    assert ds.attrs["fixed_N"] == fixed_n
    assert json.loads(ds.attrs["spec"])["task_options"]["N"] == fixed_n
    assert np.isfinite(ds["train_loss"].values).all()
    capsys.readouterr()
    assert main(["info", out]) == 0
    assert f"N = {fixed_n}" in capsys.readouterr().out
    assert main(["plot", out, "--out", str(tmp_path / "figs")]) == 0
    assert (tmp_path / "figs" / "maps.png").stat().st_size > 0


@pytest.mark.parametrize("setting,message", [
    ("axes.m=[0.5, 1.5]", "not a messiness in [0, 1]"),
    ("task_options.N=56", "must be in [1, 55]"),
    ("task_options.variant=nope", "known: code, paper"),
    ("train.lr_decay_every=-1", "lr_decay_every"),
    ("train.lr_decay_factor=0.0", "lr_decay_factor"),
    ("train.beta2=1.0", "beta2"),
])
def test_bad_m_grid_input_is_one_line_exit_2(tmp_path, capsys, setting, message):
    out = tmp_path / "cube.zarr"
    assert main(["grid", write(tmp_path, TOY), "--out", str(out), "--quiet", "--set", setting]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_toy_addition_data():
    task = make_task("toy-addition", {})
    clean, messy = task.data(0.0), task.data(1.0)
    assert clean.train_x.shape == (45, 2) and clean.test_x.shape == (10, 2) and clean.train_y.shape == (45, 30)
    assert torch.equal(clean.train_y, messy.train_y)  # m moves the inputs only
    assert not torch.allclose(clean.train_x, messy.train_x)
    # the training set for N is a prefix of one permutation, as np.random.choice(55, N) in the notebook
    assert torch.equal(make_task("toy-addition", {"N": 25}).data(0.3).train_x, task.data(0.3).train_x[:25])
    whole = make_task("toy-addition", {"N": 55}).data(0.0)
    assert whole.test_x.shape == (55, 2)  # nothing held out: test on every pair
    # mod-10 labels: pairs with equal (i + j) % 10 share a template
    assert len(torch.unique(torch.cat([clean.train_y, clean.test_y]), dim=0)) == 10
    paper = make_task("toy-addition", {"variant": "paper"})
    assert paper.data(0.0).train_x.shape == (45, 1) and len(paper.templates) == 19
    model = task.build_model()
    assert model(clean.train_x).shape == (45, 30)
    assert task.errors(clean.train_y, clean.train_y).sum() == 0  # a template is its own nearest


def test_toy_addition_representation_is_linear_at_m0():
    """E_i + E_j at m = 0: the first latent coordinate is 2 (i + j) / 9 - 2."""
    task = make_task("toy-addition", {"N": 55})
    x = task.data(0.0).train_x
    i, j = np.triu_indices(10)
    order = task._train
    np.testing.assert_allclose(x[:, 0].numpy(), (2 * (i + j) / 9 - 2)[order], atol=1e-6)


def test_mnist_repr_interpolates_inputs():
    task = make_task("mnist-repr", {"N": 50})
    raw, clean, half = make_task("mnist", {}).data(50), task.data(0.0), task.data(0.5)
    assert torch.equal(task.data(1.0).train_x, raw.train_x)
    labels = raw.train_y.argmax(1)
    assert torch.allclose(clean.train_x, TEMPLATE_VALUES[labels][:, None].expand(-1, 784))
    assert torch.allclose(half.test_x, 0.5 * raw.test_x + 0.5 * TEMPLATE_VALUES[raw.test_y.argmax(1)][:, None])
    assert task.fixed == {"N": 50}
    with pytest.raises(UserError, match="task_options.N"):
        make_task("mnist-repr", {"N": 4001})


def test_step_decay_schedule_and_its_continuation():
    train = TrainConfig(optimizer="adam", lr=1.0, lr_decay_every=3, lr_decay_factor=0.5, beta1=0.8, beta2=0.9)

    def lrs(start, count):
        opt = make_optimizer(train, [torch.nn.Parameter(torch.zeros(2))])
        scheduler = make_scheduler(opt, train, start)
        seen = []
        for _ in range(count):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            scheduler.step()
        return seen, opt

    full, opt = lrs(0, 8)
    assert full == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]
    assert opt.param_groups[0]["betas"] == (0.8, 0.9)
    for start in range(1, 8):
        assert lrs(start, 8 - start)[0] == full[start:]
    assert make_scheduler(opt, TrainConfig()) is None


def test_vectorized_honours_step_decay_like_the_per_cell_loop(tmp_path):
    spec = load_spec(write(tmp_path, TOY))
    task = spec.make_task()
    split = task.data(0.1)
    ws = [5.0, 40.0]
    batch = train_cells(task, [split, split], ws, [0, 0], spec.train, spec.eval)
    for w, got in zip(ws, batch):
        ref = train_cell(task, split, w, 0, spec.train, spec.eval)
        np.testing.assert_allclose(got.curves[CURVES.index("train_loss")], ref.curves[CURVES.index("train_loss")],
                                   rtol=1e-2)
    # without the decay the runs differ: the schedule is really applied
    flat = train_cell(task, split, ws[1], 0, TrainConfig(optimizer="adam", lr=1e-2, beta2=0.99, steps=40),
                      EvalConfig(every=20))
    assert not np.isclose(flat.curves[0, -1], batch[1].curves[0, -1], rtol=1e-3)
