"""Grokking curves of a dynamics cube: train and test accuracy against steps, weight norm alongside.

Omnigrok Fig. 2b / 3d: with large init (alpha > 1) and small weight decay the training set is fit
early and test accuracy rises only once the norm has decayed into the Goldilocks zone.
"""
from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from landscape.errors import UserError
from landscape.schema import STATUS_DIVERGED
from plots.runs import run_label, run_selections, spec_of
from plots.style import PALETTE, add_legend, set_title, styled

MAX_PANELS = 12
_NORM_COLOR = PALETTE[3]


@styled
def grokking_figure(cube: xr.Dataset) -> Figure:
    """One panel per run (every combination of the cube's dims but ``seed`` and ``step``; seed 0)."""
    runs = run_selections(cube)
    if len(runs) > MAX_PANELS:
        raise UserError(f"the cube has {len(runs)} runs; the grokking figure draws at most {MAX_PANELS} "
                        "(select a sub-cube first)")
    ncols = min(3, len(runs))
    nrows = -(-len(runs) // ncols)
    fig = Figure(figsize=(4.6 * ncols + 1.2, 3.4 * nrows + 1.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    level = float(spec_of(cube)["eval"]["level"])
    steps = cube["step"].values
    for ax, at in zip(axes, runs):
        run = cube.sel(at).isel(seed=0) if "seed" in cube.dims else cube.sel(at)
        ax.plot(steps, 1 - run["train_err_curve"].values, color=PALETTE[0], lw=2)
        ax.plot(steps, 1 - run["test_err_curve"].values, color=PALETTE[1], lw=2)
        ax.axhline(level, color="0.5", lw=0.8, ls=":")
        for name, color in (("t_fit", PALETTE[0]), ("t_gen", PALETTE[1])):
            t = float(run[name])
            if np.isfinite(t):
                ax.axvline(max(t, 1), color=color, lw=1, ls="--")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(0, max(steps[-1], 1))
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("optimizer step $t$")
        ax.set_ylabel("accuracy")
        diverged = " (diverged)" if int(run["status"]) == STATUS_DIVERGED else ""
        ax.set_title(run_label(cube, at) + diverged, fontsize=10)
        twin = ax.twinx()
        norm = run["norm_curve"].values
        twin.plot(steps, norm, color=_NORM_COLOR, lw=1.5, ls="-.")
        finite = norm[np.isfinite(norm)]
        if finite.size and finite.max() > 0:  # a diverged run's norm ends in inf or NaN
            twin.set_ylim(0, 1.08 * finite.max())  # from 0: small drifts look small
        twin.set_ylabel(r"weight norm $\|\theta\|_2$", color=_NORM_COLOR)
        twin.grid(False)
    for ax in axes[len(runs):]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=PALETTE[0], lw=2, label="train accuracy"),
               Line2D([], [], color=PALETTE[1], lw=2, label="test accuracy"),
               Line2D([], [], color=_NORM_COLOR, lw=1.5, ls="-.", label=r"norm $\|\theta\|_2$"),
               Line2D([], [], color="0.3", lw=1, ls="--", label=r"$t_{fit}$, $t_{gen}$"),
               Line2D([], [], color="0.5", lw=0.8, ls=":", label=f"level {level:g}")]
    add_legend(fig, handles, ncols=5)
    set_title(fig, cube, "grokking curves (dynamics, seed 0)")
    return fig
