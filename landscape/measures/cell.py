"""One call per cell for the measurement hook: ambient and reduced curvature of the train loss."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from landscape.measures.functional import FlatLoss, LossFn, SelectFn, _index, constrained_mask, flat_params
from landscape.measures.hessian import (Density, Eigen, Trace, adam_preconditioner, ambient, preconditioned,
                                       reduced, spectral_density, top_eigenvalues, trace)

#: The two Hessians every cell reports, as the cube and the docs name them.
KINDS = ("ambient", "reduced")


@dataclass(frozen=True)
class Curvature:
    """What was asked of one operator; None where it was off."""

    eigen: Eigen | None
    trace: Trace | None
    density: Density | None


def curvature(model: nn.Module, x: Any, y: torch.Tensor, loss: LossFn, constrained: list[torch.Tensor] | None,
              seed: int, top: int = 1, trace_probes: int = 0, density_probes: int = 0, density_steps: int = 80,
              density_grid: torch.Tensor | None = None, max_iter: int = 100, tol: float = 1e-6,
              chunk: int = 4096, select: SelectFn = _index) -> dict[str, Curvature]:
    """Top-``top`` eigenvalues, trace (``trace_probes`` > 0) and SLQ density (``density_probes`` > 0) of
    the ambient and the reduced Hessian of ``loss`` at the model's parameters on ``(x, y)``, keyed by
    KINDS. ``constrained``: the task's constrained parameters (None: all). The model is put in eval
    mode for the measurement and restored."""
    was_training = model.training
    model.eval()
    try:
        fl = FlatLoss(model, x, y, loss, chunk, select)
        theta = flat_params(model)
        ops = {"ambient": ambient(fl, theta), "reduced": reduced(fl, theta, constrained_mask(model, constrained))}
        return {name: Curvature(
            top_eigenvalues(op, top, max_iter, tol, seed) if top else None,
            trace(op, trace_probes, seed) if trace_probes else None,
            spectral_density(op, density_probes, density_steps, seed, grid=density_grid) if density_probes else None,
        ) for name, op in ops.items()}
    finally:
        model.train(was_training)


def adam_sharpness(model: nn.Module, optimizer: torch.optim.Optimizer, x: Any, y: torch.Tensor, loss: LossFn,
                   seed: int, max_iter: int = 100, tol: float = 1e-6, chunk: int = 4096,
                   select: SelectFn = _index) -> Eigen:
    """Adam's preconditioned sharpness lambda_max(P^-1 H) (Cohen et al. 2022) of the ambient Hessian,
    to compare with :func:`landscape.measures.hessian.adam_threshold`."""
    was_training = model.training
    model.eval()
    try:
        op = ambient(FlatLoss(model, x, y, loss, chunk, select), flat_params(model))
        return top_eigenvalues(preconditioned(op, adam_preconditioner(optimizer, model)), 1, max_iter, tol, seed)
    finally:
        model.train(was_training)
