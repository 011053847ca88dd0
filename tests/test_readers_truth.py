"""What a reader of a cube sees is true: one cube for any --jobs, the task's own name, errors in a
user's own code named as such, and t_gen that measures the transition the figures and README report."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from landscape import cube, grid
from landscape.grid import run_grid

#: Variables that differ between two runs of one cell by design: wall time, and the checksum over it.
_TIMINGS = ("seconds", "checksum")


def _values(path: Path) -> dict[str, np.ndarray]:
    ds = cube.open_cube(path)
    return {name: ds[name].values for name in ds.variables if name not in _TIMINGS}


def test_one_spec_gives_one_cube_on_any_job_count(tiny_spec, tmp_path):
    # 16 cells: the old plan cut batches of 8 for --jobs 1 and of 4 for --jobs 2.
    overrides = ["axes.alpha=[0.5, 1.0, 2.0, 4.0]", "axes.N=[20, 40, 60, 80]"]
    one, two = tmp_path / "one.zarr", tmp_path / "two.zarr"
    run_grid(tiny_spec, one, overrides=overrides, jobs=1, progress=False)
    run_grid(tiny_spec, two, overrides=overrides, jobs=2, progress=False)
    a, b = _values(one), _values(two)
    assert cube.open_cube(one).attrs["batched"] == 1
    assert cube.open_cube(one).attrs["batch_cells"] == cube.open_cube(two).attrs["batch_cells"] > 1
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_a_cube_planned_per_jobs_resumes_with_its_own_plan(tiny_spec, tmp_path, monkeypatch):
    import zarr

    out = tmp_path / "old.zarr"
    overrides = ["axes.alpha=[0.5, 1.0, 2.0, 4.0]", "axes.N=[20, 40, 60, 80]"]
    monkeypatch.setenv(grid.STOP_AFTER_ENV, "3")
    with pytest.raises(grid.Interrupted):
        run_grid(tiny_spec, out, overrides=overrides, jobs=1, progress=False)
    monkeypatch.delenv(grid.STOP_AFTER_ENV)
    # As the planner per --jobs left it for --jobs 1: batches of 8, and the job count in the attrs.
    zarr.open_group(str(out), mode="r+").attrs.update({"batch_cells": 8, "batch_plan_jobs": 1})
    zarr.consolidate_metadata(str(out))
    sizes = []
    plan_batches = grid.plan_batches
    monkeypatch.setattr(grid, "plan_batches", lambda *a: sizes.append(a[2]) or plan_batches(*a))
    summary = run_grid(tiny_spec, out, overrides=overrides, jobs=2, progress=False)
    assert sizes == [8]
    assert (summary.already_done, summary.ran) == (3, 13)
    assert (cube.open_cube(out)["status"].values == 1).all()


SCRIPT_TASK = '''
import sys
import landscape
from landscape.tasks.teacher_student import TeacherStudent


class ScriptTask(TeacherStudent):
    """A user's task, defined in the script that runs it."""

    name = "script-ts"


if __name__ == "__main__":
    landscape.run_grid("spec.toml", sys.argv[1], task=ScriptTask, jobs=1, progress=False)
'''


def _cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "landscape", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env={**os.environ, **(env or {})})


@pytest.fixture
def script_task(tiny_spec, tmp_path) -> Path:
    """A directory with a script defining a task, and a spec naming it as "module:Class"."""
    (tmp_path / "usertask.py").write_text(SCRIPT_TASK)
    (tmp_path / "spec.toml").write_text(tiny_spec.read_text().replace('"teacher-student"', '"usertask:ScriptTask"'))
    return tmp_path


def test_the_task_is_shown_by_its_own_name(script_task):
    out = script_task / "c.zarr"
    assert _cli("grid", "spec.toml", "--out", str(out), "--jobs", "1", "--quiet", cwd=script_task).returncode == 0
    ds = cube.open_cube(out)
    assert (ds.attrs["task"], ds.attrs["task_ref"]) == ("script-ts", "usertask:ScriptTask")
    info = _cli("info", str(out), cwd=script_task).stdout
    assert "task:        script-ts   (usertask:ScriptTask)" in info
    from plots.style import set_title
    import matplotlib.pyplot as plt

    fig = plt.figure()
    set_title(fig, ds, "LU")
    assert fig._suptitle.get_text().startswith("script-ts: LU")
    plt.close(fig)


@pytest.mark.parametrize("first", ["api", "cli"])
def test_a_resume_by_the_other_route_of_one_class_succeeds(script_task, first):
    """A script passing its own class (``__main__:ScriptTask``) and the CLI naming it by its import
    path (``usertask:ScriptTask``) make and resume one cube."""
    out = str(script_task / "c.zarr")
    api = [sys.executable, "usertask.py", out]
    cli = [sys.executable, "-m", "landscape", "grid", "spec.toml", "--out", out, "--jobs", "1", "--quiet"]
    runs = (api, cli) if first == "api" else (cli, api)
    stop = {**os.environ, grid.STOP_AFTER_ENV: "2"}
    interrupted = subprocess.run(runs[0], cwd=script_task, capture_output=True, text=True, timeout=600, env=stop)
    assert interrupted.returncode != 0 and int((xr.open_zarr(out)["status"].values == 1).sum()) == 2
    resumed = subprocess.run(runs[1], cwd=script_task, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert (xr.open_zarr(out)["status"].values == 1).all()


def test_another_class_of_the_same_name_is_still_refused(script_task):
    out = str(script_task / "c.zarr")
    assert _cli("grid", "spec.toml", "--out", out, "--jobs", "1", "--quiet", cwd=script_task).returncode == 0
    (script_task / "other.py").write_text(SCRIPT_TASK)
    (script_task / "spec.toml").write_text((script_task / "spec.toml").read_text().replace("usertask:", "other:"))
    refused = _cli("grid", "spec.toml", "--out", out, "--jobs", "1", "--quiet", cwd=script_task)
    assert refused.returncode == 2 and "holds a different spec (task: stored" in refused.stderr


def test_a_cube_made_before_task_ref_still_resumes_and_shows_its_task(script_task):
    import zarr

    out = script_task / "c.zarr"
    stop = {grid.STOP_AFTER_ENV: "2"}
    assert _cli("grid", "spec.toml", "--out", str(out), "--jobs", "1", "--quiet", cwd=script_task, env=stop).returncode
    group = zarr.open_group(str(out), mode="r+")
    group.attrs["task"] = group.attrs["task_ref"]  # what the cube held before: the import path alone
    del group.attrs["task_ref"]
    zarr.consolidate_metadata(str(out))
    assert "task:        usertask:ScriptTask\n" in _cli("info", str(out), cwd=script_task).stdout
    resumed = _cli("grid", "spec.toml", "--out", str(out), "--jobs", "1", "--quiet", cwd=script_task)
    assert resumed.returncode == 0, resumed.stderr
    assert (xr.open_zarr(out)["status"].values == 1).all()
