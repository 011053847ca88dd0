"""Names and codes of the cube that both the engine and the torch-free readers (analysis, plots) use."""
from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from landscape.errors import UserError

#: Final-value variables of every cube; each also has a ``<name>_curve`` over ``step``.
METRICS = ("train_loss", "test_loss", "train_err", "test_err")
#: What a cell records at each eval: the metrics, then the global parameter norm.
CURVES = METRICS + ("norm",)
#: Values of the cube's ``status`` variable.
STATUS_PENDING, STATUS_DONE, STATUS_DIVERGED = 0, 1, 2
#: Prefix of the attrs holding what a task keeps fixed that another task's axis sweeps (``fixed_N``).
FIXED_PREFIX = "fixed_"


def fixed_values(attrs: dict) -> dict:
    """The fixed quantities of a cube by name, e.g. ``{"N": 4000}`` for a cube over (w, m)."""
    return {k.removeprefix(FIXED_PREFIX): v for k, v in attrs.items() if k.startswith(FIXED_PREFIX)}


#: Version of the cube layout this code writes. Cubes without ``schema_version`` are version 1
#: (written before the cube said what it is); the readers below keep reading them by the old rules.
SCHEMA_VERSION = 2
#: What a cube holds (attr ``kind``): a reduced landscape is read through its shape over w, a
#: dynamics cube through its curves and t_fit / t_gen.
KIND_LANDSCAPE, KIND_DYNAMICS = "landscape", "dynamics"
KINDS = (KIND_LANDSCAPE, KIND_DYNAMICS)
#: What the task's own axis (attr ``axis``) is (attr ``axis_role``, declared by ``Task.axis_role``):
#: a training-sample count, whose thumb tip is a critical data size, or a parameter of the
#: representation (Omnigrok's messiness m), over which the landscape is a map.
ROLE_SAMPLES, ROLE_REPRESENTATION = "samples", "representation"
AXIS_ROLES = (ROLE_SAMPLES, ROLE_REPRESENTATION)


def schema_version(attrs: dict) -> int:
    return int(attrs.get("schema_version", 1))


def cube_kind(attrs: dict, status_dims: tuple[str, ...], w_size: int) -> str:
    """The cube's ``kind`` attr; a version-1 cube's from its spec and dims, as it was read then."""
    if schema_version(attrs) >= 2:
        return attrs["kind"]
    import json  # version 1 only: the rule those cubes were read by

    constrained = json.loads(attrs.get("spec", "{}")).get("train", {}).get("constrain_norm", True)
    landscape = constrained and set(status_dims) == {"w", attrs["axis"], "seed"} and w_size >= 2
    return KIND_LANDSCAPE if landscape else KIND_DYNAMICS


def axis_role(attrs: dict) -> str:
    """The cube's ``axis_role`` attr; a version-1 cube's from its axis name (only messiness tasks had ``m``)."""
    if schema_version(attrs) >= 2:
        return attrs["axis_role"]
    return ROLE_REPRESENTATION if attrs.get("axis") == "m" else ROLE_SAMPLES


def reference_predictors(attrs: dict, variables: set[str]) -> tuple[str, ...]:
    """The reference predictors a dynamics cube compares its runs with (attr ``reference_predictors``,
    e.g. the Dichotomy tasks' kernel and rich limits); a version-1 cube's from its cosine curves."""
    if schema_version(attrs) >= 2:
        return tuple(attrs.get("reference_predictors", ()))
    return ("kernel", "rich") if {"cos_kernel_curve", "cos_rich_curve"} <= variables else ()


def task_ref(attrs: dict) -> object:
    """The registered name or import path a cube's task was resolved from: attr ``task_ref``
    (``task`` is the task's own name), or ``task`` in cubes made before task_ref existed."""
    return attrs.get("task_ref", attrs.get("task"))


