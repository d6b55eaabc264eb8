"""WGS84 longitude and latitude of a DEM's cells: exact where the CRS is geodetic degrees,
else PROJ on an absolute lattice of nodes about 100 m apart and bilinear between them
(checked to a millimetre), for the whole grid or a sheared strip of a block-wise run.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import pyproj
import xarray as xr

from sarheight.compute import interpolate_rows
from sarheight.errors import (
    InvalidInputError,
)
from sarheight.raster import horizontal_part, metres_per_degree

from .crs import crs_of, is_wgs84_degrees, spatial_dem

logger = logging.getLogger(__name__)


def geodetic_of(
    dem: xr.DataArray, horizontal: pyproj.CRS, *, in_radians: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude of every cell (degrees, or radians with ``in_radians``): see
    :func:`geodetic_coordinates`. Radians are converted as ``np.radians`` would, within
    the pass that makes the grids."""
    x = np.asarray(dem["x"].values, dtype=np.float64)
    y = np.asarray(dem["y"].values, dtype=np.float64)
    shape = (y.size, x.size)
    if is_wgs84_degrees(horizontal):
        if in_radians:
            x, y = np.radians(x), np.radians(y)
        return np.broadcast_to(x[np.newaxis, :], shape), np.broadcast_to(y[:, np.newaxis], shape)
    transformer = pyproj.Transformer.from_crs(horizontal, "EPSG:4326", always_xy=True)
    lon, lat = _interpolated_transform(transformer, x, y, horizontal, np.pi / 180.0 if in_radians else 1.0)
    if lon is not None:
        return lon, lat  # interpolated from finite nodes: finite
    xx, yy = np.meshgrid(x, y)
    lon, lat = transformer.transform(xx, yy)
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    if not (np.isfinite(lon).all() and np.isfinite(lat).all()):
        raise InvalidInputError(
            f"Some DEM cells have no longitude/latitude in its CRS {horizontal.name!r} "
            "(outside the projection's domain). Check the CRS and the transform."
        )
    if in_radians:
        np.radians(lon, out=lon)
        np.radians(lat, out=lat)
    return lon, lat


# Node spacing (m) of the interpolated projection, and the largest error (m) accepted.
_NODE_SPACING_M = 100.0


_INTERPOLATION_TOLERANCE_M = 1e-3


def _axis_nodes(coords: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interpolation nodes of a regular axis at the multiples of ``step`` cell spacings
    (an absolute lattice: coordinate 0 is a node), covering the cells with one node at
    or beyond each end. A window of a grid thus interpolates every cell between the same
    nodes with the same weight as the whole grid, which a lattice placed from the first
    cell, or from the grid's offset (ambiguous at half a cell), would not do.

    Returns the nodes' coordinates, each cell's node below (index into them) and its
    weight towards the node above."""
    pitch = step * (coords[1] - coords[0])
    position = coords / pitch  # in nodes; increases along the axis whatever its direction
    first = math.floor(position.min())
    last = max(math.ceil(position.max()), first + 1)
    node = np.arange(first, last + 1, dtype=np.float64)
    below = np.clip(np.floor(position) - first, 0, node.size - 2).astype(np.int64)
    weight = position - node[below]
    return node * pitch, below, weight


def _lattice(
    transformer: pyproj.Transformer, x: np.ndarray, y: np.ndarray, crs: pyproj.CRS
) -> tuple[tuple[np.ndarray, np.ndarray], np.ndarray, np.ndarray] | None:
    """The interpolation of ``_interpolated_transform`` before it is evaluated: the
    longitude and latitude (degrees) of the nodes interpolated along the node rows to
    every column of ``x``, and each row's node below and weight (``_axis_nodes`` on
    ``y``); None where the cells are too coarse for nodes (under 2 cells apart) or a node
    has no longitude/latitude."""
    if x.size < 2 or y.size < 2:
        return None
    unit = crs.axis_info[0].unit_conversion_factor if crs.axis_info else 1.0
    cell = max(abs(x[1] - x[0]), abs(y[1] - y[0])) * unit
    step = int(_NODE_SPACING_M // cell) if cell > 0 else 0
    if step < 2:
        return None
    col_coords, j, w = _axis_nodes(x, step)
    row_coords, i, v = _axis_nodes(y, step)
    node_lon, node_lat = transformer.transform(*np.meshgrid(col_coords, row_coords))
    node_lon = np.asarray(node_lon, dtype=np.float64)
    node_lat = np.asarray(node_lat, dtype=np.float64)
    if not (np.isfinite(node_lon).all() and np.isfinite(node_lat).all()):
        return None
    along = tuple(nodes[:, j] * (1.0 - w) + nodes[:, j + 1] * w for nodes in (node_lon, node_lat))
    return along, i, v


def _within_a_millimetre(transformer: pyproj.Transformer, x: np.ndarray, y: np.ndarray, lon: np.ndarray,
                         lat: np.ndarray, scale: float) -> bool:
    """Whether interpolated ``lon``, ``lat`` (times ``scale``) at cells (``y``, ``x``) are
    within ``_INTERPOLATION_TOLERANCE_M`` of PROJ's transformation."""
    exact_lon, exact_lat = transformer.transform(x, y)
    north, east = metres_per_degree(np.asarray(exact_lat, dtype=np.float64))
    error = np.hypot((lat - exact_lat * scale) * north / scale, (lon - exact_lon * scale) * east / scale)
    if not np.all(np.isfinite(error)) or error.max() > _INTERPOLATION_TOLERANCE_M:
        logger.debug("interpolated projection off by %.2g m: exact transformation", np.nanmax(error))
        return False
    return True


