"""Benchmark of backward geocoding: DEM cells per second, scaling, numpy-twin ratio.

Runs ``sarheight.geometry.backward_geocode`` warm on synthetic fractal terrain at
512^2 .. 4096^2 cells, on a geographic (EPSG:4326) and a UTM grid, under a Sentinel-1
geometry (the real Rome GRD annotation when ../shared/data is present, else a synthetic
one), and the vectorised-numpy twin of the same computation in the same process (on a
subset of cells, as it is slow). The twin's results are compared with the kernel's on
that subset, so that the ratio compares like with like. Writes JSON, with the load
average before and after: on a shared machine timings follow the load.

The backends of the kernel door (``sarheight.compute``) are timed in the same run on the
same cells: the torch pass on each ``--device`` (default: ``cuda`` where torch sees a GPU;
``cpu`` times the GPU's code on the CPU), beside the numba kernels, with the card named and
the largest differences to the kernels.

    python benchmarks/geocode.py --out benchmarks/results/geocode.json [--sizes 512,1024] [--device cuda]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from _common import ROME_GRD_NAME, SHARED_DATA, best_time, loadavg, machine, write_json
from affine import Affine

from sarheight.compute import compute_for
from sarheight.dem import geodetic_coordinates, open_dem
from sarheight.geometry import RadarGeometry, backward_geocode, geocode_arrays
from twins import geometry as reference_twins

ROME_GRD = SHARED_DATA / "s1" / ROME_GRD_NAME
CENTER = (12.6, 41.9)  # lon, lat: inside the Rome GRD


def fractal_terrain(n: int, seed: int = 0) -> np.ndarray:
    """Terrain-like heights (m): 1/f^2 spectrum noise, 0..1500 m."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(n)[:, None], np.fft.rfftfreq(n)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fx, fy), 1.0 / n) ** 2
    field = np.fft.irfft2(amplitude * np.exp(2j * np.pi * rng.random(amplitude.shape)), s=(n, n))
    field -= field.min()
    return (1500.0 * field / field.max()).astype(np.float32)


def dem_grid(n: int, kind: str):
    heights = fractal_terrain(n)
    lon, lat = CENTER
    if kind == "geographic":
        step = 10.0 / 111_320.0  # about 10 m
        transform = Affine(step, 0, lon - n * step / 2, 0, -step, lat + n * step / 2)
        return open_dem((heights, transform, "EPSG:4326"), vertical_datum="ellipsoid")
    transform = Affine(10.0, 0, 290_000.0, 0, -10.0, 4_650_000.0 + n * 5.0)  # UTM 33N near Rome
    return open_dem((heights, transform, "EPSG:32633"), vertical_datum="ellipsoid")


def geometry() -> tuple[RadarGeometry, str]:
    if ROME_GRD.exists():
        return RadarGeometry.from_sentinel1(ROME_GRD), "Sentinel-1B IW GRD annotation (Rome), degree-5 orbit"
    synthetic = RadarGeometry.synthetic(
        center_lon=CENTER[0], center_lat=CENTER[1], heading_deg=193.0, incidence_near_deg=30.0,
        incidence_far_deg=46.0, line_spacing=10.0, sample_spacing=10.0,
    )
    return synthetic, "synthetic straight orbit (../shared/data absent)"


