"""What the subcommands share: their common options, reading the DEM and the geometry
they name, the stages bar, and library messages in the command's words."""

from __future__ import annotations

import argparse
import contextlib
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

from ..errors import SarHeightError

CONTRIBUTION_HELP = ("what each facet returns: 'model' (default), the empirical sigma0 law of SNAP's and "
                     "ISCE3's simulators times the facet area, which tells facets inside one layover pixel "
                     "apart; 'gamma', the projected area alone (constant gamma0, Small 2011)")
PROJECTION_HELP = ("'exact' (default): exact overlap of each facet's footprint with the radar pixels; "
                   "'bilinear': faster splatting of facet centres (an approximation)")


#: Keywords of the library whose options have other names on the command line.
LIBRARY_NAMES = {"heading_deg": "--heading", "incidence_near_deg": "--incidence-near",
                 "incidence_far_deg": "--incidence-far", "client": "--scheduler", "out": "--out"}


#: The options of a synthetic geometry: (option, default, help).
SYNTHETIC_OPTIONS = (
    ("--heading", 348.0, "heading, deg (348 ascending, 192 descending)"),
    ("--incidence-near", 30.0, "near-range incidence, deg"),
    ("--incidence-far", 46.0, "far-range incidence, deg"),
    ("--line-spacing", 10.0, "azimuth pixel spacing, m"),
    ("--sample-spacing", 10.0, "slant-range pixel spacing, m"),
    ("--look-side", "right", "look side"),
)


def add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing")


def add_device(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default=None, metavar="DEVICE",
                        help="where the physics runs: cpu (default: the compiled kernels on every core), cuda or "
                        "cuda:N (torch on that GPU; sarheight[ml])")


class Action(NamedTuple):
    """An action of a subcommand with actions (``sarheight terrain ACTION``); with
    ``passthrough`` (LightningCLI's ``fit``) the action reads the rest of the line itself,
    from ``args.arguments``, ``--help`` included."""

    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    passthrough: bool = False


def add_actions(parser: argparse.ArgumentParser, actions: dict[str, Action]) -> None:
    """A required ``ACTION`` argument of the subcommand, one subparser per action; the
    action's ``run`` is in ``args.run_action`` (see :func:`run_action`)."""
    subparsers = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, action in actions.items():
        subparser = subparsers.add_parser(name, help=action.help, description=action.help,
                                          add_help=not action.passthrough)
        action.add_arguments(subparser)
        subparser.set_defaults(run_action=action.run)
        if action.passthrough:
            subparser.set_defaults(passthrough=True)


def run_action(args: argparse.Namespace) -> int:
    """Run the action that :func:`add_actions` chose."""
    return args.run_action(args)


def add_training_budget(parser: argparse.ArgumentParser, *, seeds: int | None, max_epochs: int | None,
                        tiles_per_epoch: int | None, batch_size: int | None, tile: int | None,
                        lr: float | None) -> None:
    """The options of an experiment runner's fixed budget of every training (with their
    defaults; None: the runner's own, said in its help), its accelerator and ``--quiet``;
    its ``--out`` is a folder."""

    def default(value: float | None) -> str:
        return f"default {value:g}" if value is not None else "default: the task's"

    parser.add_argument("--seeds", type=int, default=seeds, help=f"trainings per configuration ({default(seeds)})")
    parser.add_argument("--max-epochs", type=int, default=max_epochs,
                        help=f"epochs of every training ({default(max_epochs)})")
    parser.add_argument("--tiles-per-epoch", type=int, default=tiles_per_epoch,
                        help=f"training tiles per epoch ({default(tiles_per_epoch)})")
    parser.add_argument("--batch-size", type=int, default=batch_size, help=f"tiles per batch ({default(batch_size)})")
    parser.add_argument("--tile", type=int, default=tile, help=f"tile side, cells ({default(tile)})")
    parser.add_argument("--lr", type=float, default=lr, help=f"learning rate ({default(lr)})")
    parser.add_argument("--accelerator", default="auto", help="Lightning accelerator (auto: a GPU if there is one)")
    add_quiet(parser)
    parser.set_defaults(out_is_folder=True)


def add_outputs(parser: argparse.ArgumentParser, out_help: str) -> None:
    """``--out`` (a file, required) and ``--quicklook`` (an optional PNG)."""
    parser.add_argument("--out", required=True, help=out_help)
    parser.add_argument("--quicklook", default=None, help="also write a PNG quicklook here")


