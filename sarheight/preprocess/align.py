"""Sentinel-1, Sentinel-2 and reference rasters on one map grid, and the per-city folder
of monthly images written from real products.

The building-height model takes, per city, monthly Sentinel-1 σ⁰ (VV, VH) and
Sentinel-2 reflectance (the ten bands of :data:`~.sentinel2.S2_BANDS`) and a reference
height, all on one 10 m grid (the folder layout of :mod:`sarheight.data.buildings`).
Products come on their own grids: Sentinel-2 on 10/20/60 m UTM tiles, Sentinel-1 GRD
terrain-corrected onto a UTM or a geographic grid, chips such as Sen1Floods11 in
EPSG:4326. This module

- makes the grid (:func:`target_grid`: 10 m cells in a projected CRS, the UTM zone of the
  footprint's centre by default, covering the footprint or the overlap of several);
- puts any raster onto it with rasterio's warp (:func:`align_to`, the resampling always
  named by the caller: the right one depends on the quantity);
- puts a city's three inputs onto it with the resampling each quantity needs
  (:func:`align_city_inputs`, see :data:`DEFAULT_RESAMPLING`);
- writes a city folder from time series of both sensors (:func:`write_city_folder`:
  monthly median composites, aligned, written as ``s1_YYYYMM.tif``,
  ``s2_YYYYMM.tif`` and ``height.tif``), with the file writers that the synthetic city
  (:func:`sarheight.city.write_city`) shares.

Sentinel-2 files are written as uint16 digital numbers with the offset of processing
baseline 04.00 and later, DN = 10 000 ρ + 1000 (0: no data), whatever the baseline of
the source product: the offset keeps reflectances down to −0.1 (dark water with noise)
and the tags ``ADD_OFFSET`` (−1000) and ``QUANTIFICATION_VALUE`` (10 000) tell
:func:`~.sentinel2.reflectance` how to read them back; the source's own baseline, where
known, is kept as the tag ``SOURCE_PROCESSING_BASELINE``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypedDict, Unpack

import numpy as np
import rasterio.crs
import rasterio.transform
import rasterio.warp
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr

from .._version import __version__
from ..errors import InvalidInputError
from ..io import write_bands, write_geotiff
from .backscatter import from_db, is_db, to_db
from .composite import monthly_composite
from .sentinel2 import RESAMPLINGS, S2_BANDS, reflectance, resample_to, select_bands

__all__ = [
    "DEFAULT_RESAMPLING",
    "DN_OFFSET",
    "QUANTIFICATION",
    "RESAMPLINGS",
    "S1_BANDS",
    "AlignmentOptions",
    "CityInputs",
    "align_city_inputs",
    "align_to",
    "target_grid",
    "write_city_folder",
    "write_height",
    "write_s1_image",
    "write_s2_image",
]

#: The Sentinel-1 polarisations of a city, in the models' order.
S1_BANDS = ("VV", "VH")

#: The resampling of each input of a city (rasterio names), see :func:`align_city_inputs`.
DEFAULT_RESAMPLING = {"s1": "average", "s2": "bilinear", "height": "average"}

#: The offset added to Sentinel-2 reflectance DNs in the files written (baseline >= 04.00).
DN_OFFSET = -1000

#: The quantification value of the Sentinel-2 DNs written.
QUANTIFICATION = 10000

_DN_MAX = 65534  # 65535 is Sentinel-2's saturated value


class AlignmentOptions(TypedDict, total=False):
    """The options of :func:`align_city_inputs` that :func:`write_city_folder` passes on."""

    grid: xr.DataArray | None
    s1_resampling: str
    s2_resampling: str
    height_resampling: str


class CityInputs(NamedTuple):
    """A city's inputs on one grid (:func:`align_city_inputs`).

    Attributes
    ----------
    s1 : σ⁰, dims ``(..., "band", "y", "x")`` with ``band`` = VV, VH; in the units it
        was given in (dB or linear power, ``units`` attribute).
    s2 : reflectance (or whatever was given), dims ``(..., "band", "y", "x")``, the
        bands of :data:`~.sentinel2.S2_BANDS` in that order.
    height : the reference height (m), dims ``("y", "x")``, or None.
    """

    s1: xr.DataArray
    s2: xr.DataArray
    height: xr.DataArray | None


# --------------------------------------------------------------------------------------
# The grid and the warp
# --------------------------------------------------------------------------------------


def _resampling(name: str) -> str:
    if name not in RESAMPLINGS:
        raise InvalidInputError(f"unknown resampling {name!r}: use one of {', '.join(RESAMPLINGS)} (rasterio's "
                                "names of the warp's resamplings)")
    return name


def _require_raster(raster: Any, what: str) -> None:
    if not isinstance(raster, xr.DataArray):
        raise InvalidInputError(f"{what} must be an xarray.DataArray with dims (..., 'y', 'x') and a CRS, "
                                f"got {type(raster).__name__}")
    if raster.dims[-2:] != ("y", "x"):
        raise InvalidInputError(f"{what} has dims {raster.dims}: its last two dims must be ('y', 'x'); "
                                "transpose it (or rename its spatial dims) first")
    if raster.sizes["y"] < 2 or raster.sizes["x"] < 2:
        raise InvalidInputError(f"{what} has {raster.sizes['y']} x {raster.sizes['x']} cells: a grid needs at "
                                "least 2 x 2 to have a cell size")
    if raster.rio.crs is None:
        raise InvalidInputError(f"{what} has no CRS: write it with .rio.write_crs(...) (e.g. 'EPSG:4326' for a "
                                "geographic chip, the UTM zone for a projected product)")


def _footprint(raster: xr.DataArray, crs: Any) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of ``raster`` in ``crs``, the edges densified so that a
    geographic footprint's curved sides are covered."""
    bounds = raster.rio.bounds(recalc=True)
    if raster.rio.crs == crs:
        return bounds
    return rasterio.warp.transform_bounds(raster.rio.crs, crs, *bounds, densify_pts=21)


