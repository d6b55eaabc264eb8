"""Every image a refinement reads (:func:`radar_image`, :func:`composite_images`): each observation read
in radar geometry over the DEM; the dates of one acquisition grid whose levels agree
composited, a date of another level (wet snow) kept apart with a law of its own.

The speckle of an image as the inversion weighs it (:func:`speckle_variance`).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from scipy import special

from ..compute import Compute
from ..dem import Dem, checked_dem
from ..errors import InvalidInputError, SarHeightError
from ..geometry import RadarGeometry, RadarWindow
from ..io import is_geotiff_path
from ..observation import (
    check_argument_order,
    intensity_on_window,
    intensity_summary,
    rebuilt_in_radar_geometry,
    resolve_observation,
)
from ..simulate import run_simulation
from ..simulate.cells import cell_geometry, radar_window

#: Nepers per decibel.
NEPER_PER_DB = math.log(10.0) / 10.0


#: The equivalent number of looks of a Sentinel-1 IW GRD (high resolution) pixel, taken
#: for an image that does not say its own.
DEFAULT_LOOKS = 4.4


#: The resolution cell of a Sentinel-1 IW GRD (high resolution) image (m^2: 20 m in range
#: by 22 m in azimuth, sampled every 10 m): its pixels are not independent looks.
IW_GRDH_RESOLUTION_M2 = 20.0 * 22.0


def iw_grdh_looks(cell_area_m2: float) -> float:
    """The equivalent looks of one Sentinel-1 IW GRDH date averaged over a grid cell of
    ``cell_area_m2`` (m^2): :data:`DEFAULT_LOOKS` per resolution cell
    (:data:`IW_GRDH_RESOLUTION_M2`) times the resolution cells the grid cell holds (at
    least one). What a simulated image at the grid's cell size carries to be one real date."""
    if not (math.isfinite(cell_area_m2) and cell_area_m2 > 0):
        raise InvalidInputError(f"cell_area_m2 must be a positive number of square metres, got {cell_area_m2!r}")
    return DEFAULT_LOOKS * max(1.0, cell_area_m2 / IW_GRDH_RESOLUTION_M2)


#: The looks taken for an image without speckle (a simulation's "none").
NO_SPECKLE_LOOKS = 1e6


#: Local incidence angles (degrees) outside which a cell's ratio is not read.
USEFUL_INCIDENCE_DEG = (10.0, 80.0)


#: The level difference (dB) between a date and its pass's median beyond which the date
#: is not composited with the others (wet snow: 3 dB and more below the snow-free ground;
#: a soaked or frozen ground): kept as a group of its own, with its own law. Within it, a
#: date's moisture moves its level, not the brightness of one slope against another: the
#: linear mean keeps the relief's pattern.
DATE_LEVEL_TOLERANCE_DB = 2.0


def speckle_variance(looks: float) -> float:
    """The variance of the natural log of speckle of ``looks`` equivalent looks (a gamma
    variable of shape ``looks``): the trigamma function, ``psi_1(looks)`` (nepers^2)."""
    return float(special.polygamma(1, float(looks)))


@dataclasses.dataclass(frozen=True)
class InversionImage:
    """One observation, or a composite of several dates, in radar geometry.

    Attributes
    ----------
    image : (line, sample) DataArray of linear beta0 with absolute product coordinates,
        covering the DEM's footprint (with a margin).
    geometry : its acquisition geometry.
    looks : the equivalent number of looks of a pixel (a composite of N dates: N times
        a date's).
    name : what it is, for messages and attributes.
    dates : how many dates it composites.
    level_db : the median beta0 (dB) of the image over the DEM.
    spread_db : the spread (dB, scaled median absolute deviation) of its beta0 over the
        DEM (NaN where not measured): speckle alone gives several dB, a placeholder none.
    nesz_db : the noise-equivalent sigma0 (dB) of its additive noise floor, or None where
        it has none (or it was removed).
    cross_image : the cross-polarised image of the same acquisition on the same pixels
        (VH beside VV, HV beside HH; linear), or None where the product has one
        polarisation: its ratio to ``image`` tells land covers apart whatever the slope
        (:func:`sarheight.terrain.forward.cross_ratio_feature`).
    compute : where the simulations of the inversion's forward model of this image run
        (:func:`sarheight.compute.compute_for_run`: a GPU); None, the numba kernels.
    """

    image: xr.DataArray
    geometry: RadarGeometry
    looks: float = DEFAULT_LOOKS
    name: str = "image"
    dates: int = 1
    level_db: float = math.nan
    nesz_db: float | None = None
    cross_image: xr.DataArray | None = None
    compute: Compute | None = None
    spread_db: float = math.nan

    @property
    def window(self) -> RadarWindow:
        """The radar window the image covers."""
        lines, samples = self.image["line"].values, self.image["sample"].values
        return RadarWindow(int(lines[0]), int(lines.size), int(samples[0]), int(samples.size))


