"""Backward geocoding: the zero-Doppler time, slant range and image position of every
cell of a DEM (:func:`backward_geocode`), and its variables as GeoTIFF bands."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ..compute import Compute, compute_for, geocode
from ..errors import GeometryError, InvalidInputError
from .radar import RadarGeometry


def geocode_arrays(
    lon_rad: np.ndarray,
    lat_rad: np.ndarray,
    height: np.ndarray,
    geometry: RadarGeometry,
    *,
    compute: Compute | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backward geocoding of plain arrays (no validation); the engine of :func:`backward_geocode`.

    ``lon_rad``, ``lat_rad`` are longitude and latitude (rad) of the shape of ``height``
    (m above the ellipsoid); broadcast views of 1-D axes are the fast case
    (:func:`sarheight.compute.geocode`, which runs it on ``compute``: the numba kernels by
    default). Returns azimuth time (datetime64[ns]), slant range (m), line, sample
    (float64) and the ellipsoid incidence angle (float32, degrees), each of the shape of
    ``height``.
    """
    out = geocode(lon_rad, lat_rad, height, geometry.geocoding_geometry(), compute=compute)
    return out.azimuth_time_ns.view("datetime64[ns]"), out.slant_range, out.line, out.sample, out.incidence_angle


def backward_geocode(dem: Any, geometry: RadarGeometry, *, check_overlap: bool = True,
                     device: str | None = None) -> xr.Dataset:
    """Zero-Doppler backward geocoding of every DEM cell.

    Parameters
    ----------
    dem : a DEM as :func:`sarheight.dem.open_dem` takes it (path, DataArray with CRS, or
        ``(array, transform, crs)``); heights must be, or are converted to, WGS84
        ellipsoidal heights (m).
    geometry : the acquisition geometry.
    check_overlap : raise GeometryError when no DEM cell falls inside the image.
    device : where it runs: None or ``"cpu"`` (the numba kernels on the CPU's threads),
        ``"cuda"`` or ``"cuda:N"`` (torch on that GPU, float64); refused in one line where
        the machine has none (:func:`sarheight.compute.compute_for`).

    Returns
    -------
    xr.Dataset on the DEM grid (y, x) with the DEM's CRS:
        ``azimuth_time`` (datetime64[ns]), ``slant_range`` (m, float64), ``line`` and
        ``sample`` (float64 fractional indices into the product grid, NaN outside the
        image), ``incidence_angle`` (ellipsoid incidence angle, degrees, float32).
    """
    from ..dem import geodetic_coordinates, open_dem

    if not isinstance(geometry, RadarGeometry):
        raise InvalidInputError(
            f"geometry must be a RadarGeometry (from_sentinel1 or synthetic), got {type(geometry).__name__}"
        )
    compute = compute_for(device)
    # The heights are only read here: no copy of a DEM that is already ellipsoidal.
    dem = open_dem(dem, copy=False)
    # Broadcast views for a geographic DEM (the kernel then takes one sine/cosine per
    # row/column), full grids otherwise.
    lon, lat = geodetic_coordinates(dem, radians=True)
    height = np.ascontiguousarray(dem.values)
    if check_overlap:
        _require_overlap(lon, lat, height, geometry)
    az, slant_range, line, sample, incidence = geocode_arrays(lon, lat, height, geometry, compute=compute)
    dims = ("y", "x")
    # The DEM's CRS coordinate (WKT, CF attributes, GeoTransform of this very grid) comes
    # along: rio.write_crs would rebuild it from the CRS at some milliseconds' cost.
    coords = {name: dem.coords[name].variable for name in (*dims, "spatial_ref") if name in dem.coords}
    ds = xr.Dataset(
        {
            "azimuth_time": (dims, az, {"long_name": "zero-Doppler azimuth time"}),
            "slant_range": (dims, slant_range, {"units": "m", "long_name": "slant range"}),
            "line": (dims, line, {"long_name": "fractional line index into the product grid"}),
            "sample": (dims, sample, {"long_name": "fractional sample index into the product grid"}),
            "incidence_angle": (
                dims, incidence, {"units": "degree", "long_name": "incidence angle on the ellipsoid"}
            ),
        },
        coords=coords,
        attrs={**geometry.to_attrs(), "vertical_datum": dem.attrs.get("vertical_datum", "ellipsoid")},
    )
    if "spatial_ref" in coords:
        for variable in ds.data_vars.values():
            variable.encoding["grid_mapping"] = "spatial_ref"
        ds.encoding["grid_mapping"] = "spatial_ref"
    elif dem.rio.crs is not None:
        ds.rio.write_crs(dem.rio.crs, inplace=True)
    return ds