def _overlap(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, float] | None:
    left, bottom = max(a[0], b[0]), max(a[1], b[1])
    right, top = min(a[2], b[2]), min(a[3], b[3])
    return (left, bottom, right, top) if left < right and bottom < top else None


def target_grid(
    *rasters: xr.DataArray,
    resolution_m: float = 10.0,
    crs: Any = None,
) -> xr.DataArray:
    """A map grid of square cells over the footprint of a raster, or over the overlap of
    several.

    Parameters
    ----------
    *rasters : one or more rasters with a CRS, dims ``(..., "y", "x")``; the grid covers
        the overlap of their footprints (all of a single one's).
    resolution_m : the cell size (m).
    crs : the grid's CRS, projected in metres. Default: the first raster's CRS when it is
        projected in metres (a product on a map grid stays on it), else the UTM zone of
        its centre (rioxarray's ``estimate_utm_crs``), so that a geographic (EPSG:4326)
        chip gets a 10 m UTM grid.

    Returns
    -------
    xarray.DataArray
        The grid: dims ``("y", "x")``, cell-centre coordinates, the CRS and transform
        written, all-NaN float32 values (a read-only view that takes no memory), attrs
        ``resolution_m``. Its edges are the footprint's rounded outwards to whole cells:
        to the first raster's own cell edges where it is in ``crs`` at ``resolution_m``
        (so that a 10 m product's grid is its own grid), else to multiples of
        ``resolution_m`` (as the UTM tiles of Sentinel-2 are).

    Raises
    ------
    InvalidInputError
        no raster, a raster without CRS or not a grid, a non-positive resolution, a CRS
        that is not projected in metres, footprints that do not overlap.
    """
    if not rasters:
        raise InvalidInputError("target_grid needs at least one raster whose footprint the grid covers")
    for index, raster in enumerate(rasters):
        _require_raster(raster, f"raster {index} of target_grid")
    if not (isinstance(resolution_m, (int, float)) and math.isfinite(resolution_m) and resolution_m > 0):
        raise InvalidInputError(f"resolution_m must be a positive number of metres, got {resolution_m!r}")
    first = rasters[0]
    if crs is None:
        own = first.rio.crs
        crs = own if own.is_projected and (own.linear_units or "").lower() in ("metre", "meter", "m") \
            else first.rio.estimate_utm_crs()
    crs = rasterio.crs.CRS.from_user_input(crs)
    if not crs.is_projected or (crs.linear_units or "").lower() not in ("metre", "meter", "m"):
        raise InvalidInputError(f"the grid's CRS {crs} is not projected in metres: give a UTM zone (EPSG:326xx or "
                                "EPSG:327xx) or leave crs out for the UTM zone of the footprint's centre")
    bounds = _footprint(first, crs)
    for index, raster in enumerate(rasters[1:], start=1):
        common = _overlap(bounds, _footprint(raster, crs))
        if common is None:
            raise InvalidInputError(
                f"raster {index} of target_grid does not overlap the others (footprints {bounds} and "
                f"{_footprint(raster, crs)} in {crs}): give images of the same place"
            )
        bounds = common
    step = float(resolution_m)
    x0 = y0 = 0.0
    res_x, res_y = first.rio.resolution(recalc=True)
    if first.rio.crs == crs and math.isclose(abs(res_x), step) and math.isclose(abs(res_y), step):
        x0, _, _, y0 = first.rio.bounds(recalc=True)
    # Round outwards to whole cells, forgiving the float noise of edges already on cells.
    tolerance = 1e-6
    left = x0 + math.floor((bounds[0] - x0) / step + tolerance) * step
    right = x0 + math.ceil((bounds[2] - x0) / step - tolerance) * step
    bottom = y0 + math.floor((bounds[1] - y0) / step + tolerance) * step
    top = y0 + math.ceil((bounds[3] - y0) / step - tolerance) * step
    cols, rows = round((right - left) / step), round((top - bottom) / step)
    coords = {"y": top - step * (np.arange(rows) + 0.5), "x": left + step * (np.arange(cols) + 0.5)}
    grid = xr.DataArray(np.broadcast_to(np.float32(np.nan), (rows, cols)), dims=("y", "x"), coords=coords,
                        name="grid", attrs={"resolution_m": step})
    transform = rasterio.transform.from_origin(left, top, step, step)
    return grid.rio.write_crs(crs).rio.write_transform(transform)


