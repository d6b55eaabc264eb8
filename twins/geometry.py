"""Pure-numpy reference twins of the kernels, shared by the tests and the benchmarks.

Written for clarity, vectorised over all cells, and independent of the numba code paths
(no shared helpers), so that agreement means something.
"""

from __future__ import annotations

import numpy as np

WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3
SPEED_OF_LIGHT = 299_792_458.0


def geodetic_to_ecef(lon_rad, lat_rad, height, a=WGS84_A, e2=WGS84_E2):
    """ECEF (..., 3) of geodetic points (radians, metres)."""
    lon_rad, lat_rad, height = np.broadcast_arrays(lon_rad, lat_rad, np.asarray(height, np.float64))
    n = a / np.sqrt(1.0 - e2 * np.sin(lat_rad) ** 2)
    return np.stack(
        [
            (n + height) * np.cos(lat_rad) * np.cos(lon_rad),
            (n + height) * np.cos(lat_rad) * np.sin(lon_rad),
            (n * (1.0 - e2) + height) * np.sin(lat_rad),
        ],
        axis=-1,
    )


def interpolate_rows(along, row_node, row_weight, scale):
    """Numpy twin of ``kernels.geodesy.interpolate_rows``: the rows between node rows."""
    weight = np.asarray(row_weight, np.float64)[:, None]
    return (along[row_node] * (1.0 - weight) + along[np.asarray(row_node) + 1] * weight) * scale


def orbit_state(coeffs, t_center, t_scale, t):
    """Position, velocity, acceleration (..., 3) of the polynomial orbit at times t (s)."""
    P = np.polynomial.polynomial
    tau = (np.asarray(t, np.float64) - t_center) / t_scale
    d1 = P.polyder(coeffs, 1, axis=0)
    d2 = P.polyder(coeffs, 2, axis=0) if coeffs.shape[0] > 2 else np.zeros((1, 3))
    pos = np.stack([P.polyval(tau, coeffs[:, k]) for k in range(3)], -1)
    vel = np.stack([P.polyval(tau, d1[:, k]) for k in range(3)], -1) / t_scale
    acc = np.stack([P.polyval(tau, d2[:, k]) for k in range(3)], -1) / t_scale**2
    return pos, vel, acc


def zero_doppler(ecef, coeffs, t_center, t_scale, iterations=50, tolerance=1e-12):
    """Zero-Doppler time (s) and slant range (m) of ECEF points (..., 3), by Newton's method.

    Every point starts from the orbit's centre time and all points iterate together.
    """
    t = np.full(ecef.shape[:-1], float(t_center))
    for _ in range(iterations):
        pos, vel, acc = orbit_state(coeffs, t_center, t_scale, t)
        d = ecef - pos
        f = np.einsum("...k,...k", d, vel)
        fp = np.einsum("...k,...k", d, acc) - np.einsum("...k,...k", vel, vel)
        step = f / fp
        t = t - step
        if np.nanmax(np.abs(step)) < tolerance:
            break
    pos, vel, _ = orbit_state(coeffs, t_center, t_scale, t)
    return t, np.linalg.norm(ecef - pos, axis=-1), pos, vel


def ground_range(t, slant_range, times, sr0, coeffs):
    """Range-axis coordinate (m) with the polynomial of the entry nearest in time."""
    t = np.asarray(t, np.float64)
    if len(times) == 1:
        index = np.zeros(t.shape, dtype=int)
    else:
        index = np.argmin(np.abs(np.asarray(times)[None, :] - t.reshape(-1, 1)), axis=1).reshape(t.shape)
    x = slant_range - np.asarray(sr0)[index]
    c = np.asarray(coeffs)[index]
    return np.sum(c * x[..., None] ** np.arange(c.shape[-1]), axis=-1)


