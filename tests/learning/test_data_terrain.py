"""The terrain data module: spatial splits that no tile crosses, statistics from the
training split only, the loss mask and the terrain classes, clear errors before work."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("lightning")

from sarheight.data import TERRAIN_CLASSES, TerrainDataModule, scene_arrays
from sarheight.data.terrain import SPLITS, scene_files, terrain_classes
from sarheight.errors import InvalidInputError, MissingInputError
from sarheight.masks import MaskCode
from sarheight.terrain.files import open_scene, write_scene
from tests.support.scenes import simulate_tiny_scenes, write_tiny_scene, write_tiny_scenes


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Five tiny scenes of 72 x 64 cells (s0...s4)."""
    folder = tmp_path_factory.mktemp("scenes")
    write_tiny_scenes(folder, count=5, rows=72, cols=64)
    return folder


def _draw(dataset, count):
    """``count`` items of a dataset: the fixed tiles in turn, or the random tiles of keys
    0, 1, ... (each key its own draw)."""
    return [dataset[k % len(dataset) if dataset.windows is not None else k] for k in range(count)]


def test_scene_split_keeps_every_tile_inside_its_split(scenes):
    data = TerrainDataModule(scenes=str(scenes), val_scenes=["s1"], test_scenes=["s3"], tile=32,
                             tiles_per_epoch=8, batch_size=4)
    data.setup("fit")
    assert data.split_scenes == {"train": ["s0", "s2", "s4"], "val": ["s1"], "test": ["s3"]}
    names = [scene.name for scene in data.data]
    for split in SPLITS:
        items = _draw(data.datasets[split], 200 if split == "train" else len(data.datasets[split]))
        covered = {name: np.zeros((72, 64), dtype=int) for name in names}
        for item in items:
            name = names[int(item["scene"])]
            row, col, rows, cols = (int(v) for v in item["window"])
            assert name in data.split_scenes[split], (split, name)
            assert 0 <= row and row + rows <= 72 and 0 <= col and col + cols <= 64
            covered[name][row:row + rows, col:col + cols] += 1
            # Padding beyond the window has no inputs and no loss.
            assert not item["mask"][0, rows:, :].any() and not item["mask"][0, :, cols:].any()
            assert torch.isnan(item["inputs"][:, rows:, :]).all() and torch.isnan(item["inputs"][:, :, cols:]).all()
        if split != "train":
            # The fixed grid scores every cell of the split once.
            for name in data.split_scenes[split]:
                assert (covered[name] == 1).all(), (split, name)
    # Training tiles come from all three training scenes, none from the others.
    drawn = {names[int(item["scene"])] for item in _draw(data.datasets["train"], 200)}
    assert drawn == {"s0", "s2", "s4"}


def test_scene_split_by_fractions_is_seeded_and_keeps_training_scenes(scenes):
    first = TerrainDataModule(scenes=str(scenes), val_fraction=0.2, test_fraction=0.2, seed=4)
    again = TerrainDataModule(scenes=str(scenes), val_fraction=0.2, test_fraction=0.2, seed=4)
    first.setup("fit")
    again.setup("fit")
    assert first.split_scenes == again.split_scenes
    assert [len(first.split_scenes[s]) for s in SPLITS] == [3, 1, 1]
    assert sorted(name for names in first.split_scenes.values() for name in names) == ["s0", "s1", "s2", "s3", "s4"]
    too_few = TerrainDataModule(scenes=[str(scenes / "s0.nc"), str(scenes / "s1.nc")])
    with pytest.raises(InvalidInputError, match="no area is left for training"):
        too_few.setup("fit")


def test_scenes_of_one_area_share_their_split(tmp_path):
    # s0 and s1 are two looks at one DEM ("alps"): never one in training, one in validation.
    write_tiny_scene(tmp_path / "s0.nc", rows=32, cols=32, seed=0, dem_name="alps")
    write_tiny_scene(tmp_path / "s1.nc", rows=32, cols=32, seed=1, dem_name="alps")
    for seed in range(2, 6):
        write_tiny_scene(tmp_path / f"s{seed}.nc", rows=32, cols=32, seed=seed)
    scenes = str(tmp_path)
    named = TerrainDataModule(scenes=scenes, val_scenes=["s1"], test_scenes=["s2"], tile=16)
    named.setup("fit")
    assert named.split_scenes["val"] == ["s0", "s1"] and named.split_scenes["test"] == ["s2"]
    for seed in range(6):
        drawn = TerrainDataModule(scenes=scenes, seed=seed, tile=16)
        drawn.setup("fit")
        assert any({"s0", "s1"} <= set(members) for members in drawn.split_scenes.values()), seed
    blocks = TerrainDataModule(scenes=scenes, split="block", block_size=16, tile=16, seed=2)
    blocks.setup("fit")
    np.testing.assert_array_equal(blocks.areas[0], blocks.areas[1])
    alone = TerrainDataModule(scenes=scenes, group_by=None, val_scenes=["s1"], test_scenes=["s2"], tile=16)
    alone.setup("fit")
    assert alone.split_scenes["val"] == ["s1"] and "s0" in alone.split_scenes["train"]


