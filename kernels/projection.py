"""Area projection between ground facets and radar pixels: scatter (forward) and gather (adjoint).

Exact projection. A facet's footprint in radar coordinates is a triangle; its weight on
pixel p is the overlap area of the triangle with p divided by the triangle's area
(signed, so a footprint mirrored by layover keeps positive weights; the weights of a
facet sum to one over the whole plane). By Green's theorem, for any pixel image R,

    integral over the triangle of R dA = sum over its edges of integral F dL,
    F(L, S) = integral from -inf to S of R(L, S') dS',

and F is piecewise linear in S within a pixel row. So each edge is cut at the pixel
boundaries it crosses, and each piece (Delta L, mean S) in pixel (r, c) contributes
``Delta L * (sum of R left of c + (mean S - c) * R[r, c])``. Scattering a quantity q
deposits ``q * Delta L * (mean S - c)`` on pixel (r, c) and ``q * Delta L`` on every pixel
left of it; the latter goes into a ``cover`` buffer that a reverse cumulative sum along
each row turns into pixel values once all facets are in. Gathering reads row prefix sums
of R. The two are exact adjoints, so energy reallocated by gather sums exactly to what
scatter distributed.

Coordinates here are window coordinates: L = line - line0 + 0.5, S = sample - sample0 + 0.5,
so pixel (r, c) covers [r, r + 1) x [c, c + 1).

Bilinear projection. The facet's centre is splatted on the four nearest pixel centres
with bilinear weights (and gathered back the same way): the fast approximation.
"""

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, inline="always")
def _crossings(l0, s0, dl, ds):
    """Parameters u of the first crossings of integer L and S along an edge, and their steps."""
    if dl > 0.0:
        next_l = (math.floor(l0) + 1.0 - l0) / dl
        step_l = 1.0 / dl
    else:
        next_l = (math.ceil(l0) - 1.0 - l0) / dl
        step_l = -1.0 / dl
    if ds > 0.0:
        next_s = (math.floor(s0) + 1.0 - s0) / ds
        step_s = 1.0 / ds
    elif ds < 0.0:
        next_s = (math.ceil(s0) - 1.0 - s0) / ds
        step_s = -1.0 / ds
    else:
        next_s = 2.0
        step_s = 2.0
    return next_l, step_l, next_s, step_s


@numba.njit(cache=True, nogil=True, inline="always")
def _piece(l0, s0, dl, ds, u_start, next_l, step_l, next_s, step_s):
    """The piece of an edge from ``u_start`` to the next pixel-border crossing: where it
    ends, the crossings after it, its pixel (row, col), mean S and Delta L (0 if empty)."""
    u_end = min(next_l, next_s, 1.0)
    u_mid = 0.5 * (u_start + u_end)
    s_mid = s0 + ds * u_mid
    row = int(math.floor(l0 + dl * u_mid))
    col = int(math.floor(s_mid))
    piece = dl * (u_end - u_start) if u_end > u_start else 0.0
    if u_end == next_l:
        next_l += step_l
    if u_end == next_s:
        next_s += step_s
    return u_end, next_l, next_s, row, col, s_mid, piece


@numba.njit(cache=True, nogil=True, inline="always")
def _deposit(row, col, s_mid, piece, scale0, scale1, partial, cover):
    """Scatter one edge piece (Delta L ``piece``, mean S ``s_mid``) in pixel row ``row``."""
    n_rows = partial.shape[1]
    n_cols = partial.shape[2]
    if row < 0 or row >= n_rows or col < 0:
        return
    if col < n_cols:
        frac = s_mid - col
        partial[0, row, col] += scale0 * piece * frac
        partial[1, row, col] += scale1 * piece * frac
        cover[0, row, col] += scale0 * piece
        cover[1, row, col] += scale1 * piece
    else:
        cover[0, row, n_cols] += scale0 * piece
        cover[1, row, n_cols] += scale1 * piece


