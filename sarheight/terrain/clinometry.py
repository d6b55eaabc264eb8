"""Clinometry: a coarse DEM refined by the brightness of a SAR image, without learning.

A slope facing the radar is brighter than the coarse DEM's facet below it predicts, one
facing away darker. The ratio of the observed sigma0 to the sigma0 simulated from the
coarse DEM (``sar_ratio`` of a terrain scene, dB) therefore measures how much steeper or
flatter the true terrain is along the ground range than the coarse DEM, and integrating
that slope along the range gives the heights the coarse DEM lacks (shape from shading,
radarclinometry; Wildey 1986, Frankot & Chellappa 1990 for SAR).

The steps, on the scene's grid:

1. **Ratio to range slope.** A surface of range slope alpha (rising away from the sensor)
   under incidence theta returns ``I = sigma0(theta_loc) / sin(theta_loc)`` per radar pixel
   (``theta_loc = theta - alpha``), so ``r = 10 log10(I(alpha_fine) / I(alpha_coarse))``
   gives ``alpha_fine - alpha_coarse = r / S`` with ``S = -d(10 log10(sigma0(x) / sin x))/dx``
   at the coarse DEM's local incidence (dB per radian; :func:`range_slope_sensitivity`).
   The law is fitted to the observation itself (:func:`sarheight.terrain.variables.scene_sigma0_law`),
   never assumed: a ground whose law differs from the reconstruction's would otherwise
   scale every slope wrongly. Cells in layover or shadow, or where the local
   incidence leaves the law's useful range, say nothing.
2. **Slopes to heights: a Wiener filter.** The height correction ``c`` whose range
   derivative matches those slopes, ``d = u . grad(c) + noise``, is solved in the Fourier
   domain as the least-squares estimate under a prior on ``c``: the power the coarse DEM
   lost, extrapolated from its own spectrum (terrain spectra fall as a power of the
   wavenumber, ``|k|^-beta``; the coarse DEM's is fitted below a quarter of its Nyquist
   frequency, times the share a block mean of the coarse cell leaves out, ``(1 - T(k))^2``
   with ``T`` its transfer function: nothing at the wavenumbers the coarse DEM holds). The noise
   (speckle, land cover) is the flat floor of the slopes' spectrum at the highest
   wavenumbers. Wavenumbers across the range direction get nothing: SAR brightness does
   not see slopes along the track. The coarse DEM stays the low-frequency constraint: the
   prior vanishes at the wavenumbers it holds.
3. **Priors as anchors.** The known heights' residuals from the result are spread over
   about half a coarse cell around each.

Where it helps and where it cannot: speckle of one date (4.4 looks) is about 2.2 dB a cell,
ten degrees of slope; a composite of ten dates brings it to 0.7 dB. Land cover (patches of
a few dB independent of the slopes) reads as relief: the filter takes it for signal where
its patches are larger than a cell. A ground whose sigma0 law differs from the modelled one
scales the slopes wrongly. The study (``sarheight terrain study``) reports
all three.

:func:`clinometric_correction` is the numpy core (arrays in, arrays out);
:func:`clinometry_heights` applies it to a terrain scene.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import xarray as xr

from ..errors import InvalidInputError
from ..ground import empirical_sigma0
from ..masks import MaskCode
from ..raster import filled_with_mean, gradient, grid_steps
from .relief import relief_power_law
from .variables import Scene, coarse_cell_size, scene_sigma0_law, scene_variable

#: Local incidence angles (degrees) outside which the ratio is not turned into a slope:
#: near grazing and near normal incidence the law's slope sensitivity is unreliable.
USEFUL_INCIDENCE_DEG = (10.0, 80.0)

#: The largest slope change (radians) one cell's ratio may claim.
MAX_SLOPE_CHANGE = math.radians(25.0)

def range_slope_sensitivity(local_incidence_deg: np.ndarray | float,
                            law: Callable[[np.ndarray], np.ndarray] = empirical_sigma0) -> np.ndarray:
    """How fast the brightness of a radar pixel rises with the range slope (dB per radian):
    ``S = -d(10 log10(law(x) / sin x)) / dx`` at the local incidence ``x`` (degrees in).

    ``law`` maps local incidence angles (degrees) to linear sigma0. Positive where the
    law falls with the incidence; NaN outside (0, 90) degrees.
    """
    x = np.radians(np.asarray(local_incidence_deg, dtype=np.float64))
    step = 1e-4
    with np.errstate(divide="ignore", invalid="ignore"):
        def brightness(angle: np.ndarray) -> np.ndarray:
            return 10.0 * np.log10(np.asarray(law(np.degrees(angle)), dtype=np.float64) / np.sin(angle))

        sensitivity = -(brightness(x + step) - brightness(x - step)) / (2 * step)
    inside = (x > step) & (x < math.pi / 2 - step)
    return np.where(inside & np.isfinite(sensitivity), sensitivity, np.nan)


def _wavenumber(shape: tuple[int, int], steps: tuple[float, float]) -> np.ndarray:
    fy = np.fft.fftfreq(shape[0], d=steps[0])[:, None]
    fx = np.fft.fftfreq(shape[1], d=steps[1])[None, :]
    return 2 * math.pi * np.sqrt(fy**2 + fx**2)


def _ring_spectra(power: np.ndarray, transfer: np.ndarray, alignment: np.ndarray, prior: np.ndarray,
                  k: np.ndarray, rings: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """The prior of the heights and the noise of the slopes per wavenumber, from the slope
    data's spectrum ``power``, the derivative's ``transfer`` |D|^2, the ``alignment``
    |cos| of each wavevector with the range direction and the coarse DEM's extrapolated
    ``prior`` (an upper bound).

    Range slopes see nothing of the wavevectors across the range (``D`` vanishes there),
    while speckle and land cover are the same in every direction: over log-spaced rings of
    ``k``, the power of the wavevectors across the range is the noise, and what those
    along it hold beyond that noise, over their mean |D|^2, caps the prior. Interpolated
    between the rings' centres in log k."""
    positive = k > 0
    edges = np.geomspace(k[positive].min(), k.max() * 1.0001, rings + 1)
    ring = np.digitize(k, edges) - 1
    centres, caps, noises = [], [], []
    for index in range(rings):
        inside = positive & (ring == index)
        across = inside & (alignment < 0.3)
        along = inside & (alignment > 0.6)
        if across.sum() < 2 or along.sum() < 2:
            continue
        noise = float(power[across].mean())
        centres.append(math.log(math.sqrt(edges[index] * edges[index + 1])))
        caps.append(max(float(power[along].mean()) - noise, 0.0) / max(float(transfer[along].mean()), 1e-30))
        noises.append(noise)
    if not centres:
        return np.zeros(k.shape), np.full(k.shape, float(power.mean()) + 1e-30)
    log_k = np.log(np.where(positive, k, edges[0]))
    capped = np.minimum(prior, np.interp(log_k, centres, caps))
    return np.where(positive, capped, 0.0), np.interp(log_k, centres, noises) + 1e-30


