"""One driver per cube: an exclusive lock held for the driver's whole life.

The lock is ``flock`` on a file beside the store (``<cube>.lock``), taken before the store is
created or opened for writing. The kernel drops it when its holder exits, however it exits
(crash and ``kill -9`` included), so a lock file left behind by a dead driver is stale by
construction and the next driver simply takes it. A second driver on the same cube, with
``--overwrite`` or without, is refused with the holder's PID.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import os
import socket
from pathlib import Path
from typing import Iterator

from landscape.errors import UserError


def lock_path(out: Path) -> Path:
    return out.with_name(out.name + ".lock")


@contextlib.contextmanager
def cube_lock(out: Path) -> Iterator[None]:
    """Hold the cube's lock for the duration of the block, or refuse with the holder's PID."""
    path = lock_path(out)
    fd = _acquire(path, out)
    try:
        yield
    finally:
        # Unlink while still holding the lock: a waiter that opened the old file sees a new inode and retries.
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        os.close(fd)


def _acquire(path: Path, out: Path) -> int:
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise UserError(f"cannot create the lock file {path}: {e.strerror or e}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "unknown process"
            os.close(fd)
            raise UserError(f"{out} is being written by another landscape driver ({holder}); "
                            "wait for it to finish or stop it, then rerun") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder unlinked the file between our open and flock: take the new one
    started = dt.datetime.now().isoformat(timespec="seconds")
    os.ftruncate(fd, 0)
    os.write(fd, f"PID {os.getpid()} on {socket.gethostname()}, since {started}".encode())
    return fd