def _mask_nodata(raster: xr.DataArray) -> xr.DataArray:
    """``raster`` with its declared nodata value (``rio.nodata``, e.g. -9999) as NaN."""
    nodata = raster.rio.nodata
    if nodata is None or np.isnan(nodata):
        return raster
    return raster.where(raster != nodata).rio.write_nodata(np.nan)


def _check_overlap(raster: xr.DataArray, grid: xr.DataArray, what: str) -> None:
    if _overlap(_footprint(raster, grid.rio.crs), grid.rio.bounds(recalc=True)) is None:
        raise InvalidInputError(
            f"{what} does not overlap the grid (its footprint {raster.rio.bounds(recalc=True)} in "
            f"{raster.rio.crs}, the grid {grid.rio.bounds(recalc=True)} in {grid.rio.crs}): give images of the "
            "same place, or a grid over them (target_grid)"
        )


def align_to(image: xr.DataArray, grid: xr.DataArray, *, resampling: str) -> xr.DataArray:
    """``image`` on the cells of ``grid``, warped with rasterio.

    Parameters
    ----------
    image : values with a CRS, dims ``(..., "y", "x")`` (any leading dims: time, band);
        NaN or the declared nodata (``rio.nodata``) where there is no value, which the
        resampling leaves out.
    grid : the target grid, e.g. :func:`target_grid` or any raster on it.
    resampling : a rasterio resampling name, always given: "average" (area-weighted
        mean of the source cells under each target cell: for coarsening a quantity whose
        mean matters), "bilinear", "cubic", "nearest" (classes, codes), "mode"...

    Returns
    -------
    xarray.DataArray
        On ``grid``'s cells and CRS, float (float64 kept, else float32), NaN where the
        image has no value; the leading dims and their coordinates, the name and attrs
        kept, attrs plus ``resampling``. Cells at the image's edge that bilinear or cubic
        cannot fill take the nearest value (:func:`~.sentinel2.resample_to`).

    Raises
    ------
    InvalidInputError
        an unknown resampling (the error lists rasterio's names), an image or grid
        without CRS or not a grid, an image that does not overlap the grid.
    """
    _resampling(resampling)
    _require_raster(image, "the image")
    _require_raster(grid, "the grid")
    _check_overlap(image, grid, "the image")
    image = _mask_nodata(image)
    lead = image.dims[:-2]
    if len(lead) <= 1:
        return resample_to(image, grid, resampling=resampling)
    # rasterio warps (layer, y, x): the leading dims go through as one, and come back.
    shape = tuple(image.sizes[d] for d in lead)
    flat = xr.DataArray(image.values.reshape(-1, image.sizes["y"], image.sizes["x"]), dims=("layer", "y", "x"),
                        coords={"y": image["y"].values, "x": image["x"].values}).rio.write_crs(image.rio.crs)
    warped = resample_to(flat, grid, resampling=resampling)
    coords = {name: coord for name, coord in image.coords.items() if set(coord.dims) <= set(lead)}
    out = xr.DataArray(warped.values.reshape(*shape, grid.sizes["y"], grid.sizes["x"]), dims=image.dims,
                       coords={**coords, "y": grid["y"].values, "x": grid["x"].values}, name=image.name,
                       attrs={**image.attrs, "resampling": resampling})
    return out.rio.write_crs(grid.rio.crs).rio.write_transform(grid.rio.transform(recalc=True))