#: The Gaussian smoothing (cells) of the observed brightness whose gradient says how a
#: cell's reading changes as its height moves it in the image.
TRANSLATION_SMOOTHING = 2.0


#: Pixels of margin around the DEM's radar window an image is read with: a height change
#: of the inversion moves cells by a few pixels.
WINDOW_MARGIN = 24


def radar_image(dem: xr.DataArray | Dem, sar: Any, geometry: RadarGeometry | None, *, measurement: str = "IW/VV",
                sar_quantity: str = "sigma0", sar_db: bool = False, looks: float | None = None,
                nesz_db: float | None = None, name: str | None = None, cross_polarised: bool = True
                ) -> InversionImage:
    """An observation as :func:`sarheight.reconstruction.reconstruct` takes it (a SAFE product, a
    radar-geometry array or DataArray with ``geometry``, an xarray-sentinel measurement,
    or a geocoded sigma0 GeoTIFF or map DataArray with ``geometry``), read in radar
    geometry over ``dem``'s footprint.

    A map-grid image's radar pixels are rebuilt through the simulation of ``dem``
    (:func:`sarheight.observation.rebuilt_in_radar_geometry`): geocoding already mixed
    what layover mixed, so it is read as well as that allows. ``looks``: the image's
    equivalent number of looks; default its ``looks`` attribute, else
    :data:`DEFAULT_LOOKS`. ``nesz_db``: the noise floor (dB) the image carries; default its
    ``nesz_db`` attribute (a simulation's), else none. ``cross_polarised``: also read the
    cross-polarised image of a dual-polarisation product (VH beside VV), on the same
    pixels (:attr:`InversionImage.cross_image`: the land cover's VH/VV ratio).

    Raises
    ------
    InvalidInputError, GeometryError : what :func:`resolve_observation` refuses, an image
        that does not cover the DEM, or one without a positive value over it.
    """
    check_argument_order(dem, sar, "radar_image(dem, sar, geometry)")
    observation = resolve_observation(sar, geometry, measurement=measurement, sar_quantity=sar_quantity,
                                      sar_db=sar_db)
    checked = checked_dem(dem, copy=False)
    dem = checked.heights
    cross_image = None
    if observation.on_map:
        state = run_simulation(checked, observation.geometry, every_line=False)
        rebuilt = rebuilt_in_radar_geometry(observation, state)
        image = rebuilt.image
    else:
        cells = cell_geometry(dem, observation.geometry, own_surface=False)
        window = radar_window(cells["line"], cells["sample"], cells["valid"], observation.geometry,
                              margin=WINDOW_MARGIN)
        values = np.asarray(observation.on_window(window), dtype=np.float32)
        image = xr.DataArray(values, dims=("line", "sample"), coords=window.coords())
        cross_image = _cross_polarised(observation, window) if cross_polarised else None
    values = np.asarray(image.values, dtype=np.float64)
    if not observation.on_map:
        # The level over the pixels the DEM's cells fall in, not the margin around them.
        rows = np.rint(cells["line"][cells["valid"]] - window.line0).astype(np.int64)
        cols = np.rint(cells["sample"][cells["valid"]] - window.sample0).astype(np.int64)
        keep = (rows >= 0) & (rows < values.shape[0]) & (cols >= 0) & (cols < values.shape[1])
        values = values[rows[keep], cols[keep]]
    positive = values[np.isfinite(values) & (values > 0)]
    label = name or _observation_name(sar)
    if positive.size < 16:
        raise InvalidInputError(f"the observation {label} has no positive value over the DEM (zero or no data "
                                "everywhere there): a placeholder or masked product cannot refine the DEM; give the "
                                "calibrated image itself, of the DEM's area")
    # What the image says of itself: its attributes, or the tags of the file it was read from.
    said = observation.image.attrs if isinstance(observation.image, xr.DataArray) else {}
    if looks is None:
        attribute = said.get("looks")
        # A simulation without speckle says "none": as many looks as makes speckle nil.
        looks = (float(attribute) if isinstance(attribute, (int, float, np.number)) else
                 NO_SPECKLE_LOOKS if attribute == "none" else DEFAULT_LOOKS)
    if not (math.isfinite(looks) and looks > 0):
        raise InvalidInputError(f"looks must be a positive number, got {looks!r}")
    if nesz_db is None:
        attribute = said.get("nesz_db")
        nesz_db = float(attribute) if isinstance(attribute, (int, float, np.number)) else None
    if nesz_db is not None and not math.isfinite(nesz_db):
        raise InvalidInputError(f"nesz_db must be a finite number of dB or None, got {nesz_db!r}")
    return InversionImage(image.astype(np.float32), observation.geometry, float(looks), label, 1,
                          float(10.0 * np.log10(np.median(positive))), nesz_db, cross_image,
                          spread_db=intensity_summary(positive)["observed_spread_db"])


