"""The speed benchmark of simulation and reconstruction, run on the user's own machine (``sarheight benchmark``).

Times :func:`sarheight.simulate.simulate` and :func:`sarheight.layover.reconstruct`
warm (after the kernels are compiled and a first run), on synthetic mountains, so that
it needs no data:

- ``pixel``: a DEM of ``side`` x ``side`` 10 m cells under 10 m ground-range pixels (DEM
  spacing = pixel spacing);
- ``coarse``: a DEM of ``coarse_side`` x ``coarse_side`` 30 m cells under the same
  pixels: each cell covers about 3 x 3 pixels, as a 30 m DEM under a Sentinel-1 GRD.

The terrain is 1/f^2 noise, flat beyond 5 km, scaled to an RMS slope of 0.5 (27 degrees),
so that every size has the same layover and shadow fractions; the geometry is a straight
orbit (heading 193 degrees, incidence 30-46 degrees) near Rome; the observation is the
simulated image times 4.4-look gamma speckle. Each (case, projection, step) is timed
``repeats`` times: the best and the median run, DEM cells per second of the median, and
the spread (largest minus smallest over the median). Every figure comes with the
threads the kernels ran on and the load average around it.

Where sarsen is installed, the reference peer is timed on the same scenes: its
radiometric terrain correction (:func:`peer_run`), with the ratio of this version's
speed to it.

With ``against``, the same runs of another version of sarheight (a source tree, such as
a ``git worktree`` of an earlier commit) alternate with this one's run by run, each
version in its own process, so that both see the same machine and load: the ratio of
their medians is the speed-up, measured in one run.

The two versions run in worker processes that this module starts on itself (``serve``):
they read one request a line on stdin and answer one JSON line on stdout. A worker for
another tree imports that tree's ``sarheight`` (and its ``kernels`` as
``sarheight.kernels``) and uses only the public API every version has (``open_dem``,
``RadarGeometry.synthetic``, ``simulate``, ``reconstruct`` with ``progress``), so that
earlier commits can be timed (those since ``progress`` was added: all but the first
few). The module imports nothing of sarheight at its top for that reason.
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import json
import math
import os
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

#: Scene centre (lon, lat, degrees) and ground-range pixel (m).
CENTER = (12.6, 41.9)
PIXEL_SPACING = 10.0
#: DEM cell size (m) of the two cases.
CASES = {"pixel": 10.0, "coarse": 30.0}
INCIDENCE = (30.0, 46.0)
HEADING = 193.0
RMS_SLOPE = 0.5
OUTER_SCALE_M = 5120.0
LOOKS = 4.4
STEPS = ("simulate", "reconstruct")
PROJECTIONS = ("exact", "bilinear")

#: The reference peer (timed where it is installed) and what it runs: sarsen's
#: radiometric terrain correction, ``gamma_bilinear`` (every DEM cell geocoded, its
#: gamma area spread bilinearly over the pixels, the image geocoded and divided by it).
PEER = "sarsen"
PEER_STEP = "terrain correction"
PEER_METHOD = "gamma_bilinear"
#: The DEM chunk sarsen's ``terrain_correction`` opens DEMs with, and the overlap (cells)
#: of its radiometry's chunks (its defaults).
PEER_CHUNKS = 1024
PEER_BOUND = 128
#: This version's runs the peer is compared with: (projection, step).
PEER_COMPARED = (("exact", "reconstruct"), ("bilinear", "simulate"))
# Written here, not imported: this module imports nothing of sarheight at its top.
SPEED_OF_LIGHT = 299_792_458.0

WGS84_A = 6378137.0
WGS84_E2 = 6.69437999014e-3


def mountain_terrain(n: int, spacing: float = PIXEL_SPACING, seed: int = 0) -> np.ndarray:
    """Heights (m, float32, min 0) of an ``n`` x ``n`` DEM of ``spacing`` m cells: 1/f^2
    noise flat beyond 5 km (``OUTER_SCALE_M``), scaled to an RMS slope of ``RMS_SLOPE``
    (every size and spacing has the same slope statistics)."""
    rng = np.random.default_rng(seed)
    fy, fx = np.fft.fftfreq(n)[:, None], np.fft.rfftfreq(n)[None, :]
    amplitude = 1.0 / np.maximum(np.hypot(fx, fy), spacing / OUTER_SCALE_M) ** 2
    amplitude[0, 0] = 0.0
    field = np.fft.irfft2(amplitude * np.exp(2j * np.pi * rng.random(amplitude.shape)), s=(n, n))
    d_row, d_col = np.gradient(field, spacing)
    field *= RMS_SLOPE / np.sqrt(np.mean(d_row**2 + d_col**2))
    field -= field.min()
    return field.astype(np.float32)


def radii_of_curvature(lat: float) -> tuple[float, float]:
    """WGS84 radii of curvature (m) at latitude ``lat`` (degrees): prime vertical, meridional."""
    sin2 = math.sin(math.radians(lat)) ** 2
    return WGS84_A / math.sqrt(1 - WGS84_E2 * sin2), WGS84_A * (1 - WGS84_E2) / (1 - WGS84_E2 * sin2) ** 1.5


def grid_transform(n: int, spacing: float) -> tuple[float, float, float, float, float, float]:
    """Affine coefficients (a, b, c, d, e, f) of a geographic grid of ``n`` x ``n`` cells of
    ``spacing`` m, centred on ``CENTER``."""
    lon, lat = CENTER
    prime_vertical, meridional = radii_of_curvature(lat)
    d_lat = math.degrees(spacing / meridional)
    d_lon = math.degrees(spacing / (prime_vertical * math.cos(math.radians(lat))))
    return d_lon, 0.0, lon - n * d_lon / 2, 0.0, -d_lat, lat + n * d_lat / 2


def synthetic_geometry() -> Any:
    """The geometry of every case: a straight orbit (heading ``HEADING``, incidence
    ``INCIDENCE``) over ``CENTER``, ``PIXEL_SPACING`` m lines and ground-range pixels."""
    from sarheight.geometry import RadarGeometry

    mid = math.radians(0.5 * sum(INCIDENCE))
    return RadarGeometry.synthetic(
        center_lon=CENTER[0], center_lat=CENTER[1], heading_deg=HEADING, incidence_near_deg=INCIDENCE[0],
        incidence_far_deg=INCIDENCE[1], line_spacing=PIXEL_SPACING,
        # sample_spacing is the slant-range spacing: this makes the ground-range pixel
        # PIXEL_SPACING at mid incidence.
        sample_spacing=PIXEL_SPACING * math.sin(mid),
    )


def synthetic_scene(side: int, spacing: float) -> tuple[Any, Any]:
    """The DEM (mountains, ``side`` cells of ``spacing`` m) and the geometry of one case,
    through the public API alone."""
    from affine import Affine

    from sarheight.dem import open_dem

    heights = mountain_terrain(side, spacing)
    dem = open_dem((heights, Affine(*grid_transform(side, spacing)), "EPSG:4326"), vertical_datum="ellipsoid")
    return dem, synthetic_geometry()


def speckled(simulation: Any, seed: int = 1) -> Any:
    """The simulated image times ``LOOKS``-look gamma speckle: a beta0-like observation (float32)."""
    area = simulation["simulated_area"]
    rng = np.random.default_rng(seed)
    values = np.nan_to_num(area.values.astype(np.float64)) * rng.gamma(LOOKS, 1.0 / LOOKS, size=area.shape)
    return area.copy(data=values.astype(np.float32)).rename("beta0")


def peer_product(geometry: Any, observation: Any) -> Any:
    """``observation`` (beta0, dims line x sample of ``geometry``'s grid) and the orbit of
    ``geometry`` as the reference peer reads a product: a ``sarsen.SlantRangeSarProduct``
    (state vectors every second over the orbit's span, the image on zero-Doppler time and
    slant-range time axes), made once, so that the peer's runs time the peer alone.

    Its grid parameters are in the scene's own terms: the slant-range spacing of the
    image (sarsen's Sentinel-1 reader takes the annotated spacing over the sine of the
    mid-swath incidence) and the scene's line spacing (``PIXEL_SPACING``)."""
    import sarsen
    import xarray as xr

    orbit = geometry.orbit
    seconds = np.arange(orbit.t_min, orbit.t_max, 1.0)
    position = xr.DataArray(orbit.state(seconds)[0].T, dims=("axis", "azimuth_time"), name="position",
                            coords={"axis": [0, 1, 2],
                                    "azimuth_time": orbit.reference_time + (seconds * 1e9).astype("timedelta64[ns]")})
    line, sample = observation["line"].values, observation["sample"].values
    slant_range = geometry.line_sample_to_time_range(np.zeros_like(sample), sample)[1]
    amplitude = xr.DataArray(np.sqrt(np.nan_to_num(observation.values.astype(np.float64))),
                             dims=("azimuth_time", "slant_range_time"), attrs={"units": "m m-1"},
                             coords={"azimuth_time": geometry.line_to_time(line),
                                     "slant_range_time": 2.0 * slant_range / SPEED_OF_LIGHT})
    grid = geometry.grid
    first_range = float(geometry.line_sample_to_time_range(0.0, 0.0)[1])

    class Product(sarsen.SlantRangeSarProduct):
        """The scene's image as a slant-range product, in the terms sarsen reads."""

        product_type = "SLC"

        def state_vectors(self) -> xr.DataArray:
            """Sensor positions (m, ECEF), dims axis x azimuth_time."""
            return position

        def complex_amplitude(self) -> xr.DataArray:
            """The amplitude (square root of beta0) on zero-Doppler and slant-range time."""
            return amplitude

        def grid_parameters(self, grouping_area_factor: tuple[float, float] = (3.0, 3.0)) -> dict[str, Any]:
            """The grid sarsen sums the gamma areas on: pixels grouped by
            ``grouping_area_factor`` (azimuth, range)."""
            return {"slant_range_time0": 2.0 * first_range / SPEED_OF_LIGHT,
                    "azimuth_time0": grid.first_line_time,
                    "slant_range_time_interval_s": 2.0 * grid.range_spacing / SPEED_OF_LIGHT * grouping_area_factor[1],
                    "slant_range_spacing_m": grid.range_spacing * grouping_area_factor[1],
                    "azimuth_time_interval_s": grid.line_interval * grouping_area_factor[0],
                    "azimuth_spacing_m": PIXEL_SPACING * grouping_area_factor[0]}

    return Product()


def peer_chunks(shape: tuple[int, int], threads: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The DEM chunks the peer runs on: no larger than sarsen's default (``PEER_CHUNKS``),
    at least as many as ``threads`` (dask runs one task a thread: a DEM in one chunk would
    run on one core), none thinner than sarsen's overlap (``PEER_BOUND``) where the DEM
    allows, even in size (dask refuses an overlap deeper than its smallest chunk)."""
    per_axis = max(1, math.ceil(math.sqrt(threads)))
    chunks = []
    for n in shape:
        pieces = min(max(math.ceil(n / PEER_CHUNKS), per_axis), max(1, n // PEER_BOUND))
        edges = np.linspace(0, n, pieces + 1).round().astype(int)
        chunks.append(tuple(int(c) for c in np.diff(edges)))
    return chunks[0], chunks[1]


def peer_run(dem: Any, geometry: Any, observation: Any,
             chunks: tuple[tuple[int, ...], tuple[int, ...]]) -> Callable[[], Any]:
    """A run of the reference peer on one scene: sarsen's radiometric terrain correction
    (``sarsen.apps.do_terrain_correction``, ``gamma_bilinear``, its default grouping of
    3 x 3 pixels) of ``observation`` (as :func:`peer_product` takes it) over ``dem`` in
    ``chunks`` (rows, columns: :func:`peer_chunks`), computed to the end. Returns the run: it gives
    the terrain-corrected gamma0 and the simulated beta0 on the DEM grid (a Dataset)."""
    import warnings

    import xarray as xr
    from sarsen.apps import do_terrain_correction

    product = peer_product(geometry, observation)
    rows, cols = chunks
    # sarsen takes DEMs with y ascending (its open_dem_raster flips north-up rasters).
    raster = dem.isel(y=slice(None, None, -1)).chunk({"y": rows[::-1], "x": cols})
    bound = min(PEER_BOUND, *rows, *cols)

    def run() -> Any:
        with warnings.catch_warnings():
            # sarsen divides by its simulated beta0, zero where no cell lands: not this
            # benchmark's business, and not to be printed.
            warnings.filterwarnings("ignore", "(invalid value|divide by zero) encountered in divide", RuntimeWarning)
            gamma0, simulated = do_terrain_correction(product, raster, correct_radiometry=PEER_METHOD,
                                                      radiometry_chunks=max(*rows, *cols), radiometry_bound=bound)
            return xr.Dataset({"gamma0": gamma0, "simulated_beta0": simulated}).compute()

    return run


def peer_threads() -> int:
    """The threads the peer may run on: dask's threaded scheduler's (one per CPU it may use)."""
    from dask.system import CPU_COUNT

    return int(CPU_COUNT)


# --------------------------------------------------------------------------- worker process

class _TreeFinder(importlib.abc.MetaPathFinder):
    """Imports ``sarheight`` from the source tree ``root`` (``root/sarheight``) and its
    kernels (``root/kernels``) as ``sarheight.kernels``, as an install of it maps them."""

    def __init__(self, root: Path):
        self.locations = {"sarheight": root / "sarheight", "sarheight.kernels": root / "kernels"}

    def find_spec(self, name, path, target=None):
        location = self.locations.get(name)
        if location is None:
            return None
        return importlib.util.spec_from_file_location(name, location / "__init__.py",
                                                      submodule_search_locations=[str(location)])


def prepare_peer(case: str, side: int, runs: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """The worker's answer to preparing the reference peer on a case: its run (put in
    ``runs`` under ``PEER_STEP``) made and run once; whether it is installed, and where
    it is but fails, the error (the run goes on without it)."""
    if importlib.util.find_spec(PEER) is None:
        return {"installed": False}
    try:
        from sarheight.simulate import simulate

        dem, geometry = synthetic_scene(side, CASES[case])
        observation = speckled(simulate(dem, geometry, projection="bilinear", progress=False))
        threads = peer_threads()
        chunks = peer_chunks(dem.shape, threads)
        runs[PEER_STEP] = peer_run(dem, geometry, observation, chunks)
        runs[PEER_STEP]()
        return {"installed": True, "version": sys.modules[PEER].__version__, "cells": int(dem.size),
                "threads": min(threads, len(chunks[0]) * len(chunks[1])),
                "chunks": [max(chunks[0]), max(chunks[1])]}
    except Exception as error:  # a broken install of the peer: say so, time the rest
        return {"installed": True, "error": f"{type(error).__name__}: {error}"}


def serve(tree: str | None) -> None:
    """The worker's loop: prepare scenes and time runs on request (one JSON line each way).

    Requests: ``{"op": "prepare", "case", "side", "projection"}`` builds the scene, runs
    both steps once (compilation, first touch) and answers the version, cells, oversampling
    factor and threads; ``{"op": "time", "case", "side", "projection", "step"}`` answers the
    wall time (s) of one warm run and the load average just before it. The projection
    ``PEER`` prepares the reference peer's run instead (step ``PEER_STEP``), or answers
    that it is not installed.
    """
    # Answers go to the pipe the parent reads; anything else printed (by Python or by
    # native code, on descriptor 1) to stderr, so that it cannot break the protocol.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    if tree:
        sys.meta_path.insert(0, _TreeFinder(Path(tree)))
    import numba

    from sarheight.layover import reconstruct
    from sarheight.simulate import simulate

    package = sys.modules["sarheight"]  # this tree's, or the one installed

    scenes: dict[tuple[str, int, str], dict[str, Any]] = {}
    for line in sys.stdin:
        request = json.loads(line)
        key = (request["case"], int(request["side"]), request["projection"])
        if request["op"] == "prepare" and key[2] == PEER:
            answer = prepare_peer(key[0], key[1], scenes.setdefault(key, {}))
        elif request["op"] == "prepare":
            dem, geometry = synthetic_scene(key[1], CASES[key[0]])
            projection = key[2]
            simulation = simulate(dem, geometry, projection=projection, progress=False)
            observation = speckled(simulation)
            runs: dict[str, Callable[[], Any]] = {
                "simulate": lambda d=dem, g=geometry, p=projection: simulate(d, g, projection=p, progress=False),
                "reconstruct": lambda o=observation, d=dem, g=geometry, p=projection: reconstruct(
                    o, d, g, projection=p, progress=False),
            }
            result = runs["reconstruct"]()
            scenes[key] = runs
            answer = {"version": getattr(package, "__version__", "?"), "cells": int(dem.size),
                      "oversample": int(result.attrs.get("oversample", 0)),
                      "radar_pixels": int(simulation.sizes["line"] * simulation.sizes["sample"]),
                      "threads": numba.get_num_threads(), "source": str(Path(package.__file__).parent)}
            del simulation, result
        else:
            load = os.getloadavg()[0]
            start = time.perf_counter()
            scenes[key][request["step"]]()
            answer = {"seconds": time.perf_counter() - start, "load": load}
        answers.write(json.dumps(answer) + "\n")
        answers.flush()


#: Seconds a worker may take to answer one request (a first preparation compiles the
#: kernels: minutes) before the run stops it as hung.
WORKER_TIMEOUT = 1800.0


class Worker:
    """A worker process timing one version of sarheight (``tree``: its source tree; None:
    the one this module belongs to), stopped as hung when a request takes longer than
    ``timeout`` seconds."""

    def __init__(self, label: str, tree: Path | None, timeout: float = WORKER_TIMEOUT):
        self.label = label
        self.tree = tree
        self.timeout = timeout
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        self._scratch = tempfile.TemporaryDirectory(prefix="sarheight-benchmark-")
        # Run this file by path from a neutral directory: never with the package folder
        # first on sys.path (its io.py, distributed.py would shadow other modules).
        self.process = subprocess.Popen(
            [sys.executable, "-c", "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
             str(Path(__file__).resolve()), "--serve", str(tree or "")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=self._scratch.name, env=env)

    def ask(self, **request: Any) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        from .errors import SarHeightError

        try:
            self.process.stdin.write(json.dumps(request) + "\n")
            self.process.stdin.flush()
            # One line answers each request, so nothing is left in the pipe's buffer
            # between requests: waiting on the descriptor is waiting for the answer.
            ready, _, _ = select.select([self.process.stdout], [], [], self.timeout)
            if not ready:
                self.process.kill()
                what = " ".join(str(request[k]) for k in ("op", "case", "side", "projection", "step") if k in request)
                raise SarHeightError(f"the benchmark's worker for {self.label} gave no answer in {self.timeout:g} s "
                                     f"(to {what}) and was stopped; give --timeout for longer runs")
            answer = self.process.stdout.readline()
        except BrokenPipeError:  # it stopped before reading the request
            answer = ""
        if not answer:
            raise SarHeightError(f"the benchmark's worker for {self.label} stopped (exit status "
                                 f"{self.process.wait()}); its error is printed above")
        return json.loads(answer)

    def close(self) -> None:
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
        self.process.wait()
        self._scratch.cleanup()


# --------------------------------------------------------------------------- the run

def summary(seconds: list[float], cells: int) -> dict[str, Any]:
    """Best, median and spread ((max - min) / median) of repeated runs, and DEM cells per
    second of the median run."""
    median = statistics.median(seconds)
    return {"seconds": seconds, "best": min(seconds), "median": median,
            "spread": (max(seconds) - min(seconds)) / median, "cells_per_second": cells / median}


@contextlib.contextmanager
def reference_tree(against: str, here: Path) -> Iterator[tuple[str, Path]]:
    """The source tree to compare with: ``against`` itself when it is one (a folder holding
    ``sarheight/__init__.py`` and ``kernels/``), else a git revision of the checkout
    ``here`` belongs to, checked out into a temporary worktree for the run. Yields
    (label, tree)."""
    from .errors import SarHeightError

    folder = Path(against).expanduser()
    if (folder / "sarheight" / "__init__.py").is_file() and (folder / "kernels").is_dir():
        yield str(folder), folder.resolve()
        return
    git = shutil.which("git")
    top = subprocess.run([git, "-C", str(here), "rev-parse", "--show-toplevel"], capture_output=True,
                         text=True) if git else None
    if top is None or top.returncode != 0:
        raise SarHeightError(f"--against {against}: not a sarheight source tree (a folder with sarheight/ and "
                             "kernels/), and this sarheight is not a git checkout in which it could name a "
                             "revision; give the folder of another checkout")
    root = Path(top.stdout.strip())
    commit = subprocess.run([git, "-C", str(root), "rev-parse", "--short", f"{against}^{{commit}}"],
                            capture_output=True, text=True)
    if commit.returncode != 0:
        raise SarHeightError(f"--against {against}: neither a sarheight source tree nor a revision of the git "
                             f"checkout {root} (git says: {commit.stderr.strip()})")
    short = commit.stdout.strip()
    scratch = Path(tempfile.mkdtemp(prefix="sarheight-against-"))
    worktree = scratch / short
    try:
        added = subprocess.run([git, "-C", str(root), "worktree", "add", "--detach", "--quiet", str(worktree), short],
                               capture_output=True, text=True)
        if added.returncode != 0:
            raise SarHeightError(f"--against {against}: git could not check out {short} into {worktree} (git says: "
                                 f"{added.stderr.strip()})")
        # A hash, short or full, is its own label; a name gets its hash beside it.
        same = short.startswith(against) or against.startswith(short)
        yield (against if same else f"{against} ({short})"), worktree
    finally:
        if worktree.exists():
            subprocess.run([git, "-C", str(root), "worktree", "remove", "--force", str(worktree)],
                           capture_output=True)
        shutil.rmtree(scratch, ignore_errors=True)


def run_benchmark(*, cases: dict[str, int], projections: tuple[str, ...] = PROJECTIONS, repeats: int = 5,
                  against: str | None = None, peer: bool = True, timeout: float = WORKER_TIMEOUT,
                  say: Callable[[str], None] = print) -> dict[str, Any]:
    """Time each case (name: DEM side in cells) and projection, both steps, ``repeats``
    runs each, in worker processes; with ``against``, alternating with that version;
    with ``peer``, the reference peer too where it is installed (``report["peer"]``).
    A worker that takes more than ``timeout`` seconds over one request is stopped.

    Returns the report (what :func:`format_table` prints and ``--out`` writes as JSON).
    """
    from .errors import SarHeightError

    here = Path(__file__).resolve().parents[1]
    report: dict[str, Any] = {
        "benchmark": "sarheight benchmark", "cpu_count": os.cpu_count(), "repeats": repeats,
        "load_average_at_start": list(os.getloadavg()),
        "setup": {"terrain": f"1/f^2 mountains, RMS slope {RMS_SLOPE}, flat beyond {OUTER_SCALE_M:g} m",
                  "geometry": f"straight orbit, heading {HEADING:g}, incidence {INCIDENCE[0]:g}-{INCIDENCE[1]:g} "
                              f"degrees, {PIXEL_SPACING:g} m ground-range pixels",
                  "cases": {name: f"{CASES[name]:g} m DEM cells" for name in cases},
                  "observation": f"the simulated image times {LOOKS}-look speckle",
                  "timing": "warm runs, one at a time; median and spread over the repeats"},
        "versions": {}, "results": [],
        "peer": {"name": PEER, "method": PEER_METHOD, "installed": None, "results": []} if peer else None,
    }
    with contextlib.ExitStack() as stack:
        # The reference first: a bad --against is refused before any worker starts.
        reference = stack.enter_context(reference_tree(against, here)) if against else None
        workers = [Worker("this version", None, timeout)]
        stack.callback(workers[0].close)
        if reference is not None:
            workers.append(Worker(*reference, timeout))
            stack.callback(workers[1].close)
        for case, side in cases.items():
            for projection in projections:
                infos = []
                for worker in workers:
                    say(f"preparing {case} {side}x{side} {projection} for {worker.label} (a first run compiles "
                        "the kernels where they are not cached: minutes)")
                    infos.append(worker.ask(op="prepare", case=case, side=side, projection=projection))
                    if worker.tree is None and Path(infos[-1]["source"]) != Path(__file__).resolve().parent:
                        raise SarHeightError(
                            f"the benchmark's worker imported sarheight from {infos[-1]['source']}, not this one "
                            f"({Path(__file__).resolve().parent}): run the command with the Python of the "
                            "environment this sarheight is installed in")
                    report["versions"][worker.label] = {"version": infos[-1]["version"],
                                                        "source": infos[-1]["source"],
                                                        "threads": infos[-1]["threads"]}
                for step in STEPS:
                    times: list[list[float]] = [[] for _ in workers]
                    loads: list[float] = []
                    for repeat in range(repeats):
                        # Alternate which version goes first, so that neither always
                        # follows the other's memory traffic.
                        order = range(len(workers)) if repeat % 2 == 0 else reversed(range(len(workers)))
                        for w in order:
                            answer = workers[w].ask(op="time", case=case, side=side, projection=projection,
                                                    step=step)
                            times[w].append(answer["seconds"])
                            loads.append(answer["load"])
                    row = {"case": case, "side": side, "cells": infos[0]["cells"],
                           "radar_pixels": infos[0]["radar_pixels"], "oversample": infos[0]["oversample"],
                           "projection": projection, "step": step, "threads": infos[0]["threads"],
                           "load": [min(loads), max(loads)],
                           "versions": {worker.label: summary(times[w], infos[w]["cells"])
                                        for w, worker in enumerate(workers)}}
                    if against:
                        ours, theirs = (row["versions"][worker.label]["median"] for worker in workers)
                        row["speedup"] = theirs / ours
                    report["results"].append(row)
                    say(format_row(row, [worker.label for worker in workers]))
            if peer and report["peer"]["installed"] is not False:
                peer_row = time_peer(workers[0], case, side, repeats, report, say)
                if peer_row is not None:
                    say(format_peer_row(peer_row))
    report["load_average_at_end"] = list(os.getloadavg())
    return report


def time_peer(worker: Worker, case: str, side: int, repeats: int, report: dict[str, Any],
              say: Callable[[str], None]) -> dict[str, Any] | None:
    """Time the reference peer on one case in ``worker`` (``repeats`` warm runs) and add
    its row to ``report["peer"]``, with this version's speed over the peer's for the runs
    of ``PEER_COMPARED`` already in the report; None (and the report says so) where the
    peer is not installed."""
    say(f"preparing {case} {side}x{side} for the reference peer, {PEER} (where installed)")
    info = worker.ask(op="prepare", case=case, side=side, projection=PEER)
    entry = report["peer"]
    entry["installed"] = info["installed"]
    if not info["installed"]:
        say(f"the reference peer, {PEER}, is not installed: `pip install {PEER}` adds its figure")
        return None
    if "error" in info:
        entry.setdefault("errors", []).append(f"{case} {side}²: {info['error']}")
        say(f"the reference peer, {PEER}, failed on {case} {side}² and is left out there: {info['error']}")
        return None
    entry["version"] = info["version"]
    seconds, loads = [], []
    for _ in range(repeats):
        answer = worker.ask(op="time", case=case, side=side, projection=PEER, step=PEER_STEP)
        seconds.append(answer["seconds"])
        loads.append(answer["load"])
    # "projection" holds the peer's method: the table's column for it.
    row = {"case": case, "side": side, "cells": info["cells"], "projection": PEER_METHOD, "step": PEER_STEP,
           "threads": info["threads"], "chunks": info["chunks"], "load": [min(loads), max(loads)],
           "versions": {f"{PEER} {info['version']}": summary(seconds, info["cells"])}, "this_version_over_peer": {}}
    peer_speed = row["versions"][f"{PEER} {info['version']}"]["cells_per_second"]
    for ours in report["results"]:
        if ours["case"] == case and (ours["projection"], ours["step"]) in PEER_COMPARED:
            row["this_version_over_peer"][f"{ours['step']} {ours['projection']}"] = (
                ours["versions"]["this version"]["cells_per_second"] / peer_speed)
    entry["results"].append(row)
    return row


#: Widths of the table's columns: case, DEM side, projection, step; one version's figures.
_CASE, _SIDE, _PROJECTION, _STEP = 6, 6, 8, 11
_FIGURES = len(f"{0.0:6.2f} s {0.0:6.2f} M cells/s ±{0.0:4.0%}")


def format_row(row: dict[str, Any], labels: list[str]) -> str:
    """One line of the table: case, projection, step, then per version the median time,
    M cells/s and spread; the speed-up against the other version; threads and load."""
    cells = (f"{row['case']:{_CASE}s} {str(row['side']) + '²':>{_SIDE}s} {row['projection']:{_PROJECTION}s} "
             f"{row['step']:{_STEP}s}")
    for label in labels:
        s = row["versions"][label]
        cells += f"  {s['median']:6.2f} s {s['cells_per_second'] / 1e6:6.2f} M cells/s ±{s['spread']:4.0%}"
    if "speedup" in row:
        cells += f"  {row['speedup']:7.2f}x"
    return cells + f"  {row['threads']} threads, load {row['load'][0]:.1f}-{row['load'][1]:.1f}"


def format_peer_row(row: dict[str, Any]) -> str:
    """A line of the peer's table: as :func:`format_row`, then this version's speed over
    the peer's for each of its runs compared."""
    label = next(iter(row["versions"]))
    ratios = ", ".join(f"{ratio:.2f}x ({name})" for name, ratio in row["this_version_over_peer"].items())
    line = format_row(row, [label])
    return line + (f"  this version: {ratios}" if ratios else "")


def plot_report(report: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """A bar chart of the report, written as a PNG at ``path``: DEM cells per second (the
    median run, the spread as an error bar from the slowest to the fastest run) of each
    case, projection and step, one bar per version, and the reference peer's where it ran."""
    import matplotlib

    from .plots import save_figure

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    rows = report["results"] + (report["peer"]["results"] if report.get("peer") else [])
    labels = list(dict.fromkeys(label for row in rows for label in row["versions"]))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(rows) * len(report["versions"])), 4.2))
    width = 0.8 / len(report["versions"])
    for k, label in enumerate(labels):
        x = np.array([i for i, row in enumerate(rows) if label in row["versions"]], dtype=float)
        mine = [row for row in rows if label in row["versions"]]
        rates = [row["cells"] / np.array(row["versions"][label]["seconds"]) / 1e6 for row in mine]
        median = np.array([row["versions"][label]["cells_per_second"] / 1e6 for row in mine])
        low = median - np.array([r.min() for r in rates])
        high = np.array([r.max() for r in rates]) - median
        # The peer's bars stand alone at their rows; the versions' side by side.
        offset = (k - (len(report["versions"]) - 1) / 2) * width if label in report["versions"] else 0.0
        ax.bar(x + offset, median, width, yerr=[low, high], capsize=2, label=label)
    ticks = [f"{r['case']} {r['side']}²\n" + (f"{PEER}\n{r['projection']}" if r["step"] == PEER_STEP
                                                else f"{r['projection']}\n{r['step']}") for r in rows]
    ax.set_xticks(np.arange(len(rows)), ticks, fontsize=7)
    ax.set_ylabel("M DEM cells / s (median; bars: slowest to fastest run)")
    threads = sorted({row["threads"] for row in rows})
    ax.set_title(f"sarheight benchmark: {report['cpu_count']} CPUs, {'/'.join(map(str, threads))} threads, "
                 f"{report['repeats']} runs each", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def format_table(report: dict[str, Any]) -> str:
    """The report as the table the command prints, a header over :func:`format_row`'s lines."""
    labels = list(report["versions"])
    head = (f"{'case':{_CASE}s} {'DEM':>{_SIDE}s} {'proj.':{_PROJECTION}s} {'step':{_STEP}s}"
            + "".join(f"  {label[:_FIGURES]:{_FIGURES}s}" for label in labels)
            + ("  speed-up" if len(labels) > 1 else ""))
    lines = [head] + [format_row(row, labels) for row in report["results"]]
    lines.append("median of the runs; ± is the spread (max - min) / median"
                 + ("; speed-up = the other version's median / this one's" if len(labels) > 1 else ""))
    peer = report.get("peer")
    for error in (peer or {}).get("errors", []):
        lines.append(f"reference peer: {PEER} failed on {error}")
    if peer and peer["installed"] and peer["results"]:
        lines += ["", f"reference peer: {PEER} {peer['version']}, radiometric terrain correction ({peer['method']}: "
                  "every DEM cell geocoded, its gamma area spread bilinearly over 3 x 3-pixel groups, the image "
                  "geocoded and flattened; no layover or shadow masks, no reallocation)"]
        lines += [format_peer_row(row) for row in peer["results"]]
        lines.append("this version: its median speed over the peer's for the step named (the peer's runs follow "
                     "this version's on each case, in the same run); threads: those its chunks can keep busy")
    elif peer and peer["installed"] is False:
        lines += ["", f"reference peer: {PEER} is not installed (`pip install {PEER}` adds its figure)"]
    return "\n".join(lines)


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--serve":
    serve(sys.argv[2] if len(sys.argv) > 2 else None)
