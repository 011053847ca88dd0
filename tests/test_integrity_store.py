"""Integrity of the store, the lock and the readers (issue 22, items 1, 3, 6, 9, 11, 12):
--overwrite replaces only a cube this program wrote, the lock never follows or clobbers what it
did not create and is shared by aliases of one cube, untrusted cubes are refused in one line, and
bad input is a one-line refusal that touches nothing."""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from landscape.run.driver import run_grid
from landscape.run.preflight import resolve_out
from landscape.cli import main
from landscape.data import imdb
from landscape.errors import UserError
from landscape.run.lock import cube_lock, lock_path
from tests.mnist_files import write_fake_mnist, write_idx
from tests.test_integrity import ARGS, SPEC, one_line  # the tiny 2-cell grid of the first integrity round



@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished 2-cell cube; tests change copies of it."""
    where = tmp_path_factory.mktemp("cube")
    (where / "tiny.toml").write_text(SPEC)
    out = where / "done.zarr"
    assert main(["grid", str(where / "tiny.toml"), "--out", str(out), *ARGS]) == 0
    return out


@pytest.fixture
def spec(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(SPEC)
    return path


@pytest.fixture
def copy(finished, tmp_path) -> Path:
    out = tmp_path / "c.zarr"
    shutil.copytree(finished, out)
    return out



def tree(root: Path) -> dict[str, object]:
    """Everything under ``root``: each path with its file's bytes, its link's target, or its kind."""
    out: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            out[key] = ("link", os.readlink(path))
        elif path.is_file():
            out[key] = path.read_bytes()
        else:
            out[key] = "dir" if path.is_dir() else "other"
    return out


def edit_attrs(path: Path, change) -> None:
    """Apply ``change`` to the root attrs in both places zarr keeps them (.zattrs and the consolidated copy)."""
    attrs = json.loads((path / ".zattrs").read_text())
    change(attrs)
    (path / ".zattrs").write_text(json.dumps(attrs))
    meta = json.loads((path / ".zmetadata").read_text())
    meta["metadata"][".zattrs"] = attrs
    (path / ".zmetadata").write_text(json.dumps(meta))


# --- item 1: --overwrite replaces only a cube this program wrote ----------------------------------

def _dir_with_a_file(tmp: Path) -> str:
    (tmp / "d").mkdir()
    (tmp / "d" / "f").write_text("x")
    return "d"


def _git_clone(tmp: Path) -> str:
    subprocess.run(["git", "init", "-q", str(tmp / "repo")], check=True)
    (tmp / "repo" / "code.py").write_text("print('mine')\n")
    return "repo"


def _other_zarr(tmp: Path) -> str:
    group = zarr.open_group(str(tmp / "other.zarr"), mode="w", zarr_format=2)
    group.attrs["task"] = "someone else's"
    group.create_array("status", shape=(3,), dtype="i1")
    return "other.zarr"


def _parent_via_dotdot(tmp: Path) -> str:
    (tmp / "a" / "b").mkdir(parents=True)
    (tmp / "a" / "keep").write_text("y")
    return "a/b/.."


def _working_directory(tmp: Path) -> str:
    return str(tmp)  # the absolute cwd, which holds the spec itself


@pytest.mark.parametrize("make,match", [
    (_dir_with_a_file, "is not a zarr cube (no readable .zattrs)"),
    (_git_clone, "is not a zarr cube"),
    (_other_zarr, "is not a landscape cube (its attrs are not landscape's)"),
    (_parent_via_dotdot, "/a is not a zarr cube"),
    (_working_directory, "is the working directory"),
])
@pytest.mark.parametrize("overwrite", [["--overwrite"], []])
def test_overwrite_refuses_what_is_not_a_cube(spec, tmp_path, monkeypatch, capsys, make, match, overwrite):
    monkeypatch.chdir(tmp_path)
    out = make(tmp_path)
    before = tree(tmp_path)
    assert main(["grid", str(spec), "--out", out, *ARGS, *overwrite]) == 2
    one_line(capsys, match)
    assert tree(tmp_path) == before


def test_overwrite_refuses_a_cube_holding_a_file_of_someone_else(spec, copy, capsys):
    (copy / "notes.txt").write_text("my notes")
    before = tree(copy.parent)
    assert main(["grid", str(spec), "--out", str(copy), *ARGS, "--overwrite"]) == 2
    one_line(capsys, "holds 'notes.txt', which is not part of a landscape cube")
    assert tree(copy.parent) == before


def test_resume_keeps_a_users_file_in_the_cube_that_overwrite_refuses_to_delete(spec, copy, capsys):
    (copy / "spec.toml").write_text(SPEC)
    assert main(["grid", str(copy / "spec.toml"), "--out", str(copy), *ARGS]) == 0
    assert "0 computed now, 2 already there" in capsys.readouterr().out
    assert main(["grid", str(copy / "spec.toml"), "--out", str(copy), *ARGS, "--overwrite"]) == 2
    one_line(capsys, "holds 'spec.toml', which is not part of a landscape cube")
    assert (copy / "spec.toml").read_text() == SPEC


@pytest.mark.parametrize("inside,store", [("c.zarr/new.zarr", "c.zarr"), ("c.zarr/status/x/new.zarr", "c.zarr/status")])
def test_out_inside_a_store_is_refused(spec, copy, capsys, inside, store):
    """A cube made inside another would become part of it, and that one no cube of ours."""
    before = tree(copy.parent)
    assert main(["grid", str(spec), "--out", str(copy.parent / inside), *ARGS]) == 2
    one_line(capsys, f"is inside the zarr store {copy.parent / store};")
    assert tree(copy.parent) == before


@pytest.mark.parametrize("out,match", [(".", "--out . is the working directory"),
                                       ("", "--out '' should name the cube's folder"),
                                       ("..", "--out .. is the working directory or a folder above it")])
def test_out_dot_and_empty_are_refused(spec, tmp_path, monkeypatch, capsys, out, match):
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    before = tree(tmp_path)
    assert main(["grid", str(spec), "--out", out, *ARGS, "--overwrite"]) == 2
    one_line(capsys, match)
    assert tree(tmp_path) == before


def test_overwrite_through_a_symlink_replaces_the_cube_and_keeps_the_link(spec, copy, capsys):
    alias = copy.with_name("alias.zarr")
    alias.symlink_to(copy.name)
    assert main(["grid", str(spec), "--out", str(alias), *ARGS, "--overwrite"]) == 0
    assert "2 computed now" in capsys.readouterr().out
    assert alias.is_symlink() and os.readlink(alias) == copy.name and copy.is_dir() and not copy.is_symlink()
    assert sorted(p.name for p in copy.parent.iterdir()) == ["alias.zarr", "c.zarr", "tiny.toml"]


# --- items 3, 6 and 9: the lock file, aliases, names of others ------------------------------------

def test_planted_lock_symlink_is_refused_and_its_target_untouched(spec, tmp_path, capsys):
    out = tmp_path / "new.zarr"
    target = tmp_path / "precious"
    target.write_text("precious")
    lock_path(out).symlink_to(target)
    before = tree(tmp_path)
    assert main(["grid", str(spec), "--out", str(out), *ARGS]) == 2
    one_line(capsys, "is a symbolic link")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("content", ["my own notes", ""])
def test_a_users_lock_file_is_left_alone(spec, tmp_path, capsys, content):
    out = tmp_path / "new.zarr"
    lock_path(out).write_text(content)
    before = tree(tmp_path)
    assert main(["grid", str(spec), "--out", str(out), *ARGS]) == 2
    one_line(capsys, "exists and is not a lock file of landscape")
    assert tree(tmp_path) == before


@pytest.mark.parametrize("make,match", [(os.mkfifo, "is not a regular file, so not a landscape lock"),
                                        (os.mkdir, "cannot create the lock file")])
def test_lock_name_taken_by_a_fifo_or_a_folder(spec, tmp_path, capsys, make, match):
    out = tmp_path / "new.zarr"
    make(lock_path(out))
    before = tree(tmp_path)
    assert main(["grid", str(spec), "--out", str(out), *ARGS]) == 2
    one_line(capsys, match)
    assert tree(tmp_path) == before


@pytest.mark.parametrize("content", ["landscape driver PID 999999 on elsewhere, since 2026-01-01T00:00:00",
                                     "PID 999999 on elsewhere, since 2026-01-01T00:00:00"])  # earlier versions
def test_stale_lock_file_of_a_dead_driver_is_taken_and_removed(spec, tmp_path, content):
    out = tmp_path / "new.zarr"
    lock_path(out).write_text(content)
    assert main(["grid", str(spec), "--out", str(out), *ARGS]) == 0
    assert not lock_path(out).exists()


def test_a_users_partial_folder_is_left_alone(spec, tmp_path, capsys):
    out = tmp_path / "new.zarr"
    partial = tmp_path / "new.zarr.partial"
    partial.mkdir()
    (partial / "mine").write_text("keep me")
    assert main(["grid", str(spec), "--out", str(out), *ARGS]) == 0
    assert "2 computed now" in capsys.readouterr().out
    assert (partial / "mine").read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.zarr", "new.zarr.partial", "tiny.toml"]


@pytest.mark.parametrize("held,run", [("c.zarr", "alias.zarr"), ("alias.zarr", "c.zarr")])
def test_aliases_of_one_cube_share_one_lock(spec, copy, capsys, held, run):
    """A driver on either name of a cube (its lock held as run_grid takes it) refuses one on the other."""
    (copy.parent / "alias.zarr").symlink_to(copy.name)
    before = tree(copy.parent)
    with cube_lock(resolve_out(copy.parent / held)):
        for overwrite in ([], ["--overwrite"]):
            assert main(["grid", str(spec), "--out", str(copy.parent / run), *ARGS, *overwrite]) == 2
            one_line(capsys, f"is being written by another landscape driver (PID {os.getpid()} on ")
    after = tree(copy.parent)
    after.pop("c.zarr.lock", None)  # the holder's own lock file: removed when it releases
    assert after == before and not lock_path(copy).exists()


# --- item 11: untrusted cubes ---------------------------------------------------------------------

def test_fifo_as_a_chunk_is_refused_and_overwrite_replaces_the_cube(spec, copy, capsys):
    chunk = copy / "test_loss" / "0.0.0"
    chunk.unlink()
    os.mkfifo(chunk)
    for command in (["info", str(copy)], ["grid", str(spec), "--out", str(copy), *ARGS]):
        assert main(command) == 2
        one_line(capsys, "test_loss/0.0.0 is not a regular file; the cube is damaged")
    assert main(["grid", str(spec), "--out", str(copy), *ARGS, "--overwrite"]) == 0
    assert main(["info", str(copy)]) == 0 and "2/2 cells finished" in capsys.readouterr().out


def test_oversized_chunk_is_damage_that_a_rerun_repairs(spec, copy, capsys):
    (copy / "test_loss" / "0.0.0").write_bytes(b"\0" * (1 << 20))
    assert main(["info", str(copy)]) == 2
    one_line(capsys, "test_loss of cell")
    assert main(["grid", str(spec), "--out", str(copy), *ARGS]) == 0
    assert "1 damaged cells recomputed" in capsys.readouterr().out


def test_attrs_are_printed_with_control_characters_escaped(copy, capsys):
    edit_attrs(copy, lambda a: a.update(task="\x1b[31mred\x1b[0m", data_source="one\nfake line\u202e"))
    assert main(["info", str(copy)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out and "fake line\n" not in out
    assert "task:        \\x1b[31mred\\x1b[0m" in out and "data source: one\\nfake line\\u202e" in out


def test_error_lines_escape_control_characters(tmp_path, capsys):
    assert main(["info", str(tmp_path / "no\x1b[2Jcube")]) == 2
    assert "\x1b" not in one_line(capsys, "no\\x1b[2Jcube does not exist")


def test_status_out_of_range_is_damage_that_a_rerun_repairs(spec, copy, capsys):
    zarr.open_array(str(copy / "status"), mode="r+")[0, 0, 0] = 7
    assert main(["info", str(copy)]) == 2
    one_line(capsys, "status 7 is not one of (0, 1, 2)")
    assert main(["grid", str(spec), "--out", str(copy), *ARGS]) == 0
    assert "2/2 cells done (1 computed now, 1 damaged cells recomputed, 1 already there)" in capsys.readouterr().out
    assert main(["info", str(copy)]) == 0 and "2/2 cells finished (2 done" in capsys.readouterr().out
    assert xr.open_zarr(copy)["status"].values.tolist() == [[[1]], [[1]]]


@pytest.mark.parametrize("depth,match", [(100_000, "attr 'spec' is not valid JSON"),
                                         (50, "attr 'spec' is nested deeper than")])
def test_deeply_nested_spec_is_a_damaged_cube(spec, copy, tmp_path, capsys, depth, match):
    edit_attrs(copy, lambda a: a.update(spec='{"a": ' + "[" * depth + "]" * depth + "}"))
    for command in (["info", copy], ["grid", spec, "--out", copy, *ARGS], ["plot", copy, "--out", tmp_path / "f"]):
        assert main([str(c) for c in command]) == 2
        one_line(capsys, match)
    assert main(["grid", str(spec), "--out", str(copy), *ARGS, "--overwrite"]) == 0


def test_unknown_codec_is_a_damaged_cube(spec, copy, capsys):
    meta = json.loads((copy / "test_loss" / ".zarray").read_text())
    meta["compressor"] = {"id": "no-such-codec"}
    (copy / "test_loss" / ".zarray").write_text(json.dumps(meta))
    for command in (["info", str(copy)], ["grid", str(spec), "--out", str(copy), *ARGS]):
        assert main(command) == 2
        one_line(capsys, "test_loss is encoded with a codec this installation cannot decode")
    assert main(["grid", str(spec), "--out", str(copy), *ARGS, "--overwrite"]) == 0


# --- item 12: bad input ---------------------------------------------------------------------------

@pytest.mark.parametrize("write,match", [
    (lambda p: p.write_bytes(b"\x7fELF\x02\x01\x01\0\xff\xfe" * 30), "is not UTF-8 text"),
    (lambda p: p.write_bytes(b"# " + b"x" * (2 << 20)), "is larger than 1048576 bytes"),
    (lambda p: p.mkdir(), "is a directory"),
])
def test_spec_files_that_are_no_spec(tmp_path, capsys, write, match):
    path = tmp_path / "bad.toml"
    write(path)
    before = tree(tmp_path)
    assert main(["grid", str(path), "--out", str(tmp_path / "c.zarr"), *ARGS]) == 2
    one_line(capsys, match)
    assert tree(tmp_path) == before


def test_dev_zero_as_a_spec_is_read_up_to_a_bound(tmp_path, capsys):
    assert main(["grid", "/dev/zero", "--out", str(tmp_path / "c.zarr"), *ARGS]) == 2
    one_line(capsys, "spec file /dev/zero is larger than")
    assert list(tmp_path.iterdir()) == []


def test_spec_with_a_bom_and_from_a_pipe(spec, tmp_path, capsys):
    bom = tmp_path / "bom.toml"
    bom.write_bytes(b"\xef\xbb\xbf" + spec.read_bytes())
    read, write = os.pipe()
    os.write(write, spec.read_bytes())
    os.close(write)
    try:
        for path in (bom, f"/dev/fd/{read}"):
            assert main(["grid", str(path), "--out", str(tmp_path / f"c{len(str(path))}.zarr"), *ARGS]) == 0
    finally:
        os.close(read)


def _write_float_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x0D, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(">f4").tobytes())


@pytest.mark.parametrize("damage,match", [
    (lambda d: write_idx(d / "train-images-idx3-ubyte", np.zeros((0, 28, 28))), "holds no images"),
    (lambda d: _write_float_idx(d / "t10k-images-idx3-ubyte", np.full((20, 28, 28), np.nan)), "NaN or infinite"),
    (lambda d: _write_float_idx(d / "t10k-images-idx3-ubyte", np.full((20, 28, 28), np.inf)), "NaN or infinite"),
    (lambda d: _write_float_idx(d / "train-labels-idx1-ubyte", np.arange(60) % 10 + 0.5), "float32 labels"),
])
def test_bad_mnist_files_are_refused(tmp_path, capsys, damage, match):
    data = write_fake_mnist(tmp_path / "mnist")
    damage(data)
    spec = tmp_path / "mnist.toml"
    spec.write_text('task = "mnist"\n[axes]\nalpha = [1.0]\nN = [20]\n[train]\nsteps = 2\n[eval]\nevery = 2\n')
    assert main(["grid", str(spec), "--out", str(tmp_path / "c.zarr"), "--data-dir", str(data), *ARGS]) == 2
    one_line(capsys, match)
    assert not (tmp_path / "c.zarr").exists()


def test_csv_with_a_bom_is_read(tmp_path):
    path = tmp_path / imdb.CSV_NAME
    rows = "".join(f'"review {i} was {"great" if i % 2 else "awful"}",{"positive" if i % 2 else "negative"}\n'
                   for i in range(6))
    path.write_text("\ufeffreview,sentiment\n" + rows, encoding="utf-8")
    assert imdb._read_csv(path)["labels"].tolist() == [0, 1, 0, 1, 0, 1]


def test_data_dir_for_a_task_without_data_is_a_warning(spec, tmp_path, capsys):
    assert main(["grid", str(spec), "--out", str(tmp_path / "c.zarr"), "--data-dir", str(tmp_path), *ARGS]) == 0
    assert capsys.readouterr().err.strip() == (f"landscape: warning: --data-dir {tmp_path} is ignored: "
                                               "task teacher-student reads no data files")


@pytest.mark.parametrize("kwargs,match", [
    ({"jobs": 1.5}, "--jobs 1.5 should be a whole number"),
    ({"threads": "2"}, "--threads '2' should be a whole number"),
    ({"overrides": "train.steps=2"}, "should be a list of \"key=value\" strings"),
    ({"overrides": [5]}, "should be a list of \"key=value\" strings"),
    ({"out": 5}, "--out 5 should name the cube's folder"),
])
def test_python_api_refuses_mistyped_arguments(spec, tmp_path, kwargs, match):
    kwargs = {"out": tmp_path / "c.zarr", **kwargs}
    with pytest.raises(UserError, match=match.replace("(", r"\(").replace(".", r"\.")):
        run_grid(spec, progress=False, **kwargs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny.toml"]
