"""The edge of stability along dynamics runs: the sharpness λ_max against the optimizer's stability
threshold, 2/η for SGD (Cohen et al. 2021) and, for Adam, the preconditioned sharpness
λ_max(P⁻¹H) against (2 + 2β₁)/((1 − β₁)η) = 38/η at β₁ = 0.9 (Cohen et al. 2022)."""
from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from plots.grokking import mark_fit_gen, step_axis
from plots.runs import run_grid, run_label, spec_of
from plots.style import PALETTE, VERMILLION, add_legend, set_title, styled

#: The curves drawn when the cube has them: variable, eigen index (None: a scalar), colour, label.
_CURVES = (("hessian_top_ambient_curve", 0, PALETTE[0], r"$\lambda_{\max}(H)$, ambient"),
           ("hessian_top_reduced_curve", 0, PALETTE[2], r"$\lambda_{\max}(H_{\mathrm{red}})$, reduced"),
           ("adam_sharpness_curve", None, PALETTE[3], r"$\lambda_{\max}(P^{-1}H)$, preconditioned (Adam)"))


def available(cube: xr.Dataset) -> bool:
    return "hessian_top_ambient_curve" in cube


@styled
def stability_figure(cube: xr.Dataset) -> Figure:
    """One panel per run (seed 0): the measured sharpness curves on log y over the runs' step axis,
    the threshold as a horizontal line, t_fit and t_gen dashed."""
    runs, nrows, ncols = run_grid(cube, "edge-of-stability")
    fig = Figure(figsize=(4.6 * ncols + 1.2, 3.4 * nrows + 1.4), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    steps = cube["step"].values
    shown = [c for c in _CURVES if c[0] in cube]
    threshold_label = _threshold_label(cube)
    for ax, at in zip(axes, runs):
        run = cube.sel(at).isel(seed=0) if "seed" in cube.dims else cube.sel(at)
        for name, eigen, colour, _ in shown:
            values = run[name].isel(eigen=eigen).values if eigen is not None else run[name].values
            finite = np.isfinite(values)  # measured at some evals only, or ended by divergence
            ax.plot(steps[finite], values[finite], color=colour, lw=1.8, marker="o" if finite.sum() < 12 else None,
                    ms=3)
        if "stability_threshold" in run and np.isfinite(float(run["stability_threshold"])):
            ax.axhline(float(run["stability_threshold"]), color=VERMILLION, lw=1.4, ls=":")
        mark_fit_gen(ax, run)
        step_axis(ax, steps)
        ax.set_yscale("log", nonpositive="mask")
        ax.set_ylabel("sharpness")
        ax.set_title(run_label(cube, at), fontsize=10)
    for ax in axes[len(runs):]:
        ax.set_visible(False)
    handles = [Line2D([], [], color=c, lw=2, label=label) for _, _, c, label in shown]
    if "stability_threshold" in cube:
        handles.append(Line2D([], [], color=VERMILLION, lw=1.4, ls=":", label=threshold_label))
    handles.append(Line2D([], [], color="0.3", lw=1, ls="--", label=r"$t_{fit}$, $t_{gen}$"))
    add_legend(fig, handles, ncols=3)
    set_title(fig, cube, "edge of stability (dynamics, seed 0)")
    return fig


def _threshold_label(cube: xr.Dataset) -> str:
    optimizer = spec_of(cube).get("train", {}).get("optimizer", "sgd")
    if optimizer == "sgd":
        return r"stability threshold $2/\eta$ (SGD)"
    return r"stability threshold $(2 + 2\beta_1)/((1 - \beta_1)\eta)$ (= $38/\eta$ at $\beta_1 = 0.9$)"
