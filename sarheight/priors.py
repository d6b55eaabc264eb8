"""Sparse elevation priors: a few known heights on a DEM's grid, the distance from every cell
to the nearest one, and the heights the priors alone give.

The terrain-height model is given, beside the SAR image, a few known heights (priors), a mask
of where they are and the distance to the nearest one; every model is compared with the
priors-only interpolation. This module makes all three.

Public functions
----------------
sample_priors
    Priors on a DEM's grid: sampled from the DEM in one of the patterns real priors come in,
    exact or with an instrument's errors, or read from points (GNSS, ICESat-2) in any CRS and
    vertical datum.
instrument_priors
    Priors as an instrument kind of :data:`PRIOR_KINDS` gives them: its pattern, and errors
    drawn from its ranges.
draw_prior_errors, PriorErrors
    One instrument's error model, drawn from a kind's ranges or given.
distance_map
    The distance (m) from every cell to the nearest prior, geographic grids included.
interpolate_priors
    The priors-only baseline: linear inside the priors' convex hull, inverse-distance
    weighting or nearest prior, with no hole.

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

Instrument errors
-----------------
Sampled priors are the DEM's heights at their cells unless ``sample_priors(errors=...)``
gives a :class:`PriorErrors`; each cell is then measured as the instrument would measure it:

1. the instrument aims at the cell's centre and hits a point displaced by its geolocation
   error (Gaussian, ``geolocation_m`` per axis, drawn per prior), so that the error grows with
   the slope (``geolocation_m * tan(slope)`` along the slope);
2. it measures the terrain there (the DEM, bilinear between cell centres) averaged over its
   footprint, weighted by a Gaussian of standard deviation ``footprint_m / 4``: the laser's
   energy profile, whose 1/e^2 diameter is the footprint and which the returns average, rather
   than a sharp disc. The Gaussian has the second moment of the uniform disc of that diameter
   (r^2 / 4 per axis, r the radius), so the two agree on any quadratic terrain: a curvature
   ``c`` (m^-1) along one axis raises the height by ``c r^2 / 8`` with either. It is
   evaluated by a 12-point cubature (two rings at the Gauss-Laguerre radii of the Gaussian,
   six points each, exact for polynomials of degree 5);
3. a wide footprint on a slope returns first from its low side, and the lowest-mode ground
   of a waveform lies below its centre: the height is lowered by
   ``slope_bias * footprint_m / 2 * tan(slope)``, the slope that of the plane fitted to the
   footprint's samples;
4. Gaussian vertical noise of ``vertical_m`` is added;

and the height is recorded at the intended cell: the instrument reports where it thinks it
measured. The geolocation errors are independent from prior to prior; the pointing biases
that real tracks share are not modelled. Past the grid's edge the terrain is continued by
odd reflection, which keeps its slope (exact on a plane).

:data:`PRIOR_KINDS` gives each instrument kind its pattern and the uniform ranges from which
:func:`draw_prior_errors` draws its errors:

``"altimeter"``
    ICESat-2 ATL06/ATL08 land heights, pattern ``"tracks"`` (ICESat-2's layout). Vertical
    0.05-0.5 m: centimetres to decimetres on flat, open ground (Brunt et al. 2019, Geophys.
    Res. Lett. 46; Neuenschwander & Pitts 2019, Remote Sens. Environ. 221). Geolocation
    2-6 m: a few metres once calibrated, within the 6.5 m requirement (Luthcke et al. 2021,
    Earth Space Sci. 8). Footprint 11-17 m: 10.6-12 m measured with corner-cube arrays
    (Magruder et al. 2020, Remote Sens. 12; 2021, Earth Space Sci. 8), with a margin for
    its variation between beams and over the mission. No slope bias: the photons of a
    footprint sample it without a preference for its lowest point.
``"lidar"``
    GEDI L2A ground elevations, pattern ``"tracks"`` with ``track_layout="gedi"``. Vertical
    0.3-1.5 m; geolocation 3-12 m: about 10 m in release 1, a few metres in release 2
    (Beck et al. 2021, GEDI L1B/L2A ATBD; Tang et al. 2023, Remote Sens. Environ. 291);
    footprint 22-28 m, 25 m nominal (Dubayah et al. 2020, Sci. Remote Sens. 1); slope bias
    0.2-0.8: ground errors of metres that grow with the slope (Adam et al. 2020, Remote Sens.
    12; Quiros et al. 2021, IEEE J. Sel. Top. Appl. Earth Obs. Remote Sens. 14).
``"gnss"``
    RTK/PPK surveys, pattern ``"clusters"``: 1-5 cm vertically and horizontally, a point.
``"exact"``
    Pattern ``"random"`` and no error: the DEM's heights.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sqlite3
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import affine
import numpy as np
import pandas as pd
import pyproj
import scipy.ndimage
import scipy.spatial
import scipy.stats
import xarray as xr

from .dem import (
    VERTICAL_DATUMS,
    DemSource,
    geodetic_coordinates,
    geoid_source,
    geoid_undulation,
    horizontal_crs,
    open_dem,
    split_crs,
)
from .errors import (
    DatumError,
    InvalidInputError,
    MissingInputError,
    PlausibilityWarning,
    PriorsOutsideWarning,
    VerticalDatumWarning,
    user_stacklevel,
)
from .io import check_memory
from .kernels import WGS84_A, WGS84_E2, geodetic_to_ecef
from .raster import bilinear_at, cell_steps_m, gradient
from .scores import rms

__all__ = [
    "INTERPOLATION_METHODS",
    "PATTERNS",
    "PRIOR_KINDS",
    "TRACK_LAYOUTS",
    "PriorErrors",
    "distance_map",
    "draw_prior_errors",
    "instrument_priors",
    "interpolate_priors",
    "sample_priors",
]

logger = logging.getLogger(__name__)

#: The patterns :func:`sample_priors` draws (see the module docstring).
PATTERNS = ("random", "tracks", "clusters")
#: The methods of :func:`interpolate_priors`.
INTERPOLATION_METHODS = ("linear", "idw", "nearest")

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
#: The layouts of ``pattern="tracks"`` (see the module docstring).
TRACK_LAYOUTS = ("icesat2", "gedi")
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
#: Inverse-distance weighting: the power of the distance, and how many nearest priors.
IDW_POWER = 2.0
IDW_NEIGHBOURS = 8

#: Column names (any case) of a points table: x or longitude, y or latitude, height.
X_COLUMNS = ("x", "lon", "longitude", "easting")
Y_COLUMNS = ("y", "lat", "latitude", "northing")
HEIGHT_COLUMNS = ("height", "h", "z", "elevation", "elev", "h_li", "h_te_best_fit")
#: File suffixes of the points formats.
POINT_FORMATS = {".csv": "CSV", ".txt": "CSV", ".geojson": "GeoJSON", ".json": "GeoJSON", ".gpkg": "GeoPackage"}

#: Instrument kinds: the pattern their priors come in (and the track layout of a "tracks"
#: pattern), and the uniform ranges (low, high) from which :func:`draw_prior_errors` draws
#: each field of :class:`PriorErrors`. Sources in the module docstring.
PRIOR_KINDS: dict[str, dict[str, Any]] = {
    "altimeter": {"pattern": "tracks", "track_layout": "icesat2", "vertical_m": (0.05, 0.5),
                  "geolocation_m": (2.0, 6.0), "footprint_m": (11.0, 17.0), "slope_bias": (0.0, 0.0)},
    "lidar": {"pattern": "tracks", "track_layout": "gedi", "vertical_m": (0.3, 1.5),
              "geolocation_m": (3.0, 12.0), "footprint_m": (22.0, 28.0), "slope_bias": (0.2, 0.8)},
    "gnss": {"pattern": "clusters", "vertical_m": (0.01, 0.05), "geolocation_m": (0.01, 0.05),
             "footprint_m": (0.0, 0.0), "slope_bias": (0.0, 0.0)},
    "exact": {"pattern": "random", "vertical_m": (0.0, 0.0), "geolocation_m": (0.0, 0.0),
              "footprint_m": (0.0, 0.0), "slope_bias": (0.0, 0.0)},
}
_ERROR_FIELDS = ("vertical_m", "geolocation_m", "footprint_m", "slope_bias")

_UNSPECIFIED = "unspecified (taken as ellipsoid)"
# Rows of cells handled at once by the distance and interpolation queries (bounded memory).
_BLOCK_CELLS = 1 << 20

# Each call concerns other points: never show the warning only once per code location.
warnings.filterwarnings("always", category=PriorsOutsideWarning)


# --------------------------------------------------------------------------------------
# sample_priors
# --------------------------------------------------------------------------------------


def sample_priors(
    dem: DemSource,
    *,
    fraction: float | None = None,
    count: int | None = None,
    points: str | os.PathLike | pd.DataFrame | None = None,
    pattern: str = "random",
    noise_m: float = 0.0,
    seed: int = 0,
    errors: PriorErrors | None = None,
    track_layout: str = "icesat2",
    crs: Any = None,
    vertical_datum: str | None = None,
    geoid_grid: str | os.PathLike | None = None,
    layer: str | None = None,
) -> xr.Dataset:
    """Sparse elevation priors on a DEM's grid: sampled from the DEM (exact, or measured
    with an instrument's errors), or from given points.

    Parameters
    ----------
    dem : str, os.PathLike, xarray.DataArray or tuple
        Anything :func:`sarheight.dem.open_dem` takes; opened with its defaults (the datum
        read from the CRS), so give a DEM on a geoid opened already
        (``open_dem(path, vertical_datum="egm96", geoid_grid=...)``). Its heights are WGS84
        ellipsoidal afterwards, and so are the priors.
    fraction : float, optional
        Share of the DEM's cells with a height that get a prior, 0 < fraction <= 1 (at least
        one prior).
    count : int, optional
        Number of priors, 1 .. the number of cells with a height.
    points : str, os.PathLike or pandas.DataFrame, optional
        Known heights: a CSV (``.csv``, ``.txt``), GeoJSON (``.geojson``, ``.json``) or
        GeoPackage (``.gpkg``) file, or a DataFrame. Tables have columns x, y and height, in
        any case, or their aliases (:data:`X_COLUMNS`, :data:`Y_COLUMNS`,
        :data:`HEIGHT_COLUMNS`: lon/lat, h/z/elevation, ICESat-2's h_li). GeoJSON: Point and
        MultiPoint features, heights as the third coordinate or a height property.
        GeoPackage: a Point or MultiPoint table, heights as Z or a height column. Each point
        is reprojected onto the grid and given to the cell that contains it; the mean of
        several points in one cell is that cell's prior. Points outside the grid or on
        cells without height are left out with a :class:`~sarheight.errors.PriorsOutsideWarning`
        that counts them.
    pattern : {"random", "tracks", "clusters"}, default "random"
        How sampled priors lie (see the module docstring); not for ``points``.
    noise_m : float, default 0
        Standard deviation (m) of Gaussian noise added to every prior height (sampled or
        given), drawn after the cells and the errors, on top of the errors.
    seed : int, default 0
        Seed of ``numpy.random.default_rng``: cells, tracks, clusters, errors and noise.
    errors : PriorErrors, optional
        The instrument's error model (see the module docstring; :func:`draw_prior_errors`
        draws one): each prior is measured at its cell's centre displaced by the geolocation
        error, averaged over the footprint, lowered by the slope bias and given vertical
        noise. Drawn after the cells, which never move with it; independent of ``pattern``
        (:func:`instrument_priors` takes both from an instrument kind). Not for ``points``.
    track_layout : {"icesat2", "gedi"}, default "icesat2"
        The beams of ``pattern="tracks"`` (see the module docstring).
    crs : anything pyproj reads, optional
        The CRS of ``points``. Required for CSV files and DataFrames (which carry none; a
        DataFrame's ``attrs["crs"]`` is read when present): no CRS is assumed for them, since a
        wrong guess moves every point. GeoJSON is EPSG:4326 (longitude, latitude) by RFC 7946
        unless the file has a legacy ``crs`` member; a GeoPackage carries its CRS. Given, it
        overrides what a file says. A compound CRS (EPSG:9707 = WGS 84 + EGM96 height) or a
        3-D one (EPSG:4979) also says the datum of the heights.
    vertical_datum : {"egm96", "egm2008", "ellipsoid"}, optional
        Datum of the points' heights, overriding the CRS's (open_dem's rules). GeoJSON
        heights given as the third coordinate are ellipsoidal by RFC 7946; heights that
        nothing declares are taken as ellipsoidal with a
        :class:`~sarheight.errors.VerticalDatumWarning` (GNSS and ICESat-2 heights are
        ellipsoidal; levelled or map heights are not).
    geoid_grid : str or os.PathLike, optional
        Raster of geoid undulations (m) to bring EGM96/EGM2008 point heights to the
        ellipsoid; ``None``: PROJ's grid, refused with a DatumError where PROJ has none.
    layer : str, optional
        The table of a GeoPackage that holds several point tables.

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
        and ``geoid_grid`` (a path or "PROJ") where converted. Sampled priors also carry
        ``prior_error_rms_m``, the root-mean-square (m) of the priors minus the DEM's heights
        at their cells (errors and noise together), and with ``errors`` its
        :meth:`PriorErrors.to_attrs`: ``prior_kind``, ``prior_vertical_m``,
        ``prior_geolocation_m``, ``prior_footprint_m``, ``prior_slope_bias``.

    Raises
    ------
    InvalidInputError
        Not exactly one of fraction, count, points; a fraction outside (0, 1], a count
        outside 1 .. the cells with a height; an unknown pattern or track layout, a track
        layout without tracks; a negative or non-finite noise; a seed that is not an integer;
        errors that are not a PriorErrors, or given with points; points keywords without
        points; a points table without the expected columns, with heights that are missing
        or not numbers, or without a CRS; no point on the grid; the checks of ``open_dem``.
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
    _check_request(fraction, count, points, pattern, noise_m, seed, crs, vertical_datum, geoid_grid, layer)
    _check_errors(errors, points, pattern, track_layout)
    dem_source = Path(dem).name if isinstance(dem, (str, os.PathLike)) else None
    dem = open_dem(dem, copy=False)
    heights = np.asarray(dem.values)
    valid = np.isfinite(heights)
    n_valid = int(valid.sum())
    transform = dem.rio.transform()
    grid_crs = horizontal_crs(dem)
    rng = np.random.default_rng(seed)
    attrs: dict[str, Any] = {"pattern": pattern, "seed": int(seed)}
    if points is None:
        n = _prior_count(fraction, count, n_valid)
        steps = cell_steps_m(transform, grid_crs, heights.shape)
        if pattern == "random":
            flat_valid = np.flatnonzero(valid)
            cells = np.sort(rng.choice(flat_valid, size=n, replace=False))
        elif pattern == "tracks":
            beams_m, spacing_m, heading_deg = _TRACK_LAYOUTS[track_layout]
            cells, heading = _track_cells(valid, n, steps, rng, beams_m=beams_m, spacing_m=spacing_m,
                                          heading_deg=heading_deg)
            attrs.update(track_heading_deg=heading, track_layout=track_layout)
        else:
            cells, clusters = _cluster_cells(heights, valid, n, steps, rng)
            attrs["clusters"] = clusters
        values = heights.ravel()[cells].astype(np.float64)
        if errors is not None:
            values = _measure(heights, cells, errors, steps, rng)
            attrs.update(errors.to_attrs())
        attrs.update(source=f"sampled from {dem_source or dem.attrs.get('source', 'the DEM')}",
                     source_vertical_datum=str(dem.attrs.get("source_vertical_datum", "ellipsoid")))
    else:
        cells, values, point_attrs = _priors_from_points(
            points, crs, vertical_datum, geoid_grid, layer, valid, transform, grid_crs)
        attrs.update(point_attrs, pattern="points")
    if noise_m > 0:
        values = values + rng.normal(0.0, noise_m, size=values.shape)
    if points is None:
        # Against the float32 heights the priors are stored as: an exact prior's error is 0.
        stored = values.astype(np.float32).astype(np.float64)
        attrs["prior_error_rms_m"] = rms(stored - heights.ravel()[cells])
    attrs.update(count=int(cells.size), fraction=float(cells.size / n_valid), noise_m=float(noise_m),
                 vertical_datum="ellipsoid")
    return _priors_dataset(dem, cells, values, attrs, transform, grid_crs)


def _check_request(fraction: Any, count: Any, points: Any, pattern: Any, noise_m: Any, seed: Any, crs: Any,
                   vertical_datum: Any, geoid_grid: Any, layer: Any) -> None:
    """Every keyword of :func:`sample_priors` checked before the DEM is read."""
    given = [name for name, value in (("fraction", fraction), ("count", count), ("points", points))
             if value is not None]
    if len(given) != 1:
        raise InvalidInputError(
            "Give exactly one of fraction= (a share of the DEM's cells), count= (a number of priors) or points= "
            f"(known heights), not {' and '.join(given) if given else 'none'}."
        )
    if pattern not in PATTERNS:
        raise InvalidInputError(f"pattern={pattern!r} is not one of {', '.join(map(repr, PATTERNS))}.")
    if points is not None and pattern != "random":
        raise InvalidInputError(
            f"pattern={pattern!r} draws priors from the DEM; given points= lie where they were measured. "
            "Leave pattern out with points."
        )
    if points is None:
        extra = [name for name, value in (("crs", crs), ("vertical_datum", vertical_datum),
                                          ("geoid_grid", geoid_grid), ("layer", layer)) if value is not None]
        if extra:
            raise InvalidInputError(
                f"{', '.join(extra)} describe points= and mean nothing for priors sampled from the DEM: "
                "open the DEM with open_dem(...) to give its own datum."
            )
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.integer, np.floating)) \
                or not 0.0 < float(fraction) <= 1.0:
            raise InvalidInputError(
                f"fraction={fraction!r} must be a number in (0, 1]: the share of the DEM's cells with a height "
                "that get a prior (e.g. 0.001)."
            )
    if count is not None and (isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1):
        raise InvalidInputError(f"count={count!r} must be a whole number of priors, at least 1.")
    if isinstance(noise_m, bool) or not isinstance(noise_m, (int, float, np.integer, np.floating)) \
            or not math.isfinite(noise_m) or noise_m < 0:
        raise InvalidInputError(f"noise_m={noise_m!r} must be a standard deviation in metres, 0 or more.")
    _check_seed(seed)
    if layer is not None and not isinstance(layer, str):
        raise InvalidInputError(f"layer={layer!r} must be the name of a GeoPackage table.")


