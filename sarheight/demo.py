"""``sarheight demo``: the main job on a built-in real example, offline.

1. Backward-geocodes the real Jacksboro fault DEM (shipped with matplotlib) under a
   synthetic Sentinel-1-like geometry: a GeoTIFF of the radar coordinates of every cell.
2. Simulates a speckled C-band observation of the fine DEM, reconstructs it with a 3x
   coarser DEM (as happens in practice), and compares conventional geocoding,
   terrain flattening and the reconstruction against the truth inside layover.

The Jacksboro terrain is gentle (slopes up to 36 degrees on the 3 arc-second grid, 25 on
the 3x coarser one): under a Sentinel-1 IW geometry (693 km, incidence 30-46 degrees) it
shows no layover, and no straight-track geometry gives it both layover and shadow in
more than a few cells (a low track sweeping the incidence from nadir to 70 degrees: 0.2 %
layover and 0.05 % shadow of the coarse cells). The reconstruction part therefore keeps
the Sentinel-1 IW geometry and scales the real relief 3x about its lowest point
(``RELIEF_EXAGGERATION``): the slopes of an Alpine valley, with layover on about 14 % of
the coarse cells facing the radar and shadow behind the steepest ridges. Step 1 uses the
DEM as it is.

3. Refines a realistic 3x coarser DEM of real relief with the packaged refinement
   networks (one image; ten dates of both passes), beside every method that needs no
   learning, the inversion among them: on the Big Tujunga crop (SRTM, 30 m), a DEM the
   networks neither trained nor were calibrated on.
4. Predicts building heights of a synthetic city with the packaged MBHR-Net.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .geometry import RadarGeometry, backward_geocode, geocoding_products
from .io import atomic_path, write_geotiff
from .plots import MASK_COLOURS, hillshade, quicklook
from .raster import cell_size_m, power_to_db
from .sample_data import bigtujunga_dem, jacksboro_dem
from .scores import rms

logger = logging.getLogger(__name__)


def demo_geometry(dem: xr.DataArray) -> RadarGeometry:
    """The synthetic ascending Sentinel-1-like geometry centred on ``dem``."""
    west, south, east, north = dem.rio.transform_bounds("EPSG:4326")
    return RadarGeometry.synthetic(
        center_lon=0.5 * (west + east),
        center_lat=0.5 * (south + north),
        heading_deg=348.0,
        incidence_near_deg=30.0,
        incidence_far_deg=46.0,
        line_spacing=10.0,
        sample_spacing=10.0,
        azimuth_extent=60e3,
    )


#: Factor applied to the Jacksboro relief for the reconstruction demo (see the module docstring).
RELIEF_EXAGGERATION = 3.0


def exaggerated_relief(dem: xr.DataArray, factor: float = RELIEF_EXAGGERATION) -> xr.DataArray:
    """``dem`` with its relief scaled by ``factor`` about its lowest point (heights in m)."""
    base = float(dem.min())
    out = dem.copy(data=((dem.values - base) * factor + base).astype(dem.dtype))
    out.attrs["relief_exaggeration"] = float(factor)
    return out.rio.write_crs(dem.rio.crs)


def reconstruction_geometry(dem: xr.DataArray) -> RadarGeometry:
    """The Sentinel-1 IW-like geometry of :func:`demo_geometry` with 20 m pixels: the
    3 arc-second DEM's cells span several pixels, as a coarse DEM does under a real product."""
    west, south, east, north = dem.rio.transform_bounds("EPSG:4326")
    return RadarGeometry.synthetic(
        center_lon=0.5 * (west + east),
        center_lat=0.5 * (south + north),
        heading_deg=348.0,
        incidence_near_deg=30.0,
        incidence_far_deg=46.0,
        line_spacing=20.0,
        sample_spacing=20.0,
        azimuth_extent=60e3,
    )


