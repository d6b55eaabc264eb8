"""A radar acquisition's geometry (:class:`RadarGeometry`): orbit, image grid and look
side, read from a Sentinel-1 product or made for a local area, and the conversions between
(line, sample) and (zero-Doppler time, slant range)."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..compute import GeocodingGeometry, samples_of_slant_ranges, slant_ranges_of_samples
from ..errors import GeometryError, InvalidInputError, ProductError
from .image_grid import ImageGrid
from .orbit import Orbit
from .synthetic import synthetic_geometry
from .times import SENTINEL1_WAVELENGTH, SPEED_OF_LIGHT, LookSide, as_nanoseconds, datetime_from_seconds


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
        g = self.geocoding_geometry()
        line, sample = np.broadcast_arrays(np.asarray(line, float), np.asarray(sample, float))
        line_time = g.first_line_time + line * g.line_interval
        slant_range = slant_ranges_of_samples(line_time, sample, g)
        t = line_time + g.bistatic_rate * (slant_range - g.bistatic_reference_range)
        return datetime_from_seconds(t, self.reference_time), slant_range

    def time_range_to_line_sample(self, time: Any, slant_range: Any) -> tuple[np.ndarray, np.ndarray]:
        """Fractional (line, sample) of zero-Doppler ``time`` (datetime64) and slant range (m)."""
        g = self.geocoding_geometry()
        t, r = np.broadcast_arrays(self.orbit.seconds(time), np.asarray(slant_range, float))
        line_time = t - g.bistatic_rate * (r - g.bistatic_reference_range)
        sample = samples_of_slant_ranges(line_time, r, g)
        return (line_time - g.first_line_time) / g.line_interval, sample

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

    #: A Sentinel-1-like geometry with a straight-line orbit over a local area
    #: (:func:`sarheight.geometry.synthetic.synthetic_geometry`).
    synthetic = classmethod(synthetic_geometry)  # type: ignore[var-annotated]

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
        from ..preprocess.sentinel1 import read_annotation

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
            if cc is None:
                raise ProductError("the GRD annotation has no coordinate conversion (slant to ground range): "
                                   "the product is incomplete; download it again")
            if np.any(cc["gr0"].values != 0.0):
                raise ProductError(
                    "the GRD coordinate conversion has a non-zero gr0, which sarheight does not "
                    "handle; please report the product name"
                )
            grid = ImageGrid.ground_range_grid(
                as_nanoseconds(image["productFirstLineUtcTime"]), dt,
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
        look_side: LookSide = "right"  # every Sentinel-1 mode looks right
        attrs = {k: v for k, v in info["attrs"].items()}
        return cls(orbit, grid, look_side, wavelength, attrs)