# --------------------------------------------------------------------------------------
# A city's inputs
# --------------------------------------------------------------------------------------


def _sentinel1(s1: xr.DataArray) -> xr.DataArray:
    """``s1`` with a ``band`` dim of VV, VH in that order (a ``polarisation`` dim is taken
    as the band dim)."""
    _require_raster(s1, "the Sentinel-1 image")
    if "band" not in s1.dims and "polarisation" in s1.dims:
        s1 = s1.rename(polarisation="band")
    names = [str(b).strip().upper() for b in s1["band"].values] if "band" in s1.coords else []
    if "band" not in s1.dims or not set(S1_BANDS) <= set(names):
        raise InvalidInputError(
            f"the Sentinel-1 image needs a 'band' dim labelled {list(S1_BANDS)}, it has dims {s1.dims} and bands "
            f"{names or 'without names'}: give σ⁰ of both polarisations, e.g. image.assign_coords(band=['VV', 'VH'])"
        )
    return s1.assign_coords(band=names).sel(band=list(S1_BANDS))


def _sentinel2(s2: xr.DataArray) -> xr.DataArray:
    _require_raster(s2, "the Sentinel-2 image")
    try:
        return select_bands(s2, S2_BANDS)
    except InvalidInputError as exc:
        raise InvalidInputError(f"the Sentinel-2 image: {exc}") from None


def _height(height: xr.DataArray) -> xr.DataArray:
    _require_raster(height, "the reference height")
    if height.ndim == 3 and height.dims[0] == "band" and height.sizes["band"] == 1:
        height = height.squeeze("band", drop=True)
    if height.dims != ("y", "x"):
        raise InvalidInputError(f"the reference height has dims {height.dims}: give one (y, x) raster of metres")
    return height


