"""How long ``sarheight terrain refine --method inversion`` takes on a grid of a million cells.

    python benchmarks/inversion_speed.py --out benchmarks/terrain_inversion/speed.json

The fine DEM is the reference data's eastern Turkey SRTM3 tile (1000 x 1000 cells, 3
arc-seconds; synthetic mountains of the same size where the reference data is absent);
the user's coarse DEM its 3x block mean; the observations its simulated images of both
passes in radar geometry (``sarheight simulate``, ascending and descending: every image
given). The command refines the coarse DEM back onto the fine grid (one million cells)
from them, the way a user runs it: each run a process of its
own, timed from start to exit, the first one warming the kernels' cache. Also timed in
the same run, for where the time goes: clinometry and back-projection on the same grid
(of the ascending image: they read one pass).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEM = "eastern_turkey_srtm3"
GEOMETRY = ["--geometry", "synthetic", "--line-spacing", "60", "--sample-spacing", "45"]


def _command(*args: str) -> float:
    """Seconds one ``sarheight`` command takes, in a process of its own."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "sarheight", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="the reference data folder")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "terrain_inversion" / "speed.json"))
    parser.add_argument("--runs", type=int, default=2, help="timed runs of each command after the warm-up (2)")
    parser.add_argument("--methods", default="inversion,clinometry,back-projection",
                        help="the methods timed, in order (inversion, clinometry, back-projection)")
    parser.add_argument("--no-warm-up", action="store_true",
                        help="no untimed first run of each command (where the kernels' cache is warm already)")
    args = parser.parse_args()

    from sarheight.dem import open_dem
    from sarheight.io import write_geotiff
    from sarheight.terrain.grid import block_mean

    path = Path(args.data) / "dem" / f"{DEM}.tif"
    if path.exists():
        fine = open_dem(path, vertical_datum="egm96", geoid_grid=Path(args.data) / "geoid" / "egm96_15.gtx")
        source = f"{DEM} (reference data)"
    else:
        from sarheight.cli.benchmark.scenes import synthetic_scene

        fine, _ = synthetic_scene(1000, 90.0)
        source = "synthetic mountains, 1000 x 1000 cells of 90 m"
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        write_geotiff(fine.rename("height"), folder / "fine.tif")
        write_geotiff(block_mean(fine, 3).rename("height"), folder / "coarse.tif")
        common = ["--vertical-datum", "ellipsoid", "--quiet"]
        _command("simulate", str(folder / "fine.tif"), *GEOMETRY, *common, "--out", str(folder / "sim.tif"))
        _command("simulate", str(folder / "fine.tif"), *GEOMETRY, "--heading", "192", *common, "--out",
                 str(folder / "desc.tif"))
        from sarheight.raster import cell_size_m

        dy, dx = cell_size_m(fine)
        spacing = f"{(dy * dx) ** 0.5:.3f}"
        refine = ["terrain", "refine", "--dem", str(folder / "coarse.tif"), *common, "--spacing", spacing]
        both = ["--sar", str(folder / "sim_image.tif"), "--sar", str(folder / "desc_image.tif")]
        # Clinometry and back-projection read one pass: the ascending image.
        images = {"inversion": both, "clinometry": both[:2], "back-projection": both[:2]}
        timings: dict[str, list[float]] = {}
        for method in args.methods.split(","):
            out = folder / f"{method}.tif"
            command = [*refine, *images[method], "--method", method, "--out", str(out)]
            if not args.no_warm_up:
                _command(*command)  # the kernels' cache
            timings[method] = [_command(*command) for _ in range(args.runs)]
            print(f"{method}: {', '.join(f'{value:.1f}' for value in timings[method])} s", flush=True)
        import rioxarray
        from rasterio.enums import Resampling

        refined = rioxarray.open_rasterio(folder / f"{next(iter(timings))}.tif", masked=True).sel(band=1)
        cells = int(refined.shape[-1] * refined.shape[-2])
        # The fine DEM on the refined grid (the grid the command makes from the coarse DEM).
        truth = np.asarray(fine.rio.reproject_match(refined, resampling=Resampling.bilinear).values, dtype=np.float64)
        scores = {}
        for method in timings:
            heights = rioxarray.open_rasterio(folder / f"{method}.tif", masked=True).sel(band=1).values
            scores[method] = float(np.sqrt(np.nanmean((heights - truth) ** 2)))
    record = {
        "dem": source, "grid_cells": cells, "spacing_m": float(spacing), "coarse_factor": 3,
        "seconds": timings, "best_seconds": {key: min(values) for key, values in timings.items()},
        "rmse_m_against_the_fine_dem": scores,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "images": "inversion: one ascending and one descending image, radar geometry; clinometry and "
                  "back-projection: the ascending image", "target_seconds": 60.0,
        "warm_up_run": not args.no_warm_up,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=2))
    for method, best in record["best_seconds"].items():
        print(f"{method}: {best:.1f} s on {cells} cells (best of {args.runs}); RMSE "
              f"{scores.get(method, float('nan')):.2f} m")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
