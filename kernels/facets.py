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
geometry and contributions (:mod:`facet_table`), net scales, and the cutting of every edge into its pieces
(``_cut_narrow``: at most three pieces, an edge crossing at most one row and one column
border; ``_cut_wide``, for footprints larger than a pixel: at most five, two row and two
column borders; the longer ones are flagged and walked one by one, ``_walk_long``). Only
the deposits into (scatter) or reads from (gather) the radar buffer go piece by piece, and they have no branches
either: a piece
off the image is moved to the buffer's padding.

Radar buffers (:mod:`radar_buffers`, ``radar_buffer_shape``) hold the two channels of each pixel side by side,
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

from .facet_table import (
    CONTRIBUTION_CELL_LAW,
    CONTRIBUTION_MODEL,
    CONTRIBUTION_USER,
    FACET_ROWS,
    ROW_AREA,
    ROW_CONTRIBUTION,
    ROW_GAMMA,
    ROW_NX,
    ROW_NY,
    ROW_NZ,
    ROW_PROJECTED,
    ROW_SIGMA,
    column_weights,
    copy_rows,
    expand_cells,
    law_contributions,
    quad_facets,
    tabulated,
    triangle_facets,
    usable_cells,
    vertex_row,
)
from .projection import edge_crossings
from .radar_buffers import PAD

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
    (``vertex_row``; (5, n_sub + 1), L and S in rows 3 and 4): per sub-quad the larger of
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
    left, weight = column_weights(k, cols)
    rows_tmp = np.empty((5, cols))
    vertices = np.empty((k + 1, 5, n_sub + 1))
    usable = np.empty(cols, dtype=np.bool_)
    sub_usable = np.empty(n_sub, dtype=np.bool_)
    sub_dark = np.empty(n_sub, dtype=np.bool_)
    centre = np.empty((3, n_sub))
    look_sub = np.empty((3, n_sub))
    # The facet table of the DEM row: (t, a, row, b).
    table = np.empty((faces, k, FACET_ROWS, n_sub))
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
        usable_cells(line, valid, i, col_start, col_stop, usable)
        expand_cells(usable, shadowed[i], ecef[i], look[i], k, sub_usable, sub_dark, centre, look_sub)
        for a in range(k + 1):
            if a == 0 and i > row_start:
                copy_rows(vertices[k], vertices[0])  # the previous row's bottom vertex row
            else:
                vertex_row(ecef, line, sample, i - 0.5 + a / k, line0, sample0, left, weight, rows_tmp, vertices[a])
        # Facet geometry and contributions, sub-row by sub-row.
        for t in range(faces):
            for a in range(k):
                if exact:
                    triangle_facets(vertices[a], vertices[a + 1], t, centre, look_sub, sub_usable, sub_dark,
                                    contribution, a0, a1, table[t, a])
                else:
                    quad_facets(vertices[a], vertices[a + 1], centre, look_sub, sub_usable, sub_dark, contribution,
                                a0, a1, table[t, a], position[a])
                if other_law:
                    law_contributions(law, law_table, table[t, a])
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
                        per_sub[0, b] += row[ROW_NX, b]
                        per_sub[1, b] += row[ROW_NY, b]
                        per_sub[2, b] += row[ROW_NZ, b]
                        per_sub[3, b] += row[ROW_SIGMA, b]
                        per_sub[4, b] += max(row[ROW_PROJECTED, b], 0.0)
                        per_sub[5, b] += row[ROW_CONTRIBUTION, b]
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
                                table[t, a, ROW_CONTRIBUTION, b] *= share
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
                                sigma = table[t, a, ROW_SIGMA, b]
                                value = 0.0
                                if known and table[t, a, ROW_CONTRIBUTION, b] != 0.0 and sigma > 0.0:
                                    value = user_weight[i, j] * tabulated(table[t, a, ROW_PROJECTED, b] / sigma,
                                                                           class_tables[code]) * sigma
                                table[t, a, ROW_CONTRIBUTION, b] = value
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
                    area = row[ROW_AREA, b]
                    c = row[ROW_CONTRIBUTION, b]
                    g = row[ROW_GAMMA, b]
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
               dummy, dummy, pieces, flat, width, n_lines, n_samples,
               footprint_extent(bottom, bottom) > WIDE_CUT_EXTENT)


@numba.njit(cache=True, nogil=True)
def _slivers(top, bottom, t, row, k, i, gather, flat, width, n_lines, n_samples, energy):
    """Triangles t of one sub-row (facet table ``row``) with footprints under
    ``SLIVER_AREA``: deposited as points at their centroid (scatter), or read there
    (gather, into their cell's energy)."""
    for b in range(row.shape[1]):
        c = row[ROW_CONTRIBUTION, b]
        g = row[ROW_GAMMA, b]
        if not (abs(row[ROW_AREA, b]) < SLIVER_AREA and (c != 0.0 or g != 0.0)):
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
        copy_rows(h_int[:, k], h_int[:, 0])
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
                energy[0, i, b // k] += table[0, a, ROW_CONTRIBUTION, b] * v0
                energy[1, i, b // k] += table[0, a, ROW_GAMMA, b] * v1
            else:
                c = table[0, a, ROW_CONTRIBUTION, b]
                g = table[0, a, ROW_GAMMA, b]
                flat[p] += c * w00
                flat[p + _U1] += g * w00
                flat[p + _U2] += c * w01
                flat[p + _U2 + _U1] += g * w01
                flat[below] += c * w10
                flat[below + _U1] += g * w10
                flat[below + _U2] += c * w11
                flat[below + _U2 + _U1] += g * w11
