"""One reader of training configurations for ``sarheight fit`` and the studies
(:func:`configured_run`): a shipped configuration by name or a YAML file, checked by the
configuration policy, resolved into the model, the data module and the trainer's options.
"""

from __future__ import annotations

import os
from argparse import ArgumentError
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch import LightningDataModule, LightningModule

from ..configs import resolve as resolve_config
from ..errors import InvalidInputError
from .cli import SarHeightCLI, build_cli, task_classes
from .config_policy import argument_message, check_arguments


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
    task_classes(task)
    arguments = ["--config", str(path), *overrides]
    check_arguments(arguments)
    try:
        # exit_on_error False: a library call raises where the command exits with usage.
        cli = build_cli(_ConfigReader, task, arguments, run=False, parser_kwargs={"exit_on_error": False})
    except ArgumentError as error:
        raise InvalidInputError(f"{path}: {argument_message(error)}") from None
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
