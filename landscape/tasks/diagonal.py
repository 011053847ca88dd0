"""Linear classification with a two-layer diagonal net (Dichotomy paper Sec. 3.2.3, authors'
``train_diag_cls*.py``): what ``diag-sparse`` and ``diag-misgrok`` share.

Model w = u*u - v*v from u = v (total initial norm alpha; ``landscape.models.DiagonalNet``),
logistic loss softplus(-y f), labels +-1, a tie (f = 0) counting as half an error. The kernel
regime's predictor is the L2 max-margin classifier, the rich regime's the L1 max-margin one.
A subclass supplies the data distribution: ``draw(rng, n)`` and the labelling direction.
"""
from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from landscape.errors import UserError
from landscape.models import DiagonalNet
from landscape.tasks.base import Split, require, require_seed
from landscape.tasks.dichotomy import DichotomyTask, References
from landscape.tasks.theory import classification_error, l1_max_margin, l2_max_margin


@dataclass(frozen=True)
class DiagonalOptions:
    d: int = 2000
    n_test: int = 2000
    #: Seeds the labelling direction and both samples; the cell seed plays no part (the init is fixed).
    data_seed: int = 0

    def __post_init__(self) -> None:
        require(self, "d", lambda v: v >= 1, "must be >= 1")
        require(self, "n_test", lambda v: v >= 1, "must be >= 1")
        require_seed(self)


class DiagonalTask(DichotomyTask):
    default_level = 0.95
    extra_values: ClassVar[Mapping[str, str]] = {
        "kernel_test_err": "test error of the L2 max-margin classifier (the kernel regime's predictor)",
        "rich_test_err": "test error of the L1 max-margin classifier (the rich regime's predictor)",
    }

    def __init__(self, options: DiagonalOptions, data_dir: str | None = None):
        super().__init__(options, data_dir)
        self.teacher = self.draw_teacher(np.random.default_rng([options.data_seed, 2]))
        self._test = self.draw(np.random.default_rng([options.data_seed, 1]), options.n_test)

    @abstractmethod
    def draw_teacher(self, rng: np.random.Generator) -> np.ndarray:
        """The direction w* whose sign labels the data."""

    @abstractmethod
    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        """n inputs (n, d) and their labels +-1, drawn row by row (so a prefix is a smaller sample)."""

    def build_model(self) -> nn.Module:
        return DiagonalNet(self.options.d)

    def data(self, value: int) -> Split:
        train = self.draw(np.random.default_rng([self.options.data_seed, 0]), value)
        tensors = [torch.as_tensor(a, dtype=torch.float32) for a in (*train, *self._test)]
        return Split(*tensors)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.softplus(-target * pred).mean()

    def errors(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        margin = target * pred
        return torch.where(margin > 0, 0.0, torch.where(margin < 0, 1.0, 0.5)).to(pred.dtype)

    def solve_references(self, split: Split) -> References:
        x, y = split.train_x.double().numpy(), split.train_y.double().numpy()
        test_x, test_y = split.test_x.double().numpy(), split.test_y.double().numpy()
        try:
            kernel, rich = l2_max_margin(x, y), l1_max_margin(x, y)
        except ValueError as e:  # the theory needs separable data: N too large for d
            raise UserError(f"{self.name}, N = {len(x)}: {e}") from None
        return References(kernel, rich, {"kernel_test_err": classification_error(test_x @ kernel, test_y),
                                         "rich_test_err": classification_error(test_x @ rich, test_y)})
