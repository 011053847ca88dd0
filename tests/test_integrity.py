"""Integrity under faults: damaged cubes found and repaired, the cube lock, a full disk, a lost
cluster, interrupts and closed pipes: each one line on stderr and no traceback."""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from landscape import cli, cube
from landscape.run.driver import run_grid
from landscape.cli import main
from landscape.run.lock import cube_lock, lock_path

SPEC = """
task = "teacher-student"
[axes]
alpha = [1.0, 2.0]
N = [20]
[train]
steps = 4
max_batch_cells = 1
[eval]
every = 2
"""
ARGS = ["--jobs", "1", "--quiet"]


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("spec") / "tiny.toml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def finished(spec, tmp_path_factory) -> Path:
    """A finished 2-cell cube; tests damage copies of it."""
    out = tmp_path_factory.mktemp("cube") / "done.zarr"
    assert main(["grid", str(spec), "--out", str(out), *ARGS]) == 0
    return out


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    out = tmp_path / "c.zarr"
    shutil.copytree(finished, out)
    return out


def one_line(capsys, match: str, internal: bool = False) -> str:
    """The one stderr line, which holds ``match``; an "internal error" only where ``internal``."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and match in lines[0], err
    assert internal or "internal error" not in err, err
    return lines[0]


def values(path: Path) -> dict[str, np.ndarray]:
    """What a cell computes (its checksum also covers its wall time, which a rerun changes)."""
    ds = xr.open_zarr(path)
    return {name: ds[name].values for name in ("status", "test_loss", "train_loss_curve", "layer_norm_curve")}


# --- damaged cubes --------------------------------------------------------------------------------

@pytest.mark.parametrize("damage,reason", [
    (lambda chunk: chunk.unlink(), "missing chunk"),
    (lambda chunk: chunk.write_bytes(b""), "empty chunk"),
    (lambda chunk: chunk.write_bytes(b"not blosc at all, just bytes"), "unreadable chunk"),
])
def test_damaged_chunk_is_named_by_readers_and_repaired_by_grid(spec, finished, copy, tmp_path, capsys, damage, reason):
    damage(copy / "test_loss" / "1.0.0")  # the test loss of the cell alpha = 2
    for command in (["info", copy], ["plot", copy, "--out", tmp_path / "figs"]):
        assert main([str(a) for a in command]) == 2
        line = one_line(capsys, "test_loss of cell w=")
        assert f"N=20, seed=0 is damaged ({reason}); rerun `landscape grid`" in line
    assert not (tmp_path / "figs").exists()

    assert main(["grid", str(spec), "--out", str(copy), *ARGS]) == 0
    assert "2/2 cells done (1 computed now, 1 damaged cells recomputed, 1 already there)" in capsys.readouterr().out
    for name, value in values(finished).items():  # recomputed exactly
        np.testing.assert_array_equal(values(copy)[name], value, err_msg=name)
    assert main(["info", str(copy)]) == 0


def test_altered_values_fail_the_checksum(copy, capsys):
    import zarr

    curve = zarr.open_array(str(copy / "train_loss_curve"), mode="r+")
    curve[0, 0, 0, 1] = 0.5  # a readable chunk with another value than the driver wrote
    assert main(["info", str(copy)]) == 2
    one_line(capsys, "cell w=8.746, N=20, seed=0 is damaged (values do not match its checksum)")


def test_unreadable_status_counts_as_damage(spec, copy, capsys):
    (copy / "status" / "0.0.0").write_bytes(b"\x00")
    assert main(["info", str(copy)]) == 2
    one_line(capsys, "status of cell w=8.746")
    assert main(["grid", str(spec), "--out", str(copy), *ARGS]) == 0
    assert "1 damaged cells recomputed" in capsys.readouterr().out


def edit_attrs(path: Path, change) -> None:
    """Apply ``change`` to the root attrs in both places zarr keeps them (.zattrs and the consolidated copy)."""
    attrs = json.loads((path / ".zattrs").read_text())
    change(attrs)
    (path / ".zattrs").write_text(json.dumps(attrs))
    meta = json.loads((path / ".zmetadata").read_text())
    meta["metadata"][".zattrs"] = attrs
    (path / ".zmetadata").write_text(json.dumps(meta))


@pytest.mark.parametrize("change,match", [
    (lambda a: a.update(spec='{"task": "teacher-st'), "attr 'spec' is not valid JSON"),
    (lambda a: a.pop("task"), "attr 'task' is missing"),
    (lambda a: a.pop("w0"), "attr 'w0' is missing"),
    (lambda a: a.update(w0="abc"), "attr 'w0' = 'abc' is not a positive number"),
    (lambda a: a.pop("batch_cells"), "batch plan attr 'batch_cells' is missing"),
])
def test_damaged_attrs_are_one_line_everywhere(spec, copy, tmp_path, capsys, change, match):
    edit_attrs(copy, change)
    commands = [["grid", spec, "--out", copy, *ARGS]]
    if "batch plan" not in match:  # only the grid reads the plan
        commands += [["info", copy], ["plot", copy, "--out", tmp_path / "figs"]]
    for command in commands:
        assert main([str(a) for a in command]) == 2
        one_line(capsys, match)


def test_coordinate_that_disagrees_with_the_spec(copy, capsys):
    import zarr

    zarr.open_array(str(copy / "N"), mode="r+")[0] = 21
    assert main(["info", str(copy)]) == 2
    one_line(capsys, "coordinate 'N' does not match the spec's axes.N")


def test_creation_writes_no_chunk_and_pending_cells_read_as_pending(spec, tmp_path, monkeypatch, capsys):
    """A Ctrl-C during creation is held until the store is whole: one line, no claim of stored
    cells; the new cube has no variable chunk (its fill values stand for pending cells), reads as
    all pending, and the rerun fills it."""
    out = tmp_path / "c.zarr"
    create = cube.create

    def interrupted_create(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # arrives inside deferred_interrupt
        create(*args, **kwargs)

    monkeypatch.setattr(cube, "create", interrupted_create)
    assert main(["grid", str(spec), "--out", str(out), *ARGS]) == 130
    line = one_line(capsys, "interrupted before any cell was computed")
    assert "stored" not in line
    monkeypatch.setattr(cube, "create", create)

    ds = cube.open_cube(out, verify=True)
    data_chunks = [p for name in ds.data_vars for p in (out / name).iterdir() if not p.name.startswith(".")]
    assert data_chunks == [] and (ds["status"].values == 0).all() and np.isnan(ds["test_loss"].values).all()
    assert main(["info", str(out)]) == 0 and "0/2 cells finished" in capsys.readouterr().out
    assert main(["grid", str(spec), "--out", str(out), *ARGS]) == 0
    assert "2 computed now, 0 already there" in capsys.readouterr().out


def test_verified_reader_holds_the_same_values_as_zarr(copy):
    """open_cube(verify=True) builds the per-cell variables from the chunks it verified (zarr's own
    reader looks up every pending chunk too: two minutes for a 10^5-cell info); they must equal what
    zarr reads, for finished and pending cells alike."""
    for chunk in copy.glob("*/1.0.0*"):  # cell alpha = 2 back to pending: none of its chunks
        chunk.unlink()
    verified, lazy = cube.open_cube(copy, verify=True), xr.open_zarr(copy, chunks=None).load()
    assert list(verified["status"].values.ravel()) == [1, 0]
    for name in lazy.data_vars:
        a, b = verified[name].values, lazy[name].values
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)


# --- the machine fails ----------------------------------------------------------------------------

def full_disk_after(monkeypatch, writes: int) -> None:
    """Every zarr write after the first ``writes`` fails as on a full disk."""
    to_zarr, count = xr.Dataset.to_zarr, [0]

    def to_zarr_or_full(self, *args, **kwargs):
        count[0] += 1
        if count[0] > writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return to_zarr(self, *args, **kwargs)

    monkeypatch.setattr(xr.Dataset, "to_zarr", to_zarr_or_full)


def test_full_disk_at_creation(spec, tmp_path, monkeypatch, capsys):
    out = tmp_path / "c.zarr"
    full_disk_after(monkeypatch, 0)
    assert main(["grid", str(spec), "--out", str(out), *ARGS]) == 1
    one_line(capsys, f"cannot create {out}: No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "a store or its .partial was left behind"


def test_full_disk_while_writing_a_cell(spec, tmp_path, monkeypatch, capsys):
    out = tmp_path / "c.zarr"
    full_disk_after(monkeypatch, 3)  # creation, then the first cell's values and status
    assert main(["grid", str(spec), "--out", str(out), *ARGS]) == 1
    one_line(capsys, "No space left on device; 1/2 cells are stored, rerun the same command to resume")
    monkeypatch.undo()
    assert main(["grid", str(spec), "--out", str(out), *ARGS]) == 0
    assert "1 computed now, 1 already there" in capsys.readouterr().out


def test_read_only_filesystem_under_an_existing_cube(spec, copy, monkeypatch, capsys):
    import tempfile

    def read_only(*args, dir=None, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))

    monkeypatch.setattr(tempfile, "TemporaryDirectory", read_only)
    before = values(copy)
    assert main(["grid", str(spec), "--out", str(copy), *ARGS]) == 2
    one_line(capsys, "is not writable: Read-only file system")
    for name, value in before.items():
        np.testing.assert_array_equal(values(copy)[name], value)


def test_unexpected_errors_are_one_line(copy, monkeypatch, capsys):
    def broken(args):
        raise ValueError("boom\nsecond line")

    monkeypatch.setattr(cli, "cmd_info", broken)
    assert main(["info", str(copy)]) == 1
    one_line(capsys, "landscape: internal error: ValueError: boom (LANDSCAPE_DEBUG=1 shows the traceback)", internal=True)
    monkeypatch.setenv(cli.DEBUG_ENV, "1")
    with pytest.raises(ValueError):
        main(["info", str(copy)])

    def no_permission(args):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), "figs/lu.png")

    monkeypatch.setattr(cli, "cmd_info", no_permission)
    assert main(["info", str(copy)]) == 1
    one_line(capsys, "landscape: error: Permission denied: figs/lu.png")


def test_closed_output_pipe_is_a_quiet_exit(finished):
    """``landscape info cube | head -1``: the reader is gone before we write (its end is closed)."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "landscape", "info", str(finished)], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=600)
    finally:
        os.close(write)
    assert done.returncode == 141 and done.stderr == ""


