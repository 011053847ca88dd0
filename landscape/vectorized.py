"""Training many cells at once as one batched model: the fast path of the grid runner.

Cells of one batch share the task's architecture, one TrainConfig and one eval schedule; each
keeps its own norm target ``w``, init seed, training split and minibatch order, exactly as
``train.train_cell`` would give it, and nothing it computes depends on its batch-mates (their
losses are summed, so each cell's gradient is its own). ``torch.func.vmap`` runs the task's own
model over the stacked parameters and buffers, in train mode for steps and in eval mode for
evals, so any model that is a function of its parameters and buffers batches; whether a task's
model does is decided by the runner's probe (landscape.batching).

Layout, chosen for a short CPU inner loop (no per-step Python work per cell):
- one contiguous leaf per model parameter, shaped (cells, *shape); 2-D weights are stored
  transposed, (cells, in, out), so ``x @ W.T`` is a plain bmm on contiguous memory and autograd
  hands back each weight gradient contiguous, with no copies;
- buffers (BatchNorm's running statistics) stacked the same way, updated in place by train-mode
  forwards only;
- one fused AdamW/Adam/SGD kernel updates every leaf (elementwise, so per-cell exact);
- the norm projection is a reduction per cell slice and one foreach multiply;
- data: the distinct training sets of the batch are concatenated once into a pool and each cell
  draws its rows through its own index tensor (offset into the pool), so cells with different N
  share a batch without padded copies; a step gathers all cells' minibatches with one index_select;
- random layers (Dropout) draw one mask for the batch (vmap's ``randomness="same"``) from the
  stream ``train.step_seed`` of the batch's seed: the mask each cell gets alone. Batches of a
  random model therefore hold one seed (the planner sees to it).
Cells that diverge or meet their stopping rule leave the batch at that eval (the leaves and the
optimizer state are compacted), so the cost follows the work still needed.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.func import functional_call, vmap

from landscape.dtypes import cast, torch_dtype
from landscape.spec import EvalConfig, TrainConfig
from landscape.tasks.base import Split, Task
from landscape.train import (
    _EVAL_CHUNK, CURVES, STATUS_DIVERGED, STATUS_DONE, BatchOrder, CellResult, cell_eval_steps, converged,
    check_outputs, eval_rows, full_batch, init_cell, make_optimizer, make_scheduler, step_seed, PROGRESS_EVERY,
)

#: Steps whose minibatch indices are drawn at once (bounds the index memory on long eval intervals).
_INDEX_CHUNK = 512


def rows_per_step(n: int, batch_size: int) -> int:
    """Rows a cell trains on per step: the minibatch, or its whole set when that is smaller."""
    return n if full_batch(n, batch_size) else batch_size


@dataclass
class _Cells:
    """The training state of the cells still in the batch: stacked leaves and their optimizer."""

    leaves: list[torch.Tensor]  # one per model parameter, (cells, *shape); 2-D ones transposed
    buffers: list[torch.Tensor]  # one per model buffer, (cells, *shape)
    opt: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.StepLR | None  # the lr step decay, stepped with opt
    ids: np.ndarray  # positions of these cells in the caller's lists
    w: torch.Tensor  # (cells,) norm targets
    offsets: torch.Tensor  # (cells, 1) first pool row of each cell's training set
    orders: list[BatchOrder | None]  # None: full batch


class _Model:
    """The task's architecture as a function of stacked parameters and buffers, plus the stacking rules."""

    def __init__(self, task: Task, model: torch.nn.Module, randomness: str):
        self.task = task
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
        self.loss = vmap(task.loss)
        self.loss_shared = vmap(task.loss, in_dims=(0, None))
        self.errors_shared = vmap(task.errors, in_dims=(0, None))

    def stack(self, models: list[torch.nn.Module], device: torch.device) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Leaves and buffers of the given per-cell models, in storage layout."""
        per_param = zip(*[[p.detach() for p in m.parameters()] for m in models])
        leaves = [torch.stack([p.t() if t else p for p in ps]).to(device).contiguous().requires_grad_()
                  for ps, t in zip(per_param, self.transposed)]
        per_buffer = zip(*[list(m.buffers()) for m in models])
        return leaves, [torch.stack(bs).to(device) for bs in per_buffer]

    def state(self, cells: _Cells) -> dict[str, torch.Tensor]:
        """The leaves as the model's parameters (2-D ones transposed back: views, no copies), and its buffers."""
        params = {n: (leaf.transpose(1, 2) if t else leaf) for n, leaf, t in zip(self.names, cells.leaves, self.transposed)}
        return {**params, **dict(zip(self.buffer_names, cells.buffers))}

    def leaf_norms(self, leaves: list[torch.Tensor]) -> torch.Tensor:
        """(parameters, cells) norm of each parameter of each cell: a reduction per slice."""
        return torch.stack([torch.linalg.vector_norm(leaf.detach().flatten(1), dim=1) for leaf in leaves])

    def norms(self, leaves: list[torch.Tensor]) -> torch.Tensor:
        """(cells,) global norm of each cell's constrained parameters."""
        per_leaf = [torch.linalg.vector_norm(leaves[i].flatten(1), dim=1) for i in self.constrained]
        return torch.linalg.vector_norm(torch.stack(per_leaf), dim=0)


