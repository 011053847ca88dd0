"""Time scales of grokking: t_fit and t_gen against weight decay and data size, and the LU
prediction of the delay against the measured one (Omnigrok Fig. 2c, 3e, App. C)."""
from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from landscape.cube.schema import TRANSITION
from landscape.read.dynamics import loglog_slope
from landscape.errors import UserError
from landscape.cube.schema import STATUS_DIVERGED
from plots.runs import run_label, run_selections
from plots.style import (PALETTE, add_legend, axis_label, collapse_status, identity_line, mark_missing_points,
                         missing_point_handles, new_figure, set_title, styled)

_TIMES = (("t_fit", "--", "s", r"$t_{fit}$"), ("t_gen", "-", "o", r"$t_{gen}$"))
#: A Dichotomy cube's measured transition (landscape.read.dichotomy): drawn too, and the time the slope is fitted to.
_TRANSITION = (TRANSITION, "-.", "D", r"$t_{trans}$")


def _series(cube: xr.Dataset) -> tuple[tuple[str, str, str, str], ...]:
    """The times drawn, and last the one whose slope the legend gives (t_transition where the cube has it)."""
    return _TIMES + ((_TRANSITION,) if TRANSITION in cube else ())


def _times(cube: xr.Dataset, name: str) -> xr.DataArray:
    t = cube[name].where(cube["status"] == 1)
    return t.mean("seed") if "seed" in t.dims else t


@styled
def times_figure(cube: xr.Dataset, dim: str) -> Figure:
    """t_fit and t_gen against ``dim`` (``wd`` or the task's axis) on log-log axes, with the fitted
    slope of t_gen and, against weight decay, a 1/gamma reference line."""
    if dim not in cube["status"].dims or cube.sizes[dim] < 2:
        raise UserError(f"the cube has no {dim!r} sweep to plot times against")
    x = cube[dim].values.astype(float)
    fig, (ax,) = new_figure(1, panel_width=6.0, height=4.8)
    handles = []
    marked: set[int] = set()
    series = _series(cube)
    slope_of = series[-1][0]
    for at, color in zip(run_selections(cube, exclude=(dim,)), PALETTE):
        for name, ls, marker, _ in series:
            t = _times(cube, name).sel(at).values
            ax.plot(x, t, ls=ls, marker=marker, color=color)
        marked |= mark_missing_points(ax, x, collapse_status(cube["status"].sel(at), keep=dim), color)
        note = _slope_note(x, _times(cube, slope_of).sel(at).values, cube['status'].sel(at), slope_of)
        label = f"{run_label(cube, at)}: {note}"
        handles.append(Line2D([], [], color=color, marker="o", label=label))
    if dim == "wd":
        positive = x[x > 0]
        t_all = _times(cube, slope_of).values
        if positive.size and np.isfinite(t_all).any():
            anchor_x = np.sqrt(positive.min() * positive.max())
            anchor_t = np.exp(np.nanmean(np.log(t_all[np.isfinite(t_all) & (t_all > 0)])))
            ax.plot(positive, anchor_t * anchor_x / positive, color="0.4", lw=1, ls=":")
            handles.append(Line2D([], [], color="0.4", lw=1, ls=":", label=r"$\propto 1/\gamma$"))
        ax.set_xlabel(r"weight decay $\gamma$")
    else:
        ax.set_xlabel(axis_label(cube))
    handles += [Line2D([], [], color="0.3", ls=ls, marker=m, label=lab) for _, ls, m, lab in series]
    handles += missing_point_handles(marked)
    ax.set_xscale("log")
    t_both = np.concatenate([_times(cube, name).values.ravel() for name, *_ in series])
    if (t_both > 0).any():  # a log axis with no data cannot place its ticks
        ax.set_yscale("log", nonpositive="mask")
    else:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no finished run reached the accuracy level", transform=ax.transAxes, ha="center")
    ax.set_ylabel("steps to reach the accuracy level")
    add_legend(fig, handles, ncols=2)
    set_title(fig, cube, f"time to fit and to generalize against {'γ' if dim == 'wd' else dim}")
    return fig


def _slope_note(x: np.ndarray, t_gen: np.ndarray, status: xr.DataArray, name: str = "t_gen") -> str:
    """The log-log slope of one run's t_gen (or ``name``), or why there is none."""
    slope, _ = loglog_slope(x, t_gen)
    if np.isfinite(slope):
        return f"slope {slope:.2f}"
    if (status == STATUS_DIVERGED).all():
        return "diverged"
    reached = int(np.isfinite(t_gen).sum())
    return f"{name} reached at {reached} of {x.size}, too few for a slope" if reached else f"{name} never reached"


@styled
def prediction_figure(cube: xr.Dataset, delays: xr.Dataset) -> Figure:
    """Predicted delay (from the landscape's w_c, and from the Goldilocks edge w_hi) against t_gen."""
    fig, (ax,) = new_figure(1, panel_width=5.2, height=5.0)
    measured = delays["measured"]
    handles = []
    finite_all = []
    for name, marker, color, label in (("predicted", "o", PALETTE[0], r"from $w_c$ (test-loss minimum)"),
                                       ("predicted_edge", "s", PALETTE[1], r"from $w_{hi}$ (Goldilocks edge)")):
        pred, meas = xr.broadcast(delays[name], measured)
        ok = np.isfinite(pred.values) & np.isfinite(meas.values) & (pred.values > 0) & (meas.values > 0)
        ax.plot(meas.values[ok], pred.values[ok], ls="none", marker=marker, ms=7, color=color, mfc="none", mew=1.8)
        if ok.any():
            ratio = np.exp(np.mean(np.log(pred.values[ok] / meas.values[ok])))
            finite_all += [pred.values[ok], meas.values[ok]]
            handles.append(Line2D([], [], ls="none", marker=marker, color=color, mfc="none", mew=1.8,
                                  label=f"{label}: predicted/measured ×{ratio:.2f}"))
    if finite_all:
        handles.append(identity_line(ax, np.concatenate(finite_all)))
        ax.set_xscale("log")
        ax.set_yscale("log")
    else:  # log axes with no data cannot place their ticks
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no finished run has both a measured\nand a predicted delay", transform=ax.transAxes,
                ha="center", va="center")
    ax.set_xlabel(r"measured delay $t_{gen}$ (steps)")
    ax.set_ylabel(r"predicted $\ln(w_{init}/w_{ref}) / -\ln(1-\eta\gamma)$")
    add_legend(fig, handles, ncols=1)
    set_title(fig, cube, "LU prediction of the grokking delay")
    return fig
