"""The exception types the command line turns into one line instead of a traceback."""
from __future__ import annotations

import contextlib
import traceback
from typing import Iterator


class UserError(Exception):
    """Bad input: the CLI prints the message on one line and exits with status 2."""


class StoreError(Exception):
    """The cube could not be written (a full disk, a read-only filesystem): one line, exit status 1."""


def first_line(e: BaseException) -> str:
    """An exception's message cut to its first line, for a one-line report."""
    return (str(e).strip().splitlines() or [""])[0]


def printable(text: str) -> str:
    """``text`` with control and format characters (ANSI escapes, newlines, bidi overrides) written
    as Python escapes: what a cube or a file says is shown, never obeyed by the terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class TaskError(UserError):
    """A task's own code (its constructor, build_model, data, loss, ...) raised: one line naming
    the task and where it ran, exit status 2."""


@contextlib.contextmanager
def task_errors(task_class: type, where: str) -> Iterator[None]:
    """Report an exception raised in a task's own code (a frame of its class's module, or of a base
    class's module outside this package, is on the traceback: its methods, its model's forward) as a
    TaskError naming the task and ``where``; the engine's own errors pass through as they are."""
    try:
        yield
    except UserError:
        raise
    except Exception as e:
        own = {c.__module__ for c in task_class.__mro__} - {"builtins", "abc"}
        own = {m for m in own if m.split(".")[0] != "landscape"}
        if own & {frame.f_globals.get("__name__") for frame, _ in traceback.walk_tb(e.__traceback__)}:
            raise TaskError(f"task {getattr(task_class, 'name', task_class.__qualname__)!r} raised "
                            f"{type(e).__name__}: {first_line(e)} ({where})") from None
        raise
