"""Alignment on one grid and city folders from products (preprocess/align.py): analytic
cases, the errors, the round trip through the building data module's reader, and real
data (the Sen1Floods11 chip of ../shared/data/s1s2, a BigEarthNet patch pair)."""

import json
import warnings

import numpy as np
import pytest
import rasterio
import rasterio.warp
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sarheight.data.buildings import check_city, read_city
from sarheight.errors import InvalidInputError
from sarheight.preprocess import sentinel2 as s2
from sarheight.preprocess.align import (
    RESAMPLINGS,
    S1_BANDS,
    align_city_inputs,
    align_to,
    target_grid,
    write_city_folder,
)
from sarheight.preprocess.backscatter import from_db, to_db
from sarheight.preprocess.composite import monthly_composite

CRS = "EPSG:32630"
X0, Y0 = 694_400.0, 4_222_540.0


def raster(values, resolution=10.0, *, bands=None, dim="band", crs=CRS, x0=X0, y0=Y0, **attrs):
    """A raster on a north-up grid with its upper-left corner at (x0, y0)."""
    values = np.asarray(values)
    rows, cols = values.shape[-2:]
    coords = {"y": y0 - resolution * (np.arange(rows) + 0.5), "x": x0 + resolution * (np.arange(cols) + 0.5)}
    dims = ("y", "x")
    if values.ndim >= 3:
        dims = (dim, "y", "x")
        coords[dim] = list(bands)
    if values.ndim == 4:
        dims = ("time", *dims)
    out = xr.DataArray(values, dims=dims, coords=coords, attrs=attrs)
    return out.rio.write_crs(crs) if crs else out


def dates(*days):
    return np.array(days, dtype="datetime64[ns]")


def s1_stack(values_db, times, **kwargs):
    out = raster(values_db, bands=S1_BANDS, units="dB", **kwargs)
    return out.assign_coords(time=times)


def s2_stack(values, times, bands=s2.S2_BANDS, **kwargs):
    out = raster(values, bands=bands, units="1", **kwargs)
    return out.assign_coords(time=times)


# --------------------------------------------------------------------------------------
# The grid and the warp
# --------------------------------------------------------------------------------------


def test_target_grid_of_a_geographic_chip_is_10_m_utm_and_a_projected_10_m_raster_keeps_its_grid():
    chip = raster(np.zeros((50, 60), np.float32), resolution=9e-5, crs="EPSG:4326", x0=-0.78, y0=38.13)
    grid = target_grid(chip)
    assert grid.rio.crs.to_epsg() == 32630 and grid.rio.resolution() == (10.0, -10.0)
    left, bottom, right, top = grid.rio.bounds()
    assert all(float(v) % 10 == 0 for v in (left, bottom, right, top))
    # The grid covers the chip: its corners lie inside.
    corners = rasterio.warp.transform_bounds("EPSG:4326", grid.rio.crs, *chip.rio.bounds())
    assert left <= corners[0] and bottom <= corners[1] and right >= corners[2] and top >= corners[3]
    assert grid.attrs["resolution_m"] == 10.0 and grid.nbytes == grid.size * 4
    own = raster(np.zeros((7, 9), np.float32), x0=X0 + 3.0)  # edges off the multiples of 10 m
    same = target_grid(own)
    assert same.rio.transform() == own.rio.transform() and same.shape == own.shape
    coarse = target_grid(own, resolution_m=20.0)
    assert coarse.rio.resolution() == (20.0, -20.0) and coarse.rio.bounds()[0] % 20 == 0


@pytest.mark.parametrize("resampling", [name for name in RESAMPLINGS if name != "sum"])
def test_a_constant_raster_stays_constant_under_every_resampling(resampling):
    coarse = raster(np.full((3, 6, 6), 0.25, np.float32), resolution=20.0, bands=["a", "b", "c"])
    grid = target_grid(coarse, resolution_m=10.0)
    shifted = raster(np.zeros((10, 10), np.float32), x0=X0 + 5.0, y0=Y0 - 5.0)  # half a cell off
    for target in (grid, shifted):
        out = align_to(coarse, target, resampling=resampling)
        assert out.rio.transform() == target.rio.transform() and out.rio.crs == target.rio.crs
        valid = out.values[np.isfinite(out.values)]
        assert valid.size > 0.8 * out.size
        np.testing.assert_allclose(valid, 0.25, rtol=1e-5)
    assert list(out["band"].values) == ["a", "b", "c"] and out.attrs["resampling"] == resampling


