"""The grids of a refinement: the coarse DEM's block means (what a coarser DEM measures),
the DEM degraded and resampled back, and the finer grid a refined DEM is made on.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import rasterio.transform
import rasterio.warp
import xarray as xr

from ..dem import checked_dem, open_dem
from ..errors import (
    InvalidInputError,
)
from ..raster import cell_centres
from .backprojection import upsample

#: The scene variable holding the coarse DEM resampled by each kernel of
#: :data:`sarheight.terrain.backprojection.UPSAMPLING`.
COARSE_VARIABLES = {"bilinear": "coarse_height", "bicubic": "coarse_bicubic", "lanczos": "coarse_lanczos"}


def block_mean(dem: Any, factor: int) -> xr.DataArray:
    """``dem`` as a ``factor`` times coarser DEM measures it: the mean height of every block
    of ``factor`` x ``factor`` cells (blocks at the edges average what they hold), on the
    coarse grid (its own transform, the same CRS and attributes).

    ``factor=1`` returns the heights unchanged.
    """
    dem = open_dem(dem, copy=False)
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise InvalidInputError(f"the coarse factor must be an integer >= 1, got {factor!r}")
    factor = int(factor)
    if factor == 1:
        return dem.copy()
    rows, cols = dem.shape
    if min(rows, cols) < 2 * factor:
        raise InvalidInputError(
            f"a {rows} x {cols} DEM is too small to degrade {factor}x (fewer than two coarse cells across): "
            "use a larger DEM or a smaller coarse factor"
        )
    coarse_rows, coarse_cols = -(-rows // factor), -(-cols // factor)
    padded = np.full((coarse_rows * factor, coarse_cols * factor), np.nan, dtype=np.float64)
    padded[:rows, :cols] = dem.values
    blocks = padded.reshape(coarse_rows, factor, coarse_cols, factor)
    finite = np.isfinite(blocks)
    counts = finite.sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        coarse = np.where(finite, blocks, 0.0).sum(axis=(1, 3)) / counts
    coarse[counts == 0] = np.nan
    transform = dem.rio.transform()
    coarse_transform = transform @ transform.scale(factor, factor)
    y, x = cell_centres(coarse_transform, (coarse_rows, coarse_cols))
    out = xr.DataArray(coarse.astype(np.float32), dims=("y", "x"), coords={"y": y, "x": x}, name=dem.name,
                       attrs={**dem.attrs, "coarse_factor": factor})
    return out.rio.write_crs(dem.rio.crs).rio.write_transform(coarse_transform)


def degrade_dem(dem: Any, factor: int, method: str = "bilinear") -> xr.DataArray:
    """``dem`` as a ``factor`` times coarser DEM would give it, resampled back to its grid.

    The heights are averaged over blocks of ``factor`` x ``factor`` cells
    (:func:`block_mean`: a coarser DEM measures the mean surface of its cells), then
    interpolated back to the original cells with ``method`` (:func:`upsample`; bilinear:
    the smooth surface a user with only the coarse DEM would resample to the SAR's grid).
    ``factor=1`` returns the heights unchanged.
    """
    dem = open_dem(dem, copy=False)
    coarse = block_mean(dem, factor)
    if int(factor) == 1:
        return coarse
    out = upsample(coarse, dem, method)
    out.attrs.update(coarse_factor=int(factor),
                     long_name=f"DEM degraded {int(factor)}x and resampled back ({method})")
    return out


#: The most a refinement refines (coarse cell over spacing): the models train at 2-10.
MAX_REFINEMENT_FACTOR = 10


#: The most cells a refined grid holds: a scene keeps about twenty float32 layers of it.
MAX_REFINEMENT_CELLS = 40_000_000


def check_refinement_spacing(cell_m: float, shape: tuple[int, int], spacing_m: Any) -> None:
    """Refuse, before any DEM is read, a refinement of a DEM of ``shape`` cells of
    ``cell_m`` metres to ``spacing_m`` metres that cannot be made: not a positive number,
    not finer than the DEM, more than :data:`MAX_REFINEMENT_FACTOR` times finer, or a
    grid beyond :data:`MAX_REFINEMENT_CELLS`."""
    if isinstance(spacing_m, bool) or not (isinstance(spacing_m, (int, float)) and math.isfinite(spacing_m)
                                           and spacing_m > 0):
        raise InvalidInputError(f"the spacing must be a positive number of metres, got {spacing_m!r}")
    cell = float(cell_m)
    rows, cols = shape
    if spacing_m >= 0.99 * cell:
        raise InvalidInputError(
            f"the DEM's cells are {cell:.1f} m, already as fine as the spacing {spacing_m:g} m: refine to a finer "
            f"spacing (from {cell / 10:.0f} to {cell / 2:.0f} m, 2-10 times finer), or give the coarser DEM"
        )
    if cell / spacing_m > MAX_REFINEMENT_FACTOR + 0.5:
        raise InvalidInputError(
            f"a spacing of {spacing_m:g} m is {cell / spacing_m:.0f} times finer than the DEM's {cell:.1f} m cells: "
            f"refinement reads at most {MAX_REFINEMENT_FACTOR} times finer (the models train at 2-10 times); give a "
            f"spacing of {cell / MAX_REFINEMENT_FACTOR:.0f} m or more")
    fine_cells = rows * cols * (cell / spacing_m) ** 2
    if fine_cells > MAX_REFINEMENT_CELLS:
        raise InvalidInputError(
            f"the refined grid would hold {fine_cells / 1e6:.0f} million cells (the DEM's {rows} x {cols} cells, "
            f"{cell / spacing_m:.1f} times finer), beyond the {MAX_REFINEMENT_CELLS / 1e6:.0f} million one refinement "
            "holds in memory: crop the DEM into parts, or give a coarser spacing")


def refinement_grid(dem: Any, spacing_m: float) -> xr.DataArray:
    """A grid of ``spacing_m`` metres over ``dem``'s extent, in its CRS (degrees of that
    size at its middle latitude on a geographic grid): where a refined DEM is made.

    Returns a DataArray of zeros on the grid (dims ``y``, ``x``, north-up) with the CRS.

    Raises
    ------
    InvalidInputError : the spacing is not a positive number of metres, not finer than
        the DEM's own cells (nothing to refine), more than :data:`MAX_REFINEMENT_FACTOR`
        times finer, or the grid beyond :data:`MAX_REFINEMENT_CELLS`.
    """
    checked = checked_dem(dem, copy=False)
    dem = checked.heights
    check_refinement_spacing(checked.grid.side_m, dem.shape, spacing_m)
    transform = checked.grid.transform
    rows, cols = dem.shape
    # The grid's steps in the DEM's own units: metres (or feet...) on projected grids, degrees
    # on geographic ones, as many as make spacing_m metres.
    dy, dx = checked.grid.size_m
    step_y, step_x = abs(transform.e) * spacing_m / dy, abs(transform.a) * spacing_m / dx
    west, north = transform.c, transform.f
    east, south = west + transform.a * cols, north + transform.e * rows
    left, right = min(west, east), max(west, east)
    bottom, top = min(north, south), max(north, south)
    n_cols, n_rows = max(round((right - left) / step_x), 1), max(round((top - bottom) / step_y), 1)
    x = left + step_x * (np.arange(n_cols) + 0.5)
    y = top - step_y * (np.arange(n_rows) + 0.5)
    grid = xr.DataArray(np.zeros((n_rows, n_cols), dtype=np.float32), dims=("y", "x"), coords={"y": y, "x": x},
                        name="grid", attrs={"spacing_m": float(spacing_m)})
    return grid.rio.write_crs(dem.rio.crs).rio.write_transform(
        rasterio.transform.from_origin(left, top, step_x, step_y))
