"""``sarheight fit|validate|test``: LightningCLI over :class:`PixelRegression` and a data module.

A run is a YAML configuration (``configs/terrain_ask_unet.yaml``) with ``model`` (the
:class:`PixelRegression` options), ``data`` (a data module's ``class_path`` and
``init_args``), ``trainer`` and ``checkpoint`` (the :class:`ModelCheckpoint` options), and
any key overridden on the command line (``--trainer.max_epochs 2``, ``--data.scenes
DIR``). The model's ``in_channels`` follows the data module's channels. Checkpoints are
written atomically (:class:`~sarheight.training.checkpoints.AtomicCheckpointIO`), the last
one as ``last.ckpt`` (also every ``checkpoint.every_n_train_steps`` steps, so that
``--ckpt_path last`` resumes a run killed mid-epoch).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO

from ..errors import InvalidInputError, SarHeightError
from .checkpoints import AtomicCheckpointIO, ResumableCheckpoint, require_checkpoint_archive
from .memory import check_forward_memory
from .regression import PixelRegression

#: The Trainer methods sarheight runs as subcommands.
SUBCOMMANDS = ("fit", "validate", "test")


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
        # ModelCheckpoint in trainer.callbacks, see configs/).
        parser.add_lightning_class_args(ResumableCheckpoint, "checkpoint")
        parser.set_defaults({"checkpoint.save_last": True, "checkpoint.save_top_k": 0,
                             "checkpoint.every_n_train_steps": 100})
        if self.model_class is PixelRegression:
            parser.link_arguments("data.in_channels", "model.in_channels", apply_on="instantiate")

    def before_fit(self) -> None:
        # A run of no epoch or step would exit 0 having trained nothing.
        if self.trainer.max_epochs == 0 or self.trainer.max_steps == 0:
            raise InvalidInputError("trainer.max_epochs or trainer.max_steps is 0: nothing would be trained; give at "
                                    "least 1")
        self._check_checkpoint_folders()
        self._check_memory(training=True)

    def before_validate(self) -> None:
        self._check_memory(training=False)

    def before_test(self) -> None:
        self._check_memory(training=False)

    def after_fit(self) -> None:
        # Where the run's checkpoints went: what predict and --ckpt_path last need.
        written = []
        for callback in self.trainer.checkpoint_callbacks:
            for label, path in (("last", getattr(callback, "last_model_path", "")),
                                ("best", getattr(callback, "best_model_path", ""))):
                if path and Path(path).is_file() and path not in [p for _, p in written]:
                    written.append((label, path))
        if written and self.trainer.is_global_zero:
            print("checkpoints: " + "; ".join(f"{label} {path}" for label, path in written))

    def _check_checkpoint_folders(self) -> None:
        """The checkpoint folders made and writable before the first step (not found after
        minutes of training)."""
        from ..paths import check_writable_folder

        for callback in self.trainer.checkpoint_callbacks:
            folder = getattr(callback, "dirpath", None)
            if not folder:
                continue
            try:
                Path(folder).mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise InvalidInputError(f"cannot make the checkpoint folder {str(folder)!r} ({error.strerror}): set "
                                        "checkpoint.dirpath to a place you can write") from None
            check_writable_folder(Path(folder) / "last.ckpt", "the checkpoint folder (checkpoint.dirpath)")

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
        config = self.config_init.get(str(self.subcommand), self.config_init).get("trainer", {})
        plugins = config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(plugin, CheckpointIO) for plugin in plugins):
            plugins.append(AtomicCheckpointIO())
        return super().instantiate_trainer(**{"plugins": plugins, **kwargs})


#: The packages a configuration may name classes of (``class_path``): naming a class
#: imports its module, and a module runs code when imported.
ALLOWED_CLASS_PACKAGES = ("sarheight", "torch", "lightning")

#: Options whose value may be a class (a dotted path is then imported).
CLASS_OPTIONS = ("--data", "--model", "--trainer.logger", "--trainer.callbacks", "--trainer.plugins",
                 "--trainer.strategy", "--trainer.profiler", "--trainer.accelerator", "--optimizer",
                 "--lr_scheduler")


def check_arguments(arguments: Sequence[str]) -> None:
    """Refuse, before LightningCLI reads anything, what would run code that is not
    sarheight's, torch's or Lightning's: a class path of another package (in the
    arguments or in a YAML configuration they name), and ``--weights_only false`` (a
    checkpoint read as more than data).

    Raises
    ------
    InvalidInputError : naming the option or file and what to do.
    """
    import yaml

    def refuse_path(value: str, where: str) -> None:
        if "." in value and value.split(".")[0] not in ALLOWED_CLASS_PACKAGES:
            raise InvalidInputError(
                f"{where} names the class {value!r}: configurations may only name classes of "
                f"{', '.join(ALLOWED_CLASS_PACKAGES)} (a class of another package would be imported, and run its "
                "code); use a class of these or its short name")

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "class_path" and isinstance(value, str):
                    refuse_path(value, where)
                walk(value, where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)

    tokens = list(arguments)
    for index, token in enumerate(tokens):
        option, _, inline = token.partition("=")
        value = inline if inline else (tokens[index + 1] if index + 1 < len(tokens) else "")
        if option == "--weights_only" and value.strip().lower() in ("false", "0", "no", "off"):
            raise InvalidInputError("--weights_only false would let a checkpoint run code: sarheight reads "
                                    "checkpoints as data only; leave the option out")
        if not option.startswith("--"):
            continue
        if option == "--ckpt_path":
            # LightningCLI reads a named checkpoint's hyperparameters before any sarheight code.
            require_checkpoint_archive(value, f"--ckpt_path {value!r}")
        for found in re.findall(r"class_path['\"]?\s*[:=]\s*['\"]?([\w.]+)", value):
            refuse_path(found, option)
        if option.endswith(".class_path") or option.rstrip("+") in CLASS_OPTIONS:
            refuse_path(value.strip(), option)
        if value.endswith((".yaml", ".yml")) and Path(value).is_file():
            try:
                walk(yaml.safe_load(Path(value).read_text()), f"{option} {value}")
            except yaml.YAMLError as error:
                raise InvalidInputError(f"{option} {value!r} is not readable YAML: {error}") from None


def run_cli(subcommand: str, arguments: Sequence[str], task: str = "height") -> int:
    """Run ``sarheight SUBCOMMAND ARGUMENTS`` (fit, validate or test) through LightningCLI;
    returns the exit status (LightningCLI exits by itself on a bad configuration).

    ``task`` is ``"height"`` (:class:`PixelRegression` with any data module: ``sarheight
    fit``) or ``"lcz"`` (:class:`~sarheight.training.classification.LCZClassification` with
    :class:`~sarheight.data.so2sat.So2SatDataModule`: ``sarheight lcz fit``)."""
    if subcommand not in SUBCOMMANDS:
        raise ValueError(f"{subcommand!r} is not one of {', '.join(SUBCOMMANDS)}")
    check_arguments(arguments)
    if task == "height":
        model_class, data_class, subclass_mode = PixelRegression, LightningDataModule, True
    elif task == "lcz":
        from ..data.so2sat import So2SatDataModule
        from .classification import LCZClassification

        model_class, data_class, subclass_mode = LCZClassification, So2SatDataModule, False
    else:
        raise ValueError(f"task {task!r} is not 'height' or 'lcz'")
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
            SarHeightCLI(
                model_class,
                data_class,
                subclass_mode_data=subclass_mode,
                auto_configure_optimizers=False,
                save_config_kwargs={"overwrite": True},
                parser_kwargs={"prog": "sarheight"},
                args=[subcommand, *arguments],
            )
        except SarHeightError:
            raise
        except Exception as error:
            reason = user_error(error)
            if reason is None:
                raise
            raise InvalidInputError(reason) from None
    return 0


def user_error(error: BaseException) -> str | None:
    """The message a user needs of an error that LightningCLI or Lightning raised over a
    configuration (jsonargparse wraps the data module's own error in a list of the
    alternatives it tried; Lightning's MisconfigurationException says what is wrong), or
    None for an error of another kind (a bug, to report)."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    seen = error
    while seen is not None:
        if isinstance(seen, SarHeightError):
            return str(seen)
        seen = seen.__cause__ or seen.__context__
    text = str(error)
    if isinstance(error, MisconfigurationException):
        if "accelerator is not available" in text:
            found = re.search(r"`(\w+?)Accelerator`", text)
            name = found.group(1) if found else "the chosen"
            return (f"trainer.accelerator: no {name} device is available here; set trainer.accelerator to cpu "
                    "(or auto)")
        return text
    if isinstance(error, ValueError) and "Does not validate against any of the Union subtypes" in text:
        reasons = [line.strip()[2:] for line in text.splitlines() if line.strip().startswith("- ")
                   and "Expected a <class 'NoneType'>" not in line]
        if reasons:
            return reasons[0]
    return None
