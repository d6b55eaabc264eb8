"""Facets of a DEM in the radar image: areas, contributions, scatter and gather.

Each DEM cell is split into ``k x k`` sub-quads (the DEM upsampled ``k`` times, positions
bilinear between cell centres) and each sub-quad into two triangles. The kernel walks the
upsampled grid one DEM row at a time, keeping the ``k + 1`` vertex rows of that DEM row.
Interpolating (line, sample) between centres instead of mapping the interpolated
position differs by the curvature of the zero-Doppler mapping over a cell, (cell
size)^2 / (2 x slant range), about 1e-4 m for 10 m cells at 850 km: far below a pixel.

Triangles of sub-quad (a, b), vertices P = (a, b), Q = (a, b + 1), R = (a + 1, b + 1),
S = (a + 1, b): T0 = P -> Q -> R and T1 = P -> R -> S. With H(a, b) = (a, b) -> (a, b + 1),
V(a, b) = (a, b) -> (a + 1, b) and D(a, b) = (a, b) -> (a + 1, b + 1):
boundary(T0) = H(a, b) + V(a, b + 1) - D(a, b), boundary(T1) = D(a, b) - H(a + 1, b) - V(a, b).
Every edge of the triangulation is walked once (3 k^2 per cell): when scattering with
the net of the scales (quantity / signed window area) of the triangles on either side,
when gathering for its integral, shared by both (Green's theorem, ``projection``).

The work is staged so that most of it runs on SIMD lanes, each stage a loop over the
sub-columns of one vertex or sub-row with no branch in its body: vertices, triangle
geometry and contributions, net scales, and the cutting of every edge into its pieces
(``_cut_narrow``: at most three pieces, an edge crossing at most one row and one column
border; ``_cut_wide``, for footprints larger than a pixel: at most five, two row and two
column borders; the longer ones are flagged and walked one by one, ``_walk_long``). Only
the deposits into (scatter) or reads from (gather) the radar buffer go piece by piece, and they have no branches either: a piece
off the image is moved to the buffer's padding.

Radar buffers (``radar_buffer_shape``) hold the two channels of each pixel side by side,
(lines + 2 PAD, samples + 2 PAD, 2), pixel (r, c) at [r + PAD, c + PAD]. The exact
gather reads the inclusive row prefix sums P there, P = 0 left of the image and
P = P[n - 1] right of it (``prefix_buffer``): a piece in row r and column c touches
columns c - 1 and c only, 32 bytes. The exact scatter adds to a tile's buffer of four
values per pixel (``scatter_buffer_shape``): a piece of v (extent times net scale) at
fraction f adds v and v f of both channels to its own pixel, and pixel c's image is its
v f plus the v of every pixel right of it (``add_tile``), the difference sums of
``projection``. Bilinear projection deposits and reads the images themselves.
"""

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from .projection import edge_crossings

CONTRIBUTION_MODEL = 0
CONTRIBUTION_GAMMA = 1
CONTRIBUTION_USER = 2
CONTRIBUTION_CELL_LAW = 3

#: Padding of radar buffers on every side, in pixels.
PAD = 2

#: Footprints under this area (pixels^2) are deposited and read as points at their
#: centroid. Green's theorem divides a triangle's edge integrals by its signed area; for
#: a sliver at a layover fold (the footprint folds over, its area crosses zero) that
#: quotient amplifies the rounding of the row prefix sums (measured: 5e-6 of a cell's
#: energy, depending on where a tile's prefix sums start). A point keeps scatter and
#: gather exact adjoints and misplaces at most a sliver's length.
SLIVER_AREA = 1e-6

@intrinsic
def _add4(typingctx, flat, offset, v0, v1, v2, v3):
    """flat[offset:offset + 4] += (v0, v1, v2, v3) as one 4-wide load, add and store.

    A piece of an edge touches two neighbouring pixels, both channels: 32 contiguous
    bytes. Numba leaves LLVM's straight-line vectoriser off, which would otherwise make
    one vector access of the four scalar ones; written out here, a deposit takes about
    half the time. ``flat``: a contiguous float64 array; no bounds check.
    """
    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        vector = ir.VectorType(ir.DoubleType(), 4)
        pointer = builder.bitcast(builder.gep(array.data, [args[1]]), vector.as_pointer())
        value = ir.Constant(vector, ir.Undefined)
        for k in range(4):
            value = builder.insert_element(value, args[2 + k], ir.Constant(ir.IntType(32), k))
        builder.store(builder.fadd(builder.load(pointer, align=8), value), pointer, align=8)
        return context.get_dummy_value()

    return types.void(flat, offset, v0, v1, v2, v3), codegen


@intrinsic
def _load4(typingctx, flat, offset):
    """flat[offset:offset + 4] as one 4-wide load: a tuple of four float64 (see ``_add4``)."""
    def codegen(context, builder, signature, args):
        array = context.make_array(signature.args[0])(context, builder, args[0])
        vector = ir.VectorType(ir.DoubleType(), 4)
        pointer = builder.bitcast(builder.gep(array.data, [args[1]]), vector.as_pointer())
        loaded = builder.load(pointer, align=8)
        result = context.get_constant_undef(signature.return_type)
        for k in range(4):
            result = builder.insert_value(result, builder.extract_element(loaded, ir.Constant(ir.IntType(32), k)), k)
        return result

    return types.UniTuple(types.float64, 4)(flat, offset), codegen


# Unsigned offsets: indexing with unsigned integers needs no negative-index wraparound.
_U1 = np.uint64(1)
_U2 = np.uint64(2)
_U4 = np.uint64(4)

# The piece table of a run of edges (``_cut_for_scatter``, ``_cut_for_gather``): per
# piece slot (five per edge) its pixel as a flat offset into a raveled radar buffer, and
# (scatter) what it adds to the pixel's column and the one before in both channels, or
# (gather) its fraction and extent; then the flag of edges too long for five pieces.
_SLOTS = 5
_LONG = 25
_PIECE_ROWS = 26


def radar_buffer_shape(n_lines: int, n_samples: int) -> tuple[int, int, int]:
    """Shape of a radar buffer of ``n_lines`` x ``n_samples`` pixels with its padding."""
    return (n_lines + 2 * PAD, n_samples + 2 * PAD, 2)


def scatter_buffer_shape(n_lines: int, n_samples: int, exact: bool) -> tuple[int, int, int]:
    """Shape of the buffer a tile scatters into: for exact projection four values per
    pixel, v of both channels and v f of both (``add_tile`` turns them into images); a
    radar buffer for bilinear. Each piece adds to one pixel's 32 contiguous bytes."""
    return (n_lines + 2 * PAD, n_samples + 2 * PAD, 4 if exact else 2)


# --------------------------------------------------------------------------- facet geometry

# Rows of the facet table of one sub-row (``_triangles``, ``_quads``): outward area vector
# (m^2), sigma area |A|, projected area A . look, signed window area (pixels^2, 0 for
# bilinear), contribution c, gamma weight (the gamma area, 0 in shadow).
_NX = 0
_NY = 1
_NZ = 2
_SIGMA = 3
_PROJECTED = 4
_AREA = 5
_C = 6
_GAMMA = 7
_FACET_ROWS = 8


@numba.njit(cache=True, nogil=True, inline="always")
def _sigma0_model(cos_theta, a0, a1, a2):
    """Empirical sigma0 law a0 cos(t) / (sin(t) + a1 cos(t))^a2 (linear), 0 facing away."""
    if cos_theta <= 0.0:
        return 0.0
    sin_theta = math.sqrt(max(0.0, 1.0 - cos_theta * cos_theta))
    base = sin_theta + a1 * cos_theta
    return a0 * cos_theta / base**a2