def geocode(lon_rad, lat_rad, height, k, clip=True):
    """Numpy twin of ``kernels.geocode_grid`` given ``RadarGeometry.kernel_arguments()`` ``k``.

    Returns zero-Doppler time (s since reference), slant range (m), line, sample (NaN
    outside the image, with ``clip``, or on the side not looked at) and ellipsoid incidence
    angle (deg).
    """
    lon_rad, lat_rad, height = np.broadcast_arrays(lon_rad, lat_rad, np.asarray(height, np.float64))
    ecef = geodetic_to_ecef(lon_rad, lat_rad, height)
    t, r, pos, vel = zero_doppler(ecef, k["coeffs"], k["t_center"], k["t_scale"])
    bad = ~np.isfinite(height) | (t < k["t_valid_min"]) | (t > k["t_valid_max"])
    normal = np.stack(
        [np.cos(lat_rad) * np.cos(lon_rad), np.cos(lat_rad) * np.sin(lon_rad), np.sin(lat_rad)], -1
    )
    incidence = np.degrees(np.arccos(np.clip(np.einsum("...k,...k", normal, pos - ecef) / r, -1, 1)))
    line_time = t - k["bistatic_rate"] * (r - k["bistatic_reference_range"])
    line = (line_time - k["first_line_time"]) / k["line_interval"]
    sample = ground_range(line_time, r, k["rm_times"], k["rm_sr0"], k["rm_coeffs"]) / k["rm_spacing"]
    side = np.einsum("...k,...k", ecef - pos, np.cross(vel, pos)) * k["look_sign"]
    outside = (
        ((line < -0.5) | (line > k["n_lines"] - 0.5) | (sample < -0.5) | (sample > k["n_samples"] - 0.5)) & clip
        | (side <= 0)
    )
    line = np.where(outside | bad, np.nan, line)
    sample = np.where(outside | bad, np.nan, sample)
    t, r, incidence = (np.where(bad, np.nan, v) for v in (t, r, incidence))
    return t, r, line, sample, incidence


# --------------------------------------------------------------------------------------
# Speckle filters (kernels/speckle.py)
# --------------------------------------------------------------------------------------


def _shifted(image, half):
    """Views (dy, dx, image shifted by it) over a NaN-padded copy, offsets row-major."""
    rows, cols = image.shape
    padded = np.full((rows + 2 * half, cols + 2 * half), np.nan)
    padded[half:half + rows, half:half + cols] = image
    for dy in range(-half, half + 1):
        for dx in range(-half, half + 1):
            yield dy, dx, padded[half + dy:half + dy + rows, half + dx:half + dx + cols]


def _lee_estimate(z, total, total_sq, count, looks):
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        variance = total_sq / count - mean * mean
        noise = 1.0 / looks
        weight = np.clip((variance - mean * mean * noise) / (1.0 + noise) / variance, 0.0, 1.0)
    out = np.where(variance > 0, mean + weight * (z - mean), mean)
    return np.where(np.isnan(z), np.nan, out)


def _window_sums(image, half, include=None):
    """Sum, sum of squares and count of the valid cells of each pixel's window, summed in
    row-major offset order; ``include(dy, dx)`` (per-pixel bool) restricts the window."""
    total = np.zeros(image.shape)
    total_sq = np.zeros(image.shape)
    count = np.zeros(image.shape)
    for dy, dx, values in _shifted(image, half):
        keep = ~np.isnan(values)
        if include is not None:
            keep &= include(dy, dx)
        v = np.where(keep, values, 0.0)
        total += v
        total_sq += v * v
        count += keep
    return total, total_sq, count


