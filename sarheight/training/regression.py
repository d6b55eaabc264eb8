"""The pixel-wise regression LightningModule, shared by the terrain and building height
models: masked loss, metrics per class, normalisation kept in the checkpoint, learning
curve.

What is specific to a task lives in its data module, which the module reads through
:class:`RegressionData`: the input channels and their statistics, the target's
statistics, the class names. A batch is a dict of tensors: ``inputs`` (N, C, H, W; NaN
where missing) or, for a model of several inputs (MBHR-Net's Sentinel-1 and Sentinel-2),
one tensor per input group named as the keys of the data module's ``in_channels`` (a
dict: ``{"s1": 2, "s2": 10}``), ``target`` (N, 1, H, W, relative to ``offset``), ``mask`` (N, 1, H, W,
bool: the cells that count), and optionally ``offset`` (N, 1, H, W: added to prediction
and target for the metrics, e.g. the reference height), ``scale`` (N, 1, 1, 1: the unit of
prediction and target in metres, e.g. the coarse DEM's cell size; the metrics are of
``offset + scale * value``) and ``classes`` (N, 1, H, W codes of the class names).

The checkpoint holds, under the key ``"sarheight"``, everything prediction needs, as
plain Python values (so that ``torch.load(path, weights_only=True)`` loads the whole
file): the channel list, the normalisation statistics, the reference and target
channels, the target statistics, the model's name and configuration, the class names,
the scenes of each split and the per-epoch history of the learning curve. With input
groups, ``input_groups`` gives each group's channel count, in the order of the channel
list and the statistics (which run over all groups' channels, one after the other).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np
import torch
from torchmetrics import MeanMetric

from ..errors import InvalidInputError
from ..models import build
from ..plots import save_figure
from .checkpoints import CHECKPOINT_FORMAT, CHECKPOINT_KEY
from .losses import LOSSES, masked_loss, mbhr_loss, spread_loss
from .metrics import HeightMetrics
from .task import SarHeightTask, check_optimisation

logger = logging.getLogger(__name__)

@runtime_checkable
class RegressionData(Protocol):
    """What :class:`PixelRegression` reads from its data module, once it is set up."""

    channels: list[str]
    target: str
    reference: str | None

    @property
    def in_channels(self) -> int | dict[str, int]: ...

    @property
    def class_names(self) -> tuple[str, ...]: ...

    @property
    def input_statistics(self) -> tuple[list[float], list[float]]: ...

    @property
    def target_statistics(self) -> tuple[float, float]: ...


#: The losses :class:`PixelRegression` takes: those of :func:`masked_loss` and MBHR-Net's.
REGRESSION_LOSSES = (*LOSSES, "mbhr")


class PixelRegression(SarHeightTask):
    """Pixel-wise height regression with a model of :mod:`sarheight.models` (statistics,
    finite guards and the optimiser of :class:`~sarheight.training.task.SarHeightTask`).

    Parameters
    ----------
    model : the model's name for :func:`sarheight.models.build` ("ask_unet", "unet",
        "unet_lsk", "unet_eca"; "mbhr_net" with input groups ``s1`` and ``s2``).
    model_options : its keyword arguments besides ``in_channels`` (``base_channels``,
        ``depth``...).
    in_channels : the number of input channels, or for a model of several inputs the
        channels of each input group (``{"s1": 2, "s2": 10}``: the model is built with
        ``s1_channels=2, s2_channels=10``); linked from the data module by ``sarheight fit``.
    loss : "l1", "mse" or "huber" (masked: see :func:`~sarheight.training.losses.masked_loss`),
        or "mbhr" (MBHR-Net's ``w_mse * MSE + w_cos * (1 - cosine)``,
        :func:`~sarheight.training.losses.mbhr_loss`).
    huber_delta : the Huber threshold (m).
    w_mse, w_cos : the weights of the "mbhr" loss (the paper's 0.2 and 0.8).
    lr : the learning rate of AdamW.
    weight_decay : AdamW's decoupled weight decay (0: Adam).
    scheduler : "cosine" (cosine annealing over all training steps, stepped each step),
        "plateau" (ReduceLROnPlateau on ``val_loss``, halving after ``patience`` epochs
        without improvement; needs a validation split) or "none".
    patience : the epochs ReduceLROnPlateau waits.
    class_weights : loss weights of the cells of some classes of the data module
        (``{active_layover: 4, passive_layover: 4}``: rare cells that matter count more;
        the others weigh 1); l1, mse and huber losses only.
    spread_weight : with a model of two outputs (``model_options.uncertainty: true``: the
        height and the log of its standard deviation), the weight of the spread's loss
        (:func:`~sarheight.training.losses.spread_loss`) beside the height's; it trains
        the spread head on the height head's errors, and never reaches the layers the
        heights come from (the model's spread head reads them detached).

    At the start of every stage the input statistics are taken from the data module's
    training split into the module's buffers, and, for ``fit``, the model's
    ``output_offset`` / ``output_scale`` from the target's mean and standard deviation,
    so that the network's head starts at unit scale and the model outputs metres (a
    model without them, MBHR-Net with its ReLU head, outputs metres directly). A
    checkpoint restored afterwards (resume, or ``validate``/``test`` of a checkpoint)
    replaces them with its own: a model always runs with the statistics it was trained
    with. Its channel list must equal the data module's.

    Logged: ``train_loss`` (each step and epoch), ``val_loss``, ``test_loss``, and per
    epoch ``{train,val,test}_{rmse,mae,r2}`` and ``{val,test}_rmse_<class>`` of the
    heights (metres; prediction plus offset against target plus offset), and with an
    offset the baseline ``{train,val,test}_rmse_reference``, the RMSE of the offset alone
    (for terrain, the priors-only interpolation the model has to beat), and where the data
module has a ``height_threshold_m`` (buildings) ``{stage}_iou``, the IoU of the
footprints above it. At the end of
    ``fit`` the learning curve (loss and RMSE per epoch) is written as
    ``learning_curve.png`` into the logger's folder (none without a logger).
    """

    def __init__(
        self,
        model: str = "ask_unet",
        model_options: dict[str, Any] | None = None,
        in_channels: int | dict[str, int] = 4,
        loss: Literal["l1", "mse", "huber", "mbhr"] = "l1",
        huber_delta: float = 1.0,
        w_mse: float = 0.2,
        w_cos: float = 0.8,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        scheduler: Literal["cosine", "plateau", "none"] = "cosine",
        patience: int = 3,
        class_weights: dict[str, float] | None = None,
        spread_weight: float = 1.0,
    ):
        super().__init__()
        if loss not in REGRESSION_LOSSES:
            raise InvalidInputError(f"model.loss must be one of {', '.join(REGRESSION_LOSSES)}, not {loss!r}")
        if not (w_mse >= 0 and w_cos >= 0):
            raise InvalidInputError(f"model.w_mse ({w_mse}) and model.w_cos ({w_cos}) must not be negative")
        weights = dict(class_weights or {})
        if weights and (loss == "mbhr" or not all(isinstance(v, (int, float)) and v >= 0 for v in weights.values())):
            raise InvalidInputError(f"model.class_weights {weights} must be non-negative numbers, with an l1, mse or "
                                    "huber loss")
        if not (isinstance(spread_weight, (int, float)) and spread_weight >= 0):
            raise InvalidInputError(f"model.spread_weight ({spread_weight!r}) must be a non-negative number")
        check_optimisation(lr, weight_decay, scheduler, patience)
        if not (isinstance(huber_delta, (int, float)) and huber_delta > 0):
            raise InvalidInputError(f"model.huber_delta ({huber_delta!r}) must be positive")
        options = dict(model_options or {})
        #: The channels of each input group, None for a model of one input.
        self.input_groups = {str(k): int(v) for k, v in in_channels.items()} if isinstance(in_channels, dict) else None
        channel_options = ([f"{name}_channels" for name in self.input_groups] if self.input_groups
                           else ["in_channels"])
        named = [option for option in channel_options if option in options]
        if named:
            raise InvalidInputError(f"model.model_options names {', '.join(named)}: it comes from the data module's "
                                    "channels (model.in_channels); remove it from the options")
        self.save_hyperparameters()
        if self.input_groups:
            self.model = build(model, **{f"{name}_channels": n for name, n in self.input_groups.items()}, **options)
            total = sum(self.input_groups.values())
        else:
            self.model = build(model, in_channels=in_channels, **options)
            total = int(in_channels)
        self.init_statistics(total)
        self.loss_kind = loss
        #: What the checkpoint carries besides the weights (see the module's docstring).
        self.description: dict[str, Any] = {"channels": None, "reference": None, "scale": None, "target": None,
                                            "target_mean": 0.0, "target_std": 1.0, "class_names": [], "splits": {},
                                            "input_groups": self.input_groups, "height_threshold_m": None}
        #: Per-epoch figures of the learning curve (kept in the checkpoint: a resumed run
        #: draws the whole curve).
        self.history: list[dict[str, Any]] = []
        #: The loss weight of each class code (set from the data module's classes).
        self.class_weight_table = torch.ones(1)
        self._metrics: dict[str, HeightMetrics] = {}
        self._reference_metrics: dict[str, HeightMetrics] = {}
        self._baseline_metrics: dict[str, HeightMetrics] = {}
        # Keyed by "<stage>_loss": a key "train" would shadow Module.train.
        self._losses = torch.nn.ModuleDict({f"{stage}_loss": MeanMetric() for stage in ("train", "val", "test")})
        self._last_val: dict[str, float] = {}

    # Set-up from the data module.

    def setup(self, stage: str) -> None:
        data = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if not isinstance(data, RegressionData):
            raise InvalidInputError(f"{type(self).__name__} needs a data module giving channels, their statistics and "
                                    f"the target's (sarheight.training.RegressionData), not {type(data).__name__}")
        given = data.in_channels
        if (dict(given) if isinstance(given, dict) else given) != (self.input_groups or self.hparams.in_channels):
            raise InvalidInputError(f"the data module gives {given} channels ({', '.join(data.channels)}) "
                                    f"but the model takes {self.hparams.in_channels}: set model.in_channels to match, "
                                    "or let sarheight fit link it")
        wanted, stacks = getattr(self.model, "date_layout", None), getattr(data, "date_layout", None)
        if wanted != stacks:
            raise InvalidInputError(
                f"the model reads stacks of {wanted} after its static channels, and the data module gives {stacks}: "
                "give the stack network (model ask_unet_stack) the data's dates, passes and date_channels (one more "
                "than data.date_channels: the presence flag)" if wanted and stacks else
                f"the model reads stacks of {wanted}, and the data module gives none: set data.dates, data.passes "
                "and data.date_channels" if wanted else
                f"the data module gives stacks of {stacks}: train them with model ask_unet_stack")
        threshold = getattr(data, "height_threshold_m", None)
        self.set_input_statistics(*data.input_statistics)
        target_mean, target_std = data.target_statistics
        if stage == "fit" and hasattr(self.model, "output_offset"):
            self.model.output_offset.fill_(target_mean)
            self.model.output_scale.fill_(target_std)
        self.description.update(channels=list(data.channels), reference=data.reference,
                                scale=getattr(data, "scale", None), target=data.target,
                                target_mean=float(target_mean), target_std=float(target_std),
                                class_names=list(data.class_names),
                                splits={k: list(v) for k, v in getattr(data, "split_scenes", {}).items()},
                                height_threshold_m=None if threshold is None else float(threshold))
        unknown = sorted(set(self.hparams.class_weights or {}) - set(data.class_names))
        if unknown:
            raise InvalidInputError(f"model.class_weights names {unknown}, which are not classes of the data "
                                    f"({', '.join(data.class_names)})")
        self.class_weight_table = torch.tensor([float((self.hparams.class_weights or {}).get(name, 1.0))
                                                for name in data.class_names] or [1.0])
        self._metrics = {stage: HeightMetrics(data.class_names if stage != "train" else (),
                                              footprint_threshold=threshold).to(self.device)
                         for stage in ("train", "val", "test")}
        self._reference_metrics = {stage: HeightMetrics().to(self.device) for stage in ("train", "val", "test")}
        self._baseline_metrics = {stage: HeightMetrics().to(self.device) for stage in ("train", "val", "test")}

    # Steps.

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The model's output (m, relative to the reference) for raw (N, C, H, W) inputs, one
        tensor per input group in the order of ``in_channels`` when there are groups."""
        return self.model(*self.normalise(*inputs))

    def batch_inputs(self, batch: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The input tensors of a batch: ``inputs``, or one per input group."""
        names = list(self.input_groups) if self.input_groups else ["inputs"]
        missing = [name for name in names if name not in batch]
        if missing:
            raise InvalidInputError(f"the batch lacks {missing} (it has {sorted(batch)}): the data module must give "
                                    "the model's inputs")
        return [batch[name] for name in names]

    def _step(self, batch: dict[str, torch.Tensor], stage: str) -> torch.Tensor:
        output = self(*self.batch_inputs(batch))
        # A model of two outputs gives the height and the log of its spread.
        prediction, log_std = (output[:, :1], output[:, 1:2]) if output.shape[1] == 2 else (output, None)
        if self.loss_kind == "mbhr":
            loss = mbhr_loss(prediction, batch["target"], batch["mask"], w_mse=self.hparams.w_mse,
                             w_cos=self.hparams.w_cos)
        else:
            weights = None
            if self.hparams.class_weights and "classes" in batch:
                weights = self.class_weight_table.to(prediction.device)[batch["classes"].long()]
            loss = masked_loss(prediction, batch["target"], batch["mask"], self.loss_kind, self.hparams.huber_delta,
                               weights=weights)
        if log_std is not None:
            error = torch.where(batch["mask"], batch["target"] - prediction.detach(),
                                torch.zeros((), device=output.device))
            loss = loss + self.hparams.spread_weight * spread_loss(log_std, error, batch["mask"])
        cells = batch["mask"].sum()
        self._losses[f"{stage}_loss"].update(loss.detach(), weight=cells.clamp(min=1))
        offset = batch.get("offset", torch.zeros((), device=prediction.device))
        # Heights in metres: the model's unit may be a scale (the coarse cell) per sample.
        unit = batch.get("scale", torch.ones((), device=prediction.device))
        truth = batch["target"] * unit + offset
        self._metrics[stage].to(prediction.device).update(prediction.detach() * unit + offset, truth,
                                                          batch["mask"], batch.get("classes"))
        if "offset" in batch:
            # The baseline: the reference alone (the priors-only interpolation, the coarse DEM).
            self._reference_metrics[stage].to(prediction.device).update(offset, truth, batch["mask"])
        if "baseline" in batch:
            # The coarse DEM resampled bilinearly, where the reference refines it already.
            baseline = batch["baseline"]
            known = batch["mask"] & torch.isfinite(baseline)
            self._baseline_metrics[stage].to(prediction.device).update(torch.nan_to_num(baseline), truth, known)
        # Averaged over the processes of a distributed run (each logs its own batch's loss).
        self.log(f"{stage}_loss", loss, on_step=stage == "train", on_epoch=True, prog_bar=True,
                 batch_size=batch["target"].shape[0], sync_dist=True)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.guarded(self._step(batch, "train"))

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._step(batch, "test")

    def _epoch_figures(self, stage: str) -> dict[str, float]:
        """Compute, log and reset the epoch's metrics of ``stage``; returns them as floats."""
        values = {key: float(value) for key, value in self._metrics[stage].compute().items() if key != "count"}
        reference = self._reference_metrics[stage]
        if reference.count > 0:
            values["rmse_reference"] = float(reference.compute()["rmse"])
        reference.reset()
        baseline = self._baseline_metrics.get(stage)
        if baseline is not None and baseline.count > 0:
            values["rmse_coarse"] = float(baseline.compute()["rmse"])
        if baseline is not None:
            baseline.reset()
        mean_loss = self._losses[f"{stage}_loss"]
        values["loss"] = float(mean_loss.compute()) if mean_loss.update_count else math.nan
        self._metrics[stage].reset()
        mean_loss.reset()
        # The figures are of every process's cells already (torchmetrics sums its states
        # across processes): the same in each, so averaging them changes nothing.
        self.log_dict({f"{stage}_{key}": value for key, value in values.items() if key != "loss"}, sync_dist=True)
        return values

    def on_train_epoch_start(self) -> None:
        self._last_val = {}

    def on_validation_epoch_end(self) -> None:
        figures = self._epoch_figures("val")
        if not self.trainer.sanity_checking:
            self._last_val = figures

    def on_test_epoch_end(self) -> None:
        self._epoch_figures("test")

    def on_train_epoch_end(self) -> None:
        figures = self._epoch_figures("train")
        self.history.append({"epoch": int(self.current_epoch), "step": int(self.global_step),
                             "train_loss": figures["loss"], "train_rmse": figures["rmse"],
                             "val_loss": self._last_val.get("loss", math.nan),
                             "val_rmse": self._last_val.get("rmse", math.nan),
                             "val_rmse_reference": self._last_val.get("rmse_reference", math.nan),
                             "val_rmse_coarse": self._last_val.get("rmse_coarse", math.nan)})

    def on_fit_end(self) -> None:
        folder = self.trainer.log_dir if self.trainer.loggers else None
        if self.trainer.is_global_zero and folder and self.history:
            path = plot_learning_curve(self.history, Path(folder) / "learning_curve.png")
            logger.info("learning curve written to %s", path)

    # Checkpoints.

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint[CHECKPOINT_KEY] = {
            "format": CHECKPOINT_FORMAT,
            **self.description,
            "input_mean": [float(v) for v in self.input_mean.tolist()],
            "input_std": [float(v) for v in self.input_std.tolist()],
            "model": str(self.hparams.model),
            "model_config": _plain(self.model.config),
            "history": _plain(self.history),
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stored = checkpoint.get(CHECKPOINT_KEY)
        if stored is None:
            raise InvalidInputError("the checkpoint has no 'sarheight' entry (channels, normalisation): it was not "
                                    "written by sarheight fit")
        expected = self.description.get("channels")
        if expected is not None and list(stored["channels"]) != list(expected):
            raise InvalidInputError(
                f"the checkpoint was trained on the channels {list(stored['channels'])}, the data module gives "
                f"{list(expected)}: set data.channels to the checkpoint's, or train a new model"
            )
        if expected is not None and stored.get("reference") != self.description.get("reference"):
            raise InvalidInputError(
                f"the checkpoint predicts relative to {stored.get('reference')!r}, the data module gives "
                f"{self.description.get('reference')!r}: set data.reference to the checkpoint's"
            )
        if expected is not None and stored.get("scale") != self.description.get("scale"):
            raise InvalidInputError(
                f"the checkpoint gives heights in units of {stored.get('scale') or 'metres'!r}, the data module in "
                f"{self.description.get('scale') or 'metres'!r}: set data.scale to the checkpoint's"
            )
        self.description.update({key: stored[key] for key in self.description if key in stored})
        self.history = list(stored.get("history", []))


def _plain(value: Any) -> Any:
    """``value`` as plain Python values (dicts, lists, str, int, float, bool, None), so that a
    checkpoint loads with ``weights_only=True``."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    raise InvalidInputError(f"cannot keep {value!r} ({type(value).__name__}) in a checkpoint: use plain values")


def plot_learning_curve(history: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Plot the loss and the RMSE (m) of training and validation per epoch (and the
    validation RMSE of the baselines: the reference alone, the coarse DEM resampled) into
    a PNG, atomically; returns its path."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    # Epochs counted from 1, as the progress lines count them.
    epochs = [entry["epoch"] + 1 for entry in history]
    losses = [entry.get(key, math.nan) for entry in history for key in ("train_loss", "val_loss")]
    # A model that also gives its spread is trained on the Gaussian negative
    # log-likelihood, which is below 0 once the errors are small against a metre.
    loss_label = ("loss (negative log-likelihood: below 0 is fine)" if any(v < 0 for v in losses if math.isfinite(v))
                  else "loss")
    curves = {
        loss_label: [("train_loss", "-o", "train"), ("val_loss", "-s", "validation")],
        "RMSE (m)": [("train_rmse", "-o", "train"), ("val_rmse", "-s", "validation"),
                     ("val_rmse_reference", "--x", "validation, reference alone"),
                     ("val_rmse_coarse", ":d", "validation, coarse DEM (bilinear)")],
    }
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, (label, lines) in zip(axes, curves.items(), strict=True):
        for key, style, name in lines:
            values = [entry.get(key, math.nan) for entry in history]
            if any(math.isfinite(v) for v in values):
                # Markers on every line: a single epoch draws no segment.
                ax.plot(epochs, values, style, label=name, markersize=5)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(set(epochs)) == 1:
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
            ax.margins(y=0.3)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("learning curve")
    fig.tight_layout()
    return save_figure(fig, path)
