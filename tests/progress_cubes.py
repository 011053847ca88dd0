"""Synthetic cubes with the progress measures of issue 23 (softmax collapse, NLM cosine, margins,
effective rank, Nanda et al.'s Fourier measures), written through the store (``cube.template`` +
``write_cell``) as a grid writes them, with curves whose marks (landscape.read.progress) are known."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import xarray as xr

from landscape import cube
from landscape.cube.schema import CURVES, STATUS_DIVERGED, STATUS_DONE, CellResult, Quantity
from tests.synthetic import W0, thumb_err

STEPS = np.array([0, 1, 3, 10, 30, 100, 300, 1000, 3000, 10000])
FREQUENCIES = np.arange(1, 16)  # p = 31
KEYS = (4, 11, 14)
WEIGHTS = ("embed", "unembed")
#: The scalar progress measures, each with a curve (``<name>_curve``).
SCALARS = {"softmax_collapse": "softmax-collapse fraction", "zero_loss": "zero-loss fraction",
           "nlm_cosine": "cosine of -grad L and theta", "min_margin": "minimum margin",
           "normalized_margin": "normalized margin", "restricted_loss": "restricted loss",
           "excluded_loss": "excluded loss", "fourier_gini": "Gini of the Fourier norms"}
#: The train-setting axes of the dynamics cube: a string axis and a bool axis (four runs).
LOSSES, ORTHOGRAD = ("task", "stablemax"), (False, True)

# The hand-built curves of run k (its position in the loss x orthograd grid), indexed like STEPS,
# and the marks they give. Train accuracy reaches 100% at step 100 in every run.
TRAIN_ERR = np.array([0.97, 0.9, 0.8, 0.5, 0.1, 0.0, 0.0, 0.0, 0.0, 0.0])
TRAIN_LOSS = np.array([3.4, 3.0, 2.5, 1.5, 0.3, 0.05, 0.02, 0.01, 0.01, 0.01])
COLLAPSE = np.array([0, 0, 0, 0, 0, 0.005, 0.02, 0.3, 0.8, 0.99])  # > 1% at 300, > 50% at 3000
NLM = np.array([0.0, 0.1, 0.2, 0.3, 0.5, 0.85, 0.95, 0.97, 0.99, 0.99])  # > 0.9 at 300
# Falls with the train loss to 0.04 at 100, up 1.5x at 300 (no mark), 3x at 1000: the rise.
EXCLUDED = np.array([3.4, 3.0, 2.6, 1.6, 0.35, 0.04, 0.06, 0.12, 2.0, 4.0])
# Below the train loss at step 1 (before the fit: no mark) and from step 3000 on.
RESTRICTED = np.array([3.5, 2.9, 2.6, 1.6, 0.4, 0.08, 0.05, 0.02, 0.005, 0.001])
EXPECTED_MARKS = {"collapse>1%": 300.0, "collapse>50%": 3000.0, "nlm>0.9": 300.0, "excl_rise": 1000.0,
                  "restr<train": 3000.0}
T_FIT = 100.0


def _t_gen(run: int) -> float:
    return float(STEPS[-2 + run % 2])  # 3000 or 10000


def _fourier_power(steps: np.ndarray) -> np.ndarray:
    """(frequency, step): flat at first, the key frequencies taking over from step 300 on."""
    share = np.clip(np.log10(np.maximum(steps, 1)) - 2, 0, 1.5) / 1.5
    power = np.ones((FREQUENCIES.size, steps.size)) * (1 - share)
    for k in KEYS:
        power[k - 1] += 10 * share
    return power


def _quantities() -> tuple[list[Quantity], dict[str, np.ndarray]]:
    qs = [Quantity(name, long_name, curve=True) for name, long_name in SCALARS.items()]
    qs += [Quantity("effective_rank", "effective rank", ("weight",), curve=True),
           Quantity("fourier_power", "Fourier power per frequency", ("frequency",), curve=True),
           Quantity("key_frequencies", "key frequencies", ("key",), curve=True)]
    coords = {"weight": np.array(WEIGHTS, dtype=object), "frequency": FREQUENCIES, "key": np.arange(1, len(KEYS) + 1)}
    return qs, coords


def _spec(kind: str, axes: dict) -> tuple[dict, dict]:
    spec = {"task": "synthetic", "axes": axes, "eval": {"level": 0.95}, "measure": {"every": "eval"},
            "train": {"optimizer": "adamw", "lr": 1e-3, "weight_decay": 0.0, "constrain_norm": kind == "landscape"}}
    attrs = {**cube.standard_attrs("synthetic", json.dumps(spec), "made up in tests/progress_cubes.py"),
             "schema_version": 2, "kind": kind, "axis_role": "samples", "reference_predictors": []}
    return spec, attrs


def _result(curves: np.ndarray, measures: dict[str, np.ndarray], status: int = STATUS_DONE,
            steps: np.ndarray = STEPS) -> CellResult:
    """A cell with the given CURVES rows and measure curves (each over its own dims and step)."""
    qs, _ = _quantities()
    dims = {q.name: q.dims for q in qs}
    if status == STATUS_DIVERGED:  # a diverged cell's measures are NaN, as the loop leaves them
        measures = {k: np.full(np.shape(v), np.nan) for k, v in measures.items()}
    return CellResult(eval_steps=steps, curves=curves, layer_norms=np.ones((1, len(steps))), norm=float(curves[-1, -1]),
                      steps=int(steps[-1]), seconds=1.0, status=status,
                      measures={k: v[..., -1] for k, v in measures.items()}, measure_curves=measures,
                      measure_dims={k: dims[k] for k in measures})


def run_measures(run: int) -> dict[str, np.ndarray]:
    """Every measure's curve of run ``run``: the hand-built ones above, shifted in scale by the run
    (not in step, so every run has the marks :data:`EXPECTED_MARKS`)."""
    n = STEPS.size
    scale = 1.0 + 0.5 * run
    return {"softmax_collapse": COLLAPSE, "zero_loss": COLLAPSE / 2, "nlm_cosine": NLM,
            "min_margin": scale * np.linspace(-1.0, 8.0, n), "normalized_margin": np.linspace(-0.1, 0.4, n) / scale,
            "restricted_loss": RESTRICTED, "excluded_loss": EXCLUDED, "fourier_gini": np.linspace(0.1, 0.8, n),
            "effective_rank": np.stack([np.linspace(20, 5, n), np.linspace(10, 4, n)]) * scale,
            "fourier_power": _fourier_power(STEPS) * scale,
            "key_frequencies": np.repeat(np.array(KEYS, dtype=float)[:, None], n, axis=1)}


def dynamics_cube(path: str | Path, measured: bool = True) -> xr.Dataset:
    """Four runs over (loss, orthograd) at alpha 2, every progress measure at every eval
    (:func:`run_measures`); ``measured=False``: the same runs without any measure."""
    dims = ("w", "N", "loss", "orthograd", "seed")
    qs, coords = _quantities() if measured else ([], {})
    _, attrs = _spec("dynamics", {"alpha": [2.0], "N": [100], "loss": list(LOSSES), "orthograd": list(ORTHOGRAD)})
    ds = cube.template(dims=dims, coords={"w": [2 * W0], "N": [100], "loss": list(LOSSES),
                                          "orthograd": list(ORTHOGRAD), "seed": [0]},
                       axis="N", axis_long_name="training-set size", w0=W0, steps=STEPS, attrs=attrs, layers=["all"],
                       quantities=qs, measure_coords=coords)
    cube.create(path, ds)
    for run, (i, j) in enumerate(np.ndindex(len(LOSSES), len(ORTHOGRAD))):
        t_gen = _t_gen(run)
        test_err = np.where(STEPS >= t_gen, 0.02, 0.9)
        curves = np.stack([TRAIN_LOSS, 10 * test_err, TRAIN_ERR, test_err, np.linspace(2 * W0, W0, STEPS.size)])
        assert curves.shape[0] == len(CURVES)
        result = _result(curves, run_measures(run) if measured else {})
        cube.write_cell(path, dims, (0, 0, i, j, 0), result, STEPS, {"t_fit": T_FIT, "t_gen": t_gen})
    return cube.open_cube(path, verify=True)


ALPHA = np.logspace(-1, 1, 5)
N = np.array([10, 100, 1000])
#: Cells of the landscape left as a grid leaves them: (w index, N index) -> status.
MISSING = {(0, 2): 0, (4, 0): STATUS_DIVERGED}


def collapse_at(alpha: float, n: float) -> float:
    """The end's softmax-collapse fraction: none below alpha = 1, all of the training set at alpha 10."""
    return float(np.clip(np.log10(alpha), 0, 1)) * (1 - 0.1 * np.log10(n))


