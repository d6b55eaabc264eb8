"""Benchmark of simulation and reconstruction: DEM cells per second, scaling, memory, numpy-twin ratio.

Measures, warm (after Numba compilation), ``sarheight.simulate.simulate`` and
``sarheight.layover.reconstruct`` at several DEM sizes, for exact and bilinear projection:

1. DEM cells per second of each, and the scaling against the smallest size (1.0 = linear);
   a phase profile of one reconstruction (cell geometry, masks, sweep, facet scatter,
   gather, smooth fields, dataset assembly; exclusive times);
2. peak memory per DEM cell of ``reconstruct`` (in memory, all outputs kept), each
   (size, projection) in a fresh subprocess, two ways. (a) The rise of the peak resident
   set: VmHWM after the call (reset through /proc/self/clear_refs just before) minus the
   resident set then. Complete: Numba's own allocations and the allocator's retained
   memory count. (``ru_maxrss`` is no good in a child: it starts at the parent's resident
   set, which exec inherits, and no reset clears that.) (b) The tracemalloc peak: numpy's
   allocations only (numpy reports them to tracemalloc; arrays Numba allocates inside
   kernels are not seen), with the peak traced memory during each phase (inclusive) to
   show the hot spots. The baseline (interpreter, libraries, compiled kernels, the DEM
   and the observation, which exist before the call) is reported apart, not per cell.
   Per-thread scatter buffers are part of the peak: it grows with the thread count;
3. the ratio of the Numba kernels to the vectorised-numpy twin of the reconstruction's core
   for bilinear projection (``twins/reallocation.py``: facets, ``np.add.at``
   scatter, ratios, gather by fancy indexing), in the same process on the smallest size,
   after checking that the twin reproduces the library;
4. the cost per DEM cell of the facet kernel (``kernels.facets.facet_pass``), one scatter
   and one gather pass on one thread over a tile of the library's size from the middle
   of the smallest scene, exact and bilinear; the two passes alone bound what two cores
   can reach (``cells_per_second_bound``);
5. the block-wise path (``reconstruct(..., chunks=256)``) against the in-memory one: on
   local threads and on one dask ``LocalCluster`` started once (``client=``), after all
   in-memory measurements (its idle workers would run beside them; start-up not timed);
   speed relative to the in-memory ``reconstruct`` and agreement of ``backscatter``;
6. the coarse-DEM case (``--coarse``, after the others by default): a DEM 2-3x coarser
   than the radar pixels in each direction under a real geometry, the Sentinel-1B IW GRD
   annotation over Rome in ../shared/data (10 m ground-range pixels). Geographic: the
   Copernicus DEM (1" = 23 m x 31 m, EGM96 heights made ellipsoidal with the geoid grid),
   mirrored from its 360 cells to ``--coarse-side`` (1440) a side, real heights without
   seams, so that the run is long enough to time (2.1 M cells, 19.5 M radar pixels;
   Rome is flat: no layover, little sweep work per cell). Projected: the same heights
   resampled to UTM 33N at 30 m (1.5 M cells). Mountains: transplanted relief, the real
   SRTM 3" heights of eastern Turkey (1111-3270 m, EGM96 made ellipsoidal) mirrored from
   1000 to ``--coarse-side`` cells (cropped at ``--quick``) and placed cell for cell on
   the Rome 1" grid under the Rome GRD: the shared data hold no DEM of mountains under a
   GRD, and Rome has no layover or shadow. The 1" cells are 3x smaller than SRTM's 3", so
   the slopes are 3x steeper than eastern Turkey's (Alpine): layover and shadow, and
   the sweep's work on them. Big Tujunga under the IW SLC is not used: an SLC's pixels
   (about 2.3 m in slant range, 14 m in azimuth) are not 2-3x finer than a 30 m DEM in
   each direction. DEM cells/s and radar pixels/s of ``simulate`` and ``reconstruct``,
   the layover and shadow fractions, and the phase profile of one run of each. Skipped,
   with the reason printed, where the data are absent.

Timings are the best of 3 warm runs, each printed with the spread of its runs ((max - min) /
median), the threads and the load (run-to-run spread on a shared 2-core machine is 20-30 %);
the distributed comparisons, the slowest, the best of 2 above 1024^2. Ratios against
another version in one run: ``sarheight benchmark --against REV``.

Inputs. The DEM is a geographic (EPSG:4326) grid of 10 m x 10 m cells (latitude and
longitude steps from the WGS84 radii of curvature at the scene centre near Rome) of
synthetic fractal terrain: the 1/f^2 spectrum of ``benchmarks/geocode.py``, flattened
beyond an outer scale of 512 cells (5 km), with heights scaled to a fixed RMS slope of
0.5 (27 degrees, mountains). geocode.py's scaling to a 0..1500 m range makes the slopes
fall as 1/size; here every size has the same local relief statistics, so the layover and
shadow fractions and the automatic oversampling factor, hence the work per cell, are the
same at every size and the scaling measures the code, not the terrain. The geometry is
``RadarGeometry.synthetic`` (straight orbit, heading 193 degrees, incidence 30..46 degrees,
scene centre at mid incidence) with ``line_spacing=10`` (azimuth spacing on the ground)
and ``sample_spacing=10 * sin(38 degrees)`` = 6.16 m: ``sample_spacing`` is the slant-range
spacing, and a slant-range step dr covers dr / sin(theta) of flat ground, so this makes
the ground-range pixel 10 m at the scene centre: DEM spacing = radar pixel spacing. (Note:
``10 / sin(theta)`` would make ground pixels of 10 / sin^2 = 26 m.) The benchmark records
the measured step between neighbouring DEM cells in pixels (about 1.0). The observation
is the simulated image of the same size and projection times 4.4-look gamma speckle.

    python benchmarks/reconstruct.py                       # 1024, 2048, 4096: tens of minutes, 12+ GB
    python benchmarks/reconstruct.py --sizes 1024,2048     # without the largest
    python benchmarks/reconstruct.py --quick               # smoke run: 256, 512; the coarse DEM at 360
    python benchmarks/reconstruct.py --coarse only         # the coarse-DEM case alone: a few minutes

Writes JSON (``--out``; ``--quick`` default ``benchmarks/results/reconstruct-quick.json``),
rewritten atomically after each size so a long run leaves its partial results.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from _common import REPO, ROME_GRD_NAME, SHARED_DATA, best_time, machine, timed_runs, write_json
from affine import Affine

from sarheight import compute
from sarheight import observation as observation_module
from sarheight import reallocation as reallocation_module
from sarheight import reconstruction as layover_module
from sarheight.cli.benchmark import timing as scene
from sarheight.dem import open_dem
from sarheight.geometry import RadarGeometry
from sarheight.kernels import facets, radar_buffers
from sarheight.observation import intensity_on_window
from sarheight.reallocation import reallocate
from sarheight.reconstruction import reconstruct
from sarheight.simulate import cells as simulate_cells
from sarheight.simulate import engine as simulate_module
from sarheight.simulate import run_simulation, simulate

CENTER = scene.CENTER  # lon, lat: as benchmarks/geocode.py
SPACING = scene.PIXEL_SPACING  # m, DEM cells and ground pixels
INCIDENCE = scene.INCIDENCE
RMS_SLOPE = scene.RMS_SLOPE
OUTER_SCALE = round(scene.OUTER_SCALE_M / SPACING)  # cells
LOOKS = scene.LOOKS
TWIN_TOLERANCE = 1e-9  # relative to the largest value, twin against library (float64, sums in other orders)
# Per cell, sigma0 = energy / contribution: where a cell's contribution is a small part of
# the largest (slopes nearly facing away), the same absolute rounding is a larger part of
# it (measured up to 2e-6 at 2048^2, with images and energy within 2e-10 and 5e-10).
TWIN_CELL_TOLERANCE = 1e-5
PROJECTIONS = ("exact", "bilinear")


# --------------------------------------------------------------------------- inputs

def mountain_terrain(n: int, seed: int = 0) -> np.ndarray:
    """Heights (m, float32, min 0) of ``n`` x ``n`` cells of ``SPACING`` m: the package's
    benchmark terrain (``sarheight.cli.benchmark.timing.mountain_terrain``), 1/f^2 noise flat beyond
    ``OUTER_SCALE`` cells, RMS slope ``RMS_SLOPE``."""
    return scene.mountain_terrain(n, SPACING, seed)


def dem_transform(n: int) -> Affine:
    """Geographic grid of ``SPACING`` m cells centred on ``CENTER``."""
    return Affine(*scene.grid_transform(n, SPACING))


def make_dem(n: int, heights: np.ndarray | None = None) -> xr.DataArray:
    heights = mountain_terrain(n) if heights is None else heights
    return open_dem((heights, dem_transform(n), "EPSG:4326"), vertical_datum="ellipsoid")


def make_geometry() -> RadarGeometry:
    """The package benchmark's geometry (``sarheight.cli.benchmark.timing.synthetic_geometry``): 10 m
    ground-range pixels at mid incidence."""
    return scene.synthetic_geometry()


def speckled_observation(simulation: xr.Dataset, seed: int = 1) -> xr.DataArray:
    """The simulated image times LOOKS-look gamma speckle: a beta0-like observation (float32)."""
    return scene.speckled(simulation, seed)


def dem_step_in_pixels(simulation: xr.Dataset) -> dict[str, float]:
    """Median distance in pixels between neighbouring DEM cells, along x and along y."""
    line, sample = simulation["radar_line"].values, simulation["radar_sample"].values
    out = {}
    for name, axis in (("along_x", 1), ("along_y", 0)):
        step = np.hypot(np.diff(line, axis=axis), np.diff(sample, axis=axis))
        out[name] = float(np.nanmedian(step))
    return out


# --------------------------------------------------------------------------- phase profile

class PhaseProfile:
    """Exclusive wall time (and, with tracemalloc, peak traced memory) of named phases.

    Wraps module attributes of sarheight for the duration of ``run``; a phase's time
    excludes the wrapped phases it calls. Names that this version of the library lacks
    (the list holds those of successive versions) are skipped and listed in ``missing``.
    """

    def __init__(self, trace_memory: bool = False):
        self.trace_memory = trace_memory
        self.seconds: dict[str, float] = defaultdict(float)
        self.peak: dict[str, int] = defaultdict(int)
        self.calls: dict[str, int] = defaultdict(int)
        self.missing: list[str] = []
        self._stack: list[dict[str, float]] = []

    def _targets(self) -> list[tuple[Any, str, Any]]:
        sim, lay, obs, rea = simulate_module, layover_module, observation_module, reallocation_module
        facet = lambda args, kwargs: "gather" if kwargs.get("gather") else "scatter"  # noqa: E731
        return [
            (sim, "open_dem", "open_dem"),
            (lay, "open_dem", "open_dem"),
            (sim, "cell_geometry", "cell_geometry"),
            (sim, "radar_window", "window"),
            (sim, "oversample_factor", "oversample_factor"),
            (sim, "visibility_masks", "sweep"),
            (simulate_cells, "slant_range_spacing", "sweep"),
            (sim.Simulation, "facet_pass", facet),
            (sim, "smooth_samples", "smooth_fields"),
            (sim, "radar_sums", "radar_buffers"),
            (sim, "clear_residue", "clear_residue"),
            (sim.SmoothFields, "evaluate", "smooth_fields"),
            (sim.Simulation, "to_dataset", "dataset_assembly"),
            (rea, "result_dataset", "dataset_assembly"),
            (lay, "resolve_observation", "input"),
            (obs.Observation, "on_window", "input"),
            (rea, "check_intensity", "input"),
            (rea, "reallocate", "reallocate_rest"),
            (rea, "ratios_in_place", "ratios"),
        ]

    def _call(self, name: str, func, args, kwargs):
        frame = {"children": 0.0, "peak": 0}
        if self.trace_memory:
            parent = self._stack[-1]
            parent["peak"] = max(parent["peak"], tracemalloc.get_traced_memory()[1])
            tracemalloc.reset_peak()
        self._stack.append(frame)
        start = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            elapsed = time.perf_counter() - start
            self._stack.pop()
            self.seconds[name] += elapsed - frame["children"]
            self.calls[name] += 1
            self._stack[-1]["children"] += elapsed
            if self.trace_memory:
                frame["peak"] = max(frame["peak"], tracemalloc.get_traced_memory()[1])
                self.peak[name] = max(self.peak[name], frame["peak"])
                self._stack[-1]["peak"] = max(self._stack[-1]["peak"], frame["peak"])
                tracemalloc.reset_peak()

    @contextlib.contextmanager
    def _patched(self):
        saved = []
        for owner, attribute, name in self._targets():
            original = owner.__dict__.get(attribute) if isinstance(owner, type) else getattr(owner, attribute, None)
            if original is None:
                self.missing.append(f"{getattr(owner, '__name__', owner)}.{attribute}")
                continue

            def wrapper(*args, _original=original, _name=name, **kwargs):
                label = _name(args, kwargs) if callable(_name) else _name
                return self._call(label, _original, args, kwargs)

            functools.update_wrapper(wrapper, original)
            saved.append((owner, attribute, original))
            setattr(owner, attribute, wrapper)
        try:
            yield
        finally:
            for owner, attribute, original in reversed(saved):
                setattr(owner, attribute, original)

    def run(self, func) -> tuple[Any, float, int]:
        """(result, total seconds, peak traced bytes) of ``func()`` with the phases wrapped."""
        root = {"children": 0.0, "peak": 0}
        self._stack = [root]
        if self.trace_memory:
            tracemalloc.reset_peak()
        with self._patched():
            start = time.perf_counter()
            result = func()
            total = time.perf_counter() - start
        if self.trace_memory:
            root["peak"] = max(root["peak"], tracemalloc.get_traced_memory()[1])
        self.seconds["other"] = total - root["children"]
        return result, total, root["peak"]


# --------------------------------------------------------------------------- memory (child process)

def _rss_now() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kB on Linux


def _peak_rss() -> int:
    """This process's own peak resident set: VmHWM, else ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return _maxrss()


