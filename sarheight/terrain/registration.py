"""Registration of a coarse DEM to the images (:func:`register_to_images`): before any method, the coarse DEM's
horizontal shift is measured as DEM-to-SAR co-registration does it (GAMMA's offsets
between the simulated and the real image, ISCE's and DORIS's DEM co-registration): the
image the coarse DEM simulates is correlated with the observation in radar geometry.
Sentinel-1's geolocation is good to decimetres, a global DEM's to tens of metres: a shift
of the terrain by ``s`` moves its image by ``M s`` pixels (``M`` the geometry's pixels per
metre east and north), so the offset between the two images, over every image given, is
the DEM's shift.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from scipy import ndimage

from ..dem import open_dem
from ..errors import PlausibilityWarning, user_stacklevel
from ..geometry import RadarGeometry, RadarWindow
from ..observation import intensity_on_window
from ..raster import gradient, grid_steps
from ..simulate import run_simulation
from ..simulate.cells import cell_geometry
from .radar_images import InversionImage


@dataclasses.dataclass(frozen=True)
class ImageRegistration:
    """The coarse DEM's horizontal shift measured against the image(s): a feature the DEM
    shows at ``q + shift`` lies at ``q`` (metres east and north), its standard errors
    (m), how many images measured it, and whether it is applied (the image can tell it:
    its errors below :data:`REGISTRATION_PRECISION_M`) or why not."""

    shift_east_m: float
    shift_north_m: float
    error_east_m: float
    error_north_m: float
    images: int
    applied: bool
    reason: str = ""

    def applied_shift(self) -> tuple[float, float]:
        """The shift (m east, north) to apply: none where not applied; each component shrunk
        by ``max(0, 1 - 4 SE^2 / s^2)`` (a component within two standard errors of zero is
        noise, and left out)."""
        if not self.applied:
            return 0.0, 0.0
        return tuple(value * max(0.0, 1.0 - 4.0 * error**2 / value**2) if abs(value) > 1e-9 else 0.0
                     for value, error in ((self.shift_east_m, self.error_east_m),
                                          (self.shift_north_m, self.error_north_m)))  # type: ignore[return-value]

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> ImageRegistration | None:
        """The registration a scene's attributes record (:meth:`to_attrs`), or None."""
        if "image_registration_applied" not in attrs:
            return None
        return cls(float(attrs["image_registration_shift_east_m"]), float(attrs["image_registration_shift_north_m"]),
                   float(attrs["image_registration_error_east_m"]), float(attrs["image_registration_error_north_m"]),
                   int(attrs["image_registration_images"]), bool(int(attrs["image_registration_applied"])),
                   str(attrs.get("image_registration_reason", "")))

    def to_attrs(self) -> dict[str, float | int | str]:
        """Attributes for a scene: ``image_registration_*``."""
        return {"image_registration_shift_east_m": self.shift_east_m,
                "image_registration_shift_north_m": self.shift_north_m,
                "image_registration_error_east_m": self.error_east_m,
                "image_registration_error_north_m": self.error_north_m,
                "image_registration_images": self.images, "image_registration_applied": int(self.applied),
                "image_registration_reason": self.reason}


#: The largest standard error (m, either component) at which an image registration is
#: applied: beyond, the image cannot tell the shift (flat terrain, speckle) and the DEM is
#: left where it is.
REGISTRATION_PRECISION_M = 5.0


#: The largest shift (m) searched for: twice a 90 m product's half-cell registration
#: confusion.
REGISTRATION_LIMIT_M = 90.0


#: The Gaussian smoothing (pixels) of both images' logs before they are correlated:
#: speckle averaged, the terrain's pattern kept.
REGISTRATION_SMOOTHING_PX = 1.5


#: The part of a coarse cell (its side) a registration's estimate may be off by beyond its
#: random error: a smoothed DEM's image is not the terrain's moved, so their correlation
#: has a bias that grows with the coarse cell. The median miss over the validation DEMs'
#: one-image and exact-product cases (South Glacier, Jacksboro; 3x and 5x) was 0.035 of
#: the coarse cell; taken into the stated error in quadrature.
REGISTRATION_BIAS_FRACTION = 0.035


