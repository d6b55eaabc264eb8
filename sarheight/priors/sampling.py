"""Priors on a DEM's grid: sampled from the DEM in one of the patterns real priors come in
(exact or with an instrument's errors), or read from points.

Patterns
--------
Uniform random priors are the easy case: every cell has one a few cells away. Real priors
come along altimeter tracks and survey routes, with large gaps between them, and a model
evaluated only on uniform priors is flattered. ``sample_priors(pattern=...)`` draws:

``"random"``
    Cells drawn uniformly, without replacement, among the DEM's cells with a height.
``"tracks"``
    ICESat-2-like ground tracks. ATLAS has three beam pairs, the pairs
    :data:`PAIR_SPACING_M` (3.3 km) apart across track and the two beams of a pair
    :data:`BEAM_SPACING_M` (90 m) apart. Its 92 degree orbit draws near-meridional ground
    tracks: one heading magnitude within :data:`TRACK_HEADING_DEG` (2-12 degrees from the
    grid's north) is drawn per call, and each track is ascending or descending (that angle
    west or east of north) at random, its across-track position uniform over the grid (one of
    its six beams crosses the grid). Along each beam a point every :data:`TRACK_SPACING_M`
    (20 m, ATL06's segment spacing) from a random phase, assigned to the cell that contains it
    (each cell once). Tracks are drawn until the count is reached, their beams taken whole in
    random order, and the last beam is cut to meet the count exactly (a track interrupted by
    clouds). ``track_layout="gedi"`` lays tracks out as GEDI's instead: eight ground tracks
    :data:`GEDI_TRACK_SPACING_M` (600 m) apart across track, a footprint every
    :data:`GEDI_SHOT_SPACING_M` (60 m) along it (Dubayah et al. 2020, Sci. Remote Sens. 1),
    headed :data:`GEDI_HEADING_DEG` (38-62 degrees) from north: the ISS's 51.6 degree orbit
    crosses latitudes 0-45 degrees at that angle (sin(heading) = cos(inclination) / cos(latitude),
    the Earth's rotation neglected).
``"clusters"``
    GNSS campaigns: points surveyed along roads and valleys, in a few clusters. Cluster
    centres are drawn with a preference for valley floors: a probability proportional to
    (1 - r_relief)^2 (1 - r_slope) + 0.01, with r_relief and r_slope the percentile ranks of a
    cell's height above the mean within :data:`VALLEY_WINDOW_M` (1 km) and of its slope. From
    each centre a road-like path walks on the 8 neighbours, with log-weights
    ``2 cos(turn) - |grade| / ROAD_GRADE + log(2) [downhill]``: it keeps its direction, takes
    gentle steps (:data:`ROAD_GRADE`, 8 %: roads are rarely steeper) and goes down rather
    than up, with a prior at every cell it visits. A path that runs into itself, the grid's
    edge or a void goes on from a random earlier cell of its cluster (a side road). There are
    round(sqrt(count) / 2) clusters (at least one), the count split evenly among them.

Every pattern is drawn with ``numpy.random.default_rng(seed)``; the same seed gives the same
priors, and the errors and the noise of ``noise_m`` are drawn after the cells, in that order,
so that they never move them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path
from typing import Any

import affine
import numpy as np
import pyproj
import scipy.ndimage
import scipy.spatial
import scipy.stats
import xarray as xr

from ..dem import (
    Dem,
    DemSource,
    horizontal_crs,
    open_dem,
)
from ..errors import (
    InvalidInputError,
)
from ..raster import cell_steps_m, gradient, nan_box_mean
from ..scores import rms
from .instruments import check_seed, measure
from .points import priors_from_points
from .spec import PriorSpec

logger = logging.getLogger(__name__)


#: ICESat-2 ATLAS: across-track distance (m) between its beam pairs, and between the two
#: beams of a pair.
PAIR_SPACING_M = 3300.0


BEAM_SPACING_M = 90.0


#: Along-track spacing (m) of the track points: ATL06's land-ice segments.
TRACK_SPACING_M = 20.0


#: Range (degrees from the grid's north) from which the tracks' heading magnitude is drawn.
TRACK_HEADING_DEG = (2.0, 12.0)


#: GEDI: across-track distance (m) between its eight ground tracks, along-track distance (m)
#: between its footprints, and the range (degrees from north) of its tracks' heading magnitude.
GEDI_TRACK_SPACING_M = 600.0


GEDI_SHOT_SPACING_M = 60.0


GEDI_HEADING_DEG = (38.0, 62.0)


# Per layout: the beams' across-track offsets (m) from the track's centre, the along-track
# spacing (m) of their points and the range (degrees) of the heading magnitude.
_TRACK_LAYOUTS = {
    "icesat2": (np.array([-PAIR_SPACING_M - 0.5 * BEAM_SPACING_M, -PAIR_SPACING_M + 0.5 * BEAM_SPACING_M,
                          -0.5 * BEAM_SPACING_M, 0.5 * BEAM_SPACING_M,
                          PAIR_SPACING_M - 0.5 * BEAM_SPACING_M, PAIR_SPACING_M + 0.5 * BEAM_SPACING_M]),
                TRACK_SPACING_M, TRACK_HEADING_DEG),
    "gedi": ((np.arange(8) - 3.5) * GEDI_TRACK_SPACING_M, GEDI_SHOT_SPACING_M, GEDI_HEADING_DEG),
}


#: Width (m) of the neighbourhood against which a cell is low (a valley floor).
VALLEY_WINDOW_M = 1000.0


#: Grade (height over distance) that divides a road path's step weight by e.
ROAD_GRADE = 0.08




def sample_priors(dem: DemSource | Dem, priors: PriorSpec | None = None, *, seed: int = 0, **fields: Any) -> xr.Dataset:
    """Sparse elevation priors on a DEM's grid: drawn from the DEM (exact, or measured with
    an instrument's errors), or read from points, as a :class:`PriorSpec` says.

    Parameters
    ----------
    dem : str, os.PathLike, xarray.DataArray or tuple
        Anything :func:`sarheight.dem.open_dem` takes; opened with its defaults (the datum
        read from the CRS), so give a DEM on a geoid opened already
        (``open_dem(path, vertical_datum="egm96", geoid_grid=...)``). Its heights are WGS84
        ellipsoidal afterwards, and so are the priors.
    priors : PriorSpec, optional
        Where the priors come from and how exact they are.
    seed : int, default 0
        Seed of ``numpy.random.default_rng``: cells, tracks, clusters, errors and noise. An
        instrument ``kind`` without ``errors`` has them drawn from its ranges with a seed
        derived from this one by ``numpy.random.SeedSequence``, not this one itself, whose
        first numbers also lay out the cells: one stream would tie, say, the altimeter's
        vertical noise to its tracks' heading from scene to scene.
    **fields
        Instead of ``priors``: the fields of a :class:`PriorSpec` (``fraction=1e-3,
        pattern="tracks"``, ``points="gnss.csv", crs="EPSG:4326"``...).

    Returns
    -------
    xarray.Dataset
        On the DEM's grid (its x/y coordinates, the CRS written on the dataset and its
        variables):

        - ``prior_height``: float32, WGS84 ellipsoidal height (m) of each prior, NaN where
          there is none;
        - ``prior_mask``: uint8, 1 where a prior, 0 elsewhere.

        ``attrs``: ``pattern`` ("random", "tracks", "clusters" or "points"), ``count``
        (cells with a prior), ``fraction`` (of the DEM's cells with a height), ``seed``,
        ``noise_m``, ``source`` (the points file's name or "the DataFrame"; "sampled from"
        the DEM file's name), ``vertical_datum`` ("ellipsoid") and ``source_vertical_datum``
        of the heights, and per pattern: ``track_heading_deg`` and ``track_layout``,
        ``clusters``; for points ``points`` (read), ``points_left_out``, ``points_per_cell``
        and ``geoid_grid`` (a path or "PROJ") where converted. Drawn priors also carry
        ``prior_error_rms_m``, the root-mean-square (m) of the priors minus the DEM's heights
        at their cells (errors and noise together), and with errors their
        :meth:`PriorErrors.to_attrs`: ``prior_kind``, ``prior_vertical_m``,
        ``prior_geolocation_m``, ``prior_footprint_m``, ``prior_slope_bias``.

    Raises
    ------
    InvalidInputError
        Both ``priors`` and fields, or neither; what :class:`PriorSpec` refuses; a seed that
        is not a whole number; a count above the cells with a height; a points table without
        the expected columns, with heights that are missing or not numbers, or without a
        CRS; no point on the grid; the checks of ``open_dem``.
    MissingInputError
        ``points`` or ``geoid_grid`` names a file that does not exist.
    DatumError
        EGM96/EGM2008 heights and no geoid grid available, a vertical datum sarheight cannot
        convert, or a geoid grid without a datum for the heights.

    Warns
    -----
    PriorsOutsideWarning
        Points outside the grid or on cells without height were left out.
    VerticalDatumWarning
        Nothing declares the points' vertical datum: they are taken as ellipsoidal.
    """
    spec = _specification(priors, fields)
    check_seed(seed)
    if spec.kind is not None and spec.errors is None:
        spec = spec.with_errors_drawn(int(np.random.SeedSequence(int(seed), spawn_key=(1,)).generate_state(1)[0]))
    dem_source = Path(dem).name if isinstance(dem, (str, os.PathLike)) else None
    dem = open_dem(dem, copy=False)
    heights = np.asarray(dem.values)
    valid = np.isfinite(heights)
    n_valid = int(valid.sum())
    transform = dem.rio.transform()
    grid_crs = horizontal_crs(dem)
    rng = np.random.default_rng(seed)
    attrs: dict[str, Any] = {"pattern": spec.pattern or "points", "seed": int(seed)}
    if spec.points is None:
        n = prior_count(spec.fraction, spec.count, n_valid)
        steps = cell_steps_m(transform, grid_crs, heights.shape)
        if spec.pattern == "random":
            flat_valid = np.flatnonzero(valid)
            cells = np.sort(rng.choice(flat_valid, size=n, replace=False))
        elif spec.pattern == "tracks":
            beams_m, spacing_m, heading_deg = _TRACK_LAYOUTS[spec.track_layout]
            cells, heading = _track_cells(valid, n, steps, rng, beams_m=beams_m, spacing_m=spacing_m,
                                          heading_deg=heading_deg)
            attrs.update(track_heading_deg=heading, track_layout=spec.track_layout)
        else:
            cells, clusters = _cluster_cells(heights, valid, n, steps, rng)
            attrs["clusters"] = clusters
        values = heights.ravel()[cells].astype(np.float64)
        if spec.errors is not None:
            values = measure(heights, cells, spec.errors, steps, rng)
            attrs.update(spec.errors.to_attrs())
        attrs.update(source=f"sampled from {dem_source or dem.attrs.get('source', 'the DEM')}",
                     source_vertical_datum=str(dem.attrs.get("source_vertical_datum", "ellipsoid")))
    else:
        cells, values, point_attrs = priors_from_points(
            spec.points, spec.crs, spec.vertical_datum, spec.geoid_grid, spec.layer, valid, transform, grid_crs)
        attrs.update(point_attrs)
    if spec.noise_m > 0:
        values = values + rng.normal(0.0, spec.noise_m, size=values.shape)
    if spec.points is None:
        # Against the float32 heights the priors are stored as: an exact prior's error is 0.
        stored = values.astype(np.float32).astype(np.float64)
        attrs["prior_error_rms_m"] = rms(stored - heights.ravel()[cells])
    attrs.update(count=int(cells.size), fraction=float(cells.size / n_valid), noise_m=spec.noise_m,
                 vertical_datum="ellipsoid")
    return priors_dataset(dem, cells, values, attrs, transform, grid_crs)


def _specification(priors: Any, fields: dict[str, Any]) -> PriorSpec:
    """The one specification ``sample_priors`` was given, as a PriorSpec or as its fields."""
    if priors is not None and fields:
        raise InvalidInputError(
            f"give the priors as a PriorSpec or as its fields, not both (priors= and {', '.join(sorted(fields))}=)."
        )
    if priors is None:
        unknown = sorted(set(fields) - {field.name for field in dataclasses.fields(PriorSpec)})
        if unknown:
            raise InvalidInputError(
                f"sample_priors got {', '.join(unknown)}=, which is not a field of PriorSpec: give fraction, count or "
                "points, and pattern, kind, errors, noise_m, track_layout, crs, vertical_datum, geoid_grid, layer."
            )
        return PriorSpec(**fields)
    if not isinstance(priors, PriorSpec):
        raise InvalidInputError(f"priors={priors!r} must be a PriorSpec (PriorSpec(fraction=1e-3), "
                                "PriorSpec(points='gnss.csv', crs='EPSG:4326')).")
    return priors


def prior_count(fraction: float | None, count: int | None, n_valid: int) -> int:
    if count is not None:
        if count > n_valid:
            raise InvalidInputError(
                f"count={count} priors asked, but the DEM has only {n_valid} cells with a height: ask for fewer."
            )
        return int(count)
    return min(n_valid, max(1, round(float(fraction) * n_valid)))


def priors_dataset(dem: xr.DataArray, cells: np.ndarray, values: np.ndarray, attrs: dict,
                    transform: affine.Affine, grid_crs: pyproj.CRS) -> xr.Dataset:
    height = np.full(dem.shape, np.nan, dtype=np.float32)
    height.ravel()[cells] = values.astype(np.float32)
    mask = np.zeros(dem.shape, dtype=np.uint8)
    mask.ravel()[cells] = 1
    dataset = xr.Dataset(
        {
            "prior_height": (("y", "x"), height, {
                "units": "m", "long_name": "height of the prior above the WGS84 ellipsoid"}),
            "prior_mask": (("y", "x"), mask, {
                "long_name": "prior mask", "flag_values": np.array([0, 1], dtype=np.uint8),
                "flag_meanings": "no_prior prior"}),
        },
        coords={"y": dem["y"].values, "x": dem["x"].values},
        attrs=attrs,
    )
    dataset = dataset.rio.write_crs(grid_crs).rio.write_transform(transform)
    for name in dataset.data_vars:
        dataset[name] = dataset[name].rio.write_crs(grid_crs).rio.write_transform(transform)
    return dataset


def instrument_priors(dem: DemSource, kind: str, *, fraction: float | None = None, count: int | None = None,
                      seed: int = 0) -> xr.Dataset:
    """Priors as an instrument kind gives them: the kind's pattern (and track layout) and
    errors drawn from its ranges (:data:`PRIOR_KINDS`).

    Parameters
    ----------
    dem : str, os.PathLike, xarray.DataArray or tuple
        As for :func:`sample_priors`.
    kind : {"altimeter", "lidar", "gnss", "exact"}
        A key of :data:`PRIOR_KINDS`.
    fraction, count : optional
        Exactly one: the share of the DEM's cells with a height that get a prior, or their
        number (as for :func:`sample_priors`).
    seed : int, default 0
        Seed of the cells, the errors' parameters and their draws (as :func:`sample_priors`
        draws a kind's errors).

    Returns
    -------
    xarray.Dataset
        As :func:`sample_priors` with ``errors=`` (the error model and ``prior_error_rms_m``
        in its attrs).

    Raises
    ------
    InvalidInputError
        An unknown kind, and what :func:`sample_priors` refuses.
    """
    return sample_priors(dem, PriorSpec(fraction=fraction, count=count, kind=kind), seed=seed)


def _first_occurrences(cells: np.ndarray) -> np.ndarray:
    """``cells`` without repeats, in the order of their first occurrence."""
    _, first = np.unique(cells, return_index=True)
    return cells[np.sort(first)]


def _track_cells(valid: np.ndarray, count: int, steps: tuple[float, float], rng: np.random.Generator, *,
                 beams_m: np.ndarray | None = None, spacing_m: float = TRACK_SPACING_M,
                 heading_deg: tuple[float, float] = TRACK_HEADING_DEG) -> tuple[np.ndarray, float]:
    """``count`` cells along ICESat-2-like beams (see the module docstring), and the heading
    magnitude (degrees) of the tracks; ``beams_m`` (across-track offsets, m, from the track's
    centre; ICESat-2's by default), ``spacing_m`` (along-track, m) and ``heading_deg`` (the
    range of the heading magnitude) lay out another instrument's."""
    rows, cols = valid.shape
    step_n, step_e = steps
    flat_valid = valid.ravel()
    centre_e, centre_n = 0.5 * (cols - 1) * step_e, 0.5 * (rows - 1) * step_n
    reach = 0.5 * math.hypot(cols * step_e, rows * step_n) + max(abs(step_e), abs(step_n))
    beams = _TRACK_LAYOUTS["icesat2"][0] if beams_m is None else np.asarray(beams_m, dtype=np.float64)
    heading = float(rng.uniform(*heading_deg))
    taken = np.zeros(rows * cols, dtype=bool)
    chosen: list[np.ndarray] = []
    n_chosen = idle = 0
    while n_chosen < count:
        angle = math.radians(heading) * (1.0 if rng.random() < 0.5 else -1.0)
        along = (math.sin(angle), math.cos(angle))  # east, north
        across = (math.cos(angle), -math.sin(angle))
        offset = rng.uniform(-reach, reach) - beams[rng.integers(beams.size)]
        t = np.arange(-reach + rng.uniform(0.0, spacing_m), reach, spacing_m)
        added = False
        for beam in rng.permutation(beams.size):
            distance = offset + beams[beam]
            col = np.rint((centre_e + distance * across[0] + t * along[0]) / step_e).astype(np.int64)
            row = np.rint((centre_n + distance * across[1] + t * along[1]) / step_n).astype(np.int64)
            inside = (row >= 0) & (row < rows) & (col >= 0) & (col < cols)
            cells = _first_occurrences(row[inside] * cols + col[inside])
            cells = cells[flat_valid[cells] & ~taken[cells]][: count - n_chosen]
            if cells.size:
                taken[cells] = True
                chosen.append(cells)
                n_chosen += cells.size
                added = True
                if n_chosen >= count:
                    break
        idle = 0 if added else idle + 1
        if idle > 5000:
            raise InvalidInputError(
                f"{count} priors cannot be placed on tracks over this DEM ({n_chosen} placed): ask for fewer, or "
                "use pattern='random'."
            )
    return np.concatenate(chosen), heading


def _valley_weights(heights: np.ndarray, valid: np.ndarray, steps: tuple[float, float]) -> np.ndarray:
    """Weights (flat, 0 on cells without height) of cluster centres: high on low, gentle
    ground (valley floors)."""
    step_n, step_e = abs(steps[0]), abs(steps[1])
    size = (max(3, min(heights.shape[0], int(VALLEY_WINDOW_M / step_n) | 1)),
            max(3, min(heights.shape[1], int(VALLEY_WINDOW_M / step_e) | 1)))
    mean = nan_box_mean(np.where(valid, heights, np.nan), size, mode="nearest")
    smooth = np.where(valid, heights, mean)
    smooth = np.where(np.isfinite(smooth), smooth, np.nanmean(heights[valid]))
    grade_n, grade_e = gradient(smooth, (step_n, step_e)) if min(heights.shape) > 1 else (0.0 * smooth,) * 2
    relief = (heights - mean)[valid]
    slope = np.hypot(grade_n, grade_e)[valid]
    low = 1.0 - scipy.stats.rankdata(relief) / relief.size
    gentle = 1.0 - scipy.stats.rankdata(slope) / slope.size
    weights = np.zeros(heights.size)
    # The floor keeps every cell with a height possible: clusters on ridges exist too.
    weights[valid.ravel()] = low**2 * gentle + 0.01
    return weights


def _cluster_cells(heights: np.ndarray, valid: np.ndarray, count: int, steps: tuple[float, float],
                   rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """``count`` cells along road-like paths from valley centres (see the module docstring),
    and the number of clusters."""
    rows, cols = heights.shape
    step_n, step_e = steps
    flat_heights = heights.ravel().astype(np.float64)
    free = valid.ravel().copy()
    weights = _valley_weights(heights, valid, steps)
    moves = []
    for dr in (-1, 0, 1):
        for dc in (-1, 0, 1):
            if dr or dc:
                east, north = dc * step_e, dr * step_n
                length = math.hypot(east, north)
                moves.append((dr, dc, length, east / length, north / length))
    n_clusters = max(1, min(count, round(math.sqrt(count) / 2)))
    quotas = [count // n_clusters + (1 if i < count % n_clusters else 0) for i in range(n_clusters)]
    chosen: list[int] = []
    clusters = 0
    while len(chosen) < count:
        quota = quotas.pop(0) if quotas else count - len(chosen)
        quota = min(quota, count - len(chosen))
        p = np.where(free, weights, 0.0)
        centre = int(rng.choice(p.size, p=p / p.sum()))
        clusters += 1
        chosen += _road_path(centre, quota, flat_heights, free, moves, rows, cols, rng)
    return np.asarray(chosen, dtype=np.int64), clusters


def _road_path(start: int, quota: int, heights: np.ndarray, free: np.ndarray, moves: list, rows: int,
               cols: int, rng: np.random.Generator) -> list[int]:
    """Up to ``quota`` cells of one cluster's path from ``start``, taking them from ``free``."""
    free[start] = False
    path = [start]
    branches = [start]
    current = start
    turn = rng.uniform(0.0, 2.0 * math.pi)
    heading = (math.cos(turn), math.sin(turn))
    downhill = math.log(2.0)
    while len(path) < quota:
        row, col = divmod(current, cols)
        options, logits = [], []
        for dr, dc, length, east, north in moves:
            r, c = row + dr, col + dc
            if 0 <= r < rows and 0 <= c < cols and free[r * cols + c]:
                grade = (heights[r * cols + c] - heights[current]) / length
                options.append((r * cols + c, east, north))
                logits.append(2.0 * (east * heading[0] + north * heading[1]) - abs(grade) / ROAD_GRADE
                              + (downhill if grade < 0 else 0.0))
        if not options:
            current = _branch(branches, free, moves, rows, cols, rng)
            if current < 0:
                break  # the cluster's ground is used up: the next cluster takes the rest
            turn = rng.uniform(0.0, 2.0 * math.pi)
            heading = (math.cos(turn), math.sin(turn))
            continue
        logits_array = np.asarray(logits)
        p = np.exp(logits_array - logits_array.max())
        cell, east, north = options[int(rng.choice(len(options), p=p / p.sum()))]
        free[cell] = False
        path.append(cell)
        branches.append(cell)
        current, heading = cell, (east, north)
    return path


def _branch(branches: list[int], free: np.ndarray, moves: list, rows: int, cols: int,
            rng: np.random.Generator) -> int:
    """A random earlier cell of the path with a free neighbour (-1 where none is left);
    cells without one are dropped for good, since cells are only ever taken."""
    while branches:
        k = int(rng.integers(len(branches)))
        row, col = divmod(branches[k], cols)
        if any(0 <= row + dr < rows and 0 <= col + dc < cols and free[(row + dr) * cols + col + dc]
               for dr, dc, *_ in moves):
            return branches[k]
        branches[k] = branches[-1]
        branches.pop()
    return -1
