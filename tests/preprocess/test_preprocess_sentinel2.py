"""Sentinel-2 (preprocess/sentinel2.py) on small synthetic rasters, and the preprocessing
core on real Sentinel-1 + Sentinel-2 data: the Sen1Floods11 chip of ../shared/data/s1s2
and the BigEarthNet patch pairs inside the ``bigearthnet-common`` wheel.

The BigEarthNet archives come from the ``bigearthnet`` fixture of conftest.py (the
wheel that ``make test`` downloads, the one named by ``SARHEIGHT_BIGEARTHNET_WHEEL``, or
the installed package); the tests that need them skip otherwise.
"""

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr

from sarheight.errors import InvalidInputError, ProductError
from sarheight.preprocess import sentinel2 as s2
from sarheight.preprocess.backscatter import from_db, to_db
from sarheight.preprocess.speckle import lee_filter, refined_lee_filter


def grid(values, resolution=10.0, bands=None, crs="EPSG:32629"):
    values = np.asarray(values)
    rows, cols = values.shape[-2:]
    coords = {"y": 4_358_040.0 - resolution * (np.arange(rows) + 0.5),
              "x": 567_180.0 + resolution * (np.arange(cols) + 0.5)}
    dims = ("y", "x")
    if values.ndim == 3:
        dims = ("band", "y", "x")
        coords["band"] = list(bands)
    return xr.DataArray(values, dims=dims, coords=coords).rio.write_crs(crs)


# --------------------------------------------------------------------------------------
# Reflectance, band names, resampling, cloud masks
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("baseline", "expected"), [("02.06", [0.1, 0.25]), ("04.00", [0.0, 0.15]),
                                                     ("05.09", [0.0, 0.15]), ("03.01", [0.1, 0.25])])
def test_reflectance_applies_the_offset_from_baseline_04_00(baseline, expected):
    dn = grid(np.array([[1000, 2500, 0, 65535]], np.uint16))
    out = s2.reflectance(dn, processing_baseline=baseline)
    assert out.dtype == np.float32 and out.attrs["units"] == "1"
    np.testing.assert_allclose(out.values[0], [*expected, np.nan, np.nan], rtol=1e-6)


def test_reflectance_reads_the_offset_from_metadata_and_refuses_to_guess():
    dn = grid(np.array([[2000]], np.uint16))
    for attrs in ({"BOA_ADD_OFFSET": -1000}, {"ADD_OFFSET": {0: -1000.0, 1: -1000.0}},
                  {"PROCESSING_BASELINE": "04.00"},
                  {"product": "S2B_MSIL2A_20220301T105839_N0400_R094_T31UDQ_20220301T141452.SAFE"}):
        assert s2.reflectance(dn.assign_attrs(attrs)).item() == pytest.approx(0.1)
    tile = dn.assign_attrs(tile_source="S2A_MSIL1C_20171221T112501_N0206_R037")
    assert s2.reflectance(tile).item() == pytest.approx(0.2)
    assert s2.reflectance(dn.assign_attrs(PROCESSING_BASELINE="04.00"), offset=0).item() == pytest.approx(0.2)
    with pytest.raises(InvalidInputError, match="processing baseline of these DNs is unknown"):
        s2.reflectance(dn)
    with pytest.raises(InvalidInputError, match=r"NN\.NN"):
        s2.reflectance(dn, processing_baseline="4")


