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
    tau = (t - t_center) / t_scale
    degree = coeffs.shape[0] - 1
    px = coeffs[degree, 0]
    py = coeffs[degree, 1]
    pz = coeffs[degree, 2]
    vx = 0.0
    vy = 0.0
    vz = 0.0
    ax = 0.0
    ay = 0.0
    az = 0.0
    for k in range(degree - 1, -1, -1):
        ax = ax * tau + 2.0 * vx
        ay = ay * tau + 2.0 * vy
        az = az * tau + 2.0 * vz
        vx = vx * tau + px
        vy = vy * tau + py
        vz = vz * tau + pz
        px = px * tau + coeffs[k, 0]
        py = py * tau + coeffs[k, 1]
        pz = pz * tau + coeffs[k, 2]
    inv = 1.0 / t_scale
    inv2 = inv * inv
    return (px, py, pz, vx * inv, vy * inv, vz * inv, ax * inv2, ay * inv2, az * inv2)


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
