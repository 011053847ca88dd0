"""The kernel-to-rich transition of Dichotomy runs (Lyu et al. 2024) as plain numbers from a cube.

Theory: from init alpha * theta_bar with weight decay lambda, gradient flow stays in the kernel
regime until t ~ log(alpha)/lambda and then converges to a max-margin KKT point. GD with step eta
runs continuous time eta per step, so the prediction in steps is t_g = log(alpha)/(eta lambda).
Measured here, per run, from curves the tasks record (landscape.tasks.dichotomy):

- the cosine crossover: the eval from which on the predictor's cosine to the rich reference
  exceeds its cosine to the kernel reference (after an eval where the kernel one was ahead);
- the metric jump: the eval from which on the test metric is closer to the rich reference's test
  value than to the kernel reference's (again after being closer to the kernel one): i.e. when it
  crosses the midpoint of the two levels for good.
"From which on" is the last crossing: a large-step run can cross back and forth in its first few
steps (a catapult), which is not the transition.

The metric jump is the transition ``landscape info``, the figures and the README report: the cube
stores it per cell as ``t_transition`` (with its definition in the variable's attrs), since
``t_gen``'s fixed accuracy level misses runs that generalize to below it (modular-mlp's reduced
runs end at 87-93% test accuracy).

Pure numpy/xarray (no torch), so plots can use it on any cube.
"""
from __future__ import annotations

import json
import math

import numpy as np
import xarray as xr

from collections.abc import Mapping

from landscape.read.dynamics import loglog_slope
from landscape.cube.schema import STATUS_DONE, TRANSITION, TRANSITION_DEFINITION, reference_metric, reference_predictors

#: Cube variables of a Dichotomy run: the cosine curves to the two references.
COSINES = ("cos_kernel_curve", "cos_rich_curve")
MEASURES = ("crossover", "jump")


def cell_transition(eval_steps: np.ndarray, curve: np.ndarray, values: Mapping[str, float], metric: str) -> float:
    """One cell's t_transition from its test-metric curve and its references' levels ``values``."""
    return float(metric_jump(eval_steps, curve, values[f"kernel_{metric}"], values[f"rich_{metric}"]))


def is_dichotomy(cube: xr.Dataset) -> bool:
    """Whether the cube compares its runs with kernel and rich references (attr ``reference_predictors``)."""
    return {"kernel", "rich"} <= set(reference_predictors(cube.attrs, set(cube.data_vars)))


def test_metric(cube: xr.Dataset) -> str:
    """The test metric compared with the references: the loss where the cube has the references'
    test losses (regression), else the error (classification)."""
    return "test_loss" if "kernel_test_loss" in cube else "test_err"


def predicted_transition(alpha: np.ndarray | float, lr: np.ndarray | float, wd: np.ndarray | float) -> np.ndarray:
    """t_g = log(alpha)/(lr wd) in steps; inf without weight decay."""
    with np.errstate(divide="ignore"):
        return np.log(alpha) / (np.asarray(lr, dtype=float) * np.asarray(wd, dtype=float))


def transition_step(steps: np.ndarray, to_kernel: np.ndarray, to_rich: np.ndarray) -> np.ndarray:
    """The eval step from which on a run stays nearer the rich reference than the kernel one, after
    an earlier eval at which it was nearer the kernel one; along the last axis, NaN where the run
    was never on the kernel side or does not end on the rich side.

    ``to_kernel`` / ``to_rich`` are distances to each reference at each eval (NaN: no information,
    e.g. the cosine of a zero predictor at step 0, or evals after a cell stopped); evals without
    information, or equally near both, are on neither side.
    """
    to_kernel, to_rich = np.asarray(to_kernel, dtype=float), np.asarray(to_rich, dtype=float)
    side = np.where(to_rich < to_kernel, 1, np.where(to_kernel < to_rich, -1, 0))  # +1 rich, -1 kernel
    index = np.arange(side.shape[-1])
    last_informed = np.max(np.where(side != 0, index, -1), axis=-1)
    last_kernel = np.max(np.where(side == -1, index, -1), axis=-1)
    ends_rich = np.take_along_axis(side, np.maximum(last_informed, 0)[..., None], axis=-1)[..., 0] == 1
    entered = (side == 1) & (index > last_kernel[..., None])
    ok = ends_rich & (last_kernel >= 0)
    return np.where(ok, np.asarray(steps, dtype=float)[np.argmax(entered, axis=-1)], np.nan)


