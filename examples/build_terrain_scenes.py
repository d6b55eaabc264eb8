"""Build terrain-height scene sets from real DEMs.

Two sets, from the real DEMs of the shared reference data (SRTM, Copernicus, OGGM, BC TRIM
and ISCE3 rasters; heights on a geoid are brought to the ellipsoid with its EGM96 grid) and
matplotlib's Jacksboro fault DEM:

``--task refine`` (default): the refinement study's scenes, in three folders of ``--out``,
made as real data would be, not as the simulator would like them:

- the coarse DEM is a realistic product (:mod:`sarheight.coarse_dem`): correlated error
  of a few metres, error growing with slope, a geolocation shift of up to tens of
  metres, a grid not aligned with the fine one, heights rounded as int16 products are;
- the priors carry their instrument's error (:data:`sarheight.priors.PRIOR_KINDS`:
  ICESat-2-like altimeter tracks, GEDI-like wide-footprint lidar, GNSS campaigns);
- the ground's sigma0 follows land cover that follows the terrain (rock, soil,
  vegetation, snow by height, slope and aspect), each class with its own law drawn from
  a family (:data:`sarheight.ground.GROUND_FAMILIES`), and every scene has its own land
  cover.

``train/``: per training DEM, ``--sample`` scenes drawn at random from every combination
of pass (ascending, descending), look side (right, left), heading (the pass's, and 10
degrees either way), coarse factor (2, 3, 5, 10), prior kind (altimeter, lidar, GNSS) and
looks (4.4: one date; 44: a composite of ten), the coarse DEM's errors from the
"training" family and the ground from the "training" family; and the validation DEMs
(South Glacier, 20 m, and Jacksboro: logged, and the networks' calibration).

``test/``: eight terrains never trained or validated on. Four DEMs of four cell sizes:
Big Tujunga (SRTM, 30 m), Chhota Shigri (94 m), Okanagan (BC TRIM, 50 m) and
Semisopochnoi (Copernicus, 1 arc-second: 19 x 31 m; the last two outside the training
mountains' 66-100 m). And the eastern 256 columns of four training DEMs (Boulder,
eastern Turkey, Mont Ventoux, White Mountains; named ``<dem>-east``), which training never
reads: it keeps their western part less a gap of 16 columns. Coarse factors 3 and 5,
one date, every prior kind, the coarse DEM's errors from the "test" family (wider ranges
than training's: values and combinations training never saw), and two grounds: new draws
of the training family ("test-family") and laws of a form the training family does not
contain ("outside"); an ascending pass with the descending one beside it.

Every task but the ablation holds out the same eight terrains.

``--task stack``: the scenes of the network on top of the physics
(``sarheight/configs/terrain_stack.yaml``), every scene built with the inversion of its
images (its settings those the inversion study chose on the validation DEMs,
``--inversion-settings``) and each date of a stack kept:

- ``train/``: every training DEM as it is and turned, mirrored (the eight orientations
  of :data:`sarheight.terrain.augment.ORIENTATIONS`) and scaled (0.7x, 1.4x), each scene a
  crop of ``--crop`` cells drawn from its terrain, ``--stack-sample`` scenes per DEM and
  transform drawn from every combination of pass, look side, heading, coarse factor (2, 3,
  5), prior kind, one date or ten, and the opposite pass or not; coarse DEMs and grounds of
  the "training" families. The validation DEMs as they are, ``--validation-sample``
  scenes each.
- ``train_noimage/`` and ``test_noimage/<condition>/``: the twins of ``train/`` and
  ``test/`` for the control without any image: the same scenes (the same names, so the
  same draws) made without registering the coarse DEM to the image, without the inversion.
- ``validation/<condition>/`` and ``test/<condition>/``: the validation DEMs (where
  the fair bar of each condition is chosen) and the eight held-out terrains under each condition of
  :data:`STACK_CONDITIONS`
  (one image; one pass x 10 dates; both passes x 1 and x 10 dates, each on the "outside"
  ground and the "test" coarse product; and the plain ground: one image, one law, no land
  cover, the exact block mean), coarse factors 3 and 5, every prior kind (tracks' headings
  drawn per scene; ``--condition-priors one``: one kind a scene, turning with the terrain
  and the condition), a crop of the most land of ``--crop-test`` cells, the coarse DEM's
  error kept taken apart (where a method's error comes from).

``--task ablation``: the seed paper's ablation set (``sarheight terrain ablate``): the
six DEMs of the first study and Jacksboro, both passes, random and track priors, one
folder.

The sea (cells at exactly 0 m on Columbia, Pico and Semisopochnoi) is left out of every
scene's truth: a flat sea is neither learned from nor scored.

    python examples/build_terrain_scenes.py --data ../shared/data --out refine_scenes
    python examples/build_terrain_scenes.py --task ablation --data ../shared/data --out scenes
    python examples/build_terrain_scenes.py --task stack --data ../shared/data --out stack_scenes

Augment with more geometries, not by flipping images: a flip changes the look direction,
and with it which slopes are in layover.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from sarheight.dem import open_dem
from sarheight.distributed import local_client
from sarheight.errors import SarHeightError
from sarheight.priors import PriorSpec
from sarheight.sample_data import jacksboro_dem
from sarheight.terrain.augment import ORIENTATIONS, TerrainTransform
from sarheight.terrain.inversion import InversionSettings
from sarheight.terrain.scene_options import SceneProducts
from sarheight.terrain.scene_sets import SceneAxes, simulate_scenes

#: The DEMs of ../shared/data/dem: the datum of their heights (None: their CRS says it)
#: and whether they hold sea at 0 m.
DEMS = {
    "bigtujunga_srtm30_utm11": ("egm96", False),
    "boulder_indian_peaks_srtm3": (None, False),
    "chhota_shigri_94m": ("egm96", False),
    "clear_lake_ca_ellipsoid100m": ("ellipsoid", False),
    "columbia_100m": ("egm96", True),
    "eastern_turkey_srtm3": ("egm96", False),
    "mont_ventoux_srtm3": (None, False),
    "okanagan_oliver_trim50m": ("egm96", False),
    "pico_faial_azores_srtm3": (None, True),
    "rome_cop30_egm96": (None, False),
    "semisopochnoi_cop30": ("egm2008", True),
    "south_glacier_20m": ("egm96", False),
    "white_mountains_nh_srtm3": (None, False),
}

#: The roles of the DEMs in the refinement study.
TEST_DEMS = ("bigtujunga_srtm30_utm11", "chhota_shigri_94m", "okanagan_oliver_trim50m", "semisopochnoi_cop30")
VALIDATION_DEMS = ("south_glacier_20m", "jacksboro")
TRAINING_DEMS = tuple(name for name in DEMS if name not in TEST_DEMS + VALIDATION_DEMS)

#: Training DEMs large enough to give a held-out area of their own: their eastern
#: :data:`HELD_OUT_COLUMNS` columns are held out, training keeps the rest less a gap of
#: :data:`HELD_OUT_GAP` columns (wider than a coarse cell of the largest factor, so that no
#: coarse cell, crop or terrain transform reaches across). With the four test DEMs, eight
#: terrains held out, so that a paired test over them can reach p < 0.01, and no DEM
#: taken whole from training.
HELD_OUT_STRIPS = ("boulder_indian_peaks_srtm3", "eastern_turkey_srtm3", "mont_ventoux_srtm3",
                   "white_mountains_nh_srtm3")
HELD_OUT_COLUMNS = 256
HELD_OUT_GAP = 16

#: The DEMs of the seed paper's ablation.
#: The priors of the refinement study's scenes: 0.1 % of the cells, as each instrument
#: measures them (its pattern, and errors drawn per scene from its ranges).
INSTRUMENT_PRIORS = tuple(PriorSpec(fraction=1e-3, kind=kind) for kind in ("altimeter", "lidar", "gnss"))


ABLATION_DEMS = ("bigtujunga_srtm30_utm11", "chhota_shigri_94m", "columbia_100m", "eastern_turkey_srtm3",
                 "rome_cop30_egm96", "south_glacier_20m", "jacksboro")


#: The held-out conditions of the stack set: the axes of the set (SceneAxes) that make each.
STACK_CONDITIONS = {
    "one_image": {"opposite_passes": (False,), "dates": (1,), "ground_families": ("outside",),
                  "coarse_families": ("test",)},
    "one_pass_10_dates": {"opposite_passes": (False,), "dates": (10,), "ground_families": ("outside",),
                          "coarse_families": ("test",)},
    "both_passes": {"opposite_passes": (True,), "dates": (1,), "ground_families": ("outside",),
                    "coarse_families": ("test",)},
    "both_passes_10_dates": {"opposite_passes": (True,), "dates": (10,), "ground_families": ("outside",),
                             "coarse_families": ("test",)},
    "plain": {"opposite_passes": (False,), "dates": (1,), "laws": ("empirical",), "land_cover_db": (0.0,),
              "coarse_families": ("ideal",)},
}

#: The terrain transforms of the stack set's training DEMs: the eight orientations, and
#: the terrain scaled.
STACK_TRANSFORMS = (*ORIENTATIONS, TerrainTransform(scale=0.7), TerrainTransform(scale=1.4))


def fail(message: str) -> None:
    """End the run with one line of what was wrong and what to do, exit status 2."""
    print(f"build_terrain_scenes: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def open_dems(data: Path, names: tuple[str, ...]) -> tuple[list, dict]:
    """The DEMs ``names`` (ellipsoidal heights, named), and the sea of those that have one."""
    geoid = data / "geoid" / "egm96_15.gtx"
    dems, sea = [], {}
    for name in names:
        if name == "jacksboro":
            dem = jacksboro_dem()
        else:
            path = data / "dem" / f"{name}.tif"
            if not path.exists():
                print(f"skipping {path}: absent")
                continue
            datum, has_sea = DEMS[name]
            try:
                dem = open_dem(path, vertical_datum=datum, geoid_grid=geoid)
            except SarHeightError as error:
                fail(f"{path}: {error}")
            if has_sea:
                with rasterio.open(path) as source:
                    sea[name] = source.read(1) == 0
        dem.attrs["dem_name"] = name
        dems.append(dem)
    return dems, sea


def split_off_held_out(dems: list, sea: dict) -> tuple[list, dict, list, dict]:
    """The DEMs training keeps (those of :data:`HELD_OUT_STRIPS` without their eastern
    strip and the gap) and the held-out strips, each named ``<dem>-east``; their sea
    masks cut alike."""
    cut = HELD_OUT_COLUMNS + HELD_OUT_GAP
    kept, kept_sea, held, held_sea = [], {}, [], {}
    for dem in dems:
        name = dem.attrs["dem_name"]
        if name not in HELD_OUT_STRIPS:
            kept.append(dem)
            if name in sea:
                kept_sea[name] = sea[name]
            continue
        if dem.sizes["x"] < 2 * cut:
            fail(f"{name}: {dem.sizes['x']} columns, too few to hold out {HELD_OUT_COLUMNS} and train on as many")
        west = dem.isel(x=slice(None, -cut)).copy()
        east = dem.isel(x=slice(-HELD_OUT_COLUMNS, None)).copy()
        east.attrs["dem_name"] = f"{name}-east"
        kept.append(west)
        held.append(east)
        if name in sea:
            kept_sea[name] = sea[name][:, :-cut]
            held_sea[f"{name}-east"] = sea[name][:, -HELD_OUT_COLUMNS:]
    return kept, kept_sea, held, held_sea


def training_dems(data: Path) -> tuple[list, dict]:
    """The training DEMs, less their held-out strips (:func:`split_off_held_out`)."""
    kept, kept_sea, _, _ = split_off_held_out(*open_dems(data, TRAINING_DEMS))
    return kept, kept_sea


def held_out_dems(data: Path) -> tuple[list, dict]:
    """The held-out terrains: the test DEMs whole and the training DEMs' eastern strips."""
    dems, sea = open_dems(data, TEST_DEMS)
    _, _, strips, strips_sea = split_off_held_out(*open_dems(data, HELD_OUT_STRIPS))
    return dems + strips, {**sea, **strips_sea}


