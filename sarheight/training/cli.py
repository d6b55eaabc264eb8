"""``sarheight fit|validate|test``: LightningCLI over :class:`PixelRegression` and a data module.

A run is a YAML configuration (``sarheight/configs/terrain_ask_unet.yaml``) with ``model`` (the
:class:`PixelRegression` options), ``data`` (a data module's ``class_path`` and
``init_args``), ``trainer`` and ``checkpoint`` (the :class:`ModelCheckpoint` options), and
any key overridden on the command line (``--trainer.max_epochs 2``, ``--data.scenes
DIR``). The model's ``in_channels`` follows the data module's channels. Checkpoints are
written atomically (:class:`~sarheight.training.checkpoints.AtomicCheckpointIO`), the last
one as ``last.ckpt`` (also every ``checkpoint.every_n_train_steps`` steps, so that
``--ckpt_path last`` resumes a run killed mid-epoch).
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import stat
import warnings
from argparse import ArgumentError
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO

from ..configs import help_summary, resolve_arguments
from ..errors import InvalidInputError, SarHeightError
from .checkpoints import AtomicCheckpointIO, ResumableCheckpoint, check_resume_checkpoint, check_weights_fit
from .config_policy import IMPORT_ALLOWLIST, IMPORT_DENYLIST, argument_message, check_arguments, user_error
from .memory import check_forward_memory
from .progress import TrainingProgress
from .regression import PixelRegression

#: The Trainer methods sarheight runs as subcommands.
SUBCOMMANDS = ("fit", "validate", "test")


#: The parser options of every sarheight LightningCLI.
PARSER_KWARGS: dict[str, Any] = {"prog": "sarheight"}


class SarHeightCLI(LightningCLI):
    """LightningCLI with sarheight's defaults: the model's channels linked to the data
    module's, a configurable checkpoint callback keeping ``last.ckpt`` current
    (``checkpoint``: :class:`~sarheight.training.checkpoints.ResumableCheckpoint`, every 100
    steps by default), atomic checkpoint files, and no ``predict`` subcommand (``sarheight
    terrain predict`` blends tiles)."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {name: skip for name, skip in LightningCLI.subcommands().items() if name in SUBCOMMANDS}

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # The resumable state: last.ckpt only (a best-by-validation checkpoint is a second
        # ModelCheckpoint in trainer.callbacks, see sarheight/configs/).
        parser.add_lightning_class_args(ResumableCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 0,
                             "checkpoint.every_n_train_steps": 100})
        if self.model_class is PixelRegression:
            parser.link_arguments("data.in_channels", "model.in_channels", apply_on="instantiate")

    def _parse_ckpt_path(self) -> None:
        # Lightning reads the hyperparameters of a ckpt_path given in a configuration file
        # while parsing: the same checks as on the command line first.
        subcommand = self.config.get("subcommand")
        if subcommand:
            value = self.config[subcommand].get("ckpt_path")
            check_resume_checkpoint(value, f"ckpt_path {str(value)!r}")
        super()._parse_ckpt_path()

    def before_fit(self) -> None:
        # A run of no epoch or step would exit 0 having trained nothing.
        if self.trainer.max_epochs == 0 or self.trainer.max_steps == 0:
            raise InvalidInputError("trainer.max_epochs or trainer.max_steps is 0: nothing would be trained; give at "
                                    "least 1")
        self._check_checkpoint_folders()
        self._lock_checkpoint_folders()
        self._log_within_an_epoch()
        self._check_memory(training=True)
        self._check_weights_fit()

    def before_validate(self) -> None:
        self._check_memory(training=False)
        self._check_weights_fit()

    def before_test(self) -> None:
        self._check_memory(training=False)
        self._check_weights_fit()

    def _check_weights_fit(self) -> None:
        value = self.config_init.get(str(self.subcommand), self.config_init).get("ckpt_path")
        check_weights_fit(self.model, value, f"ckpt_path {str(value)!r}")

    def after_fit(self) -> None:
        # Where the run's checkpoints went: what predict and --ckpt_path last need.
        written = []
        for callback in self.trainer.checkpoint_callbacks:
            for label, path in (("last", getattr(callback, "last_model_path", "")),
                                ("best", getattr(callback, "best_model_path", ""))):
                if path and Path(path).is_file() and path not in [p for _, p in written]:
                    written.append((label, path))
        if written and self.trainer.is_global_zero:
            self._calibrate([path for _, path in written])
            print("checkpoints: " + "; ".join(f"{label} {path}" for label, path in written))
        # Every process reads the summary (the logs folder is a collective of a DDP run's
        # processes: asked by one alone, it would wait for the others for ever); one says it.
        lines = self._fit_summary()
        if self.trainer.is_global_zero:
            for line in lines:
                print(line)

    def _fit_summary(self) -> list[str]:
        """How good the trained model is, in the task's units, beside the baseline it
        logged; and where its curves are."""
        lines = []
        history = getattr(self.model, "history", None)
        if history:
            # Heights: RMSE in metres at the last validation and at the best one.
            scored = [row for row in history if math.isfinite(row.get("val_rmse", math.nan))]
            if scored:
                last, best = scored[-1], min(scored, key=lambda row: row["val_rmse"])
                line = (f"validation RMSE: the model {last['val_rmse']:.2f} m after epoch {last['epoch'] + 1} (best "
                        f"{best['val_rmse']:.2f} m, epoch {best['epoch'] + 1})")
                from ..data.terrain import BASELINE
                from ..terrain.variables import variable_description

                # The baselines it logged: its reference (a refinement of the coarse DEM
                # without learning, where it is one), and the coarse DEM resampled.
                baselines = [(getattr(self.datamodule, "reference", None), last.get("val_rmse_reference", math.nan)),
                             (BASELINE, last.get("val_rmse_coarse", math.nan))]
                for name, figure in baselines:
                    if name and math.isfinite(figure):
                        change = 100.0 * (1.0 - best["val_rmse"] / figure)
                        line += (f"; {variable_description(name)} ({name}) {figure:.2f} m, the best "
                                 f"{abs(change):.1f} % {'below' if change >= 0 else 'above'} it")
                lines.append(line)
            else:
                lines.append("validation: none ran (no validation scenes, or limit_val_batches 0): the model's RMSE "
                             "is unknown; give data.val_scenes")
        else:
            figures = {key: float(value) for key, value in self.trainer.callback_metrics.items()
                       if key.startswith("val_") and key != "val_loss"}
            if figures:
                lines.append("validation: "
                             + ", ".join(f"{key[4:]} {value:.4f}" for key, value in sorted(figures.items())))
        folder = self.trainer.log_dir if self.trainer.loggers else None
        if folder:
            curves = [name for name in ("metrics.csv", "learning_curve.png") if (Path(folder) / name).is_file()]
            if curves:
                lines.append(f"curves: {', '.join(str(Path(folder) / name) for name in curves)}")
        return lines

    def _calibrate(self, checkpoints: Sequence[str]) -> None:
        """Calibrate a refinement model's checkpoints on the validation scenes
        (:mod:`sarheight.training.calibration`): the gate of its correction per terrain
        class and, with a spread head, the scale of its spread; and say what they show."""
        from ..data.terrain import TerrainDataModule
        from .calibration import calibrate_checkpoint, describe_calibration

        data = self.datamodule
        if not (isinstance(data, TerrainDataModule) and data.reference and getattr(data, "scale", None)):
            return
        scenes = data.split_files("val")
        if not scenes:
            print("calibration: no validation scenes (data.val_scenes), the checkpoints keep their raw correction "
                  "and spread")
            return
        for path in checkpoints:
            figures = calibrate_checkpoint(path, scenes)
            print(f"calibrated {path} on {len(scenes)} validation scenes: {describe_calibration(figures)}")

    def _check_checkpoint_folders(self) -> None:
        """The checkpoint folders made and writable before the first step (not found after
        minutes of training)."""
        from ..paths import check_writable_folder, inside_own_folders

        folders = [(getattr(callback, "dirpath", None), "the checkpoint folder", "checkpoint.dirpath")
                   for callback in self.trainer.checkpoint_callbacks]
        folders += [(getattr(logger, "save_dir", None), "the logs folder", "trainer.logger's save_dir")
                    for logger in self.trainer.loggers]
        folders += [(self.trainer.default_root_dir, "the run's folder", "trainer.default_root_dir")]
        for folder, what, option in folders:
            if not folder:
                continue
            if inside_own_folders(folder):
                raise InvalidInputError(f"{what} {str(folder)!r} lies among sarheight's own files (the installed "
                                        f"package or its kernels): set {option} to a folder of yours")
        for folder, what, option in folders:
            if not folder:
                continue
            try:
                Path(folder).mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise InvalidInputError(f"cannot make {what} {str(folder)!r} ({error.strerror}): set {option} to a "
                                        "place you can write") from None
            check_writable_folder(Path(folder) / "probe", f"{what} ({option})")

    def _log_within_an_epoch(self) -> None:
        """Log the training loss at least once an epoch: an epoch shorter than
        ``trainer.log_every_n_steps`` (a trial's few tiles) would log none, and Lightning
        warns of it; the interval becomes the epoch's steps per process."""
        data = self.datamodule
        tiles, batch = getattr(data, "tiles_per_epoch", None), getattr(data, "batch_size", None)
        if not (isinstance(tiles, int) and isinstance(batch, int) and tiles > 0 and batch > 0):
            return
        steps = max(1, math.ceil(tiles / batch) // max(1, int(self.trainer.num_devices) * int(self.trainer.num_nodes)))
        if 0 < self.trainer.log_every_n_steps and steps < self.trainer.log_every_n_steps:
            self.trainer.log_every_n_steps = steps

    def _lock_checkpoint_folders(self) -> None:
        """Hold each checkpoint folder for this training (a lock file, released when the run
        ends, or when its process dies): two trainings into one folder would both claim its
        ``last.ckpt``. Only the first process of a distributed run holds it."""
        if os.environ.get("LOCAL_RANK", "0") != "0" or os.environ.get("NODE_RANK", "0") != "0":
            return
        for callback in self.trainer.checkpoint_callbacks:
            folder = getattr(callback, "dirpath", None)
            if folder:
                hold_folder(Path(folder), "checkpoint.dirpath")

    def _check_memory(self, training: bool) -> None:
        """Refuse a batch the memory cannot hold, before any work: the model's activations
        counted on torch's meta device (no memory, no time)."""
        data, module = self.datamodule, self.model
        tile, batch = getattr(data, "tile", None), getattr(data, "batch_size", None)
        model = getattr(module, "model", None)
        if not (isinstance(tile, int) and isinstance(batch, int) and model is not None):
            return
        groups = getattr(module, "input_groups", None) or {"inputs": getattr(data, "in_channels", None)}
        if not all(isinstance(count, int) for count in groups.values()):
            return
        check_forward_memory(model, [(batch, count, tile, tile) for count in groups.values()],
                             f"a batch of {batch} tiles of {tile} x {tile} cells", training=training,
                             hint=": lower data.tile or data.batch_size")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self.config_init.get(str(self.subcommand), self.config_init)
        if config.get("weights_only") is False:
            raise InvalidInputError("weights_only: false would let a checkpoint run code: sarheight reads checkpoints "
                                    "as data only; leave weights_only out of the configuration")
        plugins = config.get("trainer", {}).get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        for plugin in plugins:
            if isinstance(plugin, CheckpointIO) and not isinstance(plugin, AtomicCheckpointIO):
                raise InvalidInputError(f"trainer.plugins gives the checkpoint I/O {type(plugin).__name__}: sarheight "
                                        "reads and writes checkpoints with its own (data only, written atomically); "
                                        "leave the checkpoint I/O out of trainer.plugins")
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            plugins.append(AtomicCheckpointIO())
        trainer = super().instantiate_trainer(**{"plugins": plugins, **kwargs})
        # Every training says each epoch's figures and the time left (a line where no
        # live bar shows the steps).
        trainer.callbacks.append(TrainingProgress())
        # A strategy carries its own checkpoint I/O (init arg checkpoint_io).
        if not isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO):
            raise InvalidInputError(f"trainer.strategy sets the checkpoint I/O "
                                    f"{type(trainer.strategy.checkpoint_io).__name__}: sarheight reads and writes "
                                    "checkpoints with its own; leave checkpoint_io out of the strategy")
        return trainer


