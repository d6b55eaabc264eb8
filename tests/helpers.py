"""Scene builders and names of the real reference data, shared by the tests.

No test lives here; every test module imports what it shares from this one (never from
another test module).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from affine import Affine

from sarheight.dem import open_dem
from sarheight.geometry import RadarGeometry
from sarheight.simulate import texture

#: Where the synthetic scenes lie (degrees), and their cell size: about 30 m in latitude.
LON, LAT = 10.0, 45.0
CELL_DEG = 30.0 / 111_320.0

#: The Sentinel-1 products of ../shared/data/s1 that the reconstruction tests use.
SAFES = {
    "ascending": "S1A_IW_SLC__1SDV_20221016T015043_20221016T015111_045461_056FC0_6681.SAFE",
    "descending": "S1A_IW_SLC__1SDV_20230108T135249_20230108T135316_046693_0598D3_BA76.SAFE",
    "grd": "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE",
}


def required(path: Path) -> Path:
    """``path``, or skip the test where the file is absent."""
    if not path.exists():
        pytest.skip(f"{path} is absent")
    return path


def plane_dem(rows: int, cols: int, slope_east_deg: float = 0.0, slope_north_deg: float = 0.0,
              base: float = 200.0) -> xr.DataArray:
    """A planar DEM on a geographic grid of ~30 m cells (heights ellipsoidal)."""
    dx = CELL_DEG * math.cos(math.radians(LAT)) * 111_320.0
    dy = CELL_DEG * 111_320.0
    x = np.arange(cols) * dx
    y = -np.arange(rows) * dy
    heights = base + np.tan(math.radians(slope_east_deg)) * x[None, :] + np.tan(math.radians(slope_north_deg)) * y[:, None]
    transform = Affine(CELL_DEG, 0, LON, 0, -CELL_DEG, LAT)
    return open_dem((heights.astype(np.float32), transform, "EPSG:4326"), vertical_datum="ellipsoid")


def rough_dem(seed: int, rows: int = 36, cols: int = 36, relief: float = 600.0) -> xr.DataArray:
    """Random rough terrain (a log-normal texture field) of ``relief`` metres on the grid
    of :func:`plane_dem`."""
    field = np.log(texture((rows, cols), seed=seed, correlation_cells=4.0, contrast_db=10.0))
    field = (field - field.min()) / (field.max() - field.min())
    dem = plane_dem(rows, cols)
    return dem.copy(data=(200.0 + relief * field).astype(np.float32))


def synthetic_geometry(dem: xr.DataArray, incidence: float = 35.0, heading: float = 0.0,
                       look_side: str = "right") -> RadarGeometry:
    """A straight-orbit geometry over ``dem``: incidence ``incidence`` +- 2 degrees,
    15 m pixels, 5 km along track."""
    west, south, east, north = dem.rio.bounds()
    return RadarGeometry.synthetic(
        center_lon=0.5 * (west + east), center_lat=0.5 * (south + north), heading_deg=heading,
        incidence_near_deg=incidence - 2.0, incidence_far_deg=incidence + 2.0,
        line_spacing=15.0, sample_spacing=15.0, azimuth_extent=5e3, look_side=look_side,
    )


def assert_closed_recovery(dem: xr.DataArray, geometry: RadarGeometry, chunks: tuple = (None,),
                           tolerance: float = 1e-5, lit_border: float = 0.9) -> None:
    """Reconstruct a closed simulation of ``dem`` (the empirical sigma0 law, no speckle,
    no noise: nothing lies beyond the DEM) in memory (``None``) and with each of
    ``chunks``, and require every lit cell back within ``tolerance`` relative: the 3 x 3
    cells at each corner (all lit), the outer ring (``lit_border`` of it lit) and the
    interior."""
    from sarheight.layover import reconstruct
    from sarheight.simulate import empirical_sigma0, simulate_sar

    observation, truth = simulate_sar(dem, geometry, backscatter=empirical_sigma0, looks=None, nesz_db=None,
                                      return_truth=True)
    border = np.ones(dem.shape, dtype=bool)
    border[1:-1, 1:-1] = False
    corners = np.zeros(dem.shape, dtype=bool)
    for rows in (slice(0, 3), slice(-3, None)):
        for cols in (slice(0, 3), slice(-3, None)):
            corners[rows, cols] = True
    for size in chunks:
        result = reconstruct(observation, dem, geometry, contribution=empirical_sigma0, chunks=size, progress=False)
        backscatter = result["backscatter"].values.astype(np.float64)
        lit = np.isfinite(backscatter)
        error = np.abs(backscatter / truth.values - 1)
        print(f"chunks={size}: largest relative error at the corners {np.nanmax(error[corners]):.1e}, on the "
              f"border {np.nanmax(error[border]):.1e}, inside {np.nanmax(error[~border]):.1e}")
        assert lit[corners].all() and lit[border].mean() > lit_border, size
        for part, where in (("corners", corners), ("border", border), ("interior", ~border)):
            assert np.nanmax(error[where]) < tolerance, (size, part, np.unravel_index(
                np.nanargmax(np.where(where, error, np.nan)), error.shape))
