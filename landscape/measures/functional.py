"""A model's loss as a function of one flat parameter vector, on the full data, in bounded memory.

Every estimator in :mod:`landscape.measures` works on flat vectors: ``theta`` is the model's trainable
parameters concatenated in ``named_parameters`` order, and a :class:`FlatLoss` evaluates the loss,
its gradient and Hessian-vector products at any such vector by ``torch.func`` on the model itself
(its buffers as they are; the caller picks ``train()`` or ``eval()`` mode, normally ``eval()``).
The data are summed in chunks of ``chunk`` samples, each weighted by its share of the samples, so
the loss must be a mean over samples (MSE over all elements and mean cross-entropy both are).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.func import functional_call

#: ``loss(pred, target)`` -> scalar mean over the samples (a Task's ``loss``).
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``select(x, rows)`` -> the model input of those samples (a Task's ``select``).
SelectFn = Callable[[Any, torch.Tensor], Any]


def _index(x: Any, rows: torch.Tensor) -> Any:
    return x[rows]


@dataclass(frozen=True)
class Layout:
    """Where each named parameter lies in the flat vector."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @property
    def sizes(self) -> list[int]:
        return [s.numel() for s in self.shapes]

    @property
    def dim(self) -> int:
        return sum(self.sizes)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """Views of ``flat`` (last axis) as the named parameters; leading axes are kept (batches of points)."""
        lead = flat.shape[:-1]
        return {n: t.reshape(*lead, *s) for n, s, t in zip(self.names, self.shapes, flat.split(self.sizes, -1))}

    def flatten(self, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([tensors[n].reshape(-1) for n in self.names])

    def mask(self, params: list[torch.Tensor], named: dict[str, torch.Tensor], like: torch.Tensor) -> torch.Tensor:
        """0/1 vector marking the entries of ``params`` (e.g. a task's constrained parameters)."""
        chosen = {id(p) for p in params}
        return torch.cat([torch.full((named[n].numel(),), float(id(named[n]) in chosen), dtype=like.dtype,
                                     device=like.device) for n in self.names])


def trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def layout_of(model: nn.Module) -> Layout:
    named = trainable(model)
    return Layout(tuple(named), tuple(p.shape for p in named.values()))


def flat_params(model: nn.Module) -> torch.Tensor:
    """The model's trainable parameters as one detached flat vector (a copy)."""
    return torch.cat([p.detach().reshape(-1) for p in trainable(model).values()])


def constrained_mask(model: nn.Module, constrained: list[torch.Tensor] | None) -> torch.Tensor:
    """1 on the entries of the parameters that define w (all of them when ``constrained`` is None)."""
    theta = flat_params(model)
    if constrained is None:
        return torch.ones_like(theta)
    return layout_of(model).mask(constrained, dict(trainable(model)), theta)


class FlatLoss:
    """``loss(model_with(theta)(x), y)`` over the full data as a function of a flat ``theta``."""

    def __init__(self, model: nn.Module, x: Any, y: torch.Tensor, loss: LossFn, chunk: int = 4096,
                 select: SelectFn = _index):
        if chunk < 1:
            raise ValueError(f"chunk must be positive, got {chunk}")
        self.model, self.x, self.y, self.loss, self.select = model, x, y, loss, select
        self.layout = layout_of(model)
        self.buffers = dict(model.named_buffers())
        n = len(y)
        self.chunks = [torch.arange(i, min(i + chunk, n), device=y.device) for i in range(0, n, chunk)]
        self.weights = [len(rows) / n for rows in self.chunks]
        self._graph: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    @property
    def dim(self) -> int:
        return self.layout.dim

    def chunk_loss(self, theta: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        params = self.layout.unflatten(theta)
        pred = functional_call(self.model, (params, self.buffers), (self.select(self.x, rows),))
        return self.loss(pred, self.y[rows])

    def _sum(self, per_chunk: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        total = None
        for rows, weight in zip(self.chunks, self.weights):
            part = per_chunk(rows) * weight
            total = part if total is None else total + part
        return total

    def value(self, theta: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self._sum(lambda rows: self.chunk_loss(theta, rows))

    def grad(self, theta: torch.Tensor) -> torch.Tensor:
        def one(rows: torch.Tensor) -> torch.Tensor:
            t = theta.detach().requires_grad_()
            return torch.autograd.grad(self.chunk_loss(t, rows), t)[0]
        return self._sum(one)

    def hvp(self, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """H(theta) v by double backward, chunk by chunk. (Forward-over-reverse ``torch.func.jvp``
        of ``grad`` failed here on torch 2.13: "ZeroTensors are immutable".) When the data are one
        chunk, the gradient's graph at ``theta`` is kept between calls, so that each product costs
        one backward pass, as in PyHessian; with more chunks it is rebuilt, to bound the memory."""
        if len(self.chunks) == 1:
            if self._graph is None or self._graph[0] is not theta:
                t = theta.detach().requires_grad_()
                g = torch.autograd.grad(self.chunk_loss(t, self.chunks[0]), t, create_graph=True)[0]
                self._graph = (theta, t, g)
            _, t, g = self._graph
            return torch.autograd.grad(g, t, v, retain_graph=True)[0]

        def one(rows: torch.Tensor) -> torch.Tensor:
            t = theta.detach().requires_grad_()
            g = torch.autograd.grad(self.chunk_loss(t, rows), t, create_graph=True)[0]
            return torch.autograd.grad(g, t, v)[0]
        return self._sum(one)
