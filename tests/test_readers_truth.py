"""What a reader of a cube sees is true: one cube for any --jobs, the task's own name, errors in a
user's own code named as such, and t_gen that measures the transition the figures and README report."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from landscape import cube
from landscape.run.driver import Interrupted, run_grid
from landscape.run.plan import plan_cell_batches
from tests.stop_after import SCRIPT, after

#: Variables that differ between two runs of one cell by design: wall time, and the checksum over it.
_TIMINGS = ("seconds", "checksum")


def _values(path: Path) -> dict[str, np.ndarray]:
    ds = cube.open_cube(path)
    return {name: ds[name].values for name in ds.variables if name not in _TIMINGS}


def test_one_spec_gives_one_cube_on_any_job_count(tiny_spec, tmp_path):
    # 16 cells: the old plan cut batches of 8 for --jobs 1 and of 4 for --jobs 2.
    overrides = ["axes.alpha=[0.5, 1.0, 2.0, 4.0]", "axes.N=[20, 40, 60, 80]"]
    one, two = tmp_path / "one.zarr", tmp_path / "two.zarr"
    safe_path = os.environ.get("PYTHONSAFEPATH")
    run_grid(tiny_spec, one, overrides=overrides, jobs=1, progress=False)
    run_grid(tiny_spec, two, overrides=overrides, jobs=2, progress=False)
    assert os.environ.get("PYTHONSAFEPATH") == safe_path  # set only while the workers start
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
    with pytest.raises(Interrupted):
        run_grid(tiny_spec, out, overrides=overrides, jobs=1, progress=False, on_cell_written=after(3))
    # As the planner per --jobs left it for --jobs 1: batches of 8, and the job count in the attrs.
    zarr.open_group(str(out), mode="r+").attrs.update({"batch_cells": 8, "batch_plan_jobs": 1})
    zarr.consolidate_metadata(str(out))
    sizes = []
    monkeypatch.setattr("landscape.run.driver.plan_cell_batches", lambda *a: sizes.append(a[2]) or plan_cell_batches(*a))
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
    interrupted = subprocess.run([sys.executable, SCRIPT, "2", *runs[0][1:]], cwd=script_task, capture_output=True,
                                 text=True, timeout=600)
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
    stopped = subprocess.run([sys.executable, SCRIPT, "2", "-m", "landscape", "grid", "spec.toml", "--out", str(out),
                              "--jobs", "1", "--quiet"], cwd=script_task, capture_output=True, text=True, timeout=600)
    assert stopped.returncode
    group = zarr.open_group(str(out), mode="r+")
    group.attrs["task"] = group.attrs["task_ref"]  # what the cube held before: the import path alone
    del group.attrs["task_ref"]
    zarr.consolidate_metadata(str(out))
    assert "task:        usertask:ScriptTask\n" in _cli("info", str(out), cwd=script_task).stdout
    resumed = _cli("grid", "spec.toml", "--out", str(out), "--jobs", "1", "--quiet", cwd=script_task)
    assert resumed.returncode == 0, resumed.stderr
    assert (xr.open_zarr(out)["status"].values == 1).all()


LANDSCAPE = str(Path(sys.executable).parent / "landscape")  # the console script: no cwd on its sys.path
SHADOW = 'open("SHADOWED", "w").write("imported")\nraise ImportError("the cwd shadowed an installed module")\n'


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)


def test_a_module_in_the_cwd_does_not_shadow_an_installed_one(script_task):
    (script_task / "joblib.py").write_text(SHADOW)
    done = _run([LANDSCAPE, "grid", "spec.toml", "--out", "c.zarr", "--jobs", "2", "--quiet"], script_task)
    assert done.returncode == 0, done.stderr
    assert not (script_task / "SHADOWED").exists()


def test_a_module_beside_the_spec_is_found_from_anywhere(script_task, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "joblib.py").write_text(SHADOW)
    (script_task / "joblib.py").write_text(SHADOW)  # last on the path: the installed joblib wins
    done = _run([LANDSCAPE, "grid", str(script_task / "spec.toml"), "--out", "c.zarr", "--jobs", "2", "--quiet"],
                elsewhere)
    assert done.returncode == 0, done.stderr
    assert (cube.open_cube(elsewhere / "c.zarr")["status"].values == 1).all()
    assert not (elsewhere / "SHADOWED").exists() and not (script_task / "SHADOWED").exists()


def test_a_module_not_found_says_where_it_looked_and_how_to_fix_it(script_task, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (script_task / "spec.toml").write_text((script_task / "spec.toml").read_text().replace("usertask:", "nosuch:"))
    failed = _run([LANDSCAPE, "grid", str(script_task / "spec.toml"), "--out", "c.zarr", "--quiet"], elsewhere)
    assert failed.returncode == 2
    line, = failed.stderr.splitlines()
    assert f"no module 'nosuch' in the installed packages, {elsewhere}, {script_task}" in line
    assert "beside the spec file" in line and "PYTHONPATH" in line
    assert not (elsewhere / "c.zarr").exists()


def test_a_dask_worker_that_cannot_import_the_task_leaves_no_store(script_task):
    from distributed import LocalCluster

    # The driver finds the module in its cwd; the workers' cwd is this test's, and the spec's own
    # directory (which they are given) does not hold it.
    (script_task / "specs").mkdir()
    (script_task / "spec.toml").rename(script_task / "specs" / "spec.toml")
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster:
        failed = _run([LANDSCAPE, "grid", "specs/spec.toml", "--out", "c.zarr", "--backend", "dask",
                       "--scheduler", cluster.scheduler_address, "--quiet"], script_task)
        worker, = cluster.scheduler_info["workers"]
    assert failed.returncode == 2
    line, = failed.stderr.splitlines()
    assert f"dask worker {worker} cannot import the task: task 'usertask:ScriptTask': no module 'usertask'" in line
    assert not (script_task / "c.zarr").exists()


FAILING_TASK = SCRIPT_TASK.replace('''    name = "script-ts"
''', '''    name = "script-ts"

    def loss(self, pred, target):
        if len(target) == 40:
            raise ValueError("this loss cannot take 40 rows")
        return super().loss(pred, target)
''')


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_an_exception_in_the_task_s_own_code_names_the_task_and_the_cell(script_task, jobs):
    (script_task / "usertask.py").write_text(FAILING_TASK)
    failed = _run([LANDSCAPE, "grid", "spec.toml", "--out", "c.zarr", "--jobs", jobs, "--quiet"], script_task)
    assert failed.returncode == 2, failed.stderr
    line, = failed.stderr.splitlines()
    assert line.startswith("landscape: error: task 'script-ts' raised ValueError: this loss cannot take 40 rows "
                           "(training cell (w=")
    assert " N=40, seed=0) on cpu)" in line and "cells are stored, rerun the same command to resume" in line


def test_an_exception_building_the_model_is_the_task_s_error_and_leaves_no_store(script_task):
    (script_task / "usertask.py").write_text(SCRIPT_TASK.replace('''    name = "script-ts"
''', '''    name = "script-ts"

    def build_model(self):
        raise RuntimeError("Torch not compiled with CUDA enabled")
'''))
    failed = _run([LANDSCAPE, "grid", "spec.toml", "--out", "c.zarr", "--quiet"], script_task)
    assert failed.returncode == 2
    assert failed.stderr == ("landscape: error: task 'script-ts' raised RuntimeError: Torch not compiled with CUDA enabled "
                             "(building the task and its default init in the driver)\n")
    assert not (script_task / "c.zarr").exists()


#: Shipped Dichotomy specs, reduced to seconds; matrix-completion's still crosses (at ~1,000 steps).
REDUCED_DICHOTOMY = {
    "matrix-completion": ["task_options.d=20", "axes.N=[80]", "axes.wd=[0.02]", "train.steps=3000", "eval.points=40"],
    "modular-mlp": ["task_options.p=11", "task_options.width=32", "axes.N=[100]", "axes.alpha=[1.0, 10.0]",
                    "train.steps=300", "eval.points=20"],
    "modular-mlp-wd": ["task_options.p=11", "task_options.width=32", "axes.N=[100]", "axes.wd=[0.003, 0.006]",
                       "train.steps=300", "eval.points=20"],
    "diag-misgrok": ["task_options.d=100", "task_options.n_test=200", "axes.N=[30]", "axes.alpha=[8.0]",
                     "axes.wd=[0.2]", "train.steps=300", "eval.points=20"],
}


def _info_column(text: str, column: str) -> list[float]:
    """A column of `landscape info`'s runs table, '-' as NaN."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if column in line.split())
    at = lines[start].split().index(column)
    rows = [line.split() for line in lines[start + 1:] if line.strip()]
    return [math.nan if row[at] == "-" else float(row[at]) for row in rows]