@numba.njit(cache=True, nogil=True, inline="always")
def _tabulated(cos_theta, table):
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
    out[_NX, b], out[_NY, b], out[_NZ, b], out[_SIGMA, b] = values[0], values[1], values[2], values[3]
    out[_PROJECTED, b], out[_AREA, b], out[_C, b], out[_GAMMA, b] = values[4], values[5], values[6], values[7]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _triangles(top, bottom, t, centre, look, usable, dark, code, a0, a1, out):
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
def _quads(top, bottom, centre, look, usable, dark, code, a0, a1, out, position):
    """As ``_triangles`` for whole sub-quads (bilinear splatting): the vector area from the
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
def _other_law(law, table, out):
    """Contributions of facets under a tabulated law or the model law with an exponent
    other than 3 (the facet table holds the model's for exponent 3): the law of the
    local incidence angle times the sigma area, where the facet contributes at all."""
    a0 = law[0]
    a1 = law[1]
    a2 = law[2]
    for b in range(out.shape[1]):
        if out[_C, b] == 0.0:
            continue
        sigma = out[_SIGMA, b]
        cos_t = out[_PROJECTED, b] / sigma if sigma > 0.0 else 0.0
        value = _tabulated(cos_t, table) if table.shape[0] > 1 else _sigma0_model(cos_t, a0, a1, a2)
        out[_C, b] = value * sigma


# --------------------------------------------------------------------------- vertices

@numba.njit(cache=True, nogil=True)
def _column_weights(k, cols):
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
def _vertex_row(ecef, line, sample, rho, line0, sample0, left, weight, rows_tmp, out):
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
def _copy_rows(source, target):
    """target[:] = source for 2-D arrays of one shape, as loops: Numba's array assignment
    would compile its broadcasting error messages (seconds of compilation)."""
    for q in range(source.shape[0]):
        for b in range(source.shape[1]):
            target[q, b] = source[q, b]


@numba.njit(cache=True, nogil=True)
def _expand_cells(usable, dark, ecef, look, k, sub_usable, sub_dark, centre, look_sub):
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
def _usable_cells(line, valid, i, col_start, col_stop, out):
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


# --------------------------------------------------------------------------- edge pieces

@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _sort2(a, b):
    """(min, max) of two floats: one compare-exchange of a sorting network."""
    return min(a, b), max(a, b)


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _piece_at(lo, hi, al, a_s, dl, ds, fl0, step_l, ur1, ur2, fs0, step_s, us1, us2, last_row, last_col, width,
              use, dummy):
    """The piece of an edge between the fractions ``lo`` and ``hi`` of its length: its
    pixel (flat index into a radar buffer of ``width`` columns, row and column clamped to
    one beyond the image), f (its mean S minus that column) and its extent Delta L. Its
    row is the first end's plus the row borders crossed before its middle (``ur1``,
    ``ur2``: their fractions, 2 where none), its column likewise."""
    pad = float(PAD)
    mid = 0.5 * (lo + hi)
    crossed_l = (1.0 if mid > ur1 else 0.0) + (1.0 if mid > ur2 else 0.0)
    crossed_s = (1.0 if mid > us1 else 0.0) + (1.0 if mid > us2 else 0.0)
    row = min(max(fl0 + step_l * crossed_l, -1.0), last_row)
    col = min(max(fs0 + step_s * crossed_s, -1.0), last_col)
    pixel = (row + pad) * width + col + pad if use else dummy
    f = a_s + ds * mid - col if use else 0.0
    extent = dl * (hi - lo) if use else 0.0
    return pixel, f, extent


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _cut_narrow(al, a_s, bl, b_s, last_row, last_col, width):
    """Cut the edge (al, a_s) -> (bl, b_s) (window coordinates) at the pixel borders it
    crosses, for footprints of about a pixel (``_cut_wide`` for larger ones).

    An edge that crosses at most one row and one column border has at most three pieces:
    up to the first crossing, between the two, after the second (empty ones have no
    extent). Returns per piece its pixel as a flat pixel index into a radar buffer of
    ``width`` columns (row and column clamped to one beyond the image: rows
    -1..last_row, columns -1..last_col), f (the mean S of the piece minus that clamped
    column) and its extent Delta L; then whether the edge is too long for three pieces
    (its pieces have no extent here: ``_walk_long`` walks it). An edge with a void end
    (NaN) has no extent and is not long. Scalars only, no branch: callers are SIMD loops.
    """
    dl = bl - al
    ds = b_s - a_s
    fl0 = math.floor(al)
    fl1 = math.floor(bl)
    fs0 = math.floor(a_s)
    fs1 = math.floor(b_s)
    finite = dl == dl and ds == ds
    short = abs(fl1 - fl0) <= 1.0 and abs(fs1 - fs0) <= 1.0
    use = finite and short
    ul = (max(fl0, fl1) - al) / dl if fl0 != fl1 else 2.0
    us = (max(fs0, fs1) - a_s) / ds if fs0 != fs1 else 2.0
    u1 = min(min(ul, us), 1.0)
    u2 = min(max(ul, us), 1.0)
    pad = float(PAD)
    dummy = (pad - 1.0) * width + pad - 1.0  # pixel (-1, -1): padding
    mid = 0.5 * u1
    row = min(max(fl0 if mid < ul else fl1, -1.0), last_row)
    col = min(max(fs0 if mid < us else fs1, -1.0), last_col)
    p0 = (row + pad) * width + col + pad if use else dummy
    f0 = a_s + ds * mid - col if use else 0.0
    x0 = dl * u1 if use else 0.0
    mid = 0.5 * (u1 + u2)
    row = min(max(fl0 if mid < ul else fl1, -1.0), last_row)
    col = min(max(fs0 if mid < us else fs1, -1.0), last_col)
    p1 = (row + pad) * width + col + pad if use else dummy
    f1 = a_s + ds * mid - col if use else 0.0
    x1 = dl * (u2 - u1) if use else 0.0
    mid = 0.5 * (u2 + 1.0)
    row = min(max(fl1, -1.0), last_row)
    col = min(max(fs1, -1.0), last_col)
    p2 = (row + pad) * width + col + pad if use else dummy
    f2 = a_s + ds * mid - col if use else 0.0
    x2 = dl * (1.0 - u2) if use else 0.0
    return (p0, f0, x0, p1, f1, x1, p2, f2, x2), finite and not short


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _cut_wide(al, a_s, bl, b_s, last_row, last_col, width):
    """Cut the edge (al, a_s) -> (bl, b_s) (window coordinates) at the pixel borders it
    crosses, for footprints larger than a pixel (``WIDE_CUT_EXTENT``).

    An edge that crosses at most two row borders and two column borders has at most
    five pieces, between its ends and the crossings sorted along it (empty ones have no
    extent). On a DEM 2-3 times coarser than the pixels about 40 % of the edges of the 2x
    upsampled facets cross more borders than ``_cut_narrow`` takes, and walking them one
    by one cost half the facet passes' time; here they stay on SIMD lanes. Where the
    footprints are about a pixel, the narrow cut's fewer pieces are quicker. Returns per piece
    its pixel as a flat pixel index into a radar buffer of ``width`` columns (row and
    column clamped to one beyond the image: rows -1..last_row, columns -1..last_col), f
    (the mean S of the piece minus that clamped column) and its extent Delta L; then
    whether the edge is too long for five pieces (its pieces have no extent here:
    ``_walk_long`` walks it). An edge with a void end (NaN) has no extent and is not
    long. Scalars only, no branch: callers are SIMD loops.
    """
    dl = bl - al
    ds = b_s - a_s
    fl0 = math.floor(al)
    fl1 = math.floor(bl)
    fs0 = math.floor(a_s)
    fs1 = math.floor(b_s)
    rows_crossed = abs(fl1 - fl0)
    cols_crossed = abs(fs1 - fs0)
    finite = dl == dl and ds == ds
    short = rows_crossed <= 2.0 and cols_crossed <= 2.0
    use = finite and short
    # The fractions of the edge where it crosses the row borders min + 1 and max of its
    # ends' rows (one border: the same), and the column borders likewise; 2: none.
    ur1 = (min(fl0, fl1) + 1.0 - al) / dl if rows_crossed >= 1.0 else 2.0
    ur2 = (max(fl0, fl1) - al) / dl if rows_crossed >= 2.0 else 2.0
    us1 = (min(fs0, fs1) + 1.0 - a_s) / ds if cols_crossed >= 1.0 else 2.0
    us2 = (max(fs0, fs1) - a_s) / ds if cols_crossed >= 2.0 else 2.0
    step_l = 1.0 if fl1 > fl0 else -1.0
    step_s = 1.0 if fs1 > fs0 else -1.0
    # The four crossings in order (a sorting network), at most the edge's end.
    c0, c1 = _sort2(ur1, ur2)
    c2, c3 = _sort2(us1, us2)
    c0, c2 = _sort2(c0, c2)
    c1, c3 = _sort2(c1, c3)
    c1, c2 = _sort2(c1, c2)
    c0 = min(c0, 1.0)
    c1 = min(c1, 1.0)
    c2 = min(c2, 1.0)
    c3 = min(c3, 1.0)
    pad = float(PAD)
    dummy = (pad - 1.0) * width + pad - 1.0  # pixel (-1, -1): padding
    p0, f0, x0 = _piece_at(0.0, c0, al, a_s, dl, ds, fl0, step_l, ur1, ur2, fs0, step_s, us1, us2, last_row,
                           last_col, width, use, dummy)
    p1, f1, x1 = _piece_at(c0, c1, al, a_s, dl, ds, fl0, step_l, ur1, ur2, fs0, step_s, us1, us2, last_row,
                           last_col, width, use, dummy)
    p2, f2, x2 = _piece_at(c1, c2, al, a_s, dl, ds, fl0, step_l, ur1, ur2, fs0, step_s, us1, us2, last_row,
                           last_col, width, use, dummy)
    p3, f3, x3 = _piece_at(c2, c3, al, a_s, dl, ds, fl0, step_l, ur1, ur2, fs0, step_s, us1, us2, last_row,
                           last_col, width, use, dummy)
    p4, f4, x4 = _piece_at(c3, 1.0, al, a_s, dl, ds, fl0, step_l, ur1, ur2, fs0, step_s, us1, us2, last_row,
                           last_col, width, use, dummy)
    return (p0, f0, x0, p1, f1, x1, p2, f2, x2, p3, f3, x3, p4, f4, x4), finite and not short


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _scatter_slot(pieces, slot, q, pixel, f, extent, net0, net1):
    """Row entries of one piece in the scatter's piece table: pixel, then what it adds to
    the pixel's four values (``scatter_buffer_shape``): v and v f of both channels,
    v = extent x net."""
    v0 = extent * net0
    v1 = extent * net1
    base = 5 * slot
    pieces[base, q] = pixel
    pieces[base + 1, q] = v0
    pieces[base + 2, q] = v1
    pieces[base + 3, q] = v0 * f
    pieces[base + 4, q] = v1 * f


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cut_for_scatter(l0, s0, l1, s1, n, net0, net1, n_lines, n_samples, width, wide, pieces):
    """The piece table (``_PIECE_ROWS``, >= n) of ``n`` edges (l0, s0) -> (l1, s1) with net
    scales ``net0``, ``net1``: per slot its pixel and the amounts it deposits; five
    slots if ``wide`` (``_cut_wide``), else three (``_cut_narrow``)."""
    last_row = float(n_lines)
    last_col = float(n_samples)
    w = float(width)
    # Two loops, not one with the test inside: each stays a branch-free SIMD loop.
    if wide:
        for q in range(n):
            cut, long_edge = _cut_wide(l0[q], s0[q], l1[q], s1[q], last_row, last_col, w)
            for slot in range(_SLOTS):
                _scatter_slot(pieces, slot, q, cut[3 * slot], cut[3 * slot + 1], cut[3 * slot + 2], net0[q], net1[q])
            pieces[_LONG, q] = 1.0 if long_edge else 0.0
    else:
        for q in range(n):
            cut, long_edge = _cut_narrow(l0[q], s0[q], l1[q], s1[q], last_row, last_col, w)
            for slot in range(3):
                _scatter_slot(pieces, slot, q, cut[3 * slot], cut[3 * slot + 1], cut[3 * slot + 2], net0[q], net1[q])
            pieces[_LONG, q] = 1.0 if long_edge else 0.0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _cut_for_gather(l0, s0, l1, s1, n, n_lines, n_samples, width, wide, pieces):
    """The piece table of ``n`` edges for gathering: per slot its pixel, f and extent
    (slots as ``_cut_for_scatter``)."""
    last_row = float(n_lines)
    last_col = float(n_samples)
    w = float(width)
    if wide:
        for q in range(n):
            cut, long_edge = _cut_wide(l0[q], s0[q], l1[q], s1[q], last_row, last_col, w)
            for slot in range(_SLOTS):
                pieces[5 * slot, q] = cut[3 * slot]
                pieces[5 * slot + 1, q] = cut[3 * slot + 1]
                pieces[5 * slot + 2, q] = cut[3 * slot + 2]
            pieces[_LONG, q] = 1.0 if long_edge else 0.0
    else:
        for q in range(n):
            cut, long_edge = _cut_narrow(l0[q], s0[q], l1[q], s1[q], last_row, last_col, w)
            for slot in range(3):
                pieces[5 * slot, q] = cut[3 * slot]
                pieces[5 * slot + 1, q] = cut[3 * slot + 1]
                pieces[5 * slot + 2, q] = cut[3 * slot + 2]
            pieces[_LONG, q] = 1.0 if long_edge else 0.0


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _add_piece(pieces, base, q, flat):
    """Deposit one piece of the scatter's piece table: the four values of its pixel."""
    _add4(flat, np.uint64(pieces[base, q]) * _U4, pieces[base + 1, q], pieces[base + 2, q], pieces[base + 3, q],
          pieces[base + 4, q])


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _deposit_pieces(pieces, n, slots, flat):
    """Add the pieces of ``n`` edges (``slots`` of them each) to the scatter buffer
    ``flat`` (raveled, ``scatter_buffer_shape``). The first two slots are filled for most
    edges; the others (edges crossing two borders or more) are passed over where they
    carry nothing."""
    for q in range(n):
        _add_piece(pieces, 0, q, flat)
    for q in range(n):
        _add_piece(pieces, 5, q, flat)
    for slot in range(2, slots):
        base = 5 * slot
        for q in range(n):
            if pieces[base + 1, q] != 0.0 or pieces[base + 2, q] != 0.0:
                _add_piece(pieces, base, q, flat)


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _read_piece(pieces, base, q, flat):
    """The integrals of both channels along one piece of the gather's piece table: its
    extent times the prefix sums interpolated at its mean S, (1 - f) P[c - 1] + f P[c]."""
    p = np.uint64(pieces[base, q]) * _U2
    f = pieces[base + 1, q]
    extent = pieces[base + 2, q]
    left0, left1, right0, right1 = _load4(flat, p - _U2)
    return extent * (left0 + f * (right0 - left0)), extent * (left1 + f * (right1 - left1))


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _integrate_pieces(pieces, n, slots, flat, out0, out1):
    """The integrals along ``n`` edges (``slots`` pieces each; into ``out0``, ``out1``)
    of the two channels whose inclusive row prefix sums ``flat`` holds (a radar buffer
    raveled)."""
    for q in range(n):
        a0, a1 = _read_piece(pieces, 0, q, flat)
        b0, b1 = _read_piece(pieces, 5, q, flat)
        out0[q] = a0 + b0
        out1[q] = a1 + b1
    for slot in range(2, slots):
        base = 5 * slot
        for q in range(n):
            if pieces[base + 2, q] != 0.0:
                c0, c1 = _read_piece(pieces, base, q, flat)
                out0[q] += c0
                out1[q] += c1


