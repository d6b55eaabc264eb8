"""The patch classification LightningModule of the Local Climate Zone fusion study:
FusionNet, class-weighted cross-entropy, Adam, and the scores of the study (overall and
average accuracy, Cohen's kappa, per-class accuracy, the confusion matrix).

The normalisation statistics (per channel, from the training split) and the class
weights are taken from the data module at the start of ``fit`` into the module's buffers,
so the checkpoint holds them: a checkpoint classifies raw So2Sat patches with nothing
else. A checkpoint restored afterwards (resume, test of the best checkpoint) brings its
own.

Public names
------------
LCZClassification
    The LightningModule.
classification_scores
    OA, AA, kappa and per-class accuracy of a confusion matrix.
TrainedClassifier, trained_classifier
    A trained classifier from a checkpoint read as data (users load it with
    :func:`sarheight.training.trained.load_checkpoint`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics.classification import MulticlassConfusionMatrix

from ..data.so2sat import LCZ_CLASSES
from ..errors import InvalidInputError, MissingInputError
from ..io import check_memory
from ..models import build
from ..models.fusion import WIDTHS, log_summed_probabilities
from .checkpoints import require_finite_weights
from .task import SarHeightTask, check_optimisation

__all__ = ["LCZClassification", "TrainedClassifier", "classification_scores", "trained_classifier"]

#: The scores of :func:`classification_scores` that are one number each.
SCORES = ("oa", "aa", "kappa")


def classification_scores(matrix: np.ndarray | torch.Tensor) -> dict[str, Any]:
    """The scores of a confusion matrix (rows: the true class, columns: the predicted).

    Returns
    -------
    dict
        ``oa``: overall accuracy, the share of samples classified right; ``aa``: average
        accuracy, the mean of the per-class accuracies over the classes that have samples;
        ``kappa``: Cohen's kappa, (p_o - p_e) / (1 - p_e) with p_e the agreement of
        independent row and column totals; ``per_class``: each class's accuracy (its
        recall; NaN for a class without samples); ``samples``: the total. Fractions in [0, 1].
    """
    matrix = np.asarray(matrix.cpu() if isinstance(matrix, torch.Tensor) else matrix, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise InvalidInputError(f"a confusion matrix is square, got shape {matrix.shape}")
    total = matrix.sum()
    if total <= 0:
        nan = float("nan")
        return {"oa": nan, "aa": nan, "kappa": nan, "per_class": [nan] * len(matrix), "samples": 0}
    truth, predicted = matrix.sum(1), matrix.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(truth > 0, np.diag(matrix) / truth, np.nan)
    observed = np.trace(matrix) / total
    expected = float(truth @ predicted) / total**2
    kappa = (observed - expected) / (1.0 - expected) if expected < 1.0 else float("nan")
    return {"oa": float(observed), "aa": float(np.nanmean(per_class)), "kappa": float(kappa),
            "per_class": [float(v) for v in per_class], "samples": int(total)}


#: Bytes a trained weight takes: itself, its gradient and Adam's two moments (float32).
BYTES_PER_WEIGHT = 16


def check_model_memory(options: dict[str, Any]) -> None:
    """Refuse, in one line with the figure, a FusionNet whose weights (counted on torch's
    meta device: no memory, no time) would take more memory than there is to train them:
    wide layers ask for hundreds of GiB, which torch would try to allocate first."""
    with torch.device("meta"):
        skeleton = build("fusion_net", **options)
    weights = sum(parameter.numel() for parameter in skeleton.parameters())
    check_memory(weights * BYTES_PER_WEIGHT, f"a FusionNet of {weights:,} weights (model.widths "
                 f"{list(options['widths'])}, num_classes {options['num_classes']})",
                 ": give narrower model.widths (the default: 32, 64, 128, 128, 256, 256)")


class LCZClassification(SarHeightTask):
    """Local Climate Zone classification of 18-channel So2Sat patches with :class:`FusionNet`
    (built through :func:`sarheight.models.build` as ``"fusion_net"``; statistics, finite
    guards and the optimiser of :class:`~sarheight.training.task.SarHeightTask`).

    Parameters
    ----------
    split, stage, sum_mode : the network's input split, fusion stage and, at stage 6,
        how its branches are trained (:class:`~sarheight.models.FusionNet`).
    num_classes : classes (17 local climate zones).
    lr : the learning rate (the paper's 1e-3, with Adam: ``weight_decay`` 0 and
        ``scheduler`` "none", the defaults).
    weight_decay, scheduler, patience : the optimiser's decoupled weight decay and
        schedule (:class:`~sarheight.training.task.SarHeightTask`).
    dropout : after the dense layer (the paper's 0.4).
    widths : the network's block widths (B1-B5 and the dense layer).
    class_names : the classes' names, for the per-class scores (default: the 17 local
        climate zones of :data:`~sarheight.data.so2sat.LCZ_CLASSES`).

    A batch is ``(patches, labels)``: (N, 18, H, W) raw values and (N,) class codes.
    Logged each epoch: ``{train,val,test}_loss`` and ``{val,test}_{oa,aa,kappa}``. After a
    validation or test epoch :attr:`scores` holds that stage's
    :func:`classification_scores` and its confusion matrix.
    """

    def __init__(self, split: str = "sar+optical", stage: int = 0, sum_mode: str = "dependent",
                 num_classes: int = 17, lr: float = 1e-3, dropout: float = 0.4,
                 widths: Sequence[int] = WIDTHS, class_names: Sequence[str] | None = None,
                 weight_decay: float = 0.0, scheduler: str = "none", patience: int = 3) -> None:
        super().__init__()
        check_optimisation(lr, weight_decay, scheduler, patience)
        self.save_hyperparameters()
        options = {"split": split, "stage": stage, "num_classes": num_classes, "sum_mode": sum_mode,
                   "dropout": dropout, "widths": tuple(widths)}
        check_model_memory(options)
        self.model = build("fusion_net", **options)
        if class_names:
            self.class_names = tuple(class_names)
        else:
            self.class_names = LCZ_CLASSES if num_classes == len(LCZ_CLASSES) else tuple(
                f"class_{i}" for i in range(num_classes))
        if len(self.class_names) != num_classes:
            raise InvalidInputError(f"{len(self.class_names)} class names for {num_classes} classes")
        self.init_statistics(self.model.in_channels)
        self.register_buffer("class_weight", torch.ones(num_classes))
        self.confusion = torch.nn.ModuleDict({stage: MulticlassConfusionMatrix(num_classes)
                                              for stage in ("val", "test")})
        self.scores: dict[str, dict[str, Any]] = {}

    # ---- statistics from the data -------------------------------------------------

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        data = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if data is None or getattr(data, "statistics", None) is None:
            raise MissingInputError("LCZClassification trains with a data module giving the training split's "
                                    "statistics and class weights (sarheight.data.So2SatDataModule)")
        self.set_statistics(data.statistics.mean, data.statistics.std, data.class_weights)

    def set_statistics(self, mean: Sequence[float], std: Sequence[float], class_weights: Sequence[float]) -> None:
        """Take per-channel ``mean`` and ``std`` and the loss's ``class_weights`` into the buffers."""
        weights = np.asarray(class_weights, float)
        if weights.shape != (self.class_weight.numel(),) or not np.isfinite(weights).all() or (weights < 0).any():
            raise InvalidInputError(f"class weights: {self.class_weight.numel()} finite values >= 0 expected, got "
                                    f"{weights.shape}")
        self.set_input_statistics(mean, std)
        self.class_weight.copy_(torch.as_tensor(weights, dtype=self.class_weight.dtype))

    # ---- the network ----------------------------------------------------------------

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, num_classes) logits of raw patches (stage 6: log of the summed probabilities)."""
        return self.model(*self.normalise(patches))

    def predict_proba(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, num_classes) class probabilities of raw patches (evaluation mode, no gradient)."""
        self.eval()
        with torch.no_grad():
            return torch.softmax(self(patches.to(self.device)), dim=1)

    def _loss(self, patches: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        (x,) = self.normalise(patches)
        if self.model.stage == 6 and self.model.sum_mode == "independent":
            # Each branch on its own loss: no gradient flows between them.
            branches = self.model.branch_logits(x)
            loss = sum(F.cross_entropy(z, labels, weight=self.class_weight) for z in branches)
            return loss, log_summed_probabilities(branches)
        logits = self.model(x)
        return F.cross_entropy(logits, labels, weight=self.class_weight), logits

    def training_step(self, batch, batch_index):
        patches, labels = batch
        loss = self.guarded(self._loss(patches, labels)[0])
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=len(labels), sync_dist=True)
        return loss

    def _evaluate(self, batch, stage: str) -> torch.Tensor:
        patches, labels = batch
        loss, logits = self._loss(patches, labels)
        self.log(f"{stage}_loss", loss, on_epoch=True, batch_size=len(labels), sync_dist=True)
        self.confusion[stage].update(logits.argmax(1), labels)
        return loss

    def validation_step(self, batch, batch_index):
        return self._evaluate(batch, "val")

    def test_step(self, batch, batch_index):
        return self._evaluate(batch, "test")

    def _end(self, stage: str) -> None:
        matrix = self.confusion[stage].compute()
        self.confusion[stage].reset()
        scores = classification_scores(matrix)
        self.scores[stage] = {**scores, "confusion": matrix.cpu().long().tolist()}
        for name in SCORES:
            self.log(f"{stage}_{name}", float(scores[name]), sync_dist=True)

    def on_validation_epoch_end(self) -> None:
        self._end("val")

    def on_test_epoch_end(self) -> None:
        self._end("test")