def run_reconstruction_demo(dem: xr.DataArray, out: Path, say) -> dict[str, Any]:
    """Simulate with the fine DEM, reconstruct with a 3x coarser one, compare with the truth
    (on the relief exaggerated ``RELIEF_EXAGGERATION`` times)."""
    from .masks import MaskCode, inside_image, to_isce3_mask
    from .reconstruction import reconstruct, to_geotiff
    from .simulate import simulate, simulate_sar

    dem = exaggerated_relief(dem)
    geometry = reconstruction_geometry(dem)
    say(f"reconstruction: relief x{RELIEF_EXAGGERATION:g} ({float(dem.min()):.0f}-{float(dem.max()):.0f} m), "
        f"geometry {geometry!r}")
    start = time.perf_counter()
    observation, truth = simulate_sar(dem, geometry, looks=4.4, nesz_db=-22.0, seed=0, return_truth=True)
    fine_area = simulate(dem, geometry, contribution="gamma")["sigma_area"]
    coarse = dem.coarsen(y=3, x=3, boundary="trim").mean()
    coarse.attrs.update(dem.attrs)
    coarse = coarse.rio.write_crs(dem.rio.crs)
    coarse = coarse.rio.write_transform(coarse.rio.transform(recalc=True))
    # Truth on the coarse grid: sigma0 of the 3x3 fine cells weighted by their areas.
    weighted = (truth * fine_area).coarsen(y=3, x=3, boundary="trim").sum()
    area = fine_area.where(np.isfinite(truth)).coarsen(y=3, x=3, boundary="trim").sum()
    coarse_truth = (weighted / area).assign_coords(y=coarse["y"], x=coarse["x"])
    result = reconstruct(coarse, observation, geometry)
    elapsed = time.perf_counter() - start
    layover = result["layover"].values
    shadow = result["shadow"].values
    inside = inside_image(layover)
    in_layover = inside & (layover != MaskCode.NONE) & np.isfinite(result["backscatter"].values)
    flattened_sigma = result["flattened"] * np.cos(np.radians(result["local_incidence_angle"]))
    rmse = {}
    for name, values in (("geocoded", result["geocoded"]), ("flattened", flattened_sigma),
                         ("reconstructed", result["backscatter"])):
        error = power_to_db(values.values[in_layover]) - power_to_db(coarse_truth.values[in_layover])
        rmse[name] = rms(error)
    figures = {
        "layover_fraction": float((inside & (layover != MaskCode.NONE)).sum() / inside.sum()),
        "shadow_fraction": float((inside & (shadow != MaskCode.NONE)).sum() / inside.sum()),
        "layover_cells": int(in_layover.sum()),
        "rmse_db_in_layover": rmse,
        "reconstruction_seconds": elapsed,
    }
    tif = to_geotiff(result, out / "jacksboro_reconstruction.tif")
    masks = write_geotiff(result[["layover", "shadow"]].assign(isce3_mask=to_isce3_mask(result)),
                          out / "jacksboro_masks.tif")
    # Layover by its MaskCode (0 none, 1 active, 2 passive), shadow over it; 255 blank.
    mask_image = np.where(inside, np.where(shadow != MaskCode.NONE, 3, layover), np.nan)
    masks_legend = {"categories": [(0, "0 none", MASK_COLOURS[0]), (1, "layover 1 active", MASK_COLOURS[1]),
                                   (2, "layover 2 passive", MASK_COLOURS[2]), (3, "shadow (1 or 2)", "#333333")],
                    "blank": "255 outside the image: blank"}
    error_db = power_to_db(result["backscatter"].values) - power_to_db(coarse_truth.values)
    gray = {"cmap": "gray", "vmin": -25, "vmax": 5, "colorbar": "dB"}
    # Errors in dB: red where brighter than the truth. The observation's noise floor is in
    # every product: it lifts the dark cells (+4 dB below -15 dB here; without it the
    # median error is 0.1 dB), so the errors lean red there.
    diverging = {"cmap": "RdBu_r", "vmin": -6, "vmax": 6, "colorbar": "dB (red: brighter than the truth)"}

    def in_layover(name: str) -> str:
        return f"\nRMSE {rmse[name]:.2f} dB in layover"

    png = quicklook(
        [
            ("observation beta0 (dB), radar geometry", power_to_db(observation.values), gray),
            ("truth sigma0 (dB)", power_to_db(coarse_truth.values), gray),
            (f"geocoded sigma0 (dB){in_layover('geocoded')}", power_to_db(result["geocoded"].values), gray),
            (f"flattened, as sigma0 (dB){in_layover('flattened')}", power_to_db(flattened_sigma.values), gray),
            (f"reconstructed sigma0 (dB){in_layover('reconstructed')}", power_to_db(result["backscatter"].values),
             gray),
            (f"masks (MaskCode): {figures['layover_fraction']:.0%} layover,\n{figures['shadow_fraction']:.1%} shadow",
             mask_image,
             masks_legend),
            (f"reconstructed - truth (dB){in_layover('reconstructed')};\nred where dark: the noise floor",
             error_db, diverging),
            (f"geocoded - truth (dB){in_layover('geocoded')};\nslopes facing the radar red, facing away blue",
             power_to_db(result["geocoded"].values) - power_to_db(coarse_truth.values), diverging),
            ("local incidence angle", result["local_incidence_angle"], {"cmap": "magma", "colorbar": "deg"}),
        ],
        out / "jacksboro_reconstruction.png",
        title=f"sarheight demo: layover reconstruction (relief x{RELIEF_EXAGGERATION:g}, fine-DEM observation, 3x "
              f"coarser DEM)",
    )
    figures.update(geotiff=str(tif), masks=str(masks), quicklook=str(png))
    say(f"simulated and reconstructed in {elapsed:.1f} s: layover {figures['layover_fraction']:.2%}, "
        f"shadow {figures['shadow_fraction']:.2%} of the coarse cells")
    say("RMSE against the truth inside layover ({} cells): geocoded {geocoded:.2f} dB, flattened "
        "{flattened:.2f} dB, reconstructed {reconstructed:.2f} dB".format(figures["layover_cells"], **rmse))
    say(f"wrote {tif}, {masks} and {png}")
    return figures


