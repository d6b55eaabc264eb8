"""Learned stacking: a refinement network that reads the non-learned maps (clinometry,
registration, the inversion) as corrections of its reference, and whose calibration may
choose one of them instead of the network per terrain class."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from sarheight.data.terrain import scene_arrays
from sarheight.errors import InvalidInputError
from sarheight.scores import rms
from sarheight.terrain import clinometry
from sarheight.terrain.classes import REFINEMENT_CLASSES
from sarheight.terrain.files import open_scene
from sarheight.terrain.methods import STACKED_METHODS, channel_sources, method_heights, scene_channel
from sarheight.terrain.variables import Scene, coarse_cell_size, refinement_classes
from sarheight.training.calibration import (
    MIN_CELLS,
    calibrate_checkpoint,
    calibration_figures,
    describe_calibration,
    stacked_alternatives,
)
from sarheight.training.predict import chosen_corrections, predict_height
from tests.support.scenes import fit_tiny_checkpoint, simulate_tiny_scenes

LAYOVER, SHADOW, STEEP, OTHER = (REFINEMENT_CLASSES.index(name) for name in ("layover", "shadow", "steep", "other"))


# --- the choice among the network and the maps, from arrays ----------------------------


def stacking_case(seed: int = 0):
    """Four classes; the network is exact in ``other``, a map ``exact_in_steep`` is exact in
    ``steep`` and poor elsewhere, a map ``noisy`` is worse than the network everywhere,
    and layover has too few cells to judge."""
    rng = np.random.default_rng(seed)
    counts = {LAYOVER: MIN_CELLS - 1, SHADOW: 800, STEEP: 900, OTHER: 1000}
    classes = np.concatenate([np.full(count, code, dtype=np.uint8) for code, count in counts.items()])
    departures = rng.normal(0.0, 5.0, classes.size)
    corrections = np.where(classes == OTHER, departures, departures + rng.normal(0.0, 2.0, classes.size))
    exact = np.where(classes == STEEP, departures, departures + rng.normal(0.0, 6.0, classes.size))
    noisy = departures + rng.normal(0.0, 4.0, classes.size)
    return corrections, departures, classes, {"exact_in_steep": exact, "noisy": noisy}


def test_each_class_chooses_the_lowest_validation_rmse():
    corrections, departures, classes, maps = stacking_case()
    found = calibration_figures([corrections], [departures], [classes],
                                alternatives={name: [values] for name, values in maps.items()})
    assert found["choice"][STEEP] == "exact_in_steep" and found["rmse_chosen"][STEEP] == pytest.approx(0.0)
    assert found["choice"][OTHER] == "network" and found["choice"][SHADOW] == "network"
    # Too few cells to judge by: the network as trained.
    assert found["choice"][LAYOVER] == "network"
    for code in (SHADOW, STEEP, OTHER):
        chosen = classes == code
        gated = departures[chosen] - found["keep"][code] * corrections[chosen]
        assert found["rmse_gated"][code] == pytest.approx(rms(gated))
        for name, values in maps.items():
            assert found["rmse_alternatives"][name][code] == pytest.approx(rms(departures[chosen] - values[chosen]))
        # The floor: the best of the gated network and every map.
        assert found["rmse_chosen"][code] == pytest.approx(
            min(found["rmse_gated"][code], *(found["rmse_alternatives"][name][code] for name in maps)))
    assert "steep" in describe_calibration(found) and "(exact_in_steep" in describe_calibration(found)


def test_a_map_without_a_value_leaves_the_network_there():
    corrections, departures, classes, maps = stacking_case(1)
    exact = maps["exact_in_steep"].copy()
    holes = (classes == STEEP) & (np.arange(classes.size) % 2 == 0)
    exact[holes] = np.nan
    found = calibration_figures([corrections], [departures], [classes], alternatives={"exact_in_steep": [exact]})
    chosen = classes == STEEP
    keep = found["keep"][STEEP]
    twin = np.where(np.isfinite(exact[chosen]), exact[chosen], keep * corrections[chosen])
    assert found["rmse_alternatives"]["exact_in_steep"][STEEP] == pytest.approx(rms(departures[chosen] - twin))
    assert found["choice"][STEEP] == "exact_in_steep"


def test_the_spread_is_scaled_to_the_chosen_heights_errors():
    corrections, departures, classes, maps = stacking_case(2)
    stds = np.full(classes.size, 2.0)
    found = calibration_figures([corrections], [departures], [classes], [stds],
                                alternatives={"noisy": [maps["noisy"]], "exact_in_steep": [maps["exact_in_steep"]]})
    # Steep chose the exact map: its errors are nil, the scale the least allowed.
    assert found["choice"][STEEP] == "exact_in_steep" and found["std_scale"][STEEP] == pytest.approx(1e-3)
    chosen = classes == SHADOW
    error = departures[chosen] - found["keep"][SHADOW] * corrections[chosen]
    assert found["std_scale"][SHADOW] == pytest.approx(np.quantile(np.abs(error) / 2.0, 0.6827), rel=1e-12)


def test_alternatives_of_another_length_are_refused():
    corrections, departures, classes, _ = stacking_case()
    with pytest.raises(InvalidInputError, match="one value per cell"):
        calibration_figures([corrections], [departures], [classes], alternatives={"map": [departures[:-1]]})


def test_the_alternatives_are_the_stacked_channels_but_the_reference():
    channels = ["sar_ratio", "coarse_registered", "clinometry", "inverted", "coarse_refined", "prior_mask"]
    assert stacked_alternatives(channels, "coarse_refined") == ["coarse_registered", "clinometry", "inverted"]
    assert stacked_alternatives(["sar_ratio"], "coarse_refined") == []


def test_chosen_corrections_replace_the_classes_that_chose_a_map(stack_scenes):
    scene = open_scene(stack_scenes[0])
    classes = refinement_classes(scene)
    reference = scene["coarse_refined"].values.astype(np.float64)
    correction = np.full(classes.shape, 0.25)
    codes = sorted(set(np.unique(classes).tolist()))
    calibration = {"choice": ["network"] * len(REFINEMENT_CLASSES)}
    calibration["choice"][codes[0]] = "clinometry"
    result = chosen_corrections(scene, calibration, classes, correction, reference)
    clinometric = method_heights(scene, "clinometry")
    replaced = (classes == codes[0]) & np.isfinite(clinometric)
    assert replaced.any()
    np.testing.assert_allclose(result[replaced], (clinometric - reference)[replaced], rtol=1e-6)
    np.testing.assert_array_equal(result[~replaced], 0.25)
    # Without a choice (a calibration of before stacking), the correction as it is.
    assert chosen_corrections(scene, {"keep": [1.0] * 4}, classes, correction, reference) is correction


# --- the maps as a scene gives them --------------------------------------------------


@pytest.fixture(scope="module")
def stack_scenes(tmp_path_factory):
    """Three tiny DEMs' scenes built with the inversion (so that they hold ``inverted``)."""
    return simulate_tiny_scenes(tmp_path_factory.mktemp("stacking") / "scenes", names=("hills-a", "hills-b", "hills-c"),
                                size=36, inversion=True)