def cosine_crossover(steps: np.ndarray, cos_kernel: np.ndarray, cos_rich: np.ndarray) -> np.ndarray:
    """The eval step from which on cos to the rich reference is above cos to the kernel one (see transition_step)."""
    return transition_step(steps, 1.0 - np.asarray(cos_kernel), 1.0 - np.asarray(cos_rich))


def metric_jump(steps: np.ndarray, curve: np.ndarray, kernel_level: np.ndarray | float,
                rich_level: np.ndarray | float) -> np.ndarray:
    """The eval step at which ``curve`` crosses, for good, from the kernel level's side of their midpoint to the rich one's."""
    curve = np.asarray(curve, dtype=float)
    k = np.asarray(kernel_level, dtype=float)[..., None]
    r = np.asarray(rich_level, dtype=float)[..., None]
    return transition_step(steps, np.abs(curve - k), np.abs(curve - r))


def transitions(cube: xr.Dataset) -> xr.Dataset:
    """Per cell: ``predicted`` t_g, the measured ``crossover`` and ``jump`` steps (NaN for cells not
    done or never crossing), and ``lr_wd`` (eta lambda), over the cube's cell dims."""
    train = json.loads(cube.attrs["spec"])["train"]
    metric = test_metric(cube)
    full = cube
    cube = cube[[*COSINES, f"{metric}_curve", f"kernel_{metric}", f"rich_{metric}", "status"]].load()
    lr = cube["lr"] if "lr" in cube.dims else xr.DataArray(float(train["lr"]))
    wd = cube["wd"] if "wd" in cube.dims else xr.DataArray(float(train["weight_decay"]))
    done = cube["status"] == STATUS_DONE
    steps = cube["step"].values
    crossover = xr.apply_ufunc(lambda k, r: cosine_crossover(steps, k, r), cube[COSINES[0]], cube[COSINES[1]],
                               input_core_dims=[["step"], ["step"]])
    # The jump as the cube stores it (cubes made before t_transition: computed the same way).
    jump = full[TRANSITION].load() if TRANSITION in full else xr.apply_ufunc(
        lambda c, k, r: metric_jump(steps, c, k, r), cube[f"{metric}_curve"], cube[f"kernel_{metric}"],
        cube[f"rich_{metric}"], input_core_dims=[["step"], [], []])
    lr_wd = (lr * wd).broadcast_like(done)
    out = xr.Dataset({
        "predicted": xr.apply_ufunc(predicted_transition, cube["alpha"], lr, wd).broadcast_like(done),
        "crossover": crossover.where(done),
        "jump": jump.where(done),
        "lr_wd": lr_wd,
    })
    out.attrs["metric"] = metric
    return out


def cube_transition(cube: xr.Dataset) -> xr.DataArray | None:
    """The cube's t_transition over its cell dims, measured the same way for Dichotomy cubes made
    before it was stored; None for other cubes."""
    if TRANSITION in cube:
        return cube[TRANSITION]
    if not (is_dichotomy(cube) and reference_metric(cube.data_vars)):
        return None
    return transitions(cube)["jump"].transpose(*cube["status"].dims).assign_attrs(definition=TRANSITION_DEFINITION)


def fit(tr: xr.Dataset, measure: str) -> dict[str, float]:
    """How a measured transition follows the prediction, over every run of ``transitions``.

    ``slope`` / ``intercept``: least squares of log10 measured on log10 predicted (slope 1 = the
    predicted scaling). ``alpha_c``: the norm scale at which the transition happens if it follows
    t = log(alpha/alpha_c)/(eta lambda), i.e. the geometric mean of alpha exp(-eta lambda t).
    """
    predicted, measured, lr_wd = (tr[name].values.ravel() for name in ("predicted", measure, "lr_wd"))
    slope, intercept = loglog_slope(predicted, measured)
    ok = np.isfinite(predicted) & np.isfinite(measured)
    log_alpha = predicted * lr_wd
    alpha_c = float(np.exp(np.mean(log_alpha[ok] - lr_wd[ok] * measured[ok]))) if ok.any() else math.nan
    return {"slope": slope, "intercept": intercept, "alpha_c": alpha_c, "runs": int(ok.sum())}
