"""Shared pieces of the benchmarks: timing, machine description, JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
#: The real reference data beside the repository (``../shared/data``); absent on most machines.
SHARED_DATA = REPO.parent / "shared" / "data"
#: The Sentinel-1B IW GRD over Lazio and Abruzzo (annotation only: geometry).
ROME_GRD_NAME = "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the numpy twins of the kernels live in twins/


def timed_runs(func: Callable[[], Any], repeats: int = 3, min_total: float = 0.5) -> dict[str, Any]:
    """Wall times (s) of ``func`` over ``repeats`` warm runs (more while the total is
    short): all of them, the best, the median and the spread ((max - min) / median)."""
    func()  # warm: compilation, caches, page faults of first allocations
    times: list[float] = []
    while len(times) < repeats or (sum(times) < min_total and len(times) < 20):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {"runs": times, "best": min(times), "median": median, "spread": (max(times) - min(times)) / median}


def best_time(func: Callable[[], Any], repeats: int = 3, min_total: float = 0.5) -> float:
    """Best wall time (s) of ``func`` over ``repeats`` runs (more while the total is short), warm."""
    return timed_runs(func, repeats, min_total)["best"]


def best_cpu_time(func: Callable[[], Any], repeats: int = 3) -> float:
    """Best process CPU time (s, all threads) of ``func`` over ``repeats`` warm runs: the
    work itself, which other processes on a shared machine inflate much less than the
    wall time (they take cores away; they add only cache and memory-bandwidth contention)."""
    func()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        func()
        times.append(time.process_time() - start)
    return min(times)


def loadavg() -> list[float] | None:
    """1, 5 and 15-minute load averages (None where the system does not say)."""
    try:
        return [float(v) for v in os.getloadavg()]
    except OSError:
        return None


def machine() -> dict[str, Any]:
    import numba
    import numpy as np

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "numba": numba.__version__,
        "numpy": np.__version__,
    }


def write_json(result: dict[str, Any], path: str | os.PathLike[str]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".part")
    tmp.write_text(json.dumps(result, indent=2, default=str))
    os.replace(tmp, path)


def finish(result: dict[str, Any], path: str | os.PathLike[str], load_start: list[float] | None) -> int:
    """Add the load averages at the start and now to ``result``, write it as JSON at
    ``path`` and say so; returns 0, the benchmark's exit status."""
    load_end = loadavg()
    print(f"load average {load_end}")
    result["loadavg_start"], result["loadavg_end"] = load_start, load_end
    write_json(result, path)
    print(f"wrote {path}")
    return 0
