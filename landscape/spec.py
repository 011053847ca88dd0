"""Grid specs: a TOML file plus ``--set`` overrides, validated and resolved into a ``Spec``.

Everything a user can get wrong here raises ``UserError`` with the offending key and value, before
any store is created.
"""
from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from landscape.dtypes import DTYPES
from landscape.errors import UserError
from landscape.safeio import NotReadable, read_bounded
from landscape.cube.schema import KIND_DYNAMICS, KIND_LANDSCAPE
from landscape.tasks import Task, make_task
from landscape.tasks.base import SEED_LIMIT, check_finite, parse_options
from landscape.tasks.registry import reference, resolve_task, search_beside

#: Most cells of one grid. Each cell owns one chunk file per variable (~20), so 10^5 cells make a
#: cube of ~2 million files, which reading back for verification or a plot already takes minutes.
MAX_CELLS = 100_000
SECTIONS = ("task", "task_options", "axes", "train", "eval", "measure", "store")
OPTIMIZERS = ("adam", "adamw", "sgd")
#: Axes that sweep a training setting (dynamics runs); each maps to the [train] field it overrides.
TRAIN_AXES = {"wd": "weight_decay", "lr": "lr", "loss": "loss", "orthograd": "orthograd", "grokfast": "grokfast_lamb"}
#: What the values of each training-setting axis are (the others are numbers).
AXIS_KINDS: dict[str, type] = {"loss": str, "orthograd": bool}
#: ``train.loss``: the task's own loss, or StableMax cross-entropy (landscape.train.objective).
LOSSES = ("task", "stablemax")
#: The grokking interventions' fields (landscape.interventions): written to the canonical spec only
#: when not at their defaults, so cubes made before they existed resume unchanged.
INTERVENTION_FIELDS = ("loss", "orthograd", "grokfast_alpha", "grokfast_lamb")


@dataclass(frozen=True)
class TrainConfig:
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 0  # 0 = full batch
    steps: int = 1000
    #: Train for this many passes over each cell's training set instead of ``steps`` (0 = off): a
    #: cell then runs epochs x (its N // batch_size) steps, so the steps depend on the axis value.
    #: "K/N" gives each cell int(K / its axis value) epochs (Omnigrok's QM9: "100000/N").
    epochs: int | str = 0
    #: Clip each cell's global gradient norm to this value before the step (0 = off).
    grad_clip: float = 0.0
    #: Float precision of parameters and data: "float32" or "float64".
    dtype: str = "float32"
    constrain_norm: bool = True
    #: Cells one worker trains together as one batched model: 0 = chosen from device and memory,
    #: 1 = the per-cell path.
    max_batch_cells: int = 0
    #: Convergence stop: a cell ends when its best train loss over the last `stop_window` evals is
    #: not `stop_rtol` (relative) below its best before them (0 = off), or when its train loss
    #: reaches `stop_loss` (0 = off).
    stop_window: int = 0
    stop_rtol: float = 1e-3
    stop_loss: float = 0.0
    #: Step decay of the learning rate (torch's StepLR): lr x `lr_decay_factor` after every
    #: `lr_decay_every` steps (0 = a constant lr).
    lr_decay_every: int = 0
    lr_decay_factor: float = 0.1
    #: Adam/AdamW moment decay rates (torch's defaults); sgd has none.
    beta1: float = 0.9
    beta2: float = 0.999
    #: The objective: "task" (the task's loss) or "stablemax" (StableMax cross-entropy; softmax classifiers).
    loss: str = "task"
    #: ⊥Grad: each gradient made orthogonal to its parameter before the optimizer steps.
    orthograd: bool = False
    #: Grokfast-EMA (``train.grokfast = { alpha, lamb }``): g + lamb x EMA_alpha(g); lamb 0 = off.
    grokfast_alpha: float = 0.98
    grokfast_lamb: float = 0.0


@dataclass(frozen=True)
class EvalConfig:
    every: int | str = 100  # eval every k steps, "log" for `points` log-spaced steps, or "epoch"
    samples: int = 0  # 0 = every sample; otherwise a fixed random subset of that size
    points: int = 60  # number of log-spaced eval steps when every = "log"
    #: Accuracy level for t_fit / t_gen; a spec without it gets the task's default_level.
    level: float = 0.0