def _cross_polarised(observation: Any, window: RadarWindow) -> xr.DataArray | None:
    """The cross-polarised image of an observation on ``window`` (linear, beside the
    co-polarised one): a dual-polarisation image's band, or a Sentinel-1 product's
    measurement; None where it holds none."""
    if observation.cross_image is not None:
        values = intensity_on_window(observation.cross_image, window, observation.geometry.grid.shape)
        return xr.DataArray(np.asarray(values, dtype=np.float32), dims=("line", "sample"), coords=window.coords())
    if observation.product is None:
        return None
    from ..preprocess.sentinel1 import cross_polarised_measurement

    cross = cross_polarised_measurement(observation.product, observation.measurement)
    if cross is None:
        return None
    values = dataclasses.replace(observation, measurement=cross).on_window(window)
    return xr.DataArray(np.asarray(values, dtype=np.float32), dims=("line", "sample"), coords=window.coords())


def _observation_name(sar: Any) -> str:
    if isinstance(sar, (str, bytes)) or hasattr(sar, "__fspath__"):
        return str(sar)
    return f"a {type(sar).__name__}"


def pass_key(image: InversionImage) -> tuple:
    """A key shared by the images of one acquisition geometry (repeat dates of a pass),
    different for another pass or frame."""
    return tuple(sorted((key, str(value)) for key, value in image.geometry.to_attrs().items()))


def _same_acquisition_grid(first: RadarGeometry, second: RadarGeometry) -> bool:
    """Whether two geometries image the ground on the same radar grid (repeat passes of one
    orbit and frame: the same orbit and grid attributes)."""
    return first is second or first.to_attrs() == second.to_attrs()


def composite_images(images: Sequence[InversionImage], *,
                     level_tolerance_db: float = DATE_LEVEL_TOLERANCE_DB) -> list[InversionImage]:
    """The images grouped for the inversion: the dates of one acquisition grid (the same
    orbit and image grid: a pass over repeat dates) of one level (:func:`level_clusters`,
    within ``level_tolerance_db``) are averaged in linear power (looks summed); dates of
    another level (wet snow, soaked or frozen ground: a different law, not only a
    different level) are composited apart, a group with a law of its own; images of
    different grids (the other pass, another frame) are each their own.

    Refuses a list that repeats an image (the same values on the same grid: one date
    counted twice would halve the speckle it claims).
    """
    if not images:
        raise InvalidInputError("no observation was given: give at least one SAR image")
    for index, image in enumerate(images):
        for earlier in images[:index]:
            if (_same_acquisition_grid(image.geometry, earlier.geometry) and image.image.shape == earlier.image.shape
                    and np.array_equal(image.image.values, earlier.image.values, equal_nan=True)):
                raise InvalidInputError(f"the observation {image.name} repeats {earlier.name} (the same values on the "
                                        "same grid): give each date once")
    groups: list[list[InversionImage]] = []
    for image in images:
        for group in groups:
            if _same_acquisition_grid(group[0].geometry, image.geometry) and group[0].image.shape == image.image.shape:
                group.append(image)
                break
        else:
            groups.append([image])
    out: list[InversionImage] = []
    for group in groups:
        out.extend(_average(dates) for dates in level_clusters(group, level_tolerance_db))
    return out


def level_clusters(dates: Sequence[InversionImage], tolerance_db: float) -> list[list[InversionImage]]:
    """The dates of one acquisition grid in groups of one level: sorted by level, a date
    joins the group below it where it lies within ``tolerance_db`` of the group's mean; the
    largest group first (the one holding the first date where two are as large), the
    others (wet snow, frozen ground) after it, each composited on its own. A median
    taken over all would lose the normal dates where as many are wet."""
    ordered = sorted(dates, key=lambda image: image.level_db)
    clusters: list[list[InversionImage]] = []
    for image in ordered:
        if clusters and image.level_db - float(np.mean([date.level_db for date in clusters[-1]])) <= tolerance_db:
            clusters[-1].append(image)
        else:
            clusters.append([image])
    first = dates[0]
    clusters.sort(key=lambda cluster: (-len(cluster), not any(image is first for image in cluster)))
    # Within a group, the dates in the order they were given.
    return [[image for image in dates if any(image is member for member in cluster)] for cluster in clusters]