def _check_errors(errors: Any, points: Any, pattern: str, track_layout: Any) -> None:
    """The instrument keywords of :func:`sample_priors` checked before the DEM is read."""
    if errors is not None and not isinstance(errors, PriorErrors):
        raise InvalidInputError(
            f"errors={errors!r} must be a PriorErrors (draw_prior_errors(kind, seed) draws one), or None for exact "
            "priors."
        )
    if errors is not None and points is not None:
        raise InvalidInputError(
            "errors= simulates an instrument measuring the DEM; points= are measured heights that carry their own "
            "errors. Leave errors out with points (noise_m= adds noise to them)."
        )
    if track_layout not in TRACK_LAYOUTS:
        raise InvalidInputError(f"track_layout={track_layout!r} is not one of {', '.join(map(repr, TRACK_LAYOUTS))}.")
    if track_layout != "icesat2" and pattern != "tracks":
        raise InvalidInputError(f"track_layout={track_layout!r} lays out pattern='tracks', not {pattern!r}.")


def _prior_count(fraction: float | None, count: int | None, n_valid: int) -> int:
    if count is not None:
        if count > n_valid:
            raise InvalidInputError(
                f"count={count} priors asked, but the DEM has only {n_valid} cells with a height: ask for fewer."
            )
        return int(count)
    return min(n_valid, max(1, round(float(fraction) * n_valid)))


