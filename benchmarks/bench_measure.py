"""Benches of landscape.measures against its peers, 1 thread, per CPU second, same model and data:

- :func:`bench_slice`: a 21x21 filter-normalized 2-D slice against loss-landscapes'
  one-point-at-a-time evaluation, fed the same directions;
- :func:`bench_top_eigenvalue`: lambda_max to within 1e-3 relative of a converged value, against
  PyHessian's ``eigenvalues(top_n=1)`` at its defaults.

Run as ``python -m benchmarks.bench_measure``; ``make bench`` can call the functions.
The baseline is ``loss_landscapes.planar_interpolation`` when that package is installed (extra
``peers``), else its loop as published: the parameters moved in place by one step along a
direction, one forward pass over all samples per point. Inputs are random: the cost of a slice
does not depend on the pixel values, so the bench needs no MNIST download.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_limits
from torch import nn

from landscape.measures.directions import filter_directions
from landscape.measures.functional import flat_params, layout_of
from landscape.measures.slices import evaluate, plane
from landscape.models.mlp import mlp
from landscape.tasks.base import classification_errors, one_hot


def _cpu_seconds(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.process_time()
    out = fn()
    return time.process_time() - start, out


def _best_of(repeats: int, *fns: Callable[[], object]) -> list[tuple[float, object]]:
    """Each function's least CPU time over ``repeats`` runs, taken in turn so that a busy spell of
    the machine hits all of them alike, with its last result."""
    best: list[tuple[float, object]] = [(float("inf"), None)] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            seconds, out = _cpu_seconds(fn)
            best[i] = (min(best[i][0], seconds), out)
    return best


def baseline_plane(model: nn.Module, theta: torch.Tensor, dirs: torch.Tensor, points: int, span: float,
                   x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The slice one point at a time, as loss-landscapes does (its package when installed), on a
    copy of the model: loss-landscapes turns ``requires_grad`` off on the models it is given."""
    model = copy.deepcopy(model)
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
    return torch.as_tensor(values)


def bench_slice(widths: tuple[int, ...] = (784, 200, 200, 10), samples: int = 2000, points: int = 21,
                activation: type[nn.Module] = nn.ReLU, seed: int = 0, repeats: int = 3) -> dict[str, float | str]:
    """CPU seconds of one slice by the engine (its auto path) and by the baseline (best of
    ``repeats``, alternated), their ratio, and the largest relative difference of their values on
    the columns where loss-landscapes' walk lands on the same points (odd ones; see tests/test_slices.py)."""
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
            (engine_s, (losses, _, path)), (base_s, base) = _best_of(
                repeats, lambda: evaluate(model, pts, x, y, F.mse_loss, classification_errors),
                lambda: baseline_plane(model, theta, dirs, points, 1.0, x, y))
        finally:
            torch.set_num_threads(threads)
    ours = losses.reshape(points, points)[1::2].double()
    return {"model": "-".join(map(str, widths)), "samples": samples, "points": points * points,
            "engine_path": path, "engine_cpu_s": engine_s, "baseline_cpu_s": base_s,
            "ratio": base_s / engine_s, "max_rel_diff": float(((base[1::2] - ours).abs() / ours.abs()).max())}


def bench_top_eigenvalue(widths: tuple[int, ...] = (784, 200, 200, 10), samples: int = 2000,
                         seed: int = 0, target: float = 1e-3, cells: int = 4) -> dict[str, float | str]:
    """CPU seconds to lambda_max of the train-loss Hessian within ``target`` relative of a converged
    value (Lanczos to ``tol=1e-10`` from another start): by Lanczos, and by PyHessian's power
    iteration (when installed) at its defaults and then with its ``tol`` cut tenfold until it meets
    the target (its defaults stop on a relative change of 1e-3 between iterations, which is not an
    error of 1e-3). With ``cells`` > 1, also ``cells`` cells (the model's weights perturbed per
    cell) by :func:`landscape.measures.hessian.stacked_top_eigenvalues` in one batch, against
    ``cells`` times PyHessian's time on one cell at the tolerance that met the target."""
    from landscape.measures.functional import FlatLoss
    from landscape.measures.hessian import ambient, top_eigenvalues
    with threadpool_limits(1):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            torch.manual_seed(seed)
            model = mlp(widths, nn.ReLU).eval()
            x = torch.randn(samples, widths[0])
            y = one_hot(torch.randint(0, widths[-1], (samples,)), widths[-1])
            theta = flat_params(model)
            exact = float(top_eigenvalues(ambient(FlatLoss(model, x, y, F.mse_loss), theta), 1, 300, 1e-10,
                                          seed + 1).values[0])

            def rel_err(value: float) -> float:
                return abs(value - exact) / abs(exact)

            engine_s, eig = _cpu_seconds(
                lambda: top_eigenvalues(ambient(FlatLoss(model, x, y, F.mse_loss), theta), 1, 100, target, seed))
            out: dict[str, float | str] = {"model": "-".join(map(str, widths)), "samples": samples,
                                           "engine_cpu_s": engine_s, "engine_iterations": eig.iterations,
                                           "engine_rel_err": rel_err(float(eig.values[0]))}
            try:
                from pyhessian import hessian
            except ImportError:
                return out
            tol = 1e-3
            while True:
                torch.manual_seed(seed)
                base_s, (top, _) = _cpu_seconds(
                    lambda: hessian(model, F.mse_loss, data=(x, y), cuda=False).eigenvalues(tol=tol))
                if tol == 1e-3:
                    out.update(pyhessian_defaults_cpu_s=base_s, pyhessian_defaults_rel_err=rel_err(top[0]))
                if rel_err(top[0]) <= target or tol < 1e-7:
                    break
                tol /= 10
            out.update(pyhessian_tol=tol, pyhessian_cpu_s=base_s, pyhessian_rel_err=rel_err(top[0]),
                       ratio=base_s / engine_s)
            if cells > 1:
                out.update(_batched_cells(model, x, y, cells, seed, target, base_s))
            return out
        finally:
            torch.set_num_threads(threads)