def align_city_inputs(
    s1: xr.DataArray,
    s2: xr.DataArray,
    height: xr.DataArray | None = None,
    *,
    grid: xr.DataArray | None = None,
    s1_resampling: str = DEFAULT_RESAMPLING["s1"],
    s2_resampling: str = DEFAULT_RESAMPLING["s2"],
    height_resampling: str = DEFAULT_RESAMPLING["height"],
) -> CityInputs:
    """A city's Sentinel-1, Sentinel-2 and reference height on one grid.

    Parameters
    ----------
    s1 : σ⁰ with dims ``(..., "band", "y", "x")`` (or ``"polarisation"``), bands VV and
        VH by name (others are dropped), a CRS; dB when its ``units`` attribute says so,
        else linear power (m² m⁻²).
    s2 : reflectance (or DNs), dims ``(..., "band", "y", "x")`` with the ten bands of
        :data:`~.sentinel2.S2_BANDS` by name in any order and spelling (others dropped),
        a CRS.
    height : the reference height (m), ``("y", "x")``, optional; its declared nodata
        (``rio.nodata``) is left out of the resampling.
    grid : the target grid; default :func:`target_grid` over the overlap of the S1 and S2
        footprints at 10 m (the CRS of S2 where projected, else the UTM zone).
    s1_resampling : default "average", done in linear power: σ⁰ is a power, and the
        backscatter of an area is the mean of the powers of its parts. Averaging dB
        values takes their geometric mean instead, biased low by speckle (by 2.5 dB for
        single-look exponential speckle) and by any contrast within a cell; a dB input is
        converted to linear power, resampled, and converted back.
    s2_resampling : default "bilinear" (reflectance is linear in the radiance; the
        20 m bands onto 10 m, as :func:`~.sentinel2.stack_bands` does).
    height_resampling : default "average": coarsening, the area-weighted mean height of
        the reference cells under a grid cell (the mean height a 10 m cell sees, 0 counted
        for ground between buildings); refining, each grid cell takes the height of the
        reference cell it lies in, so that building edges are not smoothed (bilinear would
        invent slopes at walls).

    Returns
    -------
    CityInputs
        ``s1`` (VV, VH, the input's units), ``s2`` (the ten bands in order), ``height``
        (or None), all on ``grid``, NaN where a raster has no value.

    Raises
    ------
    InvalidInputError
        before any resampling: a raster without CRS or not a grid, S1 without VV and VH
        bands, S2 without the ten bands by name, an unknown resampling, a raster that does
        not overlap the grid (S1 and S2 that do not overlap each other).
    """
    methods = {"s1": _resampling(s1_resampling), "s2": _resampling(s2_resampling),
               "height": _resampling(height_resampling)}
    s1 = _sentinel1(s1)
    s2 = _sentinel2(s2)
    if height is not None:
        height = _height(height)
    if grid is None:
        try:
            grid = target_grid(s2, s1)
        except InvalidInputError as exc:
            raise InvalidInputError(f"the Sentinel-1 and Sentinel-2 images do not overlap: {exc}") from None
    else:
        _require_raster(grid, "the grid")
    for raster, what in ((s1, "the Sentinel-1 image"), (s2, "the Sentinel-2 image"), (height, "the reference height")):
        if raster is not None:
            _check_overlap(raster, grid, what)
    # σ⁰ is resampled in linear power (see s1_resampling above).
    in_db = is_db(s1)
    s1_out = align_to(from_db(s1) if in_db else s1, grid, resampling=methods["s1"])
    s1_out = to_db(s1_out) if in_db else s1_out
    s2_out = align_to(s2, grid, resampling=methods["s2"])
    height_out = align_to(height, grid, resampling=methods["height"]) if height is not None else None
    return CityInputs(s1=s1_out, s2=s2_out, height=height_out)


# --------------------------------------------------------------------------------------
# Writing a city folder
# --------------------------------------------------------------------------------------


def write_s1_image(sigma0: xr.DataArray, path: str | os.PathLike[str], *,
                   tags: Mapping[str, Any] | None = None) -> Path:
    """Write one month's Sentinel-1 σ⁰ as a city folder holds it (``s1_YYYYMM.tif``).

    Parameters
    ----------
    sigma0 : dims ``("band", "y", "x")`` (or ``"polarisation"``), bands VV and VH by
        name, a CRS; dB or linear power by its ``units`` attribute.
    path : the file, written atomically.
    tags : extra dataset tags.

    Returns
    -------
    The path: two float32 bands of σ⁰ in dB described "VV", "VH", nodata NaN, tags
    ``units`` "dB", ``quantity`` "sigma0" and the sarheight version.
    """
    sigma0 = _sentinel1(sigma0)
    db = sigma0 if is_db(sigma0) else to_db(sigma0)
    bands = xr.Dataset({pol: db.sel(band=pol, drop=True) for pol in S1_BANDS}).rio.write_crs(sigma0.rio.crs)
    bands.attrs = {**(tags or {}), "units": "dB", "quantity": "sigma0", "sarheight_version": __version__}
    return write_geotiff(bands, path, variables=list(S1_BANDS))


