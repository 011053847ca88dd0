"""Curvature of a loss from Hessian-vector products: top eigenvalues, trace and spectral density.

All estimators take an :class:`Operator`, a symmetric linear map on flat parameter vectors:
- :func:`ambient`: the Hessian H of the loss in all trainable parameters;
- :func:`reduced`: the Riemannian Hessian of the loss restricted to the sphere ``||theta_c|| = w``
  of the constrained parameters ``theta_c`` (Omnigrok's reduced landscape),
  ``P (H - (theta_c . grad L / w^2) I_c) P`` with ``P = I - theta_c theta_c^T / w^2``. Parameters
  outside the constraint (a task's ``constrained_parameters`` leaves them out) are free coordinates
  of the product manifold sphere x R^m: P is the identity on them and the curvature term does not
  touch them, so their block of H and their mixed block (projected) are kept as they are;
- :func:`preconditioned`: ``D^-1/2 A D^-1/2`` for a positive diagonal D, whose spectrum is that of
  ``D^-1 A`` (Adam's preconditioned sharpness with :func:`adam_preconditioner`).
Random probes are drawn on the CPU in float64 from a seeded generator and then moved to the
operator's dtype and device, so a seed gives the same probes everywhere.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from landscape.measures.functional import FlatLoss, trainable

#: torch's Adam/AdamW eps, which landscape.train.optim leaves at its default.
ADAM_EPS = 1e-8


@dataclass(frozen=True)
class Operator:
    """A symmetric linear map ``matvec`` on vectors of length ``dim``."""

    matvec: Callable[[torch.Tensor], torch.Tensor]
    dim: int
    dtype: torch.dtype
    device: torch.device


def ambient(loss: FlatLoss, theta: torch.Tensor) -> Operator:
    """The Hessian of ``loss`` at ``theta`` in all trainable parameters."""
    theta = theta.detach()
    return Operator(lambda v: loss.hvp(theta, v), loss.dim, theta.dtype, theta.device)


def reduced(loss: FlatLoss, theta: torch.Tensor, mask: torch.Tensor | None = None) -> Operator:
    """The Riemannian Hessian of ``loss`` on the sphere through ``theta`` of the entries ``mask``
    marks (1 = constrained; None: all), see the module docstring."""
    theta = theta.detach()
    mask = torch.ones_like(theta) if mask is None else mask.to(theta)
    on = theta * mask
    w2 = torch.dot(on, on)
    if not w2 > 0:
        raise ValueError("the constrained parameters have zero norm: no sphere to restrict to")
    shift = torch.dot(on, loss.grad(theta)) / w2

    def project(v: torch.Tensor) -> torch.Tensor:
        return v - on * (torch.dot(on, v) / w2)

    def matvec(v: torch.Tensor) -> torch.Tensor:
        pv = project(v)
        return project(loss.hvp(theta, pv) - shift * mask * pv)

    return Operator(matvec, loss.dim, theta.dtype, theta.device)


def preconditioned(op: Operator, diag: torch.Tensor) -> Operator:
    """``D^-1/2 A D^-1/2`` for ``D = diag(diag)`` > 0: symmetric, with the eigenvalues of ``D^-1 A``."""
    scale = diag.to(dtype=op.dtype, device=op.device).rsqrt()
    return Operator(lambda v: scale * op.matvec(scale * v), op.dim, op.dtype, op.device)


def adam_diagonal(exp_avg_sq: torch.Tensor, step: float, beta2: float, eps: float) -> torch.Tensor:
    """Adam's diagonal ``sqrt(v_hat) + eps`` of one parameter, bias-corrected as Adam does."""
    return (exp_avg_sq.detach() / (1 - beta2 ** float(step))).sqrt() + eps


def adam_preconditioner(optimizer: torch.optim.Optimizer, model: nn.Module) -> torch.Tensor:
    """Adam's diagonal ``sqrt(v_hat) + eps`` (Cohen et al. 2022) over the model's trainable parameters,
    in flat order, from the optimizer's ``exp_avg_sq`` and ``step`` state (bias-corrected as Adam
    does). A parameter without state yet gets ``eps``."""
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    parts = []
    for p in trainable(model).values():
        group, state = group_of[id(p)], optimizer.state.get(p, {})
        if "exp_avg_sq" in state:
            parts.append(adam_diagonal(state["exp_avg_sq"], state["step"], group["betas"][1], group["eps"]).reshape(-1))
        else:
            parts.append(torch.full((p.numel(),), group["eps"], dtype=p.dtype, device=p.device))
    return torch.cat(parts)