def test_clinometry_is_made_once_per_scene(stack_scenes, monkeypatch):
    # A caller that reads several things of one scene holds it as a Scene: what is derived
    # lives with it.
    scene = Scene.of(open_scene(stack_scenes[0]))
    calls = []
    original = clinometry.clinometry_heights

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr("sarheight.terrain.methods.clinometry_heights", counted)
    first = method_heights(scene, "clinometry")
    second = scene_channel(scene, "clinometry")
    assert len(calls) == 1
    np.testing.assert_array_equal(first, second)
    np.testing.assert_array_equal(first, original(scene).values)
    # A copy each time: a reader changing its own leaves the scene's.
    first[:] = 0
    assert not np.array_equal(method_heights(scene, "clinometry"), first)
    assert len(calls) == 1
    # No registry of Datasets: a bare Dataset is a new Scene at each call, derived anew.
    method_heights(scene.data, "clinometry")
    method_heights(scene.data, "clinometry")
    assert len(calls) == 3


def test_stored_maps_and_refusals(stack_scenes):
    scene = open_scene(stack_scenes[0])
    for name in STACKED_METHODS:
        values = method_heights(scene, name)
        assert values.dtype == np.float32 and values.shape == scene["height"].shape
        assert np.isfinite(values).mean() > 0.5, name
    np.testing.assert_array_equal(method_heights(scene, "inverted"), scene["inverted"].values)
    with pytest.raises(InvalidInputError, match="inversion"):
        method_heights(scene.drop_vars("inverted"), "inverted")
    with pytest.raises(InvalidInputError, match="no stacked method"):
        method_heights(scene, "coarse_height")
    assert set(channel_sources("clinometry")) <= set(scene.data_vars)


