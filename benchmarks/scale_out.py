"""Scale-out benchmark: block-wise reconstruction of a DEM larger than the in-memory budget.

1. The in-memory cost: ``reconstruct`` on a 1024^2 DEM in a fresh subprocess, peak resident
   set rise per DEM cell (VmHWM after the call, reset through /proc/self/clear_refs just
   before, minus the resident set then; ``benchmarks/reconstruct.py``'s measurement).
   With a budget B (default 4 GiB) the in-memory path fits a DEM of B / (bytes per cell)
   cells.
2. A DEM ``--factor`` (default 4) times larger than that, square, of the mountain terrain
   of ``benchmarks/reconstruct.py`` (10 m cells near Rome, RMS slope 0.5) under its
   Sentinel-1-like geometry, written to a GeoTIFF by a separate process.
3. ``reconstruct(..., chunks=...)`` on it (local threads, results to GeoTIFFs with ``out``) in
   a fresh subprocess: the DEM is read from its file inside the measured call, the
   observation is a lazy (dask) beta0 image with 4.4-look speckle, generated chunk by
   chunk as windows are read. Reported: the process's peak resident set (VmHWM, all
   included), its rise during the call, the time and DEM cells per second.

The run passes when the peak stays under the budget. Writes JSON.

    python benchmarks/scale_out.py                      # 4 GiB budget, 4x: about 120 M cells, ~6 min on 2 cores
    python benchmarks/scale_out.py --budget-gib 1 --factor 2   # a quicker look
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import machine, write_json

HERE = Path(__file__).resolve().parent


def _status(field: str) -> int:
    """A /proc/self/status field in bytes (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} is not in /proc/self/status (Linux only)")


def _reset_peak() -> int:
    """Reset the peak resident set to the current one; returns the current one (bytes)."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


def child_prepare(side: int, directory: str) -> dict:
    """Save the inputs of the in-memory measurement (heights, observation) as
    ``benchmarks/reconstruct.py``'s memory child reads them."""
    from reconstruct import make_dem, make_geometry, mountain_terrain, speckled_observation

    from sarheight.simulate import simulate

    heights = mountain_terrain(side)
    observation = speckled_observation(simulate(make_dem(side, heights), make_geometry(), progress=False))
    np.save(Path(directory) / "heights.npy", heights)
    np.save(Path(directory) / "observation-exact.npy", observation.values)
    np.savez(Path(directory) / "coords-exact.npz", line=observation["line"].values, sample=observation["sample"].values)
    return {"side": side}


def in_memory_cost(side: int) -> dict:
    """Peak resident set rise per DEM cell of the in-memory reconstruct (exact projection),
    measured by ``benchmarks/reconstruct.py``'s memory child on inputs saved beforehand, so
    that no memory freed by their making is reused in the measured process."""
    from reconstruct import measure_memory

    with tempfile.TemporaryDirectory(prefix="sarheight-scale-") as directory:
        _run_child("prepare", str(side), directory)
        report = measure_memory(directory, "exact")
    if "error" in report:
        raise RuntimeError(f"in-memory measurement failed: {report['error']}")
    return {"side": side, "cells": report["cells"], "peak_rise_bytes": report["rss_peak_rise_bytes"],
            "bytes_per_cell": report["rss_bytes_per_cell"]}


def child_make_dem(side: int, path: str) -> dict:
    """Write the side^2 mountain DEM to a GeoTIFF (a process of its own: the FFT is large)."""
    from reconstruct import make_dem

    dem = make_dem(side)
    dem.rio.to_raster(path, tiled=True, compress="deflate", predictor=3, BIGTIFF="IF_SAFER")
    return {"side": side, "path": path, "bytes": os.path.getsize(path)}


def _lazy_observation(dem_path: str, geometry):
    """A dask beta0 image (gamma speckle around 0.05) over the radar window of the DEM."""
    import dask.array as da
    import rioxarray
    import xarray as xr

    from sarheight.dem import open_dem
    from sarheight.geometry import backward_geocode

    # The window from a coarse geocoding of the DEM (every 64th cell, margins of 64 pixels).

    coarse = rioxarray.open_rasterio(dem_path).squeeze("band", drop=True)[::64, ::64].load()
    coarse = coarse.rio.write_transform(coarse.rio.transform(recalc=True))
    geocoded = backward_geocode(open_dem(coarse, vertical_datum="ellipsoid"), geometry)
    line, sample = geocoded["line"].values, geocoded["sample"].values
    line0 = max(0, int(np.nanmin(line)) - 64)
    sample0 = max(0, int(np.nanmin(sample)) - 64)
    lines, samples = geometry.grid.shape
    n_lines = min(lines, int(np.nanmax(line)) + 65) - line0
    n_samples = min(samples, int(np.nanmax(sample)) + 65) - sample0
    speckle = da.random.RandomState(1).gamma(4.4, 0.05 / 4.4, size=(n_lines, n_samples), chunks=(512, 512))
    return xr.DataArray(speckle.astype(np.float32), dims=("line", "sample"),
                        coords={"line": np.arange(line0, line0 + n_lines),
                                "sample": np.arange(sample0, sample0 + n_samples)})


