"""Progress measures against references written here from the papers' definitions (Prieto et al.
2025; Lyu & Li 2020; Roy & Vetterli 2007; Nanda et al. 2023), per cell and with stacked cells."""
import math

import numpy as np
import pytest
import torch
from torch import nn

from landscape.measures.progress_measures import (
    MEASURES, classification_measures, descent_weight_cosine, effective_rank, effective_ranks,
    embedding_fourier_power, excluded_logits, excluded_loss, fourier_basis, fourier_gini, fourier_measures, gini,
    key_frequencies, margins, min_margin, nlm_cosine, normalized_margin, restricted_logits, restricted_loss,
    softmax_collapse_fraction, zero_loss_fraction,
)
from landscape.models import TwoLayerReLU, Transformer


# --- softmax collapse and zero loss ----------------------------------------------------------------

def ref_collapsed(logits: torch.Tensor, y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Prieto et al.'s logger: Σ_j exp(z_j − max z) == 1 in the loss dtype, on rows whose argmax is y."""
    z = logits.to(dtype)
    sum_exp = torch.exp(z - z.amax(-1, keepdim=True)).sum(-1)
    return ((sum_exp == 1) & (z.argmax(-1) == y)).double().mean()


def _overflowing():
    logits = torch.tensor([
        [100.0, 75.0, 75.0],   # exp(100) overflows float32; p_y = 1 in float32, 1 - 2.8e-11 in float64
        [3.0, 1.0, 0.0],       # an ordinary row: collapsed in neither
        [0.0, 90.0, 60.0],     # misclassified by a wide gap: p_y ~ 0, not collapsed
    ], dtype=torch.float64)
    return logits, torch.tensor([0, 0, 0])


def test_softmax_collapse_overflowing_logits_collapse_in_float32_not_float64():
    logits, y = _overflowing()
    assert torch.isinf(torch.exp(torch.tensor(100.0, dtype=torch.float32)))  # built to overflow float32
    assert float(softmax_collapse_fraction(logits[:1], y[:1], torch.float32)) == 1.0
    assert float(softmax_collapse_fraction(logits[:1], y[:1], torch.float64)) == 0.0
    for dtype in (torch.float32, torch.float64):
        assert float(softmax_collapse_fraction(logits, y, dtype)) == float(ref_collapsed(logits, y, dtype))
    assert float(softmax_collapse_fraction(logits.float(), y)) == pytest.approx(1 / 3)  # None: the logits' dtype


def test_zero_loss_fraction_follows_the_dtype_and_the_loss():
    logits, y = _overflowing()
    assert float(zero_loss_fraction(logits, y, torch.float32)) == pytest.approx(1 / 3)
    assert float(zero_loss_fraction(logits, y, torch.float64)) == 0.0
    # StableMax's s decays like 1/|x|: the same rows keep a loss (and a gradient) in float32
    assert float(zero_loss_fraction(logits, y, torch.float32, loss="stablemax")) == 0.0


def test_collapse_with_stacked_cells_is_per_cell():
    logits, y = _overflowing()
    stacked = torch.stack([logits, logits / 10])  # (cells, n, classes)
    per_cell = softmax_collapse_fraction(stacked, torch.stack([y, y]), torch.float32)
    assert per_cell.tolist() == [float(softmax_collapse_fraction(c, y, torch.float32)) for c in stacked]


# --- naive loss minimization -----------------------------------------------------------------------

def test_nlm_cosine_matches_the_flattened_vectors():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).double()
    x, y = torch.randn(20, 5, dtype=torch.float64), torch.randint(3, (20,))
    loss = nn.functional.cross_entropy
    theta = torch.cat([p.detach().flatten() for p in model.parameters()])
    grad = torch.cat([g.flatten() for g in torch.autograd.grad(loss(model(x), y), list(model.parameters()))])
    expected = nn.functional.cosine_similarity(-grad, theta, dim=0)
    assert float(nlm_cosine(model, loss, x, y)) == pytest.approx(float(expected), rel=1e-10)
    last = list(model[2].parameters())
    g_last = torch.cat([g.flatten() for g in torch.autograd.grad(loss(model(x), y), last)])
    w_last = torch.cat([p.detach().flatten() for p in last])
    assert float(nlm_cosine(model, loss, x, y, last)) == pytest.approx(
        float(nn.functional.cosine_similarity(-g_last, w_last, dim=0)), rel=1e-10)
    assert all(p.grad is None for p in model.parameters())  # the training gradients are left alone


def test_nlm_cosine_is_positive_when_scaling_the_weights_lowers_the_loss():
    torch.manual_seed(1)
    x = torch.randn(30, 4, dtype=torch.float64)
    model = nn.Linear(4, 3, bias=False).double()
    y = model(x).argmax(-1)  # every sample correct: growing W along itself only sharpens the softmax
    assert float(nlm_cosine(model, nn.functional.cross_entropy, x, y)) > 0


