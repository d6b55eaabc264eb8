"""The facet table of one sub-row of a DEM's upsampled grid (:mod:`facets`' first stage):
the vertices' positions, (line, sample) and look vectors bilinear between cell centres,
then each triangle's (or, for bilinear projection, each sub-quad's) outward area vector,
sigma area, projected area, signed window area, contribution and gamma weight, one row of
the table each (``ROW_*``).

The contribution of a facet is chosen by a code (``CONTRIBUTION_*``): a sigma0 law of the
local incidence angle, the gamma weight alone, the user's values per cell, or a law per
cell's class.
"""

import math

import numba
import numpy as np

CONTRIBUTION_MODEL = 0
CONTRIBUTION_GAMMA = 1
CONTRIBUTION_USER = 2
CONTRIBUTION_CELL_LAW = 3

# Rows of the facet table of one sub-row (``triangle_facets``, ``quad_facets``): outward area vector
# (m^2), sigma area |A|, projected area A . look, signed window area (pixels^2, 0 for
# bilinear), contribution c, gamma weight (the gamma area, 0 in shadow).
ROW_NX = 0
ROW_NY = 1
ROW_NZ = 2
ROW_SIGMA = 3
ROW_PROJECTED = 4
ROW_AREA = 5
ROW_CONTRIBUTION = 6
ROW_GAMMA = 7
FACET_ROWS = 8


@numba.njit(cache=True, nogil=True, inline="always")
def _sigma0_model(cos_theta, a0, a1, a2):
    """Empirical sigma0 law a0 cos(t) / (sin(t) + a1 cos(t))^a2 (linear), 0 facing away."""
    if cos_theta <= 0.0:
        return 0.0
    sin_theta = math.sqrt(max(0.0, 1.0 - cos_theta * cos_theta))
    base = sin_theta + a1 * cos_theta
    return a0 * cos_theta / base**a2


