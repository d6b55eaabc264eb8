"""Area projection between ground facets and radar pixels: scatter (forward) and gather (adjoint).

Exact projection. A facet's footprint in radar coordinates is a triangle; its weight on
pixel p is the overlap area of the triangle with p divided by the triangle's area
(signed, so a footprint mirrored by layover keeps positive weights; the weights of a
facet sum to one over the whole plane). By Green's theorem, for any pixel image R,

    integral over the triangle of R dA = sum over its edges of integral F dL,
    F(L, S) = integral from -inf to S of R(L, S') dS',

and F is piecewise linear in S within a pixel row: with P the inclusive row prefix sums
of R (P[r, c] = R[r, 0] + ... + R[r, c], P[r, -1] = 0), F = (1 - f) P[r, c - 1] + f P[r, c]
at S = c + f. So each edge is cut at the pixel boundaries it crosses, and each piece
(Delta L, mean S = c + f) in pixel row r contributes ``Delta L * ((1 - f) P[r, c - 1] +
f P[r, c])`` (``Delta L * P[r, n - 1]`` right of the window). Gathering reads P, which
``prefix_in_place`` makes from R in place (no second image).

Scattering is the transpose: a piece deposits ``v f`` on column c and ``v (1 - f)`` on
column c - 1 (v = quantity x Delta L) of a difference buffer D, whose reverse cumulative
sum along each row (``resolve_cover``) is the pixel image once all facets are in:
I[r, c] = D[r, c] + D[r, c + 1] + ... The two are exact adjoints, so the energy
reallocated by gather sums exactly to what scatter distributed. D holds both channels
side by side, (rows, cols, 2): a piece touches 32 neighbouring bytes.

Coordinates here are window coordinates: L = line - line0 + 0.5, S = sample - sample0 + 0.5,
so pixel (r, c) covers [r, r + 1) x [c, c + 1).

This module walks triangles one at a time, every edge of each, scalar: the reference
the facet kernel (``facets``, which walks each edge of a DEM's triangulation once, in
stages on SIMD lanes) is tested against, and the projection of free triangles
(``scatter_triangles``, ``gather_triangles``). It also interpolates window images at
cells (``sample_at``, ``sample_window``).
"""

import math

import numba
import numpy as np


@numba.njit(cache=True, nogil=True, inline="always")
def edge_crossings(l0, s0, dl, ds):
    """Where the edge from (l0, s0) to (l0 + dl, s0 + ds) (window coordinates, pixels;
    dl not 0) first crosses an integer L and an integer S, and the steps between
    successive crossings: (next_l, step_l, next_s, step_s), as fractions u of the edge
    (dimensionless, the edge spans u in [0, 1]); 2 for S when ds is 0 (never crossed)."""
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
def _deposit(row, col, s_mid, piece, scale0, scale1, acc):
    """Scatter one edge piece (Delta L ``piece``, mean S ``s_mid``) of pixel row ``row``
    into the difference buffer ``acc`` (rows, cols, 2)."""
    n_rows = acc.shape[0]
    n_cols = acc.shape[1]
    if row < 0 or row >= n_rows or col < 0:
        return
    v0 = scale0 * piece
    v1 = scale1 * piece
    if col < n_cols:
        frac = s_mid - col
        a0 = v0 * frac
        a1 = v1 * frac
        acc[row, col, 0] += a0
        acc[row, col, 1] += a1
        if col > 0:
            acc[row, col - 1, 0] += v0 - a0
            acc[row, col - 1, 1] += v1 - a1
    elif n_cols > 0:
        acc[row, n_cols - 1, 0] += v0
        acc[row, n_cols - 1, 1] += v1


