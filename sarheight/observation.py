"""What :func:`sarheight.reconstruction.reconstruct` is given, resolved into one form.

An observation is one of

- an image in radar geometry: a numpy array of the whole product grid, a DataArray with
  dims (line, sample) and absolute ``line``/``sample`` coordinates (in memory or
  dask-backed), or an xarray-sentinel measurement (azimuth_time x slant_range_time or
  ground_range, with line/pixel coordinates), all linear beta0, with a geometry; a
  dual-polarisation image as a DataArray with dims (polarisation, line, sample) and
  polarisation names ("VV", "VH"): the co-polarised band of the measurement is the
  image, the cross-polarised one beside it (:attr:`Observation.cross_image`);
- a Sentinel-1 SAFE product: beta0 from its calibration LUTs, thermal noise removed,
  read only for the window the DEM needs;
- an image geocoded to a map grid (a (y, x) DataArray with a CRS, or such a GeoTIFF):
  its radar pixels are rebuilt from the geocoded values once the simulation is known.

:func:`resolve_observation` turns each into an :class:`Observation` and refuses, before
any work, what cannot be one; :meth:`Observation.on_window` reads its intensities on a
radar window; :func:`check_intensity` judges what was read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from .compute import CONTRIBUTION_CELL_LAW, CONTRIBUTION_MODEL, CONTRIBUTION_USER, weighted_mean
from .compute import intensity_flags as compute_intensity_flags
from .errors import InvalidInputError, PartialCoverageWarning, PlausibilityWarning, user_stacklevel
from .geometry import RadarGeometry, RadarWindow
from .ground import empirical_sigma0
from .io import check_memory, is_geotiff_path, is_radar_image, open_raster, read_radar_image
from .raster import power_to_db, robust_spread
from .simulate import Simulation
from .simulate.cells import channels
from .simulate.contribution import CELL_LAW_STEPS, FacetContribution, law_table
from .simulate.engine import clear_residue

#: What a map-grid observation holds (ellipsoid-referenced).
Quantity = Literal["beta0", "sigma0", "gamma0"]
QUANTITIES = ("beta0", "sigma0", "gamma0")


#: The dimension of a dual-polarisation image's bands (names such as "VV" and "VH").
POLARISATION_DIM = "polarisation"


@dataclasses.dataclass(frozen=True)
class Observation:
    """A resolved observation (build one with :func:`resolve_observation`).

    Attributes
    ----------
    geometry : the acquisition geometry of the image.
    image : in radar geometry, a numpy array of the product grid or a (line, sample)
        DataArray with absolute coordinates (linear beta0); on a map grid, the (y, x)
        DataArray with a CRS; None for a product.
    product : the SAFE product whose pixels are read window by window, or None.
    measurement : swath/polarisation of ``product``.
    quantity, in_db : what a map-grid image holds, and whether in dB.
    cross_image : the cross-polarised band of a dual-polarisation (polarisation, line,
        sample) DataArray, as ``image`` (None: none given; a product's is read from it).
    """

    geometry: RadarGeometry
    image: Any = None
    product: Path | None = None
    measurement: str = "IW/VV"
    quantity: Quantity = "beta0"
    in_db: bool = False
    cross_image: Any = None

    @property
    def on_map(self) -> bool:
        """Whether the image is geocoded to a map grid (its radar pixels are rebuilt)."""
        return isinstance(self.image, xr.DataArray) and {"y", "x"} <= set(self.image.dims)

    @property
    def lazy_image(self) -> bool:
        """Whether the image is a dask-backed DataArray, read only where asked for."""
        return isinstance(self.image, xr.DataArray) and not isinstance(self.image.data, np.ndarray)

    @property
    def description(self) -> str:
        """What the observation was, for the result's attributes."""
        if self.on_map:
            return f"map-grid {self.quantity}{' (dB)' if self.in_db else ''}, rebuilt in radar geometry"
        return "radar geometry, beta0"

    def on_window(self, window: RadarWindow) -> np.ndarray:
        """The observed intensity on ``window`` (lines x samples), NaN where the image has
        no pixel: float32 when the image is float32, else float64. Only the window is
        read from a product or a lazy image."""
        if self.product is not None:
            from .preprocess.sentinel1 import read_intensity

            image = read_intensity(self.product, self.measurement, calibration="beta", remove_noise=True,
                                   window=(window.line0, window.line_stop, window.sample0, window.sample_stop))
            return intensity_on_window(image, window)
        return intensity_on_window(self.image, window, self.geometry.grid.shape)

    def part(self, window: RadarWindow) -> xr.DataArray:
        """The part of a lazy (line, sample) image over ``window``, still lazy: a small
        graph to send to a worker, which reads it with :func:`intensity_on_window`."""
        image = self.image
        lines = np.asarray(image["line"].values)
        samples = np.asarray(image["sample"].values)
        keep_lines = np.flatnonzero((lines >= window.line0) & (lines < window.line_stop))
        keep_samples = np.flatnonzero((samples >= window.sample0) & (samples < window.sample_stop))
        if keep_lines.size == 0 or keep_samples.size == 0:
            return image.isel(line=slice(0, 0), sample=slice(0, 0))
        return image.isel(line=slice(keep_lines[0], keep_lines[-1] + 1),
                          sample=slice(keep_samples[0], keep_samples[-1] + 1))

    def check_covers(self, dem: xr.DataArray) -> None:
        """Refuse, before any work, a map-grid observation whose footprint misses the DEM's
        (nothing to check for the other kinds until the radar window is known)."""
        if not self.on_map:
            return
        left, bottom, right, top = self.image.rio.transform_bounds(dem.rio.crs)
        d_left, d_bottom, d_right, d_top = dem.rio.bounds()
        if left < d_right and right > d_left and bottom < d_top and top > d_bottom:
            return
        # Degrees need decimals to tell places apart; metres do not.
        decimals = 5 if dem.rio.crs.is_geographic else 0

        def box(w: float, s: float, e: float, n: float) -> str:
            return f"west {w:.{decimals}f}, south {s:.{decimals}f}, east {e:.{decimals}f}, north {n:.{decimals}f}"

        raise InvalidInputError(
            f"the geocoded SAR image ({box(left, bottom, right, top)}) does not overlap the DEM "
            f"({box(d_left, d_bottom, d_right, d_top)}; both in the DEM's CRS, {dem.rio.crs.to_string()}): "
            "give a DEM of the imaged area, or check the CRS written in each file"
        )


def resolve_observation(sar: Any, geometry: RadarGeometry | None, *, measurement: str = "IW/VV",
                        sar_quantity: Quantity = "sigma0", sar_db: bool = False) -> Observation:
    """An :class:`Observation` from what ``reconstruct`` accepts (see its ``sar``),
    refusing before any work what cannot be one: not real numbers, complex (SLC)
    values, the wrong shape, a partial (line, sample) image without the coordinates that
    place it, negative or infinite intensities (of an image in memory; a lazy one is
    checked window by window as it is read), a map-grid image without a CRS.

    ``geometry`` is read from the product when ``sar`` is a SAFE path and none is given.
    """
    if sar_quantity not in QUANTITIES:
        raise InvalidInputError(f"sar_quantity must be 'beta0', 'sigma0' or 'gamma0', got {sar_quantity!r}")
    name = "the SAR image"
    if isinstance(sar, (str, os.PathLike)) and Path(sar).is_file() and is_geotiff_path(sar):
        name = f"the SAR image {str(sar)!r}"
        sar = _read_map_geotiff(Path(sar))
    if isinstance(sar, (str, os.PathLike)):
        path = Path(sar)
        if geometry is None:
            geometry = RadarGeometry.from_sentinel1(path, measurement)
        _check_geometry(geometry)
        return Observation(geometry, product=path, measurement=measurement)
    if geometry is None:
        raise InvalidInputError(
            "a geometry is needed for an array observation: pass geometry=RadarGeometry.from_sentinel1(...) "
            "or RadarGeometry.synthetic(...), or give the product path instead"
        )
    _check_geometry(geometry)
    cross = None
    if isinstance(sar, xr.DataArray) and POLARISATION_DIM in sar.dims:
        sar, cross = polarisation_bands(sar, measurement)
    if isinstance(sar, xr.DataArray) and {"y", "x"} <= set(sar.dims):
        _check_map_image(sar)
        check_image_geometry(sar.attrs, geometry, name)
        _check_map_values(sar, sar_db)
        return Observation(geometry, image=sar, quantity=sar_quantity, in_db=sar_db)
    if isinstance(sar, xr.DataArray) and "azimuth_time" in sar.dims:
        sar = _from_xarray_sentinel(sar)
        if cross is not None:
            cross = _from_xarray_sentinel(cross)
    if isinstance(sar, xr.DataArray):
        check_image_geometry(sar.attrs, geometry, name)
    _check_radar_image(sar, geometry)
    if cross is not None:
        _check_radar_image(cross, geometry)
    return Observation(geometry, image=sar, cross_image=cross)


def polarisation_bands(sar: xr.DataArray, measurement: str = "IW/VV") -> tuple[xr.DataArray, xr.DataArray | None]:
    """The co-polarised band of a dual-polarisation radar image (dims (polarisation,
    line, sample)) named by ``measurement`` (``"IW/VV"``: "VV"), and the cross-polarised
    band beside it ("VH" beside "VV", "HV" beside "HH"), or None where the image has none.

    Raises
    ------
    InvalidInputError : no polarisation names, a map-grid image with bands, or the
        measurement's polarisation not among the bands.
    """
    from .preprocess.sentinel1.product import CROSS_POLARISATIONS

    if {"y", "x"} <= set(sar.dims):
        raise InvalidInputError("a map-grid image with polarisation bands: give the co-polarised band alone (its "
                                "radar pixels are rebuilt from the map; the cross-polarised ratio is read from images "
                                "in radar geometry)")
    if POLARISATION_DIM not in sar.coords:
        raise InvalidInputError(f"the image's {POLARISATION_DIM} dimension has no names: give them as a coordinate "
                                f"(image.assign_coords({POLARISATION_DIM}=['VV', 'VH']))")
    names = [str(name).upper() for name in np.asarray(sar[POLARISATION_DIM].values).tolist()]
    wanted = next((part.upper() for part in str(measurement).split("/") if part.upper() in CROSS_POLARISATIONS),
                  None)
    if wanted is None or wanted not in names:
        raise InvalidInputError(f"the image's polarisations are {', '.join(names)}, the measurement {measurement!r} "
                                f"asks for {wanted or 'a co-polarised band (VV or HH)'}: name it in the measurement "
                                "(measurement='IW/HH'), or give that band")

    def band(name: str) -> xr.DataArray:
        return sar.isel({POLARISATION_DIM: names.index(name)}, drop=True).assign_attrs(sar.attrs)

    cross = CROSS_POLARISATIONS[wanted]
    return band(wanted), band(cross) if cross in names else None


#: The prefix of the tags that say which geometry a geocoded image was made under
#: (:func:`geometry_tags`; ``sarheight simulate`` writes them).
GEOMETRY_TAG = "geometry_"
#: How far the geometry given may differ from those tags (their units): beyond, the image
#: was made under another pass or sensor geometry.
GEOMETRY_TOLERANCES = {"heading_deg": 0.5, "incidence_near_deg": 0.05, "incidence_far_deg": 0.05,
                       "range_spacing_m": 1e-3, "line_interval_s": 1e-6}


_TAG_WORDS = {"product": "product", "look_side": "look side", "heading_deg": "heading",
              "incidence_near_deg": "near-range incidence", "incidence_far_deg": "far-range incidence",
              "range_spacing_m": "range pixel spacing", "line_interval_s": "line interval"}


#: The dims only an image in radar geometry has (a DEM lies on a map grid, y and x).
RADAR_DIMS = frozenset({"line", "sample", "azimuth_time", "slant_range_time", "ground_range", "pixel"})


def looks_like_an_observation(value: Any) -> bool:
    """Whether ``value`` can only be an observation, never a DEM: a Sentinel-1 product (a
    ``.SAFE`` folder, its ``.zip`` or its ``manifest.safe``), a bare array (a DEM comes with
    its transform and CRS), or a DataArray in radar geometry (:data:`RADAR_DIMS`)."""
    if isinstance(value, np.ndarray):
        return True
    if isinstance(value, xr.DataArray):
        return bool(RADAR_DIMS & set(value.dims))
    if isinstance(value, (str, os.PathLike)):
        path = Path(value)
        name = path.name.lower()
        return name.endswith((".safe", ".zip")) or name == "manifest.safe" or (path / "manifest.safe").is_file()
    return False


def check_argument_order(dem: Any, sar: Any, call: str) -> None:
    """Refuse an observation given where the DEM goes (the order of sarheight's entries:
    the DEM first, then the observation(s), then the geometry), before any work.

    Raises
    ------
    InvalidInputError : naming the order ``call`` takes.
    """
    observations = list(sar) if isinstance(sar, (list, tuple)) else [sar]
    if looks_like_an_observation(dem) and not all(looks_like_an_observation(item) for item in observations):
        raise InvalidInputError(
            f"the first argument is an observation (a SAR product or a radar-geometry image) and the second is not: "
            f"sarheight takes the DEM first, then the observation(s), then the geometry: {call}")


def geometry_tags(geometry: RadarGeometry, options: str | None = None) -> dict[str, Any]:
    """The tags that say which geometry an image was made under (its flat description,
    :meth:`RadarGeometry.to_attrs`, each key prefixed ``geometry_``); ``options``: how the
    command line names it (``--geometry synthetic --heading 192``), for messages."""
    tags = {f"{GEOMETRY_TAG}{key}": value for key, value in geometry.to_attrs().items()}
    if options:
        tags[f"{GEOMETRY_TAG}options"] = options
    return tags


def _geometry_words(values: dict[str, Any]) -> str:
    product = str(values.get("product", "a product"))
    words = ["a synthetic geometry" if product == "synthetic" else f"the product {product}"]
    with contextlib.suppress(TypeError, ValueError):
        words.append(f"heading {float(values['heading_deg']):.1f} deg")
    if "incidence_near_deg" in values and "incidence_far_deg" in values:
        words.append(f"incidence {float(values['incidence_near_deg']):g}-{float(values['incidence_far_deg']):g} deg")
    if "look_side" in values:
        words.append(f"{values['look_side']}-looking")
    return ", ".join(words)


def check_image_geometry(attrs: dict[str, Any], geometry: RadarGeometry, name: str = "the SAR image") -> None:
    """Refuse a geocoded image whose tags (:func:`geometry_tags`) say it was made under
    another geometry than ``geometry`` (another product, heading, look side, incidence
    or pixel spacing); an image without them passes.

    Raises
    ------
    InvalidInputError : naming both geometries, and the image's own as the command line
        names it where its tags say.
    """
    tagged = {key[len(GEOMETRY_TAG):]: value for key, value in attrs.items() if key.startswith(GEOMETRY_TAG)}
    if not tagged:
        return
    given = geometry.to_attrs()
    differ = [key for key in ("product", "look_side") if key in tagged and key in given
              and str(tagged[key]) != str(given[key])]
    for key, tolerance in GEOMETRY_TOLERANCES.items():
        if key not in tagged or key not in given:
            continue
        try:
            difference = abs(float(tagged[key]) - float(given[key]))
        except (TypeError, ValueError):
            continue
        if key == "heading_deg":
            difference = min(difference, 360.0 - difference)
        if difference > tolerance:
            differ.append(key)
    if differ:
        options = tagged.get("options")
        raise InvalidInputError(
            f"{name} was made under {_geometry_words(tagged)}, not under the geometry given "
            f"({_geometry_words(given)}; the {', '.join(_TAG_WORDS[key] for key in differ)} "
            f"{'differs' if len(differ) == 1 else 'differ'}): give the "
            f"geometry it was made under{f' ({options})' if options else ''}, or the image of this geometry"
        )


def _check_geometry(geometry: Any) -> None:
    if not isinstance(geometry, RadarGeometry):
        raise InvalidInputError(f"geometry must be a RadarGeometry, got {type(geometry).__name__}")


#: Band names of the rasters sarheight writes that hold heights (refused as a SAR image).
HEIGHT_BANDS = ("height", "coarse", "elevation", "dem", "inverted", "height_std")


def _read_map_geotiff(path: Path) -> xr.DataArray:
    """A single-band GeoTIFF geocoded to a map grid, as a (y, x) DataArray (masked, loaded);
    or one in radar geometry as ``sarheight simulate`` writes it
    (:func:`sarheight.io.write_radar_image`), as a (line, sample) DataArray of absolute
    pixel coordinates, its tags (looks, noise floor, geometry) as attributes."""
    import rasterio.errors
    import rioxarray

    with open_raster(path, "the SAR image") as dataset:
        if dataset.count != 1:
            raise InvalidInputError(
                f"{str(path)!r} has {dataset.count} bands: give a single-band GeoTIFF of the observation "
                "(e.g. gdal_translate -b 1 IN.tif OUT.tif)"
            )
        description = (dataset.descriptions[0] or "").strip().lower() if dataset.descriptions else ""
        tags = dataset.tags()
        vertical = dataset.crs is not None and "VERT_CS" in dataset.crs.to_wkt(version="WKT1_GDAL")
        if description in HEIGHT_BANDS or "vertical_datum" in tags or "source_vertical_datum" in tags or vertical:
            seen = (f"heights (its band is named {description!r})" if description in HEIGHT_BANDS
                    else "heights (its CRS has a vertical datum)" if vertical
                    else "heights (its tags name a vertical datum)")
            raise InvalidInputError(f"the SAR image {str(path)!r} holds {seen}, not backscatter: give the SAR image "
                                    "there (a DEM goes to --dem)")
        radar = dataset.crs is None and is_radar_image(tags)
        if dataset.crs is None and not radar:
            raise InvalidInputError(
                f"{str(path)!r} has no CRS: a GeoTIFF observation must be geocoded to a map grid, or in radar "
                "geometry as sarheight simulate writes it (its first_line and first_sample tags)"
            )
        check_memory(dataset.width * dataset.height * 8, f"the SAR image {str(path)!r}")
        if radar:
            return read_radar_image(dataset, path.stem)
        try:
            return rioxarray.open_rasterio(dataset, masked=True).squeeze("band", drop=True).load()
        except (rasterio.errors.RasterioError, OSError, ValueError) as error:
            raise InvalidInputError(
                f"the SAR image {str(path)!r} cannot be read ({error}): the file is truncated or corrupt"
            ) from error


def _from_xarray_sentinel(sar: xr.DataArray) -> xr.DataArray:
    """An xarray-sentinel measurement (azimuth_time x slant_range_time|ground_range, with
    line/pixel coordinates) as a (line, sample) DataArray of absolute indices."""
    range_dim = next(d for d in ("slant_range_time", "ground_range", "pixel") if d in sar.dims)
    azimuth_dim = "azimuth_time" if "azimuth_time" in sar.dims else "line"
    if "line" not in sar.coords or "pixel" not in sar.coords:
        raise InvalidInputError(
            "the xarray-sentinel measurement has no line/pixel coordinates: open it with "
            "xarray_sentinel.open_sentinel1_dataset and calibrate it with calibrate_intensity"
        )
    if np.issubdtype(sar.dtype, np.complexfloating):
        raise InvalidInputError(
            "the measurement is complex: give calibrated intensity "
            "(xarray_sentinel.calibrate_intensity(measurement, calibration.betaNought))"
        )
    out = sar.swap_dims({azimuth_dim: "line"}) if azimuth_dim != "line" else sar
    out = out.swap_dims({range_dim: "pixel"}) if range_dim != "pixel" else out
    out = out.rename({"pixel": "sample"})
    return out.drop_vars([c for c in out.coords if c not in ("line", "sample")])


def _check_radar_image(sar: Any, geometry: RadarGeometry) -> None:
    """Refuse an observation in radar geometry that cannot be one: not real numbers, not
    the product grid's shape, a (line, sample) DataArray of part of the grid without the
    coordinates that place it, or negative or infinite intensities."""
    dtype = getattr(sar, "dtype", None)
    if dtype is None:
        try:
            dtype = np.asarray(sar).dtype
        except Exception:
            dtype = np.dtype(object)
    if dtype.kind == "c":
        raise InvalidInputError(
            "the SAR image is complex (SLC values): give linear intensity calibrated to beta0, "
            "|s|^2 / A_beta^2 (a SAFE path does this), not the complex samples"
        )
    if dtype.kind not in "fiu":
        raise InvalidInputError(
            f"the SAR image must hold real numbers (linear beta0), got dtype {dtype}"
        )
    grid = geometry.grid.shape
    if isinstance(sar, xr.DataArray):
        if not {"line", "sample"} <= set(sar.dims) or sar.ndim != 2:
            raise InvalidInputError(
                f"a DataArray observation needs dims (line, sample) in radar geometry, or (y, x) with a CRS "
                f"on a map grid; got {sar.dims}"
            )
        sizes = (sar.sizes["line"], sar.sizes["sample"])
        missing = [dim for dim in ("line", "sample") if dim not in sar.coords]
        if missing and sizes != grid:
            raise InvalidInputError(
                f"the (line, sample) DataArray has {sizes[0]} x {sizes[1]} pixels, not the whole product grid "
                f"{grid[0]} x {grid[1]}, and no {' or '.join(missing)} coordinate: give the absolute "
                "line and sample indices of its pixels as coordinates"
            )
        if not isinstance(sar.data, np.ndarray):
            return  # lazy: checked window by window as it is read
    elif np.shape(sar) != grid:
        raise InvalidInputError(
            f"the SAR image has shape {np.shape(sar)} but the geometry's grid is {grid}: give the full image of "
            "the product grid, or a DataArray with dims (line, sample) and absolute line/sample coordinates"
        )
    check_values(sar.values if isinstance(sar, xr.DataArray) else sar)


def intensity_flags(values: Any) -> tuple[bool, bool, bool, bool]:
    """Whether an array of real numbers holds an infinite value, a negative one, a finite
    one and a NaN: one threaded pass over a 2-D float image
    (``kernels.reallocation.intensity_problems``; the image can be a whole product's)."""
    values = np.asarray(values)
    if values.dtype.kind in "iu":
        # Integers are never infinite nor NaN; unsigned ones never negative.
        return False, bool(values.dtype.kind == "i" and values.size and values.min() < 0), values.size > 0, False
    if values.ndim == 2 and values.dtype in (np.float32, np.float64) and values.flags.c_contiguous:
        return compute_intensity_flags(values)
    return (bool(np.isinf(values).any()), bool(values.size and np.nanmin(values, initial=np.inf) < 0),
            bool(np.isfinite(values).any()), bool(np.isnan(values).any()))


def check_values(values: Any, flags: tuple[bool, bool, bool, bool] | None = None) -> None:
    """Refuse negative or infinite intensities (an array of real numbers) before any work;
    ``flags``: its :func:`intensity_flags`, when known."""
    infinite, negative, _, _ = intensity_flags(values) if flags is None else flags
    if infinite:
        raise InvalidInputError("the SAR image has infinite values: mask them as NaN first")
    if negative:
        raise InvalidInputError(
            "the SAR image has negative intensities: give linear power (e.g. beta0), not amplitude "
            "differences or dB (convert dB with 10 ** (db / 10))"
        )


def check_intensity(observed: np.ndarray, window: RadarWindow) -> None:
    """Refuse the intensities read on ``window`` where none is finite (the image does not
    cover the DEM) or some are negative or infinite."""
    flags = intensity_flags(observed)
    if not flags[2]:
        line0, n_lines, sample0, n_samples = window
        raise InvalidInputError(
            f"the SAR image has no finite value where the DEM falls (lines {line0}..{line0 + n_lines - 1}, "
            f"samples {sample0}..{sample0 + n_samples - 1}): the image does not cover the DEM"
        )
    check_values(observed, flags)


#: Median linear intensity above which an observation looks like dB or digital numbers:
#: calibrated beta0 is a few tenths in mountains, rarely above 1 even on bright slopes.
LINEAR_MEDIAN_LIMIT = 10.0
#: Values of a plausibility check: an even sample of the window is enough.
_PLAUSIBILITY_SAMPLES = 100_000


def warn_if_implausible(observed: np.ndarray) -> None:
    """Warn (:class:`~sarheight.errors.PlausibilityWarning`) when the intensities read under
    the DEM are all zero (a placeholder product) or look like dB or digital numbers rather
    than linear power."""
    values = np.asarray(observed).ravel()
    values = values[:: max(1, values.size // _PLAUSIBILITY_SAMPLES)]
    values = values[np.isfinite(values)]
    if not values.size:
        return
    if not values.any():
        warnings.warn(
            "the SAR image is all zero where the DEM falls: a placeholder product (one whose measurement holds "
            "no pixels), or a mask? Every reconstructed value is then zero",
            PlausibilityWarning, stacklevel=user_stacklevel())
    elif float(np.median(values[values > 0])) > LINEAR_MEDIAN_LIMIT:
        warnings.warn(
            f"the SAR image's median intensity is {float(np.median(values[values > 0])):.3g}: that looks like "
            "amplitude, digital numbers or dB, not calibrated linear power (beta0 is mostly below 1); calibrate it "
            "(a SAFE path does), or convert dB with 10 ** (db / 10)",
            PlausibilityWarning, stacklevel=user_stacklevel())


def intensity_summary(values: Any, *, in_db: bool = False) -> dict[str, float]:
    """The level and spread of an observation's values where they are finite and positive
    (an even sample of at most :data:`_PLAUSIBILITY_SAMPLES`): ``observed_median_db`` and
    ``observed_spread_db`` (the scaled median absolute deviation of the values in dB,
    :func:`sarheight.raster.robust_spread`), and ``observed_sampled`` the values
    judged. Speckle alone spreads a Sentinel-1 image by several dB, even multi-looked; a
    constant or placeholder image by none. NaN figures where no value is judged."""
    # Sampled before converted: a window's float32 image is not copied whole to float64.
    values = np.ravel(np.asarray(values))
    values = values[:: max(1, values.size // _PLAUSIBILITY_SAMPLES)].astype(np.float64)
    if in_db:
        decibels = values[np.isfinite(values)]
    else:
        decibels = power_to_db(values[np.isfinite(values) & (values > 0)], np.float64)
    if not decibels.size:
        return {"observed_median_db": float("nan"), "observed_spread_db": float("nan"), "observed_sampled": 0}
    median = float(np.median(decibels))
    return {"observed_median_db": median, "observed_spread_db": robust_spread(decibels, median),
            "observed_sampled": int(decibels.size)}


def warn_partial_coverage(where: str) -> None:
    """Say that the observation lacks ``where`` (pixels under the DEM), and what follows
    (pointing at the user's call)."""
    warnings.warn(
        f"the SAR image has no value (NaN) in {where}: the cells whose facets reach them are NaN in "
        "backscatter and flattened (crop the DEM to the image, or give an image that covers it)",
        PartialCoverageWarning, stacklevel=user_stacklevel())


def intensity_on_window(image: Any, window: RadarWindow, grid_shape: tuple[int, int] | None = None) -> np.ndarray:
    """The intensity of ``image`` on ``window`` (lines x samples), NaN where it has no pixel.

    ``image``: a (line, sample) DataArray with absolute coordinates (or none, then it is
    the whole grid), or an array of the whole product grid (``grid_shape``). float32 when
    the image is float32 (no wider copy), else float64; a view of a full-grid array or of
    an image made on exactly the window. Only the window is read from a lazy DataArray.
    """
    line0, n_lines, sample0, n_samples = window
    if isinstance(image, xr.DataArray) and {"line", "sample"} <= set(image.dims):
        values = image.transpose("line", "sample")
        lines = np.asarray(values["line"].values) if "line" in values.coords else np.arange(values.shape[0])
        samples = np.asarray(values["sample"].values) if "sample" in values.coords else np.arange(values.shape[1])
        dtype = np.float32 if values.dtype == np.float32 else np.float64
        rows = lines - line0
        cols = samples - sample0
        if (rows.size == n_lines and cols.size == n_samples and _consecutive(rows) and _consecutive(cols)
                and rows[:1].tolist() == [0] and cols[:1].tolist() == [0]
                and isinstance(values.data, np.ndarray) and values.dtype == dtype and values.data.flags.c_contiguous):
            # Exactly the window (an image made on it, as simulate_sar's): no copy.
            return values.data
        out = np.full((n_lines, n_samples), np.nan, dtype=dtype)
        keep_r = (rows >= 0) & (rows < n_lines)
        keep_c = (cols >= 0) & (cols < n_samples)
        if not keep_r.any() or not keep_c.any():
            return out
        r_in, c_in = np.flatnonzero(keep_r), np.flatnonzero(keep_c)
        # Only the part over the window is read (a lazy array loads just that).
        part = values.isel(line=slice(r_in[0], r_in[-1] + 1), sample=slice(c_in[0], c_in[-1] + 1))
        data = np.asarray(part.values)
        r_in, c_in = r_in - r_in[0], c_in - c_in[0]
        if _consecutive(rows[keep_r]) and _consecutive(cols[keep_c]) and _consecutive(r_in) and _consecutive(c_in):
            # The usual case, an image on a regular grid: one slice, no fancy-index copy.
            first_r, first_c = rows[keep_r][0], cols[keep_c][0]
            out[first_r:first_r + data.shape[0], first_c:first_c + data.shape[1]] = data
        else:
            out[np.ix_(rows[keep_r], cols[keep_c])] = np.asarray(data, dtype=dtype)[np.ix_(r_in, c_in)]
        return out
    array = np.asarray(image)
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    if grid_shape is not None and array.shape == grid_shape:
        return array[line0:line0 + n_lines, sample0:sample0 + n_samples]
    raise InvalidInputError(
        f"the SAR image has shape {array.shape} but the geometry's grid is {grid_shape}: give the full image of "
        "the product grid, or a DataArray with dims (line, sample) and absolute line/sample coordinates"
    )


def _consecutive(index: np.ndarray) -> bool:
    return bool(index.size == 0 or (index[-1] - index[0] == index.size - 1 and np.all(np.diff(index) == 1)))


def _check_map_image(image: xr.DataArray) -> None:
    """Refuse a map-grid observation without a CRS or with values that are not real, or
    infinite, before any work (negative values are judged once the dB question is settled,
    on the resampled image)."""
    if image.rio.crs is None:
        raise InvalidInputError("the geocoded SAR image has no CRS: write one with image.rio.write_crs(...)")
    if image.dtype.kind not in "fiu":
        raise InvalidInputError(f"the geocoded SAR image must hold real numbers, got dtype {image.dtype}")
    if image.dtype.kind == "f" and bool(np.isinf(image.values).any()):
        raise InvalidInputError("the geocoded SAR image has infinite values: mask them as NaN first")


def _check_map_values(image: xr.DataArray, in_db: bool) -> None:
    """Refuse, before any work, negative values given as linear power (resampling keeps
    non-negative values non-negative): most often an image in dB; warn where values given
    as dB are all positive (most often linear power)."""
    values = image.values
    if not in_db and image.dtype.kind in "fi" and bool((values < 0).any()):
        raise InvalidInputError(
            "the geocoded SAR image has negative values: give linear power, or sar_db=True if it is in dB"
        )
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values.ravel()
    if in_db and finite.size and bool((finite > 0).all()):
        warnings.warn(
            "the geocoded SAR image, given as dB (sar_db=True), is positive everywhere: backscatter in dB is mostly "
            "negative; if the values are linear power, leave sar_db out",
            PlausibilityWarning, stacklevel=user_stacklevel())


def _shared_by_law(simulation: Simulation) -> bool:
    """Whether the simulation's facets contribute a law of their own local incidence (the
    empirical law), which a map-grid image's cells can be shared by."""
    contribution = simulation.contribution
    return contribution.code == CONTRIBUTION_MODEL and contribution.table.size <= 1


def _law_factor(observation: Observation, simulation: Simulation, values: np.ndarray) -> np.ndarray:
    """Each DEM cell's beta0 per unit of the simulation's law: the map image's sigma0
    over the sigma0 the law gives on each of its pixels (the DEM's cells averaged over
    the pixel, area-weighted), resampled (bilinear) onto the DEM grid, over the sine of
    the cell's ellipsoid incidence. A map pixel is the mean of the facets under it: its
    ratio to the law, not its value, is what varies smoothly between pixels. NaN where
    the image has none."""
    from rasterio.enums import Resampling
    from scipy import ndimage

    image = observation.image
    theta = simulation.cells["incidence"].astype(np.float64)

    def on_image_grid(per_cell: np.ndarray) -> np.ndarray:
        field = simulation.dem.copy(data=np.asarray(per_cell, dtype=np.float64)).rio.write_nodata(np.nan)
        return np.asarray(field.rio.reproject_match(image, resampling=Resampling.average).values, dtype=np.float64)

    area = on_image_grid(np.nan_to_num(simulation.per_cell["sigma_area"]))
    with np.errstate(invalid="ignore", divide="ignore"):
        modelled = on_image_grid(np.nan_to_num(simulation.per_cell["contribution"])) / area
        incidence = on_image_grid(theta)
        sigma0 = {"sigma0": values, "beta0": values * np.sin(incidence),
                  "gamma0": values * np.tan(incidence)}[observation.quantity]
        ratio = np.where(modelled > 0, sigma0 / modelled, np.nan)
    # Pixels the law leaves dark (shadow, facing away) take their neighbours' ratio: their
    # cells carry nothing, but the bilinear resampling reads them beside lit ones.
    observed = np.isfinite(sigma0)
    known = np.isfinite(ratio)
    if not known.any():
        return np.full(theta.shape, np.nan)
    if (observed & ~known).any():
        _, (rows, cols) = ndimage.distance_transform_edt(~known, return_indices=True)
        ratio = np.where(observed, ratio[rows, cols], np.nan)
    ratio_image = image.copy(data=ratio.astype(np.float64)).rio.write_nodata(np.nan)
    on_dem = ratio_image.rio.reproject_match(simulation.dem, resampling=Resampling.bilinear)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.asarray(on_dem.values, dtype=np.float64) / np.sin(theta)


def rebuilt_in_radar_geometry(observation: Observation, simulation: Simulation) -> Observation:
    """A map-grid observation's radar pixels, rebuilt through the simulation of the DEM
    (which keeps its per-cell sums), as an observation in radar geometry.

    Each radar pixel gets the area-weighted mean beta0 of the cells whose facets land in
    it, through the same exact projection as the simulation. Where the simulation's
    contribution is the empirical law, each cell's energy is shared among its facets as
    the law shares it, from the image's ratio to the law (:func:`_law_factor`): a map
    pixel averages its facets, and spreading that mean evenly would move the brightness of
    the facets facing the radar onto those behind them (a third of a radar pixel on SRTM3
    relief, which a registration to the image reads as a shift of the terrain). Else the
    image is resampled (bilinear) onto the DEM grid, converted to beta0 with the ellipsoid
    incidence angle of each cell (sigma0 = beta0 sin(theta), gamma0 = beta0 tan(theta)),
    and shared evenly. Cells in shadow carry no signal (only noise) and are left out.
    """
    from rasterio.enums import Resampling

    image = observation.image
    if observation.in_db:
        image = 10.0 ** (image / 10.0)
        observation = dataclasses.replace(observation, image=image.assign_attrs(observation.image.attrs),
                                          in_db=False)
    on_dem = image.rio.reproject_match(simulation.dem, resampling=Resampling.bilinear)
    values = np.asarray(on_dem.values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise InvalidInputError("the geocoded SAR image has no value where the DEM falls (all NaN there): it does not "
                                "overlap the DEM, or it is masked there; give an image of the DEM's area")
    if np.any(finite < 0):
        raise InvalidInputError("the geocoded SAR image has negative values: give linear power, or sar_db=True for dB")
    area = np.nan_to_num(simulation.per_cell["sigma_area"])
    contribution = simulation.contribution
    if _shared_by_law(simulation):
        factor = _law_factor(observation, simulation, np.asarray(image.values, dtype=np.float64))
        have = np.isfinite(factor) & (area > 0)
        energy = FacetContribution(CONTRIBUTION_CELL_LAW, contribution.law, np.zeros(0),
                                   np.ascontiguousarray(np.where(have, factor, 0.0)),
                                   "map-grid observation, shared by the law", np.zeros(area.shape, dtype=np.int64),
                                   np.stack([law_table(empirical_sigma0, CELL_LAW_STEPS)]))
    else:
        theta = simulation.cells["incidence"].astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            beta = {"beta0": values, "sigma0": values / np.sin(theta), "gamma0": values / np.tan(theta)}[
                observation.quantity]
        have = np.isfinite(beta) & (area > 0)
        energy = FacetContribution(CONTRIBUTION_USER, contribution.law, np.zeros(0),
                                   np.ascontiguousarray(np.where(have, beta * area, 0.0)), "map-grid observation")
    images = []
    for shared in (energy, FacetContribution(CONTRIBUTION_USER, contribution.law, np.zeros(0),
                                             np.ascontiguousarray(np.where(have, area, 0.0)), "map-grid observation")):
        rebuilt = channels(simulation.facet_pass(gather=False, contribution=shared, consume=lambda *_: None,
                                                 per_cell=False)[-1])[:1]
        clear_residue(rebuilt, simulation.window, simulation.smooth_fields, shared)
        images.append(rebuilt[0])
    weighted, weight = (np.ascontiguousarray(rebuilt, dtype=np.float64) for rebuilt in images)
    pixels = weighted_mean(weighted, weight)
    return Observation(observation.geometry, image=xr.DataArray(pixels, dims=("line", "sample"),
                                                                coords=simulation.window.coords()))