def clinometric_correction(
    reference: np.ndarray,
    ratio_db: np.ndarray,
    local_incidence_deg: np.ndarray,
    look: tuple[float, float],
    steps: tuple[float, float],
    coarse_cell_m: float,
    *,
    valid: np.ndarray | None = None,
    law: Callable[[np.ndarray], np.ndarray] = empirical_sigma0,
    pad: int = 16,
) -> np.ndarray:
    """The height correction (m) of a coarse DEM from the ratio of observed to simulated
    sigma0 (see the module's docstring): a pure function of arrays on one grid.

    Parameters
    ----------
    reference : (H, W) the coarse DEM resampled to the grid (m).
    ratio_db : (H, W) observed over simulated sigma0 (dB), NaN where unknown.
    local_incidence_deg : (H, W) the coarse DEM's local incidence angle (degrees).
    look : the unit vector of the ground range away from the sensor, as (east, north).
    steps : the signed steps (m) of one row northward and one column eastward (a north-up
        grid has a negative row step).
    coarse_cell_m : the coarse DEM's cell size (m): the scale of the prior.
    valid : (H, W) bool, the cells whose ratio may be used (default: where it is finite).
    law : the sigma0 law (degrees -> linear) the slopes are read with.
    pad : cells of zero slope around the grid (the Fourier solve is periodic).

    Returns
    -------
    (H, W) float64, the correction to add to ``reference`` (0 where nothing is known).
    """
    reference = np.asarray(reference, dtype=np.float64)
    shape = reference.shape
    for name, array in (("ratio_db", ratio_db), ("local_incidence_deg", local_incidence_deg)):
        if np.shape(array) != shape:
            raise InvalidInputError(f"{name} is {np.shape(array)}, the reference {shape}: give arrays on one grid")
    if not (math.isfinite(coarse_cell_m) and coarse_cell_m > 0):
        raise InvalidInputError(f"coarse_cell_m must be a positive number of metres, got {coarse_cell_m!r}")
    north_step, east_step = (float(step) for step in steps)
    look_east, look_north = (float(v) for v in look)
    incidence = np.asarray(local_incidence_deg, dtype=np.float64)
    ratio = np.asarray(ratio_db, dtype=np.float64)
    usable = np.isfinite(ratio) & np.isfinite(incidence) & np.isfinite(reference)
    usable &= (incidence > USEFUL_INCIDENCE_DEG[0]) & (incidence < USEFUL_INCIDENCE_DEG[1])
    if valid is not None:
        usable &= np.asarray(valid, dtype=bool)
    if not usable.any():
        return np.zeros(shape)
    # 1. The range slope of the coarse DEM and the change the ratio asks for.
    along_rows, along_cols = gradient(filled_with_mean(reference), (north_step, east_step))
    coarse_slope = np.arctan(look_east * along_cols + look_north * along_rows)
    sensitivity = range_slope_sensitivity(incidence, law)
    usable &= np.isfinite(sensitivity) & (sensitivity > 0.5)
    if not usable.any():
        return np.zeros(shape)
    # A calibration offset, or the mean of the land cover's departure from the law, is no slope.
    ratio = ratio - ratio[usable].mean()
    change = np.clip(np.where(usable, ratio / np.where(usable, sensitivity, 1.0), 0.0),
                     -MAX_SLOPE_CHANGE, MAX_SLOPE_CHANGE)
    fine_slope = np.clip(coarse_slope + change, -1.4, 1.4)
    # The data: the change of the range derivative of the heights (tan of the slopes).
    data = np.where(usable, np.tan(fine_slope) - np.tan(coarse_slope), 0.0)
    # 2. The Wiener solve on a padded grid.
    padded = np.pad(data, pad)
    k_rows = np.fft.fftfreq(padded.shape[0], d=north_step)[:, None]
    k_cols = np.fft.fftfreq(padded.shape[1], d=east_step)[None, :]
    derivative = 1j * (look_east * np.sin(2 * math.pi * k_cols * east_step) / east_step
                       + look_north * np.sin(2 * math.pi * k_rows * north_step) / north_step)
    amplitude, beta = relief_power_law(reference, (north_step, east_step), coarse_cell_m, min_exponent=2.0)
    # The same convention of |FFT|^2 on the padded grid: power scales with the cell count.
    amplitude *= padded.size
    k = _wavenumber(padded.shape, (north_step, east_step))
    cell = coarse_cell_m
    passed = np.sinc(k_rows * cell) * np.sinc(k_cols * cell)
    passed = np.where((np.abs(k_rows) < 0.5 / cell) & (np.abs(k_cols) < 0.5 / cell), passed, 0.0)
    with np.errstate(divide="ignore"):
        prior = np.where(k > 0, amplitude * np.where(k > 0, k, 1.0) ** -beta, 0.0) * (1.0 - passed) ** 2
    spectrum = np.fft.fft2(padded)
    alignment = np.abs(look_east * k_cols + look_north * k_rows) / np.maximum(np.hypot(k_cols, k_rows), 1e-30)
    prior, noise = _ring_spectra(np.abs(spectrum) ** 2, np.abs(derivative) ** 2, alignment, prior, k)
    gain = prior * np.conj(derivative) / (np.abs(derivative) ** 2 * prior + noise)
    correction = np.real(np.fft.ifft2(gain * spectrum))[pad:pad + shape[0], pad:pad + shape[1]]
    return np.where(np.isfinite(reference), correction, 0.0)