def missing_ml_extra(step: str, what: str, say) -> dict[str, Any] | None:
    """None where the ``ml`` extra is installed; else say that ``step`` is skipped and
    return the figures of a skipped step (``what`` names it in the message)."""
    from .extras import MissingExtraError, require

    try:
        require(what)
    except MissingExtraError as missing:
        say(f"{step}: skipped ({missing})")
        return {"skipped": str(missing)}
    return None


#: The draws of the demo's terrain scene (the coarse DEM's errors, the priors' instrument
#: and the ground), none of them a training scene's.
DEMO_TERRAIN_SEED = 7

#: The terrain step's DEM in words (the packaged Big Tujunga crop: a DEM held out of the
#: packaged model's training and calibration).
TERRAIN_DEMO_LABEL = "Big Tujunga (SRTM, 30 m)"


#: The images of the demo's terrain steps: one date of one pass (the packaged network for
#: one image), and ten dates of both passes (the stack network, where it ships).
TERRAIN_DEMO_STEPS = {"one_image": {"both_passes": False, "dates": 1, "words": "one Sentinel-1 date",
                                    "inversion": "inversion (SAR physics, one image)"},
                      "stack": {"both_passes": True, "dates": 10, "words": "10 Sentinel-1 dates of each pass",
                                "inversion": "inversion (SAR physics, both passes x 10 dates)"}}


