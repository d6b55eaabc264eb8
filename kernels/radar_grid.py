"""Range axis of a radar image: slant range <-> (fractional) sample index.

One model serves slant-range (SLC) and ground-range (GRD) products: a table of
polynomials ``ground_range = sum_k coeffs[i, k] * (slant_range - sr0[i])**k`` at azimuth
times ``times[i]`` (s), and ``sample = ground_range / spacing``. A line uses the entry
nearest in time. That is how Sentinel-1 GRD products are made: their annotated
geolocation grid is reproduced to 0.01 pixel with the nearest entry, but only to 0.5
pixel with coefficients interpolated linearly in time. An SLC is the one-entry table with
coefficients (0, 1), sr0 the slant range of the first sample and ``spacing`` the
slant-range pixel spacing.
"""

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, inline="always")
def nearest_entry(t, times):
    """Index of the entry of the range model's ``times`` (s, sorted) nearest to ``t`` (s);
    the earlier of two equally near."""
    n = times.shape[0]
    if n == 1 or t <= times[0]:
        return 0
    if t >= times[n - 1]:
        return n - 1
    lo = 0
    hi = n - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if times[mid] <= t:
            lo = mid
        else:
            hi = mid
    return lo if t - times[lo] <= times[hi] - t else hi


@numba.njit(cache=True, nogil=True, inline="always")
def ground_range_and_derivative(t, slant_range, times, sr0, coeffs):
    """Range-axis coordinate (m) of ``slant_range`` (m) at azimuth time ``t`` (s), from the
    entry nearest in time, and its derivative d(range-axis coordinate) / d(slant range)
    (m/m)."""
    i = nearest_entry(t, times)
    x = slant_range - sr0[i]
    degree = coeffs.shape[1] - 1
    value = coeffs[i, degree]
    slope = 0.0
    for k in range(degree - 1, -1, -1):
        slope = slope * x + value
        value = value * x + coeffs[i, k]
    return value, slope


@numba.njit(cache=True, nogil=True, inline="always")
def _ground_range(t, slant_range, times, sr0, coeffs):
    i = 0 if times.shape[0] == 1 else nearest_entry(t, times)
    x = slant_range - sr0[i]
    degree = coeffs.shape[1] - 1
    value = coeffs[i, degree]
    for k in range(degree - 1, -1, -1):
        value = value * x + coeffs[i, k]
    return value


@numba.njit(cache=True, nogil=True)
def ground_range_of(t, slant_range, times, sr0, coeffs):
    """Range-axis coordinate (m) of slant range ``slant_range`` (m) at azimuth time ``t`` (s)."""
    return _ground_range(t, slant_range, times, sr0, coeffs)


@numba.njit(cache=True, nogil=True)
def sample_of_slant_range(t, slant_range, times, sr0, coeffs, spacing):
    """Fractional sample index of ``slant_range`` (m) at azimuth time ``t`` (s)."""
    return _ground_range(t, slant_range, times, sr0, coeffs) / spacing


@numba.njit(cache=True, nogil=True)
def slant_range_of_sample(t, sample, times, sr0, coeffs, spacing):
    """Slant range (m) of fractional sample ``sample`` at azimuth time ``t`` (s).

    Newton's method on the range polynomial, started from its linear part; the
    polynomials are monotonic over the swath, so this converges in a few steps.
    """
    target = sample * spacing
    r = sr0[nearest_entry(t, times)]
    for _ in range(50):
        value, slope = ground_range_and_derivative(t, r, times, sr0, coeffs)
        if slope == 0.0:
            return math.nan
        step = (value - target) / slope
        r -= step
        if abs(step) < 1e-9:
            break
    return r


@numba.njit(cache=True, nogil=True)
def samples_of_slant_ranges(t, slant_range, times, sr0, coeffs, spacing):
    """``sample_of_slant_range`` over flat arrays ``t`` (s) and ``slant_range`` (m); NaN stays NaN."""
    out = np.empty(t.shape[0])
    for k in range(t.shape[0]):
        if t[k] != t[k] or slant_range[k] != slant_range[k]:
            out[k] = math.nan
        else:
            out[k] = _ground_range(t[k], slant_range[k], times, sr0, coeffs) / spacing
    return out


@numba.njit(cache=True, nogil=True)
def slant_ranges_of_samples(t, sample, times, sr0, coeffs, spacing):
    """``slant_range_of_sample`` over flat arrays ``t`` (s) and ``sample``; NaN stays NaN."""
    out = np.empty(t.shape[0])
    for k in range(t.shape[0]):
        if t[k] != t[k] or sample[k] != sample[k]:
            out[k] = math.nan
        else:
            out[k] = slant_range_of_sample(t[k], sample[k], times, sr0, coeffs, spacing)
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def is_nearest_entry(t, times, i):
    """Whether entry ``i`` of ``times`` (s, sorted) is the one ``nearest_entry(t, times)``
    picks for ``t`` (s), ties included.

    Two comparisons instead of a search: neighbouring cells mostly share an entry.
    """
    n = times.shape[0]
    return (i == 0 or t - times[i - 1] > times[i] - t) and (i == n - 1 or t - times[i] <= times[i + 1] - t)
