"""Plain-text summary of a cube, for ``landscape info``."""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator

import numpy as np
import xarray as xr

from landscape.read.analysis import (FIGURE_METRICS, critical_data_size, critical_norm, goldilocks_zone, is_landscape,
                                is_loss, lu_mismatch, metric_of, over_representation, seed_summary)
from landscape.cube.schema import TRANSITION
from landscape.read.curvature import SPACES, has_curvature, per_axis, per_cell
from landscape.read.dichotomy import cube_transition
from landscape.read.progress import mark_steps, marks_of
from landscape.errors import printable
from landscape.cube.schema import STATUS_DIVERGED, STATUS_DONE, fixed_values, task_ref


def describe(ds: xr.Dataset) -> str:
    status = ds["status"].values
    done, diverged = int((status == STATUS_DONE).sum()), int((status == STATUS_DIVERGED).sum())
    lines = [
        f"task:        {ds.attrs['task']}" + (f"   ({ref})" if (ref := task_ref(ds.attrs)) != ds.attrs["task"] else ""),
        f"data source: {ds.attrs['data_source']}",
        "dims:        " + ", ".join(f"{d}={n}" for d, n in ds.sizes.items()),
        f"w0:          {ds.attrs['w0']:.4g}   (alpha = w / w0)",
        f"progress:    {done + diverged}/{status.size} cells finished ({done} done, {diverged} diverged)",
        f"created:     {ds.attrs['created']}",
        f"training:    {_training_path(ds.attrs)}",
    ]
    if "device" in ds.attrs:  # cubes before the device was recorded lack it
        lines.append(f"device:      {ds.attrs['device']} ({ds.attrs['device_name']})")
    lines += [f"fixed:       {name} = {value}" for name, value in fixed_values(ds.attrs).items()]
    body = _landscape_tables(ds) if is_landscape(ds) else _dynamics_table(ds)
    if has_curvature(ds):
        body += _curvature_table(ds) if is_landscape(ds) else _run_curvature_table(ds)
    return "\n".join(printable(line) for line in lines + body)  # a cube's attrs are untrusted text


def _training_path(attrs: dict) -> str:
    """Which trainer ran the cells and why (cubes made before the batching probe lack the attrs)."""
    if "batched" not in attrs:
        return "not recorded"
    path = f"batched, up to {attrs['batch_cells']} cells per batch" if attrs["batched"] else "per cell"
    return f"{path}, {attrs.get('dtype', 'float32')} ({attrs['batching']})"


def _dynamics_table(ds: xr.Dataset) -> list[str]:
    """One row per run: its settings, when it fit and generalized, and where it ended (on the cube's metric)."""
    level = json.loads(ds.attrs["spec"])["eval"]["level"]
    metric = metric_of(ds)
    transition = cube_transition(ds)
    if transition is not None:
        ds = ds.assign({TRANSITION: transition})
    times = ("t_fit", "t_gen", *([TRANSITION] if transition is not None else []))
    final = [(name, max(8, len(name))) for name in (*times, f"train_{metric}", f"test_{metric}", "norm")]
    header, rows = _run_rows(ds)
    lines = ["", f"runs (t_fit / t_gen: first eval step with train / test accuracy >= {level:g}; '-' = never):",
             *([f"{TRANSITION}: {transition.attrs['definition']}"] if transition is not None else []),
             header + "  " + "  ".join(f"{name:>{width}}" for name, width in final) + "  status"]
    for settings, cell in rows:
        numbers = [_fmt(cell[name], width) for name, width in final]
        lines.append(f"{settings}  " + "  ".join(numbers) + f"  {_STATUS[int(cell['status'])]}")
    return lines + _marks_table(ds)


def _run_rows(ds: xr.Dataset) -> tuple[str, Iterator[tuple[str, xr.Dataset]]]:
    """The heading of a run's settings (alpha and the cell dims but w) and, per cell, those settings
    and the cell; a column as wide as its longest value ("stablemax")."""
    dims = [d for d in ds["status"].dims if d != "w"]
    widths = [max(7, len(d), *(len(str(v)) for v in ds[d].values)) for d in dims]
    header = f"  {'alpha':>7}  " + "  ".join(f"{d:>{n}}" for d, n in zip(dims, widths))

    def rows() -> Iterator[tuple[str, xr.Dataset]]:
        for index in np.ndindex(ds["status"].shape):
            cell = ds.isel(dict(zip(ds["status"].dims, index)))
            values = "  ".join(f"{cell[d].values!s:>{n}}" for d, n in zip(dims, widths))
            yield f"  {float(cell['alpha']):7.3g}  {values}", cell

    return header, rows()


