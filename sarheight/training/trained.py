"""Trained models loaded from their checkpoints: the one loader of every model sarheight
trains, each returned typed with what it needs to run.

A checkpoint of ``sarheight fit`` (terrain refinement, building height) is a
:class:`~sarheight.training.checkpoints.TrainedModel`: its network, channels and their
statistics, the reference it corrects and its calibration. A checkpoint of ``sarheight lcz``
is a :class:`~sarheight.training.classification.TrainedClassifier`: its fusion network,
input split, stage, classes and statistics. Both are read through the one door of
checkpoints (:func:`~sarheight.training.checkpoints.read_checkpoint`: data only, no code
runs from a file), bounded before anything is built, and put in evaluation mode.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import torch

from ..errors import InvalidInputError
from .checkpoints import CHECKPOINT_KEY, TrainedModel, read_checkpoint, resolve_device, trained_model
from .classification import TrainedClassifier, is_classifier_checkpoint, trained_classifier

#: What a caller may ask a checkpoint to be: a height model (terrain refinement or
#: building height, :class:`TrainedModel`) or an LCZ classifier (:class:`TrainedClassifier`).
KINDS = ("height", "lcz")


def load_checkpoint(path: str | os.PathLike[str], *, device: str | torch.device = "cpu",
                    kind: Literal["height", "lcz"] | None = None) -> TrainedModel | TrainedClassifier:
    """Load a checkpoint sarheight wrote as the trained model it holds.

    Parameters
    ----------
    path : the checkpoint (``.ckpt``) of ``sarheight fit`` or ``sarheight lcz``.
    device : where the model runs ("cpu", "cuda", a torch.device).
    kind : what the caller needs: "height" (a :class:`TrainedModel`), "lcz" (a
        :class:`TrainedClassifier`), or None for whichever the file holds.

    Returns
    -------
    TrainedModel or TrainedClassifier, in evaluation mode on ``device``.

    Raises
    ------
    MissingInputError : the file does not exist.
    InvalidInputError : not a PyTorch checkpoint, one holding more than tensors and plain
        values, one not of sarheight, one of another kind than ``kind`` asks for, or one
        whose statistics, model options or weights do not hold together.
    """
    if kind is not None and kind not in KINDS:
        raise InvalidInputError(f"kind={kind!r}: give one of {', '.join(map(repr, KINDS))}, or None")
    path = Path(path)
    device = resolve_device(device)
    checkpoint = read_checkpoint(path, map_location=device)
    if isinstance(checkpoint.get(CHECKPOINT_KEY), dict):
        if kind == "lcz":
            raise InvalidInputError(f"{os.fspath(path)!r} is not a checkpoint of an LCZ classifier but of a height "
                                    "model (sarheight fit): give a checkpoint of sarheight lcz")
        return trained_model(checkpoint, path, device)
    if is_classifier_checkpoint(checkpoint):
        if kind == "height":
            raise InvalidInputError(f"{os.fspath(path)!r} is a checkpoint of an LCZ classifier (sarheight lcz), not of "
                                    "a height model: give a checkpoint of sarheight fit (terrain refinement or "
                                    "building height)")
        return trained_classifier(checkpoint, path, device)
    if kind == "lcz":
        raise InvalidInputError(f"{os.fspath(path)!r} is not a checkpoint of an LCZ classifier (no split and stage "
                                "among its hyper-parameters): give a checkpoint of sarheight lcz")
    raise InvalidInputError(f"{os.fspath(path)!r} is a PyTorch checkpoint but not of sarheight: it lacks the channel "
                            "list and normalisation statistics prediction needs (and is no LCZ classifier); train "
                            "with sarheight fit")


