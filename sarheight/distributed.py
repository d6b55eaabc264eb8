"""Block-wise reconstruction on dask.distributed (or threads) for DEMs too large to reconstruct in memory.

Every heavy step runs per piece of the DEM, on the cluster, and each task recomputes the
cell geometry it needs (geocoding costs a few percent of the facet passes), so nothing
per cell stays on the workers or travels back between phases:

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
import itertools
import logging
import math
import os
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from ._threads import progress_bar, serial_call, thread_count
from .dem import open_dem
from .errors import InvalidInputError
from .geometry import RadarGeometry
from .io import GeoTiffBlockWriter
from .layover import (
    Output,
    _check_intensity,
    _check_observation,
    _check_values,
    _from_xarray_sentinel,
    _LazyProduct,
    _observation_on_window,
    _resolve_input,
    _result_dataset,
    reallocate,
    warn_partial_coverage,
)
from .masks import MASK_ATTRS, MaskCode
from .simulate import (
    SmoothFields,
    _cell_geometry,
    _check_oversample,
    _clear_residue,
    _resolve_contribution,
    _Simulation,
    _slant_range_spacing,
    _visibility,
    bilinear_oversample,
    cell_geometry_arrays,
    cell_steps,
    channels,
    radar_sums,
    radar_window,
    rows_run_along_track,
    smooth_samples,
    smooth_stride,
    step_stride,
)

logger = logging.getLogger(__name__)


class _LocalExecutor:
    """The submit/gather subset of a dask Client, on local threads (the ``chunks=`` path)."""

    def __init__(self, workers: int | None = None):
        self.pool = ThreadPoolExecutor(max_workers=workers)

    def submit(self, func: Callable, *args: Any, **kwargs: Any):
        return self.pool.submit(func, *args, **kwargs)

    def gather(self, futures):
        return [f.result() for f in futures]

    def close(self) -> None:
        self.pool.shutdown()


@dataclass
class _Block:
    start: int  # first own row
    stop: int  # one past the last own row
    halo_start: int  # first row of the arrays (start - 1, or 0)


def _blocks(rows: int, rows_per_block: int) -> list[_Block]:
    if rows_per_block < 2:
        raise InvalidInputError(f"blocks need at least 2 rows, got rows_per_block={rows_per_block}")
    edges = [*range(0, rows, rows_per_block), rows]
    return [_Block(a, b, max(0, a - 1)) for a, b in itertools.pairwise(edges) if b > a]


@dataclass(frozen=True)
class _Tile:
    """A block of rows by a range of columns: the unit of the facet passes."""

    block: int
    rows: tuple[int, int]
    cols: tuple[int, int]


#: Rows of the intervals over which the plan gives each column's line extent (sheared
#: bands are cut at this granularity).
_LINE_SAMPLING = 8


# --- tasks (run on workers) -----------------------------------------------------------


def _task_plan(dem_rows: xr.DataArray, geometry: RadarGeometry, block: _Block, stride: int,
               steps_every: int, col_edges: list[int]) -> dict[str, Any]:
    """What the client needs to plan, from the cell geometry of a block's rows (with halo).

    Extents, the cell steps (``simulate.cell_steps``) every ``steps_every`` rows and
    columns, orientation and range spacing; the faces-away flags of the own rows;
    each column's line every ``_LINE_SAMPLING`` rows (and at the last own row); per
    tile (column range of ``col_edges``), the extent in lines and samples of its cells
    and their neighbours; the block's share of the cells the smooth fields are fitted to.
    """
    cells = _cell_geometry(dem_rows, geometry)
    own_rows = slice(block.start - block.halo_start, block.stop - block.halo_start)
    own = {name: cells[name][own_rows] for name in ("line", "sample", "valid", "pixel_area", "incidence")}
    valid = own["valid"]
    summary: dict[str, Any] = {"any": bool(valid.any()), "faces_away": cells["faces_away"][own_rows]}
    if not summary["any"]:
        return summary
    line = np.where(cells["valid"], cells["line"], np.nan)
    sample = np.where(cells["valid"], cells["sample"], np.nan)
    tiles = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: NaN
        for c0, c1 in itertools.pairwise(col_edges):
            # Own cells and their ring of neighbours: every facet vertex of the tile lies
            # between those centres (or half a cell beyond them at the DEM's border).
            ring = (slice(max(0, own_rows.start - 1), own_rows.stop + 1), slice(max(0, c0 - 1), c1 + 1))
            own_tile = (own_rows, slice(c0, c1))
            any_own = bool(valid[:, c0:c1].any())
            extent = [np.nanmin(line[ring]), np.nanmax(line[ring]), np.nanmin(sample[ring]), np.nanmax(sample[ring])]
            step = max([float(np.nanmax(np.abs(np.diff(a[ring], axis=axis)), initial=0.0))
                        for a in (line, sample) for axis in (0, 1) if a[ring].shape[axis] > 1], default=0.0)
            own_lines = [np.nanmin(line[own_tile]), np.nanmax(line[own_tile])] if any_own else [np.nan, np.nan]
            tiles.append((any_own, extent, step, own_lines))
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
    summary.update(
        line_range=(float(np.nanmin(own["line"][valid])), float(np.nanmax(own["line"][valid]))),
        sample_range=(float(np.nanmin(own["sample"][valid])), float(np.nanmax(own["sample"][valid]))),
        steps=cell_steps(cells, steps_every, block.halo_start, (own_rows.start, own_rows.stop)),
        along_track_rows=rows_run_along_track(cells["line"]),
        range_spacing=_slant_range_spacing(cells),
        smooth_samples=smooth_samples(own, stride, block.start),
        tiles=tiles,
        column_lines=(interval_rows, interval_lines),
    )
    return summary


def _task_masks(axes: _Axes, row_start: np.ndarray, height: np.ndarray, faces_away: np.ndarray,
                geometry: RadarGeometry, band: tuple[int, int], window: tuple[int, int, int, int],
                range_tolerance: float):
    """Layover, shadow and mixing of a band of lines [band[0], band[1]).

    ``height`` and ``faces_away`` hold, column by column, the DEM rows from ``row_start``
    whose cells cross the band's lines and the next (a sheared strip, ``_sheared``; rows
    beyond a column's strip are void). The cells
    judged are those whose line falls in the band; the profiles of lines band[0] ..
    band[1] are cut from all of them. Returns the masks (uint8, 255 where not judged)
    and the mixing of lines band[0]:band[1] (uint16, window samples).
    """
    lon, lat = axes.lon_lat(row_start, height.shape[0])
    cells = cell_geometry_arrays(lon, lat, height, geometry, faces_away=False)
    del lon, lat
    line0, n_lines, sample0, n_samples = window
    first, stop = band
    with np.errstate(invalid="ignore"):
        key = np.floor(cells["line"])
        # The window's first band also judges the cells just before its first line (an
        # image's line -0.5 .. 0), which in memory take that line's profile alone.
        judged = cells["valid"] & (key >= (first - 1 if first == line0 else first)) & (key < stop)
    profile_lines = (first, min(stop + 1, line0 + n_lines) - first, sample0, n_samples)
    layover, shadow, mixing = _visibility(cells, faces_away, profile_lines, transpose=False,
                                          range_tolerance=range_tolerance, judged=judged)
    lines, samples = geometry.grid.shape
    with np.errstate(invalid="ignore"):
        inside = judged & (cells["line"] >= -0.5) & (cells["line"] <= lines - 0.5) & (
            cells["sample"] >= -0.5) & (cells["sample"] <= samples - 0.5)
    layover[~inside] = MaskCode.OUTSIDE
    shadow[~inside] = MaskCode.OUTSIDE
    return layover, shadow, mixing[:stop - first], judged


def _tile_state(dem_view: xr.DataArray, plan: dict, own: tuple[slice, slice], layover_view: np.ndarray,
                shadow_view: np.ndarray, sub_window) -> _Simulation:
    """The simulation of a tile with its halo, in a radar sub-window (masks 255 in the
    halo: the neighbouring tiles' cells are not processed here)."""
    cells = _cell_geometry(dem_view, plan["geometry"])
    return _Simulation(dem_view, plan["geometry"], cells, sub_window, plan["oversample"], plan["exact"],
                       plan["contribution"], layover_view, shadow_view, np.zeros((1, 1), dtype=np.uint16), {},
                       radar_sums(0, 0), plan["smooth"])


def _task_scatter(dem_view, plan: dict, own: tuple[slice, slice], layover_view, shadow_view, sub_window) -> np.ndarray:
    """The tile's own facets scattered into its radar sub-window: a radar buffer
    (``simulate.radar_sums``) of its two channels."""
    state = _tile_state(dem_view, plan, own, layover_view, shadow_view, sub_window)
    rows, cols = own
    return state.facet_pass(gather=False, rows=(rows.start, rows.stop), cols=(cols.start, cols.stop),
                            consume=lambda *_: None, per_cell=False)[-1]


def _task_gather(dem_view, plan: dict, own: tuple[slice, slice], layover_view, shadow_view, sub_window,
                 sums: np.ndarray, observed: Any, mixing: np.ndarray) -> xr.Dataset:
    """The tile's cells of the result: its facets gather the ratios of the summed images
    (the radar buffer ``sums``) and the observation on its sub-window (an array, or a
    lazy DataArray read here, on the worker)."""
    if not isinstance(observed, np.ndarray):
        import dask

        with dask.config.set(scheduler="synchronous"):  # this task is the worker's unit of work
            observed = _observation_on_window(observed, plan["geometry"], sub_window)
        _check_values(observed)
    state = _tile_state(dem_view, plan, own, layover_view, shadow_view, sub_window)
    state.sums, state.mixing = sums, mixing
    rows, cols = own
    products = reallocate(state, observed, plan["output"], rows=(rows.start, rows.stop),
                          cols=(cols.start, cols.stop), keep_energy=False)
    own_state = replace(state, dem=dem_view.isel(y=rows, x=cols),
                        cells={name: array[rows, cols] for name, array in state.cells.items()},
                        layover=layover_view[rows, cols], shadow=shadow_view[rows, cols])
    part = _result_dataset(own_state, products, plan["output"], plan["projection"])
    part.attrs["missing_pixels"] = products["missing_pixels"]  # taken off by the sink
    return part


# --- driver ---------------------------------------------------------------------------


def reconstruct_distributed(
    sar: Any,
    dem: Any,
    geometry: RadarGeometry | None = None,
    *,
    client: Any = None,
    rows_per_block: int = 256,
    cols_per_tile: int | None = None,
    out: str | os.PathLike[str] | None = None,
    contribution: Any = "model",
    output: Output = "sigma0",
    projection: Literal["exact", "bilinear"] = "exact",
    oversample: int | Literal["auto"] = "auto",
    measurement: str = "IW/VV",
    sar_quantity: Literal["beta0", "sigma0", "gamma0"] = "sigma0",
    sar_db: bool = False,
    progress: bool = True,
) -> xr.Dataset:
    """:func:`sarheight.layover.reconstruct` block by block on a dask.distributed cluster.

    Parameters
    ----------
    sar, dem, geometry, contribution, output, projection, oversample, measurement,
    sar_quantity, sar_db : as for :func:`sarheight.layover.reconstruct`.
    client : a ``dask.distributed.Client``, a scheduler address (str), ``None`` for a new
        ``LocalCluster`` (closed afterwards), or ``"threads"`` for local threads without
        dask (what ``reconstruct(..., chunks=...)`` uses).
    rows_per_block : DEM rows per block (and radar lines per band of the masks).
    cols_per_tile : DEM columns per tile of the facet passes, default 4 x ``rows_per_block``;
        the memory per task scales with blocks, bands and tiles, not the DEM.
    out : a GeoTIFF path: the result is written there block by block (float products;
        ``<out>_masks.tif``: layover, shadow, mixing as uint8; ``<out>_geometry.tif``:
        slant range and azimuth time in float64), each file atomically, and returned
        opened lazily (dask arrays), so that nothing of the DEM's size is held in
        memory. ``None``: the result is assembled in memory.
    progress : show a progress bar (only when standard error is a terminal).

    Returns
    -------
    The same Dataset as :func:`sarheight.layover.reconstruct`, to float rounding
    (``mixing`` saturates at 254 in ``out``'s masks file).

    Notes
    -----
    Blocks are processed in the order of the radar lines they reach. A block's radar
    sums are kept only until the last block whose lines overlap them is gathered, so
    the client holds a few blocks' worth of radar lines, plus, without ``out``, the
    per-cell outputs.
    """
    if output not in ("sigma0", "gamma0"):
        raise InvalidInputError(f"output must be 'sigma0' or 'gamma0', got {output!r}")
    if projection not in ("exact", "bilinear"):
        raise InvalidInputError(f"projection must be 'exact' or 'bilinear', got {projection!r}")
    if oversample != "auto":
        _check_oversample(oversample)
    if out is not None and not Path(out).parent.is_dir():
        raise InvalidInputError(f"output folder {str(Path(out).parent)!r} does not exist: create it first")
    sar, geometry = _resolve_input(sar, geometry, measurement)
    if isinstance(sar, xr.DataArray) and {"y", "x"} <= set(sar.dims):
        raise InvalidInputError(
            "block-wise reconstruction takes observations in radar geometry or SAFE products; "
            "use reconstruct() for images geocoded to a map grid"
        )
    if not isinstance(sar, _LazyProduct):
        _check_observation(sar, geometry)
    # The heights are only read: no copy of a DEM that is already ellipsoidal.
    dem = open_dem(dem, copy=False)
    if min(dem.shape) < 2:
        raise InvalidInputError(f"the DEM must have at least 2 x 2 cells to form facets, got {dem.shape}")
    resolved = _resolve_contribution(contribution, dem)
    executor, close = _executor(client)
    try:
        if cols_per_tile is None:
            # Near-square tiles: a tile's radar footprint stays compact when the lines cross
            # the DEM at an angle, so few neighbours' sums are held for its gather.
            cols_per_tile = 4 * rows_per_block
        if cols_per_tile < 2:
            raise InvalidInputError(f"tiles need at least 2 columns, got cols_per_tile={cols_per_tile}")
        return _run(sar, dem, geometry, resolved, output, projection, oversample, rows_per_block, cols_per_tile,
                    executor, out, progress)
    finally:
        close()


def _executor(client: Any):
    if client == "threads":
        # A task per thread: while one runs Python (assembling, writing), another computes.
        local = _LocalExecutor(max(1, thread_count()))
        return local, local.close
    from dask.distributed import Client, LocalCluster

    if client is None:
        cluster = LocalCluster(processes=True, dashboard_address=None)
        owned = Client(cluster)

        def close() -> None:
            owned.close()
            cluster.close()

        return owned, close
    if isinstance(client, str):
        owned = Client(client)
        return owned, owned.close
    return client, lambda: None


def _halo_rows(dem: xr.DataArray, first: int, stop: int) -> xr.DataArray:
    """DEM rows ``first:stop`` with one neighbouring row each side where the DEM has it."""
    return dem.isel(y=slice(max(0, first - 1), min(dem.shape[0], stop + 1)))


def _bounded(executor, calls, consume, in_flight: int) -> None:
    """Submit ``calls`` (func, args) keeping at most ``in_flight`` unfinished, and hand each
    result to ``consume(index, result)`` in order: the client never holds more than
    ``in_flight`` results, and the workers never more than ``in_flight`` inputs."""
    pending: list[tuple[int, Any]] = []
    for index, (func, args) in enumerate(calls):
        pending.append((index, executor.submit(serial_call, func, *args)))
        if len(pending) >= in_flight:
            done, future = pending.pop(0)
            consume(done, future.result())
            del future
    for done, future in pending:
        consume(done, future.result())


def _threads(executor) -> int:
    if isinstance(executor, _LocalExecutor):
        return executor.pool._max_workers
    try:
        return max(1, sum(executor.nthreads().values()))
    except Exception:  # a scheduler that cannot say: assume a small cluster
        return 2


def _share(executor, value):
    """A value every task takes (the geometry): sent to the workers once, not with each task."""
    if isinstance(executor, _LocalExecutor):
        return value
    # hash=False: a key of its own per run (a content hash would be shared by two runs on
    # one client, and the first run's release would drop the second's data).
    return executor.scatter(value, broadcast=True, hash=False)


def _send(executor, value):
    """A task's large argument (a tile's radar-grid sums): moved to a worker ahead of the
    task rather than inside its description, as dask asks of arguments of many MB."""
    if isinstance(executor, _LocalExecutor):
        return value
    return executor.scatter(value, hash=False)


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether two radar windows (line0, lines, sample0, samples) share a line."""
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1]


class _Pipeline:
    """Tasks run in a fixed sequence, each once the tasks it depends on have finished.

    At most ``in_flight`` tasks run at a time; a result is kept until the last task that
    depends on it has taken it, then dropped: with the sequence following the radar
    lines, the client holds a few blocks' results at any moment.
    """

    def __init__(self, executor, in_flight: int, update: Callable[[int], None]):
        self.executor, self.in_flight, self.update = executor, in_flight, update
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
            self.running[key] = self.executor.submit(serial_call, func, *args)
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


def _run(sar, dem, geometry, resolved, output, projection, oversample, rows_per_block, cols_per_tile, executor,
         out, progress) -> xr.Dataset:
    rows, cols = dem.shape
    blocks = _blocks(rows, rows_per_block)
    col_edges = [*range(0, cols, cols_per_tile), cols]
    if len(col_edges) > 2 and col_edges[-1] - col_edges[-2] < cols_per_tile // 4:
        del col_edges[-2]  # no sliver of a tile at the right edge
    # One task waiting per worker thread keeps them busy; each holds a block's data.
    in_flight = _threads(executor) + 1
    shared_geometry = _share(executor, geometry)
    shared_axes = _share(executor, _Axes.of(dem))

    # 1. Plan, per block of rows.
    stride = smooth_stride(dem.shape)
    steps_every = step_stride(dem.shape)

    def plan(stride: int) -> list[dict]:
        summaries = [None] * len(blocks)
        _bounded(executor, ((_task_plan, (_halo_rows(dem, b.start, b.stop), shared_geometry, b, stride, steps_every,
                                          col_edges))
                            for b in blocks), summaries.__setitem__, in_flight)
        return summaries

    summaries = plan(stride)
    present = [k for k, s in enumerate(summaries) if s["any"]]
    if not present:
        radar_window(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1), bool), geometry)  # raises
    if stride > 1 and not any(summaries[k]["smooth_samples"]["line"].size for k in present):
        summaries = plan(1)  # as in memory: too few valid cells on the strided subset
    if not all(summaries[k]["along_track_rows"] for k in present):
        raise InvalidInputError(
            "the DEM's rows do not run along track for this geometry: block-wise reconstruction "
            "needs them to; transpose the DEM or use reconstruct() in memory"
        )
    faces_away = np.zeros((rows, cols), dtype=bool)
    for block, summary in zip(blocks, summaries, strict=True):
        faces_away[block.start:block.stop] = summary.pop("faces_away")
    line_ranges = np.array([summaries[k]["line_range"] for k in present])
    sample_ranges = np.array([summaries[k]["sample_range"] for k in present])
    window = radar_window(
        np.array([[line_ranges[:, 0].min(), line_ranges[:, 1].max()]]),
        np.array([[sample_ranges[:, 0].min(), sample_ranges[:, 1].max()]]),
        np.ones((1, 2), bool), geometry,
    )
    line0, n_lines, sample0, n_samples = window
    # The same cell pairs as in memory, hence the same factor.
    steps = [np.concatenate([summaries[k]["steps"][q] for k in present]) for q in range(4)]
    factor = int(oversample) if oversample != "auto" else (
        2 if projection == "exact" else bilinear_oversample(steps))
    del steps
    range_tolerance = 0.05 * float(np.nanmedian([summaries[k]["range_spacing"] for k in present]))
    smooth = SmoothFields.fit(
        {name: np.concatenate([summaries[k]["smooth_samples"][name] for k in present])
         for name in summaries[present[0]]["smooth_samples"]}, window)
    exact = projection == "exact"

    # 2. Tiles and their radar sub-windows; bands of lines and their sheared rows.
    tiles, subs, tile_lines = [], {}, {}
    for k, block in enumerate(blocks):
        for m, (c0, c1) in enumerate(itertools.pairwise(col_edges)):
            tile = _Tile(k, (block.start, block.stop), (c0, c1))
            tiles.append(tile)
            if k not in present or not summaries[k]["tiles"][m][0]:
                continue  # no cell solved: gathered for its geometry and void products only
            _, extent, step, own_lines = summaries[k]["tiles"][m]
            subs[tile] = _sub_window(extent, step, window)
            tile_lines[tile] = own_lines
    band_lines = max(2, rows_per_block)
    bands = [(b0, min(b0 + band_lines, line0 + n_lines)) for b0 in range(line0, line0 + n_lines, band_lines)]
    column_lines = {k: summaries[k].pop("column_lines") for k in present}
    for k in present:
        del summaries[k]["tiles"]
    band_rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def rows_of_band(b: int) -> tuple[np.ndarray, np.ndarray]:
        """Per column, the DEM rows of band b (from the blocks whose lines reach it and
        their neighbours: a pair of sampled rows may straddle a block's edge)."""
        if b not in band_rows:
            first, stop = bands[b]
            near = {j for k in present for j in (k - 1, k, k + 1)
                    if summaries[k]["line_range"][1] >= first - 2 and summaries[k]["line_range"][0] <= stop + 2}
            near = sorted(near & set(present))
            if not near:  # lines of the window's margin, which no cell reaches
                band_rows[b] = (np.zeros(cols, dtype=np.int64), np.zeros(cols, dtype=np.int64))
                return band_rows[b]
            interval_rows = np.concatenate([column_lines[k][0] for k in near])
            interval_lines = np.concatenate([column_lines[k][1] for k in near])
            band_rows[b] = _band_rows(interval_rows, interval_lines, first, stop, rows)
        return band_rows[b]

    lazy = isinstance(sar, xr.DataArray) and not isinstance(sar.data, np.ndarray)

    def observed_on(sub) -> np.ndarray:
        source = sar.loader((sub[0], sub[0] + sub[1], sub[2], sub[2] + sub[3])) if isinstance(sar, _LazyProduct) else sar
        return _observation_on_window(source, geometry, sub)

    def observation_for_task(sub):
        """The observation a gather takes: a lazy image's part over the sub-window is read
        by the task itself (on the worker, beside other tasks), anything else here."""
        if lazy:
            return _lazy_window(sar, sub)
        return observed_on(sub)

    # The observation is checked before any heavy work, one sub-window at a time; a lazy
    # one (whose reading is the work) on a few tiles spread over the DEM, then by each
    # gather as it reads its window.
    checked = list(subs.values())
    if lazy or isinstance(sar, _LazyProduct):
        checked = checked[::max(1, len(checked) // 8)]
    covered = False
    for sub in checked:
        observed = observed_on(sub)
        if np.isfinite(observed).any():
            covered = True
            _check_intensity(observed, sub)
    if not covered:
        _check_intensity(np.full((1, 1), np.nan), window)  # raises: the image does not cover the DEM
    del observed

    layover = np.full((rows, cols), MaskCode.OUTSIDE, dtype=np.uint8)
    shadow = np.full((rows, cols), MaskCode.OUTSIDE, dtype=np.uint8)
    mixing = np.zeros((n_lines, n_samples), dtype=np.uint16)

    def mask_call(b: int):
        def make(_):
            row_start, row_stop = rows_of_band(b)
            height, index = _sheared(dem, row_start, row_stop)
            away = np.take_along_axis(faces_away, np.clip(index, 0, rows - 1), axis=0)
            return _task_masks, (shared_axes, row_start, height, away, shared_geometry, bands[b], window,
                                 range_tolerance)
        return make

    def masks_done(b: int, result) -> None:
        band_layover, band_shadow, band_mixing, judged = result
        first, stop = bands[b]
        row_start = band_rows.pop(b)[0]
        index = _strip_rows(row_start, band_layover.shape[0])
        at = np.nonzero(judged)
        layover[index[at], at[1]] = band_layover[at]
        shadow[index[at], at[1]] = band_shadow[at]
        mixing[first - line0:stop - line0] = band_mixing

    def tile_args(tile: _Tile):
        (r0, r1), (c0, c1) = tile.rows, tile.cols
        view = (slice(max(0, r0 - 1), min(rows, r1 + 1)), slice(max(0, c0 - 1), min(cols, c1 + 1)))
        own = (slice(r0 - view[0].start, r1 - view[0].start), slice(c0 - view[1].start, c1 - view[1].start))
        # The halo's cells belong to the neighbouring tiles: 255, not processed here.
        masks = []
        for full in (layover, shadow):
            part = np.full((view[0].stop - view[0].start, view[1].stop - view[1].start), MaskCode.OUTSIDE, dtype=np.uint8)
            part[own] = full[r0:r1, c0:c1]
            masks.append(part)
        contribution = resolved
        if resolved.user_weight.shape == (rows, cols):
            contribution = replace(resolved, user_weight=np.ascontiguousarray(resolved.user_weight[view]))
        plan = {"geometry": shared_geometry, "oversample": factor, "exact": exact, "contribution": contribution,
                "smooth": smooth, "output": output, "projection": projection}
        return (dem.isel(y=view[0], x=view[1]), plan, own, *masks, subs.get(tile, (line0, 1, sample0, 1)))

    def scatter_call(tile: _Tile):
        return lambda _: (_task_scatter, tile_args(tile))

    needs = _overlapping(subs)

    def gather_call(tile: _Tile):
        def make(results):
            args = tile_args(tile)
            sub = args[-1]
            sums = radar_sums(sub[1], sub[3])
            images = channels(sums)
            for u in needs.get(tile, []):
                _add_window(images, sub, channels(results[("scatter", u)]), subs[u])
            if tile in subs:
                _clear_residue(images, sub, smooth, resolved)
            sub_mixing = np.ascontiguousarray(
                mixing[sub[0] - line0:sub[0] - line0 + sub[1], sub[2] - sample0:sub[2] - sample0 + sub[3]])
            return _task_gather, (*args, _send(executor, sums), observation_for_task(sub), sub_mixing)
        return make

    def bands_of(lines_from: float, lines_to: float) -> list[int]:
        """The bands of the lines lines_from..lines_to (clamped to the window: lines
        before its first are judged by the first band, if at all)."""
        def band(line: float) -> int:
            return min(len(bands) - 1, max(0, int((math.floor(line) - line0) // band_lines)))

        return list(range(band(lines_from), band(lines_to) + 1))

    # 3. The pipeline, in the order of the lines: a band's masks before the tiles whose
    # cells it judges; a tile's scatter before the gathers of the tiles it overlaps; a
    # gather once every scatter it needs and the bands of its lines are in.
    order = sorted(subs, key=lambda t: (tile_lines[t][0], t.cols[0]))
    position = {t: index for index, t in enumerate(order)}
    gather_deps = {}
    for t in order:
        sub = subs[t]
        mask_bands = set(bands_of(tile_lines[t][0] - 1e-3, tile_lines[t][1] + 1e-3)) | set(
            bands_of(sub[0], sub[0] + sub[1] - 1))
        gather_deps[t] = sorted({("scatter", u) for u in needs[t]}, key=lambda key: position[key[1]]) + [
            ("masks", b) for b in sorted(mask_bands)]
    sequence, placed, pending = [], set(), list(order)
    next_band = 0

    def place_bands_up_to(last: int) -> None:
        nonlocal next_band
        while next_band <= last:
            sequence.append((("masks", next_band), [], mask_call(next_band)))
            placed.add(("masks", next_band))
            next_band += 1

    def place_ready_gathers() -> None:
        while pending and all(("scatter", u) in placed for u in needs[pending[0]]):
            g = pending.pop(0)
            place_bands_up_to(max(key[1] for key in gather_deps[g] if key[0] == "masks"))
            sequence.append((("gather", g), gather_deps[g], gather_call(g)))

    for t in order:
        # A hair wider than the tile's lines: a band computes its cells' lines afresh,
        # to rounding (and, for projected DEMs, to the millimetre of the coordinates).
        own_bands = bands_of(tile_lines[t][0] - 1e-3, tile_lines[t][1] + 1e-3)
        place_bands_up_to(own_bands[-1])
        sequence.append((("scatter", t), [("masks", b) for b in own_bands], scatter_call(t)))
        placed.add(("scatter", t))
        place_ready_gathers()
    place_bands_up_to(len(bands) - 1)
    place_ready_gathers()
    sequence += [(("gather", t), [], gather_call(t)) for t in tiles if t not in subs]

    with contextlib.ExitStack() as stack:
        update = stack.enter_context(progress_bar(len(sequence), "reconstruct (tiles)", progress, unit="task"))
        sink = _ResultSink(dem, geometry, rows_per_block, out, stack, (rows_per_block, cols_per_tile))

        def finished(key, result) -> None:
            if key[0] == "masks":
                masks_done(key[1], result)
            elif key[0] == "gather":
                sink.write(key[1].rows[0], key[1].cols[0], result)

        _Pipeline(executor, in_flight, update).run(sequence, finished, keep=lambda key: key[0] == "scatter")
        result = sink.result()
    if sink.tiles_missing_pixels:
        warn_partial_coverage(f"pixels that the facets of {sink.tiles_missing_pixels} of {len(tiles)} tiles reach",
                              stacklevel=3)
    return sink.reopen() if out is not None else result


def _lazy_window(sar: xr.DataArray, window: tuple[int, int, int, int]) -> xr.DataArray:
    """The part of a lazy observation with (line, sample) coordinates over ``window``
    (still lazy: a small graph to send to a worker)."""
    if "azimuth_time" in sar.dims:
        sar = _from_xarray_sentinel(sar)
    line0, n_lines, sample0, n_samples = window
    lines = np.asarray(sar["line"].values)
    samples = np.asarray(sar["sample"].values)
    keep_lines = np.flatnonzero((lines >= line0) & (lines < line0 + n_lines))
    keep_samples = np.flatnonzero((samples >= sample0) & (samples < sample0 + n_samples))
    if keep_lines.size == 0 or keep_samples.size == 0:
        return sar.isel(line=slice(0, 0), sample=slice(0, 0))
    return sar.isel(line=slice(keep_lines[0], keep_lines[-1] + 1), sample=slice(keep_samples[0], keep_samples[-1] + 1))


def _sub_window(extent, step: float, window: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The radar sub-window (line0, lines, sample0, samples) of a tile whose cells and
    neighbours span ``extent`` (lines, samples: min, max, min, max): its facets' vertices
    lie between those centres, or half a neighbour ``step`` beyond them at the DEM's edge."""
    line0, n_lines, sample0, n_samples = window
    margin = math.ceil(0.5 * step) + 2
    first_line = max(line0, math.floor(extent[0]) - margin)
    stop_line = min(line0 + n_lines, math.ceil(extent[1]) + margin + 1)
    first_sample = max(sample0, math.floor(extent[2]) - margin)
    stop_sample = min(sample0 + n_samples, math.ceil(extent[3]) + margin + 1)
    return first_line, max(1, stop_line - first_line), first_sample, max(1, stop_sample - first_sample)


def _overlapping(windows: dict[Any, tuple[int, int, int, int]]) -> dict[Any, list[Any]]:
    """For each key, the keys whose windows share a pixel with its own (itself included),
    found through a grid of buckets rather than by testing every pair."""
    if not windows:
        return {}
    size = max(max(w[1] for w in windows.values()), max(w[3] for w in windows.values()))
    buckets: dict[tuple[int, int], list[Any]] = collections.defaultdict(list)

    def cells(w):
        return [(a, b) for a in range(w[0] // size, (w[0] + w[1] - 1) // size + 1)
                for b in range(w[2] // size, (w[2] + w[3] - 1) // size + 1)]

    for key, w in windows.items():
        for cell in cells(w):
            buckets[cell].append(key)
    index = {key: i for i, key in enumerate(windows)}
    out = {}
    for key, w in windows.items():
        seen = {other for cell in cells(w) for other in buckets[cell]}
        # In a fixed order: the sums of a gather are added the same way every run.
        out[key] = sorted((other for other in seen if _overlap2(windows[other], w)), key=index.__getitem__)
    return out


def _overlap2(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    """Whether two radar windows (line0, lines, sample0, samples) share a pixel."""
    return _overlap(a, b) and a[2] < b[2] + b[3] and b[2] < a[2] + a[3]


def _add_window(target: np.ndarray, target_window, part: np.ndarray, part_window) -> None:
    """Add ``part`` (2, lines, samples) on ``part_window`` into ``target`` on ``target_window``
    where the two share pixels."""
    l0 = max(target_window[0], part_window[0])
    l1 = min(target_window[0] + target_window[1], part_window[0] + part_window[1])
    s0 = max(target_window[2], part_window[2])
    s1 = min(target_window[2] + target_window[3], part_window[2] + part_window[3])
    if l1 <= l0 or s1 <= s0:
        return
    target[:, l0 - target_window[0]:l1 - target_window[0], s0 - target_window[2]:s1 - target_window[2]] += part[
        :, l0 - part_window[0]:l1 - part_window[0], s0 - part_window[2]:s1 - part_window[2]]


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


@dataclass(frozen=True)
class _Axes:
    """A DEM's coordinate axes and horizontal CRS: what a worker needs to place the cells of
    a sheared strip (sent once; the strip itself travels as heights only)."""

    x: np.ndarray
    y: np.ndarray
    crs: Any  # pyproj.CRS, horizontal

    @classmethod
    def of(cls, dem: xr.DataArray) -> _Axes:
        from .dem import horizontal_crs

        return cls(np.asarray(dem["x"].values, dtype=np.float64), np.asarray(dem["y"].values, dtype=np.float64),
                   horizontal_crs(dem))

    def lon_lat(self, row_start: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Longitude and latitude (rad) of the strip's cells (``_sheared``): those the whole
        DEM's cells get in memory (``dem.geodetic_at_rows``), so that the masks judged
        here see the same terrain."""
        from .dem import geodetic_at_rows, is_wgs84_degrees

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
        out = Path(self.out)
        return out.with_name(out.stem + suffix + out.suffix)

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
                    values = np.minimum(values, 254)  # 255 is the masks' no-data value
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