def _marks_table(ds: xr.Dataset) -> list[str]:
    """Per run, the step at which each progress measure the cube has crosses its mark
    (landscape.read.progress), next to t_fit and t_gen; nothing without progress measures."""
    marks = marks_of(ds)
    if not marks:
        return []
    steps = mark_steps(ds)
    columns = [(name, max(8, len(name))) for name in ("t_fit", "t_gen", *(m.name for m in marks))]
    header, rows = _run_rows(ds.assign(steps))
    lines = ["", "progress marks (first eval step at which each holds; '-' = never):",
             *(f"  {m.name}: {m.definition}" for m in marks),
             header + "  " + "  ".join(f"{name:>{width}}" for name, width in columns)]
    return lines + [f"{settings}  " + "  ".join(_fmt(cell[name], width) for name, width in columns)
                    for settings, cell in rows]


_STATUS = {0: "pending", STATUS_DONE: "done", STATUS_DIVERGED: "diverged"}


def _fmt(value: xr.DataArray, width: int) -> str:
    """Four digits, but a whole number (a step) in full: 17132, not 1.713e+04."""
    v = float(value)
    if np.isnan(v):
        return f"{'-':>{width}}"
    return f"{int(v):{width}d}" if v.is_integer() and abs(v) < 1e9 else f"{v:{width}.4g}"


def _landscape_tables(ds: xr.Dataset) -> list[str]:
    axis, metric = ds.attrs["axis"], metric_of(ds)
    test, train = f"test_{metric}", f"train_{metric}"
    lines = [
        "",
        f"reduced test {FIGURE_METRICS[metric]} at the best w, per {axis} (mean over seeds):",
        f"  {axis:>10}  {'best w':>9}  {'alpha':>7}  {test}  {train}",
    ]
    mean = ds[[test, train]].where(ds["status"] == STATUS_DONE).mean("seed")
    for value in ds[axis].values:
        row = mean.sel({axis: value})
        if np.all(np.isnan(row[test].values)):
            lines.append(f"  {value!s:>10}  {'-':>9}  {'-':>7}  {'(no finished cell)':>8}")
            continue
        i = int(np.nanargmin(row[test].values))
        lines.append(f"  {value!s:>10}  {float(ds['w'][i]):9.4g}  {float(ds['alpha'][i]):7.3g}  "
                     f"{_number(float(row[test][i]), test)}  {_number(float(row[train][i]), train)}")
    return lines + _analysis_tables(ds)


def _number(value: float, var: str) -> str:
    """Under the heading ``var``: an error with four decimals; a loss, which may span decades, to four digits."""
    width = len(var)
    return f"{value:{width}.4g}" if is_loss(var) else f"{value:{width}.4f}"


def _analysis_tables(ds: xr.Dataset) -> list[str]:
    """The landscape.read.analysis summaries; with several seeds each entry reads mean±std over seeds."""
    axis = ds.attrs["axis"]
    zone, mismatch = goldilocks_zone(ds), lu_mismatch(ds)
    per_value = [
        (f"critical norm w_c = argmin over w of test_loss, per {axis}:",
         critical_norm(ds), {"w_c": "w_c", "alpha_c": "alpha_c", "best": "test_loss"}),
        (f"Goldilocks zone [w_lo, w_hi] where {zone.attrs['criterion']} (edges interpolated in log w), per {axis}:",
         zone, {name: name for name in ("w_lo", "w_hi", "alpha_lo", "alpha_hi")}),
        (f"LU mismatch: mean of {mismatch.attrs['gap']} over the w above w_c, per {axis}:",
         mismatch, {"lu_mismatch": "mismatch"}),
    ]
    lines = []
    for heading, result, columns in per_value:
        lines += ["", heading, f"  {axis:>10}  " + "  ".join(f"{c:>11}" for c in columns.values())]
        lines += [_row(value, result, columns, {axis: i}) + _grid_edges(result, {axis: i})
                  for i, value in enumerate(ds[axis].values)]
    if over_representation(ds):
        return lines  # a thumb tip is a smallest data size; along m it has no meaning
    tips = critical_data_size(ds)
    lines += ["", f"critical data size {axis}_c: smallest {axis} where some w reaches {tips.attrs['var']} <= level "
              f"(interpolated in log {axis}):", f"  {'level':>10}  {axis + '_c':>11}  {'w_tip':>11}  position"]
    for i, level in enumerate(tips["level"].values):
        positions = sorted(set(np.atleast_1d(tips["position"].isel(level=i).values).tolist()))
        lines.append(_row(f"{level:g}", tips, (f"{axis}_c", "w_tip"), {"level": i}) + "  " + ", ".join(positions))
    return lines


