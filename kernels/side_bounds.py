"""Bounds of a cell's margins over one side of its profile (:mod:`visibility`): running
extrema of the two bracketing lines' profiles, sorted by cross-track angle; whether their
interpolation may reach a threshold; and, where it may, the points of that side
evaluated block by block, each block skipped where its own bounds cannot reach.
"""

import math

import numba

from .columns import own_point


@numba.njit(cache=True, nogil=True)
def running_max(values, slot, n, out, arg):
    """Running maximum of ``values[slot, :n]`` and its index, into ``out``, ``arg`` (same slot).

    With selects, not branches: whether a point raises the maximum is as good as random
    along a rough profile (a mispredicted branch per point cost 2-3 times the loop)."""
    best = -math.inf
    where = -1
    for k in range(n):
        value = values[slot, k]
        take = (k == 0) | (value > best)
        best = value if take else best
        where = k if take else where
        out[slot, k] = best
        arg[slot, k] = where


@numba.njit(cache=True, nogil=True)
def running_min_from_end(values, slot, n, out, arg):
    """Running minimum of ``values[slot, :n]`` from the end and its index, into ``out``,
    ``arg`` (with selects, as ``running_max``)."""
    best = math.inf
    where = -1
    for k in range(n - 1, -1, -1):
        value = values[slot, k]
        take = (k == n - 1) | (value < best)
        best = value if take else best
        where = k if take else where
        out[slot, k] = best
        arg[slot, k] = where


@numba.njit(cache=True, nogil=True, inline="always")
def count_below_near(values, slot, n, x, guess):
    """How many of ``values[slot, :n]`` (ascending) are below ``x``, searched outward from
    ``guess``: the cells of a bucket come row by row, column after column, so each lies
    near the previous one in the profile and the search takes a few steps, not log2(n)."""
    lo = 0
    hi = n
    g = min(max(guess, 0), n)
    step = 1
    if g < n and values[slot, g] < x:
        lo = g + 1
        while True:
            probe = lo + step - 1
            if probe >= n:
                break
            if values[slot, probe] < x:
                lo = probe + 1
                step *= 2
            else:
                hi = probe
                break
    else:
        hi = g
        while True:
            probe = hi - step
            if probe < 0:
                break
            if values[slot, probe] >= x:
                hi = probe
                step *= 2
            else:
                lo = probe + 1
                break
    while lo < hi:
        mid = (lo + hi) // 2
        if values[slot, mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True, nogil=True, inline="always")
def _exceeds(margin, threshold, strict):
    return margin > threshold if strict else margin >= threshold


@numba.njit(cache=True, nogil=True, inline="always")
def bound_reaches(nearer, f, bound0, arg0, bound1, arg1, cell, threshold, strict):
    """Whether the envelope bound of a margin reaches ``threshold``; if not, no column on the
    side in both profiles can, and the side is settled without looking at them.

    ``bound0``, ``bound1`` are the extrema of the envelope values over the side in each
    profile (own column left out), ``arg0``, ``arg1`` their indices (-1: none on the side).
    """
    if arg0 < 0 or arg1 < 0 or not (math.isfinite(bound0) and math.isfinite(bound1)):
        return False
    sign = 1.0 if nearer else -1.0
    # Rounding slack: the bound must not fall below a point's value by an ulp.
    slack = 1e-12 * (abs(bound0) + abs(bound1) + abs(cell))
    return _exceeds(sign * ((1.0 - f) * bound0 + f * bound1 - cell) + slack, threshold, strict)


#: Points of profile 0 per block of ``_side_blocks``.
SIDE_BLOCK = 16


