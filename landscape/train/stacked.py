"""The stacked backend: many cells trained at once as one batched model, the fast path of the grid.

Cells of one cell batch share the task's architecture, one TrainConfig and one eval schedule; each
keeps its own norm target ``w``, init seed, training split and minibatch order, exactly as the
one-model backend would give it, and nothing it computes depends on its batch-mates (their losses
are summed, so each cell's gradient is its own). ``torch.func.vmap`` runs the task's own model over
the stacked parameters and buffers, in train mode for steps and in eval mode for evals, so any model
that is a function of its parameters and buffers batches; whether a task's model does is decided by
the runner's probe (landscape.train.probe).

Layout, chosen for a short CPU inner loop (no per-step Python work per cell):
- one contiguous leaf per model parameter, shaped (cells, *shape); 2-D weights are stored
  transposed, (cells, in, out), so ``x @ W.T`` is a plain bmm on contiguous memory and autograd
  hands back each weight gradient contiguous, with no copies;
- buffers (BatchNorm's running statistics) stacked the same way, updated in place by train-mode
  forwards only;
- one fused AdamW/Adam/SGD kernel updates every leaf (elementwise, so per-cell exact);
- the norm projection is a reduction per cell slice and one foreach multiply;
- data: the distinct training sets of the cell batch are concatenated once into a pool and each
  cell draws its rows through its own index tensor (offset into the pool), so cells with different
  N share a cell batch without padded copies; a step gathers all cells' minibatches with one
  index_select;
- random layers (Dropout) draw one mask for the cell batch (vmap's ``randomness="same"``) from the
  stream ``step_seed`` of the cell batch's seed: the mask each cell gets alone. Cell batches of a
  random model therefore hold one seed (the planner sees to it).
Cells that diverge or meet their stopping rule leave at that eval (the leaves and the optimizer
state are compacted), so the cost follows the work still needed.
"""
from __future__ import annotations

import copy
import time
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.func import functional_call, vmap

from landscape.dtypes import cast, torch_dtype
from landscape.cube.schema import CURVES
from landscape.interventions.gradients import carry_state
from landscape.measures.functional import LossFn
from landscape.measures.hook import CellMeasure
from landscape.spec import EvalConfig, TrainConfig
from landscape.tasks.base import Split, Task
from landscape.train.checks import check_outputs
from landscape.train.loop import CellResult, run_cells
from landscape.train.objective import objective
from landscape.train.optim import clip_each_cell, innermost, make_chain, make_scheduler
from landscape.train.single import EVAL_CHUNK, init_cell
from landscape.train.steps import BatchOrder, cell_eval_steps, eval_rows, full_batch, rows_per_step, seed_step


class _Model:
    """The task's architecture as a function of stacked parameters and buffers, plus the stacking rules."""

    def __init__(self, task: Task, model: torch.nn.Module, randomness: str, loss: LossFn):
        self.names = [n for n, _ in model.named_parameters()]
        self.buffer_names = [n for n, _ in model.named_buffers()]
        params = [p for _, p in model.named_parameters()]
        self.transposed = [p.dim() == 2 for p in params]
        index = {id(p): i for i, p in enumerate(params)}
        self.constrained = [index[id(p)] for p in task.constrained_parameters(model)]
        self.groups = [[index[id(p)] for p in ps] for ps in task.parameter_groups(model).values()]
        train_base = copy.deepcopy(model).to("meta").train()  # structure only; weights come from the leaves
        eval_base = copy.deepcopy(train_base).eval()

        def cell(base: torch.nn.Module) -> Callable[[dict[str, torch.Tensor], torch.Tensor], torch.Tensor]:
            return lambda state, x: functional_call(base, state, (x,))

        self.forward = vmap(cell(train_base), randomness=randomness)  # every cell its own rows
        self.forward_shared = vmap(cell(eval_base), in_dims=(0, None))  # eval: every cell the same rows
        self.loss = vmap(loss)
        self.loss_shared = vmap(loss, in_dims=(0, None))
        self.errors_shared = vmap(task.errors, in_dims=(0, None))

    def stack(self, models: list[torch.nn.Module], device: torch.device) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Leaves and buffers of the given per-cell models, in storage layout."""
        per_param = zip(*[[p.detach() for p in m.parameters()] for m in models])
        leaves = [torch.stack([p.t() if t else p for p in ps]).to(device).contiguous().requires_grad_()
                  for ps, t in zip(per_param, self.transposed)]
        per_buffer = zip(*[list(m.buffers()) for m in models])
        return leaves, [torch.stack(bs).to(device) for bs in per_buffer]

    def norms(self, leaves: list[torch.Tensor]) -> torch.Tensor:
        """(cells,) global norm of each cell's constrained parameters."""
        per_leaf = [torch.linalg.vector_norm(leaves[i].flatten(1), dim=1) for i in self.constrained]
        return torch.linalg.vector_norm(torch.stack(per_leaf), dim=0)


