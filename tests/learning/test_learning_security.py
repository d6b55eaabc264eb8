"""No code runs from a checkpoint or a configuration: planted checkpoints on every resume
path, ``--weights_only false``, ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``, and class paths of
other packages (a ``pwnmod.py`` beside the configuration)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

pytest.importorskip("lightning")

from sarheight.cli import main
from sarheight.errors import InvalidInputError
from sarheight.training.checkpoints import AtomicCheckpointIO
from sarheight.training.config_policy import check_arguments
from tests.support.scenes import write_tiny_scenes

ROOT = Path(__file__).resolve().parents[2]


class Planted:
    """A pickle that, loaded with weights_only=False, writes a file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def plant(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {}, "epoch": 0, "global_step": 0, "payload": Planted(marker)}, path)
    return path


def test_the_checkpoint_io_reads_data_only(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    planted = plant(tmp_path / "last.ckpt", marker)
    io = AtomicCheckpointIO()
    with pytest.raises(InvalidInputError, match="never loads"):
        io.load_checkpoint(planted)
    with pytest.raises(InvalidInputError, match="weights_only=True"):
        io.load_checkpoint(planted, weights_only=False)
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(InvalidInputError, match="never loads"):
        io.load_checkpoint(planted)
    assert not marker.exists()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(planted.read_bytes()[:200])
    with pytest.raises(InvalidInputError, match="not a complete PyTorch checkpoint"):
        io.load_checkpoint(truncated)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scenes")
    write_tiny_scenes(folder, count=3, rows=40, cols=40)
    return folder


def _fit(tmp_path: Path, scenes: Path, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "sarheight", "fit", "--config",
               str(ROOT / "sarheight" / "configs" / "terrain_unet.yaml"),
               "--data.scenes", str(scenes), "--data.tile", "32", "--data.tiles_per_epoch", "4",
               "--data.batch_size", "2", "--trainer.max_epochs", "1", "--model.model_options.base_channels", "4",
               "--trainer.enable_progress_bar", "false", *extra]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("how", ["plain", "weights_only false", "environment"])
def test_a_planted_last_checkpoint_runs_no_code_on_resume(tmp_path, scenes, how):
    marker = tmp_path / "ran"
    plant(tmp_path / "runs" / "terrain_unet" / "checkpoints" / "last.ckpt", marker)
    extra = ["--ckpt_path", "last"] + (["--weights_only", "false"] if how == "weights_only false" else [])
    done = _fit(tmp_path, scenes, *extra, env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"} if how == "environment"
                else None)
    assert done.returncode == 2, done.stderr[-2000:]
    assert not marker.exists()
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line.startswith("sarheight fit: error:") and any(
        word in last_line for word in ("weights_only", "never", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"))


def test_class_paths_of_other_packages_are_never_imported(tmp_path, scenes):
    marker = tmp_path / "imported"
    (tmp_path / "pwnmod.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
                                        "class Evil:\n    pass\n")
    config = yaml.safe_load((ROOT / "sarheight" / "configs" / "terrain_unet.yaml").read_text())
    config["trainer"]["callbacks"].append({"class_path": "pwnmod.Evil"})
    (tmp_path / "evil.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run([sys.executable, "-m", "sarheight", "fit", "--config", "evil.yaml", "--data.scenes",
                           str(scenes)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "pwnmod.Evil" in done.stderr and not marker.exists(), done.stderr[-2000:]
    for arguments in (["--data", "pwnmod.Evil"], ["--data.class_path=pwnmod.Evil"],
                      ["--trainer.callbacks+=pwnmod.Evil"], ["--trainer.logger", '{"class_path": "pwnmod.Evil"}']):
        with pytest.raises(InvalidInputError, match="may only name classes"):
            check_arguments(arguments)
    # The classes of sarheight, torch and Lightning, and short names, stay allowed.
    check_arguments(["--data", "sarheight.data.TerrainDataModule", "--trainer.callbacks+=LearningRateMonitor",
                     "--trainer.logger.class_path", "lightning.pytorch.loggers.CSVLogger",
                     "--config", str(ROOT / "sarheight" / "configs" / "terrain_refine.yaml")])
    assert main(["fit", "--config", str(tmp_path / "evil.yaml")]) == 2
    assert not marker.exists()


# Silent NaN, and checkpoint metadata that is not trusted.


def test_a_diverging_training_stops_and_keeps_the_good_checkpoint(tmp_path, scenes):
    done = _fit(tmp_path, scenes)
    assert done.returncode == 0, done.stderr[-2000:]
    last = tmp_path / "runs" / "terrain_unet" / "checkpoints" / "last.ckpt"
    good = last.read_bytes()
    diverged = _fit(tmp_path, scenes, "--model.lr", "1e12", "--model.scheduler", "none", "--trainer.max_epochs", "3",
                    "--checkpoint.every_n_train_steps", "1")
    assert diverged.returncode == 2, diverged.stderr[-2000:]
    assert "the training diverged" in diverged.stderr or "not finite" in diverged.stderr
    assert last.read_bytes() == good
    nothing = _fit(tmp_path, scenes, "--trainer.max_epochs", "0")
    assert nothing.returncode == 2 and "nothing would be trained" in nothing.stderr


def test_checkpoint_metadata_is_bounded_and_checked(tmp_path, scenes):
    from sarheight.training import load_checkpoint
    from tests.support.scenes import fit_tiny_checkpoint

    path = fit_tiny_checkpoint(scenes, tmp_path / "good.ckpt")
    load_checkpoint(path)
    original = path.read_bytes()

    def altered(name: str, change) -> Path:
        checkpoint = torch.load(path, weights_only=True)
        change(checkpoint)
        torch.save(checkpoint, tmp_path / name)
        return tmp_path / name

    cases = {
        "deep.ckpt": (lambda c: c["sarheight"]["model_config"].update(depth=10**6), "beyond what sarheight trains"),
        "wide.ckpt": (lambda c: c["sarheight"]["model_config"].update(base_channels=65536), "beyond what"),
        "other.ckpt": (lambda c: c["sarheight"]["model_config"].update(base_channels=8), "describes a model of"),
        "std0.ckpt": (lambda c: c["sarheight"].update(input_std=[0.0] * len(c["sarheight"]["input_std"])),
                      "statistics"),
        "nan_mean.ckpt": (lambda c: c["sarheight"].update(
            input_mean=[float("nan")] * len(c["sarheight"]["input_mean"])),
                          "statistics"),
        "nan_weights.ckpt": (lambda c: c["state_dict"][next(k for k in c["state_dict"] if k.endswith("weight"))]
                             .fill_(float("nan")), "not finite"),
    }
    for name, (change, message) in cases.items():
        with pytest.raises(InvalidInputError, match=message):
            load_checkpoint(altered(name, change))
    assert path.read_bytes() == original


# Code from any depth of a configuration: the import-path policy decides before any import.


def _marker_module(folder: Path, name: str = "pwnmod") -> Path:
    """A module beside the run that, imported, leaves a file: it must never be."""
    marker = folder / f"{name}_imported"
    (folder / f"{name}.py").write_text(f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
                                       "class Evil:\n    pass\n\ndef hook(*args, **kwargs):\n    pass\n")
    return marker


def _config(tmp_path: Path, edit) -> Path:
    config = yaml.safe_load((ROOT / "sarheight" / "configs" / "terrain_unet.yaml").read_text())
    edit(config)
    path = tmp_path / "shared.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _refused(done: subprocess.CompletedProcess, *markers: Path) -> str:
    assert done.returncode == 2, done.stderr[-3000:]
    assert not any(marker.exists() for marker in markers), done.stderr[-3000:]
    lines = done.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("sarheight fit: error:"), done.stderr[-3000:]
    return lines[-1]


def _fit_config(tmp_path: Path, scenes: Path, config: Path, *extra: str, env: dict | None = None
                ) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "sarheight", "fit", "--config", str(config), "--data.scenes", str(scenes),
               "--data.tile", "32", "--data.tiles_per_epoch", "4", "--data.batch_size", "2",
               "--trainer.max_epochs", "1", "--model.model_options.base_channels", "4",
               "--trainer.enable_progress_bar", "false", *extra]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path),
                                                                                   os.environ.get("PYTHONPATH")])),
                               **(env or {})})


