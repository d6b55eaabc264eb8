"""Realistic coarse DEMs: the exact area mean on the product's own grid, the shift's sign,
the error terms, the families' draws and the refusals."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st

from sarheight.coarse_dem import (
    DEGRADATION_FAMILIES,
    CoarseDemErrors,
    coarse_product,
    draw_errors,
    realistic_coarse_dem,
)
from sarheight.dem import open_dem
from sarheight.errors import InvalidInputError, PlausibilityWarning
from sarheight.raster import cell_size_m
from sarheight.terrain.grid import block_mean
from tests.support.scenes import rough_dem

CELL = 30.0  # m, the projected grids' cells


def projected_dem(heights: np.ndarray, *, south_up: bool = False) -> xr.DataArray:
    """``heights`` on a UTM grid of 30 m cells, north-up (or south-up), heights ellipsoidal."""
    rows = heights.shape[0]
    transform = (Affine(CELL, 0, 500_000.0, 0, CELL, 5_000_000.0 - rows * CELL) if south_up
                 else Affine(CELL, 0, 500_000.0, 0, -CELL, 5_000_000.0))
    return open_dem((heights.astype(np.float32), transform, "EPSG:32632"), vertical_datum="ellipsoid")


def centres(dem: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates (y, x) of every cell centre, from the transform."""
    t = dem.rio.transform()
    rows, cols = np.mgrid[0 : dem.shape[0], 0 : dem.shape[1]] + 0.5
    return t.f + t.e * rows, t.c + t.a * cols


def hill(rows: int = 96, cols: int = 96, row0: float = 40.0, col0: float = 52.0, width: float = 9.0) -> np.ndarray:
    yy, xx = np.mgrid[0:rows, 0:cols] + 0.5
    return 300.0 + 400.0 * np.exp(-((yy - row0) ** 2 + (xx - col0) ** 2) / (2 * width**2))


@pytest.fixture(scope="module")
def geographic() -> xr.DataArray:
    dem = rough_dem(seed=5, rows=47, cols=50, relief=800.0)
    values = dem.values.copy()
    values[3, 4] = values[20, 7] = np.nan
    values[30:36, 12:18] = np.nan  # whole coarse cells without heights for factors 2 and 3
    return dem.copy(data=values)


@pytest.fixture(scope="module")
def projected(geographic) -> xr.DataArray:
    with pytest.warns(PlausibilityWarning):  # voids, and steep for its 30 m cells
        return projected_dem(geographic.values[:, ::-1])


