"""Backward geocoding: zero-Doppler time and slant range of ground cells.

For a target X (ECEF, m) the zero-Doppler time t solves f(t) = (X - S(t)) . V(t) = 0 with
f'(t) = (X - S) . A - |V|^2, by Newton's method. Each cell is seeded by extrapolating the
solutions of the two cells above it, so one Newton step usually suffices; cells whose one
step is not small enough, mostly in the first two rows of a block (seeded from the row
above, or from a linearised solution about the orbit's centre), are iterated to
convergence. Seeding across rows rather than along a row leaves the cells of a row
independent of each other: ``geocode_grid`` runs each stage over a chunk of a row as its
own loop, which the compiler maps onto SIMD lanes (hence the branch-free arithmetic,
``error_model="numpy"``, which drops the zero-division checks that would otherwise stop
vectorisation, and multiply-add contraction). Blocks of rows run in parallel.
"""

import math

import numba
import numpy as np

from .geodesy import SMALL_ANGLE, cos_sin_small
from .orbit import LOW_DEGREE, PADDED_DEGREE, orbit_state, orbit_states_into, padded_coefficients
from .radar_grid import is_nearest_entry, nearest_entry

NAT = np.iinfo(np.int64).min
_MAX_ITERATIONS = 40
# Newton converges quadratically: after a step s the error is about K s^2 with
# K = f''/(2 f') of order 1e-3 /s for an Earth orbit, so a step under 1e-6 s leaves an
# error near 1e-15 s (far below a nanometre along track). The slant range is taken from
# the state before that last step: its error is second order, (|V| s)^2 / (2 r) < 1e-12 m.
_STEP_TOLERANCE = 1e-6


@numba.njit(cache=True, nogil=True, inline="always")
def _first_guess(x, y, z, coeffs, t_center, t_scale):
    s = orbit_state(coeffs, t_center, t_scale, t_center)
    dx = x - s[0]
    dy = y - s[1]
    dz = z - s[2]
    speed2 = s[3] * s[3] + s[4] * s[4] + s[5] * s[5]
    return t_center + (dx * s[3] + dy * s[4] + dz * s[5]) / speed2


@numba.njit(cache=True, nogil=True, inline="always")
def _solve_zero_doppler(x, y, z, t, coeffs, t_center, t_scale):
    """Newton iterations from ``t``.

    Returns (t, slant_range, sensor position x, y, z, sensor velocity x, y, z, converged).
    """
    dx = dy = dz = 0.0
    sx = sy = sz = 0.0
    vx = vy = vz = 0.0
    for _ in range(_MAX_ITERATIONS):
        s = orbit_state(coeffs, t_center, t_scale, t)
        sx = s[0]
        sy = s[1]
        sz = s[2]
        vx = s[3]
        vy = s[4]
        vz = s[5]
        dx = x - sx
        dy = y - sy
        dz = z - sz
        f = dx * s[3] + dy * s[4] + dz * s[5]
        fp = dx * s[6] + dy * s[7] + dz * s[8] - (s[3] * s[3] + s[4] * s[4] + s[5] * s[5])
        step = f / fp
        t -= step
        if abs(step) < _STEP_TOLERANCE:
            return t, math.sqrt(dx * dx + dy * dy + dz * dz), sx, sy, sz, vx, vy, vz, True
    return t, math.nan, sx, sy, sz, vx, vy, vz, False


