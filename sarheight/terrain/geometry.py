"""The pass of a terrain scene: its direction from the heading, and the Sentinel-1-like
synthetic geometry centred on a DEM that simulated scenes are observed from.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Literal

from ..dem import checked_dem
from ..errors import (
    InvalidInputError,
)
from ..geometry import RadarGeometry

logger = logging.getLogger(__name__)


PassDirection = Literal["ascending", "descending"]


#: Sentinel-1's headings over mid-latitudes (degrees clockwise from north).
PASS_HEADINGS: dict[PassDirection, float] = {"ascending": 348.0, "descending": 192.0}


def pass_direction(geometry: RadarGeometry) -> PassDirection:
    """``"ascending"`` when the platform flies northward over the scene, else ``"descending"``."""
    return heading_direction(geometry.heading())


def heading_direction(heading_deg: float) -> PassDirection:
    return "ascending" if math.cos(math.radians(heading_deg)) > 0 else "descending"


def scene_geometry(
    dem: Any,
    pass_direction: PassDirection = "ascending",
    *,
    incidence_near_deg: float = 30.0,
    incidence_far_deg: float = 46.0,
    look_side: Literal["right", "left"] = "right",
    heading_offset_deg: float = 0.0,
    pixel_spacing_m: float | None = None,
) -> RadarGeometry:
    """A Sentinel-1-like synthetic geometry centred on ``dem``, for simulated scenes.

    Parameters
    ----------
    dem : anything :func:`sarheight.dem.open_dem` takes.
    pass_direction : ``"ascending"`` (heading 348 degrees) or ``"descending"`` (192).
    incidence_near_deg, incidence_far_deg : the swath's incidence range (degrees;
        Sentinel-1 IW: 30-46).
    look_side : ``"right"`` (Sentinel-1) or ``"left"``: a left-looking pass sees the
        slopes a right-looking one has in layover from the other side.
    heading_offset_deg : added to the pass's heading (degrees), to vary the geometry.
    pixel_spacing_m : ground size of a radar pixel in azimuth and range (m); default the
        DEM's cell size, so that the scene's inputs keep the SAR's resolution.
    """
    if pass_direction not in PASS_HEADINGS:
        raise InvalidInputError(f"pass_direction must be 'ascending' or 'descending', got {pass_direction!r}")
    checked = checked_dem(dem, copy=False)
    dem = checked.heights
    spacing = float(pixel_spacing_m) if pixel_spacing_m is not None else checked.grid.side_m
    if not (math.isfinite(spacing) and spacing > 0):
        raise InvalidInputError(f"pixel_spacing_m must be a positive number of metres, got {pixel_spacing_m!r}")
    west, south, east, north = dem.rio.transform_bounds("EPSG:4326")
    dy, dx = checked.grid.size_m
    extent = math.hypot(dem.shape[0] * dy, dem.shape[1] * dx)
    mid_incidence = math.radians(0.5 * (incidence_near_deg + incidence_far_deg))
    return RadarGeometry.synthetic(
        center_lon=0.5 * (west + east),
        center_lat=0.5 * (south + north),
        heading_deg=(PASS_HEADINGS[pass_direction] + heading_offset_deg) % 360.0,
        incidence_near_deg=incidence_near_deg,
        incidence_far_deg=incidence_far_deg,
        line_spacing=spacing,
        # Slant-range pixels whose ground size at mid swath is the cell size.
        sample_spacing=spacing * math.sin(mid_incidence),
        look_side=look_side,
        azimuth_extent=1.5 * extent + 10e3,
    )