def _optimizer(train: TrainConfig, leaves: list[torch.Tensor]) -> torch.optim.Optimizer:
    # Fused kernels need contiguous parameters, which the leaves are (see the module docstring).
    return make_optimizer(train, leaves, fused=True)


class _Projection:
    """Rescales each cell's constrained parameters back to its own norm after every step."""

    def __init__(self, model: _Model, cells: _Cells):
        self.model, self.w = model, cells.w
        self.leaves = [cells.leaves[i] for i in model.constrained]
        self.factor = torch.ones_like(cells.w)
        self.factor_views = [self.factor.view(-1, *[1] * (leaf.dim() - 1)) for leaf in self.leaves]

    @torch.no_grad()
    def __call__(self, cells: _Cells) -> None:
        norm = self.model.norms(cells.leaves)
        ok = (norm > 0) & torch.isfinite(norm)  # as project_to_sphere: leave a broken cell alone
        torch.where(ok, self.w / norm, torch.ones_like(norm), out=self.factor)
        torch._foreach_mul_(self.leaves, self.factor_views)


@torch.no_grad()
def _clip_gradients(cells: _Cells, max_norm: float) -> None:
    """Each cell's gradient scaled to global norm <= max_norm, as torch's clip_grad_norm_ does alone."""
    grads = [leaf.grad for leaf in cells.leaves if leaf.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads]), dim=0)
    factor = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, [factor.view(-1, *[1] * (g.dim() - 1)) for g in grads])


