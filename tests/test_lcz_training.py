"""Tests of sarheight.training.classification and sarheight.training.lcz: the scores of a
confusion matrix worked by hand, the classification module's normalisation, losses and
checkpoint, the independent sum, and the study's grid, resumable sweep and outputs on
tiny So2Sat LCZ42 files."""

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the LCZ study needs the ml extra (PyTorch)")
pytest.importorskip("lightning", reason="the LCZ study needs the ml extra (Lightning)")

from sarheight.errors import InvalidInputError  # noqa: E402
from sarheight.training.classification import LCZClassification, classification_scores  # noqa: E402
from sarheight.training.lcz import Configuration, configurations, parse_stages  # noqa: E402

SMALL = (8, 8, 8, 8, 16, 16)


def test_scores_of_a_confusion_matrix_by_hand():
    # rows true, columns predicted; 3 classes, 20 samples
    matrix = np.array([[5, 1, 0],
                       [2, 6, 2],
                       [0, 0, 4]])
    scores = classification_scores(matrix)
    assert scores["samples"] == 20
    assert scores["oa"] == pytest.approx(15 / 20)
    assert scores["per_class"] == pytest.approx([5 / 6, 6 / 10, 4 / 4])
    assert scores["aa"] == pytest.approx((5 / 6 + 0.6 + 1.0) / 3)
    # p_e = sum_k (row_k / n) (col_k / n): rows 6, 10, 4; columns 7, 7, 6
    expected = (6 * 7 + 10 * 7 + 4 * 6) / 400
    assert scores["kappa"] == pytest.approx((0.75 - expected) / (1 - expected))


def test_scores_leave_out_classes_without_samples_and_handle_perfect_and_chance():
    matrix = np.diag([3, 0, 2])
    scores = classification_scores(matrix)
    assert math.isnan(scores["per_class"][1])
    assert scores["aa"] == 1.0 and scores["oa"] == 1.0 and scores["kappa"] == 1.0
    # Predictions independent of the truth: kappa 0.
    chance = np.outer([1, 1], [1, 1]) * 5
    assert classification_scores(chance)["kappa"] == pytest.approx(0.0)
    assert math.isnan(classification_scores(np.zeros((2, 2)))["oa"])
    with pytest.raises(InvalidInputError, match="square"):
        classification_scores(np.zeros((2, 3)))


def _batch(n=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 17
    patches = torch.randn(n, 18, 32, 32, generator=generator) * 50 + 200
    patches += labels[:, None, None, None].float() * 5  # class-dependent: learnable
    return patches, labels


def test_the_module_normalises_with_its_statistics_and_weights_the_classes():
    module = LCZClassification("sar+optical", 0, widths=SMALL).eval()
    patches, labels = _batch()
    mean = patches.mean(dim=(0, 2, 3))
    std = patches.std(dim=(0, 2, 3))
    weights = np.linspace(0.5, 2.0, 17)
    module.set_statistics(mean.tolist(), std.tolist(), weights)
    normalised = module.normalise(patches)
    assert normalised.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    patches[0, 0, 0, 0] = float("nan")
    assert module.normalise(patches)[0, 0, 0, 0] == 0
    loss, _ = module._loss(patches, labels)
    logits = module.model(module.normalise(patches))
    expected = torch.nn.functional.cross_entropy(logits, labels, weight=torch.tensor(weights, dtype=torch.float32))
    torch.testing.assert_close(loss, expected)
    with pytest.raises(InvalidInputError, match="18 finite values"):
        module.set_statistics([0.0] * 3, [1.0] * 18, weights)


def test_the_independent_sum_trains_each_branch_on_its_own_loss():
    """With the independent sum, a branch's gradient does not depend on the other branch:
    the same as training it alone."""
    torch.manual_seed(0)
    module = LCZClassification("sar+optical", 6, "independent", widths=SMALL).train()
    patches, labels = _batch()
    module.set_statistics([200.0] * 18, [50.0] * 18, np.ones(17))
    torch.manual_seed(1)
    loss, _ = module._loss(patches, labels)
    loss.backward()
    first = [p.grad.clone() for p in module.model.branches[0].parameters()]
    # Change the optical channels: the SAR branch's gradient stays.
    module.zero_grad()
    changed = patches.clone()
    changed[:, 8:] = torch.randn_like(changed[:, 8:]) * 50 + 200
    torch.manual_seed(1)
    module._loss(changed, labels)[0].backward()
    for a, p in zip(first, module.model.branches[0].parameters(), strict=True):
        torch.testing.assert_close(a, p.grad)
    # A dependent sum couples them through the sum.
    torch.manual_seed(0)
    dependent = LCZClassification("sar+optical", 6, "dependent", widths=SMALL).train()
    dependent.set_statistics([200.0] * 18, [50.0] * 18, np.ones(17))
    grads = []
    for x in (patches, changed):
        dependent.zero_grad()
        torch.manual_seed(1)
        dependent._loss(x, labels)[0].backward()
        grads.append([p.grad.clone() for p in dependent.model.branches[0].parameters()])
    assert any(not torch.allclose(a, b) for a, b in zip(*grads, strict=True))


def test_grid_of_the_study():
    rows = configurations()
    names = [row.name for row in rows]
    assert names[:2] == ["sar", "optical"]
    assert [f"sar+optical_stage{s}" for s in range(7)] == names[2:9]
    assert names[9] == "sar+optical_independent_sum"
    assert names[-1] == "physical_independent_sum" and len(rows) == 2 + 2 * 8
    assert [row.name for row in configurations(["physical"], [0, 3])] == ["physical_stage0", "physical_stage3"]
    assert Configuration("physical", 6).label == "physical groups, dependent sum"
    assert parse_stages("0-2,5") == [0, 1, 2, 5]
    with pytest.raises(InvalidInputError, match="splits"):
        configurations(["radar"])
    with pytest.raises(InvalidInputError, match="stages"):
        configurations(["sar+optical"], [9])
    with pytest.raises(InvalidInputError, match="--stages"):
        parse_stages("a-b")


def test_scores_json_round_trip():
    scores = classification_scores(np.eye(3) * 4)
    assert json.loads(json.dumps(scores))["oa"] == 1.0