def add_simulation_options(parser: argparse.ArgumentParser) -> None:
    """``--contribution`` and ``--projection``."""
    parser.add_argument("--contribution", choices=("model", "gamma"), default="model", help=CONTRIBUTION_HELP)
    parser.add_argument("--projection", choices=("exact", "bilinear"), default="exact", help=PROJECTION_HELP)


def add_geometry_options(parser: argparse.ArgumentParser, required: bool = True, repeated: bool = False) -> None:
    """The acquisition geometry: a Sentinel-1 product or a synthetic straight orbit
    (``repeated``: ``--geometry`` may be given once per observation, a list)."""
    group = parser.add_argument_group("acquisition geometry")
    help_text = ("a Sentinel-1 product (.SAFE directory or .zip; the annotation is enough), or "
                 "'synthetic' for a straight-orbit Sentinel-1-like geometry centred on the DEM")
    if not required:
        help_text += ("; default: the --sar product's own (needed for a geocoded GeoTIFF --sar: the "
                      "product it came from, or 'synthetic')")
    if repeated:
        help_text += ("; repeat once per GeoTIFF --sar in their order (or give one for all); synthetic:HEADING "
                      "for a synthetic pass of that heading (degrees)")
    group.add_argument("--geometry", required=required, default=None, metavar="SAFE|synthetic", help=help_text,
                       action="append" if repeated else "store")
    group.add_argument("--measurement", default=None,
                       help="swath/polarisation of the product (default IW/VV); not with 'synthetic'")
    group.add_argument("--burst", type=int, default=None, help="SLC burst index (0-based), default all; not with "
                       "'synthetic'")
    for option, value, text in SYNTHETIC_OPTIONS:
        group.add_argument(option, type=type(value) if not isinstance(value, str) else None, default=None,
                           choices=("right", "left") if option == "--look-side" else None,
                           help=f"synthetic: {text} (default {value})")


def _synthetic_value(args: argparse.Namespace, option: str) -> Any:
    value = getattr(args, option.lstrip("-").replace("-", "_"))
    return value if value is not None else next(default for name, default, _ in SYNTHETIC_OPTIONS if name == option)


def check_geometry_options(args: argparse.Namespace, product_given: bool) -> None:
    """Refuse options that the chosen geometry would ignore: --measurement and --burst
    with a synthetic geometry, the synthetic options with a product's."""
    synthetic = (args.geometry or "").lower() == "synthetic"
    if synthetic and not product_given and (args.measurement is not None or args.burst is not None):
        raise SarHeightError("--measurement and --burst select part of a Sentinel-1 product: with --geometry "
                             "synthetic there is none; leave them out")
    given = [option for option, _, _ in SYNTHETIC_OPTIONS
             if getattr(args, option.lstrip("-").replace("-", "_")) is not None]
    if given and not synthetic:
        raise SarHeightError(f"{', '.join(given)} shape a synthetic geometry: a product's geometry is its own; "
                             "leave them out, or give --geometry synthetic")


def add_dem_argument(parser: argparse.ArgumentParser) -> None:
    """The DEM, as every command takes it (``--dem DEM``), or as the first word after the
    command (``sarheight simulate DEM``); :func:`resolve_dem_argument` makes them one."""
    parser.add_argument("dem_file", nargs="?", default=None, metavar="DEM",
                        help="DEM raster (any CRS rasterio reads); or give it as --dem")
    parser.add_argument("--dem", default=None, help="DEM raster (the same as DEM)")


def resolve_dem_argument(args: argparse.Namespace) -> None:
    """``args.dem`` from ``--dem`` or the first word (:func:`add_dem_argument`), refused
    where neither or two different DEMs are given."""
    if not hasattr(args, "dem_file"):
        return
    if args.dem is not None and args.dem_file is not None and args.dem != args.dem_file:
        raise SarHeightError(f"two DEMs are given ({args.dem_file!r} and --dem {args.dem!r}): give one")
    args.dem = args.dem or args.dem_file
    if args.dem is None:
        raise SarHeightError("no DEM is given: give --dem DEM")


def add_dem_options(parser: argparse.ArgumentParser) -> None:
    """How to read the DEM's heights."""
    group = parser.add_argument_group("DEM")
    group.add_argument(
        "--vertical-datum", choices=("egm96", "egm2008", "ellipsoid"), default=None,
        help="the heights' datum where the DEM's CRS does not say it (SRTM, Copernicus: egm96/egm2008); where "
        "the CRS says another, this overrides it with a warning naming both. Geoid heights are converted offline: "
        "EGM96 with the grid that ships with sarheight, EGM2008 with PROJ's grid where installed, else with EGM96's "
        "(warned: decimetres to a metre or so apart over most of the Earth)",
    )
    group.add_argument("--geoid-grid", default=None,
                       help="a raster of geoid undulations to use instead (e.g. an EGM2008 grid, us_nga_egm08_25.tif)")
    group.add_argument("--fill-voids", action="store_true", help="fill DEM voids by interpolation")


