"""StableMax cross-entropy (Prieto, Barsbey, Mediano & Birdal, ICLR 2025, "Grokking at the edge of
numerical stability"): softmax's exp replaced by a function that grows linearly, so the correct
class's probability cannot round to exactly 1 (Softmax Collapse) at the logit scales grokking reaches.

    s(x) = x + 1 for x >= 0,  1 / (1 - x) for x < 0;   StableMax(x)_i = s(x_i) / sum_j s(x_j)
    loss = -log StableMax(x)_y = log sum_j s(x_j) - log s(x_y)

The authors' code (utils.py, ``stablemax_cross_entropy``) casts the logits to a loss dtype first
(their ``--cross_entropy_dtype``, float32 by default, float64 in their high-precision runs) and
computes ``log(s / sum s)``; ``dtype`` here is that cast (None: the logits' own dtype). We take
log s(x_y) as log1p(x) / -log1p(-x) instead of the log of the ratio, the same value to rounding,
and evaluate 1/(1 - x) on min(x, 0) only, so the branch ``torch.where`` discards cannot put an
inf into the backward pass (their 1e-30 guard does not cover x = 1 exactly).

Every function takes logits (..., n, classes) and integer targets (..., n): leading dims are kept,
so stacked cells (cells, n, classes) are one call.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F


def stablemax_s(x: torch.Tensor) -> torch.Tensor:
    """The elementwise s(x) that StableMax normalizes."""
    return torch.where(x < 0, 1 / (1 - x.clamp(max=0)), x + 1)


def _log_s(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x < 0, -torch.log1p(-x.clamp(max=0)), torch.log1p(x.clamp(min=0)))


def log_stablemax(logits: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """log StableMax over the last dim, computed in ``dtype`` (None: the logits' dtype)."""
    x = logits if dtype is None else logits.to(dtype)
    return _log_s(x) - torch.log(stablemax_s(x).sum(-1, keepdim=True))


def stablemax_losses(logits: torch.Tensor, target: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Per-sample StableMax cross-entropy, (..., n)."""
    return -log_stablemax(logits, dtype).gather(-1, target.unsqueeze(-1)).squeeze(-1)


def stablemax_cross_entropy(logits: torch.Tensor, target: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Mean StableMax cross-entropy over the samples (the last batch dim), (...)."""
    return stablemax_losses(logits, target, dtype).mean(-1)


def cross_entropy_losses(logits: torch.Tensor, target: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Per-sample softmax cross-entropy in ``dtype``, (...,  n): the baseline StableMax replaces."""
    return -F.log_softmax(logits, dim=-1, dtype=dtype).gather(-1, target.unsqueeze(-1)).squeeze(-1)


#: Per-sample classification losses by the name ``train.loss`` would select.
PER_SAMPLE_LOSSES = {"cross_entropy": cross_entropy_losses, "stablemax": stablemax_losses}
