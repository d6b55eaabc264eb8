"""What a training says while it runs: a line per epoch (its steps and time, the mean
training loss, the validation figures in the task's units, the time left), and, where no
live bar shows the steps (output to a file, a job's log), a line every half minute
within an epoch."""

from __future__ import annotations

import math
import sys
import time
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import Timer

__all__ = ["TrainingProgress"]

#: Seconds between the lines within an epoch where no live bar shows the steps.
QUIET_SECONDS = 30.0


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class TrainingProgress(Callback):
    """A line per epoch of a training, and a line every :data:`QUIET_SECONDS` within an
    epoch where no live progress bar shows the steps (the process's output is not a
    terminal, or the trainer runs without a bar)."""

    def __init__(self) -> None:
        self._start = self._epoch_start = self._last_line = 0.0
        self._epochs_done = 0
        self._loss_sum = 0.0
        self._loss_count = 0

    @staticmethod
    def _bar(trainer: Trainer) -> Any:
        """The trainer's progress bar where it shows, else None."""
        bar = trainer.progress_bar_callback
        return bar if bar is not None and getattr(bar, "is_enabled", False) else None

    def _say(self, trainer: Trainer, line: str) -> None:
        if not trainer.is_global_zero:
            return
        bar = self._bar(trainer)
        if bar is not None and hasattr(bar, "print"):
            bar.print(line)  # above the live bar, not through it
        else:
            print(line, flush=True)

    def _live_bar(self, trainer: Trainer) -> bool:
        return self._bar(trainer) is not None and sys.stdout.isatty()

    def _time_left(self, trainer: Trainer, epoch_seconds: float) -> float:
        left = math.inf
        if trainer.max_epochs is not None and trainer.max_epochs > 0:
            left = (trainer.max_epochs - trainer.current_epoch - 1) * epoch_seconds
        for callback in trainer.callbacks:
            if isinstance(callback, Timer):
                remaining = callback.time_remaining("train")
                if remaining is not None:
                    left = min(left, remaining)
        return left

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        # A run resumed mid-epoch starts no epoch: its first one is timed from here (not
        # from the machine's boot, the clock's zero).
        self._start = self._epoch_start = self._last_line = time.monotonic()
        self._epochs_done = 0
        self._loss_sum, self._loss_count = 0.0, 0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epoch_start = self._last_line = time.monotonic()
        self._loss_sum, self._loss_count = 0.0, 0

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is not None:
            value = float(loss.detach()) if hasattr(loss, "detach") else float(loss)
            if math.isfinite(value):
                self._loss_sum += value
                self._loss_count += 1
        now = time.monotonic()
        if self._live_bar(trainer) or now - self._last_line < QUIET_SECONDS:
            return
        self._last_line = now
        steps = trainer.num_training_batches
        done = batch_idx + 1
        per_step = (now - self._epoch_start) / done
        total = f"/{steps}" if isinstance(steps, int) else ""
        epoch_left = (steps - done) * per_step if isinstance(steps, int) else math.nan
        self._say(trainer, f"epoch {trainer.current_epoch + 1}: step {done}{total}, loss "
                           f"{self._loss_sum / max(self._loss_count, 1):.4g}, {per_step:.2f} s/step, the epoch ends in "
                           f"about {_duration(epoch_left)}")

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        now = time.monotonic()
        self._epochs_done += 1
        epoch_seconds = (now - self._start) / self._epochs_done
        metrics = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch + 1}"
                 + (f"/{trainer.max_epochs}" if trainer.max_epochs and trainer.max_epochs > 0 else "")
                 + f": {self._loss_count} steps in {_duration(now - self._epoch_start)}"]
        if self._loss_count:
            parts.append(f"training loss {self._loss_sum / self._loss_count:.4g}")
        if "val_rmse" in metrics:
            line = f"validation RMSE {float(metrics['val_rmse']):.2f} m"
            baselines = [f"{float(metrics[key]):.2f} m {label}" for key, label in
                         (("val_rmse_reference", "its reference"), ("val_rmse_coarse", "the coarse DEM"))
                         if key in metrics]
            if baselines:
                line += f" ({', '.join(baselines)})"
            parts.append(line)
        elif "val_oa" in metrics:
            parts.append(f"validation OA {100 * float(metrics['val_oa']):.1f} %"
                         + (f", AA {100 * float(metrics['val_aa']):.1f} %" if "val_aa" in metrics else ""))
        left = self._time_left(trainer, epoch_seconds)
        parts.append(f"about {_duration(left)} left" if left > 0 else "the last epoch")
        self._say(trainer, "; ".join(parts))
