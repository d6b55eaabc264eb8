"""Geodetic (longitude, latitude, ellipsoidal height) to Earth-centred Earth-fixed (ECEF)."""

import math

import numba
import numpy as np

#: WGS84 semi-major axis (m) and first eccentricity squared.
WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3


@numba.njit(cache=True, nogil=True)
def geodetic_to_ecef_point(lon, lat, height, a, e2):
    """ECEF (m) of one point given longitude, latitude (rad) and ellipsoidal height (m)."""
    sin_lat = math.sin(lat)
    cos_lat = math.cos(lat)
    prime_vertical = a / math.sqrt(1.0 - e2 * sin_lat * sin_lat)
    x = (prime_vertical + height) * cos_lat * math.cos(lon)
    y = (prime_vertical + height) * cos_lat * math.sin(lon)
    z = (prime_vertical * (1.0 - e2) + height) * sin_lat
    return x, y, z


@numba.njit(cache=True, nogil=True)
def geodetic_to_ecef(lon, lat, height, a=WGS84_A, e2=WGS84_E2):
    """ECEF coordinates of points given as flat arrays.

    Parameters
    ----------
    lon, lat : 1-D float64 arrays
        Longitude and geodetic latitude (rad).
    height : 1-D array
        Ellipsoidal height (m); NaN propagates.
    a, e2 : float
        Ellipsoid semi-major axis (m) and first eccentricity squared.

    Returns
    -------
    ecef : (n, 3) float64 array (m)
    """
    n = lon.shape[0]
    out = np.empty((n, 3), dtype=np.float64)
    for k in range(n):
        x, y, z = geodetic_to_ecef_point(lon[k], lat[k], np.float64(height[k]), a, e2)
        out[k, 0] = x
        out[k, 1] = y
        out[k, 2] = z
    return out


@numba.njit(cache=True, nogil=True)
def geodetic_to_ecef_grid(lon, lat, height, a=WGS84_A, e2=WGS84_E2):
    """ECEF coordinates of every cell of a 2-D grid.

    Parameters
    ----------
    lon, lat : 2-D float64 arrays (rows, cols)
        Longitude and geodetic latitude of each cell (rad).
    height : 2-D array (rows, cols)
        Ellipsoidal height (m); NaN propagates.

    Returns
    -------
    ecef : (rows, cols, 3) float64 array (m)
    """
    rows, cols = height.shape
    out = np.empty((rows, cols, 3), dtype=np.float64)
    for i in range(rows):
        for j in range(cols):
            x, y, z = geodetic_to_ecef_point(lon[i, j], lat[i, j], np.float64(height[i, j]), a, e2)
            out[i, j, 0] = x
            out[i, j, 1] = y
            out[i, j, 2] = z
    return out


#: Largest angle (rad) given to ``cos_sin_small``: there its series err by under 1e-17.
SMALL_ANGLE = 0.05


@numba.njit(cache=True, nogil=True)
def cos_sin_small(d):
    """Cosine and sine of a small angle ``d`` (rad, |d| <= SMALL_ANGLE) by their series.

    Plain multiply-adds, so loops that use them run on SIMD lanes (libm's sin and cos do
    not vectorise); with ``cos(a + d) = cos a cos d - sin a sin d`` this gives the sines
    and cosines of a row of nearby angles from one exact pair.
    """
    d2 = d * d
    c = 1.0 - d2 * (0.5 - d2 * (1.0 / 24.0 - d2 * (1.0 / 720.0 - d2 * (1.0 / 40320.0))))
    s = d * (1.0 - d2 * (1.0 / 6.0 - d2 * (1.0 / 120.0 - d2 * (1.0 / 5040.0))))
    return c, s


@numba.njit(cache=True, nogil=True)
def interpolate_rows(along, row_node, row_weight, scale, out):
    """Linear interpolation between rows of a node table, into ``out``.

    ``out[i, :] = scale * (along[k, :] * (1 - w) + along[k + 1, :] * w)`` with
    ``k = row_node[i]``, ``w = row_weight[i]``: the second half of a separable bilinear
    interpolation whose first half (along each node row, to every column) is ``along``.
    ``scale`` converts units (e.g. degrees to radians; 1.0 changes nothing).

    Parameters
    ----------
    along : (n_nodes, cols) float64
    row_node : (rows,) int64, in 0 .. n_nodes - 2
    row_weight : (rows,) float64
    scale : float
    out : (rows, cols) float64, filled here
    """
    rows, cols = out.shape
    for i in range(rows):
        k = row_node[i]
        w = row_weight[i]
        u = 1.0 - w
        for j in range(cols):
            out[i, j] = (along[k, j] * u + along[k + 1, j] * w) * scale
