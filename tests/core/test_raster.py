"""The raster core: the metres of a degree (WGS84), signed cell steps, the one gradient and
its NaN policy, decibels, smooth random fields, the NaN-aware bilinear sampler, the robust
spread, the cells' centres, the NaN-aware box mean."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st

from sarheight.errors import InvalidInputError
from sarheight.raster import (
    bilinear_at,
    cell_centres,
    cell_side_m,
    cell_size_m,
    cell_steps_m,
    db_to_power,
    filled_with_mean,
    gradient,
    grid_steps,
    metres_per_degree,
    nan_box_mean,
    power_to_db,
    robust_spread,
    smooth_random_field,
)


def test_metres_per_degree_of_the_wgs84_ellipsoid():
    # The textbook values: 110 574 m and 111 319 m at the equator, 111 694 m of latitude at the pole.
    north, east = metres_per_degree(0.0)
    assert north == pytest.approx(110_574.3, abs=0.1) and east == pytest.approx(111_319.5, abs=0.1)
    assert metres_per_degree(90.0)[0] == pytest.approx(111_694.0, abs=1.0)
    assert metres_per_degree(90.0)[1] == pytest.approx(0.0, abs=1e-6)
    north, east = metres_per_degree(np.array([0.0, 45.0]))
    assert north.shape == (2,) and east[1] == pytest.approx(78_846.8, abs=0.1)


def _grid(transform: Affine, crs: str, shape=(4, 5)) -> xr.DataArray:
    rows, cols = shape
    x = transform.c + transform.a * (np.arange(cols) + 0.5)
    y = transform.f + transform.e * (np.arange(rows) + 0.5)
    grid = xr.DataArray(np.zeros(shape), dims=("y", "x"), coords={"y": y, "x": x})
    return grid.rio.write_crs(crs).rio.write_transform(transform)


def test_signed_steps_of_projected_and_geographic_grids():
    north_up = _grid(Affine(30.0, 0, 500_000.0, 0, -20.0, 4_000_000.0), "EPSG:32611")
    assert grid_steps(north_up) == (-20.0, 30.0) and cell_size_m(north_up) == (20.0, 30.0)
    south_up = _grid(Affine(30.0, 0, 500_000.0, 0, 20.0, 4_000_000.0), "EPSG:32611")
    assert grid_steps(south_up) == (20.0, 30.0)
    feet = cell_steps_m(Affine(10.0, 0, 0, 0, -10.0, 0), "EPSG:2227", (3, 3))  # US survey feet
    assert feet == pytest.approx((-3.048006, 3.048006), rel=1e-6)
    degrees = _grid(Affine(0.001, 0, 10.0, 0, -0.001, 45.002), "EPSG:4326")
    north, east = metres_per_degree(45.0)
    assert grid_steps(degrees) == pytest.approx((-0.001 * north, 0.001 * east))
    compound = cell_steps_m(Affine(0.001, 0, 10.0, 0, -0.001, 45.002), "EPSG:4326+5773", (4, 5))
    assert compound == pytest.approx(grid_steps(degrees))
    with pytest.raises(InvalidInputError, match="no CRS"):
        grid_steps(xr.DataArray(np.zeros((2, 2)), dims=("y", "x"), coords={"y": [1.0, 0.0], "x": [0.0, 1.0]}))


def test_the_gradient_of_a_plane_and_its_nan_policy():
    rows, cols = np.mgrid[0:6, 0:7].astype(np.float64)
    steps = (-20.0, 30.0)  # a north-up grid: rows run south
    # 0.1 m per metre northward, 0.2 eastward.
    heights = 0.1 * rows * steps[0] + 0.2 * cols * steps[1]
    along_rows, along_cols = gradient(heights, steps)
    np.testing.assert_allclose(along_rows, 0.1) and np.testing.assert_allclose(along_cols, 0.2)
    assert gradient(heights, steps, axis=1) == pytest.approx(along_cols)
    holed = heights.copy()
    holed[2, 3] = np.nan
    along_rows, along_cols = gradient(holed, steps)
    # A derivative that reads the void is NaN; the others are the plane's.
    assert np.isnan(along_cols[2, 2]) and np.isnan(along_cols[2, 4]) and np.isnan(along_rows[1, 3])
    assert along_cols[2, 1] == pytest.approx(0.2) and along_rows[0, 3] == pytest.approx(0.1)
    filled = filled_with_mean(holed)
    assert np.isfinite(gradient(filled, steps)[0]).all() and filled[2, 3] == pytest.approx(np.nanmean(holed))
    # One row has no northward derivative: zeros, not an error.
    assert (gradient(heights[:1], steps)[0] == 0).all()


def test_decibels():
    values = np.array([1.0, 10.0, 0.0, -1.0, np.nan, np.inf])
    db = power_to_db(values)
    assert db.dtype == np.float32 and db[:2].tolist() == [0.0, 10.0] and np.isnan(db[2:]).all()
    np.testing.assert_allclose(db_to_power(power_to_db(np.array([0.01, 3.0]), np.float64)), [0.01, 3.0])
    array = xr.DataArray(np.array([[100.0]]), dims=("y", "x"), attrs={"units": "1"})
    assert power_to_db(array).item() == 20.0 and power_to_db(array).attrs["units"] == "dB"


@pytest.mark.parametrize("boundary", ["periodic", "padded", "reflect"])
def test_smooth_random_fields(boundary):
    field = smooth_random_field((64, 80), seed=3, correlation_cells=4.0, boundary=boundary)
    again = smooth_random_field((64, 80), seed=np.random.default_rng(3), correlation_cells=4.0, boundary=boundary)
    assert field.shape == (64, 80) and np.array_equal(field, again)
    # Unit variance (the padded one as an ensemble: its sample's varies), correlated over cells.
    assert field.std() == pytest.approx(1.0, abs=0.5 if boundary == "padded" else 1e-6)
    neighbours = np.corrcoef(field[:, :-1].ravel(), field[:, 1:].ravel())[0, 1]
    assert neighbours > 0.9
    white = smooth_random_field((64, 80), seed=3, correlation_cells=0.1, boundary="padded")
    assert abs(np.corrcoef(white[:, :-1].ravel(), white[:, 1:].ravel())[0, 1]) < 0.1
    with pytest.raises(InvalidInputError, match="boundary"):
        smooth_random_field((4, 4), seed=0, correlation_cells=1.0, boundary="torus")


@settings(max_examples=40, deadline=None)
@given(st.floats(-50, 50), st.floats(-5, 5), st.floats(-5, 5),
       st.lists(st.tuples(st.floats(-0.4, 9.4), st.floats(-0.4, 11.4)), min_size=1, max_size=20))
def test_bilinear_is_exact_on_a_plane(base, slope_rows, slope_cols, positions):
    rows, cols = np.mgrid[0:10, 0:12].astype(np.float64)
    plane = base + slope_rows * rows + slope_cols * cols
    at_rows, at_cols = (np.array(values) for values in zip(*positions, strict=True))
    # Odd reflection continues the plane past the edges; inside, both edges agree.
    np.testing.assert_allclose(bilinear_at(plane, at_rows, at_cols, edge="odd"),
                               base + slope_rows * at_rows + slope_cols * at_cols, atol=1e-9)
    inside = (at_rows >= 0) & (at_rows <= 9) & (at_cols >= 0) & (at_cols <= 11)
    np.testing.assert_allclose(bilinear_at(plane, at_rows, at_cols)[inside],
                               (base + slope_rows * at_rows + slope_cols * at_cols)[inside], atol=1e-9)


def test_bilinear_leaves_voids_out():
    values = np.array([[1.0, 2.0], [3.0, np.nan]])
    # The void's weight goes to the others: the centre reads the mean of the three.
    assert bilinear_at(values, np.array([0.5]), np.array([0.5]))[0] == pytest.approx(2.0)
    assert np.isnan(bilinear_at(np.full((2, 2), np.nan), np.array([0.5]), np.array([0.5]))[0])
    assert bilinear_at(values, np.array([0.0]), np.array([1.0]))[0] == pytest.approx(2.0)
    assert math.isnan(bilinear_at(values, np.array([1.0]), np.array([1.0]))[0])  # the void itself


def test_the_robust_spread_is_the_standard_deviation_of_gaussian_values():
    values = np.random.default_rng(3).normal(5.0, 2.0, 200_000)
    assert robust_spread(values) == pytest.approx(2.0, rel=0.01)
    # From another centre: the deviations from it.
    assert robust_spread(np.array([1.0, 2.0, 3.0]), 0.0) == pytest.approx(1.4826 * 2.0)
    assert math.isnan(robust_spread(np.array([])))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1e3, 1e3), min_size=5, max_size=40), st.floats(1e6, 1e9))
def test_the_robust_spread_is_not_moved_by_a_few_outliers(values, outlier):
    values = np.array(values)
    # Its numpy twin: the scaled median absolute deviation from the median.
    assert robust_spread(values) == pytest.approx(1.4826 * np.median(np.abs(values - np.median(values))))
    # One outlier in five or more values moves the median by at most one order statistic:
    # the spread stays within the values' own range.
    spread = robust_spread(np.append(values, outlier))
    assert spread <= 1.4826 * (values.max() - values.min()) + 1e-9


def test_cell_centres_lie_half_a_cell_inside_the_corner():
    y, x = cell_centres(Affine(30.0, 0.0, 500_000.0, 0.0, -20.0, 4_000_000.0), (3, 2))
    np.testing.assert_array_equal(x, [500_015.0, 500_045.0])
    np.testing.assert_array_equal(y, [3_999_990.0, 3_999_970.0, 3_999_950.0])


def test_the_nan_box_mean_reads_only_the_finite_cells():
    values = np.array([[1.0, np.nan, 3.0], [np.nan, 5.0, np.nan], [7.0, np.nan, 9.0]])
    mean = nan_box_mean(values, 3)
    # The centre's box holds the five finite cells; a corner's (zeros past the edge) three.
    assert mean[1, 1] == pytest.approx(5.0) and mean[0, 0] == pytest.approx(3.0)
    # Where the finite cells are half the box or fewer, none at least_share=0.5.
    assert np.isnan(nan_box_mean(values, 3, least_share=0.5)[0, 1])
    assert np.isnan(nan_box_mean(np.full((3, 3), np.nan), 3)).all()


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([1, 3, 5]), st.sampled_from(["constant", "nearest", "reflect"]))
def test_the_nan_box_mean_matches_its_twin(seed, size, mode):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(9, 11))
    values[rng.random(values.shape) < 0.3] = np.nan
    # Its twin: the mean of the finite cells of each box, past the edges as scipy's mode.
    pad = {"constant": "constant", "nearest": "edge", "reflect": "symmetric"}[mode]
    half = size // 2
    padded = np.pad(values, half, mode=pad, **({"constant_values": np.nan} if pad == "constant" else {}))
    twin = np.full(values.shape, np.nan)
    for row in range(values.shape[0]):
        for col in range(values.shape[1]):
            box = padded[row:row + size, col:col + size]
            if np.isfinite(box).any():
                twin[row, col] = np.nanmean(box)
    np.testing.assert_allclose(nan_box_mean(values, size, mode=mode), twin, rtol=1e-9, atol=1e-12)


def test_the_cell_side_is_the_square_root_of_the_cell_area():
    grid = xr.DataArray(np.zeros((4, 5)), dims=("y", "x"),
                        coords={"y": 4_000_000.0 - 20.0 * (np.arange(4) + 0.5),
                                "x": 500_000.0 + 45.0 * (np.arange(5) + 0.5)})
    grid = grid.rio.write_crs("EPSG:32633")
    assert cell_side_m(grid) == pytest.approx(30.0)
