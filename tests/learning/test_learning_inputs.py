"""Inputs that would give silent garbage are refused: a channel without a finite value (a
scene's SAR, a city's Sentinel-1), NaN rows of any So2Sat split, a CUDA device that is not
there; an ensemble of identical members is named."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("lightning")

from sarheight.cli import main
from sarheight.data import TerrainDataModule
from sarheight.errors import InvalidInputError
from sarheight.priors import PriorSpec
from sarheight.terrain.files import open_scene, write_scene
from sarheight.terrain.scene_options import Execution
from sarheight.training import predict_height
from tests.support.scenes import fit_tiny_checkpoint, write_tiny_city, write_tiny_scenes, write_tiny_so2sat

#: No progress bars in the tests.
QUIET = Execution(progress=False)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    write_tiny_scenes(folder, count=3, rows=40, cols=40)
    return folder


@pytest.fixture(scope="module")
def checkpoint(scenes, tmp_path_factory):
    return fit_tiny_checkpoint(scenes, tmp_path_factory.mktemp("ckpt") / "model.ckpt")


def test_a_scene_whose_sar_has_no_value_is_refused(scenes, checkpoint, tmp_path):
    scene = open_scene(scenes / "s0.nc")
    broken = scene.copy()
    broken["sar_reconstructed"] = broken["sar_reconstructed"] * np.nan
    write_scene(broken, tmp_path / "broken.nc")
    with pytest.raises(InvalidInputError, match=r"'sar_reconstructed' of scene .* has no finite value"):
        predict_height(tmp_path / "broken.nc", [checkpoint], progress=False)
    for name in ("s1.nc", "s2.nc"):
        (tmp_path / name).write_bytes((scenes / name).read_bytes())
    data = TerrainDataModule(scenes=str(tmp_path), val_scenes=["s1"], test_scenes=["s2"], tile=32)
    with pytest.raises(InvalidInputError, match="no finite value"):
        data.setup("fit")
    infinite = scene.copy()
    infinite["local_incidence_angle"] = infinite["local_incidence_angle"] * np.inf
    with pytest.raises(InvalidInputError, match=r"'local_incidence_angle'.*no finite value"):
        predict_height(infinite, [checkpoint], progress=False)


def test_nan_rows_of_every_so2sat_split_are_refused(tmp_path):
    import h5py

    from sarheight.data.so2sat import So2SatLCZ42

    root = write_tiny_so2sat(tmp_path / "so2sat")
    with h5py.File(root / "testing.h5", "r+") as file:
        file["sen2"][3, 0, 0, 0] = np.nan
    dataset = So2SatLCZ42(root, "testing")
    dataset[2]
    with pytest.raises(InvalidInputError, match="row 3 holds NaN"):
        dataset[3]


def test_a_device_that_is_not_there_is_named(scenes, checkpoint, tmp_path, capsys):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    assert main(["terrain", "predict", "--ckpt", str(checkpoint), "--scene", str(scenes / "s0.nc"), "--out",
                 str(tmp_path / "h.tif"), "--device", "cuda"]) == 2
    assert "sees 0 CUDA device(s)" in capsys.readouterr().err
    root = write_tiny_so2sat(tmp_path / "so2sat")
    assert main(["lcz", "combine", str(checkpoint), "--data", str(root), "--device", "cuda"]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    assert not (tmp_path / "h.tif").exists()


def test_an_ensemble_of_one_model_twice_is_named(scenes, checkpoint, tmp_path):
    copy = tmp_path / "copy.ckpt"
    copy.write_bytes(checkpoint.read_bytes())
    with pytest.warns(UserWarning, match="hold the same weights"):
        result = predict_height(scenes / "s0.nc", [checkpoint, copy], progress=False)
    assert np.nanmax(result["height_std"].values) == 0
    other = fit_tiny_checkpoint(scenes, tmp_path / "other.ckpt", seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        predict_height(scenes / "s0.nc", [checkpoint, other], progress=False)


def test_a_city_without_sentinel1_values_is_refused(tmp_path):
    import rasterio

    from sarheight.training import predict_buildings

    city = write_tiny_city(tmp_path / "city", months=("202301", "202302"))
    for month in ("202301", "202302"):
        with rasterio.open(city / f"s1_{month}.tif", "r+") as dst:
            dst.write(np.full((2, *dst.shape), np.nan, dtype=np.float32))
    from sarheight import sample_data

    with pytest.raises(InvalidInputError, match="S1 channel 0 has no finite value"):
        predict_buildings(city, [sample_data.buildings_demo_checkpoint()], progress=False)


def test_implausible_priors_and_city_rasters(tmp_path):
    import pandas as pd
    import rasterio

    from sarheight.data.buildings import read_city
    from sarheight.errors import PlausibilityWarning
    from sarheight.simulate import simulate_sar
    from sarheight.terrain.geometry import scene_geometry
    from sarheight.terrain.grid import degrade_dem
    from sarheight.terrain.observed import observed_scene
    from tests.support.scenes import rough_dem

    truth = rough_dem(seed=4, rows=40, cols=40, relief=600.0)
    geometry = scene_geometry(truth, "ascending")
    observation = simulate_sar(truth, geometry, seed=1)
    coarse = degrade_dem(truth, 3)
    rows, cols = np.array([5, 12, 20, 30, 35]), np.array([4, 18, 9, 30, 22])
    points = pd.DataFrame({"x": truth["x"].values[cols], "y": truth["y"].values[rows],
                           "height": truth.values[rows, cols]})

    def known(table):
        return PriorSpec(points=table, crs=truth.rio.crs, vertical_datum="ellipsoid")

    observed_scene(coarse, observation, geometry, known(points), execution=QUIET)
    with pytest.raises(InvalidInputError, match="in feet"):
        observed_scene(coarse, observation, geometry, known(points.assign(height=points["height"] / 0.3048)),
                       execution=QUIET)
    with pytest.raises(InvalidInputError, match=r"median \+1[12]\d\d\d m from the coarse DEM"):
        observed_scene(coarse, observation, geometry, known(points.assign(height=points["height"] + 12_000)),
                       execution=QUIET)
    city = write_tiny_city(tmp_path / "city", months=("202301",))
    read_city(city)
    with rasterio.open(city / "s1_202301.tif", "r+") as dst:
        dst.write(10 ** (dst.read() / 10))
    with pytest.warns(PlausibilityWarning, match="linear power, not dB"):
        read_city(city)
    city = write_tiny_city(tmp_path / "city2", months=("202301",))
    with rasterio.open(city / "s2_202301.tif", "r+") as dst:
        profile = dst.profile
        reflect = (dst.read().astype(np.float32) - 1000) / 10000
    profile.update(dtype="float32")
    with rasterio.open(city / "s2_202301.tif", "w", **profile) as dst:
        dst.write(reflect)
        dst.descriptions = tuple(__import__("sarheight.preprocess.sentinel2", fromlist=["S2_BANDS"]).S2_BANDS)
        dst.update_tags(PROCESSING_BASELINE="05.10")
    with pytest.warns(PlausibilityWarning, match="reflectance, not digital numbers"):
        read_city(city)


def test_a_one_cell_scene_keeps_its_georeferencing_or_is_refused(scenes, checkpoint, tmp_path):
    import rasterio

    from sarheight.cli import main

    scene = open_scene(scenes / "s0.nc")
    cell = scene.isel(y=slice(5, 6), x=slice(3, 4))
    (x_size, _, west, _, y_size, north) = tuple(scene.rio.transform())[:6]
    with pytest.raises(InvalidInputError, match="crop at least 2 x 2 cells"):
        write_scene(cell, tmp_path / "cell.nc")
    from rasterio.transform import Affine

    write_scene(cell.rio.write_transform(scene.rio.transform() @ Affine.translation(3, 5)), tmp_path / "cell.nc")
    assert tuple(open_scene(tmp_path / "cell.nc").rio.transform())[:6] == (x_size, 0, west + 3 * x_size, 0, y_size,
                                                                          north + 5 * y_size)
    assert main(["terrain", "predict", "--ckpt", str(checkpoint), "--scene", str(tmp_path / "cell.nc"), "--out",
                 str(tmp_path / "cell.tif"), "--quiet"]) == 0
    with rasterio.open(tmp_path / "cell.tif") as src:
        assert tuple(src.transform)[:6] == (x_size, 0, west + 3 * x_size, 0, y_size, north + 5 * y_size)
        assert src.crs == scene.rio.crs


def test_prediction_memory_is_counted_before_work(scenes, checkpoint, tmp_path, capsys):
    status = main(["terrain", "predict", "--ckpt", str(checkpoint), "--scene", str(scenes / "s0.nc"), "--out",
                   str(tmp_path / "h.tif"), "--tile", "65536", "--overlap", "8", "--quiet"])
    err = capsys.readouterr().err
    assert status == 2 and "GiB of memory" in err and "lower --tile" in err
    assert not (tmp_path / "h.tif").exists()


def test_heights_in_feet_in_a_scene_or_a_city_are_refused(tmp_path, capsys):
    """A scene whose heights were written in feet (3.28 times steeper) and a city whose
    building heights are in feet: one line each, where they trained and scored silently."""
    import rasterio

    from sarheight.cli import main
    from sarheight.errors import PlausibilityWarning
    from sarheight.terrain.files import open_scene, write_scene
    from tests.support.scenes import simulate_tiny_scenes

    folder = tmp_path / "scenes"
    folder.mkdir()
    simulate_tiny_scenes(folder, names=("hills-a",), size=40)
    (path,) = sorted(folder.glob("*.nc"))[:1]
    scene = open_scene(path)
    for name in ("height", "coarse_height"):
        if name in scene:
            scene[name] = scene[name] / 0.3048
    feet = write_scene(scene, tmp_path / "feet.nc")
    with pytest.warns(PlausibilityWarning, match="are the heights in feet") as record:
        open_scene(feet)
    said = [str(w.message) for w in record if "are the heights in feet" in str(w.message)]
    assert int(re.search(r"(\d+) % of its cell steps", said[0]).group(1)) >= 10
    city = write_tiny_city(tmp_path / "city", months=("202301",))
    with rasterio.open(city / "height.tif", "r+") as dst:
        heights = dst.read(1)
        dst.write(np.where(heights == dst.nodata, heights, heights / 0.3048), 1)
    from sarheight import sample_data

    assert main(["buildings", "predict", "--ckpt", str(sample_data.buildings_demo_checkpoint()), "--city", str(city),
                 "--out", str(tmp_path / "b.tif")]) == 2
    assert "are the heights in feet" in capsys.readouterr().err
