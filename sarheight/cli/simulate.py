"""``sarheight simulate``: layover/shadow masks, areas and the simulated image of a DEM;
with it, an observation simulated in the radar geometry and its sigma0 geocoded to the
DEM's grid, so that the rest of the chain (``reconstruct``, ``terrain refine``) can be
tried on any DEM."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import (
    Stages,
    add_dem_argument,
    add_dem_options,
    add_device,
    add_geometry_options,
    add_outputs,
    add_quiet,
    add_simulation_options,
    check_geometry_options,
    checked_dem_from_args,
    companion_path,
    geometry_from_args,
    geometry_words,
    masks_path,
    write_masks,
)

NAME = "simulate"
HELP = ("layover/shadow masks, areas and the simulated image of a DEM, and an observation simulated from it "
        "(in radar geometry, and its sigma0 geocoded to the DEM's grid) to try reconstruct and terrain refine")

#: The files written beside ``--out``: the masks, the observation in the radar geometry
#: and its sigma0 geocoded to the DEM's grid.
COMPANIONS = ("masks", "image", "sigma0")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dem_argument(parser)
    add_outputs(parser, "output GeoTIFF of per-cell products; beside it OUT_masks.tif (layover, shadow), "
                "OUT_image.tif (the simulated observation in the radar geometry: beta0, linear, lines x samples, no "
                "map CRS) and OUT_sigma0.tif (its sigma0 geocoded to the DEM's grid, ellipsoid-referenced, linear: "
                "give it to reconstruct or terrain refine as --sar with the same --geometry)")
    add_simulation_options(parser)
    observation = parser.add_argument_group("the simulated observation (OUT_image.tif, OUT_sigma0.tif)")
    observation.add_argument("--looks", type=float, default=4.4,
                             help="equivalent number of looks of its speckle (default 4.4, Sentinel-1 IW GRD)")
    observation.add_argument("--nesz", type=float, default=-22.0,
                             help="its noise floor, dB (default -22, Sentinel-1 IW)")
    observation.add_argument("--seed", type=int, default=0, help="seed of its land cover, speckle and noise")
    add_device(parser)
    add_quiet(parser)
    add_geometry_options(parser)
    add_dem_options(parser)
    parser.set_defaults(masks_file=True, companion_files=COMPANIONS[1:])


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..compute import compute_for
    from ..errors import SarHeightError
    from ..io import output_set, write_geotiff, write_radar_image
    from ..masks import MaskCode, inside_image
    from ..observation import geometry_tags
    from ..reconstruction import reconstruct, to_geotiff
    from ..simulate import simulate, simulate_sar

    check_geometry_options(args, product_given=False)
    if not (args.looks > 0 and np.isfinite(args.looks)):
        raise SarHeightError(f"--looks {args.looks:g}: give a positive number of looks (4.4 for Sentinel-1 IW GRD)")
    if not np.isfinite(args.nesz):
        raise SarHeightError(f"--nesz {args.nesz}: give the noise floor in dB (-22 for Sentinel-1 IW)")
    if args.seed < 0:
        raise SarHeightError(f"--seed {args.seed}: give a seed of 0 or more")
    compute = compute_for(args.device)  # a GPU the machine lacks is refused before any work
    stages = Stages(4, args.quiet, "sarheight simulate")
    checked = checked_dem_from_args(args, args.dem)
    dem = checked.heights
    geometry = geometry_from_args(args, dem)
    stages.done("read DEM and geometry")
    result = simulate(checked, geometry, contribution=args.contribution, projection=args.projection,
                      progress=not args.quiet, device=compute)
    stages.done("simulated")
    observation = simulate_sar(checked, geometry, looks=args.looks, nesz_db=args.nesz, seed=args.seed,
                               projection=args.projection, device=compute)
    # The observation geocoded to the DEM's grid: sigma0 as a geocoded product holds it.
    sigma0 = reconstruct(checked, observation, geometry, device=compute)["geocoded"]
    # Both carry the geometry they were made under (terrain refine and reconstruct refuse
    # another) and the datum of the DEM's heights.
    tags = {**geometry_tags(geometry, geometry_words(args)),
            "dem_source_vertical_datum": str(dem.attrs.get("source_vertical_datum", "ellipsoid"))}
    observation = observation.assign_attrs(tags)
    sigma0 = sigma0.assign_attrs(tags)
    stages.done("simulated the observation")
    out = Path(args.out)
    finals = [out, *(companion_path(out, name) for name in COMPANIONS)]
    finals += [Path(args.quicklook)] if args.quicklook else []
    with output_set(finals) as temporaries:
        to_geotiff(result, temporaries[0])
        write_masks(result, temporaries[1])
        write_radar_image(observation.rename("beta0"), temporaries[2])
        write_geotiff(sigma0.rename("sigma0").to_dataset().assign_attrs(sigma0.attrs), temporaries[3])
        if args.quicklook:
            _quicklook(result, observation, sigma0, temporaries[4])
    stages.done("wrote outputs")
    stages.close()
    if not args.quiet:
        inside = inside_image(result["layover"])
        layover = np.mean(result["layover"].values[inside] != MaskCode.NONE)
        shadow = np.mean(result["shadow"].values[inside] != MaskCode.NONE)
        print(f"wrote {out} and {masks_path(out)}: layover {layover:.1%}, shadow {shadow:.1%} of {int(inside.sum())} "
              "cells in the image")
        print(f"wrote the simulated observation ({args.looks:g} looks, noise floor {args.nesz:g} dB, seed "
              f"{args.seed}): "
              f"{companion_path(out, 'image')} in the radar geometry and {companion_path(out, 'sigma0')} geocoded to "
              f"the DEM's grid; try: sarheight terrain refine --dem COARSE_DEM --sar {companion_path(out, 'sigma0')} "
              f"{geometry_words(args)} --spacing M --out refined.tif")
    return 0


def _quicklook(result, observation, sigma0, path: Path) -> None:
    import numpy as np

    from ..masks import inside_image
    from ..plots import MASK_LEGEND, quicklook
    from ..raster import power_to_db

    with np.errstate(divide="ignore", invalid="ignore"):
        area_db = power_to_db(result["simulated_area"])
        low, high = (float(np.nanpercentile(area_db, p)) for p in (1, 99))
        panels = [
            ("local incidence angle", result["local_incidence_angle"], {"cmap": "magma", "colorbar": "deg"}),
            ("layover", result["layover"].where(inside_image(result["layover"])), MASK_LEGEND),
            ("shadow", result["shadow"].where(inside_image(result["shadow"])), MASK_LEGEND),
            ("simulated image (radar geometry, area dB)", area_db,
             {"cmap": "gray", "vmin": low, "vmax": high, "colorbar": "dB (m²)"}),
            ("simulated observation (radar geometry, beta0 dB)", power_to_db(observation),
             {"cmap": "gray", "vmin": -25, "vmax": 5, "colorbar": "dB"}),
            ("its sigma0 geocoded to the DEM (dB)", power_to_db(sigma0),
             {"cmap": "gray", "vmin": -25, "vmax": 5, "colorbar": "dB"}),
        ]
    quicklook(panels, path, columns=2)
