"""Forward simulation of the radar imaging of a DEM: areas, layover, shadow, simulated images.

:func:`simulate` maps every DEM facet into the radar image (zero-Doppler geometry),
computes its local incidence angle and areas, finds layover and shadow per zero-Doppler
line, and projects the facets' contributions onto the radar grid (exact polygon-pixel
overlap, or bilinear splatting). :func:`simulate_sar` turns that into a speckled
observation for tests, demos and training data.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np
import xarray as xr

from . import kernels
from ._threads import progress_bar, row_blocks, run_blocks, thread_count
from ._version import __version__
from .dem import geodetic_coordinates, open_dem
from .errors import GeometryError, InvalidInputError
from .geometry import RadarGeometry, RadarWindow
from .ground import Ground, lognormal_texture
from .io import check_memory
from .kernels import facets, visibility
from .masks import MASK_ATTRS, MaskCode, kernel_codes

logger = logging.getLogger(__name__)

#: Coefficients (a0, a1, a2) of the empirical sigma0 law used by SNAP's and ISCE3's
#: simulators: sigma0 = a0 cos(t) / (sin(t) + a1 cos(t))^a2 (linear power).
EMPIRICAL_LAW = (0.0118, 0.111, 3.0)

#: Pixels whose simulated gamma area is below this fraction of the flat-terrain area are
#: not valid for terrain flattening (Small 2011).
VALID_AREA_FRACTION = kernels.reallocation.VALID_AREA_FRACTION

Contribution = Literal["model", "gamma"] | Callable[[np.ndarray], np.ndarray] | xr.DataArray
Projection = Literal["exact", "bilinear"]


def empirical_sigma0(local_incidence_deg: np.ndarray | float) -> np.ndarray:
    """The empirical sigma0 law (linear) of the local incidence angle (degrees).

    sigma0 = 0.0118 cos(t) / (sin(t) + 0.111 cos(t))^3, 0 for t >= 90 degrees.
    """
    theta = np.radians(np.asarray(local_incidence_deg, dtype=np.float64))
    a0, a1, a2 = EMPIRICAL_LAW
    cos, sin = np.cos(theta), np.sin(theta)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = a0 * cos / (sin + a1 * cos) ** a2
    return np.where(cos > 0, value, 0.0)


def lambert_sigma0(local_incidence_deg: np.ndarray | float) -> np.ndarray:
    """Lambert's law (linear sigma0) of the local incidence angle (degrees): a rough,
    diffusely scattering surface, sigma0 = 0.1 cos^2(t), 0 for t >= 90 degrees.

    It falls with the incidence about a third as fast as :func:`empirical_sigma0` near
    40 degrees (0.12 against 0.3 dB per degree): a different surface than the one the
    reconstruction models, for scenes that test how much a model relies on that law.
    """
    cos = np.cos(np.radians(np.asarray(local_incidence_deg, dtype=np.float64)))
    return np.where(cos > 0, 0.1 * cos**2, 0.0)


#: The sigma0 laws of the local incidence angle (degrees -> linear) a simulated ground can
#: follow, by name.
SIGMA0_LAWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"empirical": empirical_sigma0,
                                                              "lambert": lambert_sigma0}


@dataclasses.dataclass(frozen=True)
class FacetContribution:
    """What each facet contributes, in the form the facet kernel takes
    (:func:`resolve_contribution` builds it from what a user gives).

    Attributes
    ----------
    code : ``kernels.facets.CONTRIBUTION_MODEL`` (a sigma0 law of the local incidence
        times the sigma area), ``CONTRIBUTION_GAMMA`` (the gamma area) or
        ``CONTRIBUTION_USER`` (per-cell weights shared among the cell's facets).
    law : the coefficients (a0, a1, a2) of the empirical sigma0 law.
    table : a user law tabulated over 0..90 degrees of local incidence (linear sigma0), or
        empty for the empirical law.
    user_weight : the per-cell weights on the DEM grid (float64, 0 where NaN), or a
        (1, 1) placeholder.
    description : what the contribution is, for the outputs' attributes.
    """

    code: int
    law: np.ndarray
    table: np.ndarray
    user_weight: np.ndarray
    description: str

    def density_scale(self, reference_area: float) -> float:
        """The largest contribution per unit area a facet can have (the law's largest value,
        1 for gamma areas, the largest cell weight over ``reference_area`` (m^2) for user
        weights): the scale against which rounding residue is told from signal."""
        if self.code == facets.CONTRIBUTION_GAMMA:
            return 1.0
        if self.code == facets.CONTRIBUTION_USER:
            weight = float(np.max(self.user_weight, initial=0.0))
            return weight / reference_area if reference_area > 0 else weight
        if self.table.size > 1:
            return float(np.max(self.table))
        return float(empirical_sigma0(np.linspace(0.0, 90.0, 901)).max())


def _law_table(law: Callable[[np.ndarray], np.ndarray], n: int = 9000) -> np.ndarray:
    angles = np.linspace(0.0, 90.0, n + 1)
    try:
        values = np.asarray(law(angles), dtype=np.float64)
    except Exception as exc:
        raise InvalidInputError(
            f"the contribution law {law!r} failed on local incidence angles 0..90 degrees ({exc}): "
            "it must take a numpy array of angles in degrees and return linear sigma0"
        ) from exc
    if values.shape != angles.shape or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise InvalidInputError(
            "the contribution law must return one finite, non-negative linear sigma0 per angle"
        )
    return values


def values_on_dem_grid(field: xr.DataArray, dem: xr.DataArray, what: str) -> np.ndarray:
    """The values of ``field`` (float64, rows and columns of the DEM) once it is known to lie
    on the DEM's grid: the DEM's dimensions (in either order), its shape and, where
    ``field`` has coordinates, the same ones (to a millionth of a cell). Raises a clear
    error otherwise, naming ``what`` the field is."""
    if set(field.dims) != set(dem.dims):
        raise InvalidInputError(
            f"{what}: dims {field.dims}, but the DEM's are {dem.dims}; give it on the DEM grid, e.g. "
            "dem.copy(data=values)"
        )
    field = field.transpose(*dem.dims)
    if field.shape != dem.shape:
        raise InvalidInputError(
            f"{what}: shape {field.shape}, but the DEM's is {dem.shape}; give one value per DEM cell on the "
            "DEM grid"
        )
    for dim in dem.dims:
        if dim not in field.coords or dim not in dem.coords or dem.sizes[dim] < 2:
            continue
        mine, theirs = np.asarray(field[dim].values, dtype=np.float64), np.asarray(dem[dim].values, dtype=np.float64)
        step = abs(float(theirs[1] - theirs[0]))
        if not np.allclose(mine, theirs, rtol=0.0, atol=1e-6 * step):
            raise InvalidInputError(
                f"not on the DEM grid: the {dim} coordinates of {what} run {mine[0]:.10g}..{mine[-1]:.10g}, "
                f"the DEM's {theirs[0]:.10g}..{theirs[-1]:.10g}; resample it to the DEM "
                "(field.rio.reproject_match(dem)) or build it with dem.copy(data=values)"
            )
    if field.dtype.kind not in "fiu":
        raise InvalidInputError(f"{what}: dtype {field.dtype}; give real numbers")
    return np.asarray(field.values, dtype=np.float64)


def resolve_contribution(contribution: Contribution, dem: xr.DataArray) -> FacetContribution:
    """The facet kernel's form of a contribution as a user gives it (see :func:`simulate`):
    ``"model"``, ``"gamma"``, a callable law of the local incidence angle (degrees) or a
    DataArray of per-cell weights on ``dem``'s grid. Raises InvalidInputError for
    anything else, a law that fails or returns negative values, or weights off the grid."""
    empty = np.zeros(0)
    no_weight = np.zeros((1, 1))
    if isinstance(contribution, str):
        if contribution == "model":
            return FacetContribution(facets.CONTRIBUTION_MODEL, np.array(EMPIRICAL_LAW), empty, no_weight,
                                 "model: empirical sigma0 law x sigma area")
        if contribution == "gamma":
            return FacetContribution(facets.CONTRIBUTION_GAMMA, np.array(EMPIRICAL_LAW), empty, no_weight,
                                 "gamma: projected (gamma) area, constant gamma0")
        raise InvalidInputError(
            f"unknown contribution model {contribution!r}: use 'model', 'gamma', a callable of the "
            "local incidence angle (degrees) returning linear sigma0, or a DataArray of per-cell weights"
        )
    if isinstance(contribution, xr.DataArray):
        weights = values_on_dem_grid(contribution, dem, "the contribution weights")
        if np.any(weights < 0) or not np.all(np.isfinite(weights) | np.isnan(dem.values)):
            raise InvalidInputError("contribution weights must be finite and non-negative on the DEM")
        return FacetContribution(facets.CONTRIBUTION_USER, np.array(EMPIRICAL_LAW), empty,
                             np.nan_to_num(weights), "user weights per cell")
    if callable(contribution):
        return FacetContribution(facets.CONTRIBUTION_MODEL, np.array(EMPIRICAL_LAW), _law_table(contribution),
                             no_weight, f"law {getattr(contribution, '__name__', repr(contribution))} x sigma area")
    raise InvalidInputError(
        f"contribution must be 'model', 'gamma', a callable or a DataArray, not {type(contribution).__name__}"
    )


def _oversample_factor(oversample: Any, projection: str, dem: xr.DataArray, cells: dict) -> int:
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
                every_line: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Layover/shadow masks of the cells, each in its own zero-Doppler plane, and the mixing
    of the window's pixels (``kernels.visibility``).

    Every valid cell gets a code (:class:`~sarheight.masks.MaskCode`): active layover
    where ``own_layover`` (its own surface lays over, :func:`active_layover`), active
    shadow where ``faces_away``, passive where other terrain overlays or shadows it in its
    own plane; no passive code where no line of ``window`` brackets it. The caller marks
    the cells outside the image. Only the lines of ``window`` have profiles, so
    a block's masks equal the in-memory ones where its window holds the lines around its
    cells (``distributed``). ``judged``: judge only these cells (the others lend their
    points to the profiles); needs rows along track. ``every_line`` False: only the
    lines that bound the sweep's groups are cut, and the lines between take the mixing of
    the nearer of them (``kernels.visibility.visibility_lines``' ``cut_all``; the masks
    are the same; each line's mixing is that of the bounding line nearest to it, at most
    half a group away).
    """
    line0, n_lines, sample0, n_samples = window
    names = ("line", "sample", "slant_range", "look_angle", "cross_track")
    arrays = [cells[name] for name in names] + [faces_away, own_layover, cells["valid"]]
    # Profiles cut DEM columns along track: put the axis along which lines change most first.
    if transpose is None:
        transpose = not rows_run_along_track(cells["line"])
    if transpose and judged is not None:
        raise InvalidInputError("masks of a selection of cells need rows along track")
    if transpose:
        arrays = [np.ascontiguousarray(a.T) for a in arrays]
    line, faces_away, own_layover, valid = arrays[0], arrays[5], arrays[6], arrays[7]
    layover = np.empty(line.shape, dtype=np.uint8)
    shadow = np.empty(line.shape, dtype=np.uint8)
    mixing = np.zeros((n_lines, n_samples), dtype=np.uint16)

    def prepared() -> tuple[float, tuple[np.ndarray, ...], int]:
        # The level tolerance, the column runs and the lines per group: cells are set
        # against the profiles of every group-th line (a DEM row's worth on a DEM coarser
        # than the lines), so that the work per pair of profiles follows the rows.
        tolerance = 0.05 * slant_range_spacing(cells) if range_tolerance is None else range_tolerance
        return tolerance, visibility.column_runs(line, valid), visibility.line_group(line, valid)

    def bucketed() -> tuple[np.ndarray, np.ndarray]:
        return _buckets(line, valid, valid if judged is None else judged, faces_away, own_layover, line0, n_lines,
                        layover, shadow)

    if thread_count() > 1:
        # The serial preparations on a thread of their own beside the bucketing.
        with ThreadPoolExecutor(max_workers=1) as side:
            preparing = side.submit(prepared)
            start, bucket = bucketed()
            range_tolerance, runs, group = preparing.result()
    else:
        start, bucket = bucketed()
        range_tolerance, runs, group = prepared()
    bounds = visibility.line_groups(n_lines, group)
    # Ranges of groups are independent: each thread cuts the profile before its first.
    # Many more ranges than threads even out where layover (the costly cells) gathers
    # (16 per thread: about 10 % faster than 4 at 4096^2, measured).
    run_blocks(lambda first, stop: visibility.visibility_lines(
        *arrays, runs, start, bucket, line0, sample0, n_lines, n_samples, range_tolerance, bounds[first],
        bounds[stop], group, kernel_codes(), layover, shadow, mixing, every_line), len(bounds) - 1,
        16 * thread_count())
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
    layover (range-reversing in its zero-Doppler plane; ``kernels.facets.layover_facing_share``),
    NaN where the cell is void. ``orientation``: flat terrain's determinant sign
    (:func:`flat_orientation`).

    The criterion of active layover from the cell's own surface: a cell of which more
    than half faces the radar this way lays over its neighbours by itself
    (:func:`active_layover`, ``cells["active_layover"]``).
    """
    line, sample, valid = cells["line"], cells["sample"], cells["valid"]
    out = np.empty(line.shape, dtype=np.float32)
    run_blocks(lambda start, stop: facets.layover_facing_share(line, sample, valid, int(orientation), start, stop,
                                                               out),
               line.shape[0], block_count(line.shape))
    return out


def active_layover(cells: dict[str, np.ndarray], orientation: int) -> np.ndarray:
    """Whether each cell is in active layover (bool): more than half of its own footprint
    range-reversing (:func:`layover_facing_share` above 1/2, ``kernels.facets.active_layover``)."""
    line, sample, valid = cells["line"], cells["sample"], cells["valid"]
    out = np.empty(line.shape, dtype=bool)
    run_blocks(lambda start, stop: facets.active_layover(line, sample, valid, int(orientation), start, stop, out),
               line.shape[0], block_count(line.shape))
    return out


def _buckets(line: np.ndarray, valid: np.ndarray, judged: np.ndarray, faces_away: np.ndarray,
             own_layover: np.ndarray, line0: int, n_lines: int, layover: np.ndarray,
             shadow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``kernels.visibility.visibility_buckets`` on row blocks in threads: a counting sort of
    the cells by key, counted per block, placed per block (rows in order, so the cells of
    a key stay row-major)."""
    blocks = row_blocks(line.shape[0], block_count(line.shape))
    counts = np.zeros((len(blocks), n_lines + 2), dtype=np.int64)
    codes = kernel_codes()
    run_blocks(lambda a, b: [visibility.bucket_counts(line, valid, judged, faces_away, own_layover, line0, n_lines,
                                                      *blocks[k],
                                                      codes, layover, shadow, counts[k]) for k in range(a, b)],
               len(blocks), len(blocks))
    # Key b's cells are bucket[start[b]:start[b + 1]]; block k's begin at cursor[k, b].
    per_key = counts[:, :n_lines + 1].sum(axis=0)
    start = np.zeros(n_lines + 2, dtype=np.int64)
    np.cumsum(per_key, out=start[1:])
    cursors = start[:n_lines + 1] + np.cumsum(counts[:, :n_lines + 1], axis=0) - counts[:, :n_lines + 1]
    bucket = np.empty(start[-1], dtype=np.int64)
    run_blocks(lambda a, b: [visibility.bucket_fill(line, valid, judged, line0, n_lines, *blocks[k], cursors[k],
                                                    bucket) for k in range(a, b)],
               len(blocks), len(blocks))
    return start, bucket


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

    That extent (``kernels.facets.facet_extent``) reaches beyond the cell centres at the
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
    return window_of_extent(whole_facet_extent(line, sample, valid), geometry, margin)


def whole_facet_extent(line: np.ndarray, sample: np.ndarray, valid: np.ndarray) -> tuple[float, float, float, float]:
    """``kernels.facets.facet_extent`` of a whole DEM's cells (its borders the DEM's), on
    row blocks in threads, their extremes combined: the same extent, bit for bit."""
    parts = np.array(run_blocks(lambda start, stop: facets.facet_extent_rows(
        line, sample, valid, start, stop, True, True, True, True), line.shape[0], block_count(line.shape)))
    if np.all(np.isnan(parts[:, 0])):
        return math.nan, math.nan, math.nan, math.nan
    return (float(np.nanmin(parts[:, 0])), float(np.nanmax(parts[:, 1])), float(np.nanmin(parts[:, 2])),
            float(np.nanmax(parts[:, 3])))


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


#: Cells per block of DEM rows in the per-cell passes: the blocks' own buffers (ECEF
#: positions, per-cell sums, scatter bands) stay small beside the whole-DEM arrays.
BLOCK_CELLS = 1 << 17

#: Radar lines of a band of the radar buffer that the scatter's tiles add to under a lock
#: of its own.
ADD_BAND_LINES = 64


def block_count(shape: tuple[int, int]) -> int:
    """Row blocks for a per-cell pass: at least one per thread, about ``BLOCK_CELLS`` cells each."""
    return max(thread_count(), math.ceil(shape[0] * shape[1] / BLOCK_CELLS))


def cell_ecef(cells: dict[str, np.ndarray], start: int, stop: int, col_start: int = 0,
              col_stop: int | None = None) -> np.ndarray:
    """ECEF positions (m) of the cells of DEM rows ``start:stop`` and columns
    ``col_start:col_stop``, (rows, cols, 3) float64.

    Recomputed from longitude, latitude and height whenever a pass needs them (a few ns
    per cell), rather than kept for the whole DEM (24 bytes per cell).
    """
    cells_at = (slice(start, stop), slice(col_start, col_stop))
    height = cells["height"][cells_at]
    out = np.empty((*height.shape, 3))
    kernels.cells.ecef_of_cells(cells["lon"][cells_at], cells["lat"][cells_at], height, kernels.WGS84_A,
                                kernels.WGS84_E2, out)
    return out


def cell_geometry(dem: xr.DataArray, geometry: RadarGeometry, *, own_surface: bool = True) -> dict[str, np.ndarray]:
    """Zero-Doppler geometry of every cell centre (``kernels.cells.cell_geometry``) and,
    with ``own_surface``, the flags of its own surface (``faces_away``, ``active_layover``:
    what the masks need, not the facet passes); ``lon``, ``lat`` (rad) and ``height`` are
    kept (views where possible) for the passes that recompute ECEF positions per block."""
    lon, lat = geodetic_coordinates(dem, radians=True)
    return cell_geometry_arrays(lon, lat, np.ascontiguousarray(dem.values), geometry, own_surface=own_surface)


def cell_geometry_arrays(lon: np.ndarray, lat: np.ndarray, height: np.ndarray, geometry: RadarGeometry, *,
                         own_surface: bool = True) -> dict[str, np.ndarray]:
    """:func:`cell_geometry` of cells given by longitude, latitude (rad; broadcast views of
    1-D axes are the fast case) and height (m) arrays of one shape, whose rows and columns
    are DEM rows and columns (``own_surface``: also ``faces_away`` and ``active_layover``,
    which take the surface between the neighbouring rows and columns of these arrays)."""
    shape = height.shape
    k = geometry.kernel_arguments()
    # name: (dtype, trailing shape), in the kernel's argument order. Allocated here,
    # written (first touch too) by the row blocks on their threads.
    fields = {
        "azimuth_time": (np.int64, ()),
        "slant_range": (np.float64, ()),
        "line": (np.float64, ()),
        "sample": (np.float64, ()),
        "look": (np.float32, (3,)),
        "pixel_area": (np.float32, ()),
        "incidence": (np.float32, ()),
        "look_angle": (np.float64, ()),
        "cross_track": (np.float64, ()),
        "valid": (np.bool_, ()),
    }
    out = {name: np.empty((*shape, *trailing), dtype=dtype) for name, (dtype, trailing) in fields.items()}
    away = np.empty(shape, dtype=bool) if own_surface else None
    reference_ns = np.datetime64(geometry.reference_time, "ns").astype(np.int64)

    def work(start: int, stop: int) -> None:
        rows = slice(start, stop)
        # The normals of faces_away need the positions of one row more on each side.
        halo_start, halo_stop = max(0, start - 1), min(shape[0], stop + 1)
        ecef = np.empty((halo_stop - halo_start, shape[1], 3))
        kernels.cells.cell_geometry(
            lon[rows], lat[rows], height[rows], kernels.WGS84_A, kernels.WGS84_E2,
            k["coeffs"], k["t_center"], k["t_scale"], k["t_valid_min"], k["t_valid_max"],
            k["first_line_time"], k["line_interval"], k["rm_times"], k["rm_sr0"], k["rm_coeffs"],
            k["rm_spacing"], k["look_sign"], k["bistatic_rate"], k["bistatic_reference_range"], reference_ns,
            ecef[start - halo_start:stop - halo_start], *(array[rows] for array in out.values()),
        )
        for row in {halo_start, halo_stop - 1} - set(range(start, stop)):
            local = row - halo_start
            kernels.cells.ecef_of_cells(lon[row:row + 1], lat[row:row + 1], height[row:row + 1],
                                        kernels.WGS84_A, kernels.WGS84_E2, ecef[local:local + 1])
        if away is not None:
            facets.faces_away(ecef, out["look"][halo_start:halo_stop], start - halo_start, stop - halo_start,
                              away[halo_start:halo_stop])

    run_blocks(work, shape[0], block_count(shape))
    out["azimuth_time"] = out["azimuth_time"].view("datetime64[ns]")
    out.update(lon=lon, lat=lat, height=height)
    if away is not None:
        out["faces_away"] = away
        # After every block's lines and samples are known: the footprints reach into
        # the neighbouring rows.
        out["active_layover"] = active_layover(out, flat_orientation(out, geometry))
    return out


def radar_sums(n_lines: int, n_samples: int) -> np.ndarray:
    """A zeroed radar buffer of ``n_lines`` x ``n_samples`` pixels for the two channels
    of the facet kernel (``kernels.facets``: padded, channels side by side).

    Zeroed by the threads, block by block: the first write to each fresh page of a large
    array is a page fault, slow on virtual machines, and the scatter's tiles would
    otherwise take them one after the other while adding into it under a lock.
    """
    sums = np.empty(facets.radar_buffer_shape(n_lines, n_samples))
    if sums.size < BLOCK_CELLS:
        sums.fill(0.0)
    else:
        run_blocks(lambda start, stop: sums[start:stop].fill(0.0), sums.shape[0],
                   max(1, math.ceil(sums.size / BLOCK_CELLS)))
    return sums


def channels(sums: np.ndarray) -> np.ndarray:
    """The images (2, lines, samples) of a radar buffer: a view."""
    pad = facets.PAD
    return sums[pad:-pad, pad:-pad].transpose(2, 0, 1)


def gather_buffer(images: np.ndarray, exact: bool, out: np.ndarray | None = None) -> np.ndarray:
    """The radar buffer the gather reads, from ratio images (2, lines, samples): their
    padded row prefix sums for exact projection, the images for bilinear. In place when
    ``out`` is the buffer ``images`` views (``channels``)."""
    images = np.asarray(images, dtype=np.float64)
    if out is None:
        out = np.empty(facets.radar_buffer_shape(images.shape[1], images.shape[2]))
    facets.prefix_buffer(images, 0, images.shape[1], exact, out)
    return out


@dataclasses.dataclass
class Simulation:
    """The simulation of a DEM under a geometry: what :func:`simulate` returns as a
    Dataset and what the reallocation engines work on (:func:`run_simulation` makes one;
    the block-wise engine makes one per tile).

    Attributes
    ----------
    dem : the DEM (ellipsoidal heights, m), or a tile of it with a halo of one cell.
    geometry : the acquisition geometry.
    cells : per-cell arrays of the cell geometry (:func:`cell_geometry`): ``line``,
        ``sample`` (fractional product indices, float64), ``slant_range`` (m),
        ``azimuth_time``, ``look`` (unit look vectors, float32), ``incidence`` (ellipsoid
        incidence, rad, float32), ``valid``, and ``lon``, ``lat`` (rad), ``height`` (m)
        from which the passes recompute ECEF positions.
    window : the part of the image the cells fall in; the radar-side arrays lie on it.
    oversample : facets per DEM cell side.
    exact : exact polygon-pixel overlap (True) or bilinear splatting (False).
    contribution : what each facet contributes.
    layover, shadow : :class:`~sarheight.masks.MaskCode` per cell (uint8).
    mixing : separate ground segments per window pixel (uint16).
    per_cell : the scatter's per-cell sums kept for the whole DEM (``sigma_area``,
        ``gamma_area``, ``contribution``, ``cos_local_incidence``), or empty.
    sums : the radar buffer (:func:`radar_sums`) of sum w c and sum w A_gamma.
    smooth : pixel area and incidence fitted on the whole DEM, when the cells are a
        block of it (else fitted on the cells when first needed).
    """

    dem: xr.DataArray
    geometry: RadarGeometry
    cells: dict[str, np.ndarray]
    window: RadarWindow
    oversample: int
    exact: bool
    contribution: FacetContribution
    layover: np.ndarray
    shadow: np.ndarray
    mixing: np.ndarray
    per_cell: dict[str, np.ndarray]
    sums: np.ndarray
    smooth: SmoothFields | None = None

    @property
    def images(self) -> np.ndarray:
        """The simulated images (2, lines, samples): sum w c, sum w A_gamma (a view of ``sums``)."""
        return channels(self.sums)

    def facet_pass(self, *, gather: bool, ratios: np.ndarray | None = None, sums: np.ndarray | None = None,
                   contribution: FacetContribution | None = None, rows: tuple[int, int] | None = None,
                   cols: tuple[int, int] | None = None, consume: Callable[..., None] | None = None,
                   per_cell: bool = True,
                   progress: Callable[[int], None] | None = None) -> tuple[np.ndarray | None, ...]:
        """Run the facet kernel (``kernels.facets``) on tiles of DEM cells in threads.

        The cells go by tiles (blocks of rows by ranges of columns, with a halo of one
        cell): each recomputes the ECEF positions of its cells and scatters into a buffer
        of the pixels its facets reach, added to the images under a lock; nothing per cell
        is kept for the whole DEM unless asked. (Row blocks of the whole width would each
        reach every line the DEM's width spans where the lines cross it at an angle.)

        Parameters
        ----------
        gather : False to scatter the contributions, True to gather ratios.
        ratios : (2, lines, samples) ratio images to gather, or
        sums : the radar buffer to gather, ready (``gather_buffer``).
        contribution : what the facets carry, default the simulation's.
        rows, cols : (start, stop), the DEM rows and columns whose facets are processed
            (their neighbours are still read): a tile with halo rows and columns
            processes its own cells only.
        consume : ``consume(start, stop, col_start, col_stop, energy, per_cell)`` receives
            each tile's results (energy (2, n, m), per_cell the four arrays below, for DEM
            rows start:stop and columns col_start:col_stop), from the worker threads; the
            full-size arrays are then not made.
        per_cell : scattering, compute the per-cell sums; False: skip them (the caller
            keeps only the radar sums; ``consume`` gets empty arrays). A gather always
            computes them.
        progress : called with each finished tile's share of the DEM rows.

        Returns
        -------
        (energy (2, rows, cols), sigma_area, gamma_area, contribution, cos_local, sums (the
        radar buffer of sum w*c and sum w*A_gamma, ``channels`` gives the images) when
        scattering); the per-cell arrays are None with ``consume``, ``energy`` is None when
        scattering.
        """
        c = self.cells
        contribution = contribution or self.contribution
        line0, n_lines, sample0, n_samples = self.window
        shape = c["valid"].shape
        exact = self.exact
        if gather:
            if sums is None:
                sums = gather_buffer(ratios, exact)
        else:
            sums = radar_sums(n_lines, n_samples)
        full: list[np.ndarray | None] = [None] * 5
        if consume is None:
            full = [np.zeros((2, *shape)) if gather else None] + [np.zeros(shape) for _ in range(3)] + [
                np.full(shape, np.nan)]

            def consume(start: int, stop: int, col_start: int, col_stop: int, energy: np.ndarray,
                        sums_of_cells: list[np.ndarray]) -> None:
                if gather:
                    full[0][:, start:stop, col_start:col_stop] = energy
                for target, block in zip(full[1:], sums_of_cells, strict=True):
                    target[start:stop, col_start:col_stop] = block

        user_weight = contribution.user_weight
        whole_weight = user_weight.shape == shape and user_weight.shape[0] > 1
        first, last = rows if rows is not None else (0, shape[0])
        col_first, col_last = cols if cols is not None else (0, shape[1])
        # One lock per band of radar lines: tiles add their buffers band by band, so that
        # tiles over different lines add at once (one lock for the whole buffer made the
        # adding serial, the more so the more threads).
        locks = [threading.Lock() for _ in range(math.ceil(sums.shape[0] / ADD_BAND_LINES))]

        def work(start: int, stop: int, col_start: int, col_stop: int) -> None:
            view = (slice(max(0, start - 1), min(shape[0], stop + 1)),
                    slice(max(0, col_start - 1), min(shape[1], col_stop + 1)))
            own = (slice(start - view[0].start, stop - view[0].start),
                   slice(col_start - view[1].start, col_stop - view[1].start))

            def take(array: np.ndarray) -> np.ndarray:
                return np.ascontiguousarray(array[view])

            line, sample = take(c["line"]), take(c["sample"])
            shadow = take(self.shadow)
            shadowed = (shadow == MaskCode.ACTIVE) | (shadow == MaskCode.PASSIVE)
            tile_shape = line.shape
            energy = np.zeros((2, *tile_shape)) if gather else np.zeros((2, 1, 1))
            if gather or per_cell:
                sums_of_cells = [np.zeros(tile_shape) for _ in range(3)] + [np.full(tile_shape, np.nan)]
            else:
                sums_of_cells = [np.zeros((0, 0))] * 4
            if gather:
                first_line = first_sample = 0
                buffer = sums
            else:
                border = (start == 0, stop == shape[0], col_start == 0, col_stop == shape[1])
                first_line, count, first_sample, n = _tile_reach(line, sample, self.window, take(c["valid"]), border)
                buffer = np.zeros(facets.scatter_buffer_shape(count, n, exact))
            facets.facet_pass(
                cell_ecef(c, view[0].start, view[0].stop, view[1].start, view[1].stop), line, sample,
                take(c["look"]), take(c["valid"]), shadowed, take(user_weight) if whole_weight else user_weight,
                self.oversample, contribution.code, contribution.law, contribution.table, exact, gather,
                line0 + first_line, sample0 + first_sample, buffer, buffer.reshape(-1), own[0].start, own[0].stop,
                own[1].start, own[1].stop, energy, *sums_of_cells,
            )
            if not gather:
                rows_of_tile = buffer.shape[0] - 2 * facets.PAD
                top = first_line + facets.PAD  # the buffer row of the tile's first pixel row
                for band in range(top // ADD_BAND_LINES, (top + rows_of_tile - 1) // ADD_BAND_LINES + 1):
                    with locks[band]:
                        facets.add_tile_rows(buffer, exact, sums, first_line, first_sample,
                                             band * ADD_BAND_LINES - top, (band + 1) * ADD_BAND_LINES - top)
            consume(start, stop, col_start, col_stop, energy[:, own[0], own[1]] if gather else None,
                    [p[own] for p in sums_of_cells])
            if progress is not None:
                progress((stop - start) * (col_stop - col_start) / shape[1])

        tiles = _tiles(first, last, col_first, col_last)
        run_blocks(lambda a, b: [work(*tiles[t]) for t in range(a, b)], len(tiles), len(tiles))
        return (*full, None if gather else sums)

    @property
    def projection(self) -> Projection:
        return "exact" if self.exact else "bilinear"

    def to_dataset(self, variables: tuple[str, ...] | None = None) -> xr.Dataset:
        """The simulation as a Dataset (what :func:`simulate` returns); ``variables``:
        only those (each built only when asked for)."""
        dem, c, cells = self.dem, self.per_cell, self.cells
        inside = cells["valid"]
        dims = ("y", "x")
        radar_dims = ("line", "sample")

        def on_cells(values: np.ndarray) -> np.ndarray:
            return np.where(inside, values, np.nan).astype(np.float32)

        def local_incidence() -> np.ndarray:
            with np.errstate(invalid="ignore"):
                return on_cells(np.degrees(np.arccos(np.clip(c["cos_local_incidence"], -1, 1))))

        radar = functools.cache(self.radar_products)

        builders = {
            "local_incidence_angle": lambda: (dims, local_incidence(), {"units": "degree", "long_name": "local incidence angle"}),
            "gamma_area": lambda: (dims, on_cells(c["gamma_area"]),
                                   {"units": "m2", "long_name": "projected (gamma) area, A . look"}),
            "sigma_area": lambda: (dims, on_cells(c["sigma_area"]), {"units": "m2", "long_name": "surface (sigma) area"}),
            "contribution": lambda: (dims, on_cells(c["contribution"]),
                                     {"units": "m2", "long_name": "contribution c = sum over facets",
                                      "model": self.contribution.description}),
            "layover": lambda: (dims, self.layover, {"long_name": "layover", **MASK_ATTRS}),
            "shadow": lambda: (dims, self.shadow, {"long_name": "shadow", **MASK_ATTRS}),
            "slant_range": lambda: (dims, cells["slant_range"], {"units": "m"}),
            "radar_line": lambda: (dims, np.where(inside, cells["line"], np.nan),
                                   {"long_name": "fractional line of the cell in the product grid (unclipped)"}),
            "radar_sample": lambda: (dims, np.where(inside, cells["sample"], np.nan),
                                     {"long_name": "fractional sample of the cell in the product grid (unclipped)"}),
            "azimuth_time": lambda: (dims, cells["azimuth_time"]),
            "incidence_angle": lambda: (dims, np.degrees(cells["incidence"]).astype(np.float32),
                                        {"units": "degree", "long_name": "ellipsoid incidence angle"}),
            "simulated_area": lambda: (radar_dims, radar()["simulated_area"],
                                       {"long_name": "simulated area image sum(w c) / pixel area"}),
            "simulated_gamma_area": lambda: (radar_dims, radar()["simulated_gamma_area"],
                                             {"long_name": "simulated gamma area image sum(w A_gamma) / pixel area"}),
            "pixel_area": lambda: (radar_dims, radar()["pixel_area"],
                                   {"units": "m2", "long_name": "slant-plane pixel area"}),
            "mixing": lambda: (radar_dims, self.mixing, {"long_name": "number of separate ground segments per pixel"}),
            "valid": lambda: (radar_dims, radar()["valid"], {"long_name": "gamma area >= 5 % of flat terrain"}),
        }
        names = variables if variables is not None else tuple(builders)
        wants_radar = bool({"simulated_area", "simulated_gamma_area", "pixel_area", "mixing", "valid"} & set(names))
        ds = xr.Dataset(
            {name: builders[name]() for name in names},
            coords={"y": dem["y"], "x": dem["x"], **(self.window.coords() if wants_radar else {})},
            attrs={
                **self.geometry.to_attrs(),
                "projection": self.projection,
                "oversample": self.oversample,
                "contribution": self.contribution.description,
                "vertical_datum": dem.attrs.get("vertical_datum", "ellipsoid"),
                # Where the heights came from: the DEM's datum before conversion, the geoid used.
                **{key: dem.attrs[key] for key in ("source_vertical_datum", "geoid_grid", "vertical_datum_assumed")
                   if key in dem.attrs},
                "sarheight_version": __version__,
            },
        )
        return ds.rio.write_crs(dem.rio.crs, inplace=True)

    @functools.cached_property
    def smooth_fields(self) -> SmoothFields:
        """Pixel area and incidence fitted on the cells, unless given (block-wise runs)."""
        return self.smooth if self.smooth is not None else SmoothFields.from_cells(self.cells, self.window)

    @functools.cached_property
    def pixel_area(self) -> np.ndarray:
        """Slant-plane pixel area (m^2) of every window pixel."""
        return self.smooth_fields.evaluate("pixel_area", self.window)

    @functools.cached_property
    def sin_incidence(self) -> np.ndarray:
        """Sine of the ellipsoid incidence angle at every window pixel."""
        return np.sin(self.smooth_fields.evaluate("incidence", self.window))

    def radar_products(self) -> dict[str, np.ndarray]:
        """The radar outputs of the window (``simulated_area``, ``simulated_gamma_area``,
        ``pixel_area``, all float32, and ``valid``, see :func:`simulate`) in one threaded
        pass over the pixels (``kernels.facets.radar_products``), the smooth fields
        evaluated per pixel: no whole-image float64 field."""
        images = self.images
        shape = images.shape[1:]
        smooth = self.smooth_fields
        area_terms = smooth.separable_terms("pixel_area", self.window)
        flat_terms = smooth.separable_terms("flat_gamma_area", self.window)
        out = {name: np.empty(shape, dtype=np.float32)
               for name in ("simulated_area", "simulated_gamma_area", "pixel_area")}
        out["valid"] = np.empty(shape, dtype=bool)
        run_blocks(lambda start, stop: facets.radar_products(
            images, *area_terms, *flat_terms, VALID_AREA_FRACTION, start, stop, *out.values()),
            shape[0], block_count(shape))
        return out

    @functools.cached_property
    def valid_pixels(self) -> np.ndarray:
        """Simulated gamma area at least 5 % of the flat-terrain gamma area a_p cot(theta)."""
        flat = self.smooth_fields.evaluate("flat_gamma_area", self.window)
        gamma = self.images[1]
        out = np.empty(gamma.shape, dtype=bool)
        run_blocks(lambda start, stop: facets.valid_pixels(gamma, flat, VALID_AREA_FRACTION, start, stop, out),
                   gamma.shape[0], block_count(gamma.shape))
        return out


#: Cells of a tile of the facet passes: its buffers (facet tables of a DEM row, the
#: scatter buffer of the pixels it reaches) stay in the second-level cache.
TILE_CELLS = 1 << 15
#: Cells per side of a tile.
TILE_SIDE = int(math.sqrt(TILE_CELLS))
#: Tiles per thread at least: threads take them as they finish, which evens out tiles
#: of unequal cost (layover, voids, the DEM's edge).
TILES_PER_THREAD = 4


def _tiles(first: int, last: int, col_first: int, col_last: int) -> list[tuple[int, int, int, int]]:
    """Tiles (start, stop, col_start, col_stop) covering rows first:last and columns
    col_first:col_last: about square, of about ``TILE_CELLS`` cells, at least
    ``TILES_PER_THREAD`` per thread."""
    rows, cols = last - first, col_last - col_first
    if rows <= 0 or cols <= 0:
        return []
    n_col = max(1, round(cols / TILE_SIDE)) if cols > 2 * TILE_SIDE else 1
    col_edges = [col_first + round(k * cols / n_col) for k in range(n_col + 1)]
    rows_per_tile = max(1, TILE_CELLS // max(1, cols // n_col))
    n_row = max(math.ceil(rows / rows_per_tile), math.ceil(TILES_PER_THREAD * thread_count() / n_col))
    n_row = min(n_row, rows)
    row_edges = [first + round(k * rows / n_row) for k in range(n_row + 1)]
    return [(r0, r1, c0, c1) for r0, r1 in itertools.pairwise(row_edges) if r1 > r0
            for c0, c1 in itertools.pairwise(col_edges) if c1 > c0]


def _tile_reach(line: np.ndarray, sample: np.ndarray, window: RadarWindow, valid: np.ndarray | None = None,
                border: tuple[bool, bool, bool, bool] = (True, True, True, True)) -> tuple[int, int, int, int]:
    """The window pixels (first line, lines, first sample, samples; window-relative) that
    the facets of a tile's own cells can reach, from its cells with their halo (``line``,
    ``sample``, ``valid``: default where the line is finite): every facet vertex lies
    between those centres, or beyond them at the DEM's border, ``border``: whether the
    first row, last row, first column, last column are the DEM's (default all: a
    superset) (``kernels.facets.facet_extent``)."""
    line0, n_lines, sample0, n_samples = window
    if valid is None:
        valid = np.isfinite(line)
    l_min, l_max, s_min, s_max = facets.facet_extent(line, sample, valid, *border)
    if not math.isfinite(l_min):
        return 0, 1, 0, 1
    margin = 2
    low = max(0, math.floor(l_min) - margin - line0)
    high = min(n_lines, math.ceil(l_max) + margin + 1 - line0)
    left = max(0, math.floor(s_min) - margin - sample0)
    right = min(n_samples, math.ceil(s_max) + margin + 1 - sample0)
    if high <= low or right <= left:
        return 0, 1, 0, 1
    return low, high - low, left, right - left


SMOOTH_SAMPLES = 40_000  # cells the smooth fields of the radar geometry are fitted to
SMOOTH_NAMES = ("pixel_area", "incidence")  # sampled at the cells
#: Fitted: the sampled fields and the flat-terrain gamma area a_p cot(theta) (m^2), the
#: reference of terrain flattening's validity, derived from them.
FIELD_NAMES = (*SMOOTH_NAMES, "flat_gamma_area")


def smooth_stride(shape: tuple[int, int], samples: int = SMOOTH_SAMPLES) -> int:
    """Row and column stride of the even subset of about ``samples`` cells of a DEM."""
    return max(1, int(math.sqrt(shape[0] * shape[1] / samples)))


def smooth_samples(cells: dict[str, np.ndarray], stride: int, first_row: int = 0) -> dict[str, np.ndarray]:
    """(line, sample, pixel area, incidence) of the valid cells on the DEM rows r with
    r % stride == 0 and every ``stride``-th column; ``first_row``: the DEM row of
    ``cells``' first row, so that blocks of rows pick the same cells as the whole DEM."""
    start = (-first_row) % stride
    valid = cells["valid"][start::stride, ::stride]
    return {name: cells[name][start::stride, ::stride][valid]
            for name in ("line", "sample", *SMOOTH_NAMES)}


@dataclasses.dataclass(frozen=True)
class SmoothFields:
    """Quantities of the radar geometry alone (pixel area, incidence, flat-terrain gamma
    area) on the radar window.

    They are known at the cells' (line, sample) positions and vary smoothly with them, so
    a least-squares polynomial of degree 2 in (line, sample), fitted to an even subset of
    about 40 000 valid cells, represents them to about 1e-6 relative and fills every
    window pixel, including those no cell centre reaches. Evaluating on a sub-window
    gives exactly the matching part of the whole window's field.
    """

    window: RadarWindow
    coefficients: dict[str, np.ndarray | None]
    degree: int = 2

    @classmethod
    def fit(cls, samples: dict[str, np.ndarray], window: RadarWindow,
            degree: int = 2) -> SmoothFields:
        line0, n_lines, sample0, n_samples = window
        if samples["line"].size == 0:
            return cls(window, dict.fromkeys(FIELD_NAMES), degree)
        u = (samples["line"] - line0 - 0.5 * n_lines) / max(n_lines, 1)
        v = (samples["sample"] - sample0 - 0.5 * n_samples) / max(n_samples, 1)
        design = np.stack([u**p * v**q for p, q in cls._terms(degree)], axis=1)
        incidence = samples["incidence"].astype(np.float64)
        values = {name: samples[name].astype(np.float64) for name in SMOOTH_NAMES}
        values["flat_gamma_area"] = values["pixel_area"] * np.cos(incidence) / np.sin(incidence)
        coefficients = {name: np.linalg.lstsq(design, values[name], rcond=None)[0] for name in FIELD_NAMES}
        return cls(window, coefficients, degree)

    @classmethod
    def from_cells(cls, cells: dict[str, np.ndarray], window: RadarWindow) -> SmoothFields:
        stride = smooth_stride(cells["valid"].shape)
        samples = smooth_samples(cells, stride)
        if samples["line"].size == 0 and stride > 1:
            samples = smooth_samples(cells, 1)
        return cls.fit(samples, window)

    @staticmethod
    def _terms(degree: int) -> list[tuple[int, int]]:
        return [(p, q) for p in range(degree + 1) for q in range(degree + 1 - p)]

    def kernel_arguments(self) -> tuple[np.ndarray, np.ndarray, bool, tuple[int, int, int, int]]:
        """(coefficients of the pixel area and the flat-terrain gamma area (2, n_terms), the
        terms' powers (n_terms, 2), whether they were fitted, the fit's window): the
        polynomials as ``kernels.reallocation`` evaluates them."""
        powers = np.array(self._terms(self.degree), dtype=np.int64)
        fitted = self.coefficients["pixel_area"] is not None
        fields = np.zeros((2, powers.shape[0]))
        if fitted:
            fields[0] = self.coefficients["pixel_area"]
            fields[1] = self.coefficients["flat_gamma_area"]
        return fields, powers, fitted, tuple(int(value) for value in self.window)

    def separable_terms(self, name: str, window: RadarWindow | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The field on ``window`` (default: the whole fitted window) as row terms (n_terms,
        lines) and column terms (n_terms, samples), the field being the sum over the terms
        of their products, in order (``kernels.facets.polynomial_field``): each term
        (c u^p) v^q is its factors along lines and along samples. One NaN term when
        nothing was fitted."""
        line0, n_lines, sample0, n_samples = self.window
        sub_line0, sub_lines, sub_sample0, sub_samples = window or self.window
        coefficients = self.coefficients[name]
        if coefficients is None:
            return np.full((1, sub_lines), np.nan), np.ones((1, sub_samples))
        lines = np.arange(sub_line0 - line0, sub_line0 - line0 + sub_lines)
        samples = np.arange(sub_sample0 - sample0, sub_sample0 - sample0 + sub_samples)
        uu = (lines - 0.5 * n_lines) / max(n_lines, 1)
        vv = (samples - 0.5 * n_samples) / max(n_samples, 1)
        terms = list(zip(self._terms(self.degree), coefficients, strict=True))
        row_terms = np.array([c * uu**p for (p, _), c in terms]).reshape(len(terms), sub_lines)
        column_terms = np.array([vv**q for (_, q), _ in terms]).reshape(len(terms), sub_samples)
        return row_terms, column_terms

    def evaluate(self, name: str, window: RadarWindow | None = None) -> np.ndarray:
        """The field on ``window`` (default: the whole fitted window), NaN when nothing was fitted."""
        _, sub_lines, _, sub_samples = window or self.window
        if self.coefficients[name] is None:
            return np.full((sub_lines, sub_samples), np.nan)
        # One threaded pass over the pixels (no whole-image temporary per term).
        row_terms, column_terms = self.separable_terms(name, window)
        out = np.empty((sub_lines, sub_samples))
        run_blocks(lambda start, stop: facets.polynomial_field(row_terms, column_terms, start, stop, out),
                   sub_lines, block_count(out.shape))
        return out


def check_simulation_options(geometry: Any, projection: Any, oversample: Any) -> None:
    """Refuse, before any work, a geometry that is not a :class:`RadarGeometry`, an
    unknown projection or a bad oversampling factor."""
    if not isinstance(geometry, RadarGeometry):
        raise InvalidInputError(
            f"geometry must be a RadarGeometry (from_sentinel1 or synthetic), got {type(geometry).__name__}"
        )
    if projection not in ("exact", "bilinear"):
        raise InvalidInputError(f"projection must be 'exact' or 'bilinear', got {projection!r}")
    if oversample != "auto":
        check_oversample(oversample)


#: Peak memory of an in-memory simulation or reconstruction per DEM cell (98-130 bytes
#: measured by benchmarks/reconstruct.py, outputs included) and per pixel of its radar
#: window (simulated sums, ratios, mixing, the observation, smooth fields).
BYTES_PER_CELL = 130
BYTES_PER_PIXEL = 48


def check_run_memory(cells: int, window: RadarWindow | None = None) -> None:
    """Refuse, before the costly passes, a simulation of ``cells`` DEM cells onto
    ``window`` that needs more memory than the machine has available."""
    pixels = 0 if window is None else window.lines * window.samples
    where = f"{cells} DEM cells" + ("" if window is None else f" onto {window.lines} x {window.samples} radar pixels")
    check_memory(cells * BYTES_PER_CELL + pixels * BYTES_PER_PIXEL, f"simulating {where}",
                 ": crop the DEM, use coarser radar pixels, or reconstruct block by block (chunks=256)")


def check_dem_shape(dem: xr.DataArray) -> None:
    """Refuse a DEM too small to form facets (fewer than 2 x 2 cells)."""
    if min(dem.shape) < 2:
        raise InvalidInputError(f"the DEM must have at least 2 x 2 cells to form facets, got {dem.shape}")


def run_simulation(dem: Any, geometry: RadarGeometry, *, contribution: Contribution = "model",
                   projection: Projection = "exact", oversample: int | Literal["auto"] = "auto",
                   keep_per_cell: bool = True, progress: Callable[[int], None] | None = None,
                   on_window: Callable[[RadarWindow], None] | None = None, clear: bool = True,
                   every_line: bool = True) -> Simulation:
    """Cell geometry, masks, and the scatter of the facets into the radar window.

    Parameters
    ----------
    dem, geometry, contribution, projection, oversample : as for :func:`simulate`.
    keep_per_cell : keep the per-cell sums of the scatter (sigma and gamma areas,
        contribution, local incidence) for the whole DEM; ``reconstruct`` does without
        them (its gather computes them again, block by block).
    progress : called with the DEM rows of each scattered block.
    on_window : called with the radar window as soon as it is known, before the masks
        and facets (to check an observation on it).
    clear : clear the rounding residue of the sums (:func:`clear_residue`); False leaves
        it to the reallocation's ratio pass, which clears as it reads them (one pass over
        the window fewer: ``reconstruct``).
    every_line : the mixing of every line of the window from its own profile; False: only
        the lines that bound the sweep's groups are cut, the others take the mixing of the
        nearer (:func:`visibility_masks`; the masks are the same), for callers that do
        not use the mixing.
    """
    check_simulation_options(geometry, projection, oversample)
    # The heights are only read: no copy of a DEM that is already ellipsoidal.
    dem = open_dem(dem, copy=False)
    check_dem_shape(dem)
    resolved = resolve_contribution(contribution, dem)
    check_run_memory(dem.size)
    cells = cell_geometry(dem, geometry)
    window = radar_window(cells["line"], cells["sample"], cells["valid"], geometry)
    check_run_memory(dem.size, window)
    if on_window is not None:
        on_window(window)
    factor = _oversample_factor(oversample, projection, dem, cells)
    lines, samples = geometry.grid.shape
    layover, shadow, mixing = visibility_masks(cells, cells["faces_away"], cells["active_layover"], window,
                                               every_line=every_line)
    # Cells whose centre falls outside the image are "outside" (255); a cell straddling
    # the image's edge keeps only the energy of its part inside.
    with np.errstate(invalid="ignore"):
        outside = ~(cells["valid"] & (cells["line"] >= -0.5) & (cells["line"] <= lines - 0.5) & (
            cells["sample"] >= -0.5) & (cells["sample"] <= samples - 0.5))
    layover[outside] = MaskCode.OUTSIDE
    shadow[outside] = MaskCode.OUTSIDE
    del outside
    smooth = SmoothFields.from_cells(cells, window)
    # What only the masks and the smooth fields needed goes now: 33 bytes per cell.
    for name in ("look_angle", "cross_track", "pixel_area", "faces_away", "active_layover"):
        del cells[name]
    state = Simulation(dem, geometry, cells, window, factor, projection == "exact", resolved,
                        layover, shadow, mixing, {}, radar_sums(0, 0), smooth)
    if keep_per_cell:
        _, sigma_area, gamma_area, contrib, cos_local, sums = state.facet_pass(gather=False, progress=progress)
        state.per_cell = {"sigma_area": sigma_area, "gamma_area": gamma_area, "contribution": contrib,
                          "cos_local_incidence": cos_local}
    else:
        sums = state.facet_pass(gather=False, consume=lambda *_: None, per_cell=False, progress=progress)[-1]
    state.sums = sums
    if clear:
        clear_residue(state.images, window, smooth, resolved)
    return state


#: Fraction of a pixel's flat-terrain sum below which a simulated sum is taken for
#: rounding residue and cleared.
RESIDUE_FRACTION = 1e-9


def residue_thresholds(contribution: FacetContribution, smooth: SmoothFields) -> np.ndarray:
    """(2,) per unit of pixel area, the sums (contribution, gamma area) below which a
    pixel's simulated sum is rounding residue (:func:`clear_residue`)."""
    return RESIDUE_FRACTION * np.array(_flat_densities(contribution, smooth))


def _flat_densities(contribution: FacetContribution, smooth: SmoothFields) -> tuple[float, float]:
    """The least that flat terrain gives per unit of pixel area anywhere in the scene:
    contribution (channel 0) and gamma area (channel 1), at the largest incidence of the
    simulation's window (the contribution laws fall with incidence). Constants of the
    whole scene, so that every block of it clears the same pixels."""
    line0, n_lines, sample0, n_samples = smooth.window
    corners = [smooth.evaluate("incidence", (line, 1, sample, 1))[0, 0]
               for line in (line0, line0 + n_lines - 1) for sample in (sample0, sample0 + n_samples - 1)]
    incidence = float(np.nanmax(corners)) if np.isfinite(corners).any() else math.radians(45.0)
    gamma = math.cos(incidence) / math.sin(incidence)
    if contribution.code == facets.CONTRIBUTION_GAMMA:
        return gamma, gamma
    if contribution.code == facets.CONTRIBUTION_USER:
        centre = (line0 + n_lines // 2, 1, sample0 + n_samples // 2, 1)
        reference_area = float(np.nan_to_num(smooth.evaluate("pixel_area", centre)[0, 0]))
        return contribution.density_scale(reference_area), gamma
    degrees = math.degrees(incidence)
    if contribution.table.size > 1:
        law = float(np.interp(degrees, np.linspace(0.0, 90.0, contribution.table.size), contribution.table))
    else:
        law = float(empirical_sigma0(degrees))
    return law / math.sin(incidence), gamma


def clear_residue(images: np.ndarray, window: RadarWindow, smooth: SmoothFields,
                   contribution: FacetContribution) -> None:
    """Clear the rounding residue of the simulated sums (2, lines, samples) on ``window``.

    The difference sums of exact projection leave residue (about 1e-16 of a line's
    deposits) in pixels no facet reaches, and a ratio over such a pixel would be huge,
    which the row prefix sums of the gather would spread (by cancellation) over the whole
    line. A pixel is cleared where its sum is below ``RESIDUE_FRACTION`` of its area times
    the least that flat terrain gives per unit area in the scene: a criterion of the
    pixel and the scene, so that block-wise runs clear the same pixels as in memory. It
    drops only slivers of facets under a billionth of a pixel, and bounds the ratios at
    about a billion times flat terrain's.
    """
    line0, n_lines, sample0, n_samples = window
    thresholds = residue_thresholds(contribution, smooth)[:images.shape[0]]
    fields, powers, fitted, fit = smooth.kernel_arguments()
    run_blocks(lambda start, stop: kernels.reallocation.clear_residue(
        images, start, stop, fields, powers, fitted, fit, line0, sample0, thresholds),
        n_lines, max(1, math.ceil(n_lines * n_samples / BLOCK_CELLS)))


def simulate(
    dem: Any,
    geometry: RadarGeometry,
    *,
    contribution: Contribution = "model",
    projection: Projection = "exact",
    oversample: int | Literal["auto"] = "auto",
    progress: bool = True,
) -> xr.Dataset:
    """Simulate the radar imaging of a DEM.

    Parameters
    ----------
    dem : DEM as :func:`sarheight.dem.open_dem` takes it (WGS84 ellipsoidal heights, m).
    geometry : acquisition geometry.
    contribution : what each facet returns: ``"model"`` (default: the empirical sigma0 law
        of SNAP's and ISCE3's simulators, 0.0118 cos t / (sin t + 0.111 cos t)^3, times the
        facet's sigma area), ``"gamma"`` (the projected area A_gamma: constant gamma0,
        Small 2011), any callable of the local incidence angle (degrees) returning linear
        sigma0, or a DataArray of per-cell weights on the DEM grid.
    projection : ``"exact"`` polygon-pixel overlap weights (Shiroma et al. 2022), or
        ``"bilinear"`` splatting of facet centres (fast approximation where the DEM spacing
        is about the pixel spacing; on a DEM coarser than the pixels its oversampling
        makes it slower than exact: ``sarheight benchmark``'s 30 m DEM under 10 m pixels
        takes k = 6 and runs at 0.85x exact's speed).
    oversample : facets per DEM cell side; ``"auto"``: 2 for exact (the DEM upsampled 2x, as
        OPERA does), for bilinear enough that a typical facet (the median cell step) spans
        at most about half a pixel, and at least 2.
    progress : show a progress bar (only when standard error is a terminal).

    Returns
    -------
    xr.Dataset with, on the DEM grid (y, x): ``local_incidence_angle`` (deg),
    ``gamma_area``, ``sigma_area`` (m^2), ``contribution``, ``layover``, ``shadow`` (uint8:
    0 none, 1 active, 2 passive, 255 outside the image / no DEM), ``slant_range`` (m),
    ``radar_line``, ``radar_sample`` (the cell's fractional position in the product grid;
    named so beside the radar grid's own ``line``/``sample`` dimensions),
    ``azimuth_time``, ``incidence_angle``; and on the radar grid
    (line, sample; absolute product indices cropped to the DEM footprint):
    ``simulated_area`` (sum of w*c over the pixel area), ``simulated_gamma_area``,
    ``pixel_area`` (m^2), ``mixing`` (separate ground segments per pixel), ``valid`` (gamma
    area >= 5 % of flat terrain's).
    """
    dem = open_dem(dem, copy=False)
    with progress_bar(dem.shape[0], "simulate", progress) as update:
        state = run_simulation(dem, geometry, contribution=contribution, projection=projection,
                               oversample=oversample, progress=update)
    return state.to_dataset()


def texture(shape: tuple[int, int], *, seed: int = 0, correlation_cells: float = 6.0,
            contrast_db: float = 3.0) -> np.ndarray:
    """A land-cover-like multiplicative texture (mean 1): smooth patches with log-normal
    values, their standard deviation ``contrast_db`` (dB; 0: all ones), independent of
    the terrain's slopes (:func:`sarheight.ground.lognormal_texture`)."""
    return lognormal_texture(shape, seed=seed, contrast_db=contrast_db, correlation_cells=correlation_cells)


def simulate_sar(
    dem: Any,
    geometry: RadarGeometry,
    *,
    backscatter: xr.DataArray | Callable[[np.ndarray], np.ndarray] | None = None,
    looks: float | None = 4.4,
    nesz_db: float | None = -22.0,
    seed: int = 0,
    projection: Projection = "exact",
    oversample: int | Literal["auto"] = "auto",
    return_truth: bool = False,
    law: str = "empirical",
    land_cover_db: float = 3.0,
    land_cover_seed: int | None = None,
    ground: Ground | None = None,
) -> xr.DataArray | tuple[xr.DataArray, xr.DataArray]:
    """Simulate a beta0-like radar observation (linear intensity) of a DEM.

    Parameters
    ----------
    dem, geometry : as for :func:`simulate`.
    backscatter : the true ground sigma0 (linear): a DataArray on the DEM grid, or a
        callable of the local incidence angle (degrees); default the sigma0 law ``law``
        times a land-cover-like texture (:func:`texture`, seeded by ``seed``) of
        ``land_cover_db``.
    law : with ``backscatter=None``, the ground's sigma0 law of the local incidence, a name
        of :data:`SIGMA0_LAWS` ("empirical": the law the reconstruction models;
        "lambert": another surface).
    land_cover_db : with ``backscatter=None``, the standard deviation (dB) of the land-cover
        texture, patches of a few cells independent of the slopes (0: none, the ground
        follows the law alone).
    land_cover_seed : the seed of the land cover (default ``seed``): observations of one
        ground by several passes share it, while their speckle differs.
    ground : a :class:`sarheight.ground.Ground` on the DEM's grid (e.g. from
        :func:`sarheight.ground.draw_ground`): the ground sigma0 of each cell is its land
        cover class's law of the cell's own local incidence (that of the cell's summed
        facet area vector) times the ground's texture, carried by the cell's facets that
        see the sensor in proportion to their sigma areas. It replaces ``law`` and the
        land cover: refused together with ``backscatter``, a ``law`` other than
        "empirical", ``land_cover_db`` other than 3 or a ``land_cover_seed``.
    looks : equivalent number of looks of the multiplicative gamma speckle; None: none.
    nesz_db : noise-equivalent sigma0 (dB) of an additive noise floor; None: none.
    seed : random seed of the texture, speckle and noise.
    projection, oversample : as for :func:`simulate`.
    return_truth : also return the true sigma0 of each DEM cell (the sigma-area-weighted
        mean over its facets), the reference against which reconstructions are judged.

    Returns
    -------
    xr.DataArray (line, sample) on the radar window covering the DEM, beta0 (linear): the
    sum over facets of w * sigma0 * A_sigma divided by the pixel area, plus the noise
    floor, times the speckle. Pixels no facet reaches hold the noise floor alone (0
    without noise). With ``return_truth``: ``(observation, truth)``, truth on the DEM grid.
    """
    if looks is not None and not (isinstance(looks, (int, float, np.number)) and math.isfinite(looks) and looks > 0):
        raise InvalidInputError(f"looks must be a positive number or None, got {looks!r}")
    if nesz_db is not None and not (isinstance(nesz_db, (int, float, np.number)) and math.isfinite(nesz_db)):
        raise InvalidInputError(f"nesz_db must be a finite number (dB) or None for no noise floor, got {nesz_db!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    if law not in SIGMA0_LAWS:
        raise InvalidInputError(f"law must be one of {', '.join(SIGMA0_LAWS)}, got {law!r}")
    if not (isinstance(land_cover_db, (int, float, np.number)) and 0 <= land_cover_db < 30):
        raise InvalidInputError(f"land_cover_db must be a number of dB from 0 to 30, got {land_cover_db!r}")
    if ground is not None:
        if not isinstance(ground, Ground):
            raise InvalidInputError(f"ground must be a sarheight.ground.Ground (draw_ground makes one), got "
                                    f"{type(ground).__name__}")
        given = [name for name, clash in (("backscatter", backscatter is not None), ("law", law != "empirical"),
                                          ("land_cover_db", land_cover_db != 3.0),
                                          ("land_cover_seed", land_cover_seed is not None)) if clash]
        if given:
            raise InvalidInputError(
                f"ground gives the ground's sigma0 laws, land cover and texture: give it without {', '.join(given)}"
            )
    dem = open_dem(dem)
    # The observation needs the masks, not the mixing: the sweep cuts only the lines
    # that bound its groups.
    options = {"projection": projection, "oversample": oversample, "every_line": False}
    if ground is not None:
        if ground.shape != dem.shape:
            raise InvalidInputError(f"the ground's class map has shape {ground.shape}, the DEM {dem.shape}: draw "
                                    "the ground on this DEM (draw_ground(dem, family, seed))")

        def lit(angles: np.ndarray) -> np.ndarray:
            return np.ones_like(angles)  # a facet's contribution: its sigma area where it sees the sensor

        first = run_simulation(dem, geometry, contribution=lit, **options)
        with np.errstate(invalid="ignore"):
            incidence = np.degrees(np.arccos(np.clip(first.per_cell["cos_local_incidence"], -1, 1)))
        # Cells outside the image or without facets have no angle (NaN): nothing to carry.
        weights = np.nan_to_num(ground.sigma0(incidence)) * first.per_cell["contribution"]
        state = run_simulation(dem, geometry, contribution=dem.copy(data=weights), **options)
        sigma_area = first.per_cell["sigma_area"]
        truth = np.where(sigma_area > 0, weights / np.where(sigma_area > 0, sigma_area, 1), np.nan)
    elif backscatter is None:
        model = run_simulation(dem, geometry, contribution="model" if law == "empirical" else SIGMA0_LAWS[law],
                               **options)
        cover = texture(dem.shape, seed=seed if land_cover_seed is None else int(land_cover_seed),
                        contrast_db=float(land_cover_db))
        weights = cover * model.per_cell["contribution"]
        state = run_simulation(dem, geometry, contribution=dem.copy(data=weights), **options)
        truth = cover * np.where(
            model.per_cell["sigma_area"] > 0,
            model.per_cell["contribution"] / np.where(model.per_cell["sigma_area"] > 0, model.per_cell["sigma_area"], 1),
            np.nan,
        )
    elif isinstance(backscatter, xr.DataArray):
        values = values_on_dem_grid(backscatter, dem, "backscatter")
        if np.isinf(values).any():
            raise InvalidInputError("backscatter (linear sigma0) has infinite values: give NaN where it is unknown")
        if np.any(values[np.isfinite(values)] < 0):
            raise InvalidInputError("backscatter (linear sigma0) must be non-negative")
        first = run_simulation(dem, geometry, contribution="gamma", **options)
        weights = np.nan_to_num(values) * first.per_cell["sigma_area"]
        state = run_simulation(dem, geometry, contribution=dem.copy(data=weights), **options)
        truth = values
    elif callable(backscatter):
        state = run_simulation(dem, geometry, contribution=backscatter, **options)
        with np.errstate(invalid="ignore", divide="ignore"):
            truth = state.per_cell["contribution"] / state.per_cell["sigma_area"]
    else:
        raise InvalidInputError("backscatter must be None, a DataArray of sigma0 or a callable law")
    pixel_area = state.pixel_area
    with np.errstate(invalid="ignore", divide="ignore"):
        intensity = np.where(pixel_area > 0, state.images[0] / pixel_area, 0.0)
    rng = np.random.default_rng(seed + 1)
    if nesz_db is not None:
        sin_inc = np.nan_to_num(state.sin_incidence, nan=1.0)
        intensity = intensity + 10 ** (nesz_db / 10) / np.maximum(sin_inc, 1e-3)
    if looks is not None:
        intensity = intensity * rng.gamma(looks, 1.0 / looks, size=intensity.shape)
    out = xr.DataArray(
        intensity.astype(np.float32),
        dims=("line", "sample"),
        coords=state.window.coords(),
        name="beta0",
        attrs={
            "long_name": "simulated beta0 (linear power)",
            "units": "1",
            "looks": "none" if looks is None else float(looks),
            "nesz_db": "none" if nesz_db is None else float(nesz_db),
            "seed": int(seed),
            "sigma0_law": ground.name if ground is not None else law if backscatter is None else "given",
            "land_cover_db": (ground.texture_db if ground is not None else float(land_cover_db) if backscatter is None
                              else "given"),
            "projection": projection,
            "oversample": state.oversample,
            "sarheight_version": __version__,
            **(ground.to_attrs() if ground is not None else {}),
        },
    )
    if not return_truth:
        return out
    truth_da = xr.DataArray(
        np.asarray(truth, dtype=np.float32), dims=("y", "x"), coords={"y": dem["y"], "x": dem["x"]},
        name="sigma0", attrs={"long_name": "true sigma0 of each DEM cell (linear)", "units": "1"},
    ).rio.write_crs(dem.rio.crs)
    return out, truth_da