def run_terrain_demo(dem: xr.DataArray, out: Path, say, *, checkpoint: str | os.PathLike[str] | None = None,
                     stack_checkpoint: str | os.PathLike[str] | None = None,
                     progress: bool = True) -> dict[str, Any]:
    """Terrain refinement: the shipped refinement networks correct a realistic 3x coarser
    DEM of real relief (the demo's: the Big Tujunga crop, a DEM held out of the networks'
    training and calibration), beside every method that needs no learning, the inversion
    among them: the packaged network for one image
    (:func:`sarheight.sample_data.packaged_terrain_network`) with one simulated Sentinel-1
    date, then the stack network (where it ships, or ``stack_checkpoint``) with ten dates
    of both passes.

    Each scene is made as the studies' held-out scenes are
    (:func:`sarheight.terrain.simulated.simulate_scene`): the coarse DEM a real product with its own
    errors (the "test" family of :data:`sarheight.coarse_dem.DEGRADATION_FAMILIES`:
    correlated and slope-dependent error, a geolocation shift, a grid not aligned),
    ICESat-2-like altimeter priors with their error on 0.1 % of the cells, a ground of
    land cover that follows the terrain under laws of a form the networks never trained on
    (the "outside" family of :data:`sarheight.ground.GROUND_FAMILIES`), Sentinel-1-like
    passes, speckle per date. Every method reads the same images (the inversion every one,
    back-projection and clinometry the first pass). The checkpoints (``checkpoint``, the
    one-image step's, default the packaged network for one image; ``stack_checkpoint``)
    neither trained nor were calibrated on the Big Tujunga DEM (a held-out DEM of both
    studies).
    Every method is scored on the same cells: the truth known, inside the image, and
    covered by the coarse product (shifted and on its own grid, it stops up to a coarse cell
    and its shift short of the DEM's edges: the refined DEM is NaN there, as it is wherever
    a user's coarse DEM does not reach).

    Returns the one-image step's figures, with the stack step's under ``"stack"``.
    """
    from .sample_data import packaged_terrain_network, terrain_network

    skipped = missing_ml_extra("terrain", "the terrain step of the demo", say)
    if skipped:
        return skipped
    figures = _terrain_demo_step(dem, out, say, checkpoint or packaged_terrain_network(1)[1], "one_image",
                                 progress=progress)
    stack = stack_checkpoint or terrain_network("stack")
    if stack is not None:
        figures["stack"] = _terrain_demo_step(dem, out, say, stack, "stack", progress=progress)
    return figures


