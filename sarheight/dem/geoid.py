"""Vertical datums: the geoid undulation that converts heights on EGM96 or EGM2008 to
WGS84 ellipsoidal heights (from a grid the user gives, PROJ's grids or the EGM96 grid
that ships with sarheight), the datum a DEM's source declares, and heights written back
in the datum a user asks for.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
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
import xarray as xr
from pyproj.transformer import TransformerGroup

from sarheight.errors import (
    DatumError,
    InvalidInputError,
    MissingInputError,
    VerticalDatumWarning,
    user_stacklevel,
)
from sarheight.io import check_raster_path, open_raster, read_band
from sarheight.raster import horizontal_part

from ..raster import crs_from_user_input
from .coordinates import compact, geodetic_coordinates, geodetic_of

logger = logging.getLogger(__name__)


#: Vertical datums :func:`open_dem` understands (the ``vertical_datum`` keyword).
VERTICAL_DATUMS = ("egm96", "egm2008", "ellipsoid")


UNSPECIFIED_DATUM = "unspecified (taken as ellipsoid)"


# EPSG codes of the geoid-height vertical CRSs, for building "EPSG:4326+code" for PROJ.
GEOID_VERTICAL_EPSG = {"egm96": 5773, "egm2008": 3855}


_PROJ_GRID_FILES = {"egm96": "us_nga_egm96_15.tif", "egm2008": "us_nga_egm08_25.tif"}


_GEOID_LABEL = {"egm96": "EGM96", "egm2008": "EGM2008"}


#: The EGM96 geoid grid that ships with sarheight (15', the whole Earth; sarheight/geoids/
#: README.md says where it comes from): geoid heights convert offline, with no PROJ grid.
PACKAGED_EGM96 = Path(__file__).resolve().parents[1] / "geoids" / "egm96_15.tif"


def already_ellipsoidal(dem: xr.DataArray, vertical_datum: str | None, crs_datum: str | None) -> bool:
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
    if declared == "ellipsoid" and vertical_datum in GEOID_VERTICAL_EPSG:
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


def resolve_source_datum(vertical_datum: str | None, crs_datum: str | None, grid_path: str | None,
                         horizontal: pyproj.CRS, subject: str = "the DEM") -> str:
    """The datum the heights are on: the keyword's, else the CRS's, else unspecified
    (taken as ellipsoidal, with a warning); ``subject`` names the DEM in the messages
    (its file)."""
    if vertical_datum is not None:
        if crs_datum not in (None, vertical_datum):
            warnings.warn(
                f"vertical_datum={vertical_datum!r} overrides the CRS of {subject}, "
                f"which says its heights are on {_GEOID_LABEL.get(crs_datum, crs_datum)}: the heights are taken as "
                f"{_GEOID_LABEL.get(vertical_datum, vertical_datum)}. Leave the option out to follow the CRS.",
                VerticalDatumWarning, stacklevel=user_stacklevel())
        return vertical_datum
    if crs_datum is not None:
        return crs_datum
    if grid_path is not None:
        raise DatumError(
            f"geoid_grid={str(grid_path)!r} was given but the CRS of {subject} "
            f"({horizontal.name}) says nothing about the datum of its heights. Say "
            "which geoid they refer to with vertical_datum='egm96' or 'egm2008' (or "
            "vertical_datum='ellipsoid' if they are already ellipsoidal)."
        )
    message = (
        f"The CRS of {subject} ({horizontal.name}) has no vertical datum: its heights are "
        "taken as WGS84 ellipsoidal. Most DEMs (SRTM, Copernicus, ASTER) are on a "
        "geoid (EGM96/EGM2008), which is 30-100 m off; pass vertical_datum='egm96' or "
        "'egm2008' (with geoid_grid=...) to convert, or vertical_datum='ellipsoid' to "
        "silence this warning."
    )
    warnings.warn(message, VerticalDatumWarning, stacklevel=user_stacklevel())
    return UNSPECIFIED_DATUM


def geoid_transformer(source_datum: str, grid_path: str | None, subject: str = "DEM"
                       ) -> tuple[pyproj.Transformer | None, str | None]:
    """How heights on ``source_datum`` become ellipsoidal: (PROJ's transformer, None) or
    (None, a grid file). A given grid is checked and used; else EGM96 through the grid
    that ships with sarheight, EGM2008 through PROJ's grid where PROJ has one (installed,
    or its network on), else through the EGM96 grid with a warning (no EGM2008 grid
    ships: see sarheight/geoids/README.md). Raises before any work where nothing serves."""
    if source_datum not in GEOID_VERTICAL_EPSG:
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
                "Antarctica); for EGM2008 itself give geoid_grid= an EGM2008 grid, or run "
                f"`projsync --file {_PROJ_GRID_FILES['egm2008']}` once.",
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


def add_undulation(values: np.ndarray, dem: xr.DataArray, horizontal: pyproj.CRS, source_datum: str,
                    transformer: pyproj.Transformer | None, grid_path: str | None) -> tuple[np.ndarray, str]:
    """Geoid heights plus the undulation at every cell (float32), and the grid used
    (a path, or "PROJ")."""
    lon, lat = geodetic_of(dem, horizontal)
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


def check_vertical_datum_keyword(vertical_datum: Any) -> str | None:
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


def check_geoid_grid_path(geoid_grid: str | os.PathLike | None) -> str | None:
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


def geoid_source(datum: str, geoid_grid: str | os.PathLike | None = None, *, subject: str = "point set") -> str:
    """What converts heights on the geoid ``datum`` ("egm96", "egm2008") to ellipsoidal
    heights, as :func:`open_dem` and :func:`geoid_undulation` choose it: ``geoid_grid``
    (checked), ``"PROJ"`` (PROJ's EGM2008 grid), or the path of the EGM96 grid that ships
    with sarheight (for EGM2008 with a warning); pass it on as ``geoid_grid`` (a path) to
    convert with it."""
    key = check_vertical_datum_keyword(datum)
    if key not in GEOID_VERTICAL_EPSG:
        raise InvalidInputError(
            f"datum={datum!r} is not a geoid: give 'egm96' or 'egm2008' (ellipsoidal heights need no undulation)."
        )
    transformer, grid_path = geoid_transformer(key, check_geoid_grid_path(geoid_grid), subject)
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
    key = check_vertical_datum_keyword(datum)
    if key not in GEOID_VERTICAL_EPSG:
        raise InvalidInputError(
            f"datum={datum!r} is not a geoid: give 'egm96' or 'egm2008' (ellipsoidal heights need no undulation)."
        )
    lon, lat = np.broadcast_arrays(np.asarray(lon_deg, dtype=np.float64), np.asarray(lat_deg, dtype=np.float64))
    transformer, grid_path = geoid_transformer(key, check_geoid_grid_path(geoid_grid), subject)
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
    source = output_geoid_source(key, geoid_grid)
    undulation = geoid_undulation(lon, lat, key, None if source == "PROJ" else source, subject="refined DEM")
    attrs["geoid_grid"] = source
    attrs["long_name"] = f"height above the {_GEOID_LABEL[key]} geoid"
    values = (np.asarray(heights.values, dtype=np.float64) - undulation).astype(np.float32)
    return heights.copy(data=values).assign_attrs(attrs)


def output_geoid_source(datum: str, geoid_grid: str | os.PathLike | None = None) -> str:
    """What takes the geoid's undulation off heights written in ``datum`` ("egm96",
    "egm2008"): ``geoid_grid`` (checked), ``"PROJ"`` or the packaged EGM96 grid, as
    :func:`geoid_source` chooses, except that heights written as EGM2008 are never EGM96's
    under EGM2008's name: without an EGM2008 grid they are refused, before any work.

    Raises
    ------
    DatumError : EGM2008 asked for, and neither ``geoid_grid`` nor PROJ's EGM2008 grid here.
    """
    key = check_vertical_datum_keyword(datum)
    if key == "egm2008" and geoid_grid is None:
        try:
            _proj_geoid_transformer(key, "refined DEM")
        except DatumError:
            raise DatumError(
                "heights written above EGM2008 need an EGM2008 grid, and none is here (none ships with sarheight; "
                f"PROJ has no {_PROJ_GRID_FILES['egm2008']}): give geoid_grid= an EGM2008 grid (e.g. "
                f"us_nga_egm08_25.tif), run `projsync --file {_PROJ_GRID_FILES['egm2008']}` once, or write the "
                "heights above EGM96 or the ellipsoid") from None
        return "PROJ"
    return geoid_source(key, geoid_grid, subject="refined DEM")


def crs_with_datum(horizontal: Any, datum: str) -> pyproj.CRS:
    """The CRS of heights in ``datum`` on the grid of ``horizontal``: compound with the
    geoid's height (EPSG:5773 EGM96, EPSG:3855 EGM2008), for "ellipsoid" the horizontal
    CRS itself (a GeoTIFF has no ellipsoidal vertical CRS; the file's tags say it)."""
    horizontal = horizontal_part(crs_from_user_input(horizontal))
    if datum not in GEOID_VERTICAL_EPSG:
        return horizontal
    vertical = pyproj.CRS.from_epsg(GEOID_VERTICAL_EPSG[datum])
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
    # The grid chosen once for every variable (a warning, if any, said once).
    if datum in GEOID_VERTICAL_EPSG:
        source = output_geoid_source(datum, geoid_grid)
        geoid_grid = None if source == "PROJ" else source
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
    source = f"EPSG:4326+{GEOID_VERTICAL_EPSG[datum]}"
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
    if grid.crs is not None and not crs_from_user_input(grid.crs).is_geographic:
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
    lon = compact(np.asarray(lon, dtype=np.float64))
    lat = compact(np.asarray(lat, dtype=np.float64))
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