def adam_preconditioner_of_state(state: dict[str, dict[str, torch.Tensor]], model: nn.Module, beta2: float,
                                 eps: float = ADAM_EPS) -> torch.Tensor:
    """:func:`adam_preconditioner` from a state dict by parameter name (a MeasurePoint's
    ``optimizer_state()``: ``exp_avg_sq`` shaped as the parameter, ``step``), on the model's device."""
    parts = []
    for name, p in trainable(model).items():
        s = state.get(name, {})
        if "exp_avg_sq" in s:
            parts.append(adam_diagonal(s["exp_avg_sq"].to(p), s["step"], beta2, eps).reshape(-1))
        else:
            parts.append(torch.full((p.numel(),), eps, dtype=p.dtype, device=p.device))
    return torch.cat(parts)


def sgd_threshold(lr: float) -> float:
    """Gradient descent's stability threshold 2/eta for the top Hessian eigenvalue (Cohen et al. 2021)."""
    return 2.0 / lr


def adam_threshold(lr: float, beta1: float = 0.9) -> float:
    """Adam's threshold (2 + 2 beta1) / ((1 - beta1) eta) for the preconditioned sharpness
    (Cohen et al. 2022): 38/eta at beta1 = 0.9."""
    return (2.0 + 2.0 * beta1) / ((1.0 - beta1) * lr)


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rademacher(op: Operator, gen: torch.Generator, count: int) -> torch.Tensor:
    signs = torch.randint(0, 2, (count, op.dim), generator=gen, dtype=torch.float64) * 2 - 1
    return signs.to(dtype=op.dtype, device=op.device)


def _lanczos(op: Operator, v0: torch.Tensor, steps: int,
             done: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], bool] | None = None
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Lanczos with full reorthogonalization (twice, Gram-Schmidt) from ``v0``.

    Returns the tridiagonal's diagonal ``alpha`` (j), off-diagonal ``beta`` (j; ``beta[-1]`` is the
    last residual norm) and the basis Q (j x dim). Stops early at an invariant subspace, or when
    ``done(alpha, beta, T)`` says so.
    """
    q = v0 / torch.linalg.vector_norm(v0)
    basis, alphas, betas = [q], [], []
    scale = 0.0
    for _ in range(min(steps, op.dim)):
        r = op.matvec(basis[-1])
        alpha = torch.dot(basis[-1], r)
        Q = torch.stack(basis)
        for _pass in range(2):
            r = r - Q.T @ (Q @ r)
        beta = torch.linalg.vector_norm(r)
        alphas.append(alpha)
        betas.append(beta)
        scale = max(scale, abs(float(alpha)), float(beta))
        a, b = torch.stack(alphas), torch.stack(betas)
        if float(beta) <= 1e-10 * scale or len(basis) == op.dim or (done is not None and done(a, b, Q)):
            break
        basis.append(r / beta)
    return torch.stack(alphas), torch.stack(betas), torch.stack(basis[:len(alphas)])


def _tridiagonal(alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    off = beta[:-1]
    return torch.diag(alpha) + torch.diag(off, 1) + torch.diag(off, -1)


@dataclass(frozen=True)
class Eigen:
    """Top-k eigenpairs, largest first. ``residuals[i]`` = ||A v_i - lambda_i v_i|| (v_i unit),
    computed by one more matvec each; ``iterations``: Lanczos steps taken; ``converged``: whether
    every Lanczos residual estimate fell below ``tol`` times the largest |Ritz value|."""

    values: torch.Tensor
    vectors: torch.Tensor
    residuals: torch.Tensor
    iterations: int
    converged: bool


def top_eigenvalues(op: Operator, k: int = 1, max_iter: int = 100, tol: float = 1e-6, seed: int = 0) -> Eigen:
    """The ``k`` algebraically largest eigenvalues of ``op`` by Lanczos with full reorthogonalization."""
    if not 1 <= k <= op.dim:
        raise ValueError(f"k = {k} must lie in [1, {op.dim}] (the parameter count)")
    v0 = torch.randn(op.dim, generator=_generator(seed), dtype=torch.float64).to(dtype=op.dtype, device=op.device)
    status = {"converged": False}

    def done(alpha: torch.Tensor, beta: torch.Tensor, _Q: torch.Tensor) -> bool:
        if len(alpha) < k:
            return False
        ritz, s = torch.linalg.eigh(_tridiagonal(alpha, beta))
        estimate = (beta[-1] * s[-1, -k:]).abs()
        status["converged"] = bool((estimate <= tol * ritz.abs().max()).all())
        return status["converged"]

    alpha, beta, Q = _lanczos(op, v0, max(max_iter, k), done)
    ritz, s = torch.linalg.eigh(_tridiagonal(alpha, beta))
    exact = len(alpha) < max(max_iter, k) and not status["converged"]  # an invariant subspace was found
    count = min(k, len(alpha))
    values = ritz[-count:].flip(0)
    vectors = (s[:, -count:].flip(1).T @ Q)
    vectors = vectors / torch.linalg.vector_norm(vectors, dim=1, keepdim=True)
    residuals = torch.stack([torch.linalg.vector_norm(op.matvec(v) - lam * v) for v, lam in zip(vectors, values)])
    return Eigen(values, vectors, residuals, len(alpha), status["converged"] or exact)


@dataclass(frozen=True)
class Trace:
    """A stochastic trace estimate and its standard error over ``probes`` probes."""

    estimate: float
    stderr: float
    probes: int
    method: str


def trace(op: Operator, probes: int = 100, seed: int = 0, method: str = "hutchinson") -> Trace:
    """tr(op) by Hutchinson with Rademacher probes, or by Hutch++ (Meyer et al. 2021) with the same
    number of matvecs (a third sketch the top subspace, exactly traced; the rest probe the remainder).
    The standard error is that of the probe mean (the exact part adds none)."""
    gen = _generator(seed)
    if method == "hutchinson":
        z = _rademacher(op, gen, probes)
        samples = torch.stack([torch.dot(v, op.matvec(v)) for v in z])
        exact = torch.zeros((), dtype=op.dtype, device=op.device)
    elif method == "hutch++":
        if probes < 3:
            raise ValueError(f"hutch++ needs at least 3 probes, got {probes}")
        sketch = probes // 3
        S = _rademacher(op, gen, sketch)
        Q = torch.linalg.qr(torch.stack([op.matvec(v) for v in S]).T).Q.T  # sketch x dim, orthonormal rows
        exact = sum(torch.dot(q, op.matvec(q)) for q in Q)
        g = _rademacher(op, gen, probes - 2 * sketch)
        g = g - (g @ Q.T) @ Q
        samples = torch.stack([torch.dot(v, op.matvec(v)) for v in g])
    else:
        raise ValueError(f"unknown trace method {method!r} (known: hutchinson, hutch++)")
    stderr = float(samples.std(unbiased=True) / math.sqrt(len(samples))) if len(samples) > 1 else float("inf")
    return Trace(float(exact + samples.mean()), stderr, probes, method)


@dataclass(frozen=True)
class Density:
    """Spectral density ``values`` on ``grid`` (Gaussian-broadened, width ``sigma``), and the raw
    quadrature: ``nodes[p]`` and ``weights[p]`` (summing to 1) of probe p, padded with NaN nodes and
    zero weights where a probe's Lanczos stopped early at an invariant subspace."""

    grid: torch.Tensor
    values: torch.Tensor
    sigma: float
    nodes: torch.Tensor
    weights: torch.Tensor

    @property
    def mean(self) -> float:
        """Mean eigenvalue by quadrature: an estimate of tr/dim."""
        return float(torch.nansum(self.nodes * self.weights) / self.nodes.shape[0])