@numba.njit(cache=True, nogil=True)
def _side_blocks(nearer, envelope, t, s, n0, p_col, rank, out):
    """Bounds per block of ``SIDE_BLOCK`` points of profile 0, for ``side_reaches`` to pass
    over the blocks where no point can reach the threshold.

    Into ``out`` (4, blocks), for the block's points p (slot ``t``) and their columns'
    points in profile 1 (slot ``s``): the largest sign * envelope value in each profile
    (sign +1 ``nearer``, -1 farther) and the largest magnitudes (for the rounding slack).
    A block with a point not cut by both lines or with an infinite envelope value is
    open: bounds of +inf, its points are looked at one by one.
    """
    sign = 1.0 if nearer else -1.0
    for block in range((n0 + SIDE_BLOCK - 1) // SIDE_BLOCK):
        top0 = -math.inf
        top1 = -math.inf
        size0 = 0.0
        size1 = 0.0
        for p in range(block * SIDE_BLOCK, min(n0, (block + 1) * SIDE_BLOCK)):
            q = rank[s, p_col[t, p]]
            bound0 = envelope[t, p]
            bound1 = envelope[s, q] if q >= 0 else math.inf
            if not (math.isfinite(bound0) and math.isfinite(bound1)):
                top0 = math.inf
                top1 = math.inf
                break
            top0 = max(top0, sign * bound0)
            top1 = max(top1, sign * bound1)
            size0 = max(size0, abs(bound0))
            size1 = max(size1, abs(bound1))
        out[0, block] = top0
        out[1, block] = top1
        out[2, block] = size0
        out[3, block] = size1


@numba.njit(cache=True, nogil=True, inline="always")
def _block_may_reach(blocks, block, f, sign, cell, threshold, strict):
    """Whether a point of block ``block`` of ``_side_blocks`` may have a margin reaching
    ``threshold`` at the fraction ``f`` (0..1) between the profiles: always for an open
    block. The block's bound is at least every point's (rounding is monotone and the sign
    flips exactly), its slack at least theirs; an open block's infinite bounds are not
    used in arithmetic (0 * inf would be NaN, which reaches nothing)."""
    if not math.isfinite(blocks[0, block]):
        return True
    slack = 1e-12 * (blocks[2, block] + blocks[3, block] + abs(cell))
    return _exceeds((1.0 - f) * blocks[0, block] + f * blocks[1, block] - sign * cell + slack, threshold, strict)


@numba.njit(cache=True, nogil=True)
def side_reaches(nearer, cell, x, threshold, strict, arg0, arg1, split0, own0, n0, t, s, p_col, p_row,
                  here, line, runs, cross_track, field, envelope, rank, f, blocks, ready, which):
    """Whether a margin of the cell reaches ``threshold``, point by point on one side.

    For when the envelope bound is inconclusive. The margin is ``sign * (v - cell)`` over
    the cell's own profile points v on the side (``nearer``: sign +1, cross-track angle
    below the cell's ``x``; farther: sign -1, at or above it) of the columns on that side
    in both profiles: first those where the bounds are reached, then all of them.

    Parameters
    ----------
    nearer : bool, the side.
    cell, x : float, the cell's own value of ``field`` and its cross-track angle (rad).
    threshold : float, in the unit of ``field``; strict: whether the margin must exceed it.
    arg0, arg1 : int, where the bounds are reached in profiles 0 and 1.
    split0, own0, n0 : int, profile 0's number of points nearer than the cell, index of
        the cell's column (-1: none), number of points.
    t, s : int, the slots of profiles 0 and 1 in ``p_col``, ``p_row`` (columns and
        bracket rows of the sorted profiles).
    here : float, the cell's line.
    line, cross_track, field : (rows, cols) cell arrays; runs: the column runs.
    envelope, rank, f : the envelope values of the sorted profiles (2, cols), each
        column's index in them (-1: not cut), and the cell's fraction of the way from
        profile 0 to profile 1: a column whose own bound does not reach the threshold is
        passed over without being cut at the cell's line.
    blocks, ready, which : the block bounds of this side (``_side_blocks``), made on first
        need for the pair of profiles and flagged in ``ready[which]``.
    """
    sign = 1.0 if nearer else -1.0
    for c in range(2):
        jj = p_col[t, arg0] if c == 0 else p_col[s, arg1]
        ii = p_row[t, arg0] if c == 0 else p_row[s, arg1]
        found, ct_k, v = own_point(here, jj, ii, line, runs, cross_track, field)
        if found and (ct_k < x) == nearer and _exceeds(sign * (v - cell), threshold, strict):
            return True
    first, stop = (0, split0) if nearer else (split0, n0)
    if not ready[which]:
        _side_blocks(nearer, envelope, t, s, n0, p_col, rank, blocks)
        ready[which] = True
    start = first
    while start < stop:
        block = start // SIDE_BLOCK
        block_stop = min(stop, (block + 1) * SIDE_BLOCK)
        if not _block_may_reach(blocks, block, f, sign, cell, threshold, strict):
            start = block_stop
            continue
        for p in range(start, block_stop):
            if p == own0:
                continue
            q = rank[s, p_col[t, p]]
            if q >= 0:
                bound0 = envelope[t, p]
                bound1 = envelope[s, q]
                # The column's own envelope bound, where it has one, settles it.
                if (math.isfinite(bound0) and math.isfinite(bound1)
                        and not bound_reaches(nearer, f, bound0, p, bound1, q, cell, threshold, strict)):
                    continue
            found, ct_k, v = own_point(here, p_col[t, p], p_row[t, p], line, runs, cross_track, field)
            if found and (ct_k < x) == nearer and _exceeds(sign * (v - cell), threshold, strict):
                return True
        start = block_stop
    return False
