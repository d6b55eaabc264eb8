"""The stack network on terrain scenes: the data module's stacks (channels of each date,
statistics shared by the dates), and one network trained on scenes of one image and of
both passes x several dates, predicting on either."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from sarheight.data import TerrainDataModule
from sarheight.data.terrain import stack_channels
from sarheight.errors import InvalidInputError
from sarheight.terrain.files import open_scene
from sarheight.terrain.scene_options import Execution
from sarheight.training.calibration import calibrate_checkpoint
from sarheight.training.predict import predict_height
from sarheight.training.trained import load_checkpoint
from tests.support.scenes import fit_tiny_checkpoint, simulate_tiny_scenes

#: No progress bars in the tests.
QUIET = Execution(progress=False)

STATIC = ("coarse_slope_east", "coarse_slope_north", "prior_mask", "prior_distance", "local_incidence_angle")
STACKS = {"dates": 2, "passes": 2, "date_channels": ["sar_ratio", "local_incidence_angle"]}
DATA = {"reference": "coarse_refined", "scale": "coarse_cell", "score_shadow": True, "val_scenes": ["hills-b"],
        "test_scenes": ["hills-c"], **STACKS}
MODEL = {"passes": 2, "dates": 2, "date_channels": 3, "date_features": 4}


def test_stack_channels_pass_by_pass_and_date_by_date():
    assert stack_channels(2, 2, ["sar_ratio"]) == ["sar_present@0", "sar_ratio@0", "sar_present@1", "sar_ratio@1",
                                                   "other_sar_present@0", "other_sar_ratio@0", "other_sar_present@1",
                                                   "other_sar_ratio@1"]
    assert stack_channels(1, 1, ["sar_ratio", "local_incidence_angle"]) == [
        "sar_present@0", "sar_ratio@0", "local_incidence_angle@0"]
    assert stack_channels(0, 1, []) == []


@pytest.mark.parametrize(("dates", "passes", "channels", "match"), [
    (-1, 1, ["sar_ratio"], "data.dates"), (2, 3, ["sar_ratio"], "data.passes"), (2, 1, [], "date_channels"),
    (2, 1, ["other_sar_ratio"], "own pass"), (0, 1, ["sar_ratio"], "without data.dates"),
    (2, 1, ["sar_ratio@0"], "date_channels")])
def test_bad_stacks_are_refused(dates, passes, channels, match):
    with pytest.raises(InvalidInputError, match=match):
        stack_channels(dates, passes, channels)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Three tiny DEMs, each as scenes of one image of one pass and of both passes x 2
    dates, built with the inversion."""
    folder = tmp_path_factory.mktemp("stack_scenes") / "scenes"
    for dates, opposite in ((1, False), (2, True)):
        simulate_tiny_scenes(folder, names=("hills-a", "hills-b", "hills-c"), size=40, passes=("ascending",),
                             dates=(dates,), opposite_passes=(opposite,), inversion=True)
    return folder


def test_the_data_module_reads_the_stacks(scenes):
    data = TerrainDataModule(scenes=str(scenes), channels=list(STATIC), tile=32, **DATA)
    assert data.date_layout == {"passes": 2, "dates": 2, "date_channels": 3}
    assert data.in_channels == len(STATIC) + 2 * 2 * 3
    assert data.channels[len(STATIC):][:3] == ["sar_present@0", "sar_ratio@0", "local_incidence_angle@0"]
    data.setup("fit")
    means, stds = data.input_statistics
    by_name = dict(zip(data.channels, zip(means, stds, strict=True), strict=True))
    # The dates of a channel share their statistics; presence flags reach the model as 0 or 1.
    assert by_name["sar_ratio@0"] == by_name["sar_ratio@1"]
    assert by_name["other_sar_ratio@0"] == by_name["other_sar_ratio@1"]
    assert by_name["other_sar_ratio@0"] != by_name["sar_ratio@0"]
    assert by_name["sar_present@1"] == (0.0, 1.0) and by_name["other_sar_present@0"] == (0.0, 1.0)
    # A date's channel among the static ones is refused: the stacks are given as stacks.
    with pytest.raises(InvalidInputError, match=r"give the stacks with data\.dates"):
        TerrainDataModule(scenes=str(scenes), channels=[*STATIC, "sar_ratio@0"])


