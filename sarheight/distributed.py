"""Block-wise reconstruction, on local threads or a dask.distributed cluster, for DEMs too large to reconstruct in memory.

:func:`sarheight.layover.reconstruct` runs here when given ``chunks`` or ``client``
(:func:`reconstruct_blockwise`). Every heavy step runs per piece of the DEM, on the
workers, and each task recomputes the cell geometry it needs (geocoding costs a few
percent of the facet passes), so nothing per cell stays on the workers or travels back
between phases:

1. plan, per block of DEM rows: extents, steps, which way the lines run along each
   column, whether each cell faces away from the sensor, and the cells the smooth
   fields (pixel area, incidence) are fitted to;
2. layover and shadow, per band of radar lines: a zero-Doppler line runs across the DEM
   at the angle between the track and the DEM's columns, so each band takes, column by
   column, the DEM rows whose cells fall between its lines (a sheared strip, not a
   block of whole rows, which would hold the rows of every line crossing the band);
   each cell is judged by the band its line falls in, against the same profiles as in
   memory, however long a layover or shadow is;
3. scatter, per tile (a block of rows by a range of columns, with a halo of one cell),
   into a radar sub-window around the tile's footprint;
4. gather, per tile: the ratios of the sums of every tile whose sub-window overlaps its
   own, then the tile's rows and columns of the result.

Tiles and bands run as one pipeline in the order of the radar lines; a tile's radar sums
are kept only until the last tile that needs them is gathered. The client holds the DEM
(4 bytes per cell), the layover/shadow masks and faces-away flags (3 bytes per cell), each
column's line extent every few rows (1 byte per cell) and the mixing image (2 bytes per
radar pixel); with ``out`` the results go to GeoTIFFs as they come. Everything else is
bounded by the size of a tile and of a band (whose strips span the DEM's width). Partial
sums are added in another order than in memory, so results agree to float rounding (a
few units in the last place of the float32 outputs), not bit for bit (for a projected
DEM, to the millimetre to which longitude and latitude are interpolated). The DEM rows
must run along track (the usual case: polar orbits over north-up grids); transpose the
DEM otherwise.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import logging
import math
import os
import re
import socket
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from ._threads import progress_bar, serial_call, thread_count
from .dem import geodetic_at_rows, horizontal_crs, is_wgs84_degrees
from .errors import InvalidInputError
from .geometry import RadarGeometry, RadarWindow
from .io import GeoTiffBlockWriter, check_memory
from .kernels.facets import facet_extent
from .masks import MASK_ATTRS, MaskCode
from .observation import (
    Observation,
    check_intensity,
    check_values,
    intensity_flags,
    intensity_on_window,
    warn_if_implausible,
    warn_partial_coverage,
)
from .reallocation import Output, reallocate, result_dataset
from .simulate import Simulation
from .simulate.cells import (
    bilinear_oversample,
    cell_geometry,
    cell_geometry_arrays,
    cell_steps,
    channels,
    radar_sums,
    radar_window,
    rows_run_along_track,
    slant_range_spacing,
    step_stride,
    visibility_masks,
    window_of_extent,
)
from .simulate.contribution import Contribution, FacetContribution, Projection, resolve_contribution
from .simulate.engine import BYTES_PER_CELL, SmoothFields, clear_residue, smooth_samples, smooth_stride

logger = logging.getLogger(__name__)


# --- where the tasks run --------------------------------------------------------------


#: Seconds to wait for a dask scheduler to answer.
CONNECT_TIMEOUT = 5.0


def check_client(client: Any) -> None:
    """Refuse, before any work, a ``client`` that is none of what :meth:`Workers.open`
    takes, or a scheduler address where nothing answers."""
    if client is None or client == "local" or (hasattr(client, "submit") and hasattr(client, "scatter")):
        return
    if not isinstance(client, str):
        raise InvalidInputError(
            f"client must be None (local threads), 'local', a scheduler address or a dask.distributed.Client, "
            f"not {type(client).__name__}"
        )
    match = re.fullmatch(r"(?:tcp://)?(\[[^\]]+\]|[^:/]+):(\d+)/?", client.strip())
    if match is None:
        raise InvalidInputError(
            f"client={client!r}: not a scheduler address; give one as tcp://HOST:PORT (e.g. tcp://10.0.0.5:8786), "
            "or 'local' for a LocalCluster on this machine"
        )
    host, port = match[1].strip("[]"), int(match[2])
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT).close()
    except OSError as error:
        raise InvalidInputError(
            f"client={client!r}: no dask scheduler answers there ({error.strerror or error}); start one "
            "(dask scheduler) or check the address"
        ) from None


class Workers:
    """Where the tasks of a block-wise run go: local threads, or a dask.distributed client.

    Open one with :meth:`open`. Tasks run their row blocks serially
    (``_threads.serial_call``): a run keeps about one task per worker thread in flight.
    """

    def __init__(self, pool: ThreadPoolExecutor | None = None, client: Any = None):
        self.pool, self.client = pool, client

    @classmethod
    @contextlib.contextmanager
    def open(cls, client: Any = None) -> Iterator[Workers]:
        """``None``: local threads, one per core; ``"local"``: a new ``LocalCluster`` on this
        machine (closed afterwards); a scheduler address (str) or a ``dask.distributed.Client``."""
        if client is None:
            # A task per thread: while one runs Python (assembling, writing), another computes.
            with ThreadPoolExecutor(max_workers=max(1, thread_count())) as pool:
                yield cls(pool=pool)
            return
        from dask.distributed import Client, LocalCluster

        if isinstance(client, str):
            with contextlib.ExitStack() as stack:
                if client == "local":
                    cluster = stack.enter_context(LocalCluster(processes=True, dashboard_address=None))
                    client = stack.enter_context(Client(cluster))
                else:
                    client = stack.enter_context(Client(client, timeout=CONNECT_TIMEOUT))
                yield cls(client=client)
            return
        yield cls(client=client)

    @property
    def threads(self) -> int:
        """Worker threads in all."""
        if self.pool is not None:
            return self.pool._max_workers
        try:
            return max(1, sum(self.client.nthreads().values()))
        except Exception:  # a scheduler that cannot say: assume a small cluster
            return 2

    def submit(self, func: Callable, *args: Any):
        """A future of ``func(*args)``, run with its row blocks on the worker's thread."""
        return (self.pool or self.client).submit(serial_call, func, *args)

    def broadcast(self, value: Any) -> Any:
        """A value every task takes (the geometry): sent to the workers once, not with each task."""
        if self.client is None:
            return value
        # hash=False: a key of its own per run (a content hash would be shared by two runs on
        # one client, and the first run's release would drop the second's data).
        return self.client.scatter(value, broadcast=True, hash=False)

    def upload(self, value: Any) -> Any:
        """A task's large argument (a tile's radar-grid sums): moved to a worker ahead of the
        task rather than inside its description, as dask asks of arguments of many MB."""
        if self.client is None:
            return value
        return self.client.scatter(value, hash=False)


