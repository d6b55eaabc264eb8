"""Facets of a DEM in the radar image: areas, contributions, scatter and gather.

Each DEM cell is split into ``k x k`` sub-quads (the DEM upsampled ``k`` times, positions
bilinear between cell centres) and each sub-quad into two triangles. The kernel walks the
upsampled grid one DEM row at a time, keeping the ``k + 1`` vertex rows of that DEM row:

* every vertex is computed once: its ECEF position and its radar (line, sample) are the
  bilinear interpolations of the four surrounding cell centres'. Interpolating (line,
  sample) instead of mapping the interpolated position differs by the curvature of the
  zero-Doppler mapping over a cell, (cell size)^2 / (2 x slant range), about 1e-4 m for
  10 m cells at 850 km: far below any pixel;
* every edge of the triangulation is walked once (``projection.scatter_edge`` / ``gather_edge``): when
  scattering, with the net of the two triangles on either side (each triangle deposits
  ``quantity / signed area`` along its boundary, Green's theorem), and when gathering, its
  integral is shared by the two triangles. Per DEM cell that is 3 k^2 edges instead of
  the 6 k^2 of triangles walked one by one.

Triangles of sub-quad (a, b), vertices P = (a, b), Q = (a, b + 1), R = (a + 1, b + 1),
S = (a + 1, b): T0 = P -> Q -> R and T1 = P -> R -> S. With H(a, b) = (a, b) -> (a, b + 1),
V(a, b) = (a, b) -> (a + 1, b) and D(a, b) = (a, b) -> (a + 1, b + 1):
boundary(T0) = H(a, b) + V(a, b + 1) - D(a, b), boundary(T1) = D(a, b) - H(a + 1, b) - V(a, b).
"""

import math

import numba
import numpy as np

from .projection import (
    gather_bilinear,
    gather_edge,
    gather_point,
    scatter_bilinear,
    scatter_edge,
    scatter_point,
    triangle_signed_area,
)

CONTRIBUTION_MODEL = 0
CONTRIBUTION_GAMMA = 1
CONTRIBUTION_USER = 2


@numba.njit(cache=True, nogil=True, inline="always")
def _sigma0_model(cos_theta, a0, a1, a2):
    """Empirical sigma0 law a0 cos(t) / (sin(t) + a1 cos(t))^a2 (linear), 0 facing away."""
    if cos_theta <= 0.0:
        return 0.0
    sin_theta = math.sqrt(max(0.0, 1.0 - cos_theta * cos_theta))
    base = sin_theta + a1 * cos_theta
    # The default law's exponent is 3: a product is several times cheaper than pow.
    power = base * base * base if a2 == 3.0 else base**a2
    return a0 * cos_theta / power


@numba.njit(cache=True, nogil=True, inline="always")
def _tabulated(cos_theta, table):
    """A law tabulated at k * 90 / n degrees, linearly interpolated; 0 facing away."""
    if cos_theta <= 0.0:
        return 0.0
    theta = math.acos(min(1.0, cos_theta)) * (2.0 / math.pi) * (table.shape[0] - 1)
    k = min(int(theta), table.shape[0] - 2)
    w = theta - k
    return (1.0 - w) * table[k] + w * table[k + 1]


