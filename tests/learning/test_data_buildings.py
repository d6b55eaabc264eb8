"""The building-height data module: month pairing, spatial splits, statistics from the
training split only, masks, height classes and clear errors on bad city folders."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

pytest.importorskip("lightning")

from sarheight.data import BUILDING_CLASSES, BuildingHeightDataModule, read_city
from sarheight.data.buildings import building_classes, city_months
from sarheight.errors import InvalidInputError, MissingInputError
from tests.support.scenes import CITY_NODATA, write_tiny_cities, write_tiny_city


@pytest.fixture
def cities(tmp_path):
    root = tmp_path / "cities"
    write_tiny_cities(root)
    return root


def module(root, **options):
    settings = {"tile": 16, "tiles_per_epoch": 8, "batch_size": 4, "val_cities": ["city1"], "test_cities": ["city2"],
                **options}
    data = BuildingHeightDataModule(str(root), **settings)
    data.setup()
    return data


def test_months_are_paired_and_unpaired_ones_skipped_with_a_warning(cities):
    (cities / "city0" / "s1_202304.tif").write_bytes((cities / "city0" / "s1_202303.tif").read_bytes())
    (cities / "city0" / "s2_202305.tif").write_bytes((cities / "city0" / "s2_202303.tif").read_bytes())
    with pytest.warns(UserWarning) as record:
        assert city_months(cities / "city0") == ["202301", "202302", "202303"]
    messages = [str(warning.message) for warning in record]
    assert any("['202304'] have s1_YYYYMM.tif but no s2_YYYYMM.tif" in m for m in messages)
    assert any("['202305'] have s2_YYYYMM.tif but no s1_YYYYMM.tif" in m for m in messages)
    city = read_city(cities / "city1")
    assert city.months == ["202301", "202302", "202303"] and city.s1.shape == (3, 2, 40, 48)
    assert city.s2.shape == (3, 10, 40, 48) and 0 < np.nanmean(city.s2) < 1  # reflectance, offset applied
    assert np.isnan(city.height[0, :5]).all() and np.isfinite(city.height[1:]).all()


def test_city_split_tiles_and_statistics_from_training_only(cities):
    data = module(cities)
    assert data.split_scenes == {"train": ["city0"], "val": ["city1"], "test": ["city2"]}
    city = data.data[0]
    train = city.s1.transpose(1, 0, 2, 3).reshape(2, -1)
    np.testing.assert_allclose(data.input_statistics[0][:2], np.nanmean(train, axis=1), rtol=1e-5)
    # Validation: a fixed grid over the whole city, once per month (3 x 4 tiles of 16 cells).
    assert len(data.datasets["val"]) == 3 * 3 * 3
    assert all(data.data[window.scene].name == "city1" for window, _ in data.datasets["val"].windows)
    item = data.datasets["val"][len(data.datasets["val"]) - 1]  # the last tile: 8 x 16 cells, padded
    assert item["s1"].shape == (2, 16, 16) and item["s2"].shape == (10, 16, 16)
    assert torch_nan(item["s1"][:, 8:]) and not item["mask"][0, 8:].any()
    # Changing a validation city's values leaves the statistics unchanged.
    before = data.input_statistics, data.target_statistics
    with rasterio.open(cities / "city1" / "s1_202301.tif", "r+") as dst:
        dst.write(dst.read() + 50)
    with rasterio.open(cities / "city1" / "height.tif", "r+") as dst:
        dst.write(dst.read() * 3)
    assert (module(cities).input_statistics, module(cities).target_statistics) == before
    batch = next(iter(data.train_dataloader()))
    assert set(batch) >= {"s1", "s2", "target", "mask", "classes"} and batch["s1"].shape == (4, 2, 16, 16)


def torch_nan(tensor) -> bool:
    return bool(tensor.isnan().all())


def test_block_split_puts_every_tile_in_one_split(cities):
    data = module(cities, val_cities=None, test_cities=None, split="block", block_size=16, val_fraction=0.2,
                  test_fraction=0.2, tiles_per_epoch=64)
    for split in ("val", "test"):
        code = ("train", "val", "test").index(split)
        for window, _ in data.datasets[split].windows:
            area = data.areas[window.scene][window.row:window.row + window.rows, window.col:window.col + window.cols]
            assert (area == code).all()
    train = data.datasets["train"]
    for _ in range(64):
        item = train[0]
        row, col, rows, cols = item["window"].tolist()
        assert (data.areas[int(item["city"])][row:row + rows, col:col + cols] == 0).all()


def test_masks_and_height_classes(cities):
    data = module(cities)
    item = data.datasets["val"][0]  # city1, month 0, the first tile: its first row has nodata
    assert not item["mask"][0, 0, :5].any() and item["mask"][0, 1:].all()
    assert (item["target"][0, 0, :5] == 0).all()
    np.testing.assert_array_equal(building_classes(np.array([np.nan, 0, 1, 1.5, 10, 12, 30, 31])),
                                  [0, 0, 0, 1, 1, 2, 2, 3])
    assert BUILDING_CLASSES == ("no_building", "low_rise", "mid_rise", "high_rise")
    # Nodata in one month's image masks those cells in that month only.
    with rasterio.open(cities / "city1" / "s1_202302.tif", "r+") as dst:
        values = dst.read()
        values[:, 5, 5] = np.nan
        dst.write(values)
    city = read_city(cities / "city1")
    assert not city.loss_mask(1)[5, 5] and city.loss_mask(0)[5, 5]


def test_bad_city_folders_are_refused_before_reading(tmp_path, cities):
    with pytest.raises(MissingInputError, match="not a folder"):
        module(tmp_path / "nowhere")
    (cities / "city0" / "height.tif").unlink()
    with pytest.raises(MissingInputError, match=r"no height\.tif"):
        module(cities)
    write_tiny_city(cities / "city0")
    other = write_tiny_city(tmp_path / "other", rows=32)
    (cities / "city1" / "s2_202302.tif").write_bytes((other / "s2_202302.tif").read_bytes())
    with pytest.raises(InvalidInputError, match="another grid"):
        module(cities)
    write_tiny_city(cities / "city1", seed=1)
    with rasterio.open(cities / "city2" / "s1_202301.tif", "r+") as dst:
        dst.descriptions = ("HH", "HV")
    with pytest.raises(InvalidInputError, match="not \\['VV', 'VH'\\]"):
        module(cities)
    write_tiny_city(cities / "city2", seed=2)
    with rasterio.open(cities / "city2" / "s2_202303.tif", "r+") as dst:
        dst.set_band_description(10, "B1")
    with pytest.raises(InvalidInputError, match="not the ten"):
        module(cities)
    write_tiny_city(cities / "city2", seed=2)
    for path in (cities / "city2").glob("s2_*.tif"):
        path.rename(path.with_name(path.name.replace("2023", "2022")))
    with pytest.warns(UserWarning), pytest.raises(InvalidInputError, match="no month with both images"):
        module(cities)
    with pytest.raises(InvalidInputError, match=r"data\.split"):
        BuildingHeightDataModule(str(cities), split="scene")
    assert CITY_NODATA < 0


def test_one_sensor_gives_the_other_group_no_channels(cities):
    both = module(cities)
    s2_only = module(cities, sensors=["s2"])
    assert s2_only.in_channels == {"s1": 0, "s2": 10} and s2_only.channels == list(both.channels[2:])
    # The statistics are those of the sensor's channels, the scored cells the same.
    assert s2_only.input_statistics[0] == both.input_statistics[0][2:]
    assert s2_only.target_statistics == both.target_statistics
    item, reference = s2_only.datasets["val"][5], both.datasets["val"][5]
    assert item["s1"].shape == (0, 16, 16) and torch_equal(item["s2"], reference["s2"])
    assert torch_equal(item["mask"], reference["mask"])
    for sensors in (["s3"], [], "s1"):
        with pytest.raises(InvalidInputError, match=r"data\.sensors must name one or both"):
            module(cities, sensors=sensors)


def torch_equal(a, b) -> bool:
    return bool(((a == b) | (a.isnan() & b.isnan())).all())
