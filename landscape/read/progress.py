"""When a run's progress measures cross their marks: one definition of each mark, read by
``landscape info`` (and drawn by the grokking figure's panels as the same levels).

A mark is the first eval step at which a condition on the run's curves holds (``<name>_curve``
over ``step``; NaN where not measured, which never satisfies a condition); NaN where it never holds.
Pure numpy and xarray: the readers use it without torch.

The measures (landscape.measures.progress_measures): ``softmax_collapse`` (fraction of training
samples whose correct-class probability is exactly 1 in the training dtype, Prieto et al. 2025),
``nlm_cosine`` (cosine between −∇L and θ), ``restricted_loss`` / ``excluded_loss`` (the logits kept
to / without the key Fourier frequencies, Nanda et al. 2023) and the training curves of every cube.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import xarray as xr

#: Softmax-collapse fractions whose first crossing is a mark: the onset, and most of the training set.
COLLAPSE_LEVELS = (0.01, 0.5)
#: The NLM cosine from which on the gradient points mostly along the weights (Prieto et al.'s
#: naive loss minimization: the step mostly scales the logits up).
NLM_ALIGNED = 0.9
#: Factor over its running minimum by which the excluded loss counts as risen.
EXCLUDED_RISE = 2.0
#: Final values the landscape maps draw, over (w, N) (seeds averaged): where on the sphere models collapse.
MAP_MEASURES = ("softmax_collapse", "normalized_margin")

Curves = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class Mark:
    """``name`` (a column heading), the curves it reads (``needs``, without ``_curve``), its
    definition in words, and ``hit``: the evals where its condition holds, from the curves
    (each over leading dims and step, last)."""

    name: str
    needs: tuple[str, ...]
    definition: str
    hit: Callable[[Curves], np.ndarray]


def _above(var: str, level: float) -> Callable[[Curves], np.ndarray]:
    return lambda c: c[var] > level


def _excluded_rise(c: Curves) -> np.ndarray:
    """Nanda et al.'s circuit formation: with the training set fit, the loss without the key
    frequencies climbs from where it had fallen to. Strictly above: a minimum of exactly 0 stays 0."""
    running_min = np.fmin.accumulate(c["excluded_loss"], axis=-1)  # fmin: NaN evals do not reset it
    return (c["train_err"] == 0) & (c["excluded_loss"] > EXCLUDED_RISE * running_min)


def _restricted_below_train(c: Curves) -> np.ndarray:
    """The key frequencies alone predict better than the whole model fits: the circuit carries the
    fit. After the fit only, so that two near-uniform losses at initialization do not count."""
    return (c["train_err"] == 0) & (c["restricted_loss"] < c["train_loss"])


MARKS = (
    *(Mark(f"collapse>{level:.0%}", ("softmax_collapse",),
           f"softmax_collapse > {level:g} (fraction of training samples with p_y = 1 in the training dtype)",
           _above("softmax_collapse", level)) for level in COLLAPSE_LEVELS),
    Mark(f"nlm>{NLM_ALIGNED:g}", ("nlm_cosine",), f"nlm_cosine > {NLM_ALIGNED:g} (cos(-grad L, theta))",
         _above("nlm_cosine", NLM_ALIGNED)),
    Mark("excl_rise", ("excluded_loss", "train_err"),
         f"train_err == 0 and excluded_loss > {EXCLUDED_RISE:g} x its minimum over the evals so far",
         _excluded_rise),
    Mark("restr<train", ("restricted_loss", "train_loss", "train_err"),
         "train_err == 0 and restricted_loss < train_loss (the full model's)", _restricted_below_train),
)


def marks_of(cube: xr.Dataset) -> tuple[Mark, ...]:
    """The marks whose curves the cube has."""
    return tuple(m for m in MARKS if all(f"{v}_curve" in cube for v in m.needs))


def first_step(steps: np.ndarray, hit: np.ndarray) -> np.ndarray:
    """The first of ``steps`` where ``hit`` (last axis: step) holds; NaN where it never does."""
    hit = np.asarray(hit, dtype=bool)
    return np.where(hit.any(axis=-1), np.asarray(steps, dtype=float)[np.argmax(hit, axis=-1)], np.nan)


def mark_steps(cube: xr.Dataset) -> xr.Dataset:
    """Each applicable mark (:func:`marks_of`) as a variable over the cube's cell dims: the step."""
    out = xr.Dataset(coords={d: cube[d] for d in cube["status"].dims})
    for mark in marks_of(cube):
        curves = {v: cube[f"{v}_curve"].transpose(*cube["status"].dims, "step").values for v in mark.needs}
        out[mark.name] = (cube["status"].dims, first_step(cube["step"].values, mark.hit(curves)))
        out[mark.name].attrs["definition"] = mark.definition
    return out


def map_measures(cube: xr.Dataset) -> tuple[str, ...]:
    """The landscape-map measures (:data:`MAP_MEASURES`) among the cube's final values."""
    return tuple(v for v in MAP_MEASURES if v in cube)
