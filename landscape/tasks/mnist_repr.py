"""MNIST with a representation of messiness m (Omnigrok section 5.2, Fig. 8).

The ``mnist`` task at a fixed training-set size N, with every input, train and test, replaced by
x <- m x + (1 - m) template[label]: at m = 0 an image is the constant 28x28 image of value
linspace(-0.5, 0.5, 10)[label] (linearly separable), at m = 1 the raw pixels. As in the authors'
notebook (KindXiaoming/Omnigrok mnist-repr/), the template is applied to the test set too.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from landscape.errors import UserError
from landscape.tasks.base import Split, labels_of
from landscape.tasks.messiness import MessinessAxis, mix
from landscape.tasks.mnist import Mnist, MnistOptions

#: Pixel value of the clean image of each digit.
TEMPLATE_VALUES = torch.linspace(-0.5, 0.5, 10)


@dataclass(frozen=True)
class MnistReprOptions(MnistOptions):
    #: Training-set size, fixed across the grid: the first N images of the pool's permutation.
    N: int = 4000


class MnistRepr(MessinessAxis, Mnist):
    name = "mnist-repr"
    Options = MnistReprOptions

    def __init__(self, options: MnistReprOptions, data_dir: str | None = None):
        super().__init__(options, data_dir)
        if not 1 <= options.N <= self.pool_size:
            raise UserError(f"task_options.N = {options.N} must be in [1, {self.pool_size}], "
                            f"the training pool of {self.data_source}")

    def data(self, value: float) -> Split:
        raw = super().data(self.options.N)
        return Split(self._embed(value, raw.train_x, raw.train_y), raw.train_y,
                     self._embed(value, raw.test_x, raw.test_y), raw.test_y)

    def train_size(self, value: float) -> int:
        return self.options.N

    @staticmethod
    def _embed(m: float, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        clean = TEMPLATE_VALUES[labels_of(target)][:, None].expand_as(x)
        return mix(m, x, clean)
