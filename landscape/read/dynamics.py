"""Grokking dynamics as plain numbers: when a run fits and generalizes, and when the LU picture
says it should. Pure numpy, no training code, so plots and analysis can use it on any cube."""
from __future__ import annotations

import json
import math

import numpy as np
import xarray as xr

from landscape.cube.schema import STATUS_DONE
from landscape.read.analysis import critical_norm, goldilocks_zone, seed_summary
from landscape.errors import UserError
from landscape.cube.schema import task_ref

#: Per-step multiplicative norm decay of each optimizer's weight-decay rule (with zero loss gradient).
DECAY_RULES = ("adamw", "sgd")


def first_reach(steps: np.ndarray, err_curve: np.ndarray, level: float) -> np.ndarray:
    """First eval step at which accuracy 1 - err is at least ``level``, along the last axis.

    NaN where the level is never reached (or the curve is all NaN): never a made-up number.
    """
    err = np.asarray(err_curve, dtype=float)
    hit = (1.0 - err) >= level - 1e-12  # tolerance: 1 - 0.05 is not exactly 0.95 in floats
    first = np.argmax(hit, axis=-1)
    reached = hit.any(axis=-1)
    return np.where(reached, np.asarray(steps, dtype=float)[first], np.nan)


def predict_delay(w_init: float, w_c: float, gamma: float, lr: float, rule: str = "adamw") -> float:
    """Steps for weight decay alone to shrink the norm from ``w_init`` to the critical ``w_c``.

    Both decoupled AdamW (p <- p (1 - lr gamma)) and SGD with L2 decay (p <- p - lr gamma p on top of
    the gradient step) multiply every parameter by (1 - lr gamma) per step, so with zero loss
    gradient the norm after t steps is w_init (1 - lr gamma)^t and the delay is
    ln(w_c / w_init) / ln(1 - lr gamma) ~ ln(w_init / w_c) / (lr gamma): Omnigrok's t ~ ln(w0/wc)/gamma
    in optimizer steps. 0 when the run already starts inside (w_init <= w_c); inf with no decay;
    NaN when lr gamma >= 1, where one step flips or zeroes the weights instead of shrinking them.
    """
    if rule not in DECAY_RULES:
        raise ValueError(f"no closed-form norm decay for optimizer {rule!r} (known: {', '.join(DECAY_RULES)})")
    if w_init <= w_c:
        return 0.0
    if gamma <= 0:
        return math.inf
    if lr * gamma >= 1:
        return math.nan
    return math.log(w_c / w_init) / math.log1p(-lr * gamma)


def loglog_slope(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares slope and intercept of log10 y against log10 x over the finite positive pairs.

    NaN, NaN with fewer than two usable points.
    """
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 2 or np.ptp(x[ok]) == 0:
        return math.nan, math.nan
    slope, intercept = np.polyfit(np.log10(x[ok]), np.log10(y[ok]), 1)
    return float(slope), float(intercept)


def norm_at(landscape: xr.Dataset, per_value: xr.DataArray, value: float) -> float:
    """A norm given per axis value of a landscape cube (w_c, w_hi, ...), read at ``value``.

    The exact row when the grid has it; otherwise interpolated linearly in (log value, log norm)
    between the neighbouring rows. A value outside the grid is a UserError: extrapolating the
    landscape would be a guess.
    """
    axis = landscape.attrs["axis"]
    grid = landscape[axis].values.astype(float)
    ok = np.isfinite(per_value.values)
    if not ok.any():
        raise UserError(f"the landscape cube has no finished row to take {per_value.name or 'the norm'} from")
    grid, w = grid[ok], per_value.values[ok]
    if not grid.min() <= value <= grid.max():
        raise UserError(f"{axis} = {value:g} lies outside the landscape cube's {axis} grid [{grid.min():g}, {grid.max():g}]")
    order = np.argsort(grid)
    return float(np.exp(np.interp(np.log(value), np.log(grid[order]), np.log(w[order]))))


def delay_prediction(dyn: xr.Dataset, landscape: xr.Dataset) -> xr.Dataset:
    """Predicted and measured generalization delays of every run of a dynamics cube.

    ``predicted`` = :func:`predict_delay` from the run's initial norm (its ``w``), the landscape's
    critical norm w_c (argmin of the reduced test loss) at the run's axis value, its weight decay,
    learning rate and optimizer's decay rule. ``predicted_edge`` does the same with w_hi, the upper
    edge of the Goldilocks zone where the reduced test error is <= 1 - level (the dynamics cube's
    eval level), i.e. the norm at which the LU picture says test accuracy first reaches the level
    that defines t_gen. ``measured`` = ``t_gen`` (NaN where the run never generalized). All in steps.
    """
    if task_ref(dyn.attrs) != task_ref(landscape.attrs):
        raise UserError(f"the landscape cube is for task {landscape.attrs.get('task')!r}, "
                        f"the dynamics cube for {dyn.attrs.get('task')!r}")
    spec = json.loads(dyn.attrs["spec"])
    train, level = spec["train"], spec["eval"]["level"]
    if train["optimizer"] not in DECAY_RULES:
        raise UserError(f"no closed-form norm decay for optimizer {train['optimizer']!r} "
                        f"(the prediction needs one of {', '.join(DECAY_RULES)})")
    axis = dyn.attrs["axis"]
    wd = dyn["wd"] if "wd" in dyn.dims else xr.DataArray(train["weight_decay"])
    lr = dyn["lr"] if "lr" in dyn.dims else xr.DataArray(train["lr"])
    references = {
        "w_c": seed_summary(critical_norm(landscape), "w_c"),
        "w_hi": seed_summary(goldilocks_zone(landscape, threshold=max(1.0 - level, 1e-6), var="test_err"), "w_hi"),
    }
    out = xr.Dataset(attrs={"axis": axis, "level": level,
                            "definition": "predicted = ln(w_ref / w_init) / ln(1 - lr wd); measured = t_gen"})
    for (name, per_value), target in zip(references.items(), ("predicted", "predicted_edge")):
        ref = xr.DataArray([norm_at(landscape, per_value, float(v)) for v in dyn[axis].values],
                           dims=axis, coords={axis: dyn[axis]})
        out[name] = ref
        out[target] = xr.apply_ufunc(predict_delay, dyn["w"], ref, wd, lr, kwargs={"rule": train["optimizer"]},
                                     vectorize=True)
    out["measured"] = dyn["t_gen"].where(dyn["status"] == STATUS_DONE).compute()
    return out