@numba.njit(cache=True, nogil=True, inline="always")
def _read(row, col, s_mid, piece, prefix):
    """Gather one edge piece: its contributions to the integrals of the two channels,
    read from their inclusive row prefix sums ``prefix`` (2, rows, cols)."""
    n_rows = prefix.shape[1]
    n_cols = prefix.shape[2]
    if row < 0 or row >= n_rows or col < 0 or n_cols == 0:
        return 0.0, 0.0
    if col < n_cols:
        frac = s_mid - col
        left0 = prefix[0, row, col - 1] if col > 0 else 0.0
        left1 = prefix[1, row, col - 1] if col > 0 else 0.0
        return (piece * (left0 + frac * (prefix[0, row, col] - left0)),
                piece * (left1 + frac * (prefix[1, row, col] - left1)))
    return piece * prefix[0, row, n_cols - 1], piece * prefix[1, row, n_cols - 1]


@numba.njit(cache=True, nogil=True)
def scatter_edge(l0, s0, l1, s1, scale0, scale1, acc):
    """Walk one edge from (l0, s0) to (l1, s1) across pixel rows and columns, depositing
    ``scale0`` and ``scale1`` times its pieces into the two channels of the difference
    buffer ``acc`` (n_rows, n_cols, 2)."""
    dl = l1 - l0
    ds = s1 - s0
    if dl == 0.0 or dl != dl or ds != ds:
        return  # a piece with no extent in L carries nothing
    row = math.floor(l0)
    col = math.floor(s0)
    if row == math.floor(l1) and col == math.floor(s1):
        # Edges of facets smaller than a pixel mostly stay inside one pixel: one piece.
        _deposit(int(row), int(col), 0.5 * (s0 + s1), dl, scale0, scale1, acc)
        return
    next_l, step_l, next_s, step_s = edge_crossings(l0, s0, dl, ds)
    u_start = 0.0
    while u_start < 1.0:
        u_end, next_l, next_s, row, col, s_mid, piece = _piece(l0, s0, dl, ds, u_start, next_l, step_l,
                                                              next_s, step_s)
        if piece != 0.0:
            _deposit(row, col, s_mid, piece, scale0, scale1, acc)
        u_start = u_end


@numba.njit(cache=True, nogil=True)
def gather_edge(l0, s0, l1, s1, prefix):
    """The integrals along one edge from (l0, s0) to (l1, s1) of the two channels whose
    inclusive row prefix sums are ``prefix`` (2, n_rows, n_cols): the edge's share, by
    Green's theorem, of the facets' integrals."""
    dl = l1 - l0
    ds = s1 - s0
    if dl == 0.0 or dl != dl or ds != ds:
        return 0.0, 0.0
    row = math.floor(l0)
    col = math.floor(s0)
    if row == math.floor(l1) and col == math.floor(s1):
        return _read(int(row), int(col), 0.5 * (s0 + s1), dl, prefix)
    next_l, step_l, next_s, step_s = edge_crossings(l0, s0, dl, ds)
    total0 = 0.0
    total1 = 0.0
    u_start = 0.0
    while u_start < 1.0:
        u_end, next_l, next_s, row, col, s_mid, piece = _piece(l0, s0, dl, ds, u_start, next_l, step_l,
                                                              next_s, step_s)
        if piece != 0.0:
            g0, g1 = _read(row, col, s_mid, piece, prefix)
            total0 += g0
            total1 += g1
        u_start = u_end
    return total0, total1


@numba.njit(cache=True, nogil=True, inline="always")
def triangle_signed_area(l0, s0, l1, s1, l2, s2):
    """Signed area of a triangle in (S, L) coordinates (positive counter-clockwise)."""
    return 0.5 * ((s1 - s0) * (l2 - l0) - (s2 - s0) * (l1 - l0))


@numba.njit(cache=True, nogil=True)
def scatter_triangle(l0, s0, l1, s1, l2, s2, quantity0, quantity1, acc):
    """Scatter two quantities over a triangle's footprint with exact overlap weights into
    the difference buffer ``acc`` (n_rows, n_cols, 2)."""
    area = triangle_signed_area(l0, s0, l1, s1, l2, s2)
    if area == 0.0 or area != area:
        return
    q0 = quantity0 / area
    q1 = quantity1 / area
    scatter_edge(l0, s0, l1, s1, q0, q1, acc)
    scatter_edge(l1, s1, l2, s2, q0, q1, acc)
    scatter_edge(l2, s2, l0, s0, q0, q1, acc)


