"""Speckle filters of linear SAR intensity: Lee (1980) and refined Lee (1981).

Both filters are Lee's minimum mean-square-error estimate under the multiplicative
speckle model z = x v, E[v] = 1, var(v) = 1 / L for an L-look intensity image:

    x̂ = m + b (z − m),   b = var(x) / var(z),   var(x) = (var(z) − m² / L) / (1 + 1 / L)

with m and var(z) the mean and (population) variance of z in a local window, and b
clipped to [0, 1]: where the window varies no more than speckle alone would (b = 0) the
estimate is the local mean; on strong texture or edges (b → 1) the pixel is kept. Being a
convex combination of the window mean and the pixel, x̂ lies within the range of the
window's values.

``lee`` takes its statistics over a square window centred on the pixel. ``refined_lee``
(Lee 1981) uses a 7 × 7 window: the means of its nine 3 × 3 sub-windows (centred at
offsets −2, 0, +2 in rows and columns) give four gradients across the window,

    vertical edge     |M[1, 0] − M[1, 2]|     horizontal edge   |M[0, 1] − M[2, 1]|
    diagonal edge     |M[0, 2] − M[2, 0]|     anti-diagonal     |M[0, 0] − M[2, 2]|

(the edge named is the one across which the gradient is taken). The largest picks the
edge direction (the first of this order on ties), and of the two sub-windows at its
ends, the one whose mean is closer to the centre sub-window's (the first end on ties)
picks the side: the statistics are taken over the half of the 7 × 7 window on that side,
the edge line included (28 cells), one of eight edge-aligned windows:

    vertical edge, left / right         dx <= 0 / dx >= 0
    horizontal edge, top / bottom       dy <= 0 / dy >= 0
    diagonal edge (dy = dx)             dx − dy >= 0 (top right) / dx − dy <= 0 (bottom left)
    anti-diagonal edge (dy = −dx)       dx + dy <= 0 (top left) / dx + dy >= 0 (bottom right)

with (dy, dx) the offset from the pixel, rows down. The pixel itself lies on every edge
line, so it is in every window.

Missing cells and edges. NaN cells (no data) stay NaN and are left out of every
statistic, as are the cells of a window that fall outside the image: near the image
edge and near voids the windows shrink to their valid cells (no padding, no
reflection). A sub-window without valid cells has no mean, and the gradients that need
it are not candidates; where no gradient has both ends the full 7 × 7 window is used.
Zero-variance windows (constant, or a single valid cell) give b = 0: the local mean.

Kernels take float32 or float64 images, accumulate in float64, and return float64 rows
``first_row:last_row`` of the result, so that callers can run row blocks on threads.
"""

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _lee_estimate(z, total, total_sq, count, looks):
    """Lee's MMSE estimate of pixel value ``z`` from its window's sums (float64)."""
    mean = total / count
    variance = total_sq / count - mean * mean
    if variance <= 0.0:
        return mean
    noise = 1.0 / looks
    signal_variance = (variance - mean * mean * noise) / (1.0 + noise)
    weight = signal_variance / variance
    if weight < 0.0:
        weight = 0.0
    elif weight > 1.0:
        weight = 1.0
    return mean + weight * (z - mean)


@numba.njit(cache=True, nogil=True)
def lee(image, window, looks, first_row, last_row):
    """Lee filter of rows ``first_row:last_row`` of a linear intensity image.

    Parameters
    ----------
    image : (rows, cols) float32 or float64, linear intensity (power), NaN where missing.
    window : int, odd side of the square window, in pixels (>= 3).
    looks : float, number of looks L of the intensity (speckle variance 1 / L), > 0.
    first_row, last_row : int, half-open range of output rows.

    Returns
    -------
    (last_row - first_row, cols) float64, the filtered rows; NaN where ``image`` is NaN.
    """
    rows, cols = image.shape
    half = window // 2
    out = np.empty((last_row - first_row, cols), dtype=np.float64)
    for i in range(first_row, last_row):
        r0 = max(0, i - half)
        r1 = min(rows, i + half + 1)
        for j in range(cols):
            z = np.float64(image[i, j])
            if np.isnan(z):
                out[i - first_row, j] = np.nan
                continue
            c0 = max(0, j - half)
            c1 = min(cols, j + half + 1)
            total = 0.0
            total_sq = 0.0
            count = 0
            for r in range(r0, r1):
                for c in range(c0, c1):
                    value = np.float64(image[r, c])
                    if not np.isnan(value):
                        total += value
                        total_sq += value * value
                        count += 1
            out[i - first_row, j] = _lee_estimate(z, total, total_sq, count, looks)
    return out