def anchor_to_priors(heights: np.ndarray, prior_height: np.ndarray, prior_mask: np.ndarray,
                     steps: tuple[float, float], radius_m: float) -> np.ndarray:
    """``heights`` with the residuals at the known heights spread around each: a Gaussian
    of ``radius_m`` (m, its standard deviation), weighted among neighbouring priors so that
    the correction never exceeds the nearest residual. Returns a new array."""
    heights = np.asarray(heights, dtype=np.float64).copy()
    known = (np.asarray(prior_mask) > 0) & np.isfinite(prior_height) & np.isfinite(heights)
    if not known.any() or not radius_m > 0:
        return heights
    rows, cols = np.nonzero(known)
    residual = np.asarray(prior_height, dtype=np.float64)[known] - heights[known]
    dy, dx = abs(steps[0]), abs(steps[1])
    reach = (math.ceil(3 * radius_m / dy), math.ceil(3 * radius_m / dx))
    weighted = np.zeros(heights.shape)
    weights = np.zeros(heights.shape)
    largest = np.zeros(heights.shape)
    for row, col, value in zip(rows, cols, residual, strict=True):
        r0, r1 = max(row - reach[0], 0), min(row + reach[0] + 1, heights.shape[0])
        c0, c1 = max(col - reach[1], 0), min(col + reach[1] + 1, heights.shape[1])
        yy = (np.arange(r0, r1) - row)[:, None] * dy
        xx = (np.arange(c0, c1) - col)[None, :] * dx
        weight = np.exp(-0.5 * (yy**2 + xx**2) / radius_m**2)
        weighted[r0:r1, c0:c1] += weight * value
        weights[r0:r1, c0:c1] += weight
        largest[r0:r1, c0:c1] = np.maximum(largest[r0:r1, c0:c1], weight)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.where(weights > 0, weighted / weights * largest, 0.0)
    return heights + spread