@pytest.mark.parametrize(("block_size", "tile"), [(32, 32), (40, 24)])
def test_block_split_tiles_never_cross_a_block_of_another_split(scenes, block_size, tile):
    data = TerrainDataModule(scenes=[str(scenes / "s0.nc"), str(scenes / "s1.nc")], split="block",
                             block_size=block_size, tile=tile, val_fraction=0.25, test_fraction=0.25,
                             tiles_per_epoch=8)
    data.setup("fit")
    for split, code in zip(SPLITS, range(3), strict=True):
        assert any((area == code).any() for area in data.areas), split
        items = _draw(data.datasets[split], 300 if split == "train" else len(data.datasets[split]))
        covered = [np.zeros(area.shape, dtype=int) for area in data.areas]
        for item in items:
            scene = int(item["scene"])
            row, col, rows, cols = (int(v) for v in item["window"])
            area = data.areas[scene][row:row + rows, col:col + cols]
            assert area.shape == (rows, cols) and (area == code).all(), (split, scene, row, col)
            if split != "train":
                # Inside one block: tiles are cut from each block on its own grid.
                assert row // block_size == (row + rows - 1) // block_size
                assert col // block_size == (col + cols - 1) // block_size
            covered[scene][row:row + rows, col:col + cols] += 1
        if split != "train":
            for area, count in zip(data.areas, covered, strict=True):
                assert (count[area == code] == 1).all() and (count[area != code] == 0).all()


def test_normalisation_statistics_come_from_the_training_split_only(tmp_path):
    write_tiny_scenes(tmp_path, count=3, rows=48, cols=40)

    def statistics():
        data = TerrainDataModule(scenes=str(tmp_path), val_scenes=["s1"], test_scenes=["s2"], tile=16)
        data.setup("fit")
        return data.input_statistics, data.target_statistics

    before = statistics()

    def shift(name, variable, amount):
        ds = open_scene(tmp_path / f"{name}.nc")
        ds[variable] = ds[variable] + amount
        write_scene(ds, tmp_path / f"{name}.nc")

    shift("s1", "sar_reconstructed", 50.0)
    shift("s2", "height", 300.0)
    assert statistics() == before
    # The same change to the training scene moves them (the check above can fail).
    shift("s0", "sar_reconstructed", 50.0)
    (mean, std), target = statistics()
    assert mean[0] == pytest.approx(before[0][0][0] + 50.0, rel=1e-6) and std == pytest.approx(before[0][1])
    assert target == before[1]


def test_statistics_by_hand_and_heights_relative_to_the_reference(tmp_path):
    write_tiny_scenes(tmp_path, count=3, rows=40, cols=40)
    channels = ["sar_reconstructed", "coarse_height", "prior_mask"]
    data = TerrainDataModule(scenes=str(tmp_path), channels=channels, val_scenes=["s1"], test_scenes=["s2"],
                             tile=16)
    data.setup("fit")
    ds = open_scene(tmp_path / "s0.nc")
    sar = ds["sar_reconstructed"].values.astype(np.float64)
    relative = ds["coarse_height"].values.astype(np.float64) - ds["prior_interpolated"].values
    mean, std = data.input_statistics
    assert mean[0] == pytest.approx(np.nanmean(sar)) and std[0] == pytest.approx(np.nanstd(sar), rel=1e-5)
    assert mean[1] == pytest.approx(relative.mean(), rel=1e-4) and std[1] == pytest.approx(relative.std(), rel=1e-4)
    target = ds["height"].values - ds["prior_interpolated"].values
    valid = (ds["shadow"].values == 0) & (ds["layover"].values != 255)
    assert data.target_statistics[0] == pytest.approx(target[valid].mean(), rel=1e-4)
    assert data.target_statistics[1] == pytest.approx(target[valid].std(), rel=1e-4)


