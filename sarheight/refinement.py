"""``refine_dem``: a user's coarse DEM refined with a SAR observation and a refinement
model, from files to the fine DEM: the physics (the observation reconstructed on the
grid, the model's inputs, :func:`sarheight.terrain.observed.observed_scene`) and then the
inference (:func:`sarheight.training.predict.predict_height`), with its scoring and
quicklook and the spacing check. The workflow on its own floor, above both: neither the
physics modules nor the training floor import it, and it reaches the training floor only
when a network runs (torch is the ml extra's)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from .dem import Dem, check_heights_in_metres, check_plausible_heights, checked_dem
from .errors import InvalidInputError, PlausibilityWarning, user_stacklevel
from .geometry import RadarGeometry
from .masks import MaskCode
from .priors import PriorSpec
from .scores import rms
from .terrain.geometry import pass_direction
from .terrain.grid import refinement_grid
from .terrain.inversion import InversionSettings
from .terrain.method_table import (
    COMMAND_METHODS,
    DEFAULT_METHODS,
    DUAL_POLARISATION_METHOD,
    INPUT_KINDS,
    REFINEMENT_METHODS,
)
from .terrain.methods import FILLED_REFERENCES, channel_sources, scene_channel
from .terrain.observed import check_priors_given, check_refinement_inputs, observed_scene
from .terrain.radar_images import has_cross_polarisation, observation_geometries, observation_list
from .terrain.scene_options import Execution, SarReading, SceneProducts, option_group
from .terrain.variables import Scene, date_channel

if TYPE_CHECKING:  # the training floor needs the ml extra: imported where refine_dem runs
    from .training.checkpoints import TrainedModel

__all__ = ["DEFAULT_METHODS", "METHODS", "MIN_NETWORK_SHARE", "NETWORK_MARGIN", "check_spacing_of_file",
           "default_method", "image_registration_moved", "input_kind", "refine_dem", "refinement_quicklook",
           "scores_against"]


#: The ways :func:`refine_dem` refines: the trained network (or ensemble), and the
#: refinements that need no learning (the physics alone): the inversion of the simulator
#: against every observation, clinometry (its one-step case, one pass), and the coarse DEM
#: registered, back-projected and corrected by the priors' residuals kriged (no SAR).
METHODS = COMMAND_METHODS

#: The least reduction of the validation RMSE below the inversion's for a network to be the
#: default method.
NETWORK_MARGIN = 0.05

#: The least share of the cells in which a network's own correction counts
#: (``network_share`` of :func:`sarheight.training.predict.predict_height`) for its map to
#: be called the network's without a warning.
MIN_NETWORK_SHARE = 0.5

def input_kind(geometries: Sequence[RadarGeometry]) -> str:
    """What a refinement is given, as :data:`DEFAULT_METHODS` keys it: ``"one_image"``,
    ``"one_pass_dates"`` (several observations of one pass direction) or ``"both_passes"``."""
    if len(geometries) <= 1:
        return "one_image"
    return "one_pass_dates" if len({pass_direction(geometry) for geometry in geometries}) == 1 else "both_passes"


def default_method(geometries: Sequence[RadarGeometry], *, land_cover: bool = False,
                   cross_polarised: bool = False) -> tuple[str, str]:
    """The method :func:`refine_dem` takes where none is named, and why (words): the
    inversion where a land-cover map is given (``land_cover``: the one method without
    learning that reads it); for one image of both polarisations (``cross_polarised``),
    :data:`~sarheight.terrain.method_table.DUAL_POLARISATION_METHOD`; else
    :data:`DEFAULT_METHODS` for what is given."""
    if land_cover:
        return "inversion", "a land-cover map was given, which the inversion reads"
    kind = input_kind(geometries)
    if kind == "one_image" and cross_polarised:
        return DUAL_POLARISATION_METHOD, "the best on the validation DEMs for one image of both polarisations"
    return DEFAULT_METHODS[kind], f"the best on the validation DEMs for {INPUT_KINDS[kind]}"


#: The variable of the scene each non-learned method gives (clinometry is computed).
_SCENE_METHOD = {method.command: method.variable for method in REFINEMENT_METHODS
                 if method.command and method.variable and not method.learned}


def refine_dem(
    coarse_dem: xr.DataArray | Dem,
    sar: Any,
    checkpoints: str | os.PathLike[str] | TrainedModel | Sequence[str | os.PathLike[str] | TrainedModel] | None = None,
    *,
    spacing_m: float,
    method: str | None = None,
    geometry: Any = None,
    opposite_pass: tuple[Any, Any] | None = None,
    priors: PriorSpec | None = None,
    reading: SarReading | None = None,
    inversion_settings: InversionSettings | None = None,
    coarse_error_m: float | None = None,
    land_cover: Any = None,
    also_invert: bool = False,
    execution: Execution | None = None,
) -> tuple[xr.Dataset, xr.Dataset]:
    """Refine a user's coarse DEM with a SAR observation: the fine DEM on a grid of
    ``spacing_m`` metres, by a refinement network (with the ensemble's spread) or by a
    method that needs no learning.

    The coarse DEM is resampled to the grid (:func:`sarheight.terrain.grid.refinement_grid`),
    the observation reconstructed on it and the model's inputs made
    (:func:`sarheight.terrain.observed.observed_scene`); then ``method``: ``"network"``, the
    checkpoints predict the correction (:func:`predict_height`; None: the refinement
    network that ships with sarheight for what is given,
    :func:`sarheight.sample_data.packaged_terrain_network`);
    ``"inversion"``, the fine DEM whose simulated observations match every observation
    given (:func:`sarheight.terrain.inversion.invert_dem`: both passes and many dates);
    ``"clinometry"``, the slopes the image asks for (:func:`sarheight.terrain.clinometry.clinometry_heights`);
    ``"back-projection"``, the coarse DEM registered to the priors, back-projected and
    corrected by the priors' residuals kriged (:mod:`sarheight.terrain.backprojection`; without
    priors, the back-projection alone). The non-learned methods need no checkpoint and no
    torch. Cells a method has no value for (outside the image, where the other pass is
    missing) keep the coarse DEM and are counted in ``attrs["cells_kept_coarse"]``.

    Parameters
    ----------
    coarse_dem : the user's DEM (from :func:`sarheight.dem.open_dem`: ellipsoidal heights; or a
        :class:`sarheight.dem.Dem`, not checked again).
    sar : the observation: a Sentinel-1 SAFE product, or anything
        :func:`sarheight.reconstruction.reconstruct` takes (a geocoded sigma0 GeoTIFF with
        ``geometry``); or a sequence of them (dates, both passes: checked and grouped as
        :func:`sarheight.terrain.observed.observed_scene` does). The network reads the first
        observation's pass (its dates' composite) and, for models trained on both passes,
        the opposite one; a network over the stacks (``ask_unet_stack``) each date of
        either pass, one pass or both; clinometry and back-projection read one pass; the inversion
        every observation.
    checkpoints : refinement checkpoints (``sarheight/configs/terrain_refine.yaml``), one or an
        ensemble of the same channels; None: the packaged network for what is given
        (:func:`sarheight.sample_data.packaged_terrain_network`: the stack network for
        several images where it ships, and for one image the kind chosen on the
        validation DEMs, :data:`sarheight.sample_data.ONE_IMAGE_NETWORK`; the
        ``packaged_network`` attribute says which). Only with
        ``method="network"``. A network that stacks the inversion's map (a channel
        ``inverted``), or corrects it (the reference ``inverted_filled``), has the
        inversion run for it, with ``inversion_settings``.
    spacing_m : the spacing of the refined DEM (m), finer than the coarse DEM's cells.
    method : one of :data:`METHODS`; None: the network where ``checkpoints`` are given,
        else the method of :data:`DEFAULT_METHODS` for what is given (one image, one pass of
        several dates, both passes), the one of the lowest RMSE on the validation DEMs;
        ``attrs["method_chosen"]`` says why.
    geometry : the acquisition geometry (None: the SAFE products' own), one for every
        observation or a sequence of one per observation.
    opposite_pass : ``(sar, geometry)`` of the opposite pass, for models trained on both passes.
    priors : known heights measured, with their CRS, vertical datum and geoid grid
        (:class:`sarheight.priors.PriorSpec` of ``points``, as
        :func:`sarheight.terrain.observed.observed_scene` takes them), or None.
    reading : how the observations are read (:class:`sarheight.terrain.scene_options.SarReading`:
        the measurement of a SAFE product, what a geocoded one holds); default ``SarReading()``.
    inversion_settings : the inversion's weights (default
        :class:`sarheight.terrain.inversion.InversionSettings`).
    coarse_error_m : the coarse DEM's stated vertical error (m, RMS: its accuracy figure),
        as :func:`sarheight.terrain.observed.observed_scene` takes it; None: not stated.
    land_cover : a land-cover map (a GeoTIFF of integer class codes, or a DataArray with a
        CRS): the inversion's classes, each with its own law, instead of those it tells
        apart from the images.
    also_invert : run the inversion whatever the method (its map in the scene's
        ``inverted``), to score it beside the method's (:func:`scores_against`).
    execution : where and how the work runs (:class:`sarheight.terrain.scene_options.Execution`):
        the network's device (a GPU named there, ``"cuda"``, also runs the physics: the
        reconstructions and the inversion's forward model), tiles and overlap (as
        :func:`predict_height` takes them); the
        inversion block by block on threads or a dask.distributed cluster, for grids larger
        than memory; progress bars (outside a terminal, a line every 30 s). Default
        ``Execution()``.

    Returns
    -------
    (refined, scene): ``refined`` an xr.Dataset on the grid with its CRS: ``height``
    (float32, m, ellipsoidal) and with several checkpoints ``height_std`` (m), and
    ``coarse`` (the coarse DEM on the grid: the reference the network corrects, else its
    Lanczos resampling); its attributes name the ``method`` and say how far it moved the
    coarse DEM (``correction_rms_m``, ``correction_max_m``) and what the observation held
    (``observed_median_db``, ``observed_spread_db``); with the network, the share of the
    cells its own correction holds (``network_share``: a
    :class:`~sarheight.errors.PlausibilityWarning` below :data:`MIN_NETWORK_SHARE`);
    ``scene`` the model's inputs.

    Raises
    ------
    InvalidInputError : an unknown method, checkpoints with a non-learned method, a
        checkpoint that is not a refinement model, a spacing not finer than the DEM, an
        observation covering no cell of the DEM or carrying no relief
        (:func:`sarheight.terrain.observed.check_refinement_inputs`, which also warns of a flat DEM
        or an observation's implausible level), priors outside it; the method, the
        checkpoints and the spacing before any work, the observation before the model runs.
    """
    reading, execution = option_group("reading", reading, SarReading), option_group("execution", execution, Execution)
    chosen = ""
    if method is None:
        if checkpoints is not None:
            method, chosen = "network", "checkpoints were given"
        else:
            method, chosen = default_method(
                observation_geometries(sar, geometry, opposite_pass, reading.measurement),
                land_cover=land_cover is not None,
                cross_polarised=has_cross_polarisation(sar, opposite_pass, reading.measurement))
    if method not in METHODS:
        raise InvalidInputError(f"method={method!r}: give one of {', '.join(METHODS)}")
    if land_cover is not None and method not in ("inversion", "network"):
        raise InvalidInputError(f"land_cover is the inversion's classes: method={method!r} reads none; leave it out, "
                                "or give method='inversion'")
    # Checked once, here, before any work; the scene takes them as checked.
    given = check_priors_given(priors)
    # The user's DEM checked once: the grid and the scene take it as checked.
    dem = checked_dem(coarse_dem, copy=False)
    check_heights_in_metres(dem.heights, "the coarse DEM")
    execution.check_method(method, chosen)
    members: list[Any] = []
    packaged = None
    if method == "network":
        from .extras import require

        require("sarheight.refinement.refine_dem (method network)")
        from .training.predict import load_members

        if checkpoints is None:
            from .sample_data import packaged_terrain_network

            # By what the user gives: several images go to the stack network where it ships.
            packaged, checkpoints = packaged_terrain_network(len(observation_list(sar, geometry, opposite_pass)))
        members, _ = load_members(checkpoints, tile=execution.tile, overlap=execution.overlap, batch_size=4,
                                  device=execution.device)
        if not isinstance(sar, (list, tuple)):
            _check_members(members, opposite_pass is not None)
    elif checkpoints is not None:
        raise InvalidInputError(f"checkpoints were given with method={method!r}, which needs none: leave them out, "
                                "or give method='network'")
    elif opposite_pass is not None and method != "inversion":
        raise InvalidInputError(f"method={method!r} reads one pass, and a second observation was given: it would be "
                                "ignored; give one observation, or method='inversion', which reads every one")
    grid = refinement_grid(dem, spacing_m)
    # A network that stacks the inversion's map, or corrects it, reads it: the inversion runs
    # for it, and its memory counts.
    inverts = method == "inversion" or also_invert or any("inverted" in _member_sources(m) for m in members)
    check_refinement_memory(grid.size, inversion=inverts, blocks=execution.blocks,
                            distributed=execution.client is not None)
    products = SceneProducts(
        inversion=inverts,
        inversion_settings=inversion_settings,
        # A network over the stacks reads each date.
        keep_dates=any(date_channel(c) for m in members for c in m.channels))
    scene = observed_scene(dem, sar, geometry, given, grid=grid, opposite_pass=opposite_pass, reading=reading,
                           products=products, coarse_error_m=coarse_error_m, land_cover=land_cover, name="refinement",
                           execution=execution)
    if method in ("clinometry", "back-projection") and "other_sar_reconstructed" in scene.data_vars:
        raise InvalidInputError(f"method={method!r} reads one pass, and observations of both passes were given: the "
                                "opposite pass would be ignored; give the dates of one pass, or method='inversion', "
                                "which reads every one")
    inside = scene["layover"].values != MaskCode.OUTSIDE
    if not inside.any():
        raise InvalidInputError("the observation covers no cell of the DEM: give a product (or geometry) that "
                                "images the DEM's area")
    # Judged where the DEM gives a geometry: its voids, and the facets beside them, have no
    # incidence, so no value either.
    with_heights = inside & np.isfinite(scene["local_incidence_angle"].values)
    observed = np.isfinite(scene["sar_reconstructed"].values) & with_heights
    if with_heights.sum() < 0.5 * inside.sum():
        raise InvalidInputError(
            f"the DEM gives a surface in {with_heights.sum() / inside.sum():.0%} of the cells the image covers (voids "
            "elsewhere, and the facets beside them): fill its voids (--fill-voids) or crop it to where it has "
            "heights")
    if observed.sum() < 0.5 * with_heights.sum():
        raise InvalidInputError(
            f"the observation has a value in {observed.sum() / with_heights.sum():.0%} of the cells it images where "
            "the DEM has heights (zero or no data elsewhere, shadow aside): a placeholder or masked product cannot "
            "refine the DEM; give the calibrated image itself")
    check_refinement_inputs(scene)
    # Held as a Scene: the method and its reference share what they derive from the scene.
    held = Scene.of(scene)
    if method == "network":
        _check_members(members, "other_sar_reconstructed" in scene.data_vars)
        _warn_dates_left_out(members, scene)
        from .training.predict import predict_height

        result = predict_height(held, members, tile=execution.tile, overlap=execution.overlap,
                                progress=execution.progress, device=execution.device)
        reference_name = members[0].reference
        share = float(result.attrs["network_share"])
        if share < MIN_NETWORK_SHARE:
            warnings.warn(f"the network's calibration keeps its own correction in {share:.0%} of the cells: elsewhere "
                          f"the map is its reference ({reference_name}) or the non-learned map its calibration chose, "
                          "so this is mostly that map under the network's name; give that method (--method) to say "
                          "so", PlausibilityWarning, stacklevel=user_stacklevel())
    else:
        reference_name = "coarse_lanczos"
        if method == "clinometry":
            from .terrain.clinometry import clinometry_heights

            heights = clinometry_heights(held)
        else:
            heights = scene[_SCENE_METHOD[method]]
        result = xr.Dataset({"height": (("y", "x"), heights.values.astype(np.float32),
                                        {"units": "m", "long_name": f"refined height ({method})"})},
                            coords={"y": scene["y"], "x": scene["x"]})
    # (A reference may be derived: the inversion's map filled where it has none.)
    reference = scene_channel(held, reference_name)
    check_plausible_heights(result["height"].values, reference, f"the map of method {method!r}")
    kept = ~np.isfinite(result["height"].values) & np.isfinite(reference)
    change = (result["height"].values - reference)[np.isfinite(result["height"].values) & np.isfinite(reference)]
    result["height"] = result["height"].copy(data=np.where(kept, reference, result["height"].values))
    if "height_std" in result:
        result["height_std"] = result["height_std"].copy(data=np.where(kept, np.nan, result["height_std"].values))
    result["coarse"] = (("y", "x"), reference.astype(np.float32),
                        {"units": "m", "long_name": (f"the coarse DEM resampled to the grid ({reference_name})"
                                                      if reference_name.startswith("coarse") else
                                                      f"the map the network corrected ({reference_name})")})
    if packaged is not None:
        result.attrs["packaged_network"] = packaged
    if chosen:
        result.attrs["method_chosen"] = chosen
    result.attrs.update(method=method, members=len(members), spacing_m=float(spacing_m),
                        coarse_cell_m=float(scene.attrs["coarse_cell_m"]),
                        coarse_factor=float(scene.attrs["coarse_factor"]), cells_kept_coarse=int(kept.sum()),
                        cells_outside_image=int((~inside).sum()),
                        # How far the method moved the coarse DEM (its SAR and priors together).
                        correction_rms_m=rms(change) if change.size else 0.0,
                        correction_max_m=float(np.max(np.abs(change))) if change.size else 0.0,
                        **{key: float(value) for key, value in scene.attrs.items()
                           if key.startswith(("observed_", "other_observed_"))},
                        **{key: value for key, value in scene.attrs.items()
                           if key.startswith(("image_registration_", "coregistration_", "inversion_"))
                           or key in ("images", "image_groups", "dates", "other_dates")})
    result = result.rio.write_crs(scene.rio.crs)
    return result, scene


#: Memory (bytes) a refinement takes per cell of its grid, measured on two cores
#: (``/usr/bin/time -v`` of ``terrain refine`` at two spacings): the scene's layers and
#: the reconstruction's arrays; the inversion in memory (its sparse operators, its
#: Jacobian and its factorisation) per cell of the grid, or of a block.
SCENE_BYTES_PER_CELL = 200
INVERSION_BYTES_PER_CELL = 8000


def check_refinement_memory(cells: int, *, inversion: bool, blocks: int | None, distributed: bool) -> None:
    """Refuse, before any work, a refinement of ``cells`` grid cells that would need more
    memory than is available (:data:`SCENE_BYTES_PER_CELL`, and
    :data:`INVERSION_BYTES_PER_CELL` of the whole grid, or of a block per thread with
    ``blocks``; on a cluster, the blocks' memory is the workers'), in one line with the
    figure and what to change."""
    from .io import check_memory
    from .threads import thread_count

    needed = cells * SCENE_BYTES_PER_CELL
    if inversion and not distributed:
        needed += (min(cells, (blocks * 2) ** 2 * thread_count()) if blocks else cells) * INVERSION_BYTES_PER_CELL
    check_memory(needed, f"refining a grid of {cells:,} cells" + (" by the inversion" if inversion else ""),
                 ": crop the DEM to the area of interest, refine to a coarser spacing"
                 + (", or run the inversion block by block (--blocks 256; --scheduler for a cluster)"
                    if inversion and not blocks else ""))


def _member_sources(member: Any) -> set[str]:
    """The stored scene variables a trained model reads: those of its channels and of its
    reference."""
    return {source for name in [*member.channels, *([member.reference] if member.reference else [])]
            for source in channel_sources(name)}


def _warn_dates_left_out(members: Sequence[Any], scene: xr.Dataset) -> None:
    """Say where a network over the stacks has fewer date slots a pass than the dates
    given: it reads the first of them only."""
    from .terrain.variables import pass_dates

    found = [date_channel(channel) for channel in members[0].channels] if members else []
    slots = 1 + max((found_date[1] for found_date in found if found_date is not None), default=-1)
    if slots <= 0:
        return
    for prefix, words in (("", "the first pass"), ("other_", "the opposite pass")):
        given = pass_dates(scene, prefix)
        if given > slots:
            warnings.warn(f"the stack network reads {slots} dates a pass: of the {given} dates of {words}, the first "
                          f"{slots} are read, the others left out; the inversion (method='inversion') reads every one",
                          PlausibilityWarning, stacklevel=user_stacklevel())


def _check_members(members: Sequence[Any], opposite_pass: bool) -> None:
    """Refinement checkpoints only, reading as many passes as are given (``opposite_pass``: the
    opposite pass is given)."""
    for member in members:
        reference = str(member.reference or "")
        if member.scale != "coarse_cell" or not (reference.startswith("coarse") or reference in FILLED_REFERENCES):
            raise InvalidInputError(
                f"checkpoint {str(member.path)!r} predicts heights relative to {member.reference!r}, not as a "
                "correction of the coarse DEM or of the inversion: give a refinement checkpoint (sarheight fit "
                "--config terrain_refine)")
        if any(date_channel(channel) for channel in member.channels):
            continue  # a network over the stacks takes one pass or both, one date or many
        both_passes = any(channel.startswith("other_") for channel in member.channels)
        if both_passes and not opposite_pass:
            raise InvalidInputError(f"checkpoint {str(member.path)!r} was trained on both passes: give the opposite "
                                    "pass's observation too")
        if opposite_pass and not both_passes:
            raise InvalidInputError(f"checkpoint {str(member.path)!r} reads one pass, and a second observation was "
                                    "given: it would be ignored; give one --sar, or a model trained on both passes")




def check_spacing_of_file(path: str | os.PathLike[str], spacing_m: float) -> None:
    """Refuse, from the DEM file's header alone (its grid and CRS; no height read), a
    spacing :func:`refine_dem` would refuse (:func:`sarheight.terrain.grid.check_refinement_spacing`),
    so that it is said before a large DEM is read. A header that says nothing usable (no
    CRS, several bands) passes: opening the DEM says what is wrong."""
    import rioxarray

    from .dem import check_holds_heights
    from .io import open_raster
    from .raster import cell_side_m
    from .terrain.grid import check_refinement_spacing

    with open_raster(path, "the DEM") as dataset:
        # The same refusals as reading it (a VRT, a network path, a foreign format, a SAR
        # image or a mask given as the DEM).
        check_holds_heights(dataset, str(path))
    header = rioxarray.open_rasterio(path, masked=True, cache=False)  # lazy: no pixel read
    if not isinstance(header, xr.DataArray):
        return  # several subdatasets: reading it refuses it
    try:
        if header.rio.crs is None or header.sizes.get("band", 1) != 1:
            return
        check_refinement_spacing(cell_side_m(header.squeeze("band", drop=True) if "band" in header.dims else header),
                                 (header.shape[-2], header.shape[-1]), spacing_m)
    finally:
        header.close()


def scores_against(refined: xr.Dataset, scene: xr.Dataset, truth: xr.DataArray,
                   coarse_dem: xr.DataArray | None = None) -> dict[str, Any]:
    """The refined heights and every method that needs no learning scored against a fine
    DEM ``truth`` (heights in the refined map's datum), resampled to the refined grid (by
    area where it is finer, else bilinearly), on the cells where all have a value.

    The methods are the user's own baselines, named for what they read: ``coarse_dem`` as
    given (bilinear on the grid, before any registration), the coarse DEM as the image's
    registration moved it where it moved it, the resamplings, the priors' methods only
    where priors were given (with their count), back-projection, clinometry and the
    inversion where the scene holds it.

    Returns
    -------
    dict: ``cells`` (the cells scored), ``refined`` (the refinement's RMSE, m) and
    ``methods`` (each non-learned method's RMSE, m, by its label).

    Raises
    ------
    InvalidInputError : the truth has no height on the refined grid.
    """
    from rasterio.enums import Resampling

    from .scores import map_rmse
    from .terrain.backprojection import upsample
    from .terrain.methods import baseline_maps

    grid = refined["height"].rio.write_crs(refined.rio.crs)
    finer = min(abs(v) for v in truth.rio.resolution()) < min(abs(v) for v in grid.rio.resolution())
    # Reprojected in float64 with NaN as no data: cells the truth does not cover stay NaN.
    resampled = truth.astype(np.float64).rio.write_nodata(np.nan).rio.reproject_match(
        grid, resampling=Resampling.average if finer else Resampling.bilinear).values
    maps = _baseline_labels(scene, baseline_maps(scene))
    if coarse_dem is not None:
        maps = {"coarse DEM as given, bilinear": upsample(coarse_dem, grid, "bilinear").values, **maps}
    if "inverted" in scene.data_vars:
        maps["inversion (SAR physics)"] = scene["inverted"].values
    valid = np.isfinite(resampled) & np.isfinite(refined["height"].values)
    for values in maps.values():
        valid &= np.isfinite(values)
    if not valid.any():
        raise InvalidInputError("the fine DEM has no height on the refined grid: give a fine DEM of the same area")
    return {"cells": int(valid.sum()), "refined": map_rmse(refined["height"].values, resampled, valid),
            "methods": {name: map_rmse(values, resampled, valid) for name, values in maps.items()}}


def image_registration_moved(scene: xr.Dataset) -> tuple[float, float] | None:
    """How far (m east, m north) the image's registration moved the coarse DEM of a user's
    scene before every method, or None where it did not move it."""
    east = float(scene.attrs.get("image_registration_shift_east_m", 0.0))
    north = float(scene.attrs.get("image_registration_shift_north_m", 0.0))
    applied = bool(int(scene.attrs.get("image_registration_applied", 0)))
    return (east, north) if applied and (east or north) else None


def _baseline_labels(scene: xr.Dataset, maps: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The non-learned maps of a user's scene by the labels that say what they read: the
    image's registration where it moved the DEM, the priors (and their count) only where
    there are some."""
    from .terrain.methods import NON_LEARNED

    priors = int(np.count_nonzero(scene["prior_mask"].values)) if "prior_mask" in scene.data_vars else 0
    registered = " (registered to the image)" if image_registration_moved(scene) is not None else ""
    labels = {
        "coarse_bilinear": "coarse DEM, bilinear" + registered,
        "coarse_bicubic": "coarse DEM, bicubic" + registered,
        "coarse_lanczos": "coarse DEM, Lanczos" + registered,
        "registered": f"registered to the {priors} priors (Lanczos)",
        "back_projection": "back-projection" + registered,
        "back_projection_priors": f"back-projection, the {priors} priors' residuals kriged",
        "clinometry": "clinometry (SAR physics)",
    }
    shown = [name for name in NON_LEARNED if priors or name not in ("registered", "back_projection_priors")]
    return {labels[name]: maps[name] for name in shown}


def refinement_quicklook(refined: xr.Dataset, scene: xr.Dataset, path: str | os.PathLike[str],
                          truth: xr.DataArray | None = None) -> None:
    """A PNG of a refinement: the coarse DEM, the refined one, their difference, the
    observed over simulated sigma0, with a spread the spread, and with ``truth`` (a fine
    DEM on the refined grid, in the refined map's datum) the error map and the RMSE. The
    colour bars name the heights' datum (``attrs["vertical_datum"]``)."""
    from .plots import quicklook
    from .terrain.variables import scene_variable

    datum = {"egm96": "m above EGM96", "egm2008": "m above EGM2008"}.get(
        str(refined.attrs.get("vertical_datum", "ellipsoid")), "m above the ellipsoid")
    height, coarse = refined["height"].values, refined["coarse"].values
    low, high = (float(np.nanpercentile(coarse, p)) for p in (1, 99))
    terrain = {"cmap": "terrain", "vmin": low, "vmax": high, "colorbar": datum}
    change = height - coarse
    limit = float(np.nanpercentile(np.abs(change), 99)) or 1.0
    ratio = scene_variable(scene, "sar_ratio")
    panels = [("coarse DEM, resampled", coarse, terrain), ("refined DEM", height, terrain),
              ("refined - coarse", change, {"cmap": "RdBu_r", "vmin": -limit, "vmax": limit, "colorbar": "m"}),
              ("observed / simulated sigma0", ratio, {"cmap": "gray", "vmin": -6, "vmax": 6, "colorbar": "dB"})]
    if "height_std" in refined:
        members = refined.attrs["members"]
        spread = refined["height_std"].values
        panels.append((f"spread of {members} checkpoints" if members > 1 else "the network's calibrated spread",
                       spread, {"cmap": "magma", "vmin": 0, "vmax": float(np.nanpercentile(spread, 99)) or 1.0,
                                "colorbar": "m"}))
    title = f"sarheight terrain refine ({refined.attrs['method']})"
    if truth is not None:
        error = height - np.asarray(truth.values, dtype=np.float64)
        valid = np.isfinite(error)
        bound = float(np.nanpercentile(np.abs(error), 99)) if valid.any() else 1.0
        panels.append(("refined - truth", error, {"cmap": "RdBu_r", "vmin": -bound, "vmax": bound or 1.0,
                                                  "colorbar": "m"}))
        # The figure the console and the file's tags give (scores_against: the truth
        # resampled by area, on the cells every method scores), else this map's own.
        rmse = refined.attrs.get("truth_rmse_m", rms(error[valid]) if valid.any() else None)
        if rmse is not None:
            title += f": RMSE {float(rmse):.2f} m against the truth"
    quicklook(panels, path, title=title)
