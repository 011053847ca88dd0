"""Curvature in every cell: the measurement hook's measure of the train-loss Hessian, ambient and reduced.

Built from ``[measure]`` (``hessian_top``, ``hessian_trace``, ``density``), it fills per kind
(``ambient``: the Hessian H in all trainable parameters; ``reduced``: the Riemannian Hessian on the
sphere ``||theta|| = w`` of the task's constrained parameters, ``P (H - (theta . grad L / w^2) I) P``):

- ``hessian_top_<kind>`` over ``eigen`` (largest first), ``hessian_residual_<kind>`` (||Hv - lambda v||
  of each) and ``hessian_iterations_<kind>`` (Lanczos steps);
- ``hessian_trace_<kind>`` and ``hessian_trace_<kind>_stderr`` (Hutchinson, ``trace_probes`` probes);
- ``hessian_density_<kind>`` over ``eigenvalue`` (SLQ, :data:`DENSITY_GRID`);
- ``stability_threshold``: 2/eta for sgd, (2 + 2 beta1)/((1 - beta1) eta) for adam/adamw (Cohen et
  al. 2021, 2022), and for adam/adamw with ``hessian_top`` ``adam_sharpness``, lambda_max(P^-1 H)
  with Adam's preconditioner P = sqrt(v_hat) + eps, the quantity that threshold bounds.

Each cell is measured on its whole training set (``measure.samples``: a subset fixed by the cell's
seed, the same at every eval), with the task's loss, seeded by the cell's seed, on the cell's device.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from landscape.cube.schema import Quantity
from landscape.dtypes import move
from landscape.measures.cell import KINDS, Curvature, curvature
from landscape.measures.functional import FlatLoss, flat_params
from landscape.measures.hessian import (adam_preconditioner_of_state, adam_threshold, ambient, preconditioned,
                                       sgd_threshold, top_eigenvalues)
from landscape.measures.hook import MeasurePoint
from landscape.spec import MeasureConfig

#: Optimizers whose threshold bounds the preconditioned sharpness (Cohen et al. 2022).
ADAPTIVE = ("adam", "adamw")
#: SLQ: probes and Lanczos steps per probe (capped by the parameter count), Ghorbani et al.'s scale.
DENSITY_PROBES = 4
DENSITY_STEPS = 80
#: The density's eigenvalue grid, the same for every cube: lambda = DENSITY_SCALE sinh(u) for u
#: uniform on [-asinh(DENSITY_MAX / DENSITY_SCALE), +asinh(...)] in DENSITY_POINTS points, linear
#: within ~DENSITY_SCALE of 0 and logarithmic beyond, so one grid shows both the bulk near 0 and
#: outliers up to +-DENSITY_MAX. Each quadrature node is broadened by a Gaussian of width
#: DENSITY_WIDTH in u (nodes beyond the grid sit at its ends), and the density is normalized so
#: that ``np.trapezoid(density, eigenvalue) == 1``.
DENSITY_SCALE = 1e-3
DENSITY_MAX = 1e4
DENSITY_POINTS = 401
DENSITY_WIDTH = 0.15
_U = np.linspace(-math.asinh(DENSITY_MAX / DENSITY_SCALE), math.asinh(DENSITY_MAX / DENSITY_SCALE), DENSITY_POINTS)
DENSITY_GRID = DENSITY_SCALE * np.sinh(_U)

_LONG = {"ambient": "ambient Hessian H of the train loss",
         "reduced": "reduced (Riemannian Hessian on the sphere ||theta|| = w: P(H - (theta.grad L/w^2) I)P)"}


def density_on_grid(nodes: torch.Tensor, weights: torch.Tensor) -> np.ndarray:
    """SLQ quadrature (``nodes``, ``weights`` per probe, NaN-padded) as a density on DENSITY_GRID."""
    found = ~nodes.isnan()
    lam, wt = nodes[found].numpy(), weights[found].numpy()
    u = np.arcsinh(np.clip(lam, DENSITY_GRID[0], DENSITY_GRID[-1]) / DENSITY_SCALE)
    in_u = (wt[None, :] * np.exp(-0.5 * ((_U[:, None] - u[None, :]) / DENSITY_WIDTH) ** 2)).sum(1)
    in_lambda = in_u / (DENSITY_SCALE * np.cosh(_U))  # p(lambda) = p(u) du/dlambda
    return in_lambda / np.trapezoid(in_lambda, DENSITY_GRID)


class CurvatureMeasure:
    """The CellMeasure of ``[measure]``'s Hessian keys (see the module docstring)."""

    def __init__(self, config: MeasureConfig, optimizer: str):
        self.config, self.adaptive = config, optimizer in ADAPTIVE
        self.every_eval = config.every == "eval"
        curve = self.every_eval
        q: list[Quantity] = []
        for kind in KINDS:
            long = _LONG[kind]
            if config.hessian_top:
                q += [Quantity(f"hessian_top_{kind}", f"top eigenvalues of the {long}", ("eigen",), curve=curve),
                      Quantity(f"hessian_residual_{kind}", f"Lanczos residual ||Hv - lambda v|| of the {long}",
                               ("eigen",), curve=curve),
                      Quantity(f"hessian_iterations_{kind}", f"Lanczos iterations for the {long}", curve=curve)]
            if config.hessian_trace:
                q += [Quantity(f"hessian_trace_{kind}", f"trace (Hutchinson) of the {long}", curve=curve),
                      Quantity(f"hessian_trace_{kind}_stderr", f"standard error of the trace of the {long}", curve=curve)]
            if config.density:
                q.append(Quantity(f"hessian_density_{kind}", f"spectral density (SLQ) of the {long}", ("eigenvalue",),
                                  curve=curve))
        threshold = "(2 + 2 beta1) / ((1 - beta1) lr), Adam's" if self.adaptive else "2 / lr, gradient descent's"
        q.append(Quantity("stability_threshold", f"{threshold} edge-of-stability threshold", curve=curve))
        if self.adaptive and config.hessian_top:
            q.append(Quantity("adam_sharpness", "preconditioned sharpness lambda_max(P^-1 H), ambient, "
                              "P = sqrt(v_hat) + eps of Adam", curve=curve))
        self.quantities = tuple(q)
        self.coords: dict[str, np.ndarray] = {}
        if config.hessian_top:
            self.coords["eigen"] = np.arange(config.hessian_top)
        if config.density:
            self.coords["eigenvalue"] = DENSITY_GRID

    def __call__(self, model: nn.Module, at: MeasurePoint) -> dict[str, np.ndarray]:
        c = self.config
        n = len(at.split.train_y)
        rows = torch.arange(n)
        if 0 < c.samples < n:
            rows = torch.randperm(n, generator=torch.Generator().manual_seed(at.seed))[:c.samples].sort().values
        x, y = at.task.select(at.split.train_x, rows), at.split.train_y[rows]
        if at.device.type != "cpu":
            model, x, y = copy.deepcopy(model).to(at.device), move(x, at.device), move(y, at.device)
        found = curvature(model, x, y, at.task.loss, at.task.constrained_parameters(model), at.seed,
                          top=c.hessian_top, trace_probes=c.trace_probes if c.hessian_trace else 0,
                          density_probes=DENSITY_PROBES if c.density else 0, density_steps=DENSITY_STEPS,
                          select=at.task.select)
        out: dict[str, np.ndarray] = {}
        for kind, cv in found.items():
            out.update(_kind_values(kind, cv, c.hessian_top))
        t = at.train
        out["stability_threshold"] = np.array(adam_threshold(t.lr, t.beta1) if self.adaptive else sgd_threshold(t.lr))
        if self.adaptive and c.hessian_top:
            diag = adam_preconditioner_of_state(at.optimizer_state(), model, t.beta2)
            op = ambient(FlatLoss(model, x, y, at.task.loss, select=at.task.select), flat_params(model))
            out["adam_sharpness"] = np.array(float(top_eigenvalues(preconditioned(op, diag), 1, seed=at.seed).values[0]))
        return out


