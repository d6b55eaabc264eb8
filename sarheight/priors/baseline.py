"""The priors-only baseline: the heights the priors alone give, linear inside their convex
hull, inverse-distance weighting or the nearest prior, with no hole.
"""

from __future__ import annotations

import math
from typing import Any

import affine
import numpy as np
import pyproj
import scipy.ndimage
import scipy.spatial
import scipy.stats
import xarray as xr

from ..compute import ecef as ecef_of
from ..dem import (
    geodetic_coordinates,
    horizontal_crs,
)
from ..errors import (
    InvalidInputError,
)
from ..raster import cell_steps_m
from .distance import BLOCK_CELLS, grid_dataarray

#: The methods of :func:`interpolate_priors`.
INTERPOLATION_METHODS = ("linear", "idw", "nearest")


#: Inverse-distance weighting: the power of the distance, and how many nearest priors.
IDW_POWER = 2.0


IDW_NEIGHBOURS = 8


def interpolate_priors(priors: xr.Dataset | xr.DataArray, method: str = "linear", *, power: float = IDW_POWER,
                       neighbours: int = IDW_NEIGHBOURS) -> xr.DataArray:
    """The heights the priors alone give on their whole grid: the baseline of every model.

    Parameters
    ----------
    priors : xarray.Dataset or xarray.DataArray
        The Dataset of :func:`sample_priors` (``prior_height``, and ``prior_mask`` which must
        agree with it), or a DataArray of prior heights (m), NaN where none, on a map grid
        with a CRS and dims ``("y", "x")``.
    method : {"linear", "idw", "nearest"}, default "linear"
        ``"linear"``: linear on the Delaunay triangulation of the priors' cells in metres
        (scipy's Qhull; the interpolant of ``scipy.interpolate.LinearNDInterpolator``) inside
        their convex hull, inverse-distance weighting outside it (smooth, where the nearest
        prior would make Voronoi steps). With fewer than three priors, or all on one line
        (one altimeter beam: Qhull cannot triangulate them), inverse-distance weighting
        everywhere, which ``attrs["note"]`` says. ``"idw"``: inverse-distance weighting of
        the ``neighbours`` nearest priors with weights 1 / d^power. ``"nearest"``: the
        nearest prior's height.
    power : float, default 2
        Power of the distance in inverse-distance weighting.
    neighbours : int, default 8
        Number of nearest priors in inverse-distance weighting.

    Returns
    -------
    xarray.DataArray
        ``prior_interpolation``: float32 height (m) on every cell of the grid (no NaN),
        equal to the prior on its cells, within the priors' range for every method, exact
        on a plane inside the hull for "linear"; the grid's coordinates and CRS;
        ``attrs``: ``units``, ``method`` (the one used), ``requested_method``, ``priors``,
        ``power`` and ``neighbours`` where inverse-distance weighting is used, ``note``.

    Raises
    ------
    InvalidInputError
        An unknown method, a power that is not positive, fewer than one neighbour, no prior,
        a mask that disagrees with the heights, infinite heights, no CRS.

    Notes
    -----
    Distances (inverse-distance weighting, nearest prior): the CRS's linear unit converted to
    metres on projected grids; on geographic ones east and north on the plane tangent to the
    WGS84 ellipsoid at the grid's centre (from ECEF positions), within 1e-4 relative of the
    ellipsoid's distances over 100 km. The linear interpolation is linear in the grid's
    coordinates, its triangulation Delaunay in metres (at the grid's middle latitude on a
    geographic grid): exact on a plane of the grid's coordinates.
    """
    heights_array, values, mask = _prior_heights(priors)
    if method not in INTERPOLATION_METHODS:
        raise InvalidInputError(
            f"method={method!r} is not one of {', '.join(map(repr, INTERPOLATION_METHODS))}."
        )
    if isinstance(power, bool) or not isinstance(power, (int, float)) or not math.isfinite(power) or power <= 0:
        raise InvalidInputError(f"power={power!r} must be a positive number (2: inverse squared distance).")
    if isinstance(neighbours, bool) or not isinstance(neighbours, (int, np.integer)) or neighbours < 1:
        raise InvalidInputError(f"neighbours={neighbours!r} must be a whole number of priors, at least 1.")
    crs = horizontal_crs(heights_array)
    transform = heights_array.rio.transform()
    east, north = _metric_coordinates(heights_array, crs, transform)
    known = np.column_stack((east[mask], north[mask]))
    known_heights = values[mask]
    tree = scipy.spatial.cKDTree(known)
    k = min(int(neighbours), known_heights.size)
    attrs: dict[str, Any] = {"units": "m", "requested_method": method, "priors": int(known_heights.size)}
    used = method
    if method == "linear":
        result, note = _linear_on_grid(mask, known_heights, cell_steps_m(transform, crs, mask.shape))
        if note:
            attrs["note"] = note
            used = "idw"
        else:
            outside = np.isnan(result)
            if outside.any():
                cells = np.column_stack((east[outside], north[outside]))
                result[outside] = _idw(tree, known_heights, cells, k, power)
    if used != "linear":
        result = np.empty(mask.shape)
        rows_per_block = max(1, BLOCK_CELLS // mask.shape[1])
        for start in range(0, mask.shape[0], rows_per_block):
            block = slice(start, start + rows_per_block)
            cells = np.column_stack((east[block].ravel(), north[block].ravel()))
            if used == "nearest":
                estimate = known_heights[tree.query(cells)[1]]
            else:
                estimate = _idw(tree, known_heights, cells, k, power)
            result[block] = estimate.reshape(-1, mask.shape[1])
    # Both interpolations are convex combinations of the priors: the rounding of their
    # weights must not take a cell outside the priors' range (a flat set of priors gave
    # 1e-16 above it). Exact at the priors, whatever that rounding.
    np.clip(result, known_heights.min(), known_heights.max(), out=result)
    result[mask] = known_heights
    if used != "nearest":
        attrs.update(power=float(power), neighbours=k)
    long_names = {"linear": "linear interpolation of the priors (inverse-distance weighting outside their hull)",
                  "idw": "inverse-distance weighting of the priors", "nearest": "height of the nearest prior"}
    attrs.update(method=used, long_name=long_names[used])
    out = xr.DataArray(result.astype(np.float32), dims=("y", "x"),
                       coords={"y": heights_array["y"].values, "x": heights_array["x"].values},
                       attrs=attrs, name="prior_interpolation")
    return out.rio.write_crs(crs).rio.write_transform(transform)


def _prior_heights(priors: Any) -> tuple[xr.DataArray, np.ndarray, np.ndarray]:
    """The heights DataArray, its values and the prior mask (finite heights)."""
    if isinstance(priors, xr.Dataset):
        if "prior_height" not in priors:
            raise InvalidInputError(
                f"The Dataset has no 'prior_height' (it has {', '.join(map(str, priors.data_vars))}): give the "
                "Dataset of sample_priors or a DataArray of prior heights."
            )
        heights_array = grid_dataarray(priors["prior_height"], "prior heights")
        if "prior_mask" in priors:
            given = np.asarray(priors["prior_mask"].values) != 0
            finite = np.isfinite(np.asarray(heights_array.values, dtype=np.float64))
            if given.shape != finite.shape or not np.array_equal(given, finite):
                raise InvalidInputError(
                    "prior_mask and prior_height disagree (a mask of 1 must mark exactly the finite heights): "
                    "give sample_priors' Dataset unchanged, or only the heights."
                )
    else:
        heights_array = grid_dataarray(priors, "prior heights")
    values = np.asarray(heights_array.values, dtype=np.float64)
    if np.isinf(values).any():
        raise InvalidInputError("The prior heights hold infinite values: priors are finite heights, NaN elsewhere.")
    mask = np.isfinite(values)
    if not mask.any():
        raise InvalidInputError("There is no prior (every height is NaN): nothing to interpolate.")
    return heights_array, values, mask


def _metric_coordinates(grid: xr.DataArray, crs: pyproj.CRS,
                        transform: affine.Affine) -> tuple[np.ndarray, np.ndarray]:
    """East and north (m) of every cell: see :func:`interpolate_priors`' notes."""
    rows, cols = grid.shape
    if not crs.is_geographic:
        step_n, step_e = cell_steps_m(transform, crs, grid.shape)
        east = np.broadcast_to((np.arange(cols) * step_e)[np.newaxis, :], grid.shape)
        north = np.broadcast_to((np.arange(rows) * step_n)[:, np.newaxis], grid.shape)
        return east, north
    lon, lat = geodetic_coordinates(grid, radians=True)
    ecef = ecef_of(np.ascontiguousarray(lon).ravel(), np.ascontiguousarray(lat).ravel(),
                            np.zeros(lon.size))
    lon0, lat0 = lon[rows // 2, cols // 2], lat[rows // 2, cols // 2]
    origin = ecef_of(np.array([lon0]), np.array([lat0]), np.zeros(1))[0]
    relative = ecef - origin
    east_axis = np.array([-math.sin(lon0), math.cos(lon0), 0.0])
    north_axis = np.array([-math.sin(lat0) * math.cos(lon0), -math.sin(lat0) * math.sin(lon0), math.cos(lat0)])
    return (relative @ east_axis).reshape(grid.shape), (relative @ north_axis).reshape(grid.shape)


def _linear_on_grid(mask: np.ndarray, heights: np.ndarray,
                    steps: tuple[float, float]) -> tuple[np.ndarray, str]:
    """Linear interpolation of the priors on the Delaunay triangulation of their cells (in
    metres), at every cell centre of the grid: NaN outside the priors' convex hull; or the
    reason, where the priors cannot be triangulated.

    The interpolant is ``scipy.interpolate.LinearNDInterpolator``'s on the same
    triangulation, evaluated by going through the triangles' cells rather than locating each
    cell in a triangle: scipy's point location first computes a LAPACK factorisation per
    triangle, which OpenBLAS's threads make take seconds to minutes on a busy machine.
    Barycentric coordinates are affine-invariant, so they are computed in cell indices.
    """
    fallback = "; inverse-distance weighting instead"
    if heights.size < 3:
        return np.empty(0), f"linear interpolation needs three priors, there are {heights.size}{fallback}"
    rows, cols = np.nonzero(mask)
    metric = np.column_stack((cols * abs(steps[1]), rows * abs(steps[0])))
    spread = np.linalg.svd(metric - metric.mean(axis=0), compute_uv=False)
    if spread[-1] <= 1e-9 * spread[0]:
        return np.empty(0), f"the {heights.size} priors lie on one line, which cannot be triangulated{fallback}"
    try:
        triangles = scipy.spatial.Delaunay(metric).simplices
    except scipy.spatial.QhullError as error:
        return np.empty(0), f"the priors cannot be triangulated ({str(error).splitlines()[0]}){fallback}"
    x, y, z = cols[triangles].astype(np.float64), rows[triangles].astype(np.float64), heights[triangles]
    # Barycentric coordinates l0, l1 of cell (c, r) = a_i c + b_i r + c_i, per triangle.
    det = (y[:, 1] - y[:, 2]) * (x[:, 0] - x[:, 2]) + (x[:, 2] - x[:, 1]) * (y[:, 0] - y[:, 2])
    keep = det != 0.0
    x, y, z, det = x[keep], y[keep], z[keep], det[keep]
    a0, b0 = (y[:, 1] - y[:, 2]) / det, (x[:, 2] - x[:, 1]) / det
    a1, b1 = (y[:, 2] - y[:, 0]) / det, (x[:, 0] - x[:, 2]) / det
    c_low, c_high = np.ceil(x.min(axis=1)).astype(np.int64), np.floor(x.max(axis=1)).astype(np.int64)
    r_low, r_high = np.ceil(y.min(axis=1)).astype(np.int64), np.floor(y.max(axis=1)).astype(np.int64)
    width = c_high - c_low + 1
    sizes = width * (r_high - r_low + 1)
    result = np.full(mask.shape, np.nan)
    # Triangles in groups of about BLOCK_CELLS cells of their bounding boxes (bounded memory).
    ends = np.cumsum(sizes)
    first = 0
    while first < sizes.size:
        stop = max(first + 1, int(np.searchsorted(ends, ends[first] - sizes[first] + BLOCK_CELLS, side="right")))
        triangle = np.repeat(np.arange(first, stop), sizes[first:stop])
        starts = np.cumsum(sizes[first:stop]) - sizes[first:stop]
        k = np.arange(triangle.size) - np.repeat(starts, sizes[first:stop])
        col = c_low[triangle] + k % width[triangle]
        row = r_low[triangle] + k // width[triangle]
        dc, dr = col - x[triangle, 2], row - y[triangle, 2]
        l0 = a0[triangle] * dc + b0[triangle] * dr
        l1 = a1[triangle] * dc + b1[triangle] * dr
        l2 = 1.0 - l0 - l1
        inside = (l0 >= -1e-9) & (l1 >= -1e-9) & (l2 >= -1e-9)
        t = triangle[inside]
        result[row[inside], col[inside]] = l0[inside] * z[t, 0] + l1[inside] * z[t, 1] + l2[inside] * z[t, 2]
        first = stop
    return result, ""


def _idw(tree: scipy.spatial.cKDTree, heights: np.ndarray, cells: np.ndarray, k: int, power: float) -> np.ndarray:
    """Inverse-distance weighting of the ``k`` nearest priors at ``cells``; a prior's own
    height on its cell."""
    distance, index = tree.query(cells, k=k)
    if k == 1:
        distance, index = distance[:, np.newaxis], index[:, np.newaxis]
    on_prior = distance[:, 0] == 0.0
    # Relative to the nearest prior's distance: 1 / d^power neither overflows nor underflows.
    with np.errstate(divide="ignore", invalid="ignore"):
        weight = (distance[:, :1] / distance) ** power
    weight[on_prior] = 0.0
    weight[on_prior, 0] = 1.0
    return (weight * heights[index]).sum(axis=1) / weight.sum(axis=1)
