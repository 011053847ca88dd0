"""Integrity, round 3 (issue 22): no code runs from a data file, a worker that exits or is killed
ends the grid in one line, SIGTERM and a killed driver leave no workers behind, resume refuses mixed
inputs, and an outside task's errors()/loss() of the wrong shape are refused."""
from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import psutil
import pytest
import xarray as xr

from landscape import grid
from landscape.data import imdb
from landscape.data.npz import read_npz
from landscape.errors import UserError
from tests.imdb_files import synthetic_reviews, write_npz


class _RunsShell:
    """A pickle payload: unpickling it calls os.system, which writes a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _plant(npz: Path, member: str, payload: bytes) -> None:
    """Replace ``member`` of the archive with an object-dtype .npy whose pickle is ``payload``."""
    header = np.lib.format.header_data_from_array_1_0(np.empty(3, dtype=object))
    with zipfile.ZipFile(npz) as z:
        members = {n: z.read(n) for n in z.namelist() if n != member}
    with zipfile.ZipFile(npz, "w") as z:
        for n, data in members.items():
            z.writestr(n, data)
        with z.open(member, "w") as fp:
            np.lib.format.write_array_header_1_0(fp, header)
            fp.write(payload)


@pytest.fixture
def keras_npz(tmp_path) -> Path:
    reviews = synthetic_reviews(40, seed=3)
    return write_npz(tmp_path / "npz", reviews[:20], reviews[20:], word_index=False)


def test_a_legitimate_keras_npz_loads(keras_npz):
    with np.load(keras_npz, allow_pickle=True) as f:
        expected = {k: f[k] for k in f.files}
    ours = read_npz(keras_npz, ("x_train", "y_train", "x_test", "y_test"))
    assert all(list(ours["x_train"][i]) == list(expected["x_train"][i]) for i in range(20))
    assert np.array_equal(ours["y_test"], expected["y_test"])
    assert imdb.load_reviews(str(keras_npz.parent)).source.startswith("Keras")


@pytest.mark.parametrize("protocol", [2, 5])
def test_a_pickle_payload_in_imdb_npz_is_refused_and_not_run(keras_npz, tmp_path, protocol):
    marker = tmp_path / "ran"
    _plant(keras_npz, "x_train.npy", pickle.dumps(_RunsShell(marker), protocol=protocol))
    with pytest.raises(UserError) as e:
        imdb.load_reviews(str(keras_npz.parent))
    assert not marker.exists()
    message = str(e.value)
    assert "\n" not in message and str(keras_npz.resolve()) in message and "posix.system" in message


def test_a_payload_inside_a_list_is_refused(keras_npz, tmp_path):
    marker = tmp_path / "ran"
    rows = np.empty(3, dtype=object)  # an array as numpy pickles it, a shell call in place of a row
    rows[:] = [_RunsShell(marker), [3], [4]]
    _plant(keras_npz, "x_test.npy", pickle.dumps(rows, protocol=3))
    with pytest.raises(UserError, match="x_test.npy"):
        imdb.load_reviews(str(keras_npz.parent))
    assert not marker.exists()


# --- Workers that exit, raise or die; SIGTERM and a killed driver (items 4, 7, 12) -------------------

EXITING_TASK = '''
import os
import sys

from landscape.tasks.teacher_student import TeacherStudent


def _training() -> bool:
    """Inside a grid batch (driver or worker), not the driver's preflight."""
    frame = sys._getframe()
    while frame is not None and frame.f_code.co_name != "run_batch":
        frame = frame.f_back
    return frame is not None


class FailingTask(TeacherStudent):
    name = "failing"

    def build_model(self):
        if _training() and os.environ["FAIL_MODE"] == "exit":
            sys.exit()
        if _training() and os.environ["FAIL_MODE"] == "raise":
            raise RuntimeError("broken task\\nsecond line")
        return super().build_model()