def test_a_20_m_raster_onto_a_10_m_grid_keeps_its_mean():
    rng = np.random.default_rng(3)
    coarse = raster(rng.uniform(0.0, 1.0, (2, 12, 12)).astype(np.float32), resolution=20.0, bands=["B5", "B11"])
    grid = target_grid(coarse)
    for resampling in ("average", "bilinear", "nearest"):
        out = align_to(coarse, grid, resampling=resampling)
        assert out.shape == (2, 24, 24) and np.isfinite(out.values).all()
        np.testing.assert_allclose(out.mean(("y", "x")), coarse.mean(("y", "x")), rtol=0.02)


def test_leading_dims_and_declared_nodata_go_through_the_warp():
    values = np.arange(2 * 2 * 4 * 4, dtype=np.float64).reshape(2, 2, 4, 4)
    stack = raster(values, bands=["VV", "VH"]).assign_coords(time=dates("2023-01-01", "2023-02-01"))
    out = align_to(stack, target_grid(stack, resolution_m=20.0), resampling="average")
    assert out.dims == stack.dims and out.shape == (2, 2, 2, 2) and out.dtype == np.float64
    np.testing.assert_allclose(out.values[1, 0, 0, 0], values[1, 0, :2, :2].mean())
    np.testing.assert_array_equal(out["time"].values, stack["time"].values)
    block = np.array([[10.0, -9999.0], [20.0, 30.0]], np.float32).repeat(2, 0).repeat(2, 1)
    height = raster(np.tile(block, (2, 2)), y0=Y0 + 20.0).rio.write_nodata(-9999.0)  # edges on 40 m
    mean = align_to(height, target_grid(height, resolution_m=40.0), resampling="average")
    np.testing.assert_allclose(mean.values, 20.0)  # the mean of 10, 20 and 30 m, the nodata left out


@settings(max_examples=25, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(2, 6).map(lambda n: 2 * n), st.integers(2, 6).map(lambda n: 2 * n)),
              elements=st.floats(1e-4, 10.0)))