# --- the lock -------------------------------------------------------------------------------------

@pytest.mark.parametrize("overwrite", [[], ["--overwrite"]])
def test_second_driver_is_refused_with_the_holders_pid(spec, copy, capsys, overwrite):
    before = values(copy)
    with cube_lock(copy):
        assert main(["grid", str(spec), "--out", str(copy), *ARGS, *overwrite]) == 2
        one_line(capsys, f"is being written by another landscape driver (PID {os.getpid()} on ")
    for name, value in before.items():
        np.testing.assert_array_equal(values(copy)[name], value)


def test_lock_of_a_killed_driver_does_not_block(spec, tmp_path, capsys):
    out = tmp_path / "c.zarr"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from landscape.run.lock import cube_lock\n"
         f"with cube_lock(Path({str(out)!r})):\n    print('locked', flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        assert main(["grid", str(spec), "--out", str(out), *ARGS]) == 2
        one_line(capsys, f"PID {holder.pid} on ")
    finally:
        holder.kill()
        holder.wait()
    assert lock_path(out).exists()  # left behind by the killed holder
    assert main(["grid", str(spec), "--out", str(out), *ARGS]) == 0


# --- dask ----------------------------------------------------------------------------------------

def test_dask_cells_run_on_the_cluster_worker_not_the_driver(spec, tmp_path, monkeypatch):
    """One single-thread worker (the case where joblib once ran every cell in the driver)."""
    from distributed import Client, LocalCluster

    def not_here(*args, **kwargs):
        raise AssertionError("a cell was trained in the driver")

    monkeypatch.setattr("landscape.run.worker.train_cell", not_here)  # the driver's copy only: workers import their own
    monkeypatch.setattr("landscape.run.worker.train_cells", not_here)
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster, \
            Client(cluster) as client:
        summary = run_grid(spec, tmp_path / "d.zarr", backend="dask", scheduler=cluster.scheduler_address,
                                progress=False)
        executed = sum(client.run(lambda dask_worker: dask_worker.state.executed_count).values())
    assert summary.ran == 2 and executed >= 2
    assert (xr.open_zarr(tmp_path / "d.zarr")["status"] == 1).all()


