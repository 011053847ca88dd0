"""Figures of Dichotomy runs (Lyu et al. 2024): the kernel-to-rich transition against its
prediction t_g = log(alpha)/(eta lambda), and the runs' curves in the paper's style with the
reference solutions' test levels drawn in."""
from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from landscape.read.dichotomy import COSINES, MEASURES, fit, test_metric, transitions
from landscape.errors import UserError
from plots.runs import run_label, run_selections
from plots.style import PALETTE, VERMILLION, add_legend, identity_line, new_figure, set_title, styled

MAX_RUNS = 12
_TRAIN, _TEST, _NORM = PALETTE[0], PALETTE[1], PALETTE[3]
#: Colour of each reference, used for its cosine curve and its dashed test level alike.
_REFERENCES = (("kernel", PALETTE[2], "kernel-regime (NTK) predictor"),
               ("rich", VERMILLION, "rich-regime (min-norm KKT) predictor"))
#: Vertical markers of a run: the prediction and the two measured transitions.
_TIMES = (("predicted", "0.15", ":", r"predicted $t_g=\ln\alpha/(\eta\lambda)$"),
          ("crossover", "0.15", "--", "measured: cosine crossover"),
          ("jump", "0.15", "-.", "measured: test-metric jump"))
_MARKERS = {"crossover": "o", "jump": "s"}


def _mark_times(ax: Axes, times: dict[str, float]) -> None:
    for name, color, ls, _ in _TIMES:
        if np.isfinite(times[name]):
            ax.axvline(max(times[name], 1), color=color, ls=ls, lw=1.2)


def _metric_panel(ax: Axes, run: xr.Dataset, metric: str, steps: np.ndarray) -> list[str]:
    """Train/test accuracy (classification) or loss (regression), the references' test levels dashed.

    Returns the references' levels as text for the panel title.
    """
    as_accuracy = metric == "test_err"
    value = (lambda v: 1 - v) if as_accuracy else (lambda v: v)
    train = "train_err" if as_accuracy else "train_loss"
    ax.plot(steps, value(run[f"{train}_curve"].values), color=_TRAIN, lw=2)
    ax.plot(steps, value(run[f"{metric}_curve"].values), color=_TEST, lw=2)
    notes = []
    for ref, color, _ in _REFERENCES:
        level = value(float(run[f"{ref}_{metric}"]))
        ax.axhline(level, color=color, ls="--", lw=1.5)
        notes.append(f"{ref} {level:.3g}")
    if as_accuracy:
        ax.set_ylim(0.45, 1.03)
        ax.set_ylabel("accuracy")
    else:
        ax.set_yscale("log")
        ax.set_ylabel("loss (MSE)")
    return notes


def _norm_twin(ax: Axes, run: xr.Dataset, steps: np.ndarray) -> None:
    twin = ax.twinx()
    norm = run["norm_curve"].values
    twin.plot(steps, norm, color=_NORM, lw=1.3, ls=(0, (4, 2)))
    twin.set_ylim(0, 1.08 * np.nanmax(norm))
    twin.set_ylabel(r"$\|\theta\|_2$", color=_NORM)
    twin.grid(False)


