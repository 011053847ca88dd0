"""Figures of (w, m) landscapes and reduced trajectories (Omnigrok section 5, Figs. 6 and 8).

The maps show the seed-averaged reduced train and test loss over the norm w (log x) and the
representation messiness m, with the region I/II boundary (a train-loss contour), the field of
-grad l_train as arrows, the generalizing solution (min test loss) as a star and, optionally,
reduced trajectories. Boundaries, arrows and trajectories all come from the same smooth
interpolant (landscape.read.trajectory.ReducedLandscape), so they agree with each other.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from landscape.read.analysis import done
from landscape.errors import UserError
from landscape.cube.schema import fixed_values
from landscape.read.trajectory import AXIS, ReducedLandscape, representation_maps
from plots.style import (PALETTE, VERMILLION, W_LABEL, add_alpha_axis, add_legend, axis_label, log_edges,
                         mark_missing_cells, new_figure, save, set_title, styled)

#: Train-loss level of the region I/II boundary: Fig. 6e's contour (the text of Fig. 6a says 0.05).
DEFAULT_BOUNDARY = 0.02
_MAPS = (("train_loss", "reduced train loss"), ("test_loss", "reduced test loss"))
_BOUNDARY_COLOR = PALETTE[0]
_STAR = {"marker": "*", "ms": 18, "color": PALETTE[2], "mec": "white", "mew": 1.2, "ls": "none", "zorder": 6}
_FINE = 160  # samples per axis of the interpolant behind contours
_ARROWS = (14, 11)  # arrows along w and along m
_ARROW_LENGTH = 0.06  # of the panel, for the largest gradient


@styled
def maps_figure(cube: xr.Dataset, boundary: float = DEFAULT_BOUNDARY, smooth: float = 0.0,
                paths: Sequence[xr.Dataset] = ()) -> Figure:
    """Reduced train and test loss over (w, m) (Fig. 6a/b, Fig. 8a/b), with ``paths`` drawn on both."""
    if not boundary > 0:
        raise UserError(f"--boundary {boundary:g} must be a positive train loss")
    landscape = ReducedLandscape.from_cube(cube, smooth)
    maps = representation_maps(cube)
    w, m = maps["w"].values, maps[AXIS].values.astype(float)
    w_edges, m_edges = log_edges(w), _linear_edges(m)
    status = maps["status"].transpose(AXIS, "w").values
    star = landscape.generalizing_solution()
    fig, axes = new_figure(2, panel_width=5.0, height=4.9)
    for (var, name), ax in zip(_MAPS, axes):
        z = done(maps, var).transpose(AXIS, "w").values
        mesh = ax.pcolormesh(w_edges, m_edges, np.ma.masked_invalid(z), cmap="Reds", norm=_log_norm(z))
        fig.colorbar(mesh, ax=ax, label="loss", shrink=0.9)
        no_boundary = _boundary(ax, landscape, boundary, label_regions=var == "train_loss")
        if var == "train_loss":
            _arrows(ax, landscape)
            if no_boundary:
                ax.text(0.98, 0.98, f"no region I/II boundary (train loss = {boundary:g}):\n{no_boundary}",
                        transform=ax.transAxes, ha="right", va="top", fontsize=9, zorder=7,
                        bbox={"facecolor": "white", "alpha": 0.85, "lw": 0})
        for path in paths:
            _draw_path(ax, path)
        ax.plot(*star, **_STAR)
        handles = mark_missing_cells(ax, w_edges, m_edges, status)
        _frame(ax, cube, w_edges, m_edges)
        ax.set_title(name)
    if not no_boundary:
        handles.append(Line2D([], [], color=_BOUNDARY_COLOR, ls="--",
                              label=f"region I/II boundary: train loss = {boundary:g}"))
    handles += [Line2D([], [], color="0.2", marker=r"$\rightarrow$", ls="none", ms=10,
                       label=r"$-\nabla l_{train}$ in the plotted (log w, m) plane, length ∝ |∇l|$^{1/3}$"),
                Line2D([], [], **{**_STAR, "ms": 13}, label="generalizing solution (min test loss)")]
    if paths:
        handles.append(Line2D([], [], color="black", marker="o", mfc="white",
                              label="reduced trajectory (start ○, generalizes ◆)"))
    add_legend(fig, handles, ncols=2)
    set_title(fig, cube, "reduced loss over norm and representation messiness", note=_fixed_note(cube, smooth))
    return fig


@styled
def path_figure(cube: xr.Dataset, path: xr.Dataset) -> Figure:
    """Losses along a reduced trajectory against time (Fig. 6c: multiple descent), and w(t), m(t)."""
    t = path["t"].values
    later = t > 0  # a log time axis: the start is the first point after t = 0
    fig, (ax_loss, ax_wm) = new_figure(2, panel_width=5.0, height=4.6)
    for var, ls, color in (("train_loss", "--", PALETTE[0]), ("test_loss", "-", VERMILLION)):
        ax_loss.plot(t[later], path[var].values[later], ls=ls, color=color, label=var.replace("_", " "))
    ax_loss.axhline(path.attrs["level"], color="0.4", lw=1, ls=":", label=f"generalizing level {path.attrs['level']:.3g}")
    ax_loss.set_yscale("log", nonpositive="mask")
    ax_loss.set_ylabel("reduced loss along the path")
    ax_wm.plot(t[later], path["w"].values[later], color=PALETTE[0], label="$w$")
    ax_wm.set_yscale("log")
    ax_wm.set_ylabel(W_LABEL)
    ax_m = ax_wm.twinx()
    ax_m.plot(t[later], path[AXIS].values[later], color=PALETTE[1], ls="-.", label="$m$")
    ax_m.set_ylabel(axis_label(cube))
    ax_m.grid(False)
    for ax in (ax_loss, ax_wm):
        ax.set_xscale("log")
        ax.set_xlabel(r"time $t$ of Eq. 6")
        if np.isfinite(path.attrs["t_gen"]) and path.attrs["t_gen"] > 0:
            ax.axvline(path.attrs["t_gen"], color=PALETTE[2], lw=1.5, label=f"$t_{{gen}}$ = {path.attrs['t_gen']:.3g}")
    ax_loss.set_title("losses along the path")
    ax_wm.set_title("norm and messiness along the path")
    handles = ax_loss.get_legend_handles_labels()[0] + ax_wm.get_legend_handles_labels()[0][:1] \
        + ax_m.get_legend_handles_labels()[0]
    add_legend(fig, handles, ncols=3)
    set_title(fig, cube, "reduced trajectory", note=_path_note(path))
    return fig


@styled
def gamma_figure(cube: xr.Dataset, sweep: xr.Dataset) -> Figure:
    """Time to enter the generalizing region against weight decay, log-log, with the fitted slope."""
    gamma, t_gen = sweep["gamma"].values, sweep["t_gen"].values
    fig, (ax,) = new_figure(1, panel_width=6.5, height=4.6)
    ax.plot(gamma, t_gen, ls="none", marker="o", color=PALETTE[0], label=r"$t_{gen}$ of the reduced trajectory")
    slope, intercept = sweep.attrs["slope"], sweep.attrs["intercept"]
    if np.isfinite(slope):
        ax.plot(gamma, 10 ** intercept * gamma ** slope, color=PALETTE[0], lw=1, label=f"fit: slope {slope:.3f}")
        ok = np.isfinite(t_gen) & (t_gen > 0)
        anchor = np.exp(np.mean(np.log(gamma[ok] * t_gen[ok])))
        ax.plot(gamma, anchor / gamma, color="0.4", ls=":", lw=1, label=r"$\propto 1/\gamma$")
    ax.set_xscale("log")
    if np.isfinite(t_gen).any():  # a log axis with no data cannot place its ticks
        ax.set_yscale("log", nonpositive="mask")
    else:
        ax.text(0.5, 0.5, "no path reached the generalizing level", transform=ax.transAxes, ha="center")
    ax.set_xlabel(r"weight decay $\gamma$")
    ax.set_ylabel(r"time to generalize $t_{gen}$")
    add_legend(fig, ax.get_legend_handles_labels()[0], ncols=3)
    start = f"start w = {sweep.attrs['start_w']:.3g}, m = {sweep.attrs['start_m']:.3g}"
    set_title(fig, cube, "reduced trajectory, t_gen against γ", note=start)
    return fig


@styled
def boundaries_figure(cubes: Sequence[xr.Dataset], level: float = DEFAULT_BOUNDARY, smooth: float = 0.0) -> Figure:
    """Train-loss contours at ``level`` of several (w, m) cubes, e.g. training sizes (Fig. 6e)."""
    if not cubes:
        raise UserError("give at least one cube")
    if not level > 0:
        raise UserError(f"--level {level:g} must be a positive train loss")
    fig, (ax,) = new_figure(1, panel_width=7.0, height=5.0)
    handles = []
    for cube, color in zip(cubes, PALETTE):
        landscape = ReducedLandscape.from_cube(cube, smooth)
        missing = _contour(ax, landscape, level, color, ls="-")
        ax.plot(*landscape.generalizing_solution(), **{**_STAR, "color": color, "ms": 14})
        label = ", ".join(f"{k} = {v}" for k, v in fixed_values(cube.attrs).items()) or cube.attrs["data_source"]
        handles.append(Line2D([], [], color=color, marker="*", ms=11, mec="white",
                              label=label + (f" (no contour: {missing})" if missing else "")))
    first = cubes[0]
    m_edges = _linear_edges(representation_maps(first)[AXIS].values.astype(float))
    _frame(ax, first, log_edges(first["w"].values), m_edges)
    handles.append(Line2D([], [], color="0.3", marker="*", ls="none", ms=11,
                          label="generalizing solution (min test loss) of each"))
    add_legend(fig, handles, ncols=3)
    same = len({c.attrs["data_source"] for c in cubes}) == 1
    shown = first if same else first.assign_attrs(data_source=f"{len(cubes)} cubes, first: {first.attrs['data_source']}")
    set_title(fig, shown, f"region I/II boundaries, train loss = {level:g}",
              note=f"gaussian σ = {smooth:g} cells" if smooth else None)
    return fig


def _linear_edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges for pcolormesh on a linear axis: midpoints, half a step beyond the ends."""
    c = np.asarray(centres, dtype=float)
    if c.size == 1:
        return c[0] + np.array([-0.5, 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[2 * c[0] - mid[0]], mid, [2 * c[-1] - mid[-1]]])


