"""The protocol every task implements, and the helpers tasks share.

A task supplies a model factory, train/test data for one value of its grid axis, a loss and a
per-sample error. The engine only ever talks to tasks through this class.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from landscape.errors import UserError


@dataclass(frozen=True)
class NoOptions:
    """Options of a task that takes none."""


@dataclass(frozen=True)
class Split:
    """Training and test tensors. ``*_y`` are the loss targets (one-hot for classifiers)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


class Task(ABC):
    """One experiment family. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    #: Name of the task's own grid axis (the cube dimension next to ``w``), e.g. ``"N"``.
    axis: ClassVar[str] = "N"
    axis_long_name: ClassVar[str] = "training-set size"
    #: Accuracy at which a dynamics run counts as fitted (t_fit) or generalized (t_gen).
    default_level: ClassVar[float] = 0.95
    #: Task options as a dataclass type; spec ``[task_options]`` keys must be its fields.
    Options: ClassVar[type] = NoOptions
    #: True when many cells can train as one batched model (landscape.vectorized): the model is a
    #: pure function of its parameters (no buffers, no in-place state, no data-dependent control
    #: flow) and ``loss``/``errors`` work under ``torch.func.vmap``. Otherwise cells train one by one.
    vectorizable: ClassVar[bool] = False
    #: Task-specific scalars recorded at every eval, name -> long name; the cube stores each as
    #: ``<name>_curve`` over ``step``. Measured by :meth:`measure_extra_curves` (per-cell path only).
    extra_curves: ClassVar[Mapping[str, str]] = {}
    #: Task-specific constants of a cell (e.g. a reference solution's test error), name -> long
    #: name; the cube stores each as ``<name>`` over the cell dims. Measured by :meth:`measure_extra_values`.
    extra_values: ClassVar[Mapping[str, str]] = {}
    #: Most torch threads a worker gives one cell of this task (None: all the runner allots). Models
    #: of many tiny ops lose to thread synchronisation on more threads.
    max_threads: ClassVar[int | None] = None

    def __init__(self, options: Any, data_dir: str | None = None):
        self.options = options
        self.data_dir = data_dir

    @property
    @abstractmethod
    def data_source(self) -> str:
        """Human-readable description of where the data came from, stored in the cube."""

    @property
    def pool_size(self) -> int | None:
        """Largest admissible training-set size, or None when data can be drawn without limit."""
        return None

    @property
    def larger_pool_hint(self) -> str | None:
        """How to get a training pool larger than ``pool_size``, added to the refusal of an axis value
        beyond it; None when there is no way."""
        return None

    @property
    def fixed(self) -> dict[str, Any]:
        """Quantities another task's axis sweeps but this task holds fixed (e.g. ``{"N": 4000}`` for an
        ``m`` axis); the cube stores each as an attr ``fixed_<name>``."""
        return {}

    @abstractmethod
    def build_model(self) -> nn.Module:
        """A freshly initialised model (default PyTorch init; the engine seeds the RNG)."""

    @abstractmethod
    def data(self, value: Any) -> Split:
        """Train/test data for one value of the task's axis."""

    @abstractmethod
    def errors(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample 0/1 error (1 - correct), as a float tensor."""

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(pred, target)

    def measure_extra_curves(self, model: nn.Module, split: Split) -> dict[str, float]:
        """The ``extra_curves`` of ``model`` trained on ``split``, now (called at each eval, without grad)."""
        return {}

    def measure_extra_values(self, split: Split) -> dict[str, float]:
        """The ``extra_values`` of a cell trained on ``split`` (called once per cell)."""
        return {}

    def constrained_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """Parameters whose global norm defines w (Omnigrok: all of them)."""
        return list(model.parameters())

    def check_axis(self, values: list) -> None:
        """Raise UserError for axis values this task cannot run."""
        for v in values:
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise UserError(f"axes.{self.axis}: {v!r} is not a positive integer training-set size")
            if self.pool_size is not None and v > self.pool_size:
                hint = self.larger_pool_hint
                raise UserError(
                    f"axes.{self.axis}: {v} is larger than the training pool of {self.pool_size} "
                    f"({self.data_source})" + (f"; {hint}" if hint else "")
                )


def parse_options(options_type: type, raw: Mapping[str, Any], where: str = "task_options") -> Any:
    """Build an options dataclass from a spec table, rejecting unknown keys and wrong types."""
    fields = {f.name: f for f in dataclasses.fields(options_type)}
    for key, value in raw.items():
        if key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise UserError(f"unknown key {where}.{key} (known: {known})")
        default = getattr(options_type, key, None)
        union_with_str = isinstance(value, str) and "str" in str(fields[key].type)
        if default is not None and not union_with_str and not _same_kind(default, value):
            raise UserError(f"{where}.{key} = {value!r} should be {_article(type(default).__name__)}")
    return options_type(**raw)


def _article(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def one_hot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    return F.one_hot(labels.long(), classes).to(torch.get_default_dtype())


def classification_errors(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Error of an argmax classifier against one-hot targets."""
    return (pred.argmax(-1) != target.argmax(-1)).to(pred.dtype)
