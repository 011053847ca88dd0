"""Run a grid in this process and signal this process once the driver has written K cells: a
deterministic place to interrupt or kill a driver, whatever the machine's speed.

    python tests/stop_after.py K[:SIG] -m landscape ARGS...   the CLI (SIG: INT, the default, TERM, KILL)
    python tests/stop_after.py K[:SIG] SCRIPT.py ARGS...       a script that calls landscape.run_grid

run_grid's own hook (``on_cell_written``) sends the signal; the command runs as ``python -m`` or
``python SCRIPT.py`` would run it (as ``__main__``, with its folder first on sys.path).
"""
from __future__ import annotations

import functools
import os
import runpy
import signal
import sys
from pathlib import Path
from typing import Callable


#: This script, for the commands of the tests: ``[sys.executable, SCRIPT, "2:KILL", "-m", "landscape", ...]``.
SCRIPT = str(Path(__file__).resolve())


def after(count: int, sig: int = signal.SIGINT) -> Callable[[tuple[int, ...]], None]:
    """An ``on_cell_written`` for run_grid that sends this process ``sig`` once ``count`` cells are stored."""
    written = []

    def on_cell_written(index: tuple[int, ...]) -> None:
        written.append(index)
        if len(written) == count:
            os.kill(os.getpid(), sig)

    return on_cell_written


def main() -> None:
    count, _, name = sys.argv[1].partition(":")
    from landscape.run import driver

    on_cell_written = after(int(count), getattr(signal, f"SIG{name or 'INT'}"))
    driver.run_grid = functools.partial(driver.run_grid, on_cell_written=on_cell_written)
    if sys.argv[2] == "-m":
        module, sys.argv = sys.argv[3], sys.argv[3:]
        sys.path[0] = os.getcwd()
    else:
        script = Path(sys.argv[2])
        module, sys.argv = script.stem, sys.argv[2:]
        sys.path[0] = str(script.resolve().parent)
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
