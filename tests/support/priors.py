"""What the tests of the priors share: DEMs on projected and geographic grids, and the
cells and warnings of a prior set."""

from __future__ import annotations

import numpy as np
from rasterio.transform import from_origin

from sarheight import sample_data
from sarheight.dem import PACKAGED_EGM96, open_dem

TUJUNGA = sample_data.path("bigtujunga_srtm30_utm11_crop.tif")
TUJUNGA_GEOID = PACKAGED_EGM96


def utm_dem(heights, cell=30.0, west=400_000.0, north=3_800_000.0, crs="EPSG:32611"):
    """A DEM of ``heights`` (ellipsoidal) on a projected grid of ``cell`` (CRS units) cells."""
    transform = from_origin(west, north, cell, cell)
    return open_dem((np.asarray(heights, dtype=np.float32), transform, crs), vertical_datum="ellipsoid")


def geographic_dem(rows, cols, lat_north, cell_deg, lon_west=10.0):
    """A flat 100 m DEM on a WGS84 longitude/latitude grid."""
    transform = from_origin(lon_west, lat_north, cell_deg, cell_deg)
    return open_dem((np.full((rows, cols), 100.0, dtype=np.float32), transform, "EPSG:4326"),
                    vertical_datum="ellipsoid")


def user_warnings(record):
    return [w for w in record if issubclass(w.category, UserWarning)]


def prior_cells(priors):
    return set(zip(*np.nonzero(priors["prior_mask"].values), strict=True))
