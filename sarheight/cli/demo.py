"""``sarheight demo``: the main job on the built-in real example, offline."""

from __future__ import annotations

import argparse

from .options import add_quiet

NAME = "demo"
HELP = ("run the built-in real example, offline (under a minute once installed): the layover reconstruction of the "
        "real "
        "Jacksboro DEM, its refinement beside every non-learned method, a city's building heights; figures, "
        "GeoTIFFs and figures.json in --out")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = HELP
    parser.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    add_quiet(parser)
    parser.set_defaults(out_is_folder=True)


def run(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    run_demo(args.out, progress=not args.quiet)
    return 0
