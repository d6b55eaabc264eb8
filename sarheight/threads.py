"""Row-block parallelism for the serial Numba kernels.

The kernels are compiled serial with ``nogil=True`` and run on Python threads, one
block of rows each. Compared with Numba's ``parallel=True`` this gives the same speed
on a few cores and compiles several times faster (parallel loop lowering dominated the
first-call time of the large kernels).
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numba

T = TypeVar("T")

_local = threading.local()


#: Cells per block of DEM rows in the per-cell passes: the blocks' own buffers (ECEF
#: positions, per-cell sums, scatter bands) stay small beside the whole-DEM arrays.
BLOCK_CELLS = 1 << 17


def thread_count() -> int:
    """Threads to use: Numba's thread setting (NUMBA_NUM_THREADS), at most the CPU count;
    1 inside ``serial_call`` (tasks of a pool that already runs one per core)."""
    if getattr(_local, "serial", False):
        return 1
    return max(1, min(numba.get_num_threads(), os.cpu_count() or 1))


def block_count(shape: tuple[int, int]) -> int:
    """Row blocks for a per-cell pass over ``shape`` cells: at least one per thread, about
    :data:`BLOCK_CELLS` cells each."""
    return max(thread_count(), -(-shape[0] * shape[1] // BLOCK_CELLS))


def serial_call(func: Callable[..., T], *args) -> T:
    """``func(*args)`` with its row blocks run on the calling thread.

    Block-wise runs keep a task per worker thread in flight; each task splitting its rows
    over threads again would run threads^2 of them on as many cores.
    """
    was_serial = getattr(_local, "serial", False)
    _local.serial = True
    try:
        return func(*args)
    finally:
        _local.serial = was_serial


def row_blocks(rows: int, blocks: int | None = None) -> list[tuple[int, int]]:
    """Split ``rows`` into about ``blocks`` contiguous (start, stop) ranges."""
    blocks = max(1, min(rows, blocks or thread_count()))
    edges = [round(k * rows / blocks) for k in range(blocks + 1)]
    return [(edges[k], edges[k + 1]) for k in range(blocks) if edges[k + 1] > edges[k]]


def run_blocks(work: Callable[[int, int], T], rows: int, blocks: int | None = None) -> list[T]:
    """Run ``work(start, stop)`` for each row block, on threads when there is more than one
    (at most :func:`thread_count` at a time, :func:`map_tasks`): the calling thread runs
    blocks itself and the others go to one pool kept for the process (:func:`block_pool`),
    since an iterative method calls this thousands of times on small grids, where starting
    fresh threads each time cost a tenth of its run."""
    return map_tasks(lambda block: work(*block), row_blocks(rows, blocks))


def map_tasks(work: Callable[[T], Any], items: Sequence[T]) -> list[Any]:
    """``[work(item) for item in items]``, the items spread over at most :func:`thread_count`
    threads, the calling thread one of them and the others from :func:`block_pool`. Inside
    a task, row blocks run serially on its thread (no task waits on a pool its siblings
    fill), which also suits many small independent kernel runs (the probes of a Jacobian),
    where one run split into row blocks spends its time handing them over. Every task
    ends before the call returns; the first error is raised then."""
    items = list(items)
    lanes = min(len(items), thread_count())
    # On a pool's thread and inside serial_call (one flag, ``serial``) the items run here.
    if lanes <= 1 or getattr(_local, "serial", False):
        return [work(item) for item in items]
    results: list[Any] = [None] * len(items)
    taken = iter(range(len(items)))
    lock = threading.Lock()

    def lane() -> None:
        while True:
            with lock:
                index = next(taken, None)
            if index is None:
                return
            results[index] = work(items[index])

    pool = block_pool()
    helpers = [pool.submit(_pool_task, lane) for _ in range(lanes - 1)]
    was_serial = getattr(_local, "serial", False)
    _local.serial = True
    try:
        lane()
    finally:
        _local.serial = was_serial
        futures.wait(helpers)
    for helper in helpers:
        helper.result()
    return results


def _pool_task(lane: Callable[[], None]) -> None:
    # A pool's thread runs its own blocks itself, always.
    _local.serial = True
    lane()


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def block_pool() -> ThreadPoolExecutor:
    """The process's pool of row-block threads: one a CPU, started on first use, made
    anew in a forked child (threads do not survive a fork)."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="sarheight-blocks")
        return _pool


def _forget_pool() -> None:
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


#: Seconds between the progress lines a long task writes outside a terminal; the
#: environment variable SARHEIGHT_PROGRESS_SECONDS sets another.
PROGRESS_SECONDS = 30.0


def progress_seconds(default: float = PROGRESS_SECONDS) -> float:
    """The seconds between progress lines in a log: SARHEIGHT_PROGRESS_SECONDS where it is
    a positive number, else ``default``."""
    try:
        value = float(os.environ.get("SARHEIGHT_PROGRESS_SECONDS", default))
    except ValueError:
        return default
    return value if value > 0 and value == value else default


def bar(iterable: Any = None, *, total: float | None = None, desc: str | None = None, unit: str = "it",
        enabled: bool = True, **options: Any) -> Any:
    """A progress bar (tqdm): in a terminal as tqdm draws it; outside one (a log, a pipe, a
    batch job) a whole line on standard error every :func:`progress_seconds`, none for a
    task shorter than that; nothing where ``enabled`` is False."""
    from tqdm import tqdm

    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, **options)
    options.pop("leave", None)
    return _log_bar_class()(iterable, total=total, desc=desc, unit=unit, mininterval=progress_seconds(), **options)


@functools.cache
def _log_bar_class() -> type:
    """The class of :func:`bar`'s lines (made on first use: tqdm is imported late)."""
    from tqdm import tqdm

    class LogBar(tqdm):
        """A tqdm bar that writes whole lines to standard error, at most every
        ``mininterval`` seconds, and none before the first interval has passed."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._said = False
            # tqdm's own output goes nowhere (no carriage returns, no stray newlines).
            super().__init__(*args, file=io.StringIO(), disable=False, leave=False, **kwargs)

        def display(self, msg: str | None = None, pos: int | None = None) -> None:
            started = getattr(self, "start_t", None)  # set after tqdm's first refresh
            if msg == "" or started is None or self._time() - started < self.mininterval * 0.98:
                return
            print(self.format_meter(**self.format_dict).strip(), file=sys.stderr, flush=True)
            self._said = True

        def close(self) -> None:
            if not self.disable and self._said and self.n != self.last_print_n:
                self.display()  # the last figures, where a line was written before
            super().close()

    return LogBar


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool = True,
                 unit: str = "row") -> Iterator[Callable[[int], None]]:
    """A tqdm bar over ``total`` units, yielding a thread-safe ``update(n)``.

    Outside a terminal a line every :func:`progress_seconds` (:func:`bar`); silent when
    ``enabled`` is False.
    """
    shown = bar(total=total, desc=description, unit=unit, enabled=enabled, leave=False)
    lock = threading.Lock()

    def update(n: int) -> None:
        with lock:
            shown.update(n)

    try:
        yield update
    finally:
        shown.close()
