"""Built-in real example data, available offline.

matplotlib ships a real 3-arc-second DEM of the Jacksboro fault, Tennessee
(``jacksboro_fault_dem.npz``, 344 x 403 cells, 236-1076 m). It is the terrain of
``sarheight demo`` and of the examples.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from affine import Affine

from .dem import open_dem


def jacksboro_dem() -> xr.DataArray:
    """The Jacksboro fault DEM shipped with matplotlib, as a DEM DataArray (EPSG:4326).

    The file gives heights above the geoid (about -30 m from the ellipsoid there) and no
    datum. With no geoid grid at hand offline, the heights are declared ellipsoidal: under
    a synthetic geometry that only shifts the scene by a constant 30 m, which changes no
    layover or shadow. The attributes say so.
    """
    from matplotlib import cbook

    with cbook.get_sample_data("jacksboro_fault_dem.npz") as npz:
        elevation = np.asarray(npz["elevation"], dtype=np.float32)
        dx, dy = float(npz["dx"]), float(npz["dy"])
        west = float(npz["xmin"])
        # The file's "ymin" is the northern edge: row 0 is the north (its "ymax" is the south).
        north = max(float(npz["ymin"]), float(npz["ymax"]))
    transform = Affine(dx, 0.0, west, 0.0, -dy, north)
    dem = open_dem((elevation, transform, "EPSG:4326"), vertical_datum="ellipsoid")
    dem.attrs.update(
        source="matplotlib sample data jacksboro_fault_dem.npz (Jacksboro fault, Tennessee, 3 arc-second)",
        source_vertical_datum="geoid heights declared ellipsoidal for the demo (about 30 m offset)",
        long_name="terrain height",
    )
    dem.name = "height"
    return dem
