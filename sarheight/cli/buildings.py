"""``sarheight buildings ACTION``: the building-height model's actions: ``cities``
(simulate synthetic cities), ``predict`` (a height map of a city folder from checkpoints),
``compare`` (MBHR-Net against the single-sensor networks and the mean, on held-out
cities), ``export`` (a checkpoint reduced to what prediction needs).

Training is ``sarheight fit --config buildings_mbhr``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..scores import rms
from .options import Action, add_actions, add_outputs, add_quiet, add_training_budget, run_action
from .terrain import add_export_arguments, run_export

NAME = "buildings"
HELP = "building height from monthly Sentinel-1 and Sentinel-2: synthetic cities, prediction, the comparison"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_actions(parser, ACTIONS)


run = run_action


# cities


def add_cities_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="folder of the city folders (city_000, city_001...); cities "
                        "already there are kept")
    parser.add_argument("--count", type=int, default=4, help="number of cities (default 4)")
    parser.add_argument("--size", type=int, default=128, help="side of each city, 10 m cells (default 128)")
    parser.add_argument("--cloud-fraction", type=float, default=0.1,
                        help="share of each month's Sentinel-2 image under cloud (default 0.1)")
    parser.add_argument("--first-seed", type=int, default=0, help="seed of the first city (default 0)")
    add_quiet(parser)
    parser.set_defaults(out_is_folder=True)


def run_cities(args: argparse.Namespace) -> int:
    from ..city import write_cities

    folders = write_cities(args.out, count=args.count, size=args.size, cloud_fraction=args.cloud_fraction,
                           first_seed=args.first_seed, progress=not args.quiet)
    if not args.quiet:
        print(f"{len(folders)} cities in {args.out}")
    return 0


# predict


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", action="append", required=True, metavar="CKPT",
                        help="a building-height checkpoint of sarheight fit; repeat it for an ensemble: the map is "
                        "their mean, with their standard deviation as a second band")
    parser.add_argument("--city", required=True, help="the city folder (s1_YYYYMM.tif, s2_YYYYMM.tif; height.tif "
                        "optional, then the RMSE is printed)")
    add_outputs(parser, "output GeoTIFF: height (m, the mean over months), and height_std (m) with several "
                "checkpoints")
    parser.add_argument("--tile", type=int, default=64, help="tile side, cells (default 64)")
    parser.add_argument("--overlap", type=int, default=16,
                        help="least overlap of neighbouring tiles, cells, at most tile/2 (default 16)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when there is one, else cpu)")
    add_quiet(parser)


def run_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from ..data.buildings import read_height
    from ..io import write_geotiff
    from ..training.predict import buildings_quicklook, predict_buildings
    from .options import run_outputs

    result = predict_buildings(args.city, args.ckpt, tile=args.tile, overlap=args.overlap, progress=not args.quiet,
                               device=args.device)
    with run_outputs(args, masks=False) as (out, _, quicklook_path):
        write_geotiff(result, out, variables=[name for name in ("height", "height_std") if name in result])
        if quicklook_path is not None:
            buildings_quicklook(args.city, result, quicklook_path)
    if not args.quiet:
        if (Path(args.city) / "height.tif").is_file():
            error = result["height"].values - read_height(args.city)
            valid = np.isfinite(error)
            print(f"RMSE against the city's height.tif: {rms(error[valid]):.2f} m over "
                  f"{int(valid.sum())} cells")
        written = [str(Path(args.out))] + ([str(Path(args.quicklook))] if args.quicklook else [])
        print(f"wrote {' and '.join(written)}")
    return 0


# compare


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cities", required=True, help="folder of city folders")
    parser.add_argument("--out", required=True, help="folder of the runs, comparison.md, comparison.json, "
                        "comparison.png; a run that finished there is not trained again")
    parser.add_argument("--test-city", action="append", required=True, metavar="CITY",
                        help="a city held out for testing; repeat for several")
    parser.add_argument("--val-city", action="append", default=[], metavar="CITY",
                        help="a city held out for validation (logged only); default none")
    add_training_budget(parser, seeds=3, max_epochs=10, tiles_per_epoch=256, batch_size=8, tile=64, lr=1e-3)
    parser.add_argument("--stages", type=int, default=2, help="residual stages of each ResNet-50 encoder (2)")
    parser.add_argument("--network", action="append", default=None, choices=("mbhr_net", "s1_only", "s2_only"),
                        help="restrict the networks (default all three)")


def run_compare(args: argparse.Namespace) -> int:
    from ..extras import require

    require("sarheight buildings compare")
    from ..studies.buildings import run_building_comparison

    decoder = (64, 32, 16, 8, 8)[:args.stages + 1] if 1 <= args.stages <= 4 else None
    run_building_comparison(
        args.cities, args.out, test_cities=args.test_city, val_cities=args.val_city, seeds=args.seeds,
        max_epochs=args.max_epochs, tiles_per_epoch=args.tiles_per_epoch, batch_size=args.batch_size, tile=args.tile,
        stages=args.stages, decoder_channels=decoder, lr=args.lr, networks=args.network,
        accelerator=args.accelerator, progress=not args.quiet,
    )
    if not args.quiet:
        print(Path(args.out, "comparison.md").read_text())
    return 0


#: The actions of ``sarheight buildings``, in the order ``--help`` lists them.
ACTIONS = {
    "cities": Action("simulate synthetic cities (Sentinel-1 and Sentinel-2 for twelve months, building heights) "
                     "as city folders", add_cities_arguments, run_cities),
    "predict": Action("predict a building-height map (GeoTIFF) of a city folder with one or several checkpoints",
                      add_predict_arguments, run_predict),
    "compare": Action("train MBHR-Net, an S1-only and an S2-only network against the mean height on held-out "
                      "cities; Markdown and JSON table, figure", add_compare_arguments, run_compare),
    "export": Action("keep what prediction needs of a checkpoint (weights, channels, statistics)",
                     add_export_arguments, run_export),
}
