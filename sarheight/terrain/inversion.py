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
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.fft
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg
import xarray as xr

from ..dem import ecef_coordinates, geodetic_coordinates, open_dem
from ..errors import InvalidInputError
from ..geometry import RadarGeometry
from ..ground import FittedLaw, empirical_sigma0
from ..observation import intensity_on_window
from ..raster import cell_side_m, gradient, grid_steps
from ..scores import rms
from ..simulate import Simulation
from ..simulate.cells import cell_geometry, radar_window
from .forward import (
    KnownLaw,
    Sampling,
    brightness_features,
    cross_ratio_feature,
    ground_cover,
    law_of,
    probed_jacobian,
    refit_law,
    sample_log,
    sampling_of,
    simulated_intensity,
)
from .land_cover import estimate_land_cover, land_cover_classes, land_cover_features
from .radar_images import (
    NEPER_PER_DB,
    USEFUL_INCIDENCE_DEG,
    WINDOW_MARGIN,
    InversionImage,
    pass_key,
    speckle_variance,
)
from .relief import (
    albedo_interpolation,
    blur,
    coarse_means,
    gradient_operators,
    laplacian,
    relief_power_law,
    relief_prior_spectrum,
)

logger = logging.getLogger(__name__)


__all__ = ["InversionSettings", "KnownLaw", "invert_dem", "law_of"]


#: The least standard deviation (m) the coarse-cell means are kept within, whatever the
#: product states: an exact block mean is kept to a few centimetres, not to nothing (the
#: means of the cells whose centres lie in a coarse cell are not its exact area mean on a
#: grid not aligned with it).
COARSE_ERROR_FLOOR_M = 0.1


