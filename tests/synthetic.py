"""Synthetic cubes with known answers, built with xarray directly in the cube schema."""
from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import xarray as xr

from landscape.cube.schema import STATUS_DIVERGED

W0 = 2.0
ALPHA = np.logspace(-1, 1, 9)  # log10 alpha steps of 0.25
N = np.array([10, 100, 1000, 10000])


def make_cube(
    *,
    alpha: np.ndarray = ALPHA,
    values: np.ndarray = N,
    seeds: Sequence[int] = (0,),
    axis: str = "N",
    figure_levels: Sequence[float] | None = None,
    **metrics: np.ndarray,
) -> xr.Dataset:
    """A finished cube; each given metric is an array over (w, axis) or (w, axis, seed).

    Metrics not given are filled from the given ones (losses from errors and vice versa), so every
    figure can be drawn. ``status`` defaults to all done. ``figure_levels`` makes it a loss cube
    (figure_metric "loss" with those levels); without, it has no figure attrs, as older cubes.
    """
    shape = (len(alpha), len(values), len(seeds))

    def full(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=float)
        return np.broadcast_to(a if a.ndim == 3 else a[..., None], shape).copy()

    given = {k: full(v) for k, v in metrics.items() if k != "status"}
    test_err = given.get("test_err", given.get("test_loss", np.zeros(shape)))
    given.setdefault("test_err", np.clip(test_err, 0, 1))
    given.setdefault("train_err", np.zeros(shape))
    given.setdefault("test_loss", given["test_err"] + 1e-3)
    given.setdefault("train_loss", given["train_err"] + 1e-4)
    status = full(metrics.get("status", np.ones(shape[:2]))).astype(np.int8)
    dims = ("w", axis, "seed")
    data = {k: (dims, v) for k, v in given.items()}
    data["status"] = (dims, status)
    w = W0 * np.asarray(alpha, dtype=float)
    coords = {"w": w, axis: (axis, np.asarray(values), {"long_name": "training-set size"}),
              "seed": list(seeds), "alpha": ("w", np.asarray(alpha, dtype=float))}
    attrs = {"task": "synthetic", "spec": json.dumps({"task": "synthetic"}), "w0": W0, "axis": axis,
             "data_source": "made up in tests/synthetic.py", "created": "2000-01-01T00:00:00+00:00"}
    if figure_levels is not None:
        attrs.update(figure_metric="loss", figure_levels=list(figure_levels))
    return xr.Dataset(data, coords=coords, attrs=attrs)


def thumb_err(alpha: np.ndarray = ALPHA, values: np.ndarray = N) -> np.ndarray:
    """test_err = min(1, g(N) + (log10 alpha)^2), g(N) = 1 - log10(N) / 4: best at alpha = 1, linear in log N.

    So the tip for level L is at log10 N_c = 4 (1 - L), with w_tip = w0.
    """
    g = 1 - np.log10(np.asarray(values, dtype=float)) / 4
    return np.minimum(1.0, g[None, :] + np.log10(alpha)[:, None] ** 2)


def thumb_loss(alpha: np.ndarray = ALPHA, values: np.ndarray = N) -> np.ndarray:
    """test_loss = 10^(2 (g(N) + (log10 alpha)^2)), g as in :func:`thumb_err`: a thumb spanning decades.

    The best loss, at alpha = 1, is 10^(2 g(N)): 31.6, 10, 3.16 and 1 on N; log10 of it is linear
    in log N, so with log interpolation the tip for level L is at log10 N_c = 4 (1 - log10(L) / 2).
    """
    g = 1 - np.log10(np.asarray(values, dtype=float)) / 4
    return 10.0 ** (2 * (g[None, :] + np.log10(alpha)[:, None] ** 2))


LOSS_LEVELS = (3.0, 10.0, 30.0)


def loss_cube() -> xr.Dataset:
    """A cube whose figure metric is the loss: :func:`thumb_loss` on test, a hundredth of it on train."""
    return make_cube(test_loss=thumb_loss(), train_loss=thumb_loss() / 100, figure_levels=LOSS_LEVELS)



def dynamics_cube(status: Sequence[int], t_gen: Sequence[float], wd: Sequence[float] = (0.1, 1.0)) -> xr.Dataset:
    """A dynamics cube over weight decay (alpha 2, one N, one seed) with the given per-run status and t_gen.

    Diverged runs (status 2) have the curves the grid leaves: the norm finite at step 0, inf at the
    next eval and NaN after, errors 1 and then NaN, no t_fit; the other runs a flat norm, zero error
    and t_fit = 10.
    """
    dims = ("w", "N", "wd", "seed")
    shape = (1, 1, len(wd), 1)
    status = np.asarray(status, dtype=np.int8).reshape(shape)
    diverged = (status == STATUS_DIVERGED)[..., None]
    err = np.where(diverged, [1.0, 1.0, np.nan, np.nan], 0.0)
    data = {"status": (dims, status),
            "t_fit": (dims, np.where(status == STATUS_DIVERGED, np.nan, 10.0)),
            "t_gen": (dims, np.asarray(t_gen, dtype=float).reshape(shape)),
            "norm_curve": (dims + ("step",), np.where(diverged, [2 * W0, np.inf, np.nan, np.nan], 2 * W0)),
            "train_err_curve": (dims + ("step",), err),
            "test_err_curve": (dims + ("step",), err)}
    coords = {"w": [2 * W0], "N": [100], "wd": list(wd), "seed": [0], "step": [0, 1, 10, 100], "alpha": ("w", [2.0])}
    spec = {"task": "synthetic", "train": {"optimizer": "adamw", "lr": 1e-2, "weight_decay": 0.0,
                                           "constrain_norm": False}, "eval": {"level": 0.95}}
    attrs = {"task": "synthetic", "spec": json.dumps(spec), "w0": W0, "axis": "N",
             "data_source": "made up in tests/synthetic.py", "created": "2000-01-01T00:00:00+00:00"}
    return xr.Dataset(data, coords=coords, attrs=attrs)
