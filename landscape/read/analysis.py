"""Summaries of a reduced landscape: pure functions from a cube to xarray results, no plotting.

Only finished cells (status 1) count: pending and diverged cells read as NaN, so a partly
computed cube gives answers from what is done. Results keep every dim of the cube other than the
ones they reduce (``w``, and the task's axis for :func:`critical_data_size`), normally ``seed``.
Where ``seed`` is kept, each result ``x`` also comes as ``x_mean`` and ``x_std`` over seeds
(NaN-skipping; std with ddof=1, so NaN when only one seed has a value).

Each cube has a figure metric (:func:`metric_of`): "err" (1 - accuracy, the default) or "loss",
as its task chose (``Task.figure_metric``), with contour levels (:func:`levels_of`). The summaries
read ``test_<metric>`` unless told otherwise. An error is interpolated linearly, a loss in log10:
losses span decades, and the paper draws them on log axes.

This module imports xarray, numpy and the error type only: plots and ``landscape info`` use it
without pulling in torch.
"""
from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr

from landscape.errors import UserError
from landscape.cube.schema import (FIGURE_METRICS, KIND_LANDSCAPE, METRICS, ROLE_REPRESENTATION, STATUS_DIVERGED,
                                   STATUS_DONE, STATUS_PENDING, axis_role, checked_levels, cube_kind, validate_level)

#: Test error at or below which a cell counts as generalizing, for the Goldilocks zone.
GOLDILOCKS_THRESHOLD = 0.2
#: Test loss within this factor of the best at the same axis value: the Goldilocks zone of a loss.
GOLDILOCKS_RELATIVE = 1.5
#: What :func:`to_scale` takes: one value, an array, or a DataArray.
Values = float | np.ndarray | xr.DataArray
#: Where the thumb tip lies relative to the grid of the task's axis.
INSIDE, BELOW_GRID, ABOVE_GRID, NO_DATA = "inside", "below_grid", "above_grid", "no_data"


def is_landscape(cube: xr.Dataset) -> bool:
    """A reduced landscape (attr ``kind``): norm-constrained cells over several w, the task's axis
    and seeds only. Anything else is a dynamics cube, read through its curves and t_fit / t_gen
    rather than through the shape over w."""
    return cube_kind(cube.attrs, cube["status"].dims, cube.sizes["w"]) == KIND_LANDSCAPE


def over_representation(cube: xr.Dataset) -> bool:
    """Whether the task's axis is a representation parameter (messiness m), not a sample count."""
    return axis_role(cube.attrs) == ROLE_REPRESENTATION


def done(cube: xr.Dataset, var: str) -> xr.DataArray:
    """``cube[var]`` in memory, NaN wherever the cell is not finished (status != 1)."""
    if var not in cube.data_vars:
        raise UserError(f"the cube has no variable {var!r} (it has {', '.join(sorted(cube.data_vars))})")
    return cube[var].where(cube["status"] == STATUS_DONE).compute()


def metric_of(cube: xr.Dataset) -> str:
    """The cube's figure metric, "err" or "loss"; "err" for cubes made before tasks chose one."""
    metric = cube.attrs.get("figure_metric", "err")
    if metric not in FIGURE_METRICS:
        raise UserError(f"the cube's figure_metric {metric!r} is none of {', '.join(FIGURE_METRICS)}")
    return metric


def levels_of(cube: xr.Dataset) -> tuple[float, ...]:
    """The cube's contour levels of test_<metric>; :data:`DEFAULT_LEVELS` for an err cube without them."""
    return tuple(checked_levels(metric_of(cube), cube.attrs.get("figure_levels")))


def is_loss(var: str) -> bool:
    """Whether ``var`` is a loss (interpolated in log10) rather than an error (interpolated linearly)."""
    return var.endswith("_loss")


def to_scale(values: Values, var: str) -> Values:
    """``values`` of ``var`` on the scale they are interpolated on: a loss in log10, where a loss of
    exactly 0 (a training set fit to the last bit) counts as the smallest positive float; an error as is."""
    return np.log10(np.maximum(values, np.finfo(float).tiny)) if is_loss(var) else values


def from_scale(values: Values, var: str) -> Values:
    """The inverse of :func:`to_scale`."""
    return 10.0 ** values if is_loss(var) else values


