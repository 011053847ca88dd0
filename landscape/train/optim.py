"""The optimizer chain of a cell: the optimizer, the gradient interventions around it (⊥Grad,
Grokfast; landscape.interventions.gradients), its lr step decay, gradient clipping. The norm
constraint that ends each step on the sphere is landscape.train.norm (``NormConstrained`` for one model;
the stacked backend projects each cell's slice itself)."""
from __future__ import annotations

from typing import Any

import torch

from landscape.interventions.gradients import chain, levels
from landscape.spec import TrainConfig


def make_optimizer(train: TrainConfig, params: list[torch.nn.Parameter], fused: bool = False) -> torch.optim.Optimizer:
    # foreach kernels: one launch per parameter group instead of one per tensor; fused: one kernel
    # for the whole update (on CPU about 3x faster than foreach for Adam, but contiguous params only).
    classes = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
    if train.optimizer not in classes:
        raise ValueError(f"unknown optimizer {train.optimizer!r}")
    impl = {"fused": True} if fused else {"foreach": True}
    if train.optimizer != "sgd":
        impl["betas"] = (train.beta1, train.beta2)
    return classes[train.optimizer](params, lr=train.lr, weight_decay=train.weight_decay, **impl)


def make_chain(train: TrainConfig, params: list[torch.nn.Parameter], fused: bool = False, cells: bool = False) -> Any:
    """The optimizer inside the interventions ``train`` asks for; ``cells``: params are stacked cells.
    Grokfast with lamb 0 is no wrapper at all, so it is the baseline exactly."""
    grokfast = {"alpha": train.grokfast_alpha, "lamb": train.grokfast_lamb} if train.grokfast_lamb else None
    return chain(make_optimizer(train, params, fused), params, orthograd=train.orthograd, grokfast=grokfast, cells=cells)


def innermost(opt: Any) -> torch.optim.Optimizer:
    """The torch optimizer at the core of a chain (schedulers are built on it: StepLR checks its type)."""
    return list(levels(opt))[-1]


def make_scheduler(opt: torch.optim.Optimizer, train: TrainConfig, start: int = 0) -> torch.optim.lr_scheduler.StepLR | None:
    """The step decay of ``train`` on ``opt``, stepped once per optimizer step; None when off.

    ``start`` > 0 continues the schedule from that step on a fresh optimizer (the stacked backend
    rebuilds its optimizer when cells leave the cell batch): its lr is set to the decayed value first.
    """
    if train.lr_decay_every == 0:
        return None
    for group in opt.param_groups:
        group["lr"] = train.lr * train.lr_decay_factor ** (start // train.lr_decay_every)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=train.lr_decay_every, gamma=train.lr_decay_factor)
    scheduler.last_epoch = start  # StepLR decays when its step count reaches a multiple of step_size
    return scheduler


@torch.no_grad()
def clip_each_cell(leaves: list[torch.Tensor], max_norm: float) -> None:
    """Each cell's gradient (slice 0 of every stacked leaf) scaled to global norm <= max_norm, as
    ``torch.nn.utils.clip_grad_norm_`` scales one model's."""
    grads = [leaf.grad for leaf in leaves if leaf.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads]), dim=0)
    factor = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, [factor.view(-1, *[1] * (g.dim() - 1)) for g in grads])
