"""Where a reconstruction's time goes, and what the passes over the radar window and the sweep's lines can give.

Measured warm on the scenes of ``sarheight benchmark`` (``sarheight.cli.benchmark.timing.synthetic_scene``:
synthetic mountains, RMS slope 0.5, under 10 m pixels; the DEM at the pixel spacing, 2048²,
and 3x coarser, 1024²), on the machine's threads:

1. ``phases``: the phase profile of ``reconstruct`` (``reconstruct.PhaseProfile``, exclusive
   seconds), best of 3, coarse exact and pixel exact and bilinear.
2. ``ratio_passes``: the passes over the radar window that turn the simulated sums into the
   reallocation's ratios and clear their rounding residue (``kernels.reallocation``'s
   ``ratio_lines`` and ``clear_residue``), this tree's kernels against those of
   ``--before`` (a git revision of this checkout), alternating in one process, best of 8,
   and whether both give the same arrays bit for bit.
3. ``sweep``: ``simulate.visibility_masks`` cutting every radar line and cutting only the
   lines that bound its groups (``every_line=False``, as ``simulate_sar`` runs it): best
   of 4 each, whether the masks are equal, and the share of the window's pixels whose
   mixing differs (all, and those where either sweep counts several segments).
4. ``float32``: how far ``reconstruct``'s backscatter moves (relative, against float64 on
   the same state) when the window's simulated sums, after the scatter, or the gather's
   row prefix sums are rounded to float32: the largest difference and the share of cells
   beyond 1e-6, on a speckled observation (coarse 512², pixel 1024²).

    python benchmarks/window_and_sweep.py --out benchmarks/reconstruction_speed/window_and_sweep.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import REPO, finish, loadavg, machine
from reconstruct import PhaseProfile

from sarheight import reallocation
from sarheight.cli.benchmark.timing import CASES, speckled, synthetic_scene
from sarheight.kernels import reallocation as reallocation_kernels
from sarheight.kernels.buckets import line_group
from sarheight.reconstruction import reconstruct
from sarheight.simulate import run_simulation, simulate, simulate_sar
from sarheight.simulate.cells import cell_geometry, radar_window, visibility_masks
from sarheight.simulate.engine import residue_thresholds
from sarheight.threads import run_blocks

#: (case, DEM cells a side) of the figures, as ``sarheight benchmark`` runs them.
SCENES = (("coarse", 1024), ("pixel", 2048))


def phases(case: str, side: int, projection: str) -> dict[str, Any]:
    dem, geometry = synthetic_scene(side, CASES[case])
    observation = speckled(simulate(dem, geometry, projection=projection, progress=False))
    reconstruct(dem, observation, geometry, projection=projection, progress=False)
    best: tuple[float, dict[str, float]] | None = None
    for _ in range(3):
        profile = PhaseProfile()
        _, total, _ = profile.run(lambda: reconstruct(dem, observation, geometry, projection=projection,
                                                      progress=False))
        if best is None or total < best[0]:
            best = (total, dict(profile.seconds))
    total, seconds = best
    print(f"{case} {side}² {projection}: {total:.3f} s, {side * side / total / 1e6:.2f} M cells/s")
    return {"case": case, "side": side, "projection": projection, "seconds": total,
            "cells_per_second": side * side / total,
            "phases": {name: value for name, value in sorted(seconds.items(), key=lambda kv: -kv[1])}}


def kernels_at(revision: str, folder: Path) -> Any:
    """``kernels.reallocation`` as it was at ``revision``, beside this tree's other kernels."""
    package = folder / "kernels_before"
    shutil.copytree(REPO / "kernels", package, ignore=shutil.ignore_patterns("__pycache__"))
    source = subprocess.run(["git", "-C", str(REPO), "show", f"{revision}:kernels/reallocation.py"], check=True,
                            capture_output=True, text=True).stdout
    (package / "reallocation.py").write_text(source)
    sys.path.insert(0, str(folder))
    return importlib.import_module("kernels_before.reallocation")


