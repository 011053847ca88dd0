"""Names and codes of the cube that both the engine and the torch-free readers (analysis, plots) use."""

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


def task_ref(attrs: dict) -> object:
    """The registered name or import path a cube's task was resolved from: attr ``task_ref``
    (``task`` is the task's own name), or ``task`` in cubes made before task_ref existed."""
    return attrs.get("task_ref", attrs.get("task"))
