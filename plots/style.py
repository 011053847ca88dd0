"""The one look of every figure, and the drawing helpers the figure modules share.

Figures are built on ``matplotlib.figure.Figure`` (no pyplot), so nothing here touches global
state: the rc settings apply only inside :func:`styled` figure functions.
"""
from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec

import matplotlib as mpl
import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerTuple
from matplotlib.lines import Line2D

from landscape.cube.schema import STATUS_DIVERGED, STATUS_PENDING

#: Okabe & Ito (2008): distinguishable under the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
VERMILLION, GREY = "#D55E00", "#999999"
W_LABEL = r"global norm $w = \|\theta\|_2$"
ALPHA_LABEL = r"$\alpha = w / w_0$"
FORMATS = ("png", "pdf")

_RC = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 12,
    "legend.fontsize": 9,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "figure.titlesize": 13,
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "savefig.dpi": 150,
}

P = ParamSpec("P")


def styled(build: Callable[P, Figure]) -> Callable[P, Figure]:
    """Run a figure function under the project style; rc values are read when artists are made."""
    @functools.wraps(build)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Figure:
        with mpl.rc_context(_RC):
            fig = build(*args, **kwargs)
        for ax in fig.axes:
            # The α axes are children of their w axes, and span as many decades.
            for axes in (ax, *ax.child_axes):
                for axis, parent in ((axes.xaxis, ax.xaxis), (axes.yaxis, ax.yaxis)):
                    if axis.get_scale() in ("log", "functionlog"):
                        plain_log_labels(axis, parent)
        return fig
    return wrapper


def new_figure(ncols: int = 1, panel_width: float = 5.0, height: float = 4.4) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=(panel_width * ncols + 1.6, height), layout="constrained")
    return fig, list(np.atleast_1d(fig.subplots(1, ncols)))


def axis_label(cube: xr.Dataset) -> str:
    """E.g. "training-set size $N$", from the cube's own axis name and long_name."""
    axis = cube.attrs["axis"]
    return f"{cube[axis].attrs.get('long_name', axis)} ${axis}$"


def set_title(fig: Figure, cube: xr.Dataset, what: str, note: str | None = None) -> None:
    """Task and figure on the first line, the data source (wrapped: some are long) below."""
    lines = [f"{cube.attrs.get('task', 'unknown task')}: {what}" + (f" ({note})" if note else "")]
    # About nine title characters fit per inch of figure width.
    lines += textwrap.wrap(f"data: {cube.attrs.get('data_source', 'unknown')}", width=int(9 * fig.get_figwidth()))
    fig.suptitle("\n".join(lines))


def add_alpha_axis(ax: Axes, w0: float, side: str = "top") -> None:
    """A secondary α = w/w₀ axis opposite the w axis ("top" when w is x, "right" when w is y)."""
    functions = (lambda w: w / w0, lambda a: a * w0)
    if side == "top":
        secondary = ax.secondary_xaxis("top", functions=functions)
        secondary.set_xlabel(ALPHA_LABEL)
        plain_log_labels(secondary.xaxis, ax.xaxis)
    else:
        secondary = ax.secondary_yaxis("right", functions=functions)
        secondary.set_ylabel(ALPHA_LABEL)
        plain_log_labels(secondary.yaxis, ax.yaxis)


#: Which minor ticks of a log axis get a label, by the decades the axis spans (at least that many):
#: matplotlib labels every minor tick of a short log axis in scientific notation, and those labels
#: ran into each other (`3×10⁰4×10⁰`). Between 2 and 3, the narrowest labelled gap, lie 0.18 decades.
_MINOR_LABELS = ((1.9, ()), (0.8, (2, 5)), (0.35, (2, 3, 5)), (0.0, (2, 3, 4, 5, 6, 7, 8, 9)))


