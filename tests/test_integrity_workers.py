"""Integrity, round 3 (issue 22): no code runs from a data file, a worker that exits or is killed
ends the grid in one line, SIGTERM and a killed driver leave no workers behind, resume refuses mixed
inputs, and an outside task's errors()/loss() of the wrong shape are refused."""
from __future__ import annotations

import functools
import os
import pickle
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import psutil
import pytest
import torch
import xarray as xr

from landscape import cube
from landscape.run.driver import run_grid
from landscape.cli import main
from landscape.data import imdb
from landscape.data.mnist import load_mnist
from landscape.data.npz import read_npz
from landscape.errors import UserError
from landscape.spec import EvalConfig, TrainConfig
from landscape.tasks.teacher_student import TeacherStudent, TeacherStudentOptions
from landscape.train import train_cell, train_cells
from tests.imdb_files import synthetic_reviews, write_csv, write_npz
from tests.mnist_files import write_fake_mnist
from tests.stop_after import SCRIPT, after
from tests.test_integrity import edit_attrs


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
    while frame is not None and frame.f_code.co_name != "train_cell_batch":
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


def landscape_cli(*args: str | Path, env: dict[str, str] | None = None, stop: str | None = None,
                  **kw) -> subprocess.Popen:
    """``landscape ARGS`` in a subprocess; ``stop`` ("K[:SIG]", tests/stop_after.py) signals it after K written cells."""
    return subprocess.Popen([sys.executable, *([SCRIPT, stop] if stop else []), "-m", "landscape", *map(str, args)],
                            stdout=subprocess.PIPE,
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
@pytest.mark.parametrize("mode,says,exit_code", [
    ("exit", "the task called sys.exit(None) while training cell (w=", 1),  # a worker failure
    ("raise", "task 'failing' raised RuntimeError: broken task (training cell (w=", 2),  # the task's own error
])
def test_a_task_that_exits_or_raises_fails_the_grid_naming_the_cell(failing_spec, tmp_path, jobs, mode, says,
                                                                     exit_code):
    out = tmp_path / "f.zarr"
    code, err = finish(landscape_cli("grid", failing_spec, "--out", out, "--jobs", jobs, "--quiet",
                                     env={"FAIL_MODE": mode, "PYTHONPATH": str(tmp_path)}))
    lines = err.strip().splitlines()
    assert code == exit_code and len(lines) == 1, err
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
    code, err = finish(landscape_cli(*args, stop="2:TERM"))
    assert code == 143 and err.strip() == (f"terminated (SIGTERM): 2/4 cells are stored in {out}; "
                                           "rerun the same command to resume")
    assert (xr.open_zarr(out)["status"].values == 1).sum() == 2
    code, err = finish(landscape_cli(*args))
    assert code == 0 and (xr.open_zarr(out)["status"].values == 1).all(), err


# --- Resume refuses mixed inputs (item 5) ------------------------------------------------------------

MNIST_GRID = """
task = "mnist"
[axes]
alpha = [1.0, 2.0]
N = [20]
[train]
steps = 2
batch_size = 10
max_batch_cells = 1
[eval]
every = 1
"""


def _interrupted_after_one_cell(monkeypatch, *args: str | Path) -> None:
    with monkeypatch.context() as patch:
        patch.setattr("landscape.run.driver.run_grid", functools.partial(run_grid, on_cell_written=after(1)))
        assert main(["grid", *map(str, args), "--jobs", "1", "--quiet"]) == 130


def _refusal(capsys, *args: str | Path) -> str:
    capsys.readouterr()
    assert main(["grid", *map(str, args), "--jobs", "1", "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    return lines[0]


def test_resume_refuses_replaced_data_files(tmp_path, monkeypatch, capsys):
    spec, out, data = tmp_path / "m.toml", tmp_path / "m.zarr", tmp_path / "mnist"
    spec.write_text(MNIST_GRID)
    write_fake_mnist(data, seed=0)
    args = (spec, "--out", out, "--data-dir", data)
    _interrupted_after_one_cell(monkeypatch, *args)
    before = xr.open_zarr(out)["train_loss"].values.copy()
    write_fake_mnist(data, seed=1)  # same names, same directory, same data_source
    load_mnist.cache_clear()  # as a new driver process would read them
    line = _refusal(capsys, *args)
    assert f"{out} was computed on other data ('sha256:" in line and "--overwrite" in line
    np.testing.assert_array_equal(xr.open_zarr(out)["train_loss"].values, before)  # untouched
    write_fake_mnist(data, seed=0)  # the original files back: resumes
    load_mnist.cache_clear()
    assert main(["grid", *map(str, args), "--jobs", "1", "--quiet"]) == 0
    assert (xr.open_zarr(out)["status"].values == 1).all()


WIDTH_TASK = '''
from torch import nn

from landscape.models import mlp
from landscape.tasks.teacher_student import TeacherStudent

WIDTH = {width}


class WidthTask(TeacherStudent):
    name = "width"

    def build_model(self):
        return mlp((5, WIDTH, 5), nn.Tanh)
'''


@pytest.mark.parametrize("fingerprinted", [True, False])
def test_resume_refuses_an_outside_task_whose_model_changed(tmp_path, fingerprinted):
    """The task module's digest differs; in a cube from before fingerprints, w0 does."""
    module, spec, out = tmp_path / "width_task.py", tmp_path / "w.toml", tmp_path / "w.zarr"
    module.write_text(WIDTH_TASK.format(width=16))
    spec.write_text(GRID.format(task="width_task:WidthTask", steps=4, every=2))
    env = {"PYTHONPATH": str(tmp_path)}
    args = ("grid", spec, "--out", out, "--jobs", "1", "--quiet")
    code, err = finish(landscape_cli(*args, env=env, stop="1"))
    assert code == 130, err
    if not fingerprinted:
        edit_attrs(out, lambda a: a.pop("fingerprint"))
    module.write_text(WIDTH_TASK.format(width=64))
    code, err = finish(landscape_cli(*args, env=env))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert ("other task code ('sha256:" if fingerprinted else "computed with w0 = ") in err
    module.write_text(WIDTH_TASK.format(width=16))
    code, err = finish(landscape_cli(*args, env=env))
    assert code == 0 and (xr.open_zarr(out)["status"].values == 1).all(), err


def test_a_version_difference_is_refused_unless_accepted(tmp_path, monkeypatch, capsys):
    spec, out = tmp_path / "v.toml", tmp_path / "v.zarr"
    spec.write_text(GRID.format(task="teacher-student", steps=4, every=2))
    _interrupted_after_one_cell(monkeypatch, spec, "--out", out)
    edit_attrs(out, lambda a: a.update(version_torch="1.0.0"))
    line = _refusal(capsys, spec, "--out", out)
    assert "computed with torch '1.0.0', this is torch '" in line and "--accept-versions" in line
    assert main(["grid", str(spec), "--out", str(out), "--jobs", "1", "--quiet", "--accept-versions"]) == 0
    assert (xr.open_zarr(out)["status"].values == 1).all()


def test_run_grid_accepts_versions_too(tmp_path, monkeypatch):
    spec, out = tmp_path / "v.toml", tmp_path / "v.zarr"
    spec.write_text(GRID.format(task="teacher-student", steps=4, every=2))
    _interrupted_after_one_cell(monkeypatch, spec, "--out", out)
    edit_attrs(out, lambda a: a.update(version_landscape="0.0.1"))
    with pytest.raises(UserError, match="landscape '0.0.1'"):
        run_grid(spec, out, jobs=1, progress=False)
    summary = run_grid(spec, out, jobs=1, progress=False, accept_versions=True)
    assert (summary.already_done, summary.ran) == (1, 3)


def test_a_cube_without_a_fingerprint_still_resumes(tmp_path, monkeypatch):
    spec, out = tmp_path / "o.toml", tmp_path / "o.zarr"
    spec.write_text(GRID.format(task="teacher-student", steps=4, every=2))
    _interrupted_after_one_cell(monkeypatch, spec, "--out", out)
    edit_attrs(out, lambda a: a.pop("fingerprint"))
    summary = run_grid(spec, out, jobs=1, progress=False)
    assert (summary.already_done, summary.ran) == (1, 3)


# --- An outside task's errors() and loss() of the wrong shape or range (item 10) ----------------------

class LogitErrors(TeacherStudent):
    """errors() returns a per-sample score, not a 0/1 error: negative error rates, before the check."""

    name = "logit-errors"

    def errors(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return pred.sum(-1) - 10


class PerOutputErrors(TeacherStudent):
    name = "per-output-errors"

    def errors(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((pred - target) ** 2 >= self.options.threshold).to(pred.dtype)  # (samples, outputs)


class PerSampleLoss(TeacherStudent):
    name = "per-sample-loss"

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return ((pred - target) ** 2).mean(-1)  # one loss per sample, not their mean


BAD_OUTPUTS = [(LogitErrors, "errors() returned values in [-"), (PerOutputErrors, "errors() returned (20, 5) for 20"),
               (PerSampleLoss, "loss() returned (20,), not one number")]


@pytest.mark.parametrize("cls,says", BAD_OUTPUTS)
def test_bad_task_outputs_are_refused_before_a_store_exists(tmp_path, capsys, cls, says):
    spec = tmp_path / "b.toml"
    spec.write_text(GRID.format(task=f"tests.test_integrity_workers:{cls.__name__}", steps=4, every=2)
                    .replace("N = [20, 40]", "N = [20]"))
    out = tmp_path / "b.zarr"
    assert main(["grid", str(spec), "--out", str(out), "--jobs", "1", "--quiet"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0], lines
    assert f"task {cls.name!r} (tests.test_integrity_workers:{cls.__name__})" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize("cls,says", BAD_OUTPUTS)
def test_both_trainers_check_the_outputs_at_the_first_eval(cls, says, one_torch_thread):
    task = cls(TeacherStudentOptions(), None)
    split = task.data(20)
    train, evalc = TrainConfig(steps=2), EvalConfig(every=1)
    with pytest.raises(UserError, match=re.escape(says)):
        train_cell(task, split, 1.0, 0, train, evalc)
    stacked = says.replace("(20, 5)", "(2, 20, 5)").replace("(20,), not", "(2, 20), not")
    with pytest.raises(UserError, match=re.escape(stacked)):
        train_cells(task, [split, split], [1.0, 2.0], [0, 0], train, evalc, "cpu")


def test_sigterm_during_creation_is_held_until_the_store_is_whole(tmp_path, monkeypatch, capsys):
    spec, out = tmp_path / "c.toml", tmp_path / "c.zarr"
    spec.write_text(GRID.format(task="teacher-student", steps=4, every=2))
    create = cube.create

    def terminated_create(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)  # arrives inside deferred_interrupt
        create(*args, **kwargs)

    monkeypatch.setattr(cube, "create", terminated_create)
    assert main(["grid", str(spec), "--out", str(out), "--jobs", "1", "--quiet"]) == 143
    assert capsys.readouterr().err.strip() == (f"terminated (SIGTERM) before any cell was computed in {out}; "
                                               "rerun the same command to start")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the caller's handler is back
    monkeypatch.setattr(cube, "create", create)
    assert (xr.open_zarr(out)["status"].values == 0).all()
    assert main(["grid", str(spec), "--out", str(out), "--jobs", "1", "--quiet"]) == 0


def test_a_corpus_rewritten_with_its_old_size_and_mtime_is_not_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "cache"))
    path = write_csv(tmp_path / "csv" / imdb.CSV_NAME, synthetic_reviews(30, seed=0))
    before = imdb.load_reviews(str(path.parent)).labels
    st, data = os.stat(path), path.read_bytes()
    flipped = data.replace(b",positive", b",X").replace(b",negative", b",positive").replace(b",X", b",negative")
    assert len(flipped) == len(data)
    path.write_bytes(flipped)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    np.testing.assert_array_equal(imdb.load_reviews(str(path.parent)).labels, 1 - before)


def test_a_worker_whose_driver_is_already_gone_exits_at_once():
    """The race between a worker's start and its parent-death signal: the initializer checks the parent."""
    code = ("import os; from landscape.run.executors import die_with_parent; "
            "die_with_parent(os.getppid() + 10**6); print('ran on')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and "ran on" not in done.stdout