def add_prior_points_options(parser: argparse.ArgumentParser) -> None:
    """Known heights measured: the points and what :class:`sarheight.priors.PriorSpec` needs
    to read them (CRS, vertical datum, geoid grid, GeoPackage layer)."""
    group = parser.add_argument_group("priors")
    group.add_argument("--priors", default=None, metavar="POINTS",
                       help="known heights: a CSV (x, y, height), GeoJSON or GeoPackage of points")
    group.add_argument("--priors-crs", default=None, help="the CRS of a CSV of priors (e.g. EPSG:4326)")
    group.add_argument("--priors-vertical-datum", choices=("ellipsoid", "egm96", "egm2008"), default=None,
                       help="the datum of the priors' heights (geoid heights are converted)")
    group.add_argument("--priors-geoid-grid", default=None, metavar="RASTER",
                       help="the geoid undulations that convert the priors' heights (default: --geoid-grid, "
                       "else PROJ's)")
    group.add_argument("--priors-layer", default=None, metavar="TABLE",
                       help="the table of a GeoPackage of priors that holds several")


def prior_points_from_args(args: argparse.Namespace) -> Any:
    """The :class:`sarheight.priors.PriorSpec` of the points the options name, or None."""
    from ..priors import PriorSpec

    described = [option for option, value in (("--priors-crs", args.priors_crs),
                                              ("--priors-vertical-datum", args.priors_vertical_datum),
                                              ("--priors-geoid-grid", args.priors_geoid_grid),
                                              ("--priors-layer", args.priors_layer)) if value is not None]
    if args.priors is None:
        if described:
            raise SarHeightError(f"{', '.join(described)} describe --priors, which is not given: give the points, "
                                 "or leave them out")
        return None
    if not Path(args.priors).is_file():
        raise SarHeightError(f"--priors {args.priors!r}: " + (
            "not a file (a folder or a device): give a CSV, GeoJSON or GeoPackage of points"
            if Path(args.priors).exists() else "no such file of points"))
    return PriorSpec(points=args.priors, crs=args.priors_crs, vertical_datum=args.priors_vertical_datum,
                     geoid_grid=args.priors_geoid_grid or getattr(args, "geoid_grid", None), layer=args.priors_layer)


def drawn_priors_from_args(args: argparse.Namespace) -> list[Any]:
    """The :class:`sarheight.priors.PriorSpec` of each pattern or instrument kind the options
    name (``--prior-pattern``, ``--prior-kind``), with ``--prior-fraction`` or
    ``--prior-count`` and ``--prior-noise``."""
    from ..priors import PriorSpec

    if args.prior_kinds and args.prior_patterns:
        raise SarHeightError("--prior-kind gives the pattern of its instrument: leave --prior-pattern out with it")
    amount = {"count": args.prior_count} if args.prior_count is not None else {"fraction": args.prior_fraction}
    if args.prior_kinds:
        return [PriorSpec(kind=kind, noise_m=args.prior_noise, **amount) for kind in dict.fromkeys(args.prior_kinds)]
    return [PriorSpec(pattern=pattern, noise_m=args.prior_noise, **amount)
            for pattern in dict.fromkeys(args.prior_patterns or ("random",))]


def open_dem_from_args(args: argparse.Namespace, path: str) -> Any:
    """The DEM at ``path`` read as the DEM options say (its heights)."""
    return checked_dem_from_args(args, path).heights


def checked_dem_from_args(args: argparse.Namespace, path: str) -> Any:
    """The DEM at ``path`` read as the DEM options say, checked once: a
    :class:`sarheight.dem.Dem`, which the library's functions take without checking it again."""
    from ..dem import checked_dem

    return checked_dem(path, vertical_datum=args.vertical_datum, geoid_grid=args.geoid_grid,
                       fill_voids=args.fill_voids)


