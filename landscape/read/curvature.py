"""The Hessian measurements of a cube read as numbers: λ_max and the trace, ambient (in all of θ)
and reduced (on the sphere ‖θ‖ = w), per cell and summarised per value of the task's axis."""
from __future__ import annotations

import numpy as np
import xarray as xr

from landscape.read.analysis import average_seeds, done, metric_of

SPACES = ("ambient", "reduced")


def top_var(space: str) -> str:
    return f"hessian_top_{space}"


def has_curvature(cube: xr.Dataset) -> bool:
    return any(top_var(s) in cube for s in SPACES)


def per_cell(cube: xr.Dataset) -> xr.Dataset:
    """Seed-averaged finished cells (:func:`average_seeds`): the test metric, ``lmax_<space>`` (the top
    eigenvalue, eigen index 0: largest first) and ``trace_<space>`` with ``trace_<space>_stderr``
    (the mean's standard error: the seeds' combined in quadrature), for what the cube measured."""
    names = [v for s in SPACES for v in (top_var(s), f"hessian_trace_{s}", f"hessian_trace_{s}_stderr") if v in cube]
    means = average_seeds(cube, names)
    out = xr.Dataset({"test": means[f"test_{metric_of(cube)}"]})
    for s in SPACES:
        if top_var(s) in means:
            out[f"lmax_{s}"] = means[top_var(s)].isel(eigen=0, drop=True)
        if f"hessian_trace_{s}" in means:
            out[f"trace_{s}"] = means[f"hessian_trace_{s}"]
        if f"hessian_trace_{s}_stderr" in means:
            out[f"trace_{s}_stderr"] = _stderr_of_mean(cube, f"hessian_trace_{s}_stderr")
    return out


def per_axis(cube: xr.Dataset) -> xr.Dataset:
    """Per value of the task's axis: each per-cell quantity at the w of the best test metric
    (``best_w``), and ``lmax_<space>_min/median/max`` over the finished w."""
    cells = per_cell(cube)
    test = cells["test"]
    best = test.fillna(np.inf).argmin("w")
    measured = test.notnull().any("w")
    out = cells.drop_vars("test").isel(w=best).where(measured)
    out["best_w"] = cube["w"].isel(w=best).where(measured).drop_vars(["w", "alpha"], errors="ignore")
    for s in SPACES:
        if f"lmax_{s}" in cells:
            lam = cells[f"lmax_{s}"]
            for stat in ("min", "median", "max"):
                out[f"lmax_{s}_{stat}"] = getattr(lam, stat)("w", skipna=True)
    return out.drop_vars(["w", "alpha"], errors="ignore")


def _stderr_of_mean(cube: xr.Dataset, var: str) -> xr.DataArray:
    """sqrt(sum of se²) / n over the n finished seeds: the standard error of the seeds' mean estimate."""
    se = done(cube, var)
    if "seed" not in se.dims:
        return se
    n = se.notnull().sum("seed")
    return (np.sqrt((se**2).sum("seed")) / n).where(n > 0)