def numpy_twin(dem, geom: RadarGeometry, cells: int = 250_000) -> tuple[float, dict[str, float]]:
    """Cells per second of the numpy twin on the first rows of ``dem`` (about ``cells``),
    and the largest differences between its results and ``backward_geocode``'s there:
    time (s), slant range (m), line, sample (pixels), incidence (deg)."""
    from sarheight.dem import geodetic_coordinates

    lon, lat = geodetic_coordinates(dem)
    rows = max(1, cells // dem.shape[1])
    lon_r, lat_r = np.radians(lon[:rows]), np.radians(lat[:rows])
    height = dem.values[:rows]
    k = geom.kernel_arguments()
    seconds = best_time(lambda: reference_twins.geocode(lon_r, lat_r, height, k), repeats=2)
    twin = reference_twins.geocode(lon_r, lat_r, height, k)
    ds = backward_geocode(dem, geom).isel(y=slice(0, rows))
    time = (ds["azimuth_time"].values - geom.reference_time) / np.timedelta64(1, "ns") / 1e9
    ours = (time, ds["slant_range"].values, ds["line"].values, ds["sample"].values, ds["incidence_angle"].values)
    names = ("time_s", "slant_range_m", "line", "sample", "incidence_deg")
    differences = {}
    for name, a, b in zip(names, ours, twin, strict=True):
        a = np.asarray(a, dtype=np.float64)
        if not np.array_equal(np.isnan(a), np.isnan(b)):
            raise AssertionError(f"kernel and numpy twin disagree on which cells have a {name}")
        differences[name] = float(np.nanmax(np.abs(a - b))) if np.isfinite(a).any() else 0.0
    return height.size / seconds, differences


def torch_devices(asked: list[str] | None) -> list[str]:
    """The devices to time the torch backend on: those asked, else a CUDA GPU where torch
    sees one, else none."""
    if asked is not None:
        return asked
    try:
        import torch
    except ImportError:
        return []
    return ["cuda"] if torch.cuda.is_available() else []


def backends_row(dem, geom: RadarGeometry, devices: list[str]) -> dict[str, dict]:
    """Cells per second of the door's geocoding on each backend (the numba kernels, and
    torch on each of ``devices``) on the same cells, and the largest differences of each
    to the kernels': time (ns), slant range (m), line and sample (pixels)."""
    lon, lat = geodetic_coordinates(dem, radians=True)
    height = np.ascontiguousarray(dem.values)
    out = {}
    expected = None
    for device in ["numba", *devices]:
        compute = compute_for() if device == "numba" else compute_for(device, backend="torch")
        run = lambda compute=compute: geocode_arrays(lon, lat, height, geom, compute=compute)  # noqa: E731
        seconds = best_time(run)
        result = run()
        row = {"backend": compute.describe(), "seconds": seconds, "cells_per_second": dem.size / seconds}
        if expected is None:
            expected = result
        else:
            times = [np.where(np.isnat(r[0]), 0, r[0].astype(np.int64)) for r in (expected, result)]
            row["max_difference_to_numba"] = {
                "time_ns": int(np.abs(times[0] - times[1]).max()),
                **{name: float(np.nanmax(np.abs(a - b))) if np.isfinite(a).any() else 0.0
                   for name, a, b in zip(("slant_range_m", "line", "sample"), expected[1:4], result[1:4],
                                         strict=True)}}
            row["ratio_to_numba"] = out["numba"]["seconds"] / seconds
        out[device] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/geocode.json")
    parser.add_argument("--sizes", default="512,1024,2048,4096")
    parser.add_argument("--device", action="append", default=None,
                        help="also time the torch backend on this device (cuda, cuda:N, or cpu); default: cuda "
                        "where torch sees a GPU")
    args = parser.parse_args(argv)
    devices = torch_devices(args.device)
    load_start = loadavg()
    print(f"load average {load_start}", flush=True)
    geom, geom_description = geometry()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    for kind in ("geographic", "utm"):
        for n in sizes:
            dem = dem_grid(n, kind)
            seconds = best_time(lambda dem=dem: backward_geocode(dem, geom))
            rate = dem.size / seconds
            inside = float(np.isfinite(backward_geocode(dem, geom)["line"]).mean())
            row = {"dem": kind, "cells": dem.size, "side": n, "seconds": seconds,
                   "cells_per_second": rate, "inside_fraction": inside}
            if devices:
                row["backends"] = backends_row(dem, geom, devices)
                print("    " + "; ".join(f"{value['backend']}: {value['cells_per_second'] / 1e6:.2f} M cells/s"
                                         for value in row["backends"].values()), flush=True)
            if n == sizes[0]:
                twin, differences = numpy_twin(dem, geom)
                row["numpy_twin_cells_per_second"] = twin
                row["max_difference_to_numpy_twin"] = differences
            rows.append(row)
            print(f"{kind:10s} {n:5d}^2  {rate / 1e6:7.2f} M cells/s  ({seconds:.3f} s, {inside:.0%} inside)",
                  flush=True)
    for kind in ("geographic", "utm"):
        mine = [r for r in rows if r["dem"] == kind]
        twin = mine[0]["numpy_twin_cells_per_second"]
        for r in mine:
            r["ratio_to_numpy_twin"] = r["cells_per_second"] / twin
            r["scaling_vs_smallest"] = r["cells_per_second"] / mine[0]["cells_per_second"]
        print(f"{kind}: numpy twin {twin / 1e6:.3f} M cells/s; kernel/twin ratio "
              + ", ".join(f"{r['side']}^2: {r['ratio_to_numpy_twin']:.0f}x" for r in mine))
        # Linear scaling: the time per cell does not grow with the size (fixed costs make
        # the smallest sizes slower per cell, which is not a failure of scaling): every
        # size at least 0.8x the best rate of the sizes smaller than it.
        for index, r in enumerate(mine):
            smaller = [m["cells_per_second"] for m in mine[:index]]
            r["linear_scaling"] = bool(not smaller or r["cells_per_second"] >= 0.8 * max(smaller))
        slow = [r["side"] for r in mine if not r["linear_scaling"]]
        print(f"{kind}: scaling " + ("linear (no slowdown with size)" if not slow else f"slower per cell at {slow}"))
    load_end = loadavg()
    print(f"load average {load_end}")
    write_json({"benchmark": "backward_geocode", "geometry": geom_description, "machine": machine(),
                "loadavg_start": load_start, "loadavg_end": load_end, "results": rows}, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