def test_product_metadata_is_read_and_entities_refused(tmp_path):
    mtd = tmp_path / "MTD_MSIL2A.xml"
    mtd.write_text(
        '<?xml version="1.0"?><n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int">'
        "<General_Info><Product_Info><PROCESSING_BASELINE>05.09</PROCESSING_BASELINE>"
        "<PRODUCT_TYPE>S2MSI2A</PRODUCT_TYPE></Product_Info><Product_Image_Characteristics>"
        "<QUANTIFICATION_VALUES_LIST><BOA_QUANTIFICATION_VALUE unit='none'>10000</BOA_QUANTIFICATION_VALUE>"
        "</QUANTIFICATION_VALUES_LIST><BOA_ADD_OFFSET_VALUES_LIST><BOA_ADD_OFFSET band_id='0'>-1000"
        "</BOA_ADD_OFFSET><BOA_ADD_OFFSET band_id='1'>-1000</BOA_ADD_OFFSET></BOA_ADD_OFFSET_VALUES_LIST>"
        "</Product_Image_Characteristics></General_Info></n1:Level-2A_User_Product>"
    )
    meta = s2.read_product_metadata(mtd)
    assert meta == {"PROCESSING_BASELINE": "05.09", "PRODUCT_TYPE": "S2MSI2A", "QUANTIFICATION": 10000.0,
                    "ADD_OFFSET": {0: -1000.0, 1: -1000.0}}
    dn = grid(np.array([[1500]], np.uint16)).assign_attrs(meta)
    assert s2.reflectance(dn).item() == pytest.approx(0.05)
    evil = tmp_path / "evil.xml"
    evil.write_text('<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e "x">]><a>&e;</a>')
    with pytest.raises(ProductError, match="entities"):
        s2.read_product_metadata(evil)


def test_bands_are_selected_by_name_in_the_model_order():
    names = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B08A", "B09", "B10", "B11", "B12"]
    image = grid(np.arange(13)[:, None, None] * np.ones((13, 2, 2)), bands=names)
    out = s2.select_bands(image)
    assert list(out["band"].values) == list(s2.S2_BANDS)
    np.testing.assert_array_equal(out.values[:, 0, 0], [1, 2, 3, 4, 5, 6, 7, 8, 11, 12])
    with pytest.raises(InvalidInputError, match=r"\['B8A'\] are not in the image"):
        s2.select_bands(image.isel(band=slice(0, 8)), ["B2", "b8a"])


def test_a_20_m_band_resampled_to_10_m_keeps_its_values_and_edges():
    coarse = grid(np.array([[1.0, 3.0], [5.0, 7.0]], np.float32), resolution=20.0)
    fine = grid(np.zeros((4, 4), np.float32), resolution=10.0)
    out = s2.resample_to(coarse, fine)
    assert out.shape == (4, 4) and out.rio.transform() == fine.rio.transform() and np.isfinite(out).all()
    # Interior 10 m cells lie a quarter of the way between 20 m centres.
    np.testing.assert_allclose(out.values[1:3, 1:3], [[2.5, 3.5], [4.5, 5.5]], rtol=1e-6)
    np.testing.assert_allclose(s2.resample_to(coarse, fine, resampling="nearest").values,
                               np.kron(coarse.values, np.ones((2, 2))))
    for name in ("bilinar", "gauss"):  # gauss is rasterio's, but not its warp's
        with pytest.raises(InvalidInputError, match="unknown resampling"):
            s2.resample_to(coarse, fine, resampling=name)


def test_scl_cloud_classes_are_masked():
    image = grid(np.full((2, 4, 4), 0.2, np.float32), bands=["B2", "B3"])
    scl = grid(np.array([[4, 8], [11, 3]], np.uint8), resolution=20.0)
    out = s2.mask_clouds(image, scl)
    expected = np.kron([[1, np.nan], [1, np.nan]], np.ones((2, 2)))
    np.testing.assert_array_equal(out.values[0], 0.2 * expected.astype(np.float32))
    assert out.attrs["cloud_fraction"] == 0.5
    snowy = s2.mask_clouds(image, scl, snow=True)
    assert np.isnan(snowy.values[:, 2:, :2]).all()
    with pytest.raises(InvalidInputError, match="no SCL band"):
        s2.mask_clouds(image)
    with_scl = xr.concat([image, grid(np.kron([[4, 9], [4, 4]], np.ones((2, 2)))[None], bands=["SCL"])], "band")
    out = s2.mask_clouds(with_scl)
    assert list(out["band"].values) == ["B2", "B3"] and np.isnan(out.values[:, :2, 2:]).all()


