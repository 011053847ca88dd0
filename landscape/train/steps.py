"""When a cell is evaluated, how many steps it trains, and the order of its minibatches.

Everything here is a function of the spec and the cell's seed only, drawn on the CPU: the order of
a cell's minibatches is the same on every device and in either backend (landscape.train.loop).
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from landscape.spec import EvalConfig, TrainConfig


def eval_steps(steps: int, evalc: EvalConfig, per_epoch: int = 1) -> np.ndarray:
    """Steps at which a cell is evaluated: 0, then every k steps, log-spaced or at every epoch's end
    (``per_epoch`` steps apart), and always the last."""
    if evalc.every == "log":
        # Log spacing keeps a 10^5-step run to a few dozen evals; rounding merges the early ones.
        grid = np.rint(np.logspace(0, np.log10(steps), evalc.points)).astype(np.int64)
    else:
        grid = np.arange(0, steps + 1, per_epoch if evalc.every == "epoch" else evalc.every)
    return np.unique(np.concatenate([[0], grid, [steps]]))


def full_batch(n: int, batch_size: int) -> bool:
    return batch_size == 0 or batch_size >= n


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Optimizer steps in one pass over n samples (an epoch drops its last incomplete minibatch)."""
    return 1 if full_batch(n, batch_size) else n // batch_size


def rows_per_step(n: int, batch_size: int) -> int:
    """Rows a cell trains on per step: the minibatch, or its whole set when that is smaller."""
    return n if full_batch(n, batch_size) else batch_size


def cell_steps(train: TrainConfig, n: int) -> int:
    """Optimizer steps of a cell with n training samples: ``train.steps``, or ``train.epochs`` passes."""
    return train.epochs * steps_per_epoch(n, train.batch_size) if train.epochs else train.steps


def cell_eval_steps(train: TrainConfig, evalc: EvalConfig, n: int) -> np.ndarray:
    """The eval steps of a cell with n training samples; the last one is its step budget."""
    return eval_steps(cell_steps(train, n), evalc, steps_per_epoch(n, train.batch_size))


def step_seed(seed: int, step: int) -> int:
    """Seed of the random layers (Dropout) at one step of a cell: its own stream, whatever else runs."""
    return (int(seed) * 1_000_003 + int(step)) % (1 << 63)


def seed_step(seed: int, step: int, device: torch.device) -> None:
    """Seed the generator that the random layers of a model on ``device`` draw from, for one step."""
    torch.default_generator.manual_seed(step_seed(seed, step))
    if device.type == "cuda":  # random layers on a GPU draw from that GPU's own generator
        index = torch.cuda.current_device() if device.index is None else device.index
        torch.cuda.default_generators[index].manual_seed(step_seed(seed, step))


class BatchOrder:
    """A cell's minibatch indices: shuffled epochs (each drops its last incomplete batch), cycled.

    ``take(k)`` returns the next ``k`` steps' indices as one (k, batch_size) tensor, so the stacked
    backend draws many steps at once; ``minibatches`` yields the same order step by step.
    """

    def __init__(self, n: int, batch_size: int, generator: torch.Generator):
        self.n, self.batch_size, self.generator = n, batch_size, generator
        self.rows = torch.empty(0, batch_size, dtype=torch.long)

    def take(self, k: int) -> torch.Tensor:
        per_epoch = self.n // self.batch_size
        epochs = [self.rows]
        have = len(self.rows)
        while have < k:
            perm = torch.randperm(self.n, generator=self.generator)
            epochs.append(perm[: per_epoch * self.batch_size].view(per_epoch, self.batch_size))
            have += per_epoch
        rows = torch.cat(epochs) if len(epochs) > 1 else self.rows
        self.rows = rows[k:]
        return rows[:k]


def minibatches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor | None]:
    """Index tensors of shuffled epochs, cycled; ``None`` means the full batch."""
    if full_batch(n, batch_size):
        while True:
            yield None
    order = BatchOrder(n, batch_size, generator)
    while True:
        yield from order.take(n // batch_size)


def eval_rows(n: int, samples: int) -> torch.Tensor:
    """The rows evaluated at each eval step: all n, or a fixed random subset of ``samples`` rows."""
    if samples == 0 or samples >= n:
        return torch.arange(n)
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))[:samples]
