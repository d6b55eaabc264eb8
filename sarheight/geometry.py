"""Radar acquisition geometry: orbit, image grid and backward geocoding.

A :class:`RadarGeometry` is an :class:`Orbit` (a polynomial fitted to state vectors), an
:class:`ImageGrid` (the azimuth and range axes of the product) and the look side. It is
read from a Sentinel-1 SAFE product with :meth:`RadarGeometry.from_sentinel1` (the
annotation is enough) or built for a local area with :meth:`RadarGeometry.synthetic`.
:func:`backward_geocode` solves the zero-Doppler condition for every cell of a DEM.

Times are ``numpy.datetime64[ns]`` at the surface and float seconds since
``orbit.reference_time`` inside; lengths in metres; angles in degrees at the surface.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping
from typing import Any, Literal, NamedTuple

import numpy as np
import xarray as xr

from . import kernels
from .compute import WGS84_A, WGS84_E2, Compute, GeocodingGeometry, compute_for, ecef, geocode
from .errors import (
    GeometryError,
    InvalidInputError,
    ProductError,
)
from .scores import rms

logger = logging.getLogger(__name__)

SPEED_OF_LIGHT = 299_792_458.0  # m/s
#: Sentinel-1 C-band radar frequency (Hz) and wavelength (m).
SENTINEL1_FREQUENCY = 5.405000454334350e9
SENTINEL1_WAVELENGTH = SPEED_OF_LIGHT / SENTINEL1_FREQUENCY
_GM = 3.986004418e14  # m^3/s^2, Earth's gravitational parameter
_NS = np.timedelta64(1, "ns")

LookSide = Literal["right", "left"]


def _as_datetime64(value: Any) -> np.ndarray:
    try:
        return np.asarray(value, dtype="datetime64[ns]")
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"could not read {value!r} as times: give numpy datetime64 values or ISO 8601 "
            "strings such as '2022-10-16T01:50:44.5'"
        ) from exc


def seconds_since(times: Any, reference: np.datetime64) -> np.ndarray:
    """Float seconds from ``reference`` to ``times`` (datetime64 or ISO strings)."""
    delta = _as_datetime64(times) - np.datetime64(reference, "ns")
    return delta.astype("timedelta64[ns]").astype(np.int64) / 1e9


def datetime_from_seconds(seconds: Any, reference: np.datetime64) -> np.ndarray:
    """``reference`` plus float ``seconds``, as datetime64[ns] (NaN gives NaT)."""
    seconds = np.asarray(seconds, dtype=np.float64)
    ns = np.where(np.isfinite(seconds), np.round(seconds * 1e9), 0).astype(np.int64)
    out = np.datetime64(reference, "ns") + ns.astype("timedelta64[ns]")
    return np.where(np.isfinite(seconds), out, np.datetime64("NaT", "ns"))


# --------------------------------------------------------------------------------------
# Orbit
# --------------------------------------------------------------------------------------


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
        object.__setattr__(self, "reference_time", np.datetime64(self.reference_time, "ns"))
        if not self.t_max > self.t_min:
            raise InvalidInputError("the orbit's validity span is empty: t_max must exceed t_min")

    @property
    def degree(self) -> int:
        return self.coeffs.shape[0] - 1

    @property
    def start_time(self) -> np.datetime64:
        return datetime_from_seconds(self.t_min, self.reference_time)[()]

    @property
    def stop_time(self) -> np.datetime64:
        return datetime_from_seconds(self.t_max, self.reference_time)[()]

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
        times = _as_datetime64(times).ravel()
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
        reference_time = np.datetime64(reference_time, "ns")
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
        return cls(np.datetime64(reference_time, "ns"), coeffs, 0.0, 1.0, float(t_min), float(t_max))

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
        flat = np.ascontiguousarray(t, dtype=np.float64).ravel()
        pos, vel, acc = kernels.orbit_states(self.coeffs, self.t_center, self.t_scale, flat)
        shape = (*t.shape, 3)
        return pos.reshape(shape), vel.reshape(shape), acc.reshape(shape)


# --------------------------------------------------------------------------------------
# Image grid
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, eq=False)
class ImageGrid:
    """The azimuth and range axes of a radar image.

    Line ``l`` is acquired at ``first_line_time + l * line_interval``. The range axis maps
    slant range to a fractional sample index through a table of polynomials in slant
    range (see ``kernels.radar_grid``): one linear entry for slant-range (SLC) products,
    the annotated slant-range-to-ground-range polynomials for ground-range (GRD) ones.
    Pixel centres sit at integer indices; the image spans ``[-0.5, n - 0.5]`` on each axis.

    Line times are the product's own labels. Where ``bistatic_reference_range`` is set, a
    target at slant range r with zero-Doppler time t lies on the line of time
    ``t - (r - bistatic_reference_range) / c`` (Sentinel-1's bistatic delay, up to half a
    millisecond across an IW swath).
    """

    first_line_time: np.datetime64
    line_interval: float
    lines: int
    samples: int
    range_times: np.ndarray
    range_sr0: np.ndarray
    range_coeffs: np.ndarray
    range_spacing: float
    projection: Literal["slant_range", "ground_range"] = "slant_range"
    #: Slant range (m) at which line time equals zero-Doppler time. Sentinel-1 labels
    #: lines with the zero-Doppler time less the bistatic delay (r - r_ref) / c; None
    #: for images labelled with zero-Doppler time itself (synthetic geometries).
    bistatic_reference_range: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "first_line_time", np.datetime64(self.first_line_time, "ns"))
        object.__setattr__(self, "range_times", _as_datetime64(self.range_times).ravel())
        object.__setattr__(self, "range_sr0", np.asarray(self.range_sr0, np.float64).ravel())
        coeffs = np.atleast_2d(np.asarray(self.range_coeffs, np.float64))
        object.__setattr__(self, "range_coeffs", np.ascontiguousarray(coeffs))
        if not (self.line_interval > 0 and self.range_spacing > 0):
            raise InvalidInputError("line interval and range spacing must be positive")
        if self.lines < 1 or self.samples < 1:
            raise InvalidInputError(f"image size must be positive, got {self.lines} x {self.samples}")
        n = self.range_times.size
        if self.range_sr0.size != n or coeffs.shape[0] != n or n < 1:
            raise InvalidInputError("range model: times, sr0 and coefficient rows must match")

    @classmethod
    def slant_range_grid(
        cls,
        first_line_time: Any,
        line_interval: float,
        lines: int,
        samples: int,
        first_sample_slant_range: float,
        slant_range_spacing: float,
        bistatic_reference_range: float | None = None,
    ) -> ImageGrid:
        """A grid linear in slant range (SLC, or any image in radar geometry)."""
        return cls(
            first_line_time, float(line_interval), int(lines), int(samples),
            np.asarray([first_line_time], "datetime64[ns]"), [first_sample_slant_range],
            [[0.0, 1.0]], float(slant_range_spacing), "slant_range", bistatic_reference_range,
        )

    @classmethod
    def ground_range_grid(
        cls,
        first_line_time: Any,
        line_interval: float,
        lines: int,
        samples: int,
        ground_range_spacing: float,
        srgr_times: Any,
        srgr_sr0: Any,
        srgr_coeffs: Any,
        bistatic_reference_range: float | None = None,
    ) -> ImageGrid:
        """A ground-range grid from slant-range-to-ground-range polynomials (GRD)."""
        return cls(
            first_line_time, float(line_interval), int(lines), int(samples),
            srgr_times, srgr_sr0, srgr_coeffs, float(ground_range_spacing), "ground_range",
            bistatic_reference_range,
        )

    @property
    def last_line_time(self) -> np.datetime64:
        return self.first_line_time + np.int64(round((self.lines - 1) * self.line_interval * 1e9)) * _NS

    @property
    def shape(self) -> tuple[int, int]:
        return (self.lines, self.samples)

    def crop(self, line_start: int, line_stop: int, sample_start: int, sample_stop: int) -> ImageGrid:
        """The sub-grid of lines ``[line_start, line_stop)`` and samples ``[sample_start, sample_stop)``."""
        if not (0 <= line_start < line_stop <= self.lines and 0 <= sample_start < sample_stop <= self.samples):
            raise InvalidInputError(
                f"crop window lines {line_start}:{line_stop}, samples {sample_start}:{sample_stop} "
                f"is not inside the {self.lines} x {self.samples} image"
            )
        first = self.first_line_time + np.int64(round(line_start * self.line_interval * 1e9)) * _NS
        # Shifting the sample origin subtracts a constant ground range: add it to the
        # constant coefficient so the polynomials keep their slant-range reference.
        coeffs = self.range_coeffs.copy()
        coeffs[:, 0] -= sample_start * self.range_spacing
        return dataclasses.replace(
            self, first_line_time=first, lines=line_stop - line_start,
            samples=sample_stop - sample_start, range_coeffs=coeffs,
        )


# --------------------------------------------------------------------------------------
# Radar geometry
# --------------------------------------------------------------------------------------


class RadarWindow(NamedTuple):
    """A rectangle of the radar image grid, in absolute product indices: lines
    ``line0 .. line0 + lines - 1`` and samples ``sample0 .. sample0 + samples - 1``.

    The part of the image a DEM (or a block of it) falls in; radar-side arrays of a
    simulation are laid out on one. A tuple, so it unpacks as
    ``line0, lines, sample0, samples = window``; pass plain ints (``tuple(window)``) to kernels.
    """

    line0: int
    lines: int
    sample0: int
    samples: int

    @property
    def line_stop(self) -> int:
        """One past the last line."""
        return self.line0 + self.lines

    @property
    def sample_stop(self) -> int:
        """One past the last sample."""
        return self.sample0 + self.samples

    @property
    def shape(self) -> tuple[int, int]:
        return self.lines, self.samples

    def coords(self) -> dict[str, np.ndarray]:
        """The ``line`` and ``sample`` coordinates of a DataArray on the window."""
        return {"line": np.arange(self.line0, self.line_stop), "sample": np.arange(self.sample0, self.sample_stop)}

    def shares_lines(self, other: RadarWindow) -> bool:
        """Whether the two windows have a line in common."""
        return self.line0 < other.line_stop and other.line0 < self.line_stop

    def overlaps(self, other: RadarWindow) -> bool:
        """Whether the two windows have a pixel in common."""
        return self.shares_lines(other) and self.sample0 < other.sample_stop and other.sample0 < self.sample_stop

    def intersection(self, other: RadarWindow) -> RadarWindow | None:
        """The pixels the two windows share, or None."""
        line0, sample0 = max(self.line0, other.line0), max(self.sample0, other.sample0)
        line_stop, sample_stop = min(self.line_stop, other.line_stop), min(self.sample_stop, other.sample_stop)
        if line_stop <= line0 or sample_stop <= sample0:
            return None
        return RadarWindow(line0, line_stop - line0, sample0, sample_stop - sample0)

    def index_in(self, outer: RadarWindow) -> tuple[slice, slice]:
        """Where this window's pixels lie in the arrays of ``outer`` (which holds them)."""
        return (slice(self.line0 - outer.line0, self.line_stop - outer.line0),
                slice(self.sample0 - outer.sample0, self.sample_stop - outer.sample0))


