"""What a training configuration may hold, checked before anything of it is imported or
built: the classes it may name (sarheight's, torch's and Lightning's under an allow-list,
never a module that runs code on import), its size, aliases, depth and tokens, the
environment that would let a checkpoint run code; the arguments of ``sarheight fit`` read
and refused in one line each.
"""

from __future__ import annotations

import importlib.util
import os
import re
from argparse import ArgumentError
from collections.abc import Sequence
from pathlib import Path

from ..configs import config_option
from ..errors import InvalidInputError, SarHeightError
from .checkpoints import check_resume_checkpoint

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


#: The most nodes a configuration may stand for once its YAML aliases are expanded (a
#: shipped one holds about a hundred; nine anchors of nine aliases each, 1.4 kB, stand for
#: hundreds of millions).
MAX_CONFIG_NODES = 100_000


MAX_CONFIG_DEPTH = 50


MAX_CONFIG_TOKENS = 200_000


def check_config_size(size: int, where: str) -> None:
    """Refuse a configuration of more than :data:`MAX_CONFIG_BYTES` bytes."""
    if size > MAX_CONFIG_BYTES:
        raise InvalidInputError(f"{where} is {size / 2**20:.1f} MiB: a configuration is a few kB (at most "
                                f"{MAX_CONFIG_BYTES // 2**20} MiB here); give the configuration, not data")


def check_config_text(text: str, where: str) -> None:
    """Refuse a configuration text beyond :data:`MAX_CONFIG_BYTES`, :data:`MAX_CONFIG_NODES` (aliases expanded),
    :data:`MAX_CONFIG_DEPTH` or :data:`MAX_CONFIG_TOKENS`, in one line, before any parser
    builds it (YAML's scanner reads it token by token, in bounded memory)."""
    import yaml

    check_config_size(len(text.encode(errors="replace")), where)
    depth = deepest = count = 0
    opening = (yaml.FlowSequenceStartToken, yaml.FlowMappingStartToken, yaml.BlockSequenceStartToken,
               yaml.BlockMappingStartToken)
    closing = (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken, yaml.BlockEndToken)
    try:
        for token in yaml.scan(text, Loader=yaml.SafeLoader):
            count += 1
            if isinstance(token, opening):
                depth += 1
                deepest = max(deepest, depth)
            elif isinstance(token, closing):
                depth -= 1
            if deepest > MAX_CONFIG_DEPTH:
                raise InvalidInputError(f"{where} nests deeper than {MAX_CONFIG_DEPTH} levels: a configuration "
                                        "is a few levels deep; mend the file")
            if count > MAX_CONFIG_TOKENS:
                raise InvalidInputError(f"{where} holds more than {MAX_CONFIG_TOKENS:,} YAML items: a configuration "
                                        "holds tens; give the configuration, not data")
    except yaml.YAMLError:
        return  # not YAML: said where it is parsed
    if "*" in text:
        check_expanded_nodes(text, where)


def check_expanded_nodes(text: str, where: str) -> None:
    """Refuse a YAML text that stands for more than :data:`MAX_CONFIG_NODES` nodes once
    its aliases are expanded, or that refers to itself, counted on its composed graph (each
    anchored node once, its expanded size remembered): in time linear in the text."""
    import yaml

    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return  # not YAML: said where it is parsed
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise InvalidInputError(f"{where} holds a YAML alias inside the node it names (a structure that "
                                    "contains itself): a configuration is a tree; write the values out")
        open_nodes.add(key)
        children = (node.value if isinstance(node, yaml.SequenceNode)
                    else [part for pair in node.value for part in pair] if isinstance(node, yaml.MappingNode)
                    else [])
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_CONFIG_NODES:
                raise InvalidInputError(
                    f"{where} stands for more than {MAX_CONFIG_NODES:,} values once its YAML aliases (*name) are "
                    "expanded: each alias repeats a whole part of the file, and these repeat each other; write the "
                    "values out")
        open_nodes.discard(key)
        sizes[key] = total
        return total

    if root is not None:
        size(root)


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
                with open(path, "rb") as handle:
                    if b"\0" in handle.read(4096):
                        return  # binary data (scenes, checkpoints): no configuration is read from it
                check_config_size(path.stat().st_size, f"{where} ({path.name})")
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
    # LightningCLI reads its options from PL_* variables too (PL_FIT__CONFIG a whole
    # configuration): the same bounds and checks as on the command line.
    for name, value in sorted(os.environ.items()):
        if not name.startswith("PL_") or not value.strip():
            continue
        try:
            named = "\n" not in value and Path(value).is_file()
        except OSError:  # a name too long to be a file's
            named = False
        if name.endswith("CONFIG") and named:
            walk_file(Path(value), f"{name}={value}", seen, strict=True)
        else:
            if name.endswith("CONFIG"):
                check_config_text(value, name)
            check_string(value, name, None, seen)
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


def argument_message(error: ArgumentError) -> str:
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