@numba.njit(cache=True, nogil=True)
def _vertex_row(ecef, line, sample, rho, k, line0, sample0, vx, vl, vs):
    """Vertices of the upsampled grid at fractional DEM row ``rho``, all columns.

    Bilinear between the four surrounding cell centres, extrapolated half a cell at the
    DEM's border. ``vl``, ``vs`` are window coordinates (L = line - line0 + 0.5); NaN
    where a centre used is void or unsolved.
    """
    rows, cols = line.shape
    i0 = min(max(int(math.floor(rho)), 0), rows - 2)
    wr = rho - i0
    for b in range(vl.shape[0]):
        kappa = b / k - 0.5
        j0 = min(max(int(math.floor(kappa)), 0), cols - 2)
        wc = kappa - j0
        w00 = (1.0 - wr) * (1.0 - wc)
        w01 = (1.0 - wr) * wc
        w10 = wr * (1.0 - wc)
        w11 = wr * wc
        for axis in range(3):
            vx[b, axis] = (w00 * ecef[i0, j0, axis] + w01 * ecef[i0, j0 + 1, axis]
                           + w10 * ecef[i0 + 1, j0, axis] + w11 * ecef[i0 + 1, j0 + 1, axis])
        vl[b] = (w00 * line[i0, j0] + w01 * line[i0, j0 + 1] + w10 * line[i0 + 1, j0]
                 + w11 * line[i0 + 1, j0 + 1]) - line0 + 0.5
        vs[b] = (w00 * sample[i0, j0] + w01 * sample[i0, j0 + 1] + w10 * sample[i0 + 1, j0]
                 + w11 * sample[i0 + 1, j0 + 1]) - sample0 + 0.5


@numba.njit(cache=True, nogil=True, inline="always")
def _area_vector(vx, a0, b0, a1, b1, a2, b2, a3, b3, cx, cy, cz, ux, uy, uz):
    """Half the cross product of the edges v[a1, b1] - v[a0, b0] and v[a3, b3] - v[a2, b2],
    turned outward (away from the Earth's centre ``c``): the area vector of a triangle
    from two of its sides, or of a quad from its diagonals (exact for the projected
    area of a non-planar quad). Returns it, its sigma and gamma areas (m^2) and the
    cosine of the local incidence angle for look vector ``u``."""
    e1x = vx[a1, b1, 0] - vx[a0, b0, 0]
    e1y = vx[a1, b1, 1] - vx[a0, b0, 1]
    e1z = vx[a1, b1, 2] - vx[a0, b0, 2]
    e2x = vx[a3, b3, 0] - vx[a2, b2, 0]
    e2y = vx[a3, b3, 1] - vx[a2, b2, 1]
    e2z = vx[a3, b3, 2] - vx[a2, b2, 2]
    nx = 0.5 * (e1y * e2z - e1z * e2y)
    ny = 0.5 * (e1z * e2x - e1x * e2z)
    nz = 0.5 * (e1x * e2y - e1y * e2x)
    if nx * cx + ny * cy + nz * cz < 0.0:
        nx = -nx
        ny = -ny
        nz = -nz
    area_sigma = math.sqrt(nx * nx + ny * ny + nz * nz)
    projected = nx * ux + ny * uy + nz * uz
    cos_t = projected / area_sigma if area_sigma > 0.0 else 0.0
    return nx, ny, nz, area_sigma, max(projected, 0.0), cos_t


@numba.njit(cache=True, nogil=True, inline="always")
def _triangle(vx, vl, vs, a0, b0, a1, b1, a2, b2, cx, cy, cz, ux, uy, uz):
    """3-D area vector of a triangle (outward), its sigma and gamma areas (m^2), the
    cosine of its local incidence angle and its signed area in (S, L) window units."""
    nx, ny, nz, area_sigma, area_gamma, cos_t = _area_vector(
        vx, a0, b0, a1, b1, a0, b0, a2, b2, cx, cy, cz, ux, uy, uz)
    signed = triangle_signed_area(vl[a0, b0], vs[a0, b0], vl[a1, b1], vs[a1, b1], vl[a2, b2], vs[a2, b2])
    return nx, ny, nz, area_sigma, area_gamma, cos_t, signed


@numba.njit(cache=True, nogil=True, inline="always")
def _quad(vx, a, b, cx, cy, cz, ux, uy, uz):
    """As ``_triangle`` for sub-quad (a, b), from its diagonals; no radar area."""
    nx, ny, nz, area_sigma, area_gamma, cos_t = _area_vector(
        vx, a, b, a + 1, b + 1, a, b + 1, a + 1, b, cx, cy, cz, ux, uy, uz)
    return nx, ny, nz, area_sigma, area_gamma, cos_t, 0.0