@pytest.fixture(scope="module")
def stack_checkpoint(scenes, tmp_path_factory):
    """A tiny stack network (with its spread head) trained on the scenes."""
    return fit_tiny_checkpoint(scenes, tmp_path_factory.mktemp("stack_checkpoint") / "stack.ckpt",
                               model="ask_unet_stack", channels=STATIC, data_options=DATA, uncertainty=True, **MODEL)


def test_one_network_for_one_image_and_for_stacks(scenes, stack_checkpoint, tmp_path):
    # (Calibrated below: a copy, the fixture's stays as trained.)
    checkpoint = Path(shutil.copy(stack_checkpoint, tmp_path / "stack.ckpt"))
    member = load_checkpoint(checkpoint)
    assert member.model_name == "ask_unet_stack" and member.model_config["dates"] == 2
    files = sorted(scenes.glob("hills-c_*.nc"))
    one = next(path for path in files if "_onepass" in path.stem and "_dates" not in path.stem)
    both = next(path for path in files if "_onepass" not in path.stem and "_dates2" in path.stem)
    for path in (one, both):
        scene = open_scene(path)
        out = predict_height(scene, [checkpoint], progress=False)
        assert np.isfinite(out["height"].values).mean() > 0.9, path.stem
        assert np.abs(out["height"].values - scene["coarse_refined"].values)[np.isfinite(out["height"].values)].max() \
            < 500
    # Both are read: the stack's prediction is not the one image's.
    first, second = (predict_height(open_scene(path), [checkpoint], progress=False)["height"].values
                     for path in (one, both))
    assert not np.allclose(first, second, equal_nan=True)
    figures = calibrate_checkpoint(checkpoint, [one, both])
    assert len(figures["choice"]) == 4


def test_the_model_and_the_data_must_agree_on_the_stacks(scenes, tmp_path):
    with pytest.raises(InvalidInputError, match="data module gives stacks"):
        fit_tiny_checkpoint(scenes, tmp_path / "a.ckpt", model="unet", channels=STATIC, data_options=DATA)
    with pytest.raises(InvalidInputError, match="gives none"):
        fit_tiny_checkpoint(scenes, tmp_path / "b.ckpt", model="ask_unet_stack", channels=STATIC,
                            data_options={key: value for key, value in DATA.items() if key not in STACKS},
                            **{**MODEL, "dates": 1, "passes": 1})
    with pytest.raises(InvalidInputError, match="the data's dates"):
        fit_tiny_checkpoint(scenes, tmp_path / "c.ckpt", model="ask_unet_stack", channels=STATIC, data_options=DATA,
                            **{**MODEL, "date_channels": 2, "passes": 1, "dates": 6})