def write_s2_image(image: xr.DataArray, path: str | os.PathLike[str], *,
                   tags: Mapping[str, Any] | None = None) -> Path:
    """Write one month's Sentinel-2 reflectance as a city folder holds it (``s2_YYYYMM.tif``).

    Parameters
    ----------
    image : reflectance (1), dims ``("band", "y", "x")`` with the ten bands of
        :data:`~.sentinel2.S2_BANDS` by name, a CRS; NaN where there is none.
    path : the file, written atomically.
    tags : extra dataset tags (e.g. ``PROCESSING_BASELINE`` of a product whose DNs carry
        the same offset, or ``PRODUCT_LEVEL``).

    Returns
    -------
    The path: ten uint16 bands of DN = 10 000 ρ + 1000 (rounded; clipped to 1..65534 so
    that a valid value is never taken for no data or saturation), 0 where ρ is NaN
    (declared nodata), described B2 ... B12, tags ``ADD_OFFSET`` (−1000) and
    ``QUANTIFICATION_VALUE`` (10 000): what :func:`~.sentinel2.reflectance` reads back
    to within 0.5e-4.
    """
    image = _sentinel2(image)
    values = np.asarray(image.values, dtype=np.float64)
    scaled = np.round(np.nan_to_num(values, nan=0.0) * QUANTIFICATION - DN_OFFSET)
    dn = np.clip(scaled, 1, _DN_MAX).astype(np.uint16)
    dn[~np.isfinite(values)] = 0
    all_tags = {**(tags or {}), "ADD_OFFSET": DN_OFFSET, "QUANTIFICATION_VALUE": QUANTIFICATION,
                "sarheight_version": __version__}
    return write_bands(dn, path, crs=image.rio.crs, transform=image.rio.transform(recalc=True),
                       descriptions=list(S2_BANDS), tags=all_tags, nodata=0)


def write_height(height: xr.DataArray, path: str | os.PathLike[str]) -> Path:
    """Write a reference height as a city folder holds it (``height.tif``): one float32
    band (m) described "height", NaN where there is none, declared as nodata."""
    height = _mask_nodata(_height(height))
    out = height.astype(np.float32).rename("height").assign_attrs(units="m").rio.write_crs(height.rio.crs)
    return write_geotiff(out.drop_vars([c for c in out.coords if c not in ("y", "x", "spatial_ref")]), path)


def _month_stamps(stack: xr.DataArray, what: str) -> list[str]:
    if "time" not in stack.dims or "time" not in stack.coords or not np.issubdtype(stack["time"].dtype,
                                                                                    np.datetime64):
        raise InvalidInputError(
            f"the {what} stack needs its acquisition dates as a 'time' dim of datetime64 labels, it has dims "
            f"{stack.dims}: stack the images with xarray.concat(images, dim='time') and assign the dates"
        )
    return [str(m).replace("-", "") for m in stack["time"].values.astype("datetime64[M]")]


def _as_reflectance(s2: xr.DataArray) -> xr.DataArray:
    """Reflectance of an S2 stack: as it is when its ``units`` say "1", else read as DNs."""
    if str(s2.attrs.get("units", "")).strip() == "1":
        return s2
    if np.issubdtype(s2.dtype, np.floating) and s2.size and np.nanmax(s2.values, initial=0.0) <= 2.0:
        raise InvalidInputError(
            "the Sentinel-2 stack holds values up to 2 without units='1': it looks like reflectance, but DNs are "
            "assumed where the units do not say; set s2.attrs['units'] = '1' for reflectance"
        )
    return reflectance(s2)


