"""The training configurations that ship with sarheight (YAML, package data), found by
name from any folder: ``sarheight fit --config terrain_refine`` reads
``terrain_refine.yaml`` here, a path to a file of one's own still works.

- :data:`FOLDER`: where they are; ``README.md`` beside them says what each trains.
- :func:`names`: the shipped configurations' names.
- :func:`describe`: the first line of a configuration's header comment.
- :func:`resolve`: a ``--config`` value to a file: the path itself where it exists, else
  the shipped configuration of that name.
- :func:`resolve_arguments`: the ``--config`` values of a command line resolved.
- :func:`help_summary`: the first screen of ``sarheight fit --help``: the shipped
  configurations and the ``--data.*``/``--model.*`` keys of the chosen one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import InvalidInputError, MissingInputError

__all__ = ["FOLDER", "config_option", "describe", "help_summary", "names", "resolve", "resolve_arguments"]

#: The folder of the shipped configurations.
FOLDER = Path(__file__).resolve().parent


def config_option(token: str) -> tuple[str, str, str | None] | None:
    """Where a command-line token names a configuration file: (the option, what separates
    it from a value given in the same token, that value or None for the next token).
    argparse reads ``-c FILE``, ``-cFILE``, ``-c=FILE``, ``--config FILE``,
    ``--config=FILE`` and any prefix of ``--config`` from ``--co`` alike; None for any
    other token."""
    if token.startswith("-c") and not token.startswith("--"):
        rest = token[2:]
        separator = "=" if rest.startswith("=") else ""
        return "-c", separator, rest.removeprefix("=") or None
    option, equals, value = token.partition("=")
    if len(option) >= 4 and "--config".startswith(option):
        return option, equals, value if equals else None
    return None


def names() -> list[str]:
    """The shipped configurations' names (their file names without ``.yaml``), sorted."""
    return sorted(path.stem for path in FOLDER.glob("*.yaml"))


def describe(name: str, width: int = 100) -> str:
    """The first sentence of the shipped configuration ``name``'s header comment, cut at
    ``width`` characters."""
    words: list[str] = []
    for line in resolve(name).read_text().splitlines():
        if not line.startswith("#"):
            break
        words += line.lstrip("#").split()
        if any(word.endswith(".") for word in words):
            break
    text = " ".join(words)
    text = (text[: text.find(". ")] if ". " in text else text).rstrip(".")
    return text if len(text) <= width else text[: width - 1].rsplit(" ", 1)[0] + "…"


def resolve(value: str | os.PathLike[str]) -> Path:
    """The file a ``--config`` value names: the path itself where a file is there, else the
    shipped configuration of that name (``terrain_refine``, ``terrain_refine.yaml``, or
    ``sarheight/configs/terrain_refine.yaml`` as older commands wrote it).

    Raises
    ------
    MissingInputError : neither a file nor a shipped configuration, naming them.
    InvalidInputError : a folder.
    """
    path = Path(value)
    if path.is_file():
        return path
    name = path.name[: -len(".yaml")] if path.name.endswith(".yaml") else path.name
    shipped = FOLDER / f"{name}.yaml"
    # A shipped name wins over a folder of that name (a study's output, say): a folder is
    # never a configuration.
    if name in names() and (path.parent == Path(".") or path.parent.name == "configs"):
        return shipped
    if path.is_dir():
        raise InvalidInputError(f"--config {str(value)!r} is a folder: give a YAML configuration, or the name of a "
                                f"shipped one ({', '.join(names())})")
    raise MissingInputError(f"--config {str(value)!r}: no such file, nor a shipped configuration of that name; give a "
                            f"YAML file or one of {', '.join(names())} (sarheight configs lists them)")


def resolve_arguments(arguments: Sequence[str]) -> list[str]:
    """``arguments`` with the value of every configuration option (:func:`config_option`:
    ``--config``, ``-c``, their joined forms and abbreviations) resolved by
    :func:`resolve` to a file's path."""
    resolved = list(arguments)
    for index, argument in enumerate(resolved):
        found = config_option(argument)
        if found is None:
            continue
        option, separator, value = found
        if value is not None:
            resolved[index] = f"{option}{separator}{resolve(value)}"
        elif index + 1 < len(resolved) and not resolved[index + 1].startswith("-"):
            resolved[index + 1] = str(resolve(resolved[index + 1]))
    return resolved


def _config_value(arguments: Sequence[str]) -> str | None:
    for index, argument in enumerate(arguments):
        found = config_option(argument)
        if found is not None:
            if found[2] is not None:
                return found[2]
            if index + 1 < len(arguments):
                return arguments[index + 1]
    return None


def _keys(node: object, prefix: str) -> list[tuple[str, object]]:
    """(option, value) of a configuration's section: ``init_args`` flattened, the class
    named once."""
    if not isinstance(node, dict):
        return [(prefix, node)]
    rows: list[tuple[str, object]] = []
    if "class_path" in node:
        rows.append((prefix, f"{node['class_path']}  (its class)"))
        node = node.get("init_args") or {}
    for key, value in node.items():
        rows += _keys(value, f"{prefix}.{key}") if isinstance(value, dict) and "class_path" not in value else \
            [(f"{prefix}.{key}", value.get("class_path") if isinstance(value, dict) else value)]
    return rows


def help_summary(command: str, arguments: Sequence[str]) -> str:
    """The first screen of ``sarheight COMMAND --help`` (fit, validate, test): what the
    command reads, the shipped configurations, and with ``--config`` the ``--data.*`` and
    ``--model.*`` keys it sets (any can be given on the command line)."""
    import yaml

    what = {"fit": "a training run", "validate": "a checkpoint scored on the validation split (--ckpt_path)",
            "test": "a checkpoint scored on the test split (--ckpt_path)"}.get(command.split()[-1], "a training run")
    lines = [f"sarheight {command}: {what}, from a YAML configuration (LightningCLI): --config NAME or FILE, "
             "then any key of it to override (--data.KEY VALUE, --model.KEY VALUE, --trainer.KEY VALUE).", "",
             "Shipped configurations (by name from any folder; `sarheight configs` lists them, "
             "`sarheight configs --copy NAME` copies one here to edit):"]
    width = max(len(name) for name in names())
    lines += [f"  {name:<{width}}  {describe(name)}" for name in names()]
    value = _config_value(arguments)
    if value is None:
        lines += ["", "Give --config NAME with --help to see the --data.* and --model.* keys that configuration sets."]
    else:
        try:
            path = resolve(value)
            config = yaml.safe_load(path.read_text()) or {}
        except (MissingInputError, InvalidInputError, OSError, yaml.YAMLError) as error:
            lines += ["", f"--config {value}: {error}"]
        else:
            lines += ["", f"The keys {path.name} sets (give any on the command line to change it):"]
            for section in ("data", "model"):
                lines += [f"  --{key} {value!s}" for key, value in _keys(config.get(section, {}), section)]
            lines += ["  (a data module's or model's other keys: sarheight fit --data.help CLASS or --model.help "
                      "CLASS, "
                      "CLASS as its class line says)"]
    lines += ["", "Every option of the command follows (LightningCLI's own help).", ""]
    return "\n".join(lines)
