"""A Sentinel-1-like geometry over a local area: a straight-line orbit tangent at the
platform's altitude and a slant-range image centred on the scene
(:meth:`sarheight.geometry.RadarGeometry.synthetic`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np

from ..compute import WGS84_A, WGS84_E2, ecef
from ..errors import InvalidInputError
from .image_grid import ImageGrid
from .orbit import Orbit
from .times import EARTH_GM, NANOSECOND, SENTINEL1_WAVELENGTH, LookSide, as_nanoseconds

#: The geometry class the constructor makes (:class:`sarheight.geometry.RadarGeometry`).
RadarGeometryT = TypeVar("RadarGeometryT")
#: How the class is made from its parts: orbit, image grid, look side, wavelength, description.
GeometryMaker = Callable[[Orbit, ImageGrid, LookSide, float, dict[str, Any]], RadarGeometryT]


def synthetic_geometry(
    cls: GeometryMaker[RadarGeometryT],
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
) -> RadarGeometryT:
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
    speed = math.sqrt(EARTH_GM / orbit_radius)
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
    reference_time = as_nanoseconds(reference_time)
    half_duration = 0.5 * (lines - 1) * line_interval
    first_line = reference_time - np.int64(round(half_duration * 1e9)) * NANOSECOND
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

