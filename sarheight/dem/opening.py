"""Digital elevation models: open, validate, vertical datum, coordinates, terrain attributes.

The radar geometry needs heights above the WGS84 ellipsoid. DEMs are usually distributed
with heights above a geoid (EGM96 for SRTM and the Copernicus DEM, EGM2008 for others); the
difference, the geoid undulation N, is 30-100 m over most of the Earth, and ignoring it is the
most common cause of badly placed layover and shadow. :func:`open_dem` therefore converts
geoid heights H to ellipsoidal heights h = H + N, with N from a grid the user gives or from
PROJ's grids, and refuses to guess when neither is available.

This module opens and validates a DEM (:func:`open_dem`) and judges whether its heights
are plausible terrain (voids, feet, an undeclared nodata value).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import threading
import warnings
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

from sarheight.errors import (
    InvalidInputError,
    PlausibilityWarning,
    VerticalDatumWarning,
    user_stacklevel,
)
from sarheight.io import check_memory, open_raster
from sarheight.raster import Grid, cell_size_m, cell_steps_m, horizontal_part

from ..raster import cell_centres, check_not_rotated, crs_from_user_input
from .crs import check_cell_centres, crs_of, to_yx, transform_of, vertical_datum_of_crs
from .geoid import (
    GEOID_VERTICAL_EPSG,
    UNSPECIFIED_DATUM,
    add_undulation,
    already_ellipsoidal,
    check_geoid_grid_path,
    check_vertical_datum_keyword,
    geoid_transformer,
    resolve_source_datum,
)

logger = logging.getLogger(__name__)


#: What a DEM can be given as: a raster path, a DataArray with a CRS, or
#: ``(array, affine.Affine transform, crs)``.
DemSource = str | os.PathLike | xr.DataArray | tuple


# Heights outside this range (m) are not terrain: most often an undeclared nodata value
# (-32768, -9999) or heights in feet.
_HEIGHT_RANGE_M = (-12000.0, 9000.0)


# richdem and fillnodata want a finite no-data value; this one cannot be a valid height.
VOID = np.float32(-3.0e38)


RICHDEM_LOCK = threading.Lock()


def open_dem(
    source: DemSource | Dem,
    *,
    vertical_datum: str | None = None,
    geoid_grid: str | os.PathLike | None = None,
    fill_voids: bool = False,
    copy: bool = True,
) -> xr.DataArray:
    """Open a DEM, validate it and return WGS84 ellipsoidal heights.

    Parameters
    ----------
    source : str, os.PathLike, xarray.DataArray, tuple or Dem
        A path to any raster rasterio reads (GeoTIFF, VRT, ...); a DataArray with a CRS
        written through rioxarray (``dem.rio.write_crs(...)``); or a tuple
        ``(array, transform, crs)`` with a 2-D array of heights (m), an
        :class:`affine.Affine` transform of the cell corners and anything pyproj reads as a
        CRS; or a :class:`Dem` (:func:`checked_dem`), its heights passed through without a
        second scan. A DataArray already returned by ``open_dem``
        (``attrs["vertical_datum"] == "ellipsoid"``) is validated again and passed through;
        declaring its heights EGM96 or EGM2008 again is refused rather than converted twice.
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
    return checked_dem(source, vertical_datum=vertical_datum, geoid_grid=geoid_grid, fill_voids=fill_voids,
                       copy=copy).heights


@dataclasses.dataclass(frozen=True, eq=False)
class Dem:
    """A DEM checked once: what :func:`checked_dem` returns and the functions that work on a
    DEM take, so that its type says its heights were checked (no second scan of them, no
    registry of what was opened).

    Attributes
    ----------
    heights : WGS84 ellipsoidal heights (m), float32, dims ``("y", "x")``, NaN voids, its
        horizontal CRS written, as :func:`open_dem` returns them. Never write into them:
        heights changed are a new DEM, checked by :func:`checked_dem`.
    grid : its grid, measured once (:class:`sarheight.raster.Grid`).
    """

    heights: xr.DataArray
    grid: Grid

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        return self.grid.shape


def checked_dem(
    source: DemSource | Dem,
    *,
    vertical_datum: str | None = None,
    geoid_grid: str | os.PathLike | None = None,
    fill_voids: bool = False,
    copy: bool = True,
) -> Dem:
    """:func:`open_dem`'s DEM with its grid measured: a :class:`Dem`.

    A :class:`Dem` given (``vertical_datum`` None or "ellipsoid", no ``geoid_grid``, no
    ``fill_voids``) comes back as it is (``copy=False``) or with its heights copied: it was
    checked when it was made. Anything else is read, checked and converted as
    :func:`open_dem` says, its heights scanned once here.
    """
    vertical_datum = check_vertical_datum_keyword(vertical_datum)
    grid_path = check_geoid_grid_path(geoid_grid)
    if isinstance(source, Dem):
        if vertical_datum in (None, "ellipsoid") and grid_path is None and not fill_voids:
            return source if not copy else Dem(source.heights.copy(deep=True), source.grid)
        source = source.heights
    return _open(source, vertical_datum, grid_path, fill_voids, copy)


