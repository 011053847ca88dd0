"""Where batches run: the driver itself, loky worker processes or a dask cluster, with their failures."""
from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import re
import signal
import threading
import time
import uuid
from typing import Any, Callable, Iterator

from landscape.run.progress import Bar, DaskChannel, DirectChannel, SocketChannel

from landscape.errors import StoreError, UserError, first_line
from landscape.run.plan import Cell
from landscape.run.worker import train_cell_batch
from landscape.train import (
    CellResult,
)

BACKENDS = ("loky", "dask")


class WorkerFailed(StoreError):
    """A batch did not come back: its task raised or exited, or its worker process died."""


class ClusterLost(UserError):
    """The dask cluster went away mid-run (the finished cells are stored)."""


class _Executor:
    """Where batches run: the driver itself, loky worker processes, or a dask cluster."""

    def __init__(self, backend: str, scheduler: str | None, jobs: int):
        self.backend, self.client, self.cluster, self.pool = backend, None, None, None
        if backend == "dask":
            from distributed import Client, LocalCluster

            if scheduler:
                try:
                    self.client = Client(scheduler, timeout="10s")
                except (OSError, TimeoutError, ValueError) as e:
                    raise UserError(f"--scheduler {scheduler}: cannot reach a dask scheduler ({e})") from None
            else:
                # The scheduler's HTTP server starts even without a dashboard, on port 8787 unless told
                # otherwise, and warns when that port is taken: any free port will do here.
                with safe_path():
                    self.cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                                dashboard_address=None, scheduler_kwargs={"dashboard_address": ":0"})
                self.client = Client(self.cluster)
            self.workers = sum(self.client.nthreads().values()) or 1
        else:
            self.workers = jobs

    def channel(self, bar: Bar) -> SocketChannel | DirectChannel | DaskChannel:
        if self.client is not None:
            return DaskChannel(bar, self.client, f"landscape-progress-{uuid.uuid4().hex}")
        return DirectChannel(bar) if self.workers == 1 else SocketChannel(bar)

    def results(self, calls: list[tuple[Any, ...]], names: Callable[[list[Cell]], str]
                ) -> Iterator[list[tuple[Cell, CellResult]]]:
        """Results of ``train_cell_batch(*call)`` for every call, as they finish; a batch that fails (its
        task raises or exits, its worker dies) is a ``WorkerFailed`` that ``names`` its cells."""
        if self.client is not None:
            yield from self._dask(calls, names)
        elif self.workers == 1:  # one job: train in the driver, no worker process to start
            for call in calls:
                with _batch_failure(call[3], names):
                    batch = train_cell_batch(*call)
                yield batch
        else:
            yield from self._loky(calls, names)

    def _loky(self, calls: list[tuple[Any, ...]], names: Callable[[list[Cell]], str]
              ) -> Iterator[list[tuple[Cell, CellResult]]]:
        from joblib.externals.loky import get_reusable_executor

        with safe_path():  # also for the workers loky starts again, and its resource tracker
            # Idle workers live a minute: a grid after a grid (tests, notebooks) reuses them.
            self.pool = get_reusable_executor(max_workers=min(self.workers, len(calls)) or 1, reuse=True, timeout=60,
                                              initializer=die_with_parent, initargs=(os.getpid(),))
            # Left-over futures are not cancelled here: close() kills the workers, and loky's manager then
            # fails them itself (cancelling them first makes its thread print an InvalidStateError traceback).
            futures = {self.pool.submit(train_cell_batch, *call): call[3] for call in calls}
            for future in concurrent.futures.as_completed(futures):
                with _batch_failure(futures[future], names):
                    batch = future.result()
                yield batch

    def _dask(self, calls: list[tuple[Any, ...]], names: Callable[[list[Cell]], str]
              ) -> Iterator[list[tuple[Cell, CellResult]]]:
        from distributed import as_completed

        futures = {self.client.submit(train_cell_batch, *call, pure=False): call[3] for call in calls}
        try:
            for future in as_completed(futures):
                try:
                    batch = future.result()
                except (KeyboardInterrupt, UserError):
                    raise
                except Exception as e:
                    # A killed scheduler cancels every future ("scheduler-connection-lost") while
                    # the client still tries to reconnect.
                    if isinstance(e, concurrent.futures.CancelledError) or self.client.status != "running":
                        raise ClusterLost(f"lost the dask cluster ({type(e).__name__}: {first_line(e)})") from None
                    with _batch_failure(futures[future], names):
                        raise
                yield batch
        finally:
            for f in futures:
                f.cancel()

    def close(self, interrupted: bool) -> None:
        if self.pool is not None and interrupted:
            quiet_threads()  # loky's manager thread can trip over a shutdown mid-queue (KeyError, InvalidStateError)
            self.pool.shutdown(wait=False, kill_workers=True)  # stop training that nobody will write
        if self.client is not None:
            # Closing a client whose scheduler is gone logs the aborted reconnect, traceback and all.
            quiet = logging.getLogger("distributed.client")
            level = quiet.level
            quiet.setLevel(logging.CRITICAL)
            with contextlib.suppress(Exception):
                self.client.close()
            quiet.setLevel(level)
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()


@contextlib.contextmanager
def _batch_failure(cells: list[Cell], names: Callable[[list[Cell]], str]) -> Iterator[None]:
    """Report a batch that did not come back as a ``WorkerFailed`` naming its cells. A task's
    ``sys.exit()`` is a failure too, not the grid's own exit status (0 for ``sys.exit()``)."""
    from joblib.externals.loky.process_executor import BrokenProcessPool

    try:
        yield
    except (KeyboardInterrupt, UserError, StoreError):
        raise
    except SystemExit as e:
        raise WorkerFailed(f"the task called sys.exit({e.code!r}) while training {names(cells)}") from e
    except BrokenProcessPool as e:
        codes = re.search(r"exit codes of the workers are (.*)", str(e))
        raise WorkerFailed(f"a worker process died{f' (exit {codes[1]})' if codes else ''} while training "
                           f"{names(cells)}") from e
    except Exception as e:
        raise WorkerFailed(f"{names(cells)} failed: {type(e).__name__}: {first_line(e)}") from e


def die_with_parent(parent: int) -> None:
    """Loky worker initializer: end this worker when the driver dies, however it dies (kill -9
    included), rather than train on for nobody. Linux delivers SIGKILL on the parent's death; elsewhere
    a thread watches the parent's PID."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # 1 = PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "prctl")
    except (OSError, AttributeError):
        threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()
    if os.getppid() != parent:  # the driver died before the signal was armed
        os._exit(1)


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


@contextlib.contextmanager
def safe_path() -> Iterator[None]:
    """PYTHONSAFEPATH=1 for the Python processes started in the block (workers, trackers): they start
    as `python -m`/`-c`, which would put their cwd first on sys.path before they take the driver's,
    so a joblib.py there would shadow the installed one (Python >= 3.11). Restored afterwards: a
    user's own later subprocesses keep their usual path."""
    before = os.environ.get("PYTHONSAFEPATH")
    os.environ["PYTHONSAFEPATH"] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PYTHONSAFEPATH", None)
        else:
            os.environ["PYTHONSAFEPATH"] = before


def quiet_threads() -> None:
    """From now on, drop the tracebacks of background threads (loky's manager, the progress reader)
    that die in the teardown after an interrupt or a failure: they would bury the one line that matters."""
    threading.excepthook = lambda args: None
