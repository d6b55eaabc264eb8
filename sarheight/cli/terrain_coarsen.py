"""``sarheight terrain coarsen``: a coarse copy of a fine DEM (block means, or a realistic
product's errors), in the DEM's own datum: the coarse DEM to refine where the fine one is
the truth, so that a refinement can be scored (``terrain refine --truth``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import SarHeightError
from .options import add_dem_options, add_quiet, checked_dem_from_args, run_outputs

HELP = ("a coarse copy of a fine DEM (block means, or a realistic product with its errors), to refine and score "
        "against the fine one (terrain refine --truth)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dem", required=True, help="the fine DEM (GeoTIFF, any CRS rasterio reads)")
    parser.add_argument("--factor", type=int, required=True,
                        help="coarse cell / fine cell, an integer of 2 or more (3: a 30 m DEM to 90 m)")
    parser.add_argument("--product", choices=("exact", "realistic"), default="exact",
                        help="exact (default): the block means of the fine DEM; realistic: a coarse product as real "
                        "ones measure, with a correlated and a slope-dependent error, a bias, a shift of tens of "
                        "metres and a grid not aligned (drawn with --seed)")
    parser.add_argument("--seed", type=int, default=0, help="seed of a realistic product's errors (default 0)")
    parser.add_argument("--out", required=True, help="the coarse DEM to write (GeoTIFF, in the fine DEM's datum)")
    add_dem_options(parser)
    add_quiet(parser)
    parser.set_defaults(quicklook=None)


def run(args: argparse.Namespace) -> int:
    from ..coarse_dem import coarse_product, draw_errors
    from ..dem import dataset_in_datum, output_datum
    from ..io import write_geotiff
    from ..terrain.grid import block_mean

    if args.factor < 2:
        raise SarHeightError(f"--factor {args.factor}: give an integer of 2 or more")
    if args.seed < 0:
        raise SarHeightError(f"--seed {args.seed}: give a seed of 0 or more")
    # Checked once: the block means and the product take the Dem as checked.
    checked = checked_dem_from_args(args, args.dem)
    dem = checked.heights
    if args.product == "exact":
        coarse = block_mean(checked, args.factor)
    else:
        errors = draw_errors(args.factor, "test", args.seed)
        coarse = coarse_product(checked, errors, seed=args.seed)
    datum = output_datum(dem)
    written = dataset_in_datum(coarse.rename("height").to_dataset().rio.write_crs(dem.rio.crs), datum,
                               args.geoid_grid)
    written.attrs.update(coarse_factor=args.factor, coarse_product=args.product, fine_dem=Path(args.dem).name)
    if args.product == "realistic":
        written.attrs.update(errors.to_attrs(), coarse_seed=args.seed)
    with run_outputs(args, masks=False) as (out, _, _):
        write_geotiff(written, out, variables=["height"])
    if not args.quiet:
        rows, cols = coarse.shape
        what = "block means" if args.product == "exact" else (
            f"a realistic product: shifted {errors.shift_east_m:+.1f} m east, {errors.shift_north_m:+.1f} m north, "
            f"with its correlated, slope and bias errors (seed {args.seed})")
        print(f"wrote {args.out}: {rows} x {cols} cells, {args.factor}x coarser than {args.dem} ({what}), heights in "
              f"its datum ({datum})")
    return 0