def test_loss_mask_excludes_shadow_outside_and_missing_targets(tmp_path):
    path = write_tiny_scene(tmp_path / "a.nc", rows=40, cols=36, seed=2)
    ds = open_scene(path)
    ds["height"][5, 30] = np.nan
    ds["prior_interpolated"][6, 30] = np.nan
    arrays = scene_arrays(ds, ["sar_reconstructed"], reference="prior_interpolated", target="height")
    shadow, layover = ds["shadow"].values, ds["layover"].values
    expected = (shadow == 0) & (layover != MaskCode.OUTSIDE)
    expected[5, 30] = expected[6, 30] = False
    assert (shadow != 0).any() and (layover == MaskCode.OUTSIDE).any()
    np.testing.assert_array_equal(arrays.loss_mask, expected)
    np.testing.assert_allclose(arrays.target[expected], (ds["height"] - ds["prior_interpolated"]).values[expected])
    # No prediction where the SAR image (a non-sparse input) or the reference is missing.
    np.testing.assert_array_equal(arrays.missing, ~np.isfinite(ds["sar_reconstructed"].values)
                                  | ~np.isfinite(ds["prior_interpolated"].values))


def test_terrain_classes_by_hand():
    layover = np.zeros((7, 9), dtype=np.uint8)
    shadow = np.zeros((7, 9), dtype=np.uint8)
    layover[1, 1] = MaskCode.ACTIVE
    layover[1, 2] = MaskCode.PASSIVE
    shadow[6, 8] = MaskCode.PASSIVE
    shadow[0, 8] = MaskCode.OUTSIDE  # outside the image is no shadow
    codes = terrain_classes(layover, shadow)
    name = {index: value for index, value in enumerate(TERRAIN_CLASSES)}
    assert name[codes[1, 1]] == "active_layover" and name[codes[1, 2]] == "passive_layover"
    # Within 3 cells (any direction) of the shadow cell, not in it.
    near = np.zeros((7, 9), dtype=bool)
    near[3:7, 5:9] = True
    near[6, 8] = False
    assert all(name[c] == "shadow_adjacent" for c in codes[near])
    assert name[codes[6, 8]] == "shadow" and name[codes[0, 0]] == "other" and name[codes[2, 4]] == "other"
    rest = ~near & (layover == 0)
    rest[6, 8] = False
    assert (codes[rest] == TERRAIN_CLASSES.index("other")).all()


def test_a_scene_without_a_channel_is_named_before_any_reading(tmp_path):
    write_tiny_scenes(tmp_path, count=2, rows=32, cols=32)
    write_tiny_scene(tmp_path / "s2.nc", rows=32, cols=32, seed=9, drop=("local_incidence_angle",))
    data = TerrainDataModule(scenes=str(tmp_path), channels=["sar_reconstructed", "local_incidence_angle"],
                             tile=16)
    with pytest.raises(InvalidInputError, match=r"scene 's2' lacks 'local_incidence_angle'.*it has .*sar_geocoded"):
        data.setup("fit")
    assert data.data is None
    observed = tmp_path / "observed"
    write_tiny_scenes(observed, count=3, rows=32, cols=32, truth=False)
    with pytest.raises(InvalidInputError, match="lacks 'height'"):
        TerrainDataModule(scenes=str(observed), tile=16).setup("fit")


def test_bad_options_are_refused_at_construction(tmp_path):
    with pytest.raises(InvalidInputError, match="the model would be given the answer"):
        TerrainDataModule(channels=["sar_reconstructed", "height"])
    with pytest.raises(InvalidInputError, match="block_size"):
        TerrainDataModule(split="block", block_size=64, tile=128)
    with pytest.raises(InvalidInputError, match="val_scenes"):
        TerrainDataModule(split="block", val_scenes=["a"])
    with pytest.raises(InvalidInputError, match="names a channel twice"):
        TerrainDataModule(channels=["prior_mask", "prior_mask"])
    with pytest.raises(MissingInputError, match="does not exist"):
        TerrainDataModule(scenes=str(tmp_path / "nowhere")).setup("fit")
    with pytest.raises(MissingInputError, match=r"no scene file \(\*\.nc\)"):
        TerrainDataModule(scenes=str(tmp_path)).setup("fit")


