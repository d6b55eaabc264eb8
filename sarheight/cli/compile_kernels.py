"""``sarheight compile``: compile and cache the kernels now, not on the first run."""

from __future__ import annotations

import argparse

from .options import add_quiet

NAME = "compile"
HELP = "compile and cache the kernels now, not on the first run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    from ..demo import compile_kernels

    if not args.quiet:
        print("compiling the kernels (once per installation; about a minute on two cores)...", flush=True)
    seconds = compile_kernels()
    if not args.quiet:
        print(f"compiled and cached in {seconds:.1f} s")
    return 0
