"""Integrity, round 3 (issue 22): no code runs from a data file, a worker that exits or is killed
ends the grid in one line, SIGTERM and a killed driver leave no workers behind, resume refuses mixed
inputs, and an outside task's errors()/loss() of the wrong shape are refused."""
from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

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