def _pixels_per_metre(dem: xr.DataArray, geometry: RadarGeometry) -> np.ndarray:
    """The 2x2 matrix of the radar image's (line, sample) displacement per metre east and
    north of the terrain, at the DEM's median height (a flat surface: the terrain moved as
    a whole)."""
    level = float(np.nanmedian(np.asarray(dem.values, dtype=np.float64)))
    flat = dem.copy(data=np.full(dem.shape, level, dtype=np.float32))
    cells = cell_geometry(flat, geometry, own_surface=False)
    north_step, east_step = grid_steps(dem)
    line, sample, valid = cells["line"], cells["sample"], cells["valid"]
    rows, cols = gradient(line, (north_step, east_step)), gradient(sample, (north_step, east_step))
    use = valid & np.isfinite(rows[0]) & np.isfinite(cols[0])
    return np.array([[np.median(rows[1][use]), np.median(rows[0][use])],
                     [np.median(cols[1][use]), np.median(cols[0][use])]])


def _simulated_image(dem: xr.DataArray, geometry: RadarGeometry, window: RadarWindow) -> np.ndarray:
    """The image (beta0-like, linear) the DEM simulates with the empirical law, on
    ``window``."""
    state = run_simulation(dem, geometry, every_line=False)
    with np.errstate(invalid="ignore", divide="ignore"):
        intensity = np.where(state.pixel_area > 0, state.images[0] / state.pixel_area, np.nan)
    image = xr.DataArray(intensity, dims=("line", "sample"), coords=state.window.coords())
    return intensity_on_window(image, window)


