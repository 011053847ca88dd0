"""A cell's objective: what its steps minimise and its recorded losses measure (``train.loss``).

"task" is the task's own loss; "stablemax" is StableMax cross-entropy (Prieto et al., ICLR 2025;
landscape.interventions.stablemax) on the logits of a task that declares ``softmax_classifier``,
computed in the logits' dtype (the training dtype), as the task's cross-entropy is. The progress
measures (landscape.measures.progress_hook) take the same per-sample loss by ``per_sample_loss``.
"""
from __future__ import annotations

from landscape.errors import UserError
from landscape.interventions.stablemax import PER_SAMPLE_LOSSES
from landscape.measures.functional import LossFn
from landscape.spec import TrainConfig
from landscape.tasks.base import Task, labels_of

#: The per-sample loss (a key of PER_SAMPLE_LOSSES) of a softmax classifier under each ``train.loss``:
#: the task's loss of a softmax classifier is its cross-entropy.
PER_SAMPLE = {"task": "cross_entropy", "stablemax": "stablemax"}


def per_sample_loss(train: TrainConfig) -> str:
    """The key of PER_SAMPLE_LOSSES a softmax classifier trained under ``train`` minimises the mean of."""
    return PER_SAMPLE[train.loss]


def objective(task: Task, train: TrainConfig) -> LossFn:
    """``loss(pred, target)``, the mean over the samples, of a cell of ``task`` trained under ``train``;
    a UserError if the task cannot have it. Any leading batch dims are vmap's (the stacked backend)."""
    if train.loss == "task":
        return task.loss
    if not task.softmax_classifier:
        raise UserError(f"train.loss = {train.loss!r} needs a softmax classifier; task {task.name!r} is not one "
                        "(its loss is not softmax cross-entropy)")
    per_sample = PER_SAMPLE_LOSSES[per_sample_loss(train)]
    return lambda pred, target: per_sample(pred, labels_of(target)).mean()
