"""Grokking dynamics as plain numbers: when a run fits and generalizes, and when the LU picture
says it should. Pure numpy, no training code, so plots and analysis can use it on any cube."""
from __future__ import annotations

import math

import numpy as np

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
    in optimizer steps. 0 when the run already starts inside (w_init <= w_c); inf with no decay.
    """
    if rule not in DECAY_RULES:
        raise ValueError(f"no closed-form norm decay for optimizer {rule!r} (known: {', '.join(DECAY_RULES)})")
    if w_init <= w_c:
        return 0.0
    if gamma <= 0:
        return math.inf
    return math.log(w_c / w_init) / math.log1p(-lr * gamma)
