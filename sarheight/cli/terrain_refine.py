"""``sarheight terrain refine``: a user's coarse DEM refined with Sentinel-1, on a grid of
the chosen spacing, by the refinement network that ships with sarheight (or one's own
checkpoints) or by a method that needs no learning (:func:`sarheight.refinement.refine_dem`,
on :func:`sarheight.terrain.observed.observed_scene`)."""

from __future__ import annotations

import argparse
import math
import warnings
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, SarHeightError
from ..terrain.method_table import COMMAND_METHODS, default_methods_in_words
from .options import (
    Stages,
    add_dem_options,
    add_geometry_options,
    add_outputs,
    add_prior_points_options,
    add_quiet,
    check_geometry_options,
    checked_dem_from_args,
    geometry_from_args,
    geometry_of_radar_file,
    open_dem_from_args,
    prior_points_from_args,
    run_outputs,
)

HELP = ("refine a coarse DEM with Sentinel-1 (a SAFE product, or a sigma0 GeoTIFF) by the inversion of the "
        "simulator (the default), clinometry, back-projection, the packaged refinement network or your checkpoints: "
        "the fine DEM on a grid of --spacing metres")


#: Feet in a metre: heights 3.28 times another's are in feet.
FEET_PER_METRE = 1 / 0.3048

#: The mean height difference (m) between --truth and the refined DEM beyond which the two
#: are on different vertical datums (the geoid's undulation is 30-100 m over most of the
#: Earth; a refinement moves a coarse DEM's mean by metres).
TRUTH_MEAN_LIMIT_M = 15.0

#: The methods of :func:`sarheight.refinement.refine_dem`, from the table of methods (data
#: only: importing the refinement would load the whole physics, and Numba, at every start).
METHODS = COMMAND_METHODS

#: How the console names the datums.
DATUM_WORDS = {"ellipsoid": "metres above the WGS84 ellipsoid", "egm96": "metres above the EGM96 geoid",
               "egm2008": "metres above the EGM2008 geoid"}

