"""Training and prediction: masked losses, metrics by hand, checkpoints that load with
weights_only and carry what prediction needs, the fit/test/predict commands, resuming a
killed run, tiled prediction equal to a single pass, ensembles, and errors before work."""

from __future__ import annotations

import csv
import itertools
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

pytest.importorskip("lightning")

from sarheight.cli import main
from sarheight.data import TERRAIN_CLASSES, TerrainDataModule
from sarheight.data.terrain import DEFAULT_CHANNELS
from sarheight.errors import InvalidInputError, MissingInputError
from sarheight.terrain.files import open_scene
from sarheight.training import HeightMetrics, load_checkpoint, masked_loss, predict_height
from sarheight.training.checkpoints import export_checkpoint
from sarheight.training.predict import blend_window, tile_starts
from tests.support.scenes import fit_tiny_checkpoint, write_tiny_scene, write_tiny_scenes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Four tiny scenes of 64 x 56 cells."""
    folder = tmp_path_factory.mktemp("scenes")
    write_tiny_scenes(folder, count=4, rows=64, cols=56)
    return folder


@pytest.fixture(scope="module")
def checkpoints(scenes, tmp_path_factory):
    """Two checkpoints of the plain U-Net (seeds 0 and 1) and one of other channels."""
    folder = tmp_path_factory.mktemp("checkpoints")
    return {
        "seed0": fit_tiny_checkpoint(scenes, folder / "seed0.ckpt", seed=0),
        "seed1": fit_tiny_checkpoint(scenes, folder / "seed1.ckpt", seed=1),
        "other": fit_tiny_checkpoint(scenes, folder / "other.ckpt", seed=0,
                                     channels=("sar_reconstructed", "local_incidence_angle")),
    }


# Losses and metrics.


@pytest.mark.parametrize("kind", ["l1", "mse", "huber"])
def test_masked_loss_ignores_cells_outside_the_mask(kind):
    generator = torch.Generator().manual_seed(0)
    prediction = torch.randn(2, 1, 8, 8, generator=generator, requires_grad=True)
    target = torch.randn(2, 1, 8, 8, generator=generator)
    mask = torch.rand(2, 1, 8, 8, generator=generator) > 0.3
    loss = masked_loss(prediction, target, mask, kind, delta=0.5)
    reference = {"l1": torch.nn.functional.l1_loss, "mse": torch.nn.functional.mse_loss,
                 "huber": lambda a, b: torch.nn.functional.huber_loss(a, b, delta=0.5)}[kind]
    assert loss.item() == pytest.approx(reference(prediction[mask], target[mask]).item())
    loss.backward()
    assert (prediction.grad[~mask] == 0).all() and (prediction.grad[mask] != 0).any()
    # Shadow and no-data cells (outside the mask) change nothing, even NaN or huge.
    changed = prediction.detach().clone()
    changed[~mask] = float("nan")
    wrong = target.clone()
    wrong[~mask] = 1e6
    assert masked_loss(changed, wrong, mask, kind, delta=0.5).item() == pytest.approx(loss.item())
    empty = masked_loss(prediction, target, torch.zeros_like(mask), kind)
    assert empty.item() == 0 and empty.requires_grad


def test_loss_of_a_terrain_batch_does_not_see_shadow_or_nodata(scenes):
    data = TerrainDataModule(scenes=str(scenes), val_scenes=["s1"], test_scenes=["s2"], tile=32, batch_size=8)
    data.setup("fit")
    batch = next(iter(data.val_dataloader()))
    assert (~batch["mask"]).any()
    prediction = torch.randn_like(batch["target"])
    loss = masked_loss(prediction, batch["target"], batch["mask"], "l1")
    # Cells in shadow or outside the image: whatever is predicted there counts for nothing.
    excluded = torch.zeros_like(batch["mask"])
    for index, item in enumerate(batch["scene"]):
        row, col, rows, cols = batch["window"][index].tolist()
        scene = data.data[int(item)]
        ds = open_scene(scenes / f"{scene.name}.nc")
        shadow = ds["shadow"].values[row:row + rows, col:col + cols]
        layover = ds["layover"].values[row:row + rows, col:col + cols]
        excluded[index, 0, :rows, :cols] = torch.from_numpy((shadow != 0) | (layover == 255))
    assert excluded.any() and not (excluded & batch["mask"]).any()
    prediction[excluded] = 1e5
    assert masked_loss(prediction, batch["target"], batch["mask"], "l1").item() == pytest.approx(loss.item())


def test_height_metrics_by_hand():
    prediction = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 100.0]])[None, None]
    target = torch.tensor([[1.0, 3.0, 5.0], [4.0, 8.0, 0.0]])[None, None]
    mask = torch.tensor([[True, True, True], [True, True, False]])[None, None]
    other = TERRAIN_CLASSES.index("other")
    classes = torch.tensor([[0, 0, 1], [other, other, 1]], dtype=torch.uint8)[None, None]
    metrics = HeightMetrics(TERRAIN_CLASSES)
    # Two batches accumulate as one.
    metrics.update(prediction[..., :1, :], target[..., :1, :], mask[..., :1, :], classes[..., :1, :])
    metrics.update(prediction[..., 1:, :], target[..., 1:, :], mask[..., 1:, :], classes[..., 1:, :])
    values = metrics.compute()
    errors = np.array([0.0, -1.0, -2.0, 0.0, -3.0])
    truth = np.array([1.0, 3.0, 5.0, 4.0, 8.0])
    assert values["rmse"].item() == pytest.approx(np.sqrt(np.mean(errors**2)))
    assert values["mae"].item() == pytest.approx(np.mean(np.abs(errors)))
    assert values["r2"].item() == pytest.approx(1 - np.sum(errors**2) / np.sum((truth - truth.mean()) ** 2))
    assert values["rmse_active_layover"].item() == pytest.approx(np.sqrt((0 + 1) / 2))
    assert values["rmse_passive_layover"].item() == pytest.approx(2.0)  # the masked cell does not count
    assert math.isnan(values["rmse_shadow_adjacent"].item()) and math.isnan(values["rmse_shadow"].item())
    assert values["rmse_other"].item() == pytest.approx(np.sqrt(9 / 2))
    assert values["count"].item() == 5


# Checkpoints.


def test_checkpoint_loads_with_weights_only_and_carries_what_prediction_needs(checkpoints, scenes):
    checkpoint = torch.load(checkpoints["seed0"], weights_only=True)
    stored = checkpoint["sarheight"]
    assert stored["channels"] == list(DEFAULT_CHANNELS)
    assert stored["reference"] == "prior_interpolated" and stored["target"] == "height"
    assert stored["model"] == "unet" and stored["model_config"]["depth"] == 2
    data = TerrainDataModule(scenes=str(scenes), tile=32)
    data.setup("fit")
    mean, std = data.input_statistics
    assert stored["input_mean"] == pytest.approx(mean) and stored["input_std"] == pytest.approx(std)
    assert stored["splits"] == data.split_scenes
    # The model outputs metres: its offset and scale are the training target's statistics.
    state = checkpoint["state_dict"]
    assert state["model.output_offset"].item() == pytest.approx(data.target_statistics[0], rel=1e-5)
    assert state["model.output_scale"].item() == pytest.approx(data.target_statistics[1], rel=1e-5)
    trained = load_checkpoint(checkpoints["seed0"])
    assert trained.channels == tuple(stored["channels"]) and not trained.model.training


def test_not_a_sarheight_checkpoint_is_refused(tmp_path):
    with pytest.raises(MissingInputError):
        load_checkpoint(tmp_path / "missing.ckpt")
    (tmp_path / "text.ckpt").write_text("not a checkpoint")
    with pytest.raises(InvalidInputError, match="not a complete PyTorch checkpoint"):
        load_checkpoint(tmp_path / "text.ckpt")
    torch.save({"state_dict": {}}, tmp_path / "other.ckpt")
    with pytest.raises(InvalidInputError, match="not of sarheight"):
        load_checkpoint(tmp_path / "other.ckpt")
    torch.save({"sarheight": {"channels": []}, "state_dict": {}, "stray": Path("x")}, tmp_path / "code.ckpt")
    with pytest.raises(InvalidInputError, match="beyond tensors and plain values"):
        load_checkpoint(tmp_path / "code.ckpt")
    with pytest.raises(InvalidInputError, match="not of sarheight"):
        export_checkpoint(tmp_path / "other.ckpt", tmp_path / "exported.ckpt")
    assert not (tmp_path / "exported.ckpt").exists()


# Prediction.


def test_tiled_prediction_equals_a_single_pass(tmp_path, scenes):
    # The plain U-Net of depth 2 sees 24 cells each way: with an overlap of 112 a tile's
    # prediction counts only 28 cells or more inside its shared edges, beyond the reach of
    # its zero padding; and tiles start on multiples of 4, the pooling grid of one pass.
    checkpoint = fit_tiny_checkpoint(scenes, tmp_path / "unet.ckpt", seed=3, steps=1)
    scene = write_tiny_scene(tmp_path / "large.nc", rows=320, cols=292, seed=11, priors=200)
    single = predict_height(scene, checkpoint, tile=320, overlap=0, progress=False)["height"].values
    tiled = predict_height(scene, checkpoint, tile=224, overlap=112, progress=False)["height"].values
    finite = np.isfinite(single)
    assert finite.mean() > 0.5 and (np.isfinite(tiled) == finite).all()
    np.testing.assert_allclose(tiled[finite], single[finite], rtol=1e-4, atol=1e-3)
    # Abutting tiles show their seams: the comparison above can fail.
    seams = predict_height(scene, checkpoint, tile=160, overlap=0, progress=False)["height"].values
    assert np.nanmax(np.abs(seams - single)) > 1e-2


def test_blend_weights_sum_to_one_where_neighbours_overlap_by_the_overlap():
    starts = tile_starts(448, 128, 64, 16)
    assert starts[0] == 0 and starts[-1] == 448 - 128 and all(0 < b - a <= 64 for a, b in itertools.pairwise(starts))
    total = np.zeros(448)
    for index, start in enumerate(starts):
        window = blend_window(128, 64, index > 0, index < len(starts) - 1)
        assert (window >= 0).all() and (window <= 1).all()
        total[start:start + 128] += window
    np.testing.assert_allclose(total, 1.0, atol=1e-12)


def test_prediction_on_any_raster_size_keeps_the_grid_and_leaves_missing_inputs_nan(tmp_path, checkpoints):
    path = write_tiny_scene(tmp_path / "odd.nc", rows=75, cols=61, seed=5, crs="EPSG:32633")
    result = predict_height(path, checkpoints["seed0"], tile=32, overlap=16, progress=False)
    scene = open_scene(path)
    assert result["height"].shape == (75, 61) and "height_std" not in result
    np.testing.assert_array_equal(result["x"], scene["x"])
    np.testing.assert_array_equal(result["y"], scene["y"])
    assert result.rio.crs == scene.rio.crs
    missing = ~np.isfinite(scene["sar_reconstructed"].values)
    assert missing.any()
    assert np.isnan(result["height"].values[missing]).all() and np.isfinite(result["height"].values[~missing]).all()


def test_ensemble_spread_is_zero_for_twins_and_positive_across_seeds(scenes, checkpoints):
    scene = scenes / "s0.nc"
    twins = predict_height(scene, [checkpoints["seed0"], checkpoints["seed0"]], tile=32, overlap=16, progress=False)
    alone = predict_height(scene, checkpoints["seed0"], tile=32, overlap=16, progress=False)
    seeds = predict_height(scene, [checkpoints["seed0"], checkpoints["seed1"]], tile=32, overlap=16, progress=False)
    finite = np.isfinite(twins["height"].values)
    assert (twins["height_std"].values[finite] == 0).all()
    np.testing.assert_allclose(twins["height"].values[finite], alone["height"].values[finite], rtol=1e-6)
    assert (seeds["height_std"].values[finite] > 0).mean() > 0.99
    one = alone["height"].values[finite].astype(np.float64)
    other = predict_height(scene, checkpoints["seed1"], tile=32, overlap=16, progress=False)["height"].values
    np.testing.assert_allclose(seeds["height"].values[finite], (one + other[finite]) / 2, rtol=1e-5)
    np.testing.assert_allclose(seeds["height_std"].values[finite], np.abs(one - other[finite]) / np.sqrt(2),
                               rtol=1e-3, atol=1e-4)
    assert seeds.attrs["members"] == 2 and str(checkpoints["seed1"]) in seeds.attrs["checkpoints"]


def test_prediction_errors_come_before_any_tile(tmp_path, scenes, checkpoints):
    lacking = write_tiny_scene(tmp_path / "lacking.nc", rows=32, cols=32, seed=1, drop=("prior_distance",))
    with pytest.raises(InvalidInputError, match=r"scene 'lacking' lacks 'prior_distance'.*seed0\.ckpt.*it has"):
        predict_height(lacking, checkpoints["seed0"], progress=False)
    with pytest.raises(InvalidInputError, match="differ in their inputs"):
        predict_height(scenes / "s0.nc", [checkpoints["seed0"], checkpoints["other"]], progress=False)
    with pytest.raises(InvalidInputError, match="multiple of 4"):
        predict_height(scenes / "s0.nc", checkpoints["seed0"], tile=30, overlap=8, progress=False)
    with pytest.raises(InvalidInputError, match="overlap"):
        predict_height(scenes / "s0.nc", checkpoints["seed0"], tile=32, overlap=20, progress=False)


# The commands.


def _config(path: Path, scenes: Path, runs: Path, every_n_steps: int = 4, model: str = "unet") -> Path:
    path.write_text(f"""