def child_distributed(dem_path: str, rows_per_block: int, out_dir: str) -> dict:
    """Block-wise reconstruct of the DEM file, results to GeoTIFFs: the process's peak."""
    import gc

    from reconstruct import make_dem, make_geometry

    from sarheight.dem import open_dem
    from sarheight.masks import MaskCode
    from sarheight.reconstruction import reconstruct

    geometry = make_geometry()
    small = make_dem(64)  # warm: every kernel loaded before the measurement
    warm_observation = _lazy_observation_for(small, geometry)
    reconstruct(small, warm_observation, geometry, chunks=16, out=Path(out_dir) / "warm.tif", progress=False)
    observation = _lazy_observation(dem_path, geometry)
    del small, warm_observation
    gc.collect()
    before = _reset_peak()
    start = time.perf_counter()
    dem = open_dem(dem_path, vertical_datum="ellipsoid")  # read inside the measurement
    result = reconstruct(dem, observation, geometry, chunks=rows_per_block, out=Path(out_dir) / "scale_out.tif",
                         progress=False)
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    cells = int(result.sizes["y"] * result.sizes["x"])
    layover = result["layover"].data
    fraction = float(((layover == MaskCode.ACTIVE) | (layover == MaskCode.PASSIVE)).mean().compute())
    return {"cells": cells, "side": int(result.sizes["y"]), "seconds": seconds, "cells_per_second": cells / seconds,
            "peak_bytes": peak, "peak_rise_bytes": peak - before, "rss_before_bytes": before,
            "rows_per_block": rows_per_block, "layover_fraction": fraction}


def _lazy_observation_for(dem, geometry):
    """The lazy observation of an in-memory DEM (for the warm-up)."""
    import dask.array as da
    import xarray as xr

    from sarheight.geometry import backward_geocode

    geocoded = backward_geocode(dem, geometry)
    line0 = int(np.nanmin(geocoded["line"].values)) - 8
    sample0 = int(np.nanmin(geocoded["sample"].values)) - 8
    n_lines = int(np.nanmax(geocoded["line"].values)) + 9 - line0
    n_samples = int(np.nanmax(geocoded["sample"].values)) + 9 - sample0
    values = da.random.RandomState(2).gamma(4.4, 0.05 / 4.4, size=(n_lines, n_samples), chunks=256)
    return xr.DataArray(values.astype(np.float32), dims=("line", "sample"),
                        coords={"line": np.arange(line0, line0 + n_lines),
                                "sample": np.arange(sample0, sample0 + n_samples)})


def _run_child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True,
                          cwd=HERE.parent, env={**os.environ, "PYTHONPATH": f"{HERE}:{HERE.parent}"})
    if done.returncode != 0:
        raise RuntimeError(f"child {args} failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget-gib", type=float, default=4.0, help="memory budget (GiB), default 4")
    parser.add_argument("--factor", type=float, default=4.0, help="DEM size over the in-memory budget's, default 4")
    parser.add_argument("--rows-per-block", type=int, default=128)
    parser.add_argument("--out", default="benchmarks/results/scale_out.json")
    parser.add_argument("--workdir", default=None, help="folder for the DEM and results (default: a temporary one)")
    parser.add_argument("--child", nargs="+", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        kind, *rest = args.child
        if kind == "prepare":
            report = child_prepare(int(rest[0]), rest[1])
        elif kind == "dem":
            report = child_make_dem(int(rest[0]), rest[1])
        else:
            report = child_distributed(rest[0], int(rest[1]), rest[2])
        print(json.dumps(report))
        return 0
    budget = args.budget_gib * 2**30
    in_memory = in_memory_cost(1024)
    print(f"in memory: {in_memory['bytes_per_cell']:.0f} bytes per DEM cell at 1024^2", flush=True)
    fits = budget / in_memory["bytes_per_cell"]
    side = int(math.ceil(math.sqrt(args.factor * fits) / 16) * 16)
    print(f"a {args.budget_gib:g} GiB budget fits {fits / 1e6:.0f} M cells in memory; "
          f"{args.factor:g}x: a {side} x {side} DEM ({side * side / 1e6:.0f} M cells)", flush=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as workdir:
        dem_path = str(Path(workdir) / "dem.tif")
        made = _run_child("dem", str(side), dem_path)
        print(f"wrote the DEM ({made['bytes'] / 2**20:.0f} MiB)", flush=True)
        run = _run_child("distributed", dem_path, str(args.rows_per_block), workdir)
    passed = run["peak_bytes"] < budget
    print(f"block-wise: {run['cells'] / 1e6:.0f} M cells in {run['seconds']:.0f} s "
          f"({run['cells_per_second'] / 1e6:.2f} M cells/s), peak resident set {run['peak_bytes'] / 2**30:.2f} GiB "
          f"(rise {run['peak_rise_bytes'] / 2**30:.2f} GiB), layover {run['layover_fraction']:.1%}: "
          f"{'under' if passed else 'OVER'} the {args.budget_gib:g} GiB budget", flush=True)
    write_json({"benchmark": "scale_out", "machine": machine(), "budget_bytes": budget, "factor": args.factor,
                "in_memory": in_memory, "in_memory_fit_cells": fits, "distributed": run, "passed": passed}, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
