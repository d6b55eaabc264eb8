"""Numba kernels of sarheight: plain arrays in, arrays out.

Kernels import only numpy, numba and math. Geometry is float64; angles are radians;
times are float seconds since a reference epoch chosen by the caller.
"""

from .geodesy import WGS84_A, WGS84_E2, geodetic_to_ecef, geodetic_to_ecef_grid
from .orbit import orbit_state, orbit_states
from .radar_grid import ground_range_of, sample_of_slant_range, slant_range_of_sample
from .zero_doppler import geocode_cells, geocode_grid

__all__ = [
    "WGS84_A",
    "WGS84_E2",
    "geodetic_to_ecef",
    "geodetic_to_ecef_grid",
    "orbit_state",
    "orbit_states",
    "ground_range_of",
    "sample_of_slant_range",
    "slant_range_of_sample",
    "geocode_cells",
    "geocode_grid",
]