def landscape_cube(path: str | Path, seeds: tuple[int, ...] = (0, 1)) -> xr.Dataset:
    """A (w, N, seed) landscape, test error the thumb of tests/synthetic.py, with the end's
    softmax collapse (:func:`collapse_at`; seed 1 a tenth above seed 0) and normalized margin (1/alpha)."""
    qs = [Quantity(name, SCALARS[name], curve=True) for name in ("softmax_collapse", "normalized_margin")]
    _, attrs = _spec("landscape", {"alpha": ALPHA.tolist(), "N": N.tolist(), "seed": list(seeds)})
    dims, w = ("w", "N", "seed"), W0 * ALPHA
    ds = cube.template(dims=dims, coords={"w": w.tolist(), "N": N.tolist(), "seed": list(seeds)}, axis="N",
                       axis_long_name="training-set size", w0=W0, steps=STEPS[-1:], attrs=attrs, layers=["all"],
                       quantities=qs)
    cube.create(path, ds)
    err = thumb_err(ALPHA, N)
    for (i, alpha), (j, n), (k, seed) in itertools.product(enumerate(ALPHA), enumerate(N), enumerate(seeds)):
        status = MISSING.get((i, j), STATUS_DONE)
        if status == 0:
            continue
        final = np.array([err[i, j] / 4 + 1e-4, err[i, j] + 1e-3, err[i, j] / 4, err[i, j], w[i]])[:, None]
        measures = {"softmax_collapse": np.array([collapse_at(alpha, n) * (1 + 0.1 * seed)]),
                    "normalized_margin": np.array([1 / alpha])}
        cube.write_cell(path, dims, (i, j, k), _result(final, measures, status, STEPS[-1:]), STEPS[-1:],
                        {"t_fit": np.nan, "t_gen": np.nan})
    return cube.open_cube(path, verify=True)
