"""The norm constraint that defines the reduced landscape.

Omnigrok holds the global L2 norm of *all* parameters (weights, biases, embeddings) fixed by
rescaling them with one common factor after every optimizer step. This module provides that
projection and a wrapper that adds it to any ``torch.optim.Optimizer``, in the spirit of
``optax.chain(adamw, project_to_sphere)``.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import torch


def global_norm(params: Iterable[torch.Tensor]) -> torch.Tensor:
    """L2 norm over all given tensors taken together, as a 0-d tensor."""
    tensors = [p.detach() for p in params]
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))


@torch.no_grad()
def project_to_sphere(params: Iterable[torch.Tensor], target: float) -> float:
    """Rescale ``params`` in place by one common factor so that their global norm is ``target``.

    Returns the factor applied. A zero or non-finite norm cannot be projected and is left
    alone (factor ``nan``), so the caller sees the divergence in its loss instead.
    """
    tensors = [p for p in params]
    norm = float(global_norm(tensors))
    if not (norm > 0.0 and math.isfinite(norm)):
        return float("nan")
    factor = target / norm
    torch._foreach_mul_(tensors, factor)
    return factor


class NormConstrained:
    """Wraps an optimizer so that every ``step()`` ends on the sphere ``global_norm == target``.

    The inner optimizer's state (Adam moments, momentum buffers) is not touched; everything
    other than ``step`` is delegated to it, so schedulers and ``zero_grad`` work as usual.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, params: Iterable[torch.Tensor], target: float):
        if not target > 0:
            raise ValueError(f"norm target must be positive, got {target}")
        self.optimizer = optimizer
        self.params = list(params)
        self.target = float(target)

    def step(self, closure: Any = None) -> Any:
        loss = self.optimizer.step(closure)
        project_to_sphere(self.params, self.target)
        return loss

    def __getattr__(self, name: str) -> Any:
        return getattr(self.optimizer, name)
