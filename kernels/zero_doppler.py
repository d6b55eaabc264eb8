"""Backward geocoding: zero-Doppler time and slant range of ground cells.

For a target X (ECEF, m) the zero-Doppler time t solves f(t) = (X - S(t)) . V(t) = 0 with
f'(t) = (X - S) . A - |V|^2, by Newton's method. Each cell is seeded by extrapolating the
solutions of the two cells above it (the first rows of a block from a linearised solution
about the orbit's centre), so one Newton step usually suffices. Seeding across rows
rather than along a row leaves the cells of a row independent of each other, which
lets the processor overlap their Newton steps; blocks of rows run in parallel.
"""

import math

import numba
import numpy as np

from .orbit import orbit_state
from .radar_grid import _ground_range

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


@numba.njit(cache=True, nogil=True, inline="always")
def _geocode_one(
    cos_lon, sin_lon, cos_lat, sin_lat, height, a, e2, t_seed,
    coeffs, t_center, t_scale, t_valid_min, t_valid_max,
    first_line_time, line_interval, n_lines, n_samples,
    rm_times, rm_sr0, rm_coeffs, rm_spacing, look_sign, bistatic_rate, bistatic_reference_range,
):
    """Zero-Doppler solution of one geodetic point given by the sines and cosines of its
    longitude and latitude and its ellipsoidal height (m).

    Returns (t, slant_range, line, sample, incidence_angle_rad, ok); ``ok`` is False where
    Newton failed or the time lies outside the orbit's validity; line and sample are NaN
    outside the image, including targets on the side the radar does not look at
    (``look_sign`` +1 right-looking, -1 left-looking), which the range axis alone would
    fold into the image.
    """
    prime_vertical = a / math.sqrt(1.0 - e2 * sin_lat * sin_lat)
    x = (prime_vertical + height) * cos_lat * cos_lon
    y = (prime_vertical + height) * cos_lat * sin_lon
    z = (prime_vertical * (1.0 - e2) + height) * sin_lat
    if t_seed != t_seed:
        t_seed = _first_guess(x, y, z, coeffs, t_center, t_scale)
    t, slant_range, sx, sy, sz, vx, vy, vz, ok = _solve_zero_doppler(
        x, y, z, t_seed, coeffs, t_center, t_scale
    )
    if not ok or t < t_valid_min or t > t_valid_max:
        return math.nan, math.nan, math.nan, math.nan, math.nan, False
    # The ellipsoid normal at the target is the geodetic up vector.
    cos_inc = (
        cos_lat * cos_lon * (sx - x) + cos_lat * sin_lon * (sy - y) + sin_lat * (sz - z)
    ) / slant_range
    # float32 acos: the output is float32, and libm's double acos costs as much as the
    # whole Newton solve.
    incidence = math.acos(np.float32(min(1.0, max(-1.0, cos_inc))))
    # Image lines are labelled with the zero-Doppler time less the bistatic delay
    # (slant_range - reference) / c (bistatic_rate = 1/c, or 0 for none).
    line_time = t - bistatic_rate * (slant_range - bistatic_reference_range)
    line = (line_time - first_line_time) / line_interval
    sample = _ground_range(line_time, slant_range, rm_times, rm_sr0, rm_coeffs) / rm_spacing
    # (X - S) . (V x S) > 0 for a target to the right of the track.
    side = (x - sx) * (vy * sz - vz * sy) + (y - sy) * (vz * sx - vx * sz) + (z - sz) * (vx * sy - vy * sx)
    if (
        not (-0.5 <= line <= n_lines - 0.5)
        or not (-0.5 <= sample <= n_samples - 0.5)
        or side * look_sign <= 0.0
    ):
        line = math.nan
        sample = math.nan
    return t, slant_range, line, sample, incidence, True


@numba.njit(cache=True, nogil=True)
def geocode_grid(
    lon, lat, height, a, e2,
    coeffs, t_center, t_scale, t_valid_min, t_valid_max,
    first_line_time, line_interval, n_lines, n_samples,
    rm_times, rm_sr0, rm_coeffs, rm_spacing, look_sign, bistatic_rate, bistatic_reference_range,
    reference_ns, az_ns, slant_range, line, sample, incidence,
):
    """Backward-geocode every cell of a 2-D grid of geodetic points.

    Parameters
    ----------
    lon, lat : 2-D float64 arrays (rad), the shape of ``height``. For a grid regular in
        longitude/latitude pass broadcast views (``np.broadcast_to``): a zero stride
        tells the kernel to take each row's (column's) sine and cosine once.
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
        range (m), fractional line and sample (NaN where undefined), ellipsoid incidence
        angle (float32, deg).

    The kernel is serial and releases the GIL: callers run row blocks (views of the
    inputs and outputs) on threads, each block seeded afresh.
    """
    rows, cols = height.shape
    lon_by_column = lon.strides[0] == 0
    lat_by_row = lat.strides[1] == 0
    cos_lon_col = np.empty(cols if lon_by_column else 0)
    sin_lon_col = np.empty(cols if lon_by_column else 0)
    if lon_by_column:
        for j in range(cols):
            cos_lon_col[j] = math.cos(lon[0, j])
            sin_lon_col[j] = math.sin(lon[0, j])
    to_deg = 180.0 / math.pi
    above = np.full(cols, math.nan)  # solutions of the row above and the one above it
    above2 = np.full(cols, math.nan)
    for i in range(rows):
        cos_lat = math.cos(lat[i, 0])
        sin_lat = math.sin(lat[i, 0])
        for j in range(cols):
            h = np.float64(height[i, j])
            ok = False
            res = (math.nan, math.nan, math.nan, math.nan, math.nan, False)
            if h == h:
                if lon_by_column:
                    cos_lon = cos_lon_col[j]
                    sin_lon = sin_lon_col[j]
                else:
                    cos_lon = math.cos(lon[i, j])
                    sin_lon = math.sin(lon[i, j])
                if not lat_by_row:
                    cos_lat = math.cos(lat[i, j])
                    sin_lat = math.sin(lat[i, j])
                t_seed = above[j]
                if above2[j] == above2[j]:
                    t_seed = 2.0 * above[j] - above2[j]
                res = _geocode_one(
                    cos_lon, sin_lon, cos_lat, sin_lat, h, a, e2, t_seed,
                    coeffs, t_center, t_scale, t_valid_min, t_valid_max,
                    first_line_time, line_interval, n_lines, n_samples,
                    rm_times, rm_sr0, rm_coeffs, rm_spacing, look_sign,
                    bistatic_rate, bistatic_reference_range,
                )
                ok = res[5]
            above2[j] = above[j]
            if ok:
                above[j] = res[0]
                az_ns[i, j] = reference_ns + np.int64(round(res[0] * 1e9))
                slant_range[i, j] = res[1]
                incidence[i, j] = res[4] * to_deg
            else:
                above[j] = math.nan
                az_ns[i, j] = NAT
                slant_range[i, j] = math.nan
                incidence[i, j] = math.nan
            line[i, j] = res[2]
            sample[i, j] = res[3]


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