def test_averaging_onto_a_coarser_aligned_grid_preserves_the_mean(values):
    fine = raster(values)
    out = align_to(fine, target_grid(fine, resolution_m=20.0), resampling="average")
    assert out.shape == (values.shape[0] // 2, values.shape[1] // 2)
    assert float(out.mean()) == pytest.approx(values.mean(), rel=1e-9)
    np.testing.assert_allclose(out.values, values.reshape(out.shape[0], 2, out.shape[1], 2).mean((1, 3)))


def test_s1_is_averaged_in_linear_power_not_in_db():
    # A checkerboard of 0 dB and -20 dB cells averaged onto 20 m cells: the mean power of
    # each 20 m cell is (1 + 0.01) / 2, -2.97 dB; the mean of the dB values, -10 dB, is far off.
    checker = np.where((np.indices((4, 4)).sum(0) % 2) == 0, 0.0, -20.0).astype(np.float32)
    s1 = raster(np.stack([checker, checker - 6.0]), bands=S1_BANDS, units="dB")
    optical = raster(np.full((10, 4, 4), 0.1, np.float32), bands=s2.S2_BANDS, units="1")
    grid = target_grid(s1, resolution_m=20.0)
    aligned = align_city_inputs(s1, optical, grid=grid)
    expected = 10 * np.log10((1.0 + 0.01) / 2)
    np.testing.assert_allclose(aligned.s1.sel(band="VV").values, expected, atol=1e-4)
    np.testing.assert_allclose(aligned.s1.sel(band="VH").values, expected - 6.0, atol=1e-4)
    assert aligned.s1.attrs["units"] == "dB"
    linear = align_city_inputs(from_db(s1), optical, grid=grid).s1
    assert linear.attrs["units"] == "1"
    np.testing.assert_allclose(to_db(linear).values, aligned.s1.values, atol=1e-4)
    in_db = align_to(s1, grid, resampling="average")  # what averaging dB gives
    np.testing.assert_allclose(in_db.sel(band="VV").values, -10.0, atol=1e-4)


def test_city_inputs_come_back_on_one_grid_with_the_bands_in_order():
    rng = np.random.default_rng(0)
    order = list(reversed(["B01", *s2.S2_BANDS, "B9"]))
    optical = raster(rng.uniform(0.0, 0.5, (len(order), 6, 6)).astype(np.float32), resolution=20.0, bands=order,
                     units="1")
    s1 = raster(rng.uniform(-20, 0, (2, 12, 12)).astype(np.float32), bands=["vh", "vv"], units="dB")
    height = raster(rng.uniform(0, 30, (24, 24)).astype(np.float32), resolution=5.0)
    aligned = align_city_inputs(s1, optical, height)
    for image in aligned:
        assert image.rio.transform() == s1.rio.transform() and image.shape[-2:] == (12, 12)
    assert list(aligned.s1["band"].values) == ["VV", "VH"]
    np.testing.assert_allclose(aligned.s1.sel(band="VV").values, s1.values[1], atol=1e-4)
    assert list(aligned.s2["band"].values) == list(s2.S2_BANDS)
    np.testing.assert_allclose(aligned.s2.sel(band="B4").mean(), optical.sel(band="B4").mean(), rtol=0.02)
    np.testing.assert_allclose(aligned.height.values, height.coarsen(y=2, x=2).mean().values, rtol=1e-5)


# --------------------------------------------------------------------------------------
# Bad inputs: clear errors before any work
# --------------------------------------------------------------------------------------


def test_bad_inputs_are_refused_with_what_to_do():
    s1 = raster(np.zeros((2, 4, 4), np.float32), bands=S1_BANDS, units="dB")
    optical = raster(np.full((10, 4, 4), 0.1, np.float32), bands=s2.S2_BANDS, units="1")
    with pytest.raises(InvalidInputError, match=r"unknown resampling .bilinar.*nearest, bilinear"):
        align_to(s1, optical, resampling="bilinar")
    with pytest.raises(InvalidInputError, match="unknown resampling"):
        align_city_inputs(s1, optical, s1_resampling="mean")
    with pytest.raises(InvalidInputError, match="no CRS"):
        align_city_inputs(raster(s1.values, bands=S1_BANDS, crs=None), optical)
    with pytest.raises(InvalidInputError, match="no CRS"):
        target_grid(raster(np.zeros((4, 4)), crs=None))
    with pytest.raises(InvalidInputError, match=r"labelled \['VV', 'VH'\]"):
        align_city_inputs(raster(s1.values, bands=["HH", "HV"]), optical)
    with pytest.raises(InvalidInputError, match=r"Sentinel-2 image: bands \['B8A'\] are not in the image"):
        align_city_inputs(s1, optical.drop_sel(band="B8A"))
    numbered = optical.assign_coords(band=np.arange(10))
    with pytest.raises(InvalidInputError, match="numbers, not names"):
        align_city_inputs(s1, numbered)
    far = raster(optical.values, bands=s2.S2_BANDS, x0=X0 + 50_000.0)
    with pytest.raises(InvalidInputError, match="Sentinel-1 and Sentinel-2 images do not overlap"):
        align_city_inputs(s1, far)
    with pytest.raises(InvalidInputError, match="the Sentinel-2 image does not overlap the grid"):
        align_city_inputs(s1, far, grid=target_grid(s1))
    with pytest.raises(InvalidInputError, match="last two dims must be"):
        align_to(s1.transpose("y", "x", "band"), optical, resampling="nearest")
    with pytest.raises(InvalidInputError, match="not projected in metres"):
        target_grid(s1, crs="EPSG:4326")


def test_a_month_of_one_sensor_only_is_left_out_with_a_warning(tmp_path):
    s1 = s1_stack(np.full((2, 2, 4, 4), -10.0, np.float32), dates("2023-01-03", "2023-02-03"))
    optical = s2_stack(np.full((2, 10, 4, 4), 0.1, np.float32), dates("2023-01-05", "2023-03-05"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        paths = write_city_folder(tmp_path / "city", s1=s1, s2=optical)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert any("months ['202302'] have s1 images but no s2 images" in m for m in messages)
    assert any("months ['202303'] have s2 images but no s1 images" in m for m in messages)
    assert sorted(p.name for p in paths) == ["s1_202301.tif", "s2_202301.tif"]
    with pytest.warns(UserWarning, match="images but no"), \
            pytest.raises(InvalidInputError, match="no month has images of both sensors"):
        write_city_folder(tmp_path / "none", s1=s1.isel(time=[1]), s2=optical.isel(time=[1]))
    assert not (tmp_path / "none").exists()
    with pytest.raises(InvalidInputError, match=r"unknown options \['s2_resample'\]"):
        write_city_folder(tmp_path / "x", s1=s1, s2=optical, s2_resample="nearest")
    with pytest.raises(InvalidInputError, match="unknown resampling 'mean'"):
        write_city_folder(tmp_path / "x", s1=s1, s2=optical, s1_resampling="mean")
    with pytest.raises(InvalidInputError, match="'time' dim of datetime64"):
        write_city_folder(tmp_path / "x", s1=s1.isel(time=0), s2=optical)
    with pytest.raises(InvalidInputError, match="looks like reflectance"):
        write_city_folder(tmp_path / "x", s1=s1.isel(time=[0]),
                          s2=optical.isel(time=[0]).assign_attrs(units="reflectance"))


# --------------------------------------------------------------------------------------
# The round trip through the building data module's reader
# --------------------------------------------------------------------------------------


def test_a_written_city_folder_reads_back_as_its_monthly_composites(tmp_path):
    rng = np.random.default_rng(7)
    times = dates("2023-01-02", "2023-01-14", "2023-01-26", "2023-06-09", "2023-06-21")
    s1 = s1_stack(rng.uniform(-25, 0, (5, 2, 8, 8)).astype(np.float32), times)
    # DNs of a baseline 04.00 product (offset -1000) on a 20 m grid, a cloud as DN 0.
    dn = rng.integers(1100, 4000, (5, 12, 4, 4)).astype(np.uint16)
    dn[1, :, 0, 0] = 0
    names = ["B1", *s2.S2_BANDS, "B9"]
    optical = raster(dn, resolution=20.0, bands=names, PROCESSING_BASELINE="04.00").assign_coords(time=times)
    height = raster(rng.uniform(0, 40, (8, 8)).astype(np.float32))
    height.values[3, 3] = -9999.0
    height = height.rio.write_nodata(-9999.0)
    paths = write_city_folder(tmp_path / "city", s1=s1, s2=optical, height=height)
    assert [p.name for p in paths] == ["s1_202301.tif", "s2_202301.tif", "s1_202306.tif", "s2_202306.tif",
                                       "height.tif"]
    assert check_city(tmp_path / "city") == ["202301", "202306"]
    city = read_city(tmp_path / "city")
    assert city.s1.shape == (2, 2, 8, 8) and city.s2.shape == (2, 10, 8, 8)
    assert city.transform == s1.rio.transform() and city.crs == s1.rio.crs
    np.testing.assert_allclose(city.s1, monthly_composite(s1).values, atol=1e-4)
    expected = align_to(monthly_composite(s2.reflectance(s2.select_bands(optical))), height,
                        resampling="bilinear")
    np.testing.assert_allclose(city.s2, expected.values, atol=0.5e-4 + 1e-6)
    assert np.isnan(city.height[3, 3]) and np.isfinite(np.delete(city.height.ravel(), 27)).all()
    np.testing.assert_allclose(np.delete(city.height.ravel(), 27), np.delete(height.values.ravel(), 27))
    with rasterio.open(tmp_path / "city" / "s2_202301.tif") as dataset:
        assert dataset.dtypes[0] == "uint16" and dataset.nodata == 0
        assert dataset.tags()["SOURCE_PROCESSING_BASELINE"] == "04.00" and dataset.tags()["ADD_OFFSET"] == "-1000"


# --------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------


def test_the_sen1floods11_chip_becomes_a_city_folder_on_a_10_m_utm_grid(shared_data, tmp_path):
    folder = shared_data / "s1s2"
    if not (folder / "spain_7370579_s2.tif").is_file():
        pytest.skip("../shared/data/s1s2 holds no Sen1Floods11 chip")
    # Sen1Floods11 (2016-2019): L1C, 13 bands, baseline before 04.00 (no offset); S1 in dB.
    dn = s2.open_bands(folder / "spain_7370579_s2.tif").assign_attrs(PROCESSING_BASELINE="02.07")
    assert dn.rio.crs.to_epsg() == 4326
    with rasterio.open(folder / "spain_7370579_s1.tif") as dataset:
        names = list(dataset.descriptions)
    sar = xr.open_dataarray(folder / "spain_7370579_s1.tif", engine="rasterio").assign_coords(band=names)
    sar = sar.assign_attrs(units="dB")
    when = dates("2019-05-20")
    grid = target_grid(dn)
    assert grid.rio.crs.to_epsg() == 32630 and grid.rio.resolution() == (10.0, -10.0)
    paths = write_city_folder(tmp_path / "spain", s1=sar.expand_dims(time=when), s2=dn.expand_dims(time=when),
                              grid=grid)
    assert [p.name for p in paths] == ["s1_201905.tif", "s2_201905.tif"]
    city = read_city(tmp_path / "spain", needs_height=False)
    assert city.crs.to_epsg() == 32630 and city.transform == grid.rio.transform()
    assert city.s2.shape[-2:] == grid.shape and np.isnan(city.height).all()
    # The chip's footprint turns a little in UTM: only the corners of the grid are empty.
    assert np.isfinite(city.s2).mean() > 0.9 and np.isfinite(city.s1).mean() > 0.9
    optical = s2.reflectance(s2.select_bands(dn), offset=0)
    valid = city.s2[np.isfinite(city.s2)]
    assert 0 <= valid.min() and valid.max() < 1.5
    np.testing.assert_allclose(np.nanmean(city.s2[0], axis=(1, 2)), optical.mean(("y", "x")).values, rtol=0.03)
    power = np.nanmean(10 ** (city.s1[0] / 10), axis=(1, 2))
    np.testing.assert_allclose(power, from_db(sar).mean(("y", "x")).values, rtol=0.03)
    assert float(optical.sel(band="B8").mean()) > float(optical.sel(band="B4").mean())
    assert np.nanmean(city.s2[0, s2.S2_BANDS.index("B8")]) > np.nanmean(city.s2[0, s2.S2_BANDS.index("B4")])


def test_a_bigearthnet_pair_becomes_a_city_folder(bigearthnet, tmp_path):
    (s1_patch,) = [p for p in (bigearthnet / "BigEarthNet-S1-Example").iterdir() if p.name.endswith("_87_48")]
    (metadata,) = s1_patch.glob("*_labels_metadata.json")
    info = json.loads(metadata.read_text())
    s2_patch = bigearthnet / "BigEarthNet-S2-Example" / info["corresponding_s2_patch"]
    # Twelve L2A bands as one file each, 10, 20 and 60 m; baseline 02.xx (2017): no offset.
    bands = [s2.open_bands(path) for path in sorted(s2_patch.glob("*_B*.tif"))]
    assert len(bands) == 12 and {b.shape for b in bands} == {(1, 120, 120), (1, 60, 60), (1, 20, 20)}
    optical = s2.stack_bands({str(b["band"].values[0]): s2.reflectance(b, processing_baseline="02.06")
                              for b in bands})
    sar = xr.concat([xr.open_dataarray(next(s1_patch.glob(f"*_{pol}.tif")), engine="rasterio") for pol in S1_BANDS],
                    dim="band").assign_coords(band=list(S1_BANDS)).assign_attrs(units="dB")
    aligned = align_city_inputs(sar, optical)
    assert aligned.s2.rio.transform() == optical.rio.transform() and aligned.s2.shape == (10, 120, 120)
    np.testing.assert_allclose(aligned.s2.values, optical.values, atol=1e-6)
    assert np.isfinite(aligned.s1.values).all()
    when = dates(info["acquisition_time"])
    paths = write_city_folder(tmp_path / "patch", s1=sar.expand_dims(time=when), s2=optical.expand_dims(time=when))
    assert [p.name for p in paths] == ["s1_201706.tif", "s2_201706.tif"]
    city = read_city(tmp_path / "patch", needs_height=False)
    assert city.crs.to_epsg() == 32633 and city.s2.shape == (1, 10, 120, 120)
    np.testing.assert_allclose(city.s2[0], optical.values, atol=0.5e-4 + 1e-6)
    np.testing.assert_allclose(city.s1[0], sar.values, atol=1e-4)