def test_refine_dem_picks_the_packaged_network_by_what_it_is_given(monkeypatch):
    from sarheight import sample_data
    from sarheight.dem import open_dem
    from sarheight.raster import cell_size_m
    from sarheight.refinement import DEFAULT_METHODS, refine_dem
    from sarheight.simulate import simulate_sar
    from sarheight.terrain.geometry import scene_geometry
    from sarheight.terrain.grid import block_mean
    from tests.support.scenes import rough_dem

    # As shipped: the stack network for several images, and for one image the kind chosen
    # on the validation DEMs.
    stack = sample_data.terrain_network("stack")
    assert stack is not None and stack.name == "terrain_stack_demo.ckpt"
    one_kind = sample_data.ONE_IMAGE_NETWORK
    assert sample_data.packaged_terrain_network(1) == (one_kind, sample_data.terrain_network(one_kind))
    assert sample_data.packaged_terrain_network(4) == ("stack", stack)
    with pytest.raises(InvalidInputError, match="kinds are one_image, stack"):
        sample_data.terrain_network("three_passes")
    fine = rough_dem(seed=41, rows=36, cols=36, relief=300.0)
    coarse = open_dem(block_mean(fine, 3))
    geometry = scene_geometry(fine, "ascending")
    dates = [simulate_sar(fine, geometry, seed=seed) for seed in (1, 2)]
    spacing = float(np.sqrt(np.prod(cell_size_m(fine))))
    several, scene = refine_dem(coarse, dates, spacing_m=spacing, method="network", geometry=geometry, execution=QUIET)
    assert several.attrs["packaged_network"] == "stack" and scene["sar_dates"].sizes["date"] == 2
    assert np.isfinite(several["height"].values).all() and "inverted" in scene
    one, _ = refine_dem(coarse, dates[0], spacing_m=spacing, method="network", geometry=geometry, execution=QUIET)
    assert one.attrs["packaged_network"] == one_kind
    # No method named: the one of the lowest RMSE on the validation DEMs for what is given.
    chosen, _ = refine_dem(coarse, dates, spacing_m=spacing, geometry=geometry, execution=QUIET)
    assert chosen.attrs["method"] == DEFAULT_METHODS["one_pass_dates"]
    assert chosen.attrs["method_chosen"] == "the best on the validation DEMs for one pass of several dates"
    # Where the stack network does not ship, one image or several go to the one-image network.
    monkeypatch.setattr(sample_data, "terrain_network", lambda kind: None)
    for images in (1, 4):
        assert sample_data.packaged_terrain_network(images) == ("one_image", sample_data.terrain_demo_checkpoint())


def test_refine_dem_gives_a_stack_network_every_date(stack_checkpoint):
    from sarheight.dem import open_dem
    from sarheight.raster import cell_size_m
    from sarheight.refinement import refine_dem
    from sarheight.simulate import simulate_sar
    from sarheight.terrain.geometry import scene_geometry
    from sarheight.terrain.grid import block_mean
    from tests.support.scenes import rough_dem

    checkpoint = stack_checkpoint
    fine = rough_dem(seed=40, rows=36, cols=36, relief=300.0)
    coarse = open_dem(block_mean(fine, 3))
    ascending, descending = (scene_geometry(fine, direction) for direction in ("ascending", "descending"))
    dates = [simulate_sar(fine, ascending, seed=seed) for seed in (1, 2)]
    opposite = [simulate_sar(fine, descending, seed=seed) for seed in (3, 4)]
    spacing = float(np.sqrt(np.prod(cell_size_m(fine))))
    one, _ = refine_dem(coarse, dates[0], [checkpoint], spacing_m=spacing, geometry=ascending, execution=QUIET)
    both, scene = refine_dem(coarse, [*dates, *opposite], [checkpoint], spacing_m=spacing,
                             geometry=[ascending] * 2 + [descending] * 2, execution=QUIET)
    assert scene["sar_dates"].sizes["date"] == 2 and scene["other_sar_dates"].sizes["date"] == 2
    assert np.isfinite(one["height"].values).all() and np.isfinite(both["height"].values).all()
    assert not np.allclose(one["height"].values, both["height"].values)


@pytest.mark.parametrize("name", ["terrain_stack", "terrain_stack_noimage"])
def test_the_gpu_config_is_the_cpu_one_larger(scenes, name):
    from sarheight.training.configured import configured_run

    folder = Path(__file__).resolve().parents[2] / "sarheight" / "configs"
    cpu, gpu = (configured_run(folder / f"{config}.yaml", ["--data.scenes", str(scenes)])
                for config in (name, f"{name}_gpu"))
    assert cpu.datamodule.channels == gpu.datamodule.channels
    assert gpu.datamodule.date_layout == cpu.datamodule.date_layout
    larger = {"base_channels": 32, **({"date_features": 32} if "date_features" in cpu.model.model.config else {})}
    assert gpu.model.model.config == {**cpu.model.model.config, **larger}
    assert gpu.trainer_options["max_time"] == "00:00:05:00" and cpu.trainer_options["max_time"] == "00:00:15:00"


