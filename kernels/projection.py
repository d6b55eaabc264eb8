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


@numba.njit(cache=True, nogil=True)
def walk_edge(l0, s0, l1, s1, scale0, scale1, partial, cover, prefix, image, gather):
    """Walk one edge from (l0, s0) to (l1, s1) across pixel rows and columns, two channels.

    Scatter (``gather`` False): deposit ``scale0`` and ``scale1`` times the edge's pieces
    into channels 0 and 1 of ``partial`` (2, n_rows, n_cols) and ``cover`` (2, n_rows,
    n_cols + 1); returns (0, 0). Gather: returns the edge's contributions to the integrals
    of the two channels of ``image`` (2, n_rows, n_cols), read through their row
    ``prefix`` sums (2, n_rows, n_cols + 1).
    """
    if gather:
        n_rows = image.shape[1]
        n_cols = image.shape[2]
    else:
        n_rows = partial.shape[1]
        n_cols = partial.shape[2]
    dl = l1 - l0
    ds = s1 - s0
    total0 = 0.0
    total1 = 0.0
    if dl == 0.0 or dl != dl or ds != ds:
        return total0, total1  # a piece with no extent in L carries nothing
    # Parameters u in (0, 1) where the edge crosses integer L or S, merged in order.
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
    u_start = 0.0
    while u_start < 1.0:
        u_end = min(next_l, next_s, 1.0)
        if u_end > u_start:
            u_mid = 0.5 * (u_start + u_end)
            row = int(math.floor(l0 + dl * u_mid))
            s_mid = s0 + ds * u_mid
            col = int(math.floor(s_mid))
            piece = dl * (u_end - u_start)
            if 0 <= row < n_rows and col >= 0:
                if gather:
                    if col < n_cols:
                        frac = s_mid - col
                        total0 += piece * (prefix[0, row, col] + frac * image[0, row, col])
                        total1 += piece * (prefix[1, row, col] + frac * image[1, row, col])
                    else:
                        total0 += piece * prefix[0, row, n_cols]
                        total1 += piece * prefix[1, row, n_cols]
                else:
                    if col < n_cols:
                        frac = s_mid - col
                        partial[0, row, col] += scale0 * piece * frac
                        partial[1, row, col] += scale1 * piece * frac
                        cover[0, row, col] += scale0 * piece
                        cover[1, row, col] += scale1 * piece
                    else:
                        cover[0, row, n_cols] += scale0 * piece
                        cover[1, row, n_cols] += scale1 * piece
        if u_end == next_l:
            next_l += step_l
        if u_end == next_s:
            next_s += step_s
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
    dummy = partial[:, :1, :1]
    walk_edge(l0, s0, l1, s1, q0, q1, partial, cover, dummy, dummy, False)
    walk_edge(l1, s1, l2, s2, q0, q1, partial, cover, dummy, dummy, False)
    walk_edge(l2, s2, l0, s0, q0, q1, partial, cover, dummy, dummy, False)


@numba.njit(cache=True, nogil=True)
def gather_triangle(l0, s0, l1, s1, l2, s2, prefix, image):
    """Overlap-weighted means of the two channels of ``image`` over a triangle's footprint
    (weights summing to 1 over the plane; pixels outside the window count as 0)."""
    area = triangle_signed_area(l0, s0, l1, s1, l2, s2)
    if area == 0.0 or area != area:
        return 0.0, 0.0
    dummy = image[:, :1, :1]
    a0, a1 = walk_edge(l0, s0, l1, s1, 0.0, 0.0, dummy, dummy, prefix, image, True)
    b0, b1 = walk_edge(l1, s1, l2, s2, 0.0, 0.0, dummy, dummy, prefix, image, True)
    c0, c1 = walk_edge(l2, s2, l0, s0, 0.0, 0.0, dummy, dummy, prefix, image, True)
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
def scatter_bilinear(window_line, window_sample, quantity, image):
    """Splat ``quantity`` at a window position on the four nearest pixel centres."""
    lc = window_line - 0.5
    sc = window_sample - 0.5
    r0 = int(math.floor(lc))
    c0 = int(math.floor(sc))
    wl = lc - r0
    ws = sc - c0
    n_rows, n_cols = image.shape
    for dr in range(2):
        r = r0 + dr
        if r < 0 or r >= n_rows:
            continue
        w_row = wl if dr == 1 else 1.0 - wl
        for dc in range(2):
            c = c0 + dc
            if c < 0 or c >= n_cols:
                continue
            image[r, c] += quantity * w_row * (ws if dc == 1 else 1.0 - ws)


@numba.njit(cache=True, nogil=True, inline="always")
def gather_bilinear(window_line, window_sample, image):
    """Bilinear weights of a window position applied to ``image`` (outside counts 0)."""
    lc = window_line - 0.5
    sc = window_sample - 0.5
    r0 = int(math.floor(lc))
    c0 = int(math.floor(sc))
    wl = lc - r0
    ws = sc - c0
    n_rows, n_cols = image.shape
    total = 0.0
    for dr in range(2):
        r = r0 + dr
        if r < 0 or r >= n_rows:
            continue
        w_row = wl if dr == 1 else 1.0 - wl
        for dc in range(2):
            c = c0 + dc
            if c < 0 or c >= n_cols:
                continue
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
