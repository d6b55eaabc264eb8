"""Per-cell zero-Doppler geometry: where every DEM cell centre is seen by the radar.

``cell_geometry`` solves the zero-Doppler condition once per DEM cell centre and keeps
what the facets and masks need: ECEF position, (line, sample) without clipping, the unit
look vector, the local slant-plane pixel area, the ellipsoid incidence angle and the
sweep coordinates (look angle, cross-track angle). ``ecef_of_cells`` recomputes the
positions with the same arithmetic.

Facets (``facets``) are built from these centres; layover and shadow masks
(``visibility``) are set from their line, slant range and angles: for every radar line,
the terrain profile in its zero-Doppler plane is cut out of the DEM and swept as in
ISCE3; each cell is set against the running extrema of the profiles of the two lines
that bracket it.
"""

import math

import numba
import numpy as np

from .orbit import LOW_DEGREE, PADDED_DEGREE, orbit_state, orbit_states_into, padded_coefficients
from .radar_grid import ground_range_and_derivative, is_nearest_entry, nearest_entry
from .zero_doppler import fast_arccos, geocode_grid


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


# Cells per chunk of a row in ``cell_geometry``: the chunk's working arrays stay in the
# first-level caches.
_CHUNK = 256


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
    axes are the fast case: one sine and cosine per column and row). The zero-Doppler
    time, slant range and (unclipped) line and sample come from ``geocode_grid``; the rest
    from the sensor's state at that time, a chunk of a row at a time in loops that run
    on SIMD lanes. Every output is written for every cell: NaN (look vector 0, time NaT,
    valid False) where the cell is void, unsolved or on the side the radar does not look
    at. Serial, GIL released: callers run row blocks (views) on threads.

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
    # Its incidence (degrees) is replaced by _cell_extras'. Two kernels, not one calling
    # the other: compiled into one function, LLVM left most of their loops scalar.
    geocode_grid(lon, lat, height, a, e2, coeffs, t_center, t_scale, t_valid_min, t_valid_max,
                 first_line_time, line_interval, 1, 1, rm_times, rm_sr0, rm_coeffs, rm_spacing, look_sign,
                 bistatic_rate, bistatic_reference_range, reference_ns, time_ns, slant_range, line, sample,
                 incidence, False)
    _cell_extras(lon, lat, height, a, e2, coeffs, t_center, t_scale, line_interval, rm_times, rm_sr0, rm_coeffs,
                 rm_spacing, bistatic_rate, bistatic_reference_range, reference_ns, ecef, time_ns, slant_range,
                 line, look, pixel_area, incidence, look_angle, cross_track, valid)


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _cell_extras(lon, lat, height, a, e2, coeffs, t_center, t_scale, line_interval, rm_times, rm_sr0, rm_coeffs,
                 rm_spacing, bistatic_rate, bistatic_reference_range, reference_ns, ecef, time_ns, slant_range,
                 line, look, pixel_area, incidence, look_angle, cross_track, valid):
    """``cell_geometry`` after the zero-Doppler solution: positions, the sensor's state at
    the solved times, and what follows from them (outputs as there). Each stage of a
    chunk is a loop of its own (``_chunk_*``), which LLVM can map onto SIMD lanes."""
    rows, cols = height.shape
    padded, vector_orbit = padded_coefficients(coeffs)
    low_degree = coeffs.shape[0] <= LOW_DEGREE + 1
    lon_by_column, column_cos, column_sin = _column_trig(lon, rows, cols)
    lat_by_row = lat.strides[1] == 0
    m = _CHUNK
    positions = np.empty((6, m))  # x, y, z and the ellipsoid normal
    t = np.empty(m)
    line_time = np.empty(m)
    state = np.empty((9, m))  # sensor position, velocity, acceleration
    slope = np.empty(m)
    solved = np.empty(m, np.bool_)
    look_x = np.empty(m)
    look_y = np.empty(m)
    look_z = np.empty(m)
    entry = 0
    for i in range(rows):
        for j0 in range(0, cols, m):
            n = min(m, cols - j0)
            stop = j0 + n
            _chunk_positions(lon, lat, height, i, j0, n, a, e2, lat_by_row, lon_by_column, column_cos, column_sin,
                             positions, ecef[i, j0:stop])
            _chunk_times(time_ns[i, j0:stop], slant_range[i, j0:stop], line[i, j0:stop], reference_ns, t_center,
                         bistatic_rate, bistatic_reference_range, t, line_time, solved)
            if vector_orbit and low_degree:
                orbit_states_into(padded, LOW_DEGREE, t_center, t_scale, t, n, state[0], state[1], state[2],
                                  state[3], state[4], state[5], state[6], state[7], state[8])
            elif vector_orbit:
                orbit_states_into(padded, PADDED_DEGREE, t_center, t_scale, t, n, state[0], state[1], state[2],
                                  state[3], state[4], state[5], state[6], state[7], state[8])
            else:
                for q in range(n):
                    st = orbit_state(coeffs, t_center, t_scale, t[q])
                    for k in range(9):
                        state[k, q] = st[k]
            entry = _chunk_slopes(slant_range[i, j0:stop], line_time, solved, n, rm_times, rm_sr0, rm_coeffs, entry,
                                  slope)
            _chunk_outputs(n, positions, state, slope, slant_range[i, j0:stop], solved, line_interval * rm_spacing,
                           look_x, look_y, look_z, look[i, j0:stop], pixel_area[i, j0:stop], incidence[i, j0:stop],
                           look_angle[i, j0:stop],
                           cross_track[i, j0:stop], valid[i, j0:stop])


