"""Speckle filters (kernels/speckle.py, preprocess/speckle.py), dB conversions and
multilooking (preprocess/backscatter.py).

The kernels are compared with their numpy twins (twins/geometry.py) on random
speckled images with voids; hypothesis checks the properties of Lee's estimate (a
constant image is unchanged, the output stays within its window's range, NaN cells stay
NaN and do not reach their neighbours); analytic cases check the edge-aligned windows of
refined Lee on noise-free steps and the mean and variance on homogeneous speckle.
"""

import warnings

import numpy as np
import pytest
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from sarheight.errors import InvalidInputError
from sarheight.kernels import speckle as kernels
from sarheight.preprocess.backscatter import from_db, multilook, to_db
from sarheight.preprocess.composite import monthly_composite
from sarheight.preprocess.speckle import lee_filter, refined_lee_filter
from twins import geometry as reference_twins

# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def speckled(shape, looks, seed, *, contrast=10.0, voids=0.0, dtype=np.float64):
    """Two-region scene (a diagonal edge of ``contrast``) times L-look gamma speckle, with
    a fraction ``voids`` of NaN cells."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices(shape)
    scene = np.where(rows + 0.7 * cols > 0.6 * (shape[0] + shape[1]), contrast, 1.0)
    image = scene * rng.gamma(looks, 1.0 / looks, shape)
    image[rng.random(shape) < voids] = np.nan
    return image.astype(dtype)


def window_range(image, half):
    """Min and max of the valid cells of each pixel's square window (inside the image)."""
    padded = np.pad(np.asarray(image, np.float64), half, constant_values=np.nan)
    views = np.lib.stride_tricks.sliding_window_view(padded, (2 * half + 1, 2 * half + 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # windows of voids only: NaN
        return np.nanmin(views, axis=(2, 3)), np.nanmax(views, axis=(2, 3))


def run_lee(image, window, looks):
    return kernels.lee(image, window, looks, 0, image.shape[0])


def run_refined(image, looks):
    return kernels.refined_lee(image, looks, 0, image.shape[0])


images = st.builds(
    speckled,
    shape=st.tuples(st.integers(1, 23), st.integers(1, 23)),
    looks=st.sampled_from([1.0, 4.4, 10.0]),
    seed=st.integers(0, 2**32 - 1),
    contrast=st.sampled_from([1.0, 3.0, 100.0]),
    voids=st.sampled_from([0.0, 0.1, 0.5]),
    dtype=st.sampled_from([np.float32, np.float64]),
)


# --------------------------------------------------------------------------------------
# Kernels against their twins, and the properties of the estimate
# --------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(image=images, window=st.sampled_from([3, 5, 7, 9]), looks=st.sampled_from([1.0, 4.4]))
def test_lee_kernel_equals_its_twin(image, window, looks):
    np.testing.assert_allclose(run_lee(image, window, looks), reference_twins.lee(image, window, looks),
                               rtol=1e-10, atol=0)


@settings(max_examples=60, deadline=None)
@given(image=images, looks=st.sampled_from([1.0, 4.4]))
def test_refined_lee_kernel_equals_its_twin(image, looks):
    np.testing.assert_allclose(run_refined(image, looks), reference_twins.refined_lee(image, looks),
                               rtol=1e-10, atol=0)


def test_kernels_return_the_rows_asked_for():
    image = speckled((30, 17), 4.4, 1, voids=0.1)
    np.testing.assert_array_equal(kernels.lee(image, 7, 4.4, 9, 20), run_lee(image, 7, 4.4)[9:20])
    np.testing.assert_array_equal(kernels.refined_lee(image, 4.4, 9, 20), run_refined(image, 4.4)[9:20])


@settings(max_examples=40, deadline=None)
@given(value=st.floats(1e-6, 1e6), shape=st.tuples(st.integers(1, 15), st.integers(1, 15)),
       voids=st.sampled_from([0.0, 0.3]), seed=st.integers(0, 2**32 - 1))
def test_a_constant_image_is_unchanged(value, shape, voids, seed):
    image = np.full(shape, value)
    image[np.random.default_rng(seed).random(shape) < voids] = np.nan
    for out in (run_lee(image, 7, 4.4), run_refined(image, 4.4)):
        np.testing.assert_allclose(out, image, rtol=1e-12)


@settings(max_examples=60, deadline=None)
@given(image=images, window=st.sampled_from([3, 7]))
def test_the_output_stays_within_the_window_range(image, window):
    for out, half in ((run_lee(image, window, 4.4), window // 2), (run_refined(image, 4.4), 3)):
        low, high = window_range(image, half)
        valid = ~np.isnan(image)
        slack = 1e-12 * np.abs(high[valid])
        assert np.all(out[valid] >= low[valid] - slack)
        assert np.all(out[valid] <= high[valid] + slack)


@settings(max_examples=40, deadline=None)
@given(image=images)
def test_nan_cells_stay_nan_and_do_not_reach_their_neighbours(image):
    for out in (run_lee(image, 7, 4.4), run_refined(image, 4.4)):
        np.testing.assert_array_equal(np.isnan(out), np.isnan(image))


def test_a_void_changes_only_the_cells_whose_windows_reach_it():
    image = speckled((40, 40), 4.4, 3)
    holed = image.copy()
    holed[20, 20] = np.nan
    for half, run in ((3, lambda a: run_lee(a, 7, 4.4)), (5, lambda a: run_refined(a, 4.4))):
        # refined Lee: the sub-window means reach 3 cells, the windows those choose another 2.
        far = np.ones(image.shape, bool)
        far[20 - half:21 + half, 20 - half:21 + half] = False
        np.testing.assert_array_equal(run(holed)[far], run(image)[far])
        assert np.isfinite(run(holed)[~far & ~np.isnan(holed)]).all()


@pytest.mark.parametrize("looks", [1.0, 4.4])
def test_homogeneous_speckle_keeps_its_mean_and_loses_its_variance(looks):
    truth = 0.2
    image = truth * np.random.default_rng(7).gamma(looks, 1.0 / looks, (300, 300))
    for out in (run_lee(image, 7, looks), run_refined(image, looks)):
        inner = out[10:-10, 10:-10]
        # Lee's estimate is unbiased where b is constant; its mean over 78 000 cells is
        # within a few percent of the truth (the speckle's own mean error is ~0.4 %).
        assert abs(inner.mean() / truth - 1) < 0.03
        # The equivalent number of looks mean² / var grows several-fold.
        assert inner.mean() ** 2 / inner.var() > 3 * looks


@pytest.mark.parametrize("axis", [0, 1])
def test_refined_lee_keeps_a_noise_free_step_sharp(axis):
    image = np.where(np.arange(20) < 10, 1.0, 10.0)[None, :].repeat(20, axis=0)
    image = image if axis == 1 else image.T
    # The half windows on the pixel's side of the edge are uniform: the step comes back.
    np.testing.assert_allclose(run_refined(image, 4.4), image, rtol=1e-12)
    assert not np.allclose(run_lee(image, 7, 4.4), image, rtol=1e-3)


def test_refined_lee_keeps_a_diagonal_step_sharp():
    rows, cols = np.indices((20, 20))
    image = np.where(cols > rows, 10.0, 1.0)
    out = run_refined(image, 4.4)
    # Away from the image corners (where windows lose a side), the edge stays exact.
    np.testing.assert_allclose(out[3:-3, 3:-3], image[3:-3, 3:-3], rtol=1e-12)


# --------------------------------------------------------------------------------------
# The xarray API
# --------------------------------------------------------------------------------------


def georeferenced(values, name="sigma0", units="1"):
    rows, cols = values.shape[-2:]
    dims = ("band", "y", "x")[-values.ndim:]
    coords = {"y": 4_500_000.0 - 10.0 * np.arange(rows) - 5.0, "x": 500_000.0 + 10.0 * np.arange(cols) + 5.0}
    image = xr.DataArray(values, dims=dims, coords=coords, name=name, attrs={"units": units, "product": "S1A"})
    return image.rio.write_crs("EPSG:32630")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_filters_keep_coords_crs_name_attrs_and_dtype(dtype):
    image = georeferenced(speckled((25, 30), 4.4, 5, voids=0.05, dtype=dtype))
    for out, expected in ((lee_filter(image, window=5, looks=4.4), reference_twins.lee(image.values, 5, 4.4)),
                          (refined_lee_filter(image, looks=4.4), reference_twins.refined_lee(image.values, 4.4))):
        assert out.dtype == dtype and out.dims == image.dims and out.name == "sigma0"
        assert out.rio.crs == image.rio.crs and out.rio.transform() == image.rio.transform()
        assert out.attrs["product"] == "S1A" and "speckle_filter" in out.attrs
        np.testing.assert_allclose(out.values, expected.astype(dtype), rtol=1e-6)
    assert "speckle_filter" not in image.attrs


def test_the_filters_run_slice_by_slice_over_leading_dims():
    stack = georeferenced(np.stack([speckled((15, 16), 4.4, s) for s in range(3)]))
    out = refined_lee_filter(stack, looks=4.4)
    for k in range(3):
        np.testing.assert_array_equal(out.values[k], run_refined(stack.values[k], 4.4))


def test_the_filters_refuse_db_negative_values_and_bad_parameters():
    image = georeferenced(speckled((10, 10), 4.4, 1))
    with pytest.raises(InvalidInputError, match="from_db"):
        lee_filter(to_db(image))
    with pytest.raises(InvalidInputError, match="negative"):
        refined_lee_filter(image.assign_attrs(units="1") - 1)
    with pytest.raises(InvalidInputError, match="odd"):
        lee_filter(image, window=4)
    with pytest.raises(InvalidInputError, match="looks"):
        refined_lee_filter(image, looks=0)
    with pytest.raises(InvalidInputError, match="DataArray"):
        lee_filter(image.values)


def test_db_round_trip_and_refusals():
    image = georeferenced(np.array([[0.01, 1.0], [0.0, np.nan]], np.float32))
    db = to_db(image)
    assert db.attrs["units"] == "dB" and db.dtype == np.float32 and db.rio.crs == image.rio.crs
    np.testing.assert_allclose(db.values, [[-20.0, 0.0], [np.nan, np.nan]])
    back = from_db(db)
    assert back.attrs["units"] == "1"
    np.testing.assert_allclose(back.values, [[0.01, 1.0], [np.nan, np.nan]], rtol=1e-6)
    with pytest.raises(InvalidInputError, match="already in dB"):
        to_db(db)
    with pytest.raises(InvalidInputError, match="not dB"):
        from_db(image)


def test_multilook_averages_valid_pixels_of_whole_blocks_and_updates_the_grid():
    values = np.arange(7 * 9, dtype=np.float64).reshape(7, 9)
    values[0, 0] = np.nan
    values[3:6, 6:9] = np.nan
    image = georeferenced(values)
    out = multilook(image, 3, 3)
    assert out.shape == (2, 3) and out.attrs["multilook"] == (3, 3)
    expected = np.array([[np.nanmean(values[r:r + 3, c:c + 3]) if not np.isnan(values[r:r + 3, c:c + 3]).all()
                          else np.nan for c in (0, 3, 6)] for r in (0, 3)])
    np.testing.assert_allclose(out.values, expected)
    fine, coarse = image.rio.transform(), out.rio.transform()
    assert (coarse.a, coarse.e) == (3 * fine.a, 3 * fine.e) and (coarse.c, coarse.f) == (fine.c, fine.f)
    assert out.rio.crs == image.rio.crs
    with pytest.raises(InvalidInputError, match="larger than the image"):
        multilook(image, 8, 1)
    with pytest.raises(InvalidInputError, match="positive integer"):
        multilook(image, 0, 2)


# --------------------------------------------------------------------------------------
# Monthly composites
# --------------------------------------------------------------------------------------


def time_stack(dates, values, units="1"):
    image = georeferenced(np.asarray(values, np.float32).reshape(len(dates), 2, 2)).rename(band="time")
    image = image.assign_coords(time=np.array(dates, "datetime64[ns]"))
    return image.assign_attrs(units=units)


def test_monthly_composite_takes_the_nan_aware_median_of_each_month():
    dates = ["2021-01-03", "2021-01-15", "2021-01-27", "2021-03-02", "2021-03-14", "2021-01-09"]
    values = np.array([[1, 5, np.nan, 2], [2, 6, np.nan, np.nan], [9, 7, np.nan, 3],
                       [4, 1, 8, np.nan], [6, 3, 8, np.nan], [3, 5, np.nan, 2]], np.float32)
    stack = time_stack(dates, values)
    out = monthly_composite(stack)
    assert out.dims == stack.dims and out.rio.crs == stack.rio.crs and out.attrs["composite"] == "monthly median"
    np.testing.assert_array_equal(out["time"].values, np.array(["2021-01-01", "2021-03-01"], "datetime64[ns]"))
    np.testing.assert_array_equal(out["acquisitions"].values, [4, 2])
    # January: dates out of order, four of them (the mean of the middle two), a pixel never valid.
    np.testing.assert_allclose(out.values[0].ravel(), [2.5, 5.5, np.nan, 2])
    np.testing.assert_allclose(out.values[1].ravel(), [5, 2, 8, np.nan])


def test_monthly_composite_of_db_takes_the_median_in_linear_power():
    linear = np.array([1.0, 4.0]).repeat(4)
    stack = to_db(time_stack(["2022-05-01", "2022-05-20"], linear)).assign_attrs(units="dB")
    out = monthly_composite(stack)
    assert out.attrs["units"] == "dB"
    np.testing.assert_allclose(out.values, 10 * np.log10(2.5), rtol=1e-6)  # not the dB mean, 3.01 dB


def test_monthly_composite_refuses_a_stack_without_dates():
    image = georeferenced(speckled((4, 4), 4.4, 0))
    with pytest.raises(InvalidInputError, match="'time' dim"):
        monthly_composite(image)
    with pytest.raises(InvalidInputError, match="must be dates"):
        monthly_composite(image.expand_dims(time=[1, 2]))