def geometry_from_args(args: argparse.Namespace, dem: Any) -> Any:
    """The :class:`~sarheight.geometry.RadarGeometry` the geometry options name."""
    from ..geometry import RadarGeometry

    if args.geometry.lower() == "synthetic":
        west, south, east, north = dem.rio.transform_bounds("EPSG:4326")
        return RadarGeometry.synthetic(
            center_lon=0.5 * (west + east), center_lat=0.5 * (south + north),
            heading_deg=_synthetic_value(args, "--heading"),
            incidence_near_deg=_synthetic_value(args, "--incidence-near"),
            incidence_far_deg=_synthetic_value(args, "--incidence-far"),
            line_spacing=_synthetic_value(args, "--line-spacing"),
            sample_spacing=_synthetic_value(args, "--sample-spacing"),
            look_side=_synthetic_value(args, "--look-side"),
        )
    if not Path(args.geometry).exists():
        raise SarHeightError(
            f"--geometry {args.geometry!r}: no such Sentinel-1 product; give a .SAFE directory, its "
            "manifest.safe or a .zip of the SAFE, or 'synthetic'"
        )
    return RadarGeometry.from_sentinel1(args.geometry, args.measurement or "IW/VV", burst=args.burst)


def geometry_of_radar_file(path: Path) -> Any:
    """The synthetic geometry a radar-geometry GeoTIFF of ``sarheight simulate`` was made
    under, rebuilt from its tags (the options it names, centred where its DEM was), or
    None: a map-grid GeoTIFF, or one whose tags name no synthetic geometry (a product's
    image: give its SAFE as --geometry)."""
    from ..geometry import RadarGeometry
    from ..io import is_radar_image, open_raster
    from ..observation import check_image_geometry

    with open_raster(path, "the SAR image") as dataset:
        tags = dataset.tags() if dataset.crs is None else {}
    if not is_radar_image(tags) or tags.get("geometry_product") != "synthetic" or "geometry_options" not in tags:
        return None
    words = tags["geometry_options"].split()
    given = {option: words[index + 1] for index, option in enumerate(words[:-1]) if option.startswith("--")}
    try:
        values = {option: default if option not in given else given[option] if isinstance(default, str)
                  else float(given[option]) for option, default, _ in SYNTHETIC_OPTIONS}
        center = (float(tags["geometry_center_lon"]), float(tags["geometry_center_lat"]))
    except (KeyError, ValueError):
        raise SarHeightError(f"--sar {str(path)!r}: its geometry tags do not say which geometry it was made "
                             "under (write it again with sarheight simulate)") from None
    geometry = RadarGeometry.synthetic(
        center_lon=center[0], center_lat=center[1], heading_deg=values["--heading"],
        incidence_near_deg=values["--incidence-near"], incidence_far_deg=values["--incidence-far"],
        line_spacing=values["--line-spacing"], sample_spacing=values["--sample-spacing"],
        look_side=values["--look-side"])
    check_image_geometry(tags, geometry, f"the SAR image {str(path)!r}")
    return geometry


def geometry_words(args: argparse.Namespace) -> str:
    """The geometry options as the user would type them again (``--geometry synthetic
    --heading 192``): every option of the geometry that was given."""
    words = [f"--geometry {args.geometry}"]
    if args.geometry.lower() == "synthetic":
        words += [f"{option} {getattr(args, option.lstrip('-').replace('-', '_')):g}"
                  if not isinstance(default, str) else f"{option} {getattr(args, option.lstrip('-').replace('-', '_'))}"
                  for option, default, _ in SYNTHETIC_OPTIONS
                  if getattr(args, option.lstrip("-").replace("-", "_")) is not None]
    else:
        words += [f"--measurement {args.measurement}"] if args.measurement else []
        words += [f"--burst {args.burst}"] if args.burst is not None else []
    return " ".join(words)


@contextlib.contextmanager
def run_outputs(args: argparse.Namespace, masks: bool) -> Iterator[tuple[Path, Path | None, Path | None]]:
    """Temporaries for the files of a run (``--out``, its masks file, ``--quicklook``),
    renamed into place together when the block succeeds and removed when it fails
    (``sarheight.io.output_set``): a failed run leaves the previous files as they were."""
    from ..io import output_set

    out = Path(args.out)
    finals = [out, masks_path(out) if masks else None, Path(args.quicklook) if args.quicklook else None]
    with output_set([path for path in finals if path is not None]) as temporaries:
        given = iter(temporaries)
        yield tuple(next(given) if path is not None else None for path in finals)


def masks_path(out: Path) -> Path:
    """``OUT_masks.tif`` beside ``out``: where simulate and reconstruct write the masks."""
    return companion_path(out, "masks")


def companion_path(out: Path, name: str) -> Path:
    """``OUT_<name>.tif`` beside ``out``: a further file of the run (a command names them
    in ``companion_files``, checked with ``--out`` before any work)."""
    return out.with_name(f"{out.stem}_{name}.tif")


