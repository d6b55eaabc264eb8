"""The calibration of a refinement network per terrain class (the gate ``keep`` and the
spread's ``std_scale``), the spread head's loss, and how prediction applies both."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from sarheight.data.terrain import scene_arrays
from sarheight.errors import InvalidInputError
from sarheight.terrain.classes import REFINEMENT_CLASSES
from sarheight.terrain.files import open_scene
from sarheight.terrain.variables import refinement_classes
from sarheight.training.calibration import (
    MIN_CELLS,
    ONE_SIGMA,
    calibrate_checkpoint,
    calibration_figures,
    describe_calibration,
)
from sarheight.training.losses import spread_loss
from sarheight.training.predict import predict_height
from sarheight.training.trained import load_checkpoint
from tests.support.scenes import fit_tiny_checkpoint, simulate_tiny_scenes

LAYOVER, SHADOW, STEEP, OTHER = (REFINEMENT_CLASSES.index(name) for name in ("layover", "shadow", "steep", "other"))


def rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values))))


# --- calibration_figures -----------------------------------------------------------


@pytest.fixture(scope="module")
def by_class():
    """Departures of four classes, and per class a network's correction: the negative
    (layover), twice (shadow), too few cells (steep), exactly the departure (other)."""
    rng = np.random.default_rng(0)
    counts = {LAYOVER: 1000, SHADOW: 1000, STEEP: MIN_CELLS - 1, OTHER: 1000}
    factor = {LAYOVER: -1.0, SHADOW: 2.0, STEEP: 0.3, OTHER: 1.0}
    classes = np.concatenate([np.full(count, code, dtype=np.uint8) for code, count in counts.items()])
    departures = rng.normal(0.0, 5.0, classes.size)
    corrections = departures * np.array([factor[code] for code in classes])
    order = rng.permutation(classes.size)
    return corrections[order], departures[order], classes[order]


def test_gate_by_hand(by_class):
    corrections, departures, classes = by_class
    # Split over two scenes: the figures pool them.
    half = corrections.size // 2
    found = calibration_figures([corrections[:half], corrections[half:]], [departures[:half], departures[half:]],
                                [classes[:half], classes[half:]])
    assert found["classes"] == list(REFINEMENT_CLASSES)
    assert found["cells"] == [int((classes == code).sum()) for code in range(len(REFINEMENT_CLASSES))]
    reference = [rms(departures[classes == code]) for code in range(len(REFINEMENT_CLASSES))]
    assert found["rmse_reference"] == pytest.approx(reference)
    # The exact correction is kept whole.
    assert found["keep"][OTHER] == 1.0 and found["rmse_gated"][OTHER] == pytest.approx(0.0, abs=1e-12)
    # The wrong way round falls back to the reference.
    assert found["keep"][LAYOVER] == 0.0
    assert found["rmse_gated"][LAYOVER] == pytest.approx(reference[LAYOVER])
    assert found["rmse_network"][LAYOVER] == pytest.approx(2 * reference[LAYOVER])
    # Twice the departure: least squares keeps half, exactly.
    assert found["keep"][SHADOW] == pytest.approx(0.5, abs=1e-12)
    assert found["rmse_gated"][SHADOW] == pytest.approx(0.0, abs=1e-9)
    # Too few cells to judge by: kept as trained.
    assert found["keep"][STEEP] == 1.0 and found["std_scale"][STEEP] == 1.0
    assert found["rmse_gated"][STEEP] == pytest.approx(found["rmse_network"][STEEP])
    assert "within_1std" not in found and found["std_scale"] == [1.0] * 4


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_keep_is_the_least_squares_share_in_zero_one(seed):
    rng = np.random.default_rng(seed)
    departures = rng.normal(0.0, 4.0, 3000)
    corrections = rng.uniform(-0.5, 1.5) * departures + rng.normal(0.0, 3.0, 3000)
    classes = np.full(3000, OTHER, dtype=np.uint8)
    keep = calibration_figures([corrections], [departures], [classes])["keep"][OTHER]
    # Twin: the best share on a fine grid of [0, 1].
    shares = np.linspace(0.0, 1.0, 10_001)
    costs = ((departures[None, :] - shares[:, None] * corrections[None, :]) ** 2).sum(axis=1)
    assert keep == pytest.approx(shares[np.argmin(costs)], abs=2e-4)


def test_cells_without_a_value_do_not_count():
    rng = np.random.default_rng(4)
    departures = rng.normal(0.0, 3.0, 600)
    corrections = 2.0 * departures
    corrections[:50] = np.nan
    departures[50:100] = np.inf
    found = calibration_figures([corrections], [departures], [np.full(600, OTHER, dtype=np.uint8)])
    assert found["cells"][OTHER] == 500 and found["keep"][OTHER] == pytest.approx(0.5)


def spread_case(seed: int, size: int = 20_000, outliers: float = 0.0):
    """One class: a network whose correction is the departure less Gaussian errors of a
    spread varying cell to cell (and a share ``outliers`` of errors 20 times larger), and
    whose std is a third of that spread."""
    rng = np.random.default_rng(seed)
    sigma = rng.uniform(0.5, 5.0, size)
    errors = rng.normal(0.0, 1.0, size) * sigma
    errors[: int(outliers * size)] *= 20.0
    corrections = rng.normal(0.0, 10.0, size)
    return [corrections], [corrections + errors], [np.full(size, STEEP, dtype=np.uint8)], [sigma / 3.0]


@pytest.mark.parametrize("seed", [5, 6])
def test_spread_is_scaled_to_one_sigma(seed):
    corrections, departures, classes, stds = spread_case(seed)
    found = calibration_figures(corrections, departures, classes, stds)
    assert found["keep"][STEEP] == pytest.approx(1.0, abs=0.01)
    assert found["std_scale"][STEEP] == pytest.approx(3.0, rel=0.05)
    assert found["within_1std"][STEEP] == pytest.approx(ONE_SIGMA, abs=0.01)
    assert found["within_2std"][STEEP] == pytest.approx(math.erf(2 / math.sqrt(2)), abs=0.01)
    # Classes without cells say nothing.
    assert math.isnan(found["within_1std"][OTHER]) and math.isnan(found["rmse_reference"][OTHER])
    assert found["keep"][OTHER] == 1.0 and found["cells"][OTHER] == 0


def test_spread_scale_is_a_quantile_not_a_root_mean_square():
    # 5 % of errors 20 times larger would more than quadruple an RMS scale.
    corrections, departures, classes, stds = spread_case(7, outliers=0.05)
    found = calibration_figures(corrections, departures, classes, stds)
    gated = departures[0] - found["keep"][STEEP] * corrections[0]
    twin = np.quantile(np.abs(gated) / stds[0], ONE_SIGMA)
    assert found["std_scale"][STEEP] == pytest.approx(twin, rel=1e-12)
    assert found["within_1std"][STEEP] == pytest.approx(ONE_SIGMA, abs=0.01)
    assert found["std_scale"][STEEP] < 0.5 * rms(gated / stds[0])


def test_spread_of_too_few_cells_is_left_as_it_is():
    corrections, departures, classes, stds = spread_case(8, size=MIN_CELLS - 1)
    found = calibration_figures(corrections, departures, classes, stds)
    assert found["std_scale"][STEEP] == 1.0 and found["keep"][STEEP] == 1.0
    z = np.abs(departures[0] - corrections[0]) / stds[0]
    assert found["within_1std"][STEEP] == pytest.approx(np.mean(z <= 1.0))


@pytest.mark.parametrize("lengths", [(10, 9, 10, None), (10, 10, 9, None), (10, 10, 10, 9)])
def test_mismatched_shapes_are_refused(lengths):
    corrections, departures, classes, stds = lengths
    with pytest.raises(InvalidInputError, match="one value per cell"):
        calibration_figures([np.zeros(corrections)], [np.zeros(departures)],
                            [np.zeros(classes, dtype=np.uint8)], None if stds is None else [np.ones(stds)])


def test_description_names_the_classes_it_has(by_class):
    corrections, departures, classes = by_class
    chosen = classes != SHADOW
    text = describe_calibration(calibration_figures([corrections[chosen]], [departures[chosen]], [classes[chosen]]))
    assert "layover" in text and "steep" in text and "other" in text and "shadow" not in text
    assert "keep 0.00" in text and "std" not in text
    corrections, departures, classes, stds = spread_case(9)
    assert "% within 1 std" in describe_calibration(calibration_figures(corrections, departures, classes, stds))


# --- spread_loss -------------------------------------------------------------------


def test_spread_loss_is_least_at_the_log_of_the_rms_error():
    generator = torch.Generator().manual_seed(0)
    error = torch.randn(2, 1, 8, 8, generator=generator, dtype=torch.float64) * 3.0
    mask = torch.rand(2, 1, 8, 8, generator=generator) > 0.3
    best = math.log(rms(error[mask].numpy()))
    # A constant log std: the loss over a grid, and its gradient at the optimum.
    grid = np.linspace(best - 2.0, best + 2.0, 4001)
    losses = [spread_loss(torch.full_like(error, value), error, mask).item() for value in grid]
    assert grid[int(np.argmin(losses))] == pytest.approx(best, abs=2e-3)
    constant = torch.tensor(best, dtype=torch.float64, requires_grad=True)
    loss = spread_loss(constant.expand_as(error), error, mask)
    (gradient,) = torch.autograd.grad(loss, constant)
    assert abs(gradient.item()) < 1e-12
    # Its value there: log rms + 1/2.
    assert loss.item() == pytest.approx(best + 0.5, rel=1e-12)


def test_spread_loss_is_the_gaussian_likelihood_twin():
    generator = torch.Generator().manual_seed(1)
    log_std = torch.randn(3, 1, 5, 5, generator=generator)
    error = torch.randn(3, 1, 5, 5, generator=generator) * 2.0
    mask = torch.rand(3, 1, 5, 5, generator=generator) > 0.5
    s, e = log_std[mask].double(), error[mask].double()
    twin = (s + 0.5 * e**2 * torch.exp(-2.0 * s)).mean()
    assert spread_loss(log_std, error, mask).item() == pytest.approx(twin.item(), rel=1e-6)


def test_masked_cells_never_reach_the_loss_or_its_gradient():
    generator = torch.Generator().manual_seed(2)
    log_std = torch.randn(2, 1, 6, 6, generator=generator)
    error = torch.randn(2, 1, 6, 6, generator=generator)
    mask = torch.rand(2, 1, 6, 6, generator=generator) > 0.4
    clean = spread_loss(log_std, error, mask)
    poisoned_std = torch.where(mask, log_std, torch.tensor(float("nan"))).requires_grad_(True)
    poisoned_error = torch.where(mask, error, torch.tensor(float("nan")))
    loss = spread_loss(poisoned_std, poisoned_error, mask)
    assert loss.item() == pytest.approx(clean.item(), rel=1e-6)
    loss.backward()
    assert torch.isfinite(poisoned_std.grad).all()
    assert (poisoned_std.grad[~mask] == 0).all() and (poisoned_std.grad[mask] != 0).any()
    # Other values in the masked cells change nothing either.
    shifted = spread_loss(torch.where(mask, log_std, 5.0), torch.where(mask, error, 100.0), mask)
    assert shifted.item() == pytest.approx(clean.item(), rel=1e-6)


def test_spread_loss_of_no_cell_is_zero_and_attached():
    log_std = torch.zeros(1, 1, 3, 3, requires_grad=True)
    loss = spread_loss(log_std, torch.ones(1, 1, 3, 3), torch.zeros(1, 1, 3, 3, dtype=torch.bool))
    assert loss.item() == 0.0 and loss.requires_grad


@pytest.mark.parametrize("shapes", [((2, 1, 4, 4), (2, 1, 4, 5), (2, 1, 4, 4)),
                                    ((2, 1, 4, 4), (2, 1, 4, 4), (1, 1, 4, 4))])
def test_spread_loss_refuses_mismatched_shapes(shapes):
    log_std, error, mask = (torch.zeros(shape) for shape in shapes)
    with pytest.raises(InvalidInputError, match="one shape"):
        spread_loss(log_std, error, mask.bool())


# --- a tiny refinement checkpoint, end to end --------------------------------------

CHANNELS = ("coarse_slope_east", "coarse_slope_north", "coarse_curvature", "coarse_factor", "prior_mask",
            "prior_distance", "sar_ratio", "sar_slope", "local_incidence_angle")
REFINE = {"reference": "coarse_refined", "scale": "coarse_cell", "score_shadow": True, "val_scenes": ["hills-b"],
          "test_scenes": ["hills-c"]}


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """Scenes, a refinement checkpoint with a spread head as trained (``raw``), a calibrated
    copy of it, and the figures of its calibration."""
    folder = tmp_path_factory.mktemp("calibration")
    scenes = simulate_tiny_scenes(folder / "scenes", names=("hills-a", "hills-b", "hills-c"), size=40,
                                  coarse_families=("training",), prior_kinds=("altimeter",),
                                  ground_families=("training",))
    raw = fit_tiny_checkpoint(folder / "scenes", folder / "raw.ckpt", channels=CHANNELS, data_options=REFINE,
                              model="ask_unet", uncertainty=True)
    checkpoint = folder / "calibrated.ckpt"
    shutil.copy(raw, checkpoint)
    # Every scene: the more cells per class, the more classes calibrated (what is checked
    # here is how the figures are stored and applied, not which scenes gave them).
    figures = calibrate_checkpoint(checkpoint, scenes)
    return {"scenes": scenes, "raw": raw, "checkpoint": checkpoint, "figures": figures}


def test_calibration_is_written_into_the_checkpoint(calibrated):
    figures = calibrated["figures"]
    stored = torch.load(calibrated["checkpoint"], map_location="cpu", weights_only=True)["sarheight"]["calibration"]
    assert stored == figures
    assert load_checkpoint(calibrated["checkpoint"]).calibration == figures
    assert load_checkpoint(calibrated["raw"]).calibration is None
    assert figures["scenes"] == [path.stem for path in calibrated["scenes"]]
    assert len(figures["keep"]) == len(figures["std_scale"]) == len(REFINEMENT_CLASSES)
    assert all(0.0 <= keep <= 1.0 for keep in figures["keep"])
    # The spread head is calibrated: at least one class has the cells to scale it.
    assert any(scale != 1.0 for scale in figures["std_scale"])


def test_calibration_twin_from_the_uncalibrated_prediction(calibrated):
    # The same figures from the raw checkpoint's predicted heights and spread on the cells
    # the loss counts.
    member = load_checkpoint(calibrated["raw"])
    corrections, departures, classes, stds = [], [], [], []
    for path in calibrated["scenes"]:
        ds = open_scene(path)
        raw = predict_height(ds, [calibrated["raw"]], progress=False)
        arrays = scene_arrays(ds, member.channels, reference=member.reference, target="height", scale=member.scale,
                              score_shadow=True)
        counted = arrays.loss_mask & np.isfinite(raw["height"].values)
        reference = ds[member.reference].values.astype(np.float64)
        corrections.append((raw["height"].values - reference)[counted])
        departures.append((ds["height"].values - reference)[counted])
        classes.append(refinement_classes(ds)[counted])
        stds.append(raw["height_std"].values.astype(np.float64)[counted])
    twin = calibration_figures(corrections, departures, classes, stds)
    figures = calibrated["figures"]
    assert twin["cells"] == figures["cells"]
    np.testing.assert_allclose(twin["keep"], figures["keep"], atol=2e-3)
    np.testing.assert_allclose(twin["std_scale"], figures["std_scale"], rtol=2e-3)
    np.testing.assert_allclose(twin["rmse_reference"], figures["rmse_reference"], rtol=1e-4)


@pytest.mark.parametrize("index", [0, 5])
def test_prediction_applies_keep_and_std_scale_per_class(calibrated, index):
    ds = open_scene(calibrated["scenes"][index])
    raw = predict_height(ds, [calibrated["raw"]], progress=False)
    out = predict_height(ds, [calibrated["checkpoint"]], progress=False)
    assert out.attrs["calibrated"] == 1 and raw.attrs["calibrated"] == 0
    figures = calibrated["figures"]
    codes = refinement_classes(ds)
    keep = np.asarray(figures["keep"])[codes]
    scale = np.asarray(figures["std_scale"])[codes]
    reference = ds["coarse_refined"].values.astype(np.float64)
    raw_height, height = raw["height"].values.astype(np.float64), out["height"].values.astype(np.float64)
    np.testing.assert_array_equal(np.isnan(height), np.isnan(raw_height))
    assert np.isfinite(height).mean() > 0.5
    np.testing.assert_allclose(height, reference + keep * (raw_height - reference), atol=2e-3, equal_nan=True)
    np.testing.assert_allclose(out["height_std"].values, scale * raw["height_std"].values, rtol=1e-5, atol=1e-6,
                               equal_nan=True)
    # The check is not empty: the calibration changed the map.
    assert not np.allclose(out["height_std"].values, raw["height_std"].values, equal_nan=True)


def test_calibration_without_writing_leaves_the_checkpoint(calibrated, tmp_path):
    copy = tmp_path / "copy.ckpt"
    shutil.copy(calibrated["raw"], copy)
    before = copy.read_bytes()
    figures = calibrate_checkpoint(copy, calibrated["scenes"][:2], write=False)
    assert copy.read_bytes() == before and set(figures["classes"]) == set(REFINEMENT_CLASSES)


def test_a_checkpoint_without_reference_is_refused(calibrated, tmp_path):
    stored = torch.load(calibrated["raw"], map_location="cpu", weights_only=True)
    stored["sarheight"]["reference"] = None
    stored["sarheight"]["scale"] = None
    absolute = tmp_path / "absolute.ckpt"
    torch.save(stored, absolute)
    assert load_checkpoint(absolute).reference is None
    with pytest.raises(InvalidInputError, match="reference"):
        calibrate_checkpoint(absolute, calibrated["scenes"][:1])


def test_calibration_needs_scenes(calibrated):
    with pytest.raises(InvalidInputError, match="no validation scene"):
        calibrate_checkpoint(calibrated["raw"], [])


def test_description_of_a_real_calibration(calibrated):
    figures = calibrated["figures"]
    text = describe_calibration(figures)
    for index, name in enumerate(REFINEMENT_CLASSES):
        assert (name in text) == bool(figures["cells"][index]), name
    assert "within 1 std" in text