def ratio_passes(case: str, side: int, before: Any, repeats: int = 8) -> dict[str, Any]:
    dem, geometry = synthetic_scene(side, CASES[case])
    observation = speckled(simulate(dem, geometry, progress=False))
    state = run_simulation(dem, geometry, keep_per_cell=False, clear=False)
    line0, n_lines, sample0, n_samples = state.window
    observed = np.ascontiguousarray(observation.sel(line=slice(line0, line0 + n_lines - 1),
                                                    sample=slice(sample0, sample0 + n_samples - 1)).values)
    fields, powers, fitted, fit = state.smooth_fields.kernel_arguments()
    thresholds = residue_thresholds(state.contribution, state.smooth_fields)
    blocks = max(1, n_lines // 256)
    work = np.empty_like(state.sums)
    images = np.empty((2, n_lines, n_samples))
    best: dict[str, dict[str, float]] = {"this tree": {}, "before": {}}
    outputs: dict[str, list[np.ndarray]] = {}
    for _ in range(repeats + 1):  # the first of each compiles or loads its kernels: not kept
        for label, kernels in (("this tree", reallocation_kernels), ("before", before)):
            simulated = np.empty((n_lines, n_samples), dtype=np.float32)
            valid = np.empty((n_lines, n_samples), dtype=bool)
            np.copyto(work, state.sums)
            start = time.perf_counter()
            run_blocks(lambda a, b, k=kernels, s=simulated, v=valid: k.ratio_lines(
                work, observed, a, b, state.exact, fields, powers, fitted, fit, line0, sample0, thresholds, s, v),
                n_lines, blocks)
            ratios = time.perf_counter() - start
            np.copyto(images, np.moveaxis(state.sums[2:-2, 2:-2], 2, 0))
            start = time.perf_counter()
            run_blocks(lambda a, b, k=kernels: k.clear_residue(images, a, b, fields, powers, fitted, fit, line0,
                                                               sample0, thresholds), n_lines, blocks)
            residue = time.perf_counter() - start
            if label not in outputs:
                outputs[label] = [work.copy(), simulated, valid, images.copy()]
                continue
            for name, value in (("ratio_lines", ratios), ("clear_residue", residue)):
                best[label][name] = min(best[label].get(name, np.inf), value)
    same = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(outputs["this tree"], outputs["before"],
                                                                     strict=True))
    print(f"{case} {side}² ratio passes: this tree {best['this tree']}, before {best['before']}, same: {same}")
    return {"case": case, "side": side, "window_pixels": n_lines * n_samples, "seconds": best,
            "same_bit_for_bit": same}


def sweep(case: str, side: int) -> dict[str, Any]:
    dem, geometry = synthetic_scene(side, CASES[case])
    cells = cell_geometry(dem, geometry)
    window = radar_window(cells["line"], cells["sample"], cells["valid"], geometry)
    seconds, results = {}, {}
    for every_line in (True, False) * 4:
        start = time.perf_counter()
        result = visibility_masks(cells, cells["faces_away"], cells["active_layover"], window, every_line=every_line)
        elapsed = time.perf_counter() - start
        key = "every line" if every_line else "bounding lines"
        seconds[key] = min(seconds.get(key, np.inf), elapsed)
        results[key] = result
    full, bounds = results["every line"], results["bounding lines"]
    mixed = (full[2] > 1) | (bounds[2] > 1)
    out = {"case": case, "side": side, "group": line_group(cells["line"], cells["valid"]), "seconds": seconds,
           "masks_equal": bool(np.array_equal(full[0], bounds[0]) and np.array_equal(full[1], bounds[1])),
           "mixing_differs": float(np.mean(full[2] != bounds[2])),
           "mixing_differs_where_mixed": float(np.mean(full[2][mixed] != bounds[2][mixed])) if mixed.any() else 0.0}
    print(f"{case} {side}² sweep: {json.dumps(out)}")
    return out