@numba.njit(cache=True, nogil=True)
def gather_triangle(l0, s0, l1, s1, l2, s2, prefix):
    """Overlap-weighted means over a triangle's footprint of the two channels whose
    inclusive row prefix sums are ``prefix`` (weights summing to 1 over the plane;
    pixels outside the window count as 0)."""
    area = triangle_signed_area(l0, s0, l1, s1, l2, s2)
    if area == 0.0 or area != area:
        return 0.0, 0.0
    a0, a1 = gather_edge(l0, s0, l1, s1, prefix)
    b0, b1 = gather_edge(l1, s1, l2, s2, prefix)
    c0, c1 = gather_edge(l2, s2, l0, s0, prefix)
    return (a0 + b0 + c0) / area, (a1 + b1 + c1) / area


@numba.njit(cache=True, nogil=True)
def resolve_cover(acc, out):
    """Add the pixel images of a scatter difference buffer (R, C, 2) into ``out`` (2, R, C):
    pixel (r, c) of channel q gets ``sum(acc[r, c:, q])``."""
    n_rows, n_cols, n_channels = acc.shape
    for q in range(n_channels):
        for r in range(n_rows):
            running = 0.0
            for c in range(n_cols - 1, -1, -1):
                running += acc[r, c, q]
                out[q, r, c] += running
    return out


@numba.njit(cache=True, nogil=True)
def prefix_in_place(image, row_start, row_stop):
    """Replace rows ``row_start:row_stop`` of ``image`` (Q, R, C) by their inclusive prefix
    sums along each row: image[q, r, c] becomes sum(image[q, r, :c + 1])."""
    n_channels = image.shape[0]
    n_cols = image.shape[2]
    for q in range(n_channels):
        for r in range(row_start, row_stop):
            running = 0.0
            for c in range(n_cols):
                running += image[q, r, c]
                image[q, r, c] = running


def row_prefix_sums(image):
    """Inclusive row prefix sums of ``image`` (Q, R, C), as a new array."""
    prefix = np.array(image, dtype=np.float64, copy=True)
    prefix_in_place(prefix, 0, prefix.shape[1])
    return prefix


@numba.njit(cache=True, nogil=True)
def scatter_triangles(triangles, quantities, n_rows, n_cols):
    """Exact scatter of many triangles (n, 3, 2) of (L, S) window coordinates with
    quantities (n, 2); returns the two-channel image (2, n_rows, n_cols).

    A convenience for tests and small problems; the simulation fuses this into its facet loop.
    """
    acc = np.zeros((n_rows, n_cols, 2))
    for k in range(triangles.shape[0]):
        scatter_triangle(
            triangles[k, 0, 0], triangles[k, 0, 1], triangles[k, 1, 0], triangles[k, 1, 1],
            triangles[k, 2, 0], triangles[k, 2, 1], quantities[k, 0], quantities[k, 1], acc,
        )
    return resolve_cover(acc, np.zeros((2, n_rows, n_cols)))


def gather_triangles(triangles, image):
    """Exact overlap-weighted means of a two-channel ``image`` (2, R, C) over each
    triangle (n, 3, 2): (n, 2)."""
    return _gather_triangles(np.ascontiguousarray(triangles, dtype=np.float64), row_prefix_sums(image))


@numba.njit(cache=True, nogil=True)
def _gather_triangles(triangles, prefix):
    out = np.empty((triangles.shape[0], 2))
    for k in range(triangles.shape[0]):
        out[k, 0], out[k, 1] = gather_triangle(
            triangles[k, 0, 0], triangles[k, 0, 1], triangles[k, 1, 0], triangles[k, 1, 1],
            triangles[k, 2, 0], triangles[k, 2, 1], prefix,
        )
    return out


