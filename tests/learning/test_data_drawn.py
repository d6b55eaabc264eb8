"""Scenes drawn fresh during training (``sarheight.terrain.scene_draws``,
``sarheight.data.drawn``): one scene per key, the same wherever drawn; a batch's tiles
cut from one fresh scene, the next batch another; validation and test the files'; DEMs
of held-out areas refused; a short training through the command line on drawn scenes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("lightning")

from sarheight.cli import main
from sarheight.data import DrawnTerrainDataModule
from sarheight.errors import InvalidInputError
from sarheight.terrain.scene_draws import SceneDrawer
from sarheight.terrain.scene_sets import SceneAxes
from tests.support.scenes import rough_dem, simulate_tiny_scenes

TILE = 32


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Scene files of two areas (both passes each): validation and test."""
    folder = tmp_path_factory.mktemp("drawn_files")
    simulate_tiny_scenes(folder, names=("hills-a", "hills-b"), size=40)
    return folder


@pytest.fixture(scope="module")
def dems(tmp_path_factory):
    """Two DEM files of areas of their own (GeoTIFF, named by their stems, a degree east of
    the files' ground), one named as a validation area, and one on the files' ground."""
    folder = tmp_path_factory.mktemp("drawn_dems")
    paths = {}
    for seed, name in enumerate(("ridges-x", "ridges-y", "hills-a", "ridges-on-hills")):
        paths[name] = folder / f"{name}.tif"
        dem = rough_dem(seed=40 + seed, rows=56, cols=56, relief=500.0)
        if name != "ridges-on-hills":
            dem = dem.assign_coords(x=dem.x + 1.0)
        dem.rio.to_raster(paths[name])
    return paths


def _module(files: Path, dems: dict, **options) -> DrawnTerrainDataModule:
    settings = {"scenes": str(files), "val_scenes": ["hills-a"], "test_scenes": ["hills-b"],
                "draw_dems": [str(dems["ridges-x"]), str(dems["ridges-y"])], "draw_crop": 40, "tile": TILE,
                "tiles_per_epoch": 8, "batch_size": 4, "statistics_scenes": 1,
                "draw_axes": {"coarse_factors": [3, 4], "looks": [4.4, 2.0]}}
    return DrawnTerrainDataModule(**{**settings, **options})


def test_a_key_draws_one_scene_wherever_it_is_drawn(dems):
    axes = SceneAxes(coarse_factors=(3, 4), looks=(4.4, 2.0), passes=("ascending", "descending"))
    first, again = (SceneDrawer([dems["ridges-x"], dems["ridges-y"]], axes, crop_cells=32) for _ in range(2))
    scenes = [first.draw(key) for key in (5, 6, 7, 8)]
    repeated = again.draw(5)
    assert all(scene.sizes["y"] == scene.sizes["x"] == 32 for scene in scenes)
    assert repeated.attrs["scene_name"] == scenes[0].attrs["scene_name"]
    for name in ("height", "sar_reconstructed", "prior_interpolated"):
        np.testing.assert_array_equal(repeated[name].values, scenes[0][name].values)
    # Other keys, other scenes: another crop, speckle, priors, and the axes drawn.
    assert len({scene.attrs["scene_name"] for scene in scenes}) == 4
    assert not np.array_equal(scenes[0]["sar_reconstructed"].values, scenes[1]["sar_reconstructed"].values)
    drawn = {(scene.attrs["dem_name"], scene.attrs["coarse_factor"], scene.attrs["pass_direction"])
             for scene in [*scenes, *(first.draw(key) for key in range(9, 13))]}
    assert len(drawn) >= 4


def test_the_drawer_refuses_bad_options_before_reading(dems):
    with pytest.raises(InvalidInputError, match="crop_cells"):
        SceneDrawer([dems["ridges-x"]], crop_cells=8)
    with pytest.raises(InvalidInputError, match="list of one DEM or more"):
        SceneDrawer(str(dems["ridges-x"]))
    with pytest.raises(InvalidInputError, match="key"):
        SceneDrawer([dems["ridges-x"]]).draw(-1)
    if not torch.cuda.is_available():
        with pytest.raises(InvalidInputError, match="asks for a CUDA GPU and torch sees none"):
            SceneDrawer([dems["ridges-x"]], device="cuda")