def _log_norm(z: np.ndarray) -> LogNorm | None:
    positive = z[np.isfinite(z) & (z > 0)]
    return LogNorm(positive.min(), positive.max()) if positive.size and positive.max() > positive.min() else None


def _fine(landscape: ReducedLandscape) -> tuple[np.ndarray, np.ndarray]:
    x = np.linspace(landscape.log_w[0], landscape.log_w[-1], _FINE)
    y = np.linspace(landscape.m[0], landscape.m[-1], _FINE)
    grid_m, grid_x = np.meshgrid(y, x, indexing="ij")
    return np.exp(grid_x), grid_m


def _contour(ax: Axes, landscape: ReducedLandscape, level: float, color: str, ls: str) -> str | None:
    """The train-loss contour at ``level``. None when drawn, else why not: the level is not crossed
    inside the grid, e.g. "train loss ≥ 0.31 everywhere"."""
    w, m = _fine(landscape)
    z = landscape.train_loss(w, m)
    if z.min() >= level:
        return f"train loss ≥ {z.min():.2g} everywhere"
    if z.max() <= level:
        return f"train loss ≤ {z.max():.2g} everywhere"
    lines = ax.contour(w, m, z, levels=[level], colors=[color], linestyles=ls, linewidths=1.8)
    ax.clabel(lines, fmt=lambda v: f"{v:g}", fontsize=9)
    return None


