"""``sarheight terrain ablate``: the seed paper's ablation on held-out DEMs: the U-Net
variants on geocoded and reconstructed SAR, relative to the priors. (The refinement study is
``sarheight terrain study``.)"""

from __future__ import annotations

import argparse

from ..errors import SarHeightError
from .options import add_training_budget

HELP = ("the seed paper's ablation on held-out DEMs: the U-Net variants on geocoded and reconstructed SAR; "
        "Markdown and JSON tables, figure")

#: The ablation's budget when not given.
ABLATION_BUDGET = {"seeds": 3, "max_epochs": 10, "tiles_per_epoch": 128, "batch_size": 8, "tile": 96, "lr": 2e-3}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # The refinement study's options when it was --task refine here: taken, so that its old
    # command line hears where the study went rather than of an unknown option.
    parser.add_argument("--task", choices=("ablation", "refine"), default="ablation", help=argparse.SUPPRESS)
    for moved in ("--test-scenes", "--config", "--method", "--max-time"):
        parser.add_argument(moved, action="append", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--scenes", required=True, help="folder of scene files (sarheight terrain scenes)")
    parser.add_argument("--out", required=True, help="folder of the runs and the tables (ablation.*); a run that "
                        "finished there is not trained again")
    parser.add_argument("--test-dem", action="append", default=None, metavar="DEM",
                        help="a DEM (its scenes' dem_name) held out for testing; repeat for several")
    parser.add_argument("--val-dem", action="append", default=[], metavar="DEM",
                        help="a DEM held out for validation (logged only); default none")
    add_training_budget(parser, **{key: None for key in ABLATION_BUDGET})
    parser.add_argument("--base-channels", type=int, default=16, help="channels of the first stage (16)")
    parser.add_argument("--depth", type=int, default=4, help="U-Net depth (4)")
    parser.add_argument("--variant", action="append", default=None,
                        choices=("unet", "unet_lsk", "unet_eca", "ask_unet"),
                        help="restrict the variants (default all four)")
    parser.add_argument("--prior-pattern", action="append", default=None, help="restrict the prior patterns")
    parser.add_argument("--coarse-factor", action="append", type=int, default=None,
                        help="restrict the coarse factors")


def run(args: argparse.Namespace) -> int:
    from ..extras import require

    require("sarheight terrain ablate")
    if args.task == "refine" or any(getattr(args, name) for name in ("test_scenes", "config", "method", "max_time")):
        raise SarHeightError("the refinement study is a command of its own: sarheight terrain study --scenes ... "
                             "--test-scenes ... --out ... (sarheight terrain study --help)")
    if not args.test_dem:
        raise SarHeightError("terrain ablate needs --test-dem: name the held-out DEMs (their scenes' dem_name)")
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
