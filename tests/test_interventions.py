"""StableMax, ⊥Grad and Grokfast against references written here from the papers' formulas (and the
peer tool pytorch-optimizer where installed), per cell and in the stacked layout."""
import pytest
import torch
from torch import nn

from landscape.interventions import (
    Grokfast, OrthoGrad, carry_state, chain, levels, stablemax_cross_entropy, stablemax_losses,
)
from landscape.train.norm import NormConstrained, global_norm, project_to_sphere


# --- references, from the formulas (Prieto et al. 2025; Lee et al. 2024) ----------------------------

def ref_stablemax_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """−log(s(x_y) / Σ_j s(x_j)), s(x) = x + 1 (x ≥ 0), 1/(1 − x) (x < 0), element by element."""
    rows = []
    for row, label in zip(logits, y):
        s = torch.stack([v + 1 if v >= 0 else 1 / (1 - v) for v in row])
        rows.append(-torch.log(s[label] / s.sum()))
    return torch.stack(rows).mean()


def ref_orthogonal(w: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """g⊥ = g − (θ·g / θ·θ) θ, rescaled to ‖g‖, over the whole tensor."""
    w, g64 = w.double().flatten(), g.double().flatten()
    g_orth = g64 - (w @ g64) / (w @ w) * w
    return (g_orth * g64.norm() / g_orth.norm()).reshape(g.shape).to(g.dtype)


def _batch(dtype=torch.float64, n=16, classes=5, seed=0):
    gen = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(n, classes, generator=gen, dtype=dtype)
    logits[0, 0], logits[1, 1], logits[2, 2] = 0.0, 1.0, -1.0  # the branch point and s's kinks
    return logits, torch.randint(classes, (n,), generator=gen)


# --- StableMax ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_stablemax_loss_and_gradient_match_the_formula(dtype):
    logits, y = _batch(dtype)
    ours = logits.clone().requires_grad_()
    ref = logits.clone().requires_grad_()
    loss, expected = stablemax_cross_entropy(ours, y), ref_stablemax_loss(ref, y)
    loss.backward()
    expected.backward()
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    assert loss.dtype == dtype
    assert torch.allclose(loss, expected, rtol=tol, atol=tol)
    assert torch.isfinite(ours.grad).all()  # x = 1 exactly included: no inf from the discarded branch
    assert torch.allclose(ours.grad, ref.grad, rtol=tol, atol=tol)


def test_stablemax_loss_in_a_wider_dtype_and_per_cell():
    logits, y = _batch(torch.float32)
    wide = stablemax_losses(logits, y, dtype=torch.float64)
    assert wide.dtype == torch.float64 and wide.shape == (16,)
    assert torch.allclose(wide.mean(), ref_stablemax_loss(logits.double(), y), rtol=1e-12)
    stacked = torch.stack([logits, 2 * logits])  # (cells, n, classes): one call, one loss per cell
    per_cell = stablemax_cross_entropy(stacked, torch.stack([y, y]))
    assert torch.allclose(per_cell[1], stablemax_cross_entropy(2 * logits, y))


def test_stablemax_optimizer_step_matches_the_formula():
    torch.manual_seed(0)
    a = nn.Linear(4, 5).double()
    b = nn.Linear(4, 5).double()
    b.load_state_dict(a.state_dict())
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randint(5, (16,))
    for model, loss_fn in ((a, stablemax_cross_entropy), (b, ref_stablemax_loss)):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        for _ in range(3):
            opt.zero_grad()
            loss_fn(model(x), y).backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.allclose(pa, pb, rtol=1e-10, atol=1e-12)


# --- ⊥Grad ------------------------------------------------------------------------------------------

def _mlp(seed=0, dtype=torch.float64):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3)).to(dtype)


def _grads(model, seed=1):
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(12, 4, generator=gen, dtype=torch.float64), torch.randint(3, (12,), generator=gen)
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()


def test_orthograd_step_matches_the_formula():
    model, lr = _mlp(), 0.1
    before = [p.detach().clone() for p in model.parameters()]
    _grads(model)
    expected = [w - lr * ref_orthogonal(w, p.grad) for w, p in zip(before, model.parameters())]
    raw = [p.grad.clone() for p in model.parameters()]
    OrthoGrad(torch.optim.SGD(model.parameters(), lr=lr), model.parameters()).step()
    for p, w, g, e in zip(model.parameters(), before, raw, expected):
        assert torch.allclose(p, e, rtol=1e-12, atol=1e-14)
        assert abs(float((p.grad * w).sum())) < 1e-12 * float(w.norm() * g.norm())  # orthogonal to θ
        assert torch.allclose(p.grad.norm(), g.norm(), rtol=1e-12)  # and as long as g


