"""``sarheight fit|validate|test``: the training commands, handed whole to LightningCLI.

They read the rest of the command line themselves (``--config``, any key of it,
``--help``), so they are commands with ``PASSTHROUGH`` set: the ``sarheight`` parser gives
them every argument after their name, in ``args.arguments``.
"""

from __future__ import annotations

import argparse


class TrainingCommand:
    """One of the training commands, in the shape of the modules of ``COMMANDS`` (``NAME``,
    ``HELP``, ``add_arguments``, ``run``)."""

    #: The command's own parser reads everything after its name.
    PASSTHROUGH = True

    def __init__(self, name: str, help_text: str):
        self.NAME = name
        self.HELP = help_text

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Nothing: LightningCLI parses the arguments (``sarheight fit --help`` lists them)."""

    def run(self, args: argparse.Namespace) -> int:
        from ..training.cli import run_cli

        return run_cli(self.NAME, args.arguments)


COMMANDS = (
    TrainingCommand("fit", "train a height model from a YAML configuration (--config; --help lists every key)"),
    TrainingCommand("validate", "score a checkpoint on the validation split (--config, --ckpt_path)"),
    TrainingCommand("test", "score a checkpoint on the test split (--config, --ckpt_path)"),
)
