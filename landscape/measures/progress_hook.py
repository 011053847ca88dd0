"""The progress measures of grokking as a measure of the hook (``[measure] progress = true``): what the
task declares (``Task.progress_measures``, computed by landscape.measures.progress_measures) plus the
effective rank of every 2-D weight, at every eval of every cell and at its end.

Classification measures are taken on the cell's training set as the MeasurePoint holds it, in the
training dtype (softmax collapse depends on it), or on its fixed random subset of
``measure.samples`` rows (landscape.train.steps.eval_rows); the Fourier measures on all p^2 pairs.
A cell that trains on another device is measured there, on a copy.
"""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from landscape.cube.schema import Quantity
from landscape.errors import UserError
from landscape.measures.hook import MeasurePoint
from landscape.measures.progress_measures import MEASURES, classification_measures, effective_ranks, fourier_measures
from landscape.spec import Spec
from landscape.tasks.base import Task, labels_of
from landscape.dtypes import torch_dtype
from landscape.train.objective import per_sample_loss
from landscape.train.steps import eval_rows

CLASSIFICATION = tuple(key for key in MEASURES if key != "fourier")


def check_declarations(task: Task) -> tuple[str, ...]:
    """The task's ``progress_measures``, or a UserError naming the first it cannot have."""
    declared = tuple(task.progress_measures)
    where = f"task {task.name!r}: progress_measures"
    for key in declared:
        if key not in MEASURES:
            raise UserError(f"{where} names {key!r} (known: {', '.join(MEASURES)})")
        if key in ("softmax_collapse", "zero_loss", "nlm_cosine") and not task.softmax_classifier:
            raise UserError(f"{where} names {key!r}, which needs softmax_classifier = True")
        clash = [name for name in MEASURES[key] if name in task.extra_curves]
        if clash:
            raise UserError(f"{where} names {key!r}, whose {clash[0]!r} is among the task's extra_curves")
    if "normalized_margin" in declared and task.homogeneity_degree is None:
        raise UserError(f"{where} names 'normalized_margin', which needs a homogeneity_degree")
    return declared


class ProgressMeasures:
    """The hook measure of one run's progress measures (landscape.measures.hook.CellMeasure)."""

    every_eval = True

    def __init__(self, task: Task, samples: int):
        self.declared = check_declarations(task)
        self.samples = samples
        with torch.random.fork_rng():  # the names and shapes only: leave the run's RNG alone
            model = task.build_model()
        self.weights = [name for name, p in model.named_parameters() if p.dim() == 2]
        scalars = [Quantity(name, long_name, curve=True) for key in self.declared for name, long_name in MEASURES[key].items()]
        self.coords: dict[str, np.ndarray] = {}
        if self.weights:
            scalars.append(Quantity("effective_rank", "exp of the entropy of the normalized singular values of each 2-D weight",
                                    ("weight",), curve=True))
            self.coords["weight"] = np.array(self.weights, dtype=object)
        if "fourier" in self.declared:
            p = task.fourier_embedding(model).shape[0]
            scalars += [Quantity("fourier_power", "power of the embedding at each frequency", ("frequency",), curve=True),
                        Quantity("key_frequencies", "the frequencies of largest embedding power, strongest first", ("key",),
                                 curve=True)]
            self.coords["frequency"] = np.arange(1, p // 2 + 1)
            self.coords["key"] = np.arange(1, task.fourier_grid(1).keys + 1)
        self.quantities = tuple(scalars)

    def __call__(self, model: nn.Module, at: MeasurePoint) -> dict[str, np.ndarray]:
        if at.device.type != "cpu":
            model = copy.deepcopy(model).to(at.device)
        out: dict[str, np.ndarray] = {}
        classification = [key for key in self.declared if key in CLASSIFICATION]
        if classification:
            split = at.split
            rows = eval_rows(len(split.train_y), self.samples)
            x, y = at.task.select(split.train_x, rows), labels_of(split.train_y[rows])
            measured = classification_measures(model, _to(x, at.device), y.to(at.device), classification,
                                               torch_dtype(at.train.dtype), per_sample_loss(at.train),
                                               at.task.homogeneity_degree)
            out.update({name: np.asarray(v) for name, v in measured.items()})
        if self.weights:
            ranks = effective_ranks(model)
            out["effective_rank"] = np.array([float(ranks[name]) for name in self.weights])
        if "fourier" in self.declared:
            grid = at.task.fourier_grid(len(at.split.train_y))
            inputs = grid.inputs.to(at.split.train_x.dtype) if grid.inputs.is_floating_point() else grid.inputs
            with torch.no_grad():
                logits = model(_to(inputs, at.device)).cpu()
                embedding = at.task.fourier_embedding(model).cpu()
            measured = fourier_measures(embedding, logits, grid.labels, grid.train_rows, grid.keys)
            out.update({name: v.double().numpy() for name, v in measured.items()})
        return out


def _to(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    return x if device.type == "cpu" else x.to(device)


def progress_measures(spec: Spec, task: Task) -> list[ProgressMeasures]:
    """The run's progress measure when ``[measure] progress`` asks for it and anything applies."""
    if not spec.measure.progress:
        return []
    measure = ProgressMeasures(task, spec.measure.samples)
    return [measure] if measure.quantities else []