def average_seeds(cube: xr.Dataset, extra: Sequence[str] = ()) -> xr.Dataset:
    """The cube with its final values (the metrics, and the variables ``extra``: measurements over
    their own dims) averaged over finished seeds, without a ``seed`` dim.

    ``status`` becomes 1 where some seed finished, else 2 where some seed diverged, else 0, so the
    result is itself a cube the functions here accept, and the maps drawn from it are the maps
    the thumb tips of :func:`critical_data_size` refer to.
    """
    metrics = [m for m in METRICS if m in cube.data_vars] + list(extra)
    if "seed" not in cube.dims:
        return cube[metrics + ["status"]].compute()
    status = cube["status"].compute()
    out = xr.Dataset({m: _quiet(done(cube, m).mean, "seed") for m in metrics})
    out["status"] = xr.where((status == STATUS_DONE).any("seed"), STATUS_DONE,
                             xr.where((status == STATUS_DIVERGED).any("seed"), STATUS_DIVERGED, STATUS_PENDING))
    out = out.drop_vars("seed", errors="ignore")
    out.attrs = dict(cube.attrs)
    return out


def critical_norm(cube: xr.Dataset, var: str = "test_loss") -> xr.Dataset:
    """The critical norm w_c: the grid w minimising ``var``, for every value of the axis (and seed).

    Returns ``w_c``, ``alpha_c`` = w_c / w0 and ``best`` (the minimum of ``var``); NaN where no
    cell of that row is finished.
    """
    values = done(cube, var)
    w_c = _quiet(values.idxmin, "w")
    result = xr.Dataset({"w_c": w_c, "alpha_c": w_c / cube.attrs["w0"], "best": values.min("w")})
    result.attrs.update(var=var, definition=f"w_c = argmin over the w grid of {var}")
    return _summarize(result)


def goldilocks_zone(
    cube: xr.Dataset,
    threshold: float | None = None,
    *,
    relative: float | None = None,
    var: str | None = None,
) -> xr.Dataset:
    """The Goldilocks zone [w_lo, w_hi] per axis value: the band of w where the model generalizes.

    ``var`` defaults to test_<metric> of the cube (:func:`metric_of`). Give at most one criterion:
    ``threshold`` (a cell qualifies when ``var`` <= threshold) or ``relative`` (when ``var`` <=
    relative x the best ``var`` at that axis value and seed, so ``relative=1.5`` keeps cells within
    50% of the best). Without either, an error takes ``threshold`` = :data:`GOLDILOCKS_THRESHOLD`
    and a loss ``relative`` = :data:`GOLDILOCKS_RELATIVE`: a loss has units and a best value that
    moves with the axis (QM9: 0.4 to 2.3 bohr^6 over N), so one absolute threshold would leave the
    zone empty at some axis values and the whole grid at others.

    The band is the contiguous run of finished, qualifying grid cells around the best w; its edges
    are interpolated in log w to where ``var`` crosses the cutoff (an error linearly, a loss in
    log10), and stop at the grid's end when the run reaches it: such an edge is no edge of the
    zone, only of the grid (the zone may go on beyond it), and ``lo_at_grid_edge`` /
    ``hi_at_grid_edge`` say so. NaN where no cell qualifies.

    Returns ``w_lo``, ``w_hi``, ``alpha_lo``, ``alpha_hi``, the two grid-edge flags and the ``cutoff`` applied.
    """
    if threshold is not None and relative is not None:
        raise UserError("goldilocks_zone takes at most one of threshold= (absolute) or relative= (x best)")
    var = var or f"test_{metric_of(cube)}"
    if threshold is None and relative is None:
        threshold, relative = (None, GOLDILOCKS_RELATIVE) if is_loss(var) else (GOLDILOCKS_THRESHOLD, None)
    values = done(cube, var)
    if threshold is not None:
        validate_level(var, threshold)
        cutoff = xr.full_like(values.isel(w=0, drop=True), threshold)
    else:
        if not relative >= 1:
            raise UserError(f"relative={relative:g} must be at least 1 (the best cell always qualifies)")
        cutoff = relative * values.min("w")
    log_w = np.log10(cube["w"].values)
    w_lo, w_hi, lo_edge, hi_edge = xr.apply_ufunc(
        _band, to_scale(values, var), to_scale(cutoff, var), input_core_dims=[["w"], []],
        output_core_dims=[[], [], [], []], vectorize=True, kwargs={"log_w": log_w},
        output_dtypes=[float, float, bool, bool],
    )
    w0 = cube.attrs["w0"]
    result = xr.Dataset({"w_lo": w_lo, "w_hi": w_hi, "alpha_lo": w_lo / w0, "alpha_hi": w_hi / w0, "cutoff": cutoff,
                         "lo_at_grid_edge": lo_edge, "hi_at_grid_edge": hi_edge})
    criterion = f"{var} <= {threshold:g}" if threshold is not None else f"{var} <= {relative:g} x best"
    result.attrs.update(var=var, criterion=criterion,
                        **({"threshold": threshold} if threshold is not None else {"relative": relative}))
    return _summarize(result, ("w_lo", "w_hi", "alpha_lo", "alpha_hi"))