def _open(source: DemSource, vertical_datum: str | None, grid_path: str | None, fill_voids: bool,
          copy: bool) -> Dem:
    """:func:`checked_dem`'s work on a DEM that is not a :class:`Dem`."""
    dem = _as_dataarray(source)
    # rioxarray derives the transform from the coordinates each time (milliseconds): once here.
    transform = transform_of(dem)
    values = validated_heights(dem, transform)
    crs = crs_of(dem)
    horizontal = horizontal_part(crs)
    # The grid measured from what was read here, not from the result's coordinates again.
    grid = Grid(transform, horizontal, values.shape, cell_steps_m(transform, horizontal, values.shape))
    crs_datum = vertical_datum_of_crs(crs)
    if already_ellipsoidal(dem, vertical_datum, crs_datum):
        if fill_voids:
            values = _fill_voids(values)
        if not copy and _in_open_form(dem, values, crs, horizontal):
            # Already what _heights_dataarray would build (typically open_dem's own
            # result): a reader can take it as it is, saving a new DataArray and
            # rioxarray's CRS and transform writes (milliseconds, whatever the size).
            return Dem(dem, grid)
        attrs = {**dem.attrs, "units": "m"}
        return Dem(_heights_dataarray(dem, values, horizontal, attrs, transform, share_values=not copy), grid)
    _warn_if_implausible(values, grid, dem.attrs.get("units"), fill_voids)
    subject = f"the DEM {Path(source).name!r}" if isinstance(source, (str, os.PathLike)) else "the DEM"
    source_datum = resolve_source_datum(vertical_datum, crs_datum, grid_path, horizontal, subject)
    # Everything that can refuse the conversion is checked before any work is done.
    transformer, grid_path = geoid_transformer(source_datum, grid_path)
    if fill_voids:
        values = _fill_voids(values)
    attrs = {key: value for key, value in dem.attrs.items()
             if key not in ("scale_factor", "add_offset", "_FillValue", "geoid_grid")}
    if source_datum in GEOID_VERTICAL_EPSG:
        values, attrs["geoid_grid"] = add_undulation(values, dem, horizontal, source_datum, transformer, grid_path)
    attrs.update(
        vertical_datum="ellipsoid",
        # Integer, not bool: attributes go to netCDF and GeoTIFF tags.
        vertical_datum_assumed=int(source_datum == UNSPECIFIED_DATUM),
        source_vertical_datum=source_datum,
        units="m",
        long_name="height above the WGS84 ellipsoid",
    )
    return Dem(_heights_dataarray(dem, values, horizontal, attrs, transform, share_values=not copy), grid)


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


def _warn_if_implausible(values: np.ndarray, grid: Grid, units: Any, fill_voids: bool) -> None:
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
    dy, dx = grid.size_m
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


def check_heights_in_metres(heights: xr.DataArray, what: str) -> None:
    """Refuse, in one line, heights (a grid with a CRS) whose steps are too steep for real
    terrain (:func:`steep_step_share` above :data:`STEEP_SHARE`): heights in feet, or a
    wrong cell size. Opening a DEM only warns of it (synthetic relief may be that steep on
    purpose); a refinement, which reads every slope, refuses. ``what`` names the heights."""
    share = steep_step_share(heights)
    if share > STEEP_SHARE:
        raise InvalidInputError(
            f"{100 * share:.0f} % of {what}'s cell steps are steeper than 60 degrees, which real terrain at this "
            "resolution never is: its heights look like feet (multiply them by 0.3048 and run again), or its cell "
            "size is wrong; refined, every slope would be read 3.3 times too steep")


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
    return to_yx(dem)


#: Band names of the rasters sarheight writes that hold no heights, by what they hold.
NOT_HEIGHTS = {"sigma0": "sigma0 (a SAR image)", "beta0": "beta0 (a SAR image)", "gamma0": "gamma0 (a SAR image)",
               "sim_sigma0": "simulated sigma0 (a SAR image)", "layover": "a layover/shadow mask",
               "shadow": "a layover/shadow mask", "isce3_mask": "a layover/shadow mask",
               "reconstructed": "reconstructed sigma0 (a SAR image)", "geocoded": "geocoded sigma0 (a SAR image)",
               "height_std": "the spread of a refined DEM", "lcz": "a land-cover map", "land_cover": "a land-cover map"}


