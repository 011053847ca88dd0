"""1-D and 2-D slices of the loss landscape, and the interpolation from init to the final point.

A set of points is ``coeffs @ basis``: a few flat vectors (theta, the directions) and one row of
coefficients per point, so that every kind of slice (a filter plane, a geodesic patch of the sphere,
a line between two points) is the same linear algebra. That form also gives the fast path: when the
model is an ``nn.Sequential`` whose first module is an ``nn.Linear``, the first layer is linear in
its weights, so its output at every point is ``sum_j c_j (x W_j^T + b_j)``: one matmul per basis
vector for all points, instead of one per point. The rest of the net runs batched over points by
``torch.func.vmap``; a model that does not vmap falls back to a loop over points. Which of the three
ran is returned as ``path`` ("linear-head", "vmap", "loop").

``sphere`` slices use the exponential map: with orthonormal tangent directions d1, d2 and
``rho = sqrt(a^2 + b^2)``, the point (a, b) is ``cos(rho) theta_c + w sin(rho) (a d1 + b d2) / rho``
(plus the unconstrained entries of theta, unchanged). Every point has norm w, and (a, b) are
geodesic normal coordinates in radians: a point at ``rho`` lies at angle rho from theta.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from landscape.measures.directions import directions as make_directions
from landscape.measures.functional import Layout, LossFn, SelectFn, _index, flat_params, layout_of

#: ``errors(pred, target)`` -> per-sample 0/1 error as floats (a Task's ``errors``).
ErrorsFn = LossFn
PATHS = ("linear-head", "vmap", "loop")


@dataclass(frozen=True)
class Points:
    """Points ``coeffs @ basis`` (P x dim) on a grid of ``shape``, with axis coordinates ``coords``."""

    basis: torch.Tensor
    coeffs: torch.Tensor
    coords: tuple[torch.Tensor, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.coords)

    def flat(self) -> torch.Tensor:
        return self.coeffs @ self.basis


def _axis(points: int, span: float, like: torch.Tensor) -> torch.Tensor:
    if points < 1 or not span >= 0:
        raise ValueError(f"a slice needs points >= 1 and span >= 0, got points={points}, span={span}")
    return torch.linspace(-span, span, points, dtype=like.dtype, device=like.device)


def plane(theta: torch.Tensor, dirs: torch.Tensor, points: int = 21, span: float = 1.0, kind: str = "filter",
          mask: torch.Tensor | None = None) -> Points:
    """The ``points``^dims grid of coordinates in [-span, span] along ``dirs`` (dims x dim, dims 1 or 2)
    around ``theta``: affine for ``filter`` directions, by the exponential map for ``sphere`` ones."""
    dims = dirs.shape[0]
    if dims not in (1, 2):
        raise ValueError(f"a slice has 1 or 2 directions, got {dims}")
    axes = tuple(_axis(points, span, theta) for _ in range(dims))
    grid = torch.stack([g.reshape(-1) for g in torch.meshgrid(*axes, indexing="ij")], dim=1)  # P x dims
    if kind == "filter":
        ones = torch.ones((len(grid), 1), dtype=theta.dtype, device=theta.device)
        return Points(torch.cat([theta[None], dirs]), torch.cat([ones, grid], dim=1), axes)
    if kind != "sphere":
        raise ValueError(f"unknown slice kind {kind!r} (known: filter, sphere)")
    mask = torch.ones_like(theta) if mask is None else mask.to(theta)
    on = theta * mask
    # w and the coefficients in float64: a float32 norm over 10^5 entries is off by ~1e-6 relative.
    w = torch.linalg.vector_norm(on.double())
    grid64 = grid.double()
    rho = torch.linalg.vector_norm(grid64, dim=1, keepdim=True)
    coeffs = torch.cat([torch.cos(rho), w * torch.sinc(rho / torch.pi) * grid64], dim=1).to(theta.dtype)
    rho = rho.to(theta.dtype)
    basis = torch.cat([on[None], dirs])
    free = theta - on
    if bool((free != 0).any()):
        basis = torch.cat([free[None], basis])
        coeffs = torch.cat([torch.ones_like(rho), coeffs], dim=1)
    return Points(basis, coeffs, axes)


def line(start: torch.Tensor, end: torch.Tensor, points: int = 21, lo: float = 0.0, hi: float = 1.0) -> Points:
    """``(1 - t) start + t end`` for ``points`` values of t in [lo, hi] (Goodfellow et al. 2015: init
    to final with lo=0, hi=1; beyond [0, 1] to see past the ends)."""
    if points < 1:
        raise ValueError(f"a line needs points >= 1, got {points}")
    t = torch.linspace(lo, hi, points, dtype=start.dtype, device=start.device)
    return Points(torch.stack([start, end]), torch.stack([1 - t, t], dim=1), (t,))


def _linear_head(model: nn.Module, layout: Layout) -> tuple[Layout, Layout] | None:
    """The layouts of the first layer and of the rest when the model is a Sequential starting with
    a bufferless nn.Linear whose parameters are all trainable and come first in the flat vector."""
    if not (isinstance(model, nn.Sequential) and len(model) > 1 and isinstance(model[0], nn.Linear)):
        return None
    head = [f"0.{n}" for n, _ in model[0].named_parameters()]
    if any(True for _ in model[0].buffers()) or list(layout.names[:len(head)]) != head \
            or not all(p.requires_grad for p in model[0].parameters()):
        return None
    k = len(head)
    return Layout(layout.names[:k], layout.shapes[:k]), Layout(layout.names[k:], layout.shapes[k:])


def _head_outputs(model: nn.Sequential, layouts: tuple[Layout, Layout], basis: torch.Tensor,
                  xs: torch.Tensor) -> torch.Tensor:
    """The first layer's output for each basis vector (m x samples x width): all the fast path
    spends on the first layer, whatever the number of points."""
    head = layouts[0]
    return torch.stack([F.linear(xs, *head.unflatten(b[:head.dim]).values()) for b in basis])  # weight[, bias]


class _Loaded:
    """A private copy of a module whose trainable parameters are overwritten in place at each point,
    as the one-point-at-a-time tools do: less Python per call than ``functional_call``, which swaps
    every tensor in and back out; the caller's model is never touched."""

    def __init__(self, module: nn.Module, layout: Layout):
        self.module = copy.deepcopy(module)
        self.targets = [self.module.get_parameter(n) for n in layout.names]
        self.layout = layout

    def __call__(self, flat: torch.Tensor, x: Any) -> torch.Tensor:
        for target, value in zip(self.targets, self.layout.unflatten(flat).values()):
            target.copy_(value)
        return self.module(x)


