"""A terrain scene from real observations (dates, passes) and a user's coarse DEM and
priors, with the checks of what a refinement is given: the priors against the DEM, the
observation's relief and level.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .._version import __version__
from ..compute import compute_for_run
from ..dem import Dem, checked_dem, open_dem
from ..errors import (
    InvalidInputError,
    PartialCoverageWarning,
    PlausibilityWarning,
    user_stacklevel,
)
from ..geometry import RadarGeometry
from ..masks import MASK_ATTRS
from ..observation import check_argument_order
from ..priors import (
    PriorSpec,
    distance_map,
    interpolate_priors,
    sample_priors,
)
from ..raster import cell_size_m, power_to_db, robust_spread
from ..reconstruction import reconstruct
from .backprojection import MadeOnGrid, back_project, refined_without_sar, shifted, upsample
from .forward import brightness_features
from .geometry import heading_direction, pass_direction
from .grid import COARSE_VARIABLES
from .inversion import InversionSettings, invert_dem
from .land_cover import estimate_land_cover, land_cover_features
from .radar_images import InversionImage, composite_images, observation_list, pass_key, radar_image
from .registration import ImageRegistration, largest_known, register_to_images
from .scene_options import Execution, SarReading, SceneProducts, option_group
from .variables import VARIABLE_ATTRS, inversion_reference, on_grid, scene_correction

#: The spread (dB, robust standard deviation) of an observation's values below which it
#: carries no relief: speckle alone spreads a Sentinel-1 image by several dB even after
#: multi-looking, a constant fill or a placeholder by none.
MIN_OBSERVED_SPREAD_DB = 0.5

#: The levels (dB, median under the DEM) a calibrated Sentinel-1 backscatter image lies
#: within over land; outside, the quantity or the units are most likely not the ones said.
OBSERVED_LEVEL_DB = (-35.0, 10.0)


def _pass_inputs(sar: Any, coarse: Dem, geometry: RadarGeometry | None, *, reading: SarReading,
                 progress: bool, device: str | None) -> tuple[dict[str, np.ndarray], dict]:
    with warnings.catch_warnings():
        # The image is read with a margin around the DEM: its edges' partial coverage is
        # the margin's, not the product's.
        warnings.filterwarnings("ignore", category=PartialCoverageWarning)
        result = reconstruct(coarse, sar, geometry, measurement=reading.measurement, projection=reading.projection,
                             progress=progress, device=device)
    arrays = {
        "sar_reconstructed": power_to_db(result["backscatter"].values),
        # Without reallocation: the terrain-flattened backscatter (Small 2011), every cell of
        # a pixel given the pixel's value, as sigma0. Conventional geocoding would also
        # leave out the terrain's radiometric correction and differ everywhere on slopes;
        # this one differs from the reconstruction where reallocation acts, near layover.
        "sar_geocoded": power_to_db(result["flattened"].values
                                    * np.cos(np.radians(result["local_incidence_angle"].values))),
        "local_incidence_angle": result["local_incidence_angle"].values.astype(np.float32),
        "layover": result["layover"].values,
        "shadow": result["shadow"].values,
    }
    return arrays, result.attrs


@dataclasses.dataclass(frozen=True)
class GivenPriors:
    """Known heights as an observed scene takes them, checked when made
    (:func:`check_priors_given` makes one): a :class:`PriorSpec` of points, a Dataset of
    :func:`sample_priors`, or None (``known``). A caller that checks them before its own
    work (``refine_dem``) hands this on, and the scene does not check them again.

    Raises
    ------
    InvalidInputError : anything else, or a PriorSpec that would draw heights from the DEM.
    """

    known: PriorSpec | xr.Dataset | None

    def __post_init__(self) -> None:
        known = self.known
        if known is None or isinstance(known, xr.Dataset):
            return
        if isinstance(known, PriorSpec):
            if known.points is None:
                raise InvalidInputError(
                    f"priors={known!r} draws known heights from the DEM, and a real scene's only DEM is the coarse "
                    "one being refined: give the points measured (PriorSpec(points='gnss.csv', crs='EPSG:4326')), "
                    "or None"
                )
            return
        raise InvalidInputError(
            f"priors of type {type(known).__name__}: give the known heights as PriorSpec(points=..., crs=..., "
            "vertical_datum=..., geoid_grid=...) (a CSV, GeoJSON or GeoPackage file, or a DataFrame of x, y, height), "
            "a Dataset of sample_priors on the scene's grid, or None"
        )


def check_priors_given(priors: Any) -> GivenPriors:
    """Refuse priors an observed scene cannot take, before any work (:class:`GivenPriors`
    says what it takes); returned checked (given already checked: as they are)."""
    return priors if isinstance(priors, GivenPriors) else GivenPriors(priors)


def _resolve_priors(priors: PriorSpec | xr.Dataset | None, grid: xr.DataArray) -> xr.Dataset:
    """Priors on ``grid``: a Dataset of :func:`sample_priors` on it, the points of a
    PriorSpec put on it, or None (no prior: heights NaN, the mask 0)."""
    if priors is None:
        return xr.Dataset({"prior_height": grid.copy(data=np.full(grid.shape, np.nan, dtype=np.float32)),
                           "prior_mask": grid.copy(data=np.zeros(grid.shape, dtype=np.uint8))})
    if isinstance(priors, xr.Dataset):
        missing = {"prior_height", "prior_mask"} - set(priors.data_vars)
        if missing:
            raise InvalidInputError(
                f"the priors lack {sorted(missing)}: give the Dataset sample_priors returns, or the points "
                "(PriorSpec(points=..., crs=...))"
            )
        if priors["prior_height"].shape != grid.shape or not (
                np.allclose(priors["x"], grid["x"]) and np.allclose(priors["y"], grid["y"])):
            raise InvalidInputError(
                f"the priors lie on a {priors['prior_height'].shape} grid, the scene on {grid.shape}: sample them "
                "on the scene's grid (sample_priors(grid, points=...)), or give the points themselves "
                "(PriorSpec(points=..., crs=...))"
            )
        return priors
    return sample_priors(grid, priors)


#: How far (m, the median over the priors) known heights may lie from the coarse DEM: no
#: real DEM is off by as much (SRTM's and Copernicus's biases are metres; a geoid mistaken
#: for the ellipsoid is tens of metres, warned of below this).
PRIOR_OFFSET_LIMIT_M = 100.0


#: The median departure (m) beyond which the priors are warned of: more than a DEM's bias.
PRIOR_OFFSET_WARNING_M = 20.0


#: A prior this far (m) from the coarse DEM beyond the others' median, and beyond eight of
#: their robust standard deviations, is an outlier and left out.
PRIOR_OUTLIER_M = 150.0


def check_priors_against(priors: xr.Dataset, coarse: xr.DataArray) -> xr.Dataset:
    """The known heights checked against the coarse DEM at their cells: refused where they
    cannot be of its terrain (3.28 times its heights: feet; a median departure beyond
    :data:`PRIOR_OFFSET_LIMIT_M`: another datum, units or place), warned of where their
    median departure is beyond :data:`PRIOR_OFFSET_WARNING_M` (a geoid taken for the
    ellipsoid?), and returned without the outliers (beyond :data:`PRIOR_OUTLIER_M` and
    eight robust standard deviations from the others' departure), which are named in a
    warning: one prior 3 km off would otherwise pull the map into a spike.

    Raises
    ------
    InvalidInputError : naming the offset and what to check.
    """
    known = (priors["prior_mask"].values > 0) & np.isfinite(priors["prior_height"].values) & np.isfinite(coarse.values)
    if known.sum() < 3:
        return priors
    heights, below = priors["prior_height"].values[known], coarse.values[known]
    departure = heights.astype(np.float64) - below
    offset = float(np.median(departure))
    if abs(offset) > 100.0 and np.median(np.abs(below)) > 50.0:
        ratio = float(np.median(heights / np.where(below != 0, below, np.nan)))
        if abs(ratio - 1 / 0.3048) < 0.1:
            raise InvalidInputError(f"the known heights are {ratio:.2f} times the coarse DEM's: in feet? Convert them "
                                    "to metres (multiply by 0.3048)")
    if abs(offset) > PRIOR_OFFSET_LIMIT_M:
        raise InvalidInputError(
            f"the known heights lie a median {offset:+.0f} m from the coarse DEM at their cells: no DEM is that far "
            "off; check their units (metres), their vertical datum (PriorSpec(vertical_datum=...), WGS84 ellipsoidal "
            "heights after conversion) and their CRS")
    if abs(offset) > PRIOR_OFFSET_WARNING_M:
        warnings.warn(
            f"the known heights lie a median {offset:+.0f} m from the coarse DEM at their cells, more than a DEM's "
            "bias: are they on a geoid but said to be ellipsoidal (or the DEM on one), or in another place? The "
            "refinement moves the map towards them", PlausibilityWarning, stacklevel=user_stacklevel())
    spread = robust_spread(departure, offset)
    outliers = np.abs(departure - offset) > max(PRIOR_OUTLIER_M, 8.0 * spread)
    if not outliers.any():
        return priors
    worst = float(departure[outliers][np.argmax(np.abs(departure[outliers] - offset))])
    warnings.warn(
        f"{int(outliers.sum())} of the {int(known.sum())} known heights lie far from the coarse DEM and the other "
        f"priors' departure (the farthest {worst:+.0f} m, the others a median {offset:+.0f} m): left out as outliers; "
        "check them", PlausibilityWarning, stacklevel=user_stacklevel())
    mask = priors["prior_mask"].values.copy()
    rows, cols = np.nonzero(known)
    mask[rows[outliers], cols[outliers]] = 0
    height = np.where(mask > 0, priors["prior_height"].values, np.nan).astype(priors["prior_height"].dtype)
    cleaned = priors.copy()
    cleaned["prior_mask"] = priors["prior_mask"].copy(data=mask)
    cleaned["prior_height"] = priors["prior_height"].copy(data=height)
    return cleaned


def _scene_dataset(inputs: dict[str, np.ndarray], grid: xr.DataArray, coarse: xr.DataArray,
                   priors: xr.Dataset, prior_method: str) -> xr.Dataset:
    variables = {name: on_grid(values, grid, name) for name, values in inputs.items()}
    for name in ("layover", "shadow"):
        variables[name].attrs.update(MASK_ATTRS)
    variables["prior_height"] = on_grid(priors["prior_height"].astype(np.float32), grid, "prior_height")
    variables["prior_mask"] = on_grid(priors["prior_mask"].astype(np.uint8), grid, "prior_mask")
    variables["coarse_height"] = on_grid(coarse.astype(np.float32), grid, "coarse_height")
    if priors["prior_mask"].values.any():
        distance = distance_map(priors["prior_mask"]).values
        interpolated = interpolate_priors(priors, method=prior_method).values
        residuals = priors[["prior_height", "prior_mask"]].copy()
        residuals["prior_height"] = priors["prior_height"] - coarse.values
        # A prior beyond the coarse DEM (a real product's grid need not reach the scene's
        # edge) has no residual.
        residuals["prior_mask"] = priors["prior_mask"] * np.isfinite(residuals["prior_height"]).astype(np.uint8)
        if residuals["prior_mask"].values.any():
            correction = interpolate_priors(residuals, method=prior_method).values
        else:
            correction = np.zeros(grid.shape)
    else:
        # No known height: every cell is farther from one than the grid is wide, and there
        # is nothing to interpolate (the coarse DEM is its own correction).
        dy, dx = cell_size_m(grid)
        distance = np.full(grid.shape, math.hypot(grid.shape[0] * dy, grid.shape[1] * dx))
        interpolated = np.full(grid.shape, np.nan)
        correction = np.zeros(grid.shape)
    variables["prior_distance"] = on_grid(distance.astype(np.float32), grid, "prior_distance")
    variables["prior_interpolated"] = on_grid(interpolated.astype(np.float32), grid, "prior_interpolated")
    variables["coarse_corrected"] = on_grid((coarse.values + correction).astype(np.float32), grid, "coarse_corrected")
    scene = xr.Dataset(variables)
    return scene.rio.write_crs(grid.rio.crs)


def _same_voids(first: xr.DataArray, second: xr.DataArray) -> bool:
    """Whether two rasters of one grid have their voids (NaN) in the same cells: what a
    resampling onto either reads of it."""
    return bool(np.array_equal(np.isnan(first.values), np.isnan(second.values)))


def observed_scene(
    coarse_dem: Any,
    sar: Any,
    geometry: RadarGeometry | Sequence[RadarGeometry] | None,
    priors: Any,
    *,
    grid: Any = None,
    truth: Any = None,
    prior_method: str = "linear",
    opposite_pass: tuple[Any, RadarGeometry | None] | None = None,
    reading: SarReading | None = None,
    products: SceneProducts | None = None,
    coarse_error_m: float | None = None,
    land_cover: Any = None,
    name: str | None = None,
    execution: Execution | None = None,
) -> xr.Dataset:
    """A terrain scene from a real observation, or several (dates, passes): the model's
    inputs for a user's own data.

    Parameters
    ----------
    coarse_dem : the DEM a user has (anything :func:`sarheight.dem.open_dem` takes; WGS84
        ellipsoidal heights: open it with ``open_dem(path, vertical_datum=...)`` first if
        it is on a geoid).
    sar : the observation, anything :func:`sarheight.reconstruction.reconstruct` takes (a
        Sentinel-1 SAFE product path, a calibrated xarray-sentinel measurement, a radar
        geometry array with ``geometry``, or a geocoded GeoTIFF / map DataArray), or a
        sequence of them: dates and passes. They are read in radar geometry over the DEM
        and grouped (:func:`sarheight.terrain.radar_images.composite_images`: the dates of one
        acquisition grid whose level agrees are averaged, looks summed; a date of another
        level, wet snow or frozen ground, kept apart); the first observation's pass is the
        scene's (``sar_*``, its composite), the first of the opposite direction its
        ``other_*``.
    geometry : the acquisition geometry (None: read from each SAFE product), one for every
        observation, or a sequence of one per observation.
    priors : the known heights: points measured, as a :class:`sarheight.priors.PriorSpec`
        (``PriorSpec(points="gnss.csv", crs="EPSG:4326", vertical_datum="egm96")``: a CSV,
        GeoJSON or GeoPackage file or a DataFrame of x, y, height, with their CRS, datum and
        geoid grid), put on the grid with WGS84-ellipsoidal heights; a Dataset of
        :func:`sarheight.priors.sample_priors` on the scene grid; or None for none (or any
        of them as :class:`GivenPriors`, checked already).
    grid : the scene's grid: a DEM-like raster (path or DataArray) whose cells the scene
        takes, ideally at the SAR's pixel size; default the coarse DEM's own grid. The
        coarse DEM is resampled to it bilinearly.
    truth : a reference DEM (ellipsoidal heights) for ``height``, to evaluate a model on
        real data; None: the scene has no ``height``.
    prior_method : the method of :func:`sarheight.priors.interpolate_priors` for
        ``prior_interpolated``.
    opposite_pass : ``(sar, geometry)`` of the opposite pass, giving ``other_sar_reconstructed``
        and ``other_sar_geocoded``.
    reading : how the observations are read (:class:`sarheight.terrain.scene_options.SarReading`:
        the measurement of a SAFE product, what a geocoded one holds, the projection);
        default ``SarReading()``.
    products : what the scene makes (:class:`sarheight.terrain.scene_options.SceneProducts`),
        default ``SceneProducts()``:

        - ``register``: register the coarse DEM to the image(s) before anything else
          (:func:`sarheight.terrain.registration.register_to_images`; ``image_registration_*``
          attributes), where the image can tell the shift; the priors' registration then
          measures what is left (``coregistration_*``), a second opinion that flags the
          image's where they disagree. With ``inversion``, the registration is measured
          again on the inversion's surface (a sharper image, nearer the terrain's) and,
          where it moves the DEM by more than :data:`REGISTRATION_STEP_M`, the scene is made
          again from the DEM so registered (``image_registration_rounds`` 2).
        - ``inversion``, ``inversion_settings``: also refine by inverting the simulator
          against every observation (:func:`sarheight.terrain.inversion.invert_dem`):
          ``inverted`` (m) and ``inversion_readable``, with ``inversion_*`` attributes.
        - ``keep_dates``: also keep each date of a pass of several dates, reconstructed on
          its own (``sar_dates`` and ``other_sar_dates``, dims (date, y, x), dB, in the order
          given): what a network over the stack reads (:mod:`sarheight.models.stack`); None:
          where a pass has several dates. A pass of one date is its composite.
        - ``error_sources`` is a simulated scene's (it needs the truth's parts): refused.
    coarse_error_m : the coarse DEM's stated vertical error (m, RMS: its accuracy figure),
        where known: what the priors' kriged correction may correct (0: an exact product,
        left as it is) and how far the inversion's coarse-cell means may depart from it;
        None: not stated.
    land_cover : a land-cover map (a GeoTIFF path or a DataArray with a CRS of integer
        class codes, resampled to the grid by the nearest cell): the inversion gives each of
        its classes a law of its own instead of telling the classes apart from the images.
    name : the scene's name (attribute ``scene_name``); default from the inputs.
    execution : where and how the work runs (:class:`sarheight.terrain.scene_options.Execution`:
        the inversion's blocks and cluster, progress bars); default ``Execution()``.

    Returns
    -------
    xr.Dataset on the grid with the variables the module docstring lists.
    """
    check_argument_order(coarse_dem, sar, "observed_scene(coarse_dem, sar, geometry, priors)")
    known = check_priors_given(priors).known
    reading = option_group("reading", reading, SarReading)
    products = option_group("products", products, SceneProducts)
    execution = option_group("execution", execution, Execution)
    if products.error_sources:
        raise InvalidInputError("products.error_sources takes a simulated scene's error apart against its truth: an "
                                "observed scene has none; leave it False")
    return _observed(coarse_dem, sar, geometry, known, grid=grid, truth=truth, prior_method=prior_method,
                     opposite_pass=opposite_pass, reading=reading, products=products, coarse_error_m=coarse_error_m,
                     land_cover=land_cover, name=name, execution=execution, measured=None)


def _observed(coarse_dem: Any, sar: Any, geometry: Any, priors: Any, *, grid: Any, truth: Any, prior_method: str,
              opposite_pass: tuple[Any, RadarGeometry | None] | None, reading: SarReading, products: SceneProducts,
              coarse_error_m: float | None, land_cover: Any, name: str | None, execution: Execution,
              measured: ImageRegistration | None) -> xr.Dataset:
    """:func:`observed_scene`'s work, its groups checked; ``measured``: an image registration
    measured before, applied instead of measuring one (the scene made again from the DEM so
    registered)."""
    register = products.register and measured is None
    progress = execution.progress
    # Each DEM checked once, when it is made; the functions it goes to take the Dem as checked.
    native_checked = checked_dem(coarse_dem)
    native = native_checked.heights
    # The coarse DEM's cell (m) from its Grid, once: registration, priors and inversion take it.
    coarse_cell_m = native_checked.grid.side_m
    if grid is None:
        grid_dem = native
    else:
        grid_dem = (grid.heights if isinstance(grid, Dem) else grid if isinstance(grid, xr.DataArray)
                    else open_dem(grid, vertical_datum="ellipsoid"))
    # The reconstruction runs on the coarse DEM resampled bilinearly to the grid (a smooth
    # surface without the overshoot of sharper kernels); the sharper resamplings are
    # baselines and the refinement's reference.
    coarse_checked = checked_dem(upsample(native, grid_dem, "bilinear"), copy=False)
    coarse = coarse_checked.heights
    observations = observation_list(sar, geometry, opposite_pass)
    groups, own, opposite, images = _read_observations(observations, coarse_checked, reading)
    image_registration = measured
    # What is made of the coarse DEM on the grid once, for every method that needs it.
    made = MadeOnGrid()
    if register:
        # Before every method: the coarse DEM moved to where the image says its terrain is,
        # measured with its back-projection (a smooth surface, no coarse grid drawn in it).
        surface_checked = checked_dem(back_project(native, grid_dem), vertical_datum="ellipsoid")
        surface = surface_checked.heights
        # The ground's classes levelled out of the images first: a class's patches (snow
        # above a line, on shaded slopes) would hold the correlation where they lie.
        classes = estimate_land_cover(land_cover_features(brightness_features(surface_checked, groups),
                                                          [pass_key(group) for group in groups]))
        image_registration = register_to_images(surface_checked, groups, coarse_cell_m=coarse_cell_m,
                                                classes=classes)
    if image_registration is not None:
        east, north = image_registration.applied_shift()
        if east or north:
            native = shifted(native, coarse, east, north)
            coarse_checked = checked_dem(upsample(native, grid_dem, "bilinear"), copy=False)
            coarse = coarse_checked.heights
        elif register and _same_voids(grid_dem, coarse):
            # The back-projection reads the grid's voids only: on the same voids it is the
            # one the priors' refinement would make.
            made = MadeOnGrid(back_projection=surface.values)
    resampled = {COARSE_VARIABLES[method]: upsample(native, grid_dem, method) for method in ("bicubic", "lanczos")}
    if made.back_projection is not None or _same_voids(grid_dem, coarse):
        made = dataclasses.replace(made, lanczos=resampled["coarse_lanczos"].values)
    resolved = _resolve_priors(priors, coarse)
    resolved = check_priors_against(resolved, coarse)
    inputs, attrs = _pass_inputs(own.image, coarse_checked, own.geometry, reading=reading, progress=progress,
                                 device=execution.physics_device)
    scene = _scene_dataset(inputs, coarse, coarse, resolved, prior_method)
    for variable, values in resampled.items():
        scene[variable] = on_grid(values.astype(np.float32), coarse, variable)
    # Where the image registered the DEM (to decimetres or metres), the priors' registration
    # is a second opinion, recorded; where it could not, the priors register it.
    refined, registration = refined_without_sar(native, coarse, resolved, coarse_cell_m,
                                                register=image_registration is None or not image_registration.applied,
                                                made=made, product_error_m=coarse_error_m)
    for variable, refined_values in refined.items():
        scene[variable] = on_grid(refined_values, coarse, variable)
    if image_registration is not None:
        image_registration = image_registration.checked_against(
            registration["coregistration_shift_east_m"], registration["coregistration_shift_north_m"],
            max(registration["coregistration_error_east_m"], registration["coregistration_error_north_m"]))
    registration_error = registration_error_m(image_registration, registration)
    if opposite is not None:
        other_inputs, other_attrs = _pass_inputs(opposite.image, coarse_checked, opposite.geometry, reading=reading,
                                                 progress=progress, device=execution.physics_device)
        scene = _with_other_pass(scene, other_inputs, other_attrs)
        scene.attrs["other_dates"] = int(opposite.dates)
    keep_dates = products.keep_dates
    if keep_dates is None:
        keep_dates = any(group is not None and group.dates > 1 for group in (own, opposite))
    if keep_dates:
        for prefix, group in (("", own), ("other_", opposite)):
            dates = [image for image in images if group is not None and _same_pass(image, group)]
            if len(dates) > 1:
                reconstructed = [_pass_inputs(image.image, coarse_checked, image.geometry, reading=reading,
                                              progress=False, device=execution.physics_device)[0]["sar_reconstructed"]
                                 for image in dates]
                scene[f"{prefix}sar_dates"] = xr.DataArray(
                    np.stack(reconstructed).astype(np.float32), dims=("date", "y", "x"),
                    coords={"y": scene["y"], "x": scene["x"]},
                    attrs={"units": "dB", "long_name": "sigma0 of each date, reconstructed in layover"
                           + (", opposite pass" if prefix else "")})
    if products.inversion:
        inversion_settings = products.inversion_settings
        inverted = invert_dem(inversion_reference(scene, (inversion_settings or InversionSettings()).reference)
                              .rio.write_crs(coarse.rio.crs), native, _running_on(groups, execution),
                              prior_height=resolved["prior_height"].values, prior_mask=resolved["prior_mask"].values,
                              coarse_cell_m=coarse_cell_m, coarse_error_m=coarse_error_m,
                              registration_error_m=registration_error, correction=scene_correction(scene),
                              land_cover=None if land_cover is None else land_cover_on(land_cover, coarse),
                              settings=inversion_settings,
                              blocks=execution.blocks, client=execution.client)
        if register:
            again, measured_again = _registered_again(inverted, coarse, groups, image_registration, coarse_cell_m)
            flag = measured_again.flag
            if again is None and flag and image_registration is not None and flag not in image_registration.flag:
                # Not moved again, but this round's halves disagree: the flag is kept, and
                # with it how far apart they are (the error it leaves).
                image_registration = dataclasses.replace(
                    image_registration, flag="; ".join(part for part in (image_registration.flag, flag) if part),
                    halves_apart_m=largest_known(image_registration.halves_apart_m, measured_again.halves_apart_m))
            if again is not None:
                return _observed(
                    coarse_dem, sar, geometry, priors, grid=grid, truth=truth, prior_method=prior_method,
                    opposite_pass=opposite_pass, reading=reading, products=products, coarse_error_m=coarse_error_m,
                    land_cover=land_cover, name=name, execution=execution, measured=again)
        scene["inverted"] = on_grid(inverted["height"].values, coarse, "inverted")
        if "readable" in inverted:
            scene["inversion_readable"] = on_grid(inverted["readable"].values, coarse, "inversion_readable")
        scene.attrs.update({key: value for key, value in inverted.attrs.items() if key.startswith("inversion_")})
    if truth is not None:
        scene["height"] = on_grid(upsample(open_dem(truth), coarse, "bilinear", what="the reference DEM")
                                   .astype(np.float32), coarse, "height")
    grid_cell_m = coarse_checked.grid.side_m
    scene.attrs.update(_scene_attrs(attrs, kind="observed", name=name, dem_name=source_name(coarse_dem),
                                    prior_method=prior_method))
    scene.attrs.update(registration)
    if image_registration is not None:
        scene.attrs.update(image_registration.to_attrs())
    if coarse_error_m is not None:
        scene.attrs["coarse_stated_error_m"] = float(coarse_error_m)
    if registration_error is not None:
        scene.attrs["registration_error_m"] = float(registration_error)
    scene.attrs.update(coarse_cell_m=coarse_cell_m, grid_cell_m=grid_cell_m,
                       coarse_factor=round(coarse_cell_m / grid_cell_m, 3), dates=int(own.dates),
                       images=len(observations), image_groups=len(groups))
    return scene


def land_cover_on(land_cover: Any, grid: xr.DataArray) -> np.ndarray:
    """A land-cover map (a raster path, or a DataArray with a CRS) of integer class codes on
    ``grid`` (the nearest cell's code; -1 where it has none).

    Raises
    ------
    InvalidInputError : a map that is not a single band of integer codes with a CRS, or
        one that covers no cell of the grid.
    """
    from rasterio.enums import Resampling

    if isinstance(land_cover, (str, os.PathLike)):
        import rioxarray

        from ..io import open_raster

        with open_raster(land_cover, "the land-cover map"):
            pass
        opened = rioxarray.open_rasterio(land_cover, masked=True)
        if not isinstance(opened, xr.DataArray):
            raise InvalidInputError(f"the land-cover map {str(land_cover)!r} holds several subdatasets: give one band "
                                    "of class codes")
        if opened.sizes.get("band", 1) != 1:
            raise InvalidInputError(f"the land-cover map {str(land_cover)!r} has {opened.sizes['band']} bands: give "
                                    "one band of class codes")
        land_cover = opened.squeeze("band", drop=True) if "band" in opened.dims else opened
    if not isinstance(land_cover, xr.DataArray) or land_cover.rio.crs is None:
        raise InvalidInputError("land_cover must be a GeoTIFF of class codes or a DataArray with a CRS "
                                "(.rio.write_crs)")
    values = np.asarray(land_cover.values, dtype=np.float64)
    known = values[np.isfinite(values)]
    if known.size == 0 or not np.allclose(known, np.round(known)):
        raise InvalidInputError("the land-cover map must hold integer class codes (NaN or no data where none)")
    on_grid_map = land_cover.astype(np.float64).rio.write_nodata(np.nan).rio.reproject_match(
        grid, resampling=Resampling.nearest).values
    if not np.isfinite(on_grid_map).any():
        raise InvalidInputError("the land-cover map covers no cell of the DEM: give a map of the DEM's area")
    return np.where(np.isfinite(on_grid_map), on_grid_map, -1.0)


def registration_error_m(image: ImageRegistration | None, priors: dict[str, Any]) -> float | None:
    """How far (m) the coarse DEM's registration may still be off, as the inversion takes
    it: the image's stated error where it registered the DEM (a flagged one's error,
    :attr:`ImageRegistration.error_m`, is larger: told that, the inversion ended 0.4 % worse
    on the scenes it changed in the inversion study, 13.5 % on one validation scene, so it
    keeps the stated one); the priors' where they moved it; where neither did, the shift
    the image measured (with its error), which is left in the DEM; None where nothing
    measured it."""
    if image is not None and image.applied:
        return image.stated_error_m
    moved = math.hypot(float(priors.get("coregistration_shift_east_m", 0.0)),
                       float(priors.get("coregistration_shift_north_m", 0.0)))
    if int(priors.get("coregistration_applied", 0)) and moved > 0:
        return max(float(priors["coregistration_error_east_m"]), float(priors["coregistration_error_north_m"]))
    if image is not None and math.isfinite(image.stated_error_m):
        return math.hypot(math.hypot(image.shift_east_m, image.shift_north_m), image.stated_error_m)
    return None


#: The least move (m) of a registration measured again on the inversion's surface for the
#: scene to be made again from the DEM so registered.
REGISTRATION_STEP_M = 2.0


def _registered_again(inverted: xr.Dataset, grid: xr.DataArray, groups: list[InversionImage],
                      first: ImageRegistration | None, coarse_cell_m: float
                      ) -> tuple[ImageRegistration | None, ImageRegistration]:
    """The registration measured again on the inversion's surface (``inverted``'s heights
    on ``grid``), as the total to apply to the coarse DEM, where it moves it by more than
    :data:`REGISTRATION_STEP_M`, else None; and this round's own measurement (its flag,
    the halves' disagreement, warned of here where the first round did not flag), which
    the caller keeps where the DEM is not moved again. (Its image is simulated with one law: the
    classes the inversion told apart were read from the observation where the DEM lay,
    and would hold the correlation there.)"""
    heights = inverted["height"].values
    surface = checked_dem(grid.copy(data=np.where(np.isfinite(heights), heights, grid.values).astype(np.float32)),
                          vertical_datum="ellipsoid")
    with warnings.catch_warnings():
        # The first registration warned of what it could not tell; this one adds to it.
        warnings.simplefilter("ignore", PlausibilityWarning)
        again = register_to_images(surface, groups, coarse_cell_m=coarse_cell_m)
    earlier = first.flag if first is not None else ""
    if again.flag and not earlier:
        # The warnings of this round were held back (they repeat the first's): a failure
        # only this round sees is said here.
        warnings.warn(f"the DEM's registration to the image, measured again on the inversion's surface, may have "
                      f"failed: {again.flag}", PlausibilityWarning, stacklevel=user_stacklevel())
    if not again.applied or math.hypot(again.shift_east_m, again.shift_north_m) <= REGISTRATION_STEP_M:
        return None, again
    east, north = first.applied_shift() if first is not None else (0.0, 0.0)
    # The first round's flag is kept, and with it how far its halves and the priors put the
    # DEM (the error it may leave).
    return dataclasses.replace(
        again, shift_east_m=east + again.shift_east_m, shift_north_m=north + again.shift_north_m,
        reason=f"measured again on the inversion's surface: {again.shift_east_m:+.1f} m east, "
               f"{again.shift_north_m:+.1f} m north more",
        flag="; ".join(flag for flag in (earlier, again.flag) if flag), rounds=2,
        halves_apart_m=largest_known(first.halves_apart_m if first is not None else math.nan, again.halves_apart_m),
        priors_apart_m=first.priors_apart_m if first is not None else math.nan), again


def _running_on(groups: list[InversionImage], execution: Execution) -> list[InversionImage]:
    """The images whose forward model runs where ``execution`` puts the physics (a GPU),
    or as they are; an inversion block by block keeps the numba kernels (blocks on
    threads would each size their chunks from the same free memory, a cluster's workers
    may have no GPU), as ``reconstruct`` refuses a device with chunks."""
    device = execution.physics_device
    if device is None or execution.in_blocks:
        return groups
    compute = compute_for_run(device)
    return [dataclasses.replace(group, compute=compute) for group in groups]


def _read_observations(observations: list[tuple[Any, RadarGeometry | None]], coarse: Dem,
                       reading: SarReading
                       ) -> tuple[list[InversionImage], InversionImage, InversionImage | None, list[InversionImage]]:
    """Every observation read in radar geometry over the coarse DEM and grouped
    (:func:`sarheight.terrain.radar_images.composite_images`); the group of the first observation's
    acquisition (the scene's own pass), the first group of the opposite pass, and the
    images one by one."""
    images = []
    for index, (sar, geometry) in enumerate(observations):
        label = f"observation {index + 1} of {len(observations)} ({source_name(sar)})" if len(observations) > 1 \
            else None
        try:
            images.append(radar_image(coarse, sar, geometry, measurement=reading.measurement,
                                      sar_quantity=reading.quantity, sar_db=reading.db, name=label or source_name(sar)))
        except InvalidInputError as error:
            if label is None:
                raise
            raise InvalidInputError(f"{label}: {error}") from None
    if len(images) > 1:
        check_date_levels(images)
    groups = composite_images(images)
    first = images[0].geometry
    own = next(group for group in groups if group.geometry is first or group.geometry.to_attrs() == first.to_attrs())
    direction = pass_direction(own.geometry)
    opposite = next((group for group in groups if pass_direction(group.geometry) != direction), None)
    return groups, own, opposite, images


def check_date_levels(images: Sequence[InversionImage]) -> None:
    """The checks :func:`check_refinement_inputs` makes of an observation's level, made
    of each date given, named: a date without relief (constant) refused, a date whose level
    is far from Sentinel-1's backscatter (a DEM, a mask, values scaled by 1e30) warned of,
    before the dates are composited (where one such date would be averaged away unseen).
    Each judged where the DEM falls (its ``level_db`` and ``spread_db``), not over the
    margin of its window, which holds the noise floor alone (constant without speckle)."""
    for image in images:
        check_observed_level(
            f"the observation {image.name}", image.level_db, image.spread_db,
            no_relief="it carries no relief (a placeholder, a mask or a fill?); leave it out, or give the calibrated "
            "image itself",
            off_level="is it the SAR image (not a DEM or a mask), in the quantity (--sar-quantity) and unit "
            "(--sar-db) said?")


def check_observed_level(which: str, median: float | None, spread: float | None, *, no_relief: str,
                         off_level: str) -> None:
    """Refuse an observation ``which`` names whose spread under the DEM (dB) is below
    :data:`MIN_OBSERVED_SPREAD_DB` (no relief: ``no_relief`` says what to do), warn of one
    whose median (dB) lies outside :data:`OBSERVED_LEVEL_DB` (``off_level`` asks what it
    is); nothing where the spread is not finite (nothing judged)."""
    if spread is None or median is None or not math.isfinite(float(spread)):
        return
    median, spread = float(median), float(spread)
    if spread < MIN_OBSERVED_SPREAD_DB:
        raise InvalidInputError(
            f"{which} is {'constant' if spread == 0 else 'nearly constant'} where the DEM falls (median "
            f"{median:.1f} dB, spread {spread:.2f} dB; speckle alone gives several dB): {no_relief}")
    low, high = OBSERVED_LEVEL_DB
    if not low <= median <= high:
        warnings.warn(f"{which}'s median under the DEM is {median:.1f} dB, outside the {low:g}..{high:g} dB of "
                      f"calibrated Sentinel-1 backscatter over land: {off_level}", PlausibilityWarning,
                      stacklevel=user_stacklevel())


def _same_pass(image: InversionImage, group: InversionImage) -> bool:
    """Whether a date was acquired on a group's acquisition grid (one of its pass's dates)."""
    return image.geometry is group.geometry or image.geometry.to_attrs() == group.geometry.to_attrs()


#: Relief (m) below which a coarse DEM is flat: nothing of the terrain for the SAR to read.
MIN_RELIEF_M = 1.0


def check_refinement_inputs(scene: xr.Dataset) -> None:
    """Refuse or warn about what a refinement is given but cannot refine with, before the
    model runs: an observation without relief information (constant or nearly constant
    under the DEM, linear or dB: refused), an observation whose level is far from
    Sentinel-1's backscatter (warned: the quantity or the units are wrong), a coarse DEM
    that is flat or whose heights look like kilometres (warned).

    Parameters
    ----------
    scene : a scene of a user's data (:func:`observed_scene`): its ``coarse_height`` and
        the attributes ``observed_median_db`` and ``observed_spread_db`` of the
        observation (:func:`sarheight.observation.intensity_summary`).

    Raises
    ------
    InvalidInputError : the observation carries no relief.
    """
    for prefix, which in (("", "the SAR image"), ("other_", "the opposite pass's SAR image")):
        check_observed_level(
            which, scene.attrs.get(f"{prefix}observed_median_db"), scene.attrs.get(f"{prefix}observed_spread_db"),
            no_relief="it carries no relief to refine the DEM with (a placeholder, a mask or a fill?); give the "
            "calibrated image itself",
            off_level="is the quantity (--sar-quantity) or the unit (--sar-db) the one said, or is it amplitude or "
            "digital numbers? The refinement reads the relief from the level's changes, and would read it wrong")
    heights = np.asarray(scene["coarse_height"].values, dtype=np.float64)
    finite = heights[np.isfinite(heights)]
    if not finite.size:
        return
    relief = float(finite.max() - finite.min())
    if relief < MIN_RELIEF_M:
        warnings.warn(
            f"the coarse DEM is flat (its heights span {relief:.2g} m): a refinement adds the relief the SAR and the "
            "priors show, but check that it is the DEM (not a mask, a fill or a single level)",
            PlausibilityWarning, stacklevel=user_stacklevel())
    elif -0.5 <= finite.min() and finite.max() <= 9.0 and not np.allclose(finite, np.round(finite)):
        warnings.warn(
            f"the coarse DEM's heights span {finite.min():.3g}..{finite.max():.3g}: if they are in kilometres, "
            "multiply them by 1000 (the refinement needs metres)", PlausibilityWarning, stacklevel=user_stacklevel())


def _with_other_pass(scene: xr.Dataset, other_inputs: dict[str, np.ndarray], other_attrs: dict) -> xr.Dataset:
    grid = scene["coarse_height"]
    for name in ("sar_reconstructed", "sar_geocoded", "local_incidence_angle"):
        attrs = {**VARIABLE_ATTRS[name], "long_name": VARIABLE_ATTRS[name]["long_name"] + ", opposite pass"}
        scene[f"other_{name}"] = on_grid(other_inputs[name], grid, f"other_{name}", attrs)
    for key in ("heading_deg", "look_side", "observed_median_db", "observed_spread_db", "observed_sampled"):
        if key in other_attrs:
            scene.attrs[f"other_{key}"] = other_attrs[key]
    return scene


def source_name(source: Any) -> str:
    if isinstance(source, Dem):
        source = source.heights
    if isinstance(source, (str, os.PathLike)):
        return Path(source).stem
    if isinstance(source, xr.DataArray):
        return str(source.attrs.get("dem_name") or source.name or "dem")
    return "dem"


def _scene_attrs(reconstruction_attrs: dict, *, kind: str, name: str | None, dem_name: str,
                 **parameters: Any) -> dict[str, Any]:
    keep = {key: value for key, value in reconstruction_attrs.items()
            if key.startswith(("geometry_", "observed_")) or key in ("product", "mission", "heading_deg", "look_side")}
    heading = reconstruction_attrs.get("geometry_heading_deg", reconstruction_attrs.get("heading_deg"))
    direction = None
    if heading is not None:
        direction = heading_direction(float(heading))
    attrs = {
        "kind": kind,
        "dem_name": dem_name,
        "scene_name": name or f"{dem_name}_{direction or 'pass'}",
        "sarheight_version": __version__,
        **keep,
        **{key: value for key, value in parameters.items() if value is not None},
    }
    if direction is not None:
        attrs["pass_direction"] = direction
    return attrs
