"""``sarheight terrain ablate``: the terrain-height ablation on held-out DEMs."""

from __future__ import annotations

import argparse

from .options import add_training_budget

HELP = ("train the U-Net variants on geocoded and reconstructed SAR (and with the coarse DEM, both passes) "
        "against the baselines on held-out DEMs; Markdown and JSON table, figure")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scenes", required=True, help="folder of scene files (sarheight terrain scenes)")
    parser.add_argument("--out", required=True, help="folder of the runs, ablation.md, ablation.json, ablation.png; "
                        "a run that finished there is not trained again")
    parser.add_argument("--test-dem", action="append", required=True, metavar="DEM",
                        help="a DEM (its scenes' dem_name) held out for testing; repeat for several")
    parser.add_argument("--val-dem", action="append", default=[], metavar="DEM",
                        help="a DEM held out for validation (logged only); default none")
    add_training_budget(parser, seeds=3, max_epochs=10, tiles_per_epoch=128, batch_size=8, tile=96, lr=2e-3)
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
    from ..training.ablation import VARIANTS, run_ablation

    results = run_ablation(
        args.scenes, args.out, test_dems=args.test_dem, val_dems=args.val_dem, seeds=args.seeds,
        max_epochs=args.max_epochs, tiles_per_epoch=args.tiles_per_epoch, batch_size=args.batch_size,
        tile=args.tile, base_channels=args.base_channels, depth=args.depth, lr=args.lr,
        variants=args.variant or VARIANTS, patterns=args.prior_pattern, coarse_factors=args.coarse_factor,
        accelerator=args.accelerator, progress=not args.quiet,
    )
    if not args.quiet:
        print(f"{len(results['cells'])} prior pattern x coarse factor cells; table in {args.out}/ablation.md")
    return 0
