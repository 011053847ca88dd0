"""Slices (landscape.measures.slices, .directions) against loss-landscapes and by their defining
properties: the centre is the model's own loss, filter norms match the weights', sphere points
have norm w, and the three evaluation paths agree."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape.measures import (constrained_mask, direction_seed, evaluate, filter_directions, flat_params,
                               interpolation, landscape_slice, layout_of, plane, sphere_directions)
from landscape.measures.slices import PATHS
from landscape.tasks.base import classification_errors
from tests.test_curvature import one_thread, tiny  # noqa: F401  (one_thread: an autouse fixture)


def data(model: nn.Module, n: int = 30, seed: int = 1) -> tuple[tuple, tuple]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2 * n, 5, generator=gen, dtype=torch.float64)
    y = torch.randn(2 * n, 3, generator=gen, dtype=torch.float64)
    return (x[:n], y[:n]), (x[n:], y[n:])


@pytest.mark.parametrize("kind", ["filter", "sphere"])
def test_centre_is_the_models_own_loss_and_error(kind):
    model, _, _ = tiny()
    train, test = data(model)
    s = landscape_slice(model, train, test, F.mse_loss, classification_errors, seed=3, points=5, kind=kind)
    with torch.no_grad():
        for (x, y), loss, err in ((train, s.train_loss, s.train_err), (test, s.test_loss, s.test_err)):
            assert loss.shape == (5, 5) and err.shape == (5, 5)
            assert torch.allclose(loss[2, 2], F.mse_loss(model(x), y), rtol=1e-12)
            assert torch.allclose(err[2, 2], classification_errors(model(x), y).mean())
    assert s.path == "linear-head" and float(s.train_loss.std()) > 0


@pytest.mark.parametrize("kind", ["filter", "sphere"])
@pytest.mark.parametrize("dims", [1, 2])
def test_the_three_paths_agree(kind, dims):
    model, _, _ = tiny()
    train, test = data(model)
    got = {m: landscape_slice(model, train, None, F.mse_loss, classification_errors, seed=4, dims=dims, points=5,
                              kind=kind, method=m, point_chunk=4, sample_chunk=7) for m in PATHS}
    for m in PATHS:
        assert got[m].path == m
        assert torch.allclose(got[m].train_loss, got["loop"].train_loss, rtol=1e-12)
        assert torch.equal(got[m].train_err, got["loop"].train_err)


def test_a_model_that_does_not_vmap_falls_back_to_the_loop():
    class Branchy(nn.Module):  # data-dependent control flow: vmap cannot batch it
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(5, 3).double()

        def forward(self, x):
            out = self.lin(x)
            return out if out.sum() > -1e9 else -out

    model = Branchy()
    train, _ = data(model)
    s = landscape_slice(model, train, None, F.mse_loss, classification_errors, seed=0, points=3)
    assert s.path == "loop"
    assert torch.allclose(s.train_loss[1, 1], F.mse_loss(model(train[0]), train[1]).detach())


def test_filter_directions_have_the_weights_filter_norms():
    model = nn.Sequential(nn.Conv2d(2, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3), nn.BatchNorm1d(3))
    layout = layout_of(model)
    for include_1d in (False, True):
        dirs = filter_directions(model, seed=5, count=2, include_1d=include_1d)
        for d in dirs:
            for (name, p), part in zip(model.named_parameters(), layout.unflatten(d).values()):
                if p.dim() > 1:
                    axes = tuple(range(1, p.dim()))
                    norms = torch.linalg.vector_norm(part, dim=axes), torch.linalg.vector_norm(p.detach(), dim=axes)
                    assert torch.allclose(*norms, rtol=1e-6), name
                else:  # biases and BatchNorm: zeroed, or the weights themselves (Li et al.'s ignore switch)
                    assert torch.equal(part, p.detach() if include_1d else torch.zeros_like(p)), name
        assert not torch.allclose(dirs[0], dirs[1])


def test_sphere_points_have_norm_w():
    model, _, _ = tiny()
    theta = flat_params(model)
    for chosen in (None, [p for n, p in model.named_parameters() if n.endswith("weight")]):
        mask = constrained_mask(model, chosen)
        dirs = sphere_directions(model, seed=6, mask=mask)
        assert torch.allclose(dirs @ dirs.T, torch.eye(2, dtype=theta.dtype), atol=1e-12)
        assert (dirs @ (theta * mask)).abs().max() < 1e-12 and torch.equal(dirs * (1 - mask), torch.zeros_like(dirs))
        w = torch.linalg.vector_norm(theta * mask)
        flat = plane(theta, dirs, points=9, span=2.0, kind="sphere", mask=mask).flat()
        assert ((torch.linalg.vector_norm(flat * mask, dim=1) - w).abs() <= 1e-6).all()
        assert torch.equal(flat * (1 - mask), (theta * (1 - mask)).expand_as(flat))  # free entries stay put
        # Geodesic coordinates: the point at (a, 0) lies at angle |a| from theta.
        cos = (flat * mask) @ (theta * mask) / w ** 2
        grid = torch.linspace(-2, 2, 9, dtype=theta.dtype)
        assert torch.allclose(cos.reshape(9, 9)[:, 4], torch.cos(grid))


def test_sphere_points_have_norm_w_in_float32_on_an_mnist_size_model():
    from landscape.models.mlp import mlp
    torch.manual_seed(0)
    model = mlp((784, 200, 200, 10), nn.ReLU)
    theta = flat_params(model)
    mask = constrained_mask(model, None)
    flat = plane(theta, sphere_directions(model, 1, mask), points=21, kind="sphere", mask=mask).flat()
    w = torch.linalg.vector_norm(theta.double())
    assert flat.dtype == torch.float32
    assert ((torch.linalg.vector_norm(flat.double(), dim=1) - w).abs() <= 1e-6 * w).all()


def test_directions_depend_only_on_the_slice_and_cell_seeds():
    a, _, _ = tiny(seed=0)
    b = copy.deepcopy(a)
    seed = direction_seed(1, 2)
    assert torch.equal(filter_directions(a, seed), filter_directions(b, seed))
    assert not torch.equal(filter_directions(a, seed), filter_directions(a, direction_seed(2, 1)))
    assert direction_seed(1, 2) == direction_seed(1, 2) and direction_seed(0, 3) != direction_seed(3, 0)


def test_interpolation_ends_at_init_and_final():
    model, _, _ = tiny()
    train, test = data(model)
    init = flat_params(tiny(seed=9)[0])
    s = interpolation(model, init, train, test, F.mse_loss, classification_errors, points=6)
    start = copy.deepcopy(model)
    torch.nn.utils.vector_to_parameters(init, start.parameters())
    with torch.no_grad():
        assert torch.allclose(s.train_loss[0], F.mse_loss(start(train[0]), train[1]))
        assert torch.allclose(s.test_loss[-1], F.mse_loss(model(test[0]), test[1]))
    assert s.coords[0][0] == 0 and s.coords[0][-1] == 1


def test_bad_slice_arguments_refused():
    model, _, _ = tiny()
    train, _ = data(model)
    for kwargs, message in (({"points": 0}, "points >= 1"), ({"span": -1.0}, "span >= 0"),
                            ({"kind": "random"}, "unknown direction kind"), ({"dims": 3}, "1 or 2"),
                            ({"sample_chunk": 0}, "chunks must be positive"), ({"method": "fast"}, "not available")):
        with pytest.raises(ValueError, match=message):
            landscape_slice(model, train, None, F.mse_loss, classification_errors, seed=0, **kwargs)


def test_same_values_as_loss_landscapes_fed_the_same_directions():
    loss_landscapes = pytest.importorskip("loss_landscapes",
                                          reason="loss-landscapes (extra peers) is not installed")
    from loss_landscapes.metrics import Loss
    model, _, _ = tiny()
    (x, y), _ = data(model)
    theta = flat_params(model)
    dirs = filter_directions(model, seed=7)
    points, span = 7, 1.0
    ours = evaluate(model, plane(theta, dirs, points, span), x, y, F.mse_loss, classification_errors)[0]
    ours = ours.reshape(points, points)
    # planar_interpolation steps from `start` by (end - start) / steps along each direction.
    step = 2 * span / (points - 1)
    models = []
    for offset in (torch.zeros_like(theta), points * step * dirs[0], points * step * dirs[1]):
        m = copy.deepcopy(model)
        torch.nn.utils.vector_to_parameters(theta - span * (dirs[0] + dirs[1]) + offset, m.parameters())
        models.append(m)
    theirs = torch.as_tensor(loss_landscapes.planar_interpolation(*models, Loss(F.mse_loss, x, y), steps=points))
    # Its walk evaluates even columns one step further along dir_two than odd ones (it adds the
    # step before evaluating going up, after evaluating going down): column i, entry j is at
    # b = -span + (j + 1) step for even i and -span + j step for odd i.
    assert torch.allclose(theirs[0::2, :-1], ours[0::2, 1:], rtol=1e-10)
    assert torch.allclose(theirs[1::2], ours[1::2], rtol=1e-10)
