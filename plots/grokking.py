"""Grokking curves of a dynamics cube: train and test accuracy against steps, weight norm alongside.

Omnigrok Fig. 2b / 3d: with large init (alpha > 1) and small weight decay the training set is fit
early and test accuracy rises only once the norm has decayed into the Goldilocks zone. A cube whose
figure metric is the loss (regression, Fig. 5d) shows train and test loss on log-log axes instead.
Cubes that record per-layer norms (``layer_norm_curve``) get a panel of them under each run: which
layers carry the norm's rise and fall (Fig. 7a), and the last layer's slingshots (Thilak et al. 2022).
"""
from __future__ import annotations

import itertools

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from landscape.read.analysis import metric_of
from landscape.cube.schema import STATUS_DIVERGED
from plots import progress_panels
from plots.runs import run_grid, run_label, spec_of
from plots.style import PALETTE, add_legend, set_title, styled

_NORM_COLOR = PALETTE[3]
#: Colours of the parameter groups' norms (cycled when a task has more groups).
_LAYER_COLORS = PALETTE[4:6] + PALETTE[2:3] + PALETTE[7:8] + PALETTE[:2]


@styled
def grokking_figure(cube: xr.Dataset) -> Figure:
    """One panel per run (every combination of the cube's dims but ``seed`` and ``step``; seed 0).

    Accuracy, or for a loss cube (:func:`metric_of`) the loss on log y; t_fit and t_gen (accuracy
    reaching the eval level) marked either way.
    """
    runs, nrows, ncols = run_grid(cube, "grokking")
    layers = list(cube["layer"].values) if "layer_norm_curve" in cube else []
    per_run = 2 if layers else 1
    height = (3.4 + 2.2 * (per_run - 1)) * nrows + 1.4
    progress = progress_panels.present(cube)
    # The progress panels (one line per run) go in rows of three under the run panels, with their own legend.
    below = progress_panels.PANEL_HEIGHT * -(-len(progress) // 3) + 0.6 if progress else 0.0
    fig = Figure(figsize=(4.6 * max(ncols, min(3, len(progress))) + 1.2, height + below), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[height, below]) if progress else (fig, None)
    grid = top.subplots(per_run * nrows, ncols, squeeze=False, height_ratios=[3, 2] * nrows if layers else None)
    axes = grid[::per_run].ravel()
    level = float(spec_of(cube)["eval"]["level"])
    metric = metric_of(cube)
    steps = cube["step"].values
    for i, (ax, at) in enumerate(zip(axes, runs)):
        run = cube.sel(at).isel(seed=0) if "seed" in cube.dims else cube.sel(at)
        if layers:
            _layer_panel(grid[per_run * (i // ncols) + 1, i % ncols], run, steps)
        _curves(ax, run, steps, metric, level)
        mark_fit_gen(ax, run)
        step_axis(ax, steps)
        diverged = " (diverged)" if int(run["status"]) == STATUS_DIVERGED else ""
        # With progress panels the title takes the run's colour there.
        ax.set_title(run_label(cube, at) + diverged, fontsize=10, **({"color": progress_panels.run_color(i)} if progress else {}))
        twin = ax.twinx()
        norm = run["norm_curve"].values
        twin.plot(steps, norm, color=_NORM_COLOR, lw=1.5, ls="-.")
        finite = norm[np.isfinite(norm)]
        if finite.size and finite.max() > 0:  # a diverged run's norm ends in inf or NaN
            twin.set_ylim(0, 1.08 * finite.max())  # from 0: small drifts look small
        twin.set_ylabel(r"weight norm $\|\theta\|_2$", color=_NORM_COLOR)
        twin.grid(False)
    for j in range(len(runs), nrows * ncols):
        for row in range(per_run):
            grid[per_run * (j // ncols) + row, j % ncols].set_visible(False)
    shown = "accuracy" if metric == "err" else "loss"
    times = r"$t_{fit}$, $t_{gen}$" + ("" if metric == "err" else f" (accuracy ≥ {level:g})")
    handles = [Line2D([], [], color=PALETTE[0], lw=2, label=f"train {shown}"),
               Line2D([], [], color=PALETTE[1], lw=2, label=f"test {shown}"),
               Line2D([], [], color=_NORM_COLOR, lw=1.5, ls="-.", label=r"norm $\|\theta\|_2$"),
               Line2D([], [], color="0.3", lw=1, ls="--", label=times)]
    if metric == "err":
        handles.append(Line2D([], [], color="0.5", lw=0.8, ls=":", label=f"level {level:g}"))
    handles += [Line2D([], [], color=color, lw=1.5, label=f"norm of {name}")
                for name, color in zip(layers, itertools.cycle(_LAYER_COLORS))]
    add_legend(top, handles, ncols=5 if ncols > 1 else 3)  # one panel is too narrow for five columns
    if bottom is not None:
        for ax in progress_panels.draw(bottom, cube, runs, sharex=axes[0]):
            step_axis(ax, steps)
    set_title(fig, cube, "grokking curves (dynamics, seed 0)")
    return fig


def _curves(ax: Axes, run: xr.Dataset, steps: np.ndarray, metric: str, level: float) -> None:
    """Train and test accuracy with the eval level, or train and test loss on log y (Fig. 5d)."""
    if metric == "err":
        ax.plot(steps, 1 - run["train_err_curve"].values, color=PALETTE[0], lw=2)
        ax.plot(steps, 1 - run["test_err_curve"].values, color=PALETTE[1], lw=2)
        ax.axhline(level, color="0.5", lw=0.8, ls=":")
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("accuracy")
        return
    losses = [run[f"{split}_loss_curve"].values for split in ("train", "test")]
    for loss, color in zip(losses, PALETTE):
        ax.plot(steps, loss, color=color, lw=2)
    if any((np.isfinite(loss) & (loss > 0)).any() for loss in losses):  # a log axis needs a positive value
        ax.set_yscale("log", nonpositive="mask")
    ax.set_ylabel("loss")


def _layer_panel(ax: Axes, run: xr.Dataset, steps: np.ndarray) -> None:
    """The norm of each parameter group against steps, on the run's symlog step axis."""
    curves = run["layer_norm_curve"].values
    for curve, color in zip(curves, itertools.cycle(_LAYER_COLORS)):
        ax.plot(steps, curve, color=color, lw=1.5)
    step_axis(ax, steps)
    finite = curves[np.isfinite(curves)]
    if finite.size:  # a diverged run has no finite norm to scale the axis to
        ax.set_ylim(0, 1.08 * finite.max())
    ax.set_ylabel("norm per layer")


def step_axis(ax: Axes, steps: np.ndarray) -> None:
    """The runs' step axis: log beyond step 1 and linear below (symlog), so that step 0 is shown."""
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlim(0, max(steps[-1], 1))
    ax.set_xlabel("optimizer step $t$")


def mark_fit_gen(ax: Axes, run: xr.Dataset) -> None:
    """Dashed vertical lines at the run's t_fit (blue) and t_gen (orange), where it reached them."""
    for name, color in (("t_fit", PALETTE[0]), ("t_gen", PALETTE[1])):
        t = float(run[name])
        if np.isfinite(t):
            ax.axvline(max(t, 1), color=color, lw=1, ls="--")
