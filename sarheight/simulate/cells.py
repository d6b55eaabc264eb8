"""Where the DEM's cells fall in the radar image: their zero-Doppler geometry (line,
sample, look), the oversampling a DEM's steps need, the visibility (layover and shadow)
per zero-Doppler line, the radar window a DEM covers, the blocks and buffers of a run.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

from .. import compute as door
from ..compute import Compute
from ..dem import geodetic_coordinates
from ..errors import GeometryError, InvalidInputError
from ..geometry import RadarGeometry, RadarWindow
from ..masks import kernel_codes
from ..threads import BLOCK_CELLS, block_count, run_blocks


def oversample_factor(oversample: Any, projection: str, dem: xr.DataArray, cells: dict) -> int:
    if oversample != "auto":
        return int(oversample)
    if projection == "exact":
        return 2
    return bilinear_oversample(cell_steps(cells, step_stride(cells["valid"].shape)))


def check_oversample(oversample: Any) -> None:
    """Refuse an ``oversample`` that is neither ``"auto"`` nor an integer 1..16 (the caller
    handles ``"auto"``)."""
    if not isinstance(oversample, (int, np.integer)) or not 1 <= int(oversample) <= 16:
        raise InvalidInputError(f"oversample must be 'auto' or an integer 1..16, got {oversample!r}")


#: Cell pairs whose steps decide the bilinear oversampling (a median: a sample suffices).
STEP_SAMPLES = 2**18


def step_stride(shape: tuple[int, int], samples: int = STEP_SAMPLES) -> int:
    """Stride along rows and columns for about ``samples`` cell pairs of a DEM of ``shape``."""
    return max(1, math.isqrt(shape[0] * shape[1] // samples))


def neighbour_pairs(axis: int, stride: int, n_rows: int, start: int = 0,
                    stop: int | None = None) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Index pairs (first, second) of neighbouring cells along ``axis`` (0: rows, 1:
    columns), from every ``stride``-th row (rows ``start:stop`` of ``n_rows``; the
    neighbour below may lie beyond ``stop``) and every ``stride``-th column: the sample
    of cell pairs that the median steps of the cells are taken from."""
    stop = n_rows if stop is None else stop
    if axis == 0:
        last = min(stop, n_rows - 1)
        return ((slice(start, last, stride), slice(None, None, stride)),
                (slice(start + 1, last + 1, stride), slice(None, None, stride)))
    return ((slice(start, stop, stride), slice(0, -1, stride)), (slice(start, stop, stride), slice(1, None, stride)))


def cell_steps(cells: dict[str, np.ndarray], stride: int, first_row: int = 0,
               rows: tuple[int, int] | None = None) -> list[np.ndarray]:
    """|d line| and |d sample| from a valid cell to the next valid one along columns and
    along rows: [line along y, sample along y, line along x, sample along x].

    From the cells on DEM rows r with r % stride == 0 and every ``stride``-th column;
    ``first_row``: the DEM row of ``cells``' first row, ``rows``: the local rows whose
    pairs are taken (the next row may lie beyond them): blocks of rows with one row of
    halo take, together, the same pairs as the whole DEM.
    """
    valid = cells["valid"]
    start, stop = rows if rows is not None else (0, valid.shape[0])
    start += (-(first_row + start)) % stride
    out = []
    for axis in (0, 1):
        first, second = neighbour_pairs(axis, stride, valid.shape[0], start, stop)
        both = valid[first] & valid[second]
        for name in ("line", "sample"):
            out.append(np.abs(cells[name][second] - cells[name][first])[both])
    return out


def bilinear_oversample(steps: list[np.ndarray]) -> int:
    """Sub-quads per cell side for bilinear splatting, from ``cell_steps``.

    A typical facet (the median cell step) spans at most about half a pixel; k >= 2.
    Not sized for the largest steps: on back-slopes facets stretch to ~2 pixels in range,
    and sizing k for them (the 95th percentile: k = 4 on a 10 m DEM with 10 m pixels, RMS
    slope 0.5) quadrupled the cost without changing the error against the exact
    projection (median 0.05, 95th percentile 0.33 of the pixel area at k = 2, 3 and 4):
    that error comes from splatting a centre, not from the facet's size (k = 1: 0.19 and
    0.69).
    """
    extent = max((float(np.median(step)) for step in steps if step.size), default=0.0)
    return int(min(16, max(2, math.ceil(2.0 * extent))))


