"""The ``sarheight`` command."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._version import __version__
from .errors import SarHeightError


def _add_geometry_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_argument_group("acquisition geometry")
    group.add_argument(
        "--geometry", required=required, default=None, metavar="SAFE|synthetic",
        help="a Sentinel-1 product (.SAFE directory or .zip; the annotation is enough), or "
        "'synthetic' for a straight-orbit Sentinel-1-like geometry centred on the DEM",
    )
    group.add_argument("--measurement", default="IW/VV", help="swath/polarisation of the product (default IW/VV)")
    group.add_argument("--burst", type=int, default=None, help="SLC burst index (0-based), default all")
    group.add_argument("--heading", type=float, default=348.0, help="synthetic: heading, deg (348 ascending, 192 descending)")
    group.add_argument("--incidence-near", type=float, default=30.0, help="synthetic: near-range incidence, deg")
    group.add_argument("--incidence-far", type=float, default=46.0, help="synthetic: far-range incidence, deg")
    group.add_argument("--line-spacing", type=float, default=10.0, help="synthetic: azimuth pixel spacing, m")
    group.add_argument("--sample-spacing", type=float, default=10.0, help="synthetic: slant-range pixel spacing, m")
    group.add_argument("--look-side", choices=("right", "left"), default="right", help="synthetic: look side")


def _add_dem_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("DEM")
    group.add_argument(
        "--vertical-datum", choices=("egm96", "egm2008", "ellipsoid"), default=None,
        help="heights' datum when the DEM's CRS does not say (geoid heights are converted)",
    )
    group.add_argument("--geoid-grid", default=None, help="raster of geoid undulations (e.g. egm96_15.gtx)")
    group.add_argument("--fill-voids", action="store_true", help="fill DEM voids by interpolation")


def _geometry_from_args(args: argparse.Namespace, dem):
    from .geometry import RadarGeometry

    if args.geometry == "synthetic":
        west, south, east, north = dem.rio.transform_bounds("EPSG:4326")
        return RadarGeometry.synthetic(
            center_lon=0.5 * (west + east), center_lat=0.5 * (south + north),
            heading_deg=args.heading, incidence_near_deg=args.incidence_near,
            incidence_far_deg=args.incidence_far, line_spacing=args.line_spacing,
            sample_spacing=args.sample_spacing, look_side=args.look_side,
        )
    return RadarGeometry.from_sentinel1(args.geometry, args.measurement, burst=args.burst)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    run_demo(args.out, progress=not args.quiet)
    return 0


def _cmd_compile(args: argparse.Namespace) -> int:
    from .demo import compile_kernels

    if not args.quiet:
        print("compiling the kernels (once per installation; most of a minute on two cores)...", flush=True)
    seconds = compile_kernels()
    if not args.quiet:
        print(f"compiled and cached in {seconds:.1f} s")
    return 0


def _cmd_geocode(args: argparse.Namespace) -> int:
    from .dem import open_dem
    from .demo import geocoding_products
    from .geometry import backward_geocode
    from .io import write_geotiff

    dem = open_dem(args.dem, vertical_datum=args.vertical_datum, geoid_grid=args.geoid_grid, fill_voids=args.fill_voids)
    geometry = _geometry_from_args(args, dem)
    geocoded = backward_geocode(dem, geometry)
    path = write_geotiff(geocoding_products(geocoded), args.out)
    if args.quicklook:
        from .plots import quicklook

        quicklook(
            [
                ("slant range (km)", geocoded["slant_range"] / 1e3, {"colorbar": "km"}),
                ("incidence angle", geocoded["incidence_angle"], {"cmap": "magma", "colorbar": "deg"}),
                ("line", geocoded["line"], {"cmap": "cividis"}),
                ("sample", geocoded["sample"], {"cmap": "cividis"}),
            ],
            args.quicklook, columns=2,
        )
    if not args.quiet:
        inside = float(geocoded["line"].notnull().mean())
        print(f"wrote {path}: {dem.shape[0]} x {dem.shape[1]} cells, {inside:.1%} inside the image")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .dem import open_dem
    from .io import write_geotiff
    from .layover import to_isce3_mask
    from .simulate import simulate

    stages = _Stages(3, args.quiet)
    dem = open_dem(args.dem, vertical_datum=args.vertical_datum, geoid_grid=args.geoid_grid, fill_voids=args.fill_voids)
    geometry = _geometry_from_args(args, dem)
    stages.done("read DEM and geometry")
    result = simulate(dem, geometry, contribution=args.contribution, projection=args.projection,
                      progress=not args.quiet)
    stages.done("simulated")
    out = Path(args.out)
    write_geotiff(result, out, ["local_incidence_angle", "incidence_angle", "gamma_area", "sigma_area",
                                "contribution", "slant_range", "radar_line", "radar_sample"])
    masks = out.with_name(out.stem + "_masks.tif")
    write_geotiff(result[["layover", "shadow"]].assign(isce3_mask=to_isce3_mask(result)), masks)
    if args.quicklook:
        from .plots import quicklook

        quicklook(
            [
                ("local incidence angle", result["local_incidence_angle"], {"cmap": "magma", "colorbar": "deg"}),
                ("layover (1 active, 2 passive)", result["layover"].where(result["layover"] != 255), {"vmin": 0, "vmax": 2}),
                ("shadow (1 active, 2 passive)", result["shadow"].where(result["shadow"] != 255), {"vmin": 0, "vmax": 2}),
                ("simulated image (radar geometry)", result["simulated_area"], {"cmap": "gray", "colorbar": ""}),
            ],
            args.quicklook, columns=2,
        )
    stages.done("wrote outputs")
    stages.close()
    if not args.quiet:
        inside = result["layover"].values != 255
        print(f"wrote {out} and {masks}: layover {np.mean(result['layover'].values[inside] != 0):.1%}, "
              f"shadow {np.mean(result['shadow'].values[inside] != 0):.1%} of {int(inside.sum())} cells in the image")
    return 0


def _cmd_reconstruct(args: argparse.Namespace) -> int:
    from .dem import open_dem
    from .geometry import RadarGeometry
    from .io import write_geotiff
    from .layover import reconstruct, to_geotiff, to_isce3_mask

    stages = _Stages(3, args.quiet)
    dem = open_dem(args.dem, vertical_datum=args.vertical_datum, geoid_grid=args.geoid_grid, fill_voids=args.fill_voids)
    sar_path = Path(args.sar)
    if args.geometry is not None:
        geometry = _geometry_from_args(args, dem)
    elif sar_path.suffix.lower() in (".tif", ".tiff"):
        raise SarHeightError(
            "a geocoded GeoTIFF observation needs --geometry (the SAFE it came from, or 'synthetic')"
        )
    else:
        geometry = RadarGeometry.from_sentinel1(sar_path, args.measurement, burst=args.burst)
    stages.done("read DEM and geometry")
    options = {"contribution": args.contribution, "output": args.output, "projection": args.projection,
               "measurement": args.measurement, "progress": not args.quiet}
    if args.scheduler is not None:
        from .distributed import reconstruct_distributed

        client = None if args.scheduler == "local" else args.scheduler
        result = reconstruct_distributed(sar_path, dem, geometry, client=client,
                                         rows_per_block=args.chunks or 256, **options)
    else:
        result = reconstruct(sar_path, dem, geometry, sar_quantity=args.sar_quantity, sar_db=args.sar_db,
                             chunks=args.chunks, **options)
    stages.done("reconstructed")
    out = Path(args.out)
    to_geotiff(result, out)
    masks = out.with_name(out.stem + "_masks.tif")
    write_geotiff(result[["layover", "shadow"]].assign(isce3_mask=to_isce3_mask(result)), masks)
    if args.quicklook:
        from .plots import quicklook

        def db(values):
            return 10 * np.log10(values.where(values > 0))

        quicklook(
            [
                ("geocoded sigma0 (dB)", db(result["geocoded"]), {"cmap": "gray", "colorbar": "dB"}),
                ("flattened gamma0 (dB)", db(result["flattened"]), {"cmap": "gray", "colorbar": "dB"}),
                (f"reconstructed {args.output} (dB)", db(result["backscatter"]), {"cmap": "gray", "colorbar": "dB"}),
                ("layover / shadow (ISCE3 codes)", to_isce3_mask(result).where(result["layover"] != 255), {"vmin": 0, "vmax": 3}),
            ],
            args.quicklook, columns=2,
        )
    stages.done("wrote outputs")
    stages.close()
    if not args.quiet:
        print(f"wrote {out} and {masks}")
    return 0


class _Stages:
    """A progress bar over the stages of a command (silent when not a terminal)."""

    def __init__(self, total: int, quiet: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, disable=quiet or not sys.stderr.isatty(), unit="step")

    def done(self, what: str) -> None:
        self.bar.set_description(what)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sarheight",
        description="Physics-plus-learning SAR toolkit: radar geometry, layover/shadow and height models.",
    )
    parser.add_argument("--version", action="version", version=f"sarheight {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser("demo", help="run the built-in real example (offline)")
    demo.add_argument("--out", default="demo-output", help="output folder (default demo-output)")
    demo.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    demo.set_defaults(func=_cmd_demo)

    compile_ = sub.add_parser("compile", help="compile and cache the kernels now, not on the first run")
    compile_.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    compile_.set_defaults(func=_cmd_compile)

    geocode = sub.add_parser("geocode", help="radar coordinates (time, range, line, sample) of every DEM cell")
    geocode.add_argument("dem", help="DEM raster (any CRS rasterio reads)")
    geocode.add_argument("--out", required=True, help="output GeoTIFF")
    geocode.add_argument("--quicklook", default=None, help="also write a PNG quicklook here")
    geocode.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    _add_geometry_options(geocode)
    _add_dem_options(geocode)
    geocode.set_defaults(func=_cmd_geocode)

    simulate = sub.add_parser("simulate", help="layover/shadow masks, areas and the simulated image of a DEM")
    simulate.add_argument("dem", help="DEM raster (any CRS rasterio reads)")
    simulate.add_argument("--out", required=True, help="output GeoTIFF of per-cell products (masks go to OUT_masks.tif)")
    simulate.add_argument("--quicklook", default=None, help="also write a PNG quicklook here")
    simulate.add_argument("--contribution", choices=("model", "gamma"), default="model")
    simulate.add_argument("--projection", choices=("exact", "bilinear"), default="exact")
    simulate.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    _add_geometry_options(simulate)
    _add_dem_options(simulate)
    simulate.set_defaults(func=_cmd_simulate)

    rec = sub.add_parser("reconstruct", help="reallocate layover energy of an observation to the DEM's cells")
    rec.add_argument("--sar", required=True, help="Sentinel-1 SAFE (.SAFE or .zip) or a GeoTIFF geocoded to a map grid")
    rec.add_argument("--dem", required=True, help="DEM raster (any CRS rasterio reads)")
    rec.add_argument("--out", required=True, help="output GeoTIFF (masks go to OUT_masks.tif)")
    rec.add_argument("--quicklook", default=None, help="also write a PNG quicklook here")
    rec.add_argument("--contribution", choices=("model", "gamma"), default="model")
    rec.add_argument("--output", choices=("sigma0", "gamma0"), default="sigma0")
    rec.add_argument("--projection", choices=("exact", "bilinear"), default="exact")
    rec.add_argument("--sar-quantity", choices=("beta0", "sigma0", "gamma0"), default="sigma0",
                     help="what a geocoded GeoTIFF holds (ellipsoid-referenced), default sigma0")
    rec.add_argument("--sar-db", action="store_true", help="a geocoded GeoTIFF is in dB")
    rec.add_argument("--chunks", type=int, default=None, metavar="ROWS",
                     help="run block by block, ROWS DEM rows per block (bounded memory, local threads)")
    rec.add_argument("--scheduler", default=None, metavar="ADDRESS",
                     help="run block by block on a dask.distributed cluster: a scheduler address "
                     "(tcp://host:8786), or 'local' for a LocalCluster on this machine")
    rec.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    _add_geometry_options(rec, required=False)
    _add_dem_options(rec)
    rec.set_defaults(func=_cmd_reconstruct)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.command != "demo":  # the demo's --out is a folder it makes itself
        for output_file in (getattr(args, "out", None), getattr(args, "quicklook", None)):
            if output_file:
                Path(output_file).parent.mkdir(parents=True, exist_ok=True)
    try:
        return int(args.func(args) or 0)
    except SarHeightError as exc:
        print(f"sarheight {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