def _terrain_demo_step(dem: xr.DataArray, out: Path, say, checkpoint: str | os.PathLike[str], step: str, *,
                       progress: bool) -> dict[str, Any]:
    """One terrain step of the demo (:data:`TERRAIN_DEMO_STEPS`): the scene simulated, the
    network's heights and every method without learning scored on the same cells, a
    GeoTIFF and a quicklook written."""
    from .coarse_dem import draw_errors
    from .ground import draw_ground
    from .priors import PriorSpec, draw_prior_errors
    from .scores import map_rmse
    from .studies.refinement_methods import scoring_mask
    from .terrain.geometry import scene_geometry
    from .terrain.methods import BASELINES, NON_LEARNED, baseline_maps, scene_channel
    from .terrain.scene_options import ObservationSpec, SceneProducts
    from .terrain.simulated import simulate_scene
    from .training.predict import predict_height, prediction_quicklook
    from .training.trained import load_checkpoint

    options = TERRAIN_DEMO_STEPS[step]
    model = load_checkpoint(checkpoint, kind="height")
    say(f"terrain ({options['words']}): {model.model_name} {model.model_config} from {model.path.name}, refining "
        f"{model.reference} with {len(model.channels)} channels ({', '.join(model.channels[:6])}"
        f"{', ...' if len(model.channels) > 6 else ''})")
    name = str(dem.attrs.get("dem_name") or "terrain")
    suffix = "" if step == "one_image" else f"_{step}"
    start = time.perf_counter()
    errors = draw_errors(3, "test", DEMO_TERRAIN_SEED)
    scene = simulate_scene(dem, scene_geometry(dem, "ascending"), coarse_factor=3, coarse_errors=errors,
                           priors=PriorSpec(fraction=1e-3, pattern="tracks",
                                            errors=draw_prior_errors("altimeter", DEMO_TERRAIN_SEED)),
                           seed=DEMO_TERRAIN_SEED,
                           opposite_geometry=scene_geometry(dem, "descending") if options["both_passes"] else None,
                           observation=ObservationSpec(ground=draw_ground(dem, "outside", DEMO_TERRAIN_SEED),
                                                       dates=options["dates"]),
                           products=SceneProducts(inversion=True), name=f"{name}_ascending_c3_demo{suffix}",
                           progress=False)
    simulated = time.perf_counter() - start
    result = predict_height(scene, [model], progress=progress)
    predicted = time.perf_counter() - start - simulated
    truth = scene["height"].values
    refined = np.where(np.isfinite(result["height"].values), result["height"].values,
                       scene_channel(scene, model.reference))
    scored = scoring_mask(scene)
    maps = {BASELINES[name]: values for name, values in baseline_maps(scene).items() if name in NON_LEARNED}
    maps[options["inversion"]] = scene["inverted"].values
    network = f"{model.model_name} refinement"
    maps[network] = refined
    rmse = {name: map_rmse(values, truth, scored) for name, values in maps.items()}
    within = None
    if "height_std" in result:
        std = result["height_std"].values
        counted = scored & np.isfinite(std)
        z = np.abs(refined - truth)[counted] / np.maximum(std[counted], 1e-9)
        within = (float(np.mean(z <= 1)), float(np.mean(z <= 2)))
    # As refine_dem does: where the model has no input (shadow, outside the image), the
    # map keeps its reference.
    result["height"] = result["height"].copy(data=refined.astype(np.float32))
    tif = write_geotiff(result, out / f"{name}{suffix}_height.tif", variables=["height"])
    # The figure sets the network beside the best method without learning, as the console.
    best = min((name for name in rmse if name != network), key=rmse.get)
    shown = scene.assign({best: (("y", "x"), maps[best].astype(np.float32))})
    png = prediction_quicklook(shown, result, out / f"{name}{suffix}_height.png", baseline=best,
                               title=f"sarheight demo: a realistic 3x coarser DEM of {TERRAIN_DEMO_LABEL} refined "
                               f"with {options['words']} and {int(scene['prior_mask'].values.sum())} altimeter "
                               "heights (model never trained nor calibrated on this DEM, nor under this ground's "
                               "laws)")
    figures = {"dem": TERRAIN_DEMO_LABEL, "images": options["words"], "checkpoint": model.path.name,
               "priors": int(scene["prior_mask"].values.sum()), "scored_cells": int(scored.sum()),
               "coarse_errors": errors.to_attrs(), "prior_error_rms_m": float(scene.attrs["prior_error_rms_m"]),
               "rmse_m": rmse, "within_std": within, "simulate_seconds": simulated, "predict_seconds": predicted,
               "geotiff": str(tif), "quicklook": str(png)}
    say(f"terrain: {figures['priors']} altimeter heights (error {figures['prior_error_rms_m']:.2f} m RMS) on "
        f"{dem.size} cells; the coarse DEM carries {errors.correlated_error_m:.1f} m of correlated error, a "
        f"{math.hypot(errors.shift_east_m, errors.shift_north_m):.0f} m shift and a grid not aligned; scene "
        f"simulated in {simulated:.1f} s, heights refined in {predicted:.1f} s")
    say(f"terrain RMSE against the true DEM ({figures['scored_cells']} cells): " + ", ".join(
        f"{name} {value:.2f} m" for name, value in rmse.items()))
    change = 100 * (1 - rmse[network] / rmse[best])
    say(f"terrain: the refined DEM is {abs(change):.1f} % {'below' if change >= 0 else 'above'} the best method "
        f"without learning ({best})")
    if within is not None:
        say(f"terrain: {100 * within[0]:.0f} % of the cells lie within one height_std of the truth, "
            f"{100 * within[1]:.0f} % within two (a calibrated spread: 68 % and 95 %)")
    say(f"wrote {tif} and {png}")
    return figures


