"""Two models a user brings (issue 24): a GRU classifier on synthetic sequences, and a residual MLP
with BatchNorm and Dropout regressing scikit-learn's bundled diabetes data. They enter through
``landscape.Task`` as any outside task does (see examples/digits_cnn)."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from landscape import Split, Task

_SEQ_LEN, _FEATURES, _CLASSES, _SEQUENCES, _SEQ_TEST = 12, 3, 3, 600, 200


class _GRUClassifier(nn.Module):
    def __init__(self, hidden: int = 16):
        super().__init__()
        self.gru = nn.GRU(_FEATURES, hidden, batch_first=True)
        self.head = nn.Linear(hidden, _CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, last = self.gru(x)
        return self.head(last[-1])


class SeqGRU(Task):
    """Which of three features has the largest sum over a 12-step noisy sequence; an nn.GRU and a
    linear head on its last state, cross-entropy. The first N of 400 sequences train, 200 test."""

    name = "seq-gru"
    axis_long_name = "training sequences"

    def __init__(self, options, data_dir: str | None = None):
        super().__init__(options, data_dir)
        rng = np.random.default_rng(0)
        labels = rng.integers(0, _CLASSES, _SEQUENCES)
        x = rng.standard_normal((_SEQUENCES, _SEQ_LEN, _FEATURES)) * 0.8
        x[np.arange(_SEQUENCES), :, labels] += 0.5  # the label's feature drifts up
        self._x, self._y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(labels)

    @property
    def data_source(self) -> str:
        return "synthetic: 600 sequences of 12 steps x 3 features, label = the feature with the largest drift"

    @property
    def pool_size(self) -> int:
        return _SEQUENCES - _SEQ_TEST

    def build_model(self) -> nn.Module:
        return _GRUClassifier()

    def data(self, value: int) -> Split:
        test = slice(_SEQUENCES - _SEQ_TEST, None)
        return Split(self._x[:value], self._y[:value], self._x[test], self._y[test])

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(pred, target)

    def errors(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred.argmax(-1) != target).to(pred.dtype)


class _ResidualMLP(nn.Module):
    def __init__(self, features: int, width: int = 32, dropout: float = 0.1):
        super().__init__()
        self.inp = nn.Linear(features, width)
        self.block = nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Dropout(dropout))
        self.out = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.inp(x))
        return self.out(h + self.block(h)).squeeze(-1)


class DiabetesResMLP(Task):
    """scikit-learn's diabetes progression (442 patients, 10 standardised features), the target
    standardised; a residual MLP with BatchNorm and Dropout, MSE. The figures read the loss (in
    units of the target's variance); a patient counts as an error when off by more than half a
    standard deviation. The first N of 300 patients train, the other 142 test."""

    name = "diabetes-resmlp"
    axis_long_name = "training patients"
    figure_metric = "loss"
    figure_levels = (0.5, 0.7, 1.0)
    _POOL = 300

    def __init__(self, options, data_dir: str | None = None):
        super().__init__(options, data_dir)
        from sklearn.datasets import load_diabetes

        x, y = load_diabetes(return_X_y=True)
        order = np.random.default_rng(0).permutation(len(y))
        x, y = x[order], y[order]
        x = (x - x.mean(0)) / x.std(0)
        y = (y - y.mean()) / y.std()
        self._x, self._y = torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.float32)

    @property
    def data_source(self) -> str:
        return "scikit-learn load_diabetes (442 patients), features and target standardised"

    @property
    def pool_size(self) -> int:
        return self._POOL

    def build_model(self) -> nn.Module:
        return _ResidualMLP(self._x.shape[1])

    def data(self, value: int) -> Split:
        return Split(self._x[:value], self._y[:value], self._x[self._POOL:], self._y[self._POOL:])

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(pred, target)

    def errors(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((pred - target).abs() > 0.5).to(pred.dtype)
