"""Teacher-student regression (Omnigrok section 3, Fig. 2).

Teacher and student are 5-100-100-5 tanh MLPs; the teacher keeps its default init. Inputs are
N(0, I); a sample is "correct" when its per-sample MSE is below ``threshold`` (the authors'
code uses 1e-3; the paper text says 0.01).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from landscape.models import mlp
from landscape.tasks.base import Split, Task

WIDTHS = (5, 100, 100, 5)


@dataclass(frozen=True)
class TeacherStudentOptions:
    threshold: float = 1e-3
    n_test: int = 100
    #: Seeds the teacher and the inputs; the cell seed only drives the student's init and batches.
    data_seed: int = 0


#: Offset between data_seed and the teacher's torch seed, so the teacher's init never coincides
#: with a student's (cell seeds are small integers); otherwise alpha = 1 would start at the answer.
TEACHER_SEED_OFFSET = 1_000_003


class TeacherStudent(Task):
    name = "teacher-student"
    default_level = 0.95  # Omnigrok Fig. 2c: steps to 95% train / test accuracy
    Options = TeacherStudentOptions

    def __init__(self, options: TeacherStudentOptions, data_dir: str | None = None):
        super().__init__(options, data_dir)
        with torch.random.fork_rng():
            torch.manual_seed(options.data_seed + TEACHER_SEED_OFFSET)
            self.teacher = mlp(WIDTHS, nn.Tanh).requires_grad_(False)
        test_rng = np.random.default_rng([options.data_seed, 1])
        self._test_x = torch.as_tensor(test_rng.standard_normal((options.n_test, WIDTHS[0])), dtype=torch.float32)

    @property
    def data_source(self) -> str:
        return f"synthetic: tanh teacher {'-'.join(map(str, WIDTHS))}, data_seed={self.options.data_seed}"

    def build_model(self) -> nn.Module:
        return mlp(WIDTHS, nn.Tanh)

    def data(self, value: int) -> Split:
        # numpy fills sequentially, so the set for N is a prefix of the set for any larger N.
        train_rng = np.random.default_rng([self.options.data_seed, 0])
        train_x = torch.as_tensor(train_rng.standard_normal((value, WIDTHS[0])), dtype=torch.float32)
        with torch.no_grad():
            return Split(train_x, self.teacher(train_x), self._test_x, self.teacher(self._test_x))

    def errors(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (((pred - target) ** 2).mean(-1) >= self.options.threshold).to(pred.dtype)
