"""Layover and shadow masks of DEM cells in their own zero-Doppler planes, and mixing.

Profiles. For a radar line l, each DEM column is cut where its cells' line crosses l
(rows run along track; the caller transposes the DEM otherwise), on the pair of valid
neighbouring cells that straddles l, and the slant range, look angle, cross-track angle
and sample are interpolated linearly there: the terrain profile in l's zero-Doppler
plane. ISCE3 sweeps such a profile ordered by cross-track angle: shadow where the look
angle is at or below the running maximum from near to far, layover where the slant
range is below the running maximum (forward pass) or above the running minimum from the
far end (backward pass).

Cells. Each cell is judged in its own plane, at its own line l, not in that of the
nearest radar line (up to half a line away along track, where the terrain differs). Its
profile has one point per DEM column other than its own (whose point is the cell
itself) that the lines bracketing it, L0 = floor(l) and L0 + 1, cut in the window: that
column cut at l, where it reaches l. With r, eta, c the cell's own slant range, look
angle and cross-track angle, and the points split into nearer (c' < c) and farther
(c' >= c):

    forward margin    max r'   - r    over the nearer points
    backward margin   r - min r'      over the farther points
    shadow margin     max eta' - eta  over the nearer points

Active layover where the cell's own surface lays over (the caller's ``active_layover``:
more than half of its footprint range-reversing, ``facing.active_layover``), whatever
the profile; passive layover where it does not but is overlain, a margin exceeding
``range_tolerance`` forward or backward. Active shadow where the cell's surface faces
away from the sensor (``faces_away``), whatever the profile; passive shadow where it
does not but the shadow margin reaches ``range_tolerance / r`` (the same tolerance seen
from the sensor). A valid cell that no line of the window brackets has no point:
neither passive layover nor passive shadow.

Cost. Building every cell's profile would cost O(cols) per cell; the masks are those of
that construction (the tests check it against a numpy twin that builds it) at about
O(log cols) per cell. Between its cuts at L0 and L0 + 1 a column is piecewise linear
in the line, with kinks at the cells in between; raised by its largest excess over the
chord (lowered, for minima), the chord bounds it, so the profiles of L0 and L0 + 1,
sorted by cross-track angle with these envelope values, prefix maxima and suffix minima,
bound a cell's margin over the columns on its side in both profiles by
(1 - f) max v0 + f max v1 at f = l - L0 (rounding is monotone, so this holds in floating
point up to a slack of 1e-12 relative). Evaluated point by point are only the columns
that may change side between the two lines (within the largest cross-track spread of a
column's path), those cut by one of the lines only or broken by a void, and, where the
bound is inconclusive, the columns where the extrema are reached, then the whole side.
Cells are bucketed by L0, two profiles are kept, and bracket searches step from run to
run of valid cells along a column, not through voids.

The bounds hold for any two lines that bracket a cell, not only L0 and L0 + 1: the cells
between window lines a and a + g are set against those two profiles at once, with
f = (l - a) / g (``visibility_lines``' ``group``). On a DEM coarser than the lines, g =
the lines per DEM row makes the work per pair of profiles (envelopes, running extrema)
follow the DEM rows instead of the lines; every line is still cut for the mixing. The
masks are the same for any g (the tests check g = 1, 2, 3 against the twin).

Mixing: per pixel of a line, the number of separate runs of illuminated points of the
line's profile in it.

Mask codes. The kernels that write masks take them as an argument ``codes``, four
integers (none, active, passive, outside): the caller's, ``sarheight.masks.MaskCode`` as
plain ints (``masks.kernel_codes()``); none is defined here.
"""

import math

import numba
import numpy as np

from .buckets import visibility_buckets
from .columns import column_runs, column_spans, crossing_weight, find_bracket
from .side_bounds import (
    SIDE_BLOCK,
    bound_reaches,
    count_below_near,
    running_max,
    running_min_from_end,
    side_reaches,
)


