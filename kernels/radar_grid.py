"""Range axis of a radar image: slant range <-> (fractional) sample index.

One model serves slant-range (SLC) and ground-range (GRD) products: a table of
polynomials ``ground_range = sum_k coeffs[i, k] * (slant_range - sr0[i])**k`` at azimuth
times ``times[i]`` (s), linearly interpolated in azimuth time (coefficients and sr0
alike, as ESA's product specification and xarray-sentinel do), clamped at the table's
ends, and ``sample = ground_range / spacing``. An SLC is the one-entry table with
coefficients (0, 1), sr0 the slant range of the first sample and ``spacing`` the
slant-range pixel spacing.
"""

import math

import numba


@numba.njit(cache=True, nogil=True, inline="always")
def _bracket(t, times):
    """Index i and weight w so that t ~ (1 - w) * times[i] + w * times[i + 1]."""
    n = times.shape[0]
    if n == 1 or t <= times[0]:
        return 0, 0.0
    if t >= times[n - 1]:
        return n - 2, 1.0
    lo = 0
    hi = n - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if times[mid] <= t:
            lo = mid
        else:
            hi = mid
    return lo, (t - times[lo]) / (times[hi] - times[lo])


@numba.njit(cache=True, nogil=True, inline="always")
def _ground_range_and_derivative(t, slant_range, times, sr0, coeffs):
    i, w = _bracket(t, times)
    j = i + 1 if times.shape[0] > 1 else i
    x = slant_range - ((1.0 - w) * sr0[i] + w * sr0[j])
    degree = coeffs.shape[1] - 1
    value = (1.0 - w) * coeffs[i, degree] + w * coeffs[j, degree]
    slope = 0.0
    for k in range(degree - 1, -1, -1):
        slope = slope * x + value
        value = value * x + ((1.0 - w) * coeffs[i, k] + w * coeffs[j, k])
    return value, slope


@numba.njit(cache=True, nogil=True)
def ground_range_of(t, slant_range, times, sr0, coeffs):
    """Range-axis coordinate (m) of slant range ``slant_range`` (m) at azimuth time ``t`` (s)."""
    return _ground_range_and_derivative(t, slant_range, times, sr0, coeffs)[0]


@numba.njit(cache=True, nogil=True)
def sample_of_slant_range(t, slant_range, times, sr0, coeffs, spacing):
    """Fractional sample index of ``slant_range`` (m) at azimuth time ``t`` (s)."""
    return _ground_range_and_derivative(t, slant_range, times, sr0, coeffs)[0] / spacing


@numba.njit(cache=True, nogil=True)
def slant_range_of_sample(t, sample, times, sr0, coeffs, spacing):
    """Slant range (m) of fractional sample ``sample`` at azimuth time ``t`` (s).

    Newton's method on the range polynomial, started from its linear part; the
    polynomials are monotonic over the swath, so this converges in a few steps.
    """
    target = sample * spacing
    i, w = _bracket(t, times)
    j = i + 1 if times.shape[0] > 1 else i
    r = (1.0 - w) * sr0[i] + w * sr0[j]
    for _ in range(50):
        value, slope = _ground_range_and_derivative(t, r, times, sr0, coeffs)
        if slope == 0.0:
            return math.nan
        step = (value - target) / slope
        r -= step
        if abs(step) < 1e-9:
            break
    return r
