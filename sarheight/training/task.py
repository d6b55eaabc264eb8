"""The base of sarheight's training tasks (as torchgeo's ``BaseTask`` is of its own): what
every task shares, so that each says only what it adds.

- the inputs' statistics from the training split, kept as buffers (they travel with the
  weights in every checkpoint), set with checks, and the normalisation of raw inputs by
  them (:mod:`sarheight.training.normalisation`: one input, or named input groups);
- the finite guards: a training whose loss is not finite stops with what to change, and
  no checkpoint of weights that are not finite is ever written over a good one;
- the optimiser, AdamW with decoupled weight decay (0: Adam), and its schedule: cosine
  annealing over the run's steps, ReduceLROnPlateau on ``val_loss``, or none.

:class:`~sarheight.training.regression.PixelRegression` (heights) and
:class:`~sarheight.training.classification.LCZClassification` (Local Climate Zones)
extend it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch

from ..errors import InvalidInputError
from .checkpoints import require_finite_loss, require_finite_weights
from .normalisation import normalise_groups, normalise_inputs

__all__ = ["SCHEDULERS", "SarHeightTask", "check_optimisation"]

#: The learning-rate schedules a task takes.
SCHEDULERS = ("cosine", "plateau", "none")


def check_optimisation(lr: Any, weight_decay: Any, scheduler: Any, patience: Any) -> None:
    """Refuse optimiser options no run can use, naming the option (``model.lr``...)."""
    if isinstance(lr, bool) or not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise InvalidInputError(f"model.lr must be a positive learning rate, got {lr!r}")
    if isinstance(weight_decay, bool) or not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
        raise InvalidInputError(f"model.weight_decay must be a number of 0 or more, got {weight_decay!r}")
    if scheduler not in SCHEDULERS:
        raise InvalidInputError(f"model.scheduler must be 'cosine', 'plateau' or 'none', not {scheduler!r}")
    if isinstance(patience, bool) or not (isinstance(patience, int) and patience >= 0):
        raise InvalidInputError(f"model.patience must be a whole number of epochs, got {patience!r}")


class SarHeightTask(L.LightningModule):
    """A LightningModule with the statistics, guards and optimiser every sarheight task
    shares. A subclass calls :meth:`init_statistics` once its network is built, and keeps
    ``lr``, ``weight_decay``, ``scheduler`` and ``patience`` among its hyper-parameters
    (``save_hyperparameters``; checked by :func:`check_optimisation`)."""

    #: The channels of each input group (``{"s1": 2, "s2": 10}``), None for one input.
    input_groups: dict[str, int] | None = None

    def init_statistics(self, channels: int) -> None:
        """Buffers of the per-channel mean (0) and standard deviation (1) of ``channels``
        inputs, replaced by the training split's before a run."""
        self.register_buffer("input_mean", torch.zeros(channels))
        self.register_buffer("input_std", torch.ones(channels))

    def set_input_statistics(self, mean: Sequence[float], std: Sequence[float]) -> None:
        """Take per-channel ``mean`` and ``std`` (finite, ``std`` > 0) into the buffers."""
        values = {"mean": np.asarray(mean, dtype=np.float64), "std": np.asarray(std, dtype=np.float64)}
        channels = self.input_mean.numel()
        for name, array in values.items():
            if array.shape != (channels,) or not np.isfinite(array).all():
                raise InvalidInputError(f"input {name}: {channels} finite values expected, got {array.shape}")
        if (values["std"] <= 0).any():
            raise InvalidInputError("input standard deviations must be > 0: a channel is constant in the training "
                                    "split; leave it out of the channels")
        self.input_mean.copy_(torch.as_tensor(values["mean"], dtype=self.input_mean.dtype))
        self.input_std.copy_(torch.as_tensor(values["std"], dtype=self.input_std.dtype))

    def normalise(self, *inputs: torch.Tensor) -> list[torch.Tensor]:
        """Raw (N, C, H, W) inputs (one per input group, in the order of
        :attr:`input_groups`) standardised per channel, missing values (NaN) at 0."""
        if self.input_groups:
            return normalise_groups(inputs, self.input_mean, self.input_std)
        return [normalise_inputs(inputs[0].float(), self.input_mean, self.input_std)]

    def guarded(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss``, after stopping a training whose loss is not finite."""
        require_finite_loss(loss, self)
        return loss

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Never a checkpoint of NaN (or of weights blown up) over a good last.ckpt.
        try:
            require_finite_weights(checkpoint["state_dict"], "the checkpoint to write")
        except InvalidInputError as error:
            lr = getattr(self.hparams, "lr", None)
            raise InvalidInputError(
                f"the training diverged at step {self.global_step}: {error}; lower model.lr"
                f"{f' (now {lr:g})' if lr is not None else ''}; the checkpoints written before are kept") from None

    def configure_optimizers(self) -> dict[str, Any]:
        hparams = self.hparams
        optimizer = torch.optim.AdamW(self.parameters(), lr=hparams.lr, weight_decay=hparams.weight_decay)
        if hparams.scheduler == "none":
            return {"optimizer": optimizer}
        if hparams.scheduler == "plateau":
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=hparams.patience)
            return {"optimizer": optimizer,
                    "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss", "interval": "epoch"}}
        steps = self.trainer.estimated_stepping_batches
        if not math.isfinite(steps) or steps < 1:
            raise InvalidInputError("the cosine schedule needs a bounded run: set trainer.max_epochs or "
                                    "trainer.max_steps, or model.scheduler: plateau")
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(steps))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
