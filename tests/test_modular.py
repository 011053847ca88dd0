"""The modular-addition tasks: the transformer, the pairs and their split, the MLP's references, tiny runs."""
import math

import numpy as np
import pytest
import torch
import xarray as xr
from torch.func import functional_call, vmap

from landscape.cli import main
from landscape.errors import UserError
from landscape.models import Transformer
from landscape.train.norm import global_norm
from landscape.spec import EvalConfig, TrainConfig
from landscape.tasks import make_task
from landscape.tasks.theory import kernel_interpolant, relu_kernel
from landscape.cube.schema import CURVES
from landscape.train import train_cell, train_cells

pytestmark = pytest.mark.usefixtures("one_torch_thread")
SMALL_TF = {"p": 7, "d_model": 16, "n_heads": 2, "d_head": 8, "d_mlp": 32}
GROKKING = TrainConfig(optimizer="adamw", lr=1e-3, weight_decay=1.0, beta2=0.98, steps=20, constrain_norm=False)
TINY_GRID = """
task = "modular-addition"
[task_options]
p = 7
d_model = 16
n_heads = 2
d_head = 8
d_mlp = 32
[axes]
alpha = [0.8, 1.0]
wd = [1.0]
N = [25]
[train]
optimizer = "adamw"
lr = 1e-3
beta2 = 0.98
steps = 12
constrain_norm = false
dtype = "float64"
[eval]
every = 4
"""


def test_transformer_shapes_init_and_groups():
    torch.manual_seed(0)
    model = make_task("modular-addition", {}).build_model()  # p = 113, the paper's sizes
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    assert shapes == {"embed.W_E": (114, 128), "embed.W_pos": (3, 128), "attn.W_Q": (128, 128),
                      "attn.W_K": (128, 128), "attn.W_V": (128, 128), "attn.W_O": (128, 128),
                      "mlp.W_in": (512, 128), "mlp.b_in": (512,), "mlp.W_out": (128, 512), "mlp.b_out": (128,),
                      "unembed.W_U": (114, 128)}
    # randn/sqrt(d_model) everywhere, W_U randn/sqrt(d_vocab): E||theta||^2 = 114 + 3 + 4*128 + 2*512 + 128
    assert float(global_norm(model.parameters())) == pytest.approx(math.sqrt(1781), rel=0.02)
    assert [name for name, _ in model.named_children()] == ["embed", "attn", "mlp", "unembed"]
    tokens = torch.tensor([[3, 5, 113], [112, 0, 113]])
    assert model(tokens).shape == (2, 114)


def test_attention_is_causal():
    torch.manual_seed(0)
    model = Transformer(d_vocab=8, d_vocab_out=8, n_ctx=3, d_model=16, n_heads=2, d_head=8, d_mlp=32)
    x = model.embed(torch.tensor([[1, 2, 7], [1, 5, 3]]))
    out = model.attn(x)
    torch.testing.assert_close(out[0, 0], out[1, 0])  # position 0 sees only token 1
    assert not torch.allclose(out[0, 1], out[1, 1])


def test_transformer_runs_under_vmap():
    task = make_task("modular-addition", SMALL_TF)
    torch.manual_seed(0)
    models = [task.build_model() for _ in range(3)]
    stacked = {name: torch.stack([dict(m.named_parameters())[name].detach() for m in models])
               for name, _ in models[0].named_parameters()}
    x = task.data(20).train_x
    batched = vmap(lambda params, xb: functional_call(models[0], params, (xb,)), in_dims=(0, None))(stacked, x)
    for i, m in enumerate(models):
        torch.testing.assert_close(batched[i], m(x), rtol=1e-5, atol=1e-6)


def test_batched_transformer_matches_the_per_cell_path():
    task = make_task("modular-addition", SMALL_TF)
    split = task.data(30)
    evalc = EvalConfig(every=10)
    alone = train_cell(task, split, 9.0, 1, GROKKING, evalc)
    batched = train_cells(task, [split], [9.0], [1], GROKKING, evalc)[0]
    np.testing.assert_allclose(batched.curves, alone.curves, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(batched.layer_norms, alone.layer_norms, rtol=1e-4)


def test_grid_records_dtype_layer_norms_and_pairs(tmp_path):
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY_GRID)
    out = tmp_path / "m.zarr"
    assert main(["grid", str(spec), "--out", str(out), "--jobs", "1", "--quiet"]) == 0
    ds = xr.open_zarr(out)
    assert ds.attrs["dtype"] == "float64" and ds.attrs["fixed_pairs"] == 49 and ds.attrs["batched"] == 1
    assert list(ds["layer"].values) == ["embed", "attn", "mlp", "unembed"]
    quadrature = np.sqrt((ds["layer_norm_curve"] ** 2).sum("layer"))
    np.testing.assert_allclose(quadrature.values, ds["norm_curve"].values, rtol=1e-10)
    np.testing.assert_allclose(ds["norm_curve"].isel(step=0).values.ravel(), ds["w"].values, rtol=1e-10)


