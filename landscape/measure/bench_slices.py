"""Bench: a 21x21 filter-normalized 2-D slice by this engine against loss-landscapes'
one-point-at-a-time evaluation, same model, data and directions, 1 thread, per CPU second.

Run as ``python -m landscape.measure.bench_slices``; ``make bench`` can call :func:`bench_slice`.
The baseline is ``loss_landscapes.planar_interpolation`` when that package is installed (extra
``measure-test``), else its loop as published: the parameters moved in place by one step along a
direction, one forward pass over all samples per point. Inputs are random: the cost of a slice
does not depend on the pixel values, so the bench needs no MNIST download.
"""
from __future__ import annotations

import copy
import time
from typing import Callable

import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn

from landscape.measure.directions import filter_directions
from landscape.measure.functional import flat_params, layout_of
from landscape.measure.slices import evaluate, plane
from landscape.models.mlp import mlp
from landscape.tasks.base import classification_errors, one_hot


def _cpu_seconds(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def baseline_plane(model: nn.Module, theta: torch.Tensor, dirs: torch.Tensor, points: int, span: float,
                   x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The slice one point at a time, as loss-landscapes does (its package when installed)."""
    layout = layout_of(model)
    step = 2 * span / (points - 1)
    start = theta - span * dirs[0] - span * dirs[1]

    def load(flat: torch.Tensor) -> None:
        with torch.no_grad():
            for p, v in zip(model.parameters(), layout.unflatten(flat).values()):
                p.copy_(v)

    try:
        import loss_landscapes
        from loss_landscapes.metrics import Loss
    except ImportError:
        values = torch.empty(points, points, dtype=theta.dtype)
        point = start.clone()
        with torch.no_grad():
            for i in range(points):
                for j in range(points):
                    load(point + j * step * dirs[1])
                    values[i, j] = F.mse_loss(model(x), y)
                point += step * dirs[0]
        return values
    ends = []
    for d in dirs:
        end = copy.deepcopy(model)
        load(start + points * step * d)
        end.load_state_dict(model.state_dict())
        ends.append(end)
    load(start)
    values = loss_landscapes.planar_interpolation(model, *ends, Loss(F.mse_loss, x, y), steps=points)
    load(theta)
    return torch.as_tensor(values)


def bench_slice(widths: tuple[int, ...] = (784, 200, 200, 10), samples: int = 2000, points: int = 21,
                activation: type[nn.Module] = nn.ReLU, seed: int = 0) -> dict[str, float | str]:
    """CPU seconds of one slice by the engine (its auto path) and by the baseline, and their ratio."""
    with threadpool_limits(1):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            torch.manual_seed(seed)
            model = mlp(widths, activation).eval()
            x = torch.randn(samples, widths[0])
            y = one_hot(torch.randint(0, widths[-1], (samples,)), widths[-1])
            theta = flat_params(model)
            dirs = filter_directions(model, seed)
            pts = plane(theta, dirs, points, 1.0, "filter")
            engine_s, (losses, _, path) = _cpu_seconds(
                lambda: evaluate(model, pts, x, y, F.mse_loss, classification_errors))
            base_s, base = _cpu_seconds(lambda: baseline_plane(model, theta, dirs, points, 1.0, x, y))
        finally:
            torch.set_num_threads(threads)
    return {"model": "-".join(map(str, widths)), "samples": samples, "points": points * points,
            "engine_path": path, "engine_cpu_s": engine_s, "baseline_cpu_s": base_s,
            "ratio": base_s / engine_s}


if __name__ == "__main__":
    for widths, act in (((784, 200, 200, 10), nn.ReLU), ((5, 100, 100, 5), nn.Tanh)):
        print(bench_slice(widths, activation=act))