def _log_smoothed(values: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        logs = np.log(np.asarray(values, dtype=np.float64))
    valid = np.isfinite(logs)
    filled = np.where(valid, logs, 0.0)
    weight = ndimage.gaussian_filter(valid.astype(np.float64), sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        smoothed = ndimage.gaussian_filter(filled, sigma) / weight
    return smoothed, valid & (weight > 0.6)


def _image_offset(observed: np.ndarray, simulated: np.ndarray, limit_px: tuple[float, float]
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """The offset (lines, samples) d with ``observed(x) ~ a + b simulated(x + d)`` and its
    2x2 covariance, by phase correlation to the pixel then Lucas-Kanade to a fraction of
    one; None where there is too little to correlate."""
    sigma = REGISTRATION_SMOOTHING_PX
    obs, obs_valid = _log_smoothed(observed, sigma)
    sim, sim_valid = _log_smoothed(simulated, sigma)
    both = obs_valid & sim_valid
    if both.sum() < 256:
        return None
    obs_c = np.where(both, obs - obs[both].mean(), 0.0)
    sim_c = np.where(both, sim - sim[both].mean(), 0.0)
    # The whole-pixel offset: the peak of the cross-correlation within the limit.
    correlation = np.real(np.fft.ifft2(np.fft.fft2(sim_c) * np.conj(np.fft.fft2(obs_c))))
    lines, samples = correlation.shape
    dl = np.fft.fftfreq(lines, 1.0 / lines)[:, None]
    ds = np.fft.fftfreq(samples, 1.0 / samples)[None, :]
    correlation[(np.abs(dl) > limit_px[0] + 1) | (np.abs(ds) > limit_px[1] + 1)] = -np.inf
    peak = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
    offset = np.array([dl[peak[0], 0], ds[0, peak[1]]], dtype=np.float64)
    grid_l, grid_s = np.mgrid[0:lines, 0:samples].astype(np.float64)
    covariance = None
    for _ in range(8):
        moved = ndimage.map_coordinates(sim, [grid_l + offset[0], grid_s + offset[1]], order=1, mode="nearest")
        moved_valid = ndimage.map_coordinates(sim_valid.astype(np.float64), [grid_l + offset[0], grid_s + offset[1]],
                                              order=1, mode="constant") > 0.99
        use = obs_valid & moved_valid
        if use.sum() < 256:
            return None
        grad_l, grad_s = gradient(moved)
        design = np.stack([np.ones(use.sum()), moved[use], grad_l[use], grad_s[use]], axis=1)
        target = obs[use]
        solution, *_ = np.linalg.lstsq(design, target, rcond=None)
        gain = solution[1]
        if not gain > 0.05:
            return None
        step = np.array([solution[2], solution[3]]) / gain
        misfit = target - design @ solution
        # Smoothing makes neighbouring residuals alike: each counts for the cells over the
        # smoothing kernel's area (the sandwich estimate's factor for a correlated misfit).
        correlated = 4.0 * math.pi * sigma**2
        variance = float(np.sum(misfit**2)) / max(int(use.sum()) - 4, 1)
        try:
            inverse = np.linalg.inv(design.T @ design)
        except np.linalg.LinAlgError:
            return None
        covariance = variance * correlated * inverse[2:, 2:] / gain**2
        offset = offset + step
        if np.all(np.abs(step) < 0.01):
            break
    if covariance is None or np.any(np.abs(offset) > np.asarray(limit_px) + 1):
        return None
    return offset, covariance


def register_to_images(dem: xr.DataArray, images: Sequence[InversionImage], *,
                       coarse_cell_m: float | None = None, precision_m: float = REGISTRATION_PRECISION_M,
                       limit_m: float = REGISTRATION_LIMIT_M) -> ImageRegistration:
    """Measure a DEM's horizontal shift against the observation(s) (see the module's
    docstring): the image the DEM simulates is correlated with each observation in radar
    geometry, each offset turned into metres east and north through the geometry's
    pixels per metre, the images combined by weighted least squares.

    Parameters
    ----------
    dem : the DEM on the grid it is used on, ellipsoidal heights, a CRS: a smooth surface
        (the coarse DEM back-projected: a bilinear resampling's piecewise planes draw the
        coarse grid into its image, which the correlation would lock on).
    images : the observations (:func:`radar_image`; composites read better).
    coarse_cell_m : the coarse DEM's cell (m): the stated error takes in
        :data:`REGISTRATION_BIAS_FRACTION` of it; None: the random error alone.
    precision_m : the largest standard error (m) at which the shift is applied.
    limit_m : the largest shift (m) searched for.

    Returns
    -------
    ImageRegistration: applied only where the image can tell (relief, enough cells); on
    flat terrain or where the estimate is unreliable the DEM stays where it is, with the
    reason, and a :class:`~sarheight.errors.PlausibilityWarning` says so.
    """
    dem = open_dem(dem, copy=False)
    normal, rhs = np.zeros((2, 2)), np.zeros(2)
    used = 0
    for image in images:
        window = image.window
        observed = intensity_on_window(image.image, window)
        simulated = _simulated_image(dem, image.geometry, window)
        per_metre = _pixels_per_metre(dem, image.geometry)
        limit_px = (abs(per_metre[0]).sum() * limit_m, abs(per_metre[1]).sum() * limit_m)
        found = _image_offset(observed, simulated, limit_px)
        if found is None:
            continue
        offset, covariance = found
        try:
            weight = np.linalg.inv(covariance)
        except np.linalg.LinAlgError:
            continue
        normal += per_metre.T @ weight @ per_metre
        rhs += per_metre.T @ weight @ offset
        used += 1
    if used == 0:
        registration = ImageRegistration(0.0, 0.0, math.inf, math.inf, 0, False,
                                         "the image(s) hold too little pattern to correlate with the DEM's")
    else:
        try:
            covariance_m = np.linalg.inv(normal)
        except np.linalg.LinAlgError:
            covariance_m = np.full((2, 2), np.inf)
        shift = covariance_m @ rhs if np.all(np.isfinite(covariance_m)) else np.zeros(2)
        bias = REGISTRATION_BIAS_FRACTION * coarse_cell_m if coarse_cell_m else 0.0
        errors = np.sqrt(np.maximum(np.diag(covariance_m), 0.0) + bias**2)
        east, north = float(shift[0]), float(shift[1])
        if not np.all(errors <= precision_m):
            registration = ImageRegistration(east, north, float(errors[0]), float(errors[1]), used, False,
                                             f"standard error {max(errors):.1f} m above {precision_m:g} m: the image "
                                             f"cannot tell the shift to {precision_m:g} m (flat terrain, or cells too "
                                             "coarse)")
        elif math.hypot(east, north) > limit_m:
            registration = ImageRegistration(east, north, float(errors[0]), float(errors[1]), used, False,
                                             f"a shift of {math.hypot(east, north):.0f} m, beyond {limit_m:g} m")
        else:
            registration = ImageRegistration(east, north, float(errors[0]), float(errors[1]), used, True)
    if not registration.applied:
        warnings.warn(f"the DEM was not registered to the image: {registration.reason}; it stays where it is (the "
                      "priors' registration still applies)", PlausibilityWarning, stacklevel=user_stacklevel())
    return registration