@numba.njit(cache=True, nogil=True)
def _usable_cells(line, valid, i, out):
    """Cells of row ``i`` whose facets can be built: valid, and the 3 x 3 neighbourhood
    (clamped at the border) solved, as the cell's vertices interpolate between them."""
    rows, cols = line.shape
    for j in range(cols):
        ok = valid[i, j]
        if ok:
            for di in range(-1, 2):
                ii = min(max(i + di, 0), rows - 1)
                for dj in range(-1, 2):
                    jj = min(max(j + dj, 0), cols - 1)
                    if line[ii, jj] != line[ii, jj]:
                        ok = False
        out[j] = ok


@numba.njit(cache=True, nogil=True)
def facet_pass(
    ecef, line, sample, look, valid, shadowed, user_weight,
    oversample, contribution, law, law_table, exact, gather,
    line0, sample0, gathered, row_start, row_stop, col_start, col_stop,
    energy, sigma_area, gamma_area, contrib_cell, cos_local, acc,
):
    """Facet loop over DEM rows ``row_start:row_stop``: scatter contributions, or gather.

    Parameters
    ----------
    ecef : (rows, cols, 3) float64 cell centres (m), NaN for voids.
    line, sample : (rows, cols) float64 fractional product indices, NaN where unsolved.
    look : (rows, cols, 3) float32 unit vectors from the cell to the sensor.
    valid : (rows, cols) bool, cells solved on the looked-at side.
    shadowed : (rows, cols) bool, cells in shadow contribute nothing.
    user_weight : (rows, cols) float64 per-cell weights for ``contribution`` 2 (else
        unused), shared among a cell's facets that face the sensor in proportion to their
        sigma area.
    oversample : k, sub-quads per cell side.
    contribution : 0 model law, 1 gamma area, 2 user weights.
    law : (3,) coefficients (a0, a1, a2) of the law a0 cos(t) / (sin(t) + a1 cos(t))^a2,
        used when ``law_table`` has fewer than 2 entries.
    law_table : (n + 1,) sigma0 at local incidence k * 90 / n degrees (linear interpolation).
    exact : exact overlap (True) or bilinear splatting of sub-quad centres (False).
    gather : False to scatter, True to gather ``ratios``.
    line0, sample0 : absolute line and sample of pixel (0, 0) of the images below.
    gathered : (2, n_lines, n_samples) the ratio images gathered, channel 0 weighted by
        the contribution c and channel 1 by the gamma area: for exact projection their
        inclusive row prefix sums (``projection.prefix_in_place``), for bilinear the
        images themselves. Unused when scattering.
    row_start, row_stop, col_start, col_stop : the DEM cells handled (their neighbours are
        read; the others' facets are left out, as belonging to a neighbouring tile).

    Outputs (rows handled)
    ----------------------
    energy : (2, rows, cols) gather only: sum over the cell's facets of c_f, resp. A_gamma,f,
        times the mean ratio over the facet's footprint.
    sigma_area, gamma_area : (rows, cols) m^2; contrib_cell : sum of c_f; cos_local :
        cosine of the local incidence angle of the cell's mean normal (both passes: a
        block-wise gather needs them without the scatter's per-cell arrays).
    acc : (n_lines, n_samples, 2), accumulated when scattering: sum w*c and sum w*A_gamma,
        as a difference buffer for exact projection (``projection.resolve_cover`` makes
        the images), as the images themselves for bilinear.
    Serial, GIL released: callers run row blocks on threads, each with its own buffers.
    """
    rows, cols = valid.shape
    k = oversample
    n_sub = k * cols
    a0 = law[0]
    a1 = law[1]
    a2 = law[2]
    n_table = law_table.shape[0]
    if row_stop <= row_start or rows < 2 or cols < 2:
        return
    vx = np.empty((k + 1, n_sub + 1, 3))
    vl = np.empty((k + 1, n_sub + 1))
    vs = np.empty((k + 1, n_sub + 1))
    usable = np.empty(cols, dtype=np.bool_)
    # Per triangle of the current DEM row: (sub-row, sub-column, T0/T1).
    tri_c = np.zeros((k, n_sub, 2))
    tri_g = np.zeros((k, n_sub, 2))
    tri_a = np.zeros((k, n_sub, 2))
    cell_ax = np.empty((cols, 3))
    # Net scales (scatter) or integrals (gather) of the H edges of the DEM row's top
    # vertex row, carried from the row above.
    top0 = np.zeros(n_sub)
    top1 = np.zeros(n_sub)
    bottom0 = np.zeros(n_sub)
    bottom1 = np.zeros(n_sub)
    for i in range(row_start, row_stop):
        _usable_cells(line, valid, i, usable)
        for j in range(cols):
            if j < col_start or j >= col_stop:
                usable[j] = False
        for a in range(k + 1):
            if a == 0 and i > row_start:
                # The top vertex row is the previous row's bottom one.
                vx[0] = vx[k]
                vl[0] = vl[k]
                vs[0] = vs[k]
            else:
                _vertex_row(ecef, line, sample, i - 0.5 + a / k, k, line0, sample0, vx[a], vl[a], vs[a])
        # Triangles: areas, contributions, per-cell sums.
        for j in range(cols):
            cell_ax[j, 0] = 0.0
            cell_ax[j, 1] = 0.0
            cell_ax[j, 2] = 0.0
        for j in range(cols):
            if not usable[j]:
                for a in range(k):
                    for b in range(j * k, j * k + k):
                        for t in range(2):
                            tri_c[a, b, t] = 0.0
                            tri_g[a, b, t] = 0.0
                            tri_a[a, b, t] = 0.0
                continue
            ux = np.float64(look[i, j, 0])
            uy = np.float64(look[i, j, 1])
            uz = np.float64(look[i, j, 2])
            cx = ecef[i, j, 0]
            cy = ecef[i, j, 1]
            cz = ecef[i, j, 2]
            dark = shadowed[i, j]
            cell_sigma = 0.0
            cell_gamma = 0.0
            cell_c = 0.0
            for a in range(k):
                for b in range(j * k, j * k + k):
                    # Bilinear splatting needs one area per sub-quad: its vector area.
                    for t in range(2 if exact else 1):
                        if not exact:
                            nx, ny, nz, s_area, g_area, cos_t, signed = _quad(
                                vx, a, b, cx, cy, cz, ux, uy, uz)
                            tri_c[a, b, 1] = 0.0
                            tri_g[a, b, 1] = 0.0
                        elif t == 0:
                            nx, ny, nz, s_area, g_area, cos_t, signed = _triangle(
                                vx, vl, vs, a, b, a, b + 1, a + 1, b + 1, cx, cy, cz, ux, uy, uz)
                        else:
                            nx, ny, nz, s_area, g_area, cos_t, signed = _triangle(
                                vx, vl, vs, a, b, a + 1, b + 1, a + 1, b, cx, cy, cz, ux, uy, uz)
                        cell_ax[j, 0] += nx
                        cell_ax[j, 1] += ny
                        cell_ax[j, 2] += nz
                        cell_sigma += s_area
                        cell_gamma += g_area
                        if dark:
                            c_value = 0.0
                        elif contribution == CONTRIBUTION_MODEL:
                            if n_table > 1:
                                c_value = _tabulated(cos_t, law_table) * s_area
                            else:
                                c_value = _sigma0_model(cos_t, a0, a1, a2) * s_area
                        elif contribution == CONTRIBUTION_GAMMA:
                            c_value = g_area
                        else:
                            # Shared by the facets that face the sensor (scaled below):
                            # a facet facing away returns nothing, as under a law.
                            c_value = s_area if cos_t > 0.0 else 0.0
                        tri_c[a, b, t] = c_value
                        tri_g[a, b, t] = 0.0 if dark else g_area
                        tri_a[a, b, t] = signed if signed == signed else 0.0
                        cell_c += c_value
            if contribution == CONTRIBUTION_USER and not dark:
                scale = user_weight[i, j] / cell_c if cell_c > 0.0 else 0.0
                for a in range(k):
                    for b in range(j * k, j * k + k):
                        tri_c[a, b, 0] *= scale
                        tri_c[a, b, 1] *= scale
                cell_c *= scale
            sigma_area[i, j] = cell_sigma
            gamma_area[i, j] = cell_gamma
            contrib_cell[i, j] = cell_c
            norm = math.sqrt(cell_ax[j, 0] ** 2 + cell_ax[j, 1] ** 2 + cell_ax[j, 2] ** 2)
            if norm > 0.0:
                cos_local[i, j] = (cell_ax[j, 0] * ux + cell_ax[j, 1] * uy + cell_ax[j, 2] * uz) / norm
        if not exact:
            _bilinear_row(vl, vs, tri_c, tri_g, usable, k, i, gather, gathered, energy, acc)
        elif gather:
            _gather_row(vl, vs, tri_c, tri_g, tri_a, usable, k, i, i == row_start, top0, top1,
                        bottom0, bottom1, gathered, energy)
        else:
            _scatter_row(vl, vs, tri_c, tri_g, tri_a, k, top0, top1, acc)
    if exact and not gather:
        # The bottom vertex row of the last DEM row: walk what its triangles left there.
        for b in range(n_sub):
            if top0[b] != 0.0 or top1[b] != 0.0:
                scatter_edge(vl[k, b], vs[k, b], vl[k, b + 1], vs[k, b + 1], top0[b], top1[b], acc)