#: The cube variable of the measured transition (the metric jump), and what its attrs call it.
TRANSITION = "t_transition"
TRANSITION_DEFINITION = ("first eval step from which on the test metric stays nearer the rich reference's test level "
                         "than the kernel reference's, after an eval nearer the kernel one (it crosses their midpoint "
                         "for good): landscape.dichotomy.metric_jump; NaN: no such crossing")


def reference_metric(values: Collection[str]) -> str | None:
    """The test metric a run compares with its references' (``kernel_<metric>`` and ``rich_<metric>``
    among a cube's or task's values): the loss for regression, the error for classification; None
    without references."""
    for metric in ("test_loss", "test_err"):
        if f"kernel_{metric}" in values and f"rich_{metric}" in values:
            return metric
    return None


#: Test-error levels of the paper's thumb contours (Fig 3b).
DEFAULT_LEVELS = (0.1, 0.2, 0.3, 0.4)
#: What figures and summaries may read, by the name in the variables and in words.
FIGURE_METRICS = {"err": "error", "loss": "loss"}


def checked_levels(metric: str, levels: Sequence[float] | None) -> list[float]:
    """The contour levels of a figure metric as a list (what a cube records): ``levels``, or for
    "err" without levels the paper's :data:`DEFAULT_LEVELS`. A loss has units and no default."""
    if metric not in FIGURE_METRICS:
        raise UserError(f"figure_metric {metric!r} must be one of {', '.join(FIGURE_METRICS)}")
    if levels is None:
        if metric == "loss":
            raise UserError("figure_metric 'loss' needs figure_levels: a loss has no default scale")
        levels = DEFAULT_LEVELS
    levels = [float(x) for x in levels]
    if not levels:
        raise UserError("figure_levels is empty: give at least one contour level")
    for x in levels:
        validate_level(f"test_{metric}", x)
    return levels


def validate_level(var: str, level: float) -> None:
    """An error rate lies in (0, 1); a level outside can never describe a contour of it."""
    if var.endswith("_err") and not 0 < level < 1:
        raise UserError(f"level {level:g} for {var} must lie strictly between 0 and 1")
    if not level > 0:
        raise UserError(f"level {level:g} for {var} must be positive")


@dataclass(frozen=True)
class Quantity:
    """A per-cell measurement as the cube holds it: variable ``name`` over the cell dims plus its own
    ``dims`` (an eigenvalue index, slice coordinates, ...), the value at the cell's end; with
    ``curve``, also ``<name>_curve`` over step, NaN at evals where it was not measured.

    Declared by the measurement (landscape.measures.hook), so the store writes what it declares and
    the readers learn a measurement's dims from the cube alone. ``dtype`` is the stored float type:
    float64, or float32 for values that are float32 already (stored parameters keep their bits)."""

    name: str
    long_name: str
    dims: tuple[str, ...] = ()
    units: str = "1"
    curve: bool = False
    dtype: str = "float64"


@dataclass
class CellResult:
    """One finished cell as a worker sends it back and the store writes it: a few KB."""

    eval_steps: np.ndarray  # the cell's own eval steps (a subset of the cube's step coordinate)
    curves: np.ndarray  # (len(CURVES), n_evals), NaN where not reached
    layer_norms: np.ndarray  # (parameter groups, n_evals): norm of each Task.parameter_groups group
    norm: float
    steps: int
    seconds: float
    status: int
    #: The task's ``extra_curves`` (name -> values at each eval) and ``extra_values``; empty for most tasks.
    extra_curves: dict[str, np.ndarray] = field(default_factory=dict)
    extra_values: dict[str, float] = field(default_factory=dict)
    #: Each declared Quantity's value at the cell's end, shaped by its dims (NaN: not measured, a
    #: diverged cell), and for curve quantities its values at each eval (dims + n_evals).
    measures: dict[str, np.ndarray] = field(default_factory=dict)
    measure_curves: dict[str, np.ndarray] = field(default_factory=dict)
    measure_dims: dict[str, tuple[str, ...]] = field(default_factory=dict)  # each measure's own dims
