"""Building heights end to end on tiny cities: ``sarheight fit`` and ``test`` with
sarheight/configs/buildings_mbhr.yaml, resuming, checkpoints that load with weights_only=True,
the footprint IoU, and prediction of an odd-size city to a GeoTIFF."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch

pytest.importorskip("lightning")

from sarheight.cli import main
from sarheight.data import read_city
from sarheight.errors import InvalidInputError, MissingInputError
from sarheight.training import HeightMetrics, PixelRegression, load_checkpoint, predict_buildings
from tests.support.scenes import write_tiny_cities, write_tiny_city

CONFIG = Path(__file__).resolve().parents[2] / "sarheight" / "configs" / "buildings_mbhr.yaml"


def arguments(root: Path, runs: Path, steps: int) -> list[str]:
    """The config with sizes small enough for a test: one residual stage, tiles of 16 cells."""
    return ["--config", str(CONFIG), "--data.root", str(root), "--data.val_cities", "[city1]",
            "--data.test_cities", "[city2]", "--data.tile", "16", "--data.tiles_per_epoch", "4",
            "--data.batch_size", "2", "--model.model_options", "{fusion: sum, stages: 1, decoder_channels: [8, 8]}",
            "--trainer.max_steps", str(steps), "--trainer.accelerator", "cpu", "--trainer.max_time", "null",
            "--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.logger.init_args.save_dir", str(runs), "--checkpoint.dirpath", str(runs / "checkpoints")]


def test_fit_test_resume_and_predict(tmp_path, capsys):
    root = tmp_path / "cities"
    write_tiny_cities(root)
    runs = tmp_path / "runs"
    assert main(["fit", *arguments(root, runs, 2)]) == 0
    last = runs / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    stored = checkpoint["sarheight"]
    assert checkpoint["global_step"] == 2
    assert stored["input_groups"] == {"s1": 2, "s2": 10} and stored["channels"][:3] == ["VV", "VH", "B2"]
    assert len(stored["input_mean"]) == 12 and stored["model"] == "mbhr_net"
    assert stored["model_config"]["stages"] == 1 and stored["splits"]["train"] == ["city0"]
    assert stored["class_names"] == ["no_building", "low_rise", "mid_rise", "high_rise"]
    with open(runs / "buildings_mbhr" / "version_0" / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert {"val_loss", "val_rmse", "val_r2", "val_iou", "val_rmse_high_rise"} <= set(rows[0])
    capsys.readouterr()
    assert main(["test", *arguments(root, runs, 2), "--ckpt_path", str(last)]) == 0
    assert "test_iou" in capsys.readouterr().out
    # Resumed from last.ckpt: two more steps.
    assert main(["fit", *arguments(root, runs, 4), "--ckpt_path", "last"]) == 0
    assert torch.load(last, weights_only=True)["global_step"] == 4

    member = load_checkpoint(last)
    assert member.input_groups == {"s1": 2, "s2": 10}
    odd = write_tiny_city(tmp_path / "odd", rows=37, cols=29, months=("202301", "202302"), seed=7)
    (odd / "height.tif").unlink()  # prediction needs no truth
    out = tmp_path / "predicted" / "odd.tif"
    result = predict_buildings(odd, [last, last], tile=16, overlap=4, out=out, progress=False)
    assert result["height"].shape == (37, 29) and np.isfinite(result["height"].values).all()
    assert float(result["height_std"].max()) == 0.0  # the same checkpoint twice
    assert result.attrs["months"] == "202301, 202302"
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 32633 and src.descriptions == ("height", "height_std") and src.shape == (37, 29)
        assert src.transform.c == 400_000.0 + 7000 and src.transform.a == 10.0
    with pytest.raises(InvalidInputError, match="multiple of 4"):
        predict_buildings(odd, last, tile=18, overlap=4, progress=False)
    with pytest.raises(MissingInputError, match="does not exist"):
        predict_buildings(tmp_path / "nowhere", last, progress=False)


def test_footprint_iou_and_two_input_module():
    metrics = HeightMetrics(footprint_threshold=1.0)
    prediction = torch.tensor([[0.0, 2.0, 5.0, 0.5]])
    target = torch.tensor([[0.0, 3.0, 0.0, 4.0]])
    metrics.update(prediction, target, torch.ones_like(target, dtype=torch.bool))
    assert float(metrics.compute()["iou"]) == pytest.approx(1 / 3)  # one shared footprint of three
    module = PixelRegression(model="mbhr_net", model_options={"stages": 1, "decoder_channels": [8, 8]},
                             in_channels={"s1": 2, "s2": 10}, loss="mbhr")
    assert module.input_mean.shape == (12,)
    out = module(torch.randn(1, 2, 16, 16), torch.randn(1, 10, 16, 16))
    assert out.shape == (1, 1, 16, 16)
    with pytest.raises(InvalidInputError, match="s1_channels"):
        PixelRegression(model="mbhr_net", model_options={"s1_channels": 2}, in_channels={"s1": 2, "s2": 10})
    with pytest.raises(InvalidInputError, match=r"model\.loss"):
        PixelRegression(model="mbhr_net", in_channels={"s1": 2, "s2": 10}, loss="cosine")


@pytest.mark.parametrize("sensor, channels", [("s1", ["VV", "VH"]), ("s2", None)])
def test_a_single_sensor_model_trains_and_predicts(tmp_path, sensor, channels):
    root = tmp_path / "cities"
    write_tiny_cities(root)
    runs = tmp_path / "runs"
    assert main(["fit", *arguments(root, runs, 2), "--data.sensors", f"[{sensor}]"]) == 0
    last = runs / "checkpoints" / "last.ckpt"
    stored = torch.load(last, weights_only=True)["sarheight"]
    other = "s2" if sensor == "s1" else "s1"
    assert stored["input_groups"] == {"s1": 2 if sensor == "s1" else 0, "s2": 10 if sensor == "s2" else 0}
    assert len(stored["input_mean"]) == stored["input_groups"][sensor]
    if channels:
        assert stored["channels"] == channels
    state = torch.load(last, weights_only=True)["state_dict"]
    assert not any(key.startswith(f"model.encoder_{other}") for key in state)
    result = predict_buildings(root / "city2", last, tile=16, overlap=4, progress=False)
    assert np.isfinite(result["height"].values).all()
    with pytest.raises(InvalidInputError, match="differ"):
        both = runs.parent / "both"
        assert main(["fit", *arguments(root, both, 1)]) == 0
        predict_buildings(root / "city2", [last, both / "checkpoints" / "last.ckpt"], tile=16, overlap=4,
                          progress=False)


def test_the_buildings_command_predicts_compares_and_exports(tmp_path, capsys):
    root = tmp_path / "cities"
    write_tiny_cities(root)
    runs = tmp_path / "runs"
    assert main(["fit", *arguments(root, runs, 1)]) == 0
    last = runs / "checkpoints" / "last.ckpt"
    out, quicklook = tmp_path / "city2.tif", tmp_path / "city2.png"
    capsys.readouterr()
    assert main(["buildings", "predict", "--ckpt", str(last), "--city", str(root / "city2"), "--out", str(out),
                 "--quicklook", str(quicklook), "--tile", "16", "--overlap", "4", "--quiet"]) == 0
    assert out.is_file() and quicklook.stat().st_size > 10_000 and capsys.readouterr().out == ""
    assert main(["buildings", "predict", "--ckpt", str(last), "--city", str(root / "city2"), "--out", str(out),
                 "--tile", "16", "--overlap", "4"]) == 0
    assert "RMSE against the city's height.tif" in capsys.readouterr().out
    small = tmp_path / "small.ckpt"
    assert main(["buildings", "export", "--ckpt", str(last), "--out", str(small), "--quiet"]) == 0
    assert small.stat().st_size < last.stat().st_size
    # A bad tile is one line in the command's words, before any work.
    assert main(["buildings", "predict", "--ckpt", str(small), "--city", str(root / "city2"), "--out",
                 str(tmp_path / "bad.tif"), "--tile", "18", "--overlap", "4"]) == 2
    assert "multiple of" in capsys.readouterr().err and not (tmp_path / "bad.tif").exists()


def test_the_comparison_scores_every_method_on_the_same_cells(tmp_path):
    from sarheight.studies.buildings import MEAN_BASELINE, run_building_comparison, score_heights

    root = tmp_path / "cities"
    write_tiny_cities(root)
    out = tmp_path / "comparison"
    options = {"test_cities": ["city2"], "val_cities": ["city1"], "seeds": 2, "max_epochs": 1, "tiles_per_epoch": 4,
               "batch_size": 2, "tile": 16, "stages": 1, "decoder_channels": (8, 8), "accelerator": "cpu",
               "progress": False}
    results = run_building_comparison(root, out, **options)
    assert results["train_cities"] == ["city0"] and set(results["networks"]) == {"mbhr_net", "s1_only", "s2_only"}
    for entry in results["networks"].values():
        assert len(entry["runs"]) == 2 and entry["mean"]["rmse"] > 0 and entry["std"]["rmse"] >= 0
    baseline = results["baselines"][MEAN_BASELINE]
    truth = read_city(root / "city0").height
    assert baseline["height_m"] == pytest.approx(float(np.nanmean(truth)), rel=1e-6)
    assert (out / "comparison.md").read_text().count("±") >= 3 * 8 and (out / "comparison.png").stat().st_size > 0
    # Finished runs are read back, not trained again.
    before = (out / "runs" / "s1_only" / "seed1" / "last.ckpt").stat().st_mtime_ns
    again = run_building_comparison(root, out, **options)
    assert again["networks"]["s1_only"]["runs"] == results["networks"]["s1_only"]["runs"]
    assert (out / "runs" / "s1_only" / "seed1" / "last.ckpt").stat().st_mtime_ns == before
    with pytest.raises(InvalidInputError, match="unknown"):
        run_building_comparison(root, out, **{**options, "test_cities": ["atlantis"]})
    # The scores by hand: one map, a perfect prediction but one cell.
    height = np.array([[0.0, 5.0], [20.0, 40.0]])
    predicted = height.copy()
    predicted[1, 1] = 36.0
    scores = score_heights([predicted], [height], [np.ones((2, 2), bool)])
    assert scores["rmse"] == pytest.approx(2.0) and scores["iou"] == 1.0 and scores["rmse_high_rise"] == 4.0
    assert scores["r2"] == pytest.approx(1 - 16 / np.sum((height - height.mean()) ** 2))


def test_the_cities_command_writes_city_folders(tmp_path):
    assert main(["buildings", "cities", "--out", str(tmp_path / "cities"), "--count", "2", "--size", "24",
                 "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "cities").iterdir()) == ["city_000", "city_001"]
    city = read_city(tmp_path / "cities" / "city_001")
    assert len(city.months) == 12 and city.shape == (24, 24) and np.nanmax(city.height) > 0
