"""Inputs that would give silent garbage are refused: a channel without a finite value (a
scene's SAR, a city's Sentinel-1), NaN rows of any So2Sat split, a CUDA device that is not
there; an ensemble of identical members is named."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("lightning")

from sarheight.cli import main
from sarheight.data import TerrainDataModule
from sarheight.errors import InvalidInputError
from sarheight.terrain import open_scene, write_scene
from sarheight.training import predict_height
from tests.helpers import fit_tiny_checkpoint, write_tiny_city, write_tiny_scenes, write_tiny_so2sat


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
