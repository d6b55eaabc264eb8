"""Numba kernels of sarheight: plain arrays in, arrays out.

Kernels import only numpy, numba, math and the standard library. Geometry is float64; angles are radians;
times are float seconds since a reference epoch chosen by the caller.
"""

import contextlib
from collections.abc import Callable
from pathlib import Path

import numba
import numba.core.event

__all__ = [
    "CACHE_LOCATION",
    "WGS84_A",
    "WGS84_E2",
    "compiled_share",
    "geocode_cells",
    "geocode_grid",
    "geodetic_to_ecef",
    "geodetic_to_ecef_grid",
    "ground_range_of",
    "on_first_compile",
    "orbit_state",
    "orbit_states",
    "sample_of_slant_range",
    "samples_of_slant_ranges",
    "slant_range_of_sample",
    "slant_ranges_of_samples",
]


def _allow_vectorised_loops_with_many_arrays() -> None:
    """Let LLVM vectorise loops that read and write many arrays.

    Numba cannot tell LLVM that two array arguments never overlap, so before vectorising
    a loop LLVM checks at run time every pair of a written and another accessed array
    region, and gives up beyond a cap on those checks. The facet loops touch a dozen or
    more rows of their buffers (positions, look vectors, areas...): under the default cap
    they stay scalar, about three times slower. The checks cost a few hundred cycles per
    loop of hundreds of iterations. The setting is LLVM's own, for the whole process: it
    can only let more loops vectorise, each still guarded by its checks.
    """
    try:
        import llvmlite.binding as llvm

        llvm.set_option("sarheight", "-vectorize-memory-check-threshold=1024")
    except Exception:  # an llvmlite without the option: the loops run scalar
        pass


# Before any kernel compiles.
_allow_vectorised_loops_with_many_arrays()

from ._cache import cached_share, caching_disabled, choose_cache_location, refresh_stale_caches  # noqa: E402

#: Where the compiled kernels are cached: a folder, None beside the sources, "" nowhere.
CACHE_LOCATION = choose_cache_location(Path(__file__).parent)

with caching_disabled() if CACHE_LOCATION == "" else contextlib.nullcontext():
    from . import (
        buckets,
        cells,
        columns,
        facet_table,
        facets,
        facing,
        geodesy,
        orbit,
        projection,
        radar_buffers,
        radar_grid,
        reallocation,
        side_bounds,
        speckle,
        visibility,
        zero_doppler,
    )
from .geodesy import WGS84_A, WGS84_E2, geodetic_to_ecef, geodetic_to_ecef_grid  # noqa: E402
from .orbit import orbit_state, orbit_states  # noqa: E402
from .radar_grid import (  # noqa: E402
    ground_range_of,
    sample_of_slant_range,
    samples_of_slant_ranges,
    slant_range_of_sample,
    slant_ranges_of_samples,
)
from .zero_doppler import geocode_cells, geocode_grid  # noqa: E402

_MODULES = (buckets, cells, columns, facet_table, facets, facing, geodesy, orbit, projection, radar_buffers, radar_grid,
            reallocation, side_bounds, speckle, visibility, zero_doppler)
# Before any kernel runs: drop cached compilations older than any kernel source.
refresh_stale_caches(Path(__file__).parent, _MODULES)


def on_first_compile(callback: Callable[[], None]) -> None:
    """Call ``callback`` once, when a kernel of this package first starts compiling in this
    process (not when one is loaded from the cache): to say so before a wait of minutes."""
    listener = _FirstCompile(callback)
    numba.core.event.register("numba:compile", listener)


class _FirstCompile(numba.core.event.Listener):
    def __init__(self, callback: Callable[[], None]):
        self.callback: Callable[[], None] | None = callback

    def on_start(self, event) -> None:
        dispatcher = event.data.get("dispatcher") if isinstance(event.data, dict) else None
        module = getattr(getattr(dispatcher, "py_func", None), "__module__", "")
        if self.callback is not None and module.startswith(__name__ + "."):
            callback, self.callback = self.callback, None
            callback()

    def on_end(self, event) -> None:
        pass


def compiled_share() -> float:
    """The share of the kernels whose compilation is cached (0 on an installation's first
    run, or after a kernel source changed; 0 where nothing can be cached)."""
    return 0.0 if CACHE_LOCATION == "" else cached_share(_MODULES)
