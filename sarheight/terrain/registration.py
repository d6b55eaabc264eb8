"""Registration of a coarse DEM to the images (:func:`register_to_images`): before any method, the coarse DEM's
horizontal shift is measured as DEM-to-SAR co-registration does it (GAMMA's offsets
between the simulated and the real image, ISCE's and DORIS's DEM co-registration): the
image the coarse DEM simulates is correlated with the observation in radar geometry.
Sentinel-1's geolocation is good to decimetres, a global DEM's to tens of metres: a shift
of the terrain by ``s`` moves its image by ``M s`` pixels (``M`` the geometry's pixels per
metre east and north), so the offset between the two images, over every image given, is
the DEM's shift.

The estimate is applied as it is (not shrunk) where its stated error allows: below
:data:`REGISTRATION_PRECISION_M`, or where the shift is more than the square root of two
times that error (leaving the DEM would then leave more than applying it), and where it
raises the two images' correlation (a shift that does not has locked on nothing: not
applied, with its reason). A registration is flagged, with a warning, where it may have
failed: the two halves of the images (along the lines, along the range) measure shifts
more than :data:`REGISTRATION_CONSISTENCY_M` apart (the estimate's own residuals: land
cover that holds the correlation where it lies moves each half's estimate its own way), or
the priors, the second opinion, still measure the moved DEM off beyond both estimates'
errors (:meth:`ImageRegistration.checked_against`).
A refinement by the inversion measures it again on the inversion's surface
(:func:`sarheight.terrain.observed.observed_scene`).
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

from ..dem import Dem, checked_dem
from ..errors import InvalidInputError, PlausibilityWarning, user_stacklevel
from ..geometry import RadarGeometry, RadarWindow
from ..observation import intensity_on_window
from ..raster import gradient, grid_steps
from ..simulate import run_simulation
from ..simulate.cells import cell_geometry
from .radar_images import InversionImage

#: How far (m) the priors may still measure an image-registered DEM off before the
#: registration is flagged (beyond three of the two estimates' combined standard errors).
REGISTRATION_DISAGREEMENT_M = 10.0

#: How far apart (m) the shifts that two halves of the images measure may lie before the
#: registration is flagged. The whole's estimate is about their mean, so its error is about
#: half their difference: beyond this, the DEM may be off by more than half of it (twice
#: that error) without the estimate's own standard error saying so.
REGISTRATION_CONSISTENCY_M = 20.0


@dataclasses.dataclass(frozen=True)
class ImageRegistration:
    """The coarse DEM's horizontal shift measured against the image(s): a feature the DEM
    shows at ``q + shift`` lies at ``q`` (metres east and north), its standard errors
    (m), how many images measured it, whether it is applied (the image can tell it, see
    :func:`register_to_images`) or why not, and why it may have failed (``flag``: its own
    correlation does not improve, its halves disagree, or the priors disagree), which a
    warning says; ``rounds``: 2 where it was measured again on an inversion's surface;
    ``halves_apart_m``: how far apart (m) two halves of the images put the shift (the
    larger of the two splits; NaN where a half measured none); ``priors_apart_m``: how far
    (m) the priors still measure the moved DEM off where they flagged it (NaN where they
    did not)."""

    shift_east_m: float
    shift_north_m: float
    error_east_m: float
    error_north_m: float
    images: int
    applied: bool
    reason: str = ""
    flag: str = ""
    rounds: int = 1
    halves_apart_m: float = math.nan
    priors_apart_m: float = math.nan

    def applied_shift(self) -> tuple[float, float]:
        """The shift (m east, north) to apply: the estimate itself where applied, none
        elsewhere."""
        if not self.applied:
            return 0.0, 0.0
        return self.shift_east_m, self.shift_north_m

    @property
    def stated_error_m(self) -> float:
        """The estimate's stated error (m): the larger of its components' standard errors."""
        return max(self.error_east_m, self.error_north_m)

    @property
    def error_m(self) -> float:
        """How far (m) the DEM may still be off once this registration is applied: its
        stated error, or for a flagged one the larger of that, half its halves' difference
        (the whole's estimate lies about midway between theirs) and what the priors still
        measure. On the inversion study's held-out scenes a flagged registration missed by
        a median 1.46 of its stated error and 1.22 of this one (an unflagged one: 0.30)."""
        if not self.flag:
            return self.stated_error_m
        return largest_known(self.stated_error_m, 0.5 * self.halves_apart_m, self.priors_apart_m, default=math.inf)

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> ImageRegistration | None:
        """The registration a scene's attributes record (:meth:`to_attrs`), or None."""
        if "image_registration_applied" not in attrs:
            return None
        return cls(float(attrs["image_registration_shift_east_m"]), float(attrs["image_registration_shift_north_m"]),
                   float(attrs["image_registration_error_east_m"]), float(attrs["image_registration_error_north_m"]),
                   int(attrs["image_registration_images"]), bool(int(attrs["image_registration_applied"])),
                   str(attrs.get("image_registration_reason", "")), str(attrs.get("image_registration_flag", "")),
                   int(attrs.get("image_registration_rounds", 1)),
                   float(attrs.get("image_registration_halves_apart_m", math.nan)),
                   float(attrs.get("image_registration_priors_apart_m", math.nan)))

    def to_attrs(self) -> dict[str, float | int | str]:
        """Attributes for a scene: ``image_registration_*``."""
        return {"image_registration_shift_east_m": self.shift_east_m,
                "image_registration_shift_north_m": self.shift_north_m,
                "image_registration_error_east_m": self.error_east_m,
                "image_registration_error_north_m": self.error_north_m,
                "image_registration_images": self.images, "image_registration_applied": int(self.applied),
                "image_registration_reason": self.reason, "image_registration_flag": self.flag,
                "image_registration_rounds": self.rounds, "image_registration_halves_apart_m": self.halves_apart_m,
                "image_registration_priors_apart_m": self.priors_apart_m}

    def checked_against(self, priors_east_m: float, priors_north_m: float, priors_error_m: float
                        ) -> ImageRegistration:
        """This registration with the priors as a second opinion: ``priors_*`` the shift the
        priors still measure on the DEM this registration moved (m; 0 where they measure
        none) and its standard error. Flagged, with a warning, where they say the DEM is
        still off by more than :data:`REGISTRATION_DISAGREEMENT_M` and three of the
        combined standard errors."""
        left = math.hypot(priors_east_m, priors_north_m)
        combined = math.hypot(self.stated_error_m if math.isfinite(self.stated_error_m) else 0.0,
                              priors_error_m if math.isfinite(priors_error_m) else 0.0)
        if not self.applied or left <= max(REGISTRATION_DISAGREEMENT_M, 3.0 * combined):
            return self
        flag = (f"the priors measure the registered DEM still {left:.0f} m off ({priors_east_m:+.0f} m east, "
                f"{priors_north_m:+.0f} m north), beyond the {combined:.0f} m the two estimates' errors allow")
        warnings.warn(f"the DEM's registration to the image may have failed: {flag}; check the DEM's and the "
                      "priors' coordinates", PlausibilityWarning, stacklevel=user_stacklevel())
        return dataclasses.replace(self, flag="; ".join(part for part in (self.flag, flag) if part),
                                   priors_apart_m=left)


def largest_known(*values: float, default: float = math.nan) -> float:
    """The largest of ``values`` that is finite (NaN and infinities are not known);
    ``default`` where none is."""
    return max((float(value) for value in values if math.isfinite(value)), default=default)


#: The standard error (m, either component) within which an image registration is applied
#: whatever its size; beyond, only a shift more than the square root of two times its
#: error is (flat terrain, speckle, cells too coarse: the DEM is left where it is).
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


def _flat_cells(dem: xr.DataArray, geometry: RadarGeometry, raised_m: float = 0.0) -> dict[str, np.ndarray]:
    """The cell geometry of a flat surface on ``dem``'s grid at its median height plus
    ``raised_m`` (the terrain moved as a whole)."""
    level = float(np.nanmedian(np.asarray(dem.values, dtype=np.float64)))
    return cell_geometry(dem.copy(data=np.full(dem.shape, level + raised_m, dtype=np.float32)), geometry,
                         own_surface=False)


def _pixels_per_metre(dem: xr.DataArray, geometry: RadarGeometry) -> np.ndarray:
    """The 2x2 matrix of the radar image's (line, sample) displacement per metre east and
    north of the terrain, at the DEM's median height (a flat surface: the terrain moved as
    a whole)."""
    cells = _flat_cells(dem, geometry)
    north_step, east_step = grid_steps(dem)
    line, sample, valid = cells["line"], cells["sample"], cells["valid"]
    rows, cols = gradient(line, (north_step, east_step)), gradient(sample, (north_step, east_step))
    use = valid & np.isfinite(rows[0]) & np.isfinite(cols[0])
    return np.array([[np.median(rows[1][use]), np.median(rows[0][use])],
                     [np.median(cols[1][use]), np.median(cols[0][use])]])


def _simulated_image(dem: Dem, geometry: RadarGeometry, window: RadarWindow) -> np.ndarray:
    """The image (beta0-like, linear) the DEM simulates with the empirical law, on
    ``window``."""
    state = run_simulation(dem, geometry, every_line=False)
    with np.errstate(invalid="ignore", divide="ignore"):
        intensity = np.where(state.pixel_area > 0, state.images[0] / state.pixel_area, np.nan)
    image = xr.DataArray(intensity, dims=("line", "sample"), coords=state.window.coords())
    return intensity_on_window(image, window)


def _pixel_classes(dem: xr.DataArray, geometry: RadarGeometry, classes: np.ndarray, window: RadarWindow
                   ) -> np.ndarray:
    """The class of each pixel of ``window``: that of the DEM cell falling nearest it (the
    nearest pixel a cell falls in, for the pixels none falls in)."""
    cells = cell_geometry(dem, geometry, own_surface=False)
    with np.errstate(invalid="ignore"):
        rows = np.rint(cells["line"] - window.line0)
        cols = np.rint(cells["sample"] - window.sample0)
        inside = (cells["valid"] & np.isfinite(rows) & np.isfinite(cols) & (rows >= 0) & (rows < window.lines)
                  & (cols >= 0) & (cols < window.samples))
    out = np.full((window.lines, window.samples), -1, dtype=np.int64)
    out[rows[inside].astype(np.int64), cols[inside].astype(np.int64)] = np.asarray(classes)[inside]
    missing = out < 0
    if missing.all():
        return np.zeros(out.shape, dtype=np.int64)
    if missing.any():
        _, (near_rows, near_cols) = ndimage.distance_transform_edt(missing, return_indices=True)
        out = out[near_rows, near_cols]
    return out


def _levelled(observed: np.ndarray, simulated: np.ndarray, pixel_classes: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """Both images with each class's median level divided out (in each image its own)."""
    out = []
    for values in (np.asarray(observed, dtype=np.float64), np.asarray(simulated, dtype=np.float64)):
        levelled = values.copy()
        positive = np.isfinite(values) & (values > 0)
        for code in np.unique(pixel_classes):
            members = (pixel_classes == code) & positive
            if members.any():
                levelled[pixel_classes == code] /= np.median(values[members])
        out.append(levelled)
    return out[0], out[1]


def _log_smoothed(values: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    with np.errstate(invalid="ignore", divide="ignore"):
        logs = np.log(np.asarray(values, dtype=np.float64))
    valid = np.isfinite(logs)
    filled = np.where(valid, logs, 0.0)
    weight = ndimage.gaussian_filter(valid.astype(np.float64), sigma)
    with np.errstate(invalid="ignore", divide="ignore"):
        smoothed = ndimage.gaussian_filter(filled, sigma) / weight
    return smoothed, valid & (weight > 0.6)


#: The spread (nepers, of the smoothed log image) below which an image holds no pattern to
#: correlate: about 0.2 dB, a flat terrain's simulation.
PATTERN_SPREAD = 0.05


@dataclasses.dataclass(frozen=True)
class _NoOffset:
    """Why an image gave no offset: ``reason`` said where it is known at once; else the
    images hold a pattern but match nowhere, ``correlation`` at best within the limit,
    ``edge`` where that best lies on the limit (or the fit ran past it)."""

    reason: str = ""
    correlation: float = math.nan
    edge: bool = False


def _image_offset(observed: np.ndarray, simulated: np.ndarray, limit_px: tuple[float, float]
                  ) -> tuple[np.ndarray, np.ndarray, float] | _NoOffset:
    """The offset (lines, samples) d with ``observed(x) ~ a + b simulated(x + d)``, its 2x2
    covariance and how much it raises the two images' correlation, by phase correlation
    to the pixel then Lucas-Kanade to a fraction of one; where none is found, why
    (:class:`_NoOffset`: the images share too few cells, one of them holds no pattern, or
    they match nowhere within the limit)."""
    sigma = REGISTRATION_SMOOTHING_PX
    obs, obs_valid = _log_smoothed(observed, sigma)
    sim, sim_valid = _log_smoothed(simulated, sigma)
    both = obs_valid & sim_valid
    if both.sum() < 256:
        return _NoOffset("the image and the DEM's simulation share too few cells to correlate")
    obs_c = np.where(both, obs - obs[both].mean(), 0.0)
    sim_c = np.where(both, sim - sim[both].mean(), 0.0)
    if float(np.std(sim_c[both])) < PATTERN_SPREAD:
        return _NoOffset("the DEM's relief draws too little pattern in the image it simulates (flat terrain)")
    if float(np.std(obs_c[both])) < PATTERN_SPREAD:
        return _NoOffset("the image holds too little pattern to correlate with the DEM's")
    # The whole-pixel offset: the peak of the cross-correlation within the limit.
    correlation = np.real(np.fft.ifft2(np.fft.fft2(sim_c) * np.conj(np.fft.fft2(obs_c))))
    lines, samples = correlation.shape
    dl = np.fft.fftfreq(lines, 1.0 / lines)[:, None]
    ds = np.fft.fftfreq(samples, 1.0 / samples)[None, :]
    correlation[(np.abs(dl) > limit_px[0] + 1) | (np.abs(ds) > limit_px[1] + 1)] = -np.inf
    peak = np.unravel_index(int(np.argmax(correlation)), correlation.shape)
    best = float(correlation[peak] / np.sqrt(np.sum(obs_c**2) * np.sum(sim_c**2)))
    # A peak on the search's edge: the images match further away than the limit.
    no_match = _NoOffset(correlation=best,
                         edge=bool(abs(dl[peak[0], 0]) >= limit_px[0] or abs(ds[0, peak[1]]) >= limit_px[1]))
    offset = np.array([dl[peak[0], 0], ds[0, peak[1]]], dtype=np.float64)
    grid_l, grid_s = np.mgrid[0:lines, 0:samples].astype(np.float64)
    covariance = None
    for _ in range(8):
        moved = ndimage.map_coordinates(sim, [grid_l + offset[0], grid_s + offset[1]], order=1, mode="nearest")
        moved_valid = ndimage.map_coordinates(sim_valid.astype(np.float64), [grid_l + offset[0], grid_s + offset[1]],
                                              order=1, mode="constant") > 0.99
        use = obs_valid & moved_valid
        if use.sum() < 256:
            return no_match
        grad_l, grad_s = gradient(moved)
        design = np.stack([np.ones(use.sum()), moved[use], grad_l[use], grad_s[use]], axis=1)
        target = obs[use]
        solution, *_ = np.linalg.lstsq(design, target, rcond=None)
        gain = solution[1]
        if not gain > 0.05:
            return no_match
        step = np.array([solution[2], solution[3]]) / gain
        misfit = target - design @ solution
        # Smoothing makes neighbouring residuals alike: each counts for the cells over the
        # smoothing kernel's area (the sandwich estimate's factor for a correlated misfit).
        correlated = 4.0 * math.pi * sigma**2
        variance = float(np.sum(misfit**2)) / max(int(use.sum()) - 4, 1)
        try:
            inverse = np.linalg.inv(design.T @ design)
        except np.linalg.LinAlgError:
            return no_match
        covariance = variance * correlated * inverse[2:, 2:] / gain**2
        offset = offset + step
        if np.all(np.abs(step) < 0.01):
            break
    if covariance is None:
        return no_match
    if np.any(np.abs(offset) > np.asarray(limit_px) + 1):
        return _NoOffset(correlation=best, edge=True)
    # How well the simulation correlates with the observation where it was and where the
    # offset moves it: an estimate that does not raise it has locked on nothing.
    before = _correlation(obs, sim, obs_valid & sim_valid)
    after = _correlation(obs, moved, use)
    return offset, covariance, after - before


def _failure_reason(failures: Sequence[_NoOffset], limit_m: float) -> str:
    """Why no image measured the shift, in the user's words: the first image's reason (the
    others' are alike), a match found nowhere said as what it means."""
    if not failures:
        return "no image to correlate with the DEM's"
    failure = failures[0]
    if failure.reason:
        return failure.reason
    cause = (f"the DEM and the image are not of the same ground, or are offset by more than {limit_m:g} m; check "
             "the DEM's CRS and georeferencing, and the image's, and that the DEM's heights are metres in the datum "
             "it states (a height error moves the terrain's image along the range)")
    if failure.edge and failure.correlation >= 0.2:
        return (f"the image matches the DEM's simulated image best at the edge of the {limit_m:g} m searched "
                f"(correlation {failure.correlation:.2f}), or beyond: {cause}")
    return (f"the image matches the DEM's simulated image nowhere within {limit_m:g} m (correlation "
            f"{failure.correlation:.2f} at best), though both hold a pattern: {cause}")


#: The share of a shift along the ground range beyond which it reads as a height error.
ALONG_RANGE_SHARE = 0.9


def _height_error_reading(dem: xr.DataArray, geometry: RadarGeometry, per_metre: np.ndarray, east: float,
                          north: float) -> str:
    """What a shift (m east, north) lying along the ground range would be as a height error
    (a DEM raised by ``h`` moves its image towards the radar as a shift of ``h`` over the
    tangent of the incidence does), in words; empty where it does not lie along the
    range."""
    along = per_metre[1] / max(float(np.hypot(*per_metre[1])), 1e-12)
    shift = np.array([east, north])
    if abs(float(along @ shift)) < ALONG_RANGE_SHARE * float(np.hypot(*shift)):
        return ""
    samples = []
    for raised in (0.0, 100.0):
        cells = _flat_cells(dem, geometry, raised)
        samples.append(np.where(cells["valid"], cells["sample"], np.nan))
    per_height = float(np.nanmedian(samples[1] - samples[0])) / 100.0
    if not (math.isfinite(per_height) and per_height != 0.0):
        return ""
    # The sign as a DEM in feet reads it (too high: its image lies nearer the radar).
    excess = float(per_metre[1] @ shift) / per_height
    return (f", along the range: as the DEM's heights would be {abs(excess):.0f} m too "
            f"{'high' if excess > 0 else 'low'}"
            " (heights in feet, or in another vertical datum than the DEM states?)")


def _correlation(first: np.ndarray, second: np.ndarray, where: np.ndarray) -> float:
    if where.sum() < 16:
        return math.nan
    return float(np.corrcoef(first[where], second[where])[0, 1])


def register_to_images(dem: xr.DataArray | Dem, images: Sequence[InversionImage], *,
                       coarse_cell_m: float | None = None, precision_m: float = REGISTRATION_PRECISION_M,
                       limit_m: float = REGISTRATION_LIMIT_M, simulated: Sequence[np.ndarray] | None = None,
                       classes: np.ndarray | None = None) -> ImageRegistration:
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
    precision_m : the standard error (m) within which the shift is applied whatever its
        size (beyond: where it is more than the square root of two times its error).
    limit_m : the largest shift (m) searched for.
    simulated : the image ``dem`` simulates under each image's geometry, on its window;
        None: simulated with the empirical law.
    classes : the ground's land-cover classes on ``dem``'s grid
        (:func:`sarheight.terrain.land_cover.estimate_land_cover`): each class's level taken
        out of both images before they are correlated, so that a class's patches (snow above
        a line, on shaded slopes) do not hold the correlation where they lie; None: none.

    Returns
    -------
    ImageRegistration: applied only where the image can tell (relief, enough cells); on
    flat terrain or where the estimate is unreliable the DEM stays where it is, with the
    reason, and a :class:`~sarheight.errors.PlausibilityWarning` says so.
    """
    checked = checked_dem(dem, copy=False)
    dem = checked.heights
    normal, rhs = np.zeros((2, 2)), np.zeros(2)
    # The same sums for each half of the images, split along the lines and along the range.
    halves = np.zeros((2, 2, 2, 2)), np.zeros((2, 2, 2))
    used = 0
    gains = []
    failures: list[_NoOffset] = []
    if simulated is not None and len(simulated) != len(images):
        raise InvalidInputError(f"{len(simulated)} simulated images for {len(images)} observations: give one each")
    for index, image in enumerate(images):
        window = image.window
        observed = intensity_on_window(image.image, window)
        model = (np.asarray(simulated[index], dtype=np.float64) if simulated is not None
                 else _simulated_image(checked, image.geometry, window))
        if classes is not None and int(np.max(classes)) > 0:
            observed, model = _levelled(observed, model, _pixel_classes(dem, image.geometry, classes, window))
        per_metre = _pixels_per_metre(dem, image.geometry)
        limit_px = (abs(per_metre[0]).sum() * limit_m, abs(per_metre[1]).sum() * limit_m)
        found = _image_offset(observed, model, limit_px)
        if isinstance(found, _NoOffset):
            failures.append(found)
            continue
        offset, covariance, gain = found
        gains.append(gain)
        if not _add_offset(normal, rhs, offset, covariance, per_metre):
            continue
        used += 1
        _add_halves(halves, observed, model, limit_px, per_metre)
    if used == 0:
        registration = ImageRegistration(0.0, 0.0, math.inf, math.inf, 0, False, _failure_reason(failures, limit_m))
    else:
        try:
            covariance_m = np.linalg.inv(normal)
        except np.linalg.LinAlgError:
            covariance_m = np.full((2, 2), np.inf)
        shift = covariance_m @ rhs if np.all(np.isfinite(covariance_m)) else np.zeros(2)
        bias = REGISTRATION_BIAS_FRACTION * coarse_cell_m if coarse_cell_m else 0.0
        errors = np.sqrt(np.maximum(np.diag(covariance_m), 0.0) + bias**2)
        east, north = float(shift[0]), float(shift[1])
        stated = float(max(errors))
        # Applying the estimate leaves its error; leaving the DEM leaves the shift, about
        # |estimate|^2 - error^2 in the mean: applied where that is larger, or where the
        # image tells the shift to the precision asked whatever its size.
        if not (np.all(errors <= precision_m) or math.hypot(east, north) > math.sqrt(2.0) * stated):
            registration = ImageRegistration(east, north, float(errors[0]), float(errors[1]), used, False,
                                             f"a shift of {math.hypot(east, north):.1f} m with a standard error of "
                                             f"{stated:.1f} m: the image cannot tell it from nothing (flat terrain, "
                                             "or cells too coarse)")
        elif math.hypot(east, north) > limit_m:
            registration = ImageRegistration(east, north, float(errors[0]), float(errors[1]), used, False,
                                             f"a shift of {math.hypot(east, north):.0f} m, beyond {limit_m:g} m"
                                             + _height_error_reading(dem, images[-1].geometry, per_metre, east, north))
        else:
            registration = ImageRegistration(east, north, float(errors[0]), float(errors[1]), used, True)
            finite = [gain for gain in gains if math.isfinite(gain)]
            if finite and math.hypot(east, north) > precision_m and float(np.mean(finite)) <= 0.0:
                # An estimate that does not raise the images' correlation has locked on
                # nothing (a DEM registered to its own image moved 15 m): not applied.
                registration = ImageRegistration(
                    east, north, float(errors[0]), float(errors[1]), used, False,
                    f"the DEM's image moved {math.hypot(east, north):.0f} m correlates no better with the observation "
                    "than where it was")
    apart = _halves_apart_m(*halves)
    flag = ""
    if used and apart > REGISTRATION_CONSISTENCY_M:
        flag = (f"two halves of the image{'s' if len(images) > 1 else ''} put the shift {apart:.0f} m apart (beyond "
                f"{REGISTRATION_CONSISTENCY_M:g} m): land cover, not relief, may hold the correlation, and the DEM may "
                f"be off by more than {apart / 2:.0f} m")
    registration = dataclasses.replace(registration, halves_apart_m=apart, flag=flag)
    if not registration.applied:
        warnings.warn(f"the DEM was not registered to the image: {registration.reason}; it stays where it is (the "
                      "priors' registration still applies)" + (f"; {flag}" if flag else ""), PlausibilityWarning,
                      stacklevel=user_stacklevel())
    elif flag:
        warnings.warn(f"the DEM's registration to the image may have failed: {flag}; give more images (dates, the "
                      "other pass) or known heights, which tell the shift apart from the land cover",
                      PlausibilityWarning, stacklevel=user_stacklevel())
    return registration


def _add_offset(normal: np.ndarray, rhs: np.ndarray, offset: np.ndarray, covariance: np.ndarray,
                per_metre: np.ndarray) -> bool:
    """Add an image's offset (pixels, its covariance) to the weighted least-squares sums of
    the shift in metres (``normal``, ``rhs``, in place; ``per_metre``: the image's pixels
    per metre east and north); False, adding nothing, where the covariance is singular."""
    try:
        weight = np.linalg.inv(covariance)
    except np.linalg.LinAlgError:
        return False
    normal += per_metre.T @ weight @ per_metre
    rhs += per_metre.T @ weight @ offset
    return True


def _add_halves(halves: tuple[np.ndarray, np.ndarray], observed: np.ndarray, model: np.ndarray,
                limit_px: tuple[float, float], per_metre: np.ndarray) -> None:
    """Add one image's offsets measured on each half of it (split along the lines, then
    along the range) to the sums of :func:`register_to_images`'s halves (``halves``:
    normal matrices (split, half, 2, 2) and right-hand sides (split, half, 2), in metres).
    A half that measures nothing adds nothing."""
    normals, rights = halves
    for split in (0, 1):
        size = observed.shape[split]
        for half, part in enumerate((slice(0, size // 2), slice(size // 2, size))):
            index = (part, slice(None)) if split == 0 else (slice(None), part)
            found = _image_offset(observed[index], model[index], limit_px)
            if isinstance(found, _NoOffset):
                continue
            offset, covariance, _ = found
            _add_offset(normals[split, half], rights[split, half], offset, covariance, per_metre)


def _halves_apart_m(normals: np.ndarray, rights: np.ndarray) -> float:
    """How far apart (m) the two halves of either split put the shift (the larger of the
    splits); NaN where no split has both halves measured."""
    apart = []
    for split in (0, 1):
        shifts = []
        for half in (0, 1):
            if abs(np.linalg.det(normals[split, half])) < 1e-30:
                break
            shifts.append(np.linalg.solve(normals[split, half], rights[split, half]))
        if len(shifts) == 2:
            apart.append(float(np.hypot(*(shifts[0] - shifts[1]))))
    return max(apart) if apart else math.nan
