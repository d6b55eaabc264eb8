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
import importlib.util
import logging
import math
import os
import re
import socket
import warnings
from argparse import ArgumentError
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.plugins.io import CheckpointIO

from ..configs import config_option, help_summary, resolve_arguments
from ..configs import resolve as resolve_config
from ..errors import InvalidInputError, SarHeightError
from .checkpoints import AtomicCheckpointIO, ResumableCheckpoint, check_resume_checkpoint
from .memory import check_forward_memory
from .progress import TrainingProgress
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
                lines.append("validation: " + ", ".join(f"{key[4:]} {value:.4f}" for key, value in sorted(figures.items())))
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


#: The packages a configuration may name classes of (``class_path``): naming a class
#: imports its module, and a module runs code when imported.
ALLOWED_CLASS_PACKAGES = ("sarheight", "torch", "lightning")

#: The import paths a value of a configuration may name (a class, or a callable where an
#: option takes one), enforced by jsonargparse itself before it imports anything, at any
#: depth (nested files, command-line overrides, init args): the project, the parts of
#: Lightning and torch a training configuration is made of. The most specific entry of
#: the two lists decides.
IMPORT_ALLOWLIST = ("sarheight", "lightning.pytorch.callbacks", "lightning.pytorch.loggers",
                    "lightning.pytorch.strategies", "lightning.pytorch.profilers", "lightning.pytorch.accelerators",
                    "lightning.pytorch.plugins", "lightning.fabric.plugins", "lightning.pytorch.core",
                    "lightning.pytorch.trainer", "torch.optim", "torch.nn")

#: Denied inside the allowed packages: the checkpoint I/O (Lightning's reads a checkpoint's
#: pickle whole; sarheight's :class:`AtomicCheckpointIO` reads data only and cannot be
#: replaced), and the callback that calls any function a configuration names.
IMPORT_DENYLIST = ("*", "lightning.pytorch.plugins.io", "lightning.fabric.plugins.io",
                   "lightning.pytorch.callbacks.LambdaCallback", "lightning.pytorch.callbacks.lambda_function")


def enforce_import_policy() -> None:
    """Make jsonargparse refuse to import any path outside :data:`IMPORT_ALLOWLIST` (or
    inside :data:`IMPORT_DENYLIST`) that a configuration or the command line names, for
    every parser of the process."""
    from jsonargparse import set_parsing_settings

    set_parsing_settings(import_path_denylist=list(IMPORT_DENYLIST), import_path_allowlist=list(IMPORT_ALLOWLIST))


#: The environment variable that would make torch read a checkpoint's pickle whole.
UNSAFE_LOAD_VARIABLE = "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"


def refuse_unsafe_environment() -> None:
    """Refuse a process whose environment switches torch's weights-only loading off."""
    value = os.environ.get(UNSAFE_LOAD_VARIABLE, "").strip().lower()
    if value not in ("", "0", "false", "no", "off"):
        raise InvalidInputError(f"{UNSAFE_LOAD_VARIABLE}={os.environ[UNSAFE_LOAD_VARIABLE]} would let a checkpoint "
                                "run code: sarheight reads checkpoints as data only; unset it")

#: Options whose value may be a class (a dotted path is then imported).
CLASS_OPTIONS = ("--data", "--model", "--trainer.logger", "--trainer.callbacks", "--trainer.plugins",
                 "--trainer.strategy", "--trainer.profiler", "--trainer.accelerator", "--optimizer",
                 "--lr_scheduler")


#: A dotted Python path (``package.module.Name``): what jsonargparse imports where a class
#: or a callable may be given, in any string of a configuration.
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+")

#: A file a configuration names is read to check it only up to this size: a larger one is
#: data (scenes, checkpoints), not a nested configuration.
_NESTED_CONFIG_BYTES = 1 << 20


#: Bounds of a configuration, checked before it is parsed: its size (a shipped one is a
#: few kB), its YAML aliases (each may stand for a whole tree: a kilobyte of them expands
#: to billions of nodes), its nesting depth and its number of YAML tokens.
MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_ALIASES = 100
MAX_CONFIG_DEPTH = 50
MAX_CONFIG_TOKENS = 200_000