def rows_run_along_track(line: np.ndarray) -> bool:
    """Whether the zero-Doppler line changes more along DEM rows' axis (y) than along x
    (median steps over about ``STEP_SAMPLES`` cell pairs)."""
    stride = step_stride(line.shape)
    steps = []
    for axis in (0, 1):
        first, second = neighbour_pairs(axis, stride, line.shape[0])
        step = np.abs(line[second] - line[first])
        step = step[np.isfinite(step)]
        steps.append(float(np.median(step)) if step.size else 0.0)
    return not steps[1] > steps[0]


def visibility_masks(cells: dict[str, np.ndarray], faces_away: np.ndarray, own_layover: np.ndarray,
                     window: RadarWindow, *, transpose: bool | None = None,
                     range_tolerance: float | None = None, judged: np.ndarray | None = None,
                     every_line: bool = True, compute: Compute | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layover/shadow masks of the cells, each in its own zero-Doppler plane, and the mixing
    of the window's pixels (:func:`sarheight.compute.visibility_masks`).

    Every valid cell gets a code (:class:`~sarheight.masks.MaskCode`): active layover
    where ``own_layover`` (its own surface lays over, :func:`active_layover`), active
    shadow where ``faces_away``, passive where other terrain overlays or shadows it in its
    own plane; no passive code where no line of ``window`` brackets it. The caller marks
    the cells outside the image. Only the lines of ``window`` have profiles, so
    a block's masks equal the in-memory ones where its window holds the lines around its
    cells (``distributed``). ``judged``: judge only these cells (the others lend their
    points to the profiles); needs rows along track. ``every_line`` False: only the
    lines that bound the sweep's groups are cut, and the lines between take the mixing of
    the nearer of them (the sweep's ``every_line``; the masks
    are the same; each line's mixing is that of the bounding line nearest to it, at most
    half a group away). ``compute``: where the sweep runs (:func:`sarheight.compute.compute_for`).
    """
    names = ("line", "sample", "slant_range", "look_angle", "cross_track")
    arrays = [cells[name] for name in names] + [faces_away, own_layover, cells["valid"]]
    # Profiles cut DEM columns along track: put the axis along which lines change most first.
    if transpose is None:
        transpose = not rows_run_along_track(cells["line"])
    if transpose and judged is not None:
        raise InvalidInputError("masks of a selection of cells need rows along track")
    if transpose:
        arrays = [np.ascontiguousarray(a.T) for a in arrays]
    tolerance = 0.05 * slant_range_spacing(cells) if range_tolerance is None else range_tolerance
    layover, shadow, mixing = door.visibility_masks(
        door.ProfileCells(*arrays), tuple(window), range_tolerance=tolerance,  # type: ignore[arg-type]
        codes=kernel_codes(), judged=judged, every_line=every_line, compute=compute)
    if transpose:
        layover, shadow = np.ascontiguousarray(layover.T), np.ascontiguousarray(shadow.T)
    return layover, shadow, mixing


def flat_orientation(cells: dict[str, np.ndarray], geometry: RadarGeometry, samples: int = 64) -> int:
    """The sign (+1 or -1) of the Jacobian determinant d(line, sample) / d(row, column) of
    terrain that is not range-reversing, for the cells' grid under ``geometry``.

    Each of up to ``samples`` valid cells (an even subset) is mapped with its row and
    column neighbours' positions at its own height: a level patch of the grid, which
    never reverses range; the sign is the median's (all agree, barring rounding on a
    degenerate grid). The terrain itself plays no part, so a DEM that is mostly layover
    gets the same sign as any other on its grid, and blocks of one DEM agree. +1 where
    no cell has both neighbours valid.
    """
    lon, lat, height, valid = cells["lon"], cells["lat"], cells["height"], cells["valid"]
    if min(valid.shape) < 2:
        return 1
    i, j = evenly_chosen(valid[:-1, :-1], samples)
    if i.size == 0:
        return 1
    at = (np.stack([i, i + 1, i], axis=1), np.stack([j, j, j + 1], axis=1))
    level = np.repeat(np.asarray(height[i, j], dtype=np.float64)[:, None], 3, axis=1)
    patch = cell_geometry_arrays(np.ascontiguousarray(np.broadcast_to(lon, valid.shape)[at]),
                                 np.ascontiguousarray(np.broadcast_to(lat, valid.shape)[at]), level, geometry,
                                 own_surface=False)
    line, sample = patch["line"], patch["sample"]
    determinant = ((line[:, 1] - line[:, 0]) * (sample[:, 2] - sample[:, 0])
                   - (line[:, 2] - line[:, 0]) * (sample[:, 1] - sample[:, 0]))
    determinant = determinant[patch["valid"].all(axis=1) & np.isfinite(determinant)]
    return -1 if determinant.size and float(np.median(determinant)) < 0.0 else 1


def evenly_chosen(mask: np.ndarray, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of up to ``samples`` True cells of a 2-D ``mask``, evenly spaced in
    row-major order from the first to the last: those of
    ``np.flatnonzero(mask)[np.linspace(0, n - 1, samples).astype(int)]``, found through
    per-row counts instead of listing every True cell (a whole DEM's, 5 ms at 2048^2)."""
    per_row = np.count_nonzero(mask, axis=1)
    ends = np.cumsum(per_row)
    total = int(ends[-1]) if ends.size else 0
    if total == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ranks = np.linspace(0, total - 1, min(samples, total)).astype(np.int64)
    rows = np.searchsorted(ends, ranks, side="right")
    columns = np.array([np.flatnonzero(mask[row])[rank - (ends[row] - per_row[row])]
                        for row, rank in zip(rows, ranks, strict=True)], dtype=np.int64)
    return rows.astype(np.int64), columns


