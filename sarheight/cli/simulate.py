"""``sarheight simulate``: layover/shadow masks, areas and the simulated image of a DEM."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import (
    Stages,
    add_dem_options,
    add_geometry_options,
    add_outputs,
    add_quiet,
    add_simulation_options,
    check_geometry_options,
    geometry_from_args,
    masks_path,
    open_dem_from_args,
    run_outputs,
    write_masks,
)

NAME = "simulate"
HELP = "layover/shadow masks, areas and the simulated image of a DEM"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dem", help="DEM raster (any CRS rasterio reads)")
    add_outputs(parser, "output GeoTIFF of per-cell products (masks go to OUT_masks.tif)")
    add_simulation_options(parser)
    add_quiet(parser)
    add_geometry_options(parser)
    add_dem_options(parser)
    parser.set_defaults(masks_file=True)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..layover import to_geotiff
    from ..masks import MaskCode, inside_image
    from ..simulate import simulate

    check_geometry_options(args, product_given=False)
    stages = Stages(3, args.quiet)
    dem = open_dem_from_args(args, args.dem)
    geometry = geometry_from_args(args, dem)
    stages.done("read DEM and geometry")
    result = simulate(dem, geometry, contribution=args.contribution, projection=args.projection,
                      progress=not args.quiet)
    stages.done("simulated")
    with run_outputs(args, masks=True) as (out, masks, quicklook_path):
        to_geotiff(result, out)
        write_masks(result, masks)
        if quicklook_path is not None:
            from ..plots import quicklook

            quicklook(
                [
                    ("local incidence angle", result["local_incidence_angle"], {"cmap": "magma", "colorbar": "deg"}),
                    ("layover (1 active, 2 passive)", result["layover"].where(inside_image(result["layover"])),
                     {"vmin": 0, "vmax": 2, "colorbar": "0 none, 1 active, 2 passive"}),
                    ("shadow (1 active, 2 passive)", result["shadow"].where(inside_image(result["shadow"])),
                     {"vmin": 0, "vmax": 2, "colorbar": "0 none, 1 active, 2 passive"}),
                    ("simulated image (radar geometry, dB)",
                     10 * np.log10(result["simulated_area"].where(result["simulated_area"] > 0)),
                     {"cmap": "gray", "colorbar": "dB"}),
                ],
                quicklook_path, columns=2,
            )
    out, masks = Path(args.out), masks_path(Path(args.out))
    stages.done("wrote outputs")
    stages.close()
    if not args.quiet:
        inside = inside_image(result["layover"])
        layover = np.mean(result["layover"].values[inside] != MaskCode.NONE)
        shadow = np.mean(result["shadow"].values[inside] != MaskCode.NONE)
        print(f"wrote {out} and {masks}: layover {layover:.1%}, shadow {shadow:.1%} of {int(inside.sum())} cells "
              "in the image")
    return 0