def _reset_peak_rss() -> bool:
    """Reset the peak resident set (Linux: ``echo 5 > /proc/self/clear_refs``).

    Needed: a child's ``ru_maxrss`` starts at the parent's resident set (the forked copy of
    the parent's memory counts towards it), which can exceed anything the child does, and
    stays so (the reset clears VmHWM, the process's own peak, not what exec inherited).
    """
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def memory_child(directory: str, projection: str) -> dict[str, Any]:
    """Run in a fresh process: peak memory of one reconstruct() on the saved inputs."""
    geometry = make_geometry()
    # Warm: load the compiled kernels (on a tiny DEM) before the baseline.
    small = make_dem(64)
    reconstruct(small, speckled_observation(simulate(small, geometry, projection=projection)), geometry,
                projection=projection)
    heights = np.load(Path(directory) / "heights.npy")
    n = heights.shape[0]
    dem = make_dem(n, heights)
    obs = np.load(Path(directory) / f"observation-{projection}.npy")
    coords = np.load(Path(directory) / f"coords-{projection}.npz")
    observation = xr.DataArray(obs, dims=("line", "sample"),
                               coords={"line": coords["line"], "sample": coords["sample"]})
    inputs = int(dem.nbytes + observation.nbytes)
    del small, heights, obs
    gc.collect()
    inherited_maxrss = _maxrss()
    reset = _reset_peak_rss()
    rss_before, maxrss_before = _rss_now(), _peak_rss()
    result = reconstruct(dem, observation, geometry, projection=projection)
    maxrss_after = _peak_rss()
    output = int(result.nbytes)
    del result
    gc.collect()
    tracemalloc.start()
    profile = PhaseProfile(trace_memory=True)
    _result, seconds, traced_peak = profile.run(
        lambda: reconstruct(dem, observation, geometry, projection=projection))
    traced_end = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    cells = n * n
    return {
        "side": n, "cells": cells, "projection": projection,
        "baseline_rss_bytes": rss_before, "maxrss_before_bytes": maxrss_before,
        "ru_maxrss_at_start_bytes": inherited_maxrss, "peak_reset": reset,
        "inputs_bytes": inputs,
        "rss_peak_rise_bytes": maxrss_after - rss_before,
        "rss_bytes_per_cell": (maxrss_after - rss_before) / cells,
        "peak_observed": maxrss_after > maxrss_before,
        "traced_peak_bytes": traced_peak, "traced_bytes_per_cell": traced_peak / cells,
        "traced_retained_bytes_per_cell": traced_end / cells,
        "output_bytes_per_cell": output / cells,
        "phase_traced_peak_bytes_per_cell": {k: v / cells for k, v in sorted(profile.peak.items())},
        "traced_run_seconds": seconds,
    }


