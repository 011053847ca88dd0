"""A task from outside the package: a small CNN on scikit-learn's bundled 8x8 digits.

It uses only the public API (``landscape.Task``, ``landscape.Split``) and reaches the engine the way
any outside task does: the spec names it by import path, ``task = "examples.digits_cnn.digits_cnn:DigitsCNN"``,
and the driver and every worker import it from there. Nothing is downloaded: ``load_digits()``
ships with scikit-learn (1,797 images, 16 grey levels).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from landscape import Split, Task, UserError

#: Images held out as the test set (a fixed, stratified-by-chance permutation); the rest is the pool.
TEST_SIZE = 497


@dataclass(frozen=True)
class DigitsOptions:
    #: Seeds the permutation that splits the 1,797 images into the test set and the training pool.
    split_seed: int = 0
    #: Channels of the two convolutions.
    channels: int = 8

    def __post_init__(self) -> None:
        if self.split_seed < 0:
            raise UserError(f"task_options.split_seed = {self.split_seed} must be >= 0")
        if self.channels < 1:
            raise UserError(f"task_options.channels = {self.channels} must be >= 1")


class DigitsNet(nn.Module):
    """conv3x3 -> ReLU -> conv3x3 (stride 2) -> ReLU -> linear: 8x8 grey image to 10 logits."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, 2 * channels, 3, stride=2, padding=1)
        self.head = nn.Linear(2 * channels * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.head(x.flatten(-3))


class DigitsCNN(Task):
    name = "digits-cnn"
    axis = "N"
    axis_long_name = "training-set size"
    default_level = 0.9
    Options = DigitsOptions

    def __init__(self, options: DigitsOptions, data_dir: str | None = None):
        super().__init__(options, data_dir)
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = torch.as_tensor(digits.images / 16.0, dtype=torch.float32)[:, None]  # (n, 1, 8, 8) in [0, 1]
        labels = torch.as_tensor(digits.target, dtype=torch.long)
        order = torch.as_tensor(np.random.default_rng(options.split_seed).permutation(len(labels)))
        test, self._pool = order[:TEST_SIZE], order[TEST_SIZE:]
        self._images, self._labels = images, labels
        self._test = images[test], labels[test]

    @property
    def data_source(self) -> str:
        return (f"scikit-learn load_digits(): {len(self._pool)} training pool / {TEST_SIZE} test images "
                f"(split_seed={self.options.split_seed})")

    @property
    def pool_size(self) -> int:
        return len(self._pool)

    def build_model(self) -> nn.Module:
        return DigitsNet(self.options.channels)

    def data(self, value: int) -> Split:
        train = self._pool[:value]  # the set for N is the first N of the pool: larger sets contain smaller ones
        return Split(self._images[train], self._labels[train], *self._test)

    def train_size(self, value: int) -> int:
        return value

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(pred, target)  # integer labels, no one-hot

    def errors(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred.argmax(-1) != target).to(pred.dtype)
