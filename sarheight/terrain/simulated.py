"""Simulated terrain scenes: the observation simulated from a fine DEM, everything else
from a coarser one (ideal or a real product's errors), the fine DEM the truth; and sets of
them written as scene files over passes, factors, priors, grounds, dates and seeds.

Augment by simulating more geometries (passes, headings, incidence ranges, look sides),
prior draws and speckle seeds, never by flipping or rotating the images: a flip changes
the look direction, and with it which slopes are in layover.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import xarray as xr

from ..coarse_dem import ERROR_PARTS, CoarseDemErrors, coarse_error_parts, coarse_product, draw_errors
from ..dem import Dem, checked_dem, open_dem
from ..errors import (
    InvalidInputError,
    PlausibilityWarning,
    deferred_warnings,
    user_stacklevel,
)
from ..geometry import LookSide, RadarGeometry
from ..ground import (
    LAMBERT_LAW,
    SNAP_LAW,
    Ground,
    draw_date_conditions,
    draw_ground,
)
from ..priors import (
    PRIOR_ERROR_ATTRS,
    PriorSpec,
    sample_priors,
)
from ..simulate import simulate_sar
from .augment import (
    TerrainTransform,
    crop_window,
    orient_cells,
    terrain_on_a_projected_grid,
    transform_terrain,
)
from .backprojection import upsample
from .files import write_scene
from .geometry import PASS_HEADINGS, PassDirection, pass_direction, scene_geometry
from .grid import block_mean
from .observed import observed_scene, source_name
from .scene_options import Execution, ObservationSpec, SarReading, SceneProducts
from .variables import on_grid

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

    Returns
    -------
    xr.Dataset on the DEM grid with the variables the module docstring lists, ``height``
    the truth; attrs record the geometry, the DEM and the parameters.
    """
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

    observations, geometries = simulate_observations(checked, geometry, opposite_geometry, observation, seed=seed)
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
                               name=scene_name, execution=Execution(progress=progress))
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
) -> tuple[list[xr.DataArray], list[RadarGeometry]]:
    """The observations of a DEM (:func:`sarheight.simulate.simulate_sar`) as a scene
    takes them: each date of ``geometry``'s pass, then each of ``opposite_geometry``'s, and
    the geometry of each, the images as ``observation`` says (:class:`ObservationSpec`);
    ``seed`` as :func:`simulate_scene` takes it.

    Each pass is its own acquisition (its own speckle), and each date of it (the seed
    follows the pass and the date, not the scene file, so both passes' files of a pair
    hold the same images); the dates' grounds follow their conditions
    (:class:`sarheight.ground.DateCondition`), a law and its land cover taken as a
    uniform ground for that.
    """
    conditions, stack, ground = observation.conditions, observation.is_stack, observation.ground
    looks, nesz_db, projection = observation.looks, observation.nesz_db, observation.projection
    if ground is None:
        # One law and its land-cover texture as a ground of one class: every scene's ground
        # carried as the simulator carries a ground (each cell its law of its own local
        # incidence), and a stack's dates can change its law.
        base_law = {"empirical": SNAP_LAW, "lambert": LAMBERT_LAW}[observation.law]
        ground = Ground.uniform(base_law, (truth.shape[0], truth.shape[1]), texture_db=observation.land_cover_db,
                                texture_seed=seed if observation.land_cover_seed is None
                                else observation.land_cover_seed)

    def observe(pass_geometry: RadarGeometry) -> list[xr.DataArray]:
        offset = (pass_direction(pass_geometry) == "descending") + 2 * (pass_geometry.look_side == "left")
        pass_seed = seed + 1_000_003 * offset
        if not stack:
            return [cast(xr.DataArray, simulate_sar(truth, pass_geometry, looks=looks, nesz_db=nesz_db,
                                                    seed=pass_seed, projection=projection, ground=ground))]
        # (Without return_truth, simulate_sar gives the image alone.)
        return [cast(xr.DataArray, simulate_sar(truth, pass_geometry, looks=looks, nesz_db=nesz_db,
                                                seed=pass_seed + 7_919 * date, projection=projection,
                                                ground=condition.apply(ground)))
                for date, condition in enumerate(conditions)]

    observations = observe(geometry)
    geometries = [geometry] * len(observations)
    if opposite_geometry is not None:
        opposite = observe(opposite_geometry)
        observations += opposite
        geometries += [opposite_geometry] * len(opposite)
    return observations, geometries


def _variant_tag(look_side: str, heading_offset: float) -> str:
    tag = "" if look_side == "right" else "_left"
    return tag + (f"_h{heading_offset:+g}" if heading_offset else "")