@styled
def dichotomy_figure(cube: xr.Dataset) -> Figure:
    """Per run (seed 0), paper style on a symlog step axis: accuracy or loss with the norm on a twin
    axis and dashed lines at each reference's test level (top), the cosines of the predictor to
    both references (bottom); vertical lines at the predicted and the measured transitions."""
    runs = run_selections(cube)
    if len(runs) > MAX_RUNS:
        raise UserError(f"the cube has {len(runs)} runs; the dichotomy figure draws at most {MAX_RUNS}")
    metric = test_metric(cube)
    times = transitions(cube)
    steps = cube["step"].values
    ncols = min(3, len(runs))
    nrows = -(-len(runs) // ncols)
    # At least 9 inches wide: the legend below needs it even for a single run.
    fig = Figure(figsize=(max(4.8 * ncols + 1.0, 9.0), 5.2 * nrows + 1.6), layout="constrained")
    grid = fig.subplots(2 * nrows, ncols, squeeze=False, sharex=True, height_ratios=[3, 2] * nrows)
    for i, at in enumerate(runs):
        top, bottom = grid[2 * (i // ncols), i % ncols], grid[2 * (i // ncols) + 1, i % ncols]
        run = cube.sel(at).isel(seed=0).load()
        run_times = {name: float(times[name].sel(at).isel(seed=0)) for name, *_ in _TIMES}
        notes = _metric_panel(top, run, metric, steps)
        _norm_twin(top, run, steps)
        for (_, color, _), name in zip(_REFERENCES, COSINES):
            bottom.plot(steps, run[name].values, color=color, lw=2)
        bottom.set_ylim(-0.02, 1.02)
        bottom.set_ylabel("cosine to reference")
        bottom.set_xlabel("optimizer step")
        for ax in (top, bottom):
            _mark_times(ax, run_times)
            ax.set_xscale("symlog", linthresh=1)
            ax.set_xlim(0, max(steps[-1], 1))
        what = "accuracy" if metric == "test_err" else "MSE"
        top.set_title(f"{run_label(cube, at)}\nreference test {what}: {', '.join(notes)}", fontsize=9)
    for j in range(len(runs), nrows * ncols):
        grid[2 * (j // ncols), j % ncols].set_visible(False)
        grid[2 * (j // ncols) + 1, j % ncols].set_visible(False)
    handles = [Line2D([], [], color=_TRAIN, lw=2, label="train"), Line2D([], [], color=_TEST, lw=2, label="test"),
               Line2D([], [], color=_NORM, lw=1.3, ls=(0, (4, 2)), label=r"norm $\|\theta\|_2$")]
    handles += [Line2D([], [], color=color, lw=2, ls="--", label=f"{label}: test level, cosine")
                for _, color, label in _REFERENCES]
    handles += [Line2D([], [], color=color, ls=ls, lw=1.2, label=label) for _, color, ls, label in _TIMES]
    add_legend(fig, handles, ncols=3)
    set_title(fig, cube, "kernel and rich regimes (seed 0)", note="γ in the labels is the weight decay λ")
    return fig


@styled
def transition_figure(cube: xr.Dataset) -> Figure:
    """Left: measured transition steps against t_g = ln(alpha)/(eta lambda) on log-log axes, with the
    fitted slope of each measure. Right: eta lambda t against ln alpha, where the theory's
    t = ln(alpha/alpha_c)/(eta lambda) is a line of slope 1 offset by ln alpha_c."""
    times = transitions(cube)
    fig, (ax, right) = new_figure(2, panel_width=5.0, height=4.8)
    handles, spans, off_scale = [], [], False
    for name in MEASURES:
        pred, meas, lr_wd = (times[v].values.ravel() for v in ("predicted", name, "lr_wd"))
        ok = np.isfinite(pred) & np.isfinite(meas) & (meas > 0)
        logged = ok & (pred > 0)  # alpha = 1 predicts t_g = 0: on the right panel only
        off_scale |= bool((ok & ~logged).any())
        result = fit(times, name)
        color = PALETTE[0] if name == "crossover" else PALETTE[1]
        style = {"ls": "none", "marker": _MARKERS[name], "ms": 7, "mfc": "none", "mew": 1.8, "color": color}
        ax.plot(pred[logged], meas[logged], **style)
        right.plot(pred[ok] * lr_wd[ok], meas[ok] * lr_wd[ok], **style)
        if logged.any():
            spans += [pred[logged], meas[logged]]
        if ok.any():
            if np.isfinite(result["slope"]):
                x = np.array([pred[logged].min(), pred[logged].max()])
                ax.plot(x, 10 ** result["intercept"] * x ** result["slope"], color=color, lw=1)
            log_alpha = np.array([0.0, 1.05 * (pred[ok] * lr_wd[ok]).max()])
            right.plot(log_alpha, log_alpha - np.log(result["alpha_c"]), color=color, lw=1)
        label = {"crossover": "cosine crossover", "jump": "test-metric jump"}[name]
        slope = f"slope {result['slope']:.2f}" if np.isfinite(result["slope"]) else "slope n/a"
        alpha_c = f", $\\alpha_c$ = {result['alpha_c']:.3g}" if np.isfinite(result["alpha_c"]) else ""
        handles.append(Line2D([], [], **style, label=f"{label}: {slope}{alpha_c} ({result['runs']} runs)"))
    if spans:
        handles.append(identity_line(ax, np.concatenate(spans)))
        log_alpha = [0.0, 1.05 * float((times["predicted"] * times["lr_wd"]).max())]
        right.plot(log_alpha, log_alpha, color="0.4", lw=1, ls=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    if off_scale:
        ax.text(0.03, 0.97, r"runs at $\alpha \leq 1$ ($t_g \leq 0$): right panel only", transform=ax.transAxes,
                va="top", fontsize="small", color="0.3")
    ax.set_xlabel(r"predicted $t_g = \ln\alpha / (\eta\lambda)$ (steps)")
    ax.set_ylabel("measured transition (steps)")
    right.set_xlabel(r"$\ln\alpha$")
    right.set_ylabel(r"$\eta\lambda\, t$ at the measured transition")
    right.set_xlim(left=0)
    right.set_ylim(bottom=0)
    handles.append(Line2D([], [], color="0.3", lw=1, label=r"fit $\eta\lambda t = \ln(\alpha/\alpha_c)$"))
    add_legend(fig, handles, ncols=2)
    set_title(fig, cube, "kernel-to-rich transition against its prediction")
    return fig
