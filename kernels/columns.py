"""DEM columns for the masks of :mod:`visibility`: the runs of valid cells along each
column, the search for the pair of cells of a run that brackets a radar line, and the
point a column's cut makes there (rows run along track; a column's cells cross the lines
in turn).
"""

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def column_runs(line, valid):
    """The runs of valid cells along every DEM column, and their line ranges.

    A run is a maximal range of row pairs (i, i + 1) whose cells are both valid. A column
    that a void interrupts has several; the bracket search steps from run to run instead
    of through the void, where it could not tell which way to go.

    Parameters
    ----------
    line : (rows, cols) float64, radar line of the cells; rows >= 2.
    valid : (rows, cols) bool.

    Returns
    -------
    runs : tuple of
        first : (cols + 1,) int64, column j's runs are first[j]:first[j + 1];
        pairs : (n_runs, 2) int64, the first and last row pair of each run (row indices);
        lines : (n_runs, 2) float64, the smallest and largest line of its cells;
        rising : (cols,) bool, whether the line grows with the row in the column (lines
            are monotone along a column that runs along track, so runs are ordered).
    """
    rows, cols = line.shape
    first = np.zeros(cols + 1, dtype=np.int64)
    for i in range(rows - 1):
        for j in range(cols):
            if valid[i, j] and valid[i + 1, j] and (i == 0 or not valid[i - 1, j]):
                first[j + 1] += 1
    for j in range(cols):
        first[j + 1] += first[j]
    pairs = np.empty((first[cols], 2), dtype=np.int64)
    lines = np.empty((first[cols], 2))
    rising = np.zeros(cols, dtype=np.bool_)
    cursor = first[:cols].copy()
    for i in range(rows - 1):
        for j in range(cols):
            if not (valid[i, j] and valid[i + 1, j]):
                continue
            lo = min(line[i, j], line[i + 1, j])
            hi = max(line[i, j], line[i + 1, j])
            if i == 0 or not valid[i - 1, j]:
                k = cursor[j]
                cursor[j] += 1
                pairs[k, 0] = i
                lines[k, 0] = lo
                lines[k, 1] = hi
                if k == first[j]:
                    rising[j] = line[i + 1, j] > line[i, j]
            else:
                k = cursor[j] - 1
                lines[k, 0] = min(lines[k, 0], lo)
                lines[k, 1] = max(lines[k, 1], hi)
            pairs[k, 1] = i
    return first, pairs, lines, rising


@numba.njit(cache=True, nogil=True)
def find_bracket(target, j, i, line, runs):
    """Search column ``j`` from row ``i`` for the pair of rows whose lines straddle ``target``.

    Parameters
    ----------
    target : float, the radar line (absolute index).
    j, i : int, the column and the first row of the pair (i, i + 1) tried first.
    line : (rows, cols) float64, radar line of the cells.
    runs : the column runs from ``column_runs``.

    Returns
    -------
    found : bool, whether a pair of valid cells straddles ``target``.
    i : int, the first row of that pair, or where the search stopped.
    """
    first, pairs, lines, rising = runs
    o0 = first[j]
    o1 = first[j + 1]
    if o0 == o1:
        return False, i
    # The run holding row i, or the last one before it.
    k = o0
    hi = o1
    while hi - k > 1:
        mid = (k + hi) // 2
        if pairs[mid, 0] <= i:
            k = mid
        else:
            hi = mid
    # Runs are ordered by line too: step towards the one that holds target.
    for _ in range(o1 - o0):
        if lines[k, 0] <= target <= lines[k, 1]:
            break
        larger = target > lines[k, 1]
        nxt = k + (1 if larger == rising[j] else -1)
        if nxt < o0 or nxt >= o1 or (lines[nxt, 0] > target if larger else lines[nxt, 1] < target):
            return False, min(max(i, pairs[k, 0]), pairs[k, 1])  # beyond the column, or in a void
        k = nxt
    if not lines[k, 0] <= target <= lines[k, 1]:
        return False, i
    a = pairs[k, 0]
    b = pairs[k, 1]
    i = min(max(i, a), b)
    for _ in range(b - a + 1):
        l0 = line[i, j]
        l1 = line[i + 1, j]
        if min(l0, l1) <= target <= max(l0, l1):
            return True, i
        if (l1 > l0) == (target > max(l0, l1)):
            if i == b:
                return False, i
            i += 1
        else:
            if i == a:
                return False, i
            i -= 1
    return False, i


@numba.njit(cache=True, nogil=True)
def column_spans(runs, cols):
    """Per column, the smallest and largest line of its valid cells ((cols, 2) float64; inf
    and -inf for a column without runs): a line outside it is not reached."""
    first, _, lines, _ = runs
    span = np.empty((cols, 2))
    for j in range(cols):
        lo = math.inf
        hi = -math.inf
        for k in range(first[j], first[j + 1]):
            lo = min(lo, lines[k, 0])
            hi = max(hi, lines[k, 1])
        span[j, 0] = lo
        span[j, 1] = hi
    return span


@numba.njit(cache=True, nogil=True, inline="always")
def crossing_weight(target, i, j, line):
    """Interpolation weight of row i + 1 where column j's line equals ``target``."""
    span = line[i + 1, j] - line[i, j]
    return 0.0 if span == 0.0 else (target - line[i, j]) / span


@numba.njit(cache=True, nogil=True)
def own_point(here, j, i, line, runs, cross_track, field):
    """Column ``j`` cut at line ``here``: its point in that zero-Doppler plane.

    Parameters
    ----------
    here : float, the line (absolute index).
    j, i : int, the column and the row to start the search from (a bracket of a nearby line).
    line, cross_track : (rows, cols) cell arrays; runs: the column runs (``column_runs``).
    field : (rows, cols) float64, the quantity to cut (slant range, m, or look angle, rad).

    Returns
    -------
    found : bool, whether the column reaches the line.
    ct : float, cross-track angle of the point (rad).
    value : float, ``field`` at the point.
    """
    found, i = find_bracket(here, j, i, line, runs)
    if not found:
        return False, 0.0, 0.0
    w = crossing_weight(here, i, j, line)
    return (True, (1.0 - w) * cross_track[i, j] + w * cross_track[i + 1, j],
            (1.0 - w) * field[i, j] + w * field[i + 1, j])
