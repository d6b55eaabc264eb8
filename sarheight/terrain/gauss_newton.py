"""The inversion's rounds: the surface simulated and read under each image
(:func:`read_surface`), the variance of what is not relief (:func:`noise_variance`), the
objective's other terms (:class:`Penalties`) and one damped Gauss-Newton step of the
sparse linear least-squares problem (:class:`LinearProblem`, :func:`gauss_newton_step`);
the look and image-plane frame of each cell (:func:`look_frame`). The equations are those
of :mod:`sarheight.terrain.inversion`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import scipy.fft
import scipy.sparse as sparse
import scipy.sparse.linalg as sparse_linalg
import xarray as xr

from ..dem import Dem, ecef_coordinates, geodetic_coordinates
from ..errors import InvalidInputError
from ..geometry import RadarGeometry
from ..ground import FittedLaw, empirical_sigma0
from ..observation import intensity_on_window
from ..raster import Grid, gradient, grid_steps
from ..simulate import Simulation
from ..simulate.cells import cell_geometry
from .forward import (
    KnownLaw,
    Sampling,
    ground_cover,
    law_of,
    refit_law,
    sample_log,
    simulated_intensity,
)
from .inversion_settings import InversionSettings
from .radar_images import NEPER_PER_DB, USEFUL_INCIDENCE_DEG, InversionImage, speckle_variance
from .relief import gradient_operators


def look_frame(dem: xr.DataArray, geometry: RadarGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Per cell, the unit vector towards the sensor and the unit normal of the image plane
    (the plane of the look and the velocity, oriented upward), in the grid's local frame
    (its x axis, its y axis, up), each (cells, 3)."""
    cells = cell_geometry(dem, geometry, own_surface=False)
    lon, lat = (np.asarray(v, dtype=np.float64) for v in geodetic_coordinates(dem, radians=True))
    # The ellipsoid under each cell: its heights are added along the normal below.
    # (Heights of zero on the DEM's grid: a Dem as it is, nothing to check.)
    ellipsoid = Dem(dem.copy(data=np.zeros(dem.shape, dtype=np.float32)), Grid.of(dem))
    surface = np.asarray(ecef_coordinates(ellipsoid).values)
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
class Reading:
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


class LinearProblem:
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


def read_surface(image: InversionImage, sampling: Sampling, reference: xr.DataArray, heights: np.ndarray,
                 shape: tuple[int, int], albedo: np.ndarray, classes: np.ndarray,
                 laws: Sequence[FittedLaw | KnownLaw] | None, frame: tuple[np.ndarray, np.ndarray],
                 problem: LinearProblem, known: bool = False) -> Reading:
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
    return Reading(residual, valid, fitted, np.where(valid, sensitivity_x, 0.0), np.where(valid, sensitivity_y, 0.0),
                    np.where(valid & np.isfinite(translation), translation, 0.0), model=simulated,
                    simulation=simulation)


def noise_variance(image: InversionImage, sampling: Sampling, settings: InversionSettings) -> float:
    """The variance (nepers^2) of a cell's log-ratio that is not relief: speckle's,
    ``psi_1`` of the looks the cell's reading averages (the image's looks times the
    pixels of its box), and the model's own (:attr:`InversionSettings.model_error_nepers`)."""
    return speckle_variance(image.looks * sampling.box[0] * sampling.box[1]) + settings.model_error_nepers**2


class Penalties:
    """The terms of the objective that are not the images': the coarse-cell means, the
    known heights, the relief prior, the albedo's roughness."""

    def __init__(self, problem: LinearProblem, reference: np.ndarray, prior_cells: np.ndarray, prior_values: np.ndarray,
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

    def objective(self, readings: Sequence[Reading], variances: Sequence[float], heights: np.ndarray,
                  albedo_nodes: np.ndarray) -> float:
        """The whole objective at ``heights`` and ``albedo_nodes`` read as ``readings``."""
        correction = heights - self.reference
        means = self.coarse_residual(heights)
        roughness = self.problem.albedo_roughness @ albedo_nodes
        data = sum(float(np.sum(huber(r.residual[r.valid] / math.sqrt(v), self.settings.robust_k)))
                   for r, v in zip(readings, variances, strict=True))
        return (data + float(self.coarse_weight @ means**2) + float(self.prior_weight @ self.known(heights) ** 2)
                + float(correction @ self.problem.relief_penalty(correction))
                + self.settings.albedo_smoothness * float(roughness @ roughness))


def huber(standardised: np.ndarray, k: float) -> np.ndarray:
    """Huber's loss of standardised residuals: their square within ``k``, linear beyond
    (a reading the simulator jumps at, a facet lit or not, weighs as one of ``k``
    standard deviations, not as its square)."""
    magnitude = np.abs(standardised)
    return np.where(magnitude <= k, magnitude**2, 2.0 * k * magnitude - k**2)


def huber_weight(standardised: np.ndarray, k: float) -> np.ndarray:
    """The weight of each residual in a least-squares step of Huber's loss (iteratively
    reweighted): 1 within ``k`` standard deviations, ``k / |r|`` beyond."""
    magnitude = np.abs(standardised)
    return np.where(magnitude <= k, 1.0, k / np.maximum(magnitude, 1e-12))


def gauss_newton_step(problem: LinearProblem, readings: Sequence[Reading], variances: Sequence[float],
                      heights: np.ndarray,
           albedo_nodes: np.ndarray, penalties: Penalties) -> tuple[np.ndarray, np.ndarray, float]:
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
                       * huber_weight(reading.residual / math.sqrt(variance), settings.robust_k))
    mean = problem.coarse_mean
    coarse_weight = penalties.coarse_weight
    prior_weight = penalties.prior_weight
    # The coarse-cell means stay an operator: their product holds factor^2 entries a row.
    height_block = (sum(rows.T @ sparse.diags(w) @ rows for rows, w in zip(data_rows, weights, strict=True))
                    + sparse.diags(prior_weight)).tocsr()
    data_coupling = sum(rows.T @ sparse.diags(w) for rows, w in zip(data_rows, weights, strict=True))
    coupling = (-data_coupling @ problem.albedo).tocsr()
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