@numba.njit(cache=True, nogil=True)
def _cut_profile(target, line, sample, slant_range, look_angle, cross_track, faces_away, runs, span, pointer,
                 ct, eta, rng, smp, away, column, bracket):
    """Cut every DEM column where its cells' line crosses ``target``: the line's profile.

    Parameters
    ----------
    target : float, the radar line (absolute index).
    line, sample, slant_range, look_angle, cross_track, faces_away : (rows, cols) cell
        arrays as in ``visibility_profiles``.
    runs : the column runs from ``column_runs``; span: their line spans (``column_spans``).
    pointer : (cols,) int64, per column the first row of the pair tried first; updated,
        so that successive lines start where the last one was found.
    ct, eta, rng, smp : (cols,) float64 outputs: cross-track angle (rad), look angle
        (rad), slant range (m) and sample of the points, in column order.
    away : (cols,) bool output, whether the nearer of the two cells faces away.
    column, bracket : (cols,) int64 outputs, each point's DEM column and first row.

    Returns
    -------
    n : int, the number of points written.
    """
    rows, cols = line.shape
    first, pairs, _, rising = runs
    n = 0
    for j in range(cols):
        # Lines advance by about one per DEM row along a column: the pair the last line
        # was found at, or the next, usually straddles this one (what find_bracket, which
        # tries the pair it starts from first, would find there).
        i = pointer[j]
        found = False
        if 0 <= i < rows - 1:
            l0 = line[i, j]
            l1 = line[i + 1, j]
            if min(l0, l1) <= target <= max(l0, l1):
                found = True
            elif l0 == l0 and l1 == l1:
                k = i + 1 if (target > max(l0, l1)) == (l1 > l0) else i - 1
                if 0 <= k < rows - 1 and min(line[k, j], line[k + 1, j]) <= target <= max(line[k, j], line[k + 1, j]):
                    found = True
                    i = k
        if not found:
            o0 = first[j]
            o1 = first[j + 1]
            if o0 == o1:
                continue
            if target < span[j, 0] or target > span[j, 1]:
                # A line the column does not reach (columns at the DEM's edges, every line
                # for a while): find_bracket steps to the column's run at that end and stops
                # there; written out, without the call (its array arguments are
                # reference-counted, which cost more than the search here).
                k = o1 - 1 if (target > span[j, 1]) == rising[j] else o0
                pointer[j] = min(max(i, pairs[k, 0]), pairs[k, 1])
                continue
            found, i = find_bracket(target, j, i, line, runs)
        pointer[j] = i
        if not found:
            continue
        f = crossing_weight(target, i, j, line)
        ct[n] = (1.0 - f) * cross_track[i, j] + f * cross_track[i + 1, j]
        eta[n] = (1.0 - f) * look_angle[i, j] + f * look_angle[i + 1, j]
        rng[n] = (1.0 - f) * slant_range[i, j] + f * slant_range[i + 1, j]
        smp[n] = (1.0 - f) * sample[i, j] + f * sample[i + 1, j]
        away[n] = faces_away[i, j] if f < 0.5 else faces_away[i + 1, j]
        column[n] = j
        bracket[n] = i
        n += 1
    return n


@numba.njit(cache=True, nogil=True)
def _sorted_order(values, n):
    """Indices that sort ``values[:n]`` ascending: insertion sort, started in column order
    or its reverse, whichever the ends suggest. Profiles are nearly sorted already (the
    cross-track angle is a ground coordinate, monotone along a DEM row), so this takes
    about n steps where a general sort takes n log n."""
    order = np.empty(n, dtype=np.int64)
    descending = n > 1 and values[n - 1] < values[0]
    for k in range(n):
        order[k] = n - 1 - k if descending else k
    for k in range(1, n):
        p = order[k]
        v = values[p]
        m = k - 1
        while m >= 0 and values[order[m]] > v:
            order[m + 1] = order[m]
            m -= 1
        order[m + 1] = p
    return order