@pytest.mark.parametrize("route", ["config", "command line", "strategy"])
def test_the_safe_checkpoint_io_cannot_be_replaced(tmp_path, scenes, route):
    marker = tmp_path / "ran"
    plant(tmp_path / "runs" / "terrain_unet" / "checkpoints" / "last.ckpt", marker)
    unsafe = {"class_path": "lightning.pytorch.plugins.io.TorchCheckpointIO"}

    def edit(config):
        config["ckpt_path"] = "last"
        if route == "config":
            config["trainer"]["plugins"] = [unsafe]
            config["weights_only"] = False
        elif route == "strategy":
            config["trainer"]["strategy"] = {"class_path": "lightning.pytorch.strategies.SingleDeviceStrategy",
                                             "init_args": {"device": "cpu", "checkpoint_io": unsafe}}

    extra = (["--trainer.plugins", "lightning.pytorch.plugins.io.TorchCheckpointIO"]
             if route == "command line" else [])
    line = _refused(_fit_config(tmp_path, scenes, _config(tmp_path, edit), *extra,
                                env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "0"}), marker)
    assert "TorchCheckpointIO" in line or "checkpoint" in line


def test_the_environment_cannot_switch_weights_only_off(tmp_path, scenes):
    done = _fit_config(tmp_path, scenes, ROOT / "sarheight" / "configs" / "terrain_unet.yaml",
                       env={"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"})
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" in _refused(done)


