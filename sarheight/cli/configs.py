"""``sarheight configs``: the training configurations that ship with sarheight, listed, or
one copied into a folder of one's own to edit (``sarheight fit --config NAME`` reads a
shipped one by name from any folder; a path reads one's own copy)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import add_quiet

NAME = "configs"
HELP = "list the training configurations that ship with sarheight, or copy one here to edit (--copy NAME)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--copy", default=None, metavar="NAME", help="copy the shipped configuration NAME")
    parser.add_argument("--out", default=None,
                        help="with --copy: the file to write (default NAME.yaml in this folder; never overwritten)")
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    from .. import configs
    from ..errors import SarHeightError
    from ..io import atomic_path

    if args.copy is None:
        if args.out is not None:
            raise SarHeightError("--out goes with --copy NAME: say which configuration to copy")
        import shutil
        import textwrap

        width = max(len(name) for name in configs.names())
        # Each description whole, wrapped to the terminal under its column.
        columns = max(60, shutil.get_terminal_size((100, 24)).columns)
        for name in configs.names():
            lines = textwrap.wrap(configs.describe(name, width=10_000), columns - width - 2) or [""]
            print(f"{name:<{width}}  {lines[0]}")
            for line in lines[1:]:
                print(f"{'':<{width}}  {line}")
        if not args.quiet:
            print("\n(shipped with sarheight; `sarheight fit --config NAME` reads one from any folder, "
                  "`sarheight configs --copy NAME` copies it here to edit, then `--config NAME.yaml` reads the copy)")
        return 0
    name = args.copy[: -len(".yaml")] if args.copy.endswith(".yaml") else args.copy
    if name not in configs.names():
        raise SarHeightError(f"--copy {args.copy!r}: no shipped configuration of that name; give one of "
                             f"{', '.join(configs.names())}")
    out = Path(args.out) if args.out else Path(f"{name}.yaml")
    if out.exists():
        if args.out:
            raise SarHeightError(f"--out {str(out)!r} exists: give another path (a configuration is never "
                                 "overwritten)")
        raise SarHeightError(f"{str(out)!r} exists here (copied before?): edit it, or give --out ANOTHER.yaml (a "
                             "configuration is never overwritten)")
    with atomic_path(out) as tmp:
        tmp.write_text((configs.FOLDER / f"{name}.yaml").read_text())
    if not args.quiet:
        print(f"wrote {out}: edit it, then `sarheight {'lcz ' if name.startswith('lcz') else ''}fit --config {out}`")
    return 0