#: How a slice's directions are drawn (landscape.measures.directions).
SLICE_DIRECTIONS = ("filter", "sphere")
#: When a cell's [measure] runs: at its last eval only, or at every eval (curves over step).
MEASURE_WHEN = ("end", "eval")


@dataclass(frozen=True)
class SliceConfig:
    """A 1-D or 2-D slice around the cell's final point (``[measure] slice = {...}``)."""

    dims: int = 2
    points: int = 21
    span: float = 1.0
    directions: str = "filter"
    seed: int = 0


@dataclass(frozen=True)
class MeasureConfig:
    """What each cell measures beyond its losses (``[measure]``); everything off by default."""

    #: Top-k eigenvalues of the train-loss Hessian, ambient and reduced (0 = off).
    hessian_top: int = 0
    #: The Hessian trace (Hutchinson, with its standard error), ambient and reduced.
    hessian_trace: bool = False
    #: Rademacher probes of the trace estimate.
    trace_probes: int = 64
    #: The spectral density by stochastic Lanczos quadrature, over an eigenvalue coordinate.
    density: bool = False
    #: Training samples the measurements use: 0 = the cell's whole training set, else a fixed subset.
    samples: int = 0
    #: "end": at the cell's last eval; "eval": at every eval as well (``<name>_curve`` over step).
    every: str = "end"
    #: A slice around the final point (None = off).
    slice: SliceConfig | None = None
    #: The 1-D interpolation from the cell's init to its final point (Goodfellow et al. 2015).
    interpolation: bool = False
    #: The progress measures of grokking the task declares, and each 2-D weight's effective rank
    #: (landscape.measures.progress_hook), at every eval whatever ``every``: they are curves.
    progress: bool = False


@dataclass(frozen=True)
class StoreConfig:
    """What the cube keeps beyond the measurements (``[store]``)."""

    #: Each cell's final parameters and buffers (landscape.cell_model reads them back).
    params: bool = False


