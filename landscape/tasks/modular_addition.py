"""Modular addition with a one-layer transformer (Omnigrok Figs. 7, 9, 10a; Nanda et al. 2023).

Every pair (a, b) of residues mod p is the sequence (a, b, "=") with "=" the token p (vocabulary
p + 1); the label is (a + b) mod p and the loss is cross-entropy on the last position's logits.
The logits range over all p + 1 tokens, "=" included, as in Nanda et al.'s code and the Omnigrok
notebook that drew Fig. 7 (TransformerLens' demo uses p outputs); "=" is never a label, so the
model learns to keep it low. Axis N: training pairs (``landscape.tasks.modular``).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from landscape.models import Transformer
from landscape.tasks.base import SOFTMAX_PROGRESS, Split, Task, require_positive, require_seed
from landscape.tasks.modular import ModularPairs, check_prime


@dataclass(frozen=True)
class ModularAdditionOptions:
    p: int = 113
    d_model: int = 128
    n_heads: int = 4
    d_head: int = 32
    d_mlp: int = 512
    #: Seeds the permutation of the p^2 pairs; the training set for N is its first N pairs.
    split_seed: int = 0

    def __post_init__(self) -> None:
        check_prime(self.p)
        require_positive(self, "d_model", "n_heads", "d_head", "d_mlp")
        require_seed(self, "split_seed")


class ModularAddition(ModularPairs, Task):
    name = "modular-addition"
    # Omnigrok's Fig. 7 notebook marks 95% train accuracy; grokked runs reach 100% test accuracy.
    default_level = 0.95
    Options = ModularAdditionOptions
    # Not homogeneous (attention's softmax, biases, the residual stream): no normalized margin.
    progress_measures = (*SOFTMAX_PROGRESS, "margin", "fourier")

    def __init__(self, options: ModularAdditionOptions, data_dir: str | None = None):
        super().__init__(options, data_dir)
        p = options.p
        a, b = self.pair_order()
        self._x = torch.as_tensor(np.stack([a, b, np.full_like(a, p)], axis=1))
        self._y = torch.as_tensor((a + b) % p)

    def build_model(self) -> nn.Module:
        o = self.options
        return Transformer(d_vocab=o.p + 1, d_vocab_out=o.p + 1, n_ctx=3, d_model=o.d_model, n_heads=o.n_heads,
                           d_head=o.d_head, d_mlp=o.d_mlp)

    def data(self, value: int) -> Split:
        return Split(self._x[:value], self._y[:value], self._x[value:], self._y[value:])

    def fourier_embedding(self, model: nn.Module) -> torch.Tensor:
        return model.embed.W_E[: self.options.p]
