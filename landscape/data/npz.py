"""Read a numpy ``.npz`` archive from the internet without running code from it.

``np.load(allow_pickle=True)`` unpickles object arrays with the full pickle machinery, which calls
any importable function a file names. Keras' ``imdb.npz`` needs pickle only for arrays of Python
lists of ints, and those need three globals (the array, its dtype, and numpy's reconstructor; the
lists and ints themselves are pickle opcodes). Every other global is refused.
"""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import IO, Any

import numpy as np
from numpy.lib import format as npy_format

from landscape.errors import UserError

#: numpy's array reconstructor, taken from where this numpy's pickles name it (numpy.core or numpy._core).
_RECONSTRUCT = np.empty(0, dtype=object).__reduce__()[0]
#: What an object array of lists of ints unpickles through, under the names of numpy 1 and numpy 2.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class _Refused(Exception):
    pass


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise _Refused(f"{module}.{name}") from None


def read_npz(path: Path, names: tuple[str, ...], layout: str = "") -> dict[str, np.ndarray]:
    """The arrays ``names`` of the archive at ``path`` (each must be there), or a one-line UserError
    naming the file: for a missing array, an unreadable archive, or a pickle that names anything but
    numpy's array globals. ``layout`` names the archive's expected contents in the missing-array message."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = set(archive.namelist())
            missing = [n for n in names if f"{n}.npy" not in members]
            if missing:
                raise UserError(f"{path}: no arrays {', '.join(missing)}{f' ({layout})' if layout else ''}")
            out = {}
            for name in names:
                with archive.open(f"{name}.npy") as fp:
                    out[name] = _read_npy(fp)
            return out
    except _Refused as e:
        raise UserError(f"{path}: {name}.npy holds a pickle that calls {e}, not a plain array; refused "
                        "(a data file never runs code)") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError, IndexError, TypeError,
            pickle.UnpicklingError) as e:
        raise UserError(f"{path}: not a readable numpy .npz archive ({type(e).__name__}: {e})") from None


def _read_npy(fp: IO[bytes]) -> np.ndarray:
    version = npy_format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = npy_format.read_array_header_1_0(fp)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = npy_format.read_array_header_2_0(fp)
    else:
        raise ValueError(f"unknown .npy format version {version}")
    if not dtype.hasobject:
        count = int(np.prod(shape, dtype=np.int64))
        data = np.frombuffer(fp.read(count * dtype.itemsize), dtype=dtype, count=count)
        return data.reshape(shape, order="F" if fortran else "C")
    array = _ArrayUnpickler(fp).load()
    if not isinstance(array, np.ndarray) or array.shape != tuple(shape):
        raise ValueError(f"the pickle is not the {tuple(shape)} array its header announces")
    return array
