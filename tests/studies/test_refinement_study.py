"""The refinement study on tiny simulated scenes (realistic coarse DEMs, instrument priors,
grounds of land cover that follows the terrain): the networks derive from the shipped
configuration through the reader of ``sarheight fit``, every method is scored on the same
cells per DEM, factor, looks and ground against the best non-learned method, the networks
are calibrated, the run resumes, the tables and figure are written; the one scorer of the
studies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("lightning")

from sarheight.cli import main
from sarheight.errors import InvalidInputError
from sarheight.studies.refinement import run_refinement_study
from sarheight.studies.refinement_methods import SAR_CHANNELS, networks
from sarheight.studies.refinement_report import results_section
from sarheight.terrain.classes import REFINEMENT_CLASSES
from sarheight.terrain.methods import BASELINES, NON_LEARNED
from tests.support.scenes import simulate_tiny_scenes

ROOT = Path(__file__).resolve().parents[2]


def test_the_networks_derive_from_the_shipped_configuration():
    from sarheight.training.configured import configured_run

    config = configured_run(ROOT / "sarheight" / "configs" / "terrain_refine.yaml").init_args
    control = configured_run(ROOT / "sarheight" / "configs" / "terrain_refine_nosar.yaml").init_args
    found = {n.name: n for n in networks(config["data"]["channels"], config["data"]["reference"],
                                         config["data"]["scale"])}
    # The control configuration is the SAR one without its SAR-derived channels, and the
    # same model and everything else.
    assert list(found["nosar"].channels) == control["data"]["channels"]
    assert not set(found["nosar"].channels) & set(SAR_CHANNELS)
    assert {k: v for k, v in control["model"].items() if k != "in_channels"} == {
        k: v for k, v in config["model"].items() if k != "in_channels"}
    assert {k: v for k, v in control["data"].items() if k != "channels"} == {
        k: v for k, v in config["data"].items() if k != "channels"}
    assert config["data"]["reference"] == "coarse_refined"
    assert "sar_ratio_geocoded" in found["sar_geocoded"].channels and "sar_ratio" not in found["sar_geocoded"].channels
    assert "sar_slope_geocoded" in found["sar_geocoded"].channels
    assert found["both_passes"].channels[:len(found["sar"].channels)] == found["sar"].channels
    assert "other_sar_slope" in found["both_passes"].channels
    assert found["priors_only_network"].reference == "prior_interpolated"
    with pytest.raises(InvalidInputError, match="sar_ratio"):
        networks(["coarse_slope_east"], "coarse_bicubic", "coarse_cell")


@pytest.fixture(scope="module")
def study_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    simulate_tiny_scenes(root / "train", names=("hills-a", "hills-b"), size=40, coarse_families=("training",),
                         prior_kinds=("altimeter",), ground_families=("training",))
    simulate_tiny_scenes(root / "test", names=("hills-t",), size=40, passes=("ascending",), coarse_factors=(3, 5),
                         coarse_families=("test",), prior_kinds=("lidar", "gnss"),
                         ground_families=("test-family", "outside"))
    config = yaml.safe_load((ROOT / "sarheight" / "configs" / "terrain_refine.yaml").read_text())
    config["model"]["model_options"] = {"base_channels": 4, "depth": 2, "uncertainty": True}
    config["trainer"]["max_epochs"] = 1
    config["trainer"]["accelerator"] = "cpu"
    config["trainer"]["logger"]["init_args"]["save_dir"] = str(root / "runs")
    config["checkpoint"]["dirpath"] = str(root / "fit_checkpoints")
    config["data"]["init_args"].update(scenes=str(root / "train"), tile=32, tiles_per_epoch=4, batch_size=2,
                                       val_scenes=["hills-b"])
    (root / "tiny.yaml").write_text(yaml.safe_dump(config))
    return root


def test_study_scores_every_method_on_every_held_out_group_and_resumes(study_inputs, tmp_path):
    root = study_inputs
    options = {"config": root / "tiny.yaml", "seeds": 2, "progress": False}
    results = run_refinement_study(root / "train", root / "test", tmp_path, **options)
    assert results["test_dems"] == ["hills-t"] and results["train_dems"] == ["hills-a", "hills-b"]
    # Two factors x two grounds, one DEM, one date; the prior kinds pooled in a row.
    assert len(results["rows"]) == 4 and len(results["summary"]) == 4
    assert {row["condition"] for row in results["rows"]} == {"ground: test-family", "ground: outside"}
    assert set(results["priors"]) == {"lidar", "gnss"}
    assert results["priors"]["gnss"]["error_rms_m"] < results["priors"]["lidar"]["error_rms_m"]
    row = results["rows"][0]
    assert set(row["methods"]) == {*BASELINES, "sar", "nosar"}
    for method, figures in row["methods"].items():
        assert np.isfinite(figures["mean"]["overall"]), method
    assert row["cells"]["overall"] == sum(row["cells"][name] for name in REFINEMENT_CLASSES)
    # The bar: the best non-learned method of the row, overall and per class.
    assert row["best_non_learned"] in NON_LEARNED
    best = row["methods"][row["best_non_learned"]]["mean"]["overall"]
    assert best == min(row["methods"][m]["mean"]["overall"] for m in NON_LEARNED)
    for name in REFINEMENT_CLASSES:
        chosen = row["best_non_learned_by_class"][name]
        assert row["methods"][chosen]["mean"][name] == min(
            row["methods"][m]["mean"][name] for m in NON_LEARNED if np.isfinite(row["methods"][m]["mean"][name]))
    assert row["reductions"]["sar"]["vs_best"] == pytest.approx(
        100 * (1 - row["methods"]["sar"]["mean"]["overall"] / best))
    # Every method is scored on the same cells of every scene.
    baselines = json.loads((tmp_path / "scores" / "baselines.json").read_text())
    for path in (tmp_path / "scores").glob("*_seed*.json"):
        for scene, figures in json.loads(path.read_text()).items():
            assert figures["count_overall"] == baselines[scene]["coarse_bilinear"]["count_overall"], (path, scene)
            # The networks' spread is scored: the cells within one and two of it.
            assert 0 <= figures["within_1std"] <= figures["within_2std"] <= figures["std_cells"]
    assert row["methods"]["sar"]["runs"] == 2 and row["methods"]["sar"]["std"]["overall"] >= 0
    assert 0 <= row["methods"]["sar"]["coverage"]["within_1std"] <= 100
    # Each network was calibrated on the validation DEM after its training.
    calibration = results["calibrations"]["sar"][0]
    assert calibration["scenes"] and all(0 <= keep <= 1 for keep in calibration["keep"])
    entry = results["summary"][0]
    assert set(entry["methods"]["sar"]["vs_best"]) == {"mean", "least", "most"}
    assert entry["methods"]["sar"]["vs_best"]["least"] <= entry["methods"]["sar"]["vs_best"]["mean"]
    for name in ("refinement.md", "refinement.json", "refinement.png"):
        assert (tmp_path / name).stat().st_size > 0
    # The steps each training took, read from its checkpoint: one epoch of 4 tiles in batches of 2.
    assert results["train_steps"] == {"sar": [2, 2], "nosar": [2, 2]}
    assert "(2 of its 2 planned steps)." in results_section(results)
    table = (tmp_path / "refinement.md").read_text()
    assert "no-SAR network (control)" in table and "clinometry" in table and "upper bound" in table
    assert "back-projection" in table and "SAR's share" in table
    stamps = {p: p.stat().st_mtime_ns for p in [*tmp_path.glob("runs/**/last.ckpt"), *tmp_path.glob("scores/*")]}
    assert len(list(tmp_path.glob("runs/**/last.ckpt"))) == 4
    again = run_refinement_study(root / "train", root / "test", tmp_path, **options)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((tmp_path / "refinement.json").read_text())["rows"] == json.loads(json.dumps(again["rows"]))


def test_the_study_trains_what_sarheight_fit_trains(study_inputs, tmp_path):
    """One reader of configurations: the study's SAR network is built with the init
    arguments and defaults ``sarheight fit --config`` builds from the same file."""
    import torch

    from sarheight.training.cli import run_cli

    root = study_inputs
    run_refinement_study(root / "train", root / "test", tmp_path, config=root / "tiny.yaml", seeds=1,
                         methods=("sar",), progress=False)
    run_cli("fit", ["--config", str(root / "tiny.yaml"), "--trainer.max_steps", "1"])
    fitted = torch.load(root / "fit_checkpoints" / "last.ckpt", weights_only=True, map_location="cpu")
    studied = torch.load(tmp_path / "runs" / "sar" / "seed0" / "last.ckpt", weights_only=True, map_location="cpu")
    assert dict(studied["hyper_parameters"]) == dict(fitted["hyper_parameters"])
    assert set(fitted["hyper_parameters"]) >= {"huber_delta", "patience", "spread_weight", "loss", "lr"}
    fit_data, study_data = (dict(c["datamodule_hyper_parameters"]) for c in (fitted, studied))
    # The study names the training files one by one; everything else is the file's.
    assert fit_data.pop("scenes") == str(root / "train") and len(study_data.pop("scenes")) == 4
    assert study_data == fit_data
    # sarheight fit calibrated its checkpoint on the validation scenes, as the study does.
    assert fitted["sarheight"]["calibration"]["scenes"]


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
    arguments = ["terrain", "study", "--scenes", str(root / "train"), "--test-scenes", str(root / "test"), "--config",
                 str(root / "tiny.yaml"), "--seeds", "1", "--method", "nosar", "--out", str(out)]
    assert main(arguments) == 0
    assert "table in" in capsys.readouterr().out and (out / "refinement.md").exists()
    # The ablation's budget is not the study's: its networks and budget come from --config.
    with pytest.raises(SystemExit) as exit_:
        main([*arguments[:-2], "--out", str(tmp_path / "x"), "--tile", "64"])
    assert exit_.value.code == 2
    # The study's old command line hears where it went.
    old = ["terrain", "ablate", "--task", "refine", "--scenes", str(root / "train"), "--test-scenes",
           str(root / "test"),
           "--out", str(out)]
    assert main(old) == 2 and "sarheight terrain study" in capsys.readouterr().err
    assert main(["terrain", "ablate", "--scenes", str(root / "train"), "--out", str(out)]) == 2
