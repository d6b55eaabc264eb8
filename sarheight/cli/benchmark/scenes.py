"""The benchmark's scenes: synthetic mountains under a straight Sentinel-1-like orbit near
Rome, and their speckled observation, built through the public API alone (``open_dem``,
``RadarGeometry.synthetic``), so that any version of sarheight can be timed on them.

Imports nothing of sarheight at its top: a worker (:mod:`.worker`) loads this file by path
beside another version's package.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

#: Scene centre (lon, lat, degrees) and ground-range pixel (m).
CENTER = (12.6, 41.9)
PIXEL_SPACING = 10.0
#: DEM cell size (m) of the two cases.
CASES = {"pixel": 10.0, "coarse": 30.0}
INCIDENCE = (30.0, 46.0)
HEADING = 193.0
RMS_SLOPE = 0.5
OUTER_SCALE_M = 5120.0
LOOKS = 4.4
STEPS = ("simulate", "reconstruct")
PROJECTIONS = ("exact", "bilinear")

WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3


def mountain_terrain(n: int, spacing: float = PIXEL_SPACING, seed: int = 0) -> np.ndarray:
    """Heights (m, float32, min 0) of an ``n`` x ``n`` DEM of ``spacing`` m cells: 1/f^2
    noise flat beyond 5 km (``OUTER_SCALE_M``), scaled to an RMS slope of ``RMS_SLOPE``
    (every size and spacing has the same slope statistics)."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(n)[:, None], np.fft.rfftfreq(n)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fx, fy), spacing / OUTER_SCALE_M) ** 2
    amplitude[0, 0] = 0.0
    field = np.fft.irfft2(amplitude * np.exp(2j * np.pi * rng.random(amplitude.shape)), s=(n, n))
    d_row, d_col = np.gradient(field, spacing)
    field *= RMS_SLOPE / np.sqrt(np.mean(d_row**2 + d_col**2))
    field -= field.min()
    return field.astype(np.float32)


def radii_of_curvature(lat: float) -> tuple[float, float]:
    """WGS84 radii of curvature (m) at latitude ``lat`` (degrees): prime vertical, meridional."""
    sin2 = math.sin(math.radians(lat)) ** 2
    return WGS84_A / math.sqrt(1 - WGS84_E2 * sin2), WGS84_A * (1 - WGS84_E2) / (1 - WGS84_E2 * sin2) ** 1.5


def grid_transform(n: int, spacing: float) -> tuple[float, float, float, float, float, float]:
    """Affine coefficients (a, b, c, d, e, f) of a geographic grid of ``n`` x ``n`` cells of
    ``spacing`` m, centred on ``CENTER``."""
    lon, lat = CENTER
    prime_vertical, meridional = radii_of_curvature(lat)
    d_lat = math.degrees(spacing / meridional)
    d_lon = math.degrees(spacing / (prime_vertical * math.cos(math.radians(lat))))
    return d_lon, 0.0, lon - n * d_lon / 2, 0.0, -d_lat, lat + n * d_lat / 2


def synthetic_geometry() -> Any:
    """The geometry of every case: a straight orbit (heading ``HEADING``, incidence
    ``INCIDENCE``) over ``CENTER``, ``PIXEL_SPACING`` m lines and ground-range pixels."""
    from sarheight.geometry import RadarGeometry

    mid = math.radians(0.5 * sum(INCIDENCE))
    return RadarGeometry.synthetic(
        center_lon=CENTER[0], center_lat=CENTER[1], heading_deg=HEADING, incidence_near_deg=INCIDENCE[0],
        incidence_far_deg=INCIDENCE[1], line_spacing=PIXEL_SPACING,
        # sample_spacing is the slant-range spacing: this makes the ground-range pixel
        # PIXEL_SPACING at mid incidence.
        sample_spacing=PIXEL_SPACING * math.sin(mid),
    )


def synthetic_scene(side: int, spacing: float) -> tuple[Any, Any]:
    """The DEM (mountains, ``side`` cells of ``spacing`` m) and the geometry of one case,
    through the public API alone."""
    from affine import Affine

    from sarheight.dem import open_dem

    heights = mountain_terrain(side, spacing)
    dem = open_dem((heights, Affine(*grid_transform(side, spacing)), "EPSG:4326"), vertical_datum="ellipsoid")
    return dem, synthetic_geometry()


def speckled(simulation: Any, seed: int = 1) -> Any:
    """The simulated image times ``LOOKS``-look gamma speckle: a beta0-like observation (float32)."""
    area = simulation["simulated_area"]
    rng = np.random.default_rng(seed)
    values = np.nan_to_num(area.values.astype(np.float64)) * rng.gamma(LOOKS, 1.0 / LOOKS, size=area.shape)
    return area.copy(data=values.astype(np.float32)).rename("beta0")