def test_killed_scheduler_is_one_line_and_keeps_finished_cells(spec, tmp_path, monkeypatch, capsys):
    """The scheduler dies (SIGKILL) right after the first cell is written."""
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", "0", "--no-dashboard"], stderr=subprocess.PIPE, text=True)
    worker = None
    try:
        address = next(line.split("at:")[1].split()[0] for line in scheduler.stderr if "Scheduler at" in line)
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                   "--no-dashboard"], stderr=subprocess.DEVNULL)
        write_cell = cube.write_cell

        def write_then_kill(*args, **kwargs):
            write_cell(*args, **kwargs)
            if scheduler.poll() is None:
                scheduler.kill()
                scheduler.wait()

        monkeypatch.setattr(cube, "write_cell", write_then_kill)
        out = tmp_path / "k.zarr"
        # Three cells of 200 steps, one at a time: the others are still running when it dies.
        assert main(["grid", str(spec), "--out", str(out), "--quiet", "--backend", "dask", "--scheduler", address,
                     "--set", "axes.alpha=[1.0, 2.0, 3.0]", "--set", "train.steps=200"]) == 2
        one_line(capsys, "lost the dask cluster (FutureCancelledError")
        assert int((xr.open_zarr(out)["status"] == 1).sum()) == 1
    finally:
        for process in (scheduler, worker):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