def test_orthograd_matches_pytorch_optimizer():
    peer = pytest.importorskip("pytorch_optimizer", reason="peer tool: pip install '.[peers]'")
    ours, theirs = _mlp(), _mlp()
    opt_ours = OrthoGrad(torch.optim.AdamW(ours.parameters(), lr=1e-2, weight_decay=0.0), ours.parameters())
    opt_theirs = peer.OrthoGrad(torch.optim.AdamW(theirs.parameters(), lr=1e-2, weight_decay=0.0))
    for step in range(5):
        for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            _grads(model, seed=step)
            opt.step()
    for a, b in zip(ours.parameters(), theirs.parameters()):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-12)


# --- Grokfast ---------------------------------------------------------------------------------------

def test_grokfast_state_after_k_steps_is_the_recurrence():
    alpha, lamb, k = 0.9, 2.0, 6
    p = nn.Parameter(torch.zeros(3, 2, dtype=torch.float64))
    opt = Grokfast(torch.optim.SGD([p], lr=1.0), [p], alpha=alpha, lamb=lamb)
    gen = torch.Generator().manual_seed(0)
    h = None
    for _ in range(k):
        g = torch.randn(3, 2, generator=gen, dtype=torch.float64)
        h = g.clone() if h is None else alpha * h + (1 - alpha) * g  # h_1 = g_1 (gradfilter_ema)
        before = p.detach().clone()
        p.grad = g.clone()
        opt.step()
        assert torch.allclose(p.detach(), before - (g + lamb * h), rtol=1e-13, atol=1e-15)  # g + λ h reached SGD
    assert torch.allclose(opt.ema[p], h, rtol=1e-13, atol=1e-15)


def test_grokfast_matches_pytorch_optimizer_gradfilter():
    peer = pytest.importorskip("pytorch_optimizer.optimizer.grokfast", reason="peer tool: pip install '.[peers]'")
    ours, theirs = _mlp(), _mlp()
    opt_ours = Grokfast(torch.optim.Adam(ours.parameters(), lr=1e-2), ours.parameters())
    opt_theirs, grads = torch.optim.Adam(theirs.parameters(), lr=1e-2), None
    for step in range(5):
        _grads(ours, seed=step)
        opt_ours.step()
        _grads(theirs, seed=step)
        grads = peer.gradfilter_ema(theirs, grads=grads, alpha=0.98, lamb=2.0)
        opt_theirs.step()
    for (name, b), a in zip(theirs.named_parameters(), ours.parameters()):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
        assert torch.allclose(opt_ours.ema[a], grads[name], rtol=1e-12, atol=1e-14)


def test_grokfast_rejects_bad_coefficients():
    p = nn.Parameter(torch.zeros(2))
    with pytest.raises(ValueError, match="alpha"):
        Grokfast(torch.optim.SGD([p], lr=1.0), [p], alpha=1.0)
    with pytest.raises(ValueError, match="lamb"):
        Grokfast(torch.optim.SGD([p], lr=1.0), [p], lamb=-1.0)


# --- composition ------------------------------------------------------------------------------------

def test_chain_order_and_norm_constraint_compose():
    model, lr, alpha, lamb, w = _mlp(), 0.05, 0.8, 1.5, 3.0
    params = list(model.parameters())
    project_to_sphere(params, w)
    opt = NormConstrained(chain(torch.optim.SGD(params, lr=lr), params, orthograd=True,
                                grokfast={"alpha": alpha, "lamb": lamb}), params, w)
    assert [type(o) for o in levels(opt)] == [NormConstrained, Grokfast, OrthoGrad, torch.optim.SGD]
    assert opt.param_groups is levels(opt).__next__().optimizer.optimizer.optimizer.param_groups
    hs = None
    for step in range(3):
        theta = [p.detach().clone() for p in params]
        _grads(model, seed=step)
        g = [p.grad.clone() for p in params]
        hs = [gi.clone() for gi in g] if hs is None else [alpha * h + (1 - alpha) * gi for h, gi in zip(hs, g)]
        # filter, then ⊥ against the current θ, then SGD, then back onto the sphere
        new = [t - lr * ref_orthogonal(t, gi + lamb * h) for t, gi, h in zip(theta, g, hs)]
        norm = torch.sqrt(sum((n ** 2).sum() for n in new))
        opt.step()
        for p, n in zip(params, new):
            assert torch.allclose(p, n * (w / norm), rtol=1e-11, atol=1e-13)
        assert abs(float(global_norm(params)) / w - 1) < 1e-12


