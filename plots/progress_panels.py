"""The progress-measure panels of the grokking figure (issue 23): each measure a cube recorded at every
eval, one line per run, on the runs' step axis, so that one reads which comes first: softmax collapse
(Prieto et al. 2025), the gradient turning along the weights (naive loss minimization), the margin
growing (Lyu & Li 2020), the excluded loss rising and the key frequencies forming (Nanda et al. 2023),
or the test accuracy. Only the panels whose variables the cube has are drawn."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import FigureBase
from matplotlib.lines import Line2D

from landscape.read.progress import COLLAPSE_LEVELS, NLM_ALIGNED
from plots.runs import run_label
from plots.style import PALETTE, add_legend

#: One colour per run (yellow left out: too faint for a thin line), cycled past eight runs.
RUN_COLORS = PALETTE[:6] + PALETTE[7:]
PANEL_HEIGHT = 2.6


@dataclass(frozen=True)
class Panel:
    """A panel of curves: each (variable, line style, label) drawn once per run where the cube has it."""

    title: str
    ylabel: str
    lines: tuple[tuple[str, str, str], ...]
    scale: str = "linear"  # "log" for losses
    limits: tuple[float, float] | None = None
    #: Dotted horizontal lines: the marks landscape info reports crossings of (landscape.read.progress).
    levels: tuple[float, ...] = ()


PANELS = (
    Panel("softmax collapse", "fraction of training samples",
          (("softmax_collapse_curve", "-", "correct-class probability = 1"),
           ("zero_loss_curve", ":", "loss = 0")), limits=(-0.03, 1.03), levels=COLLAPSE_LEVELS),
    Panel("naive loss minimization", r"$\cos(-\nabla L, \theta)$", (("nlm_cosine_curve", "-", ""),),
          limits=(-1.05, 1.05), levels=(0.0, NLM_ALIGNED)),
    Panel("margin", "min margin (logits)", (("min_margin_curve", "-", ""),), levels=(0.0,)),
    Panel("normalized margin", r"min margin / $\|\theta\|^L$", (("normalized_margin_curve", "-", ""),), levels=(0.0,)),
    Panel("restricted and excluded loss", "loss",
          (("restricted_loss_curve", "-", "restricted (key frequencies only)"),
           ("excluded_loss_curve", "--", "excluded (key frequencies removed)"),
           ("train_loss_curve", ":", "train loss")), scale="log"),
    Panel("Fourier sparsity of the embedding", "Gini of the Fourier norms", (("fourier_gini_curve", "-", ""),)),
)
#: The heat map of the embedding's Fourier power over (frequency, step), drawn for one run.
POWER = "fourier_power_curve"


def present(cube: xr.Dataset) -> list[Panel | str]:
    """The panels this cube has variables for (a panel needs its first line), the power map last."""
    # The train loss alone is no progress measure: a panel is there for its first variable.
    shown: list[Panel | str] = [p for p in PANELS if p.lines[0][0] in cube]
    return shown + ([POWER] if POWER in cube else [])


def run_color(i: int) -> str:
    return RUN_COLORS[i % len(RUN_COLORS)]


def draw(fig: FigureBase, cube: xr.Dataset, runs: list[dict[str, Any]], sharex: Axes) -> list[Axes]:
    """The panels of :func:`present` in rows of three (seed 0, as the run panels), x shared with
    ``sharex``, and a legend naming the runs' colours; returns the axes drawn, in order (the caller
    gives them its step axis)."""
    panels = present(cube)
    ncols = min(3, len(panels))
    grid = fig.add_gridspec(-(-len(panels) // ncols), ncols)
    axes = [fig.add_subplot(grid[k // ncols, k % ncols], sharex=sharex) for k in range(len(panels))]
    steps = cube["step"].values
    selected = [_seed0(cube.sel(at)) for at in runs]
    for panel, ax in zip(panels, axes):
        if panel == POWER:
            _power_map(fig, ax, cube, runs, selected, steps)
        else:
            _lines(ax, panel, selected, steps)
    handles = [Line2D([], [], color=run_color(i), lw=2, label=run_label(cube, at)) for i, at in enumerate(runs)]
    handles.append(Line2D([], [], color="0.3", lw=0.9, ls=(0, (5, 3)), label=r"$t_{gen}$ of the run"))
    add_legend(fig, handles, ncols=4)
    return axes


def _seed0(run: xr.Dataset) -> xr.Dataset:
    return run.isel(seed=0) if "seed" in run.dims else run


def _lines(ax: Axes, panel: Panel, runs: list[xr.Dataset], steps: np.ndarray) -> None:
    lines = [line for line in panel.lines if line[0] in runs[0]]
    for i, run in enumerate(runs):
        for name, style, _ in lines:
            ax.plot(steps, run[name].values, color=run_color(i), lw=1.6, ls=style)
        t_gen = float(run["t_gen"])
        if np.isfinite(t_gen):  # which measure moves before the test accuracy does
            ax.axvline(max(t_gen, 1), color=run_color(i), lw=0.9, ls=(0, (5, 3)))
    if panel.scale == "log":
        finite = np.concatenate([run[name].values.ravel() for run in runs for name, _, _ in lines])
        if (np.isfinite(finite) & (finite > 0)).any():  # a log axis needs a positive value
            ax.set_yscale("log", nonpositive="mask")
    if panel.limits:
        ax.set_ylim(*panel.limits)
    for level in panel.levels:
        ax.axhline(level, color="0.5", lw=0.8, ls=":")
    if len(lines) > 1:  # which line style is which measure; the colours are the runs'
        ax.legend(handles=[Line2D([], [], color="0.3", lw=1.4, ls=style, label=label) for _, style, label in lines],
                  fontsize=7, loc="best", frameon=False)
    ax.set_title(panel.title, fontsize=10)
    ax.set_ylabel(panel.ylabel)


def _power_map(fig: FigureBase, ax: Axes, cube: xr.Dataset, runs: list[dict[str, Any]], selected: list[xr.Dataset],
               steps: np.ndarray) -> None:
    """Each frequency's share of the embedding's Fourier power at each eval, for the first run that
    generalized (else the first run; one with measured power, a diverged run has none): the key
    frequencies are the bands that take it over."""
    order = sorted(range(len(selected)), key=lambda k: not np.isfinite(float(selected[k]["t_gen"])))
    i = next((k for k in order if np.isfinite(selected[k][POWER].values).any()), order[0])
    power = selected[i][POWER].transpose("frequency", "step").values
    with np.errstate(invalid="ignore", divide="ignore"):
        share = power / power.sum(axis=0, keepdims=True)
    freq = cube["frequency"].values.astype(float)
    mesh = ax.pcolormesh(_edges(steps), _edges(freq), np.ma.masked_invalid(share), cmap="magma", vmin=0,
                         shading="flat")
    fig.colorbar(mesh, ax=ax, label="share of the power", pad=0.01)
    ax.set_ylabel("frequency $k$")
    ax.grid(False)
    ax.set_title(f"Fourier power of the embedding, {run_label(cube, runs[i])}", fontsize=9, color=run_color(i))


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges halfway between the centres, and as far beyond each end as its neighbour's half-way."""
    c = np.asarray(centres, dtype=float)
    if c.size == 1:
        return c[0] + np.array([-0.5, 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])