def test_the_maps_are_channels_relative_to_the_reference_in_coarse_cells(stack_scenes):
    scene = open_scene(stack_scenes[1])
    channels = ["clinometry", "inverted", "coarse_registered", "sar_ratio"]
    arrays = scene_arrays(scene, channels, reference="coarse_refined", scale="coarse_cell", target="height")
    reference = scene["coarse_refined"].values
    cell = coarse_cell_size(scene)
    for index, name in enumerate(channels[:3]):
        np.testing.assert_allclose(arrays.inputs[index], (method_heights(scene, name) - reference) / cell,
                                   rtol=1e-5, atol=1e-5, equal_nan=True)
    # A scene built without the inversion is refused before anything is read.
    with pytest.raises(InvalidInputError, match="'inverted'"):
        scene_arrays(scene.drop_vars("inverted"), channels, reference="coarse_refined", scale="coarse_cell")


# --- a stacking checkpoint, end to end --------------------------------------------------

CHANNELS = ("coarse_slope_east", "coarse_slope_north", "prior_mask", "prior_distance", "sar_ratio",
            "local_incidence_angle", "coarse_registered", "clinometry", "inverted")
REFINE = {"reference": "coarse_refined", "scale": "coarse_cell", "score_shadow": True, "val_scenes": ["hills-b"],
          "test_scenes": ["hills-c"]}


def test_a_stacking_network_calibrates_and_predicts_its_choice(stack_scenes, tmp_path):
    raw = fit_tiny_checkpoint(stack_scenes[0].parent, tmp_path / "raw.ckpt", channels=CHANNELS, data_options=REFINE,
                              uncertainty=True)
    checkpoint = tmp_path / "stacked.ckpt"
    shutil.copy(raw, checkpoint)
    figures = calibrate_checkpoint(checkpoint, stack_scenes)
    assert set(figures["rmse_alternatives"]) == {"coarse_registered", "clinometry", "inverted"}
    for index, count in enumerate(figures["cells"]):
        candidates = [figures["rmse_gated"][index], *(v[index] for v in figures["rmse_alternatives"].values())]
        if count >= MIN_CELLS:
            assert figures["rmse_chosen"][index] == pytest.approx(min(candidates))
    # The choice is applied as stored: force one class to the inversion's map.
    stored = torch.load(checkpoint, map_location="cpu", weights_only=True)
    stored["sarheight"]["calibration"]["choice"] = ["network", "network", "network", "inverted"]
    torch.save(stored, checkpoint)
    scene = open_scene(stack_scenes[2])
    out = predict_height(scene, [checkpoint], progress=False)
    other = (refinement_classes(scene) == OTHER) & np.isfinite(out["height"].values)
    assert other.any()
    np.testing.assert_allclose(out["height"].values[other], scene["inverted"].values[other], atol=1e-3)
    rest = ~other & np.isfinite(out["height"].values)
    assert not np.allclose(out["height"].values[rest], scene["inverted"].values[rest], atol=1e-3)
