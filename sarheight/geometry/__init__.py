"""Radar acquisition geometry: orbit, image grid and backward geocoding.

A :class:`RadarGeometry` is an :class:`Orbit` (a polynomial fitted to state vectors), an
:class:`ImageGrid` (the azimuth and range axes of the product) and the look side. It is
read from a Sentinel-1 SAFE product with :meth:`RadarGeometry.from_sentinel1` (the
annotation is enough) or built for a local area with :meth:`RadarGeometry.synthetic`.
:func:`backward_geocode` solves the zero-Doppler condition for every cell of a DEM.

Times are ``numpy.datetime64[ns]`` at the surface and float seconds since
``orbit.reference_time`` inside; lengths in metres; angles in degrees at the surface.

Modules, lowest first: :mod:`.times` (times and constants), :mod:`.orbit`,
:mod:`.image_grid` (the image's axes and windows of them), :mod:`.synthetic` (a straight
orbit over a local area), :mod:`.radar` (:class:`RadarGeometry`), :mod:`.geocoding`.
"""

from .geocoding import backward_geocode, geocode_arrays, geocoding_products
from .image_grid import ImageGrid, RadarWindow
from .orbit import Orbit
from .radar import RadarGeometry
from .times import (
    SENTINEL1_FREQUENCY,
    SENTINEL1_WAVELENGTH,
    SPEED_OF_LIGHT,
    LookSide,
    datetime_from_seconds,
    seconds_since,
)

__all__ = [
    "SENTINEL1_FREQUENCY",
    "SENTINEL1_WAVELENGTH",
    "SPEED_OF_LIGHT",
    "ImageGrid",
    "LookSide",
    "Orbit",
    "RadarGeometry",
    "RadarWindow",
    "backward_geocode",
    "datetime_from_seconds",
    "geocode_arrays",
    "geocoding_products",
    "seconds_since",
]
