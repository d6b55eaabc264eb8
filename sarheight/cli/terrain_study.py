"""``sarheight terrain study``: the refinement study on held-out DEMs: the networks of a
configuration (with and without SAR) and the non-learned methods against the coarse DEM,
scored per DEM, factor, looks and ground; Markdown and JSON tables, figure."""

from __future__ import annotations

import argparse
import sys

from ..errors import SarHeightError
from .options import add_quiet

HELP = ("the refinement study on held-out DEMs: networks with and without SAR and the non-learned methods "
        "against the coarse DEM; Markdown and JSON tables, figure")

#: The networks the study trains when none is named: the two the SAR's share needs.
DEFAULT_NETWORKS = ("sar", "nosar")


def training_time(text: str) -> str:
    """A ``--max-time`` as Lightning takes it (``DD:HH:MM:SS``), checked before any work."""
    parts = text.strip().split(":")
    if len(parts) != 4 or not all(part.isdigit() for part in parts) or int(parts[2]) > 59 or int(parts[3]) > 59:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: give days, hours, minutes and seconds as "
                                         "DD:HH:MM:SS (00:00:15:00 for 15 minutes)")
    return text.strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenes", required=True, help="folder of the training and validation scenes "
                        "(sarheight terrain scenes)")
    parser.add_argument("--test-scenes", required=True, help="folder of the held-out scenes (their DEMs in no "
                        "training scene)")
    parser.add_argument("--out", required=True, help="folder of the runs and the tables (refinement.*); a run that "
                        "finished there is not trained again")
    parser.add_argument("--config", default="terrain_refine",
                        help="the SAR network's configuration, a file or a shipped one's name, from which the others "
                        "derive (default terrain_refine)")
    parser.add_argument("--method", action="append", default=None,
                        choices=("sar", "nosar", "sar_geocoded", "both_passes", "priors_only_network"),
                        help="the networks to train (default sar and nosar: the two the SAR's share needs); repeat "
                        "for several")
    parser.add_argument("--seeds", type=int, default=2, help="trainings per network (default 2)")
    parser.add_argument("--max-epochs", type=int, default=None, help="epochs of every training (default the "
                        "configuration's)")
    parser.add_argument("--max-time", default=None, metavar="DD:HH:MM:SS", type=training_time,
                        help="stop every training after this long (default the configuration's)")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator (auto: a GPU if there is one)")
    add_quiet(parser)
    parser.set_defaults(out_is_folder=True)


def run(args: argparse.Namespace) -> int:
    from ..extras import require

    require("sarheight terrain study")
    from ..studies.refinement import run_refinement_study

    if args.seeds < 1:
        raise SarHeightError(f"--seeds must be at least 1, got {args.seeds}")
    results = run_refinement_study(args.scenes, args.test_scenes, args.out, config=args.config, seeds=args.seeds,
                                   methods=args.method, max_epochs=args.max_epochs, max_time=args.max_time,
                                   accelerator=args.accelerator, progress=not args.quiet,
                                   command=" ".join(["sarheight", *sys.argv[1:]]))
    if not args.quiet:
        print(f"{len(results['rows'])} held-out DEM x factor x looks x ground rows; table in "
              f"{args.out}/refinement.md")
    return 0