@numba.njit(cache=True, nogil=True)
def _add_mixing(mixing_row, order, eta, rng, smp, away, n, sample0, range_tolerance):
    """Count, per pixel of one line, the separate runs of illuminated profile points in it.

    ``order`` sorts the first ``n`` profile points by cross-track angle; a shadowed point
    (ISCE3's sweep of the look angle, or facing away) ends a run. A run that jumps over
    pixels between two consecutive points covers them.
    """
    n_samples = mixing_row.shape[0]
    max_look = -1.0
    previous = -(1 << 30)
    for k in range(n):
        p = order[k]
        shaded = away[p] or eta[p] <= max_look - range_tolerance / rng[p]
        if eta[p] > max_look:
            max_look = eta[p]
        if shaded:
            previous = -(1 << 30)
            continue
        c = int(math.floor(smp[p] + 0.5)) - sample0
        if c == previous:
            continue
        if previous == -(1 << 30) or abs(c - previous) <= 1:
            first = c
            last = c
        elif c > previous:
            first = previous + 1
            last = c
        else:
            first = c
            last = previous - 1
        for cc in range(max(first, 0), min(last, n_samples - 1) + 1):
            if mixing_row[cc] < 65535:
                mixing_row[cc] += 1
        previous = c



@numba.njit(cache=True, nogil=True, inline="always")
def _envelopes(j, i0, i1, f_line0, width, r0, r1, eta0, eta1, ct0, ct1, line, valid, slant_range, look_angle,
               cross_track):
    """How far the column's path between two lines rises above and sinks below its chords.

    Between its cuts at lines ``f_line0`` (row pair from ``i0``) and ``f_line0 + width``
    (from ``i1``), column ``j`` is piecewise linear in the line, with kinks at the cells
    between; the chords join the cuts' slant ranges ``r0``, ``r1`` and look angles
    ``eta0``, ``eta1``.

    Returns
    -------
    up, down : float, >= 0, the largest excess of the slant range over its chord and below it;
    eta_up : float, >= 0, the largest excess of the look angle over its chord;
        all -1.0 where a cell between is void or out of order (the column is then
        evaluated point by point);
    spread : float, the spread of the cross-track angle (rad) over the path (0 then).
    """
    up = 0.0
    down = 0.0
    eta_up = 0.0
    lo = min(ct0, ct1)
    hi = max(ct0, ct1)
    first, last = (i0 + 1, i1) if i1 >= i0 else (i1 + 1, i0)
    for m in range(first, last + 1):
        a = (line[m, j] - f_line0) / width
        if not valid[m, j] or a < 0.0 or a > 1.0:
            return -1.0, -1.0, -1.0, 0.0
        excess = slant_range[m, j] - (r0 + a * (r1 - r0))
        up = max(up, excess)
        down = max(down, -excess)
        eta_up = max(eta_up, look_angle[m, j] - (eta0 + a * (eta1 - eta0)))
        lo = min(lo, cross_track[m, j])
        hi = max(hi, cross_track[m, j])
    return up, down, eta_up, hi - lo


@numba.njit(cache=True, nogil=True, inline="always")
def _fill_bounds(out, low):
    """Bounds (``_path_bounds``) before any point (``low`` = inf), or that bound nothing
    (``low`` = -inf)."""
    out[0] = low
    out[1] = -low
    out[2] = -low
    out[3] = low
    out[4] = -low


@numba.njit(cache=True, nogil=True)
def _path_bounds(j, i, lo_line, hi_line, line, valid, runs, slant_range, look_angle, cross_track, out):
    """Bounds of every point column ``j`` can have at a line between ``lo_line`` and
    ``hi_line``, for a column cut by one of those lines only (a special point): into
    ``out`` (5,): least and largest slant range, largest look angle, least and largest
    cross-track angle over the cells of the pairs of rows whose lines reach into that
    interval, found walking the column both ways from the pair ``i`` (where one of the
    lines cut it). Infinite bounds (no screening) for a column broken by voids (its
    other runs could hold points) or a walk longer than 64 pairs.
    """
    first = runs[0]
    rows = line.shape[0]
    _fill_bounds(out, math.inf)
    if first[j + 1] - first[j] != 1:
        _fill_bounds(out, -math.inf)
        return
    for direction in (-1, 1):
        k = i if direction < 0 else i + 1
        for _ in range(64):
            if k < 0 or k >= rows - 1 or not (valid[k, j] and valid[k + 1, j]):
                break
            l0 = line[k, j]
            l1 = line[k + 1, j]
            if min(l0, l1) > hi_line or max(l0, l1) < lo_line:
                break
            for m in (k, k + 1):
                out[0] = min(out[0], slant_range[m, j])
                out[1] = max(out[1], slant_range[m, j])
                out[2] = max(out[2], look_angle[m, j])
                out[3] = min(out[3], cross_track[m, j])
                out[4] = max(out[4], cross_track[m, j])
            k += direction
        else:
            _fill_bounds(out, -math.inf)
            return


