"""Row-block parallelism for the serial Numba kernels.

The kernels are compiled serial with ``nogil=True`` and run on Python threads, one
block of rows each. Compared with Numba's ``parallel=True`` this gives the same speed
on a few cores and compiles several times faster (parallel loop lowering dominated the
first-call time of the large kernels).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numba

T = TypeVar("T")

_local = threading.local()


def thread_count() -> int:
    """Threads to use: Numba's thread setting (NUMBA_NUM_THREADS), at most the CPU count;
    1 inside ``serial_call`` (tasks of a pool that already runs one per core)."""
    if getattr(_local, "serial", False):
        return 1
    return max(1, min(numba.get_num_threads(), os.cpu_count() or 1))


def serial_call(func: Callable[..., T], *args) -> T:
    """``func(*args)`` with its row blocks run on the calling thread.

    Block-wise runs keep a task per worker thread in flight; each task splitting its rows
    over threads again would run threads^2 of them on as many cores.
    """
    _local.serial = True
    try:
        return func(*args)
    finally:
        _local.serial = False


def row_blocks(rows: int, blocks: int | None = None) -> list[tuple[int, int]]:
    """Split ``rows`` into about ``blocks`` contiguous (start, stop) ranges."""
    blocks = max(1, min(rows, blocks or thread_count()))
    edges = [round(k * rows / blocks) for k in range(blocks + 1)]
    return [(edges[k], edges[k + 1]) for k in range(blocks) if edges[k + 1] > edges[k]]


def run_blocks(work: Callable[[int, int], T], rows: int, blocks: int | None = None) -> list[T]:
    """Run ``work(start, stop)`` for each row block, on threads when there is more than one."""
    ranges = row_blocks(rows, blocks)
    if len(ranges) == 1:
        return [work(*ranges[0])]
    with ThreadPoolExecutor(max_workers=min(len(ranges), thread_count())) as pool:
        return list(pool.map(lambda r: work(*r), ranges))


@contextlib.contextmanager
def progress_bar(total: int, description: str, enabled: bool = True, unit: str = "row") -> Iterator[Callable[[int], None]]:
    """A tqdm bar over ``total`` units, yielding a thread-safe ``update(n)``.

    Silent when ``enabled`` is False or when standard error is not a terminal (tqdm's
    ``disable=None``), so logs and CI output stay clean.
    """
    from tqdm import tqdm

    bar = tqdm(total=total, desc=description, unit=unit, disable=None if enabled else True, leave=False)
    lock = threading.Lock()

    def update(n: int) -> None:
        with lock:
            bar.update(n)

    try:
        yield update
    finally:
        bar.close()
