"""Radar imaging of a DEM: the zero-Doppler geometry of every cell centre.

``cell_geometry`` solves the zero-Doppler condition once per DEM cell centre and keeps
what the facets and masks need: ECEF position, (line, sample) without clipping, the unit
look vector, the local slant-plane pixel area, the ellipsoid incidence angle and the
sweep coordinates (look angle, cross-track angle).

Facets (``facets``) are built from these centres; masks (``visibility_profiles``, in
``visibility``): for every radar line, the terrain profile in its zero-Doppler plane is
cut out of the DEM and swept as in ISCE3; each cell is set against the running extrema
of the profiles of the two lines that bracket it.
"""

import math

import numba
import numpy as np

from .orbit import orbit_state
from .radar_grid import _ground_range_and_derivative
from .zero_doppler import NAT, _first_guess, _solve_zero_doppler

NONE = 0
ACTIVE = 1
PASSIVE = 2
OUTSIDE = 255


@numba.njit(cache=True, nogil=True)
def _column_trig(lon, rows, cols):
    """Whether ``lon`` is a broadcast view of a 1-D axis (zero row stride), and then the
    cosine and sine of each column's longitude, computed once."""
    by_column = lon.strides[0] == 0
    cos_lon = np.empty(cols)
    sin_lon = np.empty(cols)
    if by_column and rows > 0:
        for j in range(cols):
            cos_lon[j] = math.cos(lon[0, j])
            sin_lon[j] = math.sin(lon[0, j])
    return by_column, cos_lon, sin_lon


@numba.njit(cache=True, nogil=True, inline="always")
def _latitude_terms(lat, i, j, a, e2):
    """Cosine and sine of the latitude at (i, j) and the prime-vertical radius (m)."""
    cos_lat = math.cos(lat[i, j])
    sin_lat = math.sin(lat[i, j])
    return cos_lat, sin_lat, a / math.sqrt(1.0 - e2 * sin_lat * sin_lat)


@numba.njit(cache=True, nogil=True, inline="always")
def _longitude_terms(lon, i, j, by_column, cos_lon, sin_lon):
    """Cosine and sine of the longitude at (i, j), from the per-column tables if any."""
    if by_column:
        return cos_lon[j], sin_lon[j]
    return math.cos(lon[i, j]), math.sin(lon[i, j])