#: The most observations one refinement takes (both passes of a year of 12-day repeats).
MAX_OBSERVATIONS = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dem", required=True, help="the coarse DEM (GeoTIFF, any CRS rasterio reads)")
    parser.add_argument("--sar", action="append", required=True, metavar="SAR",
                        help="an observation: a Sentinel-1 SAFE (.SAFE or .zip) or a GeoTIFF geocoded to a map grid; "
                        "repeat for more dates and for the opposite pass (the dates of one pass are composited; "
                        "--method inversion reads every one, the network one pass or both for models trained on "
                        "both, a stack network (sarheight fit --config terrain_stack) every date of either pass, "
                        "clinometry and back-projection the dates of one pass)")
    parser.add_argument("--method", choices=METHODS, default=None,
                        help="default: for what --sar gives (one image, one pass of several dates, both passes), "
                        "the method without learning of the lowest RMSE on the validation DEMs, or the packaged "
                        f"network where it is 5 %% below the inversion there (today {default_methods_in_words()}); "
                        "the inversion for one image of both polarisations and with --land-cover; network with "
                        "--ckpt; network: a refinement network, the "
                        "one that ships with sarheight for what --sar gives (the stack network for several "
                        "observations, and for one the network chosen on the validation DEMs) unless --ckpt names "
                        "yours; inversion: the fine DEM whose simulated images match every --sar, under "
                        "the coarse DEM's cell means and the priors (both passes, many dates, land cover told apart); "
                        "clinometry: the slopes one pass's brightness asks for (the inversion's one-step case); "
                        "back-projection: the coarse DEM registered, back-projected and corrected by the priors' "
                        "residuals kriged (no SAR). The last three need no checkpoint and no torch")
    parser.add_argument("--coarse-error", type=float, default=None, metavar="M",
                        help="the DEM's stated vertical error, metres RMS (its accuracy figure: 0 for an exact block "
                        "mean, a few metres for Copernicus, more for SRTM): what the priors may correct of it and how "
                        "far the inversion may move its cells' means; default: not stated")
    parser.add_argument("--land-cover", default=None, metavar="MAP",
                        help="--method inversion: a land-cover map (GeoTIFF of integer class codes, any CRS): each "
                        "class its own sigma0 law, instead of the classes the inversion tells apart from the images")
    parser.add_argument("--ckpt", action="append", default=None, metavar="CKPT",
                        help="with --method network: your refinement checkpoint (sarheight fit --config "
                        "terrain_refine) instead of the packaged one; repeat for an ensemble: the map is their mean, "
                        "their standard deviation a second band")
    parser.add_argument("--spacing", type=float, required=True, metavar="M",
                        help="cell size of the refined DEM, metres (2-10 times finer than the DEM's)")
    add_prior_points_options(parser)
    add_outputs(parser, "output GeoTIFF: height (m, in the DEM's vertical datum unless --out-vertical-datum), "
                "height_std (m) with several checkpoints, and the coarse DEM on the same grid")
    parser.add_argument("--truth", default=None, metavar="FINE_DEM",
                        help="a fine DEM of the same area (the one the coarse DEM was made from: terrain coarsen): "
                        "the refined DEM is scored against it, beside every method that needs no learning (the "
                        "inversion included: it runs too)")
    parser.add_argument("--truth-vertical-datum", choices=("egm96", "egm2008", "ellipsoid"), default=None,
                        help="the datum of --truth's heights (default: as its CRS says, else the DEM's, as --dem was "
                        "read)")
    parser.add_argument("--out-vertical-datum", choices=tuple(DATUM_WORDS), default=None,
                        help="the datum of the heights written (default: the DEM's, as it came: EGM96 heights back "
                        "on EGM96 with the same geoid grid, the CRS compound with the geoid's height; ellipsoid: "
                        "WGS84 ellipsoidal)")
    parser.add_argument("--sar-quantity", choices=("beta0", "sigma0", "gamma0"), default="sigma0",
                        help="what a geocoded GeoTIFF holds (ellipsoid-referenced), default sigma0")
    parser.add_argument("--sar-db", action="store_true", help="a geocoded GeoTIFF is in dB")
    parser.add_argument("--device", default=None, help="torch device of the network (default: cuda when there is "
                        "one, else cpu); named cuda, it also runs the reconstructions and the inversion's forward "
                        "model there (left unset, those stay on the CPU kernels)")
    parser.add_argument("--blocks", type=int, default=None, metavar="CELLS",
                        help="--method inversion: run it block by block, CELLS fine cells a side of a block (bounded "
                        "memory, local threads)")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="--method inversion: run its blocks on a dask.distributed cluster: a scheduler address "
                        "(tcp://host:8786), or 'local' for a LocalCluster on this machine")
    # Several GeoTIFFs may need several geometries (the two passes): --geometry repeats here.
    add_geometry_options(parser, required=False, repeated=True)
    add_dem_options(parser)
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    from ..dem import dataset_in_datum, output_datum, output_geoid_source
    from ..geometry import RadarGeometry
    from ..io import is_geotiff_path, write_geotiff
    from ..refinement import check_spacing_of_file, default_method, refine_dem, refinement_quicklook
    from ..terrain.radar_images import has_cross_polarisation
    from ..terrain.scene_options import Execution, SarReading

    if args.method == "network" or (args.method is None and args.ckpt):
        from ..extras import require

        require("sarheight terrain refine --method network")
    elif args.ckpt:
        raise SarHeightError(f"--ckpt is for --method network; --method {args.method} needs no checkpoint: leave "
                             "--ckpt out")
    if args.coarse_error is not None and not (math.isfinite(args.coarse_error) and args.coarse_error >= 0):
        raise SarHeightError(f"--coarse-error {args.coarse_error:g}: give the DEM's stated error, metres, 0 or more")
    if args.land_cover is not None and args.method not in (None, "inversion"):
        raise SarHeightError(f"--land-cover is the inversion's classes: --method {args.method} reads none; leave it "
                             "out, or give --method inversion")
    if args.land_cover is not None and not Path(args.land_cover).is_file():
        raise SarHeightError(f"--land-cover {args.land_cover!r}: no such file")
    # Where the work runs, checked as a group before any reading (the method, where given).
    execution = Execution(device=args.device, blocks=args.blocks, client=args.scheduler, progress=not args.quiet)
    if args.method is not None:
        execution.check_method(args.method)
    if len(args.sar) > MAX_OBSERVATIONS:
        raise SarHeightError(f"--sar is given {len(args.sar)} times: give at most {MAX_OBSERVATIONS} observations")
    paths = [Path(sar) for sar in args.sar]
    geotiffs = [is_geotiff_path(path) for path in paths]
    for path in paths:
        if not path.exists():
            raise SarHeightError(f"--sar {str(path)!r}: no such product or GeoTIFF")
    repeated = sorted({str(path) for path in paths if paths.count(path) > 1})
    if repeated:
        raise SarHeightError(f"--sar {repeated[0]!r} is given twice: give each date once")
    # A radar-geometry GeoTIFF of sarheight simulate carries its geometry; a geocoded one
    # needs it said.
    tagged = [geometry_of_radar_file(path) if geotiff else None for path, geotiff in zip(paths, geotiffs, strict=True)]
    needs = [geotiff and carried is None for geotiff, carried in zip(geotiffs, tagged, strict=True)]
    given = args.geometry or []
    if any(needs) and not given:
        raise SarHeightError("a geocoded GeoTIFF --sar needs --geometry (the SAFE it came from, or 'synthetic')")
    if not any(needs) and given:
        raise SarHeightError("--sar products (and the radar-geometry images of sarheight simulate) bring their own "
                             "geometry: leave --geometry out")
    if len(given) not in (0, 1, sum(needs)):
        raise SarHeightError(f"--geometry is given {len(given)} times for {sum(needs)} geocoded GeoTIFF --sar: give "
                             "one for all of them, or one per geocoded GeoTIFF, in their order")
    priors = prior_points_from_args(args)
    for value in given:
        check_geometry_options(_with_geometry(args, value), product_given=not any(geotiffs))
    if args.truth_vertical_datum is not None and args.truth is None:
        raise SarHeightError("--truth-vertical-datum describes --truth, which is not given: give the fine DEM, or "
                             "leave it out")
    if args.truth is not None and not Path(args.truth).is_file():
        raise SarHeightError(f"--truth {args.truth!r}: no such fine DEM")
    check_spacing_of_file(args.dem, args.spacing)
    stages = Stages(3, args.quiet, "sarheight terrain refine")
    with warnings.catch_warnings():
        # The refinement refuses heights that steep (its check reads every step; opening
        # only samples them): one line, not a warning then the refusal.
        warnings.filterwarnings("ignore", message=r".* of the DEM's cell steps are steeper than 60 degrees")
        checked = checked_dem_from_args(args, args.dem)
    dem = checked.heights
    made = [geometry_from_args(_with_geometry(args, value), dem) for value in given]
    made_for_each = iter(made * sum(needs) if len(made) == 1 else made)
    geometries = [carried if carried is not None else next(made_for_each) if geotiff else
                  RadarGeometry.from_sentinel1(path, args.measurement or "IW/VV", burst=args.burst)
                  for path, geotiff, carried in zip(paths, geotiffs, tagged, strict=True)]
    method, chosen = (args.method, "") if args.method else (
        ("network", "") if args.ckpt else default_method(
            geometries, land_cover=args.land_cover is not None,
            cross_polarised=has_cross_polarisation(paths, None, args.measurement or "IW/VV")))
    if method == "network" and args.method is None:
        from ..extras import require

        require(f"sarheight terrain refine (the network is {chosen})")
    if args.method is None:
        execution.check_method(method, chosen)
    # The truth read once, checked against the DEM before the work, scored after it.
    truth, truth_datum = _open_truth(args, dem) if args.truth is not None else (None, None)
    if truth is not None:
        _check_truth_datum(args.truth, truth, truth_datum, dem)
    source = output_datum(dem)
    datum = args.out_vertical_datum or source
    # The grid the DEM's heights came through takes them back (an exact round trip); another
    # datum asked for is checked before the work (EGM2008 needs its own grid).
    out_grid = args.geoid_grid or (dem.attrs.get("geoid_grid") if datum == source else None)
    out_grid = None if out_grid == "PROJ" else out_grid
    if datum != "ellipsoid":
        output_geoid_source(datum, out_grid)
    stages.done("read the DEM and the geometry")
    refined, scene = refine_dem(checked, paths if len(paths) > 1 else paths[0], args.ckpt, spacing_m=args.spacing,
                                method=method, geometry=geometries if len(paths) > 1 else geometries[0],
                                priors=priors,
                                reading=SarReading(measurement=args.measurement or "IW/VV", quantity=args.sar_quantity,
                                                   db=args.sar_db),
                                coarse_error_m=args.coarse_error, land_cover=args.land_cover,
                                also_invert=args.truth is not None,
                                execution=execution)
    if chosen:
        refined.attrs["method_chosen"] = chosen
    stages.done("refined")
    scores, truth_rmse = _scores_against(args.truth, truth, refined, scene, dem) if truth is not None else (None, None)
    refined = dataset_in_datum(refined, datum, out_grid)
    if truth_rmse is not None:
        refined.attrs.update(truth_rmse_m=round(truth_rmse, 3), truth=Path(args.truth).name)
    if "geoid_grid" in refined.attrs and refined.attrs["geoid_grid"] != "PROJ":
        # The grid by its name: a file's tags do not carry this machine's folders.
        refined.attrs["geoid_grid"] = Path(refined.attrs["geoid_grid"]).name
    with run_outputs(args, masks=False) as (out, _, quicklook_path):
        write_geotiff(refined, out, variables=[name for name in ("height", "height_std", "coarse") if name in refined])
        if quicklook_path is not None:
            refinement_quicklook(refined, scene, quicklook_path, truth=None if truth is None else _truth_on_grid(
                truth, refined, datum, out_grid))
    stages.done("wrote outputs")
    stages.close()
    if not args.quiet:
        attrs = refined.attrs
        rows, cols = refined["height"].shape
        by = ((f"the packaged {attrs.get('packaged_network', 'one_image').replace('_', '-')} network" if not args.ckpt
               else f"{attrs['members']} checkpoint"
               f"{'s' * (attrs['members'] > 1)}") if method == "network" else method)
        if method == "network":
            by += f", its own correction in {100 * attrs['network_share']:.0f} % of the cells"
        if chosen:
            by += f" ({chosen}; --method to choose)"
        if "image_registration_applied" in attrs:
            registration = (f"registered the DEM to the image: moved {attrs['image_registration_shift_east_m']:+.1f} m "
                            f"east, {attrs['image_registration_shift_north_m']:+.1f} m north (+- "
                            f"{attrs['image_registration_error_east_m']:.1f}, "
                            f"{attrs['image_registration_error_north_m']:.1f} m)"
                            if attrs["image_registration_applied"] else
                            # Its reason is the warning's, printed as it happened.
                            "did not register the DEM to the image (the warning above says why)")
            print(f"{registration}; {attrs.get('images', 1)} observation(s) in {attrs.get('image_groups', 1)} group(s)")
        print(f"refined {attrs['coarse_cell_m']:.1f} m cells to {args.spacing:g} m ({rows} x {cols} cells, coarse "
              f"factor {attrs['coarse_factor']:.2f}) by {by}; {attrs['cells_kept_coarse']} cells kept the coarse DEM "
              f"({attrs['cells_outside_image']} outside the image); it moved the coarse DEM by "
              f"{attrs['correction_rms_m']:.1f} m RMS (at most {attrs['correction_max_m']:.1f} m), the image's "
              f"sigma0 {attrs.get('observed_median_db', float('nan')):.1f} dB median, "
              f"{attrs.get('observed_spread_db', float('nan')):.1f} dB spread")
        print(f"heights in {DATUM_WORDS[datum]}"
              + (f" (the geoid's undulation taken off with {refined.attrs['geoid_grid']})" if datum != "ellipsoid"
                 else "")
              + (", as the DEM came" if datum == source else f"; the DEM came in {DATUM_WORDS[source]}")
              + ("" if args.out_vertical_datum else "; --out-vertical-datum to choose"))
        if scores is not None:
            print(scores)
        written = [str(Path(args.out))] + ([str(Path(args.quicklook))] if args.quicklook else [])
        print(f"wrote {' and '.join(written)}")
    return 0


