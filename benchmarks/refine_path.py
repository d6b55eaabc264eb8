"""The ``sarheight terrain refine`` path on a grid of a million cells: how long each method
takes, and how many times the path opens and checks the DEM, resamples it, differentiates
heights and fits the sigma0 law.

    python benchmarks/refine_path.py --out benchmarks/terrain_refinement/refine_path.json

The fine DEM is synthetic mountains (1000 x 1000 cells of 90 m, the benchmark's scenes);
the user's coarse DEM its 3x block mean; the observation its simulated sigma0, geocoded
(``sarheight simulate``). ``sarheight terrain refine`` refines the coarse DEM back onto the
fine grid (one million cells) with each method, as a user runs it: every run a process of
its own, timed from start to exit after a warm-up run (the kernels' cache). The counts
come from one more run of each method in this process under ``cProfile`` (calls of the
functions that open, validate, resample and differentiate the DEM and fit the law).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sarheight
from sarheight.terrain.method_table import COMMAND_METHODS

ROOT = Path(__file__).resolve().parents[1]
GEOMETRY = ["--geometry", "synthetic", "--line-spacing", "60", "--sample-spacing", "45"]
METHODS = COMMAND_METHODS

#: The work the path should do once per array, by the functions that do it in this version
#: and in earlier ones (file suffix, function name; the first that is called counts).
COUNTED = {
    "DEM opened (checked_dem, open_dem)": [("dem/opening.py", "checked_dem"), ("dem/opening.py", "open_dem"),
                                           ("dem.py", "open_dem")],
    "DEM heights validated": [("dem/opening.py", "validated_heights"), ("dem.py", "_validated_heights")],
    "DEM resampled to the grid (upsample)": [("terrain/backprojection.py", "upsample"),
                                             ("backprojection.py", "upsample")],
    "DEM back-projected": [("terrain/backprojection.py", "back_project"), ("backprojection.py", "back_project")],
    "height gradients": [("sarheight/raster.py", "gradient"), ("_function_base_impl.py", "gradient")],
    "sigma0 law fitted": [("ground/fitted.py", "fit_sigma0_law"), ("ground.py", "fit_sigma0_law")],
    "scene variables read (scene_variable)": [("terrain/variables.py", "scene_variable"),
                                              ("terrain.py", "scene_variable")],
    "reconstructions": [("sarheight/reconstruction.py", "reconstruct"), ("layover.py", "reconstruct")],
}


def _command(*args: str) -> float:
    """Seconds one ``sarheight`` command takes, in a process of its own."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sarheight", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def _counts(arguments: list[str]) -> dict[str, int]:
    """The calls of :data:`COUNTED`'s functions during one in-process run of the command."""
    from sarheight.cli import main

    profile = cProfile.Profile()
    profile.enable()
    status = main(arguments)
    profile.disable()
    if status != 0:
        raise SystemExit(f"sarheight {' '.join(arguments)} failed ({status})")
    calls: dict[tuple[str, str], int] = {}
    for (filename, _, function), (_, total, *_rest) in pstats.Stats(profile).stats.items():  # type: ignore[attr-defined]
        for alternatives in COUNTED.values():
            for suffix, name in alternatives:
                if function == name and filename.replace(os.sep, "/").endswith(suffix):
                    calls[(suffix, name)] = calls.get((suffix, name), 0) + total
    found = {}
    for label, alternatives in COUNTED.items():
        found[label] = next((calls[key] for key in alternatives if calls.get(key)), 0)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "terrain_refinement" / "refine_path.json"))
    parser.add_argument("--runs", type=int, default=1, help="timed runs of each method after the warm-up (1)")
    parser.add_argument("--side", type=int, default=1000, help="cells a side of the fine grid (1000)")
    parser.add_argument("--method", action="append", choices=METHODS, default=None, help="methods (default all)")
    args = parser.parse_args()

    from sarheight.io import write_geotiff

    try:
        from sarheight.cli.benchmark.scenes import synthetic_scene
        from sarheight.raster import cell_size_m
        from sarheight.terrain.grid import block_mean
    except ImportError:  # an earlier version, measured for comparison
        from sarheight.benchmark.scenes import synthetic_scene
        from sarheight.dem import cell_size_m
        from sarheight.terrain import block_mean

    fine, _ = synthetic_scene(args.side, 90.0)
    methods = args.method or list(METHODS)
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        write_geotiff(fine.rename("height"), folder / "fine.tif")
        write_geotiff(block_mean(fine, 3).rename("height"), folder / "coarse.tif")
        common = ["--vertical-datum", "ellipsoid", "--quiet"]
        _command("simulate", str(folder / "fine.tif"), *GEOMETRY, *common, "--out", str(folder / "sim.tif"))
        dy, dx = cell_size_m(fine)
        spacing = f"{(dy * dx) ** 0.5:.3f}"
        refine = ["terrain", "refine", "--dem", str(folder / "coarse.tif"), "--sar", str(folder / "sim_sigma0.tif"),
                  *GEOMETRY, *common, "--spacing", spacing]
        seconds: dict[str, list[float]] = {}
        counts: dict[str, dict[str, int]] = {}
        for method in methods:
            out = folder / f"{method}.tif"
            arguments = [*refine, "--method", method, "--out", str(out)]
            _command(*arguments)  # warm-up: the kernels' cache, the page cache
            seconds[method] = [_command(*arguments) for _ in range(args.runs)]
            counts[method] = _counts(arguments)
            print(f"{method}: {min(seconds[method]):.1f} s; " + ", ".join(f"{label} {n}" for label, n in
                                                                        counts[method].items()), flush=True)
    record = {
        "grid_cells": args.side * args.side, "spacing_m": float(spacing), "coarse_factor": 3,
        "dem": f"synthetic mountains, {args.side} x {args.side} cells of 90 m",
        "seconds": seconds, "best_seconds": {key: min(values) for key, values in seconds.items()}, "calls": counts,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        # The revision of the sarheight measured (the one imported: another checkout's, on
        # PYTHONPATH, to time an earlier version with this script).
        "source": subprocess.run(["git", "-C", str(Path(sarheight.__file__).resolve().parents[1]), "rev-parse",
                                  "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
