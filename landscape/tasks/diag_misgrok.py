"""``diag-misgrok``: "misgrokking" of a diagonal net (Dichotomy Fig. 1b).

w* ~ N(0, I_d) normalized, z ~ N(0, I_d), y = sign(<z, w*>), x = z + y (gamma/2) w*: Gaussian data
with an empty slab of width gamma around the separating hyperplane, as the authors'
``gen_l2_separated_linear_classification``. The dense w* has a large L2 margin, so the kernel
regime (L2 max-margin) generalizes, and the rich regime (L1 max-margin, sparse) does not: test
accuracy falls after t ~ log(alpha)/(eta lambda) while training accuracy stays 100%.
Paper: gamma = 25, N = 32, d = 10^5 (script default). Our default d = 5000 with gamma = 10 keeps
the per-coordinate signal gamma/(2 sqrt d) small (0.07, paper 0.04), so L1 still fails, while the
L2 classifier still has test error < 1% (see README).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from landscape.tasks.diagonal import DiagonalOptions, DiagonalTask


@dataclass(frozen=True)
class DiagMisgrokOptions(DiagonalOptions):
    d: int = 5000
    #: Width of the empty slab around the hyperplane <x, w*> = 0.
    gamma: float = 10.0


class DiagMisgrok(DiagonalTask):
    name = "diag-misgrok"
    Options = DiagMisgrokOptions

    @property
    def data_source(self) -> str:
        o = self.options
        return f"synthetic: Gaussian in R^{o.d} with a margin slab gamma={o.gamma:g}, data_seed={o.data_seed}"

    def draw_teacher(self, rng: np.random.Generator) -> np.ndarray:
        teacher = rng.standard_normal(self.options.d)
        return teacher / np.linalg.norm(teacher)

    def draw(self, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
        z = rng.standard_normal((n, self.options.d))
        y = np.where(z @ self.teacher > 0, 1.0, -1.0)
        return z + y[:, None] * (self.options.gamma / 2) * self.teacher, y
