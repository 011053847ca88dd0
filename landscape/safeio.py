"""Reading files that someone else may have put there (a cube's chunks, a spec, a lock file):
regular files only, never following a FIFO or a device into a hang, and never more than a bound."""
from __future__ import annotations

import os
import stat
from pathlib import Path


class NotReadable(ValueError):
    """A path that is not a regular file, or is larger than the caller's bound; the message says which."""


def read_bounded(path: str | Path, limit: int, follow_symlinks: bool = True, regular_only: bool = True) -> bytes:
    """The bytes of the file ``path``, at most ``limit`` of them: a larger file raises NotReadable,
    and so does, when ``regular_only``, a FIFO, a device or a directory (without it, a pipe such as
    ``<(cat spec.toml)`` is read up to the bound); a file that cannot be opened raises OSError."""
    # O_NONBLOCK: opening a FIFO that has no writer returns at once, to be refused below.
    flags = os.O_RDONLY | (os.O_NONBLOCK if regular_only else 0) | (0 if follow_symlinks else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if regular_only and not stat.S_ISREG(info.st_mode):
            raise NotReadable(f"{path} is not a regular file")
        if stat.S_ISDIR(info.st_mode):
            raise NotReadable(f"{path} is a directory")
        if stat.S_ISREG(info.st_mode) and info.st_size > limit:
            raise NotReadable(f"{path} is larger than {limit} bytes")
        chunks, size = [], 0
        while size <= limit:  # the size may have grown since fstat: read one byte past the bound
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise NotReadable(f"{path} is larger than {limit} bytes")
        return b"".join(chunks)
    finally:
        os.close(fd)
