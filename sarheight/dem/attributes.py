"""What a DEM gives beyond its heights: slope and aspect (richdem), and the Earth-centred
Earth-fixed coordinates of its cells.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

import numpy as np
import xarray as xr

from sarheight.compute import ecef as ecef_of
from sarheight.errors import (
    InvalidInputError,
)
from sarheight.raster import horizontal_part

from .coordinates import compact, geodetic_coordinates
from .crs import crs_of, spatial_dem, transform_of
from .opening import RICHDEM_LOCK, VOID, DemSource, open_dem, validated_heights


def ecef_coordinates(dem: xr.DataArray | DemSource) -> xr.DataArray:
    """Earth-centred Earth-fixed (WGS84) coordinates of every DEM cell.

    Parameters
    ----------
    dem : xarray.DataArray or anything :func:`open_dem` accepts
        The DEM; it goes through :func:`open_dem` first (a no-op for one that already holds
        ellipsoidal heights), so geoid heights are converted or refused as there.

    Returns
    -------
    xarray.DataArray
        ECEF X, Y, Z (m), float64, dims ``("y", "x", "xyz")``, NaN where the DEM has no
        height; the DEM's x/y coordinates and CRS are kept.

    Raises
    ------
    InvalidInputError, MissingInputError, DatumError
        As :func:`open_dem`.
    """
    dem = open_dem(dem)
    lon, lat = geodetic_coordinates(dem)
    ecef = ecef_of(_radians(lon), _radians(lat), dem.values)
    out = xr.DataArray(
        ecef,
        dims=("y", "x", "xyz"),
        coords={"y": dem["y"].values, "x": dem["x"].values, "xyz": ["x", "y", "z"]},
        attrs={"units": "m", "long_name": "ECEF coordinates (WGS84)"},
        name="ecef",
    )
    return out.rio.write_crs(dem.rio.crs)


@contextlib.contextmanager
def _silenced_output() -> Iterator[None]:
    """Silence richdem's C++ progress output, which goes straight to file descriptors 1, 2.

    Python-level redirection cannot catch it. While silenced, other threads' output to
    these descriptors is lost too; the lock at least keeps richdem calls from interleaving
    their save/restore.
    """
    with RICHDEM_LOCK:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        saved = []
        with contextlib.ExitStack() as restore:
            try:
                devnull = os.open(os.devnull, os.O_WRONLY)
            except OSError:
                devnull = None
            if devnull is not None:
                restore.callback(os.close, devnull)
                for fd in (1, 2):
                    # A closed descriptor (daemons, pythonw) has nothing to silence.
                    with contextlib.suppress(OSError):
                        saved.append((fd, os.dup(fd)))
                for fd, copy in saved:
                    restore.callback(os.close, copy)
                    restore.callback(os.dup2, copy, fd)
                    os.dup2(devnull, fd)
            yield


def terrain_attributes(dem: xr.DataArray) -> xr.Dataset:
    """Slope and aspect of a projected DEM (Horn 1981, through richdem).

    Parameters
    ----------
    dem : xarray.DataArray
        Heights (m) on a projected grid (UTM, transverse Mercator, ...), dims ``("y", "x")``,
        with a CRS; any vertical datum (the geoid changes slopes negligibly). The cell size
        comes from the transform, converted to metres with the CRS's linear unit.

    Returns
    -------
    xarray.Dataset
        ``slope`` (degrees from horizontal, 0..90) and ``aspect`` (degrees clockwise from
        north of the downslope direction, 0..360, richdem's convention), float32, on the
        DEM's grid and CRS. NaN where the DEM has no data, where the 3 x 3 window is
        incomplete (DEM border, next to a void: Horn's estimate would be biased there), and
        aspect NaN on flat cells (slope 0, no direction).

    Raises
    ------
    InvalidInputError
        A geographic DEM (cell size in degrees; richdem needs one metric cell size), or
        the checks of :func:`open_dem` on grid and CRS.

    Notes
    -----
    Geographic DEMs are refused rather than approximated: their east-west cell size changes
    with latitude and richdem takes one cell size per raster. Reproject first, e.g.
    ``dem.rio.reproject(dem.rio.estimate_utm_crs())``. Cell sizes are grid distances: the
    projection's scale factor (0.9996 on a UTM central meridian) is not corrected.

    richdem writes progress straight to stdout/stderr; both are silenced at the file
    descriptor level during the call, so output of other threads in that moment is lost.
    """
    import richdem  # deferred: its extension module is only needed here

    dem = spatial_dem(dem)
    horizontal = horizontal_part(crs_of(dem))
    if not horizontal.is_projected:
        raise InvalidInputError(
            f"terrain_attributes needs a DEM on a projected grid with metric cells; this one "
            f"is in {horizontal.name!r}. Reproject it first, e.g. "
            "dem.rio.reproject(dem.rio.estimate_utm_crs()) or dem.rio.reproject('EPSG:326xx')."
        )
    heights = validated_heights(dem)
    transform = transform_of(dem)
    unit = horizontal.axis_info[0].unit_conversion_factor or 1.0
    dx = abs(transform.a) * unit
    dy = abs(transform.e) * unit

    # richdem assumes rows run north to south and columns west to east.
    flip_y = transform.e > 0
    flip_x = transform.a < 0
    north_up = heights[:: -1 if flip_y else 1, :: -1 if flip_x else 1]

    valid = np.isfinite(north_up)
    elevation = richdem.rdarray(
        np.where(valid, north_up, VOID).astype(np.float32),
        no_data=float(VOID),
        geotransform=[0.0, dx, 0.0, 0.0, 0.0, -dy],
    )
    with _silenced_output():
        slope = np.array(richdem.TerrainAttribute(elevation, attrib="slope_degrees"))
        aspect = np.array(richdem.TerrainAttribute(elevation, attrib="aspect"))

    complete = np.zeros_like(valid)
    rows, cols = valid.shape
    if rows >= 3 and cols >= 3:
        inner = np.ones((rows - 2, cols - 2), dtype=bool)
        for di in range(3):
            for dj in range(3):
                inner &= valid[di : rows - 2 + di, dj : cols - 2 + dj]
        complete[1:-1, 1:-1] = inner
    slope = np.where(complete, slope, np.nan).astype(np.float32)
    aspect = np.where(complete & (slope > 0.0), np.mod(aspect, 360.0), np.nan)
    aspect = aspect.astype(np.float32)
    index = (slice(None, None, -1 if flip_y else 1), slice(None, None, -1 if flip_x else 1))
    slope, aspect = slope[index], aspect[index]

    coords = {"y": dem["y"].values, "x": dem["x"].values}
    dataset = xr.Dataset(
        {
            "slope": (("y", "x"), slope, {"units": "degree", "long_name": "terrain slope"}),
            "aspect": (
                ("y", "x"),
                aspect,
                {
                    "units": "degree",
                    "long_name": "terrain aspect, clockwise from north (downslope direction)",
                },
            ),
        },
        coords=coords,
        attrs={"method": "Horn (1981) through richdem"},
    )
    dataset = dataset.rio.write_crs(horizontal)
    return dataset.rio.write_transform(transform)


def _radians(degrees: np.ndarray) -> np.ndarray:
    """Degrees to radians, keeping a broadcast view a broadcast view."""
    return np.broadcast_to(np.deg2rad(compact(degrees)), degrees.shape)