def test_random_tiles_follow_their_keys_and_the_torch_seed(scenes):
    data = TerrainDataModule(scenes=str(scenes), val_scenes=["s1"], test_scenes=["s3"], tile=32, tiles_per_epoch=12,
                             batch_size=4)
    data.setup("fit")
    dataset = data.datasets["train"]

    def tile(key):
        item = dataset[key]
        return (int(item["scene"]), *item["window"].tolist())

    # A tile is its key's: the same whatever was read before, in any process.
    assert tile(7) == tile(7) and len({tile(key) for key in range(10)}) > 1
    # An epoch's keys follow torch's seed, and each epoch draws anew.
    sampler = data.train_dataloader().sampler
    torch.manual_seed(3)
    first, second = list(sampler), list(sampler)
    torch.manual_seed(3)
    assert list(sampler) == first != second and len(first) == 12
    # Two processes of a distributed run, seeded alike, read disjoint halves of one
    # process's keys (Lightning wraps the sampler so): together the same tiles, each once.
    from lightning.fabric.utilities.distributed import DistributedSamplerWrapper

    halves = []
    for rank in (0, 1):
        torch.manual_seed(3)
        halves.append(list(DistributedSamplerWrapper(sampler, num_replicas=2, rank=rank, shuffle=False)))
    assert sorted(halves[0] + halves[1]) == sorted(first) and not set(halves[0]) & set(halves[1])


def test_mask_channels_as_inputs_leave_outside_the_image_missing(tmp_path):
    ds = open_scene(write_tiny_scene(tmp_path / "a.nc", rows=24, cols=24, seed=1))
    arrays = scene_arrays(ds, ["layover", "shadow", "prior_mask"], reference="prior_interpolated")
    outside = ds["layover"].values == MaskCode.OUTSIDE
    assert outside.any() and np.isnan(arrays.inputs[:2, outside]).all()
    np.testing.assert_array_equal(arrays.inputs[0, ~outside], ds["layover"].values[~outside])
    np.testing.assert_array_equal(arrays.missing, outside)


def test_scene_files_expand_folders_and_patterns_and_name_what_is_missing(tmp_path):
    write_tiny_scenes(tmp_path, count=3, rows=8, cols=8)
    every = scene_files(tmp_path, "data.scenes")
    assert [path.name for path in every] == ["s0.nc", "s1.nc", "s2.nc"]
    picked = scene_files([str(tmp_path / "s[02].nc"), tmp_path / "s0.nc"], "data.scenes")
    assert [path.name for path in picked] == ["s0.nc", "s2.nc"]
    with pytest.raises(MissingInputError, match=r"pattern .*matches no scene file"):
        scene_files(str(tmp_path / "*_c5_*.nc"), "data.scenes")
    with pytest.raises(MissingInputError, match="does not exist"):
        scene_files(tmp_path / "absent.nc", "data.scenes")


#: The refinement model's inputs (sarheight/configs/terrain_refine.yaml).
REFINE_CHANNELS = ["coarse_slope_east", "coarse_slope_north", "coarse_curvature", "coarse_factor", "prior_height",
                   "prior_mask", "prior_distance", "sar_ratio", "local_incidence_angle", "look_east", "look_north",
                   "layover", "shadow"]


@pytest.fixture(scope="module")
def physical_scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("physical")
    simulate_tiny_scenes(folder, names=("hills-a", "hills-b", "hills-c"), size=40, relief=900.0)
    return folder


def test_refinement_arrays_are_in_units_of_the_coarse_cell(physical_scenes):
    ds = open_scene(sorted(physical_scenes.glob("hills-a_ascending*.nc"))[0])
    unit = ds.attrs["coarse_cell_m"]
    arrays = scene_arrays(ds, REFINE_CHANNELS, reference="coarse_bicubic", target="height", scale="coarse_cell",
                          score_shadow=True)
    assert arrays.scale == pytest.approx(unit) and unit == pytest.approx(3 * ds.attrs["grid_cell_m"], rel=1e-4)
    truth, reference = ds["height"].values, ds["coarse_bicubic"].values
    np.testing.assert_allclose(arrays.offset + arrays.scale * arrays.target, truth, atol=1e-3)
    known = ds["prior_mask"].values > 0
    index = REFINE_CHANNELS.index
    np.testing.assert_allclose(arrays.inputs[index("prior_height")][known],
                               (ds["prior_height"].values - reference)[known] / unit, rtol=1e-5)
    np.testing.assert_allclose(arrays.inputs[index("prior_distance")], ds["prior_distance"].values / unit, rtol=1e-5)
    # The slopes are not heights: they keep their values.
    assert arrays.inputs[index("coarse_slope_east")].std() > 0.05
    # The ratio is NaN in shadow without making the cell missing: a refinement predicts there.
    shadow = (ds["shadow"].values != MaskCode.NONE) & (ds["shadow"].values != MaskCode.OUTSIDE)
    assert shadow.any() and np.isnan(arrays.inputs[index("sar_ratio")][shadow]).all()
    assert not arrays.missing[shadow].any() and arrays.loss_mask[shadow].all()
    excluded = scene_arrays(ds, REFINE_CHANNELS, reference="coarse_bicubic", target="height", scale="coarse_cell")
    assert not excluded.loss_mask[shadow].any()
    with pytest.raises(InvalidInputError, match="reference"):
        scene_arrays(ds, REFINE_CHANNELS, reference=None, scale="coarse_cell")
    with pytest.raises(InvalidInputError, match="scale"):
        scene_arrays(ds, REFINE_CHANNELS, reference="coarse_bicubic", scale="metres")


