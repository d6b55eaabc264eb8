"""The distance (m) from every cell of a grid to the nearest prior: Euclidean on projected
grids, geodesic (through ECEF chords on the WGS84 mean radius) on geographic ones.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.ndimage
import scipy.spatial
import scipy.stats
import xarray as xr

from ..compute import WGS84_A, WGS84_E2
from ..compute import ecef as ecef_of
from ..dem import (
    geodetic_coordinates,
    horizontal_crs,
)
from ..errors import (
    InvalidInputError,
)
from ..raster import cell_steps_m

# Rows of cells handled at once by the distance and interpolation queries (bounded memory).
BLOCK_CELLS = 1 << 20


def distance_map(prior_mask: xr.DataArray | xr.Dataset) -> xr.DataArray:
    """Distance (m) from every cell to the nearest prior.

    Parameters
    ----------
    prior_mask : xarray.DataArray or xarray.Dataset
        The prior mask (1 or True where a prior, 0 or False elsewhere) on a map grid with a
        CRS, dims ``("y", "x")``; or the Dataset of :func:`sample_priors`, whose
        ``prior_mask`` is taken.

    Returns
    -------
    xarray.DataArray
        ``prior_distance``: float32 distance (m) between each cell centre and the nearest
        prior's cell centre, 0 on the priors, on the mask's grid and CRS, ``attrs["units"]``
        "m" and ``attrs["method"]``.

    Raises
    ------
    InvalidInputError
        No prior at all, values other than 0 and 1, not 2-D on ("y", "x"), no CRS.

    Notes
    -----
    Projected grids: the exact Euclidean distance transform
    (``scipy.ndimage.distance_transform_edt``) with the cell size in metres in each direction
    (the CRS's linear unit converted: US survey feet and feet grids exist); these are grid
    distances, the projection's scale factor (0.9996 on a UTM central meridian) is not
    corrected. Geographic grids: exact, not an approximation with one cell size: the
    nearest prior of each cell is found by a k-d tree on WGS84 ECEF positions (on the
    ellipsoid, height 0), and its chord c turned into the arc 2 R asin(c / 2R) on the sphere of
    the grid's mean radius of curvature; this differs from the ellipsoidal geodesic by well
    under a millimetre per kilometre within a tile of a few degrees. (One cell size at the
    centre latitude, the cheaper alternative, errs by tan(latitude) x the half-height of the
    tile in radians: 1 % on a one-degree tile at 50 degrees.)
    """
    mask_array = mask_dataarray(prior_mask)
    mask = mask_values(mask_array)
    crs = horizontal_crs(mask_array)
    transform = mask_array.rio.transform()
    if crs.is_geographic:
        distance, method = _geodesic_distance(mask_array, mask), "nearest prior by k-d tree on WGS84 ECEF, arc length"
    else:
        step_n, step_e = cell_steps_m(transform, crs, mask.shape)
        distance = scipy.ndimage.distance_transform_edt(~mask, sampling=(abs(step_n), abs(step_e)))
        method = "Euclidean distance transform with the cell size in metres"
    out = xr.DataArray(
        distance.astype(np.float32),
        dims=("y", "x"),
        coords={"y": mask_array["y"].values, "x": mask_array["x"].values},
        attrs={"units": "m", "long_name": "distance to the nearest prior", "method": method},
        name="prior_distance",
    )
    return out.rio.write_crs(crs).rio.write_transform(transform)


def mask_dataarray(prior_mask: Any) -> xr.DataArray:
    if isinstance(prior_mask, xr.Dataset):
        if "prior_mask" not in prior_mask:
            raise InvalidInputError(
                f"The Dataset has no 'prior_mask' (it has {', '.join(map(str, prior_mask.data_vars))}): give the "
                "Dataset of sample_priors or the mask DataArray."
            )
        prior_mask = prior_mask["prior_mask"]
    return grid_dataarray(prior_mask, "prior mask")


def grid_dataarray(array: Any, what: str) -> xr.DataArray:
    """``array`` once known to be a 2-D DataArray on ("y", "x") with a CRS."""
    if not isinstance(array, xr.DataArray):
        raise InvalidInputError(f"The {what} must be an xarray.DataArray on a map grid, not {type(array).__name__}.")
    if array.dims != ("y", "x"):
        raise InvalidInputError(f"The {what} must have dims ('y', 'x'), not {array.dims}.")
    if array.rio.crs is None:
        raise InvalidInputError(
            f"The {what} has no CRS: write its grid's, e.g. array.rio.write_crs('EPSG:32611')."
        )
    return array


def mask_values(mask_array: xr.DataArray) -> np.ndarray:
    values = np.asarray(mask_array.values)
    if values.dtype.kind not in "biuf":
        raise InvalidInputError(f"The prior mask must hold 0 and 1, not {values.dtype} values.")
    if not np.isin(values, (0, 1)).all():
        raise InvalidInputError(
            "The prior mask must hold only 0 (no prior) and 1 (prior), NaN excluded: give sample_priors' prior_mask."
        )
    mask = values.astype(bool)
    if not mask.any():
        raise InvalidInputError(
            "The prior mask has no prior: a distance to the nearest prior needs at least one (sample_priors gives "
            "at least one)."
        )
    return mask


def _geodesic_distance(mask_array: xr.DataArray, mask: np.ndarray) -> np.ndarray:
    lon, lat = geodetic_coordinates(mask_array, radians=True)
    prior = ecef_of(np.ascontiguousarray(lon[mask]), np.ascontiguousarray(lat[mask]),
                             np.zeros(int(mask.sum())))
    tree = scipy.spatial.cKDTree(prior)
    radius = _mean_radius(float(np.median(lat[:, 0])))
    distance = np.empty(mask.shape)
    rows_per_block = max(1, BLOCK_CELLS // mask.shape[1])
    for start in range(0, mask.shape[0], rows_per_block):
        block = slice(start, start + rows_per_block)
        cells = ecef_of(np.ascontiguousarray(lon[block].ravel()), np.ascontiguousarray(lat[block].ravel()),
                                 np.zeros(lon[block].size))
        chord, _ = tree.query(cells)
        distance[block] = (2.0 * radius * np.arcsin(np.minimum(chord / (2.0 * radius), 1.0))).reshape(-1, mask.shape[1])
    distance[mask] = 0.0
    return distance


def _mean_radius(lat_rad: float) -> float:
    """Gaussian mean radius of curvature (m) of the WGS84 ellipsoid at ``lat_rad``."""
    w2 = 1.0 - WGS84_E2 * math.sin(lat_rad) ** 2
    return WGS84_A * math.sqrt(1.0 - WGS84_E2) / w2