@dataclasses.dataclass(frozen=True, eq=False)
class RadarGeometry:
    """Orbit, image grid and look side of one radar acquisition.

    Parameters
    ----------
    orbit : Orbit
    grid : ImageGrid
    look_side : "right" or "left" (Sentinel-1 looks right)
    wavelength : radar wavelength (m)
    attrs : free-form product description (mission, product type, polarisation, pass...)
    """

    orbit: Orbit
    grid: ImageGrid
    look_side: LookSide = "right"
    wavelength: float = SENTINEL1_WAVELENGTH
    attrs: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.look_side not in ("right", "left"):
            raise InvalidInputError(f"look_side must be 'right' or 'left', got {self.look_side!r}")
        if not self.orbit.covers(self.grid.first_line_time, self.grid.last_line_time):
            raise GeometryError(
                f"the orbit ({self.orbit.start_time} .. {self.orbit.stop_time}) does not cover the "
                f"image ({self.grid.first_line_time} .. {self.grid.last_line_time}): give state "
                "vectors spanning the whole acquisition (e.g. from a precise or restituted orbit file)"
            )

    # -- conversions ------------------------------------------------------------------

    @property
    def reference_time(self) -> np.datetime64:
        return self.orbit.reference_time

    @property
    def look_sign(self) -> float:
        return 1.0 if self.look_side == "right" else -1.0

    def kernel_arguments(self) -> dict[str, Any]:
        """The orbit and grid as the plain values the kernels take (seconds since reference)."""
        return self.geocoding_geometry().kernel_arguments()

    def geocoding_geometry(self) -> GeocodingGeometry:
        """The orbit and grid as the geocoding passes of :mod:`sarheight.compute` take
        them, on every backend (seconds since :attr:`reference_time`)."""
        orbit, grid = self.orbit, self.grid
        return GeocodingGeometry(
            orbit_coeffs=orbit.coeffs, orbit_t_center=orbit.t_center, orbit_t_scale=orbit.t_scale,
            valid_min=orbit.t_min, valid_max=orbit.t_max, first_line_time=float(orbit.seconds(grid.first_line_time)),
            line_interval=grid.line_interval, lines=grid.lines, samples=grid.samples,
            range_times=np.ascontiguousarray(orbit.seconds(grid.range_times)), range_sr0=grid.range_sr0,
            range_coeffs=grid.range_coeffs, range_spacing=grid.range_spacing, look_sign=self.look_sign,
            bistatic_rate=0.0 if grid.bistatic_reference_range is None else 1.0 / SPEED_OF_LIGHT,
            bistatic_reference_range=grid.bistatic_reference_range or 0.0,
            reference_ns=int(self.reference_time.astype("datetime64[ns]").astype(np.int64)))

    def line_to_time(self, line: Any) -> np.ndarray:
        """Time label (datetime64[ns]) of fractional ``line`` indices.

        This is the product's line time; the zero-Doppler time of a pixel also depends on
        its range where the grid has a bistatic delay (see :meth:`line_sample_to_time_range`).
        """
        k = self.kernel_arguments()
        return datetime_from_seconds(
            k["first_line_time"] + np.asarray(line, float) * k["line_interval"], self.reference_time
        )

    def line_sample_to_time_range(self, line: Any, sample: Any) -> tuple[np.ndarray, np.ndarray]:
        """Zero-Doppler time (datetime64[ns]) and slant range (m) of fractional (line, sample)."""
        k = self.kernel_arguments()
        line, sample = np.broadcast_arrays(np.asarray(line, float), np.asarray(sample, float))
        line_time = k["first_line_time"] + line * k["line_interval"]
        slant_range = kernels.slant_ranges_of_samples(
            np.ascontiguousarray(line_time).ravel(), np.ascontiguousarray(sample).ravel(),
            k["rm_times"], k["rm_sr0"], k["rm_coeffs"], k["rm_spacing"],
        ).reshape(line.shape)
        t = line_time + k["bistatic_rate"] * (slant_range - k["bistatic_reference_range"])
        return datetime_from_seconds(t, self.reference_time), slant_range

    def time_range_to_line_sample(self, time: Any, slant_range: Any) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (line, sample) of zero-Doppler ``time`` (datetime64) and slant range (m)."""
        k = self.kernel_arguments()
        t, r = np.broadcast_arrays(self.orbit.seconds(time), np.asarray(slant_range, float))
        line_time = t - k["bistatic_rate"] * (r - k["bistatic_reference_range"])
        sample = kernels.samples_of_slant_ranges(
            np.ascontiguousarray(line_time, dtype=float).ravel(), np.ascontiguousarray(r).ravel(),
            k["rm_times"], k["rm_sr0"], k["rm_coeffs"], k["rm_spacing"],
        ).reshape(t.shape)
        return (line_time - k["first_line_time"]) / k["line_interval"], sample

    def heading(self) -> float:
        """Platform heading at mid-scene time, at the satellite's nadir (degrees clockwise
        from north there), the convention of Sentinel-1 annotations."""
        mid = self.grid.first_line_time + (self.grid.last_line_time - self.grid.first_line_time) // 2
        pos, vel, _ = self.orbit.state(np.asarray([mid]))
        p, v = pos[0], vel[0]
        lon = math.atan2(p[1], p[0])
        lat = math.atan2(p[2], math.hypot(p[0], p[1]))
        east = np.array([-math.sin(lon), math.cos(lon), 0.0])
        north = np.array([-math.sin(lat) * math.cos(lon), -math.sin(lat) * math.sin(lon), math.cos(lat)])
        return math.degrees(math.atan2(v @ east, v @ north)) % 360.0

    def to_attrs(self) -> dict[str, Any]:
        """A flat description for dataset attributes and GeoTIFF tags (str/int/float)."""
        out: dict[str, Any] = {
            "look_side": self.look_side,
            "wavelength_m": self.wavelength,
            "first_line_time": str(self.grid.first_line_time),
            "line_interval_s": self.grid.line_interval,
            "lines": self.grid.lines,
            "samples": self.grid.samples,
            "range_projection": self.grid.projection,
            "range_spacing_m": self.grid.range_spacing,
            "heading_deg": round(self.heading(), 6),
            "orbit_fit_rms_m": self.orbit.fit_rms,
        }
        for key, value in self.attrs.items():
            if isinstance(value, (str, int, float, bool, np.integer, np.floating)):
                out[key] = value
        return out

    def __repr__(self) -> str:
        description = self.attrs.get("product", "geometry")
        return (
            f"<RadarGeometry {description}: {self.grid.lines} lines x {self.grid.samples} samples "
            f"({self.grid.projection}), {self.look_side}-looking, heading {self.heading():.1f} deg at nadir, "
            f"from {self.grid.first_line_time}>"
        )

    # -- constructors -----------------------------------------------------------------

    @classmethod
    def synthetic(
        cls,
        *,
        center_lon: float,
        center_lat: float,
        heading_deg: float,
        incidence_near_deg: float,
        incidence_far_deg: float,
        line_spacing: float,
        sample_spacing: float,
        altitude: float = 693e3,
        look_side: LookSide = "right",
        azimuth_extent: float | None = None,
        reference_time: Any = "2024-01-01T00:00:00",
        wavelength: float = SENTINEL1_WAVELENGTH,
    ) -> RadarGeometry:
        """A Sentinel-1-like geometry with a straight-line orbit over a local area.

        The orbit is the tangent line, at ``altitude`` above the sphere that osculates the
        WGS84 ellipsoid at the scene centre, chosen so that the centre (height 0) is seen
        at the mid incidence angle at time ``reference_time``. The image is linear in slant
        range and centred on the scene centre in azimuth.

        Parameters
        ----------
        center_lon, center_lat : scene centre (degrees)
        heading_deg : direction of flight over the scene centre, clockwise from the
            centre's north (degrees); Sentinel-1 is about 348 ascending and 192
            descending. ``heading()`` reports the platform heading at the satellite's
            nadir, as Sentinel-1 annotations do, which differs from it by the meridian
            convergence between nadir and scene (about 3 degrees at mid-latitudes).
        incidence_near_deg, incidence_far_deg : incidence angles at near and far range on
            the ellipsoid (degrees), which fix the swath.
        line_spacing : azimuth pixel spacing on the ground (m).
        sample_spacing : slant-range pixel spacing (m).
        altitude : orbit height above the scene (m).
        look_side : "right" (Sentinel-1) or "left".
        azimuth_extent : along-track length of the image on the ground (m); default the
            ground swath width.
        reference_time : the zero-Doppler time of the scene centre.
        wavelength : radar wavelength (m).
        """
        numbers = {"center_lon": center_lon, "center_lat": center_lat, "heading_deg": heading_deg,
                   "incidence_near_deg": incidence_near_deg, "incidence_far_deg": incidence_far_deg,
                   "line_spacing": line_spacing, "sample_spacing": sample_spacing, "altitude": altitude,
                   "wavelength": wavelength}
        if azimuth_extent is not None:
            numbers["azimuth_extent"] = azimuth_extent
        for name, value in numbers.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
                raise InvalidInputError(f"{name}={value!r}: must be a finite number")
        if not 0.0 < incidence_near_deg < incidence_far_deg < 89.0:
            raise InvalidInputError(
                "need 0 < incidence_near_deg < incidence_far_deg < 89 degrees, got "
                f"{incidence_near_deg}, {incidence_far_deg}"
            )
        if not (line_spacing > 0 and sample_spacing > 0 and altitude > 0 and wavelength > 0):
            raise InvalidInputError("line_spacing, sample_spacing, altitude and wavelength must be positive")
        if azimuth_extent is not None and not azimuth_extent > 0:
            raise InvalidInputError(f"azimuth_extent must be positive, got {azimuth_extent}")
        if not -180.0 <= center_lon <= 360.0:
            raise InvalidInputError(f"center_lon must lie between -180 and 360 degrees, got {center_lon}")
        if not (-90.0 < center_lat < 90.0):
            raise InvalidInputError(f"center_lat must lie strictly between -90 and 90, got {center_lat}")
        if look_side not in ("right", "left"):
            raise InvalidInputError(f"look_side must be 'right' or 'left', got {look_side!r}")
        lon, lat = math.radians(center_lon), math.radians(center_lat)
        a, e2 = WGS84_A, WGS84_E2
        sin_lat2 = math.sin(lat) ** 2
        prime_vertical = a / math.sqrt(1 - e2 * sin_lat2)
        meridional = a * (1 - e2) / (1 - e2 * sin_lat2) ** 1.5
        radius = math.sqrt(prime_vertical * meridional)
        up = np.array([math.cos(lat) * math.cos(lon), math.cos(lat) * math.sin(lon), math.sin(lat)])
        east = np.array([-math.sin(lon), math.cos(lon), 0.0])
        north = np.cross(up, east)
        heading = math.radians(heading_deg)
        forward = math.cos(heading) * north + math.sin(heading) * east
        right = np.cross(forward, up)
        look = right if look_side == "right" else -right
        center = ecef(np.array([lon]), np.array([lat]), np.array([0.0]))[0]
        sphere_center = center - radius * up
        orbit_radius = radius + altitude

        def central_angle(incidence_deg: float) -> float:
            inc = math.radians(incidence_deg)
            return inc - math.asin(radius * math.sin(inc) / orbit_radius)

        def slant(beta: float) -> float:
            return math.sqrt(radius**2 + orbit_radius**2 - 2 * radius * orbit_radius * math.cos(beta))

        mid = 0.5 * (incidence_near_deg + incidence_far_deg)
        beta_center = central_angle(mid)
        position = sphere_center + orbit_radius * (math.cos(beta_center) * up - math.sin(beta_center) * look)
        speed = math.sqrt(_GM / orbit_radius)
        velocity = speed * forward
        beta_near, beta_far = central_angle(incidence_near_deg), central_angle(incidence_far_deg)
        range_near, range_far = slant(beta_near), slant(beta_far)
        samples = math.floor((range_far - range_near) / sample_spacing) + 1
        if azimuth_extent is None:
            azimuth_extent = radius * (beta_far - beta_near)
        # A straight orbit's zero-Doppler planes are parallel: lines are speed * interval
        # apart on the ground as in orbit.
        line_interval = line_spacing / speed
        lines = round(azimuth_extent / line_spacing) + 1
        reference_time = np.datetime64(reference_time, "ns")
        half_duration = 0.5 * (lines - 1) * line_interval
        first_line = reference_time - np.int64(round(half_duration * 1e9)) * _NS
        # Margin so that terrain just outside the image, and far-range targets that the
        # straight line sees earlier or later, still have a valid zero-Doppler solution.
        margin = max(10.0, 2.0 * half_duration)
        orbit = Orbit.straight(reference_time, position, velocity, -half_duration - margin, half_duration + margin)
        grid = ImageGrid.slant_range_grid(first_line, line_interval, lines, samples, range_near, sample_spacing)
        attrs = {
            "product": "synthetic",
            "mission": "synthetic Sentinel-1-like",
            "product_type": "synthetic",
            "center_lon": float(center_lon),
            "center_lat": float(center_lat),
            "incidence_near_deg": float(incidence_near_deg),
            "incidence_far_deg": float(incidence_far_deg),
            "altitude_m": float(altitude),
        }
        return cls(orbit, grid, look_side, float(wavelength), attrs)

    @classmethod
    def from_sentinel1(
        cls,
        path: str | os.PathLike[str],
        measurement: str = "IW/VV",
        *,
        burst: int | None = None,
        orbit_degree: int = 5,
    ) -> RadarGeometry:
        """Geometry of a Sentinel-1 product, read from its annotation with xarray-sentinel.

        Parameters
        ----------
        path : a ``.SAFE`` directory, its ``manifest.safe``, or a ``.zip`` of the SAFE.
            The measurement TIFF is not needed.
        measurement : swath and polarisation, e.g. "IW/VV" (GRD), "IW2/VV" (SLC). For an
            SLC, "IW/VV" picks the sub-swath when only one has its annotation; a trailing
            "/N" selects burst N as xarray-sentinel numbers them (same as ``burst=N``).
        burst : SLC burst index as xarray-sentinel numbers them; the image grid is then
            that burst. Without it an SLC sub-swath is one continuous (debursted) grid.
        orbit_degree : degree of the polynomial fitted to the annotated state vectors.
        """
        from .preprocess.sentinel1 import read_annotation

        info = read_annotation(path, measurement, burst=burst)
        orbit_ds = info["orbit"]
        orbit = Orbit.from_state_vectors(
            orbit_ds["azimuth_time"].values,
            orbit_ds["position"].values.T,
            orbit_ds["velocity"].values.T,
            degree=orbit_degree,
        )
        image = info["image"]
        product_type = info["product_type"]
        dt = float(image["azimuthTimeInterval"])
        if product_type == "GRD":
            cc = info["coordinate_conversion"]
            if np.any(cc["gr0"].values != 0.0):
                raise ProductError(
                    "the GRD coordinate conversion has a non-zero gr0, which sarheight does not "
                    "handle; please report the product name"
                )
            grid = ImageGrid.ground_range_grid(
                np.datetime64(image["productFirstLineUtcTime"], "ns"), dt,
                int(image["numberOfLines"]), int(image["numberOfSamples"]),
                float(image["rangePixelSpacing"]), cc["azimuth_time"].values,
                cc["sr0"].values, cc["srgrCoefficients"].values, info["bistatic_reference_range"],
            )
        else:
            first_line, lines = info["slc_first_line_time"], info["slc_lines"]
            range_sampling_rate = float(info["product"]["rangeSamplingRate"])
            grid = ImageGrid.slant_range_grid(
                first_line, dt, lines, int(image["numberOfSamples"]),
                float(image["slantRangeTime"]) * SPEED_OF_LIGHT / 2,
                SPEED_OF_LIGHT / (2 * range_sampling_rate), info["bistatic_reference_range"],
            )
        wavelength = SPEED_OF_LIGHT / float(info["product"]["radarFrequency"])
        look_side = "right"  # every Sentinel-1 mode looks right
        attrs = {k: v for k, v in info["attrs"].items()}
        return cls(orbit, grid, look_side, wavelength, attrs)


# --------------------------------------------------------------------------------------
# Backward geocoding
# --------------------------------------------------------------------------------------


def geocode_arrays(
    lon_rad: np.ndarray,
    lat_rad: np.ndarray,
    height: np.ndarray,
    geometry: RadarGeometry,
    *,
    compute: Compute | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Backward geocoding of plain arrays (no validation); the engine of :func:`backward_geocode`.

    ``lon_rad``, ``lat_rad`` are longitude and latitude (rad) of the shape of ``height``
    (m above the ellipsoid); broadcast views of 1-D axes are the fast case
    (:func:`sarheight.compute.geocode`, which runs it on ``compute``: the numba kernels by
    default). Returns azimuth time (datetime64[ns]), slant range (m), line, sample
    (float64) and the ellipsoid incidence angle (float32, degrees), each of the shape of
    ``height``.
    """
    out = geocode(lon_rad, lat_rad, height, geometry.geocoding_geometry(), compute=compute)
    return out.azimuth_time_ns.view("datetime64[ns]"), out.slant_range, out.line, out.sample, out.incidence_angle