def _average(images: Sequence[InversionImage]) -> InversionImage:
    if len(images) == 1:
        return images[0]
    stack = np.mean([np.asarray(image.image.values, dtype=np.float64) for image in images], axis=0)
    values = stack[np.isfinite(stack) & (stack > 0)]
    first = images[0]
    floors = [image.nesz_db for image in images]
    # The floor of the mean is the mean of the floors (linear power).
    nesz = (None if any(floor is None for floor in floors) else
            float(10.0 * np.log10(np.mean([10.0 ** (floor / 10.0) for floor in floors]))))
    # The cross-polarised composite where every date has one.
    cross = (None if any(image.cross_image is None for image in images) else first.cross_image.copy(
        data=np.mean([np.asarray(image.cross_image.values, dtype=np.float64) for image in images],
                     axis=0).astype(np.float32)))
    return InversionImage(first.image.copy(data=stack.astype(np.float32)), first.geometry,
                          float(sum(image.looks for image in images)),
                          f"{first.name} and {len(images) - 1} more dates", sum(image.dates for image in images),
                          float(10.0 * np.log10(np.median(values))) if values.size else math.nan, nesz, cross)


def observation_list(sar: Any, geometry: Any, opposite_pass: tuple[Any, Any] | None = None
                     ) -> list[tuple[Any, RadarGeometry | None]]:
    """The observations a refinement is given, as (observation, geometry) pairs: ``sar``
    one observation or a sequence of them (dates, passes), ``geometry`` one geometry for
    all (None: each SAFE product's own) or a sequence of one per observation, and
    ``opposite_pass`` an opposite pass's ``(sar, geometry)``, appended.

    Raises
    ------
    InvalidInputError : no observation, or a sequence of geometries not one per image.
    """
    many = isinstance(sar, (list, tuple))
    images = list(sar) if many else [sar]
    if not images:
        raise InvalidInputError("no observation was given: give at least one SAR image")
    if isinstance(geometry, (list, tuple)):
        if len(geometry) != len(images):
            raise InvalidInputError(f"{len(geometry)} geometries for {len(images)} observations: give one geometry "
                                    "per observation (or one for all, or None for SAFE products)")
        geometries = list(geometry)
    else:
        geometries = [geometry] * len(images)
    pairs = list(zip(images, geometries, strict=True))
    if opposite_pass is not None:
        pairs.append((opposite_pass[0], opposite_pass[1]))
    return pairs


def observation_geometries(sar: Any, geometry: Any, opposite_pass: tuple[Any, Any] | None = None,
                           measurement: str = "IW/VV") -> list[RadarGeometry]:
    """The geometry of each observation a refinement is given (:func:`observation_list`):
    the one given, else the SAFE product's own (its annotation read)."""
    geometries = []
    for observation, given in observation_list(sar, geometry, opposite_pass):
        if given is not None:
            geometries.append(given)
        elif isinstance(observation, (str, os.PathLike)):
            geometries.append(RadarGeometry.from_sentinel1(observation, measurement))
        else:
            geometries.append(resolve_observation(observation, None).geometry)
    return geometries


def has_cross_polarisation(sar: Any, opposite_pass: tuple[Any, Any] | None = None,
                           measurement: str = "IW/VV") -> bool:
    """Whether every observation a refinement is given (:func:`observation_list`) holds a
    cross-polarised band beside the co-polarised one of ``measurement``: a Sentinel-1
    product of both polarisations (its manifest read) or a (polarisation, line, sample)
    DataArray naming both. A geocoded image, an array or an observation that cannot be
    read this way has none (what cannot be read is refused later, where it is read)."""
    from ..observation import POLARISATION_DIM, polarisation_bands

    def dual(observation: Any) -> bool:
        if isinstance(observation, xr.DataArray):
            if POLARISATION_DIM not in observation.dims:
                return False
            try:
                return polarisation_bands(observation, measurement)[1] is not None
            except InvalidInputError:
                return False
        if isinstance(observation, (str, os.PathLike)) and not is_geotiff_path(observation):
            from ..preprocess.sentinel1 import cross_polarised_measurement

            try:
                return cross_polarised_measurement(observation, measurement) is not None
            except (OSError, ValueError, SarHeightError):
                return False
        return False

    return all(dual(observation) for observation, _ in observation_list(sar, None, opposite_pass))
