"""Simulated terrain scenes: the observation simulated from a fine DEM, everything else
from a coarser one (ideal or a real product's errors), the fine DEM the truth. Sets of
them, written as scene files over many axes, are :mod:`sarheight.terrain.scene_sets`'.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any, cast

import numpy as np
import xarray as xr

from ..coarse_dem import ERROR_PARTS, CoarseDemErrors, coarse_error_parts, coarse_product
from ..compute import compute_for
from ..dem import Dem, checked_dem
from ..errors import (
    InvalidInputError,
    PlausibilityWarning,
)
from ..geometry import RadarGeometry
from ..ground import (
    LAMBERT_LAW,
    SNAP_LAW,
    DateCondition,
    Ground,
)
from ..observation import POLARISATION_DIM
from ..priors import (
    PRIOR_ERROR_ATTRS,
    PriorSpec,
    sample_priors,
)
from ..simulate import simulate_sar
from .backprojection import upsample
from .geometry import pass_direction
from .grid import block_mean
from .observed import observed_scene, source_name
from .scene_options import Execution, ObservationSpec, SarReading, SceneProducts
from .variables import on_grid

#: How far a date's cross-polarised band's speckle seed lies from its co-polarised one's.
CROSS_SEED_OFFSET = 500_009

#: The observation and products of a scene when none are given.
DEFAULT_OBSERVATION = ObservationSpec()
DEFAULT_PRODUCTS = SceneProducts()

#: A scene's priors unless told otherwise: 0.1 % of the cells, random, exact.
DEFAULT_PRIORS = PriorSpec(fraction=1e-3)


def simulate_scene(
    dem: Any,
    geometry: RadarGeometry,
    *,
    coarse_factor: int = 3,
    coarse_errors: CoarseDemErrors | None = None,
    priors: PriorSpec = DEFAULT_PRIORS,
    prior_method: str = "linear",
    seed: int = 0,
    opposite_geometry: RadarGeometry | None = None,
    observation: ObservationSpec = DEFAULT_OBSERVATION,
    products: SceneProducts = DEFAULT_PRODUCTS,
    unscored: Any = None,
    name: str | None = None,
    progress: bool = True,
    device: str | None = None,
) -> xr.Dataset:
    """A simulated terrain scene: the observation from the fine DEM, everything else from
    a DEM ``coarse_factor`` times coarser, and the fine DEM as the truth.

    The coarse DEM is the ideal one (the block mean on an aligned grid,
    :func:`block_mean`) unless ``coarse_errors`` describe a real product's
    (:func:`sarheight.coarse_dem.coarse_product`: correlated and slope-dependent error, a
    geolocation shift, a grid not aligned with the fine one); the priors are drawn from the
    fine DEM as ``priors`` says (exact unless it names an instrument); the images as
    ``observation`` says (:class:`ObservationSpec`: speckle, noise, the ground's law and
    land cover or a :class:`sarheight.ground.Ground`, the dates of a stack).

    Parameters
    ----------
    dem : the true (fine) DEM, anything :func:`sarheight.dem.open_dem` takes (WGS84
        ellipsoidal heights, m). Its grid is the scene's.
    geometry : the acquisition geometry (:func:`scene_geometry` makes a Sentinel-1-like one).
    coarse_factor : how much coarser the DEM used for the reconstruction is
        (:func:`degrade_dem`): 1 would leak the truth into the inputs.
    coarse_errors : the coarse product's errors (their ``factor`` must be
        ``coarse_factor``), drawn with :func:`sarheight.coarse_dem.draw_errors`; None: the
        ideal block mean.
    priors : the known heights (:class:`sarheight.priors.PriorSpec`): how many, in which
        pattern, with which instrument's errors (a ``kind`` without ``errors`` has them
        drawn from ``seed``); default 0.1 % of the cells, random and exact.
    prior_method : the interpolation of ``prior_interpolated``.
    seed : seeds the land cover, speckle, noise and the priors' draw.
    opposite_geometry : the opposite pass: also simulate and reconstruct it
        (``other_sar_reconstructed``, ``other_sar_geocoded``), with the same priors.
    observation : how the images are made (:class:`ObservationSpec`); a stack's
        ``sar_*`` are the composite of the dates that agree (:func:`observed_scene`).
    products : what the scene makes from them (:class:`SceneProducts`: the registration,
        the inversion, each date kept, the coarse DEM's error taken apart into
        :data:`ERROR_SOURCE_VARIABLES`: the relief its cells lose, its shift, correlated,
        slope, bias and rounding errors, m, summing to the bilinear resampling of the
        product less the truth).
    unscored : cells (bool, on the DEM grid) whose true height the scene leaves out of
        ``height`` (NaN: neither trained on nor scored), such as sea at a constant height.
    name : the scene's name; default ``<dem>_<pass>_c<factor>_s<seed>``.
    progress : show progress bars (only on a terminal).
    device : where the physics runs (the simulation and the reconstructions): None or
        ``"cpu"``, the numba kernels; ``"cuda"``, ``"cuda:N"``, torch on that GPU
        (:func:`sarheight.reconstruct` takes it so). The scene is the same to the rounding.

    Returns
    -------
    xr.Dataset on the DEM grid with the variables the module docstring lists, ``height``
    the truth; attrs record the geometry, the DEM and the parameters.
    """
    if device is not None:
        compute_for(device)  # a GPU this machine lacks refused before any work
    # The truth checked once; what draws from it takes the Dem as checked.
    checked = checked_dem(dem)
    truth = checked.heights
    if not isinstance(observation, ObservationSpec) or not isinstance(products, SceneProducts):
        raise InvalidInputError("observation and products are an ObservationSpec and a SceneProducts "
                                "(ObservationSpec(looks=4.4, dates=10), SceneProducts(inversion=True))")
    if not isinstance(priors, PriorSpec):
        raise InvalidInputError(f"priors={priors!r}: give a PriorSpec (PriorSpec(fraction=1e-3), "
                                "PriorSpec(count=200, kind='altimeter')): a scene needs known heights")
    if coarse_errors is not None and coarse_errors.factor != int(coarse_factor):
        raise InvalidInputError(f"coarse_errors are of a {coarse_errors.factor}x product, coarse_factor is "
                                f"{coarse_factor}: draw them for the scene's factor")
    if coarse_errors is None or coarse_errors.is_ideal:
        coarse = block_mean(truth, coarse_factor)
    else:
        coarse = coarse_product(checked, coarse_errors, seed=seed)
    known = sample_priors(checked, priors, seed=seed)

    observations, geometries = simulate_observations(checked, geometry, opposite_geometry, observation, seed=seed,
                                                     device=device)
    conditions = observation.conditions
    ground = observation.ground
    keep_dates = len(conditions) > 1 if products.keep_dates is None else products.keep_dates
    dem_name = source_name(dem)
    scene_name = name or f"{dem_name}_{pass_direction(geometry)}_c{coarse_factor}_s{seed}"
    with warnings.catch_warnings():
        # The coarse product, shifted and on its own grid, stops short of the truth's edges:
        # the grid's cells it leaves without a height are no voids of a user's DEM.
        warnings.filterwarnings("ignore", message=r".* of the DEM's cells have no height", category=PlausibilityWarning)
        scene = observed_scene(coarse, observations, geometries, known, grid=truth, prior_method=prior_method,
                               reading=SarReading(projection=observation.projection),
                               products=dataclasses.replace(products, keep_dates=keep_dates, error_sources=False),
                               name=scene_name, execution=Execution(progress=progress, device=device))
    height = truth.values.astype(np.float32)
    if unscored is not None:
        left_out = np.asarray(unscored.values if isinstance(unscored, xr.DataArray) else unscored, dtype=bool)
        if left_out.shape != truth.shape:
            raise InvalidInputError(f"unscored is {left_out.shape}, the DEM {truth.shape}: give a mask on the DEM grid")
        height = np.where(left_out, np.float32(np.nan), height)
    scene["height"] = on_grid(height, truth, "height")
    if products.error_sources:
        for variable, values in coarse_error_maps(truth, coarse_factor, coarse_errors, seed).items():
            scene[variable] = on_grid(values, truth, variable)
    scene.attrs.update(
        kind="simulated",
        dem_name=dem_name,
        pass_direction=pass_direction(geometry),
        coarse_factor=int(coarse_factor),
        prior_pattern=known.attrs["pattern"],
        prior_count=int(known["prior_mask"].sum()),
        prior_noise_m=priors.noise_m,
        prior_error_rms_m=float(known.attrs.get("prior_error_rms_m", 0.0)),
        **({key: known.attrs[key] for key in PRIOR_ERROR_ATTRS} if "prior_kind" in known.attrs
           else {"prior_kind": "exact"}),
        coarse_family=str(coarse.attrs.get("coarse_family", "ideal" if coarse_errors is None or coarse_errors.is_ideal
                                           else "given")),
        **{key: value for key, value in (coarse_errors.to_attrs() if coarse_errors is not None else {}).items()
           if key != "coarse_factor"},
        looks=float(observation.looks) if observation.looks is not None else "none",
        sigma0_law=ground.name if ground is not None else observation.law,
        land_cover_db=float(ground.texture_db if ground is not None else observation.land_cover_db),
        land_cover_seed=int(seed if observation.land_cover_seed is None else observation.land_cover_seed),
        **({"ground_family": ground.family, **ground.to_attrs()} if ground is not None else {}),
        nesz_db=float(observation.nesz_db) if observation.nesz_db is not None else "none",
        cross_polarised=int(observation.cross_polarised),
        seed=int(seed),
        date_conditions=", ".join(condition.name for condition in conditions),
        other_pass=pass_direction(opposite_geometry) if opposite_geometry is not None else "none",
        dem_source_vertical_datum=str(truth.attrs.get("source_vertical_datum", "")),
        **{f"geometry_{key}": value for key, value in geometry.to_attrs().items()
           if isinstance(value, (str, int, float))},
    )
    return scene


#: The scene variables of the coarse DEM's error taken apart (``error_sources``), by part.
ERROR_SOURCE_VARIABLES = {"lost_relief": "coarse_error_lost_relief", "shift": "coarse_error_shift",
                          "correlated": "coarse_error_correlated", "slope": "coarse_error_slope",
                          "bias": "coarse_error_bias", "rounding": "coarse_error_rounding"}


def coarse_error_maps(truth: xr.DataArray, factor: int, errors: CoarseDemErrors | None,
                      seed: int) -> dict[str, np.ndarray]:
    """The coarse DEM's error (its bilinear resampling to ``truth``'s grid less the truth)
    taken apart on that grid (float32, m, by the variables of :data:`ERROR_SOURCE_VARIABLES`):
    the relief the exact area mean loses, then each part of the product's error
    (:func:`sarheight.coarse_dem.coarse_error_parts`, resampled bilinearly); the ideal
    product (``errors`` None or ideal) only loses relief."""
    heights = truth.values.astype(np.float64)
    if errors is None or errors.is_ideal:
        ideal = upsample(block_mean(truth, factor), truth).values
        maps = {name: np.zeros(truth.shape) for name in ("shift", *ERROR_PARTS)}
    else:
        taken = coarse_error_parts(truth, errors, seed=seed)
        ideal = upsample(taken["ideal"], truth).values
        maps = {"shift": upsample(taken["shifted"], truth).values - ideal}
        maps.update({name: upsample(taken[name].rio.write_crs(truth.rio.crs), truth).values for name in ERROR_PARTS})
    maps["lost_relief"] = ideal - heights
    return {variable: maps[name].astype(np.float32) for name, variable in ERROR_SOURCE_VARIABLES.items()}


def simulate_observations(
    truth: xr.DataArray | Dem,
    geometry: RadarGeometry,
    opposite_geometry: RadarGeometry | None = None,
    observation: ObservationSpec = DEFAULT_OBSERVATION,
    *,
    seed: int = 0,
    device: str | None = None,
) -> tuple[list[xr.DataArray], list[RadarGeometry]]:
    """The observations of a DEM (:func:`sarheight.simulate.simulate_sar`) as a scene
    takes them: each date of ``geometry``'s pass, then each of ``opposite_geometry``'s, and
    the geometry of each, the images as ``observation`` says (:class:`ObservationSpec`);
    ``seed`` and ``device`` as :func:`simulate_scene` takes them.

    Each pass is its own acquisition (its own speckle), and each date of it (the seed
    follows the pass and the date, not the scene file, so both passes' files of a pair
    hold the same images); the dates' grounds follow their conditions
    (:class:`sarheight.ground.DateCondition`), a law and its land cover taken as a
    uniform ground for that.
    """
    conditions, stack, ground = observation.conditions, observation.is_stack, observation.ground
    looks, nesz_db, projection = observation.looks, observation.nesz_db, observation.projection
    cross = observation.cross_polarised
    if ground is None:
        # One law and its land-cover texture as a ground of one class: every scene's ground
        # carried as the simulator carries a ground (each cell its law of its own local
        # incidence), and a stack's dates can change its law.
        base_law = {"empirical": SNAP_LAW, "lambert": LAMBERT_LAW}[observation.law]
        ground = Ground.uniform(base_law, (truth.shape[0], truth.shape[1]), texture_db=observation.land_cover_db,
                                texture_seed=seed if observation.land_cover_seed is None
                                else observation.land_cover_seed)

    cross_ground = ground.cross_polarised() if cross else None

    def image(pass_geometry: RadarGeometry, date_seed: int, condition: DateCondition) -> xr.DataArray:
        # (Without return_truth, simulate_sar gives the image alone.) A single image's
        # ground is the scene's own, as drawn.
        def band(band_ground: Ground, band_seed: int) -> xr.DataArray:
            return cast(xr.DataArray, simulate_sar(truth, pass_geometry, looks=looks, nesz_db=nesz_db,
                                                   seed=band_seed, projection=projection, device=device,
                                                   ground=condition.apply(band_ground) if stack else band_ground))

        co_polarised = band(ground, date_seed)
        if cross_ground is None:
            return co_polarised
        # The cross-polarised band: its own speckle (the two channels' speckle is nearly
        # uncorrelated over natural ground), the same noise floor.
        bands = xr.concat([co_polarised, band(cross_ground, date_seed + CROSS_SEED_OFFSET)], dim=POLARISATION_DIM,
                          combine_attrs="override")
        return bands.assign_coords({POLARISATION_DIM: ["VV", "VH"]})

    def observe(pass_geometry: RadarGeometry) -> list[xr.DataArray]:
        offset = (pass_direction(pass_geometry) == "descending") + 2 * (pass_geometry.look_side == "left")
        pass_seed = seed + 1_000_003 * offset
        return [image(pass_geometry, pass_seed + 7_919 * date, condition) for date, condition in enumerate(conditions)]

    observations = observe(geometry)
    geometries = [geometry] * len(observations)
    if opposite_geometry is not None:
        opposite = observe(opposite_geometry)
        observations += opposite
        geometries += [opposite_geometry] * len(opposite)
    return observations, geometries
