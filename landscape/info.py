"""Plain-text summary of a cube, for ``landscape info``."""
from __future__ import annotations

import numpy as np
import xarray as xr

from landscape.train import STATUS_DIVERGED, STATUS_DONE


def describe(ds: xr.Dataset) -> str:
    axis = ds.attrs["axis"]
    status = ds["status"].values
    done, diverged = int((status == STATUS_DONE).sum()), int((status == STATUS_DIVERGED).sum())
    lines = [
        f"task:        {ds.attrs['task']}",
        f"data source: {ds.attrs['data_source']}",
        "dims:        " + ", ".join(f"{d}={n}" for d, n in ds.sizes.items()),
        f"w0:          {ds.attrs['w0']:.4g}   (alpha = w / w0)",
        f"progress:    {done + diverged}/{status.size} cells finished ({done} done, {diverged} diverged)",
        f"created:     {ds.attrs['created']}",
        "",
        f"reduced test error at the best w, per {axis} (mean over seeds):",
        f"  {axis:>10}  {'best w':>9}  {'alpha':>7}  {'test_err':>8}  {'train_err':>9}",
    ]
    mean = ds[["test_err", "train_err"]].where(ds["status"] == STATUS_DONE).mean("seed")
    for value in ds[axis].values:
        row = mean.sel({axis: value})
        if np.all(np.isnan(row["test_err"].values)):
            lines.append(f"  {value!s:>10}  {'-':>9}  {'-':>7}  {'(no finished cell)':>8}")
            continue
        i = int(np.nanargmin(row["test_err"].values))
        lines.append(
            f"  {value!s:>10}  {float(ds['w'][i]):9.4g}  {float(ds['alpha'][i]):7.3g}  "
            f"{float(row['test_err'][i]):8.4f}  {float(row['train_err'][i]):9.4f}"
        )
    return "\n".join(lines)