def test_a_batch_is_cut_from_one_fresh_scene_and_validation_from_the_files(files, dems):
    data = _module(files, dems)
    data.setup("fit")
    assert data.split_scenes["train"] == [] and data.split_scenes["val"] and data.split_scenes["test"]
    loader = data.train_dataloader()
    torch.manual_seed(0)
    batches = list(loader)
    assert len(batches) == 2
    dataset = data.datasets["train"]
    assert dataset.drawn == 2  # one scene a batch
    assert loader.sampler is not None and len(loader.sampler) == 8
    for batch in batches:
        assert batch["inputs"].shape == (4, data.in_channels, TILE, TILE)
        assert batch["mask"].any() and torch.all(batch["scene"] == -1)
    assert not torch.equal(batches[0]["inputs"].nan_to_num(), batches[1]["inputs"].nan_to_num())
    # The same keys, the same tiles (a resumed run, another worker); another epoch, other scenes.
    torch.manual_seed(0)
    again = next(iter(loader))
    torch.testing.assert_close(again["inputs"], batches[0]["inputs"], equal_nan=True)
    torch.manual_seed(1)
    other = next(iter(loader))
    assert not torch.equal(other["inputs"].nan_to_num(), batches[0]["inputs"].nan_to_num())
    keys = [list(iter(loader.sampler)) for _ in range(2)]
    assert {key // 4 for key in keys[0]}.isdisjoint({key // 4 for key in keys[1]})
    # Validation: the files' fixed tiles.
    val = next(iter(data.val_dataloader()))
    assert torch.all(val["scene"] >= 0)
    means, stds = data.input_statistics
    assert len(means) == data.in_channels and all(np.isfinite(means)) and all(s > 0 for s in stds)


def test_half_the_batches_from_the_files(files, dems):
    # Training areas among the files: hills-b trains, hills-a validates.
    data = _module(files, dems, test_scenes=None, test_fraction=0.0, drawn_share=0.5, tiles_per_epoch=64)
    data.setup("fit")
    dataset = data.datasets["train"]
    keys = range(0, 64, 4)
    drawn = [dataset.scene_key(key) is not None for key in keys]
    assert 0 < sum(drawn) < len(drawn)
    from_files = dataset[next(key for key, is_drawn in zip(keys, drawn, strict=True) if not is_drawn)]
    assert int(from_files["scene"]) >= 0


def test_a_dem_of_a_held_out_area_is_refused(files, dems):
    data = _module(files, dems, draw_dems=[str(dems["ridges-x"]), str(dems["hills-a"])])
    with pytest.raises(InvalidInputError, match=r"draw_dems holds \['hills-a'\].*leak"):
        data.setup("fit")
    # Under another name, on the ground of a held-out scene.
    data = _module(files, dems, draw_dems=[str(dems["ridges-x"]), str(dems["ridges-on-hills"])])
    with pytest.raises(InvalidInputError, match=r"draw_dems \['ridges-on-hills'\] cover ground of the held-out"):
        data.setup("fit")


@pytest.mark.parametrize(("options", "message"), [
    ({"drawn_share": 0.0}, "drawn_share"),
    ({"draw_crop": 16}, "draw_crop"),
    ({"draw_axes": {"colour": [1]}}, r"draw_axes names \['colour'\]"),
    ({"draw_products": {"inverse": True}}, "draw_products"),
    ({"draw_dems": []}, "draw_dems"),
    ({"draw_axes": {"seeds": [1, 2]}}, "seeds, which a drawn scene does not take"),
    ({"tiles_per_epoch": 10}, "not a multiple of the tiles of a drawn scene"),
    ({"group_by": None}, "group_by is null"),
])
def test_bad_draw_options_are_refused_when_made(files, dems, options, message):
    with pytest.raises(InvalidInputError, match=message):
        _module(files, dems, **options)


def test_a_short_training_on_drawn_scenes_through_the_command_line(tmp_path, files, dems, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where LightningCLI writes the run's config.yaml
    config = tmp_path / "drawn.yaml"
    config.write_text(f"""
seed_everything: 0
trainer:
  accelerator: cpu
  devices: 1
  max_epochs: 2
  log_every_n_steps: 1
  enable_progress_bar: false
  enable_model_summary: false
  logger: false
model:
  model: unet
  model_options: {{base_channels: 4, depth: 2}}
data:
  class_path: sarheight.data.DrawnTerrainDataModule
  init_args:
    scenes: {files}
    val_scenes: [hills-a]
    test_scenes: [hills-b]
    draw_dems: [{dems["ridges-x"]}, {dems["ridges-y"]}]
    draw_crop: 40
    draw_axes: {{coarse_factors: [3, 4], terrain_transforms: [{{}}, {{quarter_turns: 1}}]}}
    statistics_scenes: 1
    tile: {TILE}
    tiles_per_epoch: 8
    batch_size: 4
checkpoint:
  dirpath: {tmp_path}/checkpoints
""")
    assert main(["fit", "--config", str(config)]) == 0
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 4