#: Footprints under this area (pixels^2) are deposited and read as points at their
#: centroid. Green's theorem divides a triangle's edge integrals by its signed area; for
#: a sliver at a layover fold (the footprint folds over, its area crosses zero) that
#: quotient amplifies the rounding of the row prefix sums (measured: 5e-6 of a cell's
#: energy, depending on where a tile's prefix sums start). A point keeps scatter and
#: gather exact adjoints and misplaces at most a sliver's length.
SLIVER_AREA = 1e-6


@numba.njit(cache=True, nogil=True, inline="always")
def _sliver_centroid(vl, vs, a, b, t):
    """Centroid (L, S) of triangle t of sub-quad (a, b): T0 = P Q R, T1 = P R S."""
    if t == 0:
        lc = (vl[a, b] + vl[a, b + 1] + vl[a + 1, b + 1]) / 3.0
        sc = (vs[a, b] + vs[a, b + 1] + vs[a + 1, b + 1]) / 3.0
    else:
        lc = (vl[a, b] + vl[a + 1, b + 1] + vl[a + 1, b]) / 3.0
        sc = (vs[a, b] + vs[a + 1, b + 1] + vs[a + 1, b]) / 3.0
    return lc, sc


@numba.njit(cache=True, nogil=True, inline="always")
def _is_sliver(area, c, g):
    return abs(area) < SLIVER_AREA and (c != 0.0 or g != 0.0)