# --- the pieces of the DEM and the plan -----------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Block:
    """DEM rows ``start:stop``, read with the row before (``halo_start``) where there is one."""

    start: int
    stop: int
    halo_start: int


def _blocks(rows: int, rows_per_block: int) -> list[_Block]:
    edges = [*range(0, rows, rows_per_block), rows]
    return [_Block(a, b, max(0, a - 1)) for a, b in itertools.pairwise(edges) if b > a]


@dataclasses.dataclass(frozen=True)
class _Tile:
    """A block of rows by a range of columns: the unit of the facet passes."""

    block: int
    rows: tuple[int, int]
    cols: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class _TileExtent:
    """Where a tile's cells fall in the image (from its block's plan)."""

    any_own: bool  # whether any of its own cells has a solution
    extent: tuple[float, float, float, float]  # lines and samples (min, max, min, max) of its facets
    own_lines: tuple[float, float]  # the smallest and largest line of its own cells


@dataclasses.dataclass
class _BlockPlan:
    """What the client needs to plan, from the cell geometry of one block of rows."""

    any: bool
    # The own rows' flags of the cells' own surface (``simulate.cell_geometry``): they
    # need the neighbouring rows, which the block's halo holds and a sheared band may not.
    faces_away: np.ndarray | None
    active_layover: np.ndarray | None
    line_range: tuple[float, float] = (math.nan, math.nan)
    # Lines and samples (min, max, min, max) of the facets of its cells with their halo:
    # together the blocks give the whole DEM's, hence the window in memory.
    facet_range: tuple[float, float, float, float] = (math.nan, math.nan, math.nan, math.nan)
    steps: list[np.ndarray] = dataclasses.field(default_factory=list)  # simulate.cell_steps
    along_track_rows: bool = True
    range_spacing: float = math.nan
    smooth_samples: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    tiles: list[_TileExtent] = dataclasses.field(default_factory=list)
    # Each column's smallest and largest line over intervals of rows: (rows (n, 2),
    # lines (n, 2, cols)).
    column_lines: tuple[np.ndarray, np.ndarray] | None = None


@dataclasses.dataclass(frozen=True)
class _TilePlan:
    """What every facet task of a run takes besides its tile and the geometry (which goes
    to the workers once, as an argument of its own: dask replaces futures in arguments,
    not inside objects)."""

    oversample: int
    exact: bool
    contribution: FacetContribution
    smooth: SmoothFields
    output: Output


#: Rows of the intervals over which the plan gives each column's line extent (sheared
#: bands are cut at this granularity).
_LINE_SAMPLING = 8


# --- tasks (run on the workers) -------------------------------------------------------


def _task_plan(dem_rows: xr.DataArray, geometry: RadarGeometry, block: _Block, stride: int,
               steps_every: int, col_edges: list[int]) -> _BlockPlan:
    """What the client needs to plan, from the cell geometry of a block's rows (with halo).

    Extents (the lines of the own cells' centres, the lines and samples of the facets,
    ``kernels.facets.facet_extent``), the cell steps (``simulate.cell_steps``) every
    ``steps_every`` rows and columns, orientation and range spacing; the faces-away flags
    of the own rows; each column's line every ``_LINE_SAMPLING`` rows (and at the last own
    row); per tile (column range of ``col_edges``), the extent in lines and samples of its
    facets; the block's share of the cells the smooth fields are fitted to.
    """
    cells = cell_geometry(dem_rows, geometry)
    own_rows = slice(block.start - block.halo_start, block.stop - block.halo_start)
    own = {name: cells[name][own_rows] for name in ("line", "sample", "valid", "pixel_area", "incidence")}
    valid = own["valid"]
    if not valid.any():
        return _BlockPlan(any=False, faces_away=cells["faces_away"][own_rows],
                          active_layover=cells["active_layover"][own_rows])
    line = np.where(cells["valid"], cells["line"], np.nan)
    # The DEM's border among the block's edges: its first and last rows when the block
    # has no halo there; its first and last columns always.
    top, bottom = block.start == 0, own_rows.stop == line.shape[0]
    cols = line.shape[1]
    tiles = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: NaN
        for c0, c1 in itertools.pairwise(col_edges):
            # Own cells and their ring of neighbours: every facet vertex of the tile lies
            # between those centres, or beyond them at the DEM's border.
            ring = (slice(max(0, own_rows.start - 1), own_rows.stop + 1), slice(max(0, c0 - 1), c1 + 1))
            own_tile = (own_rows, slice(c0, c1))
            any_own = bool(valid[:, c0:c1].any())
            extent = facet_extent(cells["line"][ring], cells["sample"][ring], cells["valid"][ring], top, bottom,
                                  c0 == 0, c1 == cols)
            own_lines = (np.nanmin(line[own_tile]), np.nanmax(line[own_tile])) if any_own else (np.nan, np.nan)
            tiles.append(_TileExtent(any_own, extent, own_lines))
        # Each column's smallest and largest line over intervals of _LINE_SAMPLING rows
        # (valid cells only, so voids cannot hide a crossing), the last interval reaching
        # into the next block's first row: the intervals tile the DEM's rows.
        last = own_rows.stop if own_rows.stop < line.shape[0] else own_rows.stop - 1
        edges = sorted({*range(own_rows.start, own_rows.stop, _LINE_SAMPLING), last})
        if len(edges) < 2:
            edges = [edges[0], edges[0]]
        interval_lines = np.stack([
            np.stack([np.nanmin(line[a:b + 1], axis=0), np.nanmax(line[a:b + 1], axis=0)])
            for a, b in itertools.pairwise(edges)
        ]).astype(np.float32)
        interval_rows = block.halo_start + np.array(list(itertools.pairwise(edges)))
    return _BlockPlan(
        any=True,
        faces_away=cells["faces_away"][own_rows],
        active_layover=cells["active_layover"][own_rows],
        line_range=(float(np.nanmin(own["line"][valid])), float(np.nanmax(own["line"][valid]))),
        facet_range=facet_extent(cells["line"], cells["sample"], cells["valid"], top, bottom, True, True),
        steps=cell_steps(cells, steps_every, block.halo_start, (own_rows.start, own_rows.stop)),
        along_track_rows=rows_run_along_track(cells["line"]),
        range_spacing=slant_range_spacing(cells),
        smooth_samples=smooth_samples(own, stride, block.start),
        tiles=tiles,
        column_lines=(interval_rows, interval_lines),
    )