def _grid_edges(result: xr.Dataset, at: dict[str, int]) -> str:
    """After a Goldilocks row: which edge stopped at the end of the grid, not where the zone ends."""
    edges = [name for name in ("w_lo", "w_hi")
             if f"{name[2:]}_at_grid_edge" in result and bool(result[f"{name[2:]}_at_grid_edge"].isel(at).any())]
    return f"  ({', '.join(edges)}: grid edge)" if edges else ""


def _row(label: object, result: xr.Dataset, names: Iterable[str], at: dict[str, int]) -> str:
    return f"  {label!s:>10}  " + "  ".join(_entry(result, name, at) for name in names)


def _entry(result: xr.Dataset, name: str, at: dict[str, int]) -> str:
    mean = float(seed_summary(result, name).isel(at))
    if np.isnan(mean):
        return f"{'-':>11}"
    std = float(result[f"{name}_std"].isel(at)) if f"{name}_std" in result else np.nan
    return f"{mean:.4g}±{std:.2g}".rjust(11) if np.isfinite(std) else f"{mean:11.4g}"


_CURVATURE_NOTE = ("lmax: top eigenvalue, trace: Hutchinson estimate ± its standard error, of the train-loss Hessian; "
                   "ambient: in all of theta, reduced: on the sphere |theta| = w")


def _curvature_table(ds: xr.Dataset) -> list[str]:
    """Per axis value: λ_max and the trace at the best-test w, and the range of λ_max (reduced where
    measured, else ambient) over the finished w."""
    axis = ds.attrs["axis"]
    table = per_axis(ds)
    at_best = [name for s in SPACES for name in (f"lmax_{s}", f"trace_{s}") if name in table]
    space = next(s for s in reversed(SPACES) if f"lmax_{s}" in table)
    spread = [f"lmax_{space}_{stat}" for stat in ("min", "median", "max")]
    columns = ["best_w", *at_best, *spread]
    headers = [_short(c) for c in columns]
    widths = [max(11, len(h)) for h in headers]
    lines = ["", f"curvature per {axis}: at the w of the best test {FIGURE_METRICS[metric_of(ds)]}, and lmax_{_short(space)} "
             "over the finished w (mean over seeds):", f"({_CURVATURE_NOTE})",
             f"  {axis:>10}  " + "  ".join(f"{h:>{wd}}" for h, wd in zip(headers, widths))]
    for i, value in enumerate(ds[axis].values):
        row = table.isel({axis: i})
        lines.append(f"  {value!s:>10}  " + "  ".join(_curvature_entry(row, c, wd) for c, wd in zip(columns, widths)))
    return lines


def _short(name: str) -> str:
    """Column headings: lmax_amb, trace_red; the spread columns by their statistic alone (w min ...)."""
    for stat in ("min", "median", "max"):
        if name.endswith(f"_{stat}"):
            return f"over w {stat}"
    return name.replace("ambient", "amb").replace("reduced", "red").replace("stability_", "")


def _run_curvature_table(ds: xr.Dataset) -> list[str]:
    """Per run (seed mean): where λ_max and the trace ended, and the optimizer's stability threshold."""
    cells = per_cell(ds)
    for name in ("stability_threshold", "adam_sharpness"):
        if name in ds:
            cells[name] = _cell_mean(ds, name)
    columns = [c for c in (*(f"lmax_{s}" for s in SPACES), "adam_sharpness", "stability_threshold",
                           *(f"trace_{s}" for s in SPACES)) if c in cells]
    dims = [d for d in ds["status"].dims if d not in ("w", "seed")]
    headers = [_short(c) for c in columns]
    widths = [max(11, len(h)) for h in headers]
    lines = ["", "curvature at the end of each run (mean over seeds):", f"({_CURVATURE_NOTE})",
             f"  {'alpha':>7}  " + "  ".join(f"{d:>7}" for d in dims) + "  "
             + "  ".join(f"{h:>{wd}}" for h, wd in zip(headers, widths))]
    for index in np.ndindex(*(ds.sizes[d] for d in ("w", *dims))):
        row = cells.isel(dict(zip(("w", *dims), index)))
        lines.append(f"  {float(row['alpha']):7.3g}  " + "  ".join(f"{row[d].values!s:>7}" for d in dims) + "  "
                     + "  ".join(_curvature_entry(row, c, wd) for c, wd in zip(columns, widths)))
    return lines


def _cell_mean(ds: xr.Dataset, name: str) -> xr.DataArray:
    values = ds[name].where(ds["status"] == STATUS_DONE)
    return values.mean("seed") if "seed" in values.dims else values


def _curvature_entry(row: xr.Dataset, name: str, width: int) -> str:
    v = float(row[name])
    if np.isnan(v):
        return f"{'-':>{width}}"
    se = float(row[f"{name}_stderr"]) if f"{name}_stderr" in row else np.nan
    return (f"{v:.4g}±{se:.2g}" if np.isfinite(se) else f"{v:.4g}").rjust(width)
