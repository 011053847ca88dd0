import pytest
import torch
from torch import nn

from landscape.train.norm import NormConstrained, global_norm, project_to_sphere


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 3))


def test_global_norm_covers_every_parameter_including_biases():
    model = _mlp()
    expected = torch.sqrt(sum((p.detach() ** 2).sum() for p in model.parameters()))
    assert torch.allclose(global_norm(model.parameters()), expected)


@pytest.mark.parametrize("make_opt", [
    lambda p: torch.optim.Adam(p, lr=1e-2),
    lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
    lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9),
])
def test_norm_is_held_after_every_step(make_opt):
    model = _mlp()
    params = list(model.parameters())
    target = 7.5
    project_to_sphere(params, target)
    opt = NormConstrained(make_opt(params), params, target)
    x, y = torch.randn(32, 4), torch.randn(32, 3)
    for _ in range(25):
        loss = ((model(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert abs(float(global_norm(params)) / target - 1) < 1e-6


def test_wrapper_leaves_optimizer_state_untouched():
    a, b = _mlp(), _mlp()
    pa, pb = list(a.parameters()), list(b.parameters())
    inner_a = torch.optim.Adam(pa, lr=1e-2)
    wrapped = NormConstrained(inner_a, pa, target=3.0)
    plain = torch.optim.Adam(pb, lr=1e-2)
    x, y = torch.randn(8, 4), torch.randn(8, 3)
    for model, opt in ((a, wrapped), (b, plain)):
        ((model(x) - y) ** 2).mean().backward()
        opt.step()
    for qa, qb in zip(pa, pb):
        assert torch.equal(inner_a.state[qa]["exp_avg"], plain.state[qb]["exp_avg"])
        assert torch.equal(inner_a.state[qa]["exp_avg_sq"], plain.state[qb]["exp_avg_sq"])
    assert wrapped.param_groups is inner_a.param_groups


def test_wrapper_works_with_an_embedding_layer():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Embedding(10, 8), nn.Flatten(), nn.Linear(16, 10))
    params = list(model.parameters())
    project_to_sphere(params, 2.0)
    opt = NormConstrained(torch.optim.AdamW(params, lr=1e-2), params, 2.0)
    tokens, labels = torch.randint(0, 10, (20, 2)), torch.randint(0, 10, (20,))
    for _ in range(10):
        loss = nn.functional.cross_entropy(model(tokens), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert abs(float(global_norm(params)) / 2.0 - 1) < 1e-6
    assert model[0].weight.grad is not None  # the embedding was trained, not just rescaled


def test_target_must_be_positive():
    with pytest.raises(ValueError):
        NormConstrained(torch.optim.SGD(_mlp().parameters(), lr=0.1), _mlp().parameters(), 0.0)
