"""A coarse DEM refined without SAR and without learning: resampled to a finer grid
(:func:`upsample`), registered horizontally to the known heights (:func:`coregister`),
refined by iterative back-projection of the coarse product, then its error at the known
heights spread by kriging.

These are the baselines a learned refinement has to beat (the strongest non-learned
ones, ``docs/terrain_refinement.md``), and the reference the networks correct.

**Co-registration** (Nuth & Kaab 2011): a product's content is displaced by its
geolocation error (SRTM 7-13 m, a half-cell registration confusion 15-45 m), which on a
30-degree slope is an error of tens of metres no resampling can see. The priors'
residuals, regressed on the DEM's gradient, measure the shift; the product is
relabelled, not resampled.

**Iterative back-projection** (Irani & Peleg 1991, the classic super-resolution of one
image from its own blur model): a coarse DEM measures the mean height over each of its
cells. Starting from the coarse DEM resampled to the fine grid (Lanczos), each round
measures the estimate as the coarse product would (:func:`area_mean`: the area-weighted
mean over each coarse cell, exact for grids that are not aligned), and adds the
difference between the product and that measurement, resampled bicubically. The
estimate converges to heights whose coarse measurement is the product, with the
resampling kernel's sharpness in between. On an exact block mean it undoes much of the
block's blur (8-15 % below Lanczos on the held-out DEMs); on a real product it also
sharpens the product's own errors, so that the study measures it on realistic products.

**Kriging of the priors' residuals** (noise-aware anchoring): a real coarse DEM carries
errors correlated over hundreds of metres to kilometres (a few metres: SRTM, Copernicus)
that no resampling can see, and which known heights measure. The residuals of the
priors from the estimate are a correlated field (the product's error) plus what is not
correlated beyond a coarse cell (relief the product lost, the priors' own error): an
exponential covariance with a nugget is fitted to their semivariogram, and simple
kriging around their mean gives the correction and its standard deviation. A linear
interpolation of the residuals would copy the uncorrelated part between priors a
kilometre apart and add more error than it removes; the nugget keeps it out.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, replace

import numpy as np
import rasterio.transform
import rasterio.warp
import xarray as xr
from affine import Affine

from ..errors import InvalidInputError
from ..raster import cell_size_m, filled_with_mean, gradient, grid_steps, robust_spread

__all__ = [
    "UPSAMPLING",
    "Coregistration",
    "MadeOnGrid",
    "ResidualCovariance",
    "area_mean",
    "back_project",
    "coregister",
    "fit_residual_covariance",
    "krige_residuals",
    "prior_correction",
    "shifted",
    "significant_mean",
    "upsample",
]

#: The rounds of back-projection: the estimate changes by less than a centimetre a round
#: after about ten on the study's DEMs.
BACK_PROJECTION_ROUNDS = 10

#: The priors each cell is kriged from (its nearest).
KRIGING_NEIGHBOURS = 32

#: The most cells of the lattice the correction is kriged on (its spacing grows beyond).
KRIGING_TARGETS = 40_000


#: How a coarse DEM is resampled to a finer grid: GDAL's kernels by name.
UPSAMPLING = {"bilinear": rasterio.warp.Resampling.bilinear, "bicubic": rasterio.warp.Resampling.cubic,
              "lanczos": rasterio.warp.Resampling.lanczos}

def upsample(coarse: xr.DataArray, grid: xr.DataArray, method: str = "bilinear", *,
             what: str = "the coarse DEM") -> xr.DataArray:
    """``coarse`` (heights with a CRS) resampled to ``grid``'s cells with ``method`` (a
    kernel of :data:`UPSAMPLING`); NaN outside it and where ``grid`` is NaN.

    Kernels that need neighbours beyond the coarse raster's outer cells (GDAL then returns
    nodata there) fall back to bilinear, then to the nearest coarse value, so that every
    cell of the grid that the coarse raster covers has a height. A ``coarse`` already on
    ``grid`` is returned as it is.
    """
    if method not in UPSAMPLING:
        raise InvalidInputError(f"upsampling must be one of {', '.join(UPSAMPLING)}, got {method!r}")
    if coarse.rio.crs == grid.rio.crs and coarse.shape == grid.shape and np.allclose(
            coarse.rio.transform(), grid.rio.transform()):
        return coarse

    def resample(kernel: rasterio.warp.Resampling) -> np.ndarray:
        out = np.full(grid.shape, np.nan, dtype=np.float32)
        rasterio.warp.reproject(
            coarse.values.astype(np.float32), out,
            src_transform=coarse.rio.transform(), src_crs=coarse.rio.crs, src_nodata=np.nan,
            dst_transform=grid.rio.transform(), dst_crs=grid.rio.crs, dst_nodata=np.nan, resampling=kernel,
        )
        return out

    fine = resample(UPSAMPLING[method])
    for fallback in (rasterio.warp.Resampling.bilinear, rasterio.warp.Resampling.nearest):
        missing = ~np.isfinite(fine)
        if not missing.any():
            break
        fine[missing] = resample(fallback)[missing]
    if not np.isfinite(fine).any():
        raise InvalidInputError(f"{what} does not overlap the scene grid: give one that covers it")
    fine[~np.isfinite(grid.values)] = np.nan
    out = grid.copy(data=fine)
    out.attrs = {**coarse.attrs, "upsampling": method}
    return out


@dataclass(frozen=True)
class Coregistration:
    """The shift (m) that registers a coarse DEM to the known heights, and its standard
    errors (m); a feature the DEM shows at q + shift lies at q."""

    shift_east_m: float
    shift_north_m: float
    error_east_m: float
    error_north_m: float
    priors: int
    #: The priors' departure per unit of the tangent of the slope (m): wide-footprint
    #: lidar takes the lowest return of a sloping footprint (negative); 0 where it does
    #: not stand out of twice its standard error, or lies outside what a footprint can
    #: make (:data:`SLOPE_BIAS_LIMIT_M`).
    slope_bias_m: float = 0.0

    def to_attrs(self) -> dict[str, float | int]:
        """Attributes for a scene: ``coregistration_*``."""
        return {"coregistration_shift_east_m": self.shift_east_m, "coregistration_shift_north_m": self.shift_north_m,
                "coregistration_error_east_m": self.error_east_m,
                "coregistration_error_north_m": self.error_north_m, "coregistration_priors": self.priors,
                "coregistration_slope_bias_m": self.slope_bias_m}

    def corrected_priors(self, dem: xr.DataArray, prior_height: np.ndarray) -> np.ndarray:
        """The known heights less their slope bias (``slope_bias_m`` times the tangent of
        ``dem``'s slope at them), on ``dem``'s grid."""
        if not self.slope_bias_m:
            return np.asarray(prior_height, dtype=np.float64)
        return np.asarray(prior_height, dtype=np.float64) - self.slope_bias_m * _tan_slope(dem)


#: Rounds of co-registration: each re-measures the residuals on the moved DEM.
COREGISTRATION_ROUNDS = 3

#: The largest shift (m) a co-registration applies: twice the largest registration error
#: of global products (a half-cell confusion of a 90 m product), beyond which a fit is led
#: astray, not measuring a product.
COREGISTRATION_LIMIT_M = 90.0


#: The least share by which a half of the priors' fit must lower the robust spread of the
#: other half's residuals for the move to be kept: a real shift of tens of metres on
#: relief lowers it by more; a fit to the relief an exact product's cells lost, shared
#: along a track or a valley road (62 GNSS priors on Chhota Shigri at 5x fitted a 48 m
#: shift), by less.
COREGISTRATION_GAIN = 0.2


#: The largest slope bias (m per unit of the tangent of the slope) a footprint's lowest
#: return makes: half the widest spaceborne lidar footprint (GEDI's, up to 28 m), with
#: margin. A departure that grows with the slope upward, or beyond this downward, is no
#: bias of the priors but the relief the coarse cells lose (valleys filled, ridges cut, the
#: priors along a valley floor below the DEM where it is steep): it stays in the
#: residuals the kriging corrects.
SLOPE_BIAS_LIMIT_M = 15.0


def shifted(dem: xr.DataArray, grid: xr.DataArray, shift_east_m: float, shift_north_m: float) -> xr.DataArray:
    """``dem`` relabelled so that the content it shows at ``q + shift`` lies at ``q``: its
    transform moved by ``-shift`` (metres east and north, converted to the units of its
    CRS with the metres of ``grid``'s cells, which shares the CRS). The heights are
    unchanged: a displaced product is relabelled, not resampled."""
    dy, dx = cell_size_m(grid)
    # Metres per unit of the CRS along each axis (degrees on a geographic grid).
    east_units = shift_east_m / (dx / abs(grid.rio.transform().a))
    north_units = shift_north_m / (dy / abs(grid.rio.transform().e))
    return dem.assign_coords(x=dem["x"] - east_units, y=dem["y"] - north_units).rio.write_transform(
        rasterio.transform.Affine.translation(-east_units, -north_units) @ dem.rio.transform())


def _tan_slope(dem: xr.DataArray) -> np.ndarray:
    dy, dx = cell_size_m(dem)
    values = np.asarray(dem.values, dtype=np.float64)
    along_rows, along_cols = gradient(filled_with_mean(values), (dy, dx))
    return np.hypot(along_rows, along_cols)


def _fit_registration(coarse: xr.DataArray, grid: xr.DataArray, prior_height: np.ndarray, prior_mask: np.ndarray
                      ) -> tuple[xr.DataArray, Coregistration]:
    """The registration fitted to the priors of ``prior_mask`` (see :func:`coregister`)."""
    known = (np.asarray(prior_mask) > 0) & np.isfinite(prior_height)
    coarse_dy, coarse_dx = cell_size_m(coarse)
    cell = math.sqrt(coarse_dy * coarse_dx)
    total_east = total_north = 0.0
    slope_bias = 0.0
    errors = (math.inf, math.inf)
    moved = coarse
    steps = grid_steps(grid)
    grid_dy, grid_dx = cell_size_m(grid)
    rows_of, cols_of = np.indices(known.shape)
    span = (max(1, round(coarse_dy / grid_dy)), max(1, round(coarse_dx / grid_dx)))
    cluster = (rows_of // span[0]) * (known.shape[1] // span[1] + 1) + cols_of // span[1]
    for _ in range(COREGISTRATION_ROUNDS):
        heights = upsample(moved, grid, "bicubic").values.astype(np.float64)
        along_rows, along_cols = gradient(filled_with_mean(heights), steps)
        use = known & np.isfinite(heights)
        if use.sum() < 10:
            break
        residual = np.asarray(prior_height, dtype=np.float64)[use] - heights[use]
        # The relief a coarse cell's mean loses is about -L^2/24 of the terrain's curvature
        # (a box mean of a parabola): regressed beside the shift, it is not taken for one
        # (valleys filled and ridges cut by an exact product would otherwise move it by tens
        # of metres on steep relief).
        curvature = (gradient(along_rows, steps, axis=0) + gradient(along_cols, steps, axis=1)) * cell**2
        design = np.stack([np.ones(residual.size), along_cols[use], along_rows[use],
                           np.hypot(along_cols[use], along_rows[use]), np.nan_to_num(curvature[use])], axis=1)
        keep = np.ones(residual.size, dtype=bool)
        for _ in range(2):
            if keep.sum() < 8:
                break
            solution, *_ = np.linalg.lstsq(design[keep], residual[keep], rcond=None)
            misfit = residual - design @ solution
            spread = robust_spread(misfit[keep])
            keep = np.abs(misfit) <= 3 * max(spread, 1e-6)
        if keep.sum() < 8:
            break
        solution, *_ = np.linalg.lstsq(design[keep], residual[keep], rcond=None)
        misfit = residual[keep] - design[keep] @ solution
        try:
            inverse = np.linalg.inv(design[keep].T @ design[keep])
        except np.linalg.LinAlgError:
            break
        # The misfit of priors in one coarse cell is one draw of the relief that cell lost,
        # not independent ones (an altimeter track crosses a cell with several): the
        # covariance is the sandwich over the coarse cells (cluster-robust), never below
        # the independent one.
        clusters = cluster[use][keep]
        scores = np.zeros((int(clusters.max()) + 1, design.shape[1]))
        np.add.at(scores, clusters, design[keep] * misfit[:, None])
        dof = max(int(keep.sum()) - design.shape[1], 1)
        independent = float(np.sum(misfit**2)) / dof * inverse
        clustered = inverse @ (scores.T @ scores) @ inverse * keep.sum() / dof
        covariance = np.maximum(independent, clustered) * (np.eye(design.shape[1]) > 0) + np.where(
            np.eye(design.shape[1]) > 0, 0.0, clustered)
        step = []
        for value, error in ((solution[1], math.sqrt(max(covariance[1, 1], 0.0))),
                             (solution[2], math.sqrt(max(covariance[2, 2], 0.0)))):
            # A component within two standard errors of nothing is noise: left out.
            step.append(value * max(0.0, 1.0 - 4.0 * error**2 / value**2) if abs(value) > 1e-9 else 0.0)
        errors = (math.sqrt(max(covariance[1, 1], 0.0)), math.sqrt(max(covariance[2, 2], 0.0)))
        bias_error = math.sqrt(max(covariance[3, 3], 0.0))
        slope_bias = (solution[3] * max(0.0, 1.0 - 4.0 * bias_error**2 / solution[3] ** 2)
                      if -SLOPE_BIAS_LIMIT_M <= solution[3] < -1e-9 else 0.0)
        total_east += step[0]
        total_north += step[1]
        magnitude = math.hypot(total_east, total_north)
        if magnitude > COREGISTRATION_LIMIT_M:
            scale = COREGISTRATION_LIMIT_M / magnitude
            total_east, total_north = total_east * scale, total_north * scale
        moved = shifted(coarse, grid, total_east, total_north)
        if abs(step[0]) < 0.05 and abs(step[1]) < 0.05:
            break
    return moved, Coregistration(float(total_east), float(total_north), float(errors[0]), float(errors[1]),
                                 int(known.sum()), float(slope_bias))


def coregister(coarse: xr.DataArray, grid: xr.DataArray, prior_height: np.ndarray, prior_mask: np.ndarray
               ) -> tuple[xr.DataArray, Coregistration]:
    """Register a coarse DEM horizontally to known heights (Nuth & Kaab 2011, The
    Cryosphere 5, as a linear least-squares fit): a DEM displaced by ``s`` differs from the
    truth at a known height by ``s . grad(h)`` plus a bias, so the residuals of the priors
    regressed on the DEM's gradient give the shift; three rounds on the moved DEM take the
    rest of a large one. The regression also takes a term in the tangent of the slope:
    a departure that grows with the slope whatever its direction is no shift but the
    priors' own bias (wide-footprint lidar takes the lowest return), kept apart so that
    neither the shift nor the kriged correction takes it for the DEM's error, and a term
    in the curvature times the coarse cell squared: the relief a coarse cell's mean loses
    (valleys filled, ridges cut). The fit is robust (residuals beyond 3 scaled median
    absolute deviations left out); its standard errors are the sandwich over the coarse
    cells (the priors in one cell share the relief it lost); a component of the shift is
    shrunk by ``max(0, 1 - 4 SE^2 / s^2)`` (flat terrain, or priors on one slope, say
    nothing of a shift) and the shift capped at :data:`COREGISTRATION_LIMIT_M`.

    The move is kept only where priors the fit did not see say it helps: the priors are
    split into halves apart on the ground (west and east, then south and north), and each
    half's fit must lower the robust spread of the other half's residuals by
    :data:`COREGISTRATION_GAIN`, else the product stays where it is. (On coarse cells of
    hundreds of metres, or priors along a few valleys, a fit can move an exact product by
    tens of metres, and the priors it was fitted to always agree with it.)

    Parameters
    ----------
    coarse : the coarse DEM on its own grid.
    grid : the grid the priors lie on (its CRS: the shift is measured in its metres).
    prior_height, prior_mask : the known heights on ``grid``.

    Returns
    -------
    (the coarse DEM with its transform moved by the shift, the coregistration). The
    heights are unchanged: a displaced product is relabelled, not resampled.
    """
    known = (np.asarray(prior_mask) > 0) & np.isfinite(prior_height)
    cells = np.flatnonzero(known)
    unmoved = Coregistration(0.0, 0.0, math.inf, math.inf, int(cells.size))
    if cells.size < 16:
        return coarse, unmoved
    rows, cols = np.nonzero(known)
    # Halves apart on the ground (west and east of the priors' median, then south and
    # north): priors of one track or one valley road share the relief the product lost
    # there, and halves drawn at random would agree on it.
    for halves in (np.where(np.arange(known.shape[1])[None, :] <= np.median(cols), 0, 1) + 0 * known,
                   np.where(np.arange(known.shape[0])[:, None] <= np.median(rows), 0, 1) + 0 * known):
        for fitted in (0, 1):
            held_out = known & (halves != fitted)
            moved, _ = _fit_registration(coarse, grid, prior_height, known & (halves == fitted))
            if moved is coarse or _prior_spread(moved, grid, prior_height, held_out) >= (
                    1.0 - COREGISTRATION_GAIN) * _prior_spread(coarse, grid, prior_height, held_out):
                return coarse, unmoved
    return _fit_registration(coarse, grid, prior_height, known)


def _prior_spread(dem: xr.DataArray, grid: xr.DataArray, prior_height: np.ndarray, known: np.ndarray) -> float:
    """The robust spread (m, scaled median absolute deviation) of the priors' residuals
    from ``dem`` resampled to ``grid``."""
    heights = upsample(dem, grid, "bicubic").values
    use = known & np.isfinite(heights)
    residual = np.asarray(prior_height, dtype=np.float64)[use] - heights[use]
    return robust_spread(residual) if residual.size else math.inf


def _resample(values: np.ndarray, source: xr.DataArray, target: xr.DataArray,
              kernel: rasterio.warp.Resampling) -> np.ndarray:
    out = np.full(target.shape, np.nan, dtype=np.float32)
    rasterio.warp.reproject(
        np.asarray(values, dtype=np.float32), out,
        src_transform=source.rio.transform(), src_crs=source.rio.crs, src_nodata=np.nan,
        dst_transform=target.rio.transform(), dst_crs=target.rio.crs, dst_nodata=np.nan, resampling=kernel)
    return out


def area_mean(fine: xr.DataArray, coarse: xr.DataArray) -> np.ndarray:
    """The heights ``fine`` as the coarse DEM ``coarse`` measures them: the mean over each
    coarse cell of the fine cells it covers, weighted by the area of their overlap
    (GDAL's average resampling; grids need not be aligned). NaN where no fine cell with
    a height lies in a coarse cell. Returns float32 on ``coarse``'s grid."""
    # Beyond its edge GDAL would repeat the raster's last cells into a coarse cell that
    # reaches past it: a border of NaN (nodata) keeps the mean to the cells there are.
    transform = fine.rio.transform()
    border = math.ceil(max(abs(coarse.rio.transform().a / transform.a),
                           abs(coarse.rio.transform().e / transform.e))) + 1
    padded = np.pad(np.asarray(fine.values, dtype=np.float32), border, constant_values=np.nan)
    out = np.full(coarse.shape, np.nan, dtype=np.float32)
    rasterio.warp.reproject(
        padded, out, src_transform=transform @ Affine.translation(-border, -border), src_crs=fine.rio.crs,
        src_nodata=np.nan, dst_transform=coarse.rio.transform(), dst_crs=coarse.rio.crs, dst_nodata=np.nan,
        resampling=rasterio.warp.Resampling.average)
    return out


def _upsample(values: np.ndarray, coarse: xr.DataArray, grid: xr.DataArray, method: str) -> np.ndarray:
    return upsample(coarse.copy(data=np.asarray(values, dtype=np.float32)), grid, method).values


def back_project(coarse: xr.DataArray, grid: xr.DataArray, *, rounds: int = BACK_PROJECTION_ROUNDS,
                 start: str = "lanczos") -> xr.DataArray:
    """Iterative back-projection of a coarse DEM onto a finer grid (see the module's
    docstring).

    Parameters
    ----------
    coarse : the coarse DEM on its own grid (heights, m, with a CRS).
    grid : the finer grid (a DataArray with a CRS; NaN cells stay NaN).
    rounds : the rounds of back-projection (0: the starting resampling).
    start : the resampling the estimate starts from (:data:`sarheight.terrain.backprojection.UPSAMPLING`).

    Returns
    -------
    xr.DataArray of heights (float32, m) on ``grid``.
    """
    if isinstance(rounds, bool) or not isinstance(rounds, (int, np.integer)) or rounds < 0:
        raise InvalidInputError(f"rounds must be a non-negative integer, got {rounds!r}")
    estimate = _upsample(coarse.values, coarse, grid, start).astype(np.float64)
    measured = np.asarray(coarse.values, dtype=np.float64)
    inside = np.isfinite(estimate)
    for _ in range(int(rounds)):
        difference = measured - area_mean(grid.copy(data=estimate.astype(np.float32)), coarse)
        difference = np.where(np.isfinite(difference), difference, 0.0)
        update = _upsample(difference, coarse, grid, "bicubic")
        estimate = estimate + np.where(np.isfinite(update), update, 0.0)
    out = grid.copy(data=np.where(inside, estimate, np.nan).astype(np.float32))
    out.name = "height"
    out.attrs = {"units": "m", "long_name": f"coarse DEM back-projected ({int(rounds)} rounds from {start})"}
    return out


@dataclass(frozen=True)
class ResidualCovariance:
    """The covariance of the priors' residuals: ``sill - nugget`` of an exponential field of
    correlation length ``length_m``, plus a ``nugget`` uncorrelated between priors (m^2;
    m), around their ``mean`` (m)."""

    mean: float
    sill: float
    nugget: float
    length_m: float

    @property
    def correlated(self) -> float:
        """The variance of the correlated part (m^2)."""
        return max(self.sill - self.nugget, 0.0)


def _thin(count: int, limit: int) -> np.ndarray:
    return np.arange(count) if count <= limit else np.linspace(0, count - 1, limit).round().astype(np.int64)


def fit_residual_covariance(points: np.ndarray, residuals: np.ndarray, *, shortest_m: float) -> ResidualCovariance:
    """Fit :class:`ResidualCovariance` to residuals at ``points`` ((n, 2) metric
    coordinates, m) by weighted least squares on their binned semivariogram.

    ``shortest_m`` is the shortest correlation length tried (the coarse cell: a shorter
    correlated error is no error of the coarse DEM's scale); the longest is the extent
    of the points.
    """
    residuals = np.asarray(residuals, dtype=np.float64)
    mean, sill = float(residuals.mean()), float(residuals.var())
    # The mean is the coarse DEM's bias only as far as it stands out of twice its standard
    # error (a few priors on an unbiased DEM would otherwise shift every cell by their
    # noise): shrunk towards 0 by max(0, 1 - 4 SE^2 / mean^2).
    mean = mean * max(0.0, 1.0 - 4.0 * sill / max(residuals.size, 1) / mean**2) if abs(mean) > 1e-12 else 0.0
    if residuals.size < 8 or sill <= 0:
        return ResidualCovariance(mean, sill, sill, shortest_m)
    chosen = _thin(residuals.size, 1500)
    xy, value = points[chosen], residuals[chosen]
    left, right = np.triu_indices(value.size, k=1)
    lag = np.hypot(*(xy[left] - xy[right]).T)
    half_square = 0.5 * (value[left] - value[right]) ** 2
    extent = float(lag.max()) if lag.size else shortest_m
    edges = np.geomspace(max(min(float(lag[lag > 0].min(initial=shortest_m)), shortest_m), 1e-3), extent, 20)
    which = np.digitize(lag, edges) - 1
    counts = np.bincount(which[(which >= 0) & (which < edges.size - 1)], minlength=edges.size - 1).astype(float)
    sums = np.bincount(which[(which >= 0) & (which < edges.size - 1)],
                       weights=half_square[(which >= 0) & (which < edges.size - 1)], minlength=edges.size - 1)
    used = counts >= 10
    if used.sum() < 3:
        return ResidualCovariance(mean, sill, sill, shortest_m)
    centres = np.sqrt(edges[:-1] * edges[1:])[used]
    observed, weight = sums[used] / counts[used], counts[used]
    best = (math.inf, sill, shortest_m)
    for length in np.geomspace(shortest_m, max(extent, shortest_m), 24):
        shape = 1.0 - np.exp(-centres / length)
        # For a given length the model n + (s - n) * shape is linear in n: least squares, clipped.
        design = 1.0 - shape
        nugget = float(np.clip(np.sum(weight * design * (observed - sill * shape)) / max(np.sum(weight * design**2),
                                                                                          1e-30), 0.0, sill))
        model = nugget + (sill - nugget) * shape
        cost = float(np.sum(weight * (observed - model) ** 2))
        if cost < best[0]:
            best = (cost, nugget, float(length))
    return ResidualCovariance(mean, sill, best[1], best[2])


def krige_residuals(points: np.ndarray, residuals: np.ndarray, targets: np.ndarray,
                    covariance: ResidualCovariance) -> tuple[np.ndarray, np.ndarray]:
    """Simple kriging of ``residuals`` at ``points`` ((n, 2), m) onto ``targets`` ((m, 2),
    m) around their mean: the correlated part of the residual field and its standard
    deviation at every target (m).

    Each target is kriged from its :data:`KRIGING_NEIGHBOURS` nearest priors (a moving
    neighbourhood: the weights of farther priors are screened off by nearer ones, and a
    solve over all of them would cost the cube of their number per scene)."""
    from scipy.spatial import cKDTree

    correlated = covariance.correlated
    residuals = np.asarray(residuals, dtype=np.float64)
    if correlated <= 0 or residuals.size == 0:
        return np.full(len(targets), covariance.mean if residuals.size else 0.0), np.full(len(targets), 0.0)
    value = residuals - covariance.mean
    count = min(KRIGING_NEIGHBOURS, residuals.size)
    _, nearest = cKDTree(points).query(targets, k=count)
    nearest = nearest.reshape(len(targets), count)
    estimate = np.empty(len(targets))
    variance = np.empty(len(targets))
    for start in range(0, len(targets), 2048):
        chosen = nearest[start:start + 2048]
        xy = points[chosen]  # (b, k, 2)
        between = np.hypot(xy[:, :, None, 0] - xy[:, None, :, 0], xy[:, :, None, 1] - xy[:, None, :, 1])
        system = correlated * np.exp(-between / covariance.length_m)
        system += (covariance.nugget + 1e-6 * correlated) * np.eye(count)
        to_target = targets[start:start + 2048, None, :] - xy
        right = correlated * np.exp(-np.hypot(to_target[..., 0], to_target[..., 1]) / covariance.length_m)
        weights = np.linalg.solve(system, right[..., None])[..., 0]
        estimate[start:start + 2048] = covariance.mean + np.sum(weights * value[chosen], axis=1)
        variance[start:start + 2048] = correlated - np.sum(weights * right, axis=1)
    return estimate, np.sqrt(np.clip(variance, 0.0, None))


def significant_mean(points: np.ndarray, residuals: np.ndarray, covariance: ResidualCovariance
                     ) -> ResidualCovariance:
    """``covariance`` with its mean replaced by the generalised least-squares mean of the
    residuals under it, shrunk towards 0 as far as it does not stand out of twice its
    standard error ``1 / sqrt(1' K^-1 1)``. Residuals correlated over a kilometre along a
    few tracks are a few independent samples, not hundreds: their plain mean is the local
    value of the correlated error there, not the coarse DEM's bias, and spread over the
    whole scene it adds error far from the tracks."""
    from scipy.linalg import cho_factor, cho_solve

    residuals = np.asarray(residuals, dtype=np.float64)
    if residuals.size < 3 or covariance.sill <= 0:
        return covariance
    chosen = _thin(residuals.size, 1500)
    xy, value = points[chosen], residuals[chosen]
    distance = np.hypot(xy[:, None, 0] - xy[None, :, 0], xy[:, None, 1] - xy[None, :, 1])
    system = covariance.correlated * np.exp(-distance / covariance.length_m)
    system += (covariance.nugget + 1e-6 * covariance.sill) * np.eye(len(xy))
    factor = cho_factor(system)
    ones = np.ones(len(xy))
    weights = cho_solve(factor, ones)
    variance = 1.0 / float(ones @ weights)
    mean = float(weights @ value) * variance
    shrunk = mean * max(0.0, 1.0 - 4.0 * variance / mean**2) if abs(mean) > 1e-12 else 0.0
    return replace(covariance, mean=shrunk)


def prior_correction(heights: xr.DataArray, prior_height: np.ndarray, prior_mask: np.ndarray, *,
                     coarse_cell_m: float, product_error_m: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The correction of ``heights`` (a DEM on a grid, m) by the known heights: the kriged
    correlated part of their residuals (see the module's docstring) and its standard
    deviation, both (H, W) float64 in metres; zero correction and NaN deviation with
    fewer than three priors.

    ``product_error_m``: the coarse product's stated error (m, RMS), where known. What the
    kriging corrects is the product's error, so its correlated part is at most that
    variance and its mean at most that size; the rest of the residuals is the relief its
    cells lost and the priors' own error (an exact product, stated 0, is not corrected:
    residuals along a valley's tracks would otherwise move its block means).

    The kriging runs on a lattice of a quarter of the correlation length (at most two
    coarse cells, at least the grid's cell, and coarser where it would have more than
    :data:`KRIGING_TARGETS` cells) and is resampled bilinearly to the grid: the
    correction is smooth on that scale.
    """
    if not (math.isfinite(coarse_cell_m) and coarse_cell_m > 0):
        raise InvalidInputError(f"coarse_cell_m must be a positive number of metres, got {coarse_cell_m!r}")
    values = np.asarray(heights.values, dtype=np.float64)
    known = (np.asarray(prior_mask) > 0) & np.isfinite(prior_height) & np.isfinite(values)
    if known.sum() < 3:
        return np.zeros(values.shape), np.full(values.shape, np.nan)
    dy, dx = cell_size_m(heights)
    rows, cols = np.nonzero(known)
    points = np.stack([rows * dy, cols * dx], axis=1)
    residuals = np.asarray(prior_height, dtype=np.float64)[known] - values[known]
    fitted = fit_residual_covariance(points, residuals, shortest_m=coarse_cell_m)
    if product_error_m is not None:
        if not (math.isfinite(product_error_m) and product_error_m >= 0):
            raise InvalidInputError(f"product_error_m must be a non-negative number of metres, got {product_error_m!r}")
        correlated = min(fitted.correlated, product_error_m**2)
        fitted = replace(fitted, nugget=fitted.sill - correlated)
    covariance = significant_mean(points, residuals, fitted)
    if product_error_m is not None:
        covariance = replace(covariance, mean=float(np.clip(covariance.mean, -product_error_m, product_error_m)))
    spacing = min(max(covariance.length_m / 4.0, min(dy, dx)), 2.0 * coarse_cell_m)
    spacing = max(spacing, math.sqrt(values.shape[0] * dy * values.shape[1] * dx / KRIGING_TARGETS))
    step_rows, step_cols = max(1, int(spacing // dy)), max(1, int(spacing // dx))
    lattice_rows = np.arange(0, values.shape[0] + step_rows - 1, step_rows).clip(max=values.shape[0] - 1)
    lattice_cols = np.arange(0, values.shape[1] + step_cols - 1, step_cols).clip(max=values.shape[1] - 1)
    lattice_rows, lattice_cols = np.unique(lattice_rows), np.unique(lattice_cols)
    grid_rows, grid_cols = np.meshgrid(lattice_rows * dy, lattice_cols * dx, indexing="ij")
    targets = np.stack([grid_rows.ravel(), grid_cols.ravel()], axis=1)
    estimate, deviation = krige_residuals(points, residuals, targets, covariance)
    shape = (lattice_rows.size, lattice_cols.size)
    correction = _lattice_to_cells(estimate.reshape(shape), lattice_rows, lattice_cols, values.shape)
    spread = _lattice_to_cells(deviation.reshape(shape), lattice_rows, lattice_cols, values.shape)
    return correction, spread


def _lattice_to_cells(lattice: np.ndarray, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``lattice`` (values at the grid's ``rows`` x ``cols``) interpolated bilinearly to
    every cell of a grid of ``shape``."""
    from scipy.interpolate import RegularGridInterpolator

    if lattice.shape[0] == 1 or lattice.shape[1] == 1:
        return np.broadcast_to(lattice.mean(), shape).copy()
    interpolator = RegularGridInterpolator((rows, cols), lattice, method="linear", bounds_error=False,
                                           fill_value=None)
    grid_rows, grid_cols = np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij")
    return interpolator(np.stack([grid_rows.ravel(), grid_cols.ravel()], axis=1)).reshape(shape)


@dataclasses.dataclass(frozen=True)
class MadeOnGrid:
    """What a caller has already made of a coarse DEM on a grid, for
    :func:`refined_without_sar` to take where the priors leave the DEM where it is instead
    of making it again: its back-projection (:func:`back_project`) and its Lanczos
    resampling (:func:`upsample`), each (rows, cols) heights on the grid or None."""

    back_projection: np.ndarray | None = None
    lanczos: np.ndarray | None = None


def refined_without_sar(native: xr.DataArray, grid: xr.DataArray, priors: xr.Dataset,
                        coarse_cell_m: float, *, register: bool = True, made: MadeOnGrid | None = None,
                        product_error_m: float | None = None
                        ) -> tuple[dict[str, np.ndarray], dict[str, float | int]]:
    """The coarse DEM ``native`` (on its own grid) refined on ``grid`` without SAR and
    without learning (this module): registered horizontally to the
    priors (``coarse_registered``: resampled with a Lanczos kernel), back-projected (``coarse_backprojected``), then
    corrected by the priors'
    residuals kriged (``coarse_refined``, with their standard deviation
    ``prior_correction_std``, m; NaN without priors): float32 arrays on the grid; and the
    co-registration's attributes. ``register=False``: the priors' registration is
    measured and recorded (``coregistration_applied`` 0) but not applied: the image has
    registered the DEM, and the priors are its second opinion. ``made``: what the caller
    has already made of ``native`` on ``grid`` (:class:`MadeOnGrid`), used where the priors
    leave it where it is, instead of making it again.
    ``product_error_m``: the product's stated error, as :func:`prior_correction` takes it."""
    registered, registration = coregister(native, grid, priors["prior_height"].values, priors["prior_mask"].values)
    if not register:
        registered = native
    made = made if registered is native and made is not None else MadeOnGrid()
    backprojected = (grid.copy(data=made.back_projection) if made.back_projection is not None
                     else back_project(registered, grid))
    lanczos = made.lanczos if made.lanczos is not None else upsample(registered, grid, "lanczos").values
    known = registration.corrected_priors(backprojected, priors["prior_height"].values)
    correction, deviation = prior_correction(backprojected, known, priors["prior_mask"].values,
                                             coarse_cell_m=coarse_cell_m, product_error_m=product_error_m)
    refined = backprojected.values + correction
    arrays = {"coarse_registered": lanczos.astype(np.float32),
              "coarse_backprojected": backprojected.values.astype(np.float32),
              "coarse_refined": refined.astype(np.float32),
              "prior_correction_std": np.where(np.isfinite(backprojected.values), deviation, np.nan).astype(np.float32)}
    return arrays, {**registration.to_attrs(), "coregistration_applied": int(register)}
