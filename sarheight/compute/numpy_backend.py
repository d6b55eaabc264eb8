"""The numpy backend of the kernel door: the pure-numpy twins (``twins/`` of a source
checkout), written for clarity, one thread: the reference the other backends are held to."""

from __future__ import annotations

import numpy as np

from .bundles import Geocoded, GeocodingGeometry, OrbitPolynomial

__all__ = ["ecef", "geocode", "intensity_flags", "interpolate_rows", "lee", "orbit_states", "refined_lee",
           "samples_of_slant_ranges", "weighted_mean"]


def intensity_flags(image: np.ndarray, *, device: str) -> tuple[bool, bool, bool, bool]:
    """:func:`sarheight.compute.intensity_flags` with numpy's reductions."""
    del device  # the CPU
    with np.errstate(invalid="ignore"):
        return (bool(np.isinf(image).any()), bool((image < 0).any()), bool(np.isfinite(image).any()),
                bool(np.isnan(image).any()))


def weighted_mean(weighted_sum: np.ndarray, weight_sum: np.ndarray, *, device: str) -> np.ndarray:
    """:func:`sarheight.compute.weighted_mean` with numpy."""
    del device  # the CPU
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight_sum > 0, weighted_sum / weight_sum, np.nan)


def interpolate_rows(along: np.ndarray, row_node: np.ndarray, row_weight: np.ndarray, scale: float,
                     out: np.ndarray, *, device: str) -> None:
    """:func:`sarheight.compute.interpolate_rows` with the twin ``twins.geometry.interpolate_rows``."""
    from twins import geometry as twins

    del device  # the CPU
    out[...] = twins.interpolate_rows(along, row_node, row_weight, scale)


def lee(image: np.ndarray, window: int, looks: float, *, device: str) -> np.ndarray:
    """:func:`sarheight.compute.lee` with the twin ``twins.geometry.lee``."""
    from twins import geometry as twins

    del device  # the CPU
    return twins.lee(image, window, looks)


def refined_lee(image: np.ndarray, looks: float, *, device: str) -> np.ndarray:
    """:func:`sarheight.compute.refined_lee` with the twin ``twins.geometry.refined_lee``."""
    from twins import geometry as twins

    del device  # the CPU
    return twins.refined_lee(image, looks)


def orbit_states(orbit: OrbitPolynomial, seconds: np.ndarray, *, device: str
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`sarheight.compute.orbit_states` with the twin ``twins.geometry.orbit_state``."""
    from twins import geometry as twins

    del device  # the CPU
    return twins.orbit_state(np.asarray(orbit.coeffs, dtype=np.float64), orbit.t_center, orbit.t_scale, seconds)


def samples_of_slant_ranges(line_time: np.ndarray, slant_range: np.ndarray, geometry: GeocodingGeometry, *,
                            device: str) -> np.ndarray:
    """:func:`sarheight.compute.samples_of_slant_ranges` with the twin ``twins.geometry.ground_range``."""
    from twins import geometry as twins

    del device  # the CPU
    g = geometry
    known = np.isfinite(line_time) & np.isfinite(slant_range)
    axis = twins.ground_range(np.where(known, line_time, 0.0), slant_range, g.range_times, g.range_sr0,
                              g.range_coeffs)
    return np.where(known, axis / g.range_spacing, np.nan)


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
    with np.errstate(invalid="ignore"):
        seconds, slant_range, line, sample, incidence = twins.geocode(lon_rad, lat_rad, height,
                                                                      geometry.kernel_arguments(), clip=clip)
    solved = np.isfinite(seconds)
    azimuth_ns = np.where(solved, geometry.reference_ns + np.round(np.nan_to_num(seconds) * 1e9).astype(np.int64),
                          np.iinfo(np.int64).min)
    return Geocoded(azimuth_ns, slant_range, line, sample, incidence.astype(np.float32))