@numba.njit(cache=True, nogil=True, inline="always")
def _read(row, col, s_mid, piece, prefix, image):
    """Gather one edge piece: its contributions to the integrals of the two channels."""
    n_rows = image.shape[1]
    n_cols = image.shape[2]
    if row < 0 or row >= n_rows or col < 0:
        return 0.0, 0.0
    if col < n_cols:
        frac = s_mid - col
        return (piece * (prefix[0, row, col] + frac * image[0, row, col]),
                piece * (prefix[1, row, col] + frac * image[1, row, col]))
    return piece * prefix[0, row, n_cols], piece * prefix[1, row, n_cols]


@numba.njit(cache=True, nogil=True)
def scatter_edge(l0, s0, l1, s1, scale0, scale1, partial, cover):
    """Walk one edge from (l0, s0) to (l1, s1) across pixel rows and columns, depositing
    ``scale0`` and ``scale1`` times its pieces into channels 0 and 1 of ``partial`` (2,
    n_rows, n_cols) and ``cover`` (2, n_rows, n_cols + 1)."""
    dl = l1 - l0
    ds = s1 - s0
    if dl == 0.0 or dl != dl or ds != ds:
        return  # a piece with no extent in L carries nothing
    row = math.floor(l0)
    col = math.floor(s0)
    if row == math.floor(l1) and col == math.floor(s1):
        # Edges of facets smaller than a pixel mostly stay inside one pixel: one piece.
        _deposit(int(row), int(col), 0.5 * (s0 + s1), dl, scale0, scale1, partial, cover)
        return
    next_l, step_l, next_s, step_s = _crossings(l0, s0, dl, ds)
    u_start = 0.0
    while u_start < 1.0:
        u_end, next_l, next_s, row, col, s_mid, piece = _piece(l0, s0, dl, ds, u_start, next_l, step_l,
                                                              next_s, step_s)
        if piece != 0.0:
            _deposit(row, col, s_mid, piece, scale0, scale1, partial, cover)
        u_start = u_end


@numba.njit(cache=True, nogil=True)
def gather_edge(l0, s0, l1, s1, prefix, image):
    """The integrals along one edge from (l0, s0) to (l1, s1) of the two channels of
    ``image`` (2, n_rows, n_cols), read through their row ``prefix`` sums (2, n_rows,
    n_cols + 1): the edge's share, by Green's theorem, of the facets' integrals."""
    dl = l1 - l0
    ds = s1 - s0
    if dl == 0.0 or dl != dl or ds != ds:
        return 0.0, 0.0
    row = math.floor(l0)
    col = math.floor(s0)
    if row == math.floor(l1) and col == math.floor(s1):
        return _read(int(row), int(col), 0.5 * (s0 + s1), dl, prefix, image)
    next_l, step_l, next_s, step_s = _crossings(l0, s0, dl, ds)
    total0 = 0.0
    total1 = 0.0
    u_start = 0.0
    while u_start < 1.0:
        u_end, next_l, next_s, row, col, s_mid, piece = _piece(l0, s0, dl, ds, u_start, next_l, step_l,
                                                              next_s, step_s)
        if piece != 0.0:
            g0, g1 = _read(row, col, s_mid, piece, prefix, image)
            total0 += g0
            total1 += g1
        u_start = u_end
    return total0, total1


@numba.njit(cache=True, nogil=True, inline="always")
def triangle_signed_area(l0, s0, l1, s1, l2, s2):
    """Signed area of a triangle in (S, L) coordinates (positive counter-clockwise)."""
    return 0.5 * ((s1 - s0) * (l2 - l0) - (s2 - s0) * (l1 - l0))


