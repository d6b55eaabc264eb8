"""The errors of the instruments priors come from, and priors drawn as an instrument kind
gives them.

Instrument errors
-----------------
Sampled priors are the DEM's heights at their cells unless ``sample_priors(errors=...)``
gives a :class:`PriorErrors`; each cell is then measured as the instrument would measure it:

1. the instrument aims at the cell's centre and hits a point displaced by its geolocation
   error (Gaussian, ``geolocation_m`` per axis, drawn per prior), so that the error grows with
   the slope (``geolocation_m * tan(slope)`` along the slope);
2. it measures the terrain there (the DEM, bilinear between cell centres) averaged over its
   footprint, weighted by a Gaussian of standard deviation ``footprint_m / 4``: the laser's
   energy profile, whose 1/e^2 diameter is the footprint and which the returns average, rather
   than a sharp disc. The Gaussian has the second moment of the uniform disc of that diameter
   (r^2 / 4 per axis, r the radius), so the two agree on any quadratic terrain: a curvature
   ``c`` (m^-1) along one axis raises the height by ``c r^2 / 8`` with either. It is
   evaluated by a 12-point cubature (two rings at the Gauss-Laguerre radii of the Gaussian,
   six points each, exact for polynomials of degree 5);
3. a wide footprint on a slope returns first from its low side, and the lowest-mode ground
   of a waveform lies below its centre: the height is lowered by
   ``slope_bias * footprint_m / 2 * tan(slope)``, the slope that of the plane fitted to the
   footprint's samples;
4. Gaussian vertical noise of ``vertical_m`` is added;

and the height is recorded at the intended cell: the instrument reports where it thinks it
measured. The geolocation errors are independent from prior to prior; the pointing biases
that real tracks share are not modelled. Past the grid's edge the terrain is continued by
odd reflection, which keeps its slope (exact on a plane).

:data:`PRIOR_KINDS` gives each instrument kind its pattern and the uniform ranges from which
:func:`draw_prior_errors` draws its errors:

``"altimeter"``
    ICESat-2 ATL06/ATL08 land heights, pattern ``"tracks"`` (ICESat-2's layout). Vertical
    0.05-0.5 m: centimetres to decimetres on flat, open ground (Brunt et al. 2019, Geophys.
    Res. Lett. 46; Neuenschwander & Pitts 2019, Remote Sens. Environ. 221). Geolocation
    2-6 m: a few metres once calibrated, within the 6.5 m requirement (Luthcke et al. 2021,
    Earth Space Sci. 8). Footprint 11-17 m: 10.6-12 m measured with corner-cube arrays
    (Magruder et al. 2020, Remote Sens. 12; 2021, Earth Space Sci. 8), with a margin for
    its variation between beams and over the mission. No slope bias: the photons of a
    footprint sample it without a preference for its lowest point.
``"lidar"``
    GEDI L2A ground elevations, pattern ``"tracks"`` with ``track_layout="gedi"``. Vertical
    0.3-1.5 m; geolocation 3-12 m: about 10 m in release 1, a few metres in release 2
    (Beck et al. 2021, GEDI L1B/L2A ATBD; Tang et al. 2023, Remote Sens. Environ. 291);
    footprint 22-28 m, 25 m nominal (Dubayah et al. 2020, Sci. Remote Sens. 1); slope bias
    0.2-0.8: ground errors of metres that grow with the slope (Adam et al. 2020, Remote Sens.
    12; Quiros et al. 2021, IEEE J. Sel. Top. Appl. Earth Obs. Remote Sens. 14).
``"gnss"``
    RTK/PPK surveys, pattern ``"clusters"``: 1-5 cm vertically and horizontally, a point.
``"exact"``
    Pattern ``"random"`` and no error: the DEM's heights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import (
    InvalidInputError,
)
from ..raster import bilinear_at

#: Instrument kinds: the pattern their priors come in (and the track layout of a "tracks"
#: pattern), and the uniform ranges (low, high) from which :func:`draw_prior_errors` draws
#: each field of :class:`PriorErrors`. Sources in the module docstring.
PRIOR_KINDS: dict[str, dict[str, Any]] = {
    "altimeter": {"pattern": "tracks", "track_layout": "icesat2", "vertical_m": (0.05, 0.5),
                  "geolocation_m": (2.0, 6.0), "footprint_m": (11.0, 17.0), "slope_bias": (0.0, 0.0)},
    "lidar": {"pattern": "tracks", "track_layout": "gedi", "vertical_m": (0.3, 1.5),
              "geolocation_m": (3.0, 12.0), "footprint_m": (22.0, 28.0), "slope_bias": (0.2, 0.8)},
    "gnss": {"pattern": "clusters", "vertical_m": (0.01, 0.05), "geolocation_m": (0.01, 0.05),
             "footprint_m": (0.0, 0.0), "slope_bias": (0.0, 0.0)},
    "exact": {"pattern": "random", "vertical_m": (0.0, 0.0), "geolocation_m": (0.0, 0.0),
              "footprint_m": (0.0, 0.0), "slope_bias": (0.0, 0.0)},
}


ERROR_FIELDS = ("vertical_m", "geolocation_m", "footprint_m", "slope_bias")


#: The attributes :meth:`PriorErrors.to_attrs` writes on priors and scenes.
PRIOR_ERROR_ATTRS = ("prior_kind", *(f"prior_{name}" for name in ERROR_FIELDS))


@dataclass(frozen=True)
class PriorErrors:
    """The error model of one instrument's priors (see the module docstring).

    Parameters
    ----------
    kind : str
        The instrument kind, a key of :data:`PRIOR_KINDS` or any name (for the record).
    vertical_m : float, default 0
        Standard deviation (m) of the instrument's vertical noise.
    geolocation_m : float, default 0
        Standard deviation (m) of its horizontal position error, per axis: the height is
        measured at a displaced point, so its error grows with the slope.
    footprint_m : float, default 0
        Diameter (m) of its footprint, 0 for a point: the height measured is the terrain
        averaged over it (a Gaussian of standard deviation footprint_m / 4).
    slope_bias : float, default 0
        Share, 0-1, of the footprint's radius times tan(slope) by which a sloping footprint's
        height is lowered: a wide-footprint lidar picks the lowest ground return.

    Raises
    ------
    InvalidInputError
        An empty kind, a negative or non-finite error, a slope_bias outside [0, 1].
    """

    kind: str
    vertical_m: float = 0.0
    geolocation_m: float = 0.0
    footprint_m: float = 0.0
    slope_bias: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not self.kind:
            raise InvalidInputError(f"kind={self.kind!r} must name the instrument (e.g. 'altimeter').")
        for name in ERROR_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
                    or not math.isfinite(value) or value < 0 or (name == "slope_bias" and value > 1):
                what = "a share between 0 and 1" if name == "slope_bias" else "a standard deviation or " \
                    "diameter in metres, 0 or more"
                raise InvalidInputError(f"PriorErrors {name}={value!r} must be {what}.")
            # Plain floats: NetCDF attributes and equality do not depend on how they were given.
            object.__setattr__(self, name, float(value))

    def to_attrs(self, prefix: str = "prior_") -> dict[str, float | str]:
        """The error model as NetCDF attributes: ``{prefix}kind`` (str) and
        ``{prefix}vertical_m``, ``{prefix}geolocation_m``, ``{prefix}footprint_m`` (m),
        ``{prefix}slope_bias`` (floats)."""
        return {f"{prefix}kind": self.kind, **{f"{prefix}{name}": float(getattr(self, name))
                                               for name in ERROR_FIELDS}}


def draw_prior_errors(kind: str, seed: int) -> PriorErrors:
    """One instrument's error model, each field drawn uniformly from the kind's range.

    Parameters
    ----------
    kind : {"altimeter", "lidar", "gnss", "exact"}
        A key of :data:`PRIOR_KINDS`.
    seed : int
        Seed of ``numpy.random.default_rng``; the fields are drawn in the order vertical_m,
        geolocation_m, footprint_m, slope_bias.

    Returns
    -------
    PriorErrors
        vertical_m, geolocation_m, footprint_m (m) and slope_bias inside the kind's ranges.

    Raises
    ------
    InvalidInputError
        An unknown kind, or a seed that is not a whole number, 0 or more.
    """
    spec = kind_spec(kind)
    check_seed(seed)
    rng = np.random.default_rng(seed)
    return PriorErrors(kind, **{name: float(rng.uniform(*spec[name])) for name in ERROR_FIELDS})


def kind_spec(kind: Any) -> dict[str, Any]:
    if not isinstance(kind, str) or kind not in PRIOR_KINDS:
        raise InvalidInputError(f"kind={kind!r} is not one of {', '.join(map(repr, PRIOR_KINDS))} (PRIOR_KINDS).")
    return PRIOR_KINDS[kind]


def check_seed(seed: Any) -> None:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed={seed!r} must be a whole number, 0 or more (the same seed, the same priors).")


def measure(heights: np.ndarray, cells: np.ndarray, errors: PriorErrors, steps: tuple[float, float],
             rng: np.random.Generator) -> np.ndarray:
    """The heights (m, float64) the instrument of ``errors`` measures aiming at ``cells``
    (flat indices), its errors drawn from ``rng``: geolocation (east, north), then vertical
    noise; a zero error draws nothing, so that an exact model leaves ``rng`` as it was."""
    n = cells.size
    exact = heights.ravel()[cells].astype(np.float64)
    if errors.geolocation_m == 0 and errors.footprint_m == 0:
        values = exact.copy()
    else:
        step_n, step_e = steps
        row, col = np.divmod(cells, heights.shape[1])
        east = north = np.zeros(n)
        if errors.geolocation_m > 0:
            east, north = rng.normal(0.0, errors.geolocation_m, size=(2, n))
        off_e, off_n, weights = _footprint_cubature(errors.footprint_m)
        # Past the edge the slope goes on (odd reflection): "nearest" would flatten the
        # terrain there and hide the geolocation error of priors near the edge.
        samples = bilinear_at(heights, row[:, None] + (north[:, None] + off_n) / step_n,
                              col[:, None] + (east[:, None] + off_e) / step_e, edge="odd")
        found = np.isfinite(samples)
        total = (np.where(found, weights, 0.0)).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(found, samples * weights, 0.0).sum(axis=1) / total
        # Where the whole footprint fell on voids, the cell's own height stands for it.
        values = np.where(total > 0, mean, exact)
        if errors.slope_bias > 0 and errors.footprint_m > 0:
            # Missing samples take the footprint's mean: they pull the fitted slope to zero.
            deviation = np.where(found, samples, values[:, None]) - values[:, None]
            grade_e = (deviation * weights * off_e).sum(axis=1) / (weights * off_e**2).sum()
            grade_n = (deviation * weights * off_n).sum(axis=1) / (weights * off_n**2).sum()
            values = values - errors.slope_bias * 0.5 * errors.footprint_m * np.hypot(grade_e, grade_n)
    if errors.vertical_m > 0:
        values = values + rng.normal(0.0, errors.vertical_m, size=n)
    return values


def _footprint_cubature(footprint_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """East and north offsets (m) and weights (summing to 1) of the points that average the
    terrain over a footprint of diameter ``footprint_m``: its centre alone for a point, else
    two rings of six at the Gauss-Laguerre radii of a Gaussian of sigma footprint_m / 4
    (r^2 / 2 sigma^2 is exponential), the second ring turned by half a step."""
    if footprint_m == 0:
        return np.zeros(1), np.zeros(1), np.ones(1)
    nodes, node_weights = np.polynomial.laguerre.laggauss(2)
    radii = 0.25 * footprint_m * np.sqrt(2.0 * nodes)
    angles = 2.0 * np.pi * np.arange(6) / 6
    angles = np.concatenate([angles, angles + np.pi / 6])
    radius = np.repeat(radii, 6)
    return radius * np.cos(angles), radius * np.sin(angles), np.repeat(node_weights / 6, 6)
