"""Checkpoints that survive a killed run: written atomically, the last one kept current."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..io import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, each file written to a temporary beside it
    (``.NAME.TOKEN.part``) and renamed into place (``os.replace``) once complete.

    A run killed while writing ``last.ckpt`` (SIGKILL, out of memory, a pre-empted node)
    thus leaves the previous ``last.ckpt`` intact for ``--ckpt_path last``, never a
    truncated file; at worst a hidden ``.part`` file. Local paths only.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | os.PathLike[str],
                        storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as temporary:
            torch.save(checkpoint, temporary)


class ResumableCheckpoint(ModelCheckpoint):
    """A :class:`ModelCheckpoint` that keeps ``last.ckpt`` current: Lightning writes it every
    ``every_n_train_steps`` steps (so that a run killed mid-epoch resumes with ``--ckpt_path
    last``, losing at most that many steps), and this class writes it once more when
    training ends, which Lightning skips when the last step falls between two intervals.
    """

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.save_last or trainer.fast_dev_run:
            return
        self.last_model_path = self.last_model_path or self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST)
        trainer.save_checkpoint(self.last_model_path)