def _scores_against(truth_path: str, truth, refined, scene, dem) -> tuple[str, float]:
    """The lines that score the refined heights against the fine DEM ``truth`` (read from
    ``truth_path`` by :func:`_open_truth`), beside every method that needs no learning
    (:func:`sarheight.refinement.scores_against`), and the refined map's RMSE."""
    from ..refinement import image_registration_moved, scores_against

    try:
        found = scores_against(refined, scene, truth, coarse_dem=dem)
    except InvalidInputError as error:
        raise SarHeightError(f"--truth {truth_path!r}: {error}") from None
    mine, rmse = found["refined"], found["methods"]
    moved = image_registration_moved(scene)
    registration = ("" if moved is None else f"\n  (registered to the image): the coarse DEM as the image's "
                    f"registration moved it, {moved[0]:+.1f} m east, {moved[1]:+.1f} m north, before every method")
    best = min(rmse, key=rmse.get)
    others = "\n".join(f"  {name}: {value:.2f} m" for name, value in sorted(rmse.items(), key=lambda item: -item[1]))
    below = 100 * (1 - mine / rmse[best])
    return (f"RMSE against {Path(truth_path).name} over {found['cells']} cells: {mine:.2f} m by "
            f"{refined.attrs['method']}. Without learning:\n{others}{registration}\nThis map is {abs(below):.1f} % "
            f"{'below' if below >= 0 else 'above'} the best of them ({best})"), mine