def build_refinement(data: Path, out: Path, sample: int, validation_sample: int) -> None:
    dems, sea = training_dems(data)
    axes = SceneAxes(passes=("ascending", "descending"), look_sides=("right", "left"),
                     heading_offsets_deg=(-10.0, 0.0, 10.0), coarse_factors=(2, 3, 5, 10),
                     coarse_families=("training",), priors=INSTRUMENT_PRIORS, looks=(4.4, 44.0),
                     ground_families=("training",))
    paths = simulate_scenes(dems, out / "train", axes=axes, sample=sample, unscored=sea)
    dems, sea = open_dems(data, VALIDATION_DEMS)
    paths += simulate_scenes(dems, out / "train", axes=axes, sample=validation_sample, unscored=sea)
    print(f"{len(paths)} training and validation scenes in {out / 'train'}")
    dems, sea = held_out_dems(data)
    test_axes = SceneAxes(passes=("ascending",), coarse_factors=(3, 5), coarse_families=("test",),
                          priors=INSTRUMENT_PRIORS, looks=(4.4,), ground_families=("test-family", "outside"))
    paths = simulate_scenes(dems, out / "test", axes=test_axes, unscored=sea)
    print(f"{len(paths)} test scenes in {out / 'test'}")


def inversion_settings(path: Path | None) -> InversionSettings:
    """The inversion's settings of a study's ``settings.json`` (the inversion study's,
    chosen on the validation DEMs), else the defaults."""
    if path is None or not path.is_file():
        print("inversion settings: the defaults (no settings file)")
        return InversionSettings()
    try:
        return InversionSettings(**json.loads(path.read_text())["settings"])
    except (KeyError, TypeError, ValueError) as error:
        fail(f"--inversion-settings {path}: not a study's settings file ({error})")
        raise