@numba.njit(cache=True, nogil=True)
def _chunk_positions(lon, lat, height, i, j0, n, a, e2, lat_by_row, lon_by_column, column_cos, column_sin,
                     positions, ecef_row):
    """ECEF positions (``ecef_of_cells``' arithmetic: the facet passes recompute them with
    it) and ellipsoid normals of cells j0:j0 + n of row i, into ``positions`` (6, n) and
    ``ecef_row`` (n, 3)."""
    row_cos_lat, row_sin_lat, row_pv = _latitude_terms(lat, i, 0, a, e2)
    for q in range(n):
        j = j0 + q
        cos_lat, sin_lat, pv = (row_cos_lat, row_sin_lat, row_pv) if lat_by_row else _latitude_terms(lat, i, j, a, e2)
        cos_lon, sin_lon = _longitude_terms(lon, i, j, lon_by_column, column_cos, column_sin)
        h = np.float64(height[i, j])
        px = (pv + h) * cos_lat * cos_lon
        py = (pv + h) * cos_lat * sin_lon
        pz = (pv * (1.0 - e2) + h) * sin_lat
        positions[0, q] = px
        positions[1, q] = py
        positions[2, q] = pz
        positions[3, q] = cos_lat * cos_lon
        positions[4, q] = cos_lat * sin_lon
        positions[5, q] = sin_lat
        ecef_row[q, 0] = px
        ecef_row[q, 1] = py
        ecef_row[q, 2] = pz


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _chunk_times(time_row, range_row, line_row, reference_ns, t_center, bistatic_rate, bistatic_reference_range,
                 t, line_time, solved):
    """Zero-Doppler times (s since the orbit's reference; its centre for unsolved cells,
    whose outputs are masked) and line times of a chunk; which cells were solved."""
    for q in range(time_row.shape[0]):
        ok = line_row[q] == line_row[q]
        solved[q] = ok
        time = (time_row[q] - reference_ns) * 1e-9 if ok else t_center
        t[q] = time
        line_time[q] = time - bistatic_rate * (range_row[q] - bistatic_reference_range)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _chunk_slopes(range_row, line_time, solved, n, rm_times, rm_sr0, rm_coeffs, entry, slope):
    """d(ground range) / d(slant range) of a chunk's cells from the range model's entry
    nearest in time, mostly one for the whole chunk; returns the entry for the next."""
    degree = rm_coeffs.shape[1] - 1
    uniform = True
    if rm_times.shape[0] > 1:
        q0 = 0
        while q0 < n and not solved[q0]:
            q0 += 1
        if q0 < n and not is_nearest_entry(line_time[q0], rm_times, entry):
            entry = nearest_entry(line_time[q0], rm_times)
        # is_nearest_entry's comparisons, with infinite neighbours at the ends: written
        # out, as the inlined call kept the reference counting of ``rm_times`` per cell.
        n_entries = rm_times.shape[0]
        previous = rm_times[entry - 1] if entry > 0 else -math.inf
        current = rm_times[entry]
        following = rm_times[entry + 1] if entry < n_entries - 1 else math.inf
        for q in range(n):
            lt = line_time[q]
            uniform &= (not solved[q]) | ((lt - previous > current - lt) & (lt - current <= following - lt))
    if not uniform:
        for q in range(n):
            slope[q] = (ground_range_and_derivative(line_time[q], range_row[q], rm_times, rm_sr0, rm_coeffs)[1]
                        if solved[q] else 1.0)
        return entry
    sr0 = rm_sr0[entry]
    value_top = rm_coeffs[entry, degree]
    for q in range(n):
        xr = range_row[q] - sr0
        value = value_top
        derivative = 0.0
        for k in range(degree - 1, -1, -1):
            derivative = derivative * xr + value
            value = value * xr + rm_coeffs[entry, k]
        slope[q] = derivative
    return entry