def enforce_import_policy() -> None:
    """Make jsonargparse refuse to import any path outside :data:`IMPORT_ALLOWLIST` (or
    inside :data:`IMPORT_DENYLIST`) that a configuration or the command line names, for
    every parser of the process."""
    from jsonargparse import set_parsing_settings

    set_parsing_settings(import_path_denylist=list(IMPORT_DENYLIST), import_path_allowlist=list(IMPORT_ALLOWLIST))


def task_classes(task: str) -> tuple[type, type, bool]:
    """The model class, the data module class and whether the data module is given by its
    ``class_path`` (subclass mode) for ``task``."""
    if task == "height":
        return PixelRegression, LightningDataModule, True
    if task == "lcz":
        from ..data.so2sat import So2SatDataModule
        from .classification import LCZClassification

        return LCZClassification, So2SatDataModule, False
    raise ValueError(f"task {task!r} is not 'height' or 'lcz'")


def build_cli(cli_class: type[SarHeightCLI], task: str, args: list[str], **options: Any) -> SarHeightCLI:
    """``cli_class`` over ``task``'s classes with the options every sarheight run shares,
    errors of a configuration turned into one-line :class:`InvalidInputError`; ``options``
    go to LightningCLI (``run``, ``parser_kwargs`` added to :data:`PARSER_KWARGS`).

    The one place the parser is made: ``sarheight fit`` and :func:`configured_run` must
    read a configuration alike.
    """
    model_class, data_class, subclass_mode = task_classes(task)
    enforce_import_policy()
    parser_kwargs = {**PARSER_KWARGS, **options.pop("parser_kwargs", {})}
    # Lightning logs through its own handlers: passed on to the root logger too, each
    # line would show twice.
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).propagate = False
    with warnings.catch_warnings():
        # The arguments are the command line's, handed on: not the mix LightningCLI warns of.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
        # Lightning 2.6's own use of an API torch deprecated: nothing a user can change.
        warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
        # Lightning's own use of jsonargparse APIs deprecated since 4.49: nothing a user can change.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="jsonargparse")
        warnings.filterwarnings("ignore", category=DeprecationWarning, module="lightning.pytorch.cli")
        try:
            return cli_class(
                model_class,
                data_class,
                subclass_mode_data=subclass_mode,
                auto_configure_optimizers=False,
                save_config_kwargs={"overwrite": True},
                parser_kwargs=parser_kwargs,
                args=args,
                **options,
            )
        except SarHeightError:
            raise
        except Exception as error:
            reason = user_error(error)
            if reason is None:
                raise
            raise InvalidInputError(reason) from None


