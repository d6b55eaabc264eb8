"""GeoTIFF writing: atomic, tiled and compressed, band names, mask and float types, permissions."""

import os
import stat

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr
from affine import Affine

from sarheight.errors import InvalidInputError
from sarheight.io import MASK_NODATA, atomic_path, open_raster, read_band, write_geotiff


def _dataset(rows: int = 300, cols: int = 260) -> xr.Dataset:
    transform = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_600_000.0)
    y = 4_600_000.0 - 10.0 * (np.arange(rows) + 0.5)
    x = 500_000.0 + 10.0 * (np.arange(cols) + 0.5)
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {
            "backscatter": (("y", "x"), rng.random((rows, cols)).astype(np.float32), {"units": "1"}),
            "slant_range": (("y", "x"), 850_000.0 + rng.random((rows, cols)), {"units": "m"}),
            "layover": (("y", "x"), rng.integers(0, 3, (rows, cols)).astype(np.uint8)),
        },
        coords={"y": y, "x": x},
        attrs={"projection": "exact"},
    )
    return ds.rio.write_crs("EPSG:32633").rio.write_transform(transform)


def test_bands_names_types_tiling_and_tags(tmp_path):
    ds = _dataset()
    path = write_geotiff(ds, tmp_path / "out.tif", ["backscatter", "layover"])
    with rasterio.open(path) as src:
        assert src.descriptions == ("backscatter", "layover")
        assert src.dtypes == ("float32", "float32")
        assert src.crs.to_epsg() == 32633
        assert src.profile["tiled"] and src.profile["compress"] == "deflate"
        assert src.tags()["projection"] == "exact"
        np.testing.assert_array_equal(src.read(1), ds["backscatter"].values)
        np.testing.assert_array_equal(src.read(2), ds["layover"].values)


@pytest.mark.parametrize("shape, side", [((20, 20), 32), ((100, 300), 256), ((64, 64), 64)])
def test_small_and_narrow_rasters_are_tiled_too(tmp_path, shape, side):
    ds = _dataset(*shape)
    path = write_geotiff(ds, tmp_path / "out.tif", ["backscatter"])
    with rasterio.open(path) as src:
        # Strips would be as wide as the raster and a few rows high.
        assert src.block_shapes == [(side, side)]
        np.testing.assert_array_equal(src.read(1), ds["backscatter"].values)


def test_float64_geometry_keeps_its_precision_and_masks_alone_are_uint8(tmp_path):
    ds = _dataset()
    with rasterio.open(write_geotiff(ds, tmp_path / "geometry.tif", ["slant_range"])) as src:
        assert src.dtypes == ("float64",)
        np.testing.assert_array_equal(src.read(1), ds["slant_range"].values)
    with rasterio.open(write_geotiff(ds, tmp_path / "masks.tif", ["layover"])) as src:
        assert src.dtypes == ("uint8",) and src.nodata == MASK_NODATA


def test_interrupted_write_leaves_nothing_under_the_final_name(tmp_path):
    final = tmp_path / "result.tif"
    final.write_bytes(b"previous result")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_bytes(b"half a file")
        raise RuntimeError("interrupted")
    assert final.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.tif"]


def test_written_file_has_the_usual_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = write_geotiff(_dataset(), tmp_path / "shared.tif", ["backscatter"])
    finally:
        os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_bad_requests_are_refused_before_writing(tmp_path):
    ds = _dataset()
    with pytest.raises(InvalidInputError, match="not in the dataset"):
        write_geotiff(ds, tmp_path / "a.tif", ["nothing"])
    with pytest.raises(InvalidInputError, match="no CRS"):
        write_geotiff(ds.drop_vars("spatial_ref"), tmp_path / "b.tif", ["backscatter"])
    with pytest.raises(InvalidInputError, match="does not exist"):
        write_geotiff(ds, tmp_path / "missing" / "c.tif", ["backscatter"])
    assert list(tmp_path.iterdir()) == []


def test_jpeg_2000_opens_and_a_vrt_named_jp2_does_not(tmp_path):
    # Sentinel-2 SAFE products store their bands as JPEG 2000; lossless here, as the bands are.
    values = np.arange(24 * 24, dtype=np.uint16).reshape(24, 24)
    transform = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 4_600_000.0)
    path = tmp_path / "T33TUG_20220301T100000_B02.jp2"
    with rasterio.open(path, "w", driver="JP2OpenJPEG", height=24, width=24, count=1, dtype="uint16",
                       crs="EPSG:32633", transform=transform, QUALITY=100, REVERSIBLE="YES") as dst:
        dst.write(values, 1)
    with open_raster(path, "Sentinel-2 band") as dataset:
        assert dataset.driver == "JP2OpenJPEG" and dataset.crs.to_epsg() == 32633
        assert dataset.transform == transform
        np.testing.assert_array_equal(read_band(dataset, "Sentinel-2 band"), values)
    vrt = tmp_path / "B03.jp2"
    vrt.write_text('<VRTDataset rasterXSize="1" rasterYSize="1"></VRTDataset>')
    with pytest.raises(InvalidInputError, match="is a GDAL VRT"):
        with open_raster(vrt, "Sentinel-2 band"):
            pass