def test_descent_weight_cosine_with_stacked_cells_is_per_cell():
    gen = torch.Generator().manual_seed(2)
    ws = [torch.randn(3, 4, 2, generator=gen), torch.randn(3, 2, generator=gen)]
    gs = [torch.randn(3, 4, 2, generator=gen), torch.randn(3, 2, generator=gen)]
    stacked = descent_weight_cosine(ws, gs, batch_dims=1)
    for c in range(3):
        assert float(stacked[c]) == pytest.approx(float(descent_weight_cosine([w[c] for w in ws], [g[c] for g in gs])))


# --- margins -----------------------------------------------------------------------------------------

def test_margins_by_hand():
    logits = torch.tensor([[2.0, 0.5, 1.0], [0.0, 3.0, -1.0]])
    y = torch.tensor([0, 2])
    assert margins(logits, y).tolist() == [1.0, -4.0]
    assert float(min_margin(logits, y)) == -4.0
    assert float(normalized_margin(logits, y, 2.0, degree=2)) == -1.0


def test_normalized_margin_is_scale_free_for_a_homogeneous_model():
    torch.manual_seed(3)
    model = TwoLayerReLU(6, 16, 3).double()
    nn.init.normal_(model.output.weight)
    x = torch.randn(25, 6, dtype=torch.float64)
    y = torch.randint(3, (25,))

    @torch.no_grad()
    def measured(scale: float) -> float:
        for p in model.parameters():
            p.mul_(scale)
        norm = torch.linalg.vector_norm(torch.cat([p.flatten() for p in model.parameters()]))
        return float(normalized_margin(model(x), y, norm, degree=2))

    first = measured(1.0)
    assert measured(3.0) == pytest.approx(first, rel=1e-10)  # the raw margin grew 9x


# --- effective rank ----------------------------------------------------------------------------------

def ref_effective_rank(matrix: np.ndarray) -> float:
    s = np.linalg.svd(matrix, compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def test_effective_rank_matches_roy_and_vetterli():
    gen = torch.Generator().manual_seed(4)
    mats = torch.randn(3, 5, 4, generator=gen, dtype=torch.float64)
    mats[1] = torch.outer(torch.randn(5, generator=gen, dtype=torch.float64), torch.randn(4, generator=gen, dtype=torch.float64))
    batched = effective_rank(mats)
    for m, value in zip(mats, batched):
        assert float(value) == pytest.approx(ref_effective_rank(m.numpy()), rel=1e-10)
    assert float(batched[1]) == pytest.approx(1.0, abs=1e-6)  # rank one
    entropy = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert float(effective_rank(torch.diag(torch.tensor([3.0, 1.0])))) == pytest.approx(math.exp(entropy))
    assert float(effective_rank(torch.eye(6))) == pytest.approx(6.0)
    assert float(effective_rank(torch.zeros(3, 3))) == 0.0


def test_effective_ranks_cover_every_2d_weight():
    model = TwoLayerReLU(6, 16, 3)
    ranks = effective_ranks(model)
    assert set(ranks) == {"hidden.weight", "output.weight"}
    assert float(ranks["output.weight"]) == 0.0  # zero-initialised last layer


# --- modular addition: Fourier measures ---------------------------------------------------------------

P = 7


def ref_basis(p: int) -> torch.Tensor:
    """Nanda et al.'s make_fourier_basis, row by row."""
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64) / math.sqrt(p)]
    for k in range(1, p // 2 + 1):
        c, s = torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)
        rows += [c / c.norm(), s / s.norm()]
    return torch.stack(rows)


def ref_components(logits: torch.Tensor, freq: int, basis: torch.Tensor) -> torch.Tensor:
    """Their get_component_cos_xpy + get_component_sin_xpy: outer products of the 1-D basis."""
    def term(i, j):
        return (basis[i][:, None] * basis[j][None, :]).flatten()
    cos_xpy = (term(2 * freq - 1, 2 * freq - 1) - term(2 * freq, 2 * freq)) / math.sqrt(2)
    sin_xpy = (term(2 * freq, 2 * freq - 1) + term(2 * freq - 1, 2 * freq)) / math.sqrt(2)
    return sum(d[:, None] @ (d[None, :] @ logits) for d in (cos_xpy, sin_xpy))


def test_fourier_basis_is_nandas_and_orthonormal():
    basis = fourier_basis(P)
    assert torch.allclose(basis, ref_basis(P), atol=1e-14)
    assert torch.allclose(basis @ basis.T, torch.eye(P, dtype=torch.float64), atol=1e-12)