#: The seed of the demo's synthetic city: the shipped building model trained on cities of
#: seeds 0-9 (sarheight/configs/buildings_demo.yaml) and never saw this one.
DEMO_CITY_SEED = 100


def run_buildings_demo(out: Path, say, *, checkpoint: str | os.PathLike[str] | None = None, size: int = 96,
                       progress: bool = True) -> dict[str, Any]:
    """Building heights of a synthetic city from twelve months of Sentinel-1 and Sentinel-2
    with the shipped MBHR-Net, against predicting the training cities' mean height.

    The city (:mod:`sarheight.city`, ``size`` x ``size`` cells of 10 m, seed
    :data:`DEMO_CITY_SEED`) is simulated, written as a city folder and predicted from it
    as any city would be (:func:`~sarheight.training.predict.predict_buildings`: the mean
    over the months); the checkpoint (default the packaged
    :func:`sarheight.sample_data.buildings_demo_checkpoint`) trained on other cities.
    Scored on the cells of a known height with a month of every input.
    """
    from .city import city_layout, simulate_city, write_city
    from .sample_data import buildings_demo_checkpoint

    skipped = missing_ml_extra("buildings", "the building step of the demo", say)
    if skipped:
        return skipped
    from .studies.buildings import score_heights
    from .training.predict import buildings_quicklook, predict_buildings
    from .training.trained import load_checkpoint

    model = load_checkpoint(checkpoint or buildings_demo_checkpoint(), kind="height")
    say(f"buildings: {model.model_name} {model.model_config} from {model.path.name}")
    start = time.perf_counter()
    city = simulate_city(city_layout((size, size), seed=DEMO_CITY_SEED), pass_direction="ascending",
                         cloud_fraction=0.1, seed=DEMO_CITY_SEED)
    folder = out / "demo_city"
    write_city(city, folder)
    simulated = time.perf_counter() - start
    result = predict_buildings(folder, model, progress=progress)
    predicted = time.perf_counter() - start - simulated
    truth = city["height"].values.astype(np.float64)
    scored = np.isfinite(truth) & np.isfinite(result["height"].values)
    mean_height = model.target_mean if model.target_mean is not None else 0.0
    scores = {name: score_heights([values], [truth], [scored])
              for name, values in (("mean_height", np.full(truth.shape, mean_height)),
                                   ("model", result["height"].values.astype(np.float64)))}
    tif = write_geotiff(result, out / "demo_city_height.tif", variables=["height"])
    png = buildings_quicklook(folder, result, out / "demo_city_height.png",
                              title="sarheight demo: building height from 12 months of Sentinel-1 and Sentinel-2 "
                              "(a synthetic city the model never saw)")
    figures = {"cells": int(truth.size), "building_cells": int((truth > 1).sum()), "scored_cells": int(scored.sum()),
               "mean_height_m": mean_height, "scores": scores, "simulate_seconds": simulated,
               "predict_seconds": predicted, "geotiff": str(tif), "quicklook": str(png)}
    say(f"buildings: city of {size} x {size} cells (10 m), {figures['building_cells']} building cells, tallest "
        f"{float(np.nanmax(truth)):.0f} m; simulated in {simulated:.1f} s, predicted in {predicted:.1f} s")
    say(f"building-height RMSE ({figures['scored_cells']} cells): the training cities' mean height "
        f"({mean_height:.1f} m) {scores['mean_height']['rmse']:.2f} m, MBHR-Net {scores['model']['rmse']:.2f} m "
        f"(footprint IoU {scores['model']['iou']:.2f}, R² {scores['model']['r2']:.2f})")
    say(f"wrote {tif} and {png}")
    return figures


