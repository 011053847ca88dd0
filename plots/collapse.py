"""The collapse map: where on the sphere ‖θ‖ = w do models collapse? The softmax-collapse fraction at
the cells' end (training samples whose correct-class probability is exactly 1 in the training dtype;
Prieto et al. 2025) and the margin (normalized by ‖θ‖^L for homogeneous models, Lyu & Li 2020; the
minimum margin otherwise) over (w, N), seeds averaged, with the test-error thumb contours over them."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from matplotlib.colors import Normalize, SymLogNorm
from matplotlib.figure import Figure

from landscape.read.analysis import average_seeds
from landscape.read.progress import final_value
from plots.cell_map import contour_handle, contour_levels, map_panel
from plots.style import add_legend, new_figure, set_title, styled

#: The margins drawn, the first the cube has: variable, panel title, colour-bar label.
MARGINS = (("normalized_margin", r"normalized margin: min margin / $\|\theta\|^L$", "normalized margin"),
           ("min_margin", "minimum margin (correct logit − largest other)", "min margin (logits)"))


def available(cube: xr.Dataset) -> bool:
    return "softmax_collapse" in cube or _margin(cube) is not None


def _margin(cube: xr.Dataset) -> tuple[str, str, str] | None:
    return next((m for m in MARGINS if final_value(cube, m[0]) is not None), None)


@styled
def collapse_figure(cube: xr.Dataset, levels: Sequence[float] | None = None) -> Figure:
    """The collapse fraction on [0, 1] and the margin on a scale centred at 0 (symmetric log; blue: every
    training sample classified right, red: some wrong), each where the cube has it; pending cells hatched,
    diverged ones crossed, the test-metric contours at ``levels`` (default the cube's) as on the thumb."""
    levels = contour_levels(cube, levels)
    axis = cube.attrs["axis"]
    margin = _margin(cube)
    shown = [("softmax_collapse", "softmax collapse: training samples with $p_y = 1$", "fraction of training samples")]
    shown = [s for s in shown if s[0] in cube] + ([margin] if margin else [])
    finals = {name: final_value(cube, name) for name, _, _ in shown}
    averaged = average_seeds(cube.assign(finals), extra=list(finals))
    fig, axes = new_figure(len(shown), panel_width=5.2)
    marks: list = []
    for (name, title, label), ax in zip(shown, axes):
        z = averaged[name].transpose(axis, "w").values
        if name == "softmax_collapse":
            style = {"cmap": "YlOrBr", "norm": Normalize(0, 1)}
        else:
            style = {"cmap": "RdBu", "norm": _margin_norm(z)}
        mesh, marks = map_panel(ax, cube, np.ma.masked_invalid(z), averaged, levels, **style)
        bar = fig.colorbar(mesh, ax=ax, label=label, shrink=0.9)
        if isinstance(style["norm"], SymLogNorm):
            bar.set_ticks(_symlog_ticks(style["norm"]))
        ax.set_title(title, fontsize=10)
    add_legend(fig, [contour_handle(cube), *marks], ncols=4)
    set_title(fig, cube, "collapse and margin at the cells' end (seeds averaged)")
    return fig


def _margin_norm(z: np.ndarray) -> SymLogNorm:
    """Symmetric about 0 and logarithmic beyond the smallest nonzero |margin|: margins of large-α
    cells are thousands of logits, those near the Goldilocks zone a few."""
    size = np.abs(z[np.isfinite(z) & (z != 0)])
    if not size.size:
        return SymLogNorm(1.0, vmin=-1.0, vmax=1.0)
    bound = float(size.max())
    return SymLogNorm(max(float(size.min()), bound * 1e-6), vmin=-bound, vmax=bound)


def _symlog_ticks(norm: SymLogNorm) -> list[float]:
    """0 and about three decades a side: a tick at every decade would overlap near 0."""
    low, high = int(np.ceil(np.log10(norm.linthresh))), int(np.floor(np.log10(norm.vmax)))
    decades = [10.0**k for k in range(high, low - 1, -max(1, (high - low + 2) // 3))] or [norm.vmax]
    return sorted([-d for d in decades] + [0.0] + decades)