def _classifier_options(checkpoint: dict[str, Any]) -> dict[str, Any] | None:
    """The LCZClassification options of a checkpoint's hyper-parameters, or None."""
    hparams = checkpoint.get("hyper_parameters")
    if not isinstance(hparams, dict):
        return None
    # Lightning's own entries (LightningCLI's "_instantiator", "_class_path") are no
    # options of the classifier.
    hparams = {key: value for key, value in hparams.items() if not str(key).startswith("_")}
    return hparams if "split" in hparams and "stage" in hparams else None


def is_classifier_checkpoint(checkpoint: dict[str, Any]) -> bool:
    """Whether a checkpoint read by :func:`~sarheight.training.checkpoints.read_checkpoint`
    is one of an LCZ classifier (its hyper-parameters name a split and a stage)."""
    return _classifier_options(checkpoint) is not None


@dataclass(frozen=True)
class TrainedClassifier:
    """A trained LCZ classifier with what it needs to run: its fusion network, input
    split and stage, classes, and the statistics and class weights of its training split
    (held by its :class:`LCZClassification`).

    Calling it on raw patches (N, 18, H, W) gives the (N, num_classes) logits (stage 6: the
    log of the summed probabilities); :meth:`predict_proba` the class probabilities.
    """

    path: Path
    module: LCZClassification

    @property
    def model(self) -> torch.nn.Module:
        """The fusion network."""
        return self.module.model

    @property
    def split(self) -> str:
        return str(self.module.hparams.split)

    @property
    def stage(self) -> int:
        return int(self.module.hparams.stage)

    @property
    def num_classes(self) -> int:
        return int(self.module.hparams.num_classes)

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.module.class_names)

    @property
    def input_mean(self) -> torch.Tensor:
        return self.module.input_mean

    @property
    def input_std(self) -> torch.Tensor:
        return self.module.input_std

    @torch.inference_mode()
    def __call__(self, patches: torch.Tensor) -> torch.Tensor:
        return self.module(patches.to(self.module.device))

    def predict_proba(self, patches: torch.Tensor) -> torch.Tensor:
        """(N, num_classes) class probabilities of raw patches."""
        return self.module.predict_proba(patches)


