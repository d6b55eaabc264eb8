"""The ``sarheight`` command."""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ._version import __version__
from .errors import SarHeightError

CONTRIBUTION_HELP = ("what each facet returns: 'model' (default), the empirical sigma0 law of SNAP's and "
                     "ISCE3's simulators times the facet area, which tells facets inside one layover pixel "
                     "apart; 'gamma', the projected area alone (constant gamma0, Small 2011)")
PROJECTION_HELP = ("'exact' (default): exact overlap of each facet's footprint with the radar pixels; "
                   "'bilinear': faster splatting of facet centres (an approximation)")


def _add_geometry_options(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_argument_group("acquisition geometry")
    help_text = ("a Sentinel-1 product (.SAFE directory or .zip; the annotation is enough), or "
                 "'synthetic' for a straight-orbit Sentinel-1-like geometry centred on the DEM")
    if not required:
        help_text += ("; default: the --sar product's own (needed for a geocoded GeoTIFF --sar: the "
                      "product it came from, or 'synthetic')")
    group.add_argument("--geometry", required=required, default=None, metavar="SAFE|synthetic", help=help_text)
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

    if args.geometry.lower() == "synthetic":
        west, south, east, north = dem.rio.transform_bounds("EPSG:4326")
        return RadarGeometry.synthetic(
            center_lon=0.5 * (west + east), center_lat=0.5 * (south + north),
            heading_deg=args.heading, incidence_near_deg=args.incidence_near,
            incidence_far_deg=args.incidence_far, line_spacing=args.line_spacing,
            sample_spacing=args.sample_spacing, look_side=args.look_side,
        )
    if not Path(args.geometry).exists():
        raise SarHeightError(
            f"--geometry {args.geometry!r}: no such Sentinel-1 product; give a .SAFE directory, its "
            "manifest.safe or a .zip of the SAFE, or 'synthetic'"
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
    from .geometry import backward_geocode, geocoding_products
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
    from .layover import to_geotiff
    from .masks import MaskCode, inside_image, to_isce3_mask
    from .simulate import simulate

    stages = _Stages(3, args.quiet)
    dem = open_dem(args.dem, vertical_datum=args.vertical_datum, geoid_grid=args.geoid_grid, fill_voids=args.fill_voids)
    geometry = _geometry_from_args(args, dem)
    stages.done("read DEM and geometry")
    result = simulate(dem, geometry, contribution=args.contribution, projection=args.projection,
                      progress=not args.quiet)
    stages.done("simulated")
    out = Path(args.out)
    to_geotiff(result, out)
    masks = out.with_name(out.stem + "_masks.tif")
    write_geotiff(result[["layover", "shadow"]].assign(isce3_mask=to_isce3_mask(result)), masks)
    if args.quicklook:
        from .plots import quicklook

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
            args.quicklook, columns=2,
        )
    stages.done("wrote outputs")
    stages.close()
    if not args.quiet:
        inside = inside_image(result["layover"])
        print(f"wrote {out} and {masks}: layover {np.mean(result['layover'].values[inside] != MaskCode.NONE):.1%}, "
              f"shadow {np.mean(result['shadow'].values[inside] != MaskCode.NONE):.1%} of {int(inside.sum())} cells in the image")
    return 0


def _cmd_reconstruct(args: argparse.Namespace) -> int:
    from .dem import open_dem
    from .geometry import RadarGeometry
    from .io import write_geotiff
    from .layover import reconstruct, to_geotiff
    from .masks import inside_image, to_isce3_mask

    sar_path = Path(args.sar)
    geotiff = sar_path.suffix.lower() in (".tif", ".tiff")
    if geotiff and not sar_path.is_file():
        raise SarHeightError(f"--sar {args.sar!r}: no such GeoTIFF")
    if geotiff and (args.chunks is not None or args.scheduler is not None):
        raise SarHeightError(
            "--chunks and --scheduler take observations in radar geometry (a SAFE product); a geocoded "
            "GeoTIFF is reconstructed in memory: leave them out"
        )
    stages = _Stages(3, args.quiet)
    dem = open_dem(args.dem, vertical_datum=args.vertical_datum, geoid_grid=args.geoid_grid, fill_voids=args.fill_voids)
    if args.geometry is not None:
        geometry = _geometry_from_args(args, dem)
    elif geotiff:
        raise SarHeightError(
            "a geocoded GeoTIFF observation needs --geometry (the SAFE it came from, or 'synthetic')"
        )
    else:
        geometry = RadarGeometry.from_sentinel1(sar_path, args.measurement, burst=args.burst)
    stages.done("read DEM and geometry")
    options = {"contribution": args.contribution, "output": args.output, "projection": args.projection,
               "measurement": args.measurement, "progress": not args.quiet}
    result = reconstruct(sar_path, dem, geometry, sar_quantity=args.sar_quantity, sar_db=args.sar_db,
                         chunks=args.chunks, client=args.scheduler, **options)
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
                ("layover / shadow (ISCE3 codes)", to_isce3_mask(result).where(inside_image(result["layover"])),
                 {"vmin": 0, "vmax": 3, "colorbar": "1 shadow, 2 layover, 3 both"}),
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
    simulate.add_argument("--contribution", choices=("model", "gamma"), default="model", help=CONTRIBUTION_HELP)
    simulate.add_argument("--projection", choices=("exact", "bilinear"), default="exact", help=PROJECTION_HELP)
    simulate.add_argument("-q", "--quiet", action="store_true", help="print nothing")
    _add_geometry_options(simulate)
    _add_dem_options(simulate)
    simulate.set_defaults(func=_cmd_simulate)

    rec = sub.add_parser("reconstruct", help="reallocate layover energy of an observation to the DEM's cells")
    rec.add_argument("--sar", required=True, help="Sentinel-1 SAFE (.SAFE or .zip) or a GeoTIFF geocoded to a map grid")
    rec.add_argument("--dem", required=True, help="DEM raster (any CRS rasterio reads)")
    rec.add_argument("--out", required=True, help="output GeoTIFF (masks go to OUT_masks.tif)")
    rec.add_argument("--quicklook", default=None, help="also write a PNG quicklook here")
    rec.add_argument("--contribution", choices=("model", "gamma"), default="model", help=CONTRIBUTION_HELP)
    rec.add_argument("--output", choices=("sigma0", "gamma0"), default="sigma0",
                     help="what the reallocated energy is divided by: the cell's sigma area (sigma0, default) "
                     "or its gamma area (gamma0)")
    rec.add_argument("--projection", choices=("exact", "bilinear"), default="exact", help=PROJECTION_HELP)
    rec.add_argument("--sar-quantity", choices=("beta0", "sigma0", "gamma0"), default="sigma0",
                     help="what a geocoded GeoTIFF holds (ellipsoid-referenced), default sigma0")
    rec.add_argument("--sar-db", action="store_true", help="a geocoded GeoTIFF is in dB")
    rec.add_argument("--chunks", type=int, default=None, metavar="ROWS",
                     help="run block by block, ROWS DEM rows per block (bounded memory, local threads); "
                     "observations in radar geometry (a SAFE) only")
    rec.add_argument("--scheduler", default=None, metavar="ADDRESS",
                     help="run block by block on a dask.distributed cluster: a scheduler address "
                     "(tcp://host:8786), or 'local' for a LocalCluster on this machine; observations in radar "
                     "geometry (a SAFE) only")
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
    created: list[Path] = []
    # Warnings as one line in the command's words while it runs (restored after: main()
    # may be called from Python).
    shown = warnings.showwarning
    warnings.showwarning = functools.partial(_show_warning, parser=parser)
    try:
        created = _prepare_outputs(args)
        return int(args.func(args) or 0)
    except SarHeightError as exc:
        print(f"sarheight {args.command}: error: {_for_command_line(str(exc), parser)}", file=sys.stderr)
        # Folders made for the outputs of a command that wrote nothing go again.
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        return 2
    finally:
        warnings.showwarning = shown


def _prepare_outputs(args: argparse.Namespace) -> list[Path]:
    """Check the output paths before any work and make their missing folders; returns the
    folders made, outermost first. The demo's --out is a folder, the others' files."""
    paths = [(getattr(args, "out", None), args.command == "demo"), (getattr(args, "quicklook", None), False)]
    missing: list[Path] = []
    for given, is_folder in paths:
        if not given:
            continue
        path = Path(given)
        if is_folder and path.exists() and not path.is_dir():
            raise SarHeightError(f"--out {given!r} is a file: the demo writes into a folder, give a folder's path")
        if not is_folder and path.is_dir():
            raise SarHeightError(f"{given!r} is a folder: give the path of the file to write")
        folder = path if is_folder else path.parent
        ancestor = folder
        while not ancestor.exists():
            missing.append(ancestor)
            ancestor = ancestor.parent
        if not ancestor.is_dir():
            raise SarHeightError(f"cannot write {given!r}: {str(ancestor)!r} is a file, not a folder")
    created = []
    for folder in sorted(set(missing), key=lambda p: len(p.parts)):
        if not folder.exists():
            folder.mkdir()
            created.append(folder)
    return created


def _for_command_line(message: str, parser: argparse.ArgumentParser) -> str:
    """A library message in the command's words: keyword arguments that are options of
    the command (``geoid_grid=``, ``sar_db=True``) are named as the options."""
    options = {action.dest: action.option_strings[-1] for sub in _subparsers(parser) for action in sub._actions
               if action.option_strings and action.option_strings[-1].startswith("--")}

    def option(match: re.Match) -> str:
        name = match.group(1)
        if name not in options:
            return match.group(0)
        # name=value reads "--name value"; "name=" before a space or "name=True", "--name".
        value_follows = match.group(2) == "=" and match.string[match.end():match.end() + 1] not in ("", " ")
        return options[name] + (" " if value_follows else "")

    message = re.sub(r"\b([a-z]+(?:_[a-z0-9]+)+)(=(?:True\b)?)", option, message)
    if ".rio.write_crs(" in message:
        message += " For a file: rio edit-info --crs EPSG:4326 FILE.tif (rasterio's command line)."
    return message


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    return [sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for sub in action.choices.values()]


def _show_warning(message, category, filename, lineno, file=None, line=None, *, parser) -> None:
    """Warnings as one line of the command's output, in its words, without the source line."""
    print(f"sarheight: warning: {_for_command_line(str(message), parser)}", file=file or sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