#: Footprint extent (pixels, ``footprint_extent``) above which a row's edges are cut by
#: ``_cut_wide`` (up to five pieces an edge) rather than ``_cut_narrow`` (three). Measured
#: on one thread, ns per DEM cell of a scatter and a gather pass over one tile of the
#: benchmark's mountains under pixels of 12 to 4 m (sub-quads of 0.41 to 1.24 pixels),
#: narrow / wide: 175 / 253 at 0.41, 224 / 275 at 0.71, 269 / 299 at 0.82, 326 / 335 at
#: 0.99, 455 / 400 at 1.24 (scatter; the gather alike): they cross near one pixel.
WIDE_CUT_EXTENT = 1.0


@numba.njit(cache=True, nogil=True, error_model="numpy")
def footprint_extent(upper, lower):
    """The mean extent (pixels) of the footprints of the sub-quads between two vertex rows
    (``_vertex_row``; (5, n_sub + 1), L and S in rows 3 and 4): per sub-quad the larger of
    |Delta L| and |Delta S| over its top and left edges, averaged over those with finite
    vertices (0 if none). Used to choose each row's cut; ``lower`` may be ``upper``
    (top edges alone)."""
    total = 0.0
    count = 0
    for b in range(upper.shape[1] - 1):
        top = max(abs(upper[3, b + 1] - upper[3, b]), abs(upper[4, b + 1] - upper[4, b]))
        left = max(abs(lower[3, b] - upper[3, b]), abs(lower[4, b] - upper[4, b]))
        extent = max(top, left)
        if extent == extent:
            total += extent
            count += 1
    return total / count if count else 0.0