def _boundary(ax: Axes, landscape: ReducedLandscape, level: float, label_regions: bool) -> str | None:
    """The region I/II boundary, with the regions named when ``label_regions``; None when drawn, else why not."""
    missing = _contour(ax, landscape, level, _BOUNDARY_COLOR, ls="--")
    if missing or not label_regions:
        return missing
    w, m = _fine(landscape)
    above = landscape.train_loss(w, m) > level
    # Region I is the high-loss side at small norm; large norms can fit badly too (optimization),
    # which is not region I, so only the part left of the generalizing solution counts.
    small = w < landscape.generalizing_solution()[0]
    for name, inside in (("I", above & small), ("II", ~above)):
        if not inside.any():
            continue
        # the region's middle in display coordinates (log w, m)
        x, y = np.exp(np.log(w[inside]).mean()), m[inside].mean()
        ax.text(x, y, name, fontsize=16, fontweight="bold", ha="center", va="center", color="0.1", zorder=5,
                bbox={"facecolor": "white", "alpha": 0.8, "lw": 0, "boxstyle": "round"})
    return None


def _arrows(ax: Axes, landscape: ReducedLandscape) -> None:
    """-grad l_train on the map's own coordinates (log w and m, each scaled to the panel), so an
    arrow points down the steepest slope of the picture. Eq. 6's Euclidean gradient in (w, m) would
    instead depend on the units of w and m (w ~ 50, m ~ 0.1) and show nearly vertical arrows.
    Lengths are compressed (cube root): the gradient spans orders of magnitude between the regions."""
    x_span = landscape.log_w[-1] - landscape.log_w[0]
    y_span = landscape.m[-1] - landscape.m[0]
    fx = (np.arange(_ARROWS[0]) + 0.5) / _ARROWS[0]
    fy = (np.arange(_ARROWS[1]) + 0.5) / _ARROWS[1]
    grid_fx, grid_fy = np.meshgrid(fx, fy)
    w = np.exp(landscape.log_w[0] + grid_fx * x_span)
    m = landscape.m[0] + grid_fy * y_span
    dl_dw, dl_dm = landscape.train_gradient(w, m)
    u, v = -dl_dw * w * x_span, -dl_dm * y_span  # -dl/d(log w) and -dl/dm per panel width and height
    size = np.hypot(u, v)
    if not size.max() > 0:
        return
    scale = _ARROW_LENGTH * (size / size.max()) ** (1 / 3) / np.where(size > 0, size, 1)
    ax.quiver(grid_fx, grid_fy, u * scale, v * scale, transform=ax.transAxes, angles="xy", scale_units="xy",
              scale=1, color="0.2", width=0.004, headwidth=4, zorder=4)