def _padded(values: torch.Tensor, k: int) -> np.ndarray:
    """k values, NaN past those found (Lanczos found an invariant subspace of fewer dimensions)."""
    out = np.full(k, np.nan)
    out[:len(values)] = values.detach().double().cpu().numpy()
    return out


def _kind_values(kind: str, cv: Curvature, k: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    if cv.eigen is not None:
        out[f"hessian_top_{kind}"] = _padded(cv.eigen.values, k)
        out[f"hessian_residual_{kind}"] = _padded(cv.eigen.residuals, k)
        out[f"hessian_iterations_{kind}"] = np.array(cv.eigen.iterations)
    if cv.trace is not None:
        out[f"hessian_trace_{kind}"] = np.array(cv.trace.estimate)
        out[f"hessian_trace_{kind}_stderr"] = np.array(cv.trace.stderr)
    if cv.density is not None:
        out[f"hessian_density_{kind}"] = density_on_grid(cv.density.nodes, cv.density.weights)
    return out


def curvature_measures(config: MeasureConfig, optimizer: str) -> list[CurvatureMeasure]:
    """The run's curvature measure, when ``[measure]`` asks for any Hessian quantity."""
    if not (config.hessian_top or config.hessian_trace or config.density):
        return []
    return [CurvatureMeasure(config, optimizer)]