def backward_geocode(dem: Any, geometry: RadarGeometry, *, check_overlap: bool = True,
                     device: str | None = None) -> xr.Dataset:
    """Zero-Doppler backward geocoding of every DEM cell.

    Parameters
    ----------
    dem : a DEM as :func:`sarheight.dem.open_dem` takes it (path, DataArray with CRS, or
        ``(array, transform, crs)``); heights must be, or are converted to, WGS84
        ellipsoidal heights (m).
    geometry : the acquisition geometry.
    check_overlap : raise GeometryError when no DEM cell falls inside the image.
    device : where it runs: None or ``"cpu"`` (the numba kernels on the CPU's threads),
        ``"cuda"`` or ``"cuda:N"`` (torch on that GPU, float64); refused in one line where
        the machine has none (:func:`sarheight.compute.compute_for`).

    Returns
    -------
    xr.Dataset on the DEM grid (y, x) with the DEM's CRS:
        ``azimuth_time`` (datetime64[ns]), ``slant_range`` (m, float64), ``line`` and
        ``sample`` (float64 fractional indices into the product grid, NaN outside the
        image), ``incidence_angle`` (ellipsoid incidence angle, degrees, float32).
    """
    from .dem import geodetic_coordinates, open_dem

    if not isinstance(geometry, RadarGeometry):
        raise InvalidInputError(
            f"geometry must be a RadarGeometry (from_sentinel1 or synthetic), got {type(geometry).__name__}"
        )
    compute = compute_for(device)
    # The heights are only read here: no copy of a DEM that is already ellipsoidal.
    dem = open_dem(dem, copy=False)
    # Broadcast views for a geographic DEM (the kernel then takes one sine/cosine per
    # row/column), full grids otherwise.
    lon, lat = geodetic_coordinates(dem, radians=True)
    height = np.ascontiguousarray(dem.values)
    if check_overlap:
        _require_overlap(lon, lat, height, geometry)
    az, slant_range, line, sample, incidence = geocode_arrays(lon, lat, height, geometry, compute=compute)
    dims = ("y", "x")
    # The DEM's CRS coordinate (WKT, CF attributes, GeoTransform of this very grid) comes
    # along: rio.write_crs would rebuild it from the CRS at some milliseconds' cost.
    coords = {name: dem.coords[name].variable for name in (*dims, "spatial_ref") if name in dem.coords}
    ds = xr.Dataset(
        {
            "azimuth_time": (dims, az, {"long_name": "zero-Doppler azimuth time"}),
            "slant_range": (dims, slant_range, {"units": "m", "long_name": "slant range"}),
            "line": (dims, line, {"long_name": "fractional line index into the product grid"}),
            "sample": (dims, sample, {"long_name": "fractional sample index into the product grid"}),
            "incidence_angle": (
                dims, incidence, {"units": "degree", "long_name": "incidence angle on the ellipsoid"}
            ),
        },
        coords=coords,
        attrs={**geometry.to_attrs(), "vertical_datum": dem.attrs.get("vertical_datum", "ellipsoid")},
    )
    if "spatial_ref" in coords:
        for variable in ds.data_vars.values():
            variable.encoding["grid_mapping"] = "spatial_ref"
        ds.encoding["grid_mapping"] = "spatial_ref"
    elif dem.rio.crs is not None:
        ds.rio.write_crs(dem.rio.crs, inplace=True)
    return ds