@numba.njit(cache=True, nogil=True, inline="always")
def clamp_index(value, high):
    """A fractional pixel index (pixels) clamped to [0, high], NaN to 0: selects, so the
    loops around stay SIMD."""
    value = value if value > 0.0 else 0.0
    return value if value < high else high


@numba.njit(cache=True, nogil=True, inline="always")
def bilinear_corners(rl, rs, n_lines, n_samples):
    """Where ``bilinear_read`` reads an image of ``n_lines`` x ``n_samples`` pixels at
    fractional position (rl, rs): (inside, r0, c0, r1, c1, wr, wc), the four nearest
    pixel centres clamped at the border and the weights of r1 and c1; ``inside`` is
    whether the position lies in [-0.5, n - 0.5] (False for NaN).

    Without branches (indices clamped, never out of the image): loops over cells that
    read every cell's pixels and select the result run on SIMD lanes with gathers.
    """
    inside = (rl >= -0.5) & (rl <= n_lines - 0.5) & (rs >= -0.5) & (rs <= n_samples - 0.5)
    lc = clamp_index(rl, n_lines - 1.0)
    sc = clamp_index(rs, n_samples - 1.0)
    # Truncation: lc, sc >= 0.
    r0 = int(min(lc, float(max(n_lines - 2, 0))))
    c0 = int(min(sc, float(max(n_samples - 2, 0))))
    return (inside, r0, c0, min(r0 + 1, n_lines - 1), min(c0 + 1, n_samples - 1), min(lc - r0, 1.0),
            min(sc - c0, 1.0))


@numba.njit(cache=True, nogil=True, inline="always")
def bilinear_read(image, r0, c0, r1, c1, wr, wc):
    """``image`` interpolated between the corners of ``bilinear_corners``."""
    return ((1.0 - wr) * ((1.0 - wc) * np.float64(image[r0, c0]) + wc * np.float64(image[r0, c1]))
            + wr * ((1.0 - wc) * np.float64(image[r1, c0]) + wc * np.float64(image[r1, c1])))


@numba.njit(cache=True, nogil=True, inline="always")
def sample_at(image, rl, rs, nearest):
    """``image`` interpolated at fractional window position (rl, rs) (pixel (r, c) at
    (r, c)): bilinear between the four nearest pixel centres (clamped at the window's
    border), or the nearest pixel; NaN outside [-0.5, n - 0.5] or not finite. Without
    branches on the position (``bilinear_corners``)."""
    n_lines, n_samples = image.shape
    if nearest:
        inside = (rl >= -0.5) & (rl <= n_lines - 0.5) & (rs >= -0.5) & (rs <= n_samples - 0.5)
        # Truncation after the clamp: the clamped values are >= 0.
        value = np.float64(image[int(clamp_index(rl + 0.5, n_lines - 1.0)),
                                 int(clamp_index(rs + 0.5, n_samples - 1.0))])
    else:
        inside, r0, c0, r1, c1, wr, wc = bilinear_corners(rl, rs, n_lines, n_samples)
        value = bilinear_read(image, r0, c0, r1, c1, wr, wc)
    return value if inside else math.nan


@numba.njit(cache=True, nogil=True)
def sample_window(image, line, sample, line0, sample0, nearest, out):
    """Interpolate a window image at fractional absolute (line, sample) of each cell.

    Pixel (r, c) of ``image`` is at absolute (line0 + r, sample0 + c). Bilinear between
    the four nearest pixel centres (clamped at the window's border), or the nearest
    pixel; NaN for positions outside [-0.5, n - 0.5] of the window or not finite.
    ``line``, ``sample`` and ``out`` have the same shape (any rows, cols).
    """
    rows, cols = line.shape
    for i in range(rows):
        for j in range(cols):
            out[i, j] = sample_at(image, line[i, j] - line0, sample[i, j] - sample0, nearest)
