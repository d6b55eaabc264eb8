"""Block-wise reconstruction, on local threads or a dask.distributed cluster, for DEMs too large to reconstruct in
memory.

:func:`sarheight.reconstruction.reconstruct` runs here when given ``chunks`` or ``client``
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
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import xarray as xr

from ..errors import InvalidInputError
from ..geometry import RadarWindow
from ..io import check_memory
from ..masks import MaskCode
from ..observation import (
    Observation,
    check_intensity,
    check_values,
    intensity_flags,
    warn_if_implausible,
    warn_partial_coverage,
)
from ..reallocation import Output
from ..simulate.cells import (
    bilinear_oversample,
    channels,
    radar_sums,
    radar_window,
    step_stride,
    window_of_extent,
)
from ..simulate.contribution import Contribution, FacetContribution, Projection, resolve_contribution
from ..simulate.engine import BYTES_PER_CELL, SmoothFields, clear_residue, smooth_stride
from ..threads import progress_bar
from .outputs import ResultSink
from .pieces import (
    Axes,
    BlockPlan,
    Tile,
    TilePlan,
    add_window,
    band_rows,
    blocks_of,
    bounded,
    halo_rows,
    overlapping,
    sheared,
    strip_rows,
    sub_window,
    task_gather,
    task_masks,
    task_plan,
    task_scatter,
)
from .workers import Workers

logger = logging.getLogger(__name__)


def reconstruct_blockwise(observation: Observation, dem: xr.DataArray, *, contribution: Contribution,
                          output: Output, projection: Projection, oversample: int | Literal["auto"],
                          rows_per_block: int, cols_per_tile: int, client: Any = None,
                          out: str | os.PathLike[str] | None = None, progress: bool = True) -> xr.Dataset:
    """Reconstruct block by block (:func:`sarheight.reconstruction.reconstruct` with ``chunks`` or
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
        self.blocks = blocks_of(rows, rows_per_block)
        self.col_edges = [*range(0, cols, cols_per_tile), cols]
        if len(self.col_edges) > 2 and self.col_edges[-1] - self.col_edges[-2] < cols_per_tile // 4:
            del self.col_edges[-2]  # no sliver of a tile at the right edge
        # One task waiting per worker thread keeps them busy; each holds a block's data.
        self.in_flight = workers.threads + 1
        self.geometry = workers.broadcast(observation.geometry)
        self.axes = workers.broadcast(Axes.of(dem))

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
        self.tile_plan = TilePlan(factor, self.projection == "exact", self.contribution, self.smooth, self.output)
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

    def _plan_blocks(self, stride: int) -> list[BlockPlan]:
        plans: list[BlockPlan] = [None] * len(self.blocks)  # type: ignore[list-item]
        steps_every = step_stride(self.dem.shape)
        calls = ((task_plan, (halo_rows(self.dem, b.start, b.stop), self.geometry, b, stride, steps_every,
                               self.col_edges))
                 for b in self.blocks)
        bounded(self.workers, calls, plans.__setitem__, self.in_flight)
        return plans

    def _plan_tiles(self, plans: list[BlockPlan]) -> None:
        """The tiles, the radar sub-windows of those with cells in the image, and the
        tiles whose sub-windows overlap each one's (whose sums its gather adds)."""
        self.tiles: list[Tile] = []
        self.subs: dict[Tile, RadarWindow] = {}
        self.tile_lines: dict[Tile, tuple[float, float]] = {}
        for k, block in enumerate(self.blocks):
            for m, (c0, c1) in enumerate(itertools.pairwise(self.col_edges)):
                tile = Tile(k, (block.start, block.stop), (c0, c1))
                self.tiles.append(tile)
                if not plans[k].any or not plans[k].tiles[m].any_own:
                    continue  # no cell solved: gathered for its geometry and void products only
                extent = plans[k].tiles[m]
                self.subs[tile] = sub_window(extent.extent, self.window)
                self.tile_lines[tile] = extent.own_lines
        self.needs = overlapping(self.subs)

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
            self.band_rows[b] = band_rows(interval_rows, interval_lines, first, stop, self.dem.shape[0])
        return self.band_rows[b]

    def mask_call(self, b: int) -> Callable[[dict], tuple[Callable, tuple]]:
        def make(_: dict) -> tuple[Callable, tuple]:
            row_start, row_stop = self.rows_of_band(b)
            height, index = sheared(self.dem, row_start, row_stop)
            index = np.clip(index, 0, self.dem.shape[0] - 1)
            away = np.take_along_axis(self.faces_away, index, axis=0)
            own_layover = np.take_along_axis(self.active_layover, index, axis=0)
            return task_masks, (self.axes, row_start, height, away, own_layover, self.geometry, self.bands[b],
                                self.window,
                                 self.range_tolerance)
        return make

    def masks_done(self, b: int, result: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]) -> None:
        band_layover, band_shadow, band_mixing, judged = result
        first, stop = self.bands[b]
        row_start = self.band_rows.pop(b)[0]
        index = strip_rows(row_start, band_layover.shape[0])
        at = np.nonzero(judged)
        self.layover[index[at], at[1]] = band_layover[at]
        self.shadow[index[at], at[1]] = band_shadow[at]
        self.mixing[first - self.window.line0:stop - self.window.line0] = band_mixing

    def tile_args(self, tile: Tile) -> tuple:
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

    def scatter_call(self, tile: Tile) -> Callable[[dict], tuple[Callable, tuple]]:
        return lambda _: (task_scatter, self.tile_args(tile))

    def gather_call(self, tile: Tile) -> Callable[[dict], tuple[Callable, tuple]]:
        def make(results: dict) -> tuple[Callable, tuple]:
            args = self.tile_args(tile)
            sub = args[-1]
            sums = radar_sums(sub.lines, sub.samples)
            images = channels(sums)
            for other in self.needs.get(tile, []):
                add_window(images, sub, channels(results[("scatter", other)]), self.subs[other])
            if tile in self.subs:
                clear_residue(images, sub, self.smooth, self.contribution)
            sub_mixing = np.ascontiguousarray(self.mixing[sub.index_in(self.window)])
            return task_gather, (*args, self.workers.upload(sums), self.observation_for_task(sub), sub_mixing)
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
            sink = ResultSink(self.dem, self.observation.geometry, self.rows_per_block, out, stack,
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