@numba.njit(cache=True, nogil=True)
def _in_edge_window(direction, side, dy, dx):
    """Whether offset (dy, dx) lies in the edge-aligned half window (direction, side).

    direction: 0 vertical edge, 1 horizontal edge, 2 diagonal (dy = dx), 3 anti-diagonal
    (dy = −dx); side 0: the first end of the direction's gradient, 1: the second.
    """
    if direction == 0:
        return dx <= 0 if side == 0 else dx >= 0
    if direction == 1:
        return dy <= 0 if side == 0 else dy >= 0
    if direction == 2:
        return dx - dy >= 0 if side == 0 else dx - dy <= 0
    return dx + dy <= 0 if side == 0 else dx + dy >= 0


@numba.njit(cache=True, nogil=True)
def refined_lee(image, looks, first_row, last_row):
    """Refined Lee filter (Lee 1981, 7 × 7) of rows ``first_row:last_row``.

    Parameters
    ----------
    image : (rows, cols) float32 or float64, linear intensity (power), NaN where missing.
    looks : float, number of looks L of the intensity (speckle variance 1 / L), > 0.
    first_row, last_row : int, half-open range of output rows.

    Returns
    -------
    (last_row - first_row, cols) float64, the filtered rows; NaN where ``image`` is NaN.
    """
    rows, cols = image.shape
    out = np.empty((last_row - first_row, cols), dtype=np.float64)
    means = np.empty(9, dtype=np.float64)
    # Ends of the four gradients in ``means``: vertical, horizontal, diagonal, anti-diagonal edge.
    first_end = np.array([3, 1, 2, 0], dtype=np.int64)
    second_end = np.array([5, 7, 6, 8], dtype=np.int64)
    for i in range(first_row, last_row):
        for j in range(cols):
            z = np.float64(image[i, j])
            if np.isnan(z):
                out[i - first_row, j] = np.nan
                continue
            # Means of the nine 3 x 3 sub-windows, over their valid cells inside the image;
            # sub-window (a, b) is centred at offset (2a - 2, 2b - 2), M[a, b] = means[3a + b].
            for a in range(3):
                for b in range(3):
                    total = 0.0
                    count = 0
                    for r in range(i + 2 * a - 3, i + 2 * a):
                        if r < 0 or r >= rows:
                            continue
                        for c in range(j + 2 * b - 3, j + 2 * b):
                            if c < 0 or c >= cols:
                                continue
                            value = np.float64(image[r, c])
                            if not np.isnan(value):
                                total += value
                                count += 1
                    means[3 * a + b] = total / count if count > 0 else np.nan
            direction = -1
            strongest = -1.0
            for k in range(4):
                gradient = abs(means[first_end[k]] - means[second_end[k]])
                if not np.isnan(gradient) and gradient > strongest:
                    strongest = gradient
                    direction = k
            side = 0
            if direction >= 0:
                centre = means[4]
                if abs(means[second_end[direction]] - centre) < abs(means[first_end[direction]] - centre):
                    side = 1
            total = 0.0
            total_sq = 0.0
            count = 0
            for r in range(max(0, i - 3), min(rows, i + 4)):
                for c in range(max(0, j - 3), min(cols, j + 4)):
                    if direction >= 0 and not _in_edge_window(direction, side, r - i, c - j):
                        continue
                    value = np.float64(image[r, c])
                    if not np.isnan(value):
                        total += value
                        total_sq += value * value
                        count += 1
            out[i - first_row, j] = _lee_estimate(z, total, total_sq, count, looks)
    return out