@numba.njit(cache=True, nogil=True)
def _scatter_row(vl, vs, tri_c, tri_g, tri_a, k, top0, top1, acc):
    """Walk the edges of one DEM row's triangles once each, with their net scales.

    Each triangle deposits quantity / signed area along its boundary. ``top0``, ``top1``
    hold on entry what the row above left on the H edges of this row's top vertex row;
    on exit what this row leaves on its bottom vertex row. ``tri_c``, ``tri_g`` are
    turned into the scales in place.
    """
    n_sub = tri_c.shape[1]
    for a in range(k):
        for b in range(n_sub):
            for t in range(2):
                area = tri_a[a, b, t]
                if _is_sliver(area, tri_c[a, b, t], tri_g[a, b, t]):
                    lc, sc = _sliver_centroid(vl, vs, a, b, t)
                    scatter_point(lc, sc, tri_c[a, b, t], tri_g[a, b, t], acc)
                    tri_c[a, b, t] = 0.0
                    tri_g[a, b, t] = 0.0
                else:
                    tri_c[a, b, t] = tri_c[a, b, t] / area if area != 0.0 else 0.0
                    tri_g[a, b, t] = tri_g[a, b, t] / area if area != 0.0 else 0.0
    for a in range(k):
        # H edges of vertex row a: complete once this strip's T0 are added.
        for b in range(n_sub):
            top0[b] += tri_c[a, b, 0]
            top1[b] += tri_g[a, b, 0]
            if top0[b] != 0.0 or top1[b] != 0.0:
                scatter_edge(vl[a, b], vs[a, b], vl[a, b + 1], vs[a, b + 1], top0[b], top1[b], acc)
        for b in range(n_sub + 1):
            # V(a, b): +T0 of the sub-quad to its left, -T1 of the one to its right.
            net0 = tri_c[a, b - 1, 0] if b > 0 else 0.0
            net1 = tri_g[a, b - 1, 0] if b > 0 else 0.0
            if b < n_sub:
                net0 -= tri_c[a, b, 1]
                net1 -= tri_g[a, b, 1]
                # D(a, b): +T1 - T0 of the same sub-quad.
                d0 = tri_c[a, b, 1] - tri_c[a, b, 0]
                d1 = tri_g[a, b, 1] - tri_g[a, b, 0]
                if d0 != 0.0 or d1 != 0.0:
                    scatter_edge(vl[a, b], vs[a, b], vl[a + 1, b + 1], vs[a + 1, b + 1], d0, d1, acc)
            if net0 != 0.0 or net1 != 0.0:
                scatter_edge(vl[a, b], vs[a, b], vl[a + 1, b], vs[a + 1, b], net0, net1, acc)
        # What this strip's T1 leave on the H edges of vertex row a + 1.
        for b in range(n_sub):
            top0[b] = -tri_c[a, b, 1]
            top1[b] = -tri_g[a, b, 1]


