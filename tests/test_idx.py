import numpy as np
import pytest

from landscape.data.idx import read_idx
from landscape.errors import UserError
from tests.mnist_files import write_idx


@pytest.mark.parametrize("gz", [False, True])
def test_roundtrip(tmp_path, gz):
    arr = np.random.default_rng(0).integers(0, 256, (5, 28, 28)).astype(np.uint8)
    write_idx(tmp_path / "x-idx3-ubyte", arr, gz=gz)
    got = read_idx(tmp_path / ("x-idx3-ubyte.gz" if gz else "x-idx3-ubyte"))
    assert got.shape == (5, 28, 28) and got.dtype == np.uint8
    assert np.array_equal(got, arr)


def test_truncated_file_is_a_user_error(tmp_path):
    write_idx(tmp_path / "y", np.arange(10))
    data = (tmp_path / "y").read_bytes()
    (tmp_path / "y").write_bytes(data[:-3])
    with pytest.raises(UserError, match="corrupt"):
        read_idx(tmp_path / "y")


def test_bad_magic_is_a_user_error(tmp_path):
    (tmp_path / "z").write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(UserError, match="not an IDX file"):
        read_idx(tmp_path / "z")
