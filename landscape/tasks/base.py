"""The protocol every task implements, and the helpers tasks share.

A task supplies a model factory, train/test data for one value of its grid axis, a loss and a
per-sample error. The engine only ever talks to tasks through this class; a task defined outside
the package (``task = "package.module:ClassName"``) uses the very same door as a built-in one.
"""
from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from landscape.errors import UserError
from landscape.cube.schema import ROLE_SAMPLES


@dataclass(frozen=True)
class NoOptions:
    """Options of a task that takes none."""


@dataclass(frozen=True)
class Split:
    """Training and test data of one grid cell; the first dimension of each field indexes samples.

    ``*_x`` are model inputs: a tensor, or any collection the task's :meth:`Task.select` can index
    (e.g. a set of graphs). ``*_y`` are loss targets of any shape the task's ``loss`` accepts:
    one-hot or real-valued floats for MSE, integer class labels for cross-entropy, probabilities
    for BCE. The engine casts floating tensors (also inside tuples, lists, dicts and dataclasses)
    to ``train.dtype``; integer tensors are left alone.
    """

    train_x: Any
    train_y: torch.Tensor
    test_x: Any
    test_y: torch.Tensor


@dataclass(frozen=True)
class FourierGrid:
    """The inputs of modular arithmetic mod p that Nanda et al.'s progress measures read."""

    inputs: Any  # model inputs of all p^2 pairs (a, b), a-major: row a * p + b
    labels: torch.Tensor  # (p^2,) integer labels of those rows
    train_rows: torch.Tensor  # the grid rows of the cell's training pairs
    keys: int  # how many key frequencies the restricted and excluded losses keep or remove


