"""The stack network's study: its statistics (the paired test, where the error goes, the
fair bars) by hand, and the whole study on tiny scenes, resumed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from sarheight.errors import InvalidInputError
from sarheight.priors import PriorSpec
from sarheight.studies.runs import read_sealed_json
from sarheight.studies.stacking import (
    METHODS,
    REFERENCE,
    SOURCES,
    error_by_source,
    fair_bars,
    packaging_choice,
    paired_test,
    results_section,
    run_stack_study,
    scene_terrain,
    target_lines,
)
from sarheight.terrain.scene_options import SceneProducts
from sarheight.terrain.scene_sets import SceneAxes, simulate_scenes
from sarheight.terrain.simulated import ERROR_SOURCE_VARIABLES
from tests.support.scenes import rough_dem, simulate_tiny_scenes

ROOT = Path(__file__).resolve().parents[2]


def test_the_sign_flip_test_by_hand():
    found = paired_test([1.0, 2.0, 3.0, 4.0], [0.0, 0.0, 0.0, 0.0])
    # Of the 16 signs, only all + and all - reach a mean difference of 2.5.
    assert found["dems"] == 4 and found["mean_difference"] == pytest.approx(2.5)
    assert found["sign_flip_p"] == pytest.approx(2 / 16)
    assert 0 < found["t_p"] < 0.05
    mixed = paired_test([1.0, -1.0, 2.0], [0.0, 0.0, 0.0])
    # |mean| 2/3: reached by (+,-,+), (-,+,-), (+,+,+), (-,-,-), (-,-,+) and (+,+,-): 6 of 8.
    assert mixed["sign_flip_p"] == pytest.approx(6 / 8)
    assert np.isnan(paired_test([1.0], [2.0])["sign_flip_p"])


def test_a_scene_terrain_is_its_dem_as_transformed():
    name = "boulder_indian_peaks_srtm3-r1m_descending_left_h-10_c3_training_gnss_ground-training_dates10_s0"
    assert scene_terrain(name, "descending") == "boulder_indian_peaks_srtm3-r1m"
    assert scene_terrain("hills-a_ascending_c3_s0", "ascending") == "hills-a"


def test_coverage_is_judged_per_dem():
    def row(first, second):
        return {"condition": "plain", "factor": 3, "within_std": {
            "a": {"within_1std": 0.70, "within_2std": 0.96}, "b": {"within_1std": first, "within_2std": second}}}

    assert target_lines([row(0.66, 0.93)]) == [
        "plain, 3x: coverage per DEM 66-70 % within 1 std (target 68 ± 10), 93-96 % within 2 std (target 95 ± 10): "
        "met"]
    missed = target_lines([row(0.45, 0.80)])[0]
    assert missed.endswith("missed (b 45 % within 1, b 80 % within 2)")


def scene_with_sources(seed: int = 0):
    """A stand-in scene of the error parts, random maps on a 30 x 30 grid."""
    import xarray as xr

    rng = np.random.default_rng(seed)
    variables = {variable: (("y", "x"), rng.normal(0.0, 1.0 + index, (30, 30)))
                 for index, variable in enumerate(ERROR_SOURCE_VARIABLES.values())}
    variables["coarse_error_bias"] = (("y", "x"), np.full((30, 30), 2.0))
    return xr.Dataset(variables)


def test_where_the_error_goes_by_hand():
    scene = scene_with_sources()
    lost = scene["coarse_error_lost_relief"].values
    slope = scene["coarse_error_slope"].values
    noise = np.random.default_rng(9).normal(0.0, 0.1, lost.shape)
    error = -0.5 * lost + 2.0 * slope + 3.0 + noise
    found = error_by_source(error, scene, np.ones(lost.shape, dtype=bool))
    assert set(found) == set(SOURCES)
    assert found["lost_relief"] == pytest.approx(np.sqrt(np.mean((0.5 * lost) ** 2)), rel=0.05)
    assert found["slope"] == pytest.approx(np.sqrt(np.mean((2.0 * slope) ** 2)), rel=0.05)
    assert found["bias"] == pytest.approx(3.0, rel=0.05)
    assert found["shift"] < 0.05 and found["unexplained"] == pytest.approx(0.1, rel=0.2)
    # A scene without the parts says nothing.
    assert error_by_source(error, scene.drop_vars("coarse_error_shift"), np.ones(lost.shape, dtype=bool)) == {}


def test_the_fair_bar_of_each_condition_is_chosen_on_validation():
    def record(condition, **ratios):
        scores = {method: {"overall": 10.0 * ratios.get(method, 1.2)} for method in METHODS}
        scores[REFERENCE] = {"overall": 10.0}
        return {"condition": condition, "scores": scores}

    bars = fair_bars({"a": record("one_image", clinometry=0.9), "b": record("one_image", clinometry=0.95),
                      "c": record("plain", inversion=0.8), "d": record("plain", clinometry=0.7, inversion=0.9)})
    assert bars["one_image"]["method"] == "clinometry" and bars["one_image"]["validation_scenes"] == 2
    assert bars["plain"]["method"] == "inversion"
    assert bars["plain"]["validation_mean_relative_rmse"]["clinometry"] == pytest.approx((0.7 + 1.2) / 2)
    assert "both_passes" not in bars


def small_config(name: str, folder: Path) -> Path:
    """A shipped stack configuration made tiny: 2 dates, 32-cell tiles, base 4, depth 2."""
    config = yaml.safe_load((ROOT / "sarheight" / "configs" / f"{name}.yaml").read_text())
    data = config["data"]["init_args"]
    data.update(tile=32, tiles_per_epoch=4, batch_size=2, val_scenes=["hills-b"])
    if "dates" in data:
        data["dates"] = 2
        config["model"]["model_options"].update(dates=2, date_features=4)
    config["model"]["model_options"].update(base_channels=4, depth=2)
    config["trainer"].update(max_epochs=1, enable_progress_bar=False, logger=False)
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def condition_scenes(root: Path, names: tuple[str, ...], seed: int, **options) -> None:
    dems = []
    for index, name in enumerate(names):
        dem = rough_dem(seed=seed + index, rows=40, cols=40, relief=300.0)
        dem.attrs["dem_name"] = name
        dems.append(dem)
    made = {"inversion": options.pop("inversion", True), "register": options.pop("register", True)}
    common = {"passes": ("ascending",), "coarse_families": ("test",),
              "priors": (PriorSpec(count=6, kind="altimeter"),), **options}
    products = SceneProducts(error_sources=True, **made)
    simulate_scenes(dems, root / "one_image", axes=SceneAxes(opposite_passes=(False,), **common), products=products,
                    progress=False)
    simulate_scenes(dems, root / "both_passes_10_dates", axes=SceneAxes(opposite_passes=(True,), dates=(2,), **common),
                    products=products, progress=False)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stack_study")
    axes = {"names": ("hills-a", "hills-b"), "size": 40, "passes": ("ascending",), "dates": (2,),
            "opposite_passes": (True,)}
    simulate_tiny_scenes(folder / "train", inversion=True, **axes)
    condition_scenes(folder / "validation", ("hills-v",), seed=60)
    condition_scenes(folder / "test", ("hills-c", "hills-d"), seed=70)
    # The control's twins: the same scenes without any image.
    simulate_tiny_scenes(folder / "train_noimage", register=False, **axes)
    condition_scenes(folder / "test_noimage", ("hills-c", "hills-d"), seed=70, inversion=False, register=False)
    configs = {name: small_config(name, folder) for name in ("terrain_stack", "terrain_stack_noimage")}
    results = run_stack_study(folder / "train", folder / "validation", folder / "test", folder / "out",
                              config=configs["terrain_stack"], control=configs["terrain_stack_noimage"], seeds=2,
                              control_scenes=(folder / "train_noimage", folder / "test_noimage"), progress=False)
    return {"folder": folder, "results": results, "configs": configs}


def test_the_study_scores_every_condition_against_both_bars(study):
    results, out = study["results"], study["folder"] / "out"
    assert json.loads((out / "stacking.json").read_text())["summary"] == json.loads(json.dumps(results["summary"]))
    assert (out / "stacking.md").read_text().startswith("# The network on top of the physics")
    assert (out / "stacking.png").stat().st_size > 0
    splits = json.loads((out / "splits.json").read_text())
    assert splits == {"train_dems": ["hills-a"], "train_terrain": ["hills-a"], "calibration_dems": ["hills-b"],
                      "validation_dems": ["hills-v"], "held_out_dems": ["hills-c", "hills-d"]}
    assert [(row["condition"], row["factor"]) for row in results["summary"]] == [
        ("one_image", 3), ("both_passes_10_dates", 3)]
    for row in results["summary"]:
        assert row["fair_bar"] in METHODS and row["dems"] == ["hills-c", "hills-d"]
        assert row["paired_test_fair"]["dems"] == 2
        for key in ("fair", "oracle", "inversion", "reference", "sar_share", "control_fair"):
            assert set(row[key]["per_dem"]) == {"hills-c", "hills-d"}
            assert row[key]["least_dem"] <= row[key]["mean"] + 1e-9 and row[key]["spread"] >= 0
        # The oracle is the best per row: no method without learning is below it.
        assert row["oracle"]["mean"] <= row["fair"]["mean"] + 1e-9
        assert set(row["error_sources_m"]) == {"fair_bar", "inversion", "network"}
        assert set(row["error_sources_m"]["network"]) == set(SOURCES)
        # One kind of prior in these scenes: its row alone is the whole row.
        assert list(row["fair_by_prior_kind"]) == ["altimeter"]
        assert row["fair_by_prior_kind"]["altimeter"] == pytest.approx(row["fair"]["mean"])
    bars = results["fair_bars"]
    assert set(bars) == {"one_image", "both_passes_10_dates"}
    assert all(set(bar["validation_mean_relative_rmse"]) == set(METHODS) for bar in bars.values())
    assert len(results["trainings"]["network"]) == 2 and results["trainings"]["control"][0]["calibration"]
    # The control trained on the twins without any image, its calibration on their validation DEM.
    assert results["control_without_image"] and results["trainings"]["control"][0]["calibration"]["scenes"]
    for name, folder in (("control", "train_noimage"), ("network", "train")):
        scenes = read_sealed_json(out / "runs" / name / "seed0" / "scores.json")["init_args"]["data"]["scenes"]
        assert scenes and all(Path(path).parent.name == folder for path in scenes), name
    assert any("one_image, 3x: the network" in line for line in results["targets"])
    # The splits by name in the text the documents show, and every row.
    text = results_section(results)
    assert "Training DEMs: hills-a" in text and "held out (never trained, calibrated or chosen on): hills-c, hills-d" \
        in text and "calibration of the networks: hills-b" in text and "fair bars chosen on: hills-v" in text
    assert all(f"| {row['condition']} | {row['factor']}x |" in text for row in results["summary"])
    assert "with each kind of prior alone" in text and "| condition | factor | altimeter |" in text


def test_the_study_resumes_without_training_again(study):
    out = study["folder"] / "out"
    checkpoint = out / "runs" / "network" / "seed0" / "last.ckpt"
    before = checkpoint.stat().st_mtime_ns
    folder = study["folder"]
    again = run_stack_study(folder / "train", folder / "validation", folder / "test", out,
                            config=study["configs"]["terrain_stack"], control=study["configs"]["terrain_stack_noimage"],
                            seeds=2, control_scenes=(folder / "train_noimage", folder / "test_noimage"),
                            progress=False)
    assert checkpoint.stat().st_mtime_ns == before
    assert again["summary"] == study["results"]["summary"]


def test_networks_trained_elsewhere_are_scored_as_the_ones_trained_here(study, tmp_path):
    folder, out = study["folder"], study["folder"] / "out"
    trained = {name: [out / "runs" / name / f"seed{seed}" / "last.ckpt" for seed in range(2)]
               for name in ("network", "control")}
    elsewhere = run_stack_study(folder / "train", folder / "validation", folder / "test", tmp_path / "elsewhere",
                                config=study["configs"]["terrain_stack"],
                                control=study["configs"]["terrain_stack_noimage"], seeds=2,
                                control_scenes=(folder / "train_noimage", folder / "test_noimage"), trained=trained,
                                progress=False)
    assert not (tmp_path / "elsewhere" / "runs").exists()
    assert all(run["trained_elsewhere"] for runs in elsewhere["trainings"].values() for run in runs)
    for ours, theirs in zip(elsewhere["summary"], study["results"]["summary"], strict=True):
        for key in ("fair", "sar_share"):
            assert ours[key]["mean"] == pytest.approx(theirs[key]["mean"])
            assert ours[key]["per_dem"] == pytest.approx(theirs[key]["per_dem"])
    with pytest.raises(InvalidInputError, match="one existing checkpoint per seed"):
        run_stack_study(folder / "train", folder / "validation", folder / "test", tmp_path / "x", seeds=3,
                        trained=trained, progress=False)


def test_a_held_out_dem_among_the_training_scenes_is_refused(study, tmp_path):
    with pytest.raises(InvalidInputError, match="held out and also trained"):
        run_stack_study(study["folder"] / "test" / "one_image", study["folder"] / "validation",
                        study["folder"] / "test", tmp_path, config=study["configs"]["terrain_stack"],
                        control=study["configs"]["terrain_stack_noimage"], progress=False)
    with pytest.raises(InvalidInputError, match="no twin"):
        run_stack_study(study["folder"] / "train", study["folder"] / "validation", study["folder"] / "test", tmp_path,
                        config=study["configs"]["terrain_stack"], control=study["configs"]["terrain_stack_noimage"],
                        control_scenes=(study["folder"] / "train_noimage", study["folder"] / "validation"),
                        progress=False)
    with pytest.raises(InvalidInputError, match="seeds"):
        run_stack_study(study["folder"] / "train", study["folder"] / "validation", study["folder"] / "test",
                        tmp_path, seeds=0, progress=False)


def test_the_network_to_ship_is_chosen_on_the_validation_dems(study):
    folder, out = study["folder"], study["folder"] / "out"
    candidates = {f"seed {seed}": out / "runs" / "network" / f"seed{seed}" / "last.ckpt" for seed in range(2)}
    choice = packaging_choice(candidates, folder / "validation", ("one_image", "both_passes_10_dates"),
                              progress=False)
    assert choice["validation_dems"] == ["hills-v"]
    for condition in ("one_image", "both_passes_10_dates"):
        found = choice["conditions"][condition]
        means = found["mean_relative_rmse"]
        assert found["scenes"] == 1 and means[REFERENCE] == pytest.approx(1.0)
        assert set(means) == set(METHODS) | set(candidates)
        assert found["chosen"] == min(candidates, key=means.get)
        assert found["fair_bar"] == min(METHODS, key=means.get)
    with pytest.raises(InvalidInputError, match="no validation scenes of"):
        packaging_choice(candidates, folder / "validation", ("one_image", "plain"), progress=False)
    with pytest.raises(InvalidInputError, match="at least one candidate"):
        packaging_choice({}, folder / "validation", ("one_image",), progress=False)


def test_a_network_is_the_default_only_well_below_the_inversion():
    from sarheight.studies.stacking import default_methods

    def packaged(one_image_network, stack_network, clinometry=0.97):
        figures = {"inversion": 0.90, "clinometry": clinometry, "back_projection_priors": 1.0}
        stack = {condition: {"mean_relative_rmse": {**figures, "stack seed 0": stack_network}}
                 for condition in ("one_pass_10_dates", "both_passes", "both_passes_10_dates")}
        return {"one_image": {"conditions": {"one_image": {"chosen": "one", "mean_relative_rmse": {
                    **figures, "one": one_image_network}}}},
                "stack": {"chosen": "stack seed 0", "conditions": stack}}

    # 5 % below the inversion makes the network the default; 4 % leaves the best non-learned method.
    assert default_methods(packaged(0.85, 0.864)) == {"one_image": "network", "one_pass_dates": "inversion",
                                                      "both_passes": "inversion"}
    assert default_methods(packaged(0.80, 0.80, clinometry=0.85)) == {
        "one_image": "network", "one_pass_dates": "network", "both_passes": "network"}
    assert default_methods(packaged(0.95, 0.95, clinometry=0.85))["one_image"] == "clinometry"
    broken = packaged(0.8, 0.8)
    del broken["stack"]["conditions"]["both_passes"]
    with pytest.raises(InvalidInputError, match="lack 'both_passes'"):
        default_methods(broken)
