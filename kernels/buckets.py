"""The cells of a window bucketed by the pair of radar lines that brackets them, with
their initial masks (:mod:`visibility`' first pass), and the grouping of lines by DEM
rows (``line_group``) that lets one pair of profiles serve several lines.
"""

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def visibility_buckets(line, valid, judged, faces_away, active_layover, line0, n_lines, codes, layover, shadow):
    """Initial masks and the cells bucketed by the pair of window lines that brackets them.

    Key b holds the valid cells with floor(line) = line0 + b - 1, between lines b - 1 and
    b of the window (keys 0 and n_lines have one of them only).

    Parameters
    ----------
    line : (rows, cols) float64; valid, faces_away, active_layover : (rows, cols) bool.
    judged : (rows, cols) bool, the valid cells to judge (bucket); the others only lend
        their points to the profiles (the neighbours of a band of lines).
    line0, n_lines : int, the window's first line and number of lines.
    codes : (none, active, passive, outside), int, the mask codes (the caller's:
        ``masks.MaskCode``).
    layover, shadow : (rows, cols) uint8 outputs: outside for invalid cells, none for
        valid ones (active layover where ``active_layover``, active shadow where the cell
        faces away).

    Returns
    -------
    start : (n_lines + 2,) int64, key b's cells are bucket[start[b]:start[b + 1]].
    bucket : int64 flat indices i * cols + j, grouped by key, row-major within a key.
    """
    n_keys = n_lines + 1
    counts = np.zeros(n_keys + 1, dtype=np.int64)
    bucket_counts(line, valid, judged, faces_away, active_layover, line0, n_lines, 0, line.shape[0], codes, layover,
                  shadow, counts)
    start = np.zeros(n_keys + 1, dtype=np.int64)
    for b in range(n_keys):
        start[b + 1] = start[b] + counts[b]
    bucket = np.empty(start[n_keys], dtype=np.int64)
    cursor = start[:n_keys].copy()
    bucket_fill(line, valid, judged, line0, n_lines, 0, line.shape[0], cursor, bucket)
    return start, bucket


@numba.njit(cache=True, nogil=True)
def bucket_counts(line, valid, judged, faces_away, active_layover, line0, n_lines, row_start, row_stop, codes,
                  layover, shadow, counts):
    """Rows ``row_start:row_stop`` of ``visibility_buckets``' first pass: the initial masks
    of their cells (``codes`` as there) and, into ``counts`` (n_lines + 1,), how many
    judged cells each key holds. Row blocks run on threads; ``bucket_fill`` then places
    them."""
    none, active, _, outside = codes
    cols = line.shape[1]
    n_keys = n_lines + 1
    for i in range(row_start, row_stop):
        for j in range(cols):
            if valid[i, j]:
                layover[i, j] = active if active_layover[i, j] else none
                shadow[i, j] = active if faces_away[i, j] else none
                key = int(math.floor(line[i, j])) - line0 + 1
                if 0 <= key < n_keys and judged[i, j]:
                    counts[key] += 1
            else:
                layover[i, j] = outside
                shadow[i, j] = outside


@numba.njit(cache=True, nogil=True)
def bucket_fill(line, valid, judged, line0, n_lines, row_start, row_stop, cursor, bucket):
    """Rows ``row_start:row_stop`` of ``visibility_buckets``' second pass: their judged
    cells' flat indices placed in ``bucket`` at ``cursor`` (per key, where this block's
    cells of the key begin), row-major within a key."""
    cols = line.shape[1]
    n_keys = n_lines + 1
    for i in range(row_start, row_stop):
        for j in range(cols):
            if valid[i, j] and judged[i, j]:
                key = int(math.floor(line[i, j])) - line0 + 1
                if 0 <= key < n_keys:
                    bucket[cursor[key]] = i * cols + j
                    cursor[key] += 1


@numba.njit(cache=True, nogil=True)
def line_groups(n_lines, group):
    """The bounds of ``visibility_lines``' groups of keys for ``group`` lines per group:
    key 0, then the keys between successive window lines 0, group, 2 group, ... and the
    last line, then key n_lines. Returns (n_groups + 1,) int64, group g holding keys
    bounds[g]:bounds[g + 1]; ranges of keys that run independently start and stop at these."""
    bounds = [0]
    for b in range(n_lines):
        if b % group == 0 or b == n_lines - 1:
            bounds.append(b + 1)
    bounds.append(n_lines + 1)
    return np.array(bounds, dtype=np.int64)


def line_group(line, valid, largest=16, samples=200_000):
    """Lines per group for ``visibility_lines``: the median number of lines between a
    cell and the next along its column (rows run along track), rounded down, 1 to
    ``largest``. More lines per pair than cells per line would loosen the bounds.

    Taken over about ``samples`` pairs of neighbouring rows, an even subset of them: the
    group sets the work, never the masks (any group gives the same), and differencing the
    whole DEM cost more than the median needs (0.03-0.05 s at 2048^2, serial)."""
    step = median_line_step(line, valid, samples)
    return 1 if step is None else int(min(largest, max(1, math.floor(step))))


def median_line_step(line, valid, samples=200_000):
    """The median number of lines between a cell and the next along its column (rows run
    along track), over about ``samples`` pairs of neighbouring rows (an even subset), or
    None where no pair of valid neighbours has a finite step."""
    rows, cols = line.shape
    if rows < 2:
        return None
    stride = max(1, (rows - 1) * cols // samples)
    first, second = slice(0, rows - 1, stride), slice(1, rows, stride)
    steps = np.abs(line[second] - line[first])[valid[second] & valid[first]]
    steps = steps[np.isfinite(steps)]
    return float(np.median(steps)) if steps.size else None
