"""Scale-out of training: Lightning's DDP over two CPU processes (gloo) runs the shipped
terrain refinement configuration unchanged, with the same figures as one process.

Documented tolerance (sarheight/configs/terrain_refine.yaml): a checkpoint validated by two
processes scores as by one to within 1e-4 relative (the order of the float64 sums, and
torch's distributed sampler repeating at most one tile per process to even the shares);
two processes with half the batch each train on the same tiles as one process (each
epoch's tile keys are split between them), to a validation RMSE within 2 % of one
process's (batch norm sees each process's half of the batch)."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lightning")
torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]

if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("torch was built without the gloo backend of torch.distributed", allow_module_level=True)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from tests.support.scenes import simulate_tiny_scenes

    folder = tmp_path_factory.mktemp("ddp_scenes")
    simulate_tiny_scenes(folder, names=("hills-a", "hills-b", "hills-c"), size=40)
    return folder


def sarheight(folder: Path, subcommand: str, scenes: Path, devices: int, batch_size: int, *extra: str) -> str:
    """Run ``python -m sarheight SUBCOMMAND`` with the shipped refinement configuration on
    ``devices`` CPU processes (DDP over gloo for two); returns its output."""
    command = [sys.executable, "-m", "sarheight", subcommand, "--config",
               str(ROOT / "sarheight" / "configs" / "terrain_refine.yaml"),
               "--data.scenes", str(scenes), "--data.val_scenes", "[hills-b]", "--data.test_scenes", "[hills-c]",
               "--data.tile", "32", "--data.tiles_per_epoch", "16", "--data.batch_size", str(batch_size),
               "--trainer.accelerator", "cpu", "--trainer.devices", str(devices),
               "--trainer.enable_progress_bar", "false", *(["--trainer.strategy", "ddp"] if devices > 1 else []),
               *extra]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def last_val_rmse(run: Path) -> float:
    (metrics,) = run.rglob("metrics.csv")
    with open(metrics, newline="") as file:
        return [float(row["val_rmse"]) for row in csv.DictReader(file) if row.get("val_rmse")][-1]


def test_two_processes_train_and_validate_as_one(scenes, tmp_path):
    training = ["--trainer.max_epochs", "2", "--trainer.max_time", "null"]
    sarheight(tmp_path, "fit", scenes, 1, 4, *training, "--checkpoint.dirpath", "one",
              "--trainer.logger.init_args.save_dir", "one")
    sarheight(tmp_path, "fit", scenes, 2, 2, *training, "--checkpoint.dirpath", "two",
              "--trainer.logger.init_args.save_dir", "two")
    one, two = last_val_rmse(tmp_path / "one"), last_val_rmse(tmp_path / "two")
    assert two == pytest.approx(one, rel=0.02)
    # The last checkpoint of one process, validated by two, gives the figure its training
    # logged for those weights.
    output = sarheight(tmp_path, "validate", scenes, 2, 4, "--ckpt_path", str(tmp_path / "one" / "last.ckpt"),
                       "--trainer.logger", "false")
    assert float(re.search(r"\bval_rmse\b[\s│|]+([-+\d.eE]+)", output).group(1)) == pytest.approx(one, rel=1e-4)


# The LCZ study scales out the same way: LightningCLI's "ddp" for one configuration
# (`sarheight lcz fit`), and spawned processes for the sweep, which trains many times in
# one program ("ddp" would start the whole sweep again in each process).


@pytest.fixture(scope="module")
def so2sat(tmp_path_factory):
    pytest.importorskip("h5py", reason="the So2Sat reader needs h5py (ml extra)")
    from tests.support.scenes import write_tiny_so2sat

    return write_tiny_so2sat(tmp_path_factory.mktemp("ddp_so2sat"), {"training.h5": 64, "validation.h5": 32,
                                                                     "testing.h5": 32})


def run_command(folder: Path, *arguments: str) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "sarheight", *arguments], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def training_steps(metrics: Path) -> list[int]:
    with open(metrics, newline="") as file:
        return sorted({int(row["step"]) for row in csv.DictReader(file) if row.get("train_loss")})


def test_lcz_fit_trains_on_two_processes(so2sat, tmp_path):
    run_command(tmp_path, "lcz", "fit", "--config", str(ROOT / "sarheight" / "configs" / "lcz_fusion.yaml"),
                "--data.root",
                str(so2sat), "--data.batch_size", "16", "--trainer.accelerator", "cpu", "--trainer.devices", "2",
                "--trainer.strategy", "ddp", "--trainer.max_epochs", "2", "--trainer.enable_progress_bar", "false",
                "--checkpoint.dirpath", "checkpoints")
    (metrics,) = tmp_path.rglob("metrics.csv")
    # 64 patches, 32 per process, batches of 16: two steps an epoch (one process: four).
    assert training_steps(metrics) == [1, 3]
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_lcz_sweep_trains_each_configuration_on_two_processes(so2sat, tmp_path):
    import json

    output = run_command(tmp_path, "lcz", "sweep", "--data", str(so2sat), "--splits", "sar", "--stages", "3",
                         "--seeds", "1", "--max-epochs", "2", "--patience", "5", "--batch-size", "16",
                         "--accelerator", "cpu", "--devices", "2", "--out", "sweep")
    run = tmp_path / "sweep" / "runs" / "sar" / "seed0"
    assert training_steps(run / "metrics.csv") == [1, 3]
    scores = json.loads((run / "scores.json").read_text())
    # The spawned processes' epochs and best checkpoint reach the sweep's record; the test
    # split is scored whole, once.
    assert scores["epochs"] == 2 and scores["checkpoint"] == "best.ckpt" and scores["samples"] == 32
    with open(run / "metrics.csv", newline="") as file:
        best = max(float(row["val_oa"]) for row in csv.DictReader(file) if row.get("val_oa"))
    assert scores["best_val_oa"] == pytest.approx(best)
    assert "best average accuracy" in output


def test_lcz_sweep_devices_are_checked_before_training(so2sat, tmp_path, capsys):
    from sarheight.cli import main

    common = ["lcz", "sweep", "--data", str(so2sat), "--splits", "sar", "--stages", "3", "--seeds", "1", "--quiet"]
    assert main([*common, "--devices", "0", "--out", str(tmp_path / "a")]) == 2
    assert "--devices 0" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main([*common, "--devices", "2", "--accelerator", "auto", "--out", str(tmp_path / "b")]) == 2
        assert "--accelerator cpu" in capsys.readouterr().err
    assert not (tmp_path / "a" / "runs").exists() and not (tmp_path / "b" / "runs").exists()
