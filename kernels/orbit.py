"""Polynomial orbit evaluation.

An orbit is a polynomial in the normalised time tau = (t - t_center) / t_scale, with
coefficients ``coeffs[k, axis]`` (m) for tau**k. Velocity and acceleration are its
derivatives, so position, velocity and acceleration are always consistent.
"""

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, inline="always")
def orbit_state(coeffs, t_center, t_scale, t):
    """Position (m), velocity (m/s) and acceleration (m/s^2) at time ``t`` (s).

    Horner's rule on the polynomial and its first two derivatives at once.
    Returns a 9-tuple (px, py, pz, vx, vy, vz, ax, ay, az).
    """
    return orbit_state_padded(coeffs, coeffs.shape[0] - 1, t_center, t_scale, t)


@numba.njit(cache=True, nogil=True)
def orbit_states(coeffs, t_center, t_scale, times):
    """Position, velocity and acceleration at each of ``times`` (s).

    Returns
    -------
    position, velocity, acceleration : (n, 3) float64 arrays
    """
    n = times.shape[0]
    position = np.empty((n, 3))
    velocity = np.empty((n, 3))
    acceleration = np.empty((n, 3))
    for k in range(n):
        s = orbit_state(coeffs, t_center, t_scale, times[k])
        for axis in range(3):
            position[k, axis] = s[axis]
            velocity[k, axis] = s[3 + axis]
            acceleration[k, axis] = s[6 + axis]
    return position, velocity, acceleration


#: Degree to which ``padded_coefficients`` pads an orbit. A fixed degree gives
#: ``orbit_state_padded`` a loop the compiler unrolls, which lets loops over many times
#: run on SIMD lanes; the zeros added cost a few multiply-adds.
PADDED_DEGREE = 8


@numba.njit(cache=True, nogil=True, inline="always")
def padded_coefficients(coeffs):
    """``coeffs`` (degree + 1, 3) padded with zero rows to (PADDED_DEGREE + 1, 3).

    Returns the padded copy and whether the orbit fits (degree <= PADDED_DEGREE); when it
    does not, the copy is all zeros and callers use ``orbit_state`` instead. Inlined, so
    that the compiler sees a fresh array that no output can alias: loops reading it then
    vectorise without run-time overlap checks.
    """
    out = np.zeros((PADDED_DEGREE + 1, 3))
    fits = coeffs.shape[0] <= PADDED_DEGREE + 1
    if fits:
        for k in range(coeffs.shape[0]):
            for axis in range(3):
                out[k, axis] = coeffs[k, axis]
    return out, fits


@numba.njit(cache=True, nogil=True, inline="always")
def orbit_state_padded(padded, degree, t_center, t_scale, t):
    """``orbit_state`` for coefficients from ``padded_coefficients``, evaluated as a
    polynomial of ``degree`` (at least the orbit's, at most PADDED_DEGREE).

    The same arithmetic as ``orbit_state`` (the padding adds exact zeros), but for
    multiply-add contraction where the caller allows it. Callers pass ``degree`` as a
    literal: once inlined, the loop has a fixed trip count and unrolls.
    """
    tau = (t - t_center) / t_scale
    px = padded[degree, 0]
    py = padded[degree, 1]
    pz = padded[degree, 2]
    vx = vy = vz = 0.0
    ax = ay = az = 0.0
    for k in range(degree - 1, -1, -1):
        ax = ax * tau + 2.0 * vx
        ay = ay * tau + 2.0 * vy
        az = az * tau + 2.0 * vz
        vx = vx * tau + px
        vy = vy * tau + py
        vz = vz * tau + pz
        px = px * tau + padded[k, 0]
        py = py * tau + padded[k, 1]
        pz = pz * tau + padded[k, 2]
    inv = 1.0 / t_scale
    inv2 = inv * inv
    return (px, py, pz, vx * inv, vy * inv, vz * inv, ax * inv2, ay * inv2, az * inv2)


#: Degree at which the geocoding evaluates orbits of this degree or lower (Sentinel-1
#: fits: 5) with ``orbit_state_padded``: it skips the padding's last Horner steps.
LOW_DEGREE = 5


@numba.njit(cache=True, nogil=True, inline="always")
def orbit_states_into(padded, degree, t_center, t_scale, times, n, sx, sy, sz, vx, vy, vz, ax, ay, az):
    """``orbit_state_padded`` at ``times[:n]`` (s), into the given arrays: position
    ``sx, sy, sz`` (m), velocity ``vx, vy, vz`` (m/s), acceleration ``ax, ay, az`` (m/s^2)."""
    for q in range(n):
        st = orbit_state_padded(padded, degree, t_center, t_scale, times[q])
        sx[q] = st[0]
        sy[q] = st[1]
        sz[q] = st[2]
        vx[q] = st[3]
        vy[q] = st[4]
        vz[q] = st[5]
        ax[q] = st[6]
        ay[q] = st[7]
        az[q] = st[8]