def write_masks(result: Any, path: Path) -> Path:
    """Layover, shadow and the ISCE3 mask (uint8) of ``result`` as a GeoTIFF at ``path``."""
    from ..io import write_geotiff
    from ..masks import to_isce3_mask

    return write_geotiff(result[["layover", "shadow"]].assign(isce3_mask=to_isce3_mask(result)), path)


class Stages:
    """The progress of a command over its stages: in a terminal a bar, its elapsed time kept
    current; outside one (a log, a pipe, a batch job) a line per stage on standard error,
    and one every :func:`sarheight.threads.progress_seconds` (30 s) while a stage runs, as
    every progress bar does there, so that a log never goes quiet for minutes. Nothing with
    ``quiet``."""

    #: The stages not yet closed, closed by the command's end whatever happened.
    open: ClassVar[set[Stages]] = set()

    def __init__(self, total: int, quiet: bool, command: str | None = None):
        from tqdm import tqdm

        self.total, self.count, self.quiet = total, 0, quiet
        self.command = command or (f"sarheight {sys.argv[1]}" if len(sys.argv) > 1 else "sarheight")
        self.terminal = sys.stderr.isatty()
        self.bar = tqdm(total=total, disable=quiet or not self.terminal, unit="step")
        self.started = self.last_line = time.monotonic()
        self.last_stage = "started"
        self._stop = threading.Event()
        self._beat = None
        if not quiet:
            self._beat = threading.Thread(target=self._heartbeat, name="sarheight-progress", daemon=True)
            self._beat.start()
        Stages.open.add(self)

    def done(self, what: str) -> None:
        self.count += 1
        self.last_stage = what
        if self.terminal:
            self.bar.set_description(what)
            self.bar.update(1)
        elif not self.quiet:
            self._line(f"{what} ({self.count}/{self.total})")

    def close(self) -> None:
        self._stop.set()
        self.bar.close()
        Stages.open.discard(self)

    def _line(self, text: str) -> None:
        print(f"{self.command}: {text}, {time.monotonic() - self.started:.0f} s", file=sys.stderr, flush=True)
        self.last_line = time.monotonic()

    def _heartbeat(self) -> None:
        # In a terminal the bar's clock is refreshed each second; in a log a line at most
        # every progress_seconds().
        from ..threads import progress_seconds  # here: it imports Numba, which the command's start need not

        every = progress_seconds()
        period = 1.0 if self.terminal else every
        while not self._stop.wait(period):
            if self.terminal:
                self.bar.refresh()
            elif time.monotonic() - self.last_line >= 0.98 * every:
                self._line(f"working ({self.count}/{self.total} stages done, the last: {self.last_stage})")


def close_stages() -> None:
    """Close every :class:`Stages` still open (a command that failed midway)."""
    for stages in list(Stages.open):
        stages.close()


def in_command_words(message: str, parser: argparse.ArgumentParser) -> str:
    """A library message in the command's words: keyword arguments that are options of
    the command (``geoid_grid=``, ``sar_db=True``) are named as the options."""
    options = {action.dest: action.option_strings[-1] for sub in _subparsers(parser) for action in sub._actions
               if action.option_strings and action.option_strings[-1].startswith("--")}
    options.update(LIBRARY_NAMES)

    def option(match: re.Match) -> str:
        name = match.group(1)
        if name not in options:
            return match.group(0)
        # name=value reads "--name value"; "name=" before a space or "name=True", "--name".
        value_follows = match.group(2) == "=" and match.string[match.end():match.end() + 1] not in ("", " ")
        return options[name] + (" " if value_follows else "")

    # The priors' keywords (PriorSpec(vertical_datum='egm96')) are the --priors-* options.
    message = re.sub(r"PriorSpec\((vertical_datum|geoid_grid|crs|layer)=([^)]*)\)",
                     lambda found: f"--priors-{found.group(1).replace('_', '-')} {found.group(2)}", message)
    message = re.sub(r"(?<!--priors-)\b([a-z][a-z0-9_]*)(=(?:True\b)?)", option, message)
    # The same fix for a file, with rasterio's own command line (installed with sarheight).
    for python, shell in ((".rio.write_crs(", "rio edit-info --crs EPSG:4326 FILE.tif"),
                          (".rio.write_nodata(", "rio edit-info --nodata VALUE FILE.tif"),
                          (".rio.reproject(", "rio warp FILE.tif NORTH_UP.tif")):
        if python in message:
            message += f" For a file: {shell} (rasterio's command line)."
    return message


def _subparsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    return [sub for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for sub in action.choices.values()]
