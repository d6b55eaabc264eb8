"""Numba kernels of sarheight: plain arrays in, arrays out.

Kernels import only numpy, numba and math. Geometry is float64; angles are radians;
times are float seconds since a reference epoch chosen by the caller.
"""

from pathlib import Path

from . import facets, geodesy, orbit, projection, radar_grid, simulation, visibility, zero_doppler
from ._cache import refresh_stale_caches
from .geodesy import WGS84_A, WGS84_E2, geodetic_to_ecef, geodetic_to_ecef_grid
from .orbit import orbit_state, orbit_states
from .radar_grid import (
    ground_range_of,
    sample_of_slant_range,
    samples_of_slant_ranges,
    slant_range_of_sample,
    slant_ranges_of_samples,
)
from .zero_doppler import geocode_cells, geocode_grid

# Before any kernel runs: drop cached compilations older than any kernel source.
refresh_stale_caches(Path(__file__).parent,
                     (facets, geodesy, orbit, projection, radar_grid, simulation, visibility, zero_doppler))

__all__ = [
    "WGS84_A",
    "WGS84_E2",
    "geocode_cells",
    "geocode_grid",
    "geodetic_to_ecef",
    "geodetic_to_ecef_grid",
    "ground_range_of",
    "orbit_state",
    "orbit_states",
    "sample_of_slant_range",
    "samples_of_slant_ranges",
    "slant_range_of_sample",
    "slant_ranges_of_samples",
]