def run_cli(subcommand: str, arguments: Sequence[str], task: str = "height") -> int:
    """Run ``sarheight SUBCOMMAND ARGUMENTS`` (fit, validate or test) through LightningCLI;
    returns the exit status (LightningCLI exits by itself on a bad configuration).

    ``task`` is ``"height"`` (:class:`PixelRegression` with any data module: ``sarheight
    fit``) or ``"lcz"`` (:class:`~sarheight.training.classification.LCZClassification` with
    :class:`~sarheight.data.so2sat.So2SatDataModule`: ``sarheight lcz fit``)."""
    if subcommand not in SUBCOMMANDS:
        raise ValueError(f"{subcommand!r} is not one of {', '.join(SUBCOMMANDS)}")
    if any(argument in ("-h", "--help") for argument in arguments):
        # LightningCLI's help lists every option (hundreds of lines): first what to give.
        print(help_summary(subcommand if task == "height" else f"lcz {subcommand}", arguments), flush=True)
    # A shipped configuration by name, from any folder (a path still works).
    arguments = resolve_arguments(arguments)
    check_arguments(arguments)
    try:
        # exit_on_error False: a bad configuration raises, and is said in one line (not
        # the usage and every alternative of a union jsonargparse tried).
        build_cli(SarHeightCLI, task, [subcommand, *arguments], parser_kwargs={"exit_on_error": False})
    except ArgumentError as error:
        raise InvalidInputError(argument_message(error)) from None
    finally:
        release_folders()
        leave_process_group()
    return 0