def lee(image, window, looks):
    """Numpy twin of ``kernels.speckle.lee`` on the whole image."""
    image = np.asarray(image, np.float64)
    return _lee_estimate(image, *_window_sums(image, window // 2), looks)


#: The eight edge-aligned half windows of the 7 x 7 refined-Lee window as boolean masks
#: over offsets (dy + 3, dx + 3), indexed [direction, side]; direction 0 vertical edge
#: (gradient left-right), 1 horizontal edge (top-bottom), 2 the dy = dx diagonal (gradient
#: top right - bottom left), 3 the dy = -dx diagonal (top left - bottom right); side 0 is
#: the half towards the gradient's first end.
_DY, _DX = np.mgrid[-3:4, -3:4]
EDGE_WINDOWS = np.array([
    [_DX <= 0, _DX >= 0],
    [_DY <= 0, _DY >= 0],
    [_DX >= _DY, _DX <= _DY],
    [_DX <= -_DY, _DX >= -_DY],
])


def refined_lee(image, looks):
    """Numpy twin of ``kernels.speckle.refined_lee`` on the whole image."""
    image = np.asarray(image, np.float64)
    # 3 x 3 means centred at every cell of the image padded by 2 (centres outside the
    # image still see its edge), then picked at offsets -2, 0, 2.
    rows, cols = image.shape
    padded = np.full((rows + 4, cols + 4), np.nan)
    padded[2:2 + rows, 2:2 + cols] = image
    total, _, count = _window_sums(padded, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        local = np.where(count > 0, total / count, np.nan)
    means = np.stack([local[2 + dy:2 + dy + rows, 2 + dx:2 + dx + cols]
                      for dy in (-2, 0, 2) for dx in (-2, 0, 2)])
    ends = np.array([(3, 5), (1, 7), (2, 6), (0, 8)])
    gradients = np.abs(means[ends[:, 0]] - means[ends[:, 1]])
    gradients = np.where(np.isnan(gradients), -1.0, gradients)
    direction = np.argmax(gradients, axis=0)
    found = gradients.max(axis=0) >= 0
    first = np.take_along_axis(means[ends[:, 0]], direction[None], 0)[0]
    second = np.take_along_axis(means[ends[:, 1]], direction[None], 0)[0]
    side = (np.abs(second - means[4]) < np.abs(first - means[4])).astype(int)

    def include(dy, dx):
        return np.where(found, EDGE_WINDOWS[direction, side, dy + 3, dx + 3], True)

    return _lee_estimate(image, *_window_sums(image, 3, include), looks)


#: Sub-points per quadrant side of the layover-facing share, and their offsets in (0, 1).
FACING_SUBPOINTS = 4
FACING_OFFSETS = (np.arange(FACING_SUBPOINTS) + 0.5) / FACING_SUBPOINTS


def quadrant_values(values: np.ndarray, valid: np.ndarray, dr: int, dc: int):
    """Per cell: centre, mid-edge along rows, mid-edge along columns and corner values of
    the quadrant (dr, dc), and whether its four cells are valid (numpy, shifted copies)."""
    rows, cols = values.shape
    padded = np.full((rows + 2, cols + 2), np.nan)
    padded[1:-1, 1:-1] = values
    ok_pad = np.zeros((rows + 2, cols + 2), dtype=bool)
    ok_pad[1:-1, 1:-1] = valid

    def shifted(array, a, b):
        return array[1 + a:rows + 1 + a, 1 + b:cols + 1 + b]

    ok = valid & shifted(ok_pad, dr, 0) & shifted(ok_pad, 0, dc) & shifted(ok_pad, dr, dc)
    centre = values
    along_rows = 0.5 * (centre + shifted(padded, dr, 0))
    along_cols = 0.5 * (centre + shifted(padded, 0, dc))
    corner = 0.25 * (centre + shifted(padded, dr, 0) + shifted(padded, 0, dc) + shifted(padded, dr, dc))
    return ok, centre, along_rows, along_cols, corner


def quadrant_reversing_twin(l00, l10, l01, l11, s00, s10, s01, s11, sign):
    """How many of a quadrant's sub-points are range-reversing (``kernels.facing._quadrant_reversing``):
    the Jacobian determinant at every sub-point at once, counted where its sign times
    ``sign`` is negative (NaN: not counted). Arguments broadcast (scalars or arrays)."""
    a, b = np.meshgrid(FACING_OFFSETS, FACING_OFFSETS, indexing="ij")
    a, b = a.reshape(a.shape + (1,) * np.ndim(l00)), b.reshape(b.shape + (1,) * np.ndim(l00))
    la = (1 - b) * (l10 - l00) + b * (l11 - l01)
    lb = (1 - a) * (l01 - l00) + a * (l11 - l10)
    sa = (1 - b) * (s10 - s00) + b * (s11 - s01)
    sb = (1 - a) * (s01 - s00) + a * (s11 - s10)
    with np.errstate(invalid="ignore"):
        return (sign * (la * sb - lb * sa) < 0).sum(axis=(0, 1))


def layover_facing_share_twin(line: np.ndarray, sample: np.ndarray, valid: np.ndarray, orientation: int) -> np.ndarray:
    """``kernels.facing.layover_facing_share`` on whole arrays: the sub-points' Jacobian
    determinants of every quadrant at once, counted where their sign is not ``orientation``'s."""
    reversing = np.zeros(line.shape)
    sampled = np.zeros(line.shape)
    for dr in (-1, 1):
        for dc in (-1, 1):
            ok, l00, l10, l01, l11 = quadrant_values(line, valid, dr, dc)
            _, s00, s10, s01, s11 = quadrant_values(sample, valid, dr, dc)
            count = quadrant_reversing_twin(l00, l10, l01, l11, s00, s10, s01, s11, orientation * dr * dc)
            reversing += np.where(ok, count, 0)
            sampled += np.where(ok, FACING_SUBPOINTS ** 2, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid & (sampled > 0), reversing / sampled, np.nan)