def projected_with_sea(dems: list, sea: dict) -> tuple[list, dict]:
    """The DEMs that hold sea on a geographic grid put on their UTM grid, their sea with
    them (nearest cell), as a terrain transform needs them
    (:func:`sarheight.terrain.augment.terrain_on_a_projected_grid`); the others as they are."""
    from rasterio.enums import Resampling

    from sarheight.terrain.augment import terrain_on_a_projected_grid

    out_dems, out_sea = [], dict(sea)
    for dem in dems:
        name = dem.attrs["dem_name"]
        if name in sea and not dem.rio.crs.is_projected:
            projected = terrain_on_a_projected_grid(dem)
            mask = dem.copy(data=np.asarray(sea[name], dtype=np.float32)).rio.write_nodata(np.nan)
            out_sea[name] = mask.rio.reproject_match(projected, resampling=Resampling.nearest).values > 0.5
            dem = projected
        out_dems.append(dem)
    return out_dems, out_sea


#: The parts of the stack set, as --sets names them.
STACK_SETS = ("train", "validation", "test")


def build_stack(data: Path, out: Path, sample: int, validation_sample: int, crop: int, crop_test: int,
                settings: InversionSettings, client: Any = None, sets: tuple[str, ...] = STACK_SETS,
                condition_priors: str = "every", cross_polarised: bool = False) -> None:
    common = {"products": SceneProducts(inversion=True, inversion_settings=settings), "client": client}
    axes = SceneAxes(passes=("ascending", "descending"), look_sides=("right", "left"),
                     heading_offsets_deg=(-10.0, 0.0, 10.0), coarse_factors=(2, 3, 5),
                     coarse_families=("training",), ground_families=("training",), dates=(1, 10),
                     opposite_passes=(True, False), priors=INSTRUMENT_PRIORS, cross_polarised=cross_polarised)
    # Each set twice: as the stack network reads it, and its twin without any image for the
    # control (the same names, so the same draws; no product moved by the image's
    # registration, no inversion, no dates kept).
    twin = {**common, "products": SceneProducts(inversion=False, register=False, keep_dates=False)}
    for folder, options in (("train", common), ("train_noimage", twin)) if "train" in sets else ():
        dems, sea = projected_with_sea(*training_dems(data))
        paths = simulate_scenes(dems, out / folder, axes=dataclasses.replace(axes, terrain_transforms=STACK_TRANSFORMS),
                                sample=sample, unscored=sea, crop_cells=crop, **options)
        dems, sea = open_dems(data, VALIDATION_DEMS)
        paths += simulate_scenes(dems, out / folder, axes=axes, sample=validation_sample, unscored=sea,
                                 crop_cells=crop, **options)
        print(f"{len(paths)} training and validation scenes in {out / folder}")
    # The conditions on the validation DEMs (the fair bar of each is chosen there) and on
    # the held-out ones.
    for role, options in (("validation", common), ("test", common), ("test_noimage", twin)):
        if role.removesuffix("_noimage") not in sets:
            continue
        dems, sea = open_dems(data, VALIDATION_DEMS) if role == "validation" else held_out_dems(data)
        for condition_index, (condition, condition_axes) in enumerate(STACK_CONDITIONS.items()):
            # Held-out scenes keep the coarse DEM's error taken apart, to tell where it goes.
            products = dataclasses.replace(options["products"], error_sources=True)
            per_call = [(dems, INSTRUMENT_PRIORS)]
            if condition_priors == "one":
                per_call = [([dem], (INSTRUMENT_PRIORS[kind_of_condition_scene(index, condition_index)],))
                            for index, dem in enumerate(dems)]
            paths = []
            for call_dems, priors in per_call:
                names = {dem.attrs["dem_name"] for dem in call_dems}
                condition_set = SceneAxes(passes=("ascending",), coarse_factors=(3, 5), priors=priors,
                                          cross_polarised=cross_polarised, **condition_axes)
                paths += simulate_scenes(call_dems, out / role / condition, axes=condition_set,
                                         unscored={name: cells for name, cells in sea.items() if name in names},
                                         crop_cells=crop_test, **{**options, "products": products})
            print(f"{len(paths)} {role} scenes in {out / role / condition}")


