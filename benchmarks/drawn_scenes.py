"""Benchmark of the scenes a training draws fresh (``sarheight.terrain.scene_draws``):
seconds per scene, warm, on each device in one run.

Draws scenes of ``--crop`` cells a side from the packaged Big Tujunga DEM (SRTM, 30 m,
240 x 240) with both passes, coarse factors 3 and 5, 4.4 looks, registered as the scene
files are and not (``SceneProducts(register=False)``), and times
:meth:`SceneDrawer.draw` on the numba kernels (the CPU's cores) and, where torch sees a
GPU (or ``--device`` names one), with the physics on torch there. The first draw of each
device is left out (compilation, the terrain's geometries); each later key is a new scene
(crop, geometry, coarse product, priors, speckle). Writes JSON with the machine and the
load average, and says where a scene's time goes (the share of the simulation and of the
rest of the scene: reconstruction of both passes, priors, registration).

    python benchmarks/drawn_scenes.py --out benchmarks/kernel_door/drawn_scenes_cpu.json [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings

from _common import loadavg, machine, write_json

from sarheight import sample_data
from sarheight.terrain.scene_draws import SceneDrawer
from sarheight.terrain.scene_options import SceneProducts
from sarheight.terrain.scene_sets import SceneAxes

AXES = SceneAxes(coarse_factors=(3, 5))


def devices(asked: list[str] | None) -> list[str | None]:
    """The numba kernels (None), then each device asked, else a CUDA GPU where torch sees one."""
    if asked is not None:
        return [None, *asked]
    try:
        import torch
    except ImportError:
        return [None]
    return [None, "cuda"] if torch.cuda.is_available() else [None]


def time_draws(device: str | None, crop: int, scenes: int, register: bool = True) -> dict:
    """Seconds per scene drawn on ``device`` (warm: the first draw left out), and the
    simulation's share of it; ``register`` False: scenes without the registration (and
    the land-cover estimate it levels the images with)."""
    import sarheight.terrain.simulated as simulated

    drawer = SceneDrawer([sample_data.bigtujunga_dem().assign_attrs(dem_name="bigtujunga")], AXES, crop_cells=crop,
                         device=device, products=SceneProducts(register=register))
    simulating = []
    original = simulated.simulate_observations

    def timed(*args, **options):
        started = time.perf_counter()
        try:
            return original(*args, **options)
        finally:
            simulating.append(time.perf_counter() - started)

    simulated.simulate_observations = timed
    seconds = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a crop's registration the image cannot tell
            for key in range(scenes + 1):
                started = time.perf_counter()
                drawer.draw(key)
                seconds.append(time.perf_counter() - started)
    finally:
        simulated.simulate_observations = original
    warm, warm_simulating = seconds[1:], simulating[1:]
    return {"device": device or "numba (CPU threads)", "registered": register, "crop_cells": crop, "scenes": scenes,
            "seconds_per_scene_median": statistics.median(warm), "seconds_per_scene": warm,
            "simulation_share": sum(warm_simulating) / sum(warm), "first_draw_seconds": seconds[0],
            "profile": profile(drawer, range(scenes + 1, scenes + 5))}


#: The parts of a scene a profile tells apart (function names of sarheight).
PARTS = {"simulation": "simulate_observations", "land-cover estimate": "estimate_land_cover",
         "brightness features": "brightness_features", "back-projection": "back_project",
         "registration": "register_to_images", "reconstructions": "reconstruct"}


def profile(drawer: SceneDrawer, keys: range) -> dict:
    """Seconds a scene (cumulative, under ``cProfile``, which slows Python a little) of
    each part of :data:`PARTS`, over the scenes of ``keys``."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        profiler.enable()
        for key in keys:
            drawer.draw(key)
        profiler.disable()
    stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = {"scene": "draw", **PARTS}
    parts = {}
    for part, function in total.items():
        found = [entry[3] for (path, _, name), entry in stats.items() if name == function and "sarheight" in path]
        parts[part] = max(found, default=0.0) / len(keys)
    return {"scenes": len(keys), "seconds_per_scene": parts}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/drawn_scenes.json")
    parser.add_argument("--crop", type=int, default=128)
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--device", action="append", default=None, help="also draw with the physics on this "
                        "device (cuda, cuda:N); default: cuda where torch sees a GPU")
    args = parser.parse_args(argv)
    load_start = loadavg()
    rows = []
    for device, register in [(device, register) for device in devices(args.device) for register in (True, False)]:
        row = time_draws(device, args.crop, args.scenes, register)
        rows.append(row)
        print(f"{row['device']}{'' if register else ', not registered'}: {row['seconds_per_scene_median']:.3f} s "
              f"a scene of {args.crop}^2 cells "
              f"(simulation {row['simulation_share']:.0%} of it; first draw {row['first_draw_seconds']:.1f} s)",
              flush=True)
        print("  profile, s a scene: " + ", ".join(f"{part} {value:.3f}"
                                                   for part, value in row["profile"]["seconds_per_scene"].items()))
    write_json({"benchmark": "drawn_scenes", "dem": "Big Tujunga SRTM 30 m (packaged)", "axes": "both passes, "
                "coarse factors 3 and 5, 4.4 looks, 0.1 % exact priors, registered", "machine": machine(),
                "loadavg_start": load_start, "loadavg_end": loadavg(), "results": rows}, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
