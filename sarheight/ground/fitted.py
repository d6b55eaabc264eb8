"""The law fitted to an observation itself: the median sigma0 per bin of local incidence, a
monotone cubic (:func:`fit_sigma0_law`), so that a network's SAR input can be the observed
sigma0 over the fitted law, never over an assumed one; the law's ratio and its
range-slope sensitivity (:class:`FittedLaw`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy import optimize

from ..errors import InvalidInputError
from ..raster import robust_spread
from .laws import REFERENCE_INCIDENCE_DEG

#: The points of the table a fitted law is evaluated on for large arrays.
_TABLE_POINTS = 90_001


def _bernstein(x: np.ndarray, degree: int) -> np.ndarray:
    """(len(x), degree + 1) Bernstein basis polynomials of ``degree`` on 0..1."""
    x = np.asarray(x, dtype=np.float64)[:, None]
    k = np.arange(degree + 1)[None, :]
    return np.asarray([math.comb(degree, int(i)) for i in range(degree + 1)])[None, :] * x**k * (1 - x) ** (degree - k)


@dataclasses.dataclass(frozen=True)
class FittedLaw:
    """A sigma0 law (dB) of the local incidence fitted to an observation
    (:func:`fit_sigma0_law`).

    Inside the populated range the law is a polynomial in the angle, in the Bernstein basis
    of that range with non-increasing coefficients (so the law never rises with the
    incidence); outside it is continued with the slope it has at the range's ends.

    Attributes
    ----------
    coefficients : Bernstein coefficients (dB), non-increasing.
    range_deg : (low, high), the populated range of local incidence (degrees).
    bin_angles_deg, bin_medians_db, bin_counts : the bins fitted: median angle (degrees),
        median sigma0 (dB) and number of cells of each.
    cells : the valid cells the fit saw.
    """

    coefficients: tuple[float, ...]
    range_deg: tuple[float, float]
    bin_angles_deg: tuple[float, ...]
    bin_medians_db: tuple[float, ...]
    bin_counts: tuple[int, ...]
    cells: int

    @property
    def degree(self) -> int:
        """The polynomial's degree."""
        return len(self.coefficients) - 1

    def _inside(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Value (dB) and slope (dB per degree) of the polynomial at ``t`` inside the range."""
        low, high = self.range_deg
        span = high - low
        c = np.asarray(self.coefficients)
        if self.degree == 0 or span <= 0:
            return np.full(t.shape, c[0]), np.zeros(t.shape)
        if t.size > 4 * _TABLE_POINTS:
            # A smooth polynomial on a table of a thousandth of a degree or finer,
            # interpolated: the basis of a million cells would take a second a scene.
            grid = np.linspace(low, high, _TABLE_POINTS)
            value, slope = self._inside(grid)
            return np.interp(t, grid, value), np.interp(t, grid, slope)
        x = (t - low) / span
        value = _bernstein(x.ravel(), self.degree) @ c
        slope = _bernstein(x.ravel(), self.degree - 1) @ (self.degree * np.diff(c)) / span
        return value.reshape(t.shape), slope.reshape(t.shape)

    def _evaluate(self, local_incidence_deg: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(local_incidence_deg, dtype=np.float64)
        low, high = self.range_deg
        inside = np.clip(np.nan_to_num(t, nan=low), low, high)
        value, slope = self._inside(inside)
        value = value + slope * (np.nan_to_num(t, nan=low) - inside)
        defined = np.isfinite(t) & (t >= 0) & (t < 90)
        return np.where(defined, value, np.nan), np.where(defined, slope, np.nan)

    def __call__(self, local_incidence_deg: np.ndarray | float) -> np.ndarray:
        """The fitted sigma0 (dB) at ``local_incidence_deg`` (degrees); NaN outside 0..90."""
        return self._evaluate(local_incidence_deg)[0]

    def slope_db_per_deg(self, local_incidence_deg: np.ndarray | float) -> np.ndarray:
        """d sigma0_dB / dt (dB per degree; non-positive)."""
        return self._evaluate(local_incidence_deg)[1]

    def ratio_db(self, sigma0_db: np.ndarray, local_incidence_deg: np.ndarray) -> np.ndarray:
        """The observed sigma0 over the fitted law (dB): ``sigma0_db - law(t)``. Defined up
        to a constant (the fit follows the median, speckle's mean in dB is an offset)."""
        return np.asarray(sigma0_db, dtype=np.float64) - self(local_incidence_deg)

    def sensitivity(self, local_incidence_deg: np.ndarray | float) -> np.ndarray:
        """How fast the brightness of a pixel rises with the range slope (dB per radian):
        ``S = -d(10 log10(sigma0(x) / sin x)) / dx`` at the local incidence ``x`` (degrees
        in), as ``sarheight.terrain.clinometry.range_slope_sensitivity`` for a known law. NaN
        outside (0, 90) degrees."""
        t = np.asarray(local_incidence_deg, dtype=np.float64)
        x = np.radians(t)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = -self.slope_db_per_deg(t) * (180.0 / math.pi) + (10.0 / math.log(10.0)) / np.tan(x)
        return np.where(np.isfinite(t) & (t > 0) & (t < 90), s, np.nan)

    @property
    def name(self) -> str:
        """A short description."""
        low, high = self.range_deg
        return f"fitted(monotone degree {self.degree}, {low:.1f}-{high:.1f} deg)"

    def to_attrs(self, prefix: str = "fitted_law") -> dict[str, str | float | int]:
        """Attributes: the description, coefficients (dB), range (degrees), sigma0 (dB) at
        40 degrees and the cells fitted."""
        return {prefix: self.name,
                f"{prefix}_coefficients_db": ", ".join(f"{c:.6g}" for c in self.coefficients),
                f"{prefix}_range_deg": f"{self.range_deg[0]:.4g}, {self.range_deg[1]:.4g}",
                f"{prefix}_db_at_40": round(float(self(REFERENCE_INCIDENCE_DEG)), 4),
                f"{prefix}_cells": int(self.cells)}


def _monotone_fit(x_deg: np.ndarray, y: np.ndarray, weights: np.ndarray, degree: int, low: float,
                  high: float) -> tuple[float, ...]:
    """Bernstein coefficients (non-increasing) of the weighted least-squares polynomial of
    ``degree`` on low..high through (x_deg, y)."""
    if degree == 0 or high <= low:
        return (float(np.average(y, weights=weights)),)
    basis = _bernstein((x_deg - low) / (high - low), degree)
    # c_k = c_0 - sum_{i <= k} d_i with d_i >= 0: columns sum_k B_k (= 1) and -sum_{k >= i} B_k.
    tails = -np.cumsum(basis[:, ::-1], axis=1)[:, ::-1][:, 1:]
    design = np.column_stack([basis.sum(axis=1), tails]) * np.sqrt(weights)[:, None]
    bounds = (np.r_[-np.inf, np.zeros(degree)], np.full(degree + 1, np.inf))
    solution = optimize.lsq_linear(design, y * np.sqrt(weights), bounds=bounds, method="bvls").x
    return tuple(float(v) for v in solution[0] - np.r_[0.0, np.cumsum(solution[1:])])


def fit_sigma0_law(
    sigma0_db: np.ndarray,
    local_incidence_deg: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    bin_deg: float = 1.0,
    min_cells: int = 30,
    degree: int = 5,
) -> FittedLaw:
    """Fit a sigma0 law of the local incidence to an observation itself, robustly.

    1. Cells: ``valid`` (the caller leaves out layover and shadow), with finite sigma0 (dB)
       and a local incidence in (0, 90) degrees.
    2. Bins of ``bin_deg`` degrees of local incidence holding at least ``min_cells`` cells;
       per bin the *median* sigma0 (dB) and angle: speckle (log of a gamma variable) and
       land cover are heavy-tailed, and a tenth of outliers moves a median by a fraction of
       the spread, the same in every bin (an offset, which the ratio allows).
    3. A polynomial of ``degree`` in the angle (fewer where fewer bins are populated), in
       the Bernstein basis of the populated range with non-increasing coefficients, fitted
       by bounded weighted least squares (weights: cells over the squared robust spread of
       the bin). Monotone because every physical law here (surface and volume scattering)
       falls with the local incidence: a fit that rises somewhere, from land cover
       correlated with the angle or a thin bin, would turn the slope read from brightness
       around there. Non-increasing Bernstein coefficients are sufficient for a
       non-increasing polynomial, and they keep the fit a linear least-squares problem.
    4. Beyond the populated range: the value continued with the slope at its end.

    Parameters
    ----------
    sigma0_db : observed sigma0 (dB), any shape.
    local_incidence_deg : the local incidence of each cell (degrees), the same shape.
    valid : where to fit (bool, the same shape); default everywhere.
    bin_deg : bin width (degrees), 0.1..10 (1-2 usual).
    min_cells : the fewest cells a bin must have to be used (at least 3).
    degree : the polynomial's degree, 0..6.

    Returns
    -------
    FittedLaw

    Raises
    ------
    InvalidInputError
        Shapes that differ, bad options, or no bin with ``min_cells`` valid cells.
    """
    sigma0_db = np.asarray(sigma0_db, dtype=np.float64)
    angles = np.asarray(local_incidence_deg, dtype=np.float64)
    if sigma0_db.shape != angles.shape:
        raise InvalidInputError(f"sigma0_db has shape {sigma0_db.shape}, local_incidence_deg {angles.shape}: "
                                "give one local incidence per cell")
    mask = np.ones(angles.shape, dtype=bool) if valid is None else np.asarray(valid)
    if mask.shape != angles.shape or mask.dtype != bool:
        raise InvalidInputError(f"valid must be a bool array of shape {angles.shape}, got {mask.dtype} {mask.shape}")
    if not (isinstance(bin_deg, (int, float, np.number)) and 0.1 <= bin_deg <= 10):
        raise InvalidInputError(f"bin_deg must be 0.1..10 degrees, got {bin_deg!r}")
    if isinstance(min_cells, bool) or not isinstance(min_cells, (int, np.integer)) or min_cells < 3:
        raise InvalidInputError(f"min_cells must be an integer >= 3, got {min_cells!r}")
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or not 0 <= degree <= 6:
        raise InvalidInputError(f"degree must be an integer 0..6, got {degree!r}")
    with np.errstate(invalid="ignore"):
        use = mask & np.isfinite(sigma0_db) & np.isfinite(angles) & (angles > 0) & (angles < 90)
    t, s = angles[use], sigma0_db[use]
    index = np.floor(t / bin_deg).astype(np.int64)
    order = np.argsort(index, kind="stable")
    index, t, s = index[order], t[order], s[order]
    starts = np.flatnonzero(np.r_[True, np.diff(index) > 0]) if index.size else np.zeros(0, np.int64)
    stops = np.r_[starts[1:], index.size] if index.size else starts
    centres, medians, counts, spreads = [], [], [], []
    for start, stop in zip(starts, stops, strict=True):
        if stop - start < min_cells:
            continue
        values = s[start:stop]
        median = float(np.median(values))
        centres.append(float(np.median(t[start:stop])))
        medians.append(median)
        counts.append(int(stop - start))
        spreads.append(max(robust_spread(values, median), 0.05))
    if not centres:
        raise InvalidInputError(
            f"no bin of {bin_deg} degrees of local incidence holds {min_cells} valid cells ({int(use.sum())} valid "
            "cells in all): give more cells, wider bins (bin_deg) or a smaller min_cells"
        )
    x_deg, y = np.asarray(centres), np.asarray(medians)
    # The variance of a bin's median: pi/2 spread^2 / cells (a normal sample's).
    weights = np.asarray(counts) / (0.5 * math.pi * np.asarray(spreads) ** 2)
    low, high = float(x_deg.min()), float(x_deg.max())
    best: tuple[float, tuple[float, ...]] | None = None
    for n in range(min(int(degree), len(centres) - 1) + 1):
        coefficients = _monotone_fit(x_deg, y, weights, n, low, high)
        residual = y - FittedLaw(coefficients, (low, high), (), (), (), 0)(x_deg)
        criterion = float(np.sum(weights * residual**2)) + 2.0 * (n + 1)
        if best is None or criterion < best[0]:
            best = (criterion, coefficients)
    coefficients = best[1]
    return FittedLaw(coefficients, (low, high), tuple(centres), tuple(medians), tuple(counts), int(use.sum()))
