"""``matrix-completion``: completing a multiplication table (Dichotomy Sec. 3.3.3, Fig. 3).

X*_ij = i j / d^2 = (u u^T)_ij with u = arange(d)/d (rank 1). The model is W = UU^T - VV^T from
U = V = alpha I (``landscape.models.MatrixFactorization``: build_model gives U = V = I, norm
sqrt(2d), so the spec's alpha is the paper's alpha and w = alpha sqrt(2d)). MSE on the observed
entries: the first N of a seeded permutation of the d^2 flat indices (ordered pairs, as the
authors' ``gen_matrix_for_completion``); the test set is every other entry. The axis N is the
number of observed entries (paper: 5% of 97^2, N = 470).

The kernel regime fits the observed entries and their transposes and leaves the rest at 0; the
rich regime converges towards the minimum nuclear-norm completion. The test MSE is the main
metric; an entry counts as an error when |W_ij - X*_ij| > ``tolerance`` (default 0.05, a fifth of
the mean entry 1/4), so the accuracy level of t_fit/t_gen has a meaning too.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import numpy as np
import torch
from torch import nn

from landscape.models import MatrixFactorization
from landscape.tasks.base import Split, require_seed
from landscape.tasks.dichotomy import DichotomyTask, References
from landscape.tasks.theory import kernel_completion, min_nuclear_completion


@dataclass(frozen=True)
class MatrixCompletionOptions:
    d: int = 97
    tolerance: float = 0.05
    #: Seeds the permutation that orders the entries (train = its first N).
    data_seed: int = 0

    def __post_init__(self) -> None:
        require_seed(self)


class MatrixCompletion(DichotomyTask):
    name = "matrix-completion"
    axis_long_name = "observed entries"
    default_level = 0.95
    Options = MatrixCompletionOptions
    max_threads = 1  # 97 x 97 matmuls: 3-12x slower per step on 2 threads than on 1 (busy 2-core CPU)
    extra_values: ClassVar[Mapping[str, str]] = {
        "kernel_test_loss": "test MSE of the kernel-regime predictor (observed entries and transposes, else 0)",
        "rich_test_loss": "test MSE of the minimum nuclear-norm completion",
        "kernel_test_err": "test error of the kernel-regime predictor",
        "rich_test_err": "test error of the minimum nuclear-norm completion",
        "rich_gap": "certified relative duality gap of the nuclear-norm solve",
    }

    def __init__(self, options: MatrixCompletionOptions, data_dir: str | None = None):
        super().__init__(options, data_dir)
        d = options.d
        scale = np.arange(d) / d
        self.table = np.outer(scale, scale)
        self.order = np.random.default_rng([options.data_seed, 0]).permutation(d * d)

    @property
    def data_source(self) -> str:
        o = self.options
        return f"synthetic: multiplication table i*j/d^2, d={o.d}, entries ordered by data_seed={o.data_seed}"

    @property
    def pool_size(self) -> int:
        return self.options.d ** 2 - 1  # at least one entry left to test on

    def build_model(self) -> nn.Module:
        return MatrixFactorization(self.options.d)

    def data(self, value: int) -> Split:
        def entries(flat: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
            pairs = np.stack(np.divmod(flat, self.options.d), axis=1)
            return torch.as_tensor(pairs), torch.as_tensor(self.table.ravel()[flat], dtype=torch.float32)

        return Split(*entries(self.order[:value]), *entries(self.order[value:]))

    def errors(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((pred - target).abs() > self.options.tolerance).to(pred.dtype)

    def solve_references(self, split: Split) -> References:
        rows, cols = split.train_x.numpy().T
        values, d = split.train_y.double().numpy(), self.options.d
        test_rows, test_cols = split.test_x.numpy().T
        test_y = split.test_y.double().numpy()
        kernel = kernel_completion(rows, cols, values, d)
        nuclear = min_nuclear_completion(rows, cols, values, d)
        metrics = {}
        for name, matrix in (("kernel", kernel), ("rich", nuclear.matrix)):
            residual = matrix[test_rows, test_cols] - test_y
            metrics[f"{name}_test_loss"] = float(np.mean(residual ** 2))
            metrics[f"{name}_test_err"] = float(np.mean(np.abs(residual) > self.options.tolerance))
        metrics["rich_gap"] = nuclear.gap
        return References(kernel, nuclear.matrix, metrics)