def check_config_size(size: int, where: str) -> None:
    """Refuse a configuration of more than :data:`MAX_CONFIG_BYTES` bytes."""
    if size > MAX_CONFIG_BYTES:
        raise InvalidInputError(f"{where} is {size / 2**20:.1f} MiB: a configuration is a few kB (at most "
                                f"{MAX_CONFIG_BYTES // 2**20} MiB here); give the configuration, not data")


def check_config_text(text: str, where: str) -> None:
    """Refuse a configuration text beyond :data:`MAX_CONFIG_BYTES`, :data:`MAX_CONFIG_ALIASES`,
    :data:`MAX_CONFIG_DEPTH` or :data:`MAX_CONFIG_TOKENS`, in one line, before any parser
    builds it (YAML's scanner reads it token by token, in bounded memory)."""
    import yaml

    check_config_size(len(text.encode(errors="replace")), where)
    aliases = depth = deepest = count = 0
    opening = (yaml.FlowSequenceStartToken, yaml.FlowMappingStartToken, yaml.BlockSequenceStartToken,
               yaml.BlockMappingStartToken)
    closing = (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            count += 1
            if isinstance(token, yaml.AliasToken):
                aliases += 1
            elif isinstance(token, opening):
                depth += 1
                deepest = max(deepest, depth)
            elif isinstance(token, closing):
                depth -= 1
            if aliases > MAX_CONFIG_ALIASES:
                raise InvalidInputError(f"{where} has more than {MAX_CONFIG_ALIASES} YAML aliases (*name): each "
                                        "repeats a whole part of the file, and so many can expand it beyond any "
                                        "memory; write the values out")
            if deepest > MAX_CONFIG_DEPTH:
                raise InvalidInputError(f"{where} nests deeper than {MAX_CONFIG_DEPTH} levels: a configuration "
                                        "is a few levels deep; mend the file")
            if count > MAX_CONFIG_TOKENS:
                raise InvalidInputError(f"{where} holds more than {MAX_CONFIG_TOKENS:,} YAML items: a configuration "
                                        "holds tens; give the configuration, not data")
    except yaml.YAMLError:
        return  # not YAML: said where it is parsed


def check_arguments(arguments: Sequence[str]) -> None:
    """Refuse, before LightningCLI reads anything, what would run code that is not
    sarheight's, torch's or Lightning's: a class path of another package (in the
    arguments or in a YAML configuration they name), and ``--weights_only false`` (a
    checkpoint read as more than data).

    jsonargparse imports more than ``class_path`` keys: a bare dotted string where a
    class may go (``data: pkg.Class``, ``callbacks: [pkg.Class]``), a string holding YAML
    or JSON, and a file named where a nested configuration may go (``data: other.yaml``,
    any suffix); ``--config``, ``-c`` and their abbreviations load a file of any suffix.
    So every value of the arguments and every string of a configuration, at any depth,
    is checked: a ``class_path`` of another package, a dotted string whose first part is
    an importable module of another package (found with :func:`importlib.util.find_spec`,
    which runs none of its code), embedded YAML and the text files named, recursively.

    Raises
    ------
    InvalidInputError : naming the option or file and what to do.
    """
    import yaml

    refuse_unsafe_environment()

    def refuse_path(value: str, where: str) -> None:
        if "." in value and value.split(".")[0] not in ALLOWED_CLASS_PACKAGES:
            raise InvalidInputError(
                f"{where} names the class {value!r}: configurations may only name classes of "
                f"{', '.join(ALLOWED_CLASS_PACKAGES)} (a class of another package would be imported, and run its "
                "code); use a class of these or its short name")

    def check_string(value: str, where: str, folder: Path | None, seen: set[Path]) -> None:
        text = value.strip()
        if _DOTTED.fullmatch(text) and text.split(".")[0] not in ALLOWED_CLASS_PACKAGES:
            head = text.split(".")[0]
            # A file name (s0.nc, last.ckpt) is shaped the same: only a module that could
            # be imported is refused.
            try:
                importable = importlib.util.find_spec(head) is not None
            except (ImportError, ValueError):  # loaded already, without a spec (__main__)
                importable = True
            if importable:
                raise InvalidInputError(
                    f"{where} gives {text!r}, which would be imported as a class of the module {head!r} (code "
                    f"outside {', '.join(ALLOWED_CLASS_PACKAGES)}): name classes of these only; a file of that "
                    f"name is given as ./{text}")
        for found in re.findall(r"class_path['\"]?\s*[:=]\s*['\"]?([\w.]+)", text):
            refuse_path(found, where)
        if text[:1] in ("{", "["):
            check_config_text(text, where)
            try:
                walk(yaml.safe_load(text), where, folder, seen)
            except yaml.YAMLError:
                pass  # not YAML: jsonargparse keeps it a string
        elif text and "\n" not in text:
            # A file named where a nested configuration may go is read as one.
            for base in (Path.cwd(), *([folder] if folder else [])):
                try:
                    named = (base / text).is_file()
                except OSError:  # a name too long to be a file's
                    named = False
                if named:
                    walk_file(base / text, where, seen, strict=False)

    def walk(node: object, where: str, folder: Path | None, seen: set[Path]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "class_path" and isinstance(value, str):
                    refuse_path(value, where)
                walk(value, where, folder, seen)
        elif isinstance(node, list):
            for item in node:
                walk(item, where, folder, seen)
        elif isinstance(node, str):
            check_string(node, where, folder, seen)

    def walk_file(path: Path, where: str, seen: set[Path], strict: bool) -> None:
        """Walk a configuration file; ``strict``: the file is one the arguments give as a
        configuration (unreadable YAML is an error), else a file a string names (a file of
        data is passed over: jsonargparse reads no class from it either)."""
        path = path.resolve()
        if path in seen:
            return
        seen.add(path)
        try:
            if not strict and path.stat().st_size > _NESTED_CONFIG_BYTES:
                return
            if strict:
                check_config_size(path.stat().st_size, where)  # before reading it
            raw = path.read_bytes()
            if not strict and b"\0" in raw[:4096]:
                return  # binary: a scene or a checkpoint
            check_config_text(raw.decode(errors="replace"), where if strict else f"{where} ({path.name})")
            node = yaml.safe_load(raw.decode())
        except (yaml.YAMLError, UnicodeDecodeError) as error:
            if strict:
                mark = getattr(error, "problem_mark", None)
                problem = getattr(error, "problem", None) or str(error).splitlines()[0]
                place = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
                raise InvalidInputError(f"{where} is not readable YAML ({problem}{place}): mend the file") from None
            return
        except OSError:
            return  # unreadable here: jsonargparse cannot read it either
        walk(node, f"{where} ({path.name})" if not strict else where, path.parent, seen)

    tokens = list(arguments)
    seen: set[Path] = set()
    for index, token in enumerate(tokens):
        # --config, -c and the forms and abbreviations argparse accepts for them load a
        # file of any suffix.
        config = config_option(token)
        if config is not None:
            option, inline = config[0], config[2] or ""
        else:
            option, _, inline = token.partition("=")
        value = inline if inline else (tokens[index + 1] if index + 1 < len(tokens) else "")
        # argparse takes any unambiguous prefix of an option (--weights_on).
        if (len(option) > 3 and "--weights_only".startswith(option)
                and value.strip().lower() in ("false", "0", "no", "off")):
            raise InvalidInputError("--weights_only false would let a checkpoint run code: sarheight reads "
                                    "checkpoints as data only; leave the option out")
        if not option.startswith("-"):
            continue
        if len(option) > 3 and "--ckpt_path".startswith(option):
            # LightningCLI reads a named checkpoint's hyperparameters before any sarheight code.
            check_resume_checkpoint(value, f"--ckpt_path {value!r}")
            continue
        if option.endswith(".class_path") or option.rstrip("+") in CLASS_OPTIONS:
            refuse_path(value.strip(), option)
        if (config is not None or value.endswith((".yaml", ".yml"))) and Path(value).is_file():
            walk_file(Path(value), f"{option} {value}", seen, strict=True)
        else:
            check_string(value, option, None, seen)


def _task_classes(task: str) -> tuple[type, type, bool]:
    """The model class, the data module class and whether the data module is given by its
    ``class_path`` (subclass mode) for ``task``."""
    if task == "height":
        return PixelRegression, LightningDataModule, True
    if task == "lcz":
        from ..data.so2sat import So2SatDataModule
        from .classification import LCZClassification

        return LCZClassification, So2SatDataModule, False
    raise ValueError(f"task {task!r} is not 'height' or 'lcz'")


def _build_cli(cli_class: type[SarHeightCLI], task: str, args: list[str], **options: Any) -> SarHeightCLI:
    """``cli_class`` over ``task``'s classes with the options every sarheight run shares,
    errors of a configuration turned into one-line :class:`InvalidInputError`; ``options``
    go to LightningCLI (``run``, ``parser_kwargs`` added to :data:`PARSER_KWARGS`).

    The one place the parser is made: ``sarheight fit`` and :func:`configured_run` must
    read a configuration alike.
    """
    model_class, data_class, subclass_mode = _task_classes(task)
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


#: The parser options of every sarheight LightningCLI.
PARSER_KWARGS: dict[str, Any] = {"prog": "sarheight"}


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
        _build_cli(SarHeightCLI, task, [subcommand, *arguments], parser_kwargs={"exit_on_error": False})
    except ArgumentError as error:
        raise InvalidInputError(_argument_message(error)) from None
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
    handle = open(path, "a+")  # held until release_folders
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


@dataclass(frozen=True)
class ConfiguredRun:
    """A training configuration read as ``sarheight fit --config`` reads it.

    Attributes
    ----------
    config : Path
        The configuration file.
    model : LightningModule
        The model, instantiated (:class:`PixelRegression` for the height task), its
        ``in_channels`` linked to the data module's as in ``sarheight fit``.
    datamodule : LightningDataModule
        The data module, instantiated (not set up: no scene is read).
    trainer_options : dict
        The ``trainer`` keys of the parsed configuration, every default filled in, as
        plain YAML values (``max_epochs``, ``max_time``, ``accelerator``...). The
        class-valued ones (``logger``, ``callbacks``, ``plugins``...) are their
        ``class_path``/``init_args`` specifications, not objects: a caller building its
        own ``Trainer`` picks the keys it uses.
    seed : int or None
        The value ``seed_everything`` was called with before the model and data module
        were instantiated (the one drawn where the configuration says ``true``); None
        where it says ``false`` (no seeding).
    init_args : dict
        ``{"model": {...}, "data": {...}}``: the parsed init args of the model and the data
        module, every default filled in, plus those linked from the data module
        (``model.in_channels``): plain YAML values, for comparison and records.
    config_text : str
        The whole parsed configuration as YAML: what ``sarheight fit`` saves as
        ``config.yaml`` beside its logs.
    """

    config: Path
    model: LightningModule
    datamodule: LightningDataModule
    trainer_options: dict[str, Any]
    seed: int | None
    init_args: dict[str, dict[str, Any]]
    config_text: str


class _ConfigReader(SarHeightCLI):
    """:class:`SarHeightCLI` (the same parser, links and seeding) that instantiates no
    Trainer: see :func:`configured_run`."""

    def instantiate_trainer(self, **kwargs: Any) -> None:  # type: ignore[override]
        return None


def configured_run(config: str | os.PathLike[str], overrides: Sequence[str] = (), *,
                   task: str = "height") -> ConfiguredRun:
    """Read a training configuration exactly as ``sarheight fit --config CONFIG
    OVERRIDES`` does, and instantiate its model and data module.

    The same LightningCLI parser as ``sarheight fit`` (:class:`SarHeightCLI` over the same
    classes, subclass mode, parser options and argument links), given ``--config CONFIG
    *OVERRIDES`` after the same :func:`check_arguments` checks, so that nothing the
    configuration names is imported unchecked. As LightningCLI does, ``seed_everything``
    is called (with the configuration's ``seed_everything``) before the classes are
    instantiated: this reseeds the process's random generators.

    No Trainer is instantiated (LightningCLI's ``run=False`` would make one): making one
    creates no file, but it resolves the accelerator and devices, logs them ("GPU
    available: ...") and, for an unavailable accelerator, fails for a caller that sets
    its own; the caller builds its Trainer from :attr:`ConfiguredRun.trainer_options`.
    The ``trainer.logger`` and ``trainer.callbacks`` objects and the ``checkpoint``
    callback are instantiated by the parser (their constructors create no folder or
    file) and dropped.

    Parameters
    ----------
    config : path or name
        The YAML configuration, of any suffix, or a shipped one's name (``terrain_refine``:
        :func:`sarheight.configs.resolve`).
    overrides : sequence of str
        Command-line style arguments after it: ``["--data.channels", "[a, b]",
        "--seed_everything", "1", "--trainer.max_epochs", "2"]``. Options of the ``fit``
        subcommand itself (``--ckpt_path``) are not configuration and are refused.
    task : {"height", "lcz"}
        ``"height"``: ``sarheight fit`` (:class:`PixelRegression`, any data module by
        ``class_path``); ``"lcz"``: ``sarheight lcz fit``.

    Returns
    -------
    ConfiguredRun

    Raises
    ------
    MissingInputError : the configuration file does not exist.
    InvalidInputError : it is not a file, names a class of another package, or holds a
        key or value that ``sarheight fit`` refuses (one line, as ``sarheight fit`` says it).
    """
    import yaml

    path = resolve_config(config)
    _task_classes(task)
    arguments = ["--config", str(path), *overrides]
    check_arguments(arguments)
    try:
        # exit_on_error False: a library call raises where the command exits with usage.
        cli = _build_cli(_ConfigReader, task, arguments, run=False, parser_kwargs={"exit_on_error": False})
    except ArgumentError as error:
        raise InvalidInputError(f"{path}: {_argument_message(error)}") from None
    config_text = cli.parser.dump(cli.config, skip_none=False)
    parsed = yaml.safe_load(config_text)

    def init_args(key: str) -> dict[str, Any]:
        node = parsed.get(key) or {}
        return dict(node.get("init_args") or {}) if "class_path" in node else dict(node)

    model_args = init_args("model")
    # Linked arguments (model.in_channels) are applied on instantiation: only the
    # instantiated model has them. LightningCLI's own entries start with "_".
    model_args.update({key: value for key, value in cli.model.hparams.items()
                       if key not in model_args and not key.startswith("_")})
    seed = parsed.get("seed_everything")
    return ConfiguredRun(config=path, model=cli.model, datamodule=cli.datamodule,
                         trainer_options=dict(parsed.get("trainer") or {}),
                         seed=None if seed is False else int(seed),
                         init_args={"model": model_args, "data": init_args("data")}, config_text=config_text)


def _argument_message(error: ArgumentError) -> str:
    """One line of what jsonargparse found wrong (it writes several: the key, then
    the reason, or a list of the alternatives of a union)."""
    text = str(error.message if getattr(error, "message", None) else error)
    reason = user_error(ValueError(text))
    if reason is not None:
        return reason
    message = ""
    for line in (line.strip() for line in text.splitlines() if line.strip()):
        message += (" " if message.endswith(":") else "; " if message else "") + line
    return message


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
    denied = re.search(r"Importing '([\w.]+)' is not allowed", text)
    if denied:
        return (f"the configuration names {denied.group(1)!r}, which sarheight never imports from a configuration "
                "(code outside the project and the parts of Lightning and torch a training is made of; no "
                "checkpoint I/O, no function to call): name a class of sarheight or of Lightning's callbacks, "
                "loggers or strategies")
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
