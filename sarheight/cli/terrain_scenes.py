"""``sarheight terrain scenes``: simulate the terrain scenes a height model trains on."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ..errors import SarHeightError
from .options import add_dem_options, add_quiet

HELP = "simulate terrain scenes (one NetCDF file per DEM and geometry) from DEMs"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dem", action="append", required=True, metavar="DEM",
                        help="a DEM raster (repeat for several); its file name names its scenes")
    parser.add_argument("--out", required=True, help="folder of the scene files (made if missing; files that "
                        "exist are kept, so a run resumes)")
    group = parser.add_argument_group("acquisition geometry")
    group.add_argument("--geometry", action="append", default=None, metavar="SAFE|synthetic",
                       help="'synthetic' (default): Sentinel-1-like geometries centred on each DEM, one per "
                       "--pass; or Sentinel-1 products (repeat: an ascending and a descending one make pairs) "
                       "whose geometry covers every DEM")
    group.add_argument("--measurement", default="IW/VV", help="swath/polarisation of the products (default IW/VV)")
    group.add_argument("--pass", dest="passes", action="append", choices=("ascending", "descending"), default=None,
                       help="synthetic: the passes (default both; each scene also holds the other pass)")
    group.add_argument("--look-side", dest="look_sides", action="append", choices=("right", "left"), default=None,
                       help="synthetic: look sides (default right; add left to augment)")
    group.add_argument("--heading-offset", dest="heading_offsets", action="append", type=float, default=None,
                       metavar="DEG", help="synthetic: offsets added to the pass headings (default 0; repeat to "
                       "augment)")
    group.add_argument("--incidence-near", type=float, default=30.0, help="synthetic: near incidence, deg (30)")
    group.add_argument("--incidence-far", type=float, default=46.0, help="synthetic: far incidence, deg (46)")
    scene = parser.add_argument_group("scene")
    scene.add_argument("--coarse-factor", dest="coarse_factors", action="append", type=int, default=None,
                       help="how much coarser the DEM of the reconstruction is (default 3; repeat for several)")
    scene.add_argument("--prior-fraction", type=float, default=1e-3,
                       help="share of the cells with a known height (default 0.001)")
    scene.add_argument("--prior-count", type=int, default=None, help="number of known heights (instead of "
                       "--prior-fraction)")
    scene.add_argument("--prior-pattern", dest="prior_patterns", action="append",
                       choices=("random", "tracks", "clusters"), default=None,
                       help="how the known heights lie (default random; repeat for several)")
    scene.add_argument("--prior-noise", type=float, default=0.0, help="error of the known heights, m (0)")
    scene.add_argument("--looks", action="append", type=float, default=None,
                       help="equivalent number of looks of the speckle: 4.4 a date (default), 44 a composite of ten "
                       "dates (repeat for several)")
    scene.add_argument("--law", dest="laws", action="append", choices=("empirical", "lambert"), default=None,
                       help="the ground's sigma0 law of the local incidence: empirical (default, the law the "
                       "reconstruction models) or lambert (another surface); repeat for several")
    scene.add_argument("--land-cover", dest="land_cover_db", action="append", type=float, default=None,
                       metavar="DB", help="contrast of the land cover's sigma0 patches, dB (default 3; 0 for none; "
                       "repeat for several)")
    realistic = parser.add_argument_group(
        "realistic inputs", "draw per scene what real data carry (each from a seed of its own scene), as the "
        "refinement study's scenes are drawn: train on these, or a model learns to invert an ideal coarse DEM")
    realistic.add_argument("--coarse-family", dest="coarse_families", action="append",
                           choices=("ideal", "training", "test"), default=None,
                           help="the coarse DEM: ideal (default, the block mean on an aligned grid), or a product "
                           "with errors drawn from a family of sarheight.coarse_dem (correlated and "
                           "slope-dependent error, geolocation shift, a grid not aligned); repeat for several")
    realistic.add_argument("--prior-kind", dest="prior_kinds", action="append",
                           choices=("altimeter", "lidar", "gnss", "exact"), default=None,
                           help="the instrument of the known heights, its pattern and its error "
                           "(sarheight.priors.PRIOR_KINDS), instead of --prior-pattern; repeat for several")
    realistic.add_argument("--ground-family", dest="ground_families", action="append",
                           choices=("training", "test-family", "outside", "empirical", "lambert", "gamma0"),
                           default=None, help="the ground: land cover following the terrain with a sigma0 law "
                           "per class drawn from a family of sarheight.ground, instead of --law and --land-cover; "
                           "repeat for several")
    scene.add_argument("--dates", action="append", type=int, default=None, metavar="N",
                       help="stacks: N dates per pass, each its own speckle, moisture and (a fifth of them) wet snow; "
                       "the scenes' SAR is the composite of the dates that agree, and each date is kept "
                       "(sar_dates) for a network over the stack (default 1; repeat for several)")
    scene.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="make the scenes on a dask.distributed cluster: a scheduler address (tcp://HOST:PORT), or "
                       "'local' for a LocalCluster of one process per core on this machine (default: one after the "
                       "other here)")
    scene.add_argument("--opposite-pass", choices=("yes", "no", "both"), default="yes",
                       help="whether each scene also observes the opposite pass (yes, the default), its own pass "
                       "alone (no: files named _onepass), or both kinds of scene")
    scene.add_argument("--inversion", action="store_true",
                       help="also refine each scene by inverting the simulator against all its observations "
                       "(the variable 'inverted')")
    scene.add_argument("--sample", type=int, default=None, metavar="N",
                       help="draw N scenes per DEM at random from all the combinations of the options above "
                       "instead of making every one")
    terrain = parser.add_argument_group(
        "more terrain", "new terrain from each DEM, turned, mirrored or scaled on the ground (slopes kept), each "
        "under geometries of its own: the physics of other terrain, not an image turned")
    terrain.add_argument("--crop", type=int, default=None, metavar="CELLS",
                         help="each scene a window of CELLS x CELLS of its terrain, drawn per scene (the draw of the "
                         "most land); default the whole DEM")
    terrain.add_argument("--orientations", action="store_true",
                         help="every orientation of each DEM's terrain: four quarter turns, each mirrored or not")
    terrain.add_argument("--terrain-scale", dest="terrain_scales", action="append", type=float, default=None,
                         metavar="S", help="the terrain scaled by S (0.5-2: its cells and its relief); repeat for "
                         "several (default 1)")
    scene.add_argument("--nesz", type=float, default=-22.0, help="noise-equivalent sigma0, dB (-22)")
    scene.add_argument("--seeds", type=int, default=1, help="scenes per geometry with other texture, speckle "
                       "and prior draws (default 1)")
    add_dem_options(parser)
    add_quiet(parser)
    parser.set_defaults(out_is_folder=True)


def run(args: argparse.Namespace) -> int:
    from ..geometry import RadarGeometry
    from ..terrain.augment import ORIENTATIONS, TerrainTransform
    from ..terrain.scene_options import SceneProducts
    from ..terrain.scene_sets import SceneAxes, simulate_scenes
    from .options import checked_dem_from_args, drawn_priors_from_args

    if args.seeds < 1:
        raise SarHeightError(f"--seeds must be at least 1, got {args.seeds}")
    geometries = None
    given = args.geometry or ["synthetic"]
    if any(g.lower() == "synthetic" for g in given):
        if len(given) > 1:
            raise SarHeightError("--geometry synthetic stands alone: give it once, or give products only")
    else:
        synthetic_options = [option for option, value in (("--pass", args.passes), ("--look-side", args.look_sides),
                                                          ("--heading-offset", args.heading_offsets)) if value]
        if synthetic_options:
            raise SarHeightError(f"{', '.join(synthetic_options)} shape synthetic geometries: the products' "
                                 "geometries are their own; leave them out")
        for path in given:
            if not Path(path).exists():
                raise SarHeightError(f"--geometry {path!r}: no such Sentinel-1 product; give a .SAFE directory, its "
                                     "manifest.safe or a .zip, or 'synthetic'")
        geometries = [RadarGeometry.from_sentinel1(path, args.measurement) for path in given]
    orientations = ORIENTATIONS if args.orientations else (TerrainTransform(),)
    terrain_transforms = [dataclasses.replace(orientation, scale=scale)
                          for scale in dict.fromkeys(args.terrain_scales or (1.0,)) for orientation in orientations]
    axes = SceneAxes(
        passes=tuple(dict.fromkeys(args.passes or ("ascending", "descending"))),
        look_sides=tuple(dict.fromkeys(args.look_sides or ("right",))),
        heading_offsets_deg=tuple(dict.fromkeys(args.heading_offsets or (0.0,))),
        incidence_deg=(args.incidence_near, args.incidence_far),
        coarse_factors=tuple(dict.fromkeys(args.coarse_factors or (3,))),
        priors=drawn_priors_from_args(args),
        seeds=tuple(range(args.seeds)),
        looks=tuple(dict.fromkeys(args.looks or (4.4,))),
        laws=tuple(dict.fromkeys(args.laws or ("empirical",))),
        land_cover_db=tuple(dict.fromkeys(args.land_cover_db or (3.0,))),
        coarse_families=tuple(dict.fromkeys(args.coarse_families or ("ideal",))),
        ground_families=tuple(dict.fromkeys(args.ground_families or (None,))),
        dates=tuple(dict.fromkeys(args.dates or (1,))),
        opposite_passes={"yes": (True,), "no": (False,), "both": (True, False)}[args.opposite_pass],
        terrain_transforms=terrain_transforms,
        nesz_db=args.nesz,
    )
    dems = []
    for path in args.dem:
        # Checked once: the scene set takes each Dem as checked (its name an attribute).
        dem = checked_dem_from_args(args, path)
        dem.heights.attrs["dem_name"] = Path(path).stem
        dems.append(dem)
    paths = simulate_scenes(dems, args.out, axes=axes, geometries=geometries, crop_cells=args.crop,
                            sample=args.sample, products=SceneProducts(inversion=args.inversion),
                            client=args.scheduler, progress=not args.quiet)
    if not args.quiet:
        print(f"{len(paths)} scene files in {args.out}")
    return 0