@numba.njit(cache=True, nogil=True, inline="always")
def _may_matter(r_low, r_high, eta_high, ct_low, ct_high, r, e, x, range_tolerance):
    """Whether a point with these bounds can move a cell's margins past their thresholds
    (slant range ``r``, look angle ``e``, cross-track angle ``x``): nearer with a slant
    range beyond r + tolerance or a look angle at e + tolerance / r, or farther with a
    slant range below r - tolerance. Bounds are widened by a relative 1e-12, as the
    interpolated points may exceed their cells' values by rounding."""
    slack = 1e-12 * (abs(r_high) + abs(r_low) + abs(r))
    angle_slack = 1e-12 * (abs(eta_high) + abs(e))
    nearer = ct_low < x and (r_high - r + slack > range_tolerance or eta_high - e + angle_slack >= range_tolerance / r)
    farther = ct_high >= x and r - r_low + slack > range_tolerance
    return nearer or farther


@numba.njit(cache=True, nogil=True)
def visibility_profiles(line, sample, slant_range, look_angle, cross_track, faces_away, active_layover,
                        valid, line0, sample0, n_lines, n_samples, range_tolerance, codes, group=1, cut_all=True):
    """Layover and shadow masks of the cells in their own zero-Doppler planes, and mixing.

    Every radar line of the window is cut out of the DEM as a terrain profile; each valid
    cell is set against its own profile, whose points are bounded through the profiles
    of the two lines that bracket it (see the module docstring). Serial: the same as
    ``visibility_buckets`` followed by ``visibility_lines`` over all keys, which callers
    run on ranges of keys in threads.

    Parameters
    ----------
    line, sample : (rows, cols) float64, radar coordinates of the cell centres (line and
        sample indices) from ``cell_geometry``; rows must run along track.
    slant_range : (rows, cols) float64, m.
    look_angle, cross_track : (rows, cols) float64, rad.
    faces_away : (rows, cols) bool, the cell's surface faces away from the sensor (active shadow).
    active_layover : (rows, cols) bool, the cell's own surface lays over (active layover).
    valid : (rows, cols) bool.
    line0, sample0, n_lines, n_samples : int, the radar window (absolute first line and
        sample, size); only the lines of the window have profiles.
    range_tolerance : float, slant-range difference (m) below which two points count as
        level, so that interpolation noise never reads as layover or shadow.
    codes : (none, active, passive, outside), int, the mask codes (the caller's:
        ``masks.MaskCode``).
    group : int, lines per pair of bracketing profiles (``visibility_lines``); the masks
        do not depend on it.
    cut_all : False: cut only the groups' bounding lines, the mixing of the others taken
        from the nearer of them (``visibility_lines``).

    Returns
    -------
    layover, shadow : (rows, cols) uint8 codes: none, active or passive; outside for
        invalid cells only (a valid cell that no profile reaches is in active layover or
        shadow where its own surface says so, else in none).
    mixing : (n_lines, n_samples) uint16, separate ground segments per pixel.
    """
    rows, cols = line.shape
    layover = np.empty((rows, cols), dtype=np.uint8)
    shadow = np.empty((rows, cols), dtype=np.uint8)
    mixing = np.zeros((n_lines, n_samples), dtype=np.uint16)
    start, bucket = visibility_buckets(line, valid, valid, faces_away, active_layover, line0, n_lines, codes,
                                       layover, shadow)
    runs = column_runs(line, valid)
    visibility_lines(line, sample, slant_range, look_angle, cross_track, faces_away, active_layover, valid, runs,
                     start, bucket,
                     line0, sample0, n_lines, n_samples, range_tolerance, 0, n_lines + 1, group, codes, layover,
                     shadow, mixing, cut_all)
    return layover, shadow, mixing


