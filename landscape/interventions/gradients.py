"""Gradient interventions as optimizer wrappers, composable like ``landscape.train.norm.NormConstrained``
(optax's ``chain``): each rewrites the gradients of its parameters in place, then steps the
optimizer it wraps; everything other than ``step`` is delegated, so ``zero_grad``, ``param_groups``
and schedulers (built on the innermost torch optimizer) work as usual.

- ``OrthoGrad`` (⊥Grad; Prieto et al., ICLR 2025, their orthograd.py): per parameter tensor,
  g⊥ = g - (θ·g / (θ·θ + 1e-30)) θ, rescaled to the norm of g (÷ (‖g⊥‖ + 1e-30)), in the
  parameter's dtype as theirs. pytorch-optimizer's ``OrthoGrad`` differs only where g is parallel
  to θ to rounding (it zeroes g⊥ there; the reference rescales the rounding noise).
- ``Grokfast`` (Lee et al. 2024, ironjr/grokfast ``gradfilter_ema``): per parameter,
  h ← g on the first step, h ← α h + (1 - α) g after; then g ← g + λ h.

Both work on one model's parameters (``cells=False``) and on the stacked backend's leaves, shaped
(cells, *shape) with one fused optimizer (``cells=True``): ⊥Grad then reduces each cell's slice
(every dim but the first), and Grokfast is elementwise, so either is per-cell exact. The stacked
layout stores 2-D weights transposed, which neither the dot products nor the filter see.

Order (``chain``): Grokfast(OrthoGrad(optimizer)), and the norm projection last around both:
NormConstrained(Grokfast(OrthoGrad(AdamW))) for one model. A step then filters, projects out the
radial part, lets AdamW update, and puts the weights back on the sphere. ⊥Grad goes innermost
because its guarantee is about the gradient the optimizer receives: put outside, Grokfast would
add back λ h, an average of past gradients that are not orthogonal to the current θ, and with it
the naive-loss-minimization component ⊥Grad exists to remove. Grokfast's filter then sees the raw
gradients, as in its authors' code (filter between backward and ``optimizer.step``). The norm
projection must be last so that every step ends on the sphere.
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator

import torch

#: The reference ⊥Grad's guard against division by zero, in both denominators.
ORTHO_EPS = 1e-30


def orthogonal_gradient(param: torch.Tensor, grad: torch.Tensor, batch_dims: int = 0) -> torch.Tensor:
    """⊥Grad of one tensor: ``grad`` without its component along ``param``, rescaled to ‖grad‖.

    ``batch_dims`` leading dims are kept apart (1: stacked cells, each slice its own projection).
    """
    keep = param.shape[:batch_dims]
    w = param.detach().reshape(*keep, -1)
    g = grad.reshape(*keep, -1)
    proj = (w * g).sum(-1, keepdim=True) / ((w * w).sum(-1, keepdim=True) + ORTHO_EPS)
    g_orth = g - proj * w
    scale = torch.linalg.vector_norm(g, dim=-1, keepdim=True) / (
        torch.linalg.vector_norm(g_orth, dim=-1, keepdim=True) + ORTHO_EPS)
    return (g_orth * scale).reshape(grad.shape)


class GradientTransform:
    """Base of the wrappers: ``transform()`` rewrites the gradients of ``params``, then the inner step runs."""

    def __init__(self, optimizer: Any, params: Iterable[torch.Tensor], cells: bool = False):
        self.optimizer = optimizer
        self.params = list(params)
        self.batch_dims = 1 if cells else 0

    def transform(self) -> None:
        raise NotImplementedError

    def carry(self, old: "GradientTransform", new_of: dict[int, torch.Tensor],
              take: Callable[[torch.Tensor], torch.Tensor]) -> None:
        """Take over ``old``'s state (see ``carry_state``); stateless wrappers have none."""

    def step(self, closure: Any = None) -> Any:
        if closure is None:
            self.transform()
            return self.optimizer.step()

        def transformed() -> Any:  # the gradients exist only once the closure has run
            with torch.enable_grad():
                loss = closure()
            self.transform()
            return loss

        return self.optimizer.step(transformed)

    def __getattr__(self, name: str) -> Any:
        if name == "optimizer":  # not set yet (copy, unpickling): no delegation loop
            raise AttributeError(name)
        return getattr(self.optimizer, name)