@numba.njit(cache=True, nogil=True)
def _walk_long(l0, s0, l1, s1, gather, net0, net1, flat, width, n_lines, n_samples):
    """One edge crossing several row or column borders, walked border by border: its
    pieces deposited with net scales ``net0``, ``net1`` (scatter) or, when ``gather``,
    its integrals returned. Pieces are placed (and clamped) as in ``_cut_narrow`` and ``_cut_wide``."""
    dl = l1 - l0
    ds = s1 - s0
    total0 = 0.0
    total1 = 0.0
    if dl == 0.0:
        return total0, total1  # no extent in L: carries nothing
    next_l, step_l, next_s, step_s = edge_crossings(l0, s0, dl, ds)
    u = 0.0
    while u < 1.0:
        u_end = min(next_l, next_s, 1.0)
        mid = 0.5 * (u + u_end)
        s_mid = s0 + ds * mid
        row = min(max(math.floor(l0 + dl * mid), -1.0), float(n_lines))
        col = min(max(math.floor(s_mid), -1.0), float(n_samples))
        extent = dl * (u_end - u) if u_end > u else 0.0
        f = s_mid - col
        pixel = np.uint64((row + PAD) * width + (col + PAD))
        if gather:
            left0, left1, right0, right1 = _load4(flat, pixel * _U2 - _U2)
            total0 += extent * (left0 + f * (right0 - left0))
            total1 += extent * (left1 + f * (right1 - left1))
        else:
            v0 = extent * net0
            v1 = extent * net1
            _add4(flat, pixel * _U4, v0, v1, v0 * f, v1 * f)
        if u_end == next_l:
            next_l += step_l
        if u_end == next_s:
            next_s += step_s
        u = u_end
    return total0, total1


@numba.njit(cache=True, nogil=True)
def _edges(l0, s0, l1, s1, n, gather, net0, net1, out0, out1, pieces, flat, width, n_lines, n_samples, wide):
    """Scatter ``n`` edges with net scales ``net0``, ``net1``, or gather their integrals
    into ``out0``, ``out1``: cut into pieces on SIMD lanes (``wide``: up to five a
    edge, else three), then deposited or read."""
    if n <= 0:
        return
    slots = _SLOTS if wide else 3
    if gather:
        _cut_for_gather(l0, s0, l1, s1, n, n_lines, n_samples, width, wide, pieces)
        _integrate_pieces(pieces, n, slots, flat, out0, out1)
    else:
        _cut_for_scatter(l0, s0, l1, s1, n, net0, net1, n_lines, n_samples, width, wide, pieces)
        _deposit_pieces(pieces, n, slots, flat)
    for q in range(n):
        if pieces[_LONG, q] != 0.0:
            if gather:
                out0[q], out1[q] = _walk_long(l0[q], s0[q], l1[q], s1[q], True, 0.0, 0.0, flat, width,
                                              n_lines, n_samples)
            elif net0[q] != 0.0 or net1[q] != 0.0:
                _walk_long(l0[q], s0[q], l1[q], s1[q], False, net0[q], net1[q], flat, width, n_lines, n_samples)


@numba.njit(cache=True, nogil=True, inline="always")
def deposit_point(flat, pixel, quantity0, quantity1):
    """Deposit two quantities in one pixel (flat index ``pixel``) of a raveled exact
    scatter buffer (``scatter_buffer_shape``): as v f with no v, so that ``add_tile`` adds
    them to that pixel alone."""
    flat[4 * pixel + 2] += quantity0
    flat[4 * pixel + 3] += quantity1


@numba.njit(cache=True, nogil=True, inline="always")
def read_point(flat, pixel):
    """The two ratio images at one pixel, from a raveled radar buffer of their padded row
    prefix sums (``prefix_buffer``): the adjoint of ``deposit_point``."""
    return flat[2 * pixel] - flat[2 * pixel - 2], flat[2 * pixel + 1] - flat[2 * pixel - 1]


@numba.njit(cache=True, nogil=True)
def _pixel_offset(lv, sv, n_lines, n_samples, width):
    """Flat index of pixel (floor(lv), floor(sv)) in a radar buffer of ``width`` columns,
    -1 when it lies outside the image or the position is not finite."""
    if not (lv == lv and sv == sv):
        return -1
    row = int(math.floor(lv))
    col = int(math.floor(sv))
    if row < 0 or row >= n_lines or col < 0 or col >= n_samples:
        return -1
    return (row + PAD) * width + col + PAD


# --------------------------------------------------------------------------- the pass

