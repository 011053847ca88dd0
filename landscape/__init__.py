"""landscape: reduced loss landscapes (Omnigrok) computed on parallel workers into xarray/zarr cubes.

What a notebook needs is importable from here::

    from landscape import Task, Split, run_grid, load_spec, open_cube, critical_norm

Names are loaded on first use, so the torch-free modules (analysis, plots) stay torch-free.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Task": "landscape.tasks.base",
    "Split": "landscape.tasks.base",
    "run_grid": "landscape.grid",
    "load_spec": "landscape.spec",
    "open_cube": "landscape.cube",
    "UserError": "landscape.errors",
    "critical_norm": "landscape.analysis",
    "goldilocks_zone": "landscape.analysis",
    "critical_data_size": "landscape.analysis",
    "lu_mismatch": "landscape.analysis",
    "seed_summary": "landscape.analysis",
    "first_reach": "landscape.dynamics",
    "predict_delay": "landscape.dynamics",
    "delay_prediction": "landscape.dynamics",
    "loglog_slope": "landscape.dynamics",
    "transitions": "landscape.dichotomy",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'landscape' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
