"""The one door of checkpoints: written atomically (the last one kept current), read with
``weights_only=True`` only (:func:`read_checkpoint`: no code runs from a file), loaded as
a model ready to predict (:class:`TrainedModel`, :func:`trained_model`: the archive,
its structure, statistics and model bounded before anything is built; users load through
:func:`sarheight.training.trained.load_checkpoint`), exported for shipping, and the device
a model runs on."""

from __future__ import annotations

import os
import pickle
import sys
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..errors import InvalidInputError, MissingInputError
from ..io import atomic_path, check_memory
from ..models import build
from .normalisation import normalise_groups, normalise_inputs

#: The version of the ``"sarheight"`` entry of checkpoints.
CHECKPOINT_FORMAT = 1

#: The key of that entry.
CHECKPOINT_KEY = "sarheight"


#: The largest magnitude a weight of a trained model may have (they stay within tens; a
#: BatchNorm's running variance of normalised inputs, within thousands).
MAX_WEIGHT = 1e6

#: The largest value a checkpoint's model configuration may give an integer option (depth
#: aside): beyond it the file is not one of a model sarheight trains.
CONFIG_INTEGER_LIMIT = 4096

#: The deepest U-Net or encoder a checkpoint may ask for.
CONFIG_DEPTH_LIMIT = 8


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
        checkpoint = read_checkpoint(path, map_location=map_location)
        # Every path that scores or resumes a checkpoint (test, validate, lcz test, fit
        # --ckpt_path) reads it here: NaN weights would score NaN silently.
        state = checkpoint.get("state_dict")
        if isinstance(state, dict):
            require_finite_weights(state, f"checkpoint {str(path)!r}")
        return checkpoint

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
    A training interrupted (Ctrl-C, SIGTERM, an error) says where its last checkpoint is
    and how to resume from it (:attr:`resume_hint`).
    """

    #: How to resume, in the interruption's message (a runner that resumes by itself says so).
    resume_hint: str = "run the same command again with --ckpt_path last"

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.save_last or trainer.fast_dev_run:
            return
        self.last_model_path = self.last_model_path or self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST)
        trainer.save_checkpoint(self.last_model_path)

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        super().on_exception(trainer, pl_module, exception)
        if not trainer.is_global_zero or not self.save_last:
            return
        # A step cut in the middle is not saved (its weights may be half updated): the
        # last checkpoint written is what a resumed run starts from.
        last = Path(self.last_model_path or self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST))
        what = "interrupted" if isinstance(exception, KeyboardInterrupt) or not isinstance(exception, Exception) \
            else f"stopped by an error ({type(exception).__name__})"
        every = (f"every {self._every_n_train_steps} steps" if self._every_n_train_steps else "at each epoch's end")
        if last.is_file():
            step = read_checkpoint(last).get("global_step", "?")
            message = (f"training {what} at step {trainer.global_step}: its last checkpoint {last} holds step {step} "
                       f"(written {every}); to resume, {self.resume_hint}")
        else:
            message = (f"training {what} at step {trainer.global_step}, before its first checkpoint (written "
                       f"{every}): nothing to resume from")
        print(message, file=sys.stderr, flush=True)


def read_checkpoint(path: str | os.PathLike[str], *, map_location: Any = "cpu") -> dict[str, Any]:
    """The content of a checkpoint file, read as data only: every checkpoint sarheight
    reads (training's resume, validation and test, prediction, LCZ combination, export)
    comes through here.

    Raises
    ------
    MissingInputError : no such file.
    InvalidInputError : a folder, a file that is not torch.save's zip archive (truncated
        or foreign), a pickle asking for more than tensors and plain values (it could run
        code: refused before any of it runs, whatever ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD``
        says, as an explicit ``weights_only=True`` wins), an unreadable archive.
    """
    path = Path(path)
    if path.is_dir():
        raise InvalidInputError(f"checkpoint {str(path)!r} is a folder: give a .ckpt file written by sarheight")
    if not path.is_file():
        raise MissingInputError(f"checkpoint {str(path)!r} does not exist: give a .ckpt file written by sarheight")
    require_checkpoint_archive(path, repr(str(path)))
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise InvalidInputError(f"{str(path)!r} holds Python objects beyond tensors and plain values, which "
                                "sarheight never loads (they could run code): it is not a checkpoint of "
                                "sarheight, or it was altered") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as error:
        raise InvalidInputError(f"{str(path)!r} is not a readable checkpoint ({type(error).__name__}: "
                                f"{str(error).splitlines()[0] if str(error) else 'truncated'}): give another, "
                                "or train again") from None
    if not isinstance(checkpoint, dict):
        raise InvalidInputError(f"{str(path)!r} holds a {type(checkpoint).__name__}, not a checkpoint's dictionary: "
                                "give a .ckpt written by sarheight")
    return checkpoint


def require_checkpoint_archive(path: str | os.PathLike[str], name: str) -> None:
    """Refuse a file that is not the zip archive ``torch.save`` writes (a truncated or
    foreign file), named ``name`` in the message, before anything unpickles it."""
    if Path(path).is_file() and not zipfile.is_zipfile(path):
        raise InvalidInputError(f"{name} is not a complete PyTorch checkpoint (no zip archive of torch.save; a "
                                "truncated or foreign file): give another, or train again")


#: What Lightning takes for ``ckpt_path`` besides a file (a run's own checkpoints).
CKPT_PATH_WORDS = ("last", "best")


def check_resume_checkpoint(value: str | os.PathLike[str] | None, where: str) -> None:
    """Refuse a ``ckpt_path`` that is not a readable checkpoint of data before Lightning
    reads it (it reads a named file's hyperparameters while parsing the configuration):
    a folder, a missing file, a truncated or foreign file, a pickle of more than tensors
    and plain values, weights alone (no training state), a model's hyper-parameters out of
    bounds, weights that are not finite or absurd; ``hpc`` (a SLURM requeue's, which
    sarheight never writes). ``where`` names the option in the message; ``last`` and
    ``best`` (the run's own) pass, checked when Lightning finds them."""
    if value is None or str(value) in CKPT_PATH_WORDS or str(value).startswith("registry"):
        return
    if str(value) == "hpc":
        raise InvalidInputError(f"{where}: 'hpc' resumes the checkpoint a SLURM requeue saves, which sarheight never "
                                "writes; give last (the run's own), best, or a checkpoint file")
    path = Path(value)
    if path.is_dir():
        raise InvalidInputError(f"{where} is a folder: give a checkpoint file (.ckpt) written by sarheight fit, or "
                                "last to resume the run's own")
    if not path.is_file():
        raise InvalidInputError(f"{where}: no such file; give a checkpoint file (.ckpt) written by sarheight fit, "
                                "or last to resume the run's own")
    checkpoint = read_checkpoint(path)
    if "pytorch-lightning_version" not in checkpoint or "state_dict" not in checkpoint:
        raise InvalidInputError(f"{where} holds a model's weights only (a packaged or exported checkpoint), not a "
                                "training's state: --ckpt_path resumes, validates or tests a checkpoint that sarheight "
                                "fit wrote (its last.ckpt or best.ckpt); predict with this one (terrain predict "
                                "--ckpt, "
                                "terrain refine --ckpt)")
    check_hyper_parameters(checkpoint.get("hyper_parameters"), where)
    require_finite_weights(checkpoint["state_dict"], f"checkpoint {str(path)!r}")


def check_weights_fit(model: torch.nn.Module, value: str | os.PathLike[str] | None, where: str) -> None:
    """Refuse a ``ckpt_path`` whose weights are not those of ``model`` (the one the
    configuration builds): a tensor of another shape, a tensor missing or one more. Lightning
    would stop midway with a page of size mismatches; the line names the first and the
    configuration to give. ``last``, ``best`` and no path pass."""
    if value is None or str(value) in CKPT_PATH_WORDS or str(value).startswith("registry"):
        return
    checkpoint = read_checkpoint(value)
    channels = (checkpoint.get(CHECKPOINT_KEY) or {}).get("channels")
    in_channels = dict(getattr(model, "hparams", {}) or {}).get("in_channels")
    if channels is not None and isinstance(in_channels, int) and len(channels) != in_channels:
        return  # other channels: the model names them, with the fix, when Lightning loads it
    saved = checkpoint.get("state_dict") or {}
    own = model.state_dict()
    mismatches = [f"{name} is {tuple(saved[name].shape)} in the file, {tuple(tensor.shape)} in the model"
                  for name, tensor in own.items()
                  if name in saved and tuple(getattr(saved[name], "shape", ())) != tuple(tensor.shape)]
    mismatches += [f"{name} is in the model, not in the file" for name in own if name not in saved]
    mismatches += [f"{name} is in the file, not in the model" for name in saved if name not in own]
    if mismatches:
        more = f" (and {len(mismatches) - 1} more)" if len(mismatches) > 1 else ""
        raise InvalidInputError(
            f"{where} holds the weights of another model than the configuration builds: {mismatches[0]}{more}; give "
            "the configuration it was trained with (config.yaml in its run's logs folder), or a checkpoint of this "
            "model")


def check_hyper_parameters(hyper_parameters: Any, where: str) -> None:
    """Refuse a checkpoint whose model hyper-parameters ask for a model no training of
    sarheight makes (a depth of a million would build for hours, 65536 channels ask for
    hundreds of GiB), before Lightning builds it: depths and stages beyond
    :data:`CONFIG_DEPTH_LIMIT`, channel counts beyond :data:`CONFIG_INTEGER_LIMIT`."""
    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for name, value in node.items():
                walk(value, str(name))
        elif isinstance(node, (list, tuple)):
            for value in node:
                walk(value, key)
        elif isinstance(node, int) and not isinstance(node, bool):
            limit = (CONFIG_DEPTH_LIMIT if key in ("depth", "stages")
                     else CONFIG_INTEGER_LIMIT if "channel" in key or key in ("width", "classes", "num_classes")
                     else None)
            if limit is not None and not 0 <= node <= limit:
                raise InvalidInputError(f"{where} asks for a model with {key}={node}, beyond what sarheight trains "
                                        f"(at most {limit}): the file is damaged or not sarheight's")

    walk(hyper_parameters or {}, "")


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
    """Refuse weights with a NaN or an infinite value, or beyond :data:`MAX_WEIGHT`:
    ``what`` (a checkpoint about to be written, or one read) would give maps of NaN or of
    absurd values."""
    bad = [name for name, value in state_dict.items()
           if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())]
    if bad:
        raise InvalidInputError(f"{what} has weights that are not finite ({', '.join(bad[:3])}"
                                f"{' ...' if len(bad) > 3 else ''}): a diverged or damaged model; train again")
    largest = {name: float(value.detach().abs().max()) for name, value in state_dict.items()
               if isinstance(value, torch.Tensor) and value.is_floating_point() and value.numel()}
    huge = sorted((name for name, value in largest.items() if value > MAX_WEIGHT), key=lambda n: -largest[n])
    if huge:
        raise InvalidInputError(f"{what} has weights as large as {largest[huge[0]]:.3g} ({', '.join(huge[:3])}"
                                f"{' ...' if len(huge) > 3 else ''}), where a trained model's stay below "
                                f"{MAX_WEIGHT:g}: a damaged or altered model, whose maps would be absurd; train again "
                                "or give another checkpoint")


@dataclass(frozen=True)
class TrainedModel:
    """A trained model with what it needs to run: its channels and their statistics.

    Calling it on raw inputs (N, C, H, W; NaN where missing; for a model of several
    inputs, one tensor per group of ``input_groups``, in its order) gives the prediction
    (N, 1, H, W) in metres, relative to ``reference`` when there is one.
    """

    path: Path
    model: torch.nn.Module
    model_name: str
    model_config: dict[str, Any]
    channels: tuple[str, ...]
    reference: str | None
    target: str
    input_mean: torch.Tensor
    input_std: torch.Tensor
    input_groups: dict[str, int] | None = None
    #: The mean of the training targets (m): the "mean height" baseline of the model's data.
    target_mean: float | None = None
    #: The unit of the output relative to the reference: None (metres) or "coarse_cell"
    #: (the scene's coarse cell size, :mod:`sarheight.data.terrain`).
    scale: str | None = None
    #: What the validation scenes said of the model (:mod:`sarheight.training.calibration`):
    #: per class of :data:`sarheight.terrain.classes.REFINEMENT_CLASSES`, the share of its
    #: correction kept and the scale of its spread; None where it was not calibrated.
    calibration: dict[str, Any] | None = None

    @property
    def outputs(self) -> int:
        """The model's output channels: 1 (heights) or 2 (heights and the log of their
        standard deviation, ``model_options.uncertainty``)."""
        return 2 if self.model_config.get("uncertainty") else 1

    @torch.inference_mode()
    def __call__(self, *inputs: torch.Tensor) -> torch.Tensor:
        if self.input_groups:
            return self.model(*normalise_groups(inputs, self.input_mean, self.input_std))
        return self.model(normalise_inputs(inputs[0], self.input_mean, self.input_std))


def trained_model(checkpoint: dict[str, Any], path: Path, device: torch.device) -> TrainedModel:
    """The :class:`TrainedModel` of a checkpoint of ``sarheight fit`` read by
    :func:`read_checkpoint`: its structure, statistics and model bounded, then its model
    rebuilt through :func:`sarheight.models.build` on ``device`` (users load checkpoints
    with :func:`sarheight.training.trained.load_checkpoint`).

    Raises
    ------
    InvalidInputError : not a checkpoint of sarheight fit (no channel list and statistics),
        one of a newer format, one saved before training, inconsistent statistics, weights
        that are not finite or do not fit the model.
    """
    stored = checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, dict) else None
    if not isinstance(stored, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise InvalidInputError(f"{str(path)!r} is a PyTorch checkpoint but not of sarheight: it lacks the channel "
                                "list and normalisation statistics prediction needs; train with sarheight fit")
    if int(stored.get("format", 0)) > CHECKPOINT_FORMAT:
        raise InvalidInputError(f"{str(path)!r} was written by a newer sarheight (checkpoint format "
                                f"{stored.get('format')}): upgrade sarheight")
    missing = [key for key in ("channels", "input_mean", "input_std", "model", "model_config", "target")
               if stored.get(key) is None]
    if missing:
        raise InvalidInputError(f"checkpoint {str(path)!r} lacks {', '.join(missing)}: it was saved before training "
                                "started; use a checkpoint written during or after sarheight fit")
    channels = tuple(stored["channels"])
    if len(stored["input_mean"]) != len(channels) or len(stored["input_std"]) != len(channels):
        raise InvalidInputError(f"checkpoint {str(path)!r} has statistics of {len(stored['input_mean'])} channels for "
                                f"{len(channels)} channels: the file is inconsistent, train again")
    check_statistics(stored, path)
    weights = {key.removeprefix("model."): value for key, value in checkpoint["state_dict"].items()
               if key.startswith("model.")}
    require_finite_weights(weights, f"checkpoint {str(path)!r}")
    model = build_checked(stored["model"], stored["model_config"], weights, path)
    try:
        model.load_state_dict(weights)
    except RuntimeError as error:
        raise InvalidInputError(f"the weights of {str(path)!r} do not fit its model {stored['model']!r} "
                                f"{stored['model_config']}: {str(error).splitlines()[0]}") from None
    model.to(device).eval()
    return TrainedModel(
        path=path, model=model, model_name=str(stored["model"]), model_config=dict(stored["model_config"]),
        channels=channels, reference=stored.get("reference"), target=str(stored["target"]),
        input_mean=torch.tensor(stored["input_mean"], dtype=torch.float32, device=device),
        input_std=torch.tensor(stored["input_std"], dtype=torch.float32, device=device),
        input_groups=dict(stored["input_groups"]) if stored.get("input_groups") else None,
        target_mean=float(stored["target_mean"]) if stored.get("target_mean") is not None else None,
        scale=stored.get("scale"),
        calibration=dict(stored["calibration"]) if isinstance(stored.get("calibration"), dict) else None,
    )


def build_checked(name: str, config: dict[str, Any], weights: dict[str, torch.Tensor],
                  path: str | os.PathLike[str]) -> torch.nn.Module:
    """The model a checkpoint's configuration describes, built only once its options are
    bounded (a depth of a million would build for hours, 65536 channels ask for hundreds of
    GiB) and its size, counted without memory (on torch's meta device), equals the weights
    the file holds.

    Raises
    ------
    InvalidInputError : an option out of bounds, or a model whose size is not the weights'.
    """
    def integers(value: Any) -> list[int]:
        if isinstance(value, bool):
            return []
        if isinstance(value, int):
            return [value]
        if isinstance(value, (list, tuple)):
            return [item for entry in value for item in integers(entry)]
        return []

    for key, value in config.items():
        limit = CONFIG_DEPTH_LIMIT if key in ("depth", "stages") else CONFIG_INTEGER_LIMIT
        if any(number < 0 or number > limit for number in integers(value)):
            raise InvalidInputError(f"checkpoint {str(path)!r} asks for a model with {key}={value!r}, beyond what "
                                    f"sarheight trains (at most {limit}): the file is damaged or not sarheight's")
    with torch.device("meta"):
        skeleton = build(name, **config)
    needed = sum(tensor.numel() for tensor in skeleton.state_dict().values())
    held = sum(tensor.numel() for tensor in weights.values())
    if needed != held:
        raise InvalidInputError(f"checkpoint {str(path)!r} describes a model of {needed} values but holds {held}: the "
                                "file is inconsistent; train again")
    check_memory(8 * needed, f"the model of checkpoint {str(path)!r}")
    return build(name, **config)


def check_statistics(stored: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Refuse normalisation statistics that would give a silently wrong map: a mean that is
    not finite, a standard deviation that is not finite and positive (inputs divided by 0
    or NaN), target statistics likewise."""
    means = np.asarray(stored["input_mean"], dtype=np.float64)
    stds = np.asarray(stored["input_std"], dtype=np.float64)
    targets = np.asarray([stored.get("target_mean", 0.0), stored.get("target_std", 1.0)], dtype=np.float64)
    if not (np.isfinite(means).all() and np.isfinite(stds).all() and (stds > 0).all() and np.isfinite(targets).all()
            and targets[1] > 0):
        raise InvalidInputError(f"checkpoint {str(path)!r} has normalisation statistics that are not finite, or a "
                                "standard deviation of 0: the file is damaged; train again")


def export_checkpoint(source: str | os.PathLike[str], target: str | os.PathLike[str], *, half: bool = False) -> Path:
    """Write the part of a training checkpoint that prediction needs: the model's weights,
    its channels, statistics and configuration (no optimiser state, about a third of the
    size), written atomically.

    Parameters
    ----------
    source : a checkpoint of ``sarheight fit`` (checked as :func:`trained_model` does).
    target : the file to write (``.ckpt``); it loads with
        :func:`sarheight.training.trained.load_checkpoint`.
    half : store the floating-point weights in float16 (half the size again, to ship a
        model; they load back into the float32 model, differing by about 1e-3 relative).

    Returns
    -------
    Path of ``target``.
    """
    checkpoint = read_checkpoint(source)
    trained_model(checkpoint, Path(source), torch.device("cpu"))  # prediction's clear errors, before writing
    kept = {key: checkpoint[key] for key in ("state_dict", CHECKPOINT_KEY, "epoch", "global_step")
            if key in checkpoint}
    kept["state_dict"] = {key: (value.half() if half and value.is_floating_point() else value)
                          for key, value in kept["state_dict"].items() if key.startswith("model.")}
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as temporary:
        torch.save(kept, temporary)
    return target


def resolve_device(device: str | torch.device | None) -> torch.device:
    """The torch device a prediction runs on: ``device`` checked (a CUDA device that is not
    there is named as such, not found later as an unreadable checkpoint), or CUDA where
    there is one, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise InvalidInputError(f"device {device!r} is not a torch device: give cpu, cuda or cuda:N") from None
    if chosen.type == "cuda" and (not torch.cuda.is_available()
                                  or (chosen.index or 0) >= torch.cuda.device_count()):
        raise InvalidInputError(f"device {device!r} was asked for, but torch sees "
                                f"{torch.cuda.device_count()} CUDA device(s) here: give cpu, or run where the GPU is")
    if chosen.type not in ("cpu", "cuda"):
        raise InvalidInputError(f"device {device!r}: sarheight predicts on cpu or cuda")
    return chosen


def warn_identical_members(members: Sequence[TrainedModel]) -> None:
    """Warn when two members of an ensemble have the same weights (one file given twice, or
    copies): their spread is zero by construction, not a sign of certainty."""
    import warnings

    seen: dict[tuple, Path] = {}
    for member in members:
        key = tuple(float(value.double().sum()) for value in member.model.state_dict().values()
                    if value.is_floating_point())
        if key in seen:
            warnings.warn(f"checkpoints {str(seen[key])!r} and {str(member.path)!r} hold the same weights: the "
                          "ensemble's spread (height_std) is zero there by construction; give members trained with "
                          "other seeds", stacklevel=3)
        seen.setdefault(key, member.path)


def moved_to(member: TrainedModel, device: torch.device) -> TrainedModel:
    """``member`` on ``device`` (itself where it is there already)."""
    if member.input_mean.device == device:
        return member
    return replace(member, model=member.model.to(device), input_mean=member.input_mean.to(device),
                   input_std=member.input_std.to(device))
