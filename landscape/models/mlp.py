"""Fully connected nets with PyTorch's default init: the MLPs of Omnigrok's teacher-student, MNIST and toy tasks."""
from __future__ import annotations

from typing import Callable, Sequence

from torch import nn


def mlp(widths: Sequence[int], activation: Callable[[], nn.Module]) -> nn.Sequential:
    """Fully connected net ``widths[0] -> ... -> widths[-1]`` with PyTorch's default init."""
    layers: list[nn.Module] = []
    for i, (fan_in, fan_out) in enumerate(zip(widths[:-1], widths[1:])):
        if i:
            layers.append(activation())
        layers.append(nn.Linear(fan_in, fan_out))
    return nn.Sequential(*layers)