@numba.njit(cache=True, nogil=True, inline="always")
def tabulated(cos_theta, table):
    """A law tabulated at k * 90 / n degrees, linearly interpolated; 0 facing away."""
    if cos_theta <= 0.0:
        return 0.0
    theta = math.acos(min(1.0, cos_theta)) * (2.0 / math.pi) * (table.shape[0] - 1)
    k = min(int(theta), table.shape[0] - 2)
    w = theta - k
    return (1.0 - w) * table[k] + w * table[k + 1]


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _facet(e1x, e1y, e1z, e2x, e2y, e2z, area, cx, cy, cz, ux, uy, uz, ok, dark, code, a0, a1):
    """Everything the pass needs of one facet: the rows of the facet table.

    The area vector is half the cross product e1 x e2, turned outward (away from the
    Earth's centre; ``c``: the cell's position). The model law's contribution
    a0 cos(t) / (sin(t) + a1 cos(t))^3 |A| is written with p = A . look and s = |A| as
    a0 p s^3 / (sqrt(s^2 - p^2) + a1 p)^3: one division and no cosine. Facets that face
    away contribute nothing; ``dark`` ones (shadow) neither, nor carry gamma weight.
    Scalars only: an array argument would make the caller's loop scalar.
    """
    nx = 0.5 * (e1y * e2z - e1z * e2y)
    ny = 0.5 * (e1z * e2x - e1x * e2z)
    nz = 0.5 * (e1x * e2y - e1y * e2x)
    sign = -1.0 if nx * cx + ny * cy + nz * cz < 0.0 else 1.0
    nx *= sign
    ny *= sign
    nz *= sign
    sigma2 = nx * nx + ny * ny + nz * nz
    sigma = math.sqrt(sigma2)
    projected = nx * ux + ny * uy + nz * uz
    across = math.sqrt(max(sigma2 - projected * projected, 0.0)) + a1 * projected
    law = a0 * projected * sigma2 * sigma / (across * across * across)
    c = law if code == CONTRIBUTION_MODEL else (projected if code == CONTRIBUTION_GAMMA else sigma)
    lit = ok and projected > 0.0 and not dark
    return (nx if ok else 0.0, ny if ok else 0.0, nz if ok else 0.0, sigma if ok else 0.0,
            projected if ok else 0.0, area if ok and area == area else 0.0, c if lit else 0.0,
            projected if lit else 0.0)


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _store(out, b, values):
    """Write the rows of one facet (``_facet``) into column ``b`` of a facet table."""
    out[ROW_NX, b], out[ROW_NY, b], out[ROW_NZ, b], out[ROW_SIGMA, b] = values[0], values[1], values[2], values[3]
    out[ROW_PROJECTED, b], out[ROW_AREA, b] = values[4], values[5]
    out[ROW_CONTRIBUTION, b], out[ROW_GAMMA, b] = values[6], values[7]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def triangle_facets(top, bottom, t, centre, look, usable, dark, code, a0, a1, out):
    """Triangles t of one sub-row, all sub-columns b, into the facet table ``out``: t = 0
    is P Q R, t = 1 is P R S, with P = top[b], Q = top[b + 1], R = bottom[b + 1],
    S = bottom[b]. ``top``, ``bottom`` (5, n_sub + 1): vertex rows (ECEF x, y, z, L, S);
    ``centre``, ``look`` (3, n_sub), ``usable``, ``dark`` (n_sub,): the cell of each
    sub-column. (Two loops, not one with a test of t inside: that would compute both.)"""
    n_sub = usable.shape[0]
    if t == 0:
        for b in range(n_sub):
            px = top[0, b]
            py = top[1, b]
            pz = top[2, b]
            l1 = top[3, b + 1] - top[3, b]
            s1 = top[4, b + 1] - top[4, b]
            l2 = bottom[3, b + 1] - top[3, b]
            s2 = bottom[4, b + 1] - top[4, b]
            values = _facet(top[0, b + 1] - px, top[1, b + 1] - py, top[2, b + 1] - pz,
                            bottom[0, b + 1] - px, bottom[1, b + 1] - py, bottom[2, b + 1] - pz,
                            0.5 * (s1 * l2 - s2 * l1), centre[0, b], centre[1, b], centre[2, b], look[0, b],
                            look[1, b], look[2, b], usable[b], dark[b], code, a0, a1)
            _store(out, b, values)
    else:
        for b in range(n_sub):
            px = top[0, b]
            py = top[1, b]
            pz = top[2, b]
            l1 = bottom[3, b + 1] - top[3, b]
            s1 = bottom[4, b + 1] - top[4, b]
            l2 = bottom[3, b] - top[3, b]
            s2 = bottom[4, b] - top[4, b]
            values = _facet(bottom[0, b + 1] - px, bottom[1, b + 1] - py, bottom[2, b + 1] - pz,
                            bottom[0, b] - px, bottom[1, b] - py, bottom[2, b] - pz,
                            0.5 * (s1 * l2 - s2 * l1), centre[0, b], centre[1, b], centre[2, b], look[0, b],
                            look[1, b], look[2, b], usable[b], dark[b], code, a0, a1)
            _store(out, b, values)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def quad_facets(top, bottom, centre, look, usable, dark, code, a0, a1, out, position):
    """As ``triangle_facets`` for whole sub-quads (bilinear splatting): the vector area from the
    diagonals (exact for the projected area of a non-planar quad), no window area;
    ``position`` (2, n_sub) out: the sub-quad's centre in window coordinates (L, S)."""
    n_sub = usable.shape[0]
    for b in range(n_sub):
        values = _facet(bottom[0, b + 1] - top[0, b], bottom[1, b + 1] - top[1, b], bottom[2, b + 1] - top[2, b],
                        bottom[0, b] - top[0, b + 1], bottom[1, b] - top[1, b + 1], bottom[2, b] - top[2, b + 1],
                        0.0, centre[0, b], centre[1, b], centre[2, b], look[0, b], look[1, b], look[2, b],
                        usable[b], dark[b], code, a0, a1)
        _store(out, b, values)
        position[0, b] = 0.25 * (top[3, b] + top[3, b + 1] + bottom[3, b] + bottom[3, b + 1])
        position[1, b] = 0.25 * (top[4, b] + top[4, b + 1] + bottom[4, b] + bottom[4, b + 1])


@numba.njit(cache=True, nogil=True)
def law_contributions(law, table, out):
    """Contributions of facets under a tabulated law or the model law with an exponent
    other than 3 (the facet table holds the model's for exponent 3): the law of the
    local incidence angle times the sigma area, where the facet contributes at all."""
    a0 = law[0]
    a1 = law[1]
    a2 = law[2]
    for b in range(out.shape[1]):
        if out[ROW_CONTRIBUTION, b] == 0.0:
            continue
        sigma = out[ROW_SIGMA, b]
        cos_t = out[ROW_PROJECTED, b] / sigma if sigma > 0.0 else 0.0
        value = tabulated(cos_t, table) if table.shape[0] > 1 else _sigma0_model(cos_t, a0, a1, a2)
        out[ROW_CONTRIBUTION, b] = value * sigma


# --------------------------------------------------------------------------- vertices

@numba.njit(cache=True, nogil=True)
def column_weights(k, cols):
    """Per vertex column b of the upsampled grid: the cell column j0 left of it and the
    weight of j0 + 1 (kappa = b / k - 0.5 cells; extrapolated half a cell at the border)."""
    n_sub = k * cols
    left = np.empty(n_sub + 1, dtype=np.int64)
    weight = np.empty(n_sub + 1)
    for b in range(n_sub + 1):
        kappa = b / k - 0.5
        j0 = min(max(int(math.floor(kappa)), 0), cols - 2)
        left[b] = j0
        weight[b] = kappa - j0
    return left, weight


