"""``sarheight compile``: compile and cache the kernels now, not on the first run."""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings

from .options import add_quiet

NAME = "compile"
HELP = "compile and cache the kernels now, not on the first run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_quiet(parser)


def run(args: argparse.Namespace) -> int:
    if not args.quiet:
        print("compiling the kernels (once per installation; three minutes on two idle cores, up to ten on a busy "
              "machine)...", flush=True)
    seconds = compile_kernels()
    if not args.quiet:
        print(f"compiled and cached in {seconds:.1f} s")
    return 0


#: Side (cells) of the corner of the demo's DEM that ``compile_kernels`` runs the demo on.
COMPILE_CELLS = 48


def compile_kernels() -> float:
    """Compile the Numba kernels that the demo and the everyday calls use, and let Numba
    cache them beside their sources, so that the first real run starts at once.

    Runs the whole demo on a corner of its DEM (``COMPILE_CELLS`` cells a side: the same
    dtypes and array layouts, hence the same compiled signatures), writing into a
    temporary folder that is then removed; then the calls of the README's Quickstart on a
    corner of the projected sample DEM (whose coordinates are full arrays, not the
    broadcast axes of a geographic grid), in memory and block by block. ``make install``
    calls it (``sarheight compile``): compiling takes about three minutes on two idle cores, once
    per installation and again only when a kernel's source changes. Returns the seconds
    taken.
    """
    from ..demo import demo_geometry, run_demo
    from ..geometry import backward_geocode
    from ..reconstruction import reconstruct
    from ..sample_data import bigtujunga_dem, jacksboro_dem
    from ..simulate import simulate, simulate_sar

    start = time.perf_counter()
    dem = jacksboro_dem()
    # A corner from the first row and column: the grid's transform stays that of the DEM.
    corner = dem.isel(y=slice(0, COMPILE_CELLS), x=slice(0, COMPILE_CELLS))
    # The warnings of these small warm-up inputs (an image edge the corner's facets reach)
    # are about no input of the user's: not shown.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with tempfile.TemporaryDirectory(prefix="sarheight-compile-") as scratch:
            projected = bigtujunga_dem().isel(y=slice(0, COMPILE_CELLS), x=slice(0, COMPILE_CELLS))
            run_demo(scratch, progress=False, dem=corner, terrain_dem=projected.copy(), city_size=COMPILE_CELLS)
        geometry = demo_geometry(projected)
        backward_geocode(projected, geometry)
        simulate(projected, geometry, progress=False)
        observation = simulate_sar(projected, geometry, seed=0)
        reconstruct(projected, observation, geometry, progress=False)
        reconstruct(projected, observation, geometry, chunks=16, progress=False)
    return time.perf_counter() - start