# --- the stacked layout: leaves (cells, *shape), one fused optimizer ---------------------------------

CELLS, SHAPES = 3, [(4, 6), (6,), (6, 2)]  # W1 stored transposed (in, out), as landscape.vectorized


def _cell_params(cell: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + cell)
    return [torch.randn(*s, generator=gen, dtype=torch.float64) for s in SHAPES]


def _data(cell: int, step: int):
    gen = torch.Generator().manual_seed(1000 * cell + step)
    return torch.randn(10, 4, generator=gen, dtype=torch.float64), torch.randint(2, (10,), generator=gen)


def _loss(ps, x, y):
    w1, b1, w2 = ps
    return nn.functional.cross_entropy(torch.tanh(x @ w1 + b1.unsqueeze(-2)) @ w2, y)


def _make(leaves, cells: bool, **interventions):
    inner = torch.optim.AdamW(leaves, lr=1e-2, weight_decay=0.05, fused=cells)
    return chain(inner, leaves, cells=cells, **interventions)


def _stacked_steps(leaves, opt, cells: list[int], steps: range) -> None:
    for step in steps:
        batches = [_data(c, step) for c in cells]
        x, y = torch.stack([b[0] for b in batches]), torch.stack([b[1] for b in batches])
        w1, b1, w2 = leaves
        logits = torch.tanh(x @ w1 + b1.unsqueeze(1)) @ w2  # (cells, rows, 2)
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(len(cells), -1)
        opt.zero_grad(set_to_none=True)
        loss.mean(1).sum().backward()  # cells' losses summed: each cell's gradient is its own
        opt.step()


def _alone(cell: int, steps: int, **interventions) -> list[torch.Tensor]:
    ps = [p.requires_grad_() for p in _cell_params(cell)]
    opt = _make(ps, cells=False, **interventions)
    for step in range(steps):
        x, y = _data(cell, step)
        opt.zero_grad(set_to_none=True)
        _loss(ps, x, y).backward()
        opt.step()
    return ps


INTERVENTIONS = [{"orthograd": True}, {"grokfast": {"alpha": 0.9, "lamb": 2.0}},
                 {"orthograd": True, "grokfast": {"alpha": 0.9, "lamb": 2.0}}]


@pytest.mark.parametrize("interventions", INTERVENTIONS)
def test_stacked_cells_match_each_cell_alone(interventions):
    leaves = [torch.stack(ps).requires_grad_() for ps in zip(*[_cell_params(c) for c in range(CELLS)])]
    opt = _make(leaves, cells=True, **interventions)
    _stacked_steps(leaves, opt, list(range(CELLS)), range(4))
    for c in range(CELLS):
        for leaf, p in zip(leaves, _alone(c, 4, **interventions)):
            assert torch.allclose(leaf[c], p, rtol=1e-10, atol=1e-12)


def test_carry_state_when_cells_leave_the_batch():
    interventions = INTERVENTIONS[2]
    leaves = [torch.stack(ps).requires_grad_() for ps in zip(*[_cell_params(c) for c in range(CELLS)])]
    opt = _make(leaves, cells=True, **interventions)
    _stacked_steps(leaves, opt, [0, 1, 2], range(3))
    pick = torch.tensor([0, 2])
    kept = [leaf.detach().index_select(0, pick).requires_grad_() for leaf in leaves]
    kept_opt = _make(kept, cells=True, **interventions)
    carry_state(opt, kept_opt, leaves, kept, lambda v: v.index_select(0, pick))
    _stacked_steps(kept, kept_opt, [0, 2], range(3, 6))
    for row, c in enumerate([0, 2]):
        for leaf, p in zip(kept, _alone(c, 6, **interventions)):
            assert torch.allclose(leaf[row], p, rtol=1e-10, atol=1e-12)


def test_wrappers_transform_the_gradients_a_closure_computes():
    stepped = []
    for use_closure in (False, True):
        model = _mlp()
        params = list(model.parameters())
        opt = chain(torch.optim.SGD(params, lr=0.1), params, orthograd=True, grokfast={"alpha": 0.5, "lamb": 1.0})
        for step in range(2):
            if use_closure:
                opt.zero_grad()
                opt.step(lambda: _grads(model, seed=step))  # the gradients exist only inside step()
            else:
                _grads(model, seed=step)
                opt.step()
        stepped.append([p.detach().clone() for p in params])
    for a, b in zip(*stepped):
        assert torch.equal(a, b)