def clinometry_heights(scene: xr.Dataset | Scene, *, reference: str = "coarse_registered",
                       sar: str = "sar_reconstructed", anchors: bool = True) -> xr.DataArray:
    """The clinometric refinement of a terrain scene (:mod:`sarheight.terrain`): the coarse
    DEM ``reference`` plus the correction its SAR image ``sar`` asks for
    (:func:`clinometric_correction`), anchored to the scene's priors.

    Parameters
    ----------
    scene : a terrain scene with ``reference``, ``sar`` (sigma0, dB), its
        ``local_incidence_angle``, ``layover``, ``shadow``, the priors and the attributes
        of its geometry (``heading_deg``, ``look_side``) and coarse DEM.
    reference : the coarse DEM on the scene grid: by default registered to the priors and
        resampled with a Lanczos kernel (``coarse_lanczos``, not registered, in scenes
        without it). Its Wiener prior is the power a block mean loses, so the reference is
        a plain resampling, not a back-projection
        that has restored part of that power already (on Big Tujunga at 3x, clinometry
        from the back-projected DEM was worse than the back-projection alone).
    sar : ``sar_reconstructed`` or ``sar_geocoded`` (or the other pass's, with
        ``other_``: then its own local incidence and look are used).
    anchors : correct the coarse DEM's error by the priors: the kriged correction of the
        scene (``coarse_refined - coarse_backprojected``, :mod:`sarheight.terrain.backprojection`,
        where the scene has it), then the residuals left at the priors spread around each
        (:func:`anchor_to_priors`).

    Returns
    -------
    xr.DataArray ``height`` (float32, m) on the scene's grid with its CRS.
    """
    other = sar.startswith("other_")
    prefix = "other_" if other else ""
    if reference == "coarse_registered" and reference not in scene.data_vars:
        reference = "coarse_lanczos"
    ratio_name = f"{prefix}sar_ratio" + ("_geocoded" if sar.endswith("geocoded") and not other else "")
    needed = [reference, sar, f"{prefix}local_incidence_angle", "layover", "shadow"]
    missing = [name for name in needed if name not in scene.data_vars]
    if missing:
        raise InvalidInputError(f"the scene lacks {missing}, which the clinometric refinement needs")
    base = scene[reference]
    north, east = grid_steps(base)
    look = (float(scene_variable(scene, f"{prefix}look_east").flat[0]),
            float(scene_variable(scene, f"{prefix}look_north").flat[0]))
    # The masks are of the scene's own pass; the other pass's layover and shadow are not
    # kept, its NaNs (shadow) say where it has nothing.
    valid = None if other else ((scene["layover"].values == MaskCode.NONE)
                                & (scene["shadow"].values == MaskCode.NONE))
    cell = coarse_cell_size(scene)
    fitted = scene_sigma0_law(scene, sar, f"{prefix}local_incidence_angle")

    def law(angles: np.ndarray) -> np.ndarray:
        return 10.0 ** (fitted(angles) / 10.0)

    correction = clinometric_correction(base.values, scene_variable(scene, ratio_name),
                                        scene[f"{prefix}local_incidence_angle"].values, look, (north, east), cell,
                                        valid=valid, law=law)
    heights = base.values.astype(np.float64) + correction
    if anchors and {"coarse_refined", "coarse_backprojected"} <= set(scene.data_vars):
        kriged = scene["coarse_refined"].values.astype(np.float64) - scene["coarse_backprojected"].values
        heights = heights + np.where(np.isfinite(kriged), kriged, 0.0)
    if anchors and "prior_mask" in scene.data_vars:
        heights = anchor_to_priors(heights, scene["prior_height"].values, scene["prior_mask"].values,
                                   (north, east), 0.5 * cell)
    out = base.copy(data=heights.astype(np.float32))
    out.name = "height"
    out.attrs = {"units": "m", "long_name": f"clinometric refinement of {reference} by {sar}"}
    return out

