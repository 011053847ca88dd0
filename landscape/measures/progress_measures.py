"""Progress measures of grokking: plain functions of logits, weights or a model, for the measurement
hook of either backend (it hands out each cell's model; every function also accepts leading batch
dims where that is natural, so stacked cells can be measured in one call).

Classification (softmax outputs; Prieto et al., ICLR 2025, their logger.py):
- ``softmax_collapse_fraction``: training samples whose correct-class probability is exactly 1 in
  the training dtype. Their logger counts rows whose Σ_j exp(z_j − max z) is exactly 1; for a
  correctly classified row that is the same event (p_y = 1 / Σ), and a misclassified row cannot
  have p_y = 1, so this is their fraction restricted to the rows that carry no gradient at all.
- ``zero_loss_fraction``: samples whose loss is exactly 0 in the dtype (their ``zero_terms``).
- ``descent_weight_cosine`` / ``nlm_cosine``: the cosine between the descent direction −∇L and the
  naive-loss-minimization direction, which the paper takes to be the weights themselves (scaling θ
  scales the logits of a homogeneous net without changing its predictions). The sign convention:
  positive when the step would grow the weights along themselves. The whole model or any subset
  (the last layer) is one vector.
Margins (Lyu & Li 2020): ``min_margin`` (correct logit − largest other, the smallest over samples)
and ``normalized_margin`` = min_margin / ‖θ‖^L for a model homogeneous of degree L.
Spectra: ``effective_rank`` (Roy & Vetterli 2007): exp of the entropy of σ / Σσ; 0 for a zero matrix.
Modular addition (Nanda et al., ICLR 2023; their helpers.py and the notebook's progress measures):
- ``fourier_basis``: the orthonormal real Fourier basis of Z_p, rows const, cos 1, sin 1, ..., as
  their ``make_fourier_basis``.
- ``embedding_fourier_power``: per frequency k = 1..(p−1)/2, ‖(F W_E)_{cos k}‖² + ‖(F W_E)_{sin k}‖²,
  the DFT over the token dimension of the embedding of tokens 0..p−1.
- ``key_frequencies``: the k frequencies of largest embedding power. Nanda et al. read them off the
  MLP neurons (each neuron's best frequency); the embedding's top-k is the choice that needs no
  hooks into a particular architecture and names the same frequencies once the circuit has formed.
  k is declared by the task (their main run has 5).
- ``restricted_logits`` / ``excluded_logits``: the logits over the (a, b) grid (p² rows, a-major)
  projected onto / with removed the directions cos(2πk(a+b)/p) and sin(2πk(a+b)/p) of the key
  frequencies, per output class (their ``get_component_cos_xpy`` and ``get_component_sin_xpy``);
  the two add up to the logits.
- ``restricted_loss``: cross-entropy of the restricted logits plus each class's mean logit over the
  grid (their ``bias_correction``), on all pairs by default (their ``calculate_trig_loss``);
  ``excluded_loss``: cross-entropy of the excluded logits on the training pairs. Both over the p
  residue classes (their code drops the "=" output) and in float64 by default (their helper's name,
  ``cross_entropy_high_precision``, and its comment intend it).
- ``gini``: the Gini coefficient; ``fourier_gini`` applies it to the per-frequency norms √power.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import torch
from torch import nn

from landscape.interventions.stablemax import PER_SAMPLE_LOSSES, cross_entropy_losses


# --- classification --------------------------------------------------------------------------------

def correct_class_probability(logits: torch.Tensor, target: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Softmax probability of the correct class computed in ``dtype`` (None: the logits'), (..., n)."""
    return torch.softmax(logits, dim=-1, dtype=dtype).gather(-1, target.unsqueeze(-1)).squeeze(-1)