@pytest.mark.parametrize("name", sorted(REDUCED_DICHOTOMY))
def test_info_reports_the_transition_the_figures_draw(name, tmp_path, capsys):
    from landscape.cli import main
    from landscape.cube.schema import TRANSITION, TRANSITION_DEFINITION
    from landscape.read.dichotomy import transitions

    out = tmp_path / "d.zarr"
    sets = [a for item in REDUCED_DICHOTOMY[name] for a in ("--set", item)]
    assert main(["grid", f"grids/{name}.toml", "--out", str(out), "--jobs", "1", "--quiet", *sets]) == 0
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    ds = cube.open_cube(out)
    assert ds[TRANSITION].attrs["definition"] == TRANSITION_DEFINITION and TRANSITION_DEFINITION in info
    shown = _info_column(info, TRANSITION)
    drawn = transitions(ds)["jump"].transpose(*ds["status"].dims).values.ravel()  # what the figures mark
    np.testing.assert_allclose(shown, drawn, rtol=1e-3)
    from landscape.read.info import describe

    assert describe(ds.drop_vars(TRANSITION)) == describe(ds)  # a cube made before t_transition: the same
    if name == "matrix-completion":  # ends between the references, short of t_gen's level: a transition all the same
        assert np.isfinite(shown).all() and np.isnan(_info_column(info, "t_gen")).all()
