"""Curvature estimators (landscape.measures.hessian) against independent references: a dense
Hessian from torch.autograd.functional.hessian (projected by hand for the reduced case), PyHessian,
and PyHessian's Lanczos (its `density`) written out from its published source."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape.measures import (KINDS, Curvature, FlatLoss, adam_preconditioner, adam_sharpness, adam_threshold,
                               ambient, constrained_mask, curvature, flat_params, preconditioned, reduced,
                               sgd_threshold, spectral_density, stacked_ambient, stacked_top_eigenvalues,
                               top_eigenvalues, trace)
from landscape.measures.hessian import _lanczos, _tridiagonal


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: these products are small, and on a loaded machine two threads stall each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(seed: int = 0, n: int = 40) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3)).double()
    return model, torch.randn(n, 5, dtype=torch.float64), torch.randn(n, 3, dtype=torch.float64)


def dense(loss: FlatLoss, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The full-data Hessian and gradient, computed in one piece (no chunks)."""
    rows = torch.arange(len(loss.y))
    hess = torch.autograd.functional.hessian(lambda t: loss.chunk_loss(t, rows), theta)
    t = theta.clone().requires_grad_()
    return hess, torch.autograd.grad(loss.chunk_loss(t, rows), t)[0]


def dense_reduced(hess: torch.Tensor, g: torch.Tensor, theta: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    on = theta * mask
    w2 = on @ on
    P = torch.eye(len(theta), dtype=theta.dtype) - torch.outer(on, on) / w2
    return P @ (hess - (on @ g / w2) * torch.diag(mask)) @ P


@pytest.fixture(scope="module")
def setup():
    model, x, y = tiny()
    loss = FlatLoss(model, x, y, F.mse_loss, chunk=16)  # 3 chunks: the weighted sum is exercised
    theta = flat_params(model)
    hess, g = dense(loss, theta)
    return model, loss, theta, hess, g


def close(a: torch.Tensor, b: torch.Tensor, rel: float = 1e-4) -> bool:
    return bool(((a - b).abs() <= rel * b.abs().max()).all())


def test_hvp_and_grad_match_dense(setup):
    _, loss, theta, hess, g = setup
    v = torch.randn(len(theta), dtype=theta.dtype)
    assert torch.allclose(loss.hvp(theta, v), hess @ v, atol=1e-12)
    assert torch.allclose(loss.grad(theta), g, atol=1e-12)


def test_top_eigenvalues_match_dense(setup):
    _, loss, theta, hess, _ = setup
    eig = top_eigenvalues(ambient(loss, theta), k=3, seed=1)
    want = torch.linalg.eigvalsh(hess).flip(0)[:3]
    assert close(eig.values, want)
    assert eig.converged and 3 <= eig.iterations <= 100
    assert (eig.residuals <= 1e-4 * want[0]).all()
    assert torch.allclose(eig.vectors @ eig.vectors.T, torch.eye(3, dtype=theta.dtype), atol=1e-6)


@pytest.mark.parametrize("part", ["all", "weights"])
def test_reduced_eigenvalues_match_projected_dense(setup, part):
    model, loss, theta, hess, g = setup
    chosen = None if part == "all" else [p for n, p in model.named_parameters() if n.endswith("weight")]
    mask = constrained_mask(model, chosen)
    eig = top_eigenvalues(reduced(loss, theta, mask), k=3, seed=2)
    want = torch.linalg.eigvalsh(dense_reduced(hess, g, theta, mask)).flip(0)[:3]
    assert close(eig.values, want)
    assert not torch.allclose(want, torch.linalg.eigvalsh(hess).flip(0)[:3], rtol=1e-3)  # a different operator
    # Its eigenvectors are tangent: orthogonal to the constrained part of theta.
    assert (eig.vectors @ (theta * mask)).abs().max() < 1e-6 * torch.linalg.vector_norm(theta)


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_trace_within_three_standard_errors(setup, method):
    _, loss, theta, hess, g = setup
    for op, exact in ((ambient(loss, theta), hess.trace()),
                      (reduced(loss, theta), dense_reduced(hess, g, theta, torch.ones_like(theta)).trace())):
        est = trace(op, probes=60, seed=3, method=method)
        assert est.stderr > 0 and abs(est.estimate - float(exact)) <= 3 * est.stderr


def test_trace_seeded():
    model, x, y = tiny()
    op = ambient(FlatLoss(model, x, y, F.mse_loss), flat_params(model))
    assert trace(op, 5, seed=4) == trace(op, 5, seed=4)
    assert trace(op, 5, seed=4).estimate != trace(op, 5, seed=5).estimate


def test_slq_density_integrates_to_one_and_its_mean_is_trace_over_dim(setup):
    _, loss, theta, hess, _ = setup
    dens = spectral_density(ambient(loss, theta), probes=8, steps=30, seed=5)
    assert abs(float(torch.trapezoid(dens.values, dens.grid)) - 1) < 1e-3
    assert torch.allclose(dens.weights.sum(1), torch.ones(8, dtype=torch.float64))
    per_probe = torch.nansum(dens.nodes * dens.weights, 1)  # each is q^T H q for a unit Gaussian q
    stderr = float(per_probe.std() / np.sqrt(len(per_probe)))
    assert abs(dens.mean - float(hess.trace()) / len(theta)) <= 3 * stderr
    ev = torch.linalg.eigvalsh(hess)
    assert dens.nodes.nan_to_num(0).max() <= ev[-1] + 1e-8 and float(np.nanmin(dens.nodes)) >= ev[0] - 1e-8


def _pyhessian_lanczos(matvec, v: torch.Tensor, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """PyHessian 0.1's `hessian.density` for one probe, as published, on flat vectors; only its
    final `torch.eig(T)` (removed from torch) is replaced by `torch.linalg.eigh` (T is symmetric)."""
    def orthnormal(w, v_list):
        for u in v_list:
            w = w - torch.dot(w, u) * u
        return w / torch.linalg.vector_norm(w)

    v = v / torch.linalg.vector_norm(v)
    v_list, alpha_list, beta_list = [v], [], []
    for i in range(iters):
        if i == 0:
            w_prime = matvec(v)
            alpha = torch.dot(w_prime, v)
            alpha_list.append(float(alpha))
            w = w_prime - alpha * v
        else:
            beta = torch.sqrt(torch.dot(w, w))
            beta_list.append(float(beta))
            v = orthnormal(w, v_list)
            v_list.append(v)
            w_prime = matvec(v)
            alpha = torch.dot(w_prime, v)
            alpha_list.append(float(alpha))
            w = w_prime - alpha * v - beta * v_list[-2]
    T = torch.zeros(iters, iters, dtype=torch.float64)
    for i in range(len(alpha_list)):
        T[i, i] = alpha_list[i]
        if i < len(alpha_list) - 1:
            T[i + 1, i] = T[i, i + 1] = beta_list[i]
    nodes, vecs = torch.linalg.eigh(T)
    return nodes, vecs[0] ** 2


def test_slq_quadrature_matches_pyhessian_algorithm(setup):
    _, loss, theta, _, _ = setup
    op = ambient(loss, theta)
    v0 = torch.randint(0, 2, (op.dim,), generator=torch.Generator().manual_seed(6)).double() * 2 - 1
    alpha, beta, _ = _lanczos(op, v0, 20)
    nodes, s = torch.linalg.eigh(_tridiagonal(alpha, beta))
    want_nodes, want_weights = _pyhessian_lanczos(op.matvec, v0, 20)
    assert torch.allclose(nodes, want_nodes, atol=1e-8, rtol=1e-6)
    assert torch.allclose(s[0] ** 2, want_weights, atol=1e-8)


def test_adam_preconditioned_sharpness(setup):
    model, x, y = tiny(seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.9, 0.99), eps=1e-3)
    for _ in range(3):
        opt.zero_grad()
        F.mse_loss(model(x), y).backward()
        opt.step()
    diag = adam_preconditioner(opt, model)
    by_hand = torch.cat([(opt.state[p]["exp_avg_sq"] / (1 - 0.99 ** 3)).sqrt().reshape(-1) + 1e-3
                         for p in model.parameters()])
    assert torch.allclose(diag, by_hand)
    loss = FlatLoss(model, x, y, F.mse_loss)
    theta = flat_params(model)
    hess, _ = dense(loss, theta)
    want = np.linalg.eigvals((hess / diag[:, None]).numpy()).real.max()  # lambda_max(P^-1 H), not symmetrized
    got = top_eigenvalues(preconditioned(ambient(loss, theta), diag), k=1, seed=7).values[0]
    assert abs(float(got) - want) <= 1e-4 * abs(want)
    assert abs(float(adam_sharpness(model, opt, x, y, F.mse_loss, seed=7).values[0]) - want) <= 1e-4 * abs(want)
    assert adam_threshold(0.01) == pytest.approx(3800.0) and sgd_threshold(0.01) == pytest.approx(200.0)


def test_curvature_of_a_cell_reports_both_kinds(setup):
    model, loss, theta, hess, g = setup
    model.train()
    got = curvature(model, loss.x, loss.y, F.mse_loss, None, seed=8, top=2, trace_probes=20, density_probes=2,
                    density_steps=10)
    assert set(got) == set(KINDS) and model.training
    assert close(got["ambient"].eigen.values, torch.linalg.eigvalsh(hess).flip(0)[:2])
    want = torch.linalg.eigvalsh(dense_reduced(hess, g, theta, torch.ones_like(theta))).flip(0)[:2]
    assert close(got["reduced"].eigen.values, want)
    assert got["reduced"].trace.probes == 20 and got["ambient"].density.nodes.shape == (2, 10)
    off = curvature(model, loss.x, loss.y, F.mse_loss, None, seed=8, top=0)
    assert off["ambient"] == Curvature(None, None, None)


def test_bad_arguments_refused(setup):
    _, loss, theta, _, _ = setup
    with pytest.raises(ValueError, match="k = 76"):
        top_eigenvalues(ambient(loss, theta), k=76)
    with pytest.raises(ValueError, match="unknown trace method"):
        trace(ambient(loss, theta), method="exact")
    with pytest.raises(ValueError, match="zero norm"):
        reduced(loss, theta, torch.zeros_like(theta))


def test_float32_runs_in_float32():
    model, x, y = tiny()
    model = model.float()
    loss = FlatLoss(model, x.float(), y.float(), F.mse_loss)
    eig = top_eigenvalues(reduced(loss, flat_params(model)), k=1)
    assert eig.values.dtype == torch.float32 and torch.isfinite(eig.residuals).all()


def mnist_cell(tmp_path) -> tuple[nn.Module, torch.Tensor, torch.Tensor, object]:
    """The MNIST task's real MLP after a few Adam steps on 64 fake-MNIST images (test files)."""
    from landscape.tasks.mnist import Mnist, MnistOptions
    from tests.mnist_files import write_fake_mnist
    task = Mnist(MnistOptions(), str(write_fake_mnist(tmp_path / "mnist", n_train=64, n_test=20)))
    torch.manual_seed(0)
    model = task.build_model()
    split = task.data(64)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(5):
        opt.zero_grad()
        task.loss(model(split.train_x), split.train_y).backward()
        opt.step()
    return model.eval(), split.train_x, split.train_y, task


def test_against_pyhessian_on_an_mnist_cell(tmp_path):
    pyhessian = pytest.importorskip("pyhessian", reason="PyHessian (extra peers) is not installed")
    model, x, y, task = mnist_cell(tmp_path)
    loss = FlatLoss(model, x, y, task.loss)
    theta = flat_params(model)
    ours = top_eigenvalues(ambient(loss, theta), k=1, seed=0)
    torch.manual_seed(0)
    theirs = pyhessian.hessian(model, task.loss, data=(x, y), cuda=False)
    top, _ = theirs.eigenvalues(maxIter=100, tol=1e-4, top_n=1)
    assert abs(float(ours.values[0]) - top[0]) <= 0.02 * abs(float(ours.values[0]))
    ours_trace = trace(ambient(loss, theta), probes=30, seed=0)
    samples = np.array(theirs.trace(maxIter=30, tol=0.0))
    their_se = samples.std(ddof=1) / np.sqrt(len(samples))
    assert abs(ours_trace.estimate - samples.mean()) <= 3 * np.hypot(ours_trace.stderr, their_se)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_same_as_cpu(setup):
    model, loss, theta, _, _ = setup
    x, y = loss.x, loss.y
    on_gpu = FlatLoss(copy.deepcopy(model).cuda(), x.cuda(), y.cuda(), F.mse_loss, chunk=16)
    for make in (ambient, reduced):
        cpu = top_eigenvalues(make(loss, theta), k=2, seed=3)
        gpu = top_eigenvalues(make(on_gpu, theta.cuda()), k=2, seed=3)
        assert gpu.values.device.type == "cuda" and torch.allclose(gpu.values.cpu(), cpu.values, rtol=1e-8)
    assert trace(ambient(on_gpu, theta.cuda()), 10, seed=1).estimate == pytest.approx(
        trace(ambient(loss, theta), 10, seed=1).estimate, rel=1e-8)


@pytest.mark.parametrize("chunk", [16, 4096])
def test_stacked_cells_give_each_cells_own_top_eigenvalues(chunk):
    """Three cells' Lanczos at once (batched products, data in 3 chunks and in one) against each
    cell alone and its dense Hessian; 8 steps also stop a cell short of convergence."""
    model, x, y = tiny()
    loss = FlatLoss(model, x, y, F.mse_loss, chunk=chunk)
    thetas = torch.stack([flat_params(tiny(seed)[0]) for seed in (0, 1, 2)])
    for k, max_iter in ((2, 100), (1, 8)):
        stacked = stacked_top_eigenvalues(stacked_ambient(loss, thetas), len(thetas), k, max_iter, 1e-10, seed=3)
        for theta, got in zip(thetas, stacked):
            alone = top_eigenvalues(ambient(loss, theta), k, max_iter, 1e-10, seed=3)
            assert got.iterations == alone.iterations and got.converged == alone.converged
            assert torch.allclose(got.values, alone.values, rtol=1e-10)
            assert torch.allclose(got.residuals, alone.residuals, rtol=1e-6, atol=1e-9)
            if max_iter == 100:
                assert close(got.values, torch.linalg.eigvalsh(dense(loss, theta)[0]).flip(0)[:k], 1e-8)
