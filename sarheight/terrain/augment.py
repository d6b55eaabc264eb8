"""New terrain from a DEM: the ground itself turned, mirrored or scaled before a geometry is
simulated over it.

An image in radar geometry cannot be rotated or flipped and stay an image: the look
direction fixes which slopes face the radar, and so where layover, foreshortening and
shadow fall. Terrain can: the same relief turned a quarter, mirrored east-west or scaled
is other terrain, with the same slopes facing other ways, and a scene simulated over it
(:func:`sarheight.terrain.simulated.simulate_scene`) has the layover and shadow that
terrain casts under that geometry. That is how the terrain of a few DEMs is made into many
training scenes without breaking the physics.

The transforms are exact on the heights (no resampling): a mirror and quarter turns
reorder the cells, and a scale multiplies the cell size and the relief alike, so every
slope keeps its angle. The transformed terrain keeps its DEM's name (``dem_name``): scenes
of one area stay in one split, however it was turned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import affine
import numpy as np
import xarray as xr
from rasterio.enums import Resampling

from ..dem import open_dem
from ..errors import InvalidInputError
from ..raster import cell_side_m, cell_size_m
from .observed import source_name


@dataclass(frozen=True)
class TerrainTransform:
    """A change of the terrain: mirrored east-west, then turned, then scaled.

    Parameters
    ----------
    quarter_turns : turns of 90 degrees anticlockwise on the map (0-3): a slope that faced
        east faces north after one.
    mirror : mirror the terrain east-west (before turning).
    scale : multiply the cell size and the relief (the heights above the lowest) by this
        (0.5-2): the same slopes over a larger or smaller area.
    """

    quarter_turns: int = 0
    mirror: bool = False
    scale: float = 1.0

    def __post_init__(self) -> None:
        if not isinstance(self.quarter_turns, (int, np.integer)) or not 0 <= self.quarter_turns <= 3:
            raise InvalidInputError(f"quarter_turns={self.quarter_turns!r}: give 0, 1, 2 or 3 (turns of 90 degrees "
                                    "anticlockwise)")
        if not isinstance(self.scale, (int, float)) or not 0.5 <= self.scale <= 2.0:
            raise InvalidInputError(f"scale={self.scale!r}: give a number in 0.5-2 (the factor on the cell size and "
                                    "the relief; beyond it the terrain is no longer terrain of its DEM's kind)")

    @property
    def label(self) -> str:
        """A short name for file names: ``r1``, ``m``, ``x1.5``, joined (``""``: none)."""
        parts = [f"r{self.quarter_turns}" if self.quarter_turns else "", "m" if self.mirror else "",
                 f"x{self.scale:g}" if self.scale != 1.0 else ""]
        return "".join(parts)


#: Every orientation of a grid's terrain: the four turns, each mirrored or not.
ORIENTATIONS = tuple(TerrainTransform(quarter_turns=turns, mirror=mirror)
                     for mirror in (False, True) for turns in range(4))


def transform_terrain(dem: Any, change: TerrainTransform) -> xr.DataArray:
    """The terrain of ``dem`` mirrored, turned and scaled as ``change`` says.

    Parameters
    ----------
    dem : anything :func:`sarheight.dem.open_dem` takes (WGS84 ellipsoidal heights, m), on
        a projected grid. A geographic grid's cells are not square on the ground, so a
        quarter turn would stretch its terrain: reproject it first
        (``dem.rio.reproject(dem.rio.estimate_utm_crs())``).
    change : the transform.

    Returns
    -------
    xr.DataArray
        Heights (m) on a north-up grid with the same CRS and upper-left corner, cells of
        ``scale`` times the size (the sizes of rows and columns swapped by an odd number of
        turns); ``attrs`` keep the DEM's and add ``dem_name`` (the source's, for the
        splits) and ``terrain_transform`` (:attr:`TerrainTransform.label`).
    """
    if not isinstance(change, TerrainTransform):
        raise InvalidInputError(f"change={change!r}: give a TerrainTransform(quarter_turns=, mirror=, scale=)")
    opened = open_dem(dem, copy=False)
    crs = opened.rio.crs
    if not crs.is_projected:
        raise InvalidInputError(
            "transform_terrain needs a DEM on a projected grid (square metres on the ground); this one is "
            f"geographic ({crs}). Reproject it first: dem.rio.reproject(dem.rio.estimate_utm_crs())")
    dy, dx = cell_size_m(opened)
    transform = opened.rio.transform()
    units = dx / abs(transform.a)  # metres of one unit of the CRS
    heights = orient_cells(opened.values, change, transform)
    if change.quarter_turns % 2:
        dy, dx = dx, dy
    if change.scale != 1.0:
        lowest = np.float32(np.nanmin(heights))
        heights = lowest + (heights - lowest) * np.float32(change.scale)
        dy, dx = dy * change.scale, dx * change.scale
    west = min(transform.c, transform.c + transform.a * opened.sizes["x"])
    north = max(transform.f, transform.f + transform.e * opened.sizes["y"])
    grid = affine.Affine(dx / units, 0.0, west, 0.0, -dy / units, north)
    attrs = {**opened.attrs, "dem_name": source_name(dem), "terrain_transform": change.label or "none"}
    turned = open_dem((np.ascontiguousarray(heights, dtype=np.float32), grid, crs), vertical_datum="ellipsoid")
    turned.attrs.update(attrs)  # in place: the new DEM stays one open_dem checked
    return turned


def orient_cells(values: np.ndarray, change: TerrainTransform, transform: affine.Affine) -> np.ndarray:
    """The cells of ``values`` (a 2-D array on a grid of affine ``transform``) in the order
    :func:`transform_terrain` puts the heights of that grid: north-up, mirrored, turned. For
    what goes with a DEM (the cells a scene leaves unscored, a land cover)."""
    # Rows north to south, columns west to east, whatever the grid's order.
    values = values[:: -1 if transform.e > 0 else 1, :: -1 if transform.a < 0 else 1]
    if change.mirror:
        values = values[:, ::-1]
    return np.rot90(values, change.quarter_turns)


def terrain_on_a_projected_grid(dem: Any, *, resampling: Resampling = Resampling.bilinear) -> xr.DataArray:
    """``dem`` on the projected grid :func:`transform_terrain` needs: as it is where its
    grid is projected; a geographic grid reprojected to its UTM zone, with square cells of
    its cells' mean size on the ground (bilinear), its name kept."""
    opened = open_dem(dem, copy=False)
    if opened.rio.crs.is_projected:
        return opened
    projected = opened.rio.reproject(opened.rio.estimate_utm_crs(), resolution=cell_side_m(opened),
                                     resampling=resampling, nodata=np.nan)
    projected.attrs.update(dem_name=source_name(dem))
    return open_dem(projected, vertical_datum="ellipsoid")