@numba.njit(cache=True, nogil=True)
def scatter_triangle(l0, s0, l1, s1, l2, s2, quantity0, quantity1, partial, cover):
    """Scatter two quantities over a triangle's footprint with exact overlap weights."""
    area = triangle_signed_area(l0, s0, l1, s1, l2, s2)
    if area == 0.0 or area != area:
        return
    q0 = quantity0 / area
    q1 = quantity1 / area
    scatter_edge(l0, s0, l1, s1, q0, q1, partial, cover)
    scatter_edge(l1, s1, l2, s2, q0, q1, partial, cover)
    scatter_edge(l2, s2, l0, s0, q0, q1, partial, cover)


@numba.njit(cache=True, nogil=True)
def gather_triangle(l0, s0, l1, s1, l2, s2, prefix, image):
    """Overlap-weighted means of the two channels of ``image`` over a triangle's footprint
    (weights summing to 1 over the plane; pixels outside the window count as 0)."""
    area = triangle_signed_area(l0, s0, l1, s1, l2, s2)
    if area == 0.0 or area != area:
        return 0.0, 0.0
    a0, a1 = gather_edge(l0, s0, l1, s1, prefix, image)
    b0, b1 = gather_edge(l1, s1, l2, s2, prefix, image)
    c0, c1 = gather_edge(l2, s2, l0, s0, prefix, image)
    return (a0 + b0 + c0) / area, (a1 + b1 + c1) / area


@numba.njit(cache=True, nogil=True)
def resolve_cover(partial, cover, out):
    """Add the pixel images of scatter buffers (Q, R, C) and (Q, R, C + 1) into ``out``.

    Pixel (r, c) of channel q gets ``partial[q, r, c] + sum(cover[q, r, c + 1:])``.
    """
    n_channels, n_rows, n_cols = partial.shape
    for q in range(n_channels):
        for r in range(n_rows):
            running = cover[q, r, n_cols]
            for c in range(n_cols - 1, -1, -1):
                out[q, r, c] += partial[q, r, c] + running
                running += cover[q, r, c]
    return out


@numba.njit(cache=True, nogil=True)
def row_prefix_sums(image):
    """prefix[q, r, c] = sum(image[q, r, :c]) with one extra column for the whole row."""
    n_channels, n_rows, n_cols = image.shape
    prefix = np.empty((n_channels, n_rows, n_cols + 1))
    for q in range(n_channels):
        for r in range(n_rows):
            running = 0.0
            for c in range(n_cols):
                prefix[q, r, c] = running
                running += image[q, r, c]
            prefix[q, r, n_cols] = running
    return prefix


@numba.njit(cache=True, nogil=True, inline="always")
def _bilinear_corner(window_line, window_sample):
    """Upper-left pixel (r0, c0) of the four nearest centres to a window position and the
    fractional offsets (wl, ws) from it: weights (1 - wl or wl) x (1 - ws or ws)."""
    lc = window_line - 0.5
    sc = window_sample - 0.5
    r0 = int(math.floor(lc))
    c0 = int(math.floor(sc))
    return r0, c0, lc - r0, sc - c0


@numba.njit(cache=True, nogil=True, inline="always")
def scatter_bilinear(window_line, window_sample, quantity, image):
    """Splat ``quantity`` at a window position on the four nearest pixel centres."""
    r0, c0, wl, ws = _bilinear_corner(window_line, window_sample)
    n_rows, n_cols = image.shape
    for dr in range(2):
        r = r0 + dr
        if r < 0 or r >= n_rows:
            continue
        w_row = wl if dr == 1 else 1.0 - wl
        for dc in range(2):
            c = c0 + dc
            if 0 <= c < n_cols:
                image[r, c] += quantity * w_row * (ws if dc == 1 else 1.0 - ws)