def critical_data_size(
    cube: xr.Dataset,
    level: float | Sequence[float] | None = None,
    var: str | None = None,
) -> xr.Dataset:
    """The critical data size (the tip of the thumb) for each level, as ``<axis>_c`` (e.g. ``N_c``).

    ``var`` defaults to test_<metric> of the cube and ``level`` to its levels (:func:`levels_of`).
    N_c is the smallest axis value at which some w reaches ``var`` <= level: the tip of the thumb
    figure's contour. Between the last grid row above the level and the first at or below it,
    ``var`` is interpolated in log N at each grid w (an error linearly, a loss in log10; bilinear
    in log w between them, as the contours are drawn); the first w to reach the level is
    ``w_tip`` and the N where it does is N_c. (Between grid w the interpolant never dips below
    both neighbours, so the tip is always at a grid w.)
    ``position`` says where the tip lies: "inside" the grid; "below_grid" (already reached at the
    smallest axis value, so N_c <= that value and is reported NaN); "above_grid" (never reached,
    N_c > the largest value, NaN); "no_data" (no finished cell). Rows with no finished cell are
    skipped. A sequence of levels gives a ``level`` dim; a single level a scalar ``level`` coord.
    """
    var = var or f"test_{metric_of(cube)}"
    level = levels_of(cube) if level is None else level
    levels = [float(x) for x in np.atleast_1d(level)]
    for x in levels:
        validate_level(var, x)
    axis = cube.attrs["axis"]
    values = done(cube, var)
    log_n = np.log10(cube[axis].values.astype(float))
    log_w = np.log10(cube["w"].values)
    per_level = []
    for x in levels:
        n_c, w_tip, position = xr.apply_ufunc(
            _tip, to_scale(values, var), input_core_dims=[[axis, "w"]], output_core_dims=[[], [], []],
            vectorize=True, kwargs={"log_n": log_n, "log_w": log_w, "level": to_scale(x, var)},
            output_dtypes=[float, float, object],
        )
        per_level.append(xr.Dataset({f"{axis}_c": n_c, "w_tip": w_tip, "position": position.astype(str)}))
    result = xr.concat(per_level, dim=xr.DataArray(levels, dims="level", name="level"))
    if np.ndim(level) == 0:
        result = result.squeeze("level")
    result.attrs.update(var=var, axis=axis,
                        definition=f"smallest {axis} where min over w of {var} <= level, interpolated in log {axis}")
    return _summarize(result, (f"{axis}_c", "w_tip"))


def lu_mismatch(cube: xr.Dataset, metric: str | None = None) -> xr.Dataset:
    """How far the train and test curves disagree at large w, one number per axis value (and seed).

    Defined as the mean, over the finished grid cells with w above the critical norm w_c
    (the test-loss minimiser, :func:`critical_norm`), of the generalization gap on the large-w side
    of the U: test_err - train_err for the metric "err", 1 - train_loss / test_loss for "loss" (a
    loss has units, so its gap is taken relative to the test loss). ``metric`` defaults to the
    cube's (:func:`metric_of`). It is 0 where train and test agree there (the test curve is an L
    like the train curve) and approaches 1 where the model fits the training set perfectly and
    fails on the test set (the LU picture). NaN where no finished cell lies above w_c.
    """
    metric = metric or metric_of(cube)
    if metric not in FIGURE_METRICS:
        raise UserError(f"metric {metric!r} must be one of {', '.join(FIGURE_METRICS)}")
    test, train = done(cube, f"test_{metric}"), done(cube, f"train_{metric}")
    gap = test - train if metric == "err" else 1 - train / test.where(test > 0)
    w_c = critical_norm(cube)["w_c"]
    mismatch = _quiet(gap.where(cube["w"] > w_c).mean, "w")
    result = xr.Dataset({"lu_mismatch": mismatch})
    formula = "test_err - train_err" if metric == "err" else "1 - train_loss / test_loss"
    result.attrs.update(metric=metric, gap=formula, definition=f"mean over w > w_c (argmin test_loss) of {formula}")
    return _summarize(result)


