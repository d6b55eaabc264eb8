"""Which way DEM cells face the sensor: cells whose surface faces away from it (active
shadow, ``faces_away``) and the share of a cell's footprint that reverses in range
(active layover, ``layover_facing_share`` and ``active_layover``), for the masks of
:mod:`visibility`.
"""

import numba
import numpy as np


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
