"""Reading files that someone else may have put there (a cube's chunks, a spec, a lock file):
regular files only, never following a FIFO or a device into a hang, and never more than a bound."""
from __future__ import annotations

import os
import stat
from pathlib import Path


class NotReadable(ValueError):
    """A path that is not a regular file, or is larger than the caller's bound; the message says which."""


def read_bounded(path: str | Path, limit: int, follow_symlinks: bool = True) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them: a FIFO, a device or a
    directory, or a larger file, raises NotReadable; a file that cannot be opened raises OSError."""
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_symlinks else os.O_NOFOLLOW)
    fd = os.open(path, flags)  # O_NONBLOCK: opening a FIFO with no writer returns at once
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotReadable(f"{path} is not a regular file")
        if info.st_size > limit:
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
