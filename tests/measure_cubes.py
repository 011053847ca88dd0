"""Synthetic cubes with the measurement variables of issue 25 (curvature, slices, density,
interpolation, edge of stability), written through the store (``cube.template`` + ``write_cell``)
as a grid would write them, with values whose summaries are known."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from landscape import cube
from landscape.cube.schema import CURVES, STATUS_DIVERGED, STATUS_DONE, CellResult, Quantity
from tests.synthetic import W0, thumb_err

ALPHA = np.logspace(-1, 1, 5)  # log10 alpha steps of 1/2
N = np.array([10, 100, 1000])
EIGEN = 2
GRID = np.linspace(-1.0, 1.0, 5)  # slice coefficients
INTERP = np.linspace(0.0, 1.0, 6)
EIGENVALUES = np.linspace(-5.0, 50.0, 56)
#: Cells of the landscape cube left as the grid leaves them: (w index, N index) -> status.
MISSING = {(0, 2): 0, (4, 0): STATUS_DIVERGED}
STEPS = np.array([0, 1, 10, 100, 1000])
LR = (0.01, 0.1)


def lambda_reduced(w: float, n: float) -> float:
    """λ_max of the reduced Hessian: (w0 / w)^2 * log10(10 N); sharper at small w, as a scale-invariant net."""
    return (W0 / w) ** 2 * np.log10(10 * n)


def cell_measures(w: float, n: float, slice_dims: int) -> dict[str, np.ndarray]:
    """Every measured variable of one landscape cell, shaped by its own dims."""
    lam = lambda_reduced(w, n)
    a, b = np.meshgrid(GRID, GRID, indexing="ij")
    bowl = (a**2 + 2 * b**2) if slice_dims == 2 else GRID**2
    base = 0.01 * (1 + np.log10(n))
    out = {"hessian_top_reduced": np.array([lam, lam / 2]),
           "hessian_top_ambient": np.array([2 * lam, lam]),
           "hessian_residual_reduced": np.full(EIGEN, 1e-6), "hessian_residual_ambient": np.full(EIGEN, 1e-6),
           "hessian_trace_ambient": np.array(10 * lam), "hessian_trace_ambient_stderr": np.array(0.5),
           "hessian_trace_reduced": np.array(5 * lam), "hessian_trace_reduced_stderr": np.array(0.25),
           "hessian_density_ambient": np.exp(-((EIGENVALUES - 2 * lam) ** 2) / 2) + 1e-4,
           "hessian_density_reduced": np.exp(-((EIGENVALUES - lam) ** 2) / 2) + 1e-4,
           "slice_train_loss": base + lam * bowl, "slice_test_loss": 2 * base + lam * bowl,
           "slice_train_err": np.minimum(1, 0.1 * bowl), "slice_test_err": np.minimum(1, 0.2 + 0.1 * bowl),
           "interp_train_loss": 1 - 0.9 * INTERP, "interp_test_loss": 1.2 - 0.8 * INTERP,
           "interp_train_err": 0.9 * (1 - INTERP), "interp_test_err": 0.9 - 0.6 * INTERP}
    return out


def _quantities(slice_dims: int) -> tuple[list[Quantity], dict[str, np.ndarray]]:
    slice_own = ("slice_x", "slice_y")[:slice_dims]
    qs = [Quantity(f"hessian_{what}_{space}", f"{what} of the {space} Hessian", ("eigen",))
          for what in ("top", "residual") for space in ("ambient", "reduced")]
    qs += [Quantity(f"hessian_trace_{space}{se}", f"trace of the {space} Hessian{se}")
           for space in ("ambient", "reduced") for se in ("", "_stderr")]
    qs += [Quantity(f"hessian_density_{space}", f"spectral density of the {space} Hessian", ("eigenvalue",))
           for space in ("ambient", "reduced")]
    qs += [Quantity(f"{kind}_{split}_{m}", f"{split} {m} along the {kind}", own)
           for kind, own in (("slice", slice_own), ("interp", ("interp",)))
           for split in ("train", "test") for m in ("loss", "err")]
    coords = {"eigen": np.arange(EIGEN), "eigenvalue": EIGENVALUES, "slice_x": GRID, "interp": INTERP}
    if slice_dims == 2:
        coords["slice_y"] = GRID
    return qs, coords


def _result(curves_final: np.ndarray, status: int, measures: dict[str, np.ndarray], dims: dict[str, tuple],
            curves: dict[str, np.ndarray] | None = None, steps: np.ndarray = STEPS[-1:]) -> CellResult:
    values = np.repeat(curves_final[:, None], len(steps), axis=1)
    if status == STATUS_DIVERGED:  # a diverged cell's measures are NaN, as the loop leaves them
        measures = {k: np.full(np.shape(v), np.nan) for k, v in measures.items()}
        curves = {k: np.full(np.shape(v), np.nan) for k, v in (curves or {}).items()}
    return CellResult(eval_steps=steps, curves=values, layer_norms=np.ones((1, len(steps))), norm=1.0,
                      steps=int(steps[-1]), seconds=1.0, status=status, measures=measures,
                      measure_curves=curves or {}, measure_dims=dims)


def landscape_cube(path: str | Path, slice_dims: int = 2, directions: str = "filter") -> xr.Dataset:
    """A (w, N, seed) landscape: test error the thumb of tests/synthetic.py, every measure filled from
    :func:`cell_measures`; cell (w0, N2) pending and (w4, N0) diverged (:data:`MISSING`)."""
    quantities, coords = _quantities(slice_dims)
    w = W0 * ALPHA
    measure = {"hessian_top": EIGEN, "hessian_trace": True, "density": True, "interpolation": True,
               "slice": {"dims": slice_dims, "points": len(GRID), "span": 1.0, "directions": directions, "seed": 0}}
    spec = {"task": "synthetic", "axes": {"alpha": ALPHA.tolist(), "N": N.tolist(), "seed": [0]},
            "train": {"optimizer": "adam", "lr": 1e-3, "constrain_norm": True}, "eval": {"level": 0.95},
            "measure": measure}
    attrs = {**cube.standard_attrs("synthetic", json.dumps(spec), "made up in tests/measure_cubes.py"),
             "schema_version": 2, "kind": "landscape", "axis_role": "samples", "reference_predictors": []}
    dims = ("w", "N", "seed")
    ds = cube.template(dims=dims, coords={"w": w.tolist(), "N": N.tolist(), "seed": [0]}, axis="N",
                       axis_long_name="training-set size", w0=W0, steps=STEPS[-1:], attrs=attrs, layers=["all"],
                       quantities=quantities, measure_coords=coords)
    cube.create(path, ds)
    err = thumb_err(ALPHA, N)
    own = {q.name: q.dims for q in quantities}
    for i, wi in enumerate(w):
        for j, n in enumerate(N):
            status = MISSING.get((i, j), STATUS_DONE)
            if status == 0:
                continue
            final = np.array([err[i, j] / 4 + 1e-4, err[i, j] + 1e-3, err[i, j] / 4, err[i, j], wi])
            assert final.size == len(CURVES)
            result = _result(final, status, cell_measures(wi, n, slice_dims), own)
            cube.write_cell(path, dims, (i, j, 0), result, STEPS[-1:], {"t_fit": np.nan, "t_gen": np.nan})
    return cube.open_cube(path, verify=True)


def sharpness_curve(lr: float) -> np.ndarray:
    """λ_max along a run: rising from 1 by progressive sharpening to hover at 2/η (the edge of stability)."""
    return np.minimum(1.0 + STEPS.astype(float), 2 / lr)


def dynamics_cube(path: str | Path, optimizer: str = "sgd") -> xr.Dataset:
    """Two runs over lr (alpha 2, one N, one seed), λ_max measured at every eval (:func:`sharpness_curve`),
    with the stability threshold and, for Adam, the preconditioned sharpness (a tenth of 38/η at the end)."""
    dims = ("w", "N", "lr", "seed")
    adam = optimizer != "sgd"
    quantities = [Quantity(f"hessian_top_{space}", f"top eigenvalues of the {space} Hessian", ("eigen",), curve=True)
                  for space in ("ambient", "reduced")]
    quantities.append(Quantity("stability_threshold", "stability threshold of the optimizer"))
    if adam:
        quantities.append(Quantity("adam_sharpness", "preconditioned sharpness", curve=True))
    spec = {"task": "synthetic", "axes": {"alpha": [2.0], "N": [100], "lr": list(LR), "seed": [0]},
            "train": {"optimizer": optimizer, "lr": LR[0], "weight_decay": 0.0, "constrain_norm": False},
            "eval": {"level": 0.95}, "measure": {"hessian_top": EIGEN, "every": "eval"}}
    attrs = {**cube.standard_attrs("synthetic", json.dumps(spec), "made up in tests/measure_cubes.py"),
             "schema_version": 2, "kind": "dynamics", "axis_role": "samples", "reference_predictors": []}
    ds = cube.template(dims=dims, coords={"w": [2 * W0], "N": [100], "lr": list(LR), "seed": [0]}, axis="N",
                       axis_long_name="training-set size", w0=W0, steps=STEPS, attrs=attrs, layers=["all"],
                       quantities=quantities, measure_coords={"eigen": np.arange(EIGEN)})
    cube.create(path, ds)
    own = {q.name: q.dims for q in quantities}
    for k, lr in enumerate(LR):
        lam = sharpness_curve(lr)
        top = np.stack([lam, lam / 2])
        curves = {"hessian_top_ambient": top, "hessian_top_reduced": top / 2}
        threshold = (38.0 if adam else 2.0) / lr
        measures = {"hessian_top_ambient": top[:, -1], "hessian_top_reduced": top[:, -1] / 2,
                    "stability_threshold": np.array(threshold)}
        if adam:
            curves["adam_sharpness"] = threshold / 10 * (1 + STEPS) / (1 + STEPS[-1])
            measures["adam_sharpness"] = np.array(curves["adam_sharpness"][-1])
        final = np.array([0.01, 0.1, 0.0, 0.05, 2 * W0])
        result = _result(final, STATUS_DONE, measures, own, curves, steps=STEPS)
        cube.write_cell(path, dims, (0, 0, k, 0), result, STEPS, {"t_fit": 10.0, "t_gen": 100.0})
    return cube.open_cube(path, verify=True)