def _priors_dataset(dem: xr.DataArray, cells: np.ndarray, values: np.ndarray, attrs: dict,
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


# --------------------------------------------------------------------------------------
# Instrument errors
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriorErrors:
    """The error model of one instrument's priors (see the module docstring).

    Parameters
    ----------
    kind : str
        The instrument kind, a key of :data:`PRIOR_KINDS` or any name (for the record).
    vertical_m : float, default 0
        Standard deviation (m) of the instrument's vertical noise.
    geolocation_m : float, default 0
        Standard deviation (m) of its horizontal position error, per axis: the height is
        measured at a displaced point, so its error grows with the slope.
    footprint_m : float, default 0
        Diameter (m) of its footprint, 0 for a point: the height measured is the terrain
        averaged over it (a Gaussian of standard deviation footprint_m / 4).
    slope_bias : float, default 0
        Share, 0-1, of the footprint's radius times tan(slope) by which a sloping footprint's
        height is lowered: a wide-footprint lidar picks the lowest ground return.

    Raises
    ------
    InvalidInputError
        An empty kind, a negative or non-finite error, a slope_bias outside [0, 1].
    """

    kind: str
    vertical_m: float = 0.0
    geolocation_m: float = 0.0
    footprint_m: float = 0.0
    slope_bias: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise InvalidInputError(f"kind={self.kind!r} must name the instrument (e.g. 'altimeter').")
        for name in _ERROR_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(value) or value < 0 or (name == "slope_bias" and value > 1):
                what = "a share between 0 and 1" if name == "slope_bias" else "a standard deviation or " \
                    "diameter in metres, 0 or more"
                raise InvalidInputError(f"PriorErrors {name}={value!r} must be {what}.")
            # Plain floats: NetCDF attributes and equality do not depend on how they were given.
            object.__setattr__(self, name, float(value))

    def to_attrs(self, prefix: str = "prior_") -> dict[str, float | str]:
        """The error model as NetCDF attributes: ``{prefix}kind`` (str) and
        ``{prefix}vertical_m``, ``{prefix}geolocation_m``, ``{prefix}footprint_m`` (m),
        ``{prefix}slope_bias`` (floats)."""
        return {f"{prefix}kind": self.kind, **{f"{prefix}{name}": float(getattr(self, name))
                                               for name in _ERROR_FIELDS}}


def draw_prior_errors(kind: str, seed: int) -> PriorErrors:
    """One instrument's error model, each field drawn uniformly from the kind's range.

    Parameters
    ----------
    kind : {"altimeter", "lidar", "gnss", "exact"}
        A key of :data:`PRIOR_KINDS`.
    seed : int
        Seed of ``numpy.random.default_rng``; the fields are drawn in the order vertical_m,
        geolocation_m, footprint_m, slope_bias.

    Returns
    -------
    PriorErrors
        vertical_m, geolocation_m, footprint_m (m) and slope_bias inside the kind's ranges.

    Raises
    ------
    InvalidInputError
        An unknown kind, or a seed that is not a whole number, 0 or more.
    """
    spec = _kind_spec(kind)
    _check_seed(seed)
    rng = np.random.default_rng(seed)
    return PriorErrors(kind, **{name: float(rng.uniform(*spec[name])) for name in _ERROR_FIELDS})


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
        Seed of the cells, the errors' parameters and their draws. The parameters come from
        ``draw_prior_errors(kind, s)`` with ``s`` derived from ``seed`` by
        ``numpy.random.SeedSequence``, not ``seed`` itself, whose first numbers also lay out
        the cells: one stream would tie, say, the altimeter's vertical noise to its tracks'
        heading from scene to scene.

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
    spec = _kind_spec(kind)
    _check_seed(seed)
    errors_seed = int(np.random.SeedSequence(int(seed), spawn_key=(1,)).generate_state(1)[0])
    return sample_priors(dem, fraction=fraction, count=count, pattern=spec["pattern"],
                         track_layout=spec.get("track_layout", "icesat2"),
                         errors=draw_prior_errors(kind, errors_seed), seed=seed)


def _kind_spec(kind: Any) -> dict[str, Any]:
    if not isinstance(kind, str) or kind not in PRIOR_KINDS:
        raise InvalidInputError(f"kind={kind!r} is not one of {', '.join(map(repr, PRIOR_KINDS))} (PRIOR_KINDS).")
    return PRIOR_KINDS[kind]


def _check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed={seed!r} must be a whole number, 0 or more (the same seed, the same priors).")


def _measure(heights: np.ndarray, cells: np.ndarray, errors: PriorErrors, steps: tuple[float, float],
             rng: np.random.Generator) -> np.ndarray:
    """The heights (m, float64) the instrument of ``errors`` measures aiming at ``cells``
    (flat indices), its errors drawn from ``rng``: geolocation (east, north), then vertical
    noise; a zero error draws nothing, so that an exact model leaves ``rng`` as it was."""
    n = cells.size
    exact = heights.ravel()[cells].astype(np.float64)
    if errors.geolocation_m == 0 and errors.footprint_m == 0:
        values = exact.copy()
    else:
        step_n, step_e = steps
        row, col = np.divmod(cells, heights.shape[1])
        east = north = np.zeros(n)
        if errors.geolocation_m > 0:
            east, north = rng.normal(0.0, errors.geolocation_m, size=(2, n))
        off_e, off_n, weights = _footprint_cubature(errors.footprint_m)
        # Past the edge the slope goes on (odd reflection): "nearest" would flatten the
        # terrain there and hide the geolocation error of priors near the edge.
        samples = bilinear_at(heights, row[:, None] + (north[:, None] + off_n) / step_n,
                              col[:, None] + (east[:, None] + off_e) / step_e, edge="odd")
        found = np.isfinite(samples)
        total = (np.where(found, weights, 0.0)).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(found, samples * weights, 0.0).sum(axis=1) / total
        # Where the whole footprint fell on voids, the cell's own height stands for it.
        values = np.where(total > 0, mean, exact)
        if errors.slope_bias > 0 and errors.footprint_m > 0:
            # Missing samples take the footprint's mean: they pull the fitted slope to zero.
            deviation = np.where(found, samples, values[:, None]) - values[:, None]
            grade_e = (deviation * weights * off_e).sum(axis=1) / (weights * off_e**2).sum()
            grade_n = (deviation * weights * off_n).sum(axis=1) / (weights * off_n**2).sum()
            values = values - errors.slope_bias * 0.5 * errors.footprint_m * np.hypot(grade_e, grade_n)
    if errors.vertical_m > 0:
        values = values + rng.normal(0.0, errors.vertical_m, size=n)
    return values


def _footprint_cubature(footprint_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """East and north offsets (m) and weights (summing to 1) of the points that average the
    terrain over a footprint of diameter ``footprint_m``: its centre alone for a point, else
    two rings of six at the Gauss-Laguerre radii of a Gaussian of sigma footprint_m / 4
    (r^2 / 2 sigma^2 is exponential), the second ring turned by half a step."""
    if footprint_m == 0:
        return np.zeros(1), np.zeros(1), np.ones(1)
    nodes, node_weights = np.polynomial.laguerre.laggauss(2)
    radii = 0.25 * footprint_m * np.sqrt(2.0 * nodes)
    angles = 2.0 * np.pi * np.arange(6) / 6
    angles = np.concatenate([angles, angles + np.pi / 6])
    radius = np.repeat(radii, 6)
    return radius * np.cos(angles), radius * np.sin(angles), np.repeat(node_weights / 6, 6)


# --------------------------------------------------------------------------------------
# Patterns
# --------------------------------------------------------------------------------------


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
    filled = np.where(valid, heights, 0.0).astype(np.float64)
    total = scipy.ndimage.uniform_filter(filled, size=size, mode="nearest")
    share = scipy.ndimage.uniform_filter(valid.astype(np.float64), size=size, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / share
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


# --------------------------------------------------------------------------------------
# Points
# --------------------------------------------------------------------------------------


@dataclass
class _Points:
    """Points as read: coordinates and heights (float64), the CRS and vertical datum their
    source declares (None where it declares none), what they came from, for messages."""

    x: np.ndarray
    y: np.ndarray
    height: np.ndarray
    crs: Any
    vertical_datum: str | None
    source: str


def _priors_from_points(points: Any, crs: Any, vertical_datum: str | None, geoid_grid: Any, layer: str | None,
                        valid: np.ndarray, transform: affine.Affine,
                        grid_crs: pyproj.CRS) -> tuple[np.ndarray, np.ndarray, dict]:
    """The prior cells (flat indices, ascending), their heights (the mean of the points in
    each, ellipsoidal) and the attributes that describe them."""
    read = _read_points(points, layer)
    if crs is not None:
        if read.crs is not None:
            logger.info("crs=%r overrides the CRS %r of %s", crs, read.crs, read.source)
        read.crs, read.vertical_datum = crs, None
    if read.crs is None:
        raise InvalidInputError(
            f"{read.source} does not say which CRS its coordinates are in: pass crs=, e.g. crs='EPSG:4326' for "
            "longitude/latitude (GNSS, ICESat-2) or the UTM zone of eastings/northings ('EPSG:326xx')."
        )
    horizontal, crs_datum = split_crs(read.crs)
    datum = _points_datum(vertical_datum, crs_datum, read.vertical_datum, geoid_grid, read.source)

    to_grid = pyproj.Transformer.from_crs(horizontal, grid_crs, always_xy=True)
    grid_x, grid_y = (np.asarray(v, dtype=np.float64) for v in to_grid.transform(read.x, read.y))
    # open_dem refuses rotated grids: the transform is a scale and an offset per axis.
    col, row = (grid_x - transform.c) / transform.a, (grid_y - transform.f) / transform.e
    rows, cols = valid.shape
    with np.errstate(invalid="ignore"):
        col = np.floor(np.where(np.isfinite(col), col, -1.0))
        row = np.floor(np.where(np.isfinite(row), row, -1.0))
    inside = (row >= 0) & (row < rows) & (col >= 0) & (col < cols)
    cells = (np.where(inside, row, 0) * cols + np.where(inside, col, 0)).astype(np.int64)
    usable = inside & valid.ravel()[cells]
    _refuse_if_none_usable(read, inside, usable, valid.shape, transform, grid_crs)

    heights = read.height[usable]
    attrs: dict[str, Any] = {"source": read.source, "source_vertical_datum": datum}
    if datum in ("egm96", "egm2008"):
        # Only the points on the grid: a geoid grid cropped to the DEM covers them.
        to_lonlat = pyproj.Transformer.from_crs(horizontal, "EPSG:4326", always_xy=True)
        lon, lat = to_lonlat.transform(read.x[usable], read.y[usable])
        source = geoid_source(datum, geoid_grid, subject="point set")
        heights = heights + geoid_undulation(lon, lat, datum, None if source == "PROJ" else source,
                                             subject="point set")
        attrs["geoid_grid"] = source
    elif geoid_grid is not None:
        logger.info("geoid_grid is not used: the points' heights are already ellipsoidal")
    _warn_left_out(read, inside, usable, valid.shape, transform, grid_crs)
    _warn_conflicting_duplicates(read.x[usable], read.y[usable], heights, read.source)
    unique, inverse, per_cell = np.unique(cells[usable], return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=heights, minlength=unique.size) / per_cell
    attrs.update(
        points=int(read.x.size),
        points_left_out=int(read.x.size - usable.sum()),
        points_per_cell=f"the mean of the points in a cell ({int((per_cell > 1).sum())} cells had several)",
    )
    return unique, means, attrs


#: Heights (m) of points at one position that differ by more than this are in conflict.
DUPLICATE_CONFLICT_M = 1.0


def _warn_conflicting_duplicates(x: np.ndarray, y: np.ndarray, heights: np.ndarray, source: str) -> None:
    """Warn (:class:`~sarheight.errors.PlausibilityWarning`) of points at the very same
    position whose heights disagree by more than :data:`DUPLICATE_CONFLICT_M`: they are
    averaged per cell, and a later check of the priors against the DEM would read their
    disagreement as a datum's offset."""
    if x.size < 2:
        return
    order = np.lexsort((y, x))
    same = (x[order][1:] == x[order][:-1]) & (y[order][1:] == y[order][:-1])
    if not same.any():
        return
    differences = np.abs(np.diff(heights[order]))[same]
    conflicting = differences > DUPLICATE_CONFLICT_M
    if conflicting.any():
        warnings.warn(f"{int(conflicting.sum())} point(s) of {source} repeat another's position with a height that "
                      f"differs by up to {float(differences.max()):.1f} m (duplicates from two sources or dates?): "
                      "each cell takes the mean of its points; remove the ones you do not trust",
                      PlausibilityWarning, stacklevel=user_stacklevel())


def _grid_bounds(shape: tuple[int, int], transform: affine.Affine, grid_crs: pyproj.CRS) -> str:
    rows, cols = shape
    west, east = transform.c, transform.c + transform.a * cols
    north, south = transform.f, transform.f + transform.e * rows
    return (f"x {min(west, east):.10g}..{max(west, east):.10g}, y {min(south, north):.10g}..{max(south, north):.10g} "
            f"in {grid_crs.name}")


def _refuse_if_none_usable(read: _Points, inside: np.ndarray, usable: np.ndarray, shape: tuple[int, int],
                           transform: affine.Affine, grid_crs: pyproj.CRS) -> None:
    if not usable.any():
        outside, on_voids = int((~inside).sum()), int((inside & ~usable).sum())
        raise InvalidInputError(
            f"None of the {read.x.size} points of {read.source} lies on a DEM cell with a height ({outside} outside "
            f"the grid, {on_voids} on cells without height; the grid spans {_grid_bounds(shape, transform, grid_crs)})."
            " Check the points' CRS (crs=; longitude and latitude swapped?) and that they cover the DEM."
        )


def _warn_left_out(read: _Points, inside: np.ndarray, usable: np.ndarray, shape: tuple[int, int],
                   transform: affine.Affine, grid_crs: pyproj.CRS) -> None:
    """Warn with the count of the points left out, and where the grid is."""
    n, outside, on_voids = read.x.size, int((~inside).sum()), int((inside & ~usable).sum())
    bounds = _grid_bounds(shape, transform, grid_crs)
    if outside or on_voids:
        warnings.warn(
            f"{outside + on_voids} of the {n} points of {read.source} are left out: {outside} outside the DEM "
            f"grid ({bounds}), {on_voids} on cells without height.",
            PriorsOutsideWarning, stacklevel=user_stacklevel())


def _points_datum(vertical_datum: str | None, crs_datum: str | None, file_datum: str | None, geoid_grid: Any,
                  source: str) -> str:
    """The datum of the points' heights, by open_dem's rules: the keyword, else the CRS's,
    else the file format's, else ellipsoidal with a warning; refused where unconvertible."""
    if vertical_datum is not None:
        key = vertical_datum.strip().lower() if isinstance(vertical_datum, str) else None
        if key not in VERTICAL_DATUMS:
            raise InvalidInputError(
                f"vertical_datum={vertical_datum!r} is not understood. Use one of "
                f"{', '.join(map(repr, VERTICAL_DATUMS))}, or None to read it from the CRS."
            )
        return key
    if crs_datum is not None:
        if crs_datum not in VERTICAL_DATUMS:
            raise DatumError(
                f"The heights of {source} are on {crs_datum!r}, which sarheight cannot convert to WGS84 "
                "ellipsoidal heights. Convert them first, or pass vertical_datum='egm96', 'egm2008' or "
                "'ellipsoid' if you know better."
            )
        return crs_datum
    if file_datum is not None:
        return file_datum
    if geoid_grid is not None:
        raise DatumError(
            f"geoid_grid={str(geoid_grid)!r} was given but nothing says which geoid the heights of {source} refer "
            "to. Say it with vertical_datum='egm96' or 'egm2008' (or 'ellipsoid'), or a compound crs= such as "
            "'EPSG:9707' (WGS 84 + EGM96 height)."
        )
    warnings.warn(
        f"Nothing says which vertical datum the heights of {source} are on: they are taken as WGS84 "
        "ellipsoidal (as GNSS and ICESat-2 heights are). Heights on a geoid (levelled, from a map or a DEM) are "
        "30-100 m off that way: pass vertical_datum='egm96' or 'egm2008' to convert them, or "
        "vertical_datum='ellipsoid' to silence this warning.",
        VerticalDatumWarning, stacklevel=user_stacklevel())
    return _UNSPECIFIED


def _read_points(points: Any, layer: str | None) -> _Points:
    if isinstance(points, pd.DataFrame):
        if layer is not None:
            raise InvalidInputError("layer= names a GeoPackage table; points= is a DataFrame.")
        return _points_from_table(points, "the DataFrame", points.attrs.get("crs"))
    if not isinstance(points, (str, os.PathLike)):
        raise InvalidInputError(
            f"points= is a CSV, GeoJSON or GeoPackage file or a pandas DataFrame, not {type(points).__name__}."
        )
    path = Path(points).expanduser()
    if not path.exists():
        raise MissingInputError(
            f"The points file {str(points)!r} does not exist. Check the path (relative paths are taken from "
            f"{os.getcwd()!r})."
        )
    if not path.is_file():
        raise InvalidInputError(f"The points file {str(points)!r} is not a file.")
    kind = POINT_FORMATS.get(path.suffix.lower())
    if kind is None:
        raise InvalidInputError(
            f"The points file {path.name!r} has no known suffix: {', '.join(POINT_FORMATS)} "
            "(CSV, GeoJSON, GeoPackage). Convert it, e.g. ogr2ogr -f GPKG points.gpkg IN."
        )
    if layer is not None and kind != "GeoPackage":
        raise InvalidInputError(f"layer= names a GeoPackage table; {path.name!r} is {kind}.")
    # Parsed tables and JSON take several times their file size in memory.
    check_memory(10 * path.stat().st_size, f"the points file {path.name!r}")
    if kind == "CSV":
        try:
            table = pd.read_csv(path, comment="#", skipinitialspace=True)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
            raise InvalidInputError(f"The points file {path.name!r} is not a readable CSV table ({error}).") from error
        return _points_from_table(table, repr(path.name), None)
    if kind == "GeoJSON":
        return _read_geojson(path)
    return _read_geopackage(path, layer)


def _column(names: list[str], aliases: tuple[str, ...], what: str, source: str) -> str:
    """The one column of ``names`` that is one of ``aliases`` (any case)."""
    found = [name for name in names if str(name).strip().lower() in aliases]
    if len(found) == 1:
        return found[0]
    if not found:
        raise InvalidInputError(
            f"{source} has no {what} column: expected one named {', '.join(aliases)} (any case); its columns are "
            f"{', '.join(map(str, names)) or 'none'}."
        )
    raise InvalidInputError(
        f"{source} has several {what} columns ({', '.join(map(str, found))}): keep one, or rename the others."
    )


def _numbers(values: Any, what: str, source: str) -> np.ndarray:
    """Float64 values of a column, refused where any is missing or not a number."""
    numeric = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(numeric))
    if bad.size:
        raise InvalidInputError(
            f"{bad.size} {what} values of {source} are missing or not finite numbers (rows "
            f"{', '.join(str(i) for i in bad[:5])}{', ...' if bad.size > 5 else ''}): fix or drop those points."
        )
    return numeric


def _points_from_table(table: pd.DataFrame, source: str, crs: Any) -> _Points:
    names = list(table.columns)
    x = _column(names, X_COLUMNS, "x (or longitude)", source)
    y = _column(names, Y_COLUMNS, "y (or latitude)", source)
    height = _column(names, HEIGHT_COLUMNS, "height", source)
    if not len(table):
        raise InvalidInputError(f"{source} holds no points.")
    return _Points(_numbers(table[x], x, source), _numbers(table[y], y, source),
                   _numbers(table[height], height, source), crs, None, source)


def _read_geojson(path: Path) -> _Points:
    source = repr(path.name)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidInputError(f"The points file {source} is not valid GeoJSON ({error}).") from error
    kind = document.get("type") if isinstance(document, dict) else None
    if kind == "FeatureCollection" and isinstance(document.get("features"), list):
        features = document["features"]
    elif kind == "Feature":
        features = [document]
    else:
        raise InvalidInputError(
            f"{source} is not a GeoJSON FeatureCollection or Feature (type {kind!r}): give point features."
        )
    coordinates, properties_heights = [], []
    for index, feature in enumerate(features):
        geometry = feature.get("geometry") if isinstance(feature, dict) else None
        geometry_type = geometry.get("type") if isinstance(geometry, dict) else None
        if geometry_type == "Point":
            positions = [geometry.get("coordinates")]
        elif geometry_type == "MultiPoint":
            positions = geometry.get("coordinates")
        else:
            raise InvalidInputError(
                f"Feature {index} of {source} is a {geometry_type or 'feature without geometry'}: priors are Point "
                "or MultiPoint features."
            )
        if not isinstance(positions, list) or not all(
                isinstance(p, list) and len(p) >= 2 and all(isinstance(v, (int, float)) for v in p)
                for p in positions):
            raise InvalidInputError(f"Feature {index} of {source} has coordinates that are not [x, y(, z)] numbers.")
        raw = feature.get("properties")
        properties = raw if isinstance(raw, dict) else {}
        named = [key for key in properties if str(key).strip().lower() in HEIGHT_COLUMNS]
        for position in positions:
            coordinates.append(position)
            properties_heights.append(properties[named[0]] if len(named) == 1 else None)
    if not coordinates:
        raise InvalidInputError(f"{source} holds no points.")
    with_z = [len(p) >= 3 for p in coordinates]
    if all(with_z):
        # RFC 7946: the third coordinate is the height above the WGS 84 ellipsoid.
        height, file_datum = np.array([p[2] for p in coordinates], dtype=np.float64), "ellipsoid"
    elif not any(with_z):
        missing = [i for i, h in enumerate(properties_heights) if h is None]
        if missing:
            raise InvalidInputError(
                f"{len(missing)} points of {source} have no height: give it as the third coordinate or as one "
                f"property named {', '.join(HEIGHT_COLUMNS)}."
            )
        height, file_datum = _numbers(properties_heights, "height", source), None
    else:
        raise InvalidInputError(
            f"Some points of {source} have a third coordinate and others not: give every height the same way."
        )
    crs = _geojson_crs(document, source)
    return _Points(np.array([p[0] for p in coordinates], dtype=np.float64),
                   np.array([p[1] for p in coordinates], dtype=np.float64),
                   height, crs if crs is not None else "OGC:CRS84",
                   file_datum if crs is None else None, source)


def _geojson_crs(document: dict, source: str) -> str | None:
    """The CRS named by a legacy (2008) GeoJSON ``crs`` member, None without one."""
    member = document.get("crs")
    if member is None:
        return None
    name = member.get("properties", {}).get("name") if isinstance(member, dict) else None
    if not isinstance(member, dict) or member.get("type") != "name" or not isinstance(name, str):
        raise InvalidInputError(
            f"{source} has a 'crs' member that does not name a CRS ({member!r}): remove it (RFC 7946 GeoJSON is "
            "longitude/latitude on WGS 84) or pass crs=."
        )
    return name


# GeoPackage geometry types of points in WKB (ISO codes, and the EWKB flags some writers use).
_WKB_POINT, _WKB_MULTIPOINT = 1, 4


def _read_geopackage(path: Path, layer: str | None) -> _Points:
    source = repr(path.name)
    try:
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            tables = connection.execute(
                "SELECT table_name, column_name, srs_id FROM gpkg_geometry_columns").fetchall()
            if layer is not None:
                tables = [t for t in tables if t[0] == layer]
                if not tables:
                    raise InvalidInputError(f"{source} has no feature table {layer!r}.")
            if len(tables) != 1:
                raise InvalidInputError(
                    f"{source} has {len(tables)} feature tables ({', '.join(t[0] for t in tables) or 'none'}): "
                    "name the one with the points with layer=."
                )
            table, geometry_column, srs_id = tables[0]
            crs = _geopackage_crs(connection, srs_id, source)
            columns = [row[1] for row in connection.execute(f"PRAGMA table_info({_quoted(table)})")]
            height_columns = [c for c in columns if str(c).strip().lower() in HEIGHT_COLUMNS
                              and c != geometry_column]
            selected = [geometry_column, *height_columns[:1]]
            rows = connection.execute(
                f"SELECT {', '.join(map(_quoted, selected))} FROM {_quoted(table)}").fetchall()
    except sqlite3.DatabaseError as error:
        raise InvalidInputError(f"The points file {source} is not a readable GeoPackage ({error}).") from error
    coordinates, column_heights = [], []
    for index, row in enumerate(rows):
        for point in _geopackage_points(row[0], f"feature {index} of {source}"):
            coordinates.append(point)
            column_heights.append(row[1] if len(row) > 1 else None)
    if not coordinates:
        raise InvalidInputError(f"{source} holds no points.")
    with_z = [len(p) == 3 for p in coordinates]
    if all(with_z):
        height = np.array([p[2] for p in coordinates], dtype=np.float64)
    elif height_columns and not any(with_z):
        height = _numbers(column_heights, height_columns[0], source)
    else:
        raise InvalidInputError(
            f"The points of {source} have no height: give them Z coordinates or a column named "
            f"{', '.join(HEIGHT_COLUMNS)}."
        )
    return _Points(np.array([p[0] for p in coordinates], dtype=np.float64),
                   np.array([p[1] for p in coordinates], dtype=np.float64), height, crs, None, source)


def _quoted(identifier: str) -> str:
    """An SQL identifier in double quotes (names come from the file)."""
    return '"' + str(identifier).replace('"', '""') + '"'


def _geopackage_crs(connection: sqlite3.Connection, srs_id: int, source: str) -> Any:
    """The CRS of GeoPackage spatial reference ``srs_id``; None for the undefined ones."""
    found = connection.execute(
        "SELECT organization, organization_coordsys_id, definition FROM gpkg_spatial_ref_sys WHERE srs_id = ?",
        (srs_id,)).fetchone()
    if found is None:
        raise InvalidInputError(f"{source} names spatial reference {srs_id}, which its gpkg_spatial_ref_sys lacks.")
    organization, code, definition = found
    if srs_id in (0, -1) or str(definition).strip().lower() == "undefined":
        return None
    if str(organization).strip().upper() == "EPSG" and code is not None and int(code) > 0:
        return f"EPSG:{int(code)}"
    return definition


def _geopackage_points(blob: Any, what: str) -> list[tuple[float, ...]]:
    """The (x, y[, z]) of a GeoPackage geometry blob: the GeoPackage binary header
    (GeoPackage 1.3, section 2.1.3), then a WKB Point or MultiPoint in either byte order."""
    if not isinstance(blob, bytes) or len(blob) < 8 or blob[:2] != b"GP":
        raise InvalidInputError(f"The geometry of {what} is not a GeoPackage geometry blob.")
    flags = blob[3]
    if flags & 0b10_0000:
        raise InvalidInputError(f"The geometry of {what} is of an extension type: priors are points.")
    envelope = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}.get((flags >> 1) & 0b111)
    if envelope is None:
        raise InvalidInputError(f"The geometry header of {what} has an invalid envelope code.")
    if flags & 0b1_0000:
        return []  # an empty geometry: no point
    points, _ = _wkb_points(blob, 8 + envelope, what, top=True)
    return points


def _wkb_points(blob: bytes, offset: int, what: str, top: bool) -> tuple[list[tuple[float, ...]], int]:
    """Points of the WKB geometry at ``offset`` and the offset after it."""
    if offset + 5 > len(blob) or blob[offset] not in (0, 1):
        raise InvalidInputError(f"The WKB geometry of {what} is truncated or corrupt.")
    order = "<" if blob[offset] == 1 else ">"
    (code,) = struct.unpack_from(order + "I", blob, offset + 1)
    offset += 5
    has_z = bool(code & 0x8000_0000) or (code & 0xFFFF) // 1000 in (1, 3)
    has_m = bool(code & 0x4000_0000) or (code & 0xFFFF) // 1000 in (2, 3)
    kind = (code & 0xFFFF) % 1000
    if kind == _WKB_POINT:
        n_values = 2 + has_z + has_m
        if offset + 8 * n_values > len(blob):
            raise InvalidInputError(f"The WKB point of {what} is truncated.")
        values = struct.unpack_from(order + "d" * n_values, blob, offset)
        offset += 8 * n_values
        if all(math.isnan(v) for v in values[:2]):
            return [], offset  # WKB's empty point
        return [tuple(values[:3] if has_z else values[:2])], offset
    if kind == _WKB_MULTIPOINT and top:
        (n,) = struct.unpack_from(order + "I", blob, offset)
        offset += 4
        points = []
        for _ in range(n):
            part, offset = _wkb_points(blob, offset, what, top=False)
            points += part
        return points, offset
    raise InvalidInputError(f"The geometry of {what} is WKB type {code}, not a Point or MultiPoint.")


# --------------------------------------------------------------------------------------
# distance_map
# --------------------------------------------------------------------------------------


def distance_map(prior_mask: xr.DataArray | xr.Dataset) -> xr.DataArray:
    """Distance (m) from every cell to the nearest prior.

    Parameters
    ----------
    prior_mask : xarray.DataArray or xarray.Dataset
        The prior mask (1 or True where a prior, 0 or False elsewhere) on a map grid with a
        CRS, dims ``("y", "x")``; or the Dataset of :func:`sample_priors`, whose
        ``prior_mask`` is taken.

    Returns
    -------
    xarray.DataArray
        ``prior_distance``: float32 distance (m) between each cell centre and the nearest
        prior's cell centre, 0 on the priors, on the mask's grid and CRS, ``attrs["units"]``
        "m" and ``attrs["method"]``.

    Raises
    ------
    InvalidInputError
        No prior at all, values other than 0 and 1, not 2-D on ("y", "x"), no CRS.

    Notes
    -----
    Projected grids: the exact Euclidean distance transform
    (``scipy.ndimage.distance_transform_edt``) with the cell size in metres in each direction
    (the CRS's linear unit converted: US survey feet and feet grids exist); these are grid
    distances, the projection's scale factor (0.9996 on a UTM central meridian) is not
    corrected. Geographic grids: exact, not an approximation with one cell size: the
    nearest prior of each cell is found by a k-d tree on WGS84 ECEF positions (on the
    ellipsoid, height 0), and its chord c turned into the arc 2 R asin(c / 2R) on the sphere of
    the grid's mean radius of curvature; this differs from the ellipsoidal geodesic by well
    under a millimetre per kilometre within a tile of a few degrees. (One cell size at the
    centre latitude, the cheaper alternative, errs by tan(latitude) x the half-height of the
    tile in radians: 1 % on a one-degree tile at 50 degrees.)
    """
    mask_array = _mask_dataarray(prior_mask)
    mask = _mask_values(mask_array)
    crs = horizontal_crs(mask_array)
    transform = mask_array.rio.transform()
    if crs.is_geographic:
        distance, method = _geodesic_distance(mask_array, mask), "nearest prior by k-d tree on WGS84 ECEF, arc length"
    else:
        step_n, step_e = cell_steps_m(transform, crs, mask.shape)
        distance = scipy.ndimage.distance_transform_edt(~mask, sampling=(abs(step_n), abs(step_e)))
        method = "Euclidean distance transform with the cell size in metres"
    out = xr.DataArray(
        distance.astype(np.float32),
        dims=("y", "x"),
        coords={"y": mask_array["y"].values, "x": mask_array["x"].values},
        attrs={"units": "m", "long_name": "distance to the nearest prior", "method": method},
        name="prior_distance",
    )
    return out.rio.write_crs(crs).rio.write_transform(transform)


def _mask_dataarray(prior_mask: Any) -> xr.DataArray:
    if isinstance(prior_mask, xr.Dataset):
        if "prior_mask" not in prior_mask:
            raise InvalidInputError(
                f"The Dataset has no 'prior_mask' (it has {', '.join(map(str, prior_mask.data_vars))}): give the "
                "Dataset of sample_priors or the mask DataArray."
            )
        prior_mask = prior_mask["prior_mask"]
    return _grid_dataarray(prior_mask, "prior mask")


def _grid_dataarray(array: Any, what: str) -> xr.DataArray:
    """``array`` once known to be a 2-D DataArray on ("y", "x") with a CRS."""
    if not isinstance(array, xr.DataArray):
        raise InvalidInputError(f"The {what} must be an xarray.DataArray on a map grid, not {type(array).__name__}.")
    if array.dims != ("y", "x"):
        raise InvalidInputError(f"The {what} must have dims ('y', 'x'), not {array.dims}.")
    if array.rio.crs is None:
        raise InvalidInputError(
            f"The {what} has no CRS: write its grid's, e.g. array.rio.write_crs('EPSG:32611')."
        )
    return array


def _mask_values(mask_array: xr.DataArray) -> np.ndarray:
    values = np.asarray(mask_array.values)
    if values.dtype.kind not in "biuf":
        raise InvalidInputError(f"The prior mask must hold 0 and 1, not {values.dtype} values.")
    if not np.isin(values, (0, 1)).all():
        raise InvalidInputError(
            "The prior mask must hold only 0 (no prior) and 1 (prior), NaN excluded: give sample_priors' prior_mask."
        )
    mask = values.astype(bool)
    if not mask.any():
        raise InvalidInputError(
            "The prior mask has no prior: a distance to the nearest prior needs at least one (sample_priors gives "
            "at least one)."
        )
    return mask


def _geodesic_distance(mask_array: xr.DataArray, mask: np.ndarray) -> np.ndarray:
    lon, lat = geodetic_coordinates(mask_array, radians=True)
    prior = geodetic_to_ecef(np.ascontiguousarray(lon[mask]), np.ascontiguousarray(lat[mask]),
                             np.zeros(int(mask.sum())))
    tree = scipy.spatial.cKDTree(prior)
    radius = _mean_radius(float(np.median(lat[:, 0])))
    distance = np.empty(mask.shape)
    rows_per_block = max(1, _BLOCK_CELLS // mask.shape[1])
    for start in range(0, mask.shape[0], rows_per_block):
        block = slice(start, start + rows_per_block)
        cells = geodetic_to_ecef(np.ascontiguousarray(lon[block].ravel()), np.ascontiguousarray(lat[block].ravel()),
                                 np.zeros(lon[block].size))
        chord, _ = tree.query(cells)
        distance[block] = (2.0 * radius * np.arcsin(np.minimum(chord / (2.0 * radius), 1.0))).reshape(-1, mask.shape[1])
    distance[mask] = 0.0
    return distance


def _mean_radius(lat_rad: float) -> float:
    """Gaussian mean radius of curvature (m) of the WGS84 ellipsoid at ``lat_rad``."""
    w2 = 1.0 - WGS84_E2 * math.sin(lat_rad) ** 2
    return WGS84_A * math.sqrt(1.0 - WGS84_E2) / w2


# --------------------------------------------------------------------------------------
# interpolate_priors
# --------------------------------------------------------------------------------------


def interpolate_priors(priors: xr.Dataset | xr.DataArray, method: str = "linear", *, power: float = IDW_POWER,
                       neighbours: int = IDW_NEIGHBOURS) -> xr.DataArray:
    """The heights the priors alone give on their whole grid: the baseline of every model.

    Parameters
    ----------
    priors : xarray.Dataset or xarray.DataArray
        The Dataset of :func:`sample_priors` (``prior_height``, and ``prior_mask`` which must
        agree with it), or a DataArray of prior heights (m), NaN where none, on a map grid
        with a CRS and dims ``("y", "x")``.
    method : {"linear", "idw", "nearest"}, default "linear"
        ``"linear"``: linear on the Delaunay triangulation of the priors' cells in metres
        (scipy's Qhull; the interpolant of ``scipy.interpolate.LinearNDInterpolator``) inside
        their convex hull, inverse-distance weighting outside it (smooth, where the nearest
        prior would make Voronoi steps). With fewer than three priors, or all on one line
        (one altimeter beam: Qhull cannot triangulate them), inverse-distance weighting
        everywhere, which ``attrs["note"]`` says. ``"idw"``: inverse-distance weighting of
        the ``neighbours`` nearest priors with weights 1 / d^power. ``"nearest"``: the
        nearest prior's height.
    power : float, default 2
        Power of the distance in inverse-distance weighting.
    neighbours : int, default 8
        Number of nearest priors in inverse-distance weighting.

    Returns
    -------
    xarray.DataArray
        ``prior_interpolation``: float32 height (m) on every cell of the grid (no NaN),
        equal to the prior on its cells, within the priors' range for every method, exact
        on a plane inside the hull for "linear"; the grid's coordinates and CRS;
        ``attrs``: ``units``, ``method`` (the one used), ``requested_method``, ``priors``,
        ``power`` and ``neighbours`` where inverse-distance weighting is used, ``note``.

    Raises
    ------
    InvalidInputError
        An unknown method, a power that is not positive, fewer than one neighbour, no prior,
        a mask that disagrees with the heights, infinite heights, no CRS.

    Notes
    -----
    Distances (inverse-distance weighting, nearest prior): the CRS's linear unit converted to
    metres on projected grids; on geographic ones east and north on the plane tangent to the
    WGS84 ellipsoid at the grid's centre (from ECEF positions), within 1e-4 relative of the
    ellipsoid's distances over 100 km. The linear interpolation is linear in the grid's
    coordinates, its triangulation Delaunay in metres (at the grid's middle latitude on a
    geographic grid): exact on a plane of the grid's coordinates.
    """
    heights_array, values, mask = _prior_heights(priors)
    if method not in INTERPOLATION_METHODS:
        raise InvalidInputError(
            f"method={method!r} is not one of {', '.join(map(repr, INTERPOLATION_METHODS))}."
        )
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not math.isfinite(power) or power <= 0:
        raise InvalidInputError(f"power={power!r} must be a positive number (2: inverse squared distance).")
    if isinstance(neighbours, bool) or not isinstance(neighbours, (int, np.integer)) or neighbours < 1:
        raise InvalidInputError(f"neighbours={neighbours!r} must be a whole number of priors, at least 1.")
    crs = horizontal_crs(heights_array)
    transform = heights_array.rio.transform()
    east, north = _metric_coordinates(heights_array, crs, transform)
    known = np.column_stack((east[mask], north[mask]))
    known_heights = values[mask]
    tree = scipy.spatial.cKDTree(known)
    k = min(int(neighbours), known_heights.size)
    attrs: dict[str, Any] = {"units": "m", "requested_method": method, "priors": int(known_heights.size)}
    used = method
    if method == "linear":
        result, note = _linear_on_grid(mask, known_heights, cell_steps_m(transform, crs, mask.shape))
        if note:
            attrs["note"] = note
            used = "idw"
        else:
            outside = np.isnan(result)
            if outside.any():
                cells = np.column_stack((east[outside], north[outside]))
                result[outside] = _idw(tree, known_heights, cells, k, power)
    if used != "linear":
        result = np.empty(mask.shape)
        rows_per_block = max(1, _BLOCK_CELLS // mask.shape[1])
        for start in range(0, mask.shape[0], rows_per_block):
            block = slice(start, start + rows_per_block)
            cells = np.column_stack((east[block].ravel(), north[block].ravel()))
            if used == "nearest":
                estimate = known_heights[tree.query(cells)[1]]
            else:
                estimate = _idw(tree, known_heights, cells, k, power)
            result[block] = estimate.reshape(-1, mask.shape[1])
    # Both interpolations are convex combinations of the priors: the rounding of their
    # weights must not take a cell outside the priors' range (a flat set of priors gave
    # 1e-16 above it). Exact at the priors, whatever that rounding.
    np.clip(result, known_heights.min(), known_heights.max(), out=result)
    result[mask] = known_heights
    if used != "nearest":
        attrs.update(power=float(power), neighbours=k)
    long_names = {"linear": "linear interpolation of the priors (inverse-distance weighting outside their hull)",
                  "idw": "inverse-distance weighting of the priors", "nearest": "height of the nearest prior"}
    attrs.update(method=used, long_name=long_names[used])
    out = xr.DataArray(result.astype(np.float32), dims=("y", "x"),
                       coords={"y": heights_array["y"].values, "x": heights_array["x"].values},
                       attrs=attrs, name="prior_interpolation")
    return out.rio.write_crs(crs).rio.write_transform(transform)


def _prior_heights(priors: Any) -> tuple[xr.DataArray, np.ndarray, np.ndarray]:
    """The heights DataArray, its values and the prior mask (finite heights)."""
    if isinstance(priors, xr.Dataset):
        if "prior_height" not in priors:
            raise InvalidInputError(
                f"The Dataset has no 'prior_height' (it has {', '.join(map(str, priors.data_vars))}): give the "
                "Dataset of sample_priors or a DataArray of prior heights."
            )
        heights_array = _grid_dataarray(priors["prior_height"], "prior heights")
        if "prior_mask" in priors:
            given = np.asarray(priors["prior_mask"].values) != 0
            finite = np.isfinite(np.asarray(heights_array.values, dtype=np.float64))
            if given.shape != finite.shape or not np.array_equal(given, finite):
                raise InvalidInputError(
                    "prior_mask and prior_height disagree (a mask of 1 must mark exactly the finite heights): "
                    "give sample_priors' Dataset unchanged, or only the heights."
                )
    else:
        heights_array = _grid_dataarray(priors, "prior heights")
    values = np.asarray(heights_array.values, dtype=np.float64)
    if np.isinf(values).any():
        raise InvalidInputError("The prior heights hold infinite values: priors are finite heights, NaN elsewhere.")
    mask = np.isfinite(values)
    if not mask.any():
        raise InvalidInputError("There is no prior (every height is NaN): nothing to interpolate.")
    return heights_array, values, mask


def _metric_coordinates(grid: xr.DataArray, crs: pyproj.CRS,
                        transform: affine.Affine) -> tuple[np.ndarray, np.ndarray]:
    """East and north (m) of every cell: see :func:`interpolate_priors`' notes."""
    rows, cols = grid.shape
    if not crs.is_geographic:
        step_n, step_e = cell_steps_m(transform, crs, grid.shape)
        east = np.broadcast_to((np.arange(cols) * step_e)[np.newaxis, :], grid.shape)
        north = np.broadcast_to((np.arange(rows) * step_n)[:, np.newaxis], grid.shape)
        return east, north
    lon, lat = geodetic_coordinates(grid, radians=True)
    ecef = geodetic_to_ecef(np.ascontiguousarray(lon).ravel(), np.ascontiguousarray(lat).ravel(),
                            np.zeros(lon.size))
    lon0, lat0 = lon[rows // 2, cols // 2], lat[rows // 2, cols // 2]
    origin = geodetic_to_ecef(np.array([lon0]), np.array([lat0]), np.zeros(1))[0]
    relative = ecef - origin
    east_axis = np.array([-math.sin(lon0), math.cos(lon0), 0.0])
    north_axis = np.array([-math.sin(lat0) * math.cos(lon0), -math.sin(lat0) * math.sin(lon0), math.cos(lat0)])
    return (relative @ east_axis).reshape(grid.shape), (relative @ north_axis).reshape(grid.shape)


def _linear_on_grid(mask: np.ndarray, heights: np.ndarray,
                    steps: tuple[float, float]) -> tuple[np.ndarray, str]:
    """Linear interpolation of the priors on the Delaunay triangulation of their cells (in
    metres), at every cell centre of the grid: NaN outside the priors' convex hull; or the
    reason, where the priors cannot be triangulated.

    The interpolant is ``scipy.interpolate.LinearNDInterpolator``'s on the same
    triangulation, evaluated by going through the triangles' cells rather than locating each
    cell in a triangle: scipy's point location first computes a LAPACK factorisation per
    triangle, which OpenBLAS's threads make take seconds to minutes on a busy machine.
    Barycentric coordinates are affine-invariant, so they are computed in cell indices.
    """
    fallback = "; inverse-distance weighting instead"
    if heights.size < 3:
        return np.empty(0), f"linear interpolation needs three priors, there are {heights.size}{fallback}"
    rows, cols = np.nonzero(mask)
    metric = np.column_stack((cols * abs(steps[1]), rows * abs(steps[0])))
    spread = np.linalg.svd(metric - metric.mean(axis=0), compute_uv=False)
    if spread[-1] <= 1e-9 * spread[0]:
        return np.empty(0), f"the {heights.size} priors lie on one line, which cannot be triangulated{fallback}"
    try:
        triangles = scipy.spatial.Delaunay(metric).simplices
    except scipy.spatial.QhullError as error:
        return np.empty(0), f"the priors cannot be triangulated ({str(error).splitlines()[0]}){fallback}"
    x, y, z = cols[triangles].astype(np.float64), rows[triangles].astype(np.float64), heights[triangles]
    # Barycentric coordinates l0, l1 of cell (c, r) = a_i c + b_i r + c_i, per triangle.
    det = (y[:, 1] - y[:, 2]) * (x[:, 0] - x[:, 2]) + (x[:, 2] - x[:, 1]) * (y[:, 0] - y[:, 2])
    keep = det != 0.0
    x, y, z, det = x[keep], y[keep], z[keep], det[keep]
    a0, b0 = (y[:, 1] - y[:, 2]) / det, (x[:, 2] - x[:, 1]) / det
    a1, b1 = (y[:, 2] - y[:, 0]) / det, (x[:, 0] - x[:, 2]) / det
    c_low, c_high = np.ceil(x.min(axis=1)).astype(np.int64), np.floor(x.max(axis=1)).astype(np.int64)
    r_low, r_high = np.ceil(y.min(axis=1)).astype(np.int64), np.floor(y.max(axis=1)).astype(np.int64)
    width = c_high - c_low + 1
    sizes = width * (r_high - r_low + 1)
    result = np.full(mask.shape, np.nan)
    # Triangles in groups of about _BLOCK_CELLS cells of their bounding boxes (bounded memory).
    ends = np.cumsum(sizes)
    first = 0
    while first < sizes.size:
        stop = max(first + 1, int(np.searchsorted(ends, ends[first] - sizes[first] + _BLOCK_CELLS, side="right")))
        triangle = np.repeat(np.arange(first, stop), sizes[first:stop])
        starts = np.cumsum(sizes[first:stop]) - sizes[first:stop]
        k = np.arange(triangle.size) - np.repeat(starts, sizes[first:stop])
        col = c_low[triangle] + k % width[triangle]
        row = r_low[triangle] + k // width[triangle]
        dc, dr = col - x[triangle, 2], row - y[triangle, 2]
        l0 = a0[triangle] * dc + b0[triangle] * dr
        l1 = a1[triangle] * dc + b1[triangle] * dr
        l2 = 1.0 - l0 - l1
        inside = (l0 >= -1e-9) & (l1 >= -1e-9) & (l2 >= -1e-9)
        t = triangle[inside]
        result[row[inside], col[inside]] = l0[inside] * z[t, 0] + l1[inside] * z[t, 1] + l2[inside] * z[t, 2]
        first = stop
    return result, ""


def _idw(tree: scipy.spatial.cKDTree, heights: np.ndarray, cells: np.ndarray, k: int, power: float) -> np.ndarray:
    """Inverse-distance weighting of the ``k`` nearest priors at ``cells``; a prior's own
    height on its cell."""
    distance, index = tree.query(cells, k=k)
    if k == 1:
        distance, index = distance[:, np.newaxis], index[:, np.newaxis]
    on_prior = distance[:, 0] == 0.0
    # Relative to the nearest prior's distance: 1 / d^power neither overflows nor underflows.
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = (distance[:, :1] / distance) ** power
    weight[on_prior] = 0.0
    weight[on_prior, 0] = 1.0
    return (weight * heights[index]).sum(axis=1) / weight.sum(axis=1)