@numba.njit(cache=True, nogil=True)
def cell_geometry(
    lon, lat, height, a, e2,
    coeffs, t_center, t_scale, t_valid_min, t_valid_max,
    first_line_time, line_interval,
    rm_times, rm_sr0, rm_coeffs, rm_spacing, look_sign, bistatic_rate, bistatic_reference_range,
    reference_ns, ecef, time_ns, slant_range, line, sample, look, pixel_area, incidence,
    look_angle, cross_track, valid,
):
    """Zero-Doppler geometry of every DEM cell centre (pass A), into the given outputs.

    ``lon``, ``lat`` (rad) as in ``zero_doppler.geocode_grid`` (broadcast views of 1-D
    axes are the fast case: one sine and cosine per column and row). Every output is
    written for every cell: NaN (look vector 0, time NaT, valid False) where the cell is
    void, unsolved or on the side the radar does not look at. Serial, GIL released:
    callers run row blocks (views) on threads.

    ``reference_ns`` : int64, the epoch of the orbit's time axis in ns since 1970.

    Outputs
    -------
    ecef : (rows, cols, 3) float64, m (NaN for void cells)
    time_ns : (rows, cols) int64, zero-Doppler time (ns since 1970; int64 min for NaT)
    slant_range : (rows, cols) float64, m
    line, sample : (rows, cols) float64, unclipped fractional indices
    look : (rows, cols, 3) float32, unit vector from the cell to the sensor
    pixel_area : (rows, cols) float32, slant-plane pixel area at the cell (m^2)
    incidence : (rows, cols) float32, ellipsoid incidence angle (rad)
    look_angle : (rows, cols) float64, off-nadir angle of the cell seen from the sensor (rad)
    cross_track : (rows, cols) float64, geocentric angle between the cell and the sensor (rad)
    valid : (rows, cols) bool, solved and on the looked-at side
    """
    rows, cols = height.shape
    above = np.full(cols, math.nan)
    above2 = np.full(cols, math.nan)
    # Broadcast views of 1-D axes (zero strides): one sine and cosine per column and row.
    lon_by_column, column_cos, column_sin = _column_trig(lon, rows, cols)
    lat_by_row = lat.strides[1] == 0
    cos_lat = sin_lat = pv = 0.0
    if rows > 0:
        for i in range(rows):
            if lat_by_row:
                cos_lat, sin_lat, pv = _latitude_terms(lat, i, 0, a, e2)
            for j in range(cols):
                h = np.float64(height[i, j])
                seed = above[j]
                if above2[j] == above2[j]:
                    seed = 2.0 * above[j] - above2[j]
                above2[j] = above[j]
                above[j] = math.nan
                # What the cell keeps unless it is solved below.
                time_ns[i, j] = NAT
                slant_range[i, j] = math.nan
                line[i, j] = math.nan
                sample[i, j] = math.nan
                look[i, j, 0] = 0.0
                look[i, j, 1] = 0.0
                look[i, j, 2] = 0.0
                pixel_area[i, j] = math.nan
                incidence[i, j] = math.nan
                look_angle[i, j] = math.nan
                cross_track[i, j] = math.nan
                valid[i, j] = False
                ecef[i, j, 0] = math.nan
                ecef[i, j, 1] = math.nan
                ecef[i, j, 2] = math.nan
                if h != h:
                    continue
                if not lat_by_row:
                    cos_lat, sin_lat, pv = _latitude_terms(lat, i, j, a, e2)
                cos_lon, sin_lon = _longitude_terms(lon, i, j, lon_by_column, column_cos, column_sin)
                x = (pv + h) * cos_lat * cos_lon
                y = (pv + h) * cos_lat * sin_lon
                z = (pv * (1.0 - e2) + h) * sin_lat
                ecef[i, j, 0] = x
                ecef[i, j, 1] = y
                ecef[i, j, 2] = z
                if seed != seed:
                    seed = _first_guess(x, y, z, coeffs, t_center, t_scale)
                t, r, sx, sy, sz, vx, vy, vz, ok = _solve_zero_doppler(x, y, z, seed, coeffs, t_center, t_scale)
                if not ok or t < t_valid_min or t > t_valid_max:
                    continue
                above[j] = t
                side = (x - sx) * (vy * sz - vz * sy) + (y - sy) * (vz * sx - vx * sz) + (z - sz) * (vx * sy - vy * sx)
                if side * look_sign <= 0.0:
                    continue
                s = orbit_state(coeffs, t_center, t_scale, t)
                dx = x - s[0]
                dy = y - s[1]
                dz = z - s[2]
                speed2 = s[3] * s[3] + s[4] * s[4] + s[5] * s[5]
                fprime = dx * s[6] + dy * s[7] + dz * s[8] - speed2
                line_time = t - bistatic_rate * (r - bistatic_reference_range)
                ground, dground = _ground_range_and_derivative(line_time, r, rm_times, rm_sr0, rm_coeffs)
                time_ns[i, j] = reference_ns + np.int64(round(t * 1e9))
                slant_range[i, j] = r
                line[i, j] = (line_time - first_line_time) / line_interval
                sample[i, j] = ground / rm_spacing
                look[i, j, 0] = -dx / r
                look[i, j, 1] = -dy / r
                look[i, j, 2] = -dz / r
                # Along-track spacing at the target per line is -f'/|V| * interval; range
                # spacing per sample is spacing / (d ground / d r).
                pixel_area[i, j] = (-fprime / math.sqrt(speed2)) * line_interval * rm_spacing / dground
                cos_inc = (cos_lat * cos_lon * (-dx) + cos_lat * sin_lon * (-dy) + sin_lat * (-dz)) / r
                incidence[i, j] = math.acos(np.float32(min(1.0, max(-1.0, cos_inc))))
                sensor_norm = math.sqrt(s[0] * s[0] + s[1] * s[1] + s[2] * s[2])
                cos_look = -(s[0] * dx + s[1] * dy + s[2] * dz) / (sensor_norm * r)
                look_angle[i, j] = math.acos(min(1.0, max(-1.0, cos_look)))
                target_norm = math.sqrt(x * x + y * y + z * z)
                cos_ct = (s[0] * x + s[1] * y + s[2] * z) / (sensor_norm * target_norm)
                cross_track[i, j] = math.acos(min(1.0, max(-1.0, cos_ct)))
                valid[i, j] = True


@numba.njit(cache=True, nogil=True)
def ecef_of_cells(lon, lat, height, a, e2, out):
    """ECEF coordinates (m) of grid cells into ``out`` (rows, cols, 3), NaN for void heights.

    ``lon``, ``lat`` (rad) as in ``cell_geometry``: broadcast views of 1-D axes (zero
    strides) take one sine and cosine per column and row. The arithmetic is that of
    ``cell_geometry``, so the positions are the same to the last bit: the facet passes
    recompute them per block of rows instead of keeping 24 bytes per cell.
    """
    rows, cols = height.shape
    lon_by_column, cos_lon, sin_lon = _column_trig(lon, rows, cols)
    lat_by_row = lat.strides[1] == 0
    cl = sl = pv = 0.0
    for i in range(rows):
        if lat_by_row:
            cl, sl, pv = _latitude_terms(lat, i, 0, a, e2)
        for j in range(cols):
            if not lat_by_row:
                cl, sl, pv = _latitude_terms(lat, i, j, a, e2)
            co, so = _longitude_terms(lon, i, j, lon_by_column, cos_lon, sin_lon)
            h = np.float64(height[i, j])
            out[i, j, 0] = (pv + h) * cl * co
            out[i, j, 1] = (pv + h) * cl * so
            out[i, j, 2] = (pv * (1.0 - e2) + h) * sl


@numba.njit(cache=True, nogil=True)
def valid_extent(line, sample, valid):
    """Smallest and largest line and sample of the valid cells: (l_min, l_max, s_min, s_max)."""
    l_min = math.inf
    l_max = -math.inf
    s_min = math.inf
    s_max = -math.inf
    rows, cols = line.shape
    for i in range(rows):
        for j in range(cols):
            if valid[i, j]:
                l_min = min(l_min, line[i, j])
                l_max = max(l_max, line[i, j])
                s_min = min(s_min, sample[i, j])
                s_max = max(s_max, sample[i, j])
    return l_min, l_max, s_min, s_max


from .visibility import visibility_profiles  # noqa: E402, F401
