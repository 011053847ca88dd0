"""One driver per cube: an exclusive lock held for the driver's whole life.

The lock is ``flock`` on a file beside the store (``<cube>.lock``), taken before the store is
created or opened for writing. The kernel drops it when its holder exits, however it exits
(crash and ``kill -9`` included), so a lock file left behind by a dead driver is stale by
construction and the next driver simply takes it. A second driver on the same cube, with
``--overwrite`` or without, is refused with the holder's PID. The lock file is never followed
through a symlink, and a file at that name that this program did not write is left alone and refused.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import os
import re
import socket
import stat
from pathlib import Path
from typing import Iterator

from landscape.errors import UserError


def lock_path(out: Path) -> Path:
    return out.with_name(out.name + ".lock")


#: What a lock file this program wrote holds (earlier versions wrote it without the prefix); a file
#: at ``<cube>.lock`` that does not match is someone else's.
_HOLDER = re.compile(r"(?:landscape driver )?(PID \d+ on .*)", re.S)


@contextlib.contextmanager
def cube_lock(out: Path) -> Iterator[None]:
    """Hold the cube's lock for the duration of the block, or refuse with the holder's PID.

    ``out`` should be resolved (preflight.resolve_out): aliases of one cube then share one lock."""
    path = lock_path(out)
    fd = _acquire(path, out)
    try:
        yield
    finally:
        # Unlink while still holding the lock: a waiter that opened the old file sees a new inode and retries.
        with contextlib.suppress(FileNotFoundError):
            if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:  # still our file
                path.unlink()
        os.close(fd)


def _open(path: Path) -> tuple[int, bool]:
    """The lock file's descriptor, and whether this call created it. Never follows a symlink, never
    truncates: an existing file is only opened, and checked to be a lock file of ours before use."""
    flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        while True:
            try:
                return os.open(path, flags | os.O_CREAT | os.O_EXCL, 0o644), True
            except FileExistsError:
                pass
            with contextlib.suppress(FileNotFoundError):  # else the holder unlinked it between the two opens
                return os.open(path, flags), False
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise UserError(f"the lock file {path} is a symbolic link, which landscape never makes; "
                            "remove it and rerun") from None
        raise UserError(f"cannot create the lock file {path}: {e.strerror or e}") from None


def _acquire(path: Path, out: Path) -> int:
    while True:
        fd, created = _open(path)
        if not created and not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise UserError(f"{path} is not a regular file, so not a landscape lock; move it away and rerun")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            match = _HOLDER.fullmatch(os.read(fd, 200).decode(errors="replace").strip())
            os.close(fd)
            holder = match.group(1) if match else "unknown process"
            raise UserError(f"{out} is being written by another landscape driver ({holder}); "
                            "wait for it to finish or stop it, then rerun") from None
        if not created:  # a stale lock of a driver that died, or someone else's file: read before writing
            if not _HOLDER.fullmatch(os.read(fd, 200).decode(errors="replace").strip()):
                os.close(fd)
                raise UserError(f"{path} exists and is not a lock file of landscape; "
                                "move it away (or choose another --out) and rerun")
        try:
            same = os.fstat(fd).st_ino == os.stat(path, follow_symlinks=False).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder unlinked the file between our open and flock: take the new one
    started = dt.datetime.now().isoformat(timespec="seconds")
    os.ftruncate(fd, 0)  # created here, or a lock file of ours (checked above)
    os.pwrite(fd, f"landscape driver PID {os.getpid()} on {socket.gethostname()}, since {started}".encode(), 0)
    return fd
