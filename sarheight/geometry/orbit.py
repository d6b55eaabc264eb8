"""The satellite's orbit: a polynomial in time fitted to state vectors, ECEF (WGS84) metres."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ..compute import OrbitPolynomial, orbit_states
from ..errors import GeometryError, InvalidInputError
from ..scores import rms
from .times import as_datetime64, as_nanoseconds, datetime_from_seconds, seconds_since


@dataclasses.dataclass(frozen=True, eq=False)
class Orbit:
    """A satellite orbit as a polynomial in time, ECEF (WGS84) metres.

    ``position(t) = sum_k coeffs[k] * tau**k`` with ``tau = (t - t_center) / t_scale`` and
    ``t`` in seconds since ``reference_time``. Velocity and acceleration are its
    derivatives. The polynomial is valid on ``[t_min, t_max]``; :meth:`state` refuses
    times outside.

    Build one with :meth:`from_state_vectors` (real orbits) or :meth:`straight`.
    """

    reference_time: np.datetime64
    coeffs: np.ndarray
    t_center: float
    t_scale: float
    t_min: float
    t_max: float
    #: RMS of the fit's position residuals at the state vectors (m); 0 for exact models.
    fit_rms: float = 0.0

    def __post_init__(self) -> None:
        coeffs = np.ascontiguousarray(self.coeffs, dtype=np.float64)
        if coeffs.ndim != 2 or coeffs.shape[1] != 3 or coeffs.shape[0] < 2:
            raise InvalidInputError(
                f"orbit coefficients must have shape (degree + 1, 3) with degree >= 1, got {coeffs.shape}"
            )
        object.__setattr__(self, "coeffs", coeffs)
        object.__setattr__(self, "reference_time", as_nanoseconds(self.reference_time))
        if not self.t_max > self.t_min:
            raise InvalidInputError("the orbit's validity span is empty: t_max must exceed t_min")

    @property
    def degree(self) -> int:
        return self.coeffs.shape[0] - 1

    @property
    def start_time(self) -> np.datetime64:
        return as_nanoseconds(datetime_from_seconds(self.t_min, self.reference_time)[()])

    @property
    def stop_time(self) -> np.datetime64:
        return as_nanoseconds(datetime_from_seconds(self.t_max, self.reference_time)[()])

    @classmethod
    def from_state_vectors(
        cls,
        times: Any,
        positions: Any,
        velocities: Any | None = None,
        *,
        degree: int = 5,
        reference_time: Any | None = None,
    ) -> Orbit:
        """Least-squares polynomial fit to orbit state vectors.

        Positions and, when given, velocities enter one fit (velocities as derivative
        equations scaled to metres), so the polynomial honours both.

        Parameters
        ----------
        times : (n,) datetime64 or ISO strings
        positions : (n, 3) ECEF positions (m)
        velocities : (n, 3) ECEF velocities (m/s), optional
        degree : polynomial degree (5 suits the ~3 minutes of Sentinel-1 annotation
            state vectors: residuals are at the millimetre level)
        reference_time : epoch of the time axis; default the mid time of the vectors.
        """
        times = as_datetime64(times).ravel()
        positions = np.asarray(positions, dtype=np.float64)
        if positions.shape != (times.size, 3):
            raise InvalidInputError(
                f"positions must have shape (n, 3) matching {times.size} times, got {positions.shape}"
            )
        if times.size < 2 or np.any(np.diff(times.astype(np.int64)) <= 0):
            raise InvalidInputError("state vector times must be at least two and strictly increasing")
        if not np.all(np.isfinite(positions)):
            raise InvalidInputError("state vector positions contain non-finite values")
        if reference_time is None:
            reference_time = times[0] + (times[-1] - times[0]) // 2
        reference_time = as_nanoseconds(reference_time)
        t = seconds_since(times, reference_time)
        t_center = 0.5 * (t[0] + t[-1])
        t_scale = max(0.5 * (t[-1] - t[0]), 1e-9)
        tau = (t - t_center) / t_scale
        n_equations = times.size * (1 if velocities is None else 2)
        degree = int(min(degree, n_equations - 1))
        if degree < 1:
            raise InvalidInputError("need at least two state vectors to fit an orbit")
        powers = np.arange(degree + 1)
        design = tau[:, None] ** powers
        rhs = positions
        if velocities is not None:
            velocities = np.asarray(velocities, dtype=np.float64)
            if velocities.shape != positions.shape or not np.all(np.isfinite(velocities)):
                raise InvalidInputError("velocities must be finite with the shape of positions")
            # d/dtau of tau**k is k * tau**(k-1); velocity * t_scale is in metres per unit tau.
            derivative = np.zeros_like(design)
            derivative[:, 1:] = powers[1:] * tau[:, None] ** (powers[1:] - 1)
            design = np.vstack([design, derivative])
            rhs = np.vstack([positions, velocities * t_scale])
        coeffs, *_ = np.linalg.lstsq(design, rhs, rcond=None)
        residual = design[: times.size] @ coeffs - positions
        fit_rms = rms(residual)
        return cls(reference_time, coeffs, t_center, t_scale, float(t[0]), float(t[-1]), fit_rms)

    @classmethod
    def straight(
        cls,
        reference_time: Any,
        position: Any,
        velocity: Any,
        t_min: float,
        t_max: float,
    ) -> Orbit:
        """A straight-line orbit ``P(t) = position + velocity * t`` (t in s since reference)."""
        coeffs = np.stack([np.asarray(position, float), np.asarray(velocity, float)])
        return cls(as_nanoseconds(reference_time), coeffs, 0.0, 1.0, float(t_min), float(t_max))

    def seconds(self, times: Any) -> np.ndarray:
        """Seconds since ``reference_time`` of datetime64 ``times``."""
        return seconds_since(times, self.reference_time)

    def covers(self, start: Any, stop: Any) -> bool:
        """Whether the orbit's validity span contains ``[start, stop]`` (datetime64)."""
        t0, t1 = self.seconds([start, stop])
        return bool(self.t_min <= t0 and t1 <= self.t_max)

    def state(self, times: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Position (m), velocity (m/s) and acceleration (m/s^2) at ``times``.

        ``times`` are datetime64 values or float seconds since ``reference_time``. Returns
        arrays of shape ``times.shape + (3,)``. Raises GeometryError outside the span.
        """
        arr = np.asarray(times)
        t = arr.astype(np.float64) if arr.dtype.kind in "fiu" else self.seconds(arr)
        if np.any((t < self.t_min) | (t > self.t_max)):
            raise GeometryError(
                f"time outside the orbit's validity span {self.start_time} .. {self.stop_time}: "
                "use an orbit whose state vectors cover the acquisition (e.g. a precise orbit file)"
            )
        return orbit_states(OrbitPolynomial(self.coeffs, self.t_center, self.t_scale), t)

