"""The exception types the command line turns into one line instead of a traceback."""


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
