"""One reader of training configurations: :func:`sarheight.training.cli.configured_run`
builds what ``sarheight fit --config`` trains (every hyperparameter, defaults included),
takes command-line overrides, refuses class paths of other packages before any import,
and says clearly what is missing or wrong."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("lightning")

from sarheight.configs import resolve
from sarheight.errors import InvalidInputError, MissingInputError
from sarheight.training.cli import run_cli
from sarheight.training.config_policy import check_arguments
from sarheight.training.configured import configured_run
from tests.support.scenes import write_tiny_scenes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    """Three tiny scenes of 40 x 40 cells."""
    folder = tmp_path_factory.mktemp("scenes")
    write_tiny_scenes(folder, count=3, rows=40, cols=40)
    return folder


def tiny_config(path: Path, scenes: Path, runs: Path) -> Path:
    """A tiny CPU configuration; huber_delta, patience, loss, lr, target and num_workers
    are left out, so that their defaults must agree too."""
    config = {
        "seed_everything": 0,
        "trainer": {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "logger": False,
                    "enable_progress_bar": False, "enable_model_summary": False, "limit_val_batches": 0,
                    "num_sanity_val_steps": 0, "default_root_dir": str(runs)},
        "model": {"model": "unet", "model_options": {"base_channels": 4, "depth": 2}, "scheduler": "none"},
        "data": {"class_path": "sarheight.data.TerrainDataModule",
                 "init_args": {"scenes": str(scenes), "val_scenes": ["s1"], "test_scenes": ["s2"], "tile": 32,
                               "tiles_per_epoch": 8, "batch_size": 4}},
        "checkpoint": {"dirpath": str(runs / "checkpoints"), "every_n_train_steps": 1},
    }
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def fitted(scenes, tmp_path_factory):
    """The configuration, and the checkpoint ``sarheight fit --config`` wrote of it (2 steps)."""
    folder = tmp_path_factory.mktemp("fit")
    config = tiny_config(folder / "tiny.yaml", scenes, folder / "runs")
    assert run_cli("fit", ["--config", str(config), "--trainer.max_steps", "2"]) == 0
    checkpoint = torch.load(folder / "runs" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 2
    return config, checkpoint


def test_configured_run_builds_what_fit_trains(fitted):
    config, checkpoint = fitted
    run = configured_run(config, ["--trainer.max_steps", "2"])
    saved_model, saved_data = checkpoint["hyper_parameters"], checkpoint["datamodule_hyper_parameters"]
    # Every key, the defaults the file leaves out included.
    assert {"huber_delta", "patience", "loss", "lr", "in_channels"} <= set(saved_model)
    assert {"num_workers", "target", "reference", "seed"} <= set(saved_data)
    assert set(run.model.hparams) == set(saved_model) and set(run.datamodule.hparams) == set(saved_data)
    for key, value in saved_model.items():
        assert run.model.hparams[key] == value, key
    for key, value in saved_data.items():
        assert run.datamodule.hparams[key] == value, key
    assert (run.model.hparams["loss"], run.model.hparams["lr"]) == ("l1", 1e-3)
    # The records: plain values, the same as the objects'.
    assert run.init_args["model"] == {k: v for k, v in saved_model.items() if not k.startswith("_")}
    assert run.init_args["data"] == {k: v for k, v in saved_data.items() if not k.startswith("_")}
    assert run.seed == 0 and run.config == config
    options = run.trainer_options
    assert (options["max_steps"], options["max_epochs"], options["accelerator"], options["logger"]) == (2, 1, "cpu",
                                                                                                        False)
    assert yaml.safe_load(run.config_text)["data"]["init_args"]["target"] == "height"


def test_seeding_comes_before_instantiation(fitted):
    config, _ = fitted
    first, again = configured_run(config), configured_run(config)
    other = configured_run(config, ["--seed_everything", "1"])
    weights = [run.model.state_dict() for run in (first, again, other)]
    assert all(torch.equal(weights[0][key], weights[1][key]) for key in weights[0])
    assert not all(torch.equal(weights[0][key], weights[2][key]) for key in weights[0])
    assert other.seed == 1


def test_overrides_reach_the_objects(fitted):
    config, _ = fitted
    channels = ["sar_reconstructed", "prior_height"]
    run = configured_run(config, ["--data.channels", "[sar_reconstructed, prior_height]", "--model.huber_delta", "2.5",
                                  "--trainer.max_epochs", "3"])
    assert run.datamodule.channels == channels and run.init_args["data"]["channels"] == channels
    # The model's channels follow the data module's, as in sarheight fit.
    assert run.model.hparams["in_channels"] == 2 and run.init_args["model"]["in_channels"] == 2
    assert run.model.hparams["huber_delta"] == 2.5 and run.trainer_options["max_epochs"] == 3


def test_the_shipped_refinement_configuration_reads(scenes):
    run = configured_run(ROOT / "sarheight" / "configs" / "terrain_refine.yaml", ["--data.scenes", str(scenes)])
    shipped = yaml.safe_load((ROOT / "sarheight" / "configs" / "terrain_refine.yaml").read_text())
    for key, value in shipped["model"].items():
        assert run.init_args["model"][key] == value, key
    for key, value in shipped["data"]["init_args"].items():
        if key != "scenes":
            assert run.init_args["data"][key] == value, key


@pytest.mark.parametrize("how", ["class_path", "bare string", "list of strings", "embedded", "nested file",
                                 "other suffix"])
def test_a_class_of_another_package_is_refused_before_any_import(tmp_path, monkeypatch, scenes, how):
    marker = tmp_path / "imported"
    (tmp_path / "pwnmod.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
                                        "class Evil:\n    pass\n")
    # Importable, as it would be beside a configuration run with python -m sarheight.
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load(tiny_config(tmp_path / "base.yaml", scenes, tmp_path / "runs").read_text())
    name = "evil.yaml"
    if how == "class_path":
        config["trainer"]["callbacks"] = [{"class_path": "pwnmod.Evil"}]
    elif how == "bare string":
        config["data"] = "pwnmod.Evil"
    elif how == "list of strings":
        config["trainer"]["callbacks"] = ["pwnmod.Evil"]
    elif how == "embedded":
        config["trainer"]["logger"] = '{"class_path": "pwnmod.Evil"}'
    elif how == "nested file":
        (tmp_path / "data.txt").write_text(yaml.safe_dump({"class_path": "pwnmod.Evil"}))
        config["data"] = "data.txt"
    else:
        config["trainer"]["callbacks"] = [{"class_path": "pwnmod.Evil"}]
        name = "evil.cfg"
    (tmp_path / name).write_text(yaml.safe_dump(config))
    with pytest.raises(InvalidInputError, match=r"pwnmod\.Evil"):
        configured_run(tmp_path / name)
    # The command refuses it alike, and its short option too.
    for arguments in (["--config", name], ["-c", name], [f"-c{name}"]):
        with pytest.raises(InvalidInputError, match=r"pwnmod\.Evil"):
            run_cli("fit", arguments)
    assert not marker.exists() and "pwnmod" not in sys.modules


def test_an_override_naming_another_package_is_refused(fitted, tmp_path, monkeypatch):
    config, _ = fitted
    (tmp_path / "pwnmod.py").write_text("class Evil:\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for overrides in (["--trainer.callbacks+=pwnmod.Evil"], ["--trainer", "{logger: pwnmod.Evil}"],
                      ["--data", "pwnmod.Evil"]):
        with pytest.raises(InvalidInputError, match=r"pwnmod\.Evil"):
            configured_run(config, overrides)
    assert "pwnmod" not in sys.modules


def test_file_names_shaped_like_class_paths_stay_allowed(scenes):
    # s0.nc is dotted like a class path, but no module s0 can be imported.
    check_arguments(["--config", str(ROOT / "sarheight" / "configs" / "terrain_unet.yaml"), "--data.scenes", "s0.nc",
                     "--data.scenes", str(scenes / "s0.nc"), "--trainer.max_time", "00:00:01:00"])
    for shipped in sorted((ROOT / "sarheight" / "configs").glob("*.yaml")):
        check_arguments(["--config", str(shipped)])


def test_missing_or_bad_configurations_are_clear_errors(fitted, tmp_path, monkeypatch):
    config, _ = fitted
    with pytest.raises(MissingInputError, match=r"nope\.yaml.*no such file, nor a shipped configuration"):
        configured_run(tmp_path / "nope.yaml")
    with pytest.raises(InvalidInputError, match="is a folder"):
        configured_run(tmp_path)
    # A folder named as a shipped configuration (a study's output) does not hide it.
    (tmp_path / "terrain_stack").mkdir()
    monkeypatch.chdir(tmp_path)
    assert resolve("terrain_stack") == ROOT / "sarheight" / "configs" / "terrain_stack.yaml"
    (tmp_path / "broken.yaml").write_text("model: [unclosed\n")
    with pytest.raises(InvalidInputError, match="not readable YAML"):
        configured_run(tmp_path / "broken.yaml")
    # The parser's own refusals, as one line and not an exit of the process.
    for overrides, message in ((["--model.loss", "cubic"], "model.loss"), (["--model.nope", "1"], "--model.nope"),
                               (["--data.tile", "7"], "data.tile"), (["--ckpt_path", "last"], "--ckpt_path")):
        with pytest.raises(InvalidInputError, match=message) as info:
            configured_run(config, overrides)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="task"):
        configured_run(config, task="roofs")


@pytest.mark.parametrize("tokens",
                         [["--config", "terrain_refine"], ["--config=terrain_refine"], ["-c", "terrain_refine"],
                                    ["-cterrain_refine"], ["-c=terrain_refine"], ["--conf", "terrain_refine"],
                                    ["--co=terrain_refine.yaml"]])
def test_every_form_of_the_config_option_finds_a_shipped_configuration(tokens):
    """The forms argparse reads as --config (the ones the import checks read) name a
    shipped configuration by name alike; other options are left as they are."""
    from sarheight.configs import FOLDER, resolve_arguments

    resolved = resolve_arguments([*tokens, "--data.scenes", "terrain_refine"])
    assert str(FOLDER / "terrain_refine.yaml") in "".join(resolved[:len(tokens)])
    assert resolved[len(tokens):] == ["--data.scenes", "terrain_refine"]
