"""Reading the runs of a dynamics cube: which runs there are, how to name them, their spec."""
from __future__ import annotations

import itertools
import json
from typing import Any

import xarray as xr

from landscape.errors import UserError

#: Dims of a cell that identify a run, in the order their labels are written.
_LABELS = {"alpha": r"$\alpha$={:.3g}", "wd": r"$\gamma$={:.3g}", "lr": r"$\eta$={:.3g}"}


def spec_of(cube: xr.Dataset) -> dict[str, Any]:
    """The resolved spec the cube was computed from."""
    return json.loads(cube.attrs["spec"])


def run_dims(cube: xr.Dataset, exclude: tuple[str, ...] = ()) -> list[str]:
    """The cell dims that tell runs apart (all but ``seed`` and ``exclude``)."""
    return [d for d in cube["status"].dims if d != "seed" and d not in exclude]


def run_selections(cube: xr.Dataset, exclude: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One ``.sel`` dict per run (per line, when ``exclude`` names the dim a line runs along), in grid order."""
    dims = run_dims(cube, exclude)
    return [dict(zip(dims, values)) for values in itertools.product(*(cube[d].values for d in dims))]


#: Most runs a one-panel-per-run figure draws.
MAX_PANELS = 12


def run_grid(cube: xr.Dataset, figure: str) -> tuple[list[dict[str, Any]], int, int]:
    """The runs of a one-panel-per-run figure and its (rows, columns), three panels a row; more
    than MAX_PANELS runs are refused in one line."""
    runs = run_selections(cube)
    if len(runs) > MAX_PANELS:
        raise UserError(f"the cube has {len(runs)} runs; the {figure} figure draws at most {MAX_PANELS} "
                        "(select a sub-cube first)")
    ncols = min(3, len(runs))
    return runs, -(-len(runs) // ncols), ncols


def run_label(cube: xr.Dataset, at: dict[str, Any]) -> str:
    """E.g. "α=2, γ=0.03, N=100": the run's init scale, settings and axis value."""
    parts = []
    if "w" in at:
        parts.append(_LABELS["alpha"].format(float(cube["alpha"].sel(w=at["w"]))))
    parts += [_LABELS[d].format(float(v)) for d, v in at.items() if d in _LABELS]
    parts += [f"{d}={v}" for d, v in at.items() if d not in _LABELS and d != "w"]
    return ", ".join(parts)