@pytest.mark.parametrize("grid", ["geographic", "projected"])
@pytest.mark.parametrize("factor", [2, 3, 4])
def test_ideal_product_is_the_block_mean_on_whole_blocks(request, grid, factor):
    truth = request.getfixturevalue(grid)
    product = coarse_product(truth, CoarseDemErrors.ideal(factor))
    expected = block_mean(truth, factor)
    rows, cols = truth.shape[0] // factor, truth.shape[1] // factor
    assert product.shape == (rows, cols)
    assert product.rio.transform() == expected.rio.transform()
    assert product.rio.crs == truth.rio.crs
    np.testing.assert_allclose(product.values, expected.values[:rows, :cols], rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(np.isnan(product.values), np.isnan(expected.values[:rows, :cols]))
    assert product.dtype == np.float32 and product.attrs["coarse_factor"] == factor


@pytest.mark.parametrize("shift_cells", [1, 2, 3, 5])
def test_an_integer_shift_east_is_the_block_mean_of_the_rolled_truth(geographic, shift_cells):
    factor = 3
    _, dx = cell_size_m(geographic)
    product = coarse_product(geographic, CoarseDemErrors(factor, shift_east_m=shift_cells * dx))
    rolled = block_mean(geographic.copy(data=np.roll(geographic.values, shift_cells, axis=1)), factor)
    first = round((product.rio.transform().c - rolled.rio.transform().c) / rolled.rio.transform().a)
    assert first == math.ceil(shift_cells / factor)
    # The last of the rolled truth's blocks is partial (block_mean keeps it).
    rows, cols = product.shape[0], min(product.shape[1], geographic.shape[1] // factor - first)
    np.testing.assert_allclose(product.values[:, :cols], rolled.values[:rows, first : first + cols], rtol=1e-6,
                               atol=1e-3)


@pytest.mark.parametrize("south_up", [False, True])
@pytest.mark.parametrize(("east", "north"), [(150.0, 0.0), (-90.0, 0.0), (0.0, 120.0), (0.0, -75.0), (45.0, 60.0)])
def test_a_feature_at_q_appears_at_q_plus_the_shift(south_up, east, north):
    heights = hill()
    truth = projected_dem(heights[::-1] if south_up else heights, south_up=south_up)
    product = coarse_product(truth, CoarseDemErrors(2, shift_east_m=east, shift_north_m=north))

    def centroid(dem: xr.DataArray) -> np.ndarray:
        y, x = centres(dem)
        weight = dem.values - 300.0
        return np.array([np.sum(weight * y), np.sum(weight * x)]) / np.sum(weight)

    np.testing.assert_allclose(centroid(product) - centroid(truth), [north, east], atol=1.0)


@settings(max_examples=30, deadline=None)
@given(factor=st.integers(2, 4), offset=st.tuples(st.floats(0, 0.999), st.floats(0, 0.999)),
       east=st.floats(-60, 60), north=st.floats(-60, 60), slope=st.tuples(st.floats(-0.5, 0.5), st.floats(-0.5, 0.5)))
def test_a_plane_is_sampled_at_the_shifted_footprint_centres(factor, offset, east, north, slope):
    rows, cols = 29, 34
    y0, x0 = 5_000_000.0, 500_000.0

    def plane(y: np.ndarray, x: np.ndarray) -> np.ndarray:
        return 500.0 + slope[0] * (y - y0) + slope[1] * (x - x0)

    truth = projected_dem(np.zeros((rows, cols)))
    truth = truth.copy(data=plane(*centres(truth)).astype(np.float32))
    errors = CoarseDemErrors(factor, shift_east_m=east, shift_north_m=north,
                             grid_offset=(offset[0] * factor, offset[1] * factor))
    product = coarse_product(truth, errors)
    y, x = centres(product)
    np.testing.assert_allclose(product.values, plane(y - north, x - east), atol=2e-3)
    # Every kept footprint, displaced back, lies inside the truth grid.
    west, south, east_edge, north_edge = truth.rio.bounds()
    half = factor * CELL / 2
    assert (x - east - half >= west - 1e-6).all() and (x - east + half <= east_edge + 1e-6).all()
    assert (y - north - half >= south - 1e-6).all() and (y - north + half <= north_edge + 1e-6).all()


def flat(rows: int = 120, cols: int = 120) -> xr.DataArray:
    return projected_dem(np.full((rows, cols), 100.0))


def lag_correlation(field: np.ndarray, lag: int) -> float:
    return float(np.mean([np.corrcoef(field[:, :-lag].ravel(), field[:, lag:].ravel())[0, 1],
                          np.corrcoef(field[:-lag].ravel(), field[lag:].ravel())[0, 1]]))


def test_the_correlated_error_has_its_std_and_correlation():
    truth = flat()
    coarse_cell = 2 * CELL
    length = 3 * coarse_cell
    for seed in range(4):
        correlated = coarse_product(truth, CoarseDemErrors(2, correlated_error_m=4.0, correlation_length_m=length),
                                    seed=seed).values - 100.0
        white = coarse_product(truth,
                               CoarseDemErrors(2, correlated_error_m=4.0, correlation_length_m=0.5 * coarse_cell),
                               seed=seed).values - 100.0
        assert abs(correlated.std() / 4.0 - 1) < 0.2 and abs(white.std() / 4.0 - 1) < 0.1
        # exp(-1) expected at the correlation length, 0 for white noise at one cell.
        assert 0.2 < lag_correlation(correlated, 3) < 0.55
        assert abs(lag_correlation(white, 1)) < 0.08


def test_the_slope_error_is_zero_on_flat_terrain_and_grows_with_slope():
    errors = CoarseDemErrors(3, slope_error_m=10.0)
    truth = flat(60, 60)
    np.testing.assert_array_equal(coarse_product(truth, errors, seed=1).values, 100.0)
    spreads = []
    for tan_slope in (0.2, 0.6):
        xx = np.arange(120)[None, :] * CELL * np.ones((120, 1))
        truth = projected_dem(100.0 + tan_slope * xx)
        residual = coarse_product(truth, errors, seed=2).values - coarse_product(truth, errors.ideal(3)).values
        spreads.append(residual.std())
        assert abs(residual.std() / (10.0 * tan_slope) - 1) < 0.1
    assert spreads[1] > 2.5 * spreads[0]


def test_bias_and_quantum(geographic):
    ideal = coarse_product(geographic, CoarseDemErrors.ideal(3)).values
    biased = coarse_product(geographic, CoarseDemErrors(3, bias_m=2.5)).values
    np.testing.assert_array_equal(np.isnan(biased), np.isnan(ideal))
    np.testing.assert_allclose((biased - ideal)[np.isfinite(ideal)], 2.5, atol=1e-3)
    for quantum in (1.0, 0.5):
        rounded = coarse_product(geographic, CoarseDemErrors(3, bias_m=2.5, quantum_m=quantum)).values
        finite = np.isfinite(rounded)
        np.testing.assert_array_equal(np.round(rounded[finite] / quantum) * quantum, rounded[finite])
        assert np.max(np.abs(rounded - biased)[finite]) <= quantum / 2 + 1e-3
        np.testing.assert_array_equal(np.isnan(rounded), np.isnan(ideal))


def test_the_same_seed_gives_the_same_product(geographic):
    errors = draw_errors(3, "test", seed=11)
    first = coarse_product(geographic, errors, seed=4)
    np.testing.assert_array_equal(first.values, coarse_product(geographic, errors, seed=4).values)
    other = coarse_product(geographic, errors, seed=5).values
    assert np.nanmax(np.abs(first.values - other)) > 0.5
    product, drawn = realistic_coarse_dem(geographic, 3, "training", 7)
    assert drawn == draw_errors(3, "training", 7) and not drawn.is_ideal
    np.testing.assert_array_equal(product.values, coarse_product(geographic, drawn, seed=7).values)
    assert product.attrs["coarse_family"] == "training" and product.attrs["coarse_seed"] == 7
    for key, value in drawn.to_attrs().items():
        assert key.startswith("coarse_") and type(value) in (int, float) and product.attrs[key] == value


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), factor=st.integers(2, 6), family=st.sampled_from(["training", "test"]))
def test_draws_stay_inside_their_family(seed, factor, family):
    errors = draw_errors(factor, family, seed)
    ranges = DEGRADATION_FAMILIES[family]
    assert errors == draw_errors(factor, family, seed)
    for name in ("correlated_error_m", "correlation_length_m", "slope_error_m", "bias_m"):
        low, high = ranges[name]
        assert low <= getattr(errors, name) <= high, name
    assert math.hypot(errors.shift_east_m, errors.shift_north_m) <= ranges["shift_m"][1] + 1e-9
    assert all(0 <= offset < factor for offset in errors.grid_offset)
    assert errors.quantum_m in ranges["quantum_m"]