seed_everything: 0
trainer:
  accelerator: cpu
  devices: 1
  max_epochs: 2
  log_every_n_steps: 1
  enable_progress_bar: false
  enable_model_summary: false
  logger:
    class_path: lightning.pytorch.loggers.CSVLogger
    init_args: {{save_dir: {runs}, name: tiny}}
model:
  model: {model}
  model_options: {{base_channels: 4, depth: 2}}
  loss: huber
  huber_delta: 2.0
data:
  class_path: sarheight.data.TerrainDataModule
  init_args:
    scenes: {scenes}
    val_scenes: [s1]
    test_scenes: [s2]
    tile: 32
    tiles_per_epoch: 12
    batch_size: 4
checkpoint:
  dirpath: {runs}/checkpoints
  every_n_train_steps: {every_n_steps}
""")
    return path


def test_fit_test_and_predict_commands(tmp_path, scenes, capsys):
    config = _config(tmp_path / "tiny.yaml", scenes, tmp_path / "runs")
    assert main(["fit", "--config", str(config), "--model.lr", "0.003"]) == 0
    last = tmp_path / "runs" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["global_step"] == 6 and checkpoint["hyper_parameters"]["lr"] == 0.003
    assert [entry["epoch"] for entry in checkpoint["sarheight"]["history"]] == [0, 1]
    log = tmp_path / "runs" / "tiny" / "version_0"
    assert (log / "learning_curve.png").stat().st_size > 0
    with open(log / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert {"train_loss_step", "val_loss", "val_rmse", "val_r2", "val_rmse_active_layover"} <= set(rows[0])
    # The baseline beside the model: the priors-only interpolation of the validation scene.
    ds = open_scene(scenes / "s1.nc")
    error = (ds["prior_interpolated"] - ds["height"]).values[(ds["shadow"].values == 0)
                                                            & (ds["layover"].values != 255)]
    logged = [float(row["val_rmse_reference"]) for row in rows if row["val_rmse_reference"]]
    assert len(logged) == 2 and logged[-1] == pytest.approx(np.sqrt(np.mean(error**2)), rel=1e-5)
    assert not list(last.parent.glob("*.part"))
    capsys.readouterr()
    assert main(["test", "--config", str(config), "--ckpt_path", str(last)]) == 0
    assert "test_rmse_shadow_adjacent" in capsys.readouterr().out
    out = tmp_path / "predicted" / "height.tif"
    quicklook = tmp_path / "predicted" / "height.png"
    assert main(["terrain", "predict", "--ckpt", str(last), "--ckpt", str(last), "--scene", str(scenes / "s2.nc"),
                 "--out", str(out), "--quicklook", str(quicklook), "--tile", "32", "--overlap", "8"]) == 0
    assert "RMSE against the scene's height" in capsys.readouterr().out
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 32632 and src.descriptions == ("height", "height_std") and src.shape == (64, 56)
        ensemble = src.read(1)
    assert quicklook.stat().st_size > 0
    # Exported: only what prediction needs, smaller, the same prediction.
    exported = tmp_path / "shipped" / "small.ckpt"
    assert main(["terrain", "export", "--ckpt", str(last), "--out", str(exported)]) == 0
    assert f"wrote {exported}" in capsys.readouterr().out
    kept = torch.load(exported, weights_only=True)
    assert set(kept) <= {"state_dict", "sarheight", "epoch", "global_step"} and "optimizer_states" in checkpoint
    assert exported.stat().st_size < 0.6 * last.stat().st_size
    assert main(["terrain", "predict", "--ckpt", str(exported), "--scene", str(scenes / "s2.nc"), "--out",
                 str(out), "--tile", "32", "--overlap", "8", "--quiet"]) == 0
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(1), ensemble)


def test_commands_refuse_other_channels_and_bad_configs(tmp_path, scenes, checkpoints, capsys):
    config = _config(tmp_path / "tiny.yaml", scenes, tmp_path / "runs")
    status = main(["validate", "--config", str(config), "--ckpt_path", str(checkpoints["other"])])
    err = capsys.readouterr().err
    assert status == 2 and "error: the checkpoint was trained on the channels" in err and "Traceback" not in err
    missing = tmp_path / "missing"
    missing.mkdir()
    status = main(["fit", "--config", str(config), "--data.scenes", str(missing)])
    assert status == 2 and "no scene file" in capsys.readouterr().err
    # A bad value is one line naming the option, exit 2 (not the usage and every
    # alternative jsonargparse tried).
    assert main(["fit", "--config", str(config), "--model.loss", "cubic"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "loss" in err[0] and "cubic" in err[0]
    with pytest.raises(SystemExit):
        main(["demo", "--no-such-option"])
    assert main(["terrain", "predict", "--ckpt", str(checkpoints["seed0"]), "--scene", str(scenes / "s0.nc"),
                 "--out", str(scenes / "s0.nc")]) == 2
    assert "--scene" in capsys.readouterr().err


@pytest.mark.parametrize(("override", "message"), [
    (["--data.batch_size", "0"], "batch_size"),
    (["--data.tile", "7"], "tile"),
    (["--data.tile", "40000", "--data.batch_size", "64"], "lower data.tile or data.batch_size"),
    (["--trainer.accelerator", "cuda"], "set trainer.accelerator to cpu"),
])
def test_fit_refuses_a_bad_setting_in_one_line(tmp_path, scenes, capsys, override, message):
    if "cuda" in override and torch.cuda.is_available():
        pytest.skip("a CUDA device is here")
    config = _config(tmp_path / "tiny.yaml", scenes, tmp_path / "runs")
    status = main(["fit", "--config", str(config), *override])
    err = capsys.readouterr().err
    assert status == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "runs" / "checkpoints" / "last.ckpt").exists()


def test_fit_refuses_a_checkpoint_folder_it_cannot_write_and_says_where_it_wrote(tmp_path, scenes, capsys):
    config = _config(tmp_path / "tiny.yaml", scenes, tmp_path / "runs")
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(b"PK" + bytes(200))
    assert main(["fit", "--config", str(config), "--ckpt_path", str(cut)]) == 2
    assert "is not a complete PyTorch checkpoint" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    status = main(["fit", "--config", str(config), "--checkpoint.dirpath", str(blocker / "checkpoints")])
    assert status == 2 and "checkpoint.dirpath" in capsys.readouterr().err
    assert main(["fit", "--config", str(config), "--trainer.max_epochs", "1"]) == 0
    assert f"checkpoints: last {tmp_path / 'runs' / 'checkpoints' / 'last.ckpt'}" in capsys.readouterr().out


def test_a_killed_run_resumes_from_its_last_checkpoint(tmp_path, scenes):
    runs = tmp_path / "runs"
    config = _config(tmp_path / "resume.yaml", scenes, runs, every_n_steps=1)
    # One long epoch: the kill falls in its middle.
    long_epoch = ["--data.tiles_per_epoch", "4000", "--trainer.max_epochs", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    command = [sys.executable, "-m", "sarheight", "fit", "--config", str(config)]
    process = subprocess.Popen([*command, *long_epoch], env=env, cwd=tmp_path, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE)
    last = runs / "checkpoints" / "last.ckpt"
    step = 0
    deadline = time.monotonic() + 300
    try:
        while step < 3:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint of step 3 within 300 s"
            if last.exists():
                step = torch.load(last, weights_only=True)["global_step"]
            time.sleep(0.2)
        # A second training into the same folder while this one runs would claim its
        # last.ckpt too: refused, naming the one that holds it.
        second = subprocess.run([*command, *long_epoch], env=env, cwd=tmp_path, capture_output=True, text=True,
                                timeout=300)
        assert second.returncode == 2 and f"another training (process {process.pid} on" in second.stderr, \
            second.stderr[-2000:]
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed_at = torch.load(last, weights_only=True)
    assert killed_at["global_step"] >= 3 and killed_at["epoch"] == 0
    resumed = subprocess.run([*command, *long_epoch, "--ckpt_path", "last",
                              "--trainer.max_steps", str(killed_at["global_step"] + 2)],
                             env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    final = torch.load(last, weights_only=True)
    assert final["global_step"] == killed_at["global_step"] + 2
    # Its epoch line times the resumed part, not the time since the machine booted.
    said = re.search(r"epoch 1/1: (\d+) steps in ([\d.]+) (s|min|h)", resumed.stdout + resumed.stderr)
    assert said is not None and said.group(3) == "s", (resumed.stdout + resumed.stderr)[-2000:]
    # The resumed run counted on from the checkpoint's step, it did not start again.
    logs = sorted((runs / "tiny").glob("version_*"))
    with open(logs[-1] / "metrics.csv", newline="") as file:
        steps = [int(row["step"]) for row in csv.DictReader(file)]
    assert len(logs) == 2 and min(steps) >= killed_at["global_step"]


@pytest.mark.parametrize("name", ["terrain_ask_unet", "terrain_unet"])
def test_shipped_configs_train_and_test(tmp_path, scenes, monkeypatch, name):
    # The configs as shipped (model, loss, schedule, checkpoints), on tiny scenes and tiles.
    monkeypatch.chdir(tmp_path)
    config = str(ROOT / "sarheight" / "configs" / f"{name}.yaml")
    small = ["--data.scenes", str(scenes), "--data.tile", "32", "--data.tiles_per_epoch", "4", "--data.batch_size", "2",
             "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false"]
    assert main(["fit", "--config", config, *small]) == 0
    last = tmp_path / "runs" / name / "checkpoints" / "last.ckpt"
    best = list((tmp_path / "runs" / name / "version_0" / "checkpoints").glob("best-epoch=0-val_rmse=*.ckpt"))
    assert last.exists() and len(best) == 1
    stored = torch.load(last, weights_only=True)["sarheight"]
    assert stored["model"] == name.removeprefix("terrain_") and stored["model_config"]["depth"] == 4
    assert main(["test", "--config", config, *small, "--ckpt_path", "last"]) == 0