class OrthoGrad(GradientTransform):
    """⊥Grad: each parameter's gradient made orthogonal to the parameter before the inner step."""

    @torch.no_grad()
    def transform(self) -> None:
        for p in self.params:
            if p.grad is not None:
                p.grad.copy_(orthogonal_gradient(p, p.grad, self.batch_dims))


class Grokfast(GradientTransform):
    """Grokfast-EMA: the gradient plus ``lamb`` times its exponential moving average (decay ``alpha``)."""

    def __init__(self, optimizer: Any, params: Iterable[torch.Tensor], alpha: float = 0.98, lamb: float = 2.0,
                 cells: bool = False):
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"grokfast alpha must be in [0, 1), got {alpha}")
        if not lamb >= 0.0:
            raise ValueError(f"grokfast lamb must be >= 0, got {lamb}")
        super().__init__(optimizer, params, cells)
        self.alpha, self.lamb = float(alpha), float(lamb)
        #: The filter state h per parameter; not named ``state``, which delegates to the inner optimizer's.
        self.ema: dict[torch.Tensor, torch.Tensor] = {}

    @torch.no_grad()
    def transform(self) -> None:
        for p in self.params:
            g = p.grad
            if g is None:
                continue
            h = self.ema.get(p)
            if h is None:
                self.ema[p] = h = g.detach().clone()
            else:
                h.mul_(self.alpha).add_(g, alpha=1.0 - self.alpha)
            g.add_(h, alpha=self.lamb)

    def carry(self, old: GradientTransform, new_of: dict[int, torch.Tensor],
              take: Callable[[torch.Tensor], torch.Tensor]) -> None:
        assert isinstance(old, Grokfast)
        self.ema = {new_of[id(p)]: take(h) for p, h in old.ema.items()}


def chain(optimizer: torch.optim.Optimizer, params: Iterable[torch.Tensor], *, orthograd: bool = False,
          grokfast: dict[str, float] | None = None, cells: bool = False) -> Any:
    """``optimizer`` wrapped in the interventions asked for, in the order of the module docstring.

    ``grokfast``: None (off) or the keyword arguments of ``Grokfast`` (``alpha``, ``lamb``). The
    norm constraint is not added here: one model wraps the result in ``NormConstrained``, the
    stacked backend projects each cell itself after ``step()``.
    """
    params = list(params)
    opt: Any = optimizer
    if orthograd:
        opt = OrthoGrad(opt, params, cells=cells)
    if grokfast is not None:
        opt = Grokfast(opt, params, cells=cells, **grokfast)
    return opt


def levels(opt: Any) -> Iterator[Any]:
    """The wrappers of a chain from the outside in, then the torch optimizer at its core."""
    while True:
        yield opt
        inner = vars(opt).get("optimizer")  # vars: not the delegating __getattr__
        if inner is None:
            return
        opt = inner


def carry_state(old: Any, new: Any, old_params: list[torch.Tensor], new_params: list[torch.Tensor],
                take: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Move the state of chain ``old`` onto chain ``new``, built alike on ``new_params``.

    For the stacked backend when cells leave the batch: ``take`` maps a stacked state tensor to the
    kept cells' rows (``lambda v: v.index_select(0, pick)``). The torch optimizer's 0-d entries
    (Adam's shared step count) are copied as they are, as the backend's compaction does today.
    """
    new_of = {id(a): b for a, b in zip(old_params, new_params)}
    old_levels, new_levels = list(levels(old)), list(levels(new))
    if [type(o) for o in old_levels] != [type(n) for n in new_levels]:
        raise ValueError("carry_state needs two chains of the same wrappers")
    for o, n in zip(old_levels, new_levels):
        if isinstance(o, GradientTransform):
            n.carry(o, new_of, take)
        elif isinstance(o, torch.optim.Optimizer):
            for p, state in o.state.items():
                if state and id(p) in new_of:
                    n.state[new_of[id(p)]] = {k: (take(v) if torch.is_tensor(v) and v.dim() else
                                                  (v.clone() if torch.is_tensor(v) else v)) for k, v in state.items()}
