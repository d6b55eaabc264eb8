"""Scale-out of training: Lightning's DDP over two CPU processes (gloo) runs the shipped
terrain refinement configuration unchanged, with the same figures as one process.

Documented tolerance (configs/terrain_refine.yaml): a checkpoint validated by two
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

ROOT = Path(__file__).resolve().parents[1]

if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("torch was built without the gloo backend of torch.distributed", allow_module_level=True)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    from tests.helpers import simulate_tiny_scenes

    folder = tmp_path_factory.mktemp("ddp_scenes")
    simulate_tiny_scenes(folder, names=("hills-a", "hills-b", "hills-c"), size=40)
    return folder


def sarheight(folder: Path, subcommand: str, scenes: Path, devices: int, batch_size: int, *extra: str) -> str:
    """Run ``python -m sarheight SUBCOMMAND`` with the shipped refinement configuration on
    ``devices`` CPU processes (DDP over gloo for two); returns its output."""
    command = [sys.executable, "-m", "sarheight", subcommand, "--config", str(ROOT / "configs" / "terrain_refine.yaml"),
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
    # One checkpoint validated by one process and by two.
    figures = []
    for devices in (1, 2):
        output = sarheight(tmp_path, "validate", scenes, devices, 4, "--ckpt_path", str(tmp_path / "one" / "last.ckpt"),
                           "--trainer.logger", "false")
        figures.append(float(re.search(r"\bval_rmse\b[\s│|]+([-+\d.eE]+)", output).group(1)))
    assert figures[1] == pytest.approx(figures[0], rel=1e-4)
