"""The reduced trajectory (Omnigrok section 5.1, Eq. 6): gradient flow of (w, m) on a reduced landscape.

Under scale separation the weight direction is always optimal, so training moves only the norm w
and the messiness m, on the cube's reduced train loss l(w, m) plus weight decay:

    dw/dt = -eta_D (dl/dw + gamma w),    dm/dt = -eta_R dl/dm.

The loss is interpolated by a bicubic spline of log(loss + floor) over (log w, m): losses span
orders of magnitude between region I and region II, and a spline of the loss itself would ring
across that cliff and invent gradients where l is nearly flat. The floor (FLOOR times the largest
loss of the grid) keeps the log of near-zero losses from becoming a cliff of its own. m stays in
the grid's [m_min, m_max]: it is held on an edge while the flow pushes outward (m = 0 is the
cleanest representation there is). The path ends if w leaves the grid.

Pure numpy/scipy/xarray, so plots can use it without torch.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.integrate import solve_ivp
from scipy.interpolate import RectBivariateSpline
from scipy.ndimage import distance_transform_edt, gaussian_filter

from landscape.read.analysis import average_seeds, done, over_representation
from landscape.read.dynamics import loglog_slope
from landscape.errors import UserError
from landscape.cube.schema import axis_role

#: The grid axis the flow moves along besides w: Eq. 6 trains the representation, not the data.
AXIS = "m"
#: Added to the losses before the log, relative to the grid's largest loss: below it a landscape
#: counts as flat (region II), so spline ringing on the logs of ~zero losses (1e-6 next to 1e-9)
#: cannot invent gradients there. The absolute 1e-12 keeps an all-zero landscape finite.
FLOOR = 1e-3
#: Default generalizing level, relative to the smallest test loss of the grid.
LEVEL = 1.3
#: Default integration horizon, in units of the time weight decay alone needs to cross the w grid.
HORIZONS = 4.0
#: The ODE solver: implicit, because on the region boundary a strong restoring gradient balances
#: the slow weight decay (a stiff equilibrium), and with dense output that matches its steps, which
#: event location needs (LSODA's does not, exactly).
METHOD = "Radau"
#: Inward speed of m that releases it from an edge, relative to the speed at which weight decay
#: alone would move it across the m grid.
RELEASE = 1e-3
#: Most switches between moving and held m before a path is given up (a flow that chatters on the edge).
MAX_SEGMENTS = 200
#: Time samples of a path besides the solver's own steps (which resolve its fast stretches).
SAMPLES = 400


def representation_maps(cube: xr.Dataset) -> xr.Dataset:
    """The cube's seed-averaged maps over (w, m), whatever its task calls its representation axis."""
    if not over_representation(cube):
        raise UserError(f"the reduced trajectory moves along a representation axis such as the messiness axis m; "
                        f"this cube's axis {cube.attrs.get('axis')!r} is a {axis_role(cube.attrs)} axis")
    maps = average_seeds(cube)
    return maps if cube.attrs["axis"] == AXIS else maps.rename({cube.attrs["axis"]: AXIS})