def test_embedding_power_matches_the_dft():
    gen = torch.Generator().manual_seed(5)
    emb = torch.randn(P, 4, generator=gen, dtype=torch.float64)
    spectrum = torch.fft.fft(emb, dim=0)  # X_k = Σ_a x_a e^{-2πika/p}
    expected = (2 / P) * spectrum[1 : P // 2 + 1].abs().pow(2).sum(-1)  # on the unit cos/sin rows
    assert torch.allclose(embedding_fourier_power(emb), expected, rtol=1e-12)
    a = torch.arange(P, dtype=torch.float64)
    pure = torch.stack([torch.cos(2 * math.pi * 3 * a / P + phase) for phase in (0.0, 1.0)], dim=1)
    power = embedding_fourier_power(pure)
    assert key_frequencies(power, 1).tolist() == [3]
    assert float(fourier_gini(power)) == pytest.approx(1 - 1 / len(power))  # all the norm in one frequency
    stacked = embedding_fourier_power(torch.stack([emb[:, :2], pure]))  # (cells, p, d)
    assert torch.allclose(stacked[0], embedding_fourier_power(emb[:, :2])) and torch.allclose(stacked[1], power)


def test_gini_matches_the_mean_absolute_difference():
    gen = torch.Generator().manual_seed(6)
    x = torch.rand(11, generator=gen, dtype=torch.float64)
    expected = (x[:, None] - x[None, :]).abs().sum() / (2 * len(x) ** 2 * x.mean())
    assert float(gini(x)) == pytest.approx(float(expected), rel=1e-12)
    assert float(gini(torch.ones(5))) == pytest.approx(0.0, abs=1e-15)


def test_restricted_plus_excluded_are_the_full_logits():
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(P * P, P, generator=gen, dtype=torch.float64)
    freqs, basis = [1, 3], ref_basis(P)
    kept, removed = restricted_logits(logits, P, freqs), excluded_logits(logits, P, freqs)
    assert torch.allclose(kept, sum(ref_components(logits, f, basis) for f in freqs), atol=1e-12)
    assert torch.allclose(kept + removed, logits, atol=1e-12)
    assert torch.allclose(restricted_logits(removed, P, freqs), torch.zeros_like(logits), atol=1e-12)


def test_restricted_and_excluded_losses_on_a_pure_circuit():
    a = torch.arange(P, dtype=torch.float64)
    total = (a[:, None] + a[None, :]).flatten()  # a-major grid
    labels = (total % P).long()
    freqs = [2, 3]
    # Nanda et al.'s algorithm's logits: Σ_k cos(w_k (a + b − c)), scaled up
    logits = 5 * sum(torch.cos(2 * math.pi * k * (total[:, None] - a[None, :]) / P) for k in freqs)
    ce = float(nn.functional.cross_entropy(logits, labels))
    assert float(restricted_loss(logits, labels, P, freqs)) == pytest.approx(ce, rel=1e-10)
    train = torch.arange(0, P * P, 2)
    assert float(excluded_loss(logits, labels, P, freqs, train)) == pytest.approx(math.log(P), rel=1e-10)


def test_fourier_measures_on_the_modular_addition_transformer():
    torch.manual_seed(8)
    model = Transformer(d_vocab=P + 1, d_vocab_out=P + 1, n_ctx=3, d_model=16, n_heads=2, d_head=8, d_mlp=32).double()
    a, b = torch.meshgrid(torch.arange(P), torch.arange(P), indexing="ij")
    tokens = torch.stack([a.flatten(), b.flatten(), torch.full((P * P,), P)], dim=1)
    labels = (a.flatten() + b.flatten()) % P
    with torch.no_grad():
        grid_logits = model(tokens)
    out = fourier_measures(model.embed.W_E[:P], grid_logits, labels, torch.arange(20), k=2)
    assert set(out) == set(MEASURES["fourier"]) | {"fourier_power", "key_frequencies"}
    assert out["fourier_power"].shape == (P // 2,) and out["key_frequencies"].shape == (2,)
    assert torch.equal(out["key_frequencies"], key_frequencies(embedding_fourier_power(model.embed.W_E[:P]), 2))
    assert float(out["excluded_loss"]) == pytest.approx(
        float(excluded_loss(grid_logits[:, :P], labels, P, out["key_frequencies"].tolist(), torch.arange(20))))


# --- what a hook calls ---------------------------------------------------------------------------------

def test_classification_measures_are_the_functions():
    torch.manual_seed(9)
    model = TwoLayerReLU(6, 16, 3)
    nn.init.normal_(model.output.weight)
    x, y = torch.randn(25, 6), torch.randint(3, (25,))
    names = ["softmax_collapse", "zero_loss", "nlm_cosine", "margin", "normalized_margin"]
    out = classification_measures(model, x, y, names, torch.float32, degree=2)
    assert set(out) == {curve for name in names for curve in MEASURES[name]}
    logits = model(x).detach()
    assert out["min_margin"] == pytest.approx(float(min_margin(logits, y)))
    assert out["softmax_collapse"] == float(softmax_collapse_fraction(logits, y))
    assert out["nlm_cosine"] == pytest.approx(float(nlm_cosine(model, nn.functional.cross_entropy, x, y)), rel=1e-5)
    with pytest.raises(ValueError, match="homogeneity"):
        classification_measures(model, x, y, ["normalized_margin"], torch.float32)