def geocoding_products(geocoded: xr.Dataset) -> xr.Dataset:
    """The variables of :func:`backward_geocode` as GeoTIFF-ready float bands: slant range,
    incidence angle, line, sample and ``azimuth_time_s``, the zero-Doppler time in
    seconds since the earliest (GeoTIFF stores no times)."""
    first = geocoded["azimuth_time"].min().values
    seconds = (geocoded["azimuth_time"] - first) / np.timedelta64(1, "s")
    out = geocoded[["slant_range", "incidence_angle", "line", "sample"]].copy()
    out["azimuth_time_s"] = seconds.astype(np.float64).assign_attrs(
        units="s", long_name=f"zero-Doppler time since {np.datetime_as_string(first)}"
    )
    return out


def _require_overlap(lon: np.ndarray, lat: np.ndarray, height: np.ndarray, geometry: RadarGeometry) -> None:
    """Raise GeometryError, before the full run, when the DEM cannot reach the image.

    About 64 x 64 cells (the border included) are geocoded without clipping; the bounding
    box of their (line, sample) positions, widened by the largest step between sampled
    neighbours, must meet the image. The test is conservative: a DEM it passes may still
    have no cell inside, but a DEM it refuses has none.
    """
    rows, cols = height.shape
    rr = np.unique(np.r_[np.arange(0, rows, max(1, rows // 64)), rows - 1])
    cc = np.unique(np.r_[np.arange(0, cols, max(1, cols // 64)), cols - 1])
    sub = np.ix_(rr, cc)
    h = np.asarray(height[sub], dtype=np.float64)
    if not np.isfinite(h).any():
        return  # the sample hit only voids: nothing to judge by
    lon_sampled, lat_sampled = (np.ascontiguousarray(values[sub], dtype=np.float64) for values in (lon, lat))
    sampled = geocode(lon_sampled, lat_sampled, h, geometry.geocoding_geometry(), clip=False)
    if not np.isfinite(sampled.slant_range).any():
        raise GeometryError(
            f"no DEM cell has a zero-Doppler time within the orbit span ({geometry.orbit.start_time} .. "
            f"{geometry.orbit.stop_time}): DEM and product do not overlap; check the DEM's CRS and "
            "extent against the product footprint"
        )
    line, sample = sampled.line, sampled.sample
    if not np.isfinite(line).any():
        raise GeometryError(
            f"the DEM lies on the side the radar does not look at (it looks {geometry.look_side}): check the "
            "product's look side and the DEM's CRS and extent against the product footprint"
        )
    steps = [np.abs(np.diff(v, axis=ax)) for v in (line, sample) for ax in (0, 1)]
    margin = max((float(np.nanmax(s)) for s in steps if np.isfinite(s).any()), default=0.0)
    lines, samples = geometry.grid.shape
    if (
        np.nanmax(line) + margin < -0.5
        or np.nanmin(line) - margin > lines - 0.5
        or np.nanmax(sample) + margin < -0.5
        or np.nanmin(sample) - margin > samples - 0.5
    ):
        raise GeometryError(
            f"the DEM lies entirely outside the radar image ({lines} x {samples} pixels, "
            f"{geometry.grid.first_line_time} .. {geometry.grid.last_line_time}); it maps to lines "
            f"{np.nanmin(line):.0f} .. {np.nanmax(line):.0f} and samples {np.nanmin(sample):.0f} .. "
            f"{np.nanmax(sample):.0f}: check that DEM and product cover the same area, the DEM's "
            "CRS, and for an SLC the sub-swath"
        )