def _draw_path(ax: Axes, path: xr.Dataset) -> None:
    w, m = path["w"].values, path[AXIS].values
    ax.plot(w, m, color="white", lw=3.5, zorder=5)
    ax.plot(w, m, color="black", lw=1.6, zorder=5)
    ax.plot(w[0], m[0], marker="o", ms=8, mfc="white", mec="black", zorder=6)
    t_gen = path.attrs["t_gen"]
    if np.isfinite(t_gen):
        i = int(np.searchsorted(path["t"].values, t_gen))
        i = min(i, w.size - 1)
        ax.plot(w[i], m[i], marker="D", ms=7, color="black", mec="white", zorder=6)


def _frame(ax: Axes, cube: xr.Dataset, w_edges: np.ndarray, m_edges: np.ndarray) -> None:
    ax.set_xscale("log")
    ax.set_xlim(w_edges[0], w_edges[-1])
    ax.set_ylim(m_edges[0], m_edges[-1])
    ax.grid(False)
    ax.set_xlabel(W_LABEL)
    ax.set_ylabel(axis_label(cube))
    add_alpha_axis(ax, cube.attrs["w0"])


def _fixed_note(cube: xr.Dataset, smooth: float) -> str:
    fixed = [f"{k} = {v}" for k, v in fixed_values(cube.attrs).items()]
    return ", ".join(fixed + ([f"gaussian σ = {smooth:g} cells"] if smooth else []))


def _path_note(path: xr.Dataset) -> str:
    a = path.attrs
    return (f"start w = {a['start_w']:.3g}, m = {a['start_m']:.3g}; γ = {a['gamma']:g}, "
            f"η_D = {a['eta_D']:g}, η_R = {a['eta_R']:g}")


def render_trajectory(cube: xr.Dataset, sweep: xr.Dataset, paths: Sequence[xr.Dataset], out_dir: str | Path,
                      boundary: float = DEFAULT_BOUNDARY, smooth: float = 0.0) -> list[Path]:
    """Write the trajectory figures: the maps with the first path, its losses over time and, for
    several gammas, t_gen against gamma. Returns the paths written."""
    figures = {"trajectory": maps_figure(cube, boundary, smooth, paths[:1]), "path": path_figure(cube, paths[0])}
    if len(paths) > 1:
        figures["gamma"] = gamma_figure(cube, sweep)
    return [p for name, fig in figures.items() for p in save(fig, out_dir, name)]