def test_a_nested_configuration_imports_nothing_outside_the_allow_list(tmp_path, scenes):
    marker = _marker_module(tmp_path)
    (tmp_path / "inner.yaml").write_text("class_path: pwnmod.Evil\n")

    def edit(config):
        config["trainer"]["logger"] = "inner.yaml"

    assert "pwnmod" in _refused(_fit_config(tmp_path, scenes, _config(tmp_path, edit)), marker)


@pytest.mark.parametrize("where", ["config", "command line", "abbreviated", "standard library"])
def test_dotted_callables_in_allowed_classes_are_checked(tmp_path, scenes, where):
    marker = _marker_module(tmp_path)
    hook = "this.d" if where == "standard library" else "pwnmod.hook"

    def edit(config):
        if where == "config":
            config["trainer"]["callbacks"].append({"class_path": "lightning.pytorch.callbacks.LambdaCallback",
                                                   "init_args": {"on_fit_start": hook}})

    extra = {"config": [], "command line": ["--trainer.callbacks+=LambdaCallback",
                                            "--trainer.callbacks.on_fit_start", hook],
             "abbreviated": ["--trainer.callbacks+=LambdaCallback", "--trainer.callbacks.on_fit_st", hook],
             "standard library": ["--trainer.callbacks+=LambdaCallback",
                                  "--trainer.callbacks.on_fit_start", hook]}[where]
    done = _fit_config(tmp_path, scenes, _config(tmp_path, edit), *extra)
    line = _refused(done, marker)
    assert hook.split(".")[0] in line or "LambdaCallback" in line
    assert "Hello" not in done.stdout  # 'this' prints the Zen of Python when imported


def test_weights_only_abbreviated_is_refused(tmp_path, scenes):
    marker = tmp_path / "ran"
    plant(tmp_path / "runs" / "terrain_unet" / "checkpoints" / "last.ckpt", marker)
    done = _fit_config(tmp_path, scenes, ROOT / "sarheight" / "configs" / "terrain_unet.yaml", "--ckpt_path", "last",
                       "--weights_on", "false")
    assert "weights_only" in _refused(done, marker)


def test_a_ckpt_path_that_is_not_a_checkpoint_of_data_is_named(tmp_path, scenes):
    marker = tmp_path / "ran"
    planted = plant(tmp_path / "planted.ckpt", marker)
    for value, message in ((str(tmp_path), "is a folder"), (str(tmp_path / "missing.ckpt"), "no such file"),
                           (str(planted), "never loads")):
        for option in ("--ckpt_path", "--ckpt_pa"):
            with pytest.raises(InvalidInputError, match=message):
                check_arguments([option, value])
    check_arguments(["--ckpt_path", "last"])

    def edit(config):
        config["ckpt_path"] = str(planted)

    assert "never loads" in _refused(_fit_config(tmp_path, scenes, _config(tmp_path, edit)), marker)


def test_a_logs_folder_that_cannot_be_made_is_named_before_training(tmp_path, scenes):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    done = _fit_config(tmp_path, scenes, ROOT / "sarheight" / "configs" / "terrain_unet.yaml",
                       "--trainer.logger.init_args.save_dir", str(blocker / "logs"))
    assert "the logs folder" in _refused(done)


def test_the_plugin_route_is_closed_for_lcz_test_too(tmp_path):
    """`lcz test` reads a checkpoint as `fit` resumes one: a planted one with the plugin
    that would load it as a pickle is refused before either is read."""
    pytest.importorskip("h5py", reason="the So2Sat reader needs h5py (ml extra)")
    from tests.support.scenes import write_tiny_so2sat

    so2sat = write_tiny_so2sat(tmp_path / "so2sat", {"training.h5": 8, "validation.h5": 4, "testing.h5": 4})
    marker = tmp_path / "ran"
    planted = plant(tmp_path / "runs" / "last.ckpt", marker)
    command = [sys.executable, "-m", "sarheight", "lcz", "test", "--config",
               str(ROOT / "sarheight" / "configs" / "lcz_fusion.yaml"),
               "--data.root", str(so2sat), "--trainer.plugins", "lightning.pytorch.plugins.io.TorchCheckpointIO",
               "--ckpt_path", str(planted)]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "0"})
    assert done.returncode == 2 and not marker.exists(), done.stderr[-3000:]
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("sarheight lcz ") and ": error:" in line
    assert "TorchCheckpointIO" in line or "never loads" in line