@pytest.mark.parametrize("seed", [0, 1, 99])
def test_the_ideal_family_draws_ideal_errors(seed):
    errors = draw_errors(4, "ideal", seed)
    assert errors.is_ideal and errors == CoarseDemErrors.ideal(4)
    assert all(value == 0 for key, value in errors.to_attrs().items() if key != "coarse_factor")


def test_clear_errors(geographic):
    with pytest.raises(InvalidInputError, match="unknown degradation family 'validation'"):
        draw_errors(3, "validation", 0)
    for factor in (1, 0, 2.5, True):
        with pytest.raises(InvalidInputError, match="integer >= 2"):
            draw_errors(factor, "training", 0)
        with pytest.raises(InvalidInputError, match="integer >= 2"):
            CoarseDemErrors.ideal(factor)
    for offset in ((3.0, 0.0), (0.0, -0.5), (1.0,), "a"):
        with pytest.raises(InvalidInputError, match=r"grid_offset .* \[0, 3\)"):
            CoarseDemErrors(3, grid_offset=offset)
    with pytest.raises(InvalidInputError, match="must be >= 0"):
        CoarseDemErrors(3, correlated_error_m=-1.0)
    with pytest.raises(InvalidInputError, match="finite"):
        CoarseDemErrors(3, bias_m=float("nan"))
    with pytest.raises(InvalidInputError, match="too small"):
        coarse_product(geographic[:5, :20], CoarseDemErrors.ideal(3))
    with pytest.raises(InvalidInputError, match="fewer than two"):
        coarse_product(geographic[:7, :20], CoarseDemErrors(3, shift_north_m=45.0))


