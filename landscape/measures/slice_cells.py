"""Slices around every cell's final point and its init-to-final interpolation, as measurement-hook
measures (``[measure] slice = {...}`` and ``interpolation = true``).

Both evaluate the cell's train loss and error on its training set (``measure.samples``: a fixed
subset, landscape.train.steps.eval_rows) and its test loss and error on the whole test set, on the
cell's device, by :mod:`landscape.measures.slices`. The cube records in its attrs how to regenerate
the directions and which evaluation path ran ("linear-head", "vmap", "loop"), decided before any
cell runs by :func:`landscape.measures.slices.slice_path`.

- Slice: coordinates ``slice_x`` (and ``slice_y``) in [-span, span]: multiples of the filter-normalized
  directions, or radians along the sphere's geodesics (every point has the cell's norm).
- Interpolation (Goodfellow et al. 2015): ``(1 - t) init + t final`` for t in [-0.5, 1.5] by 0.05,
  41 points: t = 0 is the cell's init (init_cell: deterministic), t = 1 its final point, and the
  half-unit beyond each end shows whether the final point is a minimum along the line.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn

from landscape.cube.schema import METRICS, Quantity
from landscape.dtypes import move
from landscape.measures.directions import direction_seed
from landscape.measures.functional import constrained_mask, flat_params
from landscape.measures.hook import CellMeasure, MeasurePoint
from landscape.measures.slices import Slice, interpolation, landscape_slice, slice_path
from landscape.spec import SliceConfig, Spec
from landscape.tasks.base import Task
from landscape.train.objective import objective
from landscape.train.single import init_cell
from landscape.train.steps import eval_rows

#: The interpolation's t: Goodfellow et al.'s line, half a unit past init and final point.
INTERP_T = np.linspace(-0.5, 1.5, 41)
SLICE_DIMS = ("slice_x", "slice_y")
#: How each kind of direction is drawn, for the cube's attrs (landscape.measures.directions).
NORMALIZATION = {
    "filter": "Gaussian; each filter (index 0 of every parameter of 2 or more dims) rescaled to the norm "
              "of the matching filter of the final weights (Li et al. 2018)",
    "sphere": "Gaussian on the constrained entries, projected onto the tangent space of the sphere at the "
              "final point and orthonormalized (QR with theta first); points by the exponential map, norm w",
}
ZEROED = {"filter": "1-D parameters (biases, normalization) zeroed", "sphere": "unconstrained entries zeroed"}
SEED_RULE = "landscape.measures.directions.direction_seed(slice_seed, cell seed)"


def _values(sl: Slice, prefix: str) -> dict[str, np.ndarray]:
    """The slice's four metrics as the cube's ``<prefix>_<metric>`` variables."""
    return {f"{prefix}_{m}": getattr(sl, m).double().cpu().numpy() for m in METRICS}


def _quantities(prefix: str, dims: tuple[str, ...], what: str) -> tuple[Quantity, ...]:
    return tuple(Quantity(f"{prefix}_{m}", f"{m.replace('_', ' ')} {what}", dims) for m in METRICS)


class _Evaluated:
    """What both measures share: the cell's data on its device, the task's loss and the path."""

    every_eval = False

    def __init__(self, spec: Spec, task: Task, prefix: str):
        self.task, self.samples, self.prefix = task, spec.measure.samples, prefix
        self._probe_value = spec.axis_values[0]

    def _path_of_task(self) -> str:
        """The path the task's model takes (decided on a fresh model and one sample of its data)."""
        with torch.random.fork_rng(devices=[]):
            model = self.task.build_model()
        return slice_path(model, self.task.data(self._probe_value).train_x, self.task.select)

    def _on_device(self, model: nn.Module, at: MeasurePoint) -> tuple[nn.Module, dict[str, Any]]:
        split = at.split
        rows = eval_rows(len(split.train_y), self.samples)
        train = (self.task.select(split.train_x, rows), split.train_y[rows])
        if at.device.type != "cpu":
            model = copy.deepcopy(model).to(at.device)
        data = move((train, (split.test_x, split.test_y)), at.device)
        path = slice_path(model, data[0][0], self.task.select)
        return model, {"train": data[0], "test": data[1], "loss": objective(self.task, at.train), "errors": self.task.errors,
                       "select": self.task.select, "method": path}

    def _checked(self, sl: Slice, path: str) -> dict[str, np.ndarray]:
        if sl.path != path:  # the cube's attr names the path decided up front
            raise RuntimeError(f"the {self.prefix} ran on the {sl.path} path, not the {path} path decided for the model")
        return _values(sl, self.prefix)


class SliceMeasure(_Evaluated):
    """A 1-D or 2-D slice around each cell's final point, along directions seeded by the slice
    seed and the cell's seed."""

    def __init__(self, spec: Spec, task: Task, config: SliceConfig):
        super().__init__(spec, task, "slice")
        self.config = config
        dims = SLICE_DIMS[:config.dims]
        axis = np.linspace(-config.span, config.span, config.points)
        self.coords = {d: axis for d in dims}
        unit = "radians along the sphere" if config.directions == "sphere" else "multiples of each direction"
        self.quantities = _quantities("slice", dims, f"on the {config.directions} slice around the final point ({unit})")

    @property
    def attrs(self) -> dict[str, Any]:
        c = self.config
        return {"slice_directions": c.directions, "slice_seed": c.seed, "slice_seed_rule": SEED_RULE,
                "slice_normalization": NORMALIZATION[c.directions], "slice_zeroed": ZEROED[c.directions],
                "slice_path": self._path_of_task()}

    def __call__(self, model: nn.Module, at: MeasurePoint) -> dict[str, np.ndarray]:
        c = self.config
        mask = constrained_mask(model, self.task.constrained_parameters(model))
        model, options = self._on_device(model, at)
        sl = landscape_slice(model, seed=direction_seed(c.seed, at.seed), dims=c.dims, points=c.points, span=c.span,
                             kind=c.directions, mask=mask.to(at.device), **options)
        return self._checked(sl, options["method"])


class InterpolationMeasure(_Evaluated):
    """The line from each cell's init to its final point (Goodfellow et al. 2015), over INTERP_T."""

    coords = {"interp": INTERP_T}
    quantities = _quantities("interp", ("interp",), "on the line from the init (t = 0) to the final point (t = 1)")

    def __init__(self, spec: Spec, task: Task):
        super().__init__(spec, task, "interp")

    @property
    def attrs(self) -> dict[str, Any]:
        return {"interp_path": self._path_of_task()}

    def __call__(self, model: nn.Module, at: MeasurePoint) -> dict[str, np.ndarray]:
        with torch.random.fork_rng(devices=[]):  # init_cell seeds the global generator; other cells draw on
            init, _ = init_cell(self.task, at.w, at.seed, at.train.dtype)
        model, options = self._on_device(model, at)
        sl = interpolation(model, flat_params(init).to(at.device), points=len(INTERP_T), lo=float(INTERP_T[0]),
                           hi=float(INTERP_T[-1]), **options)
        return self._checked(sl, options["method"])


def slice_measures(spec: Spec, task: Task) -> list[CellMeasure]:
    """The slice of ``[measure] slice``, if asked for."""
    return [] if spec.measure.slice is None else [SliceMeasure(spec, task, spec.measure.slice)]


def interpolation_measures(spec: Spec, task: Task) -> list[CellMeasure]:
    """The interpolation of ``[measure] interpolation``, if asked for."""
    return [InterpolationMeasure(spec, task)] if spec.measure.interpolation else []