@numba.njit(cache=True, nogil=True, inline="always")
def gather_bilinear(window_line, window_sample, image):
    """Bilinear weights of a window position applied to ``image`` (outside counts 0):
    the adjoint of ``scatter_bilinear``."""
    r0, c0, wl, ws = _bilinear_corner(window_line, window_sample)
    n_rows, n_cols = image.shape
    total = 0.0
    for dr in range(2):
        r = r0 + dr
        if r < 0 or r >= n_rows:
            continue
        w_row = wl if dr == 1 else 1.0 - wl
        for dc in range(2):
            c = c0 + dc
            if 0 <= c < n_cols:
                total += image[r, c] * w_row * (ws if dc == 1 else 1.0 - ws)
    return total


@numba.njit(cache=True, nogil=True)
def scatter_triangles(triangles, quantities, n_rows, n_cols):
    """Exact scatter of many triangles (n, 3, 2) of (L, S) window coordinates with
    quantities (n, 2); returns the two-channel image (2, n_rows, n_cols).

    A convenience for tests and small problems; the simulation fuses this into its facet loop.
    """
    partial = np.zeros((2, n_rows, n_cols))
    cover = np.zeros((2, n_rows, n_cols + 1))
    for k in range(triangles.shape[0]):
        scatter_triangle(
            triangles[k, 0, 0], triangles[k, 0, 1], triangles[k, 1, 0], triangles[k, 1, 1],
            triangles[k, 2, 0], triangles[k, 2, 1], quantities[k, 0], quantities[k, 1], partial, cover,
        )
    return resolve_cover(partial, cover, np.zeros((2, n_rows, n_cols)))


@numba.njit(cache=True, nogil=True)
def gather_triangles(triangles, image):
    """Exact overlap-weighted means of a two-channel ``image`` over each triangle: (n, 2)."""
    prefix = row_prefix_sums(image)
    out = np.empty((triangles.shape[0], 2))
    for k in range(triangles.shape[0]):
        out[k, 0], out[k, 1] = gather_triangle(
            triangles[k, 0, 0], triangles[k, 0, 1], triangles[k, 1, 0], triangles[k, 1, 1],
            triangles[k, 2, 0], triangles[k, 2, 1], prefix, image,
        )
    return out


@numba.njit(cache=True, nogil=True)
def sample_window(image, line, sample, line0, sample0, nearest, out):
    """Interpolate a window image at fractional absolute (line, sample) of each cell.

    Pixel (r, c) of ``image`` is at absolute (line0 + r, sample0 + c). Bilinear between
    the four nearest pixel centres (clamped at the window's border), or the nearest
    pixel; NaN for positions outside [-0.5, n - 0.5] of the window or not finite.
    ``line``, ``sample`` and ``out`` have the same shape (any rows, cols).
    """
    n_lines, n_samples = image.shape
    rows, cols = line.shape
    for i in range(rows):
        for j in range(cols):
            rl = line[i, j] - line0
            rs = sample[i, j] - sample0
            if not (-0.5 <= rl <= n_lines - 0.5 and -0.5 <= rs <= n_samples - 0.5):
                out[i, j] = math.nan  # also where rl or rs is NaN
                continue
            if nearest:
                r = min(max(int(math.floor(rl + 0.5)), 0), n_lines - 1)
                c = min(max(int(math.floor(rs + 0.5)), 0), n_samples - 1)
                out[i, j] = image[r, c]
                continue
            lc = min(max(rl, 0.0), n_lines - 1.0)
            sc = min(max(rs, 0.0), n_samples - 1.0)
            r0 = min(int(math.floor(lc)), max(n_lines - 2, 0))
            c0 = min(int(math.floor(sc)), max(n_samples - 2, 0))
            wr = min(max(lc - r0, 0.0), 1.0)
            wc = min(max(sc - c0, 0.0), 1.0)
            r1 = min(r0 + 1, n_lines - 1)
            c1 = min(c0 + 1, n_samples - 1)
            out[i, j] = ((1.0 - wr) * ((1.0 - wc) * image[r0, c0] + wc * image[r0, c1])
                         + wr * ((1.0 - wc) * image[r1, c0] + wc * image[r1, c1]))