def softmax_collapse_fraction(logits: torch.Tensor, target: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Fraction of samples whose correct-class probability rounds to exactly 1 in ``dtype``, (...)."""
    return (correct_class_probability(logits, target, dtype) == 1).double().mean(-1)


def zero_loss_fraction(logits: torch.Tensor, target: torch.Tensor, dtype: torch.dtype | None = None,
                       loss: str = "cross_entropy") -> torch.Tensor:
    """Fraction of samples whose per-sample loss (``PER_SAMPLE_LOSSES[loss]``) is exactly 0 in ``dtype``, (...)."""
    return (PER_SAMPLE_LOSSES[loss](logits, target, dtype) == 0).double().mean(-1)


def descent_weight_cosine(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor], batch_dims: int = 0) -> torch.Tensor:
    """cos(−∇L, θ) with all ``params`` taken as one vector (``batch_dims`` leading dims kept: stacked cells)."""
    dot = sq_w = sq_g = 0
    for w, g in zip(params, grads):
        w = w.detach().reshape(*w.shape[:batch_dims], -1).double()
        g = g.detach().reshape(*g.shape[:batch_dims], -1).double()
        dot, sq_w, sq_g = dot + (w * g).sum(-1), sq_w + (w * w).sum(-1), sq_g + (g * g).sum(-1)
    return -dot / torch.sqrt(sq_w * sq_g)


def nlm_cosine(model: nn.Module, loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
               y: torch.Tensor, params: Iterable[torch.Tensor] | None = None) -> torch.Tensor:
    """cos(−∇L, θ) of ``model`` at the full-batch loss ``loss(model(x), y)``, over ``params`` (None: all).

    Computes its own gradient (autograd.grad), so the training gradients are left alone.
    """
    params = list(model.parameters() if params is None else params)
    with torch.enable_grad():
        grads = torch.autograd.grad(loss(model(x), y), params, allow_unused=True)
    present = [(p, g) for p, g in zip(params, grads) if g is not None]
    return descent_weight_cosine([p for p, _ in present], [g for _, g in present])


def margins(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Correct logit minus the largest other logit of every sample, (..., n)."""
    correct = logits.gather(-1, target.unsqueeze(-1))
    others = logits.scatter(-1, target.unsqueeze(-1), float("-inf")).amax(-1, keepdim=True)
    return (correct - others).squeeze(-1)


def min_margin(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The smallest margin over the samples, (...)."""
    return margins(logits, target).amin(-1)


def normalized_margin(logits: torch.Tensor, target: torch.Tensor, norm: torch.Tensor | float, degree: float) -> torch.Tensor:
    """min_margin / ‖θ‖^degree: scale-free for a model homogeneous of that degree (Lyu & Li 2020)."""
    return min_margin(logits, target) / torch.as_tensor(norm, dtype=logits.dtype) ** degree


# --- spectra ---------------------------------------------------------------------------------------

def effective_rank(weight: torch.Tensor) -> torch.Tensor:
    """exp(H(σ / Σσ)) of a matrix (..., m, n), in float64; 0 for a zero matrix (rank 0, no spectrum)."""
    s = torch.linalg.svdvals(weight.detach().double())
    total = s.sum(-1, keepdim=True)
    p = s / torch.where(total > 0, total, torch.ones_like(total))
    return torch.where(total.squeeze(-1) > 0, torch.exp(torch.special.entr(p).sum(-1)), torch.zeros_like(total.squeeze(-1)))


def effective_ranks(model: nn.Module) -> dict[str, torch.Tensor]:
    """``effective_rank`` of every 2-D parameter of ``model``, by parameter name."""
    return {name: effective_rank(p) for name, p in model.named_parameters() if p.dim() == 2}


# --- modular addition: Fourier progress measures --------------------------------------------------

def fourier_basis(p: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(p, p) orthonormal rows: the constant, then cos and sin of 2πkx/p for k = 1..(p−1)/2."""
    x = torch.arange(p, dtype=dtype)
    rows = [torch.full((p,), 1 / math.sqrt(p), dtype=dtype)]
    for k in range(1, p // 2 + 1):
        for wave in (torch.cos, torch.sin):
            row = wave(2 * math.pi * k * x / p)
            rows.append(row / torch.linalg.vector_norm(row))
    return torch.stack(rows)


def embedding_fourier_power(embedding: torch.Tensor) -> torch.Tensor:
    """(..., (p−1)/2) power of each frequency k = 1.. in an embedding (..., p, d) of tokens 0..p−1."""
    p = embedding.shape[-2]
    coeffs = fourier_basis(p) @ embedding.detach().double()  # (..., p, d): rows const, cos 1, sin 1, ...
    per_row = coeffs.pow(2).sum(-1)[..., 1:]
    return per_row[..., 0::2] + per_row[..., 1::2]


def key_frequencies(power: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` frequencies (1-based) of largest power, strongest first, (..., k)."""
    return power.topk(k, dim=-1).indices + 1


def gini(values: torch.Tensor) -> torch.Tensor:
    """Gini coefficient of non-negative values over the last dim: 0 all equal, → 1 one value holds all."""
    x, _ = values.double().sort(-1)
    n = x.shape[-1]
    i = torch.arange(1, n + 1, dtype=x.dtype)
    return 2 * (i * x).sum(-1) / (n * x.sum(-1)) - (n + 1) / n


def fourier_gini(power: torch.Tensor) -> torch.Tensor:
    """Gini coefficient of the per-frequency Fourier norms (√power)."""
    return gini(power.sqrt())


def sum_directions(p: int, freqs: Iterable[int], dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(2 · len(freqs), p²) orthonormal directions cos(2πk(a+b)/p), sin(2πk(a+b)/p) over the a-major grid."""
    a = torch.arange(p, dtype=dtype)
    total = (a[:, None] + a[None, :]).flatten()
    rows = [wave(2 * math.pi * int(k) * total / p) * (math.sqrt(2) / p) for k in freqs for wave in (torch.cos, torch.sin)]
    return torch.stack(rows)


def restricted_logits(grid_logits: torch.Tensor, p: int, freqs: Iterable[int]) -> torch.Tensor:
    """The logits over the (a, b) grid (..., p², classes) projected onto the key frequencies' directions."""
    d = sum_directions(p, freqs, grid_logits.dtype)
    return d.T @ (d @ grid_logits)


def excluded_logits(grid_logits: torch.Tensor, p: int, freqs: Iterable[int]) -> torch.Tensor:
    """The logits over the grid with the key frequencies' directions removed."""
    return grid_logits - restricted_logits(grid_logits, p, freqs)


def _loss_on(logits: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor:
    if rows is not None:
        logits, labels = logits[..., rows, :], labels[..., rows]
    return cross_entropy_losses(logits, labels, dtype).mean(-1)


def restricted_loss(grid_logits: torch.Tensor, labels: torch.Tensor, p: int, freqs: Iterable[int],
                    rows: torch.Tensor | None = None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Loss of the restricted logits with each class's grid-mean logit added back, on ``rows`` (None: all pairs)."""
    freqs = list(freqs)
    kept = restricted_logits(grid_logits.to(dtype), p, freqs)
    corrected = kept + (grid_logits.to(dtype) - kept).mean(-2, keepdim=True)
    return _loss_on(corrected, labels, rows, dtype)


def excluded_loss(grid_logits: torch.Tensor, labels: torch.Tensor, p: int, freqs: Iterable[int],
                  rows: torch.Tensor | None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Loss of the excluded logits on ``rows`` (the training pairs)."""
    return _loss_on(excluded_logits(grid_logits.to(dtype), p, freqs), labels, rows, dtype)


# --- what a hook records ---------------------------------------------------------------------------

#: The scalar curves each declarable measure adds, with their descriptions.
MEASURES: dict[str, dict[str, str]] = {
    "softmax_collapse": {"softmax_collapse": "fraction of training samples whose correct-class probability is exactly 1 "
                                             "in the training dtype"},
    "zero_loss": {"zero_loss": "fraction of training samples whose loss is exactly 0 in the training dtype"},
    "nlm_cosine": {"nlm_cosine": "cosine between -grad L and the weights (naive loss minimization), whole model"},
    "margin": {"min_margin": "smallest correct-minus-largest-other logit over the training samples"},
    "normalized_margin": {"normalized_margin": "min_margin / ||theta||^L, L the model's homogeneity degree"},
    "fourier": {"restricted_loss": "loss of the logits kept to the key frequencies (all pairs, bias-corrected)",
                "excluded_loss": "training loss of the logits without the key frequencies",
                "fourier_gini": "Gini coefficient of the embedding's per-frequency Fourier norms"},
}


def classification_measures(model: nn.Module, x: torch.Tensor, y: torch.Tensor, names: Iterable[str],
                            dtype: torch.dtype, loss: str = "cross_entropy", degree: float | None = None) -> dict[str, float]:
    """The classification measures among ``names`` for one cell on its training set (x, y).

    ``loss``: the per-sample loss of ``train.loss`` (for zero_loss and the NLM gradient);
    ``degree``: the homogeneity degree L, required for normalized_margin.
    """
    names = set(names)
    out: dict[str, float] = {}
    with torch.no_grad():
        logits = model(x)
    if "softmax_collapse" in names:
        out["softmax_collapse"] = float(softmax_collapse_fraction(logits, y, dtype))
    if "zero_loss" in names:
        out["zero_loss"] = float(zero_loss_fraction(logits, y, dtype, loss))
    if "margin" in names:
        out["min_margin"] = float(min_margin(logits, y))
    if "normalized_margin" in names:
        if degree is None:
            raise ValueError("normalized_margin needs the model's homogeneity degree")
        norm = torch.linalg.vector_norm(torch.cat([q.detach().flatten() for q in model.parameters()]))
        out["normalized_margin"] = float(normalized_margin(logits, y, norm, degree))
    if "nlm_cosine" in names:
        per_sample = PER_SAMPLE_LOSSES[loss]
        out["nlm_cosine"] = float(nlm_cosine(model, lambda z, t: per_sample(z, t, dtype).mean(), x, y))
    return out


def fourier_measures(embedding: torch.Tensor, grid_logits: torch.Tensor, grid_labels: torch.Tensor,
                     train_rows: torch.Tensor, k: int) -> dict[str, torch.Tensor]:
    """Nanda et al.'s measures of one cell: embedding (p, d) of tokens 0..p−1, logits (p², ≥ p) over the
    a-major grid (only the p residue classes are used), labels (p²,), the training pairs' grid rows.

    Returns the scalars of ``MEASURES["fourier"]`` plus ``fourier_power`` ((p−1)/2,) and
    ``key_frequencies`` (k,).
    """
    p = embedding.shape[-2]
    power = embedding_fourier_power(embedding)
    freqs = key_frequencies(power, k)
    logits = grid_logits[..., :p].detach()
    return {
        "fourier_power": power,
        "key_frequencies": freqs,
        "restricted_loss": restricted_loss(logits, grid_labels, p, freqs.tolist()),
        "excluded_loss": excluded_loss(logits, grid_labels, p, freqs.tolist(), train_rows),
        "fourier_gini": fourier_gini(power),
    }