# Newton is accepted after a single step s when |s| < _ONE_STEP (s); seeds extrapolated
# from the two rows above are typically a few microseconds off. The time is then off by
# about K s^2 with K = f''/(2 f') (see _STEP_TOLERANCE), under 1e-11 s. The slant range is
# taken at the new time: with g(t) = |X - S(t)|^2, g' = -2 f and g'' = -2 f', so
# g(t - s) = g + f s to third order in s (an error near 1e-15 m). The sensor is moved to the
# new time to first order, S - V s, off by |A| s^2 / 2 < 1e-7 m, which enters only the
# incidence angle (by ~1e-13 rad) and the look side.
_ONE_STEP = 1e-4
# Cells per chunk of a row: the chunk's working arrays stay in the first-level caches.
_CHUNK = 256
# Newton steps taken on whole chunks before the cells still unsettled go one by one: seeds
# from the linearised solution take two or three.
_VECTOR_ITERATIONS = 6
_TO_DEG = 180.0 / math.pi
_ROUNDING = 1.5 * 2.0**52
_ROUNDING_BITS = np.float64(_ROUNDING).view(np.int64)
# asin(z) = z + z^3 P(z^2) on [0, 0.5]: weighted least-squares fit, |error| < 1e-12 rad.
_ASIN = (
    0.16666666564911836, 0.0750000960240349, 0.04463943713704133, 0.03044398395835278,
    0.02173313046428871, 0.02121190151247692, 0.0007097201928084405, 0.034078617245181346,
)
_ASIN0, _ASIN1, _ASIN2, _ASIN3, _ASIN4, _ASIN5, _ASIN6, _ASIN7 = _ASIN


@numba.njit(cache=True, nogil=True, inline="always")
def horner8(w, c0, c1, c2, c3, c4, c5, c6, c7):
    """c0 + c1 w + ... + c7 w^7 by Horner's rule: multiply-adds, which loops run on SIMD
    lanes (the series of the fast arccos and sine)."""
    p = c7
    p = p * w + c6
    p = p * w + c5
    p = p * w + c4
    p = p * w + c3
    p = p * w + c2
    p = p * w + c1
    return p * w + c0


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def fast_arccos(x):
    """arccos (rad) of x in [-1, 1] (dimensionless) to 2e-12 rad, with selects instead of
    branches: loops that call it run on SIMD lanes.

    libm's acos is a call, which stops a loop from being vectorised, and costs as much as
    the rest of a cell's geocoding.
    """
    ax = abs(x)
    big = ax > 0.5
    z = math.sqrt(0.5 * (1.0 - ax)) if big else ax
    w = z * z
    p = horner8(w, _ASIN0, _ASIN1, _ASIN2, _ASIN3, _ASIN4, _ASIN5, _ASIN6, _ASIN7)
    s = z + z * w * p  # asin(z)
    # acos(x) = 2 asin(sqrt((1 - x) / 2)) for x > 0.5, pi - that for x < -0.5, pi/2 - asin(x) between.
    wide = 2.0 * s if x > 0.0 else math.pi - 2.0 * s
    narrow = 0.5 * math.pi - (s if x > 0.0 else -s)
    return wide if big else narrow


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _incidence_and_side(x, y, z, ux, uy, uz, sx, sy, sz, vx, vy, vz, slant_range, look_sign):
    """Ellipsoid incidence angle (deg) at target (x, y, z) with unit normal (ux, uy, uz),
    seen from sensor position S and velocity V (m, m/s); and whether the target lies on
    the side the radar looks at (look_sign +1 right, -1 left)."""
    cos_inc = (ux * (sx - x) + uy * (sy - y) + uz * (sz - z)) / slant_range
    incidence = fast_arccos(min(1.0, max(-1.0, cos_inc))) * _TO_DEG
    # (X - S) . (V x S) > 0 for a target to the right of the track.
    side = (x - sx) * (vy * sz - vz * sy) + (y - sy) * (vz * sx - vx * sz) + (z - sz) * (vx * sy - vy * sx)
    return incidence, side * look_sign > 0.0


@numba.njit(cache=True, nogil=True)
def _converge(x, y, z, seed, ux, uy, uz, coeffs, t_center, t_scale, look_sign):
    """Newton to convergence for one target, from ``seed`` (s) or, if NaN, the linearised
    solution; returns (t, slant_range, incidence_deg, looked_at, converged).

    Not inlined: it serves the few cells the single step does not settle, and keeping it
    out of ``geocode_grid`` keeps that kernel's compilation time down.
    """
    if seed != seed:
        seed = _first_guess(x, y, z, coeffs, t_center, t_scale)
    t, r, sx, sy, sz, vx, vy, vz, converged = _solve_zero_doppler(x, y, z, seed, coeffs, t_center, t_scale)
    incidence, looked_at = _incidence_and_side(x, y, z, ux, uy, uz, sx, sy, sz, vx, vy, vz, r, look_sign)
    return t, r, incidence, looked_at, converged