def layover_facing_share(cells: dict[str, np.ndarray], orientation: int) -> np.ndarray:
    """The share (0..1, float32) of each cell's own footprint that faces the radar in
    layover (range-reversing in its zero-Doppler plane; :func:`sarheight.compute.layover_facing_share`),
    NaN where the cell is void. ``orientation``: flat terrain's determinant sign
    (:func:`flat_orientation`).

    The criterion of active layover from the cell's own surface: a cell of which more
    than half faces the radar this way lays over its neighbours by itself
    (:func:`active_layover`, ``cells["active_layover"]``).
    """
    return door.layover_facing_share(cells["line"], cells["sample"], cells["valid"], orientation)


def active_layover(cells: dict[str, np.ndarray], orientation: int, compute: Compute | None = None) -> np.ndarray:
    """Whether each cell is in active layover (bool): more than half of its own footprint
    range-reversing (:func:`layover_facing_share` above 1/2, :func:`sarheight.compute.active_layover`)."""
    return door.active_layover(cells["line"], cells["sample"], cells["valid"], orientation, compute=compute)


def slant_range_spacing(cells: dict[str, np.ndarray], samples: int = 200_000) -> float:
    """Median slant-range extent of one sample (m): slant range over sample differences
    between neighbouring cells (the sample index depends on slant range alone, up to
    the slow drift of GRD polynomials along track), on an even subset of the cells."""
    slant_range, sample = cells["slant_range"], cells["sample"]
    stride = max(1, int(math.sqrt(slant_range.size / samples)))
    ratios = []
    for axis in (0, 1):
        if slant_range.shape[axis] < 2:
            continue
        first, second = neighbour_pairs(axis, stride, slant_range.shape[0])
        d_range = slant_range[second] - slant_range[first]
        d_sample = sample[second] - sample[first]
        usable = np.isfinite(d_range) & np.isfinite(d_sample) & (np.abs(d_sample) >= 0.25)
        ratios.append(np.abs(d_range[usable] / d_sample[usable]))
    values = np.concatenate(ratios) if ratios else np.zeros(0)
    return float(np.median(values)) if values.size else 1.0


def radar_window(line: np.ndarray, sample: np.ndarray, valid: np.ndarray, geometry: RadarGeometry,
                 margin: int = 2) -> RadarWindow:
    """The part of the image the facets of the DEM's cells fall in, ``margin`` pixels
    around the extent of the facets' vertices.

    That extent (:func:`sarheight.compute.facet_extent`) reaches beyond the cell centres at the
    DEM's border, whose facets are extrapolated half a cell beyond the outermost centres:
    by up to a cell step, several pixels where cells are larger than pixels or
    foreshortened. A window cut at the centres would drop the outer part of those facets
    from the scatter and the gather alike, and their cells (at the corners, where the
    rotated grid reaches the window's bounds) would get less than their energy.
    """
    if not valid.any():
        raise GeometryError(
            "no DEM cell has a zero-Doppler solution on the side the radar looks at: DEM and "
            "geometry do not overlap; check the DEM's CRS and extent and the product"
        )
    return window_of_extent(door.facet_extent(line, sample, valid), geometry, margin)