def spectral_density(op: Operator, probes: int = 1, steps: int = 80, seed: int = 0, points: int = 1001,
                     sigma: float = 0.01, grid: torch.Tensor | None = None) -> Density:
    """Stochastic Lanczos quadrature (Ghorbani et al. 2019): ``probes`` Gaussian probes, ``steps``
    Lanczos steps each (fully reorthogonalized), Gaussian broadening of width ``sigma`` times the
    spread of the Ritz values. ``grid`` defaults to ``points`` values spanning the Ritz values
    +- 5 widths, so the density integrates to 1 on it."""
    gen = _generator(seed)
    width = min(steps, op.dim)
    nodes = torch.full((probes, width), float("nan"), dtype=torch.float64)
    weights = torch.zeros((probes, width), dtype=torch.float64)
    for p in range(probes):
        v0 = torch.randn(op.dim, generator=gen, dtype=torch.float64).to(dtype=op.dtype, device=op.device)
        alpha, beta, _ = _lanczos(op, v0, steps)
        ritz, s = torch.linalg.eigh(_tridiagonal(alpha, beta).double().cpu())
        nodes[p, :len(ritz)], weights[p, :len(ritz)] = ritz, s[0] ** 2
    found = nodes[~nodes.isnan()]
    lo, hi = float(found.min()), float(found.max())
    spread = hi - lo if hi > lo else max(abs(hi), 1.0)
    width_abs = sigma * spread
    if grid is None:
        grid = torch.linspace(lo - 5 * width_abs, hi + 5 * width_abs, points, dtype=torch.float64)
    grid = grid.double().cpu()
    gauss = torch.exp(-0.5 * ((grid[:, None, None] - nodes.nan_to_num(0.0)) / width_abs) ** 2)
    values = (gauss * weights).sum((1, 2)) / (probes * width_abs * math.sqrt(2 * math.pi))
    return Density(grid, values, width_abs, nodes, weights)


