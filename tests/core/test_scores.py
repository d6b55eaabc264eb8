"""The one scorer of height maps: by hand, and the same figures as the training's metric."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sarheight.errors import InvalidInputError
from sarheight.scores import MapScores, map_rmse, pooled_rms, rms

TERRAIN_CLASSES = ("active_layover", "passive_layover", "shadow", "steep", "other")


def test_rms():
    assert rms([3.0, -4.0]) == pytest.approx(math.sqrt(12.5))
    assert rms([3.0, np.nan, -4.0]) == pytest.approx(math.sqrt(12.5))  # what is not finite is not counted
    assert math.isnan(rms([])) and math.isnan(rms([np.nan]))


def test_pooled_rms_is_the_rms_of_the_sets_taken_as_one():
    first, second = np.array([1.0, -2.0, 3.0]), np.array([4.0, 0.5])
    assert pooled_rms([rms(first), rms(second), math.nan], [3, 2, 0]) == pytest.approx(
        rms(np.concatenate([first, second])))
    assert math.isnan(pooled_rms([math.nan], [0])) and math.isnan(pooled_rms([], []))


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
    assert values["mae"] == pytest.approx(1.2)
    assert values["rmse_active_layover"] == pytest.approx(np.sqrt(0.5))
    assert values["rmse_layover"] == pytest.approx(np.sqrt(5 / 3)) and values["count_layover"] == 3
    assert np.isnan(values["rmse_shadow"]) and values["count_shadow"] == 0
    assert map_rmse(prediction, truth, mask) == pytest.approx(values["rmse"])
    with pytest.raises(InvalidInputError, match="not finite"):
        scores.add(np.full((2, 3), np.nan), truth, mask, classes)
    with pytest.raises(InvalidInputError, match="groups"):
        MapScores(TERRAIN_CLASSES, groups={"x": ("nowhere",)})
    with pytest.raises(InvalidInputError, match="classes"):
        MapScores(TERRAIN_CLASSES).add(prediction, truth, mask)


def test_the_same_figures_as_the_training_metric():
    torch = pytest.importorskip("torch")
    from sarheight.training.metrics import HeightMetrics

    rng = np.random.default_rng(0)
    scores = MapScores(TERRAIN_CLASSES, threshold_m=1.0)
    metric = HeightMetrics(TERRAIN_CLASSES, footprint_threshold=1.0)
    for _ in range(3):
        truth = rng.normal(300.0, 80.0, (17, 23))
        prediction = truth + rng.normal(0.0, 5.0, truth.shape)
        mask = rng.random(truth.shape) > 0.2
        classes = rng.integers(0, len(TERRAIN_CLASSES), truth.shape)
        scores.add(prediction, truth, mask, classes)
        metric.update(torch.from_numpy(prediction), torch.from_numpy(truth), torch.from_numpy(mask),
                      torch.from_numpy(classes))
    ours, theirs = scores.compute(), {key: float(value) for key, value in metric.compute().items()}
    for key, value in theirs.items():
        assert ours[key] == pytest.approx(value, rel=1e-12, nan_ok=True), key