def _preds_linear_head(rest: _Loaded, head: Layout, basis: torch.Tensor, coeffs: torch.Tensor,
                       heads: torch.Tensor) -> torch.Tensor:
    # Point by point, plain matmuls beat vmap's batched ones (measured: 2x at 500 samples, 1
    # thread); each point's first-layer output is formed just before use, so one is alive at a time.
    flat_heads = heads.reshape(len(heads), -1)
    return torch.stack([rest(flat, (c @ flat_heads).reshape(heads.shape[1:]))
                        for flat, c in zip(coeffs @ basis[:, head.dim:], coeffs)])


def _preds_vmap(model: nn.Module, layout: Layout, flat: torch.Tensor, xs: Any) -> torch.Tensor:
    buffers = dict(model.named_buffers())
    return vmap(lambda p: functional_call(model, (p, buffers), (xs,)))(layout.unflatten(flat))


@torch.no_grad()
def evaluate(model: nn.Module, pts: Points, x: Any, y: torch.Tensor, loss: LossFn, errors: ErrorsFn,
             point_chunk: int = 21, sample_chunk: int = 512, method: str = "auto",
             select: SelectFn = _index) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Mean loss and mean error of the model at every point (flat, P), and the path that ran.

    ``method``: "auto" (linear-head where the model allows, else vmap, else loop), or one of PATHS.
    The loss must be a mean over samples: chunks of ``sample_chunk`` samples are weighted by size.
    Chunks of 512 samples keep a point's activations in cache (measured 20% faster than 4096 on
    the MNIST MLP, 1 thread).
    """
    layout = layout_of(model)
    if not layout.dim:
        raise ValueError("the model has no trainable parameters to slice along")
    if point_chunk < 1 or sample_chunk < 1:
        raise ValueError(f"chunks must be positive, got point_chunk={point_chunk}, sample_chunk={sample_chunk}")
    layouts = _linear_head(model, layout) if isinstance(x, torch.Tensor) else None
    if method == "auto":
        method = "linear-head" if layouts is not None else "vmap"
    elif method not in PATHS or (method == "linear-head" and layouts is None):
        raise ValueError(f"method {method!r} is not available for this model (known: auto, {', '.join(PATHS)})")
    rest = _Loaded(model[1:], layouts[1]) if method == "linear-head" else None
    looped: _Loaded | None = None
    n = len(y)
    losses = torch.zeros(len(pts.coeffs), dtype=pts.coeffs.dtype, device=pts.coeffs.device)
    errs = torch.zeros_like(losses)
    for start in range(0, n, sample_chunk):
        rows = torch.arange(start, min(start + sample_chunk, n), device=y.device)
        xs, ys, weight = select(x, rows), y[rows], len(rows) / n
        heads = _head_outputs(model, layouts, pts.basis, xs) if method == "linear-head" else None
        for p0 in range(0, len(pts.coeffs), point_chunk):
            c = pts.coeffs[p0:p0 + point_chunk]
            if method == "linear-head":
                preds = _preds_linear_head(rest, layouts[0], pts.basis, c, heads)
            elif method == "vmap":
                try:
                    preds = _preds_vmap(model, layout, c @ pts.basis, xs)
                except RuntimeError:  # an op without a batching rule, data-dependent control flow
                    method = "loop"
            if method == "loop":
                looped = looped or _Loaded(model, layout)
                preds = torch.stack([looped(f, xs) for f in c @ pts.basis])
            losses[p0:p0 + len(c)] += weight * torch.stack([loss(pr, ys) for pr in preds])
            errs[p0:p0 + len(c)] += weight * torch.stack([errors(pr, ys).mean() for pr in preds])
    return losses, errs, method


@dataclass(frozen=True)
class Slice:
    """A slice's values on its grid (shape ``points``^dims; ``coords`` per axis). ``test_*`` are None
    without test data. ``directions`` (dims x dim) regenerate the slice with :func:`plane`."""

    kind: str
    coords: tuple[torch.Tensor, ...]
    directions: torch.Tensor | None
    train_loss: torch.Tensor
    train_err: torch.Tensor
    test_loss: torch.Tensor | None
    test_err: torch.Tensor | None
    path: str


def evaluate_slice(model: nn.Module, pts: Points, kind: str, dirs: torch.Tensor | None,
                   train: tuple[Any, torch.Tensor], test: tuple[Any, torch.Tensor] | None,
                   loss: LossFn, errors: ErrorsFn, **options: Any) -> Slice:
    """Train (and test) loss and error at ``pts``, reshaped to its grid. ``options`` go to :func:`evaluate`."""
    train_loss, train_err, path = evaluate(model, pts, *train, loss, errors, **options)
    test_loss = test_err = None
    if test is not None:
        test_loss, test_err, path = evaluate(model, pts, *test, loss, errors, **{**options, "method": path})
        test_loss, test_err = test_loss.reshape(pts.shape), test_err.reshape(pts.shape)
    return Slice(kind, pts.coords, dirs, train_loss.reshape(pts.shape), train_err.reshape(pts.shape),
                 test_loss, test_err, path)


def landscape_slice(model: nn.Module, train: tuple[Any, torch.Tensor], test: tuple[Any, torch.Tensor] | None,
                    loss: LossFn, errors: ErrorsFn, seed: int, dims: int = 2, points: int = 21,
                    span: float = 1.0, kind: str = "filter", mask: torch.Tensor | None = None,
                    include_1d: bool = False, **options: Any) -> Slice:
    """A ``dims``-D slice around the model's parameters along seeded directions of ``kind``
    (``seed``: :func:`landscape.measures.directions.direction_seed` of the slice and cell seeds)."""
    theta = flat_params(model)
    mask = torch.ones_like(theta) if mask is None else mask
    dirs = make_directions(kind, model, seed, mask, dims, include_1d)
    return evaluate_slice(model, plane(theta, dirs, points, span, kind, mask), kind, dirs, train, test,
                          loss, errors, **options)


def interpolation(model: nn.Module, start: torch.Tensor, train: tuple[Any, torch.Tensor],
                  test: tuple[Any, torch.Tensor] | None, loss: LossFn, errors: ErrorsFn, points: int = 21,
                  lo: float = 0.0, hi: float = 1.0, **options: Any) -> Slice:
    """The 1-D slice from ``start`` (the cell's init, flat) to the model's parameters (Goodfellow et al.)."""
    return evaluate_slice(model, line(start, flat_params(model), points, lo, hi), "interpolation", None,
                          train, test, loss, errors, **options)


@torch.no_grad()
def slice_path(model: nn.Module, x: Any, select: SelectFn = _index) -> str:
    """The path :func:`evaluate` takes under ``method="auto"`` on ``model`` with inputs like ``x``, known
    before a slice is evaluated (so that a cube can record it up front): "linear-head" from the model's
    structure, else "vmap" when two points of one sample run under vmap, else "loop"."""
    layout = layout_of(model)
    if isinstance(x, torch.Tensor) and _linear_head(model, layout) is not None:
        return "linear-head"
    theta = flat_params(model)
    try:
        _preds_vmap(model, layout, torch.stack([theta, theta]), select(x, torch.arange(1)))
    except RuntimeError:
        return "loop"
    return "vmap"