def _interpolated_transform(
    transformer: pyproj.Transformer, x: np.ndarray, y: np.ndarray, crs: pyproj.CRS, scale: float = 1.0
) -> tuple[np.ndarray | None, np.ndarray | None]:

    """Longitude/latitude by exact transformation on nodes about 100 m apart and bilinear
    interpolation between them, or (None, None) where that is not exact to 1 mm or a node
    has no longitude/latitude.

    PROJ transforms a few million points per second, ten times slower than the zero-Doppler
    solve; map projections are smooth enough that interpolating over 100 m errs by well
    under a millimetre (a curvature term of order h^2 / 8R). The error is measured on
    a thousand cells between nodes every time, and the exact transformation used when it
    exceeds 1 mm (e.g. a grid crossing the antimeridian). The nodes lie on an absolute
    lattice (``_axis_nodes``), whatever part of a grid ``x`` and ``y`` cover: block-wise
    runs get the positions the whole DEM gets (nodes placed from a block's first cell
    moved them by ~0.1 mm between blocks, which showed in values sampled from speckle).
    The results are multiplied by ``scale`` (degrees: 1; radians: pi / 180).
    """
    lattice = _lattice(transformer, x, y, crs)
    if lattice is None:
        return None, None
    along_both, i, v = lattice
    # One buffer for both grids: a single allocation large enough for transparent huge
    # pages, whose first touch costs far less than that of 4 KiB pages.
    grids = np.empty((2, y.size, x.size))
    for along, out in zip(along_both, grids, strict=True):
        interpolate_rows(along, i, v, scale, out=out)
    lon, lat = grids
    rng = np.random.default_rng(0)
    rows = rng.integers(0, y.size, 1000)
    cols = rng.integers(0, x.size, 1000)
    if not _within_a_millimetre(transformer, x[cols], y[rows], lon[rows, cols], lat[rows, cols], scale):
        return None, None
    return lon, lat


def geodetic_at_rows(x: np.ndarray, y: np.ndarray, rows: np.ndarray, crs: pyproj.CRS) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude (degrees) of the cells (``rows[s, c]``, ``c``) of the grid
    with cell-centre axes ``x``, ``y`` and horizontal ``crs``: for each column ``c`` of
    ``x``, the rows ``rows[:, c]`` (a sheared strip of a block-wise run). The values are
    those :func:`geodetic_coordinates` gives these cells for the whole grid, to the bit
    where it interpolates (the same lattice, weights and operations), without making the
    grid of the strip's bounding rows."""
    if is_wgs84_degrees(crs):
        return np.broadcast_to(x[np.newaxis, :], rows.shape), np.ascontiguousarray(y[rows])
    transformer = pyproj.Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    # The strip's rows, and a neighbour where it has a single one (nodes need two): the
    # lattice is absolute, so the extent changes no node.
    first = min(int(rows.min()), max(0, y.size - 2))
    stop = min(y.size, max(int(rows.max()) + 1, first + 2))
    lattice = _lattice(transformer, x, y[first:stop], crs)
    if lattice is not None:
        (along_lon, along_lat), i, v = lattice
        k, weight = i[rows - first], v[rows - first]
        columns = np.arange(x.size)[np.newaxis, :]
        # interpolate_rows' operations, in its order.
        lon = along_lon[k, columns] * (1.0 - weight) + along_lon[k + 1, columns] * weight
        lat = along_lat[k, columns] * (1.0 - weight) + along_lat[k + 1, columns] * weight
        sample = np.random.default_rng(0).integers(0, rows.size, min(rows.size, 1000))
        flat_rows, flat_cols = np.unravel_index(sample, rows.shape)
        if _within_a_millimetre(transformer, x[flat_cols], y[rows[flat_rows, flat_cols]],
                                lon[flat_rows, flat_cols], lat[flat_rows, flat_cols], 1.0):
            return lon, lat
    lon, lat = transformer.transform(np.broadcast_to(x[np.newaxis, :], rows.shape), y[rows])
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


def compact(array: np.ndarray) -> np.ndarray:
    """A broadcast view reduced to its distinct values, still broadcastable to the shape."""
    index = tuple(
        slice(0, 1) if stride == 0 and size > 1 else slice(None)
        for stride, size in zip(array.strides, array.shape, strict=True)
    )
    return array[index]


def geodetic_coordinates(dem: xr.DataArray, *, radians: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 geodetic longitude and latitude of every DEM cell centre.

    Parameters
    ----------
    dem : xarray.DataArray
        A DEM with dims ``("y", "x")``, cell-centre coordinates and a CRS (rioxarray),
        e.g. from :func:`open_dem`.
    radians : bool, default False
        Radians instead of degrees (converted as ``np.radians`` would, within the pass
        that makes the grids).

    Returns
    -------
    lon, lat : numpy.ndarray
        Longitude and latitude (degrees, or radians; float64), each of the DEM's shape.
        For a geographic WGS84 DEM they are read-only ``np.broadcast_to`` views of the x
        and y coordinates (zero strides, nothing materialised: the kernels then take one
        sine and cosine per row or column); for any other CRS, full arrays from a pyproj
        transformation to EPSG:4326.

    Raises
    ------
    InvalidInputError
        Not a DataArray, no CRS, coordinates that are not the transform's cell centres,
        or cells outside the projection's domain.
    """
    dem = spatial_dem(dem)
    return geodetic_of(dem, horizontal_part(crs_of(dem)), in_radians=radians)
