"""Training cells: one loop (loop.py) over two backends, one model (single.py) and stacked models
under vmap (stacked.py); the optimizer chain (optim.py), the step and eval schedule (steps.py) and
the device (device.py)."""
from landscape.train.checks import check_outputs, check_task_outputs
from landscape.train.device import check_device, device_kind, device_name, resolve_device
from landscape.train.loop import PROGRESS_EVERY, CellResult, converged, measure, run_cells
from landscape.train.optim import make_optimizer, make_scheduler
from landscape.train.single import EVAL_CHUNK, evaluate, group_norms, init_cell, train_cell
from landscape.train.stacked import train_cells
from landscape.train.steps import (
    BatchOrder, cell_eval_steps, cell_steps, eval_rows, eval_steps, full_batch, minibatches, rows_per_step,
    seed_step, step_seed, steps_per_epoch,
)

__all__ = [
    "BatchOrder", "CellResult", "EVAL_CHUNK", "PROGRESS_EVERY", "cell_eval_steps", "cell_steps", "check_device",
    "check_outputs", "check_task_outputs",
    "converged", "device_kind", "device_name", "eval_rows", "eval_steps", "evaluate", "full_batch", "group_norms",
    "init_cell", "make_optimizer", "make_scheduler", "measure", "minibatches", "resolve_device", "rows_per_step",
    "run_cells", "seed_step", "step_seed", "steps_per_epoch", "train_cell", "train_cells",
]