def _open_truth(args: argparse.Namespace, dem) -> tuple[Any, str | None]:
    """--truth's heights (ellipsoidal), read in --truth-vertical-datum, else as its CRS
    says, else in the DEM's datum; and the datum said (None: its CRS's)."""
    import rasterio

    from ..dem import output_datum
    from ..dem.crs import vertical_datum_of_crs
    from ..raster import crs_from_user_input

    datum = args.truth_vertical_datum
    if datum is None:
        with rasterio.open(args.truth) as header:
            stated = vertical_datum_of_crs(crs_from_user_input(header.crs)) if header.crs is not None else None
        datum = None if stated is not None else output_datum(dem)
    grid = args.geoid_grid if datum == output_datum(dem) else None
    return open_dem_from_args(argparse.Namespace(**{**vars(args), "vertical_datum": datum, "geoid_grid": grid}),
                              args.truth), datum


def _check_truth_datum(truth_path: str, truth, datum: str | None, dem) -> None:
    """Refuse, before the work, a --truth whose heights lie tens of metres from the coarse
    DEM's on average (read in ``datum``): it is on another vertical datum, or in feet."""
    import numpy as np
    from rasterio.enums import Resampling

    on_coarse = truth.astype(np.float64).rio.write_nodata(np.nan).rio.reproject_match(
        dem, resampling=Resampling.average).values
    valid = np.isfinite(on_coarse) & np.isfinite(dem.values)
    if not valid.any():
        raise SarHeightError(f"--truth {truth_path!r} covers no cell of the DEM: give a fine DEM of the same area")
    difference = float(np.mean(on_coarse[valid] - dem.values[valid]))
    means = float(np.mean(dem.values[valid])), float(np.mean(on_coarse[valid]))
    for ratio, which in ((means[0] / means[1] if means[1] else 0.0, "--dem"),
                         (means[1] / means[0] if means[0] else 0.0, "--truth")):
        if abs(difference) > TRUTH_MEAN_LIMIT_M and abs(ratio - FEET_PER_METRE) < 0.25:
            raise SarHeightError(f"{which}'s heights are {ratio:.2f} times the other's on average: they are in feet; "
                                 f"convert them to metres (multiply by 0.3048, e.g. gdal_calc.py) and run again")
    if abs(difference) > TRUTH_MEAN_LIMIT_M:
        raise SarHeightError(
            f"--truth {truth_path!r} lies {difference:+.1f} m from the DEM on average (its heights read as "
            f"{DATUM_WORDS[datum] if datum else 'its CRS says'}): another vertical datum; say its datum with "
            "--truth-vertical-datum")


def _truth_on_grid(truth, refined, datum: str, out_grid: str | None) -> Any:
    """--truth on the refined grid in the datum written (for the quicklook)."""
    from ..dem import heights_in_datum
    from ..terrain.backprojection import upsample

    on_grid = upsample(truth, refined["height"].rio.write_crs(refined.rio.crs), "bilinear")
    return heights_in_datum(on_grid, datum, out_grid) if datum != "ellipsoid" else on_grid


def _with_geometry(args: argparse.Namespace, value: str) -> argparse.Namespace:
    """``args`` with one ``--geometry`` value: ``synthetic:HEADING`` is a synthetic
    geometry of that heading (degrees), so that two synthetic passes can be given."""
    copy = argparse.Namespace(**vars(args))
    copy.geometry = value
    if value.lower().startswith("synthetic:"):
        try:
            copy.heading = float(value.split(":", 1)[1])
        except ValueError:
            raise SarHeightError(f"--geometry {value!r}: give synthetic:HEADING with a heading in degrees, e.g. "
                                 "synthetic:192") from None
        copy.geometry = "synthetic"
    return copy