class StackedModels:
    """The loop's backend for a cell batch (landscape.train.loop.Backend)."""

    def __init__(self, task: Task, splits: list[Split], ws: list[float], seeds: list[int], train: TrainConfig,
                 evalc: EvalConfig, device: torch.device):
        self.task, self.count, self.train, self.device = task, len(splits), train, device
        rows = {rows_per_step(len(s.train_y), train.batch_size) for s in splits}
        if len(rows) > 1:
            raise ValueError(f"cells of one cell batch must train on equally many rows per step, got {sorted(rows)}")
        self.rows = rows.pop()
        # One seed: random layers draw the mask that seed's cell draws alone. Mixed seeds: a random layer is an error.
        self.seed = seeds[0]
        dtype = torch_dtype(train.dtype)

        # Data: each distinct training set once on the device; a cell reaches its own by an offset.
        distinct = list({id(s.train_x): s for s in splits}.values())
        starts = np.cumsum([0] + [len(s.train_y) for s in distinct])
        offset_of = {id(s.train_x): int(o) for s, o in zip(distinct, starts)}
        self.pool_x = cast(torch.cat([s.train_x for s in distinct]), dtype).to(device)
        self.pool_y = cast(torch.cat([s.train_y for s in distinct]), dtype).to(device)
        # Eval sets: one device copy per distinct set; cells that share one are evaluated together.
        memo: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

        def eval_on_device(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if id(x) not in memo:
                pick = eval_rows(len(y), evalc.samples)
                memo[id(x)] = (cast(x[pick], dtype).to(device), cast(y[pick], dtype).to(device))
            return memo[id(x)]

        self.sets = [(eval_on_device(s.train_x, s.train_y), eval_on_device(s.test_x, s.test_y)) for s in splits]

        models = [init_cell(task, w, seed, train.dtype)[0] for w, seed in zip(ws, seeds)]
        self.fn = _Model(task, models[0], "same" if len(set(seeds)) == 1 else "error", objective(task, train))
        self.groups = len(self.fn.groups)
        self.leaves, self.buffers = self.fn.stack(models, device)
        self.template = models[0]  # the CPU module that ``models`` fills with one cell's state
        del models
        self.opt = make_chain(train, self.leaves, fused=True, cells=True)  # fused: the leaves are contiguous
        self.scheduler = make_scheduler(innermost(self.opt), train)
        self.ids = np.arange(self.count)  # positions of the cells still here among the given ones
        self.w = torch.tensor(ws, dtype=self.leaves[0].dtype, device=device)
        self.offsets = torch.tensor([[offset_of[id(s.train_x)]] for s in splits], device=device)
        # The minibatch orders are drawn on the CPU, so they are the same on every device; indices move.
        self.orders = [None if full_batch(len(s.train_y), train.batch_size)
                       else BatchOrder(len(s.train_y), train.batch_size, torch.Generator().manual_seed(seed))
                       for s, seed in zip(splits, seeds)]
        self._projection()

    def _projection(self) -> None:
        """The views that rescale each cell's constrained parameters back to its own norm."""
        self.constrained = [self.leaves[i] for i in self.fn.constrained]
        self.factor = torch.ones_like(self.w)
        self.factor_views = [self.factor.view(-1, *[1] * (leaf.dim() - 1)) for leaf in self.constrained]

    @torch.no_grad()
    def _project(self) -> None:
        norm = self.fn.norms(self.leaves)
        ok = (norm > 0) & torch.isfinite(norm)  # as project_to_sphere: leave a broken cell alone
        torch.where(ok, self.w / norm, torch.ones_like(norm), out=self.factor)
        torch._foreach_mul_(self.constrained, self.factor_views)

    def _state(self) -> dict[str, torch.Tensor]:
        """The leaves as the model's parameters (2-D ones transposed back: views, no copies), and its buffers."""
        fn = self.fn
        params = {n: (leaf.transpose(1, 2) if t else leaf) for n, leaf, t in zip(fn.names, self.leaves, fn.transposed)}
        return {**params, **dict(zip(fn.buffer_names, self.buffers))}

    def _indices(self, k: int) -> torch.Tensor:
        """(k, cells * rows) pool rows of the next ``k`` steps of every cell."""
        local = torch.stack([
            torch.arange(self.rows).expand(k, self.rows) if order is None else order.take(k) for order in self.orders
        ], dim=1).to(self.device)  # (k, cells, rows)
        return (local + self.offsets).flatten(1)

    def advance(self, first_step: int, k: int) -> None:
        n, fn, pool_x, pool_y = len(self.ids), self.fn, self.pool_x, self.pool_y
        for i, rows in enumerate(self._indices(k)):
            xb = pool_x.index_select(0, rows).view(n, -1, *pool_x.shape[1:])
            yb = pool_y.index_select(0, rows).view(n, -1, *pool_y.shape[1:])
            seed_step(self.seed, first_step + i, self.device)
            loss = fn.loss(fn.forward(self._state(), xb), yb).sum()  # cells' losses: independent grads
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            if self.train.grad_clip:
                clip_each_cell(self.leaves, self.train.grad_clip)
            self.opt.step()
            if self.scheduler is not None:
                self.scheduler.step()
            if self.train.constrain_norm:
                self._project()

    @torch.no_grad()
    def evaluate(self) -> np.ndarray:
        """Cells that share an eval set (the same tensor) are evaluated together on it, in row chunks;
        the sums follow ``single.evaluate`` (chunk means weighted by chunk length)."""
        fn, sets = self.fn, [self.sets[i] for i in self.ids]
        out = np.empty((len(self.ids), len(CURVES)))
        state = self._state()
        for which in (0, 1):  # the training set, then the test set
            groups: dict[int, list[int]] = {}
            for i, s in enumerate(sets):
                groups.setdefault(id(s[which][0]), []).append(i)
            for members in groups.values():
                x, y = sets[members[0]][which]
                pick = None if len(members) == len(sets) else torch.tensor(members, device=self.device)
                sub = state if pick is None else {k: v.index_select(0, pick) for k, v in state.items()}
                step = max(64, EVAL_CHUNK // len(members))  # bounds activations at about one eval chunk
                loss_sum = torch.zeros(len(members), dtype=torch.float64, device=self.device)
                err_sum = torch.zeros_like(loss_sum)
                for lo in range(0, len(x), step):
                    xb, yb = x[lo : lo + step], y[lo : lo + step]
                    pred = fn.forward_shared(sub, xb)
                    loss, errors = fn.loss_shared(pred, yb), fn.errors_shared(pred, yb)
                    check_outputs(self.task, loss, errors, len(xb), len(members))
                    loss_sum += loss.double() * len(xb)
                    err_sum += errors.double().sum(1)
                out[members, which] = (loss_sum / len(x)).cpu().numpy()
                out[members, 2 + which] = (err_sum / len(x)).cpu().numpy()
        out[:, 4] = fn.norms(self.leaves).cpu().numpy()
        return out

    def group_norms(self) -> np.ndarray:
        per_leaf = torch.stack([torch.linalg.vector_norm(leaf.detach().flatten(1), dim=1) for leaf in self.leaves])
        return torch.stack([torch.linalg.vector_norm(per_leaf[group], dim=0) for group in self.fn.groups],
                           dim=1).cpu().numpy()

    @torch.no_grad()
    def models(self) -> Iterator[torch.nn.Module]:
        """One CPU module, filled with each cell's slice of the stacked state in turn."""
        model = self.template.eval()
        params, buffers = list(model.parameters()), list(model.buffers())
        for i in range(len(self.ids)):
            for p, leaf, t in zip(params, self.leaves, self.fn.transposed):
                p.copy_(leaf[i].t() if t else leaf[i])
            for b, stacked in zip(buffers, self.buffers):
                b.copy_(stacked[i])
            yield model

    def optimizer_state(self, position: int) -> dict[str, dict[str, torch.Tensor]]:
        """The cell's rows of each leaf's state, 2-D ones transposed back; 0-d entries (Adam's shared
        step count) as they are."""
        def row(v: torch.Tensor, transposed: bool) -> torch.Tensor:
            if not v.dim():
                return v.clone()
            return (v[position].t() if transposed else v[position]).clone()

        return {name: {k: row(v, t) for k, v in self.opt.state[leaf].items()}
                for name, leaf, t in zip(self.fn.names, self.leaves, self.fn.transposed) if self.opt.state.get(leaf)}

    def keep(self, keep: np.ndarray) -> None:
        """Leaves, buffers and optimizer state sliced to the cells kept, order kept."""
        pick = torch.from_numpy(np.flatnonzero(keep)).to(self.device)
        leaves = [leaf.detach().index_select(0, pick).requires_grad_() for leaf in self.leaves]
        opt = make_chain(self.train, leaves, fused=True, cells=True)
        carry_state(self.opt, opt, self.leaves, leaves, lambda v: v.index_select(0, pick))  # Adam's moments, Grokfast's EMA
        if self.scheduler is not None:
            self.scheduler = make_scheduler(innermost(opt), self.train, self.scheduler.last_epoch)
        self.leaves, self.opt = leaves, opt
        self.buffers = [b.index_select(0, pick) for b in self.buffers]
        self.ids = self.ids[keep]
        self.w = self.w.index_select(0, pick)
        self.offsets = self.offsets.index_select(0, pick)
        self.orders = [o for o, kept in zip(self.orders, keep) if kept]
        self._projection()


def train_cells(
    task: Task,
    splits: list[Split],
    ws: list[float],
    seeds: list[int],
    train: TrainConfig,
    evalc: EvalConfig,
    device: str | torch.device = "cpu",
    progress: Callable[[int], None] | None = None,
    measured: bool = True,
    measures: Sequence[CellMeasure] = (),
) -> list[CellResult]:
    """Train cells (split, w, seed) together; the same results as ``train_cell`` for each, in order.

    Every cell must train on the same number of rows per step (see ``rows_per_step``) and have the
    same eval steps; splits that are the same object are stored once. ``progress`` is called with
    the cell-steps done since its last call; ``measured``: with the task's extra curves and values
    and the run's ``measures`` (landscape.measures.hook).
    """
    start = time.perf_counter()
    if not (len(splits) == len(ws) == len(seeds)) or not splits:
        raise ValueError("train_cells needs one split, w and seed per cell, and at least one cell")
    schedules = {tuple(cell_eval_steps(train, evalc, len(s.train_y))) for s in splits}
    if len(schedules) > 1:
        raise ValueError("cells of one cell batch must share their eval steps")
    backend = StackedModels(task, splits, ws, seeds, train, evalc, torch.device(device))
    cast_once: dict[int, Split] = {}  # the task's measurements see each cell's split in train.dtype, as alone
    for s in splits:
        if id(s) not in cast_once:
            cast_once[id(s)] = cast(s, torch_dtype(train.dtype))
    return run_cells(backend, task, [cast_once[id(s)] for s in splits], np.asarray(schedules.pop()), train, start,
                     progress, measured, measures, list(zip(ws, seeds)), backend.device)