def geocoding_products(geocoded: xr.Dataset) -> xr.Dataset:
    """The variables of :func:`backward_geocode` as GeoTIFF-ready float bands: slant range,
    incidence angle, line, sample and ``azimuth_time_s``, the zero-Doppler time in
    seconds since the earliest (GeoTIFF stores no times)."""
    first = geocoded["azimuth_time"].min().values
    seconds = (geocoded["azimuth_time"] - first) / np.timedelta64(1, "s")
    out = geocoded[["slant_range", "incidence_angle", "line", "sample"]].copy()
    out["azimuth_time_s"] = seconds.astype(np.float64).assign_attrs(
        units="s", long_name=f"zero-Doppler time since {np.datetime_as_string(first)}"
    )
    return out


def _require_overlap(lon: np.ndarray, lat: np.ndarray, height: np.ndarray, geometry: RadarGeometry) -> None:
    """Raise GeometryError, before the full run, when the DEM cannot reach the image.

    About 64 x 64 cells (the border included) are geocoded without clipping; the bounding
    box of their (line, sample) positions, widened by the largest step between sampled
    neighbours, must meet the image. The test is conservative: a DEM it passes may still
    have no cell inside, but a DEM it refuses has none.
    """
    rows, cols = height.shape
    rr = np.unique(np.r_[np.arange(0, rows, max(1, rows // 64)), rows - 1])
    cc = np.unique(np.r_[np.arange(0, cols, max(1, cols // 64)), cols - 1])
    sub = np.ix_(rr, cc)
    h = np.asarray(height[sub], dtype=np.float64)
    if not np.isfinite(h).any():
        return  # the sample hit only voids: nothing to judge by
    positions = ecef(np.ascontiguousarray(lon[sub]).ravel(), np.ascontiguousarray(lat[sub]).ravel(), h.ravel())
    k = geometry.kernel_arguments()
    times, ranges = kernels.geocode_cells(
        np.ascontiguousarray(positions[:, 0]), np.ascontiguousarray(positions[:, 1]),
        np.ascontiguousarray(positions[:, 2]), k["coeffs"], k["t_center"], k["t_scale"], k["t_valid_min"], k["t_valid_max"],
    )
    ok = np.isfinite(times)
    if not ok.any():
        raise GeometryError(
            f"no DEM cell has a zero-Doppler time within the orbit span ({geometry.orbit.start_time} .. "
            f"{geometry.orbit.stop_time}): DEM and product do not overlap; check the DEM's CRS and "
            "extent against the product footprint"
        )
    line_time = times - k["bistatic_rate"] * (ranges - k["bistatic_reference_range"])
    line = ((line_time - k["first_line_time"]) / k["line_interval"]).reshape(h.shape)
    sample = kernels.samples_of_slant_ranges(
        line_time, ranges, k["rm_times"], k["rm_sr0"], k["rm_coeffs"], k["rm_spacing"]
    ).reshape(h.shape)
    steps = [np.abs(np.diff(v, axis=ax)) for v in (line, sample) for ax in (0, 1)]
    margin = max((float(np.nanmax(s)) for s in steps if np.isfinite(s).any()), default=0.0)
    lines, samples = geometry.grid.shape
    if (
        np.nanmax(line) + margin < -0.5
        or np.nanmin(line) - margin > lines - 0.5
        or np.nanmax(sample) + margin < -0.5
        or np.nanmin(sample) - margin > samples - 0.5
    ):
        raise GeometryError(
            f"the DEM lies entirely outside the radar image ({lines} x {samples} pixels, "
            f"{geometry.grid.first_line_time} .. {geometry.grid.last_line_time}); it maps to lines "
            f"{np.nanmin(line):.0f} .. {np.nanmax(line):.0f} and samples {np.nanmin(sample):.0f} .. "
            f"{np.nanmax(sample):.0f}: check that DEM and product cover the same area, the DEM's "
            "CRS, and for an SLC the sub-swath"
        )