def _radiometry_tag(looks: float | None, law: str, land_cover_db: float) -> str:
    """The part of a scene's file name that tells its observation's looks, law and land
    cover apart from the default (4.4 looks, the empirical law, 3 dB of land cover)."""
    tag = "" if looks == 4.4 else f"_looks{looks:g}" if looks is not None else "_nospeckle"
    tag += "" if law == "empirical" else f"_{law}"
    return tag + ("" if land_cover_db == 3.0 else f"_cover{land_cover_db:g}")


def simulate_scenes(
    dems: list[Any],
    out: str | os.PathLike[str],
    *,
    geometries: list[RadarGeometry] | None = None,
    passes: tuple[PassDirection, ...] = ("ascending", "descending"),
    look_sides: tuple[LookSide, ...] = ("right",),
    heading_offsets_deg: tuple[float, ...] = (0.0,),
    incidence_deg: tuple[float, float] = (30.0, 46.0),
    coarse_factors: tuple[int, ...] = (3,),
    priors: PriorSpec | Sequence[PriorSpec] = (DEFAULT_PRIORS,),
    seeds: tuple[int, ...] = (0,),
    looks: tuple[float | None, ...] = (4.4,),
    laws: tuple[str, ...] = ("empirical",),
    land_cover_db: tuple[float, ...] = (3.0,),
    coarse_families: tuple[str, ...] = ("ideal",),
    ground_families: tuple[str | None, ...] = (None,),
    dates: tuple[int, ...] = (1,),
    moisture_db: float = 1.0,
    snow_share: float = 0.2,
    terrain_transforms: Sequence[TerrainTransform] = (TerrainTransform(),),
    opposite_passes: tuple[bool, ...] = (True,),
    crop_cells: int | None = None,
    sample: int | None = None,
    unscored: dict[str, Any] | None = None,
    nesz_db: float | None = -22.0,
    products: SceneProducts = DEFAULT_PRODUCTS,
    client: Any = None,
    progress: bool = True,
) -> list[Path]:
    """Simulate and write one scene file per DEM, geometry, coarse factor, priors,
    observation (looks, law, land cover) and seed, or a random sample of them.

    Parameters
    ----------
    dems : DEMs (paths or DataArrays from :func:`sarheight.dem.open_dem`; a DataArray's
        ``attrs["dem_name"]`` names its files).
    out : the folder of the scene files (made if missing).
    geometries : the geometries of real products (each must cover every DEM); default
        synthetic ones from ``passes``, ``look_sides``, ``heading_offsets_deg`` and
        ``incidence_deg`` centred on each DEM (:func:`scene_geometry`).
    coarse_factors, seeds : other axes of the set; a seed draws the land cover, the
        speckle and the priors.
    priors : the priors' axis (:class:`sarheight.priors.PriorSpec`, one or several, each named in the files
        by its ``label``: its instrument kind or pattern, so no two may share one); a kind
        without errors has them drawn per scene.
    looks, laws, land_cover_db : the observations: equivalent looks (4.4 a date, 44 a
        composite of ten), the ground's sigma0 law and the land cover's contrast (dB), as
        :func:`simulate_scene` takes them.
    coarse_families : the families of :data:`sarheight.coarse_dem.DEGRADATION_FAMILIES`
        the coarse DEM's errors are drawn from ("ideal": the block mean).
    ground_families : families of :data:`sarheight.ground.GROUND_FAMILIES` the ground
        (land cover following the terrain, a law per class) is drawn from, instead of
        ``laws`` and ``land_cover_db``; None: those.
    dates, moisture_db, snow_share : stacks: the numbers of dates per pass of the scenes
        (1: one observation a pass), each date its own speckle and its ground's level moved
        by a moisture drawn with ``moisture_db`` standard deviation (dB), ``snow_share`` of
        the dates under wet snow (:func:`sarheight.ground.draw_date_conditions`, from the
        scene's own seed).
    terrain_transforms : new terrain from each DEM (:class:`sarheight.terrain.augment.TerrainTransform`:
        turned, mirrored, scaled on the ground; a geographic DEM on its UTM grid first), each
        with its own geometries simulated over it; named in the files after the DEM (``<dem>-r1m``), the
        scenes' ``dem_name`` the DEM's own (one area, one split). Default: the DEM as it is.
    opposite_passes : whether a scene also observes the opposite pass (True, the default)
        or its own pass alone (False: ``_onepass`` in its name): both give scenes of one
        image and of both passes for a network that takes either.
    crop_cells : each scene a window of this many cells a side of its (transformed)
        terrain, drawn per scene (:func:`sarheight.terrain.augment.crop_window`: the draw
        of the most land; ``crop_row``, ``crop_col`` attributes), its geometry the whole
        terrain's (so a crop lies anywhere from near to far range); None: the whole DEM.
    sample : per DEM (and terrain transform), how many scenes to draw at random (without repeats, seeded by the
        DEM's name) from all the combinations of the axes above, instead of every one: a
        training set that spans many axes without their product.
    unscored : per DEM name, the cells whose truth its scenes leave out (see
        :func:`simulate_scene`: the sea).
    client : where the scenes are made: None, one after the other here; ``"local"``, the
        processes of a ``LocalCluster`` on this machine (one per core); a scheduler
        address or a ``dask.distributed.Client`` (:class:`sarheight.distributed.Workers`).
        The scenes are the same wherever they are made (every draw follows a scene's name),
        to the rounding of the kernels' sums, which run on a worker's threads.
    nesz_db : every image's noise floor (dB; None: none).
    products : what every scene makes from its observation (:class:`SceneProducts`).

    Each scene carries the opposite pass (for synthetic geometries: with the same look
    side and heading offset, also when ``passes`` names one pass; for products: the first
    product of the other direction, if any) as its ``other_*`` variables, unless
    ``opposite_passes`` says otherwise; the scenes of
    one DEM, factor, priors and seed share their priors. Every drawn property (the coarse
    DEM's errors, an instrument kind's errors, the ground and the land cover) is drawn
    with a seed of its own scene (the CRC-32 of its name without the pass): no two scenes
    share a land cover, except the two passes of a pair, which see the same ground. Files are named
    ``<dem>[-<transform>]_<pass>[_left][_h<offset>]_c<factor>[_<coarse family>]_<priors'
    label>[_looks<n>][_<law>][_cover<dB>][_ground-<family>][_dates<n>][_onepass]_s<seed>.nc``;
    a file that exists is kept, so an interrupted run resumes. Returns the paths, in order.
    """
    if not isinstance(products, SceneProducts):
        raise InvalidInputError(f"products must be a SceneProducts (SceneProducts(inversion=True)), got "
                                f"{type(products).__name__}")
    from ..threads import bar as progress_bar

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    truths = [open_dem(dem).assign_attrs(dem_name=source_name(dem)) for dem in dems]
    names = [truth.attrs["dem_name"] for truth in truths]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"two DEMs share a name ({names}): their scene files would collide; rename one")
    unknown = sorted(set(unscored or {}) - set(names))
    if unknown:
        raise InvalidInputError(f"unscored names DEMs {unknown} that are not among {names}")
    if any(family is not None for family in ground_families) and (tuple(laws) != ("empirical",)
                                                                   or tuple(land_cover_db) != (3.0,)):
        raise InvalidInputError("ground_families draw each scene's laws and land cover: leave laws and land_cover_db "
                                "(--law, --land-cover) at their defaults with them")
    if not dates or any(isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1
                        for value in dates):
        raise InvalidInputError(f"dates must be positive numbers of dates per pass, got {dates!r}")
    specs = [priors] if isinstance(priors, PriorSpec) else list(priors)
    if not specs or not all(isinstance(spec, PriorSpec) for spec in specs):
        raise InvalidInputError(f"priors={priors!r}: give a sequence of PriorSpec, one per priors of the set")
    labels = [spec.label for spec in specs]
    if len(set(labels)) != len(labels):
        raise InvalidInputError(f"two priors share the label of their files ({labels}): give one PriorSpec per "
                                "pattern or instrument kind")
    changes = list(terrain_transforms)
    if not changes or not all(isinstance(change, TerrainTransform) for change in changes):
        raise InvalidInputError(f"terrain_transforms={terrain_transforms!r}: give a sequence of TerrainTransform "
                                "(TerrainTransform() is the DEM as it is)")
    if len({change.label for change in changes}) != len(changes):
        raise InvalidInputError(f"terrain_transforms repeats a transform ({[c.label or 'none' for c in changes]})")
    if any(change.label for change in changes):
        # A transformed geographic DEM is put on its UTM grid first, where cells given on
        # its own grid no longer fall.
        projected_only = sorted(name for name, truth in zip(names, truths, strict=True)
                                if not truth.rio.crs.is_projected and (unscored or {}).get(name) is not None)
        if projected_only:
            raise InvalidInputError(
                f"the unscored cells of {projected_only} are on a geographic grid, which a terrain transform "
                "reprojects to its UTM zone: give the DEM on that grid "
                "(sarheight.terrain.augment.terrain_on_a_projected_grid) with its unscored cells on it")
    if not opposite_passes or any(not isinstance(value, bool) for value in opposite_passes) \
            or len(set(opposite_passes)) != len(opposite_passes):
        raise InvalidInputError(f"opposite_passes must be True, False or both, each once, got {opposite_passes!r}")
    if crop_cells is not None and (isinstance(crop_cells, bool) or not isinstance(crop_cells, int)
                                   or crop_cells < 16):
        raise InvalidInputError(f"crop_cells must be a number of cells a side (16 or more), got {crop_cells!r}")
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
        raise InvalidInputError(f"sample must be a positive number of scenes per DEM, got {sample!r}")
    if client is not None:
        from ..distributed import check_client

        check_client(client)

    def variants(truth: xr.DataArray) -> list[tuple[str, RadarGeometry, RadarGeometry | None]]:
        if geometries is not None:
            found = []
            for index, geometry in enumerate(geometries):
                others = [g for g in geometries if pass_direction(g) != pass_direction(geometry)]
                tag = f"_g{index}" if len(geometries) > 1 else ""
                found.append((f"{pass_direction(geometry)}{tag}", geometry, others[0] if others else None))
            return found
        found = []
        # Checked once for all its geometries.
        checked = checked_dem(truth, copy=False)
        for look_side in look_sides:
            for offset in heading_offsets_deg:
                made = {direction: scene_geometry(checked, direction, incidence_near_deg=incidence_deg[0],
                                                  incidence_far_deg=incidence_deg[1], look_side=look_side,
                                                  heading_offset_deg=offset) for direction in PASS_HEADINGS}
                for direction in passes:
                    other = next(made[d] for d in PASS_HEADINGS if d != direction)
                    found.append((direction + _variant_tag(look_side, offset), made[direction], other))
        return found

    plans: list[tuple[xr.DataArray, str, Any, list[tuple[Any, ...]]]] = []
    for source, source_dem_name in zip(truths, names, strict=True):
        # A geographic DEM reprojected once, for all its transforms.
        projected = terrain_on_a_projected_grid(source) if any(change.label for change in changes) else source
        for change in changes:
            # The geometries are made over the terrain as transformed: the physics of the
            # new terrain, not an image turned.
            truth = transform_terrain(projected, change) if change.label else source
            dem_name = source_dem_name + (f"-{change.label}" if change.label else "")
            cells = (unscored or {}).get(source_dem_name)
            if cells is not None and change.label:
                cells = orient_cells(np.asarray(cells), change, source.rio.transform())
            combinations: list[tuple[Any, ...]] = list(itertools.product(
                variants(truth), coarse_factors, coarse_families, specs, looks, laws, land_cover_db, ground_families,
                dates, opposite_passes, seeds))
            if sample is not None and sample < len(combinations):
                rng = np.random.default_rng(zlib.crc32(dem_name.encode()))
                combinations = [combinations[k] for k in sorted(rng.choice(len(combinations), sample,
                                                                           replace=False))]
            plans.append((truth, dem_name, cells, combinations))
    jobs: list[tuple[Path, tuple[xr.DataArray, str, Any, tuple[Any, ...]]]] = []
    for truth, dem_name, cells, drawn in plans:
        for combination in drawn:
            (tag, _, _), factor, family, spec, scene_looks, law, cover, ground_family, stack, opposite, seed = \
                combination
            radiometry = (_radiometry_tag(scene_looks, law, cover) if ground_family is None
                          else _radiometry_tag(scene_looks, "empirical", 3.0) + f"_ground-{ground_family}")
            radiometry += (f"_dates{stack}" if stack > 1 else "") + ("" if opposite else "_onepass")
            name = (f"{dem_name}_{tag}_c{factor}{'' if family == 'ideal' else '_' + family}_{spec.label}"
                    f"{radiometry}_s{seed}")
            jobs.append((out / f"{name}.nc", (truth, dem_name, cells, combination)))
    settings = {"crop_cells": crop_cells, "moisture_db": moisture_db, "snow_share": snow_share, "nesz_db": nesz_db,
                "products": products}
    missing = [(path, job) for path, job in jobs if not is_complete_scene(path)]
    # A scene's warnings (a DEM cropped to the image...) after the bar, once each with a count.
    with deferred_warnings(), progress_bar(total=len(jobs), desc="terrain scenes", unit="scene",
                                           enabled=progress) as bar:
        bar.update(len(jobs) - len(missing))
        if client is None:
            for path, job in missing:
                write_simulated_scene(path, *job, settings)
                bar.update()
        elif missing:
            from dask.distributed import Client, LocalCluster, as_completed

            from ..distributed import Workers
            from ..threads import thread_count

            with contextlib.ExitStack() as opened:
                if client == "local":
                    # A scene is a task of Python and kernels: a process per core, one thread each.
                    cluster = opened.enter_context(LocalCluster(n_workers=thread_count(), threads_per_worker=1,
                                                               processes=True, dashboard_address=None))
                    client = opened.enter_context(Client(cluster))
                workers = opened.enter_context(Workers.open(client))
                # Each DEM sent to the workers once, not with each of its scenes.
                sent = {id(truth): workers.broadcast(truth) for truth, *_ in plans}
                futures = [workers.submit(write_simulated_scene, path, sent[id(job[0])], *job[1:], settings)
                           for path, job in missing]
                for future in as_completed(futures):
                    future.result()
                    bar.update()
    return [path for path, _ in jobs]


