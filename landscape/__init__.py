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
    "run_grid": "landscape.run.driver",
    "load_spec": "landscape.spec",
    "open_cube": "landscape.cube",
    "UserError": "landscape.errors",
    "critical_norm": "landscape.read.analysis",
    "goldilocks_zone": "landscape.read.analysis",
    "critical_data_size": "landscape.read.analysis",
    "lu_mismatch": "landscape.read.analysis",
    "seed_summary": "landscape.read.analysis",
    "first_reach": "landscape.read.dynamics",
    "predict_delay": "landscape.read.dynamics",
    "delay_prediction": "landscape.read.dynamics",
    "loglog_slope": "landscape.read.dynamics",
    "transitions": "landscape.read.dichotomy",
    "cell_model": "landscape.trained",
    "cell_state": "landscape.read.cell_state",
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'landscape' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