@numba.njit(cache=True, nogil=True)
def _gather_row(vl, vs, tri_c, tri_g, tri_a, usable, k, i, first, top0, top1, bottom0, bottom1,
                prefix, energy):
    """Integrate the ratio images over one DEM row's triangles, each edge walked once.

    ``top0``, ``top1``: integrals along the H edges of the top vertex row, carried from
    the row above (computed here when ``first``); replaced by the bottom row's on exit.
    """
    n_sub = tri_c.shape[1]
    cols = usable.shape[0]
    if first:
        for b in range(n_sub):
            top0[b], top1[b] = gather_edge(vl[0, b], vs[0, b], vl[0, b + 1], vs[0, b + 1], prefix)
    for j in range(cols):
        energy[0, i, j] = 0.0
        energy[1, i, j] = 0.0
    for a in range(k):
        for b in range(n_sub):
            bottom0[b], bottom1[b] = gather_edge(vl[a + 1, b], vs[a + 1, b], vl[a + 1, b + 1], vs[a + 1, b + 1],
                                                 prefix)
        left0, left1 = gather_edge(vl[a, 0], vs[a, 0], vl[a + 1, 0], vs[a + 1, 0], prefix)
        for b in range(n_sub):
            right0, right1 = gather_edge(vl[a, b + 1], vs[a, b + 1], vl[a + 1, b + 1], vs[a + 1, b + 1],
                                         prefix)
            j = b // k
            if usable[j]:
                d0, d1 = gather_edge(vl[a, b], vs[a, b], vl[a + 1, b + 1], vs[a + 1, b + 1], prefix)
                for t in range(2):
                    # The integrals of the ratios over the triangle, from its boundary.
                    if t == 0:
                        integral0 = top0[b] + right0 - d0
                        integral1 = top1[b] + right1 - d1
                    else:
                        integral0 = d0 - bottom0[b] - left0
                        integral1 = d1 - bottom1[b] - left1
                    area = tri_a[a, b, t]
                    if _is_sliver(area, tri_c[a, b, t], tri_g[a, b, t]):
                        lc, sc = _sliver_centroid(vl, vs, a, b, t)
                        integral0, integral1 = gather_point(lc, sc, prefix)
                        area = 1.0
                    if area != 0.0:
                        energy[0, i, j] += tri_c[a, b, t] * integral0 / area
                        energy[1, i, j] += tri_g[a, b, t] * integral1 / area
            left0 = right0
            left1 = right1
        for b in range(n_sub):
            top0[b] = bottom0[b]
            top1[b] = bottom1[b]