def is_complete_scene(path: Path) -> bool:
    """Whether ``path`` holds a whole scene file (a run resuming keeps it); a file cut short
    (a full disk, a copy interrupted) or not a scene is warned of and made again, never read."""
    if not path.exists():
        return False
    import h5py

    try:
        with open(path, "rb") as handle:
            signature = handle.read(8)
        if signature != b"\x89HDF\r\n\x1a\n":
            raise OSError("not an HDF5 file")
        with h5py.File(path, "r") as opened:
            if "sar_reconstructed" not in opened:
                raise OSError("no sar_reconstructed variable")
    except OSError as error:
        warnings.warn(f"{str(path)!r} is not a whole scene file ({error}): it is made again", PlausibilityWarning,
                      stacklevel=user_stacklevel())
        return False
    return True


def write_simulated_scene(path: Path, truth: xr.DataArray, dem_name: str, cells: Any, combination: tuple,
                          settings: dict[str, Any]) -> Path:
    """Simulate and write one scene of :func:`simulate_scenes`: ``combination`` its axes
    (geometry, factor, coarse family, priors, looks, law, land cover, ground family, dates,
    opposite pass, seed), ``settings`` the set's crop, moisture, snow and scene options.
    Every draw follows the scene's name (see :func:`simulate_scenes`)."""
    (tag, geometry, other), factor, family, spec, scene_looks, law, cover, ground_family, stack, opposite, seed = \
        combination
    name = path.stem
    settings = dict(settings)
    crop_cells, moisture_db, snow_share, nesz_db, products = (
        settings.pop(key) for key in ("crop_cells", "moisture_db", "snow_share", "nesz_db", "products"))
    # The two passes of a pair see one ground, one coarse DEM and one set of priors (each
    # holds the other's image): the draws follow the name without the pass.
    pair = tag.removeprefix("ascending").removeprefix("descending")
    draw = zlib.crc32(name.replace(f"{dem_name}_{tag}_", f"{dem_name}_pair{pair}_", 1).encode())
    left_out, window = cells, None
    if crop_cells is not None:
        window = crop_window(truth, crop_cells, cells, seed=draw + 4)
        rows, cols = slice(window[0], window[0] + window[2]), slice(window[1], window[1] + window[3])
        crop = truth.isel(y=rows, x=cols).assign_attrs(dem_name=truth.attrs["dem_name"])
        # The crop checked once: the ground and the scene take the Dem as checked.
        terrain = checked_dem(crop, vertical_datum="ellipsoid")
        left_out = None if cells is None else np.asarray(cells)[rows, cols]
    else:
        terrain = checked_dem(truth, copy=False)
    observation = ObservationSpec(
        looks=scene_looks, nesz_db=nesz_db, law=law, land_cover_db=cover, land_cover_seed=draw,
        ground=draw_ground(terrain, ground_family, draw + 2) if ground_family else None,
        date_conditions=draw_date_conditions(stack, draw + 3, moisture_db=moisture_db,
                                             snow_dates=round(snow_share * stack)) if stack > 1 else None)
    scene = simulate_scene(terrain, geometry, coarse_factor=factor, seed=seed,
                           coarse_errors=None if family == "ideal" else draw_errors(factor, family, draw),
                           priors=spec.with_errors_drawn(draw + 1), opposite_geometry=other if opposite else None,
                           observation=observation, products=products, name=name, unscored=left_out,
                           progress=False, **settings)
    if window is not None:
        scene.attrs.update(crop_row=window[0], crop_col=window[1])
    scene.attrs["coarse_family"] = family
    return write_scene(scene, path)
