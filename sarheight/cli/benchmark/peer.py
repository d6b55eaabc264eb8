"""The reference peer of the benchmark: sarsen's radiometric terrain correction, run on
the benchmark's scenes where sarsen is installed (:func:`peer_run`).

Imports nothing of sarheight at its top: a worker (:mod:`.worker`) loads this file by path.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

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


def peer_product(geometry: Any, observation: Any, *, line_spacing_m: float) -> Any:
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
                    "azimuth_spacing_m": line_spacing_m * grouping_area_factor[0]}

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


def peer_run(dem: Any, geometry: Any, observation: Any, chunks: tuple[tuple[int, ...], tuple[int, ...]], *,
             line_spacing_m: float) -> Callable[[], Any]:
    """A run of the reference peer on one scene: sarsen's radiometric terrain correction
    (``sarsen.apps.do_terrain_correction``, ``gamma_bilinear``, its default grouping of
    3 x 3 pixels) of ``observation`` (as :func:`peer_product` takes it) over ``dem`` in
    ``chunks`` (rows, columns: :func:`peer_chunks`), computed to the end. Returns the run: it gives
    the terrain-corrected gamma0 and the simulated beta0 on the DEM grid (a Dataset)."""
    import warnings

    import xarray as xr
    from sarsen.apps import do_terrain_correction

    product = peer_product(geometry, observation, line_spacing_m=line_spacing_m)
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