@dataclass(frozen=True)
class Spec:
    """A resolved grid: everything needed to plan and train every cell."""

    task: str  # as stored in the cube: a task name or "package.module:ClassName"
    task_options: dict[str, Any]
    norm_axis: str  # "alpha" or "w": how the user gave the norm axis
    norm_values: list[float]
    axis: str  # the task's own axis name, e.g. "N"
    axis_values: list[Any]
    seeds: list[int]
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    #: Training-setting axes (``wd``, ``lr``) in cube order; empty for a landscape grid.
    train_axes: dict[str, list[Any]] = field(default_factory=dict)
    measure: MeasureConfig = field(default_factory=MeasureConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    #: The resolved task class (a Python API caller may pass one that no import path reaches).
    task_class: type[Task] | None = field(default=None, compare=False, repr=False)

    @property
    def cell_dims(self) -> tuple[str, ...]:
        """Cube dims of one cell: w, the task's axis, any training-setting axes, seed."""
        return ("w", self.axis, *self.train_axes, "seed")

    @property
    def kind(self) -> str:
        """What its cube is (landscape.cube.schema.KINDS): a reduced landscape holds norm-constrained cells
        over several w, the task's axis and seeds only; anything else is a dynamics run."""
        landscape = self.train.constrain_norm and not self.train_axes and len(self.norm_values) >= 2
        return KIND_LANDSCAPE if landscape else KIND_DYNAMICS

    def cell_train(self, settings: dict[str, Any], value: Any) -> TrainConfig:
        """The training config of a cell: its training-setting axis values applied, and an epoch
        count "K/N" resolved at its axis value."""
        train = dataclasses.replace(self.train, **{TRAIN_AXES[k]: v for k, v in settings.items()})
        if isinstance(train.epochs, str):
            train = dataclasses.replace(train, epochs=max(1, int(epochs_budget(train.epochs) / value)))
        return train

    def to_dict(self) -> dict[str, Any]:
        """The canonical form stored in the cube and compared on resume."""
        return {
            "task": self.task,
            "task_options": self.task_options,
            "axes": {self.norm_axis: self.norm_values, self.axis: self.axis_values, **self.train_axes, "seed": self.seeds},
            "train": _train_dict(self.train),
            "eval": dataclasses.asdict(self.eval),
            # Only when asked for: cubes made before [measure] and [store] existed resume unchanged.
            **({"measure": dataclasses.asdict(self.measure)} if self.measure != MeasureConfig() else {}),
            **({"store": dataclasses.asdict(self.store)} if self.store != StoreConfig() else {}),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def make_task(self, data_dir: str | None = None) -> Task:
        return make_task(self.task_class or self.task, self.task_options, data_dir)


def _train_dict(train: TrainConfig) -> dict[str, Any]:
    """``train`` as a table, its intervention fields only where they are not the defaults."""
    default = TrainConfig()
    return {k: v for k, v in dataclasses.asdict(train).items()
            if k not in INTERVENTION_FIELDS or v != getattr(default, k)}


def spec_differences(stored: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """Fields where two canonical specs differ, as ``"train.steps: stored 4000, given 300"``."""
    a, b = _flatten(stored), _flatten(given)
    return [f"{key}: stored {_show(a.get(key))}, given {_show(b.get(key))}"
            for key in sorted(a.keys() | b.keys()) if a.get(key, _MISSING) != b.get(key, _MISSING)]


_MISSING = object()


def _flatten(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[prefix + key] = value
    return out


def _show(value: Any) -> str:
    return "(none)" if value is None else json.dumps(value)


_EPOCHS_PER_AXIS = re.compile(r"^\s*(\d+(?:\.\d+)?(?:[eE]\+?\d+)?)\s*/\s*([A-Za-z_]\w*)\s*$")


def epochs_budget(text: str) -> float:
    """K of an epoch rule "K/N"."""
    return float(_EPOCHS_PER_AXIS.match(text).group(1))


def _check_epochs(epochs: int | str, axis: str) -> None:
    if isinstance(epochs, str):
        match = _EPOCHS_PER_AXIS.match(epochs)
        if not match or match.group(2) != axis or not float(match.group(1)) > 0:
            raise UserError(f"train.epochs = {epochs!r}: expected a count or \"K/{axis}\" (K > 0 divided by "
                            f"the cell's {axis}), e.g. \"100000/{axis}\"")
    elif epochs < 0:
        raise UserError(f"train.epochs = {epochs} must be >= 0 (0 = use train.steps)")


#: Largest spec file read: specs are a few kB; this bounds a mistaken path such as /dev/zero.
SPEC_LIMIT = 1 << 20


def read_spec_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    search_beside(str(path.parent))  # a module beside the spec is found by "module:Class"
    try:
        text = read_bounded(path, SPEC_LIMIT, regular_only=False).decode("utf-8-sig")
    except FileNotFoundError:
        raise UserError(f"spec file {path} does not exist") from None
    except OSError as e:
        raise UserError(f"cannot read spec file {path}: {e.strerror}") from None
    except NotReadable as e:
        raise UserError(f"spec file {e}") from None
    except UnicodeDecodeError as e:
        raise UserError(f"spec file {path} is not UTF-8 text (byte {e.start}), so not a TOML spec") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"spec file {path} is not valid TOML: {e}") from None


def apply_overrides(raw: dict[str, Any], overrides: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Apply ``key.sub=value`` overrides; values are TOML, a bare word is taken as a string."""
    check_overrides(overrides)
    task = raw.get("task")
    raw = json.loads(json.dumps({k: v for k, v in raw.items() if k != "task"}))  # deep copy of plain data
    if task is not None:
        raw["task"] = task  # may be a Task class (Python API)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected key=value, e.g. train.steps=600")
        try:
            value = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        *parents, leaf = key.strip().split(".")
        node = raw
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"--set {item!r}: {part!r} is not a table")
        if parents == ["axes"] and leaf in ("alpha", "w"):
            node.pop("w" if leaf == "alpha" else "alpha", None)  # one norm axis replaces the other
        node[leaf] = value
    return raw


def resolve(raw: dict[str, Any]) -> Spec:
    for key in raw:
        if key not in SECTIONS:
            raise UserError(f"unknown key {key!r} in spec (known: {', '.join(SECTIONS)})")
    if "task" not in raw:
        raise UserError("spec has no 'task' key")
    cls = resolve_task(raw["task"])
    name = raw["task"] if isinstance(raw["task"], str) else reference(cls)
    options = dataclasses.asdict(parse_options(cls.Options, _table(raw, "task_options")))
    axes = dict(_table(raw, "axes"))

    norm_keys = [k for k in ("alpha", "w") if k in axes]
    if len(norm_keys) != 1:
        raise UserError("axes: give exactly one of 'alpha' (relative to the default init) or 'w' (absolute norm)")
    norm_axis = norm_keys[0]
    norm_values = [float(v) for v in _axis_values(norm_axis, axes.pop(norm_axis), numeric=True)]
    for v in norm_values:
        if not v > 0:
            raise UserError(f"axes.{norm_axis}: {v} is not positive")
    if cls.axis not in axes:
        raise UserError(f"axes: task {name!r} needs its axis '{cls.axis}' ({cls.axis_long_name})")
    axis_values = _axis_values(cls.axis, axes.pop(cls.axis))
    seeds = _axis_values("seed", axes.pop("seed", [0]))
    for s in seeds:
        if not isinstance(s, int) or isinstance(s, bool) or not 0 <= s < SEED_LIMIT:
            raise UserError(f"axes.seed: {s!r} is not an integer in [0, 2**32)")
    train_axes = {k: _train_axis_values(k, axes.pop(k)) for k in TRAIN_AXES if k in axes}
    if axes:
        known = ", ".join(["alpha or w", cls.axis, *TRAIN_AXES, "seed"])
        raise UserError(f"unknown axis {sorted(axes)[0]!r} (known: {known})")

    sizes = {norm_axis: len(norm_values), cls.axis: len(axis_values), **{k: len(v) for k, v in train_axes.items()},
             "seed": len(seeds)}
    if math.prod(sizes.values()) > MAX_CELLS:
        shape = " x ".join(f"{n:,} {k}" for k, n in sizes.items())
        raise UserError(f"the grid has {math.prod(sizes.values()):,} cells ({shape}), more than the limit of "
                        f"{MAX_CELLS:,} (each cell is ~20 files of the cube); split it into several cubes")

    train = parse_options(TrainConfig, _train_table(_table(raw, "train")), "train")
    evalc = parse_options(EvalConfig, _table(raw, "eval"), "eval")
    if "level" not in _table(raw, "eval"):
        evalc = dataclasses.replace(evalc, level=cls.default_level)
    _check_train(train)
    _check_epochs(train.epochs, cls.axis)
    for axis_name, values in train_axes.items():
        for v in values:
            _check_train(dataclasses.replace(train, **{TRAIN_AXES[axis_name]: v}), where=f"axes.{axis_name}")
    _check_eval(evalc)
    measure, store = _measure_config(_table(raw, "measure")), parse_options(StoreConfig, _table(raw, "store"), "store")
    return Spec(name, options, norm_axis, norm_values, cls.axis, axis_values, seeds, train, evalc, train_axes,
                measure, store, cls)


def check_overrides(overrides: Any) -> None:
    """Overrides are a list of strings: a lone string would be split into its characters."""
    if not isinstance(overrides, (list, tuple)) or not all(isinstance(o, str) for o in overrides):
        raise UserError(f"overrides = {overrides!r} should be a list of \"key=value\" strings, e.g. [\"train.steps=600\"]")


def load_spec(path: str | Path, overrides: list[str] = ()) -> Spec:
    return resolve(apply_overrides(read_spec_file(path), overrides))


def _table(raw: dict[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise UserError(f"'{key}' should be a table, got {value!r}")
    return value


def _axis_values(name: str, value: Any, numeric: bool = False) -> list:
    """A plain list, a scalar, or ``{logspace = [a, b, n]}`` / ``{linspace = [a, b, n]}``."""
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in ("logspace", "linspace"):
            raise UserError(f"axes.{name}: expected a list or {{logspace = [a, b, n]}} / {{linspace = [a, b, n]}}")
        kind, args = next(iter(value.items()))
        if not (isinstance(args, list) and len(args) == 3 and isinstance(args[2], int) and args[2] >= 0
                and all(isinstance(a, (int, float)) and not isinstance(a, bool) for a in args)):
            raise UserError(f"axes.{name}.{kind} = {args!r}: expected [start, stop, count]")
        if args[2] > MAX_CELLS:
            raise UserError(f"axes.{name}.{kind}: {args[2]:,} values, more than a grid's {MAX_CELLS:,} cells")
        with np.errstate(over="ignore"):  # an overflow to inf is refused below, in one line
            values = getattr(np, kind)(*args).tolist()
    elif isinstance(value, list):
        values = value
    else:
        values = [value]
    if not values:
        raise UserError(f"axes.{name} is empty")
    if numeric and not all(_is_number(v) for v in values):
        raise UserError(f"axes.{name}: {values!r} must be numbers")
    check_finite(f"axes.{name}", values)
    # 1 and 1.0 are one coordinate value: compare numbers as numbers.
    if len({float(v) if _is_number(v) else repr(v) for v in values}) != len(values):
        raise UserError(f"axes.{name} repeats a value: {values!r}")
    return values


def _train_axis_values(name: str, value: Any) -> list[Any]:
    """A training-setting axis: numbers as floats, or the strings / booleans its field takes."""
    kind = AXIS_KINDS.get(name)
    if kind is None:
        return [float(v) for v in _axis_values(name, value, numeric=True)]
    values = _axis_values(name, value)
    for v in values:
        if type(v) is not kind:
            raise UserError(f"axes.{name}: {v!r} is not {'a boolean' if kind is bool else 'a string'}")
    return values


def _train_table(table: dict[str, Any]) -> dict[str, Any]:
    """``[train]`` with its ``grokfast = { alpha, lamb }`` table as the fields grokfast_alpha / grokfast_lamb."""
    table = dict(table)
    grokfast = table.pop("grokfast", None)
    if grokfast is None:
        return table
    if not isinstance(grokfast, dict) or not set(grokfast) <= {"alpha", "lamb"}:
        raise UserError(f"train.grokfast = {grokfast!r}: expected a table {{ alpha = 0.98, lamb = 2.0 }}")
    for key, value in grokfast.items():
        if f"grokfast_{key}" in table:
            raise UserError(f"train.grokfast.{key} and train.grokfast_{key} both given; give one")
        if not _is_number(value):
            raise UserError(f"train.grokfast.{key} = {value!r} should be a number")
        table[f"grokfast_{key}"] = value
    return table


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_train(t: TrainConfig, where: str = "") -> None:
    if t.optimizer not in OPTIMIZERS:
        raise UserError(f"train.optimizer = {t.optimizer!r} (known: {', '.join(OPTIMIZERS)})")
    def label(field_name: str, value: Any) -> str:
        return f"{where}: {value}" if where else f"train.{field_name} = {value}"

    if not t.lr > 0:
        raise UserError(f"{label('lr', t.lr)} must be positive")
    if t.weight_decay < 0:
        raise UserError(f"{label('weight_decay', t.weight_decay)} must be >= 0")
    if t.batch_size < 0:
        raise UserError(f"train.batch_size = {t.batch_size} must be >= 0 (0 = full batch)")
    if t.steps < 1:
        raise UserError(f"train.steps = {t.steps} must be at least 1")
    if t.grad_clip < 0:
        raise UserError(f"train.grad_clip = {t.grad_clip} must be >= 0 (0 = off)")
    if t.dtype not in DTYPES:
        raise UserError(f"train.dtype = {t.dtype!r} (known: {', '.join(DTYPES)})")
    if t.max_batch_cells < 0:
        raise UserError(f"train.max_batch_cells = {t.max_batch_cells} must be >= 0 (0 = auto, 1 = per cell)")
    if t.stop_window < 0:
        raise UserError(f"train.stop_window = {t.stop_window} must be >= 0 (evals; 0 = off)")
    if not 0 <= t.stop_rtol < 1:
        raise UserError(f"train.stop_rtol = {t.stop_rtol} must be in [0, 1)")
    if not 0 <= t.stop_loss < float("inf"):
        raise UserError(f"train.stop_loss = {t.stop_loss} must be a finite number >= 0 (0 = off)")
    if t.lr_decay_every < 0:
        raise UserError(f"train.lr_decay_every = {t.lr_decay_every} must be >= 0 (steps; 0 = off)")
    if not 0 < t.lr_decay_factor <= 1:
        raise UserError(f"train.lr_decay_factor = {t.lr_decay_factor} must be in (0, 1]")
    for name in ("beta1", "beta2"):
        if not 0 <= getattr(t, name) < 1:
            raise UserError(f"train.{name} = {getattr(t, name)} must be in [0, 1)")
    if t.loss not in LOSSES:
        raise UserError(f"{label('loss', repr(t.loss))} is not a loss (known: {', '.join(map(repr, LOSSES))})")
    if not 0 <= t.grokfast_alpha < 1:
        raise UserError(f"train.grokfast.alpha = {t.grokfast_alpha} must be in [0, 1)")
    if not t.grokfast_lamb >= 0:
        raise UserError(f"{label('grokfast.lamb', t.grokfast_lamb)} must be >= 0 (0 = off)")


def _check_eval(e: EvalConfig) -> None:
    if isinstance(e.every, str) and e.every not in ("log", "epoch"):
        raise UserError(f"eval.every = {e.every!r}: expected a step count, \"log\" or \"epoch\"")
    if isinstance(e.every, int) and e.every < 1:
        raise UserError(f"eval.every = {e.every} must be at least 1")
    if not 0 < e.level <= 1:
        raise UserError(f"eval.level = {e.level} must be in (0, 1] (an accuracy)")
    if e.points < 2:
        raise UserError(f"eval.points = {e.points} must be at least 2")
    if e.samples < 0:
        raise UserError(f"eval.samples = {e.samples} must be >= 0 (0 = all samples)")


def _measure_config(table: dict[str, Any]) -> MeasureConfig:
    """``[measure]``, its slice table included, with every value checked (the model-dependent
    limits, such as k below the parameter count, are the preflight's)."""
    table = dict(table)
    slice_table = table.pop("slice", None)
    if slice_table is not None and not isinstance(slice_table, dict):
        raise UserError(f"measure.slice = {slice_table!r} should be a table, e.g. {{ dims = 2, points = 21 }}")
    m = parse_options(MeasureConfig, table, "measure")
    sl = None if slice_table is None else parse_options(SliceConfig, slice_table, "measure.slice")
    if m.hessian_top < 0:
        raise UserError(f"measure.hessian_top = {m.hessian_top} must be >= 0 (0 = off)")
    if m.trace_probes < 1:
        raise UserError(f"measure.trace_probes = {m.trace_probes} must be at least 1")
    if m.samples < 0:
        raise UserError(f"measure.samples = {m.samples} must be >= 0 (0 = the whole training set)")
    if m.every not in MEASURE_WHEN:
        raise UserError(f"measure.every = {m.every!r}: expected one of {', '.join(map(repr, MEASURE_WHEN))}")
    if sl is not None:
        if sl.dims not in (1, 2):
            raise UserError(f"measure.slice.dims = {sl.dims} must be 1 or 2")
        if sl.points < 2:
            raise UserError(f"measure.slice.points = {sl.points} must be at least 2")
        if not sl.span > 0:
            raise UserError(f"measure.slice.span = {sl.span} must be positive")
        if sl.directions not in SLICE_DIRECTIONS:
            raise UserError(f"measure.slice.directions = {sl.directions!r} (known: {', '.join(SLICE_DIRECTIONS)})")
        if not 0 <= sl.seed < SEED_LIMIT:
            raise UserError(f"measure.slice.seed = {sl.seed} is not an integer in [0, 2**32)")
    return dataclasses.replace(m, slice=sl)
