"""Benchmark of the layover and shadow sweep on each backend of the kernel door: the numba
kernel (its bounds, about log(columns) work a cell) and the torch pass (every cell's
profile built whole, columns x candidate pairs work a cell), on the CPU and, where torch
sees one, on a CUDA GPU, warm, in one run, with whether each gives the kernel's masks and
mixing bit for bit.

Scenes of ``sarheight benchmark`` (``sarheight.cli.benchmark.scenes.synthetic_scene``:
synthetic mountains under 10 m pixels, the DEM 3x coarser), rows along track.

    python benchmarks/sweep_backends.py --sides 128,256,512 --out benchmarks/kernel_door/sweep_cpu.json [--device cuda]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from _common import loadavg, machine, write_json

from sarheight.cli.benchmark.timing import CASES, synthetic_scene
from sarheight.compute import ProfileCells, compute_for, visibility_masks
from sarheight.masks import kernel_codes
from sarheight.simulate.cells import cell_geometry, radar_window, rows_run_along_track, slant_range_spacing


def devices(asked: list[str] | None) -> list[str]:
    """The torch devices: those asked, else the CPU and a CUDA GPU where torch sees one."""
    if asked is not None:
        return asked
    import torch

    return ["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"]


def best_of(run, repeats: int) -> tuple[float, tuple]:
    """The fastest of ``repeats`` warm runs (one more first, to warm), and the result."""
    result = run()
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def row(side: int, torch_devices: list[str], repeats: int) -> dict:
    dem, geometry = synthetic_scene(side, CASES["coarse"])
    cells = cell_geometry(dem, geometry)
    window = tuple(radar_window(cells["line"], cells["sample"], cells["valid"], geometry))
    arrays = [cells[name] for name in ("line", "sample", "slant_range", "look_angle", "cross_track")]
    arrays += [cells["faces_away"], cells["active_layover"], cells["valid"]]
    if not rows_run_along_track(cells["line"]):
        arrays = [np.ascontiguousarray(a.T) for a in arrays]
    profile = ProfileCells(*arrays)
    tolerance = 0.05 * slant_range_spacing(cells)
    out = {"side": side, "cells": int(dem.size), "window": list(window), "backends": {}}
    expected = None
    for device in [None, *torch_devices]:
        compute = compute_for() if device is None else compute_for(device, backend="torch")
        seconds, result = best_of(lambda compute=compute: visibility_masks(
            profile, window, range_tolerance=tolerance, codes=kernel_codes(), compute=compute), repeats)
        entry = {"backend": compute.describe(), "seconds": seconds, "cells_per_second": dem.size / seconds}
        if expected is None:
            expected = result
            layover = result[0][profile.valid]
            entry["layover_share"] = float(np.mean((layover > 0) & (layover < 255)))
        else:
            entry["same_as_numba"] = all(np.array_equal(a, b) for a, b in zip(result, expected, strict=True))
            entry["numba_over_this"] = out["backends"]["numba"]["seconds"] / seconds
        out["backends"]["numba" if device is None else device] = entry
        print(f"{side}²: {entry['backend']}: {seconds:.4f} s" + (f", same as numba: {entry['same_as_numba']}"
                                                                 if "same_as_numba" in entry else ""), flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/sweep_backends.json")
    parser.add_argument("--sides", default="128,256,512")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", action="append", default=None,
                        help="a torch device to time (cpu, cuda); default: the CPU and a GPU where torch sees one")
    args = parser.parse_args(argv)
    load_start = loadavg()
    rows = [row(int(side), devices(args.device), args.repeats) for side in args.sides.split(",")]
    write_json({"benchmark": "sweep_backends", "scene": "sarheight benchmark's coarse case (DEM 3x the pixels)",
                "machine": machine(), "loadavg_start": load_start, "loadavg_end": loadavg(), "results": rows},
               args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
