"""``sarheight terrain ablate``: the terrain-height studies on held-out DEMs: the seed paper's
ablation (``--task ablation``) and the refinement study (``--task refine``)."""

from __future__ import annotations

import argparse
import sys

from ..errors import SarHeightError
from .options import add_training_budget

HELP = ("the terrain studies on held-out DEMs: --task refine (networks and physics against the coarse DEM, with "
        "and without SAR) or --task ablation (the U-Net variants on geocoded and reconstructed SAR); Markdown and "
        "JSON tables, figure")

#: The ablation's budget when not given (the refinement study takes its from --config).
ABLATION_BUDGET = {"seeds": 3, "max_epochs": 10, "tiles_per_epoch": 128, "batch_size": 8, "tile": 96, "lr": 2e-3}


def training_time(text: str) -> str:
    """A ``--max-time`` as Lightning takes it (``DD:HH:MM:SS``), checked before any work."""
    parts = text.strip().split(":")
    if len(parts) != 4 or not all(part.isdigit() for part in parts) or int(parts[2]) > 59 or int(parts[3]) > 59:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: give days, hours, minutes and seconds as "
                                         "DD:HH:MM:SS (00:00:15:00 for 15 minutes)")
    return text.strip()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", choices=("ablation", "refine"), default="ablation",
                        help="ablation (default): the seed paper's U-Net variants relative to the priors; refine: the "
                        "refinement of the coarse DEM by the networks of --config and by clinometry")
    parser.add_argument("--scenes", required=True, help="folder of scene files (sarheight terrain scenes); refine: "
                        "the training and validation scenes")
    parser.add_argument("--out", required=True, help="folder of the runs and the tables (ablation.* or refinement.*); "
                        "a run that finished there is not trained again")
    parser.add_argument("--test-dem", action="append", default=None, metavar="DEM",
                        help="ablation: a DEM (its scenes' dem_name) held out for testing; repeat for several")
    parser.add_argument("--val-dem", action="append", default=[], metavar="DEM",
                        help="ablation: a DEM held out for validation (logged only); default none")
    parser.add_argument("--test-scenes", default=None, help="refine: the folder of the held-out scenes (their DEMs "
                        "in no training scene)")
    parser.add_argument("--config", default="terrain_refine",
                        help="refine: the SAR network's configuration, a file or a shipped one's name, from which the "
                        "others derive (default terrain_refine)")
    parser.add_argument("--method", action="append", default=None,
                        choices=("sar", "nosar", "sar_geocoded", "both_passes", "priors_only_network"),
                        help="refine: the networks to train (default sar and nosar: the two the SAR's share needs); repeat for several")
    parser.add_argument("--max-time", default=None, metavar="DD:HH:MM:SS", type=training_time,
                        help="refine: stop every training after this long (default the configuration's)")
    add_training_budget(parser, **{key: None for key in ABLATION_BUDGET})
    parser.add_argument("--base-channels", type=int, default=16, help="ablation: channels of the first stage (16)")
    parser.add_argument("--depth", type=int, default=4, help="ablation: U-Net depth (4)")
    parser.add_argument("--variant", action="append", default=None,
                        choices=("unet", "unet_lsk", "unet_eca", "ask_unet"),
                        help="ablation: restrict the variants (default all four)")
    parser.add_argument("--prior-pattern", action="append", default=None, help="ablation: restrict the prior patterns")
    parser.add_argument("--coarse-factor", action="append", type=int, default=None,
                        help="ablation: restrict the coarse factors")


def run(args: argparse.Namespace) -> int:
    from ..extras import require

    require("sarheight terrain ablate")
    if args.task == "refine":
        return _run_refinement(args)
    if not args.test_dem:
        raise SarHeightError("--task ablation needs --test-dem: name the held-out DEMs (their scenes' dem_name)")
    from ..studies.ablation import VARIANTS, run_ablation

    budget = {key: getattr(args, key) if getattr(args, key) is not None else value
              for key, value in ABLATION_BUDGET.items()}
    results = run_ablation(
        args.scenes, args.out, test_dems=args.test_dem, val_dems=args.val_dem, seeds=budget["seeds"],
        max_epochs=budget["max_epochs"], tiles_per_epoch=budget["tiles_per_epoch"], batch_size=budget["batch_size"],
        tile=budget["tile"], base_channels=args.base_channels, depth=args.depth, lr=budget["lr"],
        variants=args.variant or VARIANTS, patterns=args.prior_pattern, coarse_factors=args.coarse_factor,
        accelerator=args.accelerator, progress=not args.quiet,
    )
    if not args.quiet:
        print(f"{len(results['cells'])} prior pattern x coarse factor cells; table in {args.out}/ablation.md")
    return 0


def _run_refinement(args: argparse.Namespace) -> int:
    from ..studies.refinement import run_refinement_study

    if args.test_scenes is None:
        raise SarHeightError("--task refine needs --test-scenes: the folder of the held-out scenes")
    ignored = [option for option, value in (("--test-dem", args.test_dem), ("--val-dem", args.val_dem),
                                            ("--variant", args.variant), ("--tile", args.tile),
                                            ("--tiles-per-epoch", args.tiles_per_epoch),
                                            ("--batch-size", args.batch_size), ("--lr", args.lr)) if value]
    if ignored:
        raise SarHeightError(f"{', '.join(ignored)} belong to --task ablation: the refinement study takes its networks "
                             "and budget from --config (edit a copy of it), its held-out DEMs from --test-scenes")
    results = run_refinement_study(args.scenes, args.test_scenes, args.out, config=args.config,
                                   seeds=args.seeds if args.seeds is not None else 2, methods=args.method,
                                   max_epochs=args.max_epochs, max_time=args.max_time, accelerator=args.accelerator,
                                   progress=not args.quiet, command=" ".join(["sarheight", *sys.argv[1:]]))
    if not args.quiet:
        print(f"{len(results['rows'])} held-out DEM x factor x looks x ground rows; table in "
              f"{args.out}/refinement.md")
    return 0