@dataclass(frozen=True)
class ReducedLandscape:
    """Smooth interpolants of a cube's reduced train and test loss over (log w, m), seeds averaged."""

    log_w: np.ndarray  # ascending grid
    m: np.ndarray  # ascending grid
    train: RectBivariateSpline  # of log(train_loss + floors[0])
    test: RectBivariateSpline  # of log(test_loss + floors[1])
    floors: tuple[float, float]
    filled: int  # grid cells without a finished value, filled from their nearest finished neighbour

    @classmethod
    def from_cube(cls, cube: xr.Dataset, smooth: float = 0.0) -> ReducedLandscape:
        """Fit the cube's losses; ``smooth`` > 0 first applies a gaussian of that many grid cells
        to the log losses (the authors smooth their maps with sigma = 1 before plotting)."""
        if smooth < 0:
            raise UserError(f"--smooth {smooth:g}: the gaussian sigma must be >= 0 (grid cells)")
        maps = representation_maps(cube).sortby(["w", AXIS])
        if maps.sizes["w"] < 3 or maps.sizes[AXIS] < 3:  # a spline with a gradient needs degree >= 2
            raise UserError(f"a smooth (w, {AXIS}) landscape needs at least 3 values of w and of {AXIS}, "
                            f"got {maps.sizes['w']} x {maps.sizes[AXIS]}")
        log_w, m = np.log(maps["w"].values.astype(float)), maps[AXIS].values.astype(float)
        grids, floors, filled = [], [], 0
        for var in ("train_loss", "test_loss"):
            z = done(maps, var).transpose("w", AXIS).values
            if not np.isfinite(z).any():
                raise UserError(f"the cube has no finished cell with a {var}")
            missing = ~np.isfinite(z)
            filled = max(filled, int(missing.sum()))
            nearest = distance_transform_edt(missing, return_distances=False, return_indices=True)
            z = np.maximum(z[tuple(nearest)], 0.0)
            floors.append(FLOOR * float(z.max()) + 1e-12)
            z = np.log(z + floors[-1])
            grids.append(gaussian_filter(z, smooth, mode="nearest") if smooth > 0 else z)
        kx, ky = min(3, len(log_w) - 1), min(3, len(m) - 1)
        train, test = (RectBivariateSpline(log_w, m, z, kx=kx, ky=ky) for z in grids)
        return cls(log_w, m, train, test, (floors[0], floors[1]), filled)

    def train_loss(self, w: np.ndarray, m: np.ndarray) -> np.ndarray:
        return self._loss(self.train, self.floors[0], w, m)

    def test_loss(self, w: np.ndarray, m: np.ndarray) -> np.ndarray:
        return self._loss(self.test, self.floors[1], w, m)

    def train_gradient(self, w: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dl/dw, dl/dm) of the reduced train loss."""
        x, y = np.log(w), self._clip_m(m)
        value = np.exp(self.train.ev(x, y))
        return value * self.train.ev(x, y, dx=1) / w, value * self.train.ev(x, y, dy=1)

    def contains(self, w: float, m: float) -> bool:
        if not w > 0:
            return False
        return bool(self.log_w[0] <= math.log(w) <= self.log_w[-1] and self.m[0] <= m <= self.m[-1])

    def generalizing_solution(self) -> tuple[float, float]:
        """(w, m) of the grid point with the smallest interpolated test loss: Fig. 6's green star."""
        z = self.test(self.log_w, self.m)
        i, j = np.unravel_index(np.argmin(z), z.shape)
        return float(np.exp(self.log_w[i])), float(self.m[j])

    def _loss(self, spline: RectBivariateSpline, floor: float, w: np.ndarray, m: np.ndarray) -> np.ndarray:
        return np.maximum(np.exp(spline.ev(np.log(w), self._clip_m(m))) - floor, 0.0)

    def _clip_m(self, m: np.ndarray) -> np.ndarray:
        return np.clip(m, self.m[0], self.m[-1])


class _Flow:
    """Eq. 6 in (log w, m), with m held on an edge of the grid while the gradient pushes outward.

    Holding m is a hybrid system rather than a clipped right-hand side: a clipped one is
    discontinuous at the edge, and the solver then chatters there with ever smaller steps. Free
    segments end when m reaches an edge (terminal events); held segments end when the gradient
    turns inward again.
    """

    BELOW, ABOVE, GENERALIZES, EDGE = 0, 1, 2, 3

    def __init__(self, landscape: ReducedLandscape, gamma: float, eta_d: float, eta_r: float, level: float):
        self.landscape, self.gamma, self.eta_d, self.eta_r, self.level = landscape, gamma, eta_d, eta_r, level
        self.m_lo, self.m_hi = float(landscape.m[0]), float(landscape.m[-1])
        self.pinned: float | None = None  # the edge m is held on

    def _velocity(self, state: np.ndarray) -> tuple[float, float]:
        """(d log w / dt, dm / dt) before any holding."""
        w = math.exp(state[0])
        dl_dw, dl_dm = self.landscape.train_gradient(w, state[1])
        return -self.eta_d * (float(dl_dw) / w + self.gamma), -self.eta_r * float(dl_dm)

    def __call__(self, t: float, state: np.ndarray) -> list[float]:
        dx, dm = self._velocity(state)
        return [dx, 0.0 if self.pinned is not None else dm]

    def outward_edge(self, state: np.ndarray) -> float | None:
        """The edge m sits on, if the flow pushes it outward there."""
        dm = self._velocity(state)[1]
        if state[1] <= self.m_lo and dm < 0:
            return self.m_lo
        if state[1] >= self.m_hi and dm > 0:
            return self.m_hi
        return None

    def switch(self, state: np.ndarray) -> None:
        """After an edge event: hold m on the edge it reached, or let it go."""
        if self.pinned is None:  # the event located m on an edge up to rounding: put it there
            state[1] = self.m_lo if state[1] - self.m_lo < self.m_hi - state[1] else self.m_hi
            self.pinned = self.outward_edge(state)
        else:
            self.pinned = None

    def events(self) -> list:
        def below(t: float, state: np.ndarray) -> float:
            return state[0] - self.landscape.log_w[0]

        def above(t: float, state: np.ndarray) -> float:
            return self.landscape.log_w[-1] - state[0]

        def generalizes(t: float, state: np.ndarray) -> float:
            return float(self.landscape.test_loss(math.exp(state[0]), state[1])) - self.level

        if self.pinned is None:
            def edge(t: float, state: np.ndarray) -> float:  # reaches either edge of the m grid
                return min(state[1] - self.m_lo, self.m_hi - state[1])
            edge.direction = -1
        else:
            inward = 1.0 if self.pinned == self.m_lo else -1.0
            # Released only once the pull inward is clearly non-zero: at exactly zero a rounding
            # error would send m back to the edge at once, again and again.
            release = RELEASE * self.eta_d * self.gamma * (self.m_hi - self.m_lo)

            def edge(t: float, state: np.ndarray) -> float:  # the gradient turns inward
                return inward * self._velocity(state)[1] - release
            edge.direction = 1
        for event in (below, above, edge):
            event.terminal = True
        below.direction = above.direction = generalizes.direction = -1
        return [below, above, generalizes, edge]


