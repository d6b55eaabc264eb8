"""Tests of sarheight.training.classification and sarheight.studies.lcz: the scores of a
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
from sarheight.studies.lcz import Configuration, configurations, parse_stages  # noqa: E402
from sarheight.training.classification import LCZClassification, classification_scores  # noqa: E402

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
    (normalised,) = module.normalise(patches)
    assert normalised.mean(dim=(0, 2, 3)).abs().max() < 1e-4
    patches[0, 0, 0, 0] = float("nan")
    assert module.normalise(patches)[0][0, 0, 0, 0] == 0
    loss, _ = module._loss(patches, labels)
    logits = module.model(*module.normalise(patches))
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


# --------------------------------------------------------------------------------------
# the sweep end to end on tiny files in the So2Sat layout
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def so2sat(tmp_path_factory):
    pytest.importorskip("h5py", reason="the So2Sat reader needs h5py (ml extra)")
    from tests.support.scenes import write_tiny_so2sat

    return write_tiny_so2sat(tmp_path_factory.mktemp("so2sat"), {"training.h5": 68, "validation.h5": 34,
                                                                 "testing.h5": 34})


@pytest.fixture(scope="module")
def sweep(so2sat, tmp_path_factory):
    from sarheight.studies.lcz import run_sweep

    out = tmp_path_factory.mktemp("sweep")
    results = run_sweep(so2sat, out, splits=["sar", "optical", "sar+optical"], stages=[0, 6], seeds=2,
                        max_epochs=2, patience=1, batch_size=16, widths=SMALL, accelerator="cpu", progress=False)
    return out, results


def test_sweep_writes_the_table_figures_and_every_run(sweep):
    out, results = sweep
    names = ["sar", "optical", "sar+optical_stage0", "sar+optical_stage6", "sar+optical_independent_sum"]
    assert list(results["rows"]) == names
    for name in names:
        row = results["rows"][name]
        assert len(row["runs"]) == 2 and [run["seed"] for run in row["runs"]] == [0, 1]
        for run in row["runs"]:
            assert 0 <= run["oa"] <= 1 and 0 <= run["aa"] <= 1 and -1 <= run["kappa"] <= 1
        assert np.array(row["confusion_sum"]).sum() == 2 * 34  # every test patch, both seeds
        assert row["std"]["oa"] >= 0
    for name in ("sar", "optical", "sar+optical_stage0", "sar+optical_stage6"):
        for seed in (0, 1):
            run = out / "runs" / name / f"seed{seed}"
            assert (run / "best.ckpt").exists() and (run / "last.ckpt").exists() and (run / "scores.json").exists()
    saved = json.loads((out / "lcz_sweep.json").read_text())
    assert saved["rows"]["sar"]["mean"]["oa"] == results["rows"]["sar"]["mean"]["oa"]
    table = (out / "lcz_sweep.md").read_text()
    assert "SAR \\| optical, independent sum" in table and "**" in table and "compact_high_rise" in table
    for figure in ("lcz_sweep.png", "confusion.png"):
        assert (out / figure).read_bytes()[:4] == b"\x89PNG"


def test_the_module_normalises_the_data_modules_batches_once(so2sat):
    """The data module's batches are raw; the module's normalisation with the data
    module's statistics gives each channel zero mean and unit variance over the training
    rows (normalised twice, the S2 reflectances would be blown up by their small std)."""
    from sarheight.data import So2SatDataModule

    data = So2SatDataModule(str(so2sat), batch_size=68)
    data.setup()
    module = LCZClassification("sar+optical", 0, widths=SMALL)
    module.set_statistics(data.statistics.mean, data.statistics.std, data.class_weights)
    (patches, _), = list(data.train_dataloader())
    normalised = module.normalise(patches)[0].double()
    torch.testing.assert_close(normalised.mean(dim=(0, 2, 3)), torch.zeros(18, dtype=torch.float64),
                               atol=1e-4, rtol=0)
    torch.testing.assert_close(normalised.std(dim=(0, 2, 3), unbiased=False), torch.ones(18, dtype=torch.float64),
                               atol=1e-4, rtol=0)


def test_the_module_learns_the_tiny_classes(so2sat):
    """Classes with separated channel means (a nearest-centroid rule gets them all): sixty
    Adam steps take the test accuracy far above the 1/17 of chance, a check that labels,
    channels, normalisation and loss line up end to end."""
    from sarheight.data import So2SatDataModule

    data = So2SatDataModule(str(so2sat), batch_size=17)
    data.setup()
    torch.manual_seed(0)
    module = LCZClassification("sar+optical", 3, widths=(16, 16, 16, 16, 32, 64))
    module.set_statistics(data.statistics.mean, data.statistics.std, data.class_weights)
    optimiser = module.configure_optimizers()["optimizer"]
    for _ in range(15):
        module.train()
        for patches, labels in data.train_dataloader():
            optimiser.zero_grad()
            module._loss(patches, labels)[0].backward()
            optimiser.step()
    module.eval()
    with torch.no_grad():
        right = sum(int((module(x).argmax(1) == y).sum()) for x, y in data.test_dataloader())
    assert right / 34 > 0.4


def test_the_sweep_resumes_without_training_again(sweep, so2sat):
    from sarheight.studies.lcz import run_sweep

    out, results = sweep
    stamps = {path: path.stat().st_mtime_ns for path in (out / "runs").rglob("*.ckpt")}
    again = run_sweep(so2sat, out, splits=["sar", "optical", "sar+optical"], stages=[0, 6], seeds=2,
                      max_epochs=2, patience=1, batch_size=16, widths=SMALL, accelerator="cpu", progress=False)
    assert {path: path.stat().st_mtime_ns for path in (out / "runs").rglob("*.ckpt")} == stamps
    assert again["rows"] == results["rows"]


def test_combine_of_the_single_sensor_networks_is_the_independent_sum(sweep, so2sat, tmp_path):
    from sarheight.cli import main

    out, results = sweep
    written = tmp_path / "sum.json"
    status = main(["lcz", "combine", str(out / "runs/sar/seed1/best.ckpt"), str(out / "runs/optical/seed1/best.ckpt"),
                   "--data", str(so2sat), "--out", str(written), "--quiet"])
    assert status == 0
    scores = json.loads(written.read_text())
    run = results["rows"]["sar+optical_independent_sum"]["runs"][1]
    assert scores["oa"] == run["oa"] and scores["aa"] == run["aa"] and scores["samples"] == 34


def test_a_checkpoint_classifies_raw_patches_alone(sweep, so2sat):
    from sarheight.data.so2sat import So2SatLCZ42
    from sarheight.training.trained import load_checkpoint

    out, results = sweep
    model = load_checkpoint(out / "runs/optical/seed0/best.ckpt", kind="lcz")
    assert model.model.groups == ((8, 9, 10, 11, 12, 13, 14, 15, 16, 17),)
    assert model.input_std.min() > 0 and not torch.all(model.input_mean == 0)
    test = So2SatLCZ42(so2sat, "testing")
    patches = torch.stack([test[i][0] for i in range(len(test))])
    labels = torch.stack([test[i][1] for i in range(len(test))])
    predicted = model.predict_proba(patches).argmax(1)
    assert float((predicted == labels).float().mean()) == pytest.approx(results["rows"]["optical"]["runs"][0]["oa"])
    with pytest.raises(Exception, match="does not exist"):
        load_checkpoint(out / "missing.ckpt", kind="lcz")
    from sarheight import sample_data

    with pytest.raises(InvalidInputError, match="not a checkpoint of an LCZ classifier"):
        load_checkpoint(sample_data.path("terrain_refine_demo.ckpt"), kind="lcz")

    # Weights of another classifier under these hyper-parameters: named, not a traceback.
    mixed = torch.load(out / "runs/optical/seed0/best.ckpt", weights_only=True)
    mixed["state_dict"] = torch.load(out / "runs/sar/seed0/best.ckpt", weights_only=True)["state_dict"]
    torch.save(mixed, out / "mixed.ckpt")
    with pytest.raises(InvalidInputError, match=r"do not fit the classifier .*split 'optical'"):
        load_checkpoint(out / "mixed.ckpt", kind="lcz")


def test_a_truncated_so2sat_file_is_named(so2sat, tmp_path):
    from sarheight.data.so2sat import So2SatLCZ42

    cut = tmp_path / "cut"
    cut.mkdir()
    for name in ("training.h5", "validation.h5", "testing.h5"):
        data = (so2sat / name).read_bytes()
        (cut / name).write_bytes(data[: len(data) // 2] if name == "testing.h5" else data)
    with pytest.raises(InvalidInputError,
                       match=r"testing.h5' cannot be read .*truncated or damaged; download it again"):
        So2SatLCZ42(cut, "testing")


def test_sweep_command_line_and_clear_errors(so2sat, tmp_path, capsys):
    from sarheight.cli import main

    status = main(["lcz", "sweep", "--data", str(so2sat), "--splits", "physical", "--stages", "3", "--seeds", "1",
                   "--max-epochs", "1", "--limit", "20", "--accelerator", "cpu", "--out", str(tmp_path / "cli"),
                   "--quiet"])
    assert status == 0
    assert (tmp_path / "cli" / "lcz_sweep.md").exists()
    assert main(["lcz", "sweep", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x"), "--quiet"]) == 2
    assert main(["lcz", "sweep", "--data", str(so2sat), "--splits", "radar", "--out", str(tmp_path / "y"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "splits ['radar']" in err


def test_lightning_cli_trains_one_configuration(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    import h5py

    from sarheight.cli import main
    from sarheight.data.so2sat import LAYOUT, check_file

    config = Path(__file__).resolve().parents[2] / "sarheight" / "configs" / "lcz_fusion.yaml"
    monkeypatch.chdir(tmp_path)
    # The README's trial: tiny files in the dataset's exact layout, then the configuration.
    assert main(["lcz", "sample", "--out", "so2sat-tiny", "--rows", "40"]) == 0
    assert "not for results" in capsys.readouterr().out
    so2sat = tmp_path / "so2sat-tiny"
    assert [check_file(so2sat / name) for name in ("training.h5", "validation.h5", "testing.h5")] == [40, 20, 20]
    with h5py.File(so2sat / "training.h5") as file:
        assert {name: (file[name].shape[1:], file[name].dtype) for name in LAYOUT} == {
            name: (tail, np.float64) for name, tail in LAYOUT.items()}
    status = main(["lcz", "fit", "--config", str(config), "--data.root", str(so2sat), "--trainer.max_epochs", "1",
                   "--model.widths", "[8, 8, 8, 8, 16, 16]", "--model.split", "physical", "--model.stage", "2",
                   "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"])
    assert status == 0
    assert (tmp_path / "runs/lcz_fusion/checkpoints/last.ckpt").exists()
    best = list((tmp_path / "runs/lcz_fusion").rglob("best-*.ckpt"))
    assert len(best) == 1
    status = main(["lcz", "test", "--config", str(config), "--data.root", str(so2sat), "--ckpt_path", str(best[0]),
                   "--model.widths", "[8, 8, 8, 8, 16, 16]", "--model.split", "physical", "--model.stage", "2",
                   "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false"])
    assert status == 0


def test_lcz_fit_refuses_a_model_too_wide_for_the_memory(so2sat, tmp_path, monkeypatch, capsys):
    """Widths that ask for hundreds of GiB of weights: one line with the figure before torch
    tries to allocate them."""
    from sarheight.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["lcz", "fit", "--config", "lcz_fusion", "--data.root", str(so2sat),
                 "--model.widths", "[65536, 65536, 65536, 65536, 65536, 65536]", "--trainer.max_epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "a FusionNet of" in err and "needs about" in err and "give narrower model.widths" in err, err
