"""Digital elevation models: open, validate, vertical datum, coordinates, terrain attributes.

The radar geometry needs heights above the WGS84 ellipsoid. DEMs are usually distributed
with heights above a geoid (EGM96 for SRTM and the Copernicus DEM, EGM2008 for others); the
difference, the geoid undulation N, is 30-100 m over most of the Earth, and ignoring it is the
most common cause of badly placed layover and shadow. :func:`open_dem` therefore converts
geoid heights H to ellipsoidal heights h = H + N, with N from a grid the user gives or from
PROJ's grids, and refuses to guess when neither is available.

Public functions
----------------
open_dem
    Read or wrap a DEM, validate it and bring it to WGS84 ellipsoidal heights.
geodetic_coordinates
    WGS84 longitude and latitude (degrees or radians) of every cell centre.
geodetic_at_rows
    The same for a sheared strip of cells (the block-wise masks).
horizontal_crs, is_wgs84_degrees
    A DEM's horizontal CRS, and whether it needs no transformation to geodetic coordinates.
split_crs
    The horizontal part of any CRS and the vertical datum it declares.
geoid_undulation
    The geoid undulation (m) at given longitudes and latitudes, by open_dem's rules.
ecef_coordinates
    Earth-centred Earth-fixed coordinates (m) of every cell.
terrain_attributes
    Slope and aspect (degrees) through richdem.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import affine
import numpy as np
import pyproj
import rasterio
import rasterio.crs
import rasterio.errors
import rasterio.fill
import rasterio.windows
import rioxarray
import xarray as xr
from pyproj.transformer import TransformerGroup

from sarheight._threads import run_blocks
from sarheight.errors import (
    DatumError,
    InvalidInputError,
    MissingInputError,
    PlausibilityWarning,
    VerticalDatumWarning,
    user_stacklevel,
)
from sarheight.io import check_memory, check_raster_path, open_raster, read_band
from sarheight.kernels import WGS84_A, WGS84_E2, geodetic_to_ecef_grid
from sarheight.kernels.geodesy import interpolate_rows

__all__ = [
    "PACKAGED_EGM96",
    "VERTICAL_DATUMS",
    "ecef_coordinates",
    "geodetic_at_rows",
    "geodetic_coordinates",
    "geoid_source",
    "geoid_undulation",
    "horizontal_crs",
    "is_wgs84_degrees",
    "open_dem",
    "split_crs",
    "terrain_attributes",
]

logger = logging.getLogger(__name__)

#: What a DEM can be given as: a raster path, a DataArray with a CRS, or
#: ``(array, affine.Affine transform, crs)``.
DemSource = str | os.PathLike | xr.DataArray | tuple

#: Vertical datums :func:`open_dem` understands (the ``vertical_datum`` keyword).
VERTICAL_DATUMS = ("egm96", "egm2008", "ellipsoid")

_UNSPECIFIED = "unspecified (taken as ellipsoid)"

# EPSG codes of the geoid-height vertical CRSs, for building "EPSG:4326+code" for PROJ.
_GEOID_VERTICAL_EPSG = {"egm96": 5773, "egm2008": 3855}
_PROJ_GRID_FILES = {"egm96": "us_nga_egm96_15.tif", "egm2008": "us_nga_egm08_25.tif"}
_GEOID_LABEL = {"egm96": "EGM96", "egm2008": "EGM2008"}

#: The EGM96 geoid grid that ships with sarheight (15', the whole Earth; sarheight/geoids/
#: README.md says where it comes from): geoid heights convert offline, with no PROJ grid.
PACKAGED_EGM96 = Path(__file__).resolve().parent / "geoids" / "egm96_15.tif"

# Heights outside this range (m) are not terrain: most often an undeclared nodata value
# (-32768, -9999) or heights in feet.
_HEIGHT_RANGE_M = (-12000.0, 9000.0)

# richdem and fillnodata want a finite no-data value; this one cannot be a valid height.
_VOID = np.float32(-3.0e38)
_RICHDEM_LOCK = threading.Lock()


# --------------------------------------------------------------------------------------
# open_dem
# --------------------------------------------------------------------------------------


def open_dem(
    source: DemSource,
    *,
    vertical_datum: str | None = None,
    geoid_grid: str | os.PathLike | None = None,
    fill_voids: bool = False,
    copy: bool = True,
) -> xr.DataArray:
    """Open a DEM, validate it and return WGS84 ellipsoidal heights.

    Parameters
    ----------
    source : str, os.PathLike, xarray.DataArray or tuple
        A path to any raster rasterio reads (GeoTIFF, VRT, ...); a DataArray with a CRS
        written through rioxarray (``dem.rio.write_crs(...)``); or a tuple
        ``(array, transform, crs)`` with a 2-D array of heights (m), an
        :class:`affine.Affine` transform of the cell corners and anything pyproj reads as a
        CRS. A DataArray already returned by ``open_dem`` (``attrs["vertical_datum"] ==
        "ellipsoid"``) is only validated and passed through; declaring its heights EGM96 or
        EGM2008 again is refused rather than converted twice.
    vertical_datum : {"egm96", "egm2008", "ellipsoid"}, optional
        Datum of the input heights. ``None``: read it from a compound CRS (e.g.
        EPSG:9707 = WGS 84 + EGM96 height, EPSG:9518 = WGS 84 + EGM2008 height) or a 3-D
        ellipsoidal CRS; a plain 2-D CRS is taken as ellipsoidal with a warning. Given
        where the CRS says another datum, it overrides the CRS with a warning naming both.
    geoid_grid : str or os.PathLike, optional
        Raster of geoid undulations N (m) on a geographic lon/lat grid, any format rasterio
        reads (PROJ's ``us_nga_egm96_15.tif``, ``egm96_15.gtx``, an EGM2008 grid). Sampled
        bilinearly at each cell; longitudes wrap around for global grids. ``None``: EGM96
        through the global 15' grid that ships with sarheight (offline); EGM2008 through
        PROJ's grid where PROJ has one (installed, or its network on), else through the
        EGM96 grid with a warning (the two differ by decimetres to a metre or so over most of
        the Earth, more where EGM96 had little gravity data).
    fill_voids : bool, default False
        Fill NaN voids by inverse-distance interpolation (``rasterio.fill.fillnodata``,
        up to 100 cells from valid data). Otherwise voids stay NaN.
    copy : bool, default True
        ``False`` lets the result share its heights with ``source`` where they need no
        change, and return ``source`` itself when it already has the form ``open_dem``
        returns: for callers that only read the heights (the geometry, the simulation),
        which then skip a copy of the whole raster. Never write into such a result.

    Returns
    -------
    xarray.DataArray
        Heights above the WGS84 ellipsoid (m), float32, dims ``("y", "x")``, NaN where
        there is no data, the horizontal CRS written through rioxarray. ``attrs`` record
        ``vertical_datum`` ("ellipsoid"), ``source_vertical_datum`` ("egm96", "egm2008",
        "ellipsoid" or "unspecified (taken as ellipsoid)"), ``geoid_grid`` (a path or
        "PROJ", when converted), ``units`` ("m") and ``long_name``.

    Raises
    ------
    MissingInputError
        ``source`` or ``geoid_grid`` names a file that does not exist.
    InvalidInputError
        Not a raster, more than one band, not 2-D, no CRS, not real numbers, all NaN,
        infinite values, heights outside -12000..9000 m, a rotated grid, an unknown
        ``vertical_datum``.
    DatumError
        Geoid heights and no geoid grid available, a vertical datum sarheight cannot
        convert, or a DEM outside the geoid grid.

    Warns
    -----
    VerticalDatumWarning (a UserWarning, shown every time)
        The CRS says nothing about heights and no ``vertical_datum`` was given: the heights
        are taken as ellipsoidal, and ``attrs["vertical_datum_assumed"]`` is True.
    """
    vertical_datum = _check_vertical_datum_keyword(vertical_datum)
    grid_path = _check_geoid_grid_path(geoid_grid)
    dem = _as_dataarray(source)
    # rioxarray derives the transform from the coordinates each time (milliseconds): once here.
    transform = _transform_of(dem)
    values = _validated_heights(dem, transform)
    crs = _crs_of(dem)
    horizontal = _horizontal_crs(crs)
    crs_datum = _vertical_datum_of_crs(crs)
    if _already_ellipsoidal(dem, vertical_datum, crs_datum):
        if fill_voids:
            values = _fill_voids(values)
        if not copy and _in_open_form(dem, values, crs, horizontal):
            # Already what _heights_dataarray would build (typically open_dem's own
            # result): a reader can take it as it is, saving a new DataArray and
            # rioxarray's CRS and transform writes (milliseconds, whatever the size).
            return dem
        attrs = {**dem.attrs, "units": "m"}
        return _heights_dataarray(dem, values, horizontal, attrs, transform, share_values=not copy)
    _warn_if_implausible(values, transform, horizontal, dem.attrs.get("units"), fill_voids)
    source_datum = _source_datum(vertical_datum, crs_datum, grid_path, horizontal)
    # Everything that can refuse the conversion is checked before any work is done.
    transformer, grid_path = _geoid_transformer(source_datum, grid_path)
    if fill_voids:
        values = _fill_voids(values)
    attrs = {key: value for key, value in dem.attrs.items()
             if key not in ("scale_factor", "add_offset", "_FillValue", "geoid_grid")}
    if source_datum in _GEOID_VERTICAL_EPSG:
        values, attrs["geoid_grid"] = _add_undulation(values, dem, horizontal, source_datum, transformer, grid_path)
    attrs.update(
        vertical_datum="ellipsoid",
        # Integer, not bool: attributes go to netCDF and GeoTIFF tags.
        vertical_datum_assumed=int(source_datum == _UNSPECIFIED),
        source_vertical_datum=source_datum,
        units="m",
        long_name="height above the WGS84 ellipsoid",
    )
    return _heights_dataarray(dem, values, horizontal, attrs, transform, share_values=not copy)


# Python shows a warning once per code location by default; this one concerns each DEM.
warnings.filterwarnings("always", category=VerticalDatumWarning)


#: Share of cell steps steeper than 60 degrees above which heights look like feet (or are
#: exaggerated): real DEMs of 20-100 m cells have at most 0.3 % (Alaska, the Himalaya),
#: the same in feet 3-25 %.
STEEP_SHARE = 0.02
#: The ``units`` a raster's heights may declare that say feet (checked by every reader of
#: heights: DEMs, scenes, cities).
FEET_UNITS = ("ft", "foot", "feet", "us survey foot", "ftus")
#: Heights below which a DEM is too small to judge.
_PLAUSIBILITY_CELLS = 100
#: Share of void cells above which a DEM with relief is warned about.
_VOID_SHARE = 0.01


def _warn_if_implausible(values: np.ndarray, transform: affine.Affine, horizontal: pyproj.CRS, units: Any,
                         fill_voids: bool) -> None:
    """Warn (:class:`~sarheight.errors.PlausibilityWarning`) when heights look like feet
    or kilometres, or when a DEM with relief has voids, once per DEM opened."""
    if isinstance(units, str) and units.strip().lower() in FEET_UNITS:
        warnings.warn(f"the DEM's heights are in {units}, not metres: convert them (multiply by 0.3048) before use",
                      PlausibilityWarning, stacklevel=user_stacklevel())
        return
    stride = max(1, int(math.sqrt(values.size / 250_000)))
    sample = values[::stride, ::stride].astype(np.float64)
    finite = sample[np.isfinite(sample)]
    if finite.size < _PLAUSIBILITY_CELLS:
        return  # too few heights to judge
    dx, dy = _cell_size_m(transform, horizontal, values.shape)
    slopes = _step_slopes(sample, dx * stride, dy * stride)
    relief = float(finite.max() - finite.min())
    if slopes.size and float(np.mean(slopes > math.tan(math.radians(60.0)))) > STEEP_SHARE:
        warnings.warn(
            f"{100 * float(np.mean(slopes > math.tan(math.radians(60.0)))):.0f} % of the DEM's cell steps are steeper "
            "than 60 degrees, which real terrain at this resolution never is: are the heights in feet (multiply by "
            "0.3048) or is the cell size wrong? Layover would be grossly overestimated",
            PlausibilityWarning, stacklevel=user_stacklevel())
    extent = max(dx * values.shape[1], dy * values.shape[0])
    if (relief > 0 and -0.5 <= finite.min() and finite.max() <= 9.0 and extent > 5_000.0
            and slopes.size and float(np.percentile(slopes, 99)) < math.tan(math.radians(0.5))
            and not np.allclose(finite, np.round(finite))):
        warnings.warn(
            f"the DEM's heights span {finite.min():.3g}..{finite.max():.3g} over {extent / 1e3:.0f} km: if they are "
            "in kilometres, multiply them by 1000 (the geometry needs metres)",
            PlausibilityWarning, stacklevel=user_stacklevel())
    voids = float(np.mean(~np.isfinite(sample)))
    if not fill_voids and voids > _VOID_SHARE and relief > 100.0:
        warnings.warn(
            f"{100 * voids:.0f} % of the DEM's cells have no height: they and the facets around them are left out "
            "(NaN), with the layover or shadow they would cause; if they are voids in the terrain (not sea or "
            "outside the area), fill them with fill_voids=True",
            PlausibilityWarning, stacklevel=user_stacklevel())


def _step_slopes(values: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """The slopes (rise over run) of every finite step between neighbouring cells."""
    with np.errstate(invalid="ignore"):
        slopes = np.concatenate([(np.abs(np.diff(values, axis=1)) / dx).ravel(),
                                 (np.abs(np.diff(values, axis=0)) / dy).ravel()])
    return slopes[np.isfinite(slopes)]


def steep_step_share(heights: xr.DataArray) -> float:
    """The share of the steps between neighbouring cells of ``heights`` (a grid with a CRS)
    steeper than 60 degrees: real terrain at 10-100 m cells has at most a few tenths of a
    per cent (Alaska, the Himalaya), the same heights in feet 3-25 %; NaN where there are
    fewer than 100 heights to judge."""
    values = np.asarray(heights.values, dtype=np.float64)
    stride = max(1, int(math.sqrt(values.size / 250_000)))
    sample = values[::stride, ::stride]
    if np.isfinite(sample).sum() < _PLAUSIBILITY_CELLS:
        return float("nan")
    dy, dx = cell_size_m(heights)
    slopes = _step_slopes(sample, dx * stride, dy * stride)
    return float(np.mean(slopes > math.tan(math.radians(60.0)))) if slopes.size else float("nan")


def _cell_size_m(transform: affine.Affine, horizontal: pyproj.CRS, shape: tuple[int, int]) -> tuple[float, float]:
    """(dx, dy) of a cell in metres: the CRS's unit for projected grids, the local metres of
    a degree at the grid's middle latitude for geographic ones."""
    if horizontal.is_geographic:
        latitude = math.radians(transform.f + transform.e * 0.5 * shape[0])
        return abs(transform.a) * 111_320.0 * max(math.cos(latitude), 1e-6), abs(transform.e) * 111_320.0
    unit = horizontal.axis_info[0].unit_conversion_factor if horizontal.axis_info else 1.0
    return abs(transform.a) * (unit or 1.0), abs(transform.e) * (unit or 1.0)


def cell_size_m(dem: xr.DataArray) -> tuple[float, float]:
    """(dy, dx): the size of a cell of ``dem``'s grid in metres, in the order of its axes.

    Projected grids: the CRS's linear unit converted to metres. Geographic grids: the metres
    of a degree at the grid's middle latitude (111.32 km of latitude, times its cosine for
    longitude), a few parts per thousand off at the edges of a tile one degree high.
    """
    transform = _transform_of(dem)
    dx, dy = _cell_size_m(transform, _horizontal_crs(_crs_of(dem)), dem.shape[-2:])
    return dy, dx


def _already_ellipsoidal(dem: xr.DataArray, vertical_datum: str | None, crs_datum: str | None) -> bool:
    """Whether ``dem``'s attributes say it holds ellipsoidal heights (an ``open_dem``
    result) and nothing given contradicts them; raises where something does."""
    if vertical_datum is None and crs_datum not in (None, *VERTICAL_DATUMS):
        raise DatumError(
            f"The DEM's heights are on {crs_datum!r}, which sarheight cannot convert to "
            "WGS84 ellipsoidal heights. Convert them first (e.g. with gdalwarp -t_srs "
            "EPSG:4979) or, if you know better, pass vertical_datum='egm96', 'egm2008' or "
            "'ellipsoid'."
        )
    declared = dem.attrs.get("vertical_datum")
    if declared == "ellipsoid" and vertical_datum in _GEOID_VERTICAL_EPSG:
        # Converting again would add the undulation twice: a silent 30-100 m error.
        raise DatumError(
            f"vertical_datum={vertical_datum!r} was given for a DEM whose attributes say "
            "its heights are already ellipsoidal (attrs['vertical_datum'] == 'ellipsoid', "
            f"converted from {dem.attrs.get('source_vertical_datum', 'an unknown datum')!r})."
            " Pass it without vertical_datum, or open the original file again; if the "
            "attribute is wrong, delete it first (del dem.attrs['vertical_datum'])."
        )
    if vertical_datum not in (None, "ellipsoid") or declared != "ellipsoid":
        return False
    if crs_datum not in (None, "ellipsoid"):
        raise DatumError(
            f"The DEM's attributes say its heights are ellipsoidal but its CRS says "
            f"{crs_datum!r}. Say which is right with vertical_datum='ellipsoid' or "
            f"vertical_datum={crs_datum!r}."
        )
    logger.debug("DEM already holds ellipsoidal heights: passed through")
    return True


def _source_datum(vertical_datum: str | None, crs_datum: str | None, grid_path: str | None,
                  horizontal: pyproj.CRS) -> str:
    """The datum the heights are on: the keyword's, else the CRS's, else unspecified
    (taken as ellipsoidal, with a warning)."""
    if vertical_datum is not None:
        if crs_datum not in (None, vertical_datum):
            warnings.warn(
                f"vertical_datum={vertical_datum!r} (--vertical-datum {vertical_datum}) overrides the DEM's CRS, "
                f"which says its heights are on {_GEOID_LABEL.get(crs_datum, crs_datum)}: the heights are taken as "
                f"{_GEOID_LABEL.get(vertical_datum, vertical_datum)}. Leave the option out to follow the CRS.",
                VerticalDatumWarning, stacklevel=user_stacklevel())
        return vertical_datum
    if crs_datum is not None:
        return crs_datum
    if grid_path is not None:
        raise DatumError(
            f"geoid_grid={str(grid_path)!r} was given but the DEM's CRS "
            f"({horizontal.name}) says nothing about the datum of its heights. Say "
            "which geoid they refer to with vertical_datum='egm96' or 'egm2008' (or "
            "vertical_datum='ellipsoid' if they are already ellipsoidal)."
        )
    message = (
        f"The DEM's CRS ({horizontal.name}) has no vertical datum: its heights are "
        "taken as WGS84 ellipsoidal. Most DEMs (SRTM, Copernicus, ASTER) are on a "
        "geoid (EGM96/EGM2008), which is 30-100 m off; pass vertical_datum='egm96' or "
        "'egm2008' (with geoid_grid=...) to convert, or vertical_datum='ellipsoid' to "
        "silence this warning."
    )
    warnings.warn(message, VerticalDatumWarning, stacklevel=user_stacklevel())
    return _UNSPECIFIED


def _geoid_transformer(source_datum: str, grid_path: str | None, subject: str = "DEM"
                       ) -> tuple[pyproj.Transformer | None, str | None]:
    """How heights on ``source_datum`` become ellipsoidal: (PROJ's transformer, None) or
    (None, a grid file). A given grid is checked and used; else EGM96 through the grid
    that ships with sarheight, EGM2008 through PROJ's grid where PROJ has one (installed,
    or its network on), else through the EGM96 grid with a warning (no EGM2008 grid
    ships: see sarheight/geoids/README.md). Raises before any work where nothing serves."""
    if source_datum not in _GEOID_VERTICAL_EPSG:
        if grid_path is not None:
            logger.info("geoid_grid is not used: the heights are already ellipsoidal")
        return None, None
    if grid_path is not None:
        _check_geoid_grid_file(grid_path)
        return None, grid_path
    if source_datum == "egm2008":
        try:
            return _proj_geoid_transformer(source_datum, subject), None
        except DatumError:
            warnings.warn(
                f"The {subject}'s heights are on EGM2008 and no EGM2008 grid is here (none ships with "
                f"sarheight; PROJ has no {_PROJ_GRID_FILES['egm2008']}): EGM96's undulation, which ships, is "
                "used instead. The two geoids differ by decimetres to a metre or so over most of the Earth, "
                "more where EGM96 had little gravity data (parts of the Himalaya, the Andes, Africa, "
                "Antarctica); for EGM2008 itself give --geoid-grid "
                f"(geoid_grid=) an EGM2008 grid, or `projsync --file {_PROJ_GRID_FILES['egm2008']}` once.",
                VerticalDatumWarning, stacklevel=user_stacklevel())
    return None, str(PACKAGED_EGM96)


#: The range (m) of the geoid's undulation over the Earth (EGM96 and EGM2008: about
#: -107 m south of India to +86 m over New Guinea), with a margin.
GEOID_UNDULATION_M = (-120.0, 100.0)


def _check_undulation_range(undulation: np.ndarray, grid: str, where: str) -> None:
    """Refuse a grid whose undulations under ``where`` no geoid has (a DEM given as the
    geoid grid would add the heights to themselves)."""
    if undulation.size and not (GEOID_UNDULATION_M[0] <= float(np.min(undulation))
                                and float(np.max(undulation)) <= GEOID_UNDULATION_M[1]):
        raise DatumError(
            f"the geoid grid {grid} gives undulations of {float(np.min(undulation)):.0f}.."
            f"{float(np.max(undulation)):.0f} m under {where}, outside the {GEOID_UNDULATION_M[0]:g}.."
            f"{GEOID_UNDULATION_M[1]:g} m any geoid has: it is not a grid of geoid undulations (a DEM?); give the "
            "geoid grid (e.g. egm96_15.gtx)")


def _add_undulation(values: np.ndarray, dem: xr.DataArray, horizontal: pyproj.CRS, source_datum: str,
                    transformer: pyproj.Transformer | None, grid_path: str | None) -> tuple[np.ndarray, str]:
    """Geoid heights plus the undulation at every cell (float32), and the grid used
    (a path, or "PROJ")."""
    lon, lat = _geodetic_of(dem, horizontal)
    if transformer is not None:
        undulation, used = _undulation_from_proj(transformer, lon, lat), "PROJ"
    else:
        undulation, used = _undulation_from_grid(grid_path, lon, lat), str(grid_path)
    bad = np.isfinite(values) & ~np.isfinite(undulation)
    if bad.any():
        raise DatumError(
            f"The geoid grid has no undulation for {int(bad.sum())} DEM cells. Use a "
            "geoid grid that covers the whole DEM."
        )
    finite = undulation[np.isfinite(undulation)]
    _check_undulation_range(finite, used, "the DEM")
    logger.info(
        "converted %s heights to WGS84 ellipsoidal heights with %s: undulation %.2f..%.2f m",
        _GEOID_LABEL[source_datum], used,
        float(finite.min()) if finite.size else float("nan"),
        float(finite.max()) if finite.size else float("nan"),
    )
    return (values.astype(np.float64) + undulation).astype(np.float32), used


def _check_vertical_datum_keyword(vertical_datum: Any) -> str | None:
    if vertical_datum is None:
        return None
    if isinstance(vertical_datum, str):
        normalised = vertical_datum.strip().lower()
        if normalised in VERTICAL_DATUMS:
            return normalised
    raise InvalidInputError(
        f"vertical_datum={vertical_datum!r} is not understood. Use one of "
        f"{', '.join(repr(v) for v in VERTICAL_DATUMS)}, or None to read it from the CRS."
    )


def _check_geoid_grid_path(geoid_grid: str | os.PathLike | None) -> str | None:
    if geoid_grid is None:
        return None
    if not isinstance(geoid_grid, (str, os.PathLike)):
        raise InvalidInputError(
            f"geoid_grid must be a path to a raster of geoid undulations, not "
            f"{type(geoid_grid).__name__}."
        )
    try:
        return check_raster_path(geoid_grid, "Geoid grid")
    except MissingInputError as error:
        raise MissingInputError(
            f"{error} Give the path of a raster of geoid undulations (e.g. egm96_15.gtx or PROJ's "
            "us_nga_egm96_15.tif)."
        ) from None


def _as_dataarray(source: DemSource) -> xr.DataArray:
    """A DataArray with dims ("y", "x") and a float array, not yet validated."""
    if isinstance(source, (str, os.PathLike)):
        dem = _read_raster(source)
    elif isinstance(source, xr.DataArray):
        dem = source
    elif isinstance(source, tuple):
        dem = _dataarray_from_tuple(source)
    else:
        raise InvalidInputError(
            f"A DEM is a raster path, an xarray.DataArray with a CRS or a tuple "
            f"(array, affine.Affine transform, crs), not {type(source).__name__}."
        )
    return _to_yx(dem)


def _read_raster(path: str | os.PathLike) -> xr.DataArray:
    """The DEM file at ``path`` (a format sarheight reads, :func:`sarheight.io.open_raster`),
    loaded."""
    with open_raster(path, "DEM") as dataset:
        # The file's values, their float copy and the validated float32 heights.
        itemsize = np.dtype(dataset.dtypes[0]).itemsize
        check_memory(dataset.width * dataset.height * (itemsize + 12), f"the DEM {str(path)!r} ({dataset.height} x "
                     f"{dataset.width} cells)", ": crop it to the area of interest (gdal_translate -projwin)")
        try:
            dem = rioxarray.open_rasterio(dataset, masked=True, mask_and_scale=True)
            if not isinstance(dem, xr.DataArray):
                raise InvalidInputError(
                    f"DEM {str(path)!r} holds several subdatasets. Open the one with the heights "
                    "(e.g. with rioxarray.open_rasterio(..., variable=...)) and pass the DataArray."
                )
            return dem.load()
        except (rasterio.errors.RasterioError, OSError, ValueError) as error:
            raise InvalidInputError(
                f"DEM {str(path)!r} cannot be read ({error}): the file is truncated or corrupt"
            ) from error


def _dataarray_from_tuple(source: tuple) -> xr.DataArray:
    if len(source) != 3:
        raise InvalidInputError(
            f"A DEM tuple is (array, affine.Affine transform, crs); got {len(source)} items."
        )
    array, transform, crs = source
    if not isinstance(transform, affine.Affine):
        raise InvalidInputError(
            f"The transform of a DEM tuple must be an affine.Affine (e.g. "
            f"rasterio.transform.from_origin(west, north, dx, dy)), not "
            f"{type(transform).__name__}."
        )
    if crs is None:
        raise InvalidInputError(
            "The DEM tuple has no CRS. Give one as its third item, e.g. 'EPSG:32611'."
        )
    array = np.ma.asanyarray(array)
    _check_real_dtype(array.dtype)
    array = np.ma.filled(array.astype(np.float64, copy=False), np.nan)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise InvalidInputError(
            f"A DEM is a 2-D array of heights; got shape {array.shape}. Select one band or "
            "layer first."
        )
    _check_not_rotated(transform)
    rows, cols = array.shape
    x = transform.c + transform.a * (np.arange(cols) + 0.5)
    y = transform.f + transform.e * (np.arange(rows) + 0.5)
    dem = xr.DataArray(array, dims=("y", "x"), coords={"y": y, "x": x})
    dem = dem.rio.write_crs(_crs_from_user_input(crs))
    return dem.rio.write_transform(transform)


def _to_yx(dem: xr.DataArray) -> xr.DataArray:
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
        transform = _transform_of(dem)
        rows, cols = dem.shape
        dem = dem.assign_coords(
            x=transform.c + transform.a * (np.arange(cols) + 0.5),
            y=transform.f + transform.e * (np.arange(rows) + 0.5),
        )
    return dem


def _validated_heights(dem: xr.DataArray, transform: affine.Affine | None = None) -> np.ndarray:
    """The heights as float32 with NaN for nodata, after every check on the values.

    ``transform``: the DEM's (``_transform_of(dem)``) when the caller has it already.
    """
    _crs_of(dem)
    _check_cell_centres(dem, transform)
    _check_real_dtype(dem.dtype)
    values = np.asarray(dem.values, dtype=np.float32)
    nodata = dem.rio.nodata
    if nodata is not None and np.isfinite(nodata):
        values = np.where(values == np.float32(nodata), np.float32(np.nan), values)
    # fmin/fmax skip NaN: two passes tell infinities (an infinite extreme), all-NaN (a NaN
    # extreme) and the range apart, where isinf, isnan, nanmin and nanmax took four.
    low = float(np.fmin.reduce(values, axis=None)) if values.size else np.nan
    high = float(np.fmax.reduce(values, axis=None)) if values.size else np.nan
    if np.isinf(low) or np.isinf(high):
        raise InvalidInputError(
            "The DEM holds infinite heights. Replace them with NaN (dem.where(np.isfinite(dem)))"
            " or declare the nodata value (dem.rio.write_nodata(...))."
        )
    if np.isnan(low):
        raise InvalidInputError(
            "The DEM has no valid height: every cell is nodata/NaN. Check the file and its "
            "nodata value."
        )
    if low < _HEIGHT_RANGE_M[0] or high > _HEIGHT_RANGE_M[1]:
        raise InvalidInputError(
            f"DEM heights span {low:g}..{high:g}, outside {_HEIGHT_RANGE_M[0]:g}.."
            f"{_HEIGHT_RANGE_M[1]:g} m: an undeclared nodata value (declare it with "
            "dem.rio.write_nodata(value)) or heights not in metres (convert them)."
        )
    return values


def _check_real_dtype(dtype: np.dtype) -> None:
    if dtype.kind not in "iuf":
        raise InvalidInputError(
            f"DEM heights must be real numbers (integer or float), not {dtype}. Pass the "
            "height raster itself."
        )


def _in_open_form(dem: xr.DataArray, values: np.ndarray, crs: pyproj.CRS, horizontal: pyproj.CRS) -> bool:
    """Whether ``dem`` (with validated heights ``values``) has the form open_dem returns:
    float32 heights it holds itself, dims and coordinates (y, x) plus the CRS, a 2-D CRS,
    metres and NaN nodata."""
    nodata = dem.rio.nodata
    return (
        values is dem.data
        and dem.dims == ("y", "x")
        and set(dem.coords) == {"y", "x", "spatial_ref"}
        and horizontal is crs
        and dem.attrs.get("units") == "m"
        and nodata is not None
        and bool(np.isnan(nodata))
    )


def _heights_dataarray(
    dem: xr.DataArray,
    values: np.ndarray,
    horizontal: pyproj.CRS,
    attrs: dict,
    transform: affine.Affine | None = None,
    share_values: bool = False,
) -> xr.DataArray:
    values = values.astype(np.float32, copy=False)
    if not share_values and isinstance(dem.data, np.ndarray) and np.may_share_memory(values, dem.data):
        values = values.copy()
    out = xr.DataArray(
        values,
        dims=("y", "x"),
        coords={"y": dem["y"].values, "x": dem["x"].values},
        attrs=attrs,
        name=dem.name,
    )
    # In place: ``out`` is new, and rioxarray's default deep-copies the raster at each write.
    out.rio.write_crs(horizontal, inplace=True)
    out.rio.write_transform(_transform_of(dem) if transform is None else transform, inplace=True)
    return out.rio.write_nodata(np.nan, inplace=True)


def _fill_voids(values: np.ndarray) -> np.ndarray:
    valid = np.isfinite(values)
    if valid.all():
        return values
    filled = rasterio.fill.fillnodata(
        np.where(valid, values, _VOID).astype(np.float32),
        mask=valid.astype(np.uint8),
        max_search_distance=100.0,
        smoothing_iterations=0,
    )
    # fillnodata leaves voids farther than max_search_distance from data as they were; a
    # filled value is a weighted mean of heights and can never equal the sentinel.
    filled = np.where(valid, values, filled).astype(np.float32)
    unfilled = ~valid & (filled == _VOID)
    filled[unfilled] = np.nan
    logger.info(
        "filled %d void cells (%d left: more than 100 cells from data)",
        int((~valid).sum() - unfilled.sum()),
        int(unfilled.sum()),
    )
    return filled.astype(np.float32, copy=False)


# --------------------------------------------------------------------------------------
# CRS and grid helpers
# --------------------------------------------------------------------------------------


def _crs_from_user_input(crs: Any) -> pyproj.CRS:
    try:
        if isinstance(crs, rasterio.crs.CRS):
            return pyproj.CRS.from_wkt(crs.to_wkt())
        return pyproj.CRS.from_user_input(crs)
    except pyproj.exceptions.CRSError as error:
        raise InvalidInputError(
            f"{crs!r} is not a CRS pyproj understands ({error}). Give e.g. 'EPSG:32611'."
        ) from error


def _crs_of(dem: xr.DataArray) -> pyproj.CRS:
    crs = dem.rio.crs
    if crs is None:
        raise InvalidInputError(
            "The DEM has no CRS. Assign the one its coordinates are in, e.g. "
            "dem = dem.rio.write_crs('EPSG:4326') (or the DEM's UTM zone, 'EPSG:326xx')."
        )
    return _crs_from_user_input(crs)


def _horizontal_crs(crs: pyproj.CRS) -> pyproj.CRS:
    """The 2-D horizontal part of a compound or 3-D CRS."""
    if crs.is_compound:
        for sub in crs.sub_crs_list:
            if not sub.is_vertical:
                return _horizontal_crs(sub)
        raise InvalidInputError(
            f"The DEM's CRS {crs.name!r} has no horizontal part. Write a map CRS with "
            "dem.rio.write_crs(...)."
        )
    if crs.is_vertical:
        raise InvalidInputError(
            f"The DEM's CRS {crs.name!r} is vertical only. Write a compound CRS (e.g. "
            "'EPSG:4326+5773') or a map CRS with dem.rio.write_crs(...)."
        )
    if len(crs.axis_info) == 3:
        return crs.to_2d()
    return crs


def _vertical_datum_of_crs(crs: pyproj.CRS) -> str | None:
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


def _transform_of(dem: xr.DataArray) -> affine.Affine:
    transform = dem.rio.transform()
    _check_not_rotated(transform)
    return transform


def _check_not_rotated(transform: affine.Affine) -> None:
    if transform.b != 0.0 or transform.d != 0.0:
        raise InvalidInputError(
            f"The DEM's grid is rotated (transform {tuple(transform)[:6]}). Warp it to a "
            "north-up grid first, e.g. dem.rio.reproject(dem.rio.crs)."
        )
    if transform.a == 0.0 or transform.e == 0.0:
        raise InvalidInputError(
            f"The DEM's transform {tuple(transform)[:6]} has a zero cell size. Write the "
            "right one with dem.rio.write_transform(...)."
        )


def _check_cell_centres(dem: xr.DataArray, transform: affine.Affine | None = None) -> None:
    """The x/y coordinates must be the cell centres of rioxarray's transform (``transform``
    when the caller has it already)."""
    if transform is None:
        transform = _transform_of(dem)
    rows, cols = dem.shape
    x = transform.c + transform.a * (np.arange(cols) + 0.5)
    y = transform.f + transform.e * (np.arange(rows) + 0.5)
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
    return _horizontal_crs(_crs_of(dem))


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
    parsed = _crs_from_user_input(crs)
    return _horizontal_crs(parsed), _vertical_datum_of_crs(parsed)


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


def _spatial_dem(dem: Any) -> xr.DataArray:
    """A DataArray with dims ("y", "x"), checked coordinates and a CRS (values unchecked)."""
    if not isinstance(dem, xr.DataArray):
        raise InvalidInputError(
            f"Expected a DEM as an xarray.DataArray (from sarheight.dem.open_dem), not "
            f"{type(dem).__name__}."
        )
    dem = _to_yx(dem)
    _crs_of(dem)
    _check_cell_centres(dem)
    return dem


def _geodetic_of(
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
    metres_per_degree = 111_320.0 / scale
    error = np.hypot(
        (lat - exact_lat * scale) * metres_per_degree,
        (lon - exact_lon * scale) * metres_per_degree * np.cos(np.radians(exact_lat)),
    )
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
    blocks = 1 if x.size * y.size < 1 << 20 else None  # threads cost more than they save on less
    for along, out in zip(along_both, grids, strict=True):
        run_blocks(
            lambda start, stop, along=along, out=out: interpolate_rows(
                along, i[start:stop], v[start:stop], scale, out[start:stop]
            ),
            y.size,
            blocks,
        )
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


def _compact(array: np.ndarray) -> np.ndarray:
    """A broadcast view reduced to its distinct values, still broadcastable to the shape."""
    index = tuple(
        slice(0, 1) if stride == 0 and size > 1 else slice(None)
        for stride, size in zip(array.strides, array.shape, strict=True)
    )
    return array[index]


# --------------------------------------------------------------------------------------
# Geoid undulation
# --------------------------------------------------------------------------------------


def geoid_source(datum: str, geoid_grid: str | os.PathLike | None = None, *, subject: str = "point set") -> str:
    """What converts heights on the geoid ``datum`` ("egm96", "egm2008") to ellipsoidal
    heights, as :func:`open_dem` and :func:`geoid_undulation` choose it: ``geoid_grid``
    (checked), ``"PROJ"`` (PROJ's EGM2008 grid), or the path of the EGM96 grid that ships
    with sarheight (for EGM2008 with a warning); pass it on as ``geoid_grid`` (a path) to
    convert with it."""
    key = _check_vertical_datum_keyword(datum)
    if key not in _GEOID_VERTICAL_EPSG:
        raise InvalidInputError(
            f"datum={datum!r} is not a geoid: give 'egm96' or 'egm2008' (ellipsoidal heights need no undulation)."
        )
    transformer, grid_path = _geoid_transformer(key, _check_geoid_grid_path(geoid_grid), subject)
    return "PROJ" if transformer is not None else str(grid_path)


def geoid_undulation(
    lon_deg: np.ndarray,
    lat_deg: np.ndarray,
    datum: str,
    geoid_grid: str | os.PathLike | None = None,
    *,
    subject: str = "point set",
) -> np.ndarray:
    """The geoid undulation N (m) at WGS84 longitudes and latitudes: h = H + N turns
    heights H on the geoid into WGS84 ellipsoidal heights h.

    The same conversion as :func:`open_dem`'s, for heights that are not on a grid (GNSS or
    altimeter points).

    Parameters
    ----------
    lon_deg, lat_deg : array_like
        WGS84 longitude and latitude (degrees), broadcastable to one shape.
    datum : {"egm96", "egm2008"}
        The geoid the heights refer to.
    geoid_grid : str or os.PathLike, optional
        Raster of geoid undulations (m) on a longitude/latitude grid, as in
        :func:`open_dem`, sampled bilinearly. ``None``: as :func:`open_dem` (EGM96's grid
        that ships with sarheight; EGM2008 through PROJ's grid, else EGM96's with a warning).
    subject : str, default "point set"
        Whose heights these are, in error messages.

    Returns
    -------
    numpy.ndarray
        N (m), float64, of the broadcast shape of ``lon_deg`` and ``lat_deg``.

    Raises
    ------
    InvalidInputError
        ``datum`` is not "egm96" or "egm2008".
    MissingInputError
        ``geoid_grid`` names a file that does not exist.
    DatumError
        A grid that is not a longitude/latitude grid of undulations, or points outside it.
    """
    key = _check_vertical_datum_keyword(datum)
    if key not in _GEOID_VERTICAL_EPSG:
        raise InvalidInputError(
            f"datum={datum!r} is not a geoid: give 'egm96' or 'egm2008' (ellipsoidal heights need no undulation)."
        )
    lon, lat = np.broadcast_arrays(np.asarray(lon_deg, dtype=np.float64), np.asarray(lat_deg, dtype=np.float64))
    transformer, grid_path = _geoid_transformer(key, _check_geoid_grid_path(geoid_grid), subject)
    if transformer is not None:
        return _undulation_from_proj(transformer, lon, lat, subject)
    undulation = np.array(_undulation_from_grid(grid_path, lon, lat, subject), dtype=np.float64)
    if not np.isfinite(undulation).all():
        raise DatumError(
            f"The geoid grid {str(grid_path)!r} has no undulation for {int((~np.isfinite(undulation)).sum())} "
            f"of the {subject}'s points. Use a geoid grid that covers them all."
        )
    _check_undulation_range(undulation, str(grid_path), f"the {subject}'s points")
    return undulation


#: The vertical datums heights can be written in (``--out-vertical-datum``).
OUTPUT_DATUMS = ("ellipsoid", "egm96", "egm2008")


def output_datum(dem: xr.DataArray) -> str:
    """The datum a user's heights came in (``open_dem``'s ``source_vertical_datum``):
    "egm96", "egm2008", or "ellipsoid" (also where it was unspecified and so taken)."""
    source = str(dem.attrs.get("source_vertical_datum", "ellipsoid"))
    return source if source in OUTPUT_DATUMS else "ellipsoid"


def heights_in_datum(heights: xr.DataArray, datum: str, geoid_grid: str | os.PathLike | None = None
                     ) -> xr.DataArray:
    """WGS84 ellipsoidal heights (m) on a map grid given in ``datum``: the geoid's
    undulation at each cell centre taken off for "egm96" and "egm2008" (h - N, the
    inverse of :func:`open_dem`'s conversion, with the same grid), unchanged for
    "ellipsoid".

    Parameters
    ----------
    heights : xarray.DataArray
        Ellipsoidal heights, dims ``("y", "x")`` with a CRS (what the refinements return).
    datum : {"ellipsoid", "egm96", "egm2008"}
    geoid_grid : str or os.PathLike, optional
        As :func:`open_dem`'s (default: EGM96's packaged grid; EGM2008 through PROJ's grid,
        else EGM96's with a warning).

    Returns
    -------
    xarray.DataArray
        The heights in ``datum`` (float32), the CRS unchanged; ``attrs["vertical_datum"]``
        says the datum, ``attrs["geoid_grid"]`` the grid used.
    """
    key = str(datum).lower()
    if key not in OUTPUT_DATUMS:
        raise InvalidInputError(f"datum={datum!r}: give one of {', '.join(OUTPUT_DATUMS)}")
    attrs = {**heights.attrs, "vertical_datum": key}
    if key == "ellipsoid":
        attrs.pop("geoid_grid", None)
        return heights.copy(data=np.asarray(heights.values, dtype=np.float32)).assign_attrs(attrs)
    lon, lat = geodetic_coordinates(heights)
    # The grid chosen once (with its warning, where EGM2008 falls back on EGM96), then used.
    source = geoid_source(key, geoid_grid, subject="refined DEM")
    undulation = geoid_undulation(lon, lat, key, None if source == "PROJ" else source, subject="refined DEM")
    attrs["geoid_grid"] = source
    attrs["long_name"] = f"height above the {_GEOID_LABEL[key]} geoid"
    values = (np.asarray(heights.values, dtype=np.float64) - undulation).astype(np.float32)
    return heights.copy(data=values).assign_attrs(attrs)


def crs_with_datum(horizontal: Any, datum: str) -> pyproj.CRS:
    """The CRS of heights in ``datum`` on the grid of ``horizontal``: compound with the
    geoid's height (EPSG:5773 EGM96, EPSG:3855 EGM2008), for "ellipsoid" the horizontal
    CRS itself (a GeoTIFF has no ellipsoidal vertical CRS; the file's tags say it)."""
    horizontal = _horizontal_crs(_crs_from_user_input(horizontal))
    if datum not in _GEOID_VERTICAL_EPSG:
        return horizontal
    vertical = pyproj.CRS.from_epsg(_GEOID_VERTICAL_EPSG[datum])
    return pyproj.crs.CompoundCRS(name=f"{horizontal.name} + {vertical.name}", components=[horizontal, vertical])


def dataset_in_datum(dataset: xr.Dataset, datum: str, geoid_grid: str | os.PathLike | None = None,
                     variables: Sequence[str] = ("height", "coarse")) -> xr.Dataset:
    """A dataset whose ``variables`` (those it has) are ellipsoidal heights, with them in
    ``datum`` (:func:`heights_in_datum`), its CRS compound with the geoid's height where
    there is one (:func:`crs_with_datum`), ``attrs["vertical_datum"]`` (and
    ``geoid_grid``) saying so: ready for :func:`sarheight.io.write_geotiff`."""
    crs = dataset.rio.crs
    converted = dataset.copy()
    converted.attrs.pop("geoid_grid", None)
    for name in variables:
        if name in converted:
            converted[name] = heights_in_datum(converted[name].rio.write_crs(crs), datum, geoid_grid)
            if "geoid_grid" in converted[name].attrs:
                converted.attrs["geoid_grid"] = converted[name].attrs["geoid_grid"]
    converted.attrs["vertical_datum"] = datum
    return converted.rio.write_crs(crs_with_datum(crs, datum).to_wkt())


def _geoid_help(datum: str) -> str:
    grid = _PROJ_GRID_FILES[datum]
    example = "egm96_15.gtx or us_nga_egm96_15.tif" if datum == "egm96" else grid
    return (
        f"Either pass geoid_grid= a path to a raster of {_GEOID_LABEL[datum]} undulations "
        f"(e.g. {example}); or install PROJ's grid (`projsync --file {grid}` or "
        f"`pyproj sync --file {grid}`, which put it in {pyproj.datadir.get_user_data_dir()}); "
        "or enable PROJ's network (PROJ_NETWORK=ON, or "
        "pyproj.network.set_network_enabled(True)). If you know the heights are already "
        'ellipsoidal, pass vertical_datum="ellipsoid". Ignoring the geoid would put every '
        "height 30-100 m off."
    )


def _uses_geoid_grid(transformer: pyproj.Transformer) -> bool:
    """True for a grid-based geoid operation, False for PROJ's no-op 'ballpark' fallback."""
    if "ballpark" in transformer.description.lower():
        return False
    operations = transformer.operations or ()
    if any(operation.grids for operation in operations):
        return True
    return "gridshift" in transformer.definition


def _proj_geoid_transformer(datum: str, subject: str = "DEM") -> pyproj.Transformer:
    """A grid-based transformer from WGS 84 + geoid height to WGS 84 ellipsoidal height.

    Raises DatumError when PROJ has no grid for the geoid (not installed and network off):
    PROJ would then fall back to a 'ballpark' operation that leaves heights unchanged.
    ``subject`` names whose heights they are in the message.
    """
    source = f"EPSG:4326+{_GEOID_VERTICAL_EPSG[datum]}"
    with warnings.catch_warnings():
        # pyproj warns when the best operation misses its grid; the error below says more.
        warnings.simplefilter("ignore", UserWarning)
        group = TransformerGroup(source, "EPSG:4979", always_xy=True)
    for transformer in group.transformers:
        if _uses_geoid_grid(transformer):
            logger.debug("geoid conversion through PROJ: %s", transformer.description)
            return transformer
    network = "on" if pyproj.network.is_network_enabled() else "off"
    raise DatumError(
        f"The {subject}'s heights are on {_GEOID_LABEL[datum]} and must be converted to WGS84 "
        f"ellipsoidal heights, but PROJ has no {_GEOID_LABEL[datum]} grid "
        f"({_PROJ_GRID_FILES[datum]} is not in {pyproj.datadir.get_data_dir()} or "
        f"{pyproj.datadir.get_user_data_dir()}; PROJ network {network}). {_geoid_help(datum)}"
    )


def _undulation_from_proj(
    transformer: pyproj.Transformer, lon: np.ndarray, lat: np.ndarray, subject: str = "DEM"
) -> np.ndarray:
    lon_full, lat_full = (np.ascontiguousarray(a) for a in np.broadcast_arrays(lon, lat))
    _, _, undulation = transformer.transform(lon_full, lat_full, np.zeros_like(lon_full))
    undulation = np.asarray(undulation, dtype=np.float64)
    if not np.isfinite(undulation).all():
        raise DatumError(
            f"PROJ could not compute the geoid undulation everywhere on the {subject} (a grid that "
            f"failed to download, or a {subject} outside the grid). Pass geoid_grid= a local path "
            "to the geoid grid instead."
        )
    return undulation


def _check_geoid_grid_file(path: str) -> None:
    with open_raster(path, "geoid grid") as grid:
        _geoid_grid_geometry(grid, path)


def _geoid_grid_geometry(grid: rasterio.DatasetReader, path: str) -> affine.Affine:
    if grid.crs is not None and not _crs_from_user_input(grid.crs).is_geographic:
        raise DatumError(
            f"Geoid grid {str(path)!r} is in {grid.crs}, not on a longitude/latitude grid. "
            "Give a geographic geoid grid (e.g. egm96_15.gtx or us_nga_egm96_15.tif)."
        )
    transform = grid.transform
    if transform.b != 0.0 or transform.d != 0.0 or transform.a <= 0.0 or transform.e == 0.0:
        raise DatumError(
            f"Geoid grid {str(path)!r} is not a west-to-east longitude/latitude grid "
            f"(transform {tuple(transform)[:6]}). Give a regular geographic geoid grid."
        )
    return transform


def _undulation_from_grid(path: str, lon: np.ndarray, lat: np.ndarray, subject: str = "DEM") -> np.ndarray:
    """Bilinear interpolation of a geoid grid (m) at longitudes/latitudes (degrees).

    Only the window of the grid around the DEM is read, so a global 1' EGM2008 grid costs
    no more than a 15' EGM96 one. ``lon``/``lat`` may be broadcast views; the result has
    their broadcast shape.
    """
    lon = _compact(np.asarray(lon, dtype=np.float64))
    lat = _compact(np.asarray(lat, dtype=np.float64))
    shape = np.broadcast_shapes(lon.shape, lat.shape)
    with open_raster(path, "geoid grid") as grid:
        transform = _geoid_grid_geometry(grid, path)
        width, height = grid.width, grid.height
        period = 360.0 / transform.a
        is_global = abs(period - round(period)) < 1e-6 and width >= round(period)
        if is_global:
            # Cell-centre index along longitude, periodic: GTX grids run 0..360 or -180..180.
            period = round(period)
            u = np.mod((lon - transform.c) / transform.a - 0.5, period)
            i0 = np.floor(u).astype(np.int64)
            wu = u - i0
            i1 = np.where(i0 + 1 >= period, 0, i0 + 1)
        else:
            u = (lon - transform.c) / transform.a - 0.5
            for turn in (360.0, -360.0):
                outside = (u < -0.5) | (u > width - 0.5)
                u = np.where(outside, u + turn / transform.a, u)
            if (u < -0.5).any() or (u > width - 0.5).any():
                raise DatumError(_outside_grid_message(path, grid.bounds, subject))
            u = np.clip(u, 0.0, max(width - 1, 0))
            i0 = np.minimum(np.floor(u).astype(np.int64), max(width - 2, 0))
            wu = u - i0
            i1 = np.minimum(i0 + 1, width - 1)
        v = (lat - transform.f) / transform.e - 0.5
        if (v < -0.5 - 1e-9).any() or (v > height - 0.5 + 1e-9).any():
            raise DatumError(_outside_grid_message(path, grid.bounds, subject))
        v = np.clip(v, 0.0, max(height - 1, 0))
        j0 = np.minimum(np.floor(v).astype(np.int64), max(height - 2, 0))
        wv = v - j0
        j1 = np.minimum(j0 + 1, height - 1)

        col_lo = int(min(i0.min(), i1.min()))
        col_hi = int(max(i0.max(), i1.max()))
        row_lo, row_hi = int(j0.min()), int(j1.max())
        window = rasterio.windows.Window(col_lo, row_lo, col_hi - col_lo + 1, row_hi - row_lo + 1)
        values = read_band(grid, "geoid grid", window=window, masked=True)
        # A grid stored as scaled integers (the packaged one: centimetres) says its scale.
        scale, offset = float(grid.scales[0] or 1.0), float(grid.offsets[0] or 0.0)
    values = np.ma.filled(values.astype(np.float64), np.nan) * scale + offset
    i0, i1, j0, j1 = i0 - col_lo, i1 - col_lo, j0 - row_lo, j1 - row_lo
    undulation = (1.0 - wv) * ((1.0 - wu) * values[j0, i0] + wu * values[j0, i1]) + wv * (
        (1.0 - wu) * values[j1, i0] + wu * values[j1, i1]
    )
    return np.broadcast_to(undulation, shape)


def _outside_grid_message(path: str, bounds: Any, subject: str = "DEM") -> str:
    return (
        f"The {subject} extends outside geoid grid {str(path)!r} (bounds {tuple(bounds)}). Give a "
        f"geoid grid that covers the {subject} (a global one such as egm96_15.gtx)."
    )


# --------------------------------------------------------------------------------------
# Coordinates
# --------------------------------------------------------------------------------------


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
    dem = _spatial_dem(dem)
    return _geodetic_of(dem, _horizontal_crs(_crs_of(dem)), in_radians=radians)


def _radians(degrees: np.ndarray) -> np.ndarray:
    """Degrees to radians, keeping a broadcast view a broadcast view."""
    return np.broadcast_to(np.deg2rad(_compact(degrees)), degrees.shape)


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
    ecef = geodetic_to_ecef_grid(_radians(lon), _radians(lat), dem.values, WGS84_A, WGS84_E2)
    out = xr.DataArray(
        ecef,
        dims=("y", "x", "xyz"),
        coords={"y": dem["y"].values, "x": dem["x"].values, "xyz": ["x", "y", "z"]},
        attrs={"units": "m", "long_name": "ECEF coordinates (WGS84)"},
        name="ecef",
    )
    return out.rio.write_crs(dem.rio.crs)


# --------------------------------------------------------------------------------------
# Terrain attributes
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _silenced_output() -> Iterator[None]:
    """Silence richdem's C++ progress output, which goes straight to file descriptors 1, 2.

    Python-level redirection cannot catch it. While silenced, other threads' output to
    these descriptors is lost too; the lock at least keeps richdem calls from interleaving
    their save/restore.
    """
    with _RICHDEM_LOCK:
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

    dem = _spatial_dem(dem)
    horizontal = _horizontal_crs(_crs_of(dem))
    if not horizontal.is_projected:
        raise InvalidInputError(
            f"terrain_attributes needs a DEM on a projected grid with metric cells; this one "
            f"is in {horizontal.name!r}. Reproject it first, e.g. "
            "dem.rio.reproject(dem.rio.estimate_utm_crs()) or dem.rio.reproject('EPSG:326xx')."
        )
    heights = _validated_heights(dem)
    transform = _transform_of(dem)
    unit = horizontal.axis_info[0].unit_conversion_factor or 1.0
    dx = abs(transform.a) * unit
    dy = abs(transform.e) * unit

    # richdem assumes rows run north to south and columns west to east.
    flip_y = transform.e > 0
    flip_x = transform.a < 0
    north_up = heights[:: -1 if flip_y else 1, :: -1 if flip_x else 1]

    valid = np.isfinite(north_up)
    elevation = richdem.rdarray(
        np.where(valid, north_up, _VOID).astype(np.float32),
        no_data=float(_VOID),
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