class Task(ABC):
    """One experiment family. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    #: Name of the task's own grid axis (the cube dimension next to ``w``), e.g. ``"N"``.
    axis: ClassVar[str] = "N"
    axis_long_name: ClassVar[str] = "training-set size"
    #: What the axis is (landscape.cube.schema.AXIS_ROLES): "samples", a training-set size whose thumb tip
    #: is a critical data size, or "representation", a parameter of the inputs such as messiness m.
    axis_role: ClassVar[str] = ROLE_SAMPLES
    #: Reference predictors the task compares every run with, each recorded as the extra curve
    #: ``cos_<name>`` (the Dichotomy tasks' "kernel" and "rich"); the cube lists them.
    reference_predictors: ClassVar[tuple[str, ...]] = ()
    #: Accuracy at which a dynamics run counts as fitted (t_fit) or generalized (t_gen).
    default_level: ClassVar[float] = 0.95
    #: Task options as a dataclass type; spec ``[task_options]`` keys must be its fields.
    Options: ClassVar[type] = NoOptions
    #: Whether many cells may train as one batched model (landscape.train.stacked). None (the default):
    #: the runner decides by a probe, a step or two batched against the per-cell result
    #: (landscape.train.probe). False forces the per-cell path, True skips the probe.
    vectorizable: ClassVar[bool | None] = None
    #: Task-specific scalars recorded at every eval, name -> long name; the cube stores each as
    #: ``<name>_curve`` over ``step``. Measured by :meth:`measure_extra_curves` on a CPU copy
    #: of each cell's model, in either backend (landscape.train.loop.measure).
    extra_curves: ClassVar[Mapping[str, str]] = {}
    #: Task-specific constants of a cell (e.g. a reference solution's test error), name -> long
    #: name; the cube stores each as ``<name>`` over the cell dims. Measured by :meth:`measure_extra_values`.
    extra_values: ClassVar[Mapping[str, str]] = {}
    #: Most torch threads a worker gives one cell of this task (None: all the runner allots). Models
    #: of many tiny ops lose to thread synchronisation on more threads.
    max_threads: ClassVar[int | None] = None
    #: What the landscape figures and summaries read: "err" (1 - accuracy) or "loss" (the paper's
    #: choice for regression, where a 0/1 error needs an arbitrary tolerance). The cube records it.
    figure_metric: ClassVar[str] = "err"
    #: Contour levels of test_<figure_metric> (thumb, Goldilocks bands, thumb tips). None: the
    #: error's defaults (landscape.cube.schema.DEFAULT_LEVELS); a loss task must give its own.
    figure_levels: ClassVar[tuple[float, ...] | None] = None
    #: Whether the task reads its data from ``data_dir`` (--data-dir); the runner warns that a
    #: --data-dir given to a task that does not is ignored. An outside task that reads it sets True.
    reads_data_dir: ClassVar[bool] = False
    #: Whether the model's outputs are the logits of a softmax classifier trained on integer labels.
    softmax_classifier: ClassVar[bool] = False
    #: The progress measures of grokking that apply to the task's model and outputs, recorded with
    #: ``[measure] progress = true``: keys of landscape.measures.progress_measures.MEASURES
    #: ("softmax_collapse", "zero_loss", "nlm_cosine" for softmax classifiers; "margin" for any argmax
    #: classifier; "normalized_margin" with a ``homogeneity_degree``; "fourier" with :meth:`fourier_grid`
    #: and :meth:`fourier_embedding`). The effective rank of each 2-D weight applies to every model and
    #: is not declared. A task whose outputs depend on its options overrides this with a property (mnist).
    progress_measures: ClassVar[tuple[str, ...]] = ()
    #: L such that the model's outputs satisfy f(c theta) = c^L f(theta) for all its parameters theta
    #: (normalized_margin = min_margin / ||theta||^L, Lyu & Li 2020); None: the model is not homogeneous.
    homogeneity_degree: ClassVar[float | None] = None

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

    def train_size(self, value: Any) -> int:
        """Training samples at one axis value (plans ``train.epochs``); override when ``data`` is costly."""
        return len(self.data(value).train_x)

    def select(self, x: Any, rows: torch.Tensor) -> Any:
        """The model input of samples ``rows`` of ``x`` (a minibatch, or a chunk at eval time).

        Tensor inputs are indexed; a task whose inputs are not one tensor (graphs) collates here.
        """
        return x[rows]

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

    def fourier_grid(self, train_size: int) -> FourierGrid:
        """For a task declaring the "fourier" progress measures: every input pair of its modular
        arithmetic, and the training pairs of the cell trained on ``train_size`` of them."""
        raise NotImplementedError(f"{self.name} declares no Fourier progress measures")

    def fourier_embedding(self, model: nn.Module) -> torch.Tensor:
        """For a task declaring "fourier": the embedding (p, d) of the residues 0..p-1 in ``model``."""
        raise NotImplementedError(f"{self.name} declares no Fourier progress measures")

    def constrained_parameters(self, model: nn.Module) -> list[nn.Parameter]:
        """Parameters whose global norm defines w (Omnigrok: all of them)."""
        return list(model.parameters())

    def parameter_groups(self, model: nn.Module) -> dict[str, list[nn.Parameter]]:
        """The constrained parameters in named groups, whose norms the cube records per eval
        (``layer_norm_curve`` over ``layer``). Default: one group per top-level submodule."""
        constrained = {id(p) for p in self.constrained_parameters(model)}
        groups: dict[str, list[nn.Parameter]] = {}
        for name, p in model.named_parameters():
            if id(p) in constrained:
                groups.setdefault(name.split(".")[0], []).append(p)
        return groups

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
    """Build an options dataclass from a spec table, rejecting unknown keys, wrong types and
    non-finite numbers (NaN never equals itself, so a spec holding one could never be resumed)."""
    fields = {f.name: f for f in dataclasses.fields(options_type)}
    for key, value in raw.items():
        if key not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise UserError(f"unknown key {where}.{key} (known: {known})")
        default = getattr(options_type, key, None)
        union_with_str = isinstance(value, str) and "str" in str(fields[key].type)
        if default is not None and not union_with_str and not _same_kind(default, value):
            raise UserError(f"{where}.{key} = {value!r} should be {_article(type(default).__name__)}")
        check_finite(f"{where}.{key}", value)
    return options_type(**raw)


def _article(noun: str) -> str:
    return f"{'an' if noun[0] in 'aeiou' else 'a'} {noun}"


def check_finite(where: str, value: Any) -> None:
    """UserError unless every float in ``value`` (a number, or lists and tables of them) is finite."""
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{where} = {value} is not a finite number")
    if isinstance(value, (list, tuple)):
        for v in value:
            check_finite(where, v)
    if isinstance(value, dict):
        for k, v in value.items():
            check_finite(f"{where}.{k}", v)


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


#: Seeds (cell seeds, data seeds) are integers in [0, SEED_LIMIT): what numpy's legacy generator takes.
SEED_LIMIT = 2**32


def require(options: Any, name: str, ok: Callable[[Any], bool], rule: str) -> None:
    """For a task's ``Options.__post_init__``: UserError ``task_options.<name> = <value> <rule>``
    unless ``ok(value)``."""
    value = getattr(options, name)
    if not ok(value):
        raise UserError(f"task_options.{name} = {value!r} {rule}")


def require_seed(options: Any, name: str = "data_seed") -> None:
    require(options, name, lambda v: 0 <= v < SEED_LIMIT, "must be in [0, 2**32) (a seed)")


def require_positive(options: Any, *names: str) -> None:
    """For sizes (widths, vocabularies, lengths): each of ``names`` at least 1."""
    for name in names:
        require(options, name, lambda v: v >= 1, "must be a positive integer")


def one_hot(labels: torch.Tensor, classes: int) -> torch.Tensor:
    return F.one_hot(labels.long(), classes).to(torch.get_default_dtype())


def labels_of(target: torch.Tensor) -> torch.Tensor:
    """Class labels of classification targets: integer labels as they are, one-hot rows by argmax."""
    return target if not target.is_floating_point() else target.argmax(-1)


def classification_errors(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Error of an argmax classifier against one-hot or integer-label targets."""
    return (pred.argmax(-1) != labels_of(target)).to(pred.dtype)


#: Losses of a classifier: MSE against one-hot targets (Omnigrok's default) or cross-entropy on labels.
CLASSIFIER_LOSSES = ("mse", "ce")


def classifier_targets(labels: torch.Tensor, classes: int, loss: str) -> torch.Tensor:
    """The targets ``loss`` trains on: one-hot rows for "mse", the integer labels for "ce"."""
    return one_hot(labels, classes) if loss == "mse" else labels.long()


#: The progress measures of a softmax classifier (landscape.measures.progress_measures.MEASURES keys).
SOFTMAX_PROGRESS = ("softmax_collapse", "zero_loss", "nlm_cosine")


def classifier_loss(pred: torch.Tensor, target: torch.Tensor, loss: str) -> torch.Tensor:
    return F.mse_loss(pred, target) if loss == "mse" else F.cross_entropy(pred, target)