def test_modular_addition_pairs_and_split():
    task = make_task("modular-addition", {**SMALL_TF, "split_seed": 3})
    small, large = task.data(10), task.data(30)
    assert len(large.train_x) + len(large.test_x) == 49
    torch.testing.assert_close(small.train_x, large.train_x[:10])
    a, b, eq = large.train_x.T
    assert torch.equal((a + b) % 7, large.train_y) and torch.all(eq == 7)
    every = torch.cat([large.train_x, large.test_x])
    assert len({tuple(row) for row in every.tolist()}) == 49
    assert task.pool_size == 48 and task.fixed == {"pairs": 49} and "N / 49" in task.data_source
    loss = task.loss(torch.zeros(4, 8), torch.tensor([0, 1, 2, 6]))
    assert float(loss) == pytest.approx(math.log(8))  # logits over p + 1 tokens, '=' included


@pytest.mark.parametrize("options, message", [({"p": 4}, "p = 4 must be a prime"), ({"p": 2}, "prime >= 3"),
                                              ({"d_mlp": 0}, "d_mlp = 0"), ({"split_seed": -1}, "split_seed")])
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(UserError, match=message):
        make_task("modular-addition", options)
    if "d_mlp" not in options:
        with pytest.raises(UserError, match=message):
            make_task("modular-mlp", options)


def test_modular_mlp_references():
    task = make_task("modular-mlp", {"p": 11, "width": 32})
    split = task.data(50)
    refs = task.references(split)
    assert refs.kernel.shape == refs.rich.shape == (121 - 50, 11)  # logits on the held-out pairs
    assert (refs.rich.argmax(1) == split.test_y.numpy()).all()
    np.testing.assert_allclose(refs.kernel.sum(1), 0.0, atol=1e-8)  # centred, as the labels it interpolates
    values = task.measure_extra_values(split)
    assert values["rich_test_err"] == 0.0
    assert values["kernel_test_err"] > 0.9  # held-out pairs share a or b only with pairs of other labels


def test_tiny_modular_mlp_run_starts_at_zero_output():
    task = make_task("modular-mlp", {"p": 7, "width": 16})
    split = task.data(25)
    train = TrainConfig(optimizer="sgd", lr=0.05, weight_decay=1e-3, steps=30, constrain_norm=False)
    result = train_cell(task, split, w=10.0, seed=0, train=train, evalc=EvalConfig(every=10))
    loss0 = result.curves[CURVES.index("train_loss"), 0]
    assert loss0 == pytest.approx(math.log(7), rel=1e-6)  # zero logits: the uniform distribution
    assert result.extra_curves["min_margin"][0] == 0.0
    assert np.isnan(result.extra_curves["cos_kernel"][0])  # the cosine of a zero predictor is undefined
    assert result.curves[CURVES.index("train_loss"), -1] < loss0
    assert result.curves[CURVES.index("norm"), 0] == pytest.approx(10.0, rel=1e-5)


def test_relu_kernel_and_its_interpolant():
    rng = np.random.default_rng(0)
    u, z = rng.standard_normal((2, 400_000))
    v = 0.5 * u + np.sqrt(0.75) * z  # correlation 1/2: inputs sharing one token of two
    monte_carlo = 2 * np.pi * np.mean(np.maximum(u, 0) * np.maximum(v, 0))
    assert relu_kernel(np.array(0.5)) == pytest.approx(monte_carlo, rel=0.02)
    assert relu_kernel(np.array(1.0)) == pytest.approx(np.pi) and relu_kernel(np.array(0.0)) == pytest.approx(1.0)
    x = make_task("modular-mlp", {"p": 5, "width": 8}).data(12).train_x.double().numpy()
    k, y = relu_kernel(x @ x.T / 2), rng.standard_normal((12, 5))
    np.testing.assert_allclose(kernel_interpolant(k, y, k), y, atol=1e-8)