'''

GRID = """
task = "{task}"
[axes]
alpha = [1.0, 2.0]
N = [20, 40]
[train]
steps = {steps}
max_batch_cells = 1
[eval]
every = {every}
"""


def landscape_cli(*args: str | Path, env: dict[str, str] | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "landscape", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, **kw)


def finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=600)
    return proc.returncode, err


@pytest.fixture
def failing_spec(tmp_path) -> Path:
    (tmp_path / "failing_task.py").write_text(EXITING_TASK)
    spec = tmp_path / "failing.toml"
    spec.write_text(GRID.format(task="failing_task:FailingTask", steps=4, every=2))
    return spec


@pytest.mark.parametrize("jobs", ["1", "2"])
@pytest.mark.parametrize("mode,says", [("exit", "the task called sys.exit(None) while training cell (w="),
                                       ("raise", "failed: RuntimeError: broken task;")])
def test_a_task_that_exits_or_raises_fails_the_grid_naming_the_cell(failing_spec, tmp_path, jobs, mode, says):
    out = tmp_path / "f.zarr"
    code, err = finish(landscape_cli("grid", failing_spec, "--out", out, "--jobs", jobs, "--quiet",
                                     env={"FAIL_MODE": mode, "PYTHONPATH": str(tmp_path)}))
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert says in lines[0] and "N=" in lines[0] and "seed=0)" in lines[0]
    assert "0/4 cells are stored, rerun the same command to resume" in lines[0]


def _children(driver: psutil.Process, count: int) -> list[psutil.Process]:
    """The driver's child processes once ``count`` loky workers are among them (no deadline: the
    machine may be slow; the run itself is far longer than it takes)."""
    while True:
        kids = driver.children(recursive=True)
        if sum("popen_loky_posix" in " ".join(_cmdline(k)) for k in kids) >= count:
            return kids
        time.sleep(0.1)


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def _gone(processes: list[psutil.Process]) -> bool:
    """True once every process has exited (polled with a generous failure bound, not a timing assumption)."""
    for _ in range(1200):
        alive = [p for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        if not alive:
            return True
        time.sleep(0.1)
    for p in alive:
        p.kill()
    return False


@pytest.fixture
def slow_spec(tmp_path) -> Path:
    """Cells that train far longer than any test waits: the run is always stopped from outside."""
    spec = tmp_path / "slow.toml"
    spec.write_text(GRID.format(task="teacher-student", steps=10**7, every=10**6))
    return spec


def test_a_killed_worker_fails_the_grid_naming_the_cell(slow_spec, tmp_path):
    proc = landscape_cli("grid", slow_spec, "--out", tmp_path / "k.zarr", "--jobs", "2", "--quiet")
    kids = _children(psutil.Process(proc.pid), 2)
    next(k for k in kids if "popen_loky_posix" in " ".join(_cmdline(k))).kill()
    code, err = finish(proc)
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1, err
    assert "a worker process died (exit {SIGKILL(-9)}) while training cell (w=" in lines[0]
    assert "0/4 cells are stored, rerun the same command to resume" in lines[0]
    assert _gone(kids)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_workers_do_not_outlive_their_driver(slow_spec, tmp_path, sig):
    proc = landscape_cli("grid", slow_spec, "--out", tmp_path / "k.zarr", "--jobs", "2", "--quiet")
    kids = _children(psutil.Process(proc.pid), 2)
    proc.send_signal(sig)
    code, err = finish(proc)
    if sig == signal.SIGTERM:
        assert code == 143 and err.strip().splitlines() == [
            f"terminated (SIGTERM): 0/4 cells are stored in {tmp_path / 'k.zarr'}; rerun the same command to resume"]
    else:
        assert code == -signal.SIGKILL
    assert _gone(kids)  # the loky workers and both resource trackers


def test_sigterm_keeps_the_finished_cells_and_resumes(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(GRID.format(task="teacher-student", steps=4, every=2))
    out = tmp_path / "s.zarr"
    args = ("grid", spec, "--out", out, "--jobs", "1", "--quiet")
    code, err = finish(landscape_cli(*args, env={grid.STOP_AFTER_ENV: "2:TERM"}))
    assert code == 143 and err.strip() == (f"terminated (SIGTERM): 2/4 cells are stored in {out}; "
                                           "rerun the same command to resume")
    assert (xr.open_zarr(out)["status"].values == 1).sum() == 2
    code, err = finish(landscape_cli(*args))
    assert code == 0 and (xr.open_zarr(out)["status"].values == 1).all(), err