@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _chunk_outputs(n, positions, state, slope, range_row, solved, area_factor, look_x, look_y, look_z, look_row,
                   area_row, incidence_row, look_angle_row, cross_row, valid_row):
    """What follows from a cell's position and the sensor's state at its time: look
    vector, pixel area, incidence, look and cross-track angles; NaN (look vector 0) for
    unsolved cells."""
    for q in range(n):
        ok = solved[q]
        r = range_row[q]
        x = positions[0, q]
        y = positions[1, q]
        z = positions[2, q]
        sx = state[0, q]
        sy = state[1, q]
        sz = state[2, q]
        dx = x - sx
        dy = y - sy
        dz = z - sz
        speed2 = state[3, q] * state[3, q] + state[4, q] * state[4, q] + state[5, q] * state[5, q]
        fprime = dx * state[6, q] + dy * state[7, q] + dz * state[8, q] - speed2
        # Into arrays of their own: stores into the rows of one 2-D array (their stride
        # unknown to the compiler, they might overlap) would keep this loop scalar.
        look_x[q] = -dx / r if ok else 0.0
        look_y[q] = -dy / r if ok else 0.0
        look_z[q] = -dz / r if ok else 0.0
        # Along-track spacing at the target per line is -f'/|V| * interval; range spacing
        # per sample is spacing / (d ground / d r).
        area_row[q] = (-fprime / math.sqrt(speed2)) * area_factor / slope[q] if ok else math.nan
        cos_inc = -(positions[3, q] * dx + positions[4, q] * dy + positions[5, q] * dz) / r
        incidence_row[q] = fast_arccos(min(1.0, max(-1.0, cos_inc))) if ok else math.nan
        sensor_norm = math.sqrt(sx * sx + sy * sy + sz * sz)
        cos_look = -(sx * dx + sy * dy + sz * dz) / (sensor_norm * r)
        look_angle_row[q] = fast_arccos(min(1.0, max(-1.0, cos_look))) if ok else math.nan
        cos_ct = (sx * x + sy * y + sz * z) / (sensor_norm * math.sqrt(x * x + y * y + z * z))
        cross_row[q] = fast_arccos(min(1.0, max(-1.0, cos_ct))) if ok else math.nan
        valid_row[q] = ok
    for q in range(n):
        look_row[q, 0] = look_x[q]
        look_row[q, 1] = look_y[q]
        look_row[q, 2] = look_z[q]


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