def _batched_cells(model: nn.Module, x: torch.Tensor, y: torch.Tensor, cells: int, seed: int, target: float,
                   peer_s: float) -> dict[str, float]:
    """CPU seconds of ``cells`` cells' lambda_max in one stacked Lanczos, their worst relative error
    against each cell's converged value, and the ratio to ``cells`` runs of the peer (``peer_s`` each)."""
    from landscape.measures.functional import FlatLoss
    from landscape.measures.hessian import ambient, stacked_ambient, stacked_top_eigenvalues, top_eigenvalues
    gen = torch.Generator().manual_seed(seed + 2)
    theta = flat_params(model)
    thetas = torch.stack([theta * (1 + 0.05 * torch.randn(theta.shape, generator=gen)) for _ in range(cells)])
    loss = FlatLoss(model, x, y, F.mse_loss)
    exact = torch.tensor([float(top_eigenvalues(ambient(loss, t), 1, 300, 1e-10, seed + 1).values[0]) for t in thetas])
    batched_s, eigs = _cpu_seconds(lambda: stacked_top_eigenvalues(stacked_ambient(loss, thetas), cells, 1, 100,
                                                                   target, seed))
    got = torch.tensor([float(e.values[0]) for e in eigs])
    return {"cells": cells, "batched_cpu_s": batched_s, "batched_cpu_s_per_cell": batched_s / cells,
            "batched_rel_err": float(((got - exact).abs() / exact.abs()).max()),
            "ratio_batched": cells * peer_s / batched_s}


def bench_measure_cost(n_train: int = 4000, seed: int = 0, threads: int = 1) -> dict[str, float]:
    """The cost of the default ``[measure]`` (hessian_top = 1 and the trace, ambient and reduced, at
    the cell's end) as a fraction of training the cell: one cell of grids/mnist.toml at alpha = 1
    trained by :func:`landscape.train.train_cell` (CPU seconds), then
    :func:`landscape.measures.curvature` on its final model on its full training set (CPU seconds).
    The final model is taken by a measure that only keeps it, so the row does not depend on the
    [measure] section's own hook."""
    from landscape.measures import curvature
    from landscape.run.plan import default_init_norm
    from landscape.spec import MeasureConfig, load_spec
    from landscape.train import train_cell
    spec = load_spec(Path(__file__).resolve().parents[1] / "grids" / "mnist.toml")
    task = spec.make_task()
    split = task.data(n_train)
    w = default_init_norm(task)
    defaults = MeasureConfig(hessian_top=1, hessian_trace=True)
    kept: list[nn.Module] = []

    class Keep:
        quantities: tuple = ()
        coords: dict = {}
        every_eval = False

        def __call__(self, model: nn.Module, at: object) -> dict:
            kept.append(copy.deepcopy(model))
            return {}

    with threadpool_limits(threads):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            train_s, _ = _cpu_seconds(lambda: train_cell(task, split, w, seed, spec.train, spec.eval,
                                                         measures=[Keep()]))
            model = kept[-1]
            measure_s, curv = _cpu_seconds(lambda: curvature(
                model, split.train_x, split.train_y, task.loss, task.constrained_parameters(model), seed,
                top=defaults.hessian_top, trace_probes=defaults.trace_probes if defaults.hessian_trace else 0))
        finally:
            torch.set_num_threads(before)
    return {"n_train": n_train, "steps": spec.train.steps, "train_cpu_s": train_s, "measure_cpu_s": measure_s,
            "fraction": measure_s / train_s,
            "lanczos_iterations": float(sum(c.eigen.iterations for c in curv.values()))}


if __name__ == "__main__":
    for widths, act in (((784, 200, 200, 10), nn.ReLU), ((5, 100, 100, 5), nn.Tanh)):
        print(bench_slice(widths, activation=act))
    print(bench_top_eigenvalue())
    print(bench_measure_cost())
