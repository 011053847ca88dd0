"""What the modular-addition tasks share: all p^2 pairs (a, b) in one seeded order, the training
set for N its first N pairs and the test set the rest, so the training fraction is N / p^2; the
label (a + b) mod p as an integer class, cross-entropy loss and argmax errors.

The cube's ``data_source`` and ``fixed_pairs`` attr (p^2) carry what turns the axis N into that
fraction (Omnigrok and Nanda et al.: 0.3, N = 3830 at p = 113; Dichotomy: 0.4, N = 3763 at p = 97).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from landscape.errors import UserError
from landscape.tasks.base import FourierGrid

#: Key frequencies of Nanda et al.'s main run (p = 113); at a small p at most a quarter of the (p - 1) / 2.
KEY_FREQUENCIES = 5


def check_prime(p: int) -> None:
    if not (isinstance(p, int) and p >= 3 and all(p % k for k in range(2, math.isqrt(p) + 1))):
        raise UserError(f"task_options.p = {p} must be a prime >= 3")


class ModularPairs:
    """Mixin for a ``Task`` over the pairs of residues mod ``options.p`` (options also hold ``split_seed``);
    the task keeps the inputs and labels of every pair in ``pair_order`` as ``_x`` and ``_y``."""

    axis_long_name = "training pairs (fraction N / p^2)"
    softmax_classifier = True
    _x: torch.Tensor
    _y: torch.Tensor

    def pair_order(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) of every pair in the order fixed by ``split_seed``: the training set for N is its first N."""
        p = self.options.p
        order = np.random.default_rng(self.options.split_seed).permutation(p * p)
        return np.divmod(order, p)

    @property
    def data_source(self) -> str:
        p, seed = self.options.p, self.options.split_seed
        return (f"synthetic: (a + b) mod {p}; train = the first N of the {p * p} pairs permuted by "
                f"split_seed={seed}, test = the rest; training fraction = N / {p * p}")

    @property
    def pool_size(self) -> int:
        return self.options.p ** 2 - 1  # at least one pair left to test on

    @property
    def fixed(self) -> dict[str, Any]:
        return {"pairs": self.options.p ** 2}

    def fourier_grid(self, train_size: int) -> FourierGrid:
        """All pairs a-major; the training pairs of a split from ``data`` are the first N of ``pair_order``."""
        p = self.options.p
        a, b = self.pair_order()
        rows = torch.as_tensor(a * p + b)  # the grid row of each pair in the seeded order
        grid = torch.argsort(rows)
        return FourierGrid(self._x[grid], self._y[grid], rows[:train_size],
                           min(KEY_FREQUENCIES, max(1, (p - 1) // 4)))

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(pred, target)

    def errors(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred.argmax(-1) != target).to(pred.dtype)