#: Windows drawn for a crop, the one with the most scored cells kept.
CROP_DRAWS = 8


def crop_window(dem: xr.DataArray, cells: int, unscored: np.ndarray | None = None, *,
                seed: int = 0) -> tuple[int, int, int, int]:
    """A window of ``cells`` x ``cells`` (or the whole side where the DEM is smaller) of a
    DEM, drawn at random with ``seed``: of :data:`CROP_DRAWS` draws, the one with the most
    cells that have a height and are not ``unscored`` (the sea). Returns (row, col, rows,
    cols).

    Raises
    ------
    InvalidInputError : ``cells`` below 16 (a scene needs coarse cells across).
    """
    if isinstance(cells, bool) or not isinstance(cells, (int, np.integer)) or cells < 16:
        raise InvalidInputError(f"crop of {cells!r} cells: give 16 or more cells a side")
    rows, cols = dem.shape
    height, width = min(int(cells), rows), min(int(cells), cols)
    usable = np.isfinite(np.asarray(dem.values, dtype=np.float64))
    if unscored is not None:
        usable &= ~np.asarray(unscored, dtype=bool)
    summed = np.pad(usable.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    rng = np.random.default_rng(seed)
    best, best_count = (0, 0), -1
    for _ in range(CROP_DRAWS):
        row, col = int(rng.integers(0, rows - height + 1)), int(rng.integers(0, cols - width + 1))
        count = int(summed[row + height, col + width] - summed[row, col + width] - summed[row + height, col]
                    + summed[row, col])
        if count > best_count:
            best, best_count = (row, col), count
    return best[0], best[1], height, width