def kind_of_condition_scene(terrain_index: int, condition_index: int) -> int:
    """The prior kind (an index into :data:`INSTRUMENT_PRIORS`) of a validation or
    held-out terrain's scenes under one condition when each scene draws one kind: it turns
    with the terrain and the condition, so that every terrain meets every kind over the
    conditions and, with three terrains or more, every condition every kind."""
    return (terrain_index + condition_index) % len(INSTRUMENT_PRIORS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("refine", "stack", "ablation"), default="refine",
                        help="the refinement study's sets (default), the stack network's, or the seed paper's "
                        "ablation set")
    parser.add_argument("--data", default="../shared/data", help="the reference data folder (dem/, geoid/)")
    parser.add_argument("--out", default="scenes", help="folder of the scene files")
    parser.add_argument("--sample", type=int, default=16, help="refine: training scenes per training DEM (16)")
    parser.add_argument("--validation-sample", type=int, default=4,
                        help="refine: scenes per validation DEM (4)")
    parser.add_argument("--stack-sample", type=int, default=2,
                        help="stack: training scenes per training DEM and terrain transform (2)")
    parser.add_argument("--crop", type=int, default=192, help="stack: cells a side of a training scene (192)")
    parser.add_argument("--crop-test", type=int, default=256, help="stack: cells a side of a held-out scene (256)")
    parser.add_argument("--inversion-settings", type=Path, default=Path("benchmarks/terrain_inversion/settings.json"),
                        help="stack: the inversion's settings (the inversion study's settings.json; default "
                        "benchmarks/terrain_inversion/settings.json, the defaults where it is absent)")
    parser.add_argument("--sets", nargs="+", choices=STACK_SETS, default=list(STACK_SETS),
                        help="stack: the parts to build (default all; train: with its image-free twins; test: with "
                        "its twins)")
    parser.add_argument("--condition-priors", choices=("every", "one"), default="every",
                        help="stack: the prior kinds of the validation and held-out scenes of each condition: every "
                        "kind, one scene each (every, the default), or one kind a scene, turning with the terrain and "
                        "the condition (one: a third of the scenes)")
    parser.add_argument("--cross-polarised", action="store_true",
                        help="stack: simulate every image in both polarisations (VH beside VV, as a dual-polarisation "
                        "Sentinel-1 product), so that each scene's inversion reads the land cover's VH/VV ratio")
    parser.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="stack: make the scenes on a dask.distributed cluster ('local': one process per core "
                        "here; or tcp://HOST:PORT); default one after the other")
    parser.add_argument("--seeds", type=int, default=2, help="ablation: scenes per geometry and pattern")
    parser.add_argument("--coarse-factor", type=int, action="append", default=None,
                        help="ablation: coarse DEM factors (default 3; repeat for several)")
    args = parser.parse_args()
    data, out = Path(args.data), Path(args.out)
    # Every refusal one line and exit 2, before any scene is made.
    if not (data / "dem").is_dir():
        fail(f"--data {args.data}: no dem/ folder there; give the reference data folder (with dem/ and "
                     "geoid/)")
    if not (data / "geoid" / "egm96_15.gtx").is_file():
        fail(f"--data {args.data}: no geoid/egm96_15.gtx there, which the DEMs on the geoid need")
    for option, value, least in (("--sample", args.sample, 1), ("--validation-sample", args.validation_sample, 0),
                                 ("--seeds", args.seeds, 1), ("--stack-sample", args.stack_sample, 1),
                                 ("--crop", args.crop, 16), ("--crop-test", args.crop_test, 16)):
        if value < least:
            fail(f"{option} {value}: give {least} or more")
    if out.exists() and not out.is_dir():
        fail(f"--out {args.out} is a file: give a folder")
    if args.task == "refine":
        build_refinement(data, out, args.sample, args.validation_sample)
        return
    if args.task == "stack":
        with contextlib.ExitStack() as opened:
            # One cluster for the run's many calls (a call a terrain and condition with
            # --condition-priors one): each cluster takes seconds to start.
            client = (opened.enter_context(local_client(process_per_core=True)) if args.scheduler == "local"
                      else args.scheduler)
            build_stack(data, out, args.stack_sample, args.validation_sample, args.crop, args.crop_test,
                        inversion_settings(args.inversion_settings), client, tuple(args.sets),
                        args.condition_priors, args.cross_polarised)
        return
    dems, sea = open_dems(data, ABLATION_DEMS)
    axes = SceneAxes(coarse_factors=tuple(args.coarse_factor or (3,)),
                     priors=(PriorSpec(fraction=1e-3), PriorSpec(fraction=1e-3, pattern="tracks")),
                     seeds=tuple(range(args.seeds)))
    paths = simulate_scenes(dems, out, axes=axes, unscored=sea)
    print(f"{len(paths)} scenes in {out}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