def measure_memory(directory: str, projection: str) -> dict[str, Any]:
    command = [sys.executable, str(Path(__file__).resolve()), "--memory-child", directory, "--projection", projection]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
    if done.returncode != 0:
        return {"projection": projection, "error": (done.stderr or done.stdout)[-2000:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------------------- numpy twin

def twin_comparison(dem: xr.DataArray, geometry: RadarGeometry, observation: xr.DataArray) -> dict[str, Any]:
    """Bilinear reconstruction core: Numba kernels against the numpy twin, agreement and speed."""
    from twins import reallocation as twins_projection

    state = run_simulation(dem, geometry, projection="bilinear")
    observed = intensity_on_window(observation, state.window)
    pixel_area = np.nan_to_num(state.pixel_area)
    library = reallocate(state, observed)
    twin = twins_projection.reallocate_bilinear(state, observed, pixel_area)

    def relative(a, b):
        scale = float(np.nanmax(np.abs(b))) or 1.0
        return float(np.nanmax(np.abs(a - b)) / scale)

    images = max(relative(twin["images"][q], state.images[q]) for q in (0, 1))
    energy = relative(twin["energy"], library["energy"])
    lib_sigma0 = library["backscatter"]
    same_nan = bool(np.array_equal(np.isnan(lib_sigma0), np.isnan(twin["sigma0"])))
    both = np.isfinite(lib_sigma0) & np.isfinite(twin["sigma0"]) & (lib_sigma0 != 0)
    sigma0 = float(np.max(np.abs(twin["sigma0"][both] / lib_sigma0[both] - 1))) if both.any() else 0.0
    delivered = np.nan_to_num(observed) * pixel_area
    expected = float(delivered[state.images[0] > 0].sum())
    conservation = {
        "observed_energy_in_simulated_pixels": expected,
        "library_reallocated": float(np.nansum(library["energy"])),
        "twin_reallocated": float(np.nansum(twin["energy"])),
    }
    conservation["library_relative_error"] = abs(conservation["library_reallocated"] / expected - 1)
    conservation["twin_relative_error"] = abs(conservation["twin_reallocated"] / expected - 1)
    agree = (max(images, energy) <= TWIN_TOLERANCE and sigma0 <= TWIN_CELL_TOLERANCE and same_nan
             and max(conservation["library_relative_error"], conservation["twin_relative_error"]) <= TWIN_TOLERANCE)

    def kernel_core():
        images = simulate_cells.channels(state.facet_pass(gather=False)[-1])
        with np.errstate(invalid="ignore", divide="ignore"):
            ratios = np.where(images[:2] > 0, np.nan_to_num(observed) * pixel_area / images[:2], 0.0)
        return state.facet_pass(gather=True, ratios=np.ascontiguousarray(ratios))[0]

    kernel_seconds = best_time(kernel_core)
    reallocate_seconds = best_time(lambda: reallocate(state, observed))
    twin_seconds = best_time(lambda: twins_projection.reallocate_bilinear(state, observed, pixel_area),
                             repeats=1, min_total=0.0)
    cells = dem.size
    return {
        "side": dem.shape[0], "cells": cells, "projection": "bilinear", "contribution": "model",
        "oversample": state.oversample, "facets_per_cell": state.oversample**2,
        "what": "facets + scatter (simulated images) + ratios + gather (energy) on the cell geometry of "
                "run_simulation; kernel: Simulation.facet_pass(scatter) + ratios + facet_pass(gather)",
        "tolerance": {"images_energy_relative_to_max": TWIN_TOLERANCE, "sigma0_per_cell": TWIN_CELL_TOLERANCE},
        "agree": agree,
        "max_relative_difference": {"images": images, "energy": energy, "sigma0": sigma0},
        "same_nan_pattern": same_nan, "energy_conservation": conservation,
        "kernel_core_seconds": kernel_seconds, "library_reallocate_seconds": reallocate_seconds,
        "twin_seconds": twin_seconds,
        "kernel_core_cells_per_second": cells / kernel_seconds,
        "twin_cells_per_second": cells / twin_seconds,
        "ratio_kernel_to_twin": twin_seconds / kernel_seconds,
    }


# --------------------------------------------------------------------------- kernel costs

def _tile_pass_ns(state, view: tuple[slice, slice]) -> dict[str, float]:
    """ns per cell of one scatter and one gather pass of the facet kernel over the cells
    of ``view`` (with a halo of one cell), on this thread."""
    cells = state.cells
    line, sample, look, valid = (np.ascontiguousarray(cells[name][view])
                                 for name in ("line", "sample", "look", "valid"))
    ecef = simulate_cells.cell_ecef(cells, view[0].start, view[0].stop, view[1].start, view[1].stop)
    shadowed = np.isin(np.ascontiguousarray(state.shadow[view]), (1, 2))
    line0, n_lines, sample0, n_samples = state.window
    first_line, count, first_sample, n = simulate_module.tile_reach(line, sample, state.window)
    ratios = compute.gather_buffer(np.random.default_rng(1).random((2, n_lines, n_samples)), state.exact)
    sums = simulate_module.radar_sums(n_lines, n_samples)
    c = state.contribution
    shape = line.shape

    def facet_pass(gather: bool) -> None:
        energy = np.zeros((2, *shape))
        # As reconstruct runs them: the scatter without per-cell sums, the gather with.
        per_cell = [np.zeros(shape) for _ in range(3)] + [np.full(shape, np.nan)] if gather else [np.zeros((0, 0))] * 4
        buffer = ratios if gather else np.zeros(radar_buffers.scatter_buffer_shape(count, n, state.exact))
        origin = (line0, sample0) if gather else (line0 + first_line, sample0 + first_sample)
        facets.facet_pass(ecef, line, sample, look, valid, shadowed, c.user_weight, c.cell_class, c.class_tables,
                          state.oversample, c.code, c.law, c.table, state.exact, gather, *origin, buffer,
                          buffer.reshape(-1), 1, shape[0] - 1, 1,
                          shape[1] - 1, energy, *per_cell)
        if not gather:
            radar_buffers.add_tile(buffer, state.exact, sums, first_line, first_sample)

    own = (shape[0] - 2) * (shape[1] - 2)
    return {name: best_time(lambda gather=gather: facet_pass(gather)) / own * 1e9
            for name, gather in (("scatter", False), ("gather", True))}


def kernel_costs(dem: xr.DataArray, geometry: RadarGeometry) -> dict[str, Any]:
    """Single-thread cost per DEM cell of the facet kernel's scatter and gather passes on
    one tile of the library's size in the middle of the scene (``kernels.facets``, as
    ``Simulation.facet_pass`` runs it on each tile), exact and bilinear; and what two
    cores could reach if everything else in ``reconstruct`` were free."""
    out: dict[str, Any] = {"tile_cells": simulate_module.TILE_CELLS}
    cores = min(2, os.cpu_count() or 1)
    side = min(simulate_module.TILE_SIDE, dem.shape[0] - 2, dem.shape[1] - 2)
    first = (dem.shape[0] - side) // 2, (dem.shape[1] - side) // 2
    view = (slice(first[0] - 1, first[0] + side + 1), slice(first[1] - 1, first[1] + side + 1))
    for projection in PROJECTIONS:
        state = run_simulation(dem, geometry, projection=projection, keep_per_cell=False)
        ns = _tile_pass_ns(state, view)
        out[projection] = {
            "oversample": state.oversample, "tile_side": side, "ns_per_cell_one_thread": ns,
            "cells_per_second_bound": {
                "what": f"DEM cells/s of reconstruct on {cores} cores if everything but one scatter and one "
                        "gather pass were free",
                "value": cores / ((ns["scatter"] + ns["gather"]) * 1e-9),
            },
        }
    return out


# --------------------------------------------------------------------------- distributed

#: DEM rows per block of the block-wise runs.
ROWS_PER_BLOCK = 256


@contextlib.contextmanager
def distributed_clients():
    """The ``client`` values to compare: local threads (None), and one dask LocalCluster
    for the whole run (so that its start-up is not timed)."""
    clients: dict[str, Any] = {"threads": None}
    cluster = client = None
    try:
        from dask.distributed import Client, LocalCluster

        cluster = LocalCluster(processes=True, dashboard_address=None)
        client = Client(cluster)
        clients["dask_local_cluster"] = client
    except Exception as exc:  # no dask.distributed, or it cannot start here
        clients["dask_local_cluster"] = f"unavailable: {type(exc).__name__}: {exc}"
    try:
        yield clients
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def distributed_comparison(client, observation, dem, geometry, projection, in_memory, in_memory_seconds,
                           repeats) -> dict[str, Any]:
    if isinstance(client, str) and client.startswith("unavailable"):
        return {"error": client}

    def run():
        return reconstruct(dem, observation, geometry, projection=projection, chunks=ROWS_PER_BLOCK, client=client,
                           progress=False)

    try:
        seconds = best_time(run, repeats=repeats)
        result = run()
        a, b = np.asarray(result["backscatter"].values, np.float64), in_memory["backscatter"].values.astype(np.float64)
        both = np.isfinite(a) & np.isfinite(b) & (b != 0)
        return {
            "seconds": seconds, "cells_per_second": dem.size / seconds,
            "speed_relative_to_in_memory": in_memory_seconds / seconds,
            "rows_per_block": ROWS_PER_BLOCK,
            "max_relative_difference_backscatter": float(np.max(np.abs(a[both] / b[both] - 1))) if both.any() else None,
            "same_nan_pattern": bool(np.array_equal(np.isnan(a), np.isnan(b))),
        }
    except Exception as exc:  # record, do not stop the benchmark
        return {"error": f"{type(exc).__name__}: {exc}"}


# --------------------------------------------------------------------------- coarse DEM, real geometry

#: Copernicus DEM 30 m (1 arc second, EGM96 heights) around Rome, inside the Rome GRD.
ROME_DEM = Path("dem") / "rome_cop30_egm96.tif"
#: EGM96 undulations, to turn its heights into ellipsoidal ones.
GEOID = Path("geoid") / "egm96_15.gtx"
#: The projected case: the same heights on a UTM 33N grid of this spacing (m).
UTM_CRS, UTM_SPACING = "EPSG:32633", 30.0
#: DEM cells a side of the geographic case (the DEM itself has 360: it is mirrored to this).
COARSE_SIDE, COARSE_SIDE_QUICK = 1440, 360
#: SRTM 3" heights of eastern Turkey (1000 x 1000 cells, 1111-3270 m, EGM96): the relief of
#: the mountains case, placed cell for cell on the Rome DEM's 1" grid.
MOUNTAIN_DEM = Path("dem") / "eastern_turkey_srtm3.tif"


def numba_threads() -> int:
    """Threads the kernels run on (Numba's setting)."""
    import numba

    return numba.get_num_threads()


def mirrored(heights: np.ndarray, side: int) -> np.ndarray:
    """``heights`` mirrored (``np.pad(mode="symmetric")``: real heights, no seams) or cropped
    to ``side`` x ``side`` cells, from its first row and column."""
    extra = max(0, side - heights.shape[0]), max(0, side - heights.shape[1])
    return np.pad(heights, ((0, extra[0]), (0, extra[1])), mode="symmetric")[:side, :side]


def coarse_inputs(shared: Path, side: int) -> tuple[RadarGeometry, dict[str, xr.DataArray], str | None]:
    """The Rome GRD geometry and the coarse DEMs under it: ``geographic``, the Copernicus
    DEM on its own 1" grid, mirrored (:func:`mirrored`) from 360 to ``side`` cells a side,
    then made ellipsoidal with the geoid grid; ``projected``, that DEM resampled
    bilinearly to a UTM 33N grid of ``UTM_SPACING`` m inside its footprint;
    ``mountains``, transplanted relief: the SRTM 3" heights of eastern Turkey (1111-3270
    m, EGM96), mirrored or cropped to ``side`` cells a side and placed cell for cell on
    the Rome DEM's 1" grid, made ellipsoidal with the geoid grid there. The shared data
    hold no DEM of mountains under a GRD (Rome is flat: no layover, no shadow), so real
    mountain heights are put under the Rome GRD; its cells (23 m x 31 m) are 3x smaller
    than SRTM's 3" (70 m x 93 m there), so its slopes are 3x steeper than the real ones,
    Alpine rather than Anatolian. Or a reason to skip when the data are absent."""
    import rasterio
    from pyproj import Transformer
    from rasterio.warp import Resampling, reproject

    paths = [shared / "s1" / ROME_GRD_NAME, shared / ROME_DEM, shared / GEOID, shared / MOUNTAIN_DEM]
    absent = [str(p) for p in paths if not p.exists()]
    if absent:
        return None, {}, f"the real reference data are absent ({', '.join(absent)})"
    geometry = RadarGeometry.from_sentinel1(paths[0], "IW/VV")
    with rasterio.open(paths[1]) as source:
        heights, transform = source.read(1).astype(np.float32), source.transform
    heights = mirrored(heights, side)
    geographic = open_dem((heights, transform, "EPSG:4326"), vertical_datum="egm96", geoid_grid=paths[2])
    with rasterio.open(paths[3]) as source:
        relief = mirrored(source.read(1).astype(np.float32), side)
    mountains = open_dem((relief, transform, "EPSG:4326"), vertical_datum="egm96", geoid_grid=paths[2])
    # The largest UTM rectangle inside the geographic footprint: no void corners.
    west, north = transform * (0, 0)
    east, south = transform * (side, side)
    to_utm = Transformer.from_crs("EPSG:4326", UTM_CRS, always_xy=True)
    x, y = to_utm.transform([west, west, east, east], [north, south, north, south])
    left, right, top, bottom = max(x[:2]), min(x[2:]), min(y[0], y[2]), max(y[1], y[3])
    shape = int((top - bottom) // UTM_SPACING), int((right - left) // UTM_SPACING)
    utm_transform = Affine(UTM_SPACING, 0, left, 0, -UTM_SPACING, top)
    projected = np.full(shape, np.nan, dtype=np.float32)
    reproject(geographic.values, projected, src_transform=transform, src_crs="EPSG:4326", dst_transform=utm_transform,
              dst_crs=UTM_CRS, resampling=Resampling.bilinear, src_nodata=np.nan, dst_nodata=np.nan)
    return geometry, {"geographic": geographic,
                      "projected": open_dem((projected, utm_transform, UTM_CRS), vertical_datum="ellipsoid"),
                      "mountains": mountains}, None


def dem_cell_size(dem: xr.DataArray) -> list[float]:
    """Ground size (m) of a DEM cell along x and along y, at the DEM's centre."""
    dx, dy = abs(float(dem.x[1] - dem.x[0])), abs(float(dem.y[1] - dem.y[0]))
    if not dem.rio.crs.is_geographic:
        return [dx, dy]
    lat = float(dem.y.mean())
    prime_vertical, meridional = scene.radii_of_curvature(lat)
    return [math.radians(dx) * prime_vertical * math.cos(math.radians(lat)), math.radians(dy) * meridional]


def coarse_case(name: str, dem: xr.DataArray, geometry: RadarGeometry, projections: list[str],
                repeats: int) -> list[dict[str, Any]]:
    """``simulate`` and ``reconstruct`` of one coarse DEM: DEM cells/s and radar pixels/s
    (best of ``repeats`` warm runs), and the phase profile of one run of each."""
    rows = []
    for projection in projections:
        run_sim = functools.partial(simulate, dem, geometry, projection=projection, progress=False)
        sim_runs = timed_runs(run_sim, repeats=repeats)
        simulation = run_sim()
        observation = speckled_observation(simulation)
        run_rec = functools.partial(reconstruct, observation, dem, geometry, projection=projection, progress=False)
        rec_runs = timed_runs(run_rec, repeats=repeats)
        sim_profile, rec_profile = PhaseProfile(), PhaseProfile()
        _, sim_profiled, _ = sim_profile.run(run_sim)
        result, rec_profiled, _ = rec_profile.run(run_rec)
        pixels = int(simulation.sizes["line"] * simulation.sizes["sample"])
        layover = result["layover"].values
        row = {
            "case": name, "crs": str(dem.rio.crs), "shape": list(dem.shape), "cells": int(dem.size),
            "cell_size_m": dem_cell_size(dem), "projection": projection,
            "oversample": int(result.attrs["oversample"]),
            "radar_window": [int(simulation.sizes["line"]), int(simulation.sizes["sample"])],
            "radar_pixels": pixels, "radar_pixels_per_cell": pixels / dem.size,
            "dem_step_in_pixels": dem_step_in_pixels(simulation),
            "layover_fraction": float(np.isin(layover, (1, 2)).mean()),
            "shadow_fraction": float(np.isin(result["shadow"].values, (1, 2)).mean()),
            "outside_fraction": float((layover == 255).mean()),
        }
        for label, runs, profile, profiled in (("simulate", sim_runs, sim_profile, sim_profiled),
                                               ("reconstruct", rec_runs, rec_profile, rec_profiled)):
            seconds = runs["best"]
            row[label] = {"seconds": seconds, "cells_per_second": dem.size / seconds,
                          "runs_seconds": runs["runs"], "spread": runs["spread"],
                          "radar_pixels_per_second": pixels / seconds,
                          "phases_seconds": dict(sorted(profile.seconds.items(), key=lambda kv: -kv[1])),
                          "profiled_run_seconds": profiled, "phase_calls": dict(profile.calls),
                          "profile_missing": profile.missing}
        row["load_average"] = os.getloadavg()
        row["threads"] = numba_threads()
        rows.append(row)
        print(f"{name:10s} {projection:8s} {row['oversample']:2d} {row['shape'][0]:5d}x{row['shape'][1]:<5d} "
              f"{pixels / 1e6:6.2f} M px " + "  ".join(
                  f"{label} {row[label]['seconds']:6.2f} s {row[label]['cells_per_second'] / 1e6:5.2f} M cells/s "
                  f"{row[label]['radar_pixels_per_second'] / 1e6:6.2f} M px/s" for label in ("simulate", "reconstruct"))
              + f"  layover {row['layover_fraction']:.1%} shadow {row['shadow_fraction']:.1%}"
              + f"  spread ±{row['simulate']['spread']:.0%} / ±{row['reconstruct']['spread']:.0%}, "
              f"{row['threads']} threads, load {row['load_average'][0]:.1f}", flush=True)
        for label in ("simulate", "reconstruct"):
            r = row[label]
            print(f"        {label} phases (s, of {r['profiled_run_seconds']:.2f}): "
                  f"{_phase_line(r['phases_seconds'], r['phase_calls'])}", flush=True)
        del simulation, observation, result
        gc.collect()
    return rows


def run_coarse(shared: Path, side: int, projections: list[str], repeats: int) -> dict[str, Any]:
    """The coarse-DEM section of the report: DEMs 2-3x coarser than the pixels under the
    real Rome GRD geometry (10 m pixels): Rome geographic and projected, and transplanted
    mountains (``coarse_inputs``)."""
    geometry, dems, skipped = coarse_inputs(shared, side)
    section: dict[str, Any] = {
        "geometry": f"Sentinel-1B IW GRD annotation {ROME_GRD_NAME} (10 m ground-range pixels), degree-5 orbit",
        "dems": {"geographic": f"{ROME_DEM} (Copernicus 30 m, 1\" = 23 m x 31 m, EGM96 -> ellipsoid with {GEOID}), "
                               f"mirrored from 360 to {side} cells a side",
                 "projected": f"the geographic DEM resampled bilinearly to {UTM_CRS} at {UTM_SPACING:g} m, inside "
                              "its footprint",
                 "mountains": f"transplanted relief: the real SRTM 3\" heights of eastern Turkey ({MOUNTAIN_DEM}, "
                              f"1111-3270 m, EGM96 -> ellipsoid with {GEOID}) "
                              f"{'mirrored' if side > 1000 else 'cropped'} "
                              f"to {side} cells a side and placed cell for cell on the Rome DEM's 1\" grid under the "
                              "Rome GRD, since the shared data hold no DEM of mountains under a GRD; its cells are 3x "
                              "smaller than SRTM's 3\", so its slopes are 3x steeper than the real ones (Alpine)"},
        "shared_data": str(shared), "repeats": repeats, "results": [],
    }
    if skipped:
        print(f"coarse DEM: skipped: {skipped}", flush=True)
        section["skipped"] = skipped
        return section
    print(f"coarse DEM under the Rome GRD: {'case':10s} {'proj':8s} k, DEM shape, radar pixels in the window; "
          "best of warm runs", flush=True)
    for name, dem in dems.items():
        section["results"] += coarse_case(name, dem, geometry, projections, repeats)
    return section


# --------------------------------------------------------------------------- main

def _repeats(n: int, quick: bool, *, distributed: bool = False) -> int:
    """Timed warm runs per measurement (best of them): fewer for the distributed
    comparisons at the largest sizes."""
    return 1 if quick else (2 if distributed and n * n > 1024 * 1024 else 3)


def _phase_line(phases: dict[str, float], calls: dict[str, int]) -> str:
    order = sorted(phases.items(), key=lambda kv: -kv[1])
    return ", ".join(f"{k} {v:.2f}" + (f" ({calls[k]} calls)" if calls.get(k, 1) > 1 else "")
                     for k, v in order if v >= 0.005)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/reconstruct.json)")
    parser.add_argument("--sizes", default=None, help="DEM sides, default 1024,2048,4096 (--quick: 256,512)")
    parser.add_argument("--projections", default=",".join(PROJECTIONS))
    parser.add_argument("--quick", action="store_true", help="fast smoke run: sizes 256,512, one timed repeat")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory subprocesses")
    parser.add_argument("--skip-distributed", action="store_true", help="skip the block-wise comparisons")
    parser.add_argument("--coarse", choices=("yes", "no", "only"), default="yes",
                        help="the coarse-DEM case under the real Rome GRD after the others (default), not at all, "
                             "or alone")
    parser.add_argument("--coarse-side", type=int, default=None,
                        help=f"DEM cells a side of its geographic case (default {COARSE_SIDE}; --quick: "
                             f"{COARSE_SIDE_QUICK}, the DEM as it comes)")
    parser.add_argument("--shared-data", type=Path, default=SHARED_DATA,
                        help="the real reference data (default ../shared/data beside the repository)")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--projection", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.memory_child:
        print(json.dumps(memory_child(args.memory_child, args.projection)))
        return 0
    sizes = [int(s) for s in (args.sizes or ("256,512" if args.quick else "1024,2048,4096")).split(",")]
    if args.coarse == "only":
        sizes = []
    projections = [p.strip() for p in args.projections.split(",")]
    out = args.out or ("benchmarks/results/reconstruct-quick.json" if args.quick
                       else "benchmarks/results/reconstruct.json")
    geometry = make_geometry()
    report: dict[str, Any] = {
        "benchmark": "simulate_reconstruct",
        "machine": machine(),
        "load_average_at_start": os.getloadavg(),
        "setup": {
            "dem": f"EPSG:4326 grid of {SPACING} m cells at lon/lat {CENTER}; fractal terrain 1/f^2 flat beyond "
                   f"{OUTER_SCALE} cells, RMS slope {RMS_SLOPE}",
            "geometry": f"RadarGeometry.synthetic heading 193, incidence {INCIDENCE}, line_spacing {SPACING} m, "
                        f"sample_spacing {SPACING} * sin(mid incidence) m (ground-range pixel {SPACING} m)",
            "observation": f"simulated image of the same projection times {LOOKS}-look gamma speckle",
            "contribution": "model", "oversample": "auto",
            "timing": "best of warm runs (benchmarks/_common.best_time)",
            "scaling": "cells_per_second / cells_per_second at the smallest size (1.0 = linear)",
        },
        "results": [], "memory": [], "numpy_twin": None, "kernel_costs": None,
        "distributed": {"rows_per_block": ROWS_PER_BLOCK, "results": []}, "coarse": None,
        "complete": False,
    }
    print(f"machine: {report['machine']['cpu_count']} CPUs, {report['machine']['numba_threads']} Numba threads; "
          f"load {report['load_average_at_start'][0]:.1f}", flush=True)
    print("k: facets per DEM cell side (oversample); scaling: cells/s over cells/s at the smallest size", flush=True)
    if sizes:
        print(f"{'size':>6s} {'proj':8s} {'k':>2s} {'layover':>7s} {'simulate':>14s} {'reconstruct':>14s} "
              f"{'scaling sim/rec':>15s}", flush=True)
    first: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="sarheight-bench-") as scratch:
        for n in sizes:
            heights = mountain_terrain(n)
            dem = make_dem(n, heights)
            np.save(Path(scratch) / "heights.npy", heights)
            repeats = _repeats(n, args.quick)
            for projection in projections:
                sim_runs = timed_runs(lambda dem=dem,
                                      projection=projection: simulate(dem, geometry, projection=projection),
                                      repeats=repeats)
                sim_seconds = sim_runs["best"]
                simulation = simulate(dem, geometry, projection=projection)
                observation = speckled_observation(simulation)
                np.save(Path(scratch) / f"observation-{projection}.npy", observation.values)
                np.savez(Path(scratch) / f"coords-{projection}.npz", line=observation["line"].values,
                         sample=observation["sample"].values)
                rec_runs = timed_runs(
                    lambda obs=observation, dem=dem,
                    projection=projection: reconstruct(dem, obs, geometry, projection=projection),
                    repeats=repeats)
                rec_seconds = rec_runs["best"]
                profile = PhaseProfile()
                result, profiled_seconds, _ = profile.run(
                    lambda obs=observation, dem=dem,
                    projection=projection: reconstruct(dem, obs, geometry, projection=projection))
                layover = result["layover"].values
                row = {
                    "side": n, "cells": dem.size, "projection": projection,
                    "oversample": int(result.attrs["oversample"]),
                    "layover_fraction": float(np.isin(layover, (1, 2)).mean()),
                    "shadow_fraction": float(np.isin(result["shadow"].values, (1, 2)).mean()),
                    "outside_fraction": float((layover == 255).mean()),
                    "radar_window": [int(simulation.sizes["line"]), int(simulation.sizes["sample"])],
                    "dem_step_in_pixels": dem_step_in_pixels(simulation),
                    "simulate": {"seconds": sim_seconds, "cells_per_second": dem.size / sim_seconds,
                                 "runs_seconds": sim_runs["runs"], "spread": sim_runs["spread"]},
                    "reconstruct": {"seconds": rec_seconds, "cells_per_second": dem.size / rec_seconds,
                                    "runs_seconds": rec_runs["runs"], "spread": rec_runs["spread"]},
                    "threads": numba_threads(),
                    "reconstruct_phases_seconds": dict(sorted(profile.seconds.items(), key=lambda kv: -kv[1])),
                    "profiled_run_seconds": profiled_seconds,
                    "phase_calls": dict(profile.calls),
                    "profile_missing": profile.missing,
                    "load_average": os.getloadavg()[0],
                }
                base = first.setdefault(projection, {"simulate": row["simulate"]["cells_per_second"],
                                                     "reconstruct": row["reconstruct"]["cells_per_second"]})
                for name in ("simulate", "reconstruct"):
                    row[name]["scaling_vs_smallest"] = row[name]["cells_per_second"] / base[name]
                report["results"].append(row)
                print(f"{n:5d}² {projection:8s} {row['oversample']:2d} {row['layover_fraction']:7.1%} "
                      f"{row['simulate']['cells_per_second'] / 1e6:7.3f} Mcell/s "
                      f"{row['reconstruct']['cells_per_second'] / 1e6:7.3f} Mcell/s "
                      f"{row['simulate']['scaling_vs_smallest']:7.2f} /{row['reconstruct']['scaling_vs_smallest']:5.2f}"
                      f"  spread ±{row['simulate']['spread']:.0%} / ±{row['reconstruct']['spread']:.0%}, "
                      f"{row['threads']} threads, load {row['load_average']:.1f}", flush=True)
                print(f"        phases (s, of {profiled_seconds:.2f}): "
                      f"{_phase_line(row['reconstruct_phases_seconds'], row['phase_calls'])}",
                      flush=True)
                if n == sizes[0] and projection == projections[-1]:
                    try:
                        report["kernel_costs"] = kernel_costs(dem, geometry)
                        for name in PROJECTIONS:
                            c = report["kernel_costs"][name]
                            print(f"        facet kernel, {name}, one thread, one tile: "
                                  f"{c['ns_per_cell_one_thread']['scatter']:.0f}"
                                  f" ns (scatter) / {c['ns_per_cell_one_thread']['gather']:.0f} ns (gather) per cell; "
                                  f"these passes alone bound reconstruct to "
                                  f"{c['cells_per_second_bound']['value'] / 1e6:.2f}"
                                  " M cells/s", flush=True)
                    except Exception as exc:
                        report["kernel_costs"] = {"error": f"{type(exc).__name__}: {exc}"}
                        print(f"        kernel costs failed: {report['kernel_costs']['error']}", flush=True)
                if n == sizes[0] and projection == "bilinear":
                    try:
                        report["numpy_twin"] = twin_comparison(dem, geometry, observation)
                        t = report["numpy_twin"]
                        print(f"        numpy twin (bilinear core, {t['facets_per_cell']} splatted facets/cell): "
                              f"{t['twin_cells_per_second'] / 1e6:.4f} Mcell/s, kernel "
                              f"{t['kernel_core_cells_per_second'] / 1e6:.3f}"
                              f" Mcell/s: kernel/twin {t['ratio_kernel_to_twin']:.1f}x; agree within "
                              f"{TWIN_TOLERANCE:g} of the max"
                              f" ({TWIN_CELL_TOLERANCE:g} per cell): "
                              f"{t['agree']} (max rel {max(t['max_relative_difference'].values()):.1e})", flush=True)
                    except Exception as exc:
                        report["numpy_twin"] = {"error": f"{type(exc).__name__}: {exc}"}
                        print(f"        numpy twin failed: {report['numpy_twin']['error']}", flush=True)
                del simulation, observation, result
                gc.collect()
            if not args.no_memory:
                for projection in projections:
                    entry = measure_memory(scratch, projection)
                    report["memory"].append({"side": n, **entry})
                    if "error" in entry:
                        print(f"        memory {projection}: FAILED {entry['error'][-300:]}", flush=True)
                        continue
                    hot = sorted(entry["phase_traced_peak_bytes_per_cell"].items(), key=lambda kv: -kv[1])[:3]
                    print(f"        memory {projection}: peak RSS rise {entry['rss_bytes_per_cell']:.0f} B/cell, "
                          f"numpy traced peak {entry['traced_bytes_per_cell']:.0f} B/cell, outputs "
                          f"{entry['output_bytes_per_cell']:.0f} B/cell (baseline "
                          f"{entry['baseline_rss_bytes'] / 2**20:.0f} MiB); "
                          "peaks in " + ", ".join(f"{k} {v:.0f}" for k, v in hot), flush=True)
            del dem, heights
            gc.collect()
            write_json(report, out)
    if not args.skip_distributed and sizes:
        # After the in-memory figures: a LocalCluster's worker processes take some CPU even
        # when idle, and would be running beside those timings.
        with distributed_clients() as clients:
            for n in sizes:
                dem = make_dem(n)
                for projection in projections:
                    observation = speckled_observation(simulate(dem, geometry, projection=projection))
                    result = reconstruct(dem, observation, geometry, projection=projection)
                    rec_seconds = next(row["reconstruct"]["seconds"] for row in report["results"]
                                       if row["side"] == n and row["projection"] == projection)
                    for client_name, client in clients.items():
                        entry = distributed_comparison(client, observation, dem, geometry, projection, result,
                                                       rec_seconds, _repeats(n, args.quick, distributed=True))
                        report["distributed"]["results"].append(
                            {"side": n, "projection": projection, "client": client_name, **entry})
                        print(f"{n:5d}² {projection:8s} distributed ({client_name}): " + (
                            entry["error"][:200] if "error" in entry else
                            f"{entry['cells_per_second'] / 1e6:.3f} Mcell/s, "
                            f"{entry['speed_relative_to_in_memory']:.2f}x "
                            f"in-memory speed, max rel diff {entry['max_relative_difference_backscatter']}, same NaN "
                            f"{entry['same_nan_pattern']}"), flush=True)
                    del observation, result
                    gc.collect()
                write_json(report, out)
    if args.coarse != "no":
        side = args.coarse_side or (COARSE_SIDE_QUICK if args.quick else COARSE_SIDE)
        report["coarse"] = run_coarse(args.shared_data, side, projections, 1 if args.quick else 3)
    report["load_average_at_end"] = os.getloadavg()
    report["complete"] = True
    write_json(report, out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
