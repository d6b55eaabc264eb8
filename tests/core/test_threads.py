"""The row-block threads: the pool kept for the process, results in order, failures
raised only after every block has ended, nested runs serial."""

from __future__ import annotations

import itertools
import os
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sarheight import threads


@settings(max_examples=40, deadline=None)
@given(rows=st.integers(1, 500), blocks=st.integers(1, 16))
def test_row_blocks_cover_the_rows_once_in_order(rows, blocks):
    ranges = threads.row_blocks(rows, blocks)
    assert ranges[0][0] == 0 and ranges[-1][1] == rows
    assert all(stop > start for start, stop in ranges)
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    assert len(ranges) <= min(rows, blocks)


@pytest.fixture
def two_threads(monkeypatch):
    """Two threads to run blocks on, whatever this test process's own setting (the tests
    run one thread a worker process)."""
    monkeypatch.setattr(threads, "thread_count", lambda: 2)


def test_one_thread_runs_every_block_on_the_calling_thread(monkeypatch):
    monkeypatch.setattr(threads, "thread_count", lambda: 1)
    here = threading.current_thread()
    assert threads.run_blocks(lambda start, stop: threading.current_thread(), 10, blocks=4) == [here] * 4


def test_run_blocks_returns_every_block_in_order_and_reuses_its_threads(two_threads):
    names = set()

    def work(start, stop):
        names.add(threading.current_thread().name)
        time.sleep(0.002)  # long enough for the pool's lane to take a block
        return list(range(start, stop))

    for _ in range(50):
        result = threads.run_blocks(work, 100, blocks=2)
        assert [row for block in result for row in block] == list(range(100))
    # The caller and threads kept in the pool (one a CPU at most), not fifty new ones.
    assert len(names) <= 1 + (os.cpu_count() or 1)
    assert any(name.startswith("sarheight-blocks") for name in names)


def test_a_failing_block_is_raised_after_the_others_ended(two_threads):
    ended = []

    def work(start, stop):
        if start == 0:
            raise ValueError("the first block fails")
        time.sleep(0.05)
        ended.append(start)

    with pytest.raises(ValueError, match="first block"):
        threads.run_blocks(work, 4, blocks=4)
    # Every other block had ended when the error reached the caller.
    assert sorted(ended) == [start for start, _ in threads.row_blocks(4, 4)[1:]]


def test_map_tasks_keeps_the_order_and_runs_each_tasks_blocks_on_its_own_thread(two_threads):
    def task(item):
        here = threading.current_thread()
        seen = threads.run_blocks(lambda start, stop: threading.current_thread(), 10, blocks=4)
        assert all(thread is here for thread in seen)
        return item * item

    assert threads.map_tasks(task, range(30)) == [item * item for item in range(30)]
    assert threads.map_tasks(task, []) == []


def test_map_tasks_raises_a_tasks_error(two_threads):
    def task(item):
        if item == 7:
            raise KeyError(item)
        return item

    with pytest.raises(KeyError):
        threads.map_tasks(task, range(20))
