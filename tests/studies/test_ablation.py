"""The terrain-height ablation on tiny scenes: every configuration trains, the baselines
and the models are scored on the same held-out cells, the run resumes, and the table,
JSON and figure are written."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("lightning")

from sarheight.cli import main
from sarheight.errors import InvalidInputError
from sarheight.studies.ablation import experiments, run_ablation
from tests.support.scenes import write_tiny_scene


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    for seed in range(3):
        write_tiny_scene(folder / f"s{seed}.nc", rows=48, cols=48, seed=seed, other_pass=True)
    return folder


def test_ablation_trains_every_configuration_and_resumes(scenes, tmp_path):
    options = {"test_dems": ["sinusoids-2"], "seeds": 2, "variants": ("unet",), "max_epochs": 1, "tiles_per_epoch": 4,
               "batch_size": 2,
               "tile": 32, "base_channels": 4, "depth": 2, "progress": False}
    results = run_ablation(scenes, tmp_path, **options)
    cell = results["cells"]["random_c3"]
    assert cell["test_scenes"] == ["s2"] and results["train_dems"] == ["sinusoids-0", "sinusoids-1"]
    assert set(cell["experiments"]) == {e.name for e in experiments(("unet",))} == {
        "unet_geocoded", "unet_reconstructed", "unet_reconstructed_coarse", "unet_reconstructed_both_passes"}
    assert len(experiments()) == 10  # the four variants on both SAR kinds, ASK-UNet + coarse, + both passes
    for experiment in cell["experiments"].values():
        assert len(experiment["runs"]) == 2
        assert np.isfinite(experiment["mean"]["overall"]) and experiment["std"]["overall"] >= 0
    # The baselines are scored on the same cells: the priors-only one is the scene's own.
    assert cell["baselines"]["priors-only interpolation"]["overall"] > 0
    assert set(cell["reductions"]["reconstructed_vs_geocoded"]) == {"unet"}
    for name in ("ablation.md", "ablation.json", "ablation.png"):
        assert (tmp_path / name).stat().st_size > 0
    table = (tmp_path / "ablation.md").read_text()
    assert "U-Net, reconstructed SAR + coarse DEM" in table and "priors-only interpolation" in table
    # A second run trains nothing: every score is there.
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.glob("runs/**/last.ckpt")}
    assert len(stamps) == 8
    again = run_ablation(scenes, tmp_path, **options)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("runs/**/last.ckpt")} == stamps
    assert json.loads((tmp_path / "ablation.json").read_text())["cells"] == json.loads(json.dumps(again["cells"]))


def test_ablation_refuses_unknown_held_out_dems(scenes, tmp_path):
    with pytest.raises(InvalidInputError, match="held-out DEMs"):
        run_ablation(scenes, tmp_path, test_dems=["nowhere"], progress=False)
    with pytest.raises(InvalidInputError, match="no DEM is left"):
        run_ablation(scenes, tmp_path, test_dems=["sinusoids-0", "sinusoids-1", "sinusoids-2"], progress=False)


def test_ablate_command(scenes, tmp_path):
    out = tmp_path / "study"
    status = main(["terrain", "ablate", "--scenes", str(scenes), "--out", str(out), "--test-dem", "sinusoids-2",
                   "--seeds", "1", "--max-epochs", "1", "--tiles-per-epoch", "2", "--batch-size", "2", "--tile", "32",
                   "--base-channels", "4", "--depth", "2", "--variant", "unet", "-q"])
    assert status == 0 and (out / "ablation.md").exists()


def test_a_study_training_resumes_from_its_last_checkpoint_and_shows_its_steps(scenes, tmp_path, capsys):
    import lightning as L
    import torch

    from sarheight.data import TerrainDataModule
    from sarheight.studies.runs import train_run
    from sarheight.training import PixelRegression

    def module_and_data():
        L.seed_everything(0, verbose=False)
        data = TerrainDataModule(str(scenes), val_scenes=["s1"], test_scenes=["s2"], tile=32, tiles_per_epoch=8,
                                 batch_size=2)
        module = PixelRegression(model="unet", model_options={"base_channels": 4, "depth": 2},
                                 in_channels=data.in_channels, scheduler="none")
        trained = []
        step = module.training_step

        def counted(*args, **kwargs):
            trained.append(1)
            return step(*args, **kwargs)

        module.training_step = counted
        return module, data, trained

    # An interrupted study: one epoch of two done.
    module, data, trained = module_and_data()
    last = train_run(module, data, tmp_path / "run", max_epochs=1, steps_per_epoch=4, accelerator="cpu").last
    assert torch.load(last, weights_only=True)["global_step"] == 4 and len(trained) == 4
    capsys.readouterr()
    module, data, trained = module_and_data()
    last = train_run(module, data, tmp_path / "run", max_epochs=2, steps_per_epoch=4, accelerator="cpu",
                     progress=True, description="unet seed 0").last
    assert torch.load(last, weights_only=True)["global_step"] == 8 and len(trained) == 4  # the rest only
    assert "unet seed 0" in capsys.readouterr().err