def integrate(
    landscape: ReducedLandscape,
    start: tuple[float, float],
    gamma: float,
    eta_d: float = 1.0,
    eta_r: float = 1.0,
    level: float | None = None,
    t_max: float | None = None,
) -> xr.Dataset:
    """Integrate Eq. 6 from ``start`` = (w, m) and return the path over ``t``.

    Variables ``w``, ``m``, ``train_loss``, ``test_loss`` along the path. Attrs: the inputs,
    ``t_gen`` (first time the interpolated test loss is at or below ``level``: 0 if the start is
    already there, NaN if never within the run), ``stop`` (why the path ended) and ``t_end``.
    ``level`` defaults to LEVEL times the smallest test loss of the grid (the generalizing solution's
    neighbourhood); ``t_max`` to HORIZONS times the time weight decay alone takes to cross the w grid.
    """
    w0, m0 = start
    _check_rates([gamma], eta_d, eta_r)
    if not landscape.contains(w0, m0):
        raise UserError(
            f"start (w={w0:g}, m={m0:g}) lies outside the landscape grid: w in "
            f"[{math.exp(landscape.log_w[0]):.4g}, {math.exp(landscape.log_w[-1]):.4g}], "
            f"m in [{landscape.m[0]:g}, {landscape.m[-1]:g}]")
    if level is None:
        level = LEVEL * float(landscape.test_loss(*landscape.generalizing_solution()))
    if not level > 0:
        raise UserError(f"level {level:g} must be positive (a test loss)")
    span = landscape.log_w[-1] - landscape.log_w[0]
    t_max = HORIZONS * span / (eta_d * gamma) if t_max is None else t_max
    if not t_max > 0:
        raise UserError(f"t_max {t_max:g} must be positive")
    flow = _Flow(landscape, gamma, eta_d, eta_r, level)
    t_gen = 0.0 if float(landscape.test_loss(w0, m0)) <= level else math.nan
    state, t, stop = np.array([math.log(w0), float(m0)]), 0.0, "t_max"
    flow.pinned = flow.outward_edge(state)
    times, states = [], []
    for _ in range(MAX_SEGMENTS):
        sol = solve_ivp(flow, (t, t_max), state, method=METHOD, dense_output=True, events=flow.events(),
                        rtol=1e-6, atol=1e-9)
        if sol.status < 0:
            raise UserError(f"the trajectory integration failed: {sol.message}")
        t = float(sol.t[-1])
        samples = np.linspace(0.0, t_max, SAMPLES)
        segment = np.unique(np.concatenate([sol.t, samples[(samples > sol.t[0]) & (samples < t)]]))
        times.append(segment)
        states.append(sol.sol(segment))
        crossed = sol.t_events[flow.GENERALIZES]
        if np.isnan(t_gen) and crossed.size:
            t_gen = float(crossed[0])
        state = sol.y[:, -1].copy()
        if sol.status == 0:
            break
        if sol.t_events[flow.BELOW].size or sol.t_events[flow.ABOVE].size:
            stop = f"left the grid at {'small' if sol.t_events[flow.BELOW].size else 'large'} w"
            break
        flow.switch(state)
    else:
        stop = f"stopped after {MAX_SEGMENTS} switches at an edge of the m grid"
    t = np.concatenate(times)
    x, m = np.concatenate(states, axis=1)
    t, keep = np.unique(t, return_index=True)  # segments share their end points
    w, m = np.exp(x[keep]), np.clip(m[keep], flow.m_lo, flow.m_hi)
    t_end = float(t[-1])
    return xr.Dataset(
        {
            "w": ("t", w, {"long_name": "global norm w"}),
            AXIS: ("t", m, {"long_name": "representation messiness m"}),
            "train_loss": ("t", landscape.train_loss(w, m), {"long_name": "reduced train loss along the path"}),
            "test_loss": ("t", landscape.test_loss(w, m), {"long_name": "reduced test loss along the path"}),
        },
        coords={"t": ("t", t, {"long_name": "time t of Eq. 6"})},
        attrs={"gamma": gamma, "eta_D": eta_d, "eta_R": eta_r, "level": level, "start_w": w0, "start_m": m0,
               "t_gen": t_gen, "t_end": t_end, "t_max": t_max, "stop": stop},
    )