@numba.njit(cache=True, nogil=True, error_model="numpy")
def vertex_row(ecef, line, sample, rho, line0, sample0, left, weight, rows_tmp, out):
    """Vertices of the upsampled grid at fractional DEM row ``rho``, all vertex columns.

    Bilinear between the four surrounding cell centres: first along the rows into
    ``rows_tmp`` (5, cols), then along the columns. ``out`` (5, n_sub + 1): ECEF x, y, z
    (m) and window coordinates L = line - line0 + 0.5, S = sample - sample0 + 0.5; NaN
    where a centre used is void or unsolved.
    """
    rows, cols = line.shape
    i0 = min(max(int(math.floor(rho)), 0), rows - 2)
    wr = rho - i0
    for j in range(cols):
        rows_tmp[0, j] = (1.0 - wr) * ecef[i0, j, 0] + wr * ecef[i0 + 1, j, 0]
        rows_tmp[1, j] = (1.0 - wr) * ecef[i0, j, 1] + wr * ecef[i0 + 1, j, 1]
        rows_tmp[2, j] = (1.0 - wr) * ecef[i0, j, 2] + wr * ecef[i0 + 1, j, 2]
        rows_tmp[3, j] = (1.0 - wr) * line[i0, j] + wr * line[i0 + 1, j] - line0 + 0.5
        rows_tmp[4, j] = (1.0 - wr) * sample[i0, j] + wr * sample[i0 + 1, j] - sample0 + 0.5
    if left.shape[0] == 2 * cols + 1:
        # k = 2: vertices at the centres and halfway between them, written out so that
        # the loop vectorises (the general one reads through an index: it cannot). The
        # arithmetic is the general loop's, weights 0.5 and 0 (NaN from a neighbour
        # included), so the vertices are the same to the bit.
        for q in range(5):
            values = rows_tmp[q]
            for j in range(1, cols - 1):
                out[q, 2 * j] = 0.5 * values[j - 1] + 0.5 * values[j]
                out[q, 2 * j + 1] = 1.0 * values[j] + 0.0 * values[j + 1]
            for b in (0, 1, 2 * cols - 2, 2 * cols - 1, 2 * cols):
                j0 = left[b]
                w = weight[b]
                out[q, b] = (1.0 - w) * values[j0] + w * values[j0 + 1]
        return
    for q in range(5):
        for b in range(left.shape[0]):
            j0 = left[b]
            w = weight[b]
            out[q, b] = (1.0 - w) * rows_tmp[q, j0] + w * rows_tmp[q, j0 + 1]


@numba.njit(cache=True, nogil=True)
def copy_rows(source, target):
    """target[:] = source for 2-D arrays of one shape, as loops: Numba's array assignment
    would compile its broadcasting error messages (seconds of compilation)."""
    for q in range(source.shape[0]):
        for b in range(source.shape[1]):
            target[q, b] = source[q, b]


@numba.njit(cache=True, nogil=True)
def expand_cells(usable, dark, ecef, look, k, sub_usable, sub_dark, centre, look_sub):
    """Per sub-column of one DEM row, the flags, position and look vector of its cell
    (the facet loops read them per sub-column)."""
    cols = usable.shape[0]
    if k == 2:
        for j in range(cols):
            sub_usable[2 * j] = usable[j]
            sub_usable[2 * j + 1] = usable[j]
            sub_dark[2 * j] = dark[j]
            sub_dark[2 * j + 1] = dark[j]
        for axis in range(3):
            for j in range(cols):
                centre[axis, 2 * j] = ecef[j, axis]
                centre[axis, 2 * j + 1] = ecef[j, axis]
                look_sub[axis, 2 * j] = look[j, axis]
                look_sub[axis, 2 * j + 1] = look[j, axis]
        return
    for j in range(cols):
        for m in range(k):
            b = j * k + m
            sub_usable[b] = usable[j]
            sub_dark[b] = dark[j]
            for axis in range(3):
                centre[axis, b] = ecef[j, axis]
                look_sub[axis, b] = look[j, axis]


@numba.njit(cache=True, nogil=True)
def usable_cells(line, valid, i, col_start, col_stop, out):
    """Cells of row ``i`` whose facets are built: valid, in ``col_start:col_stop``, and
    the 3 x 3 neighbourhood (clamped at the border) solved, as their vertices interpolate
    between them."""
    rows, cols = line.shape
    for j in range(cols):
        ok = valid[i, j] and col_start <= j < col_stop
        if ok:
            for di in range(-1, 2):
                ii = min(max(i + di, 0), rows - 1)
                for dj in range(-1, 2):
                    jj = min(max(j + dj, 0), cols - 1)
                    if line[ii, jj] != line[ii, jj]:
                        ok = False
        out[j] = ok