def train_cells(
    task: Task,
    splits: list[Split],
    ws: list[float],
    seeds: list[int],
    train: TrainConfig,
    evalc: EvalConfig,
    device: str | torch.device = "cpu",
    progress: Callable[[int], None] | None = None,
) -> list[CellResult]:
    """Train cells (split, w, seed) together; the same results as ``train_cell`` for each, in order.

    Every cell must train on the same number of rows per step (see ``rows_per_step``) and have the
    same eval steps; splits that are the same object are stored once. ``seconds`` of a cell is its
    share of the batch's wall time: each stretch between evals is divided equally among the cells
    still training. ``progress`` is called with the cell-steps done since its last call.
    """
    start = time.perf_counter()
    device = torch.device(device)
    count = len(splits)
    if not (count == len(ws) == len(seeds)) or count == 0:
        raise ValueError("train_cells needs one split, w and seed per cell, and at least one cell")
    rows = {rows_per_step(len(s.train_y), train.batch_size) for s in splits}
    if len(rows) > 1:
        raise ValueError(f"cells of one batch must train on equally many rows per step, got {sorted(rows)}")
    rows_n = rows.pop()
    schedules = {tuple(cell_eval_steps(train, evalc, len(s.train_y))) for s in splits}
    if len(schedules) > 1:
        raise ValueError("cells of one batch must share their eval steps")
    evals = np.asarray(schedules.pop())
    # One seed: random layers draw the mask that seed's cell draws alone. Mixed seeds: a random layer is an error.
    one_seed = len(set(seeds)) == 1
    dtype = torch_dtype(train.dtype)

    # Data: each distinct training set once on the device; a cell reaches its own by an offset.
    distinct = list({id(s.train_x): s for s in splits}.values())
    starts = np.cumsum([0] + [len(s.train_y) for s in distinct])
    offset_of = {id(s.train_x): int(o) for s, o in zip(distinct, starts)}
    pool_x = cast(torch.cat([s.train_x for s in distinct]), dtype).to(device)
    pool_y = cast(torch.cat([s.train_y for s in distinct]), dtype).to(device)
    # Eval sets: one device copy per distinct set; cells that share one are evaluated together.
    memo: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def eval_on_device(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if id(x) not in memo:
            pick = eval_rows(len(y), evalc.samples)
            memo[id(x)] = (cast(x[pick], dtype).to(device), cast(y[pick], dtype).to(device))
        return memo[id(x)]

    sets = [(eval_on_device(s.train_x, s.train_y), eval_on_device(s.test_x, s.test_y)) for s in splits]

    models = [init_cell(task, w, seed, train.dtype)[0] for w, seed in zip(ws, seeds)]
    fn = _Model(task, models[0], "same" if one_seed else "error")
    leaves, buffers = fn.stack(models, device)
    del models
    opt = _optimizer(train, leaves)
    cells = _Cells(
        leaves=leaves,
        buffers=buffers,
        opt=opt,
        scheduler=make_scheduler(opt, train),
        ids=np.arange(count),
        w=torch.tensor(ws, dtype=leaves[0].dtype, device=device),
        offsets=torch.tensor([[offset_of[id(s.train_x)]] for s in splits], device=device),
        orders=[None if full_batch(len(s.train_y), train.batch_size)
                else BatchOrder(len(s.train_y), train.batch_size, torch.Generator().manual_seed(seed))
                for s, seed in zip(splits, seeds)],
    )
    project = _Projection(fn, cells) if train.constrain_norm else None

    curves = np.full((count, len(CURVES), len(evals)), np.nan)
    layer_norms = np.full((count, len(fn.groups), len(evals)), np.nan)
    norm = np.full(count, np.nan)
    steps = np.zeros(count, dtype=np.int64)
    seconds = np.zeros(count)
    status = np.full(count, STATUS_DONE, dtype=np.int8)
    step, mark = 0, start
    for k, at in enumerate(evals):
        while step < at:
            chunk = min(at - step, _INDEX_CHUNK)
            _train_steps(fn, cells, project, pool_x, pool_y, _indices(cells, chunk, rows_n, device), train,
                         step, seeds[0], progress)
            step += chunk
        curves[cells.ids, :, k] = _evaluate(fn, cells, [sets[i] for i in cells.ids])
        per_leaf = fn.leaf_norms(cells.leaves)
        layer_norms[cells.ids, :, k] = torch.stack(
            [torch.linalg.vector_norm(per_leaf[group], dim=0) for group in fn.groups], dim=1).cpu().numpy()
        diverged = ~np.isfinite(curves[cells.ids, 0, k]) | ~np.isfinite(curves[cells.ids, 1, k])
        stopped = converged(curves[cells.ids, 0, : k + 1], train) | (at == evals[-1])
        now = time.perf_counter()
        seconds[cells.ids] += (now - mark) / len(cells.ids)
        mark = now
        leaving = diverged | stopped
        if leaving.any():
            ids = cells.ids[leaving]
            status[cells.ids[diverged]] = STATUS_DIVERGED
            steps[ids] = at
            norm[ids] = curves[ids, CURVES.index("norm"), k]
            if leaving.all():
                break
            cells = _keep(cells, ~leaving, train)
            project = _Projection(fn, cells) if train.constrain_norm else None
    return [CellResult(eval_steps=evals, curves=curves[i], layer_norms=layer_norms[i], norm=float(norm[i]),
                       steps=int(steps[i]), seconds=float(seconds[i]), status=int(status[i])) for i in range(count)]


def _indices(cells: _Cells, chunk: int, rows: int, device: torch.device) -> torch.Tensor:
    """(chunk, cells * rows) pool rows of the next ``chunk`` steps of every cell."""
    local = torch.stack([
        torch.arange(rows).expand(chunk, rows) if order is None else order.take(chunk) for order in cells.orders
    ], dim=1).to(device)  # (chunk, cells, rows)
    return (local + cells.offsets).flatten(1)


def _train_steps(fn: _Model, cells: _Cells, project: Callable[[_Cells], None] | None,
                 pool_x: torch.Tensor, pool_y: torch.Tensor, index: torch.Tensor, train: TrainConfig,
                 first_step: int, seed: int, progress: Callable[[int], None] | None) -> None:
    n, reported = len(cells.ids), 0
    for i, rows in enumerate(index):
        if progress is not None and i - reported >= PROGRESS_EVERY:
            progress((i - reported) * n)
            reported = i
        xb = pool_x.index_select(0, rows).view(n, -1, *pool_x.shape[1:])
        yb = pool_y.index_select(0, rows).view(n, -1, *pool_y.shape[1:])
        torch.default_generator.manual_seed(step_seed(seed, first_step + i))
        loss = fn.loss(fn.forward(fn.state(cells), xb), yb).sum()  # cells' losses: independent grads
        cells.opt.zero_grad(set_to_none=True)
        loss.backward()
        if train.grad_clip:
            _clip_gradients(cells, train.grad_clip)
        cells.opt.step()
        if cells.scheduler is not None:
            cells.scheduler.step()
        if project is not None:
            project(cells)
    if progress is not None:
        progress((len(index) - reported) * n)


@torch.no_grad()
def _evaluate(fn: _Model, cells: _Cells, sets: list[tuple[tuple[torch.Tensor, torch.Tensor], ...]]) -> np.ndarray:
    """(cells, len(CURVES)) train loss, test loss, train err, test err and norm of every cell, in eval mode.

    Cells that share an eval set (the same tensor) are evaluated together on it, in row chunks;
    the sums follow ``train.evaluate`` (chunk means weighted by chunk length).
    """
    out = np.empty((len(cells.ids), len(CURVES)))
    state = fn.state(cells)
    device = cells.leaves[0].device
    for which in (0, 1):  # the training set, then the test set
        groups: dict[int, list[int]] = {}
        for i, s in enumerate(sets):
            groups.setdefault(id(s[which][0]), []).append(i)
        for members in groups.values():
            x, y = sets[members[0]][which]
            pick = None if len(members) == len(sets) else torch.tensor(members, device=device)
            sub = state if pick is None else {k: v.index_select(0, pick) for k, v in state.items()}
            step = max(64, _EVAL_CHUNK // len(members))  # bounds activations at about one eval chunk
            loss_sum = torch.zeros(len(members), dtype=torch.float64, device=device)
            err_sum = torch.zeros_like(loss_sum)
            for lo in range(0, len(x), step):
                xb, yb = x[lo : lo + step], y[lo : lo + step]
                pred = fn.forward_shared(sub, xb)
                loss, errors = fn.loss_shared(pred, yb), fn.errors_shared(pred, yb)
                check_outputs(fn.task, loss, errors, len(xb), len(members))
                loss_sum += loss.double() * len(xb)
                err_sum += errors.double().sum(1)
            out[members, which] = (loss_sum / len(x)).cpu().numpy()
            out[members, 2 + which] = (err_sum / len(x)).cpu().numpy()
    out[:, 4] = fn.norms(cells.leaves).cpu().numpy()
    return out


def _keep(cells: _Cells, keep: np.ndarray, train: TrainConfig) -> _Cells:
    """The batch without the cells that left it: leaves, buffers and optimizer state sliced, order kept."""
    pick = torch.from_numpy(np.flatnonzero(keep)).to(cells.leaves[0].device)
    leaves = [leaf.detach().index_select(0, pick).requires_grad_() for leaf in cells.leaves]
    opt = _optimizer(train, leaves)
    for old, new in zip(cells.leaves, leaves):
        state = cells.opt.state.get(old)
        if state:
            opt.state[new] = {k: (v.index_select(0, pick) if v.dim() else v.clone()) for k, v in state.items()}
    return _Cells(
        leaves=leaves,
        buffers=[b.index_select(0, pick) for b in cells.buffers],
        opt=opt,
        scheduler=None if cells.scheduler is None else make_scheduler(opt, train, cells.scheduler.last_epoch),
        ids=cells.ids[keep],
        w=cells.w.index_select(0, pick),
        offsets=cells.offsets.index_select(0, pick),
        orders=[o for o, kept in zip(cells.orders, keep) if kept],
    )
