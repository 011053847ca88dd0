"""``modular-mlp``: modular addition with a two-layer ReLU net (Dichotomy Sec. 2, Fig. 2; paper-setups B.4).

Input: the one-hots of a and b concatenated, in R^{2p}; output: p logits, cross-entropy on the
label (a + b) mod p; full-batch GD (``optimizer = "sgd"``) with weight decay lambda. The model
(``landscape.models.TwoLayerReLU``) has a bias in the first layer only, He init and a zero last
layer, so its output is 0 at init and alpha scales the first layer: the paper's "He init x alpha".
Axis N: training pairs (``landscape.tasks.modular``; paper: p = 97, N = 3763, 40%).

References (``landscape.tasks.dichotomy``), compared with the model's logits on the held-out
pairs, each row centred (cross-entropy ignores a shift common to a row); on the training pairs
both references are the same centred one-hot labels, so only the held-out pairs tell them apart:
- kernel: with W2 = 0 the NTK at init is the kernel of the first layer's ReLU features, which at
  infinite width is the arc-cosine kernel of the inputs (cos = shared tokens / 2, b1 = 0); the
  reference is its minimum-norm interpolant of the centred one-hot labels. Cross-entropy's kernel
  regime tends to the kernel's multiclass max-margin classifier instead, which we do not solve; the
  interpolant stands in for it, and like it predicts a held-out pair from training pairs that share
  a or b, all of which have other labels.
- rich: the centred one-hot of every pair's label, i.e. logits with the same margin over every
  wrong class. [inference] That is the logit pattern of the max-margin nets for modular addition
  (Morwani et al. 2023: Fourier features of every frequency, sum_k cos(2 pi k (a + b - c) / p) =
  p [c = a + b] - 1); its test error is 0.
Each cell also records ``min_margin``, the smallest over training pairs of the correct logit minus
the largest wrong one (the authors' code logs it; positive once every training pair is fitted).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from landscape.models import TwoLayerReLU
from landscape.tasks.base import SOFTMAX_PROGRESS, Split, require_positive, require_seed
from landscape.tasks.dichotomy import DichotomyTask, References
from landscape.tasks.modular import ModularPairs, check_prime
from landscape.tasks.theory import kernel_interpolant, relu_kernel


@dataclass(frozen=True)
class ModularMlpOptions:
    p: int = 97
    width: int = 1024
    #: Seeds the permutation of the p^2 pairs; the training set for N is its first N pairs.
    split_seed: int = 0

    def __post_init__(self) -> None:
        check_prime(self.p)
        require_positive(self, "width")
        require_seed(self, "split_seed")


class ModularMlp(ModularPairs, DichotomyTask):
    name = "modular-mlp"
    default_level = 0.95
    Options = ModularMlpOptions
    # "margin" is left out: the extra curve min_margin records it already (and names its cube variable).
    progress_measures = (*SOFTMAX_PROGRESS, "normalized_margin", "fourier")
    homogeneity_degree = 2.0  # TwoLayerReLU, with its first layer's bias among theta
    extra_curves: ClassVar[Mapping[str, str]] = {
        **DichotomyTask.extra_curves,
        "min_margin": "smallest correct-minus-largest-wrong logit over the training pairs",
    }
    extra_values: ClassVar[Mapping[str, str]] = {
        "kernel_test_err": "test error of the kernel-regime reference (minimum-norm ReLU-kernel interpolant)",
        "rich_test_err": "test error of the rich-regime reference (equal-margin logits of the true labels)",
    }

    def __init__(self, options: ModularMlpOptions, data_dir: str | None = None):
        super().__init__(options, data_dir)
        p = options.p
        a, b = self.pair_order()
        one_hots = F.one_hot(torch.as_tensor(a), 2 * p) + F.one_hot(torch.as_tensor(b + p), 2 * p)
        self._x = one_hots.to(torch.get_default_dtype())
        self._y = torch.as_tensor((a + b) % p)

    def build_model(self) -> nn.Module:
        p = self.options.p
        return TwoLayerReLU(2 * p, self.options.width, p)

    def data(self, value: int) -> Split:
        return Split(self._x[:value], self._y[:value], self._x[value:], self._y[value:])

    def fourier_embedding(self, model: nn.Module) -> torch.Tensor:
        """Each residue's columns of the first layer, as the first operand and as the second, side by side."""
        p, w1 = self.options.p, model.hidden.weight
        return torch.cat([w1[:, :p].T, w1[:, p:].T], dim=1)

    def predictor(self, model: nn.Module, split: Split) -> np.ndarray:
        """The model's logits on the held-out pairs, each row centred."""
        logits = model(split.test_x).detach().double()
        return (logits - logits.mean(-1, keepdim=True)).numpy()

    def measure_extra_curves(self, model: nn.Module, split: Split) -> dict[str, float]:
        logits = model(split.train_x)
        correct = logits.gather(1, split.train_y[:, None])
        wrong = logits.scatter(1, split.train_y[:, None], float("-inf")).amax(1, keepdim=True)
        return {**super().measure_extra_curves(model, split), "min_margin": float((correct - wrong).min())}

    def solve_references(self, split: Split) -> References:
        n, p = len(split.train_x), self.options.p
        x = self._x.double().numpy()
        labels = self._y.numpy()
        rich = np.eye(p)[labels] - 1.0 / p
        cos = x @ x[:n].T / 2.0  # both inputs have two ones: cos = shared tokens / 2
        kernel = kernel_interpolant(relu_kernel(cos[:n]), rich[:n], relu_kernel(cos[n:]))
        rich, labels = rich[n:], labels[n:]  # the held-out pairs
        metrics = {f"{name}_test_err": float(np.mean(ref.argmax(1) != labels))
                   for name, ref in (("kernel", kernel), ("rich", rich))}
        return References(kernel, rich, metrics)
