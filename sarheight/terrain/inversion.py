"""Refinement by inverting the simulator: the fine DEM whose simulated observations match
the observed ones, whose coarse-cell means stay the product's, and which passes through
the known heights.

**The problem.** On the fine grid, the heights ``h``, a smooth log-albedo field ``alpha``
and a law per image and land-cover class minimise (damped Gauss-Newton, every round a
sparse linear least-squares problem solved by preconditioned conjugate gradients)::

    sum over images i and cells c   rho((ln O_ic - ln S_ic(h, alpha; L_i, K)) / s_i)
  + sum over coarse cells k         (mean_k(h) - H_k)^2 / sigma_k^2
  + sum over known heights p        (h_p - P_p)^2 / sigma_p^2
  + (h - R)' C^-1 (h - R)                                  the relief the coarse DEM lost
  + lambda_alpha |Laplacian(alpha)|^2                      the albedo is smooth

- ``O_ic`` is image ``i`` read at cell ``c``: the mean over the box of pixels the cell
  covers, at the position the *reference* surface gives the cell, read once
  (:func:`sarheight.terrain.forward.sampling_of`). The observation is never re-read at
  positions a surface moved: its speckle there would be other speckle.
- ``S_ic`` is the project's own simulation of the surface, as the scenes are made with it
  (:mod:`sarheight.terrain.forward`): each lit facet its cell's class law ``L_i[K_c]`` of
  its own local incidence times ``exp(alpha_c)`` (one pass of the facet kernel,
  :class:`sarheight.ground.CellLaws`), projected exactly onto the pixels, the
  image's noise floor added (its ``nesz_db``), read at the same positions in the same way.
  Where ``h`` is the terrain and the ground is the classes' their ratio is speckle alone.
- ``K`` is the ground as classes: a user's land-cover map, or the classes the images tell
  apart (:mod:`sarheight.terrain.land_cover`: a brightness step between classes is then
  no slope); each image (or group of its dates) fits its own law per class, a monotone
  polynomial of the cell's local incidence, refitted every round to the observation over
  the simulation of the *current* surface. The albedo is shared by every image: a slope
  brightens one pass and darkens the other, the albedo brightens both.
- The linearisation: the simulator's own derivative, probed (:attr:`InversionSettings.probe_stride`:
  the cells of one of ``stride**2`` classes raised together, each reading's change the
  derivative in its nearest raised cell's height), or the local model: a cell's slopes
  change its local incidence (the law's slope) and the compression of its footprint in
  the image (``ln(n . m)``), blurred by a binomial step, and its height moves it in the
  image by ``kappa dh`` towards the sensor. Each step is damped: halved until the
  objective, read with the simulator on the new surface, falls by a tenth of what the
  linearisation promised.
- ``s_i^2`` is the variance of a cell's log-ratio that is not relief: speckle's,
  ``psi_1`` of the looks the reading averages (the image's looks times its box's pixels),
  and the model's own (:attr:`InversionSettings.model_error_nepers`). ``rho`` is Huber's
  loss (:attr:`InversionSettings.robust_k`): a reading the simulator jumps at (a facet
  lit or not, a cell at a shadow's edge) weighs as one of ``k`` deviations.
- ``mean_k`` is the area mean over coarse cell ``k`` (exact on grids that are not
  aligned), ``H_k`` the product's height there, corrected as the reference was (the
  priors' kriged residuals), kept within ``sigma_k``: the product's stated error (the
  share :attr:`InversionSettings.coarse_error_share` of it, at least
  :data:`COARSE_ERROR_FLOOR_M`) and the registration's error times the cell's slope.
- ``R`` is the reference (the coarse DEM registered, back-projected and corrected by the
  priors' kriged residuals); ``C`` the covariance of the relief a block mean loses: the
  terrain's power law (:func:`relief_power_law`, fitted to the reference below a quarter
  of the coarse Nyquist wavenumber) extrapolated to the fine wavenumbers, times the share
  the block mean leaves out, ``(1 - T(k))^2``, scaled by :attr:`InversionSettings.prior_scale`.

The weights and the regularisation (:class:`InversionSettings`) were chosen on the
validation DEMs of the inversion study (:mod:`sarheight.studies.inversion`), never on
held-out ones.

Clinometry (:mod:`sarheight.terrain.clinometry`) is the one-step special case: one image, the
law fitted once against the coarse DEM, no albedo, no re-simulation, a Wiener filter
instead of the sparse solve. It stays as the fast method and a baseline.

The observations it reads: :mod:`sarheight.terrain.radar_images`; the DEM registered to
them first: :mod:`sarheight.terrain.registration`.

Larger-than-memory grids: :func:`invert_dem` with ``blocks`` (or ``client``) runs in
overlapping blocks on threads or a dask.distributed cluster and keeps each block's core
(the classes told apart once, from every block's features).

The settings are :mod:`sarheight.terrain.inversion_settings`'s, the rounds (the surface
simulated and read, the objective, one Gauss-Newton step)
:mod:`sarheight.terrain.gauss_newton`'s; this module sets the problem up, runs its rounds
and its blocks.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sparse
import xarray as xr

from ..dem import checked_dem, open_dem
from ..errors import InvalidInputError
from ..raster import cell_side_m, gradient, grid_steps
from ..scores import rms
from ..simulate.cells import cell_geometry, radar_window
from .forward import (
    KnownLaw,
    brightness_features,
    cross_ratio_feature,
    law_of,
    probed_jacobian,
    sampling_of,
)
from .gauss_newton import (
    LinearProblem,
    Penalties,
    Reading,
    gauss_newton_step,
    look_frame,
    noise_variance,
    read_surface,
)
from .inversion_settings import COARSE_ERROR_FLOOR_M, InversionSettings
from .land_cover import estimate_land_cover, land_cover_classes, land_cover_features
from .radar_images import (
    NEPER_PER_DB,
    WINDOW_MARGIN,
    InversionImage,
    pass_key,
)
from .relief import (
    albedo_interpolation,
    blur,
    coarse_means,
    laplacian,
    relief_power_law,
    relief_prior_spectrum,
)

__all__ = ["InversionSettings", "KnownLaw", "invert_dem", "law_of"]


#: Fine cells a side of a block of the block-wise inversion (its core), and the overlap
#: (in coarse cells) read around it: a block's edge cells see only one side of their
#: neighbourhood, so each keeps only its core.
BLOCK_CELLS = 512

BLOCK_OVERLAP_COARSE_CELLS = 6


def invert_dem(
    reference: xr.DataArray,
    coarse: xr.DataArray,
    images: Sequence[InversionImage],
    *,
    prior_height: np.ndarray | None = None,
    prior_mask: np.ndarray | None = None,
    prior_error_m: np.ndarray | float | None = None,
    coarse_cell_m: float | None = None,
    coarse_error_m: float | None = None,
    registration_error_m: float | None = None,
    correction: np.ndarray | None = None,
    settings: InversionSettings | None = None,
    known_laws: Sequence[Callable[[np.ndarray], np.ndarray]] | None = None,
    land_cover: Any = None,
    blocks: int | None = None,
    client: Any = None,
    power_law: tuple[float, float] | None = None,
    progress: bool = False,
) -> xr.Dataset:
    """Refine ``reference`` by inverting the simulator against ``images`` (see the
    module's docstring).

    Parameters
    ----------
    reference : the reference heights on the fine grid (m, WGS84 ellipsoidal, a CRS): the
        coarse DEM registered, back-projected and corrected by the priors.
    coarse : the coarse DEM on its own grid (the same CRS): its cells are the cells whose
        means are kept.
    images : the observations in radar geometry (:func:`radar_image`, grouped by
        :func:`composite_images`).
    prior_height, prior_mask : known heights on the grid (NaN / 0 where none), or None.
    prior_error_m : their standard deviation (m), one or per cell; default the settings'.
    coarse_cell_m : the coarse DEM's cell size (m); default from ``coarse``.
    coarse_error_m : the coarse product's stated vertical error (m, RMS): the coarse-cell
        means of the result keep the product's within
        :attr:`InversionSettings.coarse_error_share` of it (at least
        :data:`COARSE_ERROR_FLOOR_M`); None (not stated): within the settings'
        ``coarse_error_m``.
    registration_error_m : how far (m) the coarse DEM's registration may be off: a coarse
        cell's mean is then off by that much times its slope, and kept within it too;
        None: nothing.
    correction : what the reference added to the product on the grid (m: the priors'
        kriged residuals), so that the coarse-cell means kept are the product's corrected
        as the reference was; None: none.
    settings : the weights and regularisation (default :class:`InversionSettings`).
    known_laws : the ground's sigma0 law under each image, where it is known (linear
        sigma0 of the local incidence in degrees): used as it is, never refitted; None:
        fitted to each image.
    land_cover : a land-cover map on the grid (integer codes, a DataArray on the grid or
        an array of its shape): its classes, each with its own law, instead of the classes
        the images tell apart (:mod:`sarheight.terrain.land_cover`).
    blocks : run block by block (bounded memory): fine cells a side of each block's core
        (each read with :data:`BLOCK_OVERLAP_COARSE_CELLS` coarse cells around it and
        keeping its core); with ``client``, :data:`BLOCK_CELLS` by default. Each block
        fits its own law and albedo: the result departs from the in-memory one near the
        blocks' seams by a fraction of a metre (``tests/terrain/test_inversion.py`` states it).
    client : where the blocks run, as :func:`sarheight.reconstruction.reconstruct` takes it:
        None (local threads), ``"local"`` (a LocalCluster) or a scheduler address or
        ``dask.distributed.Client``.
    power_law : the terrain's power law the relief prior extrapolates
        (:func:`relief_power_law`); default fitted to ``reference`` (block by block, to
        the whole grid once).
    progress : say a line on stderr after each round (each block, block-wise).

    Returns
    -------
    xr.Dataset on the grid: ``height`` (float32, m), ``albedo_db`` (the fitted albedo,
    dB), ``readable`` (uint8: how many images' ratios were read at each cell); attributes
    record the settings, the rounds' data misfit, each image's law at 40 degrees and
    noise, and how far the result moved from the reference.
    """
    settings = settings or InversionSettings()
    # The reference is on the grid the caller made, in ellipsoidal heights already.
    reference = open_dem(reference, vertical_datum="ellipsoid", copy=False)
    if blocks is not None or client is not None:
        from ..distributed import check_client

        check_client(client)
        size = BLOCK_CELLS if blocks is None else blocks
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
            raise InvalidInputError(f"blocks must be at least 16 fine cells a side, got {blocks!r}")
        if coarse_cell_m is None:
            coarse_cell_m = cell_side_m(coarse)
        overlap = math.ceil(BLOCK_OVERLAP_COARSE_CELLS * coarse_cell_m / cell_side_m(reference))
        if power_law is None:
            values = np.asarray(reference.values, dtype=np.float64)
            power_law = relief_power_law(np.where(np.isfinite(values), values, np.nanmean(values)),
                                         grid_steps(reference), coarse_cell_m)
        return _invert_blockwise(reference, coarse, images, block_cells=int(size), overlap=overlap, client=client,
                                 say=_say if progress else None, prior_height=prior_height, prior_mask=prior_mask,
                                 prior_error_m=prior_error_m, coarse_cell_m=coarse_cell_m,
                                 coarse_error_m=coarse_error_m, registration_error_m=registration_error_m,
                                 correction=correction, land_cover=land_cover,
                                 settings=settings,
                                 known_laws=known_laws, power_law=power_law)
    if not images:
        raise InvalidInputError("no observation was given: give at least one SAR image")
    values = np.asarray(reference.values, dtype=np.float64)
    known_cells = np.isfinite(values)
    if not known_cells.any():
        raise InvalidInputError("the reference DEM has no finite height")
    fill = float(np.nanmean(values))
    start = np.where(known_cells, values, fill).ravel()
    shape, cells = values.shape, values.size
    steps = grid_steps(reference)
    if coarse_cell_m is None:
        coarse_cell_m = cell_side_m(coarse)
    grid_cell = math.sqrt(abs(steps[0] * steps[1]))
    # How far the coarse-cell means may depart from the product's: its stated error (the
    # share the validation DEMs chose of it), else the settings' default.
    tolerance = (settings.coarse_error_m if coarse_error_m is None
                 else max(settings.coarse_error_share * coarse_error_m, COARSE_ERROR_FLOOR_M))
    coarse_mean, coarse_heights, coarse_cells = coarse_means(reference, coarse)
    # What the fine heights' coarse-cell means must keep: the product's heights, corrected
    # as the reference corrected them (the priors' kriged residuals), where it has them.
    # Only coarse cells the product has a height for and whose every grid cell the
    # reference has (a void's fill is no height to average).
    kept = np.isfinite(coarse_heights) & (coarse_mean @ (~known_cells.ravel()).astype(np.float64) < 1e-9)
    coarse_mean = coarse_mean[np.flatnonzero(kept)]
    coarse_heights, coarse_cells = coarse_heights[kept], coarse_cells[kept]
    if correction is not None:
        coarse_heights = coarse_heights + coarse_mean @ np.nan_to_num(np.asarray(correction, np.float64).ravel())
    coarse_offset = coarse_mean @ start - coarse_heights
    # A coarse cell's mean is off by as much as its registration is, times its slope.
    coarse_slope = np.nan_to_num(np.hypot(*gradient(np.asarray(coarse.values, dtype=np.float64),
                                                    grid_steps(coarse))).ravel()[coarse_cells])
    registration = 0.0 if registration_error_m is None else settings.registration_share * float(registration_error_m)
    coarse_tolerance = np.sqrt(tolerance**2 + (registration * coarse_slope) ** 2)
    pad = int(min(64, max(8, round(2 * coarse_cell_m / grid_cell))))
    padded = (shape[0] + 2 * pad, shape[1] + 2 * pad)
    if power_law is None:
        power_law = relief_power_law(start.reshape(shape), steps, coarse_cell_m)
    prior_spectrum = relief_prior_spectrum(power_law, steps, coarse_cell_m, padded, prior_scale=settings.prior_scale,
                                           coarse_error_m=tolerance)
    geometries = len({tuple(sorted(image.geometry.to_attrs().items())) for image in images})
    spacing = (settings.albedo_spacing if geometries == 1 else settings.albedo_spacing_passes) * coarse_cell_m
    albedo, nodes = albedo_interpolation(shape, spacing / grid_cell)
    problem = LinearProblem(shape, steps, coarse_mean, prior_spectrum, pad, blur(shape, settings.model_blur), albedo,
                       laplacian(nodes))
    surface = reference.copy(data=start.reshape(shape).astype(np.float32))
    frames = [look_frame(surface, image.geometry) for image in images]
    samplings = [sampling_of(image, surface) for image in images]
    if prior_height is not None and prior_mask is not None:
        prior_cells = (np.asarray(prior_mask).ravel() > 0) & np.isfinite(np.asarray(prior_height, np.float64).ravel())
        prior_values = np.where(prior_cells, np.asarray(prior_height, dtype=np.float64).ravel(), 0.0)
    else:
        prior_cells, prior_values = np.zeros(cells, dtype=bool), np.zeros(cells)
    error = settings.prior_error_m if prior_error_m is None else prior_error_m
    prior_weight = np.where(prior_cells, 1.0 / np.maximum(np.broadcast_to(np.asarray(error, np.float64),
                                                                          shape).ravel(), 0.05) ** 2, 0.0)
    heights = start.copy()
    albedo_nodes = np.zeros(albedo.shape[1])
    classes = np.zeros(shape, dtype=np.int64)
    laws: list[Any] = [None] * len(images)  # per image, its class laws (fitted, or known)
    misfits: list[float] = []
    if known_laws is not None:
        if len(known_laws) != len(images):
            raise InvalidInputError(f"{len(known_laws)} laws for {len(images)} images: give one law per image")
        laws = [[law_of(law)] for law in known_laws]

    def read(surface_heights: np.ndarray, nodes: np.ndarray,
             current: list[Any]) -> list[Reading]:
        return [read_surface(image, samplings[index], reference, surface_heights, shape, albedo @ nodes, classes,
                             current[index], frame, problem, known=known_laws is not None)
                for index, (image, frame) in enumerate(zip(images, frames, strict=True))]

    def probe(readings: list[Reading], surface_heights: np.ndarray) -> None:
        """The simulator's own derivative of each image's reading (probed), where asked."""
        for image, sampling, reading in zip(images, samplings, readings, strict=True):
            stride = settings.probe_stride if image.looks >= settings.probe_looks else 0
            if not stride:
                continue
            if reading.raw_probe is None:
                if reading.simulation is None or reading.model is None:
                    raise RuntimeError("a reading to probe keeps its simulation and model: read it with them")
                surface = reference.copy(data=surface_heights.reshape(shape).astype(np.float32))
                reading.raw_probe = probed_jacobian(image, sampling, surface, reading.simulation, reading.model,
                                                    stride)
            reading.probed = (sparse.diags(reading.valid.astype(np.float64)) @ reading.raw_probe).tocsr()

    readings = read(heights, albedo_nodes, laws)
    classes = _classes(images, shape, surface, land_cover, settings, known=known_laws is not None)
    if classes.max() > 0:
        # Each class starts from its image's law over all classes, then fits its own.
        laws = [[reading.laws[0]] * (int(classes.max()) + 1) for reading in readings]
        readings = read(heights, albedo_nodes, laws)
    # Cells no image reads (layover, shadow, outside) keep the reference within
    # unread_error_m: the relief prior and the coarse-cell means would otherwise move them
    # to balance their neighbours, which the images do read.
    unread = ~np.any([reading.valid for reading in readings], axis=0) & ~prior_cells
    prior_values = np.where(unread, start, prior_values)
    prior_weight = np.where(unread, 1.0 / settings.unread_error_m**2, prior_weight)
    prior_cells = prior_cells | unread
    penalties = Penalties(problem, start, prior_cells, prior_values, prior_weight, settings, coarse_offset,
                           coarse_tolerance)
    variances = [noise_variance(image, sampling, settings) for image, sampling in zip(images, samplings, strict=True)]
    objective = penalties.objective(readings, variances, heights, albedo_nodes)
    steps_taken: list[float] = []
    kept_probes: list[sparse.csr_matrix | None] = [None] * len(images)
    for round_index in range(settings.rounds):
        laws = [reading.laws for reading in readings]
        if not settings.reprobe:
            for reading, kept in zip(readings, kept_probes, strict=True):
                reading.raw_probe = kept
        probe(readings, heights)
        kept_probes = [reading.raw_probe for reading in readings]
        misfits.append(rms(np.concatenate([r.residual[r.valid] for r in readings])))
        new_heights, new_nodes, predicted = gauss_newton_step(problem, readings, variances, heights, albedo_nodes,
                                                              penalties)
        # A damped Gauss-Newton step: the new surface is read with the simulator; where
        # the objective falls by less than a tenth of what the linearisation promised (its
        # neglected terms: positions, the law, layover near its threshold), the step is
        # halved, up to three times, else the round keeps the surface and the rounds end.
        fraction = 1.0
        for _ in range(4):
            trial = read(new_heights, new_nodes, laws)
            trial_objective = penalties.objective(trial, variances, new_heights, new_nodes)
            if trial_objective <= objective - 0.1 * fraction * (objective - predicted):
                break
            fraction *= 0.5
            new_heights = heights + 0.5 * (new_heights - heights)
            new_nodes = albedo_nodes + 0.5 * (new_nodes - albedo_nodes)
        else:
            steps_taken.append(0.0)
            if progress:
                _say(f"inversion round {round_index + 1}/{settings.rounds}: no step lowers the objective; stopped")
            break
        steps_taken.append(fraction)
        heights, albedo_nodes, readings, objective = new_heights, new_nodes, trial, trial_objective
        if progress:
            _say(f"inversion round {round_index + 1}/{settings.rounds}: misfit {misfits[-1]:.3f} nepers, step "
                 f"{fraction:g}")
    laws = [reading.laws for reading in readings]
    readable = np.sum([reading.valid for reading in readings], axis=0).astype(np.uint8)
    result = np.where(known_cells.ravel(), heights, np.nan).reshape(shape)
    change = (result - values)[known_cells]
    out = xr.Dataset(
        {"height": (("y", "x"), result.astype(np.float32), {"units": "m", "long_name": "height by inversion"}),
         "albedo_db": (("y", "x"), ((albedo @ albedo_nodes) / NEPER_PER_DB).reshape(shape).astype(np.float32),
                       {"units": "dB", "long_name": "the albedo fitted beside the heights"}),
         "readable": (("y", "x"), readable.reshape(shape),
                      {"long_name": "images whose ratio was read at the cell (not in layover or shadow)"}),
         "land_cover": (("y", "x"), classes.astype(np.uint8),
                        {"long_name": "the ground's classes, each with its own law (given, or told apart by the "
                                      "images)"})},
        coords={"y": reference["y"], "x": reference["x"]})
    out.attrs.update(settings.to_attrs())
    out.attrs.update(
        inversion_images=len(images), inversion_geometries=geometries,
        inversion_land_cover_classes=int(classes.max()) + 1,
        inversion_misfit_nepers=", ".join(f"{value:.4f}" for value in misfits),
        inversion_laws_db_at_40=", ".join("/".join(f"{float(law(40.0)):.2f}" for law in group) for group in laws
                                          if group is not None),
        inversion_noise_nepers=", ".join(f"{math.sqrt(v):.3f}" for v in variances),
        inversion_steps=", ".join(f"{value:g}" for value in steps_taken),
        inversion_change_rms_m=rms(change) if change.size else 0.0,
        inversion_coarse_cell_m=float(coarse_cell_m))
    return out.rio.write_crs(reference.rio.crs)


def _cropped(image: InversionImage, surface: xr.DataArray) -> InversionImage:
    """``image`` cut to the radar window of ``surface`` (a block of the grid), with the
    margin the inversion reads around it."""
    cells = cell_geometry(surface, image.geometry, own_surface=False)
    window = radar_window(cells["line"], cells["sample"], cells["valid"], image.geometry, margin=WINDOW_MARGIN)
    part = image.window.intersection(window)
    if part is None:
        raise InvalidInputError(f"the observation {image.name} does not cover a block of the grid")
    rows, cols = part.index_in(image.window)
    return dataclasses.replace(image, image=image.image.isel(line=rows, sample=cols),
                               cross_image=None if image.cross_image is None
                               else image.cross_image.isel(line=rows, sample=cols))


def _say(line: str) -> None:
    """A line of progress, on stderr (the results go to files or to the caller)."""
    print(line, file=sys.stderr, flush=True)


def _invert_blockwise(reference: xr.DataArray, coarse: xr.DataArray, images: Sequence[InversionImage], *,
                      block_cells: int, overlap: int, client: Any, say: Callable[[str], None] | None,
                      **options: Any) -> xr.Dataset:
    """:func:`invert_dem` in overlapping blocks, on threads or a dask.distributed cluster."""
    from ..distributed import Workers

    rows, cols = reference.shape
    heights = np.full(reference.shape, np.nan, dtype=np.float32)
    tasks = []
    blocks = []
    for row in range(0, rows, block_cells):
        for col in range(0, cols, block_cells):
            row_slice = slice(max(0, row - overlap), min(rows, row + block_cells + overlap))
            col_slice = slice(max(0, col - overlap), min(cols, col + block_cells + overlap))
            core = (slice(row - row_slice.start, min(rows, row + block_cells) - row_slice.start),
                    slice(col - col_slice.start, min(cols, col + block_cells) - col_slice.start))
            blocks.append(((row, col), row_slice, col_slice, core))
    settings = options.get("settings") or InversionSettings()
    with Workers.open(client) as workers:
        shared = workers.broadcast((coarse, list(images)))
        if options.get("land_cover") is None and options.get("known_laws") is None and settings.land_cover_classes > 1:
            # The classes are the whole grid's, told apart once from every block's features:
            # blocks that told their own apart would give one ground two laws at a seam.
            # (Each image's brightness, then the cross-polarised ratio where an image has one.)
            crossed = any(image.cross_image is not None for image in images)
            features = [np.full(reference.shape, np.nan) for _ in range(len(images) + crossed)]
            futures = [(origin, workers.submit(_block_features_task, reference.isel(y=row_slice, x=col_slice), shared,
                                               core)) for origin, row_slice, col_slice, core in blocks]
            for (row, col), future in futures:
                for full, part in zip(features, future.result(), strict=True):
                    full[row:row + part.shape[0], col:col + part.shape[1]] = part
            options = {**options, "land_cover": estimate_land_cover(
                land_cover_features(features[:len(images)], [pass_key(image) for image in images])
                + features[len(images):],
                max_classes=settings.land_cover_classes, smoothing_cells=settings.land_cover_smoothing)}
        for (row, col), row_slice, col_slice, core in blocks:
            # Each task takes its own part of the grid and of the priors, not the whole.
            part = dict(options)
            for name in ("prior_height", "prior_mask", "correction", "land_cover"):
                if part[name] is not None:
                    part[name] = np.asarray(part[name])[row_slice, col_slice]
            tasks.append(((row, col), workers.submit(_invert_blockwise_task, reference.isel(y=row_slice, x=col_slice),
                                                     shared, core, part)))
        for done, ((row, col), future) in enumerate(tasks, start=1):
            block = future.result()
            heights[row:row + block.shape[0], col:col + block.shape[1]] = block
            if say is not None:
                say(f"inversion block {done}/{len(tasks)}")
    out = xr.Dataset({"height": (("y", "x"), heights, {"units": "m", "long_name": "height by inversion"})},
                     coords={"y": reference["y"], "x": reference["x"]})
    if options.get("land_cover") is not None:
        out["land_cover"] = (("y", "x"), land_cover_classes(options["land_cover"], reference).astype(np.uint8),
                             {"long_name": "the ground's classes, each with its own law (given, or told apart by "
                                           "the images)"})
    out.attrs.update(settings.to_attrs())
    out.attrs.update(inversion_images=len(images), inversion_blocks=len(tasks), inversion_block_cells=block_cells,
                     inversion_block_overlap=overlap)
    return out.rio.write_crs(reference.rio.crs)


def _block_features_task(surface: xr.DataArray, shared: tuple, core: tuple[slice, slice]) -> list[np.ndarray]:
    """One block's brightness features and, where an image has a cross-polarised one, the
    cross-polarised ratio (a task of the block-wise run), on its core."""
    _, images = shared
    block = open_dem(surface, vertical_datum="ellipsoid", copy=False)
    cropped = [_cropped(image, block) for image in images]
    samplings = [sampling_of(image, block) for image in cropped]
    cross = cross_ratio_feature(block, cropped, samplings)
    return [feature[core] for feature in [*brightness_features(block, cropped, samplings),
                                          *([] if cross is None else [cross])]]


def _invert_blockwise_task(surface: xr.DataArray, shared: tuple, core: tuple[slice, slice],
                           options: dict[str, Any]) -> np.ndarray:
    """One block's inversion (a task of the block-wise run): the heights of its core."""
    coarse, images = shared
    result = invert_dem(surface, coarse, [_cropped(image, surface) for image in images], **options)
    return result["height"].values[core]


def _classes(images: Sequence[InversionImage], shape: tuple[int, int], reference: xr.DataArray, land_cover: Any,
             settings: InversionSettings, *, known: bool) -> np.ndarray:
    """The ground's classes: a user's land-cover map, or the classes the images tell apart
    (:func:`sarheight.terrain.land_cover.estimate_land_cover` on each image's log ratio
    over the simulation of the reference, dB, :func:`brightness_features`, and the
    cross-polarised ratio where an image has one, :func:`cross_ratio_feature`), or one class
    (known laws, or :attr:`InversionSettings.land_cover_classes` 1)."""
    if land_cover is not None:
        return land_cover_classes(land_cover, reference)
    if known or settings.land_cover_classes <= 1:
        return np.zeros(shape, dtype=np.int64)
    surface = checked_dem(reference, vertical_datum="ellipsoid", copy=False)
    # (Each image read once: its sampling serves the brightness and the cross-polarised ratio.)
    samplings = [sampling_of(image, surface.heights) for image in images]
    features = land_cover_features(brightness_features(surface, images, samplings),
                                   [pass_key(image) for image in images])
    cross = cross_ratio_feature(surface.heights, images, samplings)
    return estimate_land_cover(features + ([] if cross is None else [cross]),
                               max_classes=settings.land_cover_classes, smoothing_cells=settings.land_cover_smoothing)