#: The lock files this process holds (:func:`hold_folder`), released by :func:`release_folders`.
_HELD: list[Any] = []


#: The name of a checkpoint folder's lock file.
LOCK_NAME = ".sarheight-training.lock"


def hold_folder(folder: Path, option: str) -> None:
    """Take ``folder``'s lock for this process, or refuse in one line where another
    training holds it (naming its process)."""
    import fcntl

    path = folder / LOCK_NAME
    # Opened without following a link and only as a plain file: a lock that links to a
    # user's file (or is a folder or a FIFO) is refused, never truncated or written through.
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    what = ("a symbolic link" if path.is_symlink() else "a folder" if path.is_dir() else
            "not a plain file (a FIFO, a device or a socket)" if path.exists() and not path.is_file() else None)
    if what is not None:
        raise InvalidInputError(f"the lock {str(path)!r} of the checkpoint folder is {what}: sarheight writes its own "
                                f"lock there; remove it, or give another {option}")
    try:
        descriptor = os.open(path, flags, 0o644)
    except OSError as error:
        raise InvalidInputError(f"cannot take the lock {str(path)!r} of the checkpoint folder ({error.strerror}): "
                                f"remove it, or give another {option}") from None
    if not stat.S_ISREG(os.fstat(descriptor).st_mode):
        os.close(descriptor)
        raise InvalidInputError(f"the lock {str(path)!r} of the checkpoint folder is not a plain file: remove it, or "
                                f"give another {option}")
    os.set_blocking(descriptor, True)
    handle = os.fdopen(descriptor, "r+")  # held until release_folders
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise InvalidInputError(f"another training ({holder}) writes its checkpoints in {str(folder)!r}: both would "
                                f"claim its last.ckpt; give this one another {option}, or wait for that one") from None
    except OSError:
        handle.close()  # a file system without locks: nothing to hold
        return
    handle.seek(0)
    handle.truncate()
    handle.write(f"process {os.getpid()} on {socket.gethostname()}")
    handle.flush()
    _HELD.append(handle)


def release_folders() -> None:
    """Release the folders this process holds."""
    import fcntl

    while _HELD:
        handle = _HELD.pop()
        with contextlib.suppress(OSError):
            fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


def leave_process_group() -> None:
    """Close the distributed process group a DDP run opened, if any.

    Lightning leaves it open; gloo's threads still running when the interpreter exits
    abort the process now and then (``terminate called without an active exception``,
    exit status 134) after a run that finished well."""
    import torch.distributed

    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