def stacked_ambient(loss: FlatLoss, thetas: torch.Tensor) -> Operator:
    """The Hessians of ``loss`` at each row of ``thetas`` (cells x dim: cells of one model shape on
    the same data) as one operator on stacks of vectors (cells x dim). The cells' losses are summed
    over one vmapped forward pass, so the Hessian of the sum in the stacked parameters is
    block-diagonal, one block per cell: one double backward gives every cell's product. As in
    :meth:`FlatLoss.hvp`, the gradient's graph is kept between calls when the data are one chunk.
    ``dim`` is the parameter count of one cell."""
    def graph(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = thetas.detach().requires_grad_()
        total = torch.func.vmap(lambda theta: loss.chunk_loss(theta, rows))(t).sum()
        return t, torch.autograd.grad(total, t, create_graph=True)[0]

    kept = graph(loss.chunks[0]) if len(loss.chunks) == 1 else None

    def matvec(vs: torch.Tensor) -> torch.Tensor:
        if kept is not None:
            return torch.autograd.grad(kept[1], kept[0], vs, retain_graph=True)[0]

        def one(rows: torch.Tensor) -> torch.Tensor:
            t, g = graph(rows)
            return torch.autograd.grad(g, t, vs)[0]
        return loss._sum(one)

    return Operator(matvec, loss.dim, thetas.dtype, thetas.device)


def stacked_top_eigenvalues(op: Operator, cells: int, k: int = 1, max_iter: int = 100, tol: float = 1e-6,
                            seed: int = 0) -> list[Eigen]:
    """:func:`top_eigenvalues` of ``cells`` operators at once: ``op.matvec`` maps cells x dim to
    cells x dim (:func:`stacked_ambient`). Each cell runs its own Lanczos from the same start as
    :func:`top_eigenvalues` with ``seed``, with the same stopping rule; a cell that has stopped is
    carried along as zeros, so the products of the others stay batched."""
    if not 1 <= k <= op.dim:
        raise ValueError(f"k = {k} must lie in [1, {op.dim}] (the parameter count)")
    steps = min(max(max_iter, k), op.dim)
    v0 = torch.randn(op.dim, generator=_generator(seed), dtype=torch.float64).to(dtype=op.dtype, device=op.device)
    q = (v0 / torch.linalg.vector_norm(v0)).expand(cells, -1).clone()
    basis, alphas, betas = [q], [], []
    length = [0] * cells  # Lanczos steps kept per cell; 0 while it still runs
    converged = [False] * cells
    scale = torch.zeros(cells, dtype=op.dtype, device=op.device)
    for j in range(steps):
        r = op.matvec(basis[-1])
        alpha = (basis[-1] * r).sum(1)
        Q = torch.stack(basis, 1)  # cells x j x dim
        for _pass in range(2):
            r = r - torch.einsum("cj,cjd->cd", torch.einsum("cjd,cd->cj", Q, r), Q)
        beta = torch.linalg.vector_norm(r, dim=1)
        alphas.append(alpha)
        betas.append(beta)
        scale = torch.maximum(scale, torch.maximum(alpha.abs(), beta))
        a, b = torch.stack(alphas, 1), torch.stack(betas, 1)
        for c in range(cells):
            if length[c]:
                continue
            if j + 1 >= k:
                ritz, s = torch.linalg.eigh(_tridiagonal(a[c], b[c]))
                converged[c] = bool(((b[c, -1] * s[-1, -k:]).abs() <= tol * ritz.abs().max()).all())
            if converged[c] or float(beta[c]) <= 1e-10 * float(scale[c]) or j + 1 == steps:
                length[c] = j + 1
        if all(length):
            break
        running = torch.tensor([not n for n in length], dtype=op.dtype, device=op.device)
        basis.append(r / torch.where(running > 0, beta, torch.ones_like(beta))[:, None] * running[:, None])
    A, B, Q = torch.stack(alphas, 1), torch.stack(betas, 1), torch.stack(basis, 1)
    values, vectors = [], []
    for c, n in enumerate(length):
        ritz, s = torch.linalg.eigh(_tridiagonal(A[c, :n], B[c, :n]))
        vec = s[:, -k:].flip(1).T @ Q[c, :n]
        values.append(ritz[-k:].flip(0))
        vectors.append(vec / torch.linalg.vector_norm(vec, dim=1, keepdim=True))
    count = min(len(v) for v in values)  # fewer than k only where a cell's Krylov space is smaller
    V = torch.stack([v[:count] for v in vectors])  # cells x count x dim
    lam = torch.stack([v[:count] for v in values])
    # One batched product per eigenvector rank gives every cell's residuals.
    residuals = torch.stack([torch.linalg.vector_norm(op.matvec(V[:, i]) - lam[:, i, None] * V[:, i], dim=1)
                             for i in range(count)], 1)
    return [Eigen(lam[c], V[c], residuals[c], n, converged[c] or n < steps)
            for c, n in enumerate(length)]
