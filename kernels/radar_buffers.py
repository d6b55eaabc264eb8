"""Radar buffers of the facet kernels (:mod:`facets`) and the passes over their pixels.

A radar buffer (``radar_buffer_shape``) holds the two channels of each pixel side by side,
(lines + 2 PAD, samples + 2 PAD, 2), pixel (r, c) at [r + PAD, c + PAD]; a tile scatters
into a buffer of four values per pixel for exact projection (``scatter_buffer_shape``),
added to the window's by ``add_tile``. The passes here run over pixels or cells, not
facets: the extent of the cells' footprints in the image (the window a DEM needs), the
row prefix sums the exact gather reads (``prefix_buffer``), and the per-pixel products of
a simulation (areas, valid pixels, smooth polynomial fields).
"""

import math

import numba
import numpy as np

#: Padding of radar buffers on every side, in pixels.
PAD = 2



def radar_buffer_shape(n_lines: int, n_samples: int) -> tuple[int, int, int]:
    """Shape of a radar buffer of ``n_lines`` x ``n_samples`` pixels with its padding."""
    return (n_lines + 2 * PAD, n_samples + 2 * PAD, 2)


def scatter_buffer_shape(n_lines: int, n_samples: int, exact: bool) -> tuple[int, int, int]:
    """Shape of the buffer a tile scatters into: for exact projection four values per
    pixel, v of both channels and v f of both (``add_tile`` turns them into images); a
    radar buffer for bilinear. Each piece adds to one pixel's 32 contiguous bytes."""
    return (n_lines + 2 * PAD, n_samples + 2 * PAD, 4 if exact else 2)




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
