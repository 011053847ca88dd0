"""Seeded random directions in parameter space, as flat vectors in the layout of
:mod:`landscape.measures.functional`.

- ``filter`` (Li et al. 2018): Gaussian, then each filter (a row of a weight matrix, an output
  channel of a conv: index 0 of every parameter of 2 or more dimensions) rescaled to the norm of the
  matching filter of the weights. 1-D parameters (biases, normalization scales and shifts) are
  zeroed, or with ``include_1d`` set to the weights themselves, as Li et al.'s ``ignore='biasbn'``
  switch does.
- ``sphere``: Gaussian on the constrained entries, projected onto the tangent space of the sphere at
  theta (orthogonal to theta's constrained part) and orthonormalized; unconstrained entries are 0,
  so a sphere slice moves only the parameters that define w.

Both draw on the CPU in float64 from a generator seeded by :func:`direction_seed`, so a cell's
directions depend only on the slice seed and the cell's own seed, whatever the device or dtype.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from landscape.measures.functional import flat_params, trainable

DIRECTION_KINDS = ("filter", "sphere")


def direction_seed(slice_seed: int, cell_seed: int) -> int:
    """One 63-bit seed from the pair, mixed by NumPy's SeedSequence (no collisions from adding)."""
    return int(np.random.SeedSequence([slice_seed, cell_seed]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def filter_directions(model: nn.Module, seed: int, count: int = 2, include_1d: bool = False) -> torch.Tensor:
    """``count`` filter-normalized Gaussian directions (count x dim), in the parameters' dtype/device."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(count):
        parts = []
        for p in trainable(model).values():
            w = p.detach().double().cpu()
            if w.dim() <= 1:
                d = w.clone() if include_1d else torch.zeros_like(w)
            else:
                d = torch.randn(w.shape, generator=gen, dtype=torch.float64)
                axes = tuple(range(1, w.dim()))
                d = d * (torch.linalg.vector_norm(w, dim=axes, keepdim=True)
                         / torch.linalg.vector_norm(d, dim=axes, keepdim=True))
            parts.append(d.reshape(-1))
        rows.append(torch.cat(parts))
    theta = flat_params(model)
    return torch.stack(rows).to(dtype=theta.dtype, device=theta.device)


def sphere_directions(model: nn.Module, seed: int, mask: torch.Tensor, count: int = 2) -> torch.Tensor:
    """``count`` orthonormal unit directions (count x dim) tangent at theta to the sphere of the
    entries ``mask`` marks (1 = constrained), zero elsewhere."""
    theta = flat_params(model)
    on = (theta * mask).double().cpu()
    keep = mask.double().cpu()
    gen = torch.Generator().manual_seed(seed)
    raw = torch.randn((count, len(theta)), generator=gen, dtype=torch.float64) * keep
    basis = torch.linalg.qr(torch.cat([on[:, None], raw.T], dim=1)).Q[:, 1:].T  # theta first: the rest is tangent
    return basis.to(dtype=theta.dtype, device=theta.device)


def directions(kind: str, model: nn.Module, seed: int, mask: torch.Tensor, count: int = 2,
               include_1d: bool = False) -> torch.Tensor:
    """Directions of ``kind`` (one of DIRECTION_KINDS)."""
    if kind == "filter":
        return filter_directions(model, seed, count, include_1d)
    if kind == "sphere":
        return sphere_directions(model, seed, mask, count)
    raise ValueError(f"unknown direction kind {kind!r} (known: {', '.join(DIRECTION_KINDS)})")