@numba.njit(cache=True, nogil=True)
def _bilinear_row(vl, vs, tri_c, tri_g, usable, k, i, gather, ratios, energy, acc):
    """Bilinear splatting (or gathering) at the centre of each sub-quad of one DEM row."""
    n_sub = tri_c.shape[1]
    cols = usable.shape[0]
    if gather:
        for j in range(cols):
            energy[0, i, j] = 0.0
            energy[1, i, j] = 0.0
    for a in range(k):
        for b in range(n_sub):
            j = b // k
            if not usable[j]:
                continue
            lc = 0.25 * (vl[a, b] + vl[a, b + 1] + vl[a + 1, b] + vl[a + 1, b + 1])
            sc = 0.25 * (vs[a, b] + vs[a, b + 1] + vs[a + 1, b] + vs[a + 1, b + 1])
            c = tri_c[a, b, 0] + tri_c[a, b, 1]
            g = tri_g[a, b, 0] + tri_g[a, b, 1]
            if gather:
                energy[0, i, j] += c * gather_bilinear(lc, sc, ratios[0])
                energy[1, i, j] += g * gather_bilinear(lc, sc, ratios[1])
            else:
                scatter_bilinear(lc, sc, c, g, acc)


@numba.njit(cache=True, nogil=True)
def faces_away(ecef, look, row_start, row_stop, out):
    """Whether each cell's surface faces away from the sensor, rows ``row_start:row_stop``.

    The normal is the cross product of the central differences along columns and rows
    (one-sided at the border, as ``numpy.gradient``), turned outward (away from the
    Earth's centre); the cell faces away when it has no positive component along the
    look vector (cell to sensor). False where a position is void.
    """
    rows, cols = out.shape
    for i in range(row_start, row_stop):
        i0 = max(i - 1, 0)
        i1 = min(i + 1, rows - 1)
        for j in range(cols):
            j0 = max(j - 1, 0)
            j1 = min(j + 1, cols - 1)
            rx = (ecef[i1, j, 0] - ecef[i0, j, 0]) / max(i1 - i0, 1)
            ry = (ecef[i1, j, 1] - ecef[i0, j, 1]) / max(i1 - i0, 1)
            rz = (ecef[i1, j, 2] - ecef[i0, j, 2]) / max(i1 - i0, 1)
            cx = (ecef[i, j1, 0] - ecef[i, j0, 0]) / max(j1 - j0, 1)
            cy = (ecef[i, j1, 1] - ecef[i, j0, 1]) / max(j1 - j0, 1)
            cz = (ecef[i, j1, 2] - ecef[i, j0, 2]) / max(j1 - j0, 1)
            nx = cy * rz - cz * ry
            ny = cz * rx - cx * rz
            nz = cx * ry - cy * rx
            outward = nx * ecef[i, j, 0] + ny * ecef[i, j, 1] + nz * ecef[i, j, 2]
            towards = nx * look[i, j, 0] + ny * look[i, j, 1] + nz * look[i, j, 2]
            if outward != outward or towards != towards:
                out[i, j] = False
            else:
                out[i, j] = (towards if outward > 0.0 else -towards) <= 0.0 if outward != 0.0 else True