def check_holds_heights(dataset: rasterio.DatasetReader, name: str) -> None:
    """Refuse, in one line naming what was seen, a raster given as a DEM that says it holds
    something else: an image in radar geometry, or a band named for a SAR image, a mask or a
    map that sarheight writes (its band description), or values in dB (its units)."""
    description = (dataset.descriptions[0] or "").strip().lower() if dataset.descriptions else ""
    units = (dataset.tags(1).get("units") or dataset.tags().get("units") or "").strip().lower()
    tags = dataset.tags()
    seen = ("an image in radar geometry (lines and samples, no map grid)" if all(key in tags for key in
                                                                                  ("first_line", "first_sample"))
            else f"{NOT_HEIGHTS[description]}: its band is named {description!r}" if description in NOT_HEIGHTS
            else "values in dB (its units)" if units == "db" else None)
    if seen is not None:
        raise InvalidInputError(f"the DEM {name!r} holds {seen}, not heights: give a DEM of heights there (a SAR "
                                "image goes to --sar)")


def _read_raster(path: str | os.PathLike) -> xr.DataArray:
    """The DEM file at ``path`` (a format sarheight reads, :func:`sarheight.io.open_raster`),
    loaded."""
    with open_raster(path, "DEM") as dataset:
        check_holds_heights(dataset, str(path))
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
    check_not_rotated(transform)
    y, x = cell_centres(transform, array.shape)
    dem = xr.DataArray(array, dims=("y", "x"), coords={"y": y, "x": x})
    dem = dem.rio.write_crs(crs_from_user_input(crs))
    return dem.rio.write_transform(transform)


#: How far (m) a refinement may move a coarse DEM: it corrects metres to tens of metres
#: (a summit or a gorge a coarse cell averaged away reaches a few hundred); beyond this a
#: map is broken, not refined.
MAX_CORRECTION_M = 1000.0


def check_plausible_heights(heights: Any, reference: Any, what: str) -> None:
    """Refuse, in one line, a height map (m, ellipsoidal) that no terrain has: a value
    beyond the Earth's range of heights (:data:`_HEIGHT_RANGE_M`, the geoid's undulation
    included), or, with ``reference`` (the coarse DEM on the same cells), a cell moved
    further than :data:`MAX_CORRECTION_M` from it; NaN cells are not judged. ``what``
    names the map and where it came from."""
    values = np.asarray(heights, dtype=np.float64)
    finite = np.isfinite(values)
    if not finite.any():
        return
    low, high = float(values[finite].min()), float(values[finite].max())
    earth = (_HEIGHT_RANGE_M[0] - 120.0, _HEIGHT_RANGE_M[1] + 100.0)
    if low < earth[0] or high > earth[1] or np.isinf(values).any():
        raise InvalidInputError(f"{what} holds heights of {low:.3g}..{high:.3g} m, beyond any on the Earth "
                                f"({earth[0]:g}..{earth[1]:g} m): the model or its inputs are broken; nothing was "
                                "written")
    if reference is None:
        return
    moved = np.abs(values - np.asarray(reference, dtype=np.float64))
    moved = moved[np.isfinite(moved)]
    if moved.size and float(moved.max()) > MAX_CORRECTION_M:
        raise InvalidInputError(f"{what} moves the coarse DEM by up to {float(moved.max()):.3g} m, where a "
                                f"refinement corrects it by tens (at most {MAX_CORRECTION_M:g} m here): the model or "
                                "its inputs are broken; nothing was written")


def validated_heights(dem: xr.DataArray, transform: affine.Affine | None = None) -> np.ndarray:
    """The heights as float32 with NaN for nodata, after every check on the values.

    ``transform``: the DEM's (``transform_of(dem)``) when the caller has it already.
    """
    crs_of(dem)
    check_cell_centres(dem, transform)
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
    out.rio.write_transform(transform_of(dem) if transform is None else transform, inplace=True)
    return out.rio.write_nodata(np.nan, inplace=True)


def _fill_voids(values: np.ndarray) -> np.ndarray:
    valid = np.isfinite(values)
    if valid.all():
        return values
    filled = rasterio.fill.fillnodata(
        np.where(valid, values, VOID).astype(np.float32),
        mask=valid.astype(np.uint8),
        max_search_distance=100.0,
        smoothing_iterations=0,
    )
    # fillnodata leaves voids farther than max_search_distance from data as they were; a
    # filled value is a weighted mean of heights and can never equal the sentinel.
    filled = np.where(valid, values, filled).astype(np.float32)
    unfilled = ~valid & (filled == VOID)
    filled[unfilled] = np.nan
    logger.info(
        "filled %d void cells (%d left: more than 100 cells from data)",
        int((~valid).sum() - unfilled.sum()),
        int(unfilled.sum()),
    )
    return filled.astype(np.float32, copy=False)
