"""Marks on the progress-measure curves of a cube (issue 23): the first eval step at which each
measure crosses a threshold, to set beside t_fit and t_gen. Pure numpy and xarray, no training code.

The marks, each the first *measured* eval step (the curves are NaN where not measured) and NaN when
never reached:

- ``collapse_1``, ``collapse_50``: the softmax-collapse fraction (training samples whose correct-class
  probability is exactly 1 in the training dtype; Prieto et al. 2025) is above 1 % and above 50 %:
  the first rows stop carrying gradient, and most of them have.
- ``excluded_rise``: the excluded loss (the loss with the key Fourier frequencies removed; Nanda et
  al. 2023) is above :data:`EXCLUDED_RISE` times its running minimum while the train error is 0:
  the memorized training set stops being fit without the general circuit, i.e. the circuit has
  taken over before (or as) the test accuracy rises.
- ``keys_settled``: from this step on the set of key frequencies is the one the run ends with.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

#: Softmax-collapse fractions marked: the first rows collapse, and most of them have.
COLLAPSE_MARKS = (0.01, 0.5)
#: The excluded loss "rises" when it exceeds this multiple of its lowest value so far.
EXCLUDED_RISE = 2.0


def first_step_above(steps: np.ndarray, curve: np.ndarray, threshold: float) -> np.ndarray:
    """First step at which ``curve`` (along its last axis) is above ``threshold``; NaN if never."""
    hit = np.asarray(curve, dtype=float) > threshold  # NaN (not measured) compares False
    return _first(steps, hit)


def excluded_rise_step(steps: np.ndarray, excluded: np.ndarray, train_err: np.ndarray,
                       factor: float = EXCLUDED_RISE) -> np.ndarray:
    """First step at which ``excluded`` exceeds ``factor`` times its running minimum (over the steps
    measured so far, that one included) while ``train_err`` is 0; NaN if never."""
    excluded = np.asarray(excluded, dtype=float)
    lowest = np.minimum.accumulate(np.where(np.isfinite(excluded), excluded, np.inf), axis=-1)
    return _first(steps, (excluded > factor * lowest) & (np.asarray(train_err, dtype=float) == 0))


def keys_settled_step(steps: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """First step from which the set of key frequencies (``keys`` shaped (..., key, step)) equals the
    last measured set at every later measured step; NaN when nothing was measured."""
    keys = np.sort(np.asarray(keys, dtype=float), axis=-2)  # a set: the rank order may swap
    measured = np.isfinite(keys).all(axis=-2)
    last = np.where(measured.any(-1), measured.shape[-1] - 1 - np.argmax(measured[..., ::-1], axis=-1), 0)
    final = np.take_along_axis(keys, last[..., None, None], axis=-1)
    differs = measured & ~(keys == final).all(axis=-2)  # unmeasured steps never break the run
    # The step after the last one that differs; from the first measured step when none does.
    after = np.where(differs.any(-1), differs.shape[-1] - np.argmax(differs[..., ::-1], axis=-1), 0)
    settled = measured & (np.arange(measured.shape[-1]) >= after[..., None])
    return _first(steps, settled)


def _first(steps: np.ndarray, hit: np.ndarray) -> np.ndarray:
    return np.where(hit.any(-1), np.asarray(steps, dtype=float)[np.argmax(hit, axis=-1)], np.nan)


#: name -> (the curves it needs, the function of the steps and those curves, what it means: info prints it).
MARKS: dict[str, tuple[tuple[str, ...], Callable[..., np.ndarray], str]] = {
    "collapse_1": (("softmax_collapse_curve",), lambda s, c: first_step_above(s, c, COLLAPSE_MARKS[0]),
                   f"softmax_collapse > {COLLAPSE_MARKS[0]:g}"),
    "collapse_50": (("softmax_collapse_curve",), lambda s, c: first_step_above(s, c, COLLAPSE_MARKS[1]),
                    f"softmax_collapse > {COLLAPSE_MARKS[1]:g}"),
    "excluded_rise": (("excluded_loss_curve", "train_err_curve"), excluded_rise_step,
                      f"excluded_loss > {EXCLUDED_RISE:g} x its running minimum while train_err = 0"),
    "keys_settled": (("key_frequencies_curve",), keys_settled_step,
                     "the set of key frequencies is the final one from this step on"),
}


def progress_marks(cube: xr.Dataset) -> xr.Dataset:
    """Every mark of :data:`MARKS` whose curves the cube has, over its cell dims (``definition`` in
    each variable's attrs); an empty Dataset for a cube without progress curves."""
    steps = cube["step"].values
    cell = set(cube["status"].dims)
    out = xr.Dataset()
    for name, (needs, mark, definition) in MARKS.items():
        if all(n in cube for n in needs):
            core = [[d for d in cube[n].dims if d not in cell] for n in needs]  # ("step",) or ("key", "step")
            out[name] = xr.apply_ufunc(lambda *curves, f=mark: f(steps, *curves), *(cube[n] for n in needs),
                                       input_core_dims=core).assign_attrs(definition=definition, units="steps")
    return out


def final_value(cube: xr.Dataset, name: str) -> xr.DataArray | None:
    """The cell's end value of a measure: the variable ``name``, else the last measured point of
    ``<name>_curve`` (a task's extra curve has no final variable: modular-mlp's min_margin); None
    when the cube has neither."""
    if name in cube:
        return cube[name]
    if f"{name}_curve" not in cube:
        return None
    curve = cube[f"{name}_curve"]
    measured = curve.notnull()
    last = (measured.sizes["step"] - 1 - measured.isel(step=slice(None, None, -1)).argmax("step"))
    return curve.isel(step=last).drop_vars("step", errors="ignore").where(measured.any("step"))
