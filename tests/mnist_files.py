"""MNIST-format files written by the tests themselves (IDX, plain or gzip)."""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> None:
    """Write ``array`` (uint8) in the IDX format, as the MNIST files are."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def write_fake_mnist(directory: Path, n_train: int = 60, n_test: int = 20, gz: bool = False, seed: int = 0) -> Path:
    """Random images with the official file names, in ``directory``."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(directory / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10, gz)
    return directory