@pytest.mark.parametrize("seed", [1, 2])
def test_the_product_taken_apart_sums_to_it(seed):
    from sarheight.coarse_dem import ERROR_PARTS, coarse_error_parts

    truth = rough_dem(seed=seed, rows=60, cols=66, relief=300.0)
    errors = draw_errors(3, "test", seed)
    parts = coarse_error_parts(truth, errors, seed=seed + 10)
    product = coarse_product(truth, errors, seed=seed + 10)
    np.testing.assert_array_equal(parts["product"].values, product.values)
    total = parts["shifted"] + sum(parts[name] for name in ERROR_PARTS)
    np.testing.assert_allclose(total.values, product.values, atol=1e-3)
    # Each part as its own setting makes it: the bias a constant, the rounding within half a quantum.
    np.testing.assert_allclose(parts["bias"].values, errors.bias_m)
    assert np.nanmax(np.abs(parts["rounding"].values)) <= errors.quantum_m / 2 + 1e-3
    assert np.nanstd(parts["slope"].values) > 0 and np.nanstd(parts["correlated"].values) > 0
    # Without a shift, the shifted area mean is the ideal one.
    still = coarse_error_parts(truth, replace(errors, shift_east_m=0.0, shift_north_m=0.0), seed=seed + 10)
    np.testing.assert_array_equal(still["shifted"].values, still["ideal"].values)


def test_a_scene_keeps_its_coarse_dems_error_taken_apart():
    from sarheight.terrain.geometry import scene_geometry
    from sarheight.terrain.scene_options import SceneProducts
    from sarheight.terrain.simulated import ERROR_SOURCE_VARIABLES, simulate_scene

    truth = rough_dem(seed=3, rows=60, cols=60, relief=300.0)
    for errors in (None, draw_errors(3, "test", 5)):
        scene = simulate_scene(truth, scene_geometry(truth, "ascending"), coarse_errors=errors,
                               products=SceneProducts(error_sources=True, register=False), progress=False)
        total = sum(scene[name].values.astype(np.float64) for name in ERROR_SOURCE_VARIABLES.values())
        direct = scene["coarse_height"].values.astype(np.float64) - scene["height"].values
        counted = np.isfinite(total) & np.isfinite(direct)
        assert counted.mean() > 0.85
        np.testing.assert_allclose(total[counted], direct[counted], atol=1e-3)
        if errors is None:
            assert not scene["coarse_error_shift"].values.any() and not scene["coarse_error_slope"].values.any()
    assert "coarse_error_shift" not in simulate_scene(truth, scene_geometry(truth, "ascending"), progress=False)