def run_demo(out_dir: str | os.PathLike[str] = "demo-output", *, progress: bool = True,
             dem: xr.DataArray | None = None, terrain_dem: xr.DataArray | None = None,
             city_size: int = 96) -> dict[str, Any]:
    """Run the demo; returns the figures printed and the paths written.

    ``dem``: the DEM to run the geocoding and the reconstruction on instead of the
    Jacksboro DEM; ``terrain_dem``: the terrain step's instead of the Big Tujunga crop
    (:func:`sarheight.cli.compile_kernels.compile_kernels` passes a corner of each);
    ``city_size``: the side of the building step's city (cells of 10 m).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    say = print if progress else logger.info
    dem = jacksboro_dem() if dem is None else dem
    geometry = demo_geometry(dem)
    say(f"DEM: Jacksboro fault, {dem.shape[0]} x {dem.shape[1]} cells, {float(dem.min()):.0f}-{float(dem.max()):.0f} m")
    say(f"geometry: {geometry!r}")
    from . import kernels

    # What the timing holds: the kernels loaded from their cache, or compiled by this call.
    cached = kernels.compiled_share() >= 0.95
    start = time.perf_counter()
    geocoded = backward_geocode(dem, geometry)
    elapsed = time.perf_counter() - start
    inside = float(np.isfinite(geocoded["line"]).mean())
    products = geocoding_products(geocoded)
    tif = write_geotiff(products, out / "jacksboro_geocoding.tif")
    png = quicklook(
        [
            ("DEM (m)", dem, {"cmap": "terrain", "colorbar": "m"}),
            ("shaded relief", hillshade(dem.values, cell_size_m(dem)), {"cmap": "gray"}),
            ("slant range (km)", geocoded["slant_range"] / 1e3, {"cmap": "viridis", "colorbar": "km"}),
            ("ellipsoid incidence angle", geocoded["incidence_angle"], {"cmap": "magma", "colorbar": "deg"}),
            ("line", geocoded["line"], {"cmap": "cividis", "colorbar": "line"}),
            ("sample", geocoded["sample"], {"cmap": "cividis", "colorbar": "sample"}),
        ],
        out / "jacksboro_geocoding.png",
        title="sarheight demo: zero-Doppler backward geocoding of the Jacksboro DEM",
    )
    figures = {
        "dem_cells": int(dem.size),
        "inside_image_fraction": inside,
        "slant_range_m": (float(geocoded["slant_range"].min()), float(geocoded["slant_range"].max())),
        "incidence_deg": (float(geocoded["incidence_angle"].min()), float(geocoded["incidence_angle"].max())),
        "geocode_seconds": elapsed,
        "geotiff": str(tif),
        "quicklook": str(png),
    }
    say(f"geocoded {dem.size} cells in {elapsed:.2f} s "
        f"({'the kernels loaded from their cache' if cached else 'compiling the geocoding kernels included'}); "
        f"{inside:.1%} inside the image")
    say(f"slant range {figures['slant_range_m'][0] / 1e3:.2f}-{figures['slant_range_m'][1] / 1e3:.2f} km, "
        f"incidence {figures['incidence_deg'][0]:.2f}-{figures['incidence_deg'][1]:.2f} deg")
    say(f"wrote {tif} and {png}")
    figures["reconstruction"] = run_reconstruction_demo(dem, out, say)
    if terrain_dem is None:
        terrain_dem = bigtujunga_dem()
    terrain_dem.attrs.setdefault("dem_name", "bigtujunga")
    figures["terrain"] = run_terrain_demo(terrain_dem, out, say, progress=progress)
    figures["buildings"] = run_buildings_demo(out, say, size=city_size, progress=progress)
    # What the demo printed, for the README's figures and anyone comparing runs.
    with atomic_path(out / "figures.json") as temporary:
        temporary.write_text(json.dumps(figures, indent=2, default=str))
    say(f"wrote {out / 'figures.json'}")
    return figures