@numba.njit(cache=True, nogil=True)
def _initial_pointers(target, runs, line):
    """Per column, a row near where its line crosses ``target``: where the bracket
    searches of a range of lines start (later lines start from the last bracket).

    Interpolated in the run of valid cells whose line range holds ``target`` (lines are
    near-linear along a column that runs along track), so that a range of lines in the
    middle of the DEM does not walk every column from its first row.
    """
    first, pairs, lines, rising = runs
    cols = line.shape[1]
    pointer = np.zeros(cols, dtype=np.int64)
    for j in range(cols):
        o0 = first[j]
        o1 = first[j + 1]
        if o0 == o1:
            continue
        pointer[j] = pairs[o0, 0]
        for k in range(o0, o1):
            lo = lines[k, 0]
            hi = lines[k, 1]
            if lo <= target <= hi:
                a = pairs[k, 0]
                b = pairs[k, 1]
                f = (target - lo) / (hi - lo) if hi > lo else 0.0
                if not rising[j]:
                    f = 1.0 - f
                pointer[j] = min(max(a + int(f * (b - a)), a), b)
                break
    return pointer


@numba.njit(cache=True, nogil=True)
def visibility_lines(line, sample, slant_range, look_angle, cross_track, faces_away, active_layover, valid, runs,
                     start, bucket, line0, sample0, n_lines, n_samples, range_tolerance, key_start, key_stop,
                     group, codes, layover, shadow, mixing, cut_all=True):
    """Masks of the cells of keys ``key_start:key_stop`` and mixing of their window lines.

    Arguments as in ``visibility_profiles`` (``codes`` too), with ``runs`` from
    ``column_runs``, ``start`` and ``bucket`` from ``visibility_buckets``, and the outputs
    ``layover``, ``shadow`` (initialised by ``visibility_buckets``) and ``mixing``
    (n_lines, n_samples), of which only the cells of these keys and window lines
    ``key_start:min(key_stop, n_lines)`` are written: ranges of keys run independently
    (on threads).

    ``group`` (>= 1): lines per pair of bracketing profiles. Every line is cut (for the
    mixing), but the cells are set against the profiles of window lines 0, group,
    2 group, ... and the last, all cells between two of them at once (the bounds hold
    for any two lines that bracket a cell; the cells of keys 0 and n_lines keep their one
    profile). On a DEM coarser than the lines, group = the lines per DEM row makes the
    work per pair follow the DEM rows, not the lines. ``key_start`` and ``key_stop`` must
    be bounds of those groups (``line_groups``).

    ``cut_all`` False: only the groups' bounding lines are cut (the masks need no other),
    and a line between two of them takes the mixing of the nearer (the earlier at equal
    distance): the mixing of a line is then that of a line at most group / 2 away, not
    its own. The masks are the same either way.
    """
    passive = codes[2]
    rows, cols = line.shape
    n_keys = n_lines + 1
    if rows < 2:
        return
    key_stop = min(key_stop, n_keys)
    pointer = _initial_pointers(float(line0 + max(key_start - 1, 0)), runs, line)
    span = column_spans(runs, cols)
    ct = np.empty(cols)
    eta = np.empty(cols)
    rng = np.empty(cols)
    smp = np.empty(cols)
    away = np.zeros(cols, dtype=np.bool_)
    column = np.empty(cols, dtype=np.int64)
    bracket = np.empty(cols, dtype=np.int64)
    # Two sorted profiles in alternating slots: those of the last two bounds of the groups.
    count = np.zeros(2, dtype=np.int64)
    p_ct = np.empty((2, cols))
    p_r = np.empty((2, cols))
    p_eta = np.empty((2, cols))
    p_col = np.empty((2, cols), dtype=np.int64)
    p_row = np.empty((2, cols), dtype=np.int64)
    rank = np.full((2, cols), -1, dtype=np.int64)
    # Per pair of lines and per point of either profile: the envelope values of its
    # column (raised slant range and look angle, lowered slant range), their running
    # extrema and where these are reached.
    r_hi = np.empty((2, cols))
    r_lo = np.empty((2, cols))
    eta_hi = np.empty((2, cols))
    r_max = np.empty((2, cols))
    r_max_arg = np.empty((2, cols), dtype=np.int64)
    r_min = np.empty((2, cols))
    r_min_arg = np.empty((2, cols), dtype=np.int64)
    eta_max = np.empty((2, cols))
    eta_max_arg = np.empty((2, cols), dtype=np.int64)
    # Points evaluated point by point for every cell of the pair: (slot, index), and the
    # bounds of their columns' points between the two lines (``_path_bounds``).
    special = np.empty((2 * cols, 2), dtype=np.int64)
    special_bounds = np.empty((2 * cols, 5))
    # Block bounds of the pair for side_reaches, made when first needed: nearer slant
    # range, farther slant range, nearer look angle.
    side_blocks = np.empty((3, 4, cols // SIDE_BLOCK + 1))
    side_ready = np.zeros(3, dtype=np.bool_)
    # Without cut_all: the mixing of the last two bounding lines, in the profiles' slots.
    bound_mixing = np.zeros((2, mixing.shape[1] if not cut_all else 0), dtype=np.uint16)
    # Line b of the window is a bound of the groups where b % group == 0 or it is the last;
    # a bound's profile goes to the slot its predecessor's is not in.
    s = 1
    t = 0
    previous = -1
    n = 0
    for b in range(max(key_start - 1, 0), key_stop):
        own = b >= key_start  # the line before the range is cut only to bracket its first key
        bound = b >= n_lines - 1 or b % group == 0
        if b < n_lines and (cut_all or bound):
            n = _cut_profile(float(line0 + b), line, sample, slant_range, look_angle, cross_track, faces_away,
                             runs, span, pointer, ct, eta, rng, smp, away, column, bracket)
            if n > 0:
                order = _sorted_order(ct, n)
                if own and cut_all:
                    _add_mixing(mixing[b], order, eta, rng, smp, away, n, sample0, range_tolerance)
        if not bound:
            continue
        s = 1 - s
        t = 1 - s  # the previous bound's slot
        if not cut_all and b < n_lines:
            bound_mixing[s, :] = 0
            if n > 0:
                _add_mixing(bound_mixing[s], order, eta, rng, smp, away, n, sample0, range_tolerance)
            if own:
                mixing[b, :] = bound_mixing[s]
            # The lines since the previous bound (all of this range's own) take the nearer's.
            if previous >= 0:
                for m in range(previous + 1, b):
                    mixing[m, :] = bound_mixing[t] if m - previous <= b - m else bound_mixing[s]
        for k in range(count[s]):
            rank[s, p_col[s, k]] = -1
        count[s] = 0
        if b < n_lines and n > 0:
            for k in range(n):
                p = order[k]
                p_ct[s, k] = ct[p]
                p_r[s, k] = rng[p]
                p_eta[s, k] = eta[p]
                p_col[s, k] = column[p]
                p_row[s, k] = bracket[p]
                rank[s, column[p]] = k
            count[s] = n
        # The keys between the previous bound and this one (keys 0 and n_lines: their
        # own, with one profile).
        if b == 0 or b == n_lines or previous < 0:
            first_key = b
            base = float(line0 + b - 1)
            width = 1.0
        else:
            first_key = previous + 1
            base = float(line0 + previous)
            width = float(b - previous)
        previous = b
        if not own or start[b + 1] == start[first_key]:
            continue
        n0 = count[t]
        n1 = count[s]
        # Envelopes of the columns cut by both lines; the others go point by point. The
        # largest cross-track spread of a column's path bounds how far from a cell the
        # columns that may change side lie.
        spread = 0.0
        n_special = 0
        for k in range(n1):
            r_hi[s, k] = -math.inf
            r_lo[s, k] = math.inf
            eta_hi[s, k] = -math.inf
            if rank[t, p_col[s, k]] < 0:
                special[n_special, 0] = s
                special[n_special, 1] = k
                n_special += 1
        for k in range(n0):
            r_hi[t, k] = -math.inf
            r_lo[t, k] = math.inf
            eta_hi[t, k] = -math.inf
            jj = p_col[t, k]
            q = rank[s, jj]
            if q >= 0:
                up, down, eta_up, path_spread = _envelopes(
                    jj, p_row[t, k], p_row[s, q], base, width, p_r[t, k], p_r[s, q], p_eta[t, k], p_eta[s, q],
                    p_ct[t, k],
                    p_ct[s, q], line, valid, slant_range, look_angle, cross_track)
                if up >= 0.0:
                    r_hi[t, k] = p_r[t, k] + up
                    r_hi[s, q] = p_r[s, q] + up
                    r_lo[t, k] = p_r[t, k] - down
                    r_lo[s, q] = p_r[s, q] - down
                    eta_hi[t, k] = p_eta[t, k] + eta_up
                    eta_hi[s, q] = p_eta[s, q] + eta_up
                    spread = max(spread, path_spread)
                    continue
            special[n_special, 0] = t
            special[n_special, 1] = k
            n_special += 1
        for u in range(n_special):
            slot = special[u, 0]
            k = special[u, 1]
            _path_bounds(p_col[slot, k], p_row[slot, k], base, base + width, line, valid, runs, slant_range,
                         look_angle, cross_track, special_bounds[u])
        for u in (t, s):
            running_max(r_hi, u, count[u], r_max, r_max_arg)
            running_min_from_end(r_lo, u, count[u], r_min, r_min_arg)
            running_max(eta_hi, u, count[u], eta_max, eta_max_arg)
        spread = spread * (1.0 + 1e-9) + 1e-15
        side_ready[:] = False
        split0 = n0 // 2
        split1 = n1 // 2
        for c in range(start[first_key], start[b + 1]):
            i = bucket[c] // cols
            j = bucket[c] - i * cols
            here = line[i, j]
            f = (here - base) / width
            r = slant_range[i, j]
            e = look_angle[i, j]
            x = cross_track[i, j]
            split0 = count_below_near(p_ct, t, n0, x, split0)
            split1 = count_below_near(p_ct, s, n1, x, split1)
            own0 = rank[t, j]
            own1 = rank[s, j]
            # Point by point: the special columns and those that may change side.
            forward = -math.inf
            backward = -math.inf
            shade = -math.inf
            # The columns that may change side lie next to the split: walk out from it.
            lo = split0
            while lo > 0 and p_ct[t, lo - 1] >= x - spread:
                lo -= 1
            hi = split0
            while hi < n0 and p_ct[t, hi] <= x + spread:
                hi += 1
            for u in range(n_special + hi - lo):
                if u < n_special:
                    slot = special[u, 0]
                    k = special[u, 1]
                    jj = p_col[slot, k]
                    if jj == j or not _may_matter(special_bounds[u, 0], special_bounds[u, 1], special_bounds[u, 2],
                                                  special_bounds[u, 3], special_bounds[u, 4], r, e, x,
                                                  range_tolerance):
                        continue
                else:
                    slot = t
                    k = lo + u - n_special
                    if r_hi[t, k] == -math.inf:
                        continue  # special, done above
                    jj = p_col[slot, k]
                    q = rank[s, jj]
                    # Cut by both lines: its envelopes bound its points between them.
                    if jj == j or not _may_matter(min(r_lo[t, k], r_lo[s, q]), max(r_hi[t, k], r_hi[s, q]),
                                                  max(eta_hi[t, k], eta_hi[s, q]), p_ct[t, k] - spread,
                                                  p_ct[t, k] + spread, r, e, x, range_tolerance):
                        continue
                found, ii = find_bracket(here, jj, p_row[slot, k], line, runs)
                if not found:
                    continue
                w = crossing_weight(here, ii, jj, line)
                r_k = (1.0 - w) * slant_range[ii, jj] + w * slant_range[ii + 1, jj]
                if (1.0 - w) * cross_track[ii, jj] + w * cross_track[ii + 1, jj] < x:
                    forward = max(forward, r_k - r)
                    shade = max(shade, (1.0 - w) * look_angle[ii, jj] + w * look_angle[ii + 1, jj] - e)
                else:
                    backward = max(backward, r - r_k)
            # Then the columns on the same side in both profiles, through their envelopes;
            # a cell in active layover needs no margin. The envelope extremum of a side
            # without the own column: the running extremum up to that column (the side's
            # end of it, ``near``; its start, ``far``) and the few points between it and the
            # split. Written out: as an inlined helper taking the arrays, their reference
            # counting stayed, nine atomic increments and decrements a cell.
            near0 = own0 if 0 <= own0 < split0 else split0
            near1 = own1 if 0 <= own1 < split1 else split1
            far0 = own0 + 1 if own0 >= split0 else split0
            far1 = own1 + 1 if own1 >= split1 else split1
            if not active_layover[i, j]:
                fore = forward > range_tolerance
                if not fore:
                    m0 = r_max[t, near0 - 1] if near0 > 0 else -math.inf
                    a0 = r_max_arg[t, near0 - 1] if near0 > 0 else -1
                    for q in range(near0 + 1, split0):
                        if r_hi[t, q] > m0:
                            m0 = r_hi[t, q]
                            a0 = q
                    m1 = r_max[s, near1 - 1] if near1 > 0 else -math.inf
                    a1 = r_max_arg[s, near1 - 1] if near1 > 0 else -1
                    for q in range(near1 + 1, split1):
                        if r_hi[s, q] > m1:
                            m1 = r_hi[s, q]
                            a1 = q
                    if bound_reaches(True, f, m0, a0, m1, a1, r, range_tolerance, True):
                        fore = side_reaches(True, r, x, range_tolerance, True, a0, a1, split0, own0, n0, t, s, p_col,
                                             p_row, here, line, runs, cross_track, slant_range, r_hi, rank, f,
                                             side_blocks[0], side_ready, 0)
                back = backward > range_tolerance
                if not back:
                    m0 = r_min[t, far0] if far0 < n0 else math.inf
                    a0 = r_min_arg[t, far0] if far0 < n0 else -1
                    for q in range(split0, far0 - 1):
                        if r_lo[t, q] < m0:
                            m0 = r_lo[t, q]
                            a0 = q
                    m1 = r_min[s, far1] if far1 < n1 else math.inf
                    a1 = r_min_arg[s, far1] if far1 < n1 else -1
                    for q in range(split1, far1 - 1):
                        if r_lo[s, q] < m1:
                            m1 = r_lo[s, q]
                            a1 = q
                    if bound_reaches(False, f, m0, a0, m1, a1, r, range_tolerance, True):
                        back = side_reaches(False, r, x, range_tolerance, True, a0, a1, split0, own0, n0, t, s, p_col,
                                             p_row, here, line, runs, cross_track, slant_range, r_lo, rank, f,
                                             side_blocks[1], side_ready, 1)
                if fore or back:
                    layover[i, j] = passive
            if not faces_away[i, j]:
                level = range_tolerance / r
                shaded = shade >= level
                if not shaded:
                    m0 = eta_max[t, near0 - 1] if near0 > 0 else -math.inf
                    a0 = eta_max_arg[t, near0 - 1] if near0 > 0 else -1
                    for q in range(near0 + 1, split0):
                        if eta_hi[t, q] > m0:
                            m0 = eta_hi[t, q]
                            a0 = q
                    m1 = eta_max[s, near1 - 1] if near1 > 0 else -math.inf
                    a1 = eta_max_arg[s, near1 - 1] if near1 > 0 else -1
                    for q in range(near1 + 1, split1):
                        if eta_hi[s, q] > m1:
                            m1 = eta_hi[s, q]
                            a1 = q
                    if bound_reaches(True, f, m0, a0, m1, a1, e, level, False):
                        shaded = side_reaches(True, e, x, level, False, a0, a1, split0, own0, n0, t, s, p_col,
                                               p_row, here, line, runs, cross_track, look_angle, eta_hi, rank, f,
                                               side_blocks[2], side_ready, 2)
                if shaded:
                    shadow[i, j] = passive
