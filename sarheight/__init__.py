"""sarheight: physics-plus-learning SAR toolkit.

Layover/shadow simulation and reconstruction from a DEM and the Sentinel-1 geometry,
and models for terrain height, building height and local climate zones.
"""

from ._version import __version__
from .errors import (
    DatumError,
    GeometryError,
    InvalidInputError,
    MissingInputError,
    ProductError,
    SarHeightError,
    UnsupportedProductError,
)

__all__ = [
    "DatumError",
    "GeometryError",
    "InvalidInputError",
    "MissingInputError",
    "ProductError",
    "SarHeightError",
    "UnsupportedProductError",
    "__version__",
]
