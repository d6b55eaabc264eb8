"""``sarheight geocode``: the radar coordinates of every DEM cell."""

from __future__ import annotations

import argparse

from .options import (
    add_dem_argument,
    add_dem_options,
    add_device,
    add_geometry_options,
    add_outputs,
    add_quiet,
    check_geometry_options,
    checked_dem_from_args,
    geometry_from_args,
    run_outputs,
)

NAME = "geocode"
HELP = "radar coordinates (time, range, line, sample) of every DEM cell"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_dem_argument(parser)
    add_outputs(parser, "output GeoTIFF")
    add_quiet(parser)
    add_device(parser)
    add_geometry_options(parser)
    add_dem_options(parser)


def run(args: argparse.Namespace) -> int:
    from ..compute import compute_for
    from ..geometry import backward_geocode, geocoding_products
    from ..io import write_geotiff

    compute_for(args.device)  # a GPU the machine lacks is refused before any work
    check_geometry_options(args, product_given=False)
    # Checked once: the geocoding takes the Dem as checked.
    dem = checked_dem_from_args(args, args.dem)
    geometry = geometry_from_args(args, dem.heights)
    geocoded = backward_geocode(dem, geometry, device=args.device)
    with run_outputs(args, masks=False) as (out, _, quicklook_path):
        write_geotiff(geocoding_products(geocoded), out)
        if quicklook_path is not None:
            from ..plots import quicklook

            quicklook(
                [
                    ("slant range (km)", geocoded["slant_range"] / 1e3, {"colorbar": "km"}),
                    ("incidence angle", geocoded["incidence_angle"], {"cmap": "magma", "colorbar": "deg"}),
                    ("line", geocoded["line"], {"cmap": "cividis"}),
                    ("sample", geocoded["sample"], {"cmap": "cividis"}),
                ],
                quicklook_path, columns=2,
            )
    if not args.quiet:
        inside = float(geocoded["line"].notnull().mean())
        print(f"wrote {args.out}: {dem.shape[0]} x {dem.shape[1]} cells, {inside:.1%} inside the image")
    return 0
