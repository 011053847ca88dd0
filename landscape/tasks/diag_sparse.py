"""``diag-sparse``: grokking of a sparse linear classifier by a diagonal net (Dichotomy Fig. 1a).

x ~ U{+-1}^d, y = sign(<w*, x>) with w* supported on the first k coordinates, random signs (k odd:
no ties), as the authors' ``gen_sparse_linear_classification``. The L2 max-margin (kernel) classifier
needs O(kd) samples, the L1 max-margin (rich) one O(k^2 log d): with N in between, test accuracy
sits near the kernel SVM's until t ~ log(alpha)/(eta lambda), then jumps to the L1 classifier's.
Paper: d = 10^5, k = 3, N = 256; our default d = 2000 keeps a step cheap on a CPU.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from landscape.tasks.diagonal import DiagonalOptions, DiagonalTask


@dataclass(frozen=True)
class DiagSparseOptions(DiagonalOptions):
    k: int = 3


class DiagSparse(DiagonalTask):
    name = "diag-sparse"
    Options = DiagSparseOptions

    @property
    def data_source(self) -> str:
        o = self.options
        return f"synthetic: x ~ U{{+-1}}^{o.d}, y = sign of a {o.k}-sparse signed sum, data_seed={o.data_seed}"

    def draw_teacher(self, rng: np.random.Generator) -> np.ndarray:
        teacher = np.zeros(self.options.d)
        teacher[: self.options.k] = rng.choice([-1.0, 1.0], self.options.k)
        return teacher

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.choice([-1.0, 1.0], (n, self.options.d))
        return x, np.where(x @ self.teacher > 0, 1.0, -1.0)