def plain_log_labels(axis: mpl.axis.Axis, span_of: mpl.axis.Axis | None = None) -> None:
    """Plain numbers on a log axis (``30``, not ``3×10¹``): every decade, and the minor ticks that
    :data:`_MINOR_LABELS` allows for the decades ``span_of`` (default the axis itself) shows when
    drawn. A secondary axis reads its parent: its own view interval is not kept current."""
    def label(value: float, minor: bool) -> str:
        if minor:
            low, high = sorted((span_of or axis).get_view_interval())
            span = math.log10(high / low) if low > 0 else math.inf
            allowed = next(m for least, m in _MINOR_LABELS if span >= least)
            mantissa = value / 10 ** math.floor(math.log10(value) + 1e-9)
            if not any(abs(mantissa - m) < 1e-6 for m in allowed):
                return ""
        return tick_text(value)

    axis.set_major_formatter(mpl.ticker.FuncFormatter(lambda v, _: label(v, False)))
    axis.set_minor_formatter(mpl.ticker.FuncFormatter(lambda v, _: label(v, True)))


def ticks_at_samples(axis: mpl.axis.Axis, values: np.ndarray) -> None:
    """Major ticks at a few sampled values of a log axis (N = 25, 50, 100, 200), no minor ticks:
    a reader wants the grid's own values, and the decades alone may label none of them. Left to
    :func:`plain_log_labels` when there are many values or two sit too close to label apart."""
    logs = np.log10(np.unique(np.asarray(values, dtype=float)))
    if not 2 <= logs.size <= 8 or np.diff(logs).min() < (logs[-1] - logs[0]) / 12:
        return
    axis.set_major_locator(mpl.ticker.FixedLocator(10.0**logs))
    axis.set_minor_locator(mpl.ticker.NullLocator())


def tick_text(value: float) -> str:
    """``0.03``, ``200``, ``20000``; a power of ten beyond that (``10⁻⁶``, ``3×10⁶``)."""
    if value <= 0 or 1e-3 <= value < 1e5:  # positional: "{:g}" would write 10000 as 1e+04
        return np.format_float_positional(value, precision=4, unique=True, fractional=False, trim="-")
    exponent = math.floor(math.log10(value) + 1e-9)
    mantissa = value / 10**exponent
    return f"$10^{{{exponent}}}$" if abs(mantissa - 1) < 1e-6 else f"${mantissa:.3g}\\times 10^{{{exponent}}}$"


def mark_alpha_one(ax: Axes, w0: float, vertical: bool = True) -> Line2D:
    """The initialisation norm w0 (α = 1): where default-initialised networks start."""
    style = {"color": "0.25", "ls": "-.", "lw": 1.2, "label": r"$\alpha = 1$"}
    return ax.axvline(w0, **style) if vertical else ax.axhline(w0, **style)


def log_edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges for pcolormesh on a log axis: geometric midpoints, half a step beyond the ends."""
    log_c = np.log10(np.asarray(centres, dtype=float))
    if log_c.size == 1:
        return 10.0 ** (log_c[0] + np.array([-0.25, 0.25]))
    mid = (log_c[1:] + log_c[:-1]) / 2
    return 10.0 ** np.concatenate([[2 * log_c[0] - mid[0]], mid, [2 * log_c[-1] - mid[-1]]])


def sampled_log_edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges for pcolormesh on a log axis that stay within the sampled range: geometric
    midpoints inside, the first and last values at the ends (half cells there). Half a step beyond
    the ends drew data at N = 32 and 1,000 from about 6 to 6,000. A single value gets ±0.25 decades."""
    edges = log_edges(centres)
    if edges.size > 2:
        edges[[0, -1]] = np.asarray(centres, dtype=float)[[0, -1]]
    return edges


def collapse_status(status: xr.DataArray, keep: str) -> np.ndarray:
    """One status per value of ``keep``: pending if any cell there is pending, else diverged if any is, else done."""
    other = [d for d in status.dims if d != keep]
    pending = (status == STATUS_PENDING).any(other).values
    diverged = (status == STATUS_DIVERGED).any(other).values
    return np.where(pending, STATUS_PENDING, np.where(diverged, STATUS_DIVERGED, 1))