@numba.njit(cache=True, nogil=True)
def facet_pass(
    ecef, line, sample, look, valid, shadowed, user_weight, cell_class, class_tables,
    oversample, contribution, law, law_table, exact, gather,
    line0, sample0, buffer, flat, row_start, row_stop, col_start, col_stop,
    energy, sigma_area, gamma_area, contrib_cell, cos_local,
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
        sigma area; for ``contribution`` 3, the factor of each cell's law (its albedo).
    cell_class, class_tables : for ``contribution`` 3 (else unused: (1, 1) and (1, 2)),
        each cell's class (rows, cols) int64 and each class's law tabulated as
        ``law_table`` (classes, n + 1): each facet of a cell that faces the sensor carries
        its cell's class law of the facet's own local incidence times its sigma area
        times the cell's ``user_weight``; a class outside the tables carries nothing.
    oversample : k, sub-quads per cell side.
    contribution : 0 model law, 1 gamma area, 2 user weights, 3 a law per class of each
        cell, times a factor per cell.
    law : (3,) coefficients (a0, a1, a2) of the law a0 cos(t) / (sin(t) + a1 cos(t))^a2,
        used when ``law_table`` has fewer than 2 entries.
    law_table : (n + 1,) sigma0 at local incidence k * 90 / n degrees (linear interpolation).
    exact : exact overlap (True) or bilinear splatting of sub-quad centres (False).
    gather : False to scatter into ``buffer``, True to gather from it.
    line0, sample0 : absolute line and sample of pixel (0, 0) of ``buffer``.
    buffer : where the two channels go or come from, channel 0 weighted by the
        contribution c and channel 1 by the gamma area. Scattering: a tile's buffer
        (``scatter_buffer_shape``) accumulating sum w*c and sum w*A_gamma (``add_tile``
        makes the images). Gathering: a radar buffer (``radar_buffer_shape``) of the ratio
        images, their padded row prefix sums (``prefix_buffer``) for exact projection,
        the images for bilinear.
    flat : ``buffer`` raveled (a view: Numba's reshape would compile its error messages).
    row_start, row_stop, col_start, col_stop : the DEM cells handled (their neighbours are
        read; the others' facets are left out, as belonging to a neighbouring tile).

    Outputs (rows handled)
    ----------------------
    energy : (2, rows, cols) gather only: sum over the cell's facets of c_f, resp. A_gamma,f,
        times the mean ratio over the facet's footprint.
    sigma_area, gamma_area : (rows, cols) m^2; contrib_cell : sum of c_f; cos_local :
        cosine of the local incidence angle of the cell's mean normal (both passes: a
        block-wise gather needs them without the scatter's per-cell arrays). A scatter
        may pass them with no rows (shape (0, 0)): they are then neither computed nor
        written.
    Serial, GIL released: callers run tiles on threads, each with its own buffers.
    """
    rows, cols = valid.shape
    if row_stop <= row_start or rows < 2 or cols < 2:
        return
    # A scatter whose caller keeps no per-cell sums passes them empty (14 ns per cell of
    # about 200 saved); a gather always makes them.
    keep_sums = gather or sigma_area.shape[0] > 0
    k = oversample
    n_sub = k * cols
    n_lines = buffer.shape[0] - 2 * PAD
    n_samples = buffer.shape[1] - 2 * PAD
    width = buffer.shape[1]
    faces = 2 if exact else 1
    a0 = law[0]
    a1 = law[1]
    other_law = law_table.shape[0] > 1 or (contribution == CONTRIBUTION_MODEL and law[2] != 3.0)
    left, weight = _column_weights(k, cols)
    rows_tmp = np.empty((5, cols))
    vertices = np.empty((k + 1, 5, n_sub + 1))
    usable = np.empty(cols, dtype=np.bool_)
    sub_usable = np.empty(n_sub, dtype=np.bool_)
    sub_dark = np.empty(n_sub, dtype=np.bool_)
    centre = np.empty((3, n_sub))
    look_sub = np.empty((3, n_sub))
    # The facet table of the DEM row: (t, a, row, b).
    table = np.empty((faces, k, _FACET_ROWS, n_sub))
    position = np.empty((k, 2, n_sub))
    per_sub = np.empty((6, n_sub))
    # Scales c / area and A_gamma / area of the triangles, a zero column either side.
    scale = np.zeros((2, 2, k, n_sub + 2))
    pieces = np.empty((_PIECE_ROWS, n_sub + 1))
    net0 = np.empty(n_sub + 1)
    net1 = np.empty(n_sub + 1)
    # H edges: scatter, what the row above left on the top vertex row; gather, the
    # integrals along the H edges of the k + 1 vertex rows.
    top0 = np.zeros(n_sub)
    top1 = np.zeros(n_sub)
    h_int = np.empty((2, k + 1, n_sub))
    v_int = np.empty((2, n_sub + 1))
    d_int = np.empty((2, n_sub))
    dummy = np.empty(n_sub + 1)
    for i in range(row_start, row_stop):
        _usable_cells(line, valid, i, col_start, col_stop, usable)
        _expand_cells(usable, shadowed[i], ecef[i], look[i], k, sub_usable, sub_dark, centre, look_sub)
        for a in range(k + 1):
            if a == 0 and i > row_start:
                _copy_rows(vertices[k], vertices[0])  # the previous row's bottom vertex row
            else:
                _vertex_row(ecef, line, sample, i - 0.5 + a / k, line0, sample0, left, weight, rows_tmp, vertices[a])
        # Facet geometry and contributions, sub-row by sub-row.
        for t in range(faces):
            for a in range(k):
                if exact:
                    _triangles(vertices[a], vertices[a + 1], t, centre, look_sub, sub_usable, sub_dark, contribution,
                               a0, a1, table[t, a])
                else:
                    _quads(vertices[a], vertices[a + 1], centre, look_sub, sub_usable, sub_dark, contribution, a0, a1,
                           table[t, a], position[a])
                if other_law:
                    _other_law(law, law_table, table[t, a])
        # Per-cell sums (area vector, sigma and gamma areas, contribution), through
        # per-sub-column partial sums: for the outputs, and to share user weights.
        if keep_sums or contribution == CONTRIBUTION_USER or contribution == CONTRIBUTION_CELL_LAW:
            for q in range(6):
                for b in range(n_sub):
                    per_sub[q, b] = 0.0
            for t in range(faces):
                for a in range(k):
                    row = table[t, a]
                    for b in range(n_sub):
                        per_sub[0, b] += row[_NX, b]
                        per_sub[1, b] += row[_NY, b]
                        per_sub[2, b] += row[_NZ, b]
                        per_sub[3, b] += row[_SIGMA, b]
                        per_sub[4, b] += max(row[_PROJECTED, b], 0.0)
                        per_sub[5, b] += row[_C, b]
            for j in range(cols):
                if not usable[j]:
                    continue
                ax = 0.0
                ay = 0.0
                az = 0.0
                cell_sigma = 0.0
                cell_gamma = 0.0
                cell_c = 0.0
                for b in range(j * k, j * k + k):
                    ax += per_sub[0, b]
                    ay += per_sub[1, b]
                    az += per_sub[2, b]
                    cell_sigma += per_sub[3, b]
                    cell_gamma += per_sub[4, b]
                    cell_c += per_sub[5, b]
                norm = math.sqrt(ax * ax + ay * ay + az * az)
                cos_cell = (ax * look[i, j, 0] + ay * look[i, j, 1] + az * look[i, j, 2]) / norm if norm > 0.0 else 0.0
                if contribution == CONTRIBUTION_USER and not shadowed[i, j]:
                    # The cell's weight shared among its facets that face the sensor.
                    share = user_weight[i, j] / cell_c if cell_c > 0.0 else 0.0
                    for t in range(faces):
                        for a in range(k):
                            for b in range(j * k, j * k + k):
                                table[t, a, _C, b] *= share
                    cell_c *= share
                elif contribution == CONTRIBUTION_CELL_LAW:
                    # Each lit facet its cell's class law of its own local incidence, times
                    # its sigma area and the cell's factor.
                    code = cell_class[i, j]
                    known = 0 <= code < class_tables.shape[0] and not shadowed[i, j]
                    cell_c = 0.0
                    for t in range(faces):
                        for a in range(k):
                            for b in range(j * k, j * k + k):
                                sigma = table[t, a, _SIGMA, b]
                                value = 0.0
                                if known and table[t, a, _C, b] != 0.0 and sigma > 0.0:
                                    value = user_weight[i, j] * _tabulated(table[t, a, _PROJECTED, b] / sigma,
                                                                           class_tables[code]) * sigma
                                table[t, a, _C, b] = value
                                cell_c += value
                if keep_sums:
                    sigma_area[i, j] = cell_sigma
                    gamma_area[i, j] = cell_gamma
                    contrib_cell[i, j] = cell_c
                    if norm > 0.0:
                        cos_local[i, j] = cos_cell
        if gather:
            for j in range(cols):
                energy[0, i, j] = 0.0
                energy[1, i, j] = 0.0
        if not exact:
            _bilinear_row(position, table, sub_usable, k, i, gather, flat, width, n_lines, n_samples, energy)
            continue
        # Scales of the triangles; slivers go as points.
        for t in range(2):
            for a in range(k):
                row = table[t, a]
                slivers = 0
                for b in range(n_sub):
                    area = row[_AREA, b]
                    c = row[_C, b]
                    g = row[_GAMMA, b]
                    sliver = abs(area) < SLIVER_AREA and (c != 0.0 or g != 0.0)
                    slivers += 1 if sliver else 0
                    inverse = 1.0 / area if area != 0.0 and not sliver else 0.0
                    scale[0, t, a, b + 1] = c * inverse
                    scale[1, t, a, b + 1] = g * inverse
                if slivers:
                    _slivers(vertices[a], vertices[a + 1], t, row, k, i, gather, flat, width, n_lines, n_samples,
                             energy)
        # The cut per row, by the size of its footprints measured here.
        wide = footprint_extent(vertices[0], vertices[1]) > WIDE_CUT_EXTENT
        if gather:
            _gather_row(vertices, scale, k, n_sub, i, i == row_start, h_int, v_int, d_int, per_sub, pieces, flat,
                        width, n_lines, n_samples, energy, dummy, wide)
        else:
            _scatter_row(vertices, scale, k, n_sub, top0, top1, net0, net1, pieces, flat, width, n_lines,
                         n_samples, dummy, wide)
    if exact and not gather:
        # The bottom vertex row of the last DEM row: walk what its triangles left there.
        bottom = vertices[k]
        _edges(bottom[3, :n_sub], bottom[4, :n_sub], bottom[3, 1:], bottom[4, 1:], n_sub, False, top0, top1,
               dummy, dummy, pieces, flat, width, n_lines, n_samples, footprint_extent(bottom, bottom) > WIDE_CUT_EXTENT)


@numba.njit(cache=True, nogil=True)
def _slivers(top, bottom, t, row, k, i, gather, flat, width, n_lines, n_samples, energy):
    """Triangles t of one sub-row (facet table ``row``) with footprints under
    ``SLIVER_AREA``: deposited as points at their centroid (scatter), or read there
    (gather, into their cell's energy)."""
    for b in range(row.shape[1]):
        c = row[_C, b]
        g = row[_GAMMA, b]
        if not (abs(row[_AREA, b]) < SLIVER_AREA and (c != 0.0 or g != 0.0)):
            continue
        if t == 0:
            lc = (top[3, b] + top[3, b + 1] + bottom[3, b + 1]) / 3.0
            sc = (top[4, b] + top[4, b + 1] + bottom[4, b + 1]) / 3.0
        else:
            lc = (top[3, b] + bottom[3, b + 1] + bottom[3, b]) / 3.0
            sc = (top[4, b] + bottom[4, b + 1] + bottom[4, b]) / 3.0
        p = _pixel_offset(lc, sc, n_lines, n_samples, width)
        if p < 0:
            continue
        if gather:
            value0, value1 = read_point(flat, p)
            energy[0, i, b // k] += c * value0
            energy[1, i, b // k] += g * value1
        else:
            deposit_point(flat, p, c, g)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _scatter_row(vertices, scale, k, n_sub, top0, top1, net0, net1, pieces, flat, width, n_lines, n_samples,
                 dummy, wide):
    """Walk the edges of one DEM row's triangles once each, with their net scales.

    ``scale`` (channel, t, a, b + 1): c / area and A_gamma / area of the row's triangles.
    ``top0``, ``top1`` hold on entry what the row above left on the H edges of this row's
    top vertex row, on exit what this row leaves on its bottom vertex row.
    """
    for a in range(k):
        upper = vertices[a]
        lower = vertices[a + 1]
        # H(a, b): +T0(a, b), -T1(a - 1, b) (carried in top).
        for b in range(n_sub):
            net0[b] = scale[0, 0, a, b + 1] + top0[b]
            net1[b] = scale[1, 0, a, b + 1] + top1[b]
        _edges(upper[3, :n_sub], upper[4, :n_sub], upper[3, 1:], upper[4, 1:], n_sub, False, net0, net1,
               dummy, dummy, pieces, flat, width, n_lines, n_samples, wide)
        # V(a, b): +T0 of the sub-quad to its left, -T1 of the one to its right.
        for b in range(n_sub + 1):
            net0[b] = scale[0, 0, a, b] - scale[0, 1, a, b + 1]
            net1[b] = scale[1, 0, a, b] - scale[1, 1, a, b + 1]
        _edges(upper[3], upper[4], lower[3], lower[4], n_sub + 1, False, net0, net1, dummy, dummy, pieces, flat,
               width, n_lines, n_samples, wide)
        # D(a, b): +T1 - T0 of the same sub-quad.
        for b in range(n_sub):
            net0[b] = scale[0, 1, a, b + 1] - scale[0, 0, a, b + 1]
            net1[b] = scale[1, 1, a, b + 1] - scale[1, 0, a, b + 1]
        _edges(upper[3, :n_sub], upper[4, :n_sub], lower[3, 1:], lower[4, 1:], n_sub, False, net0, net1, dummy,
               dummy, pieces, flat, width, n_lines, n_samples, wide)
        # What this sub-row's T1 leave on the H edges of vertex row a + 1.
        for b in range(n_sub):
            top0[b] = -scale[0, 1, a, b + 1]
            top1[b] = -scale[1, 1, a, b + 1]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _gather_row(vertices, scale, k, n_sub, i, first, h_int, v_int, d_int, per_sub, pieces, flat, width, n_lines,
                n_samples, energy, dummy, wide):
    """Integrate the ratio images over one DEM row's triangles, each edge walked once.

    ``h_int`` (channel, vertex row, b): integrals along the H edges; row 0 is carried from
    the row above (computed here when ``first``), row k is left for the row below.
    """
    if first:
        _edges(vertices[0, 3, :n_sub], vertices[0, 4, :n_sub], vertices[0, 3, 1:], vertices[0, 4, 1:], n_sub,
               True, dummy, dummy, h_int[0, 0], h_int[1, 0], pieces, flat, width, n_lines, n_samples, wide)
    else:
        _copy_rows(h_int[:, k], h_int[:, 0])
    for b in range(n_sub):
        per_sub[0, b] = 0.0
        per_sub[1, b] = 0.0
    for a in range(k):
        upper = vertices[a]
        lower = vertices[a + 1]
        _edges(lower[3, :n_sub], lower[4, :n_sub], lower[3, 1:], lower[4, 1:], n_sub, True, dummy, dummy,
               h_int[0, a + 1], h_int[1, a + 1], pieces, flat, width, n_lines, n_samples, wide)
        _edges(upper[3], upper[4], lower[3], lower[4], n_sub + 1, True, dummy, dummy, v_int[0], v_int[1], pieces,
               flat, width, n_lines, n_samples, wide)
        _edges(upper[3, :n_sub], upper[4, :n_sub], lower[3, 1:], lower[4, 1:], n_sub, True, dummy, dummy,
               d_int[0], d_int[1], pieces, flat, width, n_lines, n_samples, wide)
        for q in range(2):
            for b in range(n_sub):
                # The integrals over T0 and T1 from their boundaries, times their scales.
                t0 = h_int[q, a, b] + v_int[q, b + 1] - d_int[q, b]
                t1 = d_int[q, b] - h_int[q, a + 1, b] - v_int[q, b]
                per_sub[q, b] += scale[q, 0, a, b + 1] * t0 + scale[q, 1, a, b + 1] * t1
    for b in range(n_sub):
        j = b // k
        energy[0, i, j] += per_sub[0, b]
        energy[1, i, j] += per_sub[1, b]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _bilinear_row(position, table, sub_usable, k, i, gather, flat, width, n_lines, n_samples, energy):
    """Bilinear splatting (or gathering) at the centre of each sub-quad of one DEM row:
    weights on the four nearest pixel centres; positions whose four pixels lie off the
    image go to the padding (deposited there, read as 0)."""
    n_sub = sub_usable.shape[0]
    last_row = float(n_lines)
    last_col = float(n_samples)
    pad = float(PAD)
    for a in range(k):
        for b in range(n_sub):
            if not sub_usable[b]:
                continue
            lc = position[a, 0, b] - 0.5
            sc = position[a, 1, b] - 0.5
            r0 = math.floor(lc)
            c0 = math.floor(sc)
            wl = lc - r0
            ws = sc - c0
            r0 = -2.0 if r0 < -1.0 else (last_row if r0 > last_row - 1.0 else r0)
            c0 = -2.0 if c0 < -1.0 else (last_col if c0 > last_col - 1.0 else c0)
            p = np.uint64((r0 + pad) * width + (c0 + pad)) * _U2
            below = p + np.uint64(width) * _U2
            w00 = (1.0 - wl) * (1.0 - ws)
            w01 = (1.0 - wl) * ws
            w10 = wl * (1.0 - ws)
            w11 = wl * ws
            if gather:
                v0 = w00 * flat[p] + w01 * flat[p + _U2] + w10 * flat[below] + w11 * flat[below + _U2]
                v1 = (w00 * flat[p + _U1] + w01 * flat[p + _U1 + _U2] + w10 * flat[below + _U1]
                      + w11 * flat[below + _U1 + _U2])
                energy[0, i, b // k] += table[0, a, _C, b] * v0
                energy[1, i, b // k] += table[0, a, _GAMMA, b] * v1
            else:
                c = table[0, a, _C, b]
                g = table[0, a, _GAMMA, b]
                flat[p] += c * w00
                flat[p + _U1] += g * w00
                flat[p + _U2] += c * w01
                flat[p + _U2 + _U1] += g * w01
                flat[below] += c * w10
                flat[below + _U1] += g * w10
                flat[below + _U2] += c * w11
                flat[below + _U2 + _U1] += g * w11


# --------------------------------------------------------------------------- radar buffers

@numba.njit(cache=True, nogil=True)
def add_tile(acc, exact, out, line_offset, sample_offset):
    """Add the pixel images of a tile's scatter buffer ``acc`` to the radar buffer ``out``
    of the window, the tile's pixel (0, 0) at its pixel (``line_offset``,
    ``sample_offset``). Exact projection (``scatter_buffer_shape``): pixel c of channel q
    gets v f at c plus the v of every column right of it, the padding included (the
    difference sums of Green's theorem); bilinear buffers hold the images."""
    add_tile_rows(acc, exact, out, line_offset, sample_offset, 0, acc.shape[0] - 2 * PAD)


@numba.njit(cache=True, nogil=True)
def add_tile_rows(acc, exact, out, line_offset, sample_offset, row_start, row_stop):
    """:func:`add_tile` for the tile's pixel rows ``row_start:row_stop`` alone: each row is
    added on its own, so that tiles may add different lines of ``out`` at once (one lock
    per band of lines instead of one for the whole buffer)."""
    n_cols = acc.shape[1] - 2 * PAD
    for r in range(max(row_start, 0), min(row_stop, acc.shape[0] - 2 * PAD)):
        target = out[line_offset + r + PAD]
        source = acc[r + PAD]
        if exact:
            right0 = 0.0
            right1 = 0.0
            for c in range(acc.shape[1] - 1, PAD + n_cols - 1, -1):
                right0 += source[c, 0]
                right1 += source[c, 1]
            for c in range(PAD + n_cols - 1, PAD - 1, -1):
                column = sample_offset + c
                target[column, 0] += source[c, 2] + right0
                target[column, 1] += source[c, 3] + right1
                right0 += source[c, 0]
                right1 += source[c, 1]
        else:
            for c in range(PAD, PAD + n_cols):
                target[sample_offset + c, 0] += source[c, 0]
                target[sample_offset + c, 1] += source[c, 1]


@numba.njit(cache=True, nogil=True, inline="always")
def _vertex_at(line, sample, valid, rho, kappa, extent):
    """Widen ``extent`` (smallest line, largest line, smallest sample, largest sample) by
    the facet vertex at fractional DEM row ``rho`` and column ``kappa``, interpolated
    (extrapolated beyond the outermost centres) from the four centres ``_vertex_row``
    takes; none where one of them is void (the vertex is NaN there too)."""
    rows, cols = line.shape
    i0 = min(max(int(math.floor(rho)), 0), rows - 2)
    j0 = min(max(int(math.floor(kappa)), 0), cols - 2)
    if not (valid[i0, j0] and valid[i0 + 1, j0] and valid[i0, j0 + 1] and valid[i0 + 1, j0 + 1]):
        return
    wr = rho - i0
    w = kappa - j0
    lv = ((1.0 - w) * ((1.0 - wr) * line[i0, j0] + wr * line[i0 + 1, j0])
          + w * ((1.0 - wr) * line[i0, j0 + 1] + wr * line[i0 + 1, j0 + 1]))
    sv = ((1.0 - w) * ((1.0 - wr) * sample[i0, j0] + wr * sample[i0 + 1, j0])
          + w * ((1.0 - wr) * sample[i0, j0 + 1] + wr * sample[i0 + 1, j0 + 1]))
    if lv == lv and sv == sv:
        extent[0] = min(extent[0], lv)
        extent[1] = max(extent[1], lv)
        extent[2] = min(extent[2], sv)
        extent[3] = max(extent[3], sv)


@numba.njit(cache=True, nogil=True)
def facet_extent(line, sample, valid, top, bottom, left, right):
    """``facet_extent_rows`` over all the rows of a block of cells (see there)."""
    return facet_extent_rows(line, sample, valid, 0, line.shape[0], top, bottom, left, right)


@numba.njit(cache=True, nogil=True)
def facet_extent_rows(line, sample, valid, row_start, row_stop, top, bottom, left, right):
    """The extent in the image of the facets of a block of cells: (smallest line, largest
    line, smallest sample, largest sample) over their vertices; NaN where no cell is valid.

    Between cell centres the vertices interpolate bilinearly: they lie within the extremes
    of the centres. At the DEM's border they are extrapolated half a cell beyond the
    outermost centres (``_column_weights``, ``_vertex_row``): half a neighbour step along
    an edge's normal, at a corner half a step along both axes, so that an edge cell's
    footprint reaches past the centres by up to a whole cell step (several pixels where
    cells are larger than pixels, or foreshortened). ``top``, ``bottom``, ``left``,
    ``right``: whether the block's first row, last row, first column, last column is the
    DEM's border (elsewhere a block's edge is a halo of neighbours, between whose centres
    its own cells' vertices lie). Along the border the upsampled grid is bilinear in (row,
    column) between the centres' rows and columns, so its extremes are the extrapolated
    vertices at those rows and columns and at the corners. Cells that are not valid, or
    whose position is not finite, are void.

    Only the vertices of rows ``row_start:row_stop`` (the border's above the first row
    and below the last where the range holds them) are taken, each computed as over the
    whole block: the extents of a partition of the rows (threads) combine, by their
    extremes, into the whole block's, bit for bit.
    """
    rows, cols = line.shape
    extent = np.array([math.inf, -math.inf, math.inf, -math.inf])
    for i in range(row_start, row_stop):
        for j in range(cols):
            lv = line[i, j]
            sv = sample[i, j]
            if valid[i, j] and lv == lv and sv == sv:
                extent[0] = min(extent[0], lv)
                extent[1] = max(extent[1], lv)
                extent[2] = min(extent[2], sv)
                extent[3] = max(extent[3], sv)
    if extent[0] > extent[1]:
        return math.nan, math.nan, math.nan, math.nan
    if rows >= 2 and cols >= 2:
        for edge in range(2):
            if not (top if edge == 0 else bottom) or not (row_start == 0 if edge == 0 else row_stop == rows):
                continue
            rho = -0.5 if edge == 0 else rows - 0.5
            for j in range(-1, cols + 1):
                if (j < 0 and not left) or (j == cols and not right):
                    continue
                _vertex_at(line, sample, valid, rho, -0.5 if j < 0 else (cols - 0.5 if j == cols else float(j)),
                           extent)
        for edge in range(2):
            if not (left if edge == 0 else right):
                continue
            kappa = -0.5 if edge == 0 else cols - 0.5
            for i in range(row_start, row_stop):
                _vertex_at(line, sample, valid, float(i), kappa, extent)
    return extent[0], extent[1], extent[2], extent[3]


@numba.njit(cache=True, nogil=True)
def prefix_buffer(images, row_start, row_stop, exact, buffer):
    """Fill rows ``row_start:row_stop`` of the radar buffer ``buffer`` from the images
    (2, lines, samples) for gathering: exact projection, their inclusive row prefix sums
    (0 left of the image, the row's sum right of it); bilinear, the images (0 around).
    The padding rows above and below the image are cleared with the first and last rows."""
    n_lines = images.shape[1]
    n_samples = images.shape[2]
    width = buffer.shape[1]
    for r in range(row_start, row_stop):
        for q in range(2):
            running = 0.0
            for c in range(PAD):
                buffer[r + PAD, c, q] = 0.0
            for c in range(n_samples):
                value = images[q, r, c]
                running += value
                buffer[r + PAD, c + PAD, q] = running if exact else value
            for c in range(PAD + n_samples, width):
                buffer[r + PAD, c, q] = running if exact else 0.0
    if row_start == 0:
        for r in range(PAD):
            buffer[r] = 0.0
    if row_stop == n_lines:
        for r in range(PAD + n_lines, buffer.shape[0]):
            buffer[r] = 0.0


@numba.njit(cache=True, nogil=True)
def polynomial_field(row_terms, column_terms, row_start, row_stop, out):
    """A separable polynomial field, rows ``row_start:row_stop``: ``out[r, c] = sum over k
    of row_terms[k, r] * column_terms[k, c]``, summed in the order of k (as the numpy
    accumulation it replaces, term after term: the same values to the bit)."""
    terms = row_terms.shape[0]
    for r in range(row_start, row_stop):
        for c in range(out.shape[1]):
            total = 0.0
            for k in range(terms):
                total += row_terms[k, r] * column_terms[k, c]
            out[r, c] = total


@numba.njit(cache=True, nogil=True)
def per_pixel_area(image, pixel_area, row_start, row_stop, out):
    """``image / pixel_area`` as float32 into ``out``, NaN where the pixel area is not
    positive (or NaN), rows ``row_start:row_stop``: one pass, no temporaries."""
    for r in range(row_start, row_stop):
        for c in range(image.shape[1]):
            area = pixel_area[r, c]
            out[r, c] = image[r, c] / area if area > 0.0 else np.nan


@numba.njit(cache=True, nogil=True)
def valid_pixels(gamma_image, flat_gamma_area, fraction, row_start, row_stop, out):
    """Whether the simulated gamma area reaches ``fraction`` of flat terrain's, rows
    ``row_start:row_stop``, as ``numpy.nan_to_num(gamma) >= fraction *
    numpy.nan_to_num(flat, nan=inf)`` in one pass: a NaN image counts as 0, a NaN flat
    area as unreachable, infinities as the largest finite values."""
    big = np.finfo(np.float64).max
    for r in range(row_start, row_stop):
        for c in range(gamma_image.shape[1]):
            g = gamma_image[r, c]
            g = 0.0 if g != g else min(max(g, -big), big)
            f = flat_gamma_area[r, c]
            f = math.inf if f != f else min(max(f, -big), big)
            out[r, c] = g >= fraction * f


@numba.njit(cache=True, nogil=True)
def radar_products(images, area_rows, area_columns, flat_rows, flat_columns, fraction, row_start, row_stop,
                   simulated_area, simulated_gamma_area, pixel_area, valid):
    """The radar outputs of a simulation, rows ``row_start:row_stop``, in one pass over the
    pixels, each pixel's pixel area and flat-terrain gamma area evaluated where it is used
    (no whole-image field): the same values to the bit as ``polynomial_field`` of the two
    fields followed by ``per_pixel_area`` of both images, the pixel area as float32 and
    ``valid_pixels``.

    Parameters
    ----------
    images : (2, lines, samples) simulated sums: sum w c, sum w A_gamma (m^2).
    area_rows, area_columns : the pixel area (m^2) as ``polynomial_field``'s row and
        column terms (a NaN row term where nothing was fitted).
    flat_rows, flat_columns : the flat-terrain gamma area a_p cot(theta) (m^2), likewise.
    fraction : validity threshold, a fraction of the flat-terrain gamma area.
    simulated_area, simulated_gamma_area : (lines, samples) float32 out: the sums over
        the pixel area, NaN where it is not positive (or NaN).
    pixel_area : (lines, samples) float32 out: the pixel area (m^2).
    valid : (lines, samples) bool out: gamma area at least ``fraction`` of flat terrain's.
    """
    big = np.finfo(np.float64).max
    n_samples = images.shape[2]
    # The fields of a line, term after term along the line (SIMD lanes over the samples;
    # each pixel's sum still in the order of the terms).
    area_line = np.empty(n_samples)
    flat_line = np.empty(n_samples)
    for r in range(row_start, row_stop):
        area_line[:] = 0.0
        for k in range(area_rows.shape[0]):
            term = area_rows[k, r]
            for c in range(n_samples):
                area_line[c] += term * area_columns[k, c]
        flat_line[:] = 0.0
        for k in range(flat_rows.shape[0]):
            term = flat_rows[k, r]
            for c in range(n_samples):
                flat_line[c] += term * flat_columns[k, c]
        for c in range(n_samples):
            area = area_line[c]
            flat = flat_line[c]
            pixel_area[r, c] = area
            positive = area > 0.0
            simulated_area[r, c] = images[0, r, c] / area if positive else np.nan
            gamma = images[1, r, c]
            simulated_gamma_area[r, c] = gamma / area if positive else np.nan
            g = 0.0 if gamma != gamma else min(max(gamma, -big), big)
            f = math.inf if flat != flat else min(max(flat, -big), big)
            valid[r, c] = g >= fraction * f


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


#: Sub-points per quadrant side of ``layover_facing_share`` (n x n per quadrant, 4 n^2 per cell).
FACING_SUBPOINTS = 4


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _quadrant_reversing(l00, l10, l01, l11, s00, s10, s01, s11, sign):
    """Of one quadrant's ``FACING_SUBPOINTS`` x ``FACING_SUBPOINTS`` sub-points, how many
    are range-reversing. (l, s)00 is the cell's own value, 10 the mid-edge towards the
    row neighbour, 01 towards the column neighbour, 11 the corner; ``sign``: the
    orientation of flat terrain times the quadrant's row and column directions. Scalars
    only: an array argument is reference-counted per call, which cost more than the
    count itself."""
    n = FACING_SUBPOINTS
    # The determinant is bilinear in (a, b) (la, sa follow b alone, lb, sb a alone), so
    # over the quadrant it lies between its corner values: where all four share a sign
    # by far more than rounding, every sub-point has it too. (The sub-points' own
    # rounding is ~1e-16 of ``bound`` / 1e-12: the counts are the loop's to the point.)
    d00 = sign * ((l10 - l00) * (s01 - s00) - (l01 - l00) * (s10 - s00))
    d10 = sign * ((l10 - l00) * (s11 - s10) - (l11 - l10) * (s10 - s00))
    d01 = sign * ((l11 - l01) * (s01 - s00) - (l01 - l00) * (s11 - s01))
    d11 = sign * ((l11 - l01) * (s11 - s10) - (l11 - l10) * (s11 - s01))
    bound = 1e-12 * (max(abs(l10 - l00), abs(l11 - l01)) * max(abs(s01 - s00), abs(s11 - s10))
                     + max(abs(l01 - l00), abs(l11 - l10)) * max(abs(s10 - s00), abs(s11 - s01)))
    # Each corner compared on its own: min and max would pass over a NaN one.
    if d00 > bound and d10 > bound and d01 > bound and d11 > bound:
        return 0
    if d00 < -bound and d10 < -bound and d01 < -bound and d11 < -bound:
        return n * n
    reversing = 0
    for p in range(n):
        a = (p + 0.5) / n
        for q in range(n):
            b = (q + 0.5) / n
            la = (1.0 - b) * (l10 - l00) + b * (l11 - l01)
            lb = (1.0 - a) * (l01 - l00) + a * (l11 - l10)
            sa = (1.0 - b) * (s10 - s00) + b * (s11 - s01)
            sb = (1.0 - a) * (s01 - s00) + a * (s11 - s10)
            if sign * (la * sb - lb * sa) < 0.0:
                reversing += 1
    return reversing


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _facing_row(line, sample, valid, orientation, i, reversing, sampled):
    """Of each cell's footprint sub-points in row ``i`` (``layover_facing_share``), how
    many are range-reversing and how many are sampled, into ``reversing`` and
    ``sampled`` (cols,) int64; both 0 where the cell is void.

    Each quadrant runs from the cell centre to its mid-edge and corner values (means of
    the cells around them) on the bilinear surface, and is sampled only where all four
    of its cells are valid.
    """
    rows, cols = line.shape
    n = FACING_SUBPOINTS
    for j in range(cols):
        reversing[j] = 0
        sampled[j] = 0
        if not valid[i, j]:
            continue
        l00 = line[i, j]
        s00 = sample[i, j]
        for quadrant in range(4):
            dr = -1 if quadrant < 2 else 1
            dc = -1 if quadrant % 2 == 0 else 1
            i1 = i + dr
            j1 = j + dc
            if i1 < 0 or i1 >= rows or j1 < 0 or j1 >= cols:
                continue
            if not (valid[i1, j] and valid[i, j1] and valid[i1, j1]):
                continue
            l10 = 0.5 * (l00 + line[i1, j])
            l01 = 0.5 * (l00 + line[i, j1])
            l11 = 0.25 * (l00 + line[i1, j] + line[i, j1] + line[i1, j1])
            s10 = 0.5 * (s00 + sample[i1, j])
            s01 = 0.5 * (s00 + sample[i, j1])
            s11 = 0.25 * (s00 + sample[i1, j] + sample[i, j1] + sample[i1, j1])
            # (a, b) in [0, 1]^2 from the centre towards row i + dr / 2 and column
            # j + dc / 2: rows and columns run dr / 2 and dc / 2 per unit of a, b.
            reversing[j] += _quadrant_reversing(l00, l10, l01, l11, s00, s10, s01, s11, orientation * dr * dc)
            sampled[j] += n * n


@numba.njit(cache=True, nogil=True)
def layover_facing_share(line, sample, valid, orientation, row_start, row_stop, out):
    """The share of each cell's own footprint that is range-reversing, rows ``row_start:row_stop``.

    A surface is range-reversing (it faces the radar in layover) where moving away from
    the sensor in ground range along it, in its zero-Doppler plane, brings it closer:
    the slant range falls along the curve of constant radar line. Along that curve the
    sample changes as the Jacobian determinant det d(line, sample) / d(row, column) (the
    derivative of the sample along the direction (-d line / d column, d line / d row)),
    so a point is range-reversing where the determinant's sign is the opposite of flat
    terrain's, ``orientation`` (+1 or -1).

    The footprint is the square of half a cell around the cell centre on the bilinear
    surface through the cells' (line, sample) (mid-edge and corner values the means of
    the cells around them), in four quadrants; each quadrant whose four cells are valid
    is sampled at ``FACING_SUBPOINTS`` x ``FACING_SUBPOINTS`` sub-points. ``out`` (rows,
    cols) float32 gets the share of the sampled sub-points that are range-reversing, NaN
    where the cell is void or no quadrant is sampled (a DEM of one cell).
    """
    cols = line.shape[1]
    reversing = np.empty(cols, dtype=np.int64)
    sampled = np.empty(cols, dtype=np.int64)
    for i in range(row_start, row_stop):
        _facing_row(line, sample, valid, orientation, i, reversing, sampled)
        for j in range(cols):
            out[i, j] = reversing[j] / sampled[j] if sampled[j] else np.nan


@numba.njit(cache=True, nogil=True)
def active_layover(line, sample, valid, orientation, row_start, row_stop, out):
    """Whether each cell is in active layover, rows ``row_start:row_stop``: more than half
    of its own footprint range-reversing (``layover_facing_share`` > 1/2; counts compared
    in integers, so that the flag is exactly the share's), into ``out`` (rows, cols) bool;
    False where the cell is void or no quadrant is sampled."""
    cols = line.shape[1]
    reversing = np.empty(cols, dtype=np.int64)
    sampled = np.empty(cols, dtype=np.int64)
    for i in range(row_start, row_stop):
        _facing_row(line, sample, valid, orientation, i, reversing, sampled)
        for j in range(cols):
            out[i, j] = 2 * reversing[j] > sampled[j]