def test_refinement_data_module_gives_the_scale_with_every_tile(physical_scenes):
    data = TerrainDataModule(scenes=str(physical_scenes), channels=REFINE_CHANNELS, reference="coarse_bicubic",
                             scale="coarse_cell", score_shadow=True, val_scenes=["hills-b"], test_scenes=["hills-c"],
                             tile=32, tiles_per_epoch=4, batch_size=2)
    data.setup("fit")
    item = data.datasets["train"][0]
    assert item["scale"].shape == (1, 1, 1) and float(item["scale"]) == pytest.approx(data.data[0].scale)
    batch = next(iter(data.train_dataloader()))
    assert batch["scale"].shape == (2, 1, 1, 1)
    # The target statistics are of heights over the coarse cell: a few hundredths.
    mean, std = data.target_statistics
    assert abs(mean) < 0.05 and 0.001 < std < 0.5
    with pytest.raises(InvalidInputError, match=r"data\.scale"):
        TerrainDataModule(scenes=str(physical_scenes), reference=None, scale="coarse_cell")
    with pytest.raises(InvalidInputError, match=r"data\.scale"):
        TerrainDataModule(scenes=str(physical_scenes), scale="feet")


def test_tiles_carry_the_coarse_dem_as_a_second_baseline(physical_scenes):
    """Where the reference refines the coarse DEM already, every tile also carries the
    coarse DEM resampled bilinearly (the plainest baseline), cell for cell; not where the
    reference is that DEM itself."""
    from sarheight.data.terrain import BASELINE

    data = TerrainDataModule(scenes=str(physical_scenes), channels=REFINE_CHANNELS, reference="coarse_bicubic",
                             scale="coarse_cell", val_scenes=["hills-b"], test_scenes=["hills-c"], tile=32,
                             tiles_per_epoch=4, batch_size=2)
    data.setup("fit")
    dataset = data.datasets["val"]
    item = dataset[0]
    scene = dataset.scenes[int(item["scene"])]
    row, col, rows, cols = (int(v) for v in item["window"])
    np.testing.assert_array_equal(item["baseline"][0, :rows, :cols].numpy(),
                                  scene.baseline[row:row + rows, col:col + cols])
    assert torch.isnan(item["baseline"][0, rows:, :]).all()
    ds = open_scene(sorted(physical_scenes.glob("hills-a_ascending*.nc"))[0])
    np.testing.assert_array_equal(scene_arrays(ds, REFINE_CHANNELS, reference="coarse_bicubic", target="height")
                                  .baseline, ds[BASELINE].values.astype(np.float32))
    assert scene_arrays(ds, REFINE_CHANNELS, reference=BASELINE, target="height").baseline is None


def test_refinement_inputs_have_no_unit_of_length(physical_scenes):
    """Terrain k times larger in every direction (cells, heights, distances) gives the
    refinement model the same inputs and target: one model serves every cell size."""
    ds = open_scene(sorted(physical_scenes.glob("hills-b_descending*.nc"))[0]).rio.write_crs("EPSG:32632")
    ds = ds.assign_coords(x=np.arange(ds.sizes["x"]) * 30.0, y=-np.arange(ds.sizes["y"]) * 30.0)
    ds.attrs["coarse_cell_m"] = 90.0
    k = 7.0
    larger = ds.copy(deep=True).assign_coords(x=ds["x"] * k, y=ds["y"] * k)
    for name in ("height", "coarse_bicubic", "coarse_lanczos", "prior_height", "prior_distance"):
        larger[name] = larger[name].copy(data=ds[name].values * k)
    larger.attrs["coarse_cell_m"] = 90.0 * k
    options = {"reference": "coarse_lanczos", "target": "height", "scale": "coarse_cell", "score_shadow": True}
    small, big = (scene_arrays(scene, REFINE_CHANNELS, **options) for scene in (ds, larger))
    np.testing.assert_allclose(big.inputs, small.inputs, rtol=1e-4, atol=1e-5)  # float32 heights
    np.testing.assert_allclose(big.target, small.target, rtol=1e-4, atol=1e-6)
    assert big.scale == pytest.approx(k * small.scale)