# --------------------------------------------------------------------------------------
# Real data
# --------------------------------------------------------------------------------------


def enl(image):
    """Equivalent number of looks of linear intensity, mean² / variance."""
    values = np.asarray(image)[np.isfinite(image)]
    return values.mean() ** 2 / values.var()


def test_the_sen1floods11_chip_goes_through_the_core(shared_data):
    folder = shared_data / "s1s2"
    if not (folder / "spain_7370579_s2.tif").is_file():
        pytest.skip("../shared/data/s1s2 holds no Sen1Floods11 chip")
    # Sen1Floods11 (2016-2019) predates baseline 04.00: no offset; its README gives L1C, 13 bands.
    dn = s2.open_bands(folder / "spain_7370579_s2.tif")
    assert dn.sizes["band"] == 13
    optical = s2.reflectance(s2.select_bands(dn), offset=0)
    assert list(optical["band"].values) == list(s2.S2_BANDS)
    valid = optical.values[np.isfinite(optical.values)]
    assert valid.size > 0.9 * optical.size and 0 <= valid.min() and valid.max() < 1.5
    # Vegetation red edge: B8 (NIR) above B4 (red) on average over a land scene.
    assert float(optical.sel(band="B8").mean()) > float(optical.sel(band="B4").mean())

    with rasterio.open(folder / "spain_7370579_s1.tif") as dataset:
        names = list(dataset.descriptions)
    sar = xr.open_dataarray(folder / "spain_7370579_s1.tif", engine="rasterio").assign_coords(band=names)
    sar = sar.assign_attrs(units="dB")
    for pol in ("VV", "VH"):
        linear = from_db(sar.sel(band=pol))
        for filtered in (lee_filter(linear, looks=4.4), refined_lee_filter(linear, looks=4.4)):
            assert filtered.rio.crs == sar.rio.crs
            np.testing.assert_array_equal(np.isnan(filtered.values), np.isnan(linear.values))
            assert enl(filtered) > enl(linear)
            db = to_db(filtered)
            assert np.nanmedian(db) == pytest.approx(np.nanmedian(sar.sel(band=pol)), abs=1.5)


def test_the_bigearthnet_patch_pairs_go_through_the_core(bigearthnet):
    s2_patches = sorted((bigearthnet / "BigEarthNet-S2-Example").iterdir())
    s1_patches = sorted((bigearthnet / "BigEarthNet-S1-Example").iterdir())
    assert len(s2_patches) == len(s1_patches) == 6
    for patch in s2_patches:
        rasters = {}
        for path in sorted(patch.glob("*_B*.tif")):
            dn = s2.open_bands(path)
            # The L2A patches come from L1C products of 2017-2018 (baseline 02.xx): no offset.
            rasters[str(dn["band"].values[0])] = s2.reflectance(dn, processing_baseline="02.06")
        assert len(rasters) == 12 and rasters["B5"].shape == (1, 60, 60)
        stack = s2.stack_bands(rasters)
        assert stack.shape == (10, 120, 120) and list(stack["band"].values) == list(s2.S2_BANDS)
        assert stack.rio.resolution() == (10.0, -10.0) and np.isfinite(stack.values).all()
        # Bilinear 20 m -> 10 m keeps each band's mean.
        for band in ("B5", "B11"):
            assert float(stack.sel(band=band).mean()) == pytest.approx(float(rasters[band].mean()), rel=0.02)
    for patch in s1_patches:
        for pol in ("VV", "VH"):
            (path,) = patch.glob(f"*_{pol}.tif")
            db = xr.open_dataarray(path, engine="rasterio").squeeze("band", drop=True).assign_attrs(units="dB")
            assert db.shape == (120, 120)
            filtered = refined_lee_filter(from_db(db), looks=4.4)
            assert np.isfinite(filtered.values).all() and enl(filtered) > enl(from_db(db))