@dataclasses.dataclass(frozen=True)
class InversionSettings:
    """The inversion's weights and regularisation: the defaults are those the inversion
    study chose on its validation DEMs (``benchmarks/terrain_inversion/settings.json``,
    written by ``examples/inversion_study.py``).

    Attributes
    ----------
    prior_scale : the relief prior's power relative to the coarse DEM's extrapolated
        spectrum (1: as extrapolated).
    coarse_error_m : the standard deviation (m) of the coarse product's error the image
        may correct where the product states none (:func:`invert_dem`'s
        ``coarse_error_m``): the coarse-cell means of the result keep the product's within
        it, and the relief prior allows it.
    prior_error_m : the standard deviation (m) of a known height, when the priors do not
        say theirs.
    albedo_spacing, albedo_spacing_passes : the albedo's node spacing (coarse cells) for
        one acquisition geometry, and for several (both passes see the same albedo, so it
        can be finer).
    albedo_smoothness : the weight of the albedo's roughness (its nodes' Laplacian).
    rounds : Gauss-Newton rounds (each simulates the current surface under every image).
    model_blur : binomial steps of the blur of a cell's ratio in the local linearisation
        (0: none).
    tolerance : the conjugate gradients' relative residual.
    translation : the local linearisation includes a cell's move in the image.
    probe_stride : probe the linearisation with the simulator itself (0: the local one):
        ``probe_stride**2`` simulations a probe and image, each raising every
        ``probe_stride``-th cell (:func:`probed_jacobian`).
    probe_looks : probe only images (or groups of dates) of at least this many looks.
    reference : what a scene's inversion starts from (:func:`sarheight.terrain.variables.inversion_reference`):
        ``"back_projection"`` or ``"lanczos"``, each registered and kriged.
    unread_error_m : the standard deviation (m) within which cells no image reads
        (layover, shadow) keep the reference.
    model_error_nepers : the standard deviation of the simulator's own error in a cell's
        log-ratio (nepers), beside speckle's.
    reprobe : probe the derivative again every round (else once, kept).
    coarse_error_share : the share of the product's stated error the coarse-cell means are
        kept within.
    robust_k : Huber's threshold (standard deviations) of the data's loss.
    land_cover_classes : the most classes the images are told apart into (1: one law for
        the whole ground).
    land_cover_smoothing : the smoothing (cells) of the features the classes are told
        apart by.
    """

    prior_scale: float = 0.5
    coarse_error_m: float = 3.0
    prior_error_m: float = 1.0
    albedo_spacing: float = 2.0
    albedo_spacing_passes: float = 2.0
    albedo_smoothness: float = 10.0
    rounds: int = 2
    model_blur: int = 1
    tolerance: float = 1e-3
    translation: bool = True
    probe_stride: int = 7
    probe_looks: float = 1.0
    reference: str = "back_projection"
    unread_error_m: float = 1.0
    model_error_nepers: float = 0.03
    reprobe: bool = True
    coarse_error_share: float = 0.5
    robust_k: float = 2.0
    land_cover_classes: int = 4
    land_cover_smoothing: float = 1.0

    def __post_init__(self) -> None:
        for name in ("prior_scale", "coarse_error_m", "prior_error_m", "albedo_spacing", "albedo_spacing_passes",
                     "albedo_smoothness", "tolerance", "probe_looks", "unread_error_m", "model_error_nepers",
                     "coarse_error_share", "robust_k", "land_cover_smoothing"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float, np.number)) and math.isfinite(value) and value > 0):
                raise InvalidInputError(f"InversionSettings.{name} must be a positive number, got {value!r}")
        for name, least in (("rounds", 1), ("model_blur", 0), ("probe_stride", 0), ("land_cover_classes", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
                raise InvalidInputError(f"InversionSettings.{name} must be an integer >= {least}, got {value!r}")

    def to_attrs(self, prefix: str = "inversion_") -> dict[str, float | int | str]:
        """Attributes of a result: every setting, prefixed."""
        return {f"{prefix}{key}": value for key, value in dataclasses.asdict(self).items()}


def look_frame(dem: xr.DataArray, geometry: RadarGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, the unit vector towards the sensor and the unit normal of the image plane
    (the plane of the look and the velocity, oriented upward), in the grid's local frame
    (its x axis, its y axis, up), each (cells, 3)."""
    cells = cell_geometry(dem, geometry, own_surface=False)
    lon, lat = (np.asarray(v, dtype=np.float64) for v in geodetic_coordinates(dem, radians=True))
    # The ellipsoid under each cell: its heights are added along the normal below.
    surface = np.asarray(ecef_coordinates(dem.copy(data=np.zeros(dem.shape, dtype=np.float32))).values)
    up = np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)
    east_step = grid_steps(dem)[1]
    along_x = gradient(surface, axis=1) * math.copysign(1.0, east_step) if dem.shape[1] > 1 else np.stack(
        [-np.sin(lon), np.cos(lon), np.zeros_like(lon)], axis=-1)
    along_x = along_x - np.sum(along_x * up, axis=-1, keepdims=True) * up
    along_x /= np.linalg.norm(along_x, axis=-1, keepdims=True)
    along_y = np.cross(up, along_x)
    times = cells["azimuth_time"]
    finite = cells["valid"]
    position, velocity, _ = geometry.orbit.state(np.where(finite, times, times[finite][0] if finite.any() else times))
    look = position - surface - up * np.asarray(dem.values, dtype=np.float64)[..., None]
    look /= np.linalg.norm(look, axis=-1, keepdims=True)
    plane = np.cross(look, velocity)
    plane /= np.linalg.norm(plane, axis=-1, keepdims=True)
    plane *= np.sign(np.sum(plane * up, axis=-1))[..., None]

    def local(vector: np.ndarray) -> np.ndarray:
        return np.stack([np.sum(vector * along_x, -1), np.sum(vector * along_y, -1), np.sum(vector * up, -1)],
                        axis=-1).reshape(-1, 3)

    return local(look), local(plane)


@dataclasses.dataclass
class _Reading:
    """What one round reads of one image on the current surface."""

    residual: np.ndarray
    valid: np.ndarray
    laws: list[FittedLaw]
    slope_x: np.ndarray
    slope_y: np.ndarray
    translation: np.ndarray
    probed: sparse.csr_matrix | None = None
    raw_probe: sparse.csr_matrix | None = None
    model: np.ndarray | None = None
    simulation: Simulation | None = None


class _Problem:
    """The linearised problem of one round, its operator and preconditioner."""

    def __init__(self, shape: tuple[int, int], steps: tuple[float, float], coarse_mean: sparse.csr_matrix,
                 prior_spectrum: np.ndarray, pad: int, blur: sparse.csr_matrix, albedo: sparse.csr_matrix,
                 albedo_roughness: sparse.csr_matrix):
        self.shape, self.steps, self.pad = shape, steps, pad
        self.cells = shape[0] * shape[1]
        self.coarse_mean, self.blur, self.albedo, self.albedo_roughness = coarse_mean, blur, albedo, albedo_roughness
        self.gradient = gradient_operators(shape, steps)
        floor = float(prior_spectrum.max()) * 1e-4 if prior_spectrum.max() > 0 else 1.0
        padded = prior_spectrum.shape
        # The prior's inverse as an operator: F^H diag(1 / P) F with the unnormalised FFT
        # (ifft divides by the cell count, which P's convention carries).
        self.inverse_prior = padded[0] * padded[1] / np.maximum(prior_spectrum, floor)
        fy = np.fft.fftfreq(padded[0], d=steps[0])[:, None]
        fx = np.fft.fftfreq(padded[1], d=steps[1])[None, :]
        self.derivative = (1j * np.sin(2 * math.pi * fy * steps[0]) / steps[0],
                           1j * np.sin(2 * math.pi * fx * steps[1]) / steps[1])
        self.blur_symbol = (np.cos(math.pi * fy * steps[0]) ** 2 * np.cos(math.pi * fx * steps[1]) ** 2)

    def embed(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros(self.inverse_prior.shape)
        p = self.pad
        out[p:p + self.shape[0], p:p + self.shape[1]] = values.reshape(self.shape)
        return out

    def crop(self, values: np.ndarray) -> np.ndarray:
        p = self.pad
        return values[p:p + self.shape[0], p:p + self.shape[1]].ravel()

    def relief_penalty(self, values: np.ndarray) -> np.ndarray:
        """C^-1 applied to a correction (the padded FFT's operator, restricted)."""
        spectrum = scipy.fft.rfft2(self.embed(values), workers=-1)
        half = self.inverse_prior[:, : spectrum.shape[1]]
        return self.crop(scipy.fft.irfft2(half * spectrum, s=self.inverse_prior.shape, workers=-1))


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
    coarse_mean, coarse_heights, coarse_cells = coarse_mean[np.flatnonzero(kept)], coarse_heights[kept], coarse_cells[kept]
    if correction is not None:
        coarse_heights = coarse_heights + coarse_mean @ np.nan_to_num(np.asarray(correction, np.float64).ravel())
    coarse_offset = coarse_mean @ start - coarse_heights
    # A coarse cell's mean is off by as much as its registration is, times its slope.
    coarse_slope = np.nan_to_num(np.hypot(*gradient(np.asarray(coarse.values, dtype=np.float64),
                                                    grid_steps(coarse))).ravel()[coarse_cells])
    registration = 0.0 if registration_error_m is None else float(registration_error_m)
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
    problem = _Problem(shape, steps, coarse_mean, prior_spectrum, pad, blur(shape, settings.model_blur), albedo,
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
    laws: list[list[FittedLaw] | None] = [None] * len(images)
    misfits: list[float] = []
    if known_laws is not None:
        if len(known_laws) != len(images):
            raise InvalidInputError(f"{len(known_laws)} laws for {len(images)} images: give one law per image")
        laws = [[law_of(law)] for law in known_laws]

    def read(surface_heights: np.ndarray, nodes: np.ndarray, current: list[list[FittedLaw] | None]) -> list[_Reading]:
        return [_read(image, samplings[index], reference, surface_heights, shape, albedo @ nodes, classes,
                      current[index], frame, problem, known=known_laws is not None)
                for index, (image, frame) in enumerate(zip(images, frames, strict=True))]

    def probe(readings: list[_Reading], surface_heights: np.ndarray) -> None:
        """The simulator's own derivative of each image's reading (probed), where asked."""
        for image, sampling, reading in zip(images, samplings, readings, strict=True):
            stride = settings.probe_stride if image.looks >= settings.probe_looks else 0
            if not stride:
                continue
            if reading.raw_probe is None:
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
    penalties = _Penalties(problem, start, prior_cells, prior_values, prior_weight, settings, coarse_offset,
                           coarse_tolerance)
    variances = [_noise_variance(image, sampling, settings) for image, sampling in zip(images, samplings, strict=True)]
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
        new_heights, new_nodes, predicted = _solve(problem, readings, variances, heights, albedo_nodes, penalties)
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


#: Fine cells a side of a block of the block-wise inversion (its core), and the overlap
#: (in coarse cells) read around it: a block's edge cells see only one side of their
#: neighbourhood, so each keeps only its core.
BLOCK_CELLS = 512


BLOCK_OVERLAP_COARSE_CELLS = 6


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
    surface = open_dem(reference, vertical_datum="ellipsoid", copy=False)
    # (Each image read once: its sampling serves the brightness and the cross-polarised ratio.)
    samplings = [sampling_of(image, surface) for image in images]
    features = land_cover_features(brightness_features(surface, images, samplings),
                                   [pass_key(image) for image in images])
    cross = cross_ratio_feature(surface, images, samplings)
    return estimate_land_cover(features + ([] if cross is None else [cross]),
                               max_classes=settings.land_cover_classes, smoothing_cells=settings.land_cover_smoothing)


def _read(image: InversionImage, sampling: Sampling, reference: xr.DataArray, heights: np.ndarray,
          shape: tuple[int, int], albedo: np.ndarray, classes: np.ndarray, laws: list[FittedLaw] | None,
          frame: tuple[np.ndarray, np.ndarray], problem: _Problem, known: bool = False) -> _Reading:
    """Simulate the surface ``heights`` under ``image``'s geometry with the current laws (one
    per class of ``classes``) and albedo, read the simulation where the observation was
    read, refit each class's law to their ratio, and the residual and its sensitivities to
    the heights at every readable cell (``known``: the laws are the ground's, not
    refitted)."""
    surface = reference.copy(data=heights.reshape(shape).astype(np.float32))
    count = int(classes.max()) + 1 if classes.size else 1
    current = list(laws) if laws is not None else [law_of(empirical_sigma0)] * count
    cover = ground_cover(classes, current, albedo)
    intensity, theta, simulation = simulated_intensity(image, surface, cover)
    model = sample_log(intensity_on_window(intensity, sampling.window), sampling)
    simulated = model
    look, plane = frame
    north_op, east_op = problem.gradient
    slope_y, slope_x = north_op @ heights, east_op @ heights
    q2 = 1.0 + slope_x**2 + slope_y**2
    q = np.sqrt(q2)
    plane_dot = (-slope_x * plane[:, 0] - slope_y * plane[:, 1] + plane[:, 2])
    cos_theta = (-slope_x * look[:, 0] - slope_y * look[:, 1] + look[:, 2]) / q
    flat_classes = classes.ravel()
    with np.errstate(invalid="ignore"):
        level = np.nanmedian(model[sampling.usable]) if sampling.usable.any() else 0.0
        valid = (sampling.usable & np.isfinite(model) & np.isfinite(theta) & (model > level + math.log(0.1))
                 & (theta > USEFUL_INCIDENCE_DEG[0]) & (theta < USEFUL_INCIDENCE_DEG[1])
                 & (plane_dot > 0.05 * q) & (cos_theta > 0.05))
    if valid.sum() < 64:
        raise InvalidInputError(f"the observation {image.name} has fewer than 64 cells outside layover and shadow "
                                "over the DEM: nothing to invert")
    # Each class's law refitted to the observation over the simulation at the current
    # surface: what the current law lacks at each incidence (the relief's share of the
    # ratio averages out over a degree's cells).
    ratio = np.where(valid, sampling.observed - model, np.nan)
    fitted: list[FittedLaw] = []
    law_log = np.zeros(theta.size)
    current_log = np.zeros(theta.size)
    law_slope = np.zeros(theta.size)
    for code in range(count):
        members = flat_classes == code
        with np.errstate(invalid="ignore"):
            now = current[code](theta[members]) * NEPER_PER_DB
        law = current[code] if known else refit_law(((now + ratio[members]) / NEPER_PER_DB),
                                                 theta[members], valid[members], current[code])
        fitted.append(law)
        with np.errstate(invalid="ignore"):
            current_log[members] = now
            law_log[members] = law(theta[members]) * NEPER_PER_DB
            law_slope[members] = law.slope_db_per_deg(theta[members]) * NEPER_PER_DB * 180.0 / math.pi
    model = model + (law_log - current_log)
    residual = np.where(valid, sampling.observed - model, 0.0)
    for code in range(count):
        members = valid & (flat_classes == code)
        if members.any():
            residual[members] -= residual[members].mean()
    cos_t = np.cos(np.radians(np.where(np.isfinite(theta), theta, 45.0)))
    sin_theta = np.sqrt(np.maximum(1.0 - cos_t**2, 1e-6))
    with np.errstate(invalid="ignore", divide="ignore"):
        # d/dg [ln(n . m) - ln L(theta)] for the slopes g = (dh/dx, dh/dy) of the surface.
        sensitivity_x = (-plane[:, 0] / plane_dot - slope_x / q2
                         - law_slope / sin_theta * (look[:, 0] / q + cos_theta * slope_x / q2))
        sensitivity_y = (-plane[:, 1] / plane_dot - slope_y / q2
                         - law_slope / sin_theta * (look[:, 1] / q + cos_theta * slope_y / q2))
    # The cell's move in the image: raising it by dh moves its facets as far as a move of
    # kappa dh towards the sensor along the surface does, so the simulation read at the
    # fixed position shows what lay kappa dh farther: the simulated brightness's gradient
    # towards the sensor (smooth: no speckle in it).
    horizontal = np.hypot(look[:, 0], look[:, 1])
    toward_x, toward_y = look[:, 0] / horizontal, look[:, 1] / horizontal
    kappa = look[:, 2] / np.maximum(horizontal + look[:, 2] * (toward_x * slope_x + toward_y * slope_y), 0.1)
    filled = np.where(np.isfinite(model), model, np.nanmedian(model[valid]))
    translation = kappa * (toward_x * (east_op @ filled) + toward_y * (north_op @ filled))
    return _Reading(residual, valid, fitted, np.where(valid, sensitivity_x, 0.0), np.where(valid, sensitivity_y, 0.0),
                    np.where(valid & np.isfinite(translation), translation, 0.0), model=simulated,
                    simulation=simulation)


def _noise_variance(image: InversionImage, sampling: Sampling, settings: InversionSettings) -> float:
    """The variance (nepers^2) of a cell's log-ratio that is not relief: speckle's,
    ``psi_1`` of the looks the cell's reading averages (the image's looks times the
    pixels of its box), and the model's own (:attr:`InversionSettings.model_error_nepers`)."""
    return speckle_variance(image.looks * sampling.box[0] * sampling.box[1]) + settings.model_error_nepers**2


class _Penalties:
    """The terms of the objective that are not the images': the coarse-cell means, the
    known heights, the relief prior, the albedo's roughness."""

    def __init__(self, problem: _Problem, reference: np.ndarray, prior_cells: np.ndarray, prior_values: np.ndarray,
                 prior_weight: np.ndarray, settings: InversionSettings, coarse_offset: np.ndarray,
                 coarse_error_m: np.ndarray):
        self.problem, self.reference, self.settings = problem, reference, settings
        self.prior_cells, self.prior_values, self.prior_weight = prior_cells, prior_values, prior_weight
        self.coarse_weight = 1.0 / np.asarray(coarse_error_m, dtype=np.float64) ** 2
        # The reference's coarse-cell means less the product's: the means' residual at the
        # reference.
        self.coarse_offset = coarse_offset

    def coarse_residual(self, heights: np.ndarray) -> np.ndarray:
        """The coarse-cell means of ``heights`` less the product's (m)."""
        return self.problem.coarse_mean @ (heights - self.reference) + self.coarse_offset

    def known(self, heights: np.ndarray) -> np.ndarray:
        return np.where(self.prior_cells, heights - self.prior_values, 0.0)

    def objective(self, readings: Sequence[_Reading], variances: Sequence[float], heights: np.ndarray,
                  albedo_nodes: np.ndarray) -> float:
        """The whole objective at ``heights`` and ``albedo_nodes`` read as ``readings``."""
        correction = heights - self.reference
        means = self.coarse_residual(heights)
        roughness = self.problem.albedo_roughness @ albedo_nodes
        data = sum(float(np.sum(_huber(r.residual[r.valid] / math.sqrt(v), self.settings.robust_k)))
                   for r, v in zip(readings, variances, strict=True))
        return (data + float(self.coarse_weight @ means**2) + float(self.prior_weight @ self.known(heights) ** 2)
                + float(correction @ self.problem.relief_penalty(correction))
                + self.settings.albedo_smoothness * float(roughness @ roughness))


def _huber(standardised: np.ndarray, k: float) -> np.ndarray:
    """Huber's loss of standardised residuals: their square within ``k``, linear beyond
    (a reading the simulator jumps at, a facet lit or not, weighs as one of ``k``
    standard deviations, not as its square)."""
    magnitude = np.abs(standardised)
    return np.where(magnitude <= k, magnitude**2, 2.0 * k * magnitude - k**2)


def _huber_weight(standardised: np.ndarray, k: float) -> np.ndarray:
    """The weight of each residual in a least-squares step of Huber's loss (iteratively
    reweighted): 1 within ``k`` standard deviations, ``k / |r|`` beyond."""
    magnitude = np.abs(standardised)
    return np.where(magnitude <= k, 1.0, k / np.maximum(magnitude, 1e-12))


def _solve(problem: _Problem, readings: Sequence[_Reading], variances: Sequence[float], heights: np.ndarray,
           albedo_nodes: np.ndarray, penalties: _Penalties) -> tuple[np.ndarray, np.ndarray, float]:
    """One Gauss-Newton step: the new heights and albedo nodes, and the objective the
    linearisation predicts there."""
    settings = penalties.settings
    cells = problem.cells
    north_op, east_op = problem.gradient
    data_rows, weights = [], []
    for reading, variance in zip(readings, variances, strict=True):
        if reading.probed is not None:
            jacobian = reading.probed
        else:
            jacobian = problem.blur @ (sparse.diags(reading.slope_x) @ east_op
                                       + sparse.diags(reading.slope_y) @ north_op)
            if settings.translation:
                jacobian = jacobian + sparse.diags(reading.translation)
        data_rows.append(jacobian.tocsr())
        weights.append(reading.valid / float(variance)
                       * _huber_weight(reading.residual / math.sqrt(variance), settings.robust_k))
    mean = problem.coarse_mean
    coarse_weight = penalties.coarse_weight
    prior_weight = penalties.prior_weight
    # The coarse-cell means stay an operator: their product holds factor^2 entries a row.
    height_block = (sum(rows.T @ sparse.diags(w) @ rows for rows, w in zip(data_rows, weights, strict=True))
                    + sparse.diags(prior_weight)).tocsr()
    coupling = (-sum(rows.T @ sparse.diags(w) for rows, w in zip(data_rows, weights, strict=True)) @ problem.albedo).tocsr()
    total_weight = np.sum(weights, axis=0)
    roughness = problem.albedo_roughness
    albedo_block = (problem.albedo.T @ sparse.diags(total_weight) @ problem.albedo
                    + settings.albedo_smoothness * (roughness.T @ roughness)).tocsr()
    correction = heights - penalties.reference
    gradient_h = (sum(rows.T @ (w * r.residual) for rows, w, r in zip(data_rows, weights, readings, strict=True))
                  + mean.T @ (coarse_weight * penalties.coarse_residual(heights))
                  + prior_weight * penalties.known(heights)
                  + problem.relief_penalty(correction))
    gradient_a = (-problem.albedo.T @ np.sum([w * r.residual for w, r in zip(weights, readings, strict=True)], axis=0)
                  + settings.albedo_smoothness * (roughness.T @ (roughness @ albedo_nodes)))
    nodes = albedo_nodes.size

    def apply(vector: np.ndarray) -> np.ndarray:
        dh, da = vector[:cells], vector[cells:]
        return np.concatenate([height_block @ dh + mean.T @ (coarse_weight * (mean @ dh)) + problem.relief_penalty(dh)
                               + coupling @ da, coupling.T @ dh + albedo_block @ da])

    # The preconditioner: the height block with every coefficient at its mean, diagonal in
    # the Fourier domain (the relief prior exactly, the data term's mean slope
    # sensitivity, the priors' mean weight), and the albedo block's diagonal.
    symbol = problem.inverse_prior.copy()
    north_d, east_d = problem.derivative
    for reading, w in zip(readings, weights, strict=True):
        valid = reading.valid
        mean_x, mean_y = float(reading.slope_x[valid].mean()), float(reading.slope_y[valid].mean())
        symbol += float(w.mean()) * problem.blur_symbol**2 * np.abs(mean_x * east_d + mean_y * north_d) ** 2
    symbol += float(prior_weight.mean())
    half = symbol[:, : symbol.shape[1] // 2 + 1]
    albedo_diagonal = np.maximum(albedo_block.diagonal(), 1e-12)

    def precondition(vector: np.ndarray) -> np.ndarray:
        dh, da = vector[:cells], vector[cells:]
        spectrum = scipy.fft.rfft2(problem.embed(dh), workers=-1)
        smoothed = scipy.fft.irfft2(spectrum / half, s=symbol.shape, workers=-1)
        return np.concatenate([problem.crop(smoothed), da / albedo_diagonal])

    size = cells + nodes
    gradient = np.concatenate([gradient_h, gradient_a])
    step, _ = sparse_linalg.cg(sparse_linalg.LinearOperator((size, size), apply), -gradient,
                               M=sparse_linalg.LinearOperator((size, size), precondition),
                               rtol=settings.tolerance, maxiter=500)
    # The quadratic model's value at the step: Phi + 2 g.s + s.H.s (the objective is a
    # sum of squares, its gradient here half of Phi's).
    current = penalties.objective(readings, variances, heights, albedo_nodes)
    predicted = current + 2.0 * float(gradient @ step) + float(step @ apply(step))
    return heights + step[:cells], albedo_nodes + step[cells:], predicted