def _task_masks(axes: _Axes, row_start: np.ndarray, height: np.ndarray, faces_away: np.ndarray,
                active_layover: np.ndarray, geometry: RadarGeometry, band: tuple[int, int], window: RadarWindow,
                range_tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Layover, shadow and mixing of a band of lines [band[0], band[1]).

    ``height``, ``faces_away`` and ``active_layover`` hold, column by column, the DEM rows from ``row_start``
    whose cells cross the band's lines and the next (a sheared strip, ``_sheared``; rows
    beyond a column's strip are void). The cells judged are those whose line falls in
    the band; the profiles of lines band[0] .. band[1] are cut from all of them. Returns
    the masks (uint8, outside where not judged), the mixing of lines band[0]:band[1]
    (uint16, window samples) and which cells were judged.
    """
    lon, lat = axes.lon_lat(row_start, height.shape[0])
    cells = cell_geometry_arrays(lon, lat, height, geometry, own_surface=False)
    del lon, lat
    first, stop = band
    with np.errstate(invalid="ignore"):
        key = np.floor(cells["line"])
        # The window's first band also judges the cells just before its first line (an
        # image's line -0.5 .. 0), which in memory take that line's profile alone.
        judged = cells["valid"] & (key >= (first - 1 if first == window.line0 else first)) & (key < stop)
    profile_lines = RadarWindow(first, min(stop + 1, window.line_stop) - first, window.sample0, window.samples)
    layover, shadow, mixing = visibility_masks(cells, faces_away, active_layover, profile_lines, transpose=False,
                                               range_tolerance=range_tolerance, judged=judged)
    lines, samples = geometry.grid.shape
    with np.errstate(invalid="ignore"):
        inside = judged & (cells["line"] >= -0.5) & (cells["line"] <= lines - 0.5) & (
            cells["sample"] >= -0.5) & (cells["sample"] <= samples - 0.5)
    layover[~inside] = MaskCode.OUTSIDE
    shadow[~inside] = MaskCode.OUTSIDE
    return layover, shadow, mixing[:stop - first], judged


def _tile_simulation(dem_view: xr.DataArray, geometry: RadarGeometry, plan: _TilePlan, layover_view: np.ndarray,
                     shadow_view: np.ndarray, sub_window: RadarWindow) -> Simulation:
    """The simulation of a tile with its halo, in a radar sub-window (masks outside in the
    halo: the neighbouring tiles' cells are not processed here)."""
    # The masks are given: the flags of the cells' own surface are not needed here.
    cells = cell_geometry(dem_view, geometry, own_surface=False)
    return Simulation(dem_view, geometry, cells, sub_window, plan.oversample, plan.exact, plan.contribution,
                      layover_view, shadow_view, np.zeros((1, 1), dtype=np.uint16), {}, radar_sums(0, 0),
                      plan.smooth)


def _task_scatter(dem_view: xr.DataArray, geometry: RadarGeometry, plan: _TilePlan, own: tuple[slice, slice],
                  layover_view: np.ndarray, shadow_view: np.ndarray, sub_window: RadarWindow) -> np.ndarray:
    """The tile's own facets scattered into its radar sub-window: a radar buffer
    (``simulate.radar_sums``) of its two channels."""
    state = _tile_simulation(dem_view, geometry, plan, layover_view, shadow_view, sub_window)
    rows, cols = own
    return state.facet_pass(gather=False, rows=(rows.start, rows.stop), cols=(cols.start, cols.stop),
                            consume=lambda *_: None, per_cell=False)[-1]


def _task_gather(dem_view: xr.DataArray, geometry: RadarGeometry, plan: _TilePlan, own: tuple[slice, slice],
                 layover_view: np.ndarray, shadow_view: np.ndarray, sub_window: RadarWindow, sums: np.ndarray,
                 observed: np.ndarray | xr.DataArray, mixing: np.ndarray) -> xr.Dataset:
    """The tile's cells of the result: its facets gather the ratios of the summed images
    (the radar buffer ``sums``) and the observation on its sub-window (an array, or the
    part of a lazy image, read here, on the worker)."""
    if not isinstance(observed, np.ndarray):
        import dask

        with dask.config.set(scheduler="synchronous"):  # this task is the worker's unit of work
            observed = intensity_on_window(observed, sub_window)
        check_values(observed)
    state = _tile_simulation(dem_view, geometry, plan, layover_view, shadow_view, sub_window)
    state.sums, state.mixing = sums, mixing
    rows, cols = own
    products = reallocate(state, observed, plan.output, rows=(rows.start, rows.stop),
                          cols=(cols.start, cols.stop), keep_energy=False)
    own_state = dataclasses.replace(state, dem=dem_view.isel(y=rows, x=cols),
                                    cells={name: array[rows, cols] for name, array in state.cells.items()},
                                    layover=layover_view[rows, cols], shadow=shadow_view[rows, cols])
    part = result_dataset(own_state, products, plan.output)
    part.attrs["missing_pixels"] = products["missing_pixels"]  # taken off by the sink
    return part


# --- the run --------------------------------------------------------------------------


def reconstruct_blockwise(observation: Observation, dem: xr.DataArray, *, contribution: Contribution,
                          output: Output, projection: Projection, oversample: int | Literal["auto"],
                          rows_per_block: int, cols_per_tile: int, client: Any = None,
                          out: str | os.PathLike[str] | None = None, progress: bool = True) -> xr.Dataset:
    """Reconstruct block by block (:func:`sarheight.layover.reconstruct` with ``chunks`` or
    ``client``), from an observation in radar geometry and a DEM it has checked and opened.

    Parameters
    ----------
    observation, dem : resolved and opened by ``reconstruct``.
    contribution, output, projection, oversample, client, out, progress : as for
        ``reconstruct`` (checked there).
    rows_per_block : DEM rows per block (and radar lines per band of the masks).
    cols_per_tile : DEM columns per tile of the facet passes; the memory per task scales
        with blocks, bands and tiles, not the DEM.

    Returns
    -------
    The same Dataset as in memory, to float rounding; with ``out``, the written files
    opened lazily.

    Notes
    -----
    Tiles are processed in the order of the radar lines they reach. A tile's radar sums
    are kept only until the last tile whose sub-window overlaps them is gathered, so the
    client holds a few blocks' worth of radar lines, plus, without ``out``, the per-cell
    outputs.
    """
    resolved = resolve_contribution(contribution, dem)
    with Workers.open(client) as workers:
        run = _BlockwiseRun(observation, dem, resolved, output=output, projection=projection,
                            oversample=oversample, rows_per_block=rows_per_block, cols_per_tile=cols_per_tile,
                            workers=workers, streaming=out is not None)
        run.plan()
        run.check_observation()
        result, tiles_missing_pixels = run.execute(out, progress)
    if tiles_missing_pixels:
        warn_partial_coverage(f"pixels that the facets of {tiles_missing_pixels} of {len(run.tiles)} tiles reach")
    return result


class _BlockwiseRun:
    """One block-wise reconstruction: its plan, its tasks and the order they run in."""

    def __init__(self, observation: Observation, dem: xr.DataArray, contribution: FacetContribution, *,
                 output: Output, projection: Projection, oversample: int | Literal["auto"], rows_per_block: int,
                 cols_per_tile: int, workers: Workers, streaming: bool):
        self.observation, self.dem, self.contribution = observation, dem, contribution
        self.streaming = streaming  # the result goes to files as it comes
        self.output, self.projection, self.oversample = output, projection, oversample
        self.rows_per_block, self.cols_per_tile = rows_per_block, cols_per_tile
        self.workers = workers
        rows, cols = dem.shape
        self.blocks = _blocks(rows, rows_per_block)
        self.col_edges = [*range(0, cols, cols_per_tile), cols]
        if len(self.col_edges) > 2 and self.col_edges[-1] - self.col_edges[-2] < cols_per_tile // 4:
            del self.col_edges[-2]  # no sliver of a tile at the right edge
        # One task waiting per worker thread keeps them busy; each holds a block's data.
        self.in_flight = workers.threads + 1
        self.geometry = workers.broadcast(observation.geometry)
        self.axes = workers.broadcast(_Axes.of(dem))

    # 1. The plan, from the cell geometry of each block of rows.

    def plan(self) -> None:
        """The radar window, the oversampling, the smooth fields, the faces-away flags,
        the tiles and their sub-windows, the bands of lines: everything later tasks need."""
        dem, geometry = self.dem, self.observation.geometry
        rows, cols = dem.shape
        stride = smooth_stride(dem.shape)
        plans = self._plan_blocks(stride)
        present = [k for k, p in enumerate(plans) if p.any]
        if not present:
            radar_window(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1), bool), geometry)  # raises
        if stride > 1 and not any(plans[k].smooth_samples["line"].size for k in present):
            plans = self._plan_blocks(1)  # as in memory: too few valid cells on the strided subset
        if not all(plans[k].along_track_rows for k in present):
            raise InvalidInputError(
                "the DEM's rows do not run along track for this geometry: block-wise reconstruction "
                "needs them to; transpose the DEM or reconstruct in memory (without chunks or client)"
            )
        self.faces_away = np.zeros((rows, cols), dtype=bool)
        self.active_layover = np.zeros((rows, cols), dtype=bool)
        for block, block_plan in zip(self.blocks, plans, strict=True):
            self.faces_away[block.start:block.stop] = block_plan.faces_away
            self.active_layover[block.start:block.stop] = block_plan.active_layover
            block_plan.faces_away = block_plan.active_layover = None
        facet_ranges = np.array([plans[k].facet_range for k in present])
        self.window = window = window_of_extent(
            (float(np.nanmin(facet_ranges[:, 0])), float(np.nanmax(facet_ranges[:, 1])),
             float(np.nanmin(facet_ranges[:, 2])), float(np.nanmax(facet_ranges[:, 3]))), geometry)
        # The same cell pairs as in memory, hence the same factor.
        steps = [np.concatenate([plans[k].steps[q] for k in present]) for q in range(4)]
        factor = int(self.oversample) if self.oversample != "auto" else (
            2 if self.projection == "exact" else bilinear_oversample(steps))
        del steps
        self.range_tolerance = 0.05 * float(np.nanmedian([plans[k].range_spacing for k in present]))
        self.smooth = SmoothFields.fit(
            {name: np.concatenate([plans[k].smooth_samples[name] for k in present])
             for name in plans[present[0]].smooth_samples}, window)
        self.tile_plan = _TilePlan(factor, self.projection == "exact", self.contribution, self.smooth, self.output)
        self.present = present
        self.line_ranges = {k: plans[k].line_range for k in present}
        self.column_lines = {k: plans[k].column_lines for k in present}
        self._plan_tiles(plans)
        self._check_memory()
        band_lines = max(2, self.rows_per_block)
        self.band_lines = band_lines
        self.bands = [(b0, min(b0 + band_lines, window.line_stop))
                      for b0 in range(window.line0, window.line_stop, band_lines)]
        self.band_rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.layover = np.full((rows, cols), MaskCode.OUTSIDE, dtype=np.uint8)
        self.shadow = np.full((rows, cols), MaskCode.OUTSIDE, dtype=np.uint8)
        self.mixing = np.zeros(window.shape, dtype=np.uint16)

    def _check_memory(self) -> None:
        """Refuse, before the facet passes, a run whose client arrays (the DEM, masks, the
        mixing image and, in memory, the result) and tasks in flight (a tile's radar sums
        each) need more memory than is available."""
        per_cell = 8 + (0 if self.streaming else BYTES_PER_CELL // 3)
        largest_sub = max((sub.lines * sub.samples for sub in self.subs.values()), default=0)
        needed = self.dem.size * per_cell + self.window.lines * self.window.samples * 2 + (
            largest_sub * 3 * 16 * (self.in_flight + 2))
        check_memory(needed, f"a block-wise run on {self.dem.size} DEM cells ({self.window.lines} x "
                     f"{self.window.samples} radar pixels, sub-windows up to {largest_sub} pixels)",
                     ": use smaller blocks (chunks), coarser radar pixels, or out= to stream the result to files")

    def _plan_blocks(self, stride: int) -> list[_BlockPlan]:
        plans: list[_BlockPlan] = [None] * len(self.blocks)  # type: ignore[list-item]
        steps_every = step_stride(self.dem.shape)
        calls = ((_task_plan, (_halo_rows(self.dem, b.start, b.stop), self.geometry, b, stride, steps_every,
                               self.col_edges))
                 for b in self.blocks)
        _bounded(self.workers, calls, plans.__setitem__, self.in_flight)
        return plans

    def _plan_tiles(self, plans: list[_BlockPlan]) -> None:
        """The tiles, the radar sub-windows of those with cells in the image, and the
        tiles whose sub-windows overlap each one's (whose sums its gather adds)."""
        self.tiles: list[_Tile] = []
        self.subs: dict[_Tile, RadarWindow] = {}
        self.tile_lines: dict[_Tile, tuple[float, float]] = {}
        for k, block in enumerate(self.blocks):
            for m, (c0, c1) in enumerate(itertools.pairwise(self.col_edges)):
                tile = _Tile(k, (block.start, block.stop), (c0, c1))
                self.tiles.append(tile)
                if not plans[k].any or not plans[k].tiles[m].any_own:
                    continue  # no cell solved: gathered for its geometry and void products only
                extent = plans[k].tiles[m]
                self.subs[tile] = _sub_window(extent.extent, self.window)
                self.tile_lines[tile] = extent.own_lines
        self.needs = _overlapping(self.subs)

    # 2. The observation, checked before any heavy work.

    def check_observation(self) -> None:
        """One sub-window at a time; a lazy observation (whose reading is the work) on a
        few tiles spread over the DEM, then by each gather as it reads its window."""
        observation = self.observation
        checked = list(self.subs.values())
        if observation.lazy_image or observation.product is not None:
            checked = checked[::max(1, len(checked) // 8)]
        covered = []
        for sub in checked:
            observed = observation.on_window(sub)
            flags = intensity_flags(observed)  # one threaded pass
            if flags[2]:  # some finite value: the image covers this sub-window
                check_values(observed, flags)
                covered.append(observed.ravel()[:: max(1, observed.size // 10_000)])
        if not covered:
            check_intensity(np.full((1, 1), np.nan), self.window)  # raises: the image does not cover the DEM
        warn_if_implausible(np.concatenate(covered))

    # The tasks.

    def rows_of_band(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """Per column, the DEM rows of band b (from the blocks whose lines reach it and
        their neighbours: a pair of sampled rows may straddle a block's edge)."""
        if b not in self.band_rows:
            first, stop = self.bands[b]
            near = {j for k in self.present for j in (k - 1, k, k + 1)
                    if self.line_ranges[k][1] >= first - 2 and self.line_ranges[k][0] <= stop + 2}
            near = sorted(near & set(self.present))
            cols = self.dem.shape[1]
            if not near:  # lines of the window's margin, which no cell reaches
                self.band_rows[b] = (np.zeros(cols, dtype=np.int64), np.zeros(cols, dtype=np.int64))
                return self.band_rows[b]
            interval_rows = np.concatenate([self.column_lines[k][0] for k in near])
            interval_lines = np.concatenate([self.column_lines[k][1] for k in near])
            self.band_rows[b] = _band_rows(interval_rows, interval_lines, first, stop, self.dem.shape[0])
        return self.band_rows[b]

    def mask_call(self, b: int) -> Callable[[dict], tuple[Callable, tuple]]:
        def make(_: dict) -> tuple[Callable, tuple]:
            row_start, row_stop = self.rows_of_band(b)
            height, index = _sheared(self.dem, row_start, row_stop)
            index = np.clip(index, 0, self.dem.shape[0] - 1)
            away = np.take_along_axis(self.faces_away, index, axis=0)
            own_layover = np.take_along_axis(self.active_layover, index, axis=0)
            return _task_masks, (self.axes, row_start, height, away, own_layover, self.geometry, self.bands[b], self.window,
                                 self.range_tolerance)
        return make

    def masks_done(self, b: int, result: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
        band_layover, band_shadow, band_mixing, judged = result
        first, stop = self.bands[b]
        row_start = self.band_rows.pop(b)[0]
        index = _strip_rows(row_start, band_layover.shape[0])
        at = np.nonzero(judged)
        self.layover[index[at], at[1]] = band_layover[at]
        self.shadow[index[at], at[1]] = band_shadow[at]
        self.mixing[first - self.window.line0:stop - self.window.line0] = band_mixing

    def tile_args(self, tile: _Tile) -> tuple:
        """The arguments every facet task of ``tile`` starts with."""
        rows, cols = self.dem.shape
        (r0, r1), (c0, c1) = tile.rows, tile.cols
        view = (slice(max(0, r0 - 1), min(rows, r1 + 1)), slice(max(0, c0 - 1), min(cols, c1 + 1)))
        own = (slice(r0 - view[0].start, r1 - view[0].start), slice(c0 - view[1].start, c1 - view[1].start))
        # The halo's cells belong to the neighbouring tiles: outside, not processed here.
        masks = []
        for full in (self.layover, self.shadow):
            part = np.full((view[0].stop - view[0].start, view[1].stop - view[1].start), MaskCode.OUTSIDE,
                           dtype=np.uint8)
            part[own] = full[r0:r1, c0:c1]
            masks.append(part)
        plan = self.tile_plan
        if self.contribution.user_weight.shape == (rows, cols):
            plan = dataclasses.replace(plan, contribution=dataclasses.replace(
                self.contribution, user_weight=np.ascontiguousarray(self.contribution.user_weight[view])))
        window = self.window
        return (self.dem.isel(y=view[0], x=view[1]), self.geometry, plan, own, *masks,
                self.subs.get(tile, RadarWindow(window.line0, 1, window.sample0, 1)))

    def scatter_call(self, tile: _Tile) -> Callable[[dict], tuple[Callable, tuple]]:
        return lambda _: (_task_scatter, self.tile_args(tile))

    def gather_call(self, tile: _Tile) -> Callable[[dict], tuple[Callable, tuple]]:
        def make(results: dict) -> tuple[Callable, tuple]:
            args = self.tile_args(tile)
            sub = args[-1]
            sums = radar_sums(sub.lines, sub.samples)
            images = channels(sums)
            for other in self.needs.get(tile, []):
                _add_window(images, sub, channels(results[("scatter", other)]), self.subs[other])
            if tile in self.subs:
                clear_residue(images, sub, self.smooth, self.contribution)
            sub_mixing = np.ascontiguousarray(self.mixing[sub.index_in(self.window)])
            return _task_gather, (*args, self.workers.upload(sums), self.observation_for_task(sub), sub_mixing)
        return make

    def observation_for_task(self, sub: RadarWindow) -> np.ndarray | xr.DataArray:
        """The observation a gather takes: a lazy image's part over the sub-window is read
        by the task itself (on the worker, beside other tasks), anything else here."""
        if self.observation.lazy_image:
            return self.observation.part(sub)
        return self.observation.on_window(sub)

    def bands_of(self, lines_from: float, lines_to: float) -> list[int]:
        """The bands of the lines lines_from..lines_to (clamped to the window: lines
        before its first are judged by the first band, if at all)."""
        def band(line: float) -> int:
            return min(len(self.bands) - 1, max(0, int((math.floor(line) - self.window.line0) // self.band_lines)))

        return list(range(band(lines_from), band(lines_to) + 1))

    # 3. The order of the tasks.

    def sequence(self) -> list[tuple[Any, list, Callable]]:
        """The pipeline, in the order of the lines: a band's masks before the tiles whose
        cells it judges; a tile's scatter before the gathers of the tiles it overlaps; a
        gather once every scatter it needs and the bands of its lines are in."""
        subs, needs, tile_lines = self.subs, self.needs, self.tile_lines
        order = sorted(subs, key=lambda t: (tile_lines[t][0], t.cols[0]))
        position = {t: index for index, t in enumerate(order)}
        gather_deps = {}
        for t in order:
            sub = subs[t]
            mask_bands = set(self.bands_of(tile_lines[t][0] - 1e-3, tile_lines[t][1] + 1e-3)) | set(
                self.bands_of(sub.line0, sub.line_stop - 1))
            gather_deps[t] = sorted({("scatter", u) for u in needs[t]}, key=lambda key: position[key[1]]) + [
                ("masks", b) for b in sorted(mask_bands)]
        sequence, placed, pending = [], set(), list(order)
        next_band = 0

        def place_bands_up_to(last: int) -> None:
            nonlocal next_band
            while next_band <= last:
                sequence.append((("masks", next_band), [], self.mask_call(next_band)))
                placed.add(("masks", next_band))
                next_band += 1

        def place_ready_gathers() -> None:
            while pending and all(("scatter", u) in placed for u in needs[pending[0]]):
                g = pending.pop(0)
                place_bands_up_to(max(key[1] for key in gather_deps[g] if key[0] == "masks"))
                sequence.append((("gather", g), gather_deps[g], self.gather_call(g)))

        for t in order:
            # A hair wider than the tile's lines: a band computes its cells' lines afresh,
            # to rounding (and, for projected DEMs, to the millimetre of the coordinates).
            own_bands = self.bands_of(tile_lines[t][0] - 1e-3, tile_lines[t][1] + 1e-3)
            place_bands_up_to(own_bands[-1])
            sequence.append((("scatter", t), [("masks", b) for b in own_bands], self.scatter_call(t)))
            placed.add(("scatter", t))
            place_ready_gathers()
        place_bands_up_to(len(self.bands) - 1)
        place_ready_gathers()
        sequence += [(("gather", t), [], self.gather_call(t)) for t in self.tiles if t not in subs]
        return sequence

    # 4. Running it.

    def execute(self, out: str | os.PathLike[str] | None, progress: bool) -> tuple[xr.Dataset, int]:
        """Run the pipeline into the result (or files, with ``out``); returns the result and
        how many tiles' facets reach pixels the image lacks."""
        sequence = self.sequence()
        with contextlib.ExitStack() as stack:
            update = stack.enter_context(progress_bar(len(sequence), "reconstruct (tiles)", progress, unit="task"))
            sink = _ResultSink(self.dem, self.observation.geometry, self.rows_per_block, out, stack,
                               (self.rows_per_block, self.cols_per_tile))

            def finished(key: tuple[str, Any], result: Any) -> None:
                if key[0] == "masks":
                    self.masks_done(key[1], result)
                elif key[0] == "gather":
                    sink.write(key[1].rows[0], key[1].cols[0], result)

            _Pipeline(self.workers, self.in_flight, update).run(sequence, finished,
                                                                keep=lambda key: key[0] == "scatter")
            result = sink.result()
        return (sink.reopen() if out is not None else result), sink.tiles_missing_pixels


def _halo_rows(dem: xr.DataArray, first: int, stop: int) -> xr.DataArray:
    """DEM rows ``first:stop`` with one neighbouring row each side where the DEM has it."""
    return dem.isel(y=slice(max(0, first - 1), min(dem.shape[0], stop + 1)))


def _bounded(workers: Workers, calls, consume: Callable[[int, Any], None], in_flight: int) -> None:
    """Submit ``calls`` (func, args) keeping at most ``in_flight`` unfinished, and hand each
    result to ``consume(index, result)`` in order: the client never holds more than
    ``in_flight`` results, and the workers never more than ``in_flight`` inputs."""
    pending: list[tuple[int, Any]] = []
    for index, (func, args) in enumerate(calls):
        pending.append((index, workers.submit(func, *args)))
        if len(pending) >= in_flight:
            done, future = pending.pop(0)
            consume(done, future.result())
            del future
    for done, future in pending:
        consume(done, future.result())


class _Pipeline:
    """Tasks run in a fixed sequence, each once the tasks it depends on have finished.

    At most ``in_flight`` tasks run at a time; a result is kept until the last task that
    depends on it has taken it, then dropped: with the sequence following the radar
    lines, the client holds a few blocks' results at any moment.
    """

    def __init__(self, workers: Workers, in_flight: int, update: Callable[[int], None]):
        self.workers, self.in_flight, self.update = workers, in_flight, update
        self.results: dict[Any, Any] = {}
        self.running: dict[Any, Any] = {}
        self.users: dict[Any, int] = {}

    def run(self, sequence, finished: Callable[[Any, Any], None], keep: Callable[[Any], bool]) -> None:
        """``sequence``: (key, dependencies, make_call) in an order where every dependency
        comes first; ``make_call(results)`` returns (func, args) from the results of the
        dependencies that ``keep`` keeps; ``finished(key, result)`` receives every result
        as it is collected (the others are consumed there)."""
        self.keep = keep
        for _key, dependencies, _ in sequence:
            for dependency in dependencies:
                self.users[dependency] = self.users.get(dependency, 0) + 1
        submitted: collections.deque = collections.deque()  # running keys, oldest first
        for key, dependencies, make_call in sequence:
            for dependency in dependencies:
                self._collect(dependency, finished)
            func, args = make_call({d: self.results[d] for d in dependencies if d in self.results})
            for dependency in dependencies:
                self._release(dependency)
            self.running[key] = self.workers.submit(func, *args)
            submitted.append(key)
            while len(self.running) > self.in_flight:
                while submitted[0] not in self.running:
                    submitted.popleft()
                self._collect(submitted.popleft(), finished)
        for key in submitted:
            self._collect(key, finished)

    def _collect(self, key, finished) -> None:
        future = self.running.pop(key, None)
        if future is None:
            return
        result = future.result()
        del future
        self.update(1)
        finished(key, result)
        if self.users.get(key, 0) > 0 and self.keep(key):
            self.results[key] = result

    def _release(self, key) -> None:
        self.users[key] -= 1
        if self.users[key] == 0:
            self.results.pop(key, None)


# --- radar windows, sheared strips, coordinates ---------------------------------------


def _sub_window(extent: tuple[float, float, float, float], window: RadarWindow, margin: int = 2) -> RadarWindow:
    """The radar sub-window of a tile whose facets span ``extent`` (lines, samples: min,
    max, min, max; ``kernels.facets.facet_extent``, the DEM's border included), ``margin``
    pixels around it as the window's own (``simulate.radar_window``), within the window."""
    first_line = max(window.line0, math.floor(extent[0]) - margin)
    stop_line = min(window.line_stop, math.ceil(extent[1]) + margin + 1)
    first_sample = max(window.sample0, math.floor(extent[2]) - margin)
    stop_sample = min(window.sample_stop, math.ceil(extent[3]) + margin + 1)
    return RadarWindow(first_line, max(1, stop_line - first_line), first_sample, max(1, stop_sample - first_sample))


def _overlapping(windows: dict[Any, RadarWindow]) -> dict[Any, list[Any]]:
    """For each key, the keys whose windows share a pixel with its own (itself included),
    found through a grid of buckets rather than by testing every pair."""
    if not windows:
        return {}
    size = max(max(w.lines for w in windows.values()), max(w.samples for w in windows.values()))
    buckets: dict[tuple[int, int], list[Any]] = collections.defaultdict(list)

    def cells(w: RadarWindow) -> list[tuple[int, int]]:
        return [(a, b) for a in range(w.line0 // size, (w.line_stop - 1) // size + 1)
                for b in range(w.sample0 // size, (w.sample_stop - 1) // size + 1)]

    for key, w in windows.items():
        for cell in cells(w):
            buckets[cell].append(key)
    index = {key: i for i, key in enumerate(windows)}
    out = {}
    for key, w in windows.items():
        seen = {other for cell in cells(w) for other in buckets[cell]}
        # In a fixed order: the sums of a gather are added the same way every run.
        out[key] = sorted((other for other in seen if windows[other].overlaps(w)), key=index.__getitem__)
    return out


def _add_window(target: np.ndarray, target_window: RadarWindow, part: np.ndarray, part_window: RadarWindow) -> None:
    """Add ``part`` (2, lines, samples) on ``part_window`` into ``target`` on ``target_window``
    where the two share pixels."""
    shared = target_window.intersection(part_window)
    if shared is None:
        return
    target[(slice(None), *shared.index_in(target_window))] += part[(slice(None), *shared.index_in(part_window))]


def _band_rows(interval_rows: np.ndarray, interval_lines: np.ndarray, first: int, stop: int,
               rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the DEM rows [start, stop) whose cells can fall between lines ``first``
    and ``stop`` (the band's and the next line), with a row to spare each side.

    ``interval_rows`` (n, 2) are intervals of rows (first and last, inclusive) and
    ``interval_lines`` (n, 2, cols) each column's smallest and largest line of valid cells
    over them (NaN: none); the intervals that reach the band's lines are taken whole.
    """
    low, high = first - 1.0, stop + 1.0
    with np.errstate(invalid="ignore"):
        crosses = (interval_lines[:, 1] >= low) & (interval_lines[:, 0] <= high)  # NaN: no valid cell
    start = np.full(interval_lines.shape[2], rows, dtype=np.int64)
    end = np.zeros(interval_lines.shape[2], dtype=np.int64)
    any_cross = crosses.any(axis=0)
    if any_cross.any():
        row_first = np.where(crosses, interval_rows[:, :1], rows).min(axis=0)
        row_last = np.where(crosses, interval_rows[:, 1:], -1).max(axis=0)
        start = np.where(any_cross, row_first - 1, start)
        end = np.where(any_cross, row_last + 2, end)
    start = np.clip(start, 0, rows)
    end = np.clip(np.maximum(end, start), 0, rows)
    return start, end


def _strip_rows(row_start: np.ndarray, depth: int) -> np.ndarray:
    """DEM row index (depth, cols) of each cell of a sheared strip whose column j starts at
    DEM row ``row_start[j]`` (beyond the DEM's rows where the strip runs past them)."""
    return row_start[None, :] + np.arange(depth)[:, None]


def _sheared(dem: xr.DataArray, row_start: np.ndarray, row_stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Height (float32) and DEM row index of a sheared strip: column j holds DEM rows
    ``row_start[j]:row_stop[j]`` from the top, void (NaN) below."""
    depth = max(1, int((row_stop - row_start).max(initial=0)))
    index = _strip_rows(row_start, depth)
    inside = index < row_stop[None, :]
    clipped = np.clip(index, 0, dem.shape[0] - 1)
    column = np.broadcast_to(np.arange(row_start.size)[None, :], index.shape)
    height = np.where(inside, dem.values[clipped, column], np.nan).astype(np.float32)
    return height, index


@dataclasses.dataclass(frozen=True)
class _Axes:
    """A DEM's coordinate axes and horizontal CRS: what a worker needs to place the cells of
    a sheared strip (sent once; the strip itself travels as heights only)."""

    x: np.ndarray
    y: np.ndarray
    crs: Any  # pyproj.CRS, horizontal

    @classmethod
    def of(cls, dem: xr.DataArray) -> _Axes:
        return cls(np.asarray(dem["x"].values, dtype=np.float64), np.asarray(dem["y"].values, dtype=np.float64),
                   horizontal_crs(dem))

    def lon_lat(self, row_start: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Longitude and latitude (rad) of the strip's cells (``_sheared``): those the whole
        DEM's cells get in memory (``dem.geodetic_at_rows``), so that the masks judged
        here see the same terrain."""
        index = np.clip(_strip_rows(row_start, depth), 0, self.y.size - 1)
        if is_wgs84_degrees(self.crs):
            # A broadcast view: the geometry kernel takes one sine and cosine per column.
            lon = np.broadcast_to(np.radians(self.x)[None, :], index.shape)
            return lon, np.ascontiguousarray(np.radians(self.y)[index])
        lon, lat = geodetic_at_rows(self.x, self.y, index, self.crs)
        return np.radians(lon), np.radians(lat)


#: Variables of the result by the file they go to with ``out``: name suffix, dtype.
_FILES = {
    "": (("backscatter", "geocoded", "flattened", "simulated", "local_incidence_angle"), np.float32),
    "_masks": (("layover", "shadow", "mixing"), np.uint8),
    "_geometry": (("slant_range", "azimuth_time"), np.float64),
}


def _output_file(out: Path, suffix: str) -> Path:
    return out.with_name(out.stem + suffix + out.suffix)


def output_files(out: str | os.PathLike[str]) -> list[Path]:
    """The files a run with ``out`` writes: the float products, ``<out>_masks`` and ``<out>_geometry``."""
    return [_output_file(Path(out), suffix) for suffix in _FILES]


class _ResultSink:
    """Where the gathered blocks go: arrays of the whole DEM, or GeoTIFFs written block by block."""

    def __init__(self, dem: xr.DataArray, geometry: RadarGeometry, rows_per_block: int, out, stack,
                 tile_shape: tuple[int, int]):
        self.dem, self.geometry, self.rows_per_block, self.out = dem, geometry, rows_per_block, out
        # The files' tiles are the computation's (when GeoTIFF allows: multiples of 16), so
        # that every write covers whole tiles.
        self.block_shape = tile_shape if all(n % 16 == 0 for n in tile_shape) else (256, 256)
        self.stack = stack
        self.arrays: dict[str, tuple[np.ndarray, dict]] = {}
        self.attrs: dict[str, Any] = {}
        self.writers: dict[str, GeoTiffBlockWriter] = {}
        self.reference = np.datetime64(geometry.reference_time, "ns")
        self.tiles_missing_pixels = 0  # tiles whose facets reach pixels the image lacks

    def _path(self, suffix: str) -> Path:
        return _output_file(Path(self.out), suffix)

    def write(self, row_start: int, col_start: int, part: xr.Dataset) -> None:
        missing = int(part.attrs.pop("missing_pixels", 0))
        self.tiles_missing_pixels += missing > 0
        if not self.attrs:
            self.attrs = {**part.attrs, "rows_per_block": self.rows_per_block}
            if self.out is None:
                self.arrays = {name: (np.empty(self.dem.shape, dtype=var.dtype), var.attrs)
                               for name, var in part.data_vars.items()}
            else:
                tags = {**self.attrs, "azimuth_time_reference": str(self.reference)}
                for suffix, (names, dtype) in _FILES.items():
                    units = {name: part[name].attrs.get("units", "") for name in names}
                    units["azimuth_time"] = f"s since {self.reference}"
                    self.writers[suffix] = self.stack.enter_context(
                        GeoTiffBlockWriter(self._path(suffix), names, dtype, self.dem, tags=tags, units=units,
                                           block_shape=self.block_shape))
        if self.out is None:
            for name, (array, _) in self.arrays.items():
                array[row_start:row_start + part.sizes["y"], col_start:col_start + part.sizes["x"]] = part[name].values
            return
        for suffix, (names, _) in _FILES.items():
            for name in names:
                values = part[name].values
                if name == "azimuth_time":
                    values = (values - self.reference) / np.timedelta64(1, "ns") / 1e9  # NaT gives NaN
                elif name == "mixing":
                    values = np.minimum(values, MaskCode.OUTSIDE - 1)  # the masks file's no-data value is outside
                self.writers[suffix].write(name, row_start, col_start, values)

    def result(self) -> xr.Dataset | None:
        if self.out is not None:
            return None
        result = xr.Dataset(
            {name: (("y", "x"), array, attrs) for name, (array, attrs) in self.arrays.items()},
            coords={"y": self.dem["y"], "x": self.dem["x"]},
            attrs=self.attrs,
        )
        return result.rio.write_crs(self.dem.rio.crs, inplace=True)

    def reopen(self) -> xr.Dataset:
        """The written files as one Dataset of dask arrays, with the in-memory result's names."""
        import rioxarray

        variables = {}
        for suffix, (names, _) in _FILES.items():
            opened = rioxarray.open_rasterio(self._path(suffix), chunks={"y": self.rows_per_block}, masked=False)
            for index, name in enumerate(names):
                variables[name] = opened.isel(band=index, drop=True)
        # Seconds since the reference back to datetime64 (NaN gives NaT), lazily.
        variables["azimuth_time"] = self.reference + (variables["azimuth_time"] * 1e9).astype("timedelta64[ns]")
        ds = xr.Dataset(variables, attrs=self.attrs)
        for name in ("layover", "shadow"):
            ds[name].attrs.update(MASK_ATTRS)
        return ds.rio.write_crs(self.dem.rio.crs)
