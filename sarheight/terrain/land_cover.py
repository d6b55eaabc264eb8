"""The ground as land-cover classes, read from the images themselves
(:func:`estimate_land_cover`), so that the inversion gives each class its own law and a
brightness step between classes is not read as a slope.

What tells a class from relief: the brightness a slope adds is the slope's, cell by cell,
and turns over with it (bright facing the radar, dark facing away; of opposite sign in the
opposite pass), while a class shifts the brightness of a whole patch, the same way in
every pass, and a wet-snow date moves each class by its own amount. So the features of a
cell are, per image (or group of dates), the log ratio of the observation over the
simulation of the current surface (what the relief the surface holds does not explain),
smoothed over a cell or two (speckle and the slopes' turns average out, a patch does not),
in dB; any further map is one more feature: the cross-polarised ratio (VH/VV) where the
product has both polarisations (:func:`sarheight.terrain.forward.cross_ratio_feature`;
a slope scales both alike, a land cover sets their ratio). A Gaussian
mixture of them (diagonal covariances, expectation-maximisation, the number of classes by
the Bayesian information criterion, classes closer than :data:`MIN_CONTRAST_DB` merged)
labels each cell, the number of classes the fit of the lowest criterion whose classes are
all two modes apart (Ashman's D of at least :data:`BIMODALITY`, :data:`MIN_CONTRAST_DB`)
and none smaller than :data:`MIN_SHARE`; a few rounds of iterated conditional modes with a Potts prior make the
classes spatially coherent, their edges sharp.

A user's land-cover map, where there is one, replaces the estimate
(:func:`land_cover_classes`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr
from scipy import ndimage

from ..errors import InvalidInputError
from ..raster import nan_smoothed

#: The least difference (dB, in at least one feature) between two classes' means: closer
#: classes are one, the within-class texture's spread split in two.
MIN_CONTRAST_DB = 3.0


#: The least Ashman's D (the difference of two classes' means over their spreads' root
#: mean square, times the root of two) at which two classes are two modes, not one.
BIMODALITY = 2.5


#: The least share of the cells a class holds: a smaller one is absorbed by its neighbours.
MIN_SHARE = 0.02


#: The cells the mixture is fitted on (a sample of them, evenly spread).
FIT_CELLS = 20_000


#: The Potts prior's weight per neighbour of the same class (nats) in the iterated
#: conditional modes, and their rounds.
POTTS_WEIGHT = 0.6


POTTS_ROUNDS = 3


def estimate_land_cover(features_db: Sequence[np.ndarray], *, max_classes: int = 4, smoothing_cells: float = 1.0,
                        min_contrast_db: float = MIN_CONTRAST_DB, min_share: float = MIN_SHARE,
                        seed: int = 0) -> np.ndarray:
    """Land-cover classes from per-cell features (see the module's docstring).

    Parameters
    ----------
    features_db : one map per feature, all of one shape (dB, NaN where a cell has none):
        the log ratio of each image over its simulation, a VH/VV ratio.
    max_classes : the most classes (1: one class everywhere).
    smoothing_cells : the Gaussian smoothing (cells) of each feature before the fit.
    min_contrast_db, min_share : a number of classes is taken only where every two are
        this far apart (in some feature, and two modes there) and none holds a smaller
        share.
    seed : the seed of the mixture's initialisation (the same inputs give the same classes).

    Returns
    -------
    np.ndarray of int64 class codes 0..k-1 on the features' grid, every cell labelled
    (cells without a feature take their nearest labelled cell's class), the classes ordered
    by their mean in the first feature (darkest first).
    """
    if isinstance(max_classes, bool) or not isinstance(max_classes, (int, np.integer)) or max_classes < 1:
        raise InvalidInputError(f"max_classes must be a positive integer, got {max_classes!r}")
    maps = [np.asarray(feature, dtype=np.float64) for feature in features_db]
    if not maps:
        raise InvalidInputError("estimate_land_cover needs at least one feature map")
    shape = maps[0].shape
    if any(feature.shape != shape for feature in maps):
        raise InvalidInputError("every feature map must have the same shape")
    smoothed = np.stack([nan_smoothed(feature, smoothing_cells) if smoothing_cells > 0 else feature
                         for feature in maps], axis=-1)
    known = np.all(np.isfinite(smoothed), axis=-1)
    if max_classes == 1 or known.sum() < 50 * max_classes:
        return np.zeros(shape, dtype=np.int64)
    values = smoothed[known]
    rng = np.random.default_rng(seed)
    sample = values[np.linspace(0, len(values) - 1, min(FIT_CELLS, len(values))).round().astype(np.int64)]
    # The number of classes: the fit of the lowest information criterion among those whose
    # classes are all apart (two modes, MIN_CONTRAST_DB) and none below MIN_SHARE.
    best: tuple[float, _Mixture] | None = None
    for count in range(1, int(max_classes) + 1):
        mixture = _fit_mixture(sample, count, rng)
        criterion = -2.0 * mixture.log_likelihood + mixture.parameters * math.log(len(sample))
        if (best is None or criterion < best[0]) and _distinct(mixture, min_contrast_db, min_share):
            best = (criterion, mixture)
    mixture = best[1]
    if mixture.means.shape[0] == 1:
        return np.zeros(shape, dtype=np.int64)
    scores = np.full((*shape, mixture.means.shape[0]), -np.inf)
    scores[known] = mixture.log_densities(values)
    classes = np.full(shape, -1, dtype=np.int64)
    classes[known] = np.argmax(scores[known], axis=-1)
    for _ in range(POTTS_ROUNDS):
        agreement = np.stack([_same_neighbours(classes, code) for code in range(mixture.means.shape[0])], axis=-1)
        updated = np.argmax(np.where(known[..., None], scores + POTTS_WEIGHT * agreement, -np.inf), axis=-1)
        classes = np.where(known, updated, -1)
    if not known.all():
        # Cells without a feature (layover, shadow, the border) take the nearest labelled cell's class.
        _, (rows, cols) = ndimage.distance_transform_edt(~known, return_indices=True)
        classes = classes[rows, cols]
    order = np.argsort(mixture.means[:, 0])
    relabel = np.empty_like(order)
    relabel[order] = np.arange(order.size)
    return relabel[classes].astype(np.int64)


def land_cover_features(ratios_db: Sequence[np.ndarray], passes: Sequence[Any]) -> list[np.ndarray]:
    """The features classes are told apart by, from each image's log ratio over the
    simulation of the surface (dB, :func:`sarheight.terrain.forward.brightness_features`)
    and its pass (any hashable key; images of one key share a geometry):

    - the mean over the passes of each pass's first image: a slope's brightening in one
      pass is a darkening in the opposite one, a class brightens both;
    - each further image of a pass less that pass's first: the relief is the same on one
      geometry and cancels, what a date changes (wet snow darkening a class) stays.

    With one image there is nothing to cancel the relief with: its ratio is the feature
    (smoothed by the estimate, a slope's turns average out, a patch does not)."""
    if len(ratios_db) != len(passes) or not ratios_db:
        raise InvalidInputError("give one pass key per ratio map, and at least one")
    first: dict[Any, np.ndarray] = {}
    features = []
    for ratio, key in zip(ratios_db, passes, strict=True):
        if key in first:
            features.append(np.asarray(ratio, dtype=np.float64) - first[key])
        else:
            first[key] = np.asarray(ratio, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        common = np.mean(np.stack(list(first.values())), axis=0)
    return [common, *features]


def land_cover_classes(land_cover: Any, grid: xr.DataArray) -> np.ndarray:
    """A user's land-cover map on ``grid`` as the inversion's classes: its integer codes
    (a DataArray on the grid, or an array of its shape) renumbered 0..k-1 in the order of
    their values; cells without a code (NaN, or negative) take the nearest cell's class.

    Raises
    ------
    InvalidInputError : a map of another shape or grid, or of no integer codes.
    """
    if isinstance(land_cover, xr.DataArray):
        if land_cover.shape != grid.shape or (
                "x" in land_cover.coords and not np.allclose(land_cover["x"].values, grid["x"].values)) or (
                "y" in land_cover.coords and not np.allclose(land_cover["y"].values, grid["y"].values)):
            raise InvalidInputError(f"the land-cover map lies on a {land_cover.shape} grid, the refinement on "
                                    f"{grid.shape}: resample it to the refinement's grid (nearest neighbour)")
        values = np.asarray(land_cover.values, dtype=np.float64)
    else:
        values = np.asarray(land_cover, dtype=np.float64)
        if values.shape != grid.shape:
            raise InvalidInputError(f"the land-cover map has shape {values.shape}, the refinement's grid {grid.shape}: "
                                    "give one class code per cell")
    known = np.isfinite(values) & (values >= 0)
    if not known.any():
        raise InvalidInputError("the land-cover map holds no class code (all NaN or negative): give integer codes")
    if not np.allclose(values[known], np.round(values[known])):
        raise InvalidInputError("the land-cover map must hold integer class codes, not fractions")
    _, classes = np.unique(np.round(values[known]).astype(np.int64), return_inverse=True)
    out = np.full(values.shape, -1, dtype=np.int64)
    out[known] = classes
    if not known.all():
        _, (rows, cols) = ndimage.distance_transform_edt(~known, return_indices=True)
        out = out[rows, cols]
    return out


def _same_neighbours(classes: np.ndarray, code: int) -> np.ndarray:
    """How many of each cell's eight neighbours hold ``code``."""
    return ndimage.convolve((classes == code).astype(np.float64), np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], float),
                            mode="constant")


class _Mixture:
    """A Gaussian mixture with diagonal covariances."""

    def __init__(self, weights: np.ndarray, means: np.ndarray, variances: np.ndarray, log_likelihood: float = 0.0):
        self.weights, self.means, self.variances = weights, means, variances
        self.log_likelihood = log_likelihood

    @property
    def parameters(self) -> int:
        count, dimensions = self.means.shape
        return count - 1 + 2 * count * dimensions

    def log_densities(self, values: np.ndarray) -> np.ndarray:
        """log(weight_k N(x; mean_k, var_k)) per value and component."""
        difference = values[:, None, :] - self.means[None, :, :]
        return (np.log(self.weights)[None, :]
                - 0.5 * np.sum(difference**2 / self.variances[None] + np.log(2 * math.pi * self.variances[None]),
                               axis=-1))


def _fit_mixture(values: np.ndarray, count: int, rng: np.random.Generator, rounds: int = 60) -> _Mixture:
    """Expectation-maximisation from a k-means++ start."""
    floor = max(float(np.var(values, axis=0).min()) * 1e-3, 1e-4)
    centres = [values[rng.integers(len(values))]]
    for _ in range(1, count):
        distance = np.min(np.sum((values[:, None, :] - np.asarray(centres)[None]) ** 2, axis=-1), axis=1)
        centres.append(values[rng.choice(len(values), p=distance / distance.sum())] if distance.sum() > 0
                       else values[rng.integers(len(values))])
    means = np.asarray(centres, dtype=np.float64)
    variances = np.broadcast_to(np.var(values, axis=0) + floor, means.shape).copy()
    weights = np.full(count, 1.0 / count)
    mixture = _Mixture(weights, means, variances)
    previous = -np.inf
    for _ in range(rounds):
        densities = mixture.log_densities(values)
        top = densities.max(axis=1, keepdims=True)
        total = top[:, 0] + np.log(np.sum(np.exp(densities - top), axis=1))
        responsibility = np.exp(densities - total[:, None])
        mass = responsibility.sum(axis=0) + 1e-12
        weights = mass / mass.sum()
        means = (responsibility.T @ values) / mass[:, None]
        variances = (responsibility.T @ values**2) / mass[:, None] - means**2 + floor
        mixture = _Mixture(np.maximum(weights, 1e-12), means, np.maximum(variances, floor), float(total.sum()))
        if mixture.log_likelihood - previous < 1e-6 * abs(mixture.log_likelihood):
            break
        previous = mixture.log_likelihood
    return mixture


def _apart(mixture: _Mixture, a: int, b: int) -> float:
    """How far apart two components are: their largest difference in a feature where they
    are two modes there (Ashman's D of at least :data:`BIMODALITY`), else 0 (one class's
    spread, heavy-tailed, cut in two)."""
    difference = np.abs(mixture.means[a] - mixture.means[b])
    ashman = math.sqrt(2.0) * difference / np.sqrt(mixture.variances[a] + mixture.variances[b])
    return float(np.max(np.where(ashman >= BIMODALITY, difference, 0.0)))


def _distinct(mixture: _Mixture, min_contrast_db: float, min_share: float) -> bool:
    """Whether every component holds ``min_share`` and every two are apart by
    ``min_contrast_db`` (:func:`_apart`)."""
    count = mixture.means.shape[0]
    return bool(np.all(mixture.weights >= min_share)) and all(
        _apart(mixture, a, b) >= min_contrast_db for a in range(count) for b in range(a + 1, count))
