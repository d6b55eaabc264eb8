"""``sarheight terrain ACTION``: the terrain height model's actions: ``refine`` (a coarse DEM
refined with Sentinel-1), ``coarsen`` (a fine DEM as a coarser product measures it),
``scenes`` (simulate training scenes), ``predict`` (a height map of a scene from
checkpoints), ``study`` (the refinement study), ``ablate`` (the seed paper's ablation),
``export`` (a checkpoint reduced to what prediction needs).

Each action is an :class:`~.options.Action` in :data:`ACTIONS` (its help, its options, its run);
``refine``, ``coarsen``, ``scenes``, ``study`` and ``ablate`` live in modules of their own beside this one.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from . import terrain_ablate, terrain_coarsen, terrain_refine, terrain_scenes, terrain_study
from .options import Action, add_actions, add_outputs, add_quiet, run_action

NAME = "terrain"
HELP = ("terrain height: refine a coarse DEM with Sentinel-1 (refine), simulate training scenes, predict, the "
        "studies")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_actions(parser, ACTIONS)


run = run_action


# predict


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", action="append", required=True, metavar="CKPT",
                        help="a checkpoint of sarheight fit; repeat it for an ensemble (seeds, folds): the map is "
                        "their mean, with their standard deviation as a second band")
    parser.add_argument("--scene", required=True, help="the scene file (NetCDF, written by sarheight.terrain)")
    add_outputs(parser, "output GeoTIFF: height (m), and height_std (m) with several checkpoints")
    parser.add_argument("--tile", type=int, default=256, help="tile side, cells (default 256)")
    parser.add_argument("--overlap", type=int, default=64,
                        help="least overlap of neighbouring tiles, cells, at most tile/2 (default 64)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when there is one, else cpu)")
    add_quiet(parser)


def run_predict(args: argparse.Namespace) -> int:
    import numpy as np

    from ..io import write_geotiff
    from ..terrain.files import open_scene
    from ..training.predict import predict_height, prediction_quicklook
    from .options import run_outputs

    scene = open_scene(args.scene)
    result = predict_height(scene, args.ckpt, tile=args.tile, overlap=args.overlap, progress=not args.quiet,
                            device=args.device)
    truth = scene["height"].values if "height" in scene else None
    with run_outputs(args, masks=False) as (out, _, quicklook_path):
        # A scene's heights are ellipsoidal (sarheight.terrain): the file says so.
        write_geotiff(result.assign_attrs(vertical_datum="ellipsoid"), out,
                      variables=[name for name in ("height", "height_std") if name in result])
        if quicklook_path is not None:
            prediction_quicklook(scene, result, quicklook_path)
    if not args.quiet:
        if truth is not None:
            from ..scores import map_rmse

            valid = np.isfinite(result["height"].values) & np.isfinite(truth)
            from ..terrain.variables import variable_description

            line = f"RMSE against the scene's height: {map_rmse(result['height'].values, truth, valid):.2f} m"
            # The baselines: the model's reference, the coarse DEM resampled, the priors alone.
            names = dict.fromkeys([str(result.attrs.get("reference") or ""), "coarse_height", "prior_interpolated"])
            baselines = []
            for name in (name for name in names if name in scene):
                baseline = scene[name].values
                counted = valid & np.isfinite(baseline)
                baselines.append(f"{variable_description(name)} {map_rmse(baseline, truth, counted):.2f} m")
            if baselines:
                line += f" ({'; '.join(baselines)})"
            print(f"{line} over {int(valid.sum())} cells")
        written = [str(Path(args.out))] + ([str(Path(args.quicklook))] if args.quicklook else [])
        print(f"wrote {' and '.join(written)}")
    return 0


# export


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ckpt", required=True, help="a checkpoint of sarheight fit")
    parser.add_argument("--out", required=True, help="the checkpoint to write: weights, channels, statistics and "
                        "model configuration, without the optimiser state")
    parser.add_argument("--half", action="store_true", help="store the weights in float16 (half the size, to ship)")
    add_quiet(parser)


def run_export(args: argparse.Namespace) -> int:
    from ..training.checkpoints import export_checkpoint

    written = export_checkpoint(args.ckpt, args.out, half=args.half)
    if not args.quiet:
        print(f"wrote {written} ({written.stat().st_size / 2**20:.1f} MiB)")
    return 0


#: The actions of ``sarheight terrain``, in the order ``--help`` lists them.
ACTIONS = {
    "refine": Action(terrain_refine.HELP, terrain_refine.add_arguments, terrain_refine.run),
    "coarsen": Action(terrain_coarsen.HELP, terrain_coarsen.add_arguments, terrain_coarsen.run),
    "scenes": Action(terrain_scenes.HELP, terrain_scenes.add_arguments, terrain_scenes.run),
    "predict": Action("predict a height map (GeoTIFF) from a scene with one or several checkpoints",
                      add_predict_arguments, run_predict),
    "study": Action(terrain_study.HELP, terrain_study.add_arguments, terrain_study.run),
    "ablate": Action(terrain_ablate.HELP, terrain_ablate.add_arguments, terrain_ablate.run),
    "export": Action("keep what prediction needs of a checkpoint (weights, channels, statistics): a third of "
                     "the size, to ship or share", add_export_arguments, run_export),
}
