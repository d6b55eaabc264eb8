"""The CRS and the grid of a DEM: a CRS from what a user gives, its horizontal part and the
vertical datum it declares, the transform (never rotated) and the cell centres checked, the
(y, x) dims.
"""

from __future__ import annotations

from typing import Any

import affine
import numpy as np
import pyproj
import xarray as xr

from sarheight.errors import (
    InvalidInputError,
)
from sarheight.raster import cell_centres, check_not_rotated, crs_from_user_input, horizontal_part


def to_yx(dem: xr.DataArray) -> xr.DataArray:
    if "band" in dem.dims:
        if dem.sizes["band"] != 1:
            raise InvalidInputError(
                f"The DEM has {dem.sizes['band']} bands; a DEM has one. Select the band with "
                "the heights: dem.isel(band=0), or for a file gdal_translate -b 1 IN.tif DEM.tif."
            )
        dem = dem.squeeze("band", drop=True)
    if dem.ndim != 2:
        raise InvalidInputError(
            f"A DEM is a 2-D raster of heights; got dims {dem.dims} with shape {dem.shape}. "
            "Select one layer first."
        )
    if dem.dims != ("y", "x"):
        try:
            x_dim, y_dim = dem.rio.x_dim, dem.rio.y_dim
        except Exception as error:  # rioxarray raises its own MissingSpatialDimensionError
            raise InvalidInputError(
                f"The DEM's dims {dem.dims} are not map dims. Name them ('y', 'x') or use "
                "dem.rio.set_spatial_dims(x_dim=..., y_dim=...)."
            ) from error
        dem = dem.rename({x_dim: "x", y_dim: "y"}).transpose("y", "x")
    if "x" not in dem.coords or "y" not in dem.coords:
        y, x = cell_centres(transform_of(dem), dem.shape)
        dem = dem.assign_coords(x=x, y=y)
    return dem


def crs_of(dem: xr.DataArray) -> pyproj.CRS:
    crs = dem.rio.crs
    if crs is None:
        raise InvalidInputError(
            "The DEM has no CRS. Assign the one its coordinates are in, e.g. "
            "dem = dem.rio.write_crs('EPSG:4326') (or the DEM's UTM zone, 'EPSG:326xx')."
        )
    return crs_from_user_input(crs)


def vertical_datum_of_crs(crs: pyproj.CRS) -> str | None:
    """'egm96', 'egm2008', 'ellipsoid', None when the CRS says nothing about heights, or
    the name of a vertical datum sarheight does not convert."""
    if crs.is_compound:
        for sub in crs.sub_crs_list:
            if sub.is_vertical:
                name = sub.datum.name if sub.datum is not None else sub.name
                key = name.upper().replace(" ", "")
                if "EGM2008" in key or "EGM08" in key:
                    return "egm2008"
                if "EGM96" in key:
                    return "egm96"
                return name
        return None
    crs_3d = crs.source_crs if crs.is_bound and crs.source_crs is not None else crs
    if len(crs_3d.axis_info) == 3 and (crs_3d.is_geographic or crs_3d.is_projected):
        return "ellipsoid"
    return None


def transform_of(dem: xr.DataArray) -> affine.Affine:
    transform = dem.rio.transform()
    check_not_rotated(transform)
    return transform


def check_cell_centres(dem: xr.DataArray, transform: affine.Affine | None = None) -> None:
    """The x/y coordinates must be the cell centres of rioxarray's transform (``transform``
    when the caller has it already)."""
    if transform is None:
        transform = transform_of(dem)
    y, x = cell_centres(transform, dem.shape)
    tolerance_x = 1e-3 * abs(transform.a)
    tolerance_y = 1e-3 * abs(transform.e)
    x_coords = np.asarray(dem["x"].values, dtype=np.float64)
    y_coords = np.asarray(dem["y"].values, dtype=np.float64)
    if (
        x_coords.shape != x.shape
        or y_coords.shape != y.shape
        or np.abs(x_coords - x).max() > tolerance_x
        or np.abs(y_coords - y).max() > tolerance_y
    ):
        raise InvalidInputError(
            "The DEM's x/y coordinates are not the cell centres of its transform "
            f"{tuple(transform)[:6]} (unevenly spaced, or a stale transform). Give evenly "
            "spaced cell-centre coordinates, or rewrite the transform with "
            "dem.rio.write_transform(dem.rio.transform(recalc=True))."
        )


def horizontal_crs(dem: xr.DataArray) -> pyproj.CRS:
    """The 2-D horizontal CRS of a DEM (the horizontal part of a compound or 3-D CRS).

    Raises InvalidInputError for a DEM without a CRS or with a vertical-only one.
    """
    return horizontal_part(crs_of(dem))


def split_crs(crs: Any) -> tuple[pyproj.CRS, str | None]:
    """The horizontal part of a CRS and the vertical datum its heights are on.

    Parameters
    ----------
    crs : anything pyproj reads as a CRS
        E.g. "EPSG:4326", "EPSG:9707" (WGS 84 + EGM96 height), "EPSG:4979" (3-D WGS 84), a
        WKT string or a :class:`pyproj.CRS`.

    Returns
    -------
    horizontal : pyproj.CRS
        The 2-D horizontal CRS (the horizontal part of a compound CRS, a 3-D CRS made 2-D).
    vertical_datum : str or None
        "egm96" or "egm2008" for a compound CRS with that geoid height, "ellipsoid" for a 3-D
        geographic or projected CRS, None where the CRS says nothing about heights, or the
        name of a vertical datum sarheight does not convert (e.g. "North American Vertical
        Datum 1988"), as :func:`open_dem` reads a DEM's CRS.

    Raises
    ------
    InvalidInputError
        Not a CRS pyproj understands, or a vertical-only CRS.
    """
    parsed = crs_from_user_input(crs)
    return horizontal_part(parsed), vertical_datum_of_crs(parsed)


def is_wgs84_degrees(crs: pyproj.CRS) -> bool:
    """Whether ``crs`` is geographic WGS84 in degrees, longitude/latitude: cell
    coordinates that need no transformation to geodetic ones."""
    if crs.is_bound:
        return False
    if not crs.is_geographic or crs.datum is None:
        return False
    if not crs.datum.name.startswith("World Geodetic System 1984"):
        return False
    if crs.prime_meridian is not None and crs.prime_meridian.longitude != 0.0:
        return False
    return all(axis.unit_name == "degree" for axis in crs.axis_info)


def spatial_dem(dem: Any) -> xr.DataArray:
    """A DataArray with dims ("y", "x"), checked coordinates and a CRS (values unchecked)."""
    if not isinstance(dem, xr.DataArray):
        raise InvalidInputError(
            f"Expected a DEM as an xarray.DataArray (from sarheight.dem.open_dem), not "
            f"{type(dem).__name__}."
        )
    dem = to_yx(dem)
    crs_of(dem)
    check_cell_centres(dem)
    return dem
