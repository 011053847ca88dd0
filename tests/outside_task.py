"""A task the package has never seen, with the layers that need train/eval modes: Dropout and BatchNorm."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from landscape import Split, Task


@dataclass(frozen=True)
class NoisyOptions:
    dropout: float = 0.3


class DropoutBatchNormTask(Task):
    """Three-class blobs in 6-d, an MLP with BatchNorm1d and Dropout, cross-entropy on labels."""

    name = "dropout-bn"
    default_level = 0.9
    Options = NoisyOptions

    def __init__(self, options: NoisyOptions, data_dir: str | None = None):
        super().__init__(options, data_dir)
        rng = np.random.default_rng(0)
        centers = rng.standard_normal((3, 6)) * 2
        labels = rng.integers(0, 3, 400)
        x = centers[labels] + rng.standard_normal((400, 6))
        self._x, self._y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(labels)

    @property
    def data_source(self) -> str:
        return "synthetic: 3 gaussian blobs in 6-d"

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(6, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(self.options.dropout),
                             nn.Linear(32, 3))

    def data(self, value: int) -> Split:
        return Split(self._x[:value], self._y[:value], self._x[300:], self._y[300:])

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(pred, target)

    def errors(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred.argmax(-1) != target).to(pred.dtype)


class NotATask:
    """Importable, but not a landscape.Task."""
