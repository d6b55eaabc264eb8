"""The refinement study on tiny simulated scenes: the networks derive from the shipped
configuration, every method is scored on the same cells per DEM, factor, looks and ground,
the run resumes, the tables and figure are written; the one scorer of the studies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("lightning")

from sarheight.cli import main
from sarheight.data.terrain import TERRAIN_CLASSES
from sarheight.errors import InvalidInputError
from sarheight.studies.refinement import (
    BASELINES,
    SAR_CHANNELS,
    networks,
    read_config,
    run_refinement_study,
)
from sarheight.studies.scoring import MapScores
from tests.helpers import simulate_tiny_scenes

ROOT = Path(__file__).resolve().parents[1]


def test_map_scores_by_hand():
    prediction = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 100.0]])
    truth = np.array([[1.0, 3.0, 5.0], [4.0, 8.0, np.nan]])
    mask = np.ones((2, 3), dtype=bool)
    classes = np.array([[0, 0, 1], [4, 4, 1]])
    scores = MapScores(TERRAIN_CLASSES, groups={"layover": ("active_layover", "passive_layover")})
    scores.add(prediction, truth, mask, classes)
    values = scores.compute()
    errors = np.array([0.0, -1.0, -2.0, 0.0, -3.0])  # the NaN truth does not count
    assert values["rmse"] == pytest.approx(np.sqrt(np.mean(errors**2))) and values["count"] == 5
    assert values["rmse_active_layover"] == pytest.approx(np.sqrt(0.5))
    assert values["rmse_layover"] == pytest.approx(np.sqrt(5 / 3)) and values["count_layover"] == 3
    assert np.isnan(values["rmse_shadow"]) and values["count_shadow"] == 0
    with pytest.raises(InvalidInputError, match="not finite"):
        scores.add(np.full((2, 3), np.nan), truth, mask, classes)
    with pytest.raises(InvalidInputError, match="groups"):
        MapScores(TERRAIN_CLASSES, groups={"x": ("nowhere",)})


def test_the_networks_derive_from_the_shipped_configuration():
    config = read_config(ROOT / "configs" / "terrain_refine.yaml")
    control = read_config(ROOT / "configs" / "terrain_refine_nosar.yaml")
    found = {n.name: n for n in networks(config["data"]["channels"], config["data"]["reference"],
                                         config["data"]["scale"])}
    # The control configuration is the SAR one without its SAR-derived channels.
    assert list(found["nosar"].channels) == control["data"]["channels"]
    assert not set(found["nosar"].channels) & set(SAR_CHANNELS)
    assert {k: v for k, v in control["model"].items()} == config["model"]
    assert "sar_ratio_geocoded" in found["sar_geocoded"].channels and "sar_ratio" not in found["sar_geocoded"].channels
    assert found["both_passes"].channels[:len(found["sar"].channels)] == found["sar"].channels
    assert found["priors_only_network"].reference == "prior_interpolated"
    with pytest.raises(InvalidInputError, match="sar_ratio"):
        networks(["coarse_slope_east"], "coarse_bicubic", "coarse_cell")


@pytest.fixture(scope="module")
def study_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    simulate_tiny_scenes(root / "train", names=("hills-a", "hills-b"), size=40)
    simulate_tiny_scenes(root / "test", names=("hills-t",), size=40, passes=("ascending",), coarse_factors=(3, 5),
                         looks=(4.4, 44.0), land_cover_db=(0.0, 3.0))
    config = yaml.safe_load((ROOT / "configs" / "terrain_refine.yaml").read_text())
    config["model"]["model_options"] = {"base_channels": 4, "depth": 2}
    config["trainer"]["max_epochs"] = 1
    config["data"]["init_args"].update(tile=32, tiles_per_epoch=4, batch_size=2, val_scenes=["hills-b"])
    (root / "tiny.yaml").write_text(yaml.safe_dump(config))
    return root


def test_study_scores_every_method_on_every_held_out_group_and_resumes(study_inputs, tmp_path):
    root = study_inputs
    options = {"config": root / "tiny.yaml", "seeds": 2, "methods": ("sar", "nosar"), "progress": False}
    results = run_refinement_study(root / "train", root / "test", tmp_path, **options)
    assert results["test_dems"] == ["hills-t"] and results["train_dems"] == ["hills-a", "hills-b"]
    # Two factors x two looks x two grounds, one DEM.
    assert len(results["rows"]) == 8 and len(results["summary"]) == 8
    row = results["rows"][0]
    assert set(row["methods"]) == {*BASELINES, "sar", "nosar"}
    for method, figures in row["methods"].items():
        assert np.isfinite(figures["mean"]["overall"]), method
    assert row["cells"]["overall"] > 0 and row["cells"]["overall"] >= row["cells"]["layover"] > 0
    # Every method is scored on the same cells of every scene.
    baselines = json.loads((tmp_path / "scores" / "baselines.json").read_text())
    for path in (tmp_path / "scores").glob("*_seed*.json"):
        for scene, figures in json.loads(path.read_text()).items():
            assert figures["count_overall"] == baselines[scene]["coarse_bilinear"]["count_overall"], (path, scene)
    assert row["methods"]["sar"]["runs"] == 2 and row["methods"]["sar"]["std"]["overall"] >= 0
    assert row["best_coarse"] in ("coarse_bilinear", "coarse_bicubic", "coarse_lanczos")
    assert set(row["reductions"]["sar"]) == {"vs_best_coarse", "vs_bicubic", "vs_nosar", "vs_nosar_layover"}
    # The no-SAR network runs once per distinct input: the scenes of one factor share them.
    for name in ("refinement.md", "refinement.json", "refinement.png"):
        assert (tmp_path / name).stat().st_size > 0
    table = (tmp_path / "refinement.md").read_text()
    assert "no-SAR network (control)" in table and "clinometry" in table and "upper bound" in table
    stamps = {p: p.stat().st_mtime_ns for p in [*tmp_path.glob("runs/**/last.ckpt"), *tmp_path.glob("scores/*")]}
    assert len(list(tmp_path.glob("runs/**/last.ckpt"))) == 4
    again = run_refinement_study(root / "train", root / "test", tmp_path, **options)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((tmp_path / "refinement.json").read_text())["rows"] == json.loads(json.dumps(again["rows"]))


def test_study_refuses_a_held_out_dem_among_the_training_scenes(study_inputs, tmp_path):
    root = study_inputs
    with pytest.raises(InvalidInputError, match="hold whole DEMs out"):
        run_refinement_study(root / "train", root / "train", tmp_path, config=root / "tiny.yaml", progress=False)
    with pytest.raises(InvalidInputError, match="unknown methods"):
        run_refinement_study(root / "train", root / "test", tmp_path, config=root / "tiny.yaml", methods=("cnn",),
                             progress=False)
    with pytest.raises(InvalidInputError, match="seeds"):
        run_refinement_study(root / "train", root / "test", tmp_path, config=root / "tiny.yaml", seeds=0,
                             progress=False)


def test_the_study_command(study_inputs, tmp_path, capsys):
    root = study_inputs
    out = tmp_path / "out"
    arguments = ["terrain", "ablate", "--task", "refine", "--scenes", str(root / "train"), "--test-scenes",
                 str(root / "test"), "--config", str(root / "tiny.yaml"), "--seeds", "1", "--method", "nosar",
                 "--out", str(out)]
    assert main(arguments) == 0
    assert "table in" in capsys.readouterr().out and (out / "refinement.md").exists()
    assert main([*arguments[:-2], "--out", str(tmp_path / "x"), "--tile", "64"]) == 2
    assert "belong to --task ablation" in capsys.readouterr().err
    assert main(["terrain", "ablate", "--task", "refine", "--scenes", str(root / "train"), "--out", str(out)]) == 2
    assert main(["terrain", "ablate", "--scenes", str(root / "train"), "--out", str(out)]) == 2
