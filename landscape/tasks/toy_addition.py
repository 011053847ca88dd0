"""Toy addition with a frozen representation of messiness m (Omnigrok section 5.1, Fig. 6; App. D).

Symbols 0..p-1 (p = 10) are embedded as E_i; a decoder MLP maps E_i + E_j to a random 30-d
template of the output symbol, trained with MSE; the prediction is the nearest template. The
representation R = m R_random + (1 - m) R_linear is data here, not a parameter: the engine builds
the model without knowing m, and R is never trained in a landscape, so only the decoder exists as
a model and only its norm is w (w0 is the decoder's default-init norm).

Two published variants (``variant`` option):

- ``"code"`` (default): the authors' notebook that drew Fig. 6
  (KindXiaoming/Omnigrok mod-addition/landscape/addition-landscape.ipynb). Unordered pairs
  i <= j (55), output (i + j) mod 10, 2-d latent: R_linear[:, 0] = 2 linspace(0, 1, 10) - 1,
  R_linear[:, 1] = 0.3 U(-1, 1), R_random = U(-1, 1); decoder 2-200-200-30 LeakyReLU(0.2).
- ``"paper"``: the text of App. D. Output i + j in 0..18 (19 templates), scalar E_k = k for
  R_linear and N(0, 1) for R_random; decoder 1-200-200-30 ReLU.

Data are fixed by ``data_seed`` through numpy's legacy generator in the notebook's order (its
unused input templates, the output templates, then the split), so with seed 58 the code variant
has the notebook's exact templates and training pairs; the training set for N is the first N
of one permutation, so larger sets contain smaller ones. The test set is the held-out pairs, or
all 55 pairs when none is held out (N = 55; Fig. 6e uses only its training loss).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from landscape.errors import UserError
from landscape.models import mlp
from landscape.tasks.base import Split, Task
from landscape.tasks.messiness import MessinessAxis, mix

P = 10
OUT_DIM = 30
HIDDEN = 200
PAIR_I, PAIR_J = np.triu_indices(P)  # the 55 unordered pairs i <= j, in the notebook's order
PAIRS = len(PAIR_I)


@dataclass(frozen=True)
class ToyAdditionOptions:
    variant: str = "code"
    #: Training pairs, a seeded subset of the 55.
    N: int = 45
    #: Seeds the templates, the split and both representations; the notebook's seed is 58.
    data_seed: int = 58


@dataclass(frozen=True)
class _Variant:
    latent_dim: int
    classes: int
    activation: Callable[[], nn.Module]
    label: Callable[[np.ndarray, np.ndarray], np.ndarray]
    #: (linear, random) representations, each (P, latent_dim), drawn from the data generator.
    representations: Callable[[np.random.RandomState], tuple[np.ndarray, np.ndarray]]


def _code_representations(rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    linear = 0.3 * rng.uniform(-1, 1, (P, 2))  # the second latent coordinate is small noise
    linear[:, 0] = 2 * np.linspace(0, 1, P) - 1
    return linear, rng.uniform(-1, 1, (P, 2))


def _paper_representations(rng: np.random.RandomState) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(P, dtype=float)[:, None], rng.standard_normal((P, 1))


VARIANTS = {
    "code": _Variant(2, P, functools.partial(nn.LeakyReLU, 0.2), lambda i, j: (i + j) % P, _code_representations),
    "paper": _Variant(1, 2 * P - 1, nn.ReLU, lambda i, j: i + j, _paper_representations),
}


class ToyAddition(MessinessAxis, Task):
    name = "toy-addition"
    default_level = 0.9  # Liu et al. (2022): train / test accuracy 90%
    Options = ToyAdditionOptions

    def __init__(self, options: ToyAdditionOptions, data_dir: str | None = None):
        super().__init__(options, data_dir)
        if options.variant not in VARIANTS:
            raise UserError(f"task_options.variant = {options.variant!r} (known: {', '.join(VARIANTS)})")
        if not 1 <= options.N <= PAIRS:
            raise UserError(f"task_options.N = {options.N} must be in [1, {PAIRS}] (the number of pairs i <= j)")
        self.variant = VARIANTS[options.variant]
        rng = np.random.RandomState(options.data_seed)  # legacy stream: the notebook's np.random.seed
        rng.normal(size=(P, OUT_DIM))  # the notebook's input templates: unused, drawn to keep its stream
        self.templates = torch.as_tensor(rng.normal(size=(self.variant.classes, OUT_DIM)), dtype=torch.float32)
        order = rng.permutation(PAIRS)  # what np.random.choice(55, N, replace=False) draws
        self._train, held_out = order[: options.N], np.sort(order[options.N :])
        self._test = held_out if held_out.size else np.arange(PAIRS)
        linear, random = self.variant.representations(rng)
        self._linear = torch.as_tensor(linear, dtype=torch.float32)
        self._random = torch.as_tensor(random, dtype=torch.float32)
        self._labels = torch.as_tensor(self.variant.label(PAIR_I, PAIR_J))

    @property
    def data_source(self) -> str:
        test = f"{PAIRS - self.options.N} held-out pairs" if self.options.N < PAIRS else f"all {PAIRS} pairs"
        return (f"synthetic: toy addition ({self.options.variant} variant), p={P}, N={self.options.N} of "
                f"{PAIRS} pairs i<=j, test on {test}, data_seed={self.options.data_seed}")

    def build_model(self) -> nn.Module:
        return mlp((self.variant.latent_dim, HIDDEN, HIDDEN, OUT_DIM), self.variant.activation)

    def data(self, value: float) -> Split:
        rep = mix(value, self._random, self._linear)
        x = rep[PAIR_I] + rep[PAIR_J]  # the decoder's input: hard-coded addition of the two embeddings
        y = self.templates[self._labels]
        return Split(x[self._train], y[self._train], x[self._test], y[self._test])

    def errors(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (self._nearest(pred) != self._nearest(target)).to(pred.dtype)

    def _nearest(self, out: torch.Tensor) -> torch.Tensor:
        """Index of the nearest output template; broadcasting, not cdist, so it works under vmap."""
        return ((out[..., None, :] - self.templates) ** 2).sum(-1).argmin(-1)
