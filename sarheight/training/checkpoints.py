"""Checkpoints that survive a killed run and never run code: written atomically, read
with ``weights_only=True`` only, the last one kept current."""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..errors import InvalidInputError
from ..io import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, each file written to a temporary beside it
    (``.NAME.TOKEN.part``) and renamed into place (``os.replace``) once complete, and read
    with ``torch.load(weights_only=True)`` whatever the caller asks.

    A run killed while writing ``last.ckpt`` (SIGKILL, out of memory, a pre-empted node)
    thus leaves the previous ``last.ckpt`` intact for ``--ckpt_path last``, never a
    truncated file; at worst a hidden ``.part`` file. Local paths only.

    Every checkpoint Lightning reads goes through :meth:`load_checkpoint`: resuming
    (``--ckpt_path last``, the LCZ sweep), ``validate`` and ``test``. A checkpoint is data:
    one whose pickle asks for more than tensors and plain values (a planted ``last.ckpt``
    whose ``__reduce__`` runs a command) is refused before any of it runs, also with
    ``--weights_only false`` or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (an explicit
    ``weights_only=True`` wins over both).
    """

    def load_checkpoint(self, path: str | os.PathLike[str],
                        map_location: Callable | None = lambda storage, loc: storage,
                        weights_only: bool | None = None) -> dict[str, Any]:
        if weights_only is False:
            raise InvalidInputError("checkpoints are read as data only (weights_only=True): sarheight never runs code "
                                    "from a checkpoint; leave out --weights_only false")
        path = Path(path)
        require_checkpoint_archive(path, repr(str(path)))
        try:
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError:
            raise InvalidInputError(f"{str(path)!r} holds Python objects beyond tensors and plain values, which "
                                    "sarheight never loads (they could run code): it is not a checkpoint of "
                                    "sarheight fit, or it was altered") from None
        except (RuntimeError, EOFError) as error:
            raise InvalidInputError(f"{str(path)!r} is not a readable checkpoint ({type(error).__name__}: "
                                    f"{str(error).splitlines()[0] if str(error) else 'truncated'}): give another, "
                                    "or train again") from None

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


def require_checkpoint_archive(path: str | os.PathLike[str], name: str) -> None:
    """Refuse a file that is not the zip archive ``torch.save`` writes (a truncated or
    foreign file), named ``name`` in the message, before anything unpickles it."""
    if Path(path).is_file() and not zipfile.is_zipfile(path):
        raise InvalidInputError(f"{name} is not a complete PyTorch checkpoint (no zip archive of torch.save; a "
                                "truncated or foreign file): give another, or train again")


def require_finite_loss(loss: torch.Tensor, module: LightningModule) -> None:
    """Stop a training whose loss is not finite (NaN, infinite), with what to change: a
    diverged run would otherwise go on for its epochs and save weights of NaN."""
    if not bool(torch.isfinite(loss.detach()).all()):
        lr = getattr(module.hparams, "lr", None)
        raise InvalidInputError(
            f"the training diverged: the loss is {float(loss.detach())} at step {module.global_step} (epoch "
            f"{module.current_epoch}); lower model.lr{f' (now {lr:g})' if lr is not None else ''}, or look for "
            "extreme values in the inputs; the checkpoints written before are kept")


def require_finite_weights(state_dict: dict[str, torch.Tensor], what: str) -> None:
    """Refuse weights with a NaN or an infinite value: ``what`` (a checkpoint about to be
    written, or one read) would give maps of NaN."""
    bad = [name for name, value in state_dict.items()
           if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if bad:
        raise InvalidInputError(f"{what} has weights that are not finite ({', '.join(bad[:3])}"
                                f"{' ...' if len(bad) > 3 else ''}): a diverged or damaged model; train again")
