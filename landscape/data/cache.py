"""A disk cache of derived arrays (e.g. a tokenized corpus), so every grid worker loads in
milliseconds what took seconds to build.

Entries live in ``$LANDSCAPE_CACHE``, else ``$XDG_CACHE_HOME/landscape``, else
``~/.cache/landscape``, one uncompressed ``.npz`` per key. The key must name everything the arrays
depend on (source files with their sizes and mtimes, options, a code version); a stale entry is
never reused, only left behind. Deleting the folder is always safe.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

CACHE_ENV = "LANDSCAPE_CACHE"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "landscape"


def cached_arrays(kind: str, key: Any, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """``build()``'s arrays, from ``<cache>/<kind>/<hash of key>.npz`` when present, else built and stored.

    ``key`` is any JSON-serialisable value. An unwritable cache only costs the rebuild next time.
    """
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    path = cache_dir() / kind / f"{digest}.npz"
    try:
        with np.load(path, allow_pickle=False) as f:
            return {name: f[name] for name in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):  # absent or corrupt: rebuild it
        pass
    arrays = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
        np.savez(tmp, **arrays)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old state or the whole file
    except OSError as e:
        warnings.warn(f"could not write the cache {path}: {e}", stacklevel=2)
    return arrays