def gamma_sweep(
    landscape: ReducedLandscape,
    start: tuple[float, float],
    gammas: Sequence[float],
    eta_d: float = 1.0,
    eta_r: float = 1.0,
    level: float | None = None,
    t_max: float | None = None,
) -> tuple[xr.Dataset, list[xr.Dataset]]:
    """Paths for several weight decays and their generalization times.

    Returns a Dataset over ``gamma`` with ``t_gen``, whose attrs ``slope`` and ``intercept`` are the
    least-squares fit of log10 t_gen against log10 gamma (Omnigrok: t ~ 1/gamma, a slope of -1),
    and the paths themselves. ``t_max`` applies to the smallest gamma and scales as 1/gamma.
    """
    if len(gammas) == 0:
        raise UserError("give at least one gamma")
    _check_rates(gammas, eta_d, eta_r)
    smallest = min(gammas)
    paths = [integrate(landscape, start, g, eta_d, eta_r, level,
                       None if t_max is None else t_max * smallest / g) for g in gammas]
    t_gen = np.array([p.attrs["t_gen"] for p in paths])
    slope, intercept = loglog_slope(np.asarray(gammas, dtype=float), t_gen)
    sweep = xr.Dataset({"t_gen": ("gamma", t_gen, {"long_name": "time to enter the generalizing region"})},
                       coords={"gamma": ("gamma", np.asarray(gammas, dtype=float), {"long_name": "weight decay γ"})},
                       attrs={"slope": slope, "intercept": intercept, "level": paths[0].attrs["level"],
                              "eta_D": eta_d, "eta_R": eta_r, "start_w": start[0], "start_m": start[1]})
    return sweep, paths


def _check_rates(gammas: Sequence[float], eta_d: float, eta_r: float) -> None:
    for name, value in [*(("gamma", g) for g in gammas), ("eta_D", eta_d), ("eta_R", eta_r)]:
        if not (value > 0 and math.isfinite(value)):
            raise UserError(f"{name} = {value:g} must be a positive number")


def describe(landscape: ReducedLandscape, sweep: xr.Dataset, paths: Sequence[xr.Dataset]) -> str:
    """Plain-text table of a sweep: where each path starts, ends and generalizes, and the fitted slope."""
    star_w, star_m = landscape.generalizing_solution()
    lines = [f"generalizing solution (min test loss): w = {star_w:.4g}, m = {star_m:.4g}",
             f"generalizing level (test loss): {sweep.attrs['level']:.4g}"]
    if landscape.filled:
        lines.append(f"note: {landscape.filled} unfinished grid cells were filled from their nearest finished neighbour")
    lines.append(f"  {'gamma':>10}  {'t_gen':>11}  {'t_gen*gamma':>11}  {'end w':>9}  {'end m':>7}  stop")
    for gamma, path in zip(sweep["gamma"].values, paths):
        t_gen = path.attrs["t_gen"]
        lines.append(f"  {gamma:>10.4g}  {t_gen:>11.4g}  {t_gen * gamma:>11.4g}  {float(path['w'][-1]):>9.4g}  "
                     f"{float(path[AXIS][-1]):>7.4g}  {path.attrs['stop']}")
    if len(paths) > 1:
        slope = sweep.attrs["slope"]
        lines.append(f"log-log fit of t_gen against gamma: slope {slope:.4f} (Omnigrok: -1, t ~ 1/gamma)"
                     if np.isfinite(slope) else "log-log fit of t_gen against gamma: fewer than 2 paths generalized")
    return "\n".join(lines)
