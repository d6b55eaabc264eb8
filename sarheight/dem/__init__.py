"""Digital elevation models: open, validate, vertical datum, coordinates, terrain attributes.

The radar geometry needs heights above the WGS84 ellipsoid. DEMs are usually distributed
with heights above a geoid (EGM96 for SRTM and the Copernicus DEM, EGM2008 for others); the
difference, the geoid undulation N, is 30-100 m over most of the Earth, and ignoring it is the
most common cause of badly placed layover and shadow. :func:`open_dem` therefore converts
geoid heights H to ellipsoidal heights h = H + N, with N from a grid the user gives or from
PROJ's grids, and refuses to guess when neither is available.

The modules, lowest first: ``crs`` (the CRS, its vertical datum, the grid checked),
``coordinates`` (WGS84 longitude and latitude of the cells), ``geoid`` (undulations and
datums), ``opening`` (:func:`open_dem`, the heights' plausibility) and ``attributes``
(slope, aspect, ECEF coordinates). Their public names are importable from here.

Public functions
----------------
open_dem
    Read or wrap a DEM, validate it and bring it to WGS84 ellipsoidal heights.
checked_dem, Dem
    The same as a :class:`Dem`: heights checked once and their grid measured, which the
    functions that work on a DEM take without checking it again.
geodetic_coordinates
    WGS84 longitude and latitude (degrees or radians) of every cell centre.
geodetic_at_rows
    The same for a sheared strip of cells (the block-wise masks).
horizontal_crs, is_wgs84_degrees
    A DEM's horizontal CRS, and whether it needs no transformation to geodetic coordinates.
split_crs
    The horizontal part of any CRS and the vertical datum it declares.
geoid_undulation
    The geoid undulation (m) at given longitudes and latitudes, by open_dem's rules.
ecef_coordinates
    Earth-centred Earth-fixed coordinates (m) of every cell.
terrain_attributes
    Slope and aspect (degrees) through richdem.
"""

from __future__ import annotations

from .attributes import ecef_coordinates, terrain_attributes
from .coordinates import geodetic_at_rows, geodetic_coordinates
from .crs import horizontal_crs, is_wgs84_degrees, split_crs
from .geoid import (
    OUTPUT_DATUMS,
    PACKAGED_EGM96,
    VERTICAL_DATUMS,
    crs_with_datum,
    dataset_in_datum,
    geoid_source,
    geoid_undulation,
    heights_in_datum,
    output_datum,
    output_geoid_source,
)
from .opening import (
    FEET_UNITS,
    MAX_CORRECTION_M,
    STEEP_SHARE,
    Dem,
    DemSource,
    check_heights_in_metres,
    check_holds_heights,
    check_plausible_heights,
    checked_dem,
    open_dem,
    steep_step_share,
)

__all__ = [
    "FEET_UNITS",
    "MAX_CORRECTION_M",
    "OUTPUT_DATUMS",
    "PACKAGED_EGM96",
    "STEEP_SHARE",
    "VERTICAL_DATUMS",
    "Dem",
    "DemSource",
    "check_heights_in_metres",
    "check_holds_heights",
    "check_plausible_heights",
    "checked_dem",
    "crs_with_datum",
    "dataset_in_datum",
    "ecef_coordinates",
    "geodetic_at_rows",
    "geodetic_coordinates",
    "geoid_source",
    "geoid_undulation",
    "heights_in_datum",
    "horizontal_crs",
    "is_wgs84_degrees",
    "open_dem",
    "output_datum",
    "output_geoid_source",
    "split_crs",
    "steep_step_share",
    "terrain_attributes",
]
