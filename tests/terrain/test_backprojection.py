"""The non-learned refinement of a coarse DEM: the area mean, iterative back-projection
and the kriging of the priors' residuals, against analytic cases and numpy twins."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import distance_transform_edt, gaussian_filter

from sarheight.dem import open_dem
from sarheight.errors import InvalidInputError
from sarheight.terrain.backprojection import (
    KRIGING_NEIGHBOURS,
    ResidualCovariance,
    area_mean,
    back_project,
    coregister,
    fit_residual_covariance,
    krige_residuals,
    prior_correction,
    upsample,
)
from sarheight.terrain.grid import block_mean
from tests.support.scenes import plane_dem, rough_dem


def coarse_grid(fine: xr.DataArray, factor: int, offset: tuple[float, float], shape: tuple[int, int]) -> xr.DataArray:
    """A grid of cells ``factor`` times ``fine``'s, its corner shifted by ``offset`` (rows,
    cols) coarse cells into the fine raster; zeros (only the grid matters)."""
    t = fine.rio.transform()
    transform = Affine(t.a * factor, 0, t.c + offset[1] * t.a * factor, 0, t.e * factor,
                       t.f + offset[0] * t.e * factor)
    y = transform.f + transform.e * (np.arange(shape[0]) + 0.5)
    x = transform.c + transform.a * (np.arange(shape[1]) + 0.5)
    grid = xr.DataArray(np.zeros(shape, np.float32), dims=("y", "x"), coords={"y": y, "x": x})
    return grid.rio.write_crs(fine.rio.crs).rio.write_transform(transform)


def plane_gradient(dem: xr.DataArray) -> tuple[float, float]:
    """(per row, per column): the height steps of a planar DEM (m a fine cell)."""
    values = dem.values.astype(np.float64)
    return ((values[-1, 0] - values[0, 0]) / (dem.shape[0] - 1),
            (values[0, -1] - values[0, 0]) / (dem.shape[1] - 1))


def lanczos_bias(delta: float) -> float:
    """The error (source cells) of GDAL's Lanczos kernel (a sinc windowed by a sinc of
    radius 3, weights normalised) on a line, at ``delta`` source cells from a source
    centre: the kernel does not reproduce a slope exactly off the source centres."""
    taps = np.arange(-3, 4) - delta
    weights = np.where(np.abs(taps) < 3, np.sinc(taps) * np.sinc(taps / 3), 0.0)
    return float((weights * (taps + delta)).sum() / weights.sum() - delta)


def rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.nanmean(np.square(values))))


# --- area_mean ---------------------------------------------------------------------


@pytest.mark.parametrize("factor", [2, 3, 4, 5])
def test_area_mean_on_aligned_grid_is_the_block_mean(factor):
    dem = rough_dem(seed=factor, rows=12 * factor, cols=9 * factor)
    coarse = block_mean(dem, factor)
    measured = area_mean(dem, coarse)
    assert measured.dtype == np.float32 and measured.shape == coarse.shape
    np.testing.assert_allclose(measured, coarse.values, atol=2e-4)



@pytest.mark.parametrize(("factor", "rows", "cols"), [(3, 41, 30), (5, 40, 37)])
def test_area_mean_of_partial_edge_blocks_is_the_block_mean(factor, rows, cols):
    # block_mean averages what an edge block holds; area_mean is documented as the mean of
    # the fine cells a coarse cell covers: both say the same of a block that is cut off.
    dem = rough_dem(seed=1, rows=rows, cols=cols)
    coarse = block_mean(dem, factor)
    np.testing.assert_allclose(area_mean(dem, coarse), coarse.values, atol=2e-4)


@settings(max_examples=40, deadline=None)
@given(offset_row=st.floats(0.0, 0.95), offset_col=st.floats(0.0, 0.95), slope_east=st.floats(-35.0, 35.0),
       slope_north=st.floats(-35.0, 35.0), factor=st.integers(2, 5))
def test_area_mean_on_shifted_grid_is_the_plane_at_coarse_centres(offset_row, offset_col, slope_east, slope_north,
                                                                  factor):
    # The mean of a plane over a rectangle is its value at the centre: exact only if the
    # partial overlaps of shifted cells are weighted by their area.
    dem = plane_dem(40, 40, slope_east, slope_north)
    per_row, per_col = plane_gradient(dem)
    # Only coarse cells wholly inside the fine raster.
    shape = (int(40 / factor - offset_row), int(40 / factor - offset_col))
    grid = coarse_grid(dem, factor, (offset_row, offset_col), shape)
    centre_rows = (offset_row + np.arange(shape[0]) + 0.5) * factor - 0.5  # in fine cells
    centre_cols = (offset_col + np.arange(shape[1]) + 0.5) * factor - 0.5
    expected = float(dem.values[0, 0]) + per_row * centre_rows[:, None] + per_col * centre_cols[None, :]
    np.testing.assert_allclose(area_mean(dem, grid), expected, atol=2e-3)


def overlap_weights(offset: float, factor: int, count: int, fine: int) -> np.ndarray:
    """(count, fine): the length of fine cell j (fine units) inside coarse cell k."""
    starts = (offset + np.arange(count))[:, None] * factor
    cells = np.arange(fine)[None, :]
    return np.clip(np.minimum(starts + factor, cells + 1) - np.maximum(starts, cells), 0.0, None)


@settings(max_examples=40, deadline=None)
@given(offset_row=st.floats(0.0, 0.95), offset_col=st.floats(0.0, 0.95), factor=st.integers(2, 5),
       seed=st.integers(0, 3))
def test_area_mean_on_shifted_grid_matches_its_twin(offset_row, offset_col, factor, seed):
    # The twin: separable overlap lengths, rows x columns, normalised per coarse cell.
    dem = rough_dem(seed=seed, rows=40, cols=40)
    shape = (int(40 / factor - offset_row), int(40 / factor - offset_col))
    rows = overlap_weights(offset_row, factor, shape[0], 40)
    cols = overlap_weights(offset_col, factor, shape[1], 40)
    expected = rows @ dem.values.astype(np.float64) @ cols.T / np.outer(rows.sum(1), cols.sum(1))
    grid = coarse_grid(dem, factor, (offset_row, offset_col), shape)
    np.testing.assert_allclose(area_mean(dem, grid), expected, atol=2e-3)


def test_area_mean_is_nan_only_where_a_coarse_cell_holds_no_height():
    dem = rough_dem(seed=4, rows=24, cols=24)
    values = dem.values.copy()
    values[0:3, 0:3] = np.nan  # one whole coarse cell
    values[10, 10] = np.nan  # one fine cell of another
    dem = dem.copy(data=values)
    coarse = block_mean(dem, 3)
    measured = area_mean(dem, coarse)
    assert np.isnan(measured[0, 0]) and np.isfinite(np.delete(measured.ravel(), 0)).all()
    np.testing.assert_allclose(measured[3, 3], np.nanmean(values[9:12, 9:12]), atol=2e-4)


# --- back_project ------------------------------------------------------------------


def test_back_project_without_rounds_is_the_lanczos_resampling():
    dem = rough_dem(seed=2, rows=36, cols=36)
    coarse = block_mean(dem, 3)
    np.testing.assert_array_equal(back_project(coarse, dem, rounds=0).values,
                                  upsample(coarse, dem, "lanczos").values)


@settings(max_examples=12, deadline=None)
@given(slope_east=st.floats(-30.0, 30.0), slope_north=st.floats(-30.0, 30.0))
def test_back_project_keeps_a_plane(slope_east, slope_north):
    # Lanczos does not reproduce a slope exactly (a ripple of 1.6 % of a coarse cell's
    # step at a third of a coarse cell off its centre): the twin predicts that ripple, and
    # back-projection leaves it, its area mean being zero.
    factor = 3
    dem = plane_dem(60, 60, slope_east, slope_north)
    per_row, per_col = plane_gradient(dem)
    coarse = block_mean(dem, factor)
    index = np.arange(60)
    bias = np.array([lanczos_bias((i + 0.5) / factor - 0.5 - i // factor) for i in index])
    ripple = factor * (bias[:, None] * per_row + bias[None, :] * per_col)
    step = factor * (abs(per_row) + abs(per_col))  # a coarse cell's height step (m)
    inner = np.s_[12:-12, 12:-12]  # four coarse cells from the edges: beyond the kernel's reach
    truth = dem.values.astype(np.float64)
    start = back_project(coarse, dem, rounds=0).values
    np.testing.assert_allclose(start[inner], (truth + ripple)[inner], atol=1e-3 + 1e-5 * step)
    refined = back_project(coarse, dem, rounds=10).values
    assert np.abs(refined - truth)[inner].max() <= 0.02 * step + 1e-3
    assert np.abs(refined - truth - ripple)[inner].max() <= 0.003 * step + 1e-3


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_back_project_converges_to_heights_whose_area_mean_is_the_product(seed):
    dem = rough_dem(seed=seed, rows=48, cols=48)
    coarse = block_mean(dem, 3)
    residuals = [rms(area_mean(back_project(coarse, dem, rounds=rounds), coarse) - coarse.values)
                 for rounds in (0, 1, 3, 10)]
    assert all(later < earlier for earlier, later in itertools.pairwise(residuals)), residuals
    assert residuals[-1] < 1e-3 * residuals[0], residuals


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_back_project_is_closer_to_the_truth_than_lanczos(seed):
    dem = rough_dem(seed=seed, rows=48, cols=48)
    coarse = block_mean(dem, 3)
    lanczos = rms(upsample(coarse, dem, "lanczos").values - dem.values)
    refined = rms(back_project(coarse, dem).values - dem.values)
    assert refined < 0.9 * lanczos, (refined, lanczos)


def test_back_project_keeps_nan_cells_of_the_grid():
    dem = rough_dem(seed=6, rows=36, cols=36)
    coarse = block_mean(dem, 3)
    values = dem.values.copy()
    values[5:9, 20:30] = np.nan
    values[30, 2] = np.nan
    grid = dem.copy(data=values)
    out = back_project(coarse, grid, rounds=3)
    assert out.shape == grid.shape and out.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(out.values), np.isnan(values))


@pytest.mark.parametrize("rounds", [-1, 1.5, True, "3", None])
def test_back_project_refuses_bad_rounds(rounds):
    dem = rough_dem(seed=1, rows=24, cols=24)
    with pytest.raises(InvalidInputError, match="rounds"):
        back_project(block_mean(dem, 3), dem, rounds=rounds)


# --- fit_residual_covariance -------------------------------------------------------


def exponential_field(rng: np.random.Generator, points: np.ndarray, variance: float, length: float) -> np.ndarray:
    """An exact draw of a zero-mean field of exponential covariance at ``points``."""
    distance = np.hypot(*(points[:, None, :] - points[None, :, :]).transpose(2, 0, 1))
    return np.linalg.cholesky(variance * np.exp(-distance / length)) @ rng.standard_normal(len(points))


def nearest_spacing(points: np.ndarray) -> float:
    from scipy.spatial import cKDTree

    return float(np.median(cKDTree(points).query(points, 2)[0][:, 1]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_white_noise_is_all_nugget(seed):
    rng = np.random.default_rng(seed)
    points = rng.uniform(0.0, 10_000.0, (1500, 2))
    found = fit_residual_covariance(points, rng.normal(0.0, 2.0, 1500), shortest_m=90.0)
    assert found.nugget > 0.8 * found.sill, found


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_white_noise_of_few_points_leaves_little_correlation_between_them(seed):
    # With fewer points the semivariogram's short lags are a few dozen pairs and the
    # nugget is loosely found, but whatever it gives the correlated part must not reach
    # from one prior to the next.
    rng = np.random.default_rng(seed)
    points = rng.uniform(0.0, 10_000.0, (300, 2))
    found = fit_residual_covariance(points, rng.normal(0.0, 2.0, 300), shortest_m=90.0)
    assert found.correlated * math.exp(-nearest_spacing(points) / found.length_m) < 0.25 * found.sill, found


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exponential_field_gives_its_length_and_bias(seed):
    rng = np.random.default_rng(seed)
    points = rng.uniform(0.0, 10_000.0, (600, 2))
    residuals = 5.0 + exponential_field(rng, points, 9.0, 800.0)
    found = fit_residual_covariance(points, residuals, shortest_m=90.0)
    assert 400.0 <= found.length_m <= 1600.0, found
    assert found.nugget < 0.3 * found.sill, found
    # The mean of a correlated field over 10 km wanders by ~0.6 m (800 m cells of 9 m^2).
    assert found.mean == pytest.approx(5.0, abs=2.0)
    assert found.sill == pytest.approx(residuals.var())


def test_constant_bias_is_the_mean():
    rng = np.random.default_rng(3)
    points = rng.uniform(0.0, 5_000.0, (400, 2))
    residuals = 7.0 + rng.normal(0.0, 1.5, 400)
    found = fit_residual_covariance(points, residuals, shortest_m=90.0)
    assert found.mean == pytest.approx(residuals.mean(), rel=1e-3)
    assert found.mean == pytest.approx(7.0, abs=4 * 1.5 / math.sqrt(400))


@pytest.mark.parametrize("count", [1, 3, 7])
def test_few_residuals_are_all_nugget(count):
    rng = np.random.default_rng(count)
    residuals = 3.0 + rng.normal(0.0, 1.0, count)
    found = fit_residual_covariance(rng.uniform(0, 1000, (count, 2)), residuals, shortest_m=90.0)
    assert found.nugget == found.sill == pytest.approx(residuals.var())
    assert found.correlated == 0.0 and found.length_m == 90.0


def test_mean_of_few_noisy_residuals_is_shrunk_to_zero():
    rng = np.random.default_rng(11)
    residuals = rng.normal(0.0, 2.0, 6)
    residuals -= residuals.mean() - 0.5  # a mean well inside twice its standard error (1.6 m)
    found = fit_residual_covariance(rng.uniform(0, 1000, (6, 2)), residuals, shortest_m=90.0)
    assert found.mean == 0.0


def test_bias_that_stands_out_is_kept():
    rng = np.random.default_rng(12)
    residuals = 10.0 + rng.normal(0.0, 3.0, 200)
    found = fit_residual_covariance(rng.uniform(0, 5000, (200, 2)), residuals, shortest_m=90.0)
    assert found.mean == pytest.approx(residuals.mean(), rel=0.01)


@settings(max_examples=60, deadline=None)
@given(values=st.lists(st.integers(-50_000, 50_000).map(lambda mm: mm / 1000.0), min_size=2, max_size=30))
def test_mean_shrinkage_follows_its_twin(values):
    # Twin: the mean times max(0, 1 - 4 SE^2 / mean^2), SE^2 the variance over n.
    residuals = np.asarray(values)
    points = np.stack([np.arange(residuals.size) * 100.0, np.zeros(residuals.size)], axis=1)
    raw, variance = residuals.mean(), residuals.var()
    expected = raw * max(0.0, 1.0 - 4.0 * variance / residuals.size / raw**2) if raw else 0.0
    found = fit_residual_covariance(points, residuals, shortest_m=90.0).mean
    assert found == pytest.approx(expected, rel=1e-9, abs=1e-9)
    assert abs(found) <= abs(raw) + 1e-12 and found * raw >= 0.0
    if raw**2 < 0.999 * 4.0 * variance / residuals.size:
        assert found == 0.0



def test_mean_shrinkage_survives_a_vanishing_mean():
    found = fit_residual_covariance(np.zeros((2, 2)), np.array([1e-170, 1e-170]), shortest_m=90.0)
    assert found.mean == pytest.approx(0.0, abs=1e-150)


# --- krige_residuals ---------------------------------------------------------------


def simple_kriging(points, residuals, targets, covariance):
    """The twin: the kriged correlated part and its deviation by a direct solve."""
    def kernel(a, b):
        return covariance.correlated * np.exp(-np.hypot(*(a[:, None] - b[None]).transpose(2, 0, 1))
                                              / covariance.length_m)

    system = kernel(points, points) + (covariance.nugget + 1e-6 * covariance.correlated) * np.eye(len(points))
    towards = kernel(targets, points)
    weights = np.linalg.solve(system, towards.T)  # K^-1 k, one column per target
    estimate = covariance.mean + weights.T @ (residuals - covariance.mean)
    variance = covariance.correlated - np.sum(towards.T * weights, axis=0)
    return estimate, np.sqrt(np.clip(variance, 0.0, None))


def test_kriging_matches_a_direct_solve():
    rng = np.random.default_rng(5)
    points = rng.uniform(0.0, 2000.0, (12, 2))
    residuals = rng.normal(2.0, 3.0, 12)
    targets = rng.uniform(-500.0, 2500.0, (40, 2))
    covariance = ResidualCovariance(mean=1.5, sill=9.0, nugget=2.0, length_m=600.0)
    estimate, deviation = krige_residuals(points, residuals, targets, covariance)
    expected, expected_deviation = simple_kriging(points, residuals, targets, covariance)
    np.testing.assert_allclose(estimate, expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(deviation, expected_deviation, rtol=1e-7, atol=1e-9)


def test_kriging_of_many_priors_uses_each_targets_nearest():
    # Beyond KRIGING_NEIGHBOURS priors, the twin is the direct solve over a target's nearest.
    rng = np.random.default_rng(8)
    points = rng.uniform(0.0, 5000.0, (4 * KRIGING_NEIGHBOURS, 2))
    residuals = rng.normal(1.0, 3.0, len(points))
    targets = rng.uniform(0.0, 5000.0, (15, 2))
    covariance = ResidualCovariance(mean=0.8, sill=9.0, nugget=1.0, length_m=700.0)
    estimate, deviation = krige_residuals(points, residuals, targets, covariance)
    for index, target in enumerate(targets):
        nearest = np.argsort(np.hypot(*(points - target).T))[:KRIGING_NEIGHBOURS]
        expected, expected_deviation = simple_kriging(points[nearest], residuals[nearest], target[None], covariance)
        assert estimate[index] == pytest.approx(expected[0], rel=1e-9, abs=1e-9)
        assert deviation[index] == pytest.approx(expected_deviation[0], rel=1e-7, abs=1e-9)


def test_kriging_without_nugget_passes_through_the_data():
    rng = np.random.default_rng(6)
    points = rng.uniform(0.0, 3000.0, (25, 2))
    residuals = rng.normal(0.0, 3.0, 25)
    covariance = ResidualCovariance(mean=0.4, sill=9.0, nugget=0.0, length_m=800.0)
    estimate, deviation = krige_residuals(points, residuals, points, covariance)
    np.testing.assert_allclose(estimate, residuals, atol=1e-3)
    assert deviation.max() < 0.01 * math.sqrt(covariance.sill)


def test_kriging_far_from_the_data_is_the_mean_and_the_prior_spread():
    rng = np.random.default_rng(7)
    points = rng.uniform(0.0, 3000.0, (25, 2))
    residuals = rng.normal(0.0, 3.0, 25)
    covariance = ResidualCovariance(mean=-1.2, sill=9.0, nugget=1.0, length_m=500.0)
    far = np.array([[1e5, 1e5], [-8e4, 2e3], [1.5e3, 6e4]])  # over a hundred lengths away
    estimate, deviation = krige_residuals(points, residuals, far, covariance)
    np.testing.assert_allclose(estimate, covariance.mean, atol=1e-9)
    np.testing.assert_allclose(deviation, math.sqrt(covariance.sill - covariance.nugget), rtol=1e-9)


def test_kriging_without_correlation_or_data_gives_the_mean():
    points, targets = np.zeros((3, 2)), np.ones((4, 2))
    flat = ResidualCovariance(mean=2.0, sill=4.0, nugget=4.0, length_m=90.0)
    estimate, deviation = krige_residuals(points, np.array([1.0, 2.0, 3.0]), targets, flat)
    np.testing.assert_array_equal(estimate, 2.0)
    np.testing.assert_array_equal(deviation, 0.0)
    estimate, _ = krige_residuals(points[:0], np.zeros(0), targets, flat)
    np.testing.assert_array_equal(estimate, 0.0)


# --- prior_correction --------------------------------------------------------------

CELL = 30.0  # m


def projected(values: np.ndarray) -> xr.DataArray:
    transform = Affine(CELL, 0, 500_000.0, 0, -CELL, 5_000_000.0)
    return open_dem((values.astype(np.float32), transform, "EPSG:32632"), vertical_datum="ellipsoid")


def erroneous_dem(seed: int, size: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """A smooth truth, and its error: a field of 3 m correlated over ~1 km plus a 4 m bias."""
    rng = np.random.default_rng(seed)
    index = np.arange(size)
    truth = 300.0 + 50.0 * np.sin(index / 9.0)[None, :] + 40.0 * np.cos(index / 13.0)[:, None]
    noise = gaussian_filter(rng.standard_normal((size + 60, size + 60)), 1000.0 / CELL / 2)[30:-30, 30:-30]
    return truth, 4.0 + 3.0 * noise / noise.std()


def random_mask(rng: np.random.Generator, shape: tuple[int, int], count: int, cols: int | None = None) -> np.ndarray:
    """``count`` prior cells at random, in the first ``cols`` columns."""
    cols = shape[1] if cols is None else cols
    mask = np.zeros(shape, dtype=np.uint8)
    chosen = rng.choice(shape[0] * cols, count, replace=False)
    mask[chosen // cols, chosen % cols] = 1
    return mask


@pytest.mark.parametrize("seed", [0, 1])
def test_prior_correction_removes_most_of_a_smooth_error(seed):
    truth, error = erroneous_dem(seed)
    mask = random_mask(np.random.default_rng(seed + 10), truth.shape, 300)
    heights = projected(truth + error)
    correction, deviation = prior_correction(heights, np.where(mask == 1, truth, np.nan), mask, coarse_cell_m=90.0)
    assert correction.shape == deviation.shape == truth.shape
    assert np.isfinite(correction).all() and np.isfinite(deviation).all()
    before = rms(heights.values - truth)
    after = rms(heights.values + correction - truth)
    # Better than the bias alone: the correlated part is found too.
    bias_only = rms(heights.values - (heights.values - truth)[mask == 1].mean() - truth)
    assert after < 0.6 * before and after < 0.5 * bias_only, (before, bias_only, after)


def test_prior_correction_is_surer_near_the_priors():
    truth, error = erroneous_dem(2)
    mask = random_mask(np.random.default_rng(3), truth.shape, 300, cols=60)  # the western half only
    correction, deviation = prior_correction(projected(truth + error), np.where(mask == 1, truth, np.nan), mask,
                                             coarse_cell_m=90.0)
    distance = distance_transform_edt(mask == 0) * CELL
    near, far = deviation[distance <= CELL].mean(), deviation[distance > 1500.0].mean()
    assert near < 0.6 * far, (near, far)
    west = np.s_[:, :60]
    assert rms((error + correction)[west]) < 0.4 * rms(error[west])


@pytest.mark.parametrize("count", [0, 1, 2])
def test_prior_correction_needs_three_priors(count):
    truth, error = erroneous_dem(0, size=30)
    mask = random_mask(np.random.default_rng(0), truth.shape, count)
    correction, deviation = prior_correction(projected(truth + error), np.where(mask == 1, truth, np.nan), mask,
                                             coarse_cell_m=90.0)
    np.testing.assert_array_equal(correction, 0.0)
    assert np.isnan(deviation).all() and deviation.shape == truth.shape


def test_prior_correction_ignores_priors_without_a_height():
    # A mask cell without a finite height, or over a NaN of the DEM, is no prior.
    truth, error = erroneous_dem(0, size=30)
    mask = random_mask(np.random.default_rng(0), truth.shape, 5)
    prior = np.where(mask == 1, truth, np.nan)
    rows, cols = np.nonzero(mask)
    prior[rows[:2], cols[:2]] = np.nan
    heights = (truth + error).copy()
    heights[rows[2], cols[2]] = np.nan
    correction, deviation = prior_correction(projected(heights), prior, mask, coarse_cell_m=90.0)
    np.testing.assert_array_equal(correction, 0.0)
    assert np.isnan(deviation).all()


@pytest.mark.parametrize("cell", [0.0, -90.0, float("nan"), float("inf")])
def test_prior_correction_refuses_a_bad_coarse_cell(cell):
    truth, error = erroneous_dem(0, size=30)
    mask = random_mask(np.random.default_rng(0), truth.shape, 10)
    with pytest.raises(InvalidInputError, match="coarse_cell_m"):
        prior_correction(projected(truth + error), np.where(mask == 1, truth, np.nan), mask, coarse_cell_m=cell)


# --------------------------------------------------------------------------------------
# co-registration to the priors and the significance of the residuals' mean
# --------------------------------------------------------------------------------------


def _shifted_product(dem, factor, east_m, north_m):
    from sarheight.coarse_dem import CoarseDemErrors, coarse_product

    return coarse_product(dem, CoarseDemErrors(factor, shift_east_m=east_m, shift_north_m=north_m))


@pytest.mark.parametrize(("east", "north"), [(30.0, -20.0), (-12.0, 25.0), (0.0, 0.0)])
def test_coregistration_finds_the_products_shift(east, north):
    from sarheight.priors import sample_priors

    dem = rough_dem(seed=3, rows=120, cols=120, relief=900.0)
    product = _shifted_product(dem, 3, east, north)
    priors = sample_priors(dem, count=600, seed=1)
    moved, registration = coregister(product, dem, priors["prior_height"].values, priors["prior_mask"].values)
    assert registration.shift_east_m == pytest.approx(east, abs=3.0)
    assert registration.shift_north_m == pytest.approx(north, abs=3.0)
    # Relabelled, not resampled: the heights are the product's, the grid moved by -shift.
    np.testing.assert_array_equal(moved.values, product.values)
    from sarheight.raster import cell_size_m

    degrees_per_metre = abs(dem.rio.transform().a) / cell_size_m(dem)[1]
    assert float(moved["x"][0] - product["x"][0]) == pytest.approx(
        -registration.shift_east_m * degrees_per_metre, rel=1e-6, abs=1e-12)
    inner = (slice(10, -10), slice(10, -10))
    before = upsample(product, dem, "lanczos").values[inner] - dem.values[inner]
    after = upsample(moved, dem, "lanczos").values[inner] - dem.values[inner]
    if east or north:
        assert np.sqrt(np.nanmean(after**2)) < 0.6 * np.sqrt(np.nanmean(before**2))


def test_coregistration_says_nothing_on_flat_terrain():
    from sarheight.priors import sample_priors

    # Noisy priors over flat ground: their noise is no shift.
    dem = plane_dem(60, 60)
    product = _shifted_product(dem, 3, 20.0, 0.0)
    priors = sample_priors(dem, count=300, seed=2, noise_m=0.5)
    _, registration = coregister(product, dem, priors["prior_height"].values, priors["prior_mask"].values)
    assert abs(registration.shift_east_m) < 1.0 and abs(registration.shift_north_m) < 1.0


def test_correlated_residuals_are_few_samples_of_their_mean():
    from sarheight.terrain.backprojection import ResidualCovariance, significant_mean

    # Residuals of one correlated field along one short line: their plain mean is the
    # field's local value, and under the covariance it does not stand out.
    points = np.stack([np.zeros(200), np.linspace(0.0, 400.0, 200)], axis=1)
    residuals = np.full(200, 2.0) + np.random.default_rng(1).normal(0, 0.2, 200)
    covariance = ResidualCovariance(mean=2.0, sill=9.0, nugget=0.04, length_m=2000.0)
    assert significant_mean(points, residuals, covariance).mean == 0.0
    # The same residuals as independent samples: a bias of 2 m stands out.
    independent = ResidualCovariance(mean=2.0, sill=0.05, nugget=0.04, length_m=1.0)
    assert significant_mean(points, residuals, independent).mean == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize(("bias_m", "found"), [(-8.0, True), (12.0, False), (-120.0, False)])
def test_a_slope_bias_is_taken_only_where_a_footprint_can_make_it(bias_m, found):
    """A departure of the priors that grows with the slope downward, as a wide footprint's
    lowest return makes it, is kept apart; one upward, or far beyond what a footprint can
    make (the relief a coarse DEM loses along a valley floor), is not."""
    from sarheight.priors import sample_priors
    from sarheight.raster import filled_with_mean, gradient, grid_steps
    from sarheight.terrain.backprojection import SLOPE_BIAS_LIMIT_M, coregister

    dem = rough_dem(seed=3, rows=120, cols=120, relief=900.0)
    # A product the priors move (the slope bias is kept with the move it comes with).
    product = _shifted_product(dem, 3, 30.0, -20.0)
    priors = sample_priors(dem, count=600, seed=1)
    heights = upsample(product, dem, "bicubic").values.astype(np.float64)
    tan_slope = np.hypot(*gradient(filled_with_mean(heights), grid_steps(dem)))
    departed = priors["prior_height"].values + bias_m * tan_slope
    _, registration = coregister(product, dem, departed, priors["prior_mask"].values)
    if found:
        assert registration.slope_bias_m == pytest.approx(bias_m, abs=3.0)
    else:
        assert registration.slope_bias_m == 0.0
    assert -SLOPE_BIAS_LIMIT_M <= registration.slope_bias_m <= 0.0


@pytest.mark.parametrize("factor", [3, 5])
def test_the_priors_never_move_an_exact_products_block_means(shared_data, factor):
    """Chhota Shigri (94 m cells, the Himalaya: 282-470 m coarse cells): the exact block
    mean has no shift, and the priors of every kind, drawn four times, say none, though
    the relief its cells lost runs along their tracks and valley roads (62 GNSS priors at
    5x once fitted a 48 m shift, before the halves apart on the ground, the sandwich over
    coarse cells and the 20 % gain)."""
    from sarheight.priors import PriorSpec, draw_prior_errors, sample_priors

    path = shared_data / "dem" / "chhota_shigri_94m.tif"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    dem = open_dem(path, vertical_datum="ellipsoid").isel(y=slice(0, 239), x=slice(0, 239))
    coarse = block_mean(dem, factor)
    for kind in ("altimeter", "lidar", "gnss"):
        for seed in range(4):
            priors = sample_priors(dem, PriorSpec(fraction=1e-3, kind=kind, errors=draw_prior_errors(kind, seed)),
                                   seed=seed)
            moved, found = coregister(coarse, dem, priors["prior_height"].values, priors["prior_mask"].values)
            assert moved is coarse and (found.shift_east_m, found.shift_north_m) == (0.0, 0.0), (kind, seed, found)


@pytest.mark.parametrize(("offset_row", "offset_col"), [(0.0, 0.0), (1.3, 0.6), (2.5, 1.9)])
def test_the_coarse_cell_means_are_exact_area_means_on_grids_not_aligned(offset_row, offset_col):
    from sarheight.coarse_dem import CoarseDemErrors, coarse_product
    from sarheight.terrain.relief import coarse_means

    truth = rough_dem(6, rows=40, cols=36, relief=600.0)
    product = coarse_product(truth, CoarseDemErrors(factor=3, grid_offset=(offset_row, offset_col)))
    operator, heights, cells = coarse_means(truth, product)
    # The product is the exact area mean of the truth: the operator gives its heights back.
    np.testing.assert_allclose(operator @ truth.values.ravel().astype(np.float64), heights, rtol=0, atol=2e-3)
    np.testing.assert_array_equal(heights, product.values.ravel()[cells])
    np.testing.assert_allclose(np.asarray(operator.sum(axis=1)).ravel(), 1.0, atol=1e-12)
