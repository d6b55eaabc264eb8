"""The built-in sample data: real crops, opened offline, the same heights as the full files."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from sarheight import sample_data
from sarheight.errors import MissingInputError

#: Each crop: (its full file under ../shared/data, the window it was cut from).
CROPS = {
    "bigtujunga_srtm30_utm11_crop.tif": ("dem/bigtujunga_srtm30_utm11.tif", Window(400, 200, 240, 240)),
    "rome_cop30_egm96_crop.tif": ("dem/rome_cop30_egm96.tif", Window(100, 100, 160, 160)),
}


def test_the_sample_dems_open_offline_with_their_datum():
    tujunga, rome = sample_data.bigtujunga_dem(), sample_data.rome_dem()
    assert tujunga.shape == (240, 240) and rome.shape == (160, 160)
    assert tujunga.rio.crs.to_epsg() == 32611 and rome.rio.crs.to_epsg() == 4326
    for dem, raw, undulation in ((tujunga, "bigtujunga_srtm30_utm11_crop.tif", -33.1),
                                 (rome, "rome_cop30_egm96_crop.tif", 48.6)):
        assert dem.attrs["source_vertical_datum"] == "egm96"
        with rasterio.open(sample_data.path(raw)) as src:
            shift = dem.values - src.read(1).astype(np.float64)
        assert abs(float(np.median(shift)) - undulation) < 0.5, raw
        assert float(np.ptp(shift)) < 0.5  # a few km: the geoid barely changes
    assert sample_data.jacksboro_dem().shape == (344, 403)
    with pytest.raises(MissingInputError, match="samples are"):
        sample_data.path("nope.tif")


@pytest.mark.parametrize("name", sorted(CROPS))
def test_each_crop_is_its_window_of_the_full_file(shared_data, name):
    source, window = CROPS[name]
    full = shared_data / source
    if not full.exists():
        pytest.skip(f"{full} is absent")
    with rasterio.open(full) as src, rasterio.open(sample_data.path(name)) as crop:
        np.testing.assert_array_equal(crop.read(1), src.read(1, window=window))
        assert crop.transform.almost_equals(src.window_transform(window))
        assert crop.crs == src.crs


def test_the_packaged_geoid_grid_is_the_full_egm96_grid(shared_data):
    """sarheight/geoids/egm96_15.tif holds the values of the reference egm96_15.gtx in whole
    centimetres (its scale 0.01: within 5 mm), on the same cell centres."""
    from sarheight.dem import PACKAGED_EGM96

    grid = shared_data / "geoid" / "egm96_15.gtx"
    if not grid.exists():
        pytest.skip(f"{grid} is absent")
    with rasterio.open(PACKAGED_EGM96) as packaged, rasterio.open(grid) as reference:
        assert packaged.scales == (0.01,)
        centimetres = packaged.read(1)
        np.testing.assert_array_equal(centimetres, np.round(reference.read(1).astype(np.float64) * 100))
        np.testing.assert_allclose(centimetres * 0.01, reference.read(1), rtol=0, atol=0.005 + 1e-9)
        assert packaged.transform.almost_equals(reference.transform)
        assert packaged.crs.to_epsg() == 4326


def test_the_demo_checkpoint_is_small_packaged_and_loads_with_weights_only():
    import fnmatch
    import re
    from pathlib import Path

    from sarheight.training import load_checkpoint

    checkpoint = sample_data.terrain_demo_checkpoint()
    assert checkpoint.stat().st_size <= 10 * 2**20
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    patterns = re.findall(r'"([^"]+)"', re.search(r'^"sarheight\.sample_data" = \[(.*)\]$', pyproject, re.M).group(1))
    assert any(fnmatch.fnmatch(checkpoint.name, pattern) for pattern in patterns), "not in the package data"
    model = load_checkpoint(checkpoint)
    assert model.model_name == "ask_unet" and "sar_ratio" in model.channels and model.scale == "coarse_cell"
    assert model.reference == "coarse_refined" and model.target == "height"
    # Calibrated on its validation scenes: a gate and a spread scale per terrain class.
    assert model.outputs == 2 and model.calibration is not None
    assert set(model.calibration["classes"]) == {"layover", "shadow", "steep", "other"}