def paired_comparison(a: xr.Dataset, b: xr.Dataset, var: str = "test_err") -> dict[str, float]:
    """How ``var`` of cube ``a`` compares with cube ``b`` cell by cell (cells finished in both).

    Returns the number of cells where ``a`` is higher, lower and equal, the median and largest
    |a - b|, the median signed a - b, and the two-sided sign-test p-value of "a is higher as often
    as lower" (ties dropped): the check that one way of computing a landscape (a stopping rule, a
    shorter budget) is not biased against another, over cells and seeds, rather than by the
    median alone.
    """
    from scipy.stats import binomtest

    x, y = done(a, var).values.ravel(), done(b, var).values.ravel()
    if x.shape != y.shape:
        raise UserError(f"the cubes differ in shape ({x.size} vs {y.size} cells): compare like grids")
    both = np.isfinite(x) & np.isfinite(y)
    diff = x[both] - y[both]
    higher, lower = int((diff > 0).sum()), int((diff < 0).sum())
    p = binomtest(higher, higher + lower).pvalue if higher + lower else 1.0
    return {"cells": int(both.sum()), "higher": higher, "lower": lower, "equal": int((diff == 0).sum()),
            "median_abs": float(np.median(np.abs(diff))) if diff.size else np.nan,
            "max_abs": float(np.max(np.abs(diff))) if diff.size else np.nan,
            "median": float(np.median(diff)) if diff.size else np.nan, "p_value": float(p)}


def seed_summary(result: xr.Dataset, name: str) -> xr.DataArray:
    """``name`` averaged over seeds when the result has seeds, else ``name`` itself."""
    return result[f"{name}_mean"] if f"{name}_mean" in result else result[name]


def _band(values: np.ndarray, cutoff: float, log_w: np.ndarray) -> tuple[float, float, bool, bool]:
    finite = np.isfinite(values)
    x, y = log_w[finite], values[finite]
    if y.size == 0 or not np.isfinite(cutoff) or y.min() > cutoff:
        return np.nan, np.nan, False, False
    lo = hi = int(np.argmin(y))
    while lo > 0 and y[lo - 1] <= cutoff:
        lo -= 1
    while hi < y.size - 1 and y[hi + 1] <= cutoff:
        hi += 1
    x_lo = x[lo] if lo == 0 else _crossing(x[lo - 1], y[lo - 1], x[lo], y[lo], cutoff)
    x_hi = x[hi] if hi == y.size - 1 else _crossing(x[hi], y[hi], x[hi + 1], y[hi + 1], cutoff)
    return 10.0 ** x_lo, 10.0 ** x_hi, lo == 0, hi == y.size - 1


def _tip(z: np.ndarray, log_n: np.ndarray, log_w: np.ndarray, level: float) -> tuple[float, float, str]:
    """z over (axis, w), on the interpolation scale; see :func:`critical_data_size`."""
    rows = np.isfinite(z).any(axis=1)
    if not rows.any():
        return np.nan, np.nan, NO_DATA
    x, z = log_n[rows], z[rows]
    reached = np.flatnonzero(np.nanmin(z, axis=1) <= level)
    if reached.size == 0:
        return np.nan, np.nan, ABOVE_GRID
    k = int(reached[0])
    if k == 0:
        return np.nan, np.nan, BELOW_GRID
    before, after = z[k - 1], z[k]
    # Row k - 1 is above the level at every finished w, so each crossing column has before > level.
    crossing = np.flatnonzero(np.isfinite(before) & (after <= level))
    if crossing.size == 0:  # the w that reach the level were not finished one row down: nothing to interpolate
        return 10.0 ** x[k], 10.0 ** log_w[int(np.nanargmin(after))], INSIDE
    fractions = (level - before[crossing]) / (after[crossing] - before[crossing])
    j = int(np.argmin(fractions))
    return 10.0 ** (x[k - 1] + fractions[j] * (x[k] - x[k - 1])), 10.0 ** log_w[crossing[j]], INSIDE


def _crossing(x0: float, y0: float, x1: float, y1: float, level: float) -> float:
    """Where the line through (x0, y0), (x1, y1) meets y = level; callers ensure y0 != y1."""
    return x0 + (level - y0) / (y1 - y0) * (x1 - x0)


def _summarize(result: xr.Dataset, names: Sequence[str] | None = None) -> xr.Dataset:
    if "seed" not in result.dims:
        return result
    for name in names or [n for n in result.data_vars if "seed" in result[n].dims]:
        result[f"{name}_mean"] = _quiet(result[name].mean, "seed")
        result[f"{name}_std"] = _quiet(result[name].std, "seed", ddof=1)
    return result


def _quiet(reduce, *args, **kwargs):
    """Run an xarray reduction whose all-NaN slices should just give NaN, without numpy's warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return reduce(*args, **kwargs)