def write_city_folder(
    folder: str | os.PathLike[str],
    *,
    s1: xr.DataArray,
    s2: xr.DataArray,
    height: xr.DataArray | None = None,
    **alignment: Unpack[AlignmentOptions],
) -> list[Path]:
    """Write a city folder (the layout :func:`sarheight.data.buildings.read_city` reads)
    from time series of Sentinel-1 and Sentinel-2 images.

    Parameters
    ----------
    folder : the city's folder (created where missing); files already there of the same
        names are replaced.
    s1 : σ⁰, dims ``("time", "band", "y", "x")``, bands VV and VH by name, ``time`` the
        acquisition dates (datetime64), a CRS; dB when its ``units`` attribute says so,
        else linear power.
    s2 : dims ``("time", "band", "y", "x")``, the ten bands of
        :data:`~.sentinel2.S2_BANDS` by name, dates and a CRS: reflectance when its
        ``units`` attribute is "1" (as from :func:`~.sentinel2.reflectance`), else DNs,
        turned into reflectance with the offset their attrs give (see
        :func:`~.sentinel2.reflectance`: a processing baseline or offset must be there).
        NaN (or DN 0) where cloudy or missing: mask clouds first
        (:func:`~.sentinel2.mask_clouds`), the monthly median does the rest.
    height : the reference height (m), ``("y", "x")``, optional (no ``height.tif``
        without it: read the folder with ``needs_height=False``).
    **alignment : ``grid``, ``s1_resampling``, ``s2_resampling``,
        ``height_resampling`` (:class:`AlignmentOptions`), as in
        :func:`align_city_inputs` (default grid: 10 m over the overlap of S1 and S2).

    Returns
    -------
    list of Path
        ``s1_YYYYMM.tif`` and ``s2_YYYYMM.tif`` of each month, in order, then
        ``height.tif``; each written atomically (:func:`write_s1_image`,
        :func:`write_s2_image`, :func:`write_height`).

    Each month's images are the per-pixel median of that month's acquisitions
    (:func:`~.composite.monthly_composite`; σ⁰ in linear power), computed on each
    sensor's own grid and then aligned. A month with images of only one sensor is left
    out with a warning, as :func:`sarheight.data.buildings.city_months` skips such a
    month when reading: its file would never be read.

    Raises
    ------
    InvalidInputError
        before anything is written: no month with images of both sensors, stacks
        without dates, and every error of :func:`align_city_inputs`.
    """
    unknown = sorted(set(alignment) - set(AlignmentOptions.__annotations__))
    if unknown:
        raise InvalidInputError(f"unknown options {unknown}: write_city_folder takes "
                                f"{sorted(AlignmentOptions.__annotations__)} besides s1, s2 and height")
    for key, name in alignment.items():
        if key.endswith("_resampling"):
            _resampling(name)
    s1 = _sentinel1(s1)
    s2 = _sentinel2(s2)
    months = {"s1": _month_stamps(s1, "Sentinel-1"), "s2": _month_stamps(s2, "Sentinel-2")}
    for sensor, other in (("s1", "s2"), ("s2", "s1")):
        alone = sorted(set(months[sensor]) - set(months[other]))
        if alone:
            warnings.warn(f"months {alone} have {sensor} images but no {other} images: left out of the city folder "
                          "(a month is a sample only with both)", stacklevel=2)
    common = sorted(set(months["s1"]) & set(months["s2"]))
    if not common:
        raise InvalidInputError(
            f"no month has images of both sensors (Sentinel-1 months {sorted(set(months['s1']))}, Sentinel-2 months "
            f"{sorted(set(months['s2']))}): give images of the same months"
        )
    s1 = s1.isel(time=np.isin(months["s1"], common))
    s2 = s2.isel(time=np.isin(months["s2"], common))
    source_baseline = s2.attrs.get("PROCESSING_BASELINE")
    aligned = align_city_inputs(monthly_composite(s1), monthly_composite(_as_reflectance(s2)), height, **alignment)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tags = {"SOURCE_PROCESSING_BASELINE": source_baseline} if source_baseline is not None else {}
    paths = []
    for t, month in enumerate(common):
        paths.append(write_s1_image(aligned.s1.isel(time=t, drop=True), folder / f"s1_{month}.tif"))
        paths.append(write_s2_image(aligned.s2.isel(time=t, drop=True), folder / f"s2_{month}.tif", tags=tags))
    if aligned.height is not None:
        paths.append(write_height(aligned.height, folder / "height.tif"))
    return paths