_MISSING_POINT = {STATUS_PENDING: {"marker": "o", "mfc": "none", "label": "pending"},
                  STATUS_DIVERGED: {"marker": "x", "label": "diverged"}}


def mark_missing_points(ax: Axes, x: np.ndarray, status: np.ndarray, color: str = GREY) -> set[int]:
    """Along the bottom of a curve panel: a hollow circle where cells are pending, an x where one diverged.

    Returns the status codes marked, for :func:`missing_point_handles`.
    """
    bottom = ax.get_xaxis_transform()  # x in data, y in axes fraction: always visible whatever the y range
    marked = set()
    for code, style in _MISSING_POINT.items():
        where = np.asarray(status) == code
        if where.any():
            marked.add(code)
            ax.plot(np.asarray(x)[where], np.full(where.sum(), 0.03), ls="none", ms=7, mew=1.5, color=color,
                    mec=color, transform=bottom, clip_on=False, **style)
    return marked


def missing_point_handles(codes: set[int]) -> list[Line2D]:
    """Legend entries, in grey, for the marks :func:`mark_missing_points` drew."""
    return [Line2D([], [], ls="none", ms=7, mew=1.5, color=GREY, mec=GREY, **_MISSING_POINT[code])
            for code in sorted(codes)]


def mark_missing_cells(ax: Axes, x_edges: np.ndarray, y_edges: np.ndarray, status: np.ndarray) -> list[Line2D]:
    """On a map (status rows = y, columns = x): grey hatching over pending cells, an x on diverged ones.

    Returns legend handles for the kinds present.
    """
    handles = []
    rows, cols = np.nonzero(status == STATUS_PENDING)
    for r, c in zip(rows, cols):
        ax.fill_between(x_edges[c:c + 2], y_edges[r], y_edges[r + 1], facecolor="0.85", edgecolor="0.55",
                        hatch="///", lw=0)
    if rows.size:
        handles.append(Line2D([], [], ls="none", marker="s", mfc="0.85", mec="0.55", label="pending"))
    rows, cols = np.nonzero(status == STATUS_DIVERGED)
    if rows.size:
        x = np.sqrt(x_edges[cols] * x_edges[cols + 1])
        y = np.sqrt(y_edges[rows] * y_edges[rows + 1])
        handles += ax.plot(x, y, ls="none", marker="x", ms=9, mew=2, color="black", label="diverged")
    return handles


def identity_line(ax: Axes, values: np.ndarray) -> Line2D:
    """A dotted y = x over log axes spanning ``values`` with a factor-2 margin, both axes set to it.

    For predicted-against-measured panels; returns a legend handle.
    """
    lims = [np.min(values) / 2, np.max(values) * 2]
    ax.plot(lims, lims, color="0.4", lw=1, ls=":")
    ax.set_xlim(lims)
    ax.set_ylim(lims)
    return Line2D([], [], color="0.4", lw=1, ls=":", label="predicted = measured")


def add_legend(fig: Figure, handles: list, ncols: int) -> None:
    """Below the panels, where it neither covers data nor collides with the title; none without handles.

    A tuple of handles is one entry drawn side by side (one swatch per colour), labelled by its first.
    """
    if not handles:
        return
    # type(), not isinstance: an errorbar's container is a tuple too, but carries its own label.
    labels = [(h[0] if type(h) is tuple else h).get_label() for h in handles]
    fig.legend(handles=handles, labels=labels, loc="outside lower center", ncols=min(ncols, len(handles)),
               frameon=False, handler_map={tuple: HandlerTuple(ndivide=None, pad=0)})


def save(fig: Figure, out_dir: str | Path, name: str) -> list[Path]:
    """Write ``name``.png and ``name``.pdf into ``out_dir`` (created if needed)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{name}.{fmt}" for fmt in FORMATS]
    with mpl.rc_context(_RC):
        for path in paths:
            fig.savefig(path)
    return paths
