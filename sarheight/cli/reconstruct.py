"""``sarheight reconstruct``: reallocate the layover energy of an observation to the DEM's cells."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SarHeightError
from .options import (
    CONTRIBUTION_HELP,
    PROJECTION_HELP,
    Stages,
    add_dem_options,
    add_device,
    add_geometry_options,
    add_quiet,
    check_geometry_options,
    checked_dem_from_args,
    geometry_from_args,
    masks_path,
    run_outputs,
    write_masks,
)

NAME = "reconstruct"
HELP = "reallocate layover energy of an observation to the DEM's cells"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sar", required=True,
                        help="Sentinel-1 SAFE (.SAFE or .zip) or a GeoTIFF geocoded to a map grid")
    parser.add_argument("--dem", required=True, help="DEM raster (any CRS rasterio reads)")
    parser.add_argument("--out", required=True, help="output GeoTIFF (masks go to OUT_masks.tif)")
    parser.add_argument("--quicklook", default=None, help="also write a PNG quicklook here")
    parser.add_argument("--contribution", choices=("model", "gamma"), default="model", help=CONTRIBUTION_HELP)
    parser.add_argument("--output", choices=("sigma0", "gamma0"), default="sigma0",
                        help="what the reallocated energy is divided by: the cell's sigma area (sigma0, default) "
                        "or its gamma area (gamma0)")
    parser.add_argument("--projection", choices=("exact", "bilinear"), default="exact", help=PROJECTION_HELP)
    parser.add_argument("--sar-quantity", choices=("beta0", "sigma0", "gamma0"), default="sigma0",
                        help="what a geocoded GeoTIFF holds (ellipsoid-referenced), default sigma0")
    parser.add_argument("--sar-db", action="store_true", help="a geocoded GeoTIFF is in dB")
    parser.add_argument("--chunks", type=int, default=None, metavar="ROWS",
                        help="run block by block, ROWS DEM rows per block (bounded memory, local threads); "
                        "observations in radar geometry (a SAFE) only")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="run block by block on a dask.distributed cluster: a scheduler address "
                        "(tcp://host:8786), or 'local' for a LocalCluster on this machine; observations in radar "
                        "geometry (a SAFE) only")
    add_device(parser)
    add_quiet(parser)
    add_geometry_options(parser, required=False)
    add_dem_options(parser)
    parser.set_defaults(masks_file=True)


def run(args: argparse.Namespace) -> int:
    from ..compute import compute_for
    from ..geometry import RadarGeometry
    from ..io import is_geotiff_path
    from ..reconstruction import reconstruct, to_geotiff

    sar_path = Path(args.sar)
    geotiff = is_geotiff_path(sar_path)
    if geotiff and not sar_path.is_file():
        raise SarHeightError(f"--sar {args.sar!r}: no such GeoTIFF")
    if geotiff and (args.chunks is not None or args.scheduler is not None):
        raise SarHeightError(
            "--chunks and --scheduler take observations in radar geometry (a SAFE product); a geocoded "
            "GeoTIFF is reconstructed in memory: leave them out"
        )
    if geotiff and args.geometry is None:
        raise SarHeightError(
            "a geocoded GeoTIFF observation needs --geometry (the SAFE it came from, or 'synthetic')"
        )
    if not geotiff and args.geometry is not None:
        raise SarHeightError(
            f"--sar {args.sar!r} is a product, which brings its own geometry: leave --geometry out"
        )
    check_geometry_options(args, product_given=not geotiff)
    compute = compute_for(args.device)  # a GPU the machine lacks is refused before any work
    if compute.backend != "numba" and (args.chunks is not None or args.scheduler is not None):
        raise SarHeightError(f"--device {args.device} runs the reconstruction in memory: leave --chunks and "
                             "--scheduler out, or --device out for the block-wise engine on the CPU")
    measurement = args.measurement or "IW/VV"
    stages = Stages(3, args.quiet, "sarheight reconstruct")
    checked = checked_dem_from_args(args, args.dem)
    dem = checked.heights
    if geotiff:
        geometry = geometry_from_args(args, dem)
    else:
        geometry = RadarGeometry.from_sentinel1(sar_path, measurement, burst=args.burst)
    stages.done("read DEM and geometry")
    result = reconstruct(checked, sar_path, geometry, contribution=args.contribution, output=args.output,
                         projection=args.projection, measurement=measurement, sar_quantity=args.sar_quantity,
                         sar_db=args.sar_db, chunks=args.chunks, client=args.scheduler, progress=not args.quiet,
                         device=compute)
    stages.done("reconstructed")
    with run_outputs(args, masks=True) as (out, masks, quicklook_path):
        to_geotiff(result, out)
        write_masks(result, masks)
        if quicklook_path is not None:
            _quicklook(result, args.output, quicklook_path)
    out, masks = Path(args.out), masks_path(Path(args.out))
    stages.done("wrote outputs")
    stages.close()
    if not args.quiet:
        print(f"wrote {out} and {masks}")
    return 0


def _quicklook(result, output: str, path: str) -> None:

    from ..masks import inside_image, to_isce3_mask
    from ..plots import quicklook
    from ..raster import power_to_db as db

    quicklook(
        [
            ("geocoded sigma0 (dB)", db(result["geocoded"]), {"cmap": "gray", "colorbar": "dB"}),
            ("flattened gamma0 (dB)", db(result["flattened"]), {"cmap": "gray", "colorbar": "dB"}),
            (f"reconstructed {output} (dB)", db(result["backscatter"]), {"cmap": "gray", "colorbar": "dB"}),
            ("layover / shadow (ISCE3 codes)", to_isce3_mask(result).where(inside_image(result["layover"])),
             {"vmin": 0, "vmax": 3, "colorbar": "1 shadow, 2 layover, 3 both"}),
        ],
        path, columns=2,
    )
