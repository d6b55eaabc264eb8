"""The azimuth and range axes of a radar image (:class:`ImageGrid`) and a rectangle of
them (:class:`RadarWindow`)."""

from __future__ import annotations

import dataclasses
from typing import Any, Literal, NamedTuple

import numpy as np

from ..errors import InvalidInputError
from .times import NANOSECOND, as_datetime64, as_nanoseconds


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
        object.__setattr__(self, "first_line_time", as_nanoseconds(self.first_line_time))
        object.__setattr__(self, "range_times", as_datetime64(self.range_times).ravel())
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
            np.asarray([first_line_time], "datetime64[ns]"), np.array([first_sample_slant_range]),
            np.array([[0.0, 1.0]]), float(slant_range_spacing), "slant_range", bistatic_reference_range,
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
        return self.first_line_time + np.int64(round((self.lines - 1) * self.line_interval * 1e9)) * NANOSECOND

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
        first = self.first_line_time + np.int64(round(line_start * self.line_interval * 1e9)) * NANOSECOND
        # Shifting the sample origin subtracts a constant ground range: add it to the
        # constant coefficient so the polynomials keep their slant-range reference.
        coeffs = self.range_coeffs.copy()
        coeffs[:, 0] -= sample_start * self.range_spacing
        return dataclasses.replace(
            self, first_line_time=first, lines=line_stop - line_start,
            samples=sample_stop - sample_start, range_coeffs=coeffs,
        )



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