def window_of_extent(extent: tuple[float, float, float, float], geometry: RadarGeometry,
                     margin: int = 2) -> RadarWindow:
    """:func:`radar_window` of facets spanning ``extent`` (smallest line, largest line,
    smallest sample, largest sample; a block-wise run gathers it from its blocks)."""
    lines, samples = geometry.grid.shape
    l_min, l_max, s_min, s_max = extent
    line0 = max(0, math.floor(l_min) - margin)
    line1 = min(lines, math.ceil(l_max) + margin + 1)
    sample0 = max(0, math.floor(s_min) - margin)
    sample1 = min(samples, math.ceil(s_max) + margin + 1)
    if line1 <= line0 or sample1 <= sample0:
        raise GeometryError(
            f"the DEM lies entirely outside the radar image ({lines} x {samples}): it maps to lines "
            f"{l_min:.0f}..{l_max:.0f}, samples {s_min:.0f}..{s_max:.0f}; check that DEM and product "
            "cover the same area"
        )
    return RadarWindow(line0, line1 - line0, sample0, sample1 - sample0)


#: Radar lines of a band of the radar buffer that the scatter's tiles add to under a lock
#: of its own.
ADD_BAND_LINES = 64


def cell_ecef(cells: dict[str, np.ndarray], start: int, stop: int, col_start: int = 0,
              col_stop: int | None = None, compute: Compute | None = None) -> np.ndarray:
    """ECEF positions (m) of the cells of DEM rows ``start:stop`` and columns
    ``col_start:col_stop``, (rows, cols, 3) float64.

    Recomputed from longitude, latitude and height whenever a pass needs them (a few ns
    per cell), rather than kept for the whole DEM (24 bytes per cell).
    """
    cells_at = (slice(start, stop), slice(col_start, col_stop))
    return door.cell_ecef(cells["lon"][cells_at], cells["lat"][cells_at], cells["height"][cells_at], compute=compute)


def cell_geometry(dem: xr.DataArray, geometry: RadarGeometry, *, own_surface: bool = True,
                  compute: Compute | None = None) -> dict[str, np.ndarray]:
    """Zero-Doppler geometry of every cell centre (:func:`sarheight.compute.cell_geometry`) and,
    with ``own_surface``, the flags of its own surface (``faces_away``, ``active_layover``:
    what the masks need, not the facet passes); ``lon``, ``lat`` (rad) and ``height`` are
    kept (views where possible) for the passes that recompute ECEF positions per block."""
    lon, lat = geodetic_coordinates(dem, radians=True)
    return cell_geometry_arrays(lon, lat, np.ascontiguousarray(dem.values), geometry, own_surface=own_surface,
                                compute=compute)


def cell_geometry_arrays(lon: np.ndarray, lat: np.ndarray, height: np.ndarray, geometry: RadarGeometry, *,
                         own_surface: bool = True, compute: Compute | None = None) -> dict[str, np.ndarray]:
    """:func:`cell_geometry` of cells given by longitude, latitude (rad; broadcast views of
    1-D axes are the fast case) and height (m) arrays of one shape, whose rows and columns
    are DEM rows and columns (``own_surface``: also ``faces_away`` and ``active_layover``,
    which take the surface between the neighbouring rows and columns of these arrays)."""
    out = door.cell_geometry(lon, lat, height, geometry.geocoding_geometry(), own_surface=own_surface,
                             blocks=block_count(height.shape), compute=compute).as_arrays()
    out.update(lon=lon, lat=lat, height=height)
    if own_surface:
        # After every block's lines and samples are known: the footprints reach into
        # the neighbouring rows.
        out["active_layover"] = active_layover(out, flat_orientation(out, geometry), compute)
    return out


def radar_sums(n_lines: int, n_samples: int) -> np.ndarray:
    """A zeroed radar buffer of ``n_lines`` x ``n_samples`` pixels for the two channels
    of the facet pass (:func:`sarheight.compute.facet_pass`: padded, channels side by side).

    Zeroed by the threads, block by block: the first write to each fresh page of a large
    array is a page fault, slow on virtual machines, and the scatter's tiles would
    otherwise take them one after the other while adding into it under a lock.
    """
    sums = np.empty(door.radar_buffer_shape(n_lines, n_samples))
    if sums.size < BLOCK_CELLS:
        sums.fill(0.0)
    else:
        run_blocks(lambda start, stop: sums[start:stop].fill(0.0), sums.shape[0],
                   max(1, math.ceil(sums.size / BLOCK_CELLS)))
    return sums


def channels(sums: np.ndarray) -> np.ndarray:
    """The images (2, lines, samples) of a radar buffer: a view."""
    pad = door.RADAR_BUFFER_PAD
    return sums[pad:-pad, pad:-pad].transpose(2, 0, 1)

