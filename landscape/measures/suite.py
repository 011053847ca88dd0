"""A run's measures: built from its spec's ``[measure]`` and ``[store]`` sections and what its task declares."""
from __future__ import annotations

from landscape.measures.curvature_measure import curvature_measures
from landscape.measures.hook import CellMeasure
from landscape.measures.progress_hook import progress_measures
from landscape.measures.slice_cells import interpolation_measures, slice_measures
from landscape.measures.stored_params import params_measures
from landscape.spec import Spec
from landscape.tasks.base import Task


def cell_measures(spec: Spec, task: Task) -> list[CellMeasure]:
    """Every measure of a run (none unless asked for or declared by the task), in cube order."""
    return [
        *curvature_measures(spec.measure, spec.train.optimizer),
        *slice_measures(spec, task),
        *interpolation_measures(spec, task),
        *params_measures(spec, task),
        *progress_measures(spec, task),
    ]
