"""The numpy backend of the kernel door: the pure-numpy twins (``twins/`` of a source
checkout), written for clarity, one thread: the reference the other backends are held to."""

from __future__ import annotations

import numpy as np

from .bundles import Geocoded, GeocodingGeometry

__all__ = ["ecef", "geocode"]


def ecef(lon_rad: np.ndarray, lat_rad: np.ndarray, height: np.ndarray, *, device: str) -> np.ndarray:
    """:func:`sarheight.compute.ecef` with the twin ``twins.geometry.geodetic_to_ecef``."""
    from twins import geometry as twins

    del device  # the CPU
    return twins.geodetic_to_ecef(lon_rad, lat_rad, height)


def geocode(lon_rad: np.ndarray, lat_rad: np.ndarray, height: np.ndarray, geometry: GeocodingGeometry, *,
            clip: bool, device: str) -> Geocoded:
    """:func:`sarheight.compute.geocode` with the twin ``twins.geometry.geocode``."""
    from twins import geometry as twins

    del device  # the CPU
    g = geometry
    arguments = {
        "coeffs": g.orbit_coeffs, "t_center": g.orbit_t_center, "t_scale": g.orbit_t_scale,
        "t_valid_min": g.valid_min, "t_valid_max": g.valid_max, "first_line_time": g.first_line_time,
        "line_interval": g.line_interval, "n_lines": g.lines, "n_samples": g.samples, "rm_times": g.range_times,
        "rm_sr0": g.range_sr0, "rm_coeffs": g.range_coeffs, "rm_spacing": g.range_spacing,
        "look_sign": g.look_sign, "bistatic_rate": g.bistatic_rate,
        "bistatic_reference_range": g.bistatic_reference_range,
    }
    with np.errstate(invalid="ignore"):
        seconds, slant_range, line, sample, incidence = twins.geocode(lon_rad, lat_rad, height, arguments, clip=clip)
    solved = np.isfinite(seconds)
    azimuth_ns = np.where(solved, g.reference_ns + np.round(np.nan_to_num(seconds) * 1e9).astype(np.int64),
                          np.iinfo(np.int64).min)
    return Geocoded(azimuth_ns, slant_range, line, sample, incidence.astype(np.float32))
