"""Land cover that follows the terrain: classes (:data:`LAND_COVER_CLASSES`: rock, soil,
vegetation, snow) by height, slope and aspect, every threshold relative to the DEM's own
height quantiles, the boundaries made irregular by a smooth random field; and the
multiplicative texture within a class.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import xarray as xr
from scipy import stats

from ..dem import open_dem
from ..errors import InvalidInputError
from ..raster import filled_with_mean, gradient, grid_steps, smooth_random_field

#: The land-cover classes, by code (the uint8 values of a class map).
LAND_COVER_CLASSES = ("rock", "soil", "vegetation", "snow")


#: The class code of cells without a height (voids) in a class map.
NO_CLASS = 255


def lognormal_texture(shape: tuple[int, int], *, seed: int, contrast_db: float,
                      correlation_cells: float = 6.0) -> np.ndarray:
    """A multiplicative land-cover texture of mean 1: smooth patches (``correlation_cells``
    cells) with log-normal values whose standard deviation is ``contrast_db`` (dB; 0: all
    ones). ``sarheight.simulate.texture`` is this field."""
    if contrast_db == 0:
        return np.ones(shape)
    field = smooth_random_field(shape, seed=seed, correlation_cells=correlation_cells)
    sigma = contrast_db * np.log(10) / 10
    return np.exp(sigma * field - 0.5 * sigma**2)


def _slope_aspect(heights: np.ndarray, dem: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """Slope (degrees) and aspect (degrees clockwise from north of the downslope direction)
    by central differences with metric cell sizes (any CRS, geographic included:
    ``sarheight.dem.terrain_attributes`` refuses geographic grids)."""
    dz_north, dz_east = gradient(filled_with_mean(heights), grid_steps(dem))
    slope = np.degrees(np.arctan(np.hypot(dz_north, dz_east)))
    aspect = np.mod(np.degrees(np.arctan2(-dz_east, -dz_north)), 360.0)
    return slope, aspect


def _centre_latitude(dem: xr.DataArray) -> float:
    bounds = dem.rio.transform_bounds("EPSG:4326")
    return 0.5 * (bounds[1] + bounds[3])


def height_quantiles(heights: np.ndarray) -> np.ndarray:
    """Each cell's height as a quantile of the DEM's own heights (0..1, ties averaged; NaN
    on voids): the scale of the land-cover thresholds, the same for a lowland and for a
    range 6000 m high."""
    heights = np.asarray(heights, dtype=np.float64)
    valid = np.isfinite(heights)
    out = np.full(heights.shape, np.nan)
    if valid.any():
        out[valid] = (stats.rankdata(heights[valid]) - 0.5) / valid.sum()
    return out


def shade_factor(slope_deg: np.ndarray, aspect_deg: np.ndarray, latitude_deg: float) -> np.ndarray:
    """How much a cell faces away from the sun, -1..1: the cosine of its aspect from the
    pole's direction (north in the northern hemisphere, south in the southern), times
    its slope over 15 degrees (at most 1): flat cells have no aspect."""
    away = 0.0 if latitude_deg >= 0 else 180.0
    return np.cos(np.radians(aspect_deg - away)) * np.clip(slope_deg / 15.0, 0.0, 1.0)


def terrain_land_cover(
    dem: Any,
    *,
    seed: int,
    treeline_quantile: float = 0.5,
    snowline_quantile: float = 0.85,
    rock_slope_deg: float = 40.0,
    aspect_snow_shift: float = 0.1,
    irregularity: float = 0.05,
    slope_irregularity_deg: float = 4.0,
    correlation_cells: float = 8.0,
    patch_share: float = 0.0,
    patch_class: int = 1,
    patch_cells: float = 16.0,
) -> np.ndarray:
    """Land-cover classes that follow the terrain (codes of :data:`LAND_COVER_CLASSES`).

    With ``u`` a cell's height quantile in the DEM (:func:`height_quantiles`), ``s`` its
    slope and ``f`` its shade factor (:func:`shade_factor`: 1 on steep slopes facing the
    pole, -1 facing the equator), and ``n1, n2, n3`` smooth random fields of unit standard
    deviation (:func:`smooth_random_field`, ``correlation_cells``; they make the
    boundaries irregular, not iso-lines), a cell is, in this order of precedence:

    - rock where ``s + slope_irregularity_deg n3 > rock_slope_deg`` (bare rock on steep
      slopes, where neither snow nor soil stays);
    - snow where ``u + irregularity n1 > snowline_quantile - aspect_snow_shift f`` (the
      snowline lower on shaded slopes);
    - vegetation where ``u + irregularity n2 < treeline_quantile``;
    - soil otherwise (above the treeline, below the snowline, not steep);

    and then, across all of these, ``patch_share`` of the cells, in patches of a fourth smooth
    field's highest values (``patch_cells`` their correlation), take the class
    ``patch_class``: land cover the terrain does not decide (a clear-cut, a burn, fields,
    debris, a dark wet patch), whose edges cross slopes and height lines.

    Parameters
    ----------
    dem : a DEM as :func:`sarheight.dem.open_dem` takes it (heights in m, any CRS, any
        vertical datum: read as they are).
    seed : seed of the boundary fields (non-negative integer).
    treeline_quantile, snowline_quantile : the lines as quantiles of the DEM's heights
        (below 0 or above 1: below the lowest or above the highest cell; the DEMs range from
        sea level to 6000 m, so absolute heights would mean nothing across scenes).
    rock_slope_deg : the slope (degrees) above which the ground is bare rock.
    aspect_snow_shift : how far (quantile units) the snowline drops on slopes facing the
        pole (and rises on those facing the equator).
    irregularity : standard deviation (quantile units) of the boundary fields of the
        height lines; ``slope_irregularity_deg`` (degrees) that of the rock threshold.
    correlation_cells : the boundary fields' correlation length (cells).
    patch_share, patch_class, patch_cells : the share of the cells (0..1) in patches that
        cut across the terrain's classes, their class (a code of
        :data:`LAND_COVER_CLASSES`) and their correlation length (cells).

    Returns
    -------
    np.ndarray of uint8 codes on the DEM's grid; :data:`NO_CLASS` on voids.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    numbers = {"treeline_quantile": treeline_quantile, "snowline_quantile": snowline_quantile,
               "rock_slope_deg": rock_slope_deg, "aspect_snow_shift": aspect_snow_shift,
               "irregularity": irregularity, "slope_irregularity_deg": slope_irregularity_deg,
               "correlation_cells": correlation_cells}
    for name, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
            raise InvalidInputError(f"{name} must be a finite number, got {value!r}")
    if irregularity < 0 or slope_irregularity_deg < 0 or correlation_cells <= 0:
        raise InvalidInputError("irregularity and slope_irregularity_deg must be >= 0, correlation_cells > 0")
    if not (0.0 <= patch_share <= 1.0 and patch_cells > 0) or isinstance(patch_class, bool) or \
            int(patch_class) != patch_class or not 0 <= int(patch_class) < len(LAND_COVER_CLASSES):
        raise InvalidInputError(f"patch_share must be 0..1, patch_cells > 0 and patch_class a class code 0.."
                                f"{len(LAND_COVER_CLASSES) - 1}, got {patch_share!r}, {patch_cells!r}, "
                                f"{patch_class!r}")
    # The heights as they are: classes relative to the DEM's own quantiles do not depend
    # on the vertical datum (nor do slopes, to a part in a million).
    dem = open_dem(dem, vertical_datum="ellipsoid", copy=False)
    heights = np.asarray(dem.values, dtype=np.float64)
    valid = np.isfinite(heights)
    quantile = height_quantiles(heights)
    slope, aspect = _slope_aspect(heights, dem)
    shade = shade_factor(slope, aspect, _centre_latitude(dem))
    n1, n2, n3 = (smooth_random_field(heights.shape, seed=[int(seed), k], correlation_cells=correlation_cells)
                  for k in range(3))
    rock = slope + slope_irregularity_deg * n3 > rock_slope_deg
    snow = quantile + irregularity * n1 > snowline_quantile - aspect_snow_shift * shade
    vegetation = quantile + irregularity * n2 < treeline_quantile
    codes = np.full(heights.shape, LAND_COVER_CLASSES.index("soil"), dtype=np.uint8)
    codes[vegetation] = LAND_COVER_CLASSES.index("vegetation")
    codes[snow] = LAND_COVER_CLASSES.index("snow")
    codes[rock] = LAND_COVER_CLASSES.index("rock")
    if patch_share > 0 and valid.any():
        patches = smooth_random_field(heights.shape, seed=[int(seed), 3], correlation_cells=patch_cells)
        threshold = np.quantile(patches[valid], 1.0 - patch_share)
        codes[patches >= threshold] = int(patch_class)
    codes[~valid] = NO_CLASS
    return codes


@dataclasses.dataclass(frozen=True)
class LandCoverRule:
    """The thresholds of :func:`terrain_land_cover` (see there for their meaning and units)."""

    treeline_quantile: float = 0.5
    snowline_quantile: float = 0.85
    rock_slope_deg: float = 40.0
    aspect_snow_shift: float = 0.1
    irregularity: float = 0.05
    slope_irregularity_deg: float = 4.0
    correlation_cells: float = 8.0
    patch_share: float = 0.0
    patch_class: int = 1
    patch_cells: float = 16.0

    def classify(self, dem: Any, seed: int) -> np.ndarray:
        """The class map of ``dem`` under this rule (:func:`terrain_land_cover`)."""
        return terrain_land_cover(dem, seed=seed, **dataclasses.asdict(self))
