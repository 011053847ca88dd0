"""What the Dichotomy paper's tasks (Lyu et al. 2024) share: a kernel-regime and a rich-regime
reference solution per training set, and the cosine of the model's predictor to each at every eval.

A subclass's model has a ``predictor()`` method returning the object the theory is about (the
diagonal net's linear classifier w, the factorization's matrix W), or the subclass overrides
``predictor(model, split)`` (a classifier's logits on the held-out inputs); the subclass solves the two
references (landscape.tasks.theory) for a split and reports their test metrics as ``extra_values``.
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import numpy as np
from torch import nn

from landscape.tasks.base import Split, Task
from landscape.tasks.theory import cosine


@dataclass(frozen=True)
class References:
    """The two limits of one training set and their test metrics."""

    kernel: np.ndarray  # the predictor of the kernel (NTK) regime, before t ~ log(alpha)/lambda
    rich: np.ndarray  # the max-margin / min-norm predictor the rich regime converges to after it
    metrics: dict[str, float]  # the task's extra_values, e.g. {"kernel_test_err": ..., "rich_test_err": ...}


class DichotomyTask(Task):
    axis_long_name = "training-set size"
    reference_predictors = ("kernel", "rich")
    extra_curves: ClassVar[Mapping[str, str]] = {
        "cos_kernel": "cosine between the model's predictor and the kernel-regime reference",
        "cos_rich": "cosine between the model's predictor and the rich-regime reference",
    }

    def __init__(self, options: Any, data_dir: str | None = None):
        super().__init__(options, data_dir)
        # The training set for N is a fixed prefix, so its size identifies it; solving is the slow part.
        self._references: dict[int, References] = {}

    @abstractmethod
    def solve_references(self, split: Split) -> References:
        """Both reference predictors of ``split``'s training set, and their test metrics."""

    def references(self, split: Split) -> References:
        n = len(split.train_x)
        if n not in self._references:
            self._references[n] = self.solve_references(split)
        return self._references[n]

    def predictor(self, model: nn.Module, split: Split) -> np.ndarray:
        """What the references are compared with: by default the model's own ``predictor()``."""
        return model.predictor().detach().double().numpy()

    def measure_extra_curves(self, model: nn.Module, split: Split) -> dict[str, float]:
        refs = self.references(split)
        current = self.predictor(model, split)
        return {"cos_kernel": cosine(current, refs.kernel), "cos_rich": cosine(current, refs.rich)}

    def measure_extra_values(self, split: Split) -> dict[str, float]:
        return dict(self.references(split).metrics)
