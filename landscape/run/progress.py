"""Progress of a grid in cell-steps, fed by the workers while they train.

Workers report the optimizer steps they ran (summed over the cells they train together) and the
steps a cell will not run because it stopped early or diverged; the driver's bar counts the first
and takes the second off its total, so its rate and ETA follow the work actually left. Reports
travel over a Unix socket to a driver thread (loky workers), straight to the bar (one job, trained
in the driver), or as dask events to a topic the driver's client subscribes to (a dask cluster).
Results still arrive as whole cells, through the executor.
"""
from __future__ import annotations

import os
import sys
import threading
from typing import Any, Callable

from tqdm.auto import tqdm

#: A worker's report: ``report(steps_done, steps_skipped=0)``.
Report = Callable[..., None]


class Bar:
    """The driver's bar: cell-steps done out of those planned, and cells written."""

    def __init__(self, total_steps: int, cells: int, cells_done: int, desc: str, enabled: bool):
        self.cells, self.cells_done = cells, cells_done
        self._bar = tqdm(total=total_steps, unit=" cell-steps", unit_scale=True, desc=desc, disable=not enabled,
                         file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
        self._lock = threading.Lock()
        self._show_cells()

    def advance(self, steps: int, skipped: int = 0) -> None:
        with self._lock:
            if skipped:
                self._bar.total = max(self._bar.n, self._bar.total - skipped)
                self._bar.refresh()
            if steps:
                self._bar.update(steps)

    def cell_written(self) -> None:
        with self._lock:
            self.cells_done += 1
            self._show_cells()

    def _show_cells(self) -> None:
        self._bar.set_postfix_str(f"{self.cells_done}/{self.cells} cells", refresh=True)

    def close(self) -> None:
        self._bar.close()


class _SocketReport:
    """A loky worker's report, sent over a connection to the driver (opened once per process)."""

    def __init__(self, address: str, authkey: bytes):
        self.address, self.authkey = address, authkey

    def __call__(self, steps: int, skipped: int = 0) -> None:
        from multiprocessing.connection import Client

        try:
            if self.address not in _connections:
                _connections[self.address] = Client(self.address, family="AF_UNIX", authkey=self.authkey)
            _connections[self.address].send((int(steps), int(skipped)))
        except OSError:  # the driver is gone or done: progress is only for show
            _connections.pop(self.address, None)


_connections: dict[str, Any] = {}  # a worker process's open connections, by driver address


class SocketChannel:
    """Reports from loky worker processes: a listener on a Unix socket, read by driver threads.

    Plain sockets, not a manager process: a driver killed with -9 leaves nothing running behind.
    """

    def __init__(self, bar: Bar):
        from multiprocessing.connection import Listener

        self.authkey = os.urandom(16)
        self.listener = Listener(family="AF_UNIX", authkey=self.authkey)
        self.bar, self.conns = bar, []
        threading.Thread(target=self._accept, daemon=True).start()

    def report(self) -> Report:
        return _SocketReport(self.listener.address, self.authkey)

    def _accept(self) -> None:
        while True:
            try:
                conn = self.listener.accept()
            except OSError:  # closed
                return
            self.conns.append(conn)
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: Any) -> None:
        while True:
            try:
                self.bar.advance(*conn.recv())
            except (EOFError, OSError):
                return

    def close(self) -> None:
        self.listener.close()
        for conn in self.conns:
            conn.close()


class DirectChannel:
    """Reports from training in the driver itself (one job): straight to the bar."""

    def __init__(self, bar: Bar):
        self.bar = bar

    def report(self) -> Report:
        return self.bar.advance

    def close(self) -> None:
        pass


class _DaskReport:
    """A dask worker's report: an event on the grid's topic."""

    def __init__(self, topic: str):
        self.topic = topic

    def __call__(self, steps: int, skipped: int = 0) -> None:
        from distributed import get_worker

        get_worker().log_event(self.topic, {"steps": int(steps), "skipped": int(skipped)})


class DaskChannel:
    """Reports from dask workers, as events the driver's client receives on a topic."""

    def __init__(self, bar: Bar, client: Any, topic: str):
        self.client, self.topic = client, topic
        client.subscribe_topic(topic, lambda event: bar.advance(event[1]["steps"], event[1]["skipped"]))

    def report(self) -> Report:
        return _DaskReport(self.topic)

    def close(self) -> None:
        self.client.unsubscribe_topic(self.topic)