@numba.njit(cache=True, nogil=True, inline="always")
def _cos_sin_about_first(angles, n, cos_out, sin_out, far):
    """Cosines and sines of ``angles[:n]`` (rad) by the angle-sum rule about the first.

    Two libm calls per chunk instead of two per cell; ``far`` marks the cells too far
    from the first (or NaN) for the small-angle series, which get libm after all.
    """
    ref = angles[0]
    c0 = math.cos(ref)
    s0 = math.sin(ref)
    for q in range(n):
        d = angles[q] - ref
        c, s = cos_sin_small(d)
        cos_out[q] = c0 * c - s0 * s
        sin_out[q] = s0 * c + c0 * s
        far[q] = not abs(d) <= SMALL_ANGLE
    for q in range(n):
        if far[q]:
            cos_out[q] = math.cos(angles[q])
            sin_out[q] = math.sin(angles[q])


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def geocode_grid(
    lon, lat, height, a, e2,
    coeffs, t_center, t_scale, t_valid_min, t_valid_max,
    first_line_time, line_interval, n_lines, n_samples,
    rm_times, rm_sr0, rm_coeffs, rm_spacing, look_sign, bistatic_rate, bistatic_reference_range,
    reference_ns, az_ns, slant_range, line, sample, incidence, clip=True,
):
    """Backward-geocode every cell of a 2-D grid of geodetic points.

    Parameters
    ----------
    lon, lat : 2-D float64 arrays (rad), the shape of ``height``. For a grid regular in
        longitude/latitude pass broadcast views (``np.broadcast_to``): a zero stride
        tells the kernel to take each column's (row's) sine and cosine once.
    height : 2-D float array, ellipsoidal height (m); NaN cells are skipped.
    a, e2 : ellipsoid semi-major axis (m) and eccentricity squared.
    coeffs, t_center, t_scale : polynomial orbit (see ``orbit.orbit_state``).
    t_valid_min, t_valid_max : span where the orbit is valid (s).
    first_line_time, line_interval : azimuth axis of the image (s).
    n_lines, n_samples : image size.
    rm_times, rm_sr0, rm_coeffs, rm_spacing : range model (see ``radar_grid``).
    look_sign : +1.0 for a right-looking radar, -1.0 for left-looking.
    bistatic_rate, bistatic_reference_range : the image's line time is the zero-Doppler
        time less ``bistatic_rate * (slant_range - bistatic_reference_range)`` (s/m, m);
        Sentinel-1 products: 1/c and the reference range; 0 for none.
    reference_ns : int64, the epoch of the time axis in ns since 1970.
    az_ns, slant_range, line, sample, incidence : outputs of the shape of ``height``,
        filled here: zero-Doppler time (int64 ns since 1970; int64 min = NaT), slant
        range (m), fractional line and sample (NaN where undefined, including targets on
        the side the radar does not look at), ellipsoid incidence angle (float32, deg).
        C-contiguous outputs let the last stage store whole SIMD vectors.
    clip : NaN line and sample outside the image (True) or only where unsolved or on the
        side the radar does not look at (False: unclipped, as the simulation wants them).

    The kernel is serial and releases the GIL: callers run row blocks (views of the
    inputs and outputs) on threads, each block seeded afresh. Results depend on the blocks
    only through the seeds (a few 1e-9 m in slant range, far below 1 ns in time).
    """
    rows, cols = height.shape
    padded, vector_orbit = padded_coefficients(coeffs)
    low_degree = coeffs.shape[0] <= LOW_DEGREE + 1
    centre = orbit_state(coeffs, t_center, t_scale, t_center)
    centre_x, centre_y, centre_z, centre_vx, centre_vy, centre_vz = centre[:6]
    inv_centre_speed2 = 1.0 / (centre_vx * centre_vx + centre_vy * centre_vy + centre_vz * centre_vz)
    lon_by_column = lon.strides[0] == 0
    lat_by_row = lat.strides[1] == 0
    cos_lon_col = np.empty(cols if lon_by_column else 0)
    sin_lon_col = np.empty(cols if lon_by_column else 0)
    if lon_by_column:
        for j in range(cols):
            cos_lon_col[j] = math.cos(lon[0, j])
            sin_lon_col[j] = math.sin(lon[0, j])
    one_e2 = 1.0 - e2
    rm_degree = rm_coeffs.shape[1] - 1
    n_entries = rm_times.shape[0]
    line_max = n_lines - 0.5
    sample_max = n_samples - 0.5
    inv_line = 1.0 / line_interval
    inv_spacing = 1.0 / rm_spacing
    above = np.full(cols, math.nan)  # solutions of the row above and the one above it
    above2 = np.full(cols, math.nan)
    # Working arrays of one chunk of a row, one per quantity: each stage below is a
    # separate loop, short enough for the processor to overlap the iterations of its
    # long dependency chain (polynomial, division, square root), and vectorised.
    m = _CHUNK
    cos_lon = np.empty(m)
    sin_lon = np.empty(m)
    cos_lat = np.empty(m)
    sin_lat = np.empty(m)
    prime_vertical = np.empty(m)
    x = np.empty(m)
    y = np.empty(m)
    z = np.empty(m)
    ux = np.empty(m)
    uy = np.empty(m)
    seed = np.empty(m)
    seed0 = np.empty(m)
    sx = np.empty(m)
    sy = np.empty(m)
    sz = np.empty(m)
    vx = np.empty(m)
    vy = np.empty(m)
    vz = np.empty(m)
    acc_x = np.empty(m)
    acc_y = np.empty(m)
    acc_z = np.empty(m)
    t = np.empty(m)
    r = np.empty(m)
    inc = np.empty(m)
    line_time = np.empty(m)
    ground = np.empty(m)
    ok = np.empty(m, np.bool_)
    looked_at = np.empty(m, np.bool_)
    far = np.empty(m, np.bool_)
    ns_float = np.empty(m)
    ns_bits = ns_float.view(np.int64)
    # The rounding trick below holds for |t| * 1e9 < 2**51, i.e. |t| < 26 days.
    rounding_trick = max(abs(t_valid_min), abs(t_valid_max)) * 1e9 < 2.0**51
    entry = 0
    row_cos_lat = row_sin_lat = row_prime_vertical = 0.0
    for i in range(rows):
        if lat_by_row:
            row_cos_lat = math.cos(lat[i, 0])
            row_sin_lat = math.sin(lat[i, 0])
            row_prime_vertical = a / math.sqrt(1.0 - e2 * row_sin_lat * row_sin_lat)
        for j0 in range(0, cols, m):
            n = min(m, cols - j0)
            stop = j0 + n
            # Views of this chunk of the row: indexed from 0, which spares the loops
            # below Numba's negative-index handling and lets them vectorise.
            height_row = height[i, j0:stop]
            above_row = above[j0:stop]
            above2_row = above2[j0:stop]
            # Sines and cosines: from per-column tables, or by the angle-sum rule about
            # the chunk's first cell (libm only for cells far from it, or NaN).
            if lon_by_column:
                cos_lon_row = cos_lon_col[j0:stop]
                sin_lon_row = sin_lon_col[j0:stop]
                for q in range(n):
                    cos_lon[q] = cos_lon_row[q]
                    sin_lon[q] = sin_lon_row[q]
            else:
                _cos_sin_about_first(lon[i, j0:stop], n, cos_lon, sin_lon, far)
            if lat_by_row:
                for q in range(n):
                    cos_lat[q] = row_cos_lat
                    sin_lat[q] = row_sin_lat
                    prime_vertical[q] = row_prime_vertical
            else:
                _cos_sin_about_first(lat[i, j0:stop], n, cos_lat, sin_lat, far)
                for q in range(n):
                    prime_vertical[q] = a / math.sqrt(1.0 - e2 * sin_lat[q] * sin_lat[q])
            # Target (ECEF) and seed.
            for q in range(n):
                h = np.float64(height_row[q])
                u = cos_lat[q] * cos_lon[q]
                v = cos_lat[q] * sin_lon[q]
                ux[q] = u
                uy[q] = v
                x[q] = (prime_vertical[q] + h) * u
                y[q] = (prime_vertical[q] + h) * v
                z[q] = (prime_vertical[q] * one_e2 + h) * sin_lat[q]
                t1 = above_row[q]
                t2 = above2_row[q]
                t0 = t1 if t2 != t2 else 2.0 * t1 - t2
                seed0[q] = t0
                # Without rows above (the first of a block, or after voids): the
                # linearised solution about the orbit's centre, as _first_guess.
                guess = t_center + (
                    (x[q] - centre_x) * centre_vx + (y[q] - centre_y) * centre_vy + (z[q] - centre_z) * centre_vz
                ) * inv_centre_speed2
                seed[q] = t0 if t0 == t0 else guess
            # Newton steps from the seeds, on all cells of the chunk at once: one where the
            # rows above give seeds, a few more in the first rows of a block.
            for _ in range(_VECTOR_ITERATIONS if vector_orbit else 0):
                # Two calls with literal degrees: each loop unrolls at its own trip count.
                if low_degree:
                    orbit_states_into(padded, LOW_DEGREE, t_center, t_scale, seed, n,
                                      sx, sy, sz, vx, vy, vz, acc_x, acc_y, acc_z)
                else:
                    orbit_states_into(padded, PADDED_DEGREE, t_center, t_scale, seed, n,
                                      sx, sy, sz, vx, vy, vz, acc_x, acc_y, acc_z)
                for q in range(n):
                    dx = x[q] - sx[q]
                    dy = y[q] - sy[q]
                    dz = z[q] - sz[q]
                    f = dx * vx[q] + dy * vy[q] + dz * vz[q]
                    fp = dx * acc_x[q] + dy * acc_y[q] + dz * acc_z[q] - (vx[q] * vx[q] + vy[q] * vy[q] + vz[q] * vz[q])
                    step = f / fp
                    t[q] = seed[q] - step
                    # |X - S(t - s)|^2 = |X - S(t)|^2 + f s to third order in s.
                    r[q] = math.sqrt(dx * dx + dy * dy + dz * dz + f * step)
                    sx[q] -= step * vx[q]
                    sy[q] -= step * vy[q]
                    sz[q] -= step * vz[q]
                    ok[q] = abs(step) < _ONE_STEP  # False for NaN seeds and heights
                retry = 0
                for q in range(n):
                    again = ~ok[q] & (x[q] == x[q])
                    retry += again
                    seed[q] = t[q] if again else seed[q]
                if retry == 0:
                    break
            if vector_orbit:
                for q in range(n):
                    inc[q], looked_at[q] = _incidence_and_side(
                        x[q], y[q], z[q], ux[q], uy[q], sin_lat[q], sx[q], sy[q], sz[q],
                        vx[q], vy[q], vz[q], r[q], look_sign,
                    )
            else:
                for q in range(n):
                    ok[q] = False
            # What is left (orbits above PADDED_DEGREE, Newton not settled in those steps)
            # iterates to convergence one cell at a time, from the first seed.
            for q in range(n):
                if not ok[q] and x[q] == x[q]:
                    t[q], r[q], inc[q], looked_at[q], ok[q] = _converge(
                        x[q], y[q], z[q], seed0[q], ux[q], uy[q], sin_lat[q], coeffs, t_center, t_scale, look_sign
                    )
            for q in range(n):
                ok[q] = ok[q] & (t[q] >= t_valid_min) & (t[q] <= t_valid_max)
                # Image lines are labelled with the zero-Doppler time less the bistatic
                # delay (slant_range - reference) / c (bistatic_rate = 1/c, or 0 for none).
                line_time[q] = t[q] - bistatic_rate * (r[q] - bistatic_reference_range)
            # Range model: the entry nearest in time, mostly one for the whole chunk.
            uniform = True
            if n_entries > 1:
                q0 = 0
                while q0 < n and not ok[q0]:
                    q0 += 1
                if q0 < n and not is_nearest_entry(line_time[q0], rm_times, entry):
                    entry = nearest_entry(line_time[q0], rm_times)
                # is_nearest_entry's comparisons, with infinite neighbours at the ends.
                previous = rm_times[entry - 1] if entry > 0 else -math.inf
                current = rm_times[entry]
                following = rm_times[entry + 1] if entry < n_entries - 1 else math.inf
                others = 0
                for q in range(n):
                    lt = line_time[q]
                    nearest = (lt - previous > current - lt) & (lt - current <= following - lt)
                    others += ok[q] & ~nearest
                uniform = others == 0
            if uniform:
                sr0 = rm_sr0[entry]
                for q in range(n):
                    ground[q] = rm_coeffs[entry, rm_degree]
                for d in range(rm_degree - 1, -1, -1):
                    coefficient = rm_coeffs[entry, d]
                    for q in range(n):
                        ground[q] = ground[q] * (r[q] - sr0) + coefficient
            else:
                for q in range(n):
                    e = nearest_entry(line_time[q], rm_times) if ok[q] else 0
                    xr = r[q] - rm_sr0[e]
                    g = rm_coeffs[e, rm_degree]
                    for d in range(rm_degree - 1, -1, -1):
                        g = g * xr + rm_coeffs[e, d]
                    ground[q] = g
            # Outputs, branch-free so that the loop vectorises: "&" rather than "and", and
            # NaN by adding NaN (one select per condition, not one per output).
            slant_row = slant_range[i, j0:stop]
            incidence_row = incidence[i, j0:stop]
            line_row = line[i, j0:stop]
            sample_row = sample[i, j0:stop]
            for q in range(n):
                good = ok[q]
                lq = (line_time[q] - first_line_time) * inv_line
                sq = ground[q] * inv_spacing
                in_image = (lq >= -0.5) & (lq <= line_max) & (sq >= -0.5) & (sq <= sample_max)
                inside = good & looked_at[q] & (in_image | (not clip))
                unless_good = 0.0 if good else math.nan
                unless_inside = 0.0 if inside else math.nan
                slant_row[q] = r[q] + unless_good
                incidence_row[q] = inc[q] + unless_good
                line_row[q] = lq + unless_inside
                sample_row[q] = sq + unless_inside
                above2_row[q] = above_row[q]
                above_row[q] = t[q] + unless_good
                ns_float[q] = t[q] * 1e9 + _ROUNDING
            az_row = az_ns[i, j0:stop]
            if rounding_trick:
                # Adding 1.5 * 2**52 rounds to the nearest integer (ties to even, as
                # round()), which then sits in the low bits: the conversion to int64,
                # which AVX2 cannot do on vectors, becomes an integer subtraction.
                for q in range(n):
                    az_row[q] = reference_ns + (ns_bits[q] - _ROUNDING_BITS) if ok[q] else NAT
            else:
                for q in range(n):
                    az_row[q] = reference_ns + np.int64(round(t[q] * 1e9)) if ok[q] else NAT


@numba.njit(cache=True, nogil=True)
def geocode_cells(x, y, z, coeffs, t_center, t_scale, t_valid_min, t_valid_max):
    """Zero-Doppler time (s) and slant range (m) of ECEF points given as flat arrays.

    Every point is solved from the linearised first guess; for scattered points (ground
    control points, facet vertices in any order) where no neighbour is at hand.
    Points whose solution fails or falls outside the valid span get NaN.
    """
    n = x.shape[0]
    times = np.empty(n)
    ranges = np.empty(n)
    for k in range(n):
        if x[k] != x[k]:
            times[k] = math.nan
            ranges[k] = math.nan
            continue
        t0 = _first_guess(x[k], y[k], z[k], coeffs, t_center, t_scale)
        t, r, _sx, _sy, _sz, _vx, _vy, _vz, ok = _solve_zero_doppler(
            x[k], y[k], z[k], t0, coeffs, t_center, t_scale
        )
        if ok and t_valid_min <= t <= t_valid_max:
            times[k] = t
            ranges[k] = r
        else:
            times[k] = math.nan
            ranges[k] = math.nan
    return times, ranges