@pytest.mark.parametrize("name", ["terrain_stack", "terrain_stack_noimage"])
def test_shipped_stack_configs_train(scenes, tmp_path, monkeypatch, name):
    import torch

    from sarheight.cli import main

    monkeypatch.chdir(tmp_path)
    config = str(Path(__file__).resolve().parents[2] / "sarheight" / "configs" / f"{name}.yaml")
    small = ["--data.scenes", str(scenes), "--data.val_scenes", "[hills-b]", "--data.test_scenes", "[hills-c]",
             "--data.tile", "32", "--data.tiles_per_epoch", "4", "--data.batch_size", "2", "--data.num_workers", "0",
             "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]
    assert main(["fit", "--config", config, *small]) == 0
    stored = torch.load(tmp_path / "runs" / name / "checkpoints" / "last.ckpt", weights_only=True)["sarheight"]
    image = ("clinometry", "local_incidence_angle", "sar_present@0")
    assert all((channel in stored["channels"]) == (name != "terrain_stack_noimage") for channel in image)
    # The network corrects the inversion; its control, without any image, back-projection with the kriged priors.
    assert stored["calibration"]["choice"] and stored["reference"] == {
        "terrain_stack": "inverted_filled", "terrain_stack_noimage": "coarse_refined"}[name]


def test_a_network_corrects_the_inversion_and_says_how_much_is_its_own(scenes, tmp_path):
    import torch

    from sarheight.data.terrain import scene_arrays
    from sarheight.dem import open_dem
    from sarheight.errors import PlausibilityWarning
    from sarheight.raster import cell_size_m
    from sarheight.refinement import refine_dem
    from sarheight.simulate import simulate_sar
    from sarheight.terrain.geometry import scene_geometry
    from sarheight.terrain.grid import block_mean
    from sarheight.training.checkpoints import CHECKPOINT_KEY, read_checkpoint
    from tests.support.scenes import rough_dem

    checkpoint = fit_tiny_checkpoint(scenes, tmp_path / "inversion.ckpt", model="ask_unet_stack",
                                     channels=(*STATIC, "inverted"),
                                     data_options={**DATA, "reference": "inverted_filled"}, uncertainty=True, **MODEL)
    assert load_checkpoint(checkpoint).reference == "inverted_filled"
    scene = open_scene(next(path for path in sorted(scenes.glob("hills-c_*.nc")) if "_dates2" in path.stem))
    # The reference is the inversion's map, back-projection with the kriged priors where it has none.
    inverted = scene["inverted"].values
    arrays = scene_arrays(scene, STATIC, reference="inverted_filled")
    assert np.array_equal(arrays.offset, np.where(np.isfinite(inverted), inverted, scene["coarse_refined"].values)
                          .astype(np.float32))
    # Its calibration never offers the inversion it corrects (keep 0 is the inversion already).
    figures = calibrate_checkpoint(checkpoint, [scene])
    assert "inverted" not in figures["rmse_alternatives"] and 0.0 <= figures["network_share"] <= 1.0
    assert predict_height(scene, [checkpoint], progress=False).attrs["network_share"] == pytest.approx(
        figures["network_share"], abs=0.35)
    # A calibration that keeps none of the network's correction hands the inversion on: said, and warned of.
    stored = read_checkpoint(checkpoint)
    stored[CHECKPOINT_KEY]["calibration"] = {**figures, "keep": [0.0] * 4, "choice": ["network"] * 4}
    torch.save(stored, checkpoint)
    out = predict_height(scene, [checkpoint], progress=False)
    assert out.attrs["network_share"] == 0.0
    predicted = np.isfinite(out["height"].values)
    np.testing.assert_allclose(out["height"].values[predicted], arrays.offset[predicted], atol=1e-3)
    fine = rough_dem(seed=42, rows=36, cols=36, relief=300.0)
    geometry = scene_geometry(fine, "ascending")
    with pytest.warns(PlausibilityWarning, match="own correction in 0% of the cells"):
        refined, refined_scene = refine_dem(open_dem(block_mean(fine, 3)), simulate_sar(fine, geometry, seed=1),
                                            [checkpoint], spacing_m=float(np.sqrt(np.prod(cell_size_m(fine)))),
                                            geometry=geometry, execution=QUIET)
    assert "inverted" in refined_scene and refined.attrs["network_share"] == 0.0
