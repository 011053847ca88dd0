"""A run's measures: built from its spec's ``[measure]`` section and what its task declares."""
from __future__ import annotations

from landscape.measures.hook import CellMeasure
from landscape.measures.stored_params import params_measures
from landscape.spec import Spec
from landscape.tasks.base import Task


def cell_measures(spec: Spec, task: Task) -> list[CellMeasure]:
    """Every measure of a run (none unless asked for or declared by the task), in cube order."""
    return [*params_measures(spec, task)]