def edge_pieces(case: str, side: int, oversample: int = 2) -> dict[str, Any]:
    """How the edges of the exact passes' facets lie on the pixels: the facets' vertices
    (the DEM's cells upsampled ``oversample`` times, bilinear between the centres, as
    the facet kernel makes them) and their three edges per sub-quad (along rows, along
    columns, the diagonal), on every 4th row of sub-quads. Per edge, the row and
    column borders it crosses: the pieces the passes cut it into now (1 + both), and
    the pieces a pixel-row form would cut (1 + rows crossed), and how many pixels such a
    row piece spans on average (the ratio of the two)."""
    dem, geometry = synthetic_scene(side, CASES[case])
    cells = cell_geometry(dem, geometry)
    fine = {}
    for name in ("line", "sample"):
        values = cells[name]
        n_rows, n_cols = values.shape
        columns = np.arange(0, n_cols - 1 + 1e-9, 1 / oversample)
        # Bilinear between the centres: along the columns, then along the rows (every 4th
        # row of sub-quads, with the vertex row below it).
        across = np.stack([np.interp(columns, np.arange(n_cols), row) for row in values])
        fine_rows = np.arange(0, n_rows - 1, 1 / oversample)[::4]
        fine[name] = [np.stack([np.interp(fine_rows + offset, np.arange(n_rows), across[:, j])
                                for j in range(columns.size)], axis=1) for offset in (0.0, 1 / oversample)]
    (line, line_below), (sample, sample_below) = fine["line"], fine["sample"]
    edges = [((line[:, :-1], sample[:, :-1]), (line[:, 1:], sample[:, 1:])),  # along rows
             ((line, sample), (line_below, sample_below)),  # along columns
             ((line[:, :-1], sample[:, :-1]), (line_below[:, 1:], sample_below[:, 1:]))]  # diagonal
    rows_crossed = np.concatenate([np.abs(np.floor(b[0]) - np.floor(a[0])).ravel() for a, b in edges])
    columns_crossed = np.concatenate([np.abs(np.floor(b[1]) - np.floor(a[1])).ravel() for a, b in edges])
    pieces = np.mean(1 + rows_crossed + columns_crossed)
    row_pieces = np.mean(1 + rows_crossed)
    out = {"case": case, "side": side, "oversample": oversample, "pieces_per_edge": float(pieces),
           "row_pieces_per_edge": float(row_pieces), "pixels_per_row_piece": float(pieces / row_pieces),
           "edges_crossing_a_column_border": float(np.mean(columns_crossed > 0)),
           "edges_crossing_a_row_border": float(np.mean(rows_crossed > 0))}
    print(f"{case} {side}² edges: {json.dumps(out)}")
    return out


def float32(case: str, side: int) -> dict[str, Any]:
    dem, geometry = synthetic_scene(side, CASES[case])
    observation = simulate_sar(dem, geometry, looks=4.4, nesz_db=-22.0)
    original = reallocation.ratios_in_place
    out: dict[str, Any] = {"case": case, "side": side}
    reference = None
    try:
        for stage in ("float64", "sums", "prefix_sums"):
            def rounded(state, sums, observed, *, prefix, _stage=stage):
                if _stage == "sums":
                    sums[...] = sums.astype(np.float32)
                result = original(state, sums, observed, prefix=prefix)
                if _stage == "prefix_sums":
                    sums[...] = sums.astype(np.float32)
                return result

            reallocation.ratios_in_place = rounded
            backscatter = reconstruct(dem, observation, geometry, progress=False)["backscatter"].values
            backscatter = backscatter.astype(np.float64)
            if reference is None:
                reference = backscatter
                continue
            with np.errstate(divide="ignore", invalid="ignore"):
                relative = np.abs(backscatter / reference - 1.0)
            out[stage] = {"largest": float(np.nanmax(relative)), "median": float(np.nanmedian(relative)),
                          "beyond_1e-6": float(np.nanmean(relative > 1e-6))}
    finally:
        reallocation.ratios_in_place = original
    print(f"{case} {side}² float32: {json.dumps(out)}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="2fe443d",
                        help="git revision whose ratio and residue passes to time beside this tree's")
    parser.add_argument("--out", default="benchmarks/results/window_and_sweep.json")
    args = parser.parse_args(argv)
    load_start = loadavg()
    result: dict[str, Any] = {"machine": machine(), "before": args.before}
    result["phases"] = [phases(case, side, projection) for case, side in SCENES
                        for projection in (("exact",) if case == "coarse" else ("exact", "bilinear"))]
    with tempfile.TemporaryDirectory() as folder:
        before = kernels_at(args.before, Path(folder))
        result["ratio_passes"] = [ratio_passes(case, side, before) for case, side in SCENES]
    result["sweep"] = [sweep(case, side) for case, side in SCENES]
    result["edge_pieces"] = [edge_pieces(case, side) for case, side in SCENES]
    result["float32"] = [float32(case, side) for case, side in (("coarse", 512), ("pixel", 1024))]
    return finish(result, args.out, load_start)


if __name__ == "__main__":
    sys.exit(main())