def trained_classifier(checkpoint: dict[str, Any], path: str | os.PathLike[str],
                       device: torch.device) -> TrainedClassifier:
    """The :class:`TrainedClassifier` of a checkpoint read by
    :func:`~sarheight.training.checkpoints.read_checkpoint` (its statistics and class
    weights included), in evaluation mode on ``device`` (users load checkpoints with
    :func:`sarheight.training.trained.load_checkpoint`).

    Raises
    ------
    InvalidInputError : no split and stage among its hyper-parameters, no state_dict,
        weights that are not finite or do not fit the classifier they describe.
    """
    hparams = _classifier_options(checkpoint)
    if hparams is None:
        raise InvalidInputError(f"{os.fspath(path)!r} is not a checkpoint of an LCZ classifier "
                                "(no split and stage among its hyper-parameters)")
    state = checkpoint.get("state_dict")
    if not isinstance(state, dict):
        raise InvalidInputError(f"{os.fspath(path)!r} holds no state_dict: it is not a checkpoint of sarheight lcz "
                                "fit or sweep")
    require_finite_weights(state, f"checkpoint {os.fspath(path)!r}")
    try:
        module = LCZClassification(**hparams)
        module.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError, InvalidInputError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InvalidInputError(f"the weights of {os.fspath(path)!r} do not fit the classifier its hyper-parameters "
                                f"describe (split {hparams.get('split')!r}, stage {hparams.get('stage')!r}): {first}; "
                                "the file was altered or mixed up: give the checkpoint as sarheight wrote it") from None
    return TrainedClassifier(path=Path(path), module=module.to(device).eval())
