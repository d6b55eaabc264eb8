"""Block-wise reconstruction on dask.distributed (or threads) for large DEMs.

The DEM is cut into blocks of rows. Every heavy step runs per block, on the cluster:

1. cell geometry of the block's rows plus one halo row on each side;
2. layover/shadow along zero-Doppler profiles: the lines a block's cells fall in are
   swept with the rows of every block those lines cross (neighbouring blocks, however
   long a layover or shadow is), so the masks equal the in-memory ones;
3. scatter of the block's facets into a radar sub-window of the lines it reaches;
4. after the client has summed the sub-windows and formed the ratios, gather back.

Partial sums are added in another order than in memory, so results agree to float
rounding (about 1e-12 relative), not bit for bit. The DEM rows must run along track
(the usual case: polar orbits over north-up grids); transpose the DEM otherwise.
"""

from __future__ import annotations

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

from ._threads import progress_bar, thread_count
from .dem import open_dem
from .errors import InvalidInputError
from .geometry import RadarGeometry
from .io import GeoTiffBlockWriter
from .layover import (
    Output,
    _check_intensity,
    _check_values,
    _LazyProduct,
    _observation_on_window,
    _resolve_input,
    _result_dataset,
    reallocate,
)
from .simulate import (
    MASK_OUTSIDE,
    SmoothFields,
    _cell_geometry,
    _clear_residue,
    _resolve_contribution,
    _Simulation,
    _slant_range_spacing,
    _visibility,
    radar_window,
    rows_run_along_track,
    smooth_samples,
    smooth_stride,
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


# --- tasks (run on workers) -----------------------------------------------------------
#
# Every task recomputes the cell geometry of the rows it needs from the DEM rows it is
# given: geocoding costs a few percent of the facet passes, and nothing per cell has to
# stay on the workers or travel back between phases.


def _block_cells(dem_rows: xr.DataArray, geometry: RadarGeometry, crop: slice | None = None) -> dict[str, np.ndarray]:
    """Cell geometry of ``dem_rows`` and whether each cell faces away from the sensor.

    The normals need one neighbouring row on each side: ``dem_rows`` carries them and
    ``crop`` (local rows) drops them afterwards.
    """
    cells = _cell_geometry(dem_rows, geometry)
    if crop is not None:
        cells = {name: array[crop] for name, array in cells.items()}
    return cells


def _task_plan(dem_rows: xr.DataArray, geometry: RadarGeometry, block: _Block, stride: int) -> dict[str, Any]:
    """What the client needs to plan: extents, steps, orientation, range spacing, and the
    block's share of the cells the smooth fields are fitted to."""
    cells = _block_cells(dem_rows, geometry)
    own = {name: cells[name][block.start - block.halo_start:block.stop - block.halo_start]
           for name in ("line", "sample", "valid", "pixel_area", "incidence")}
    valid = own["valid"]
    if not valid.any():
        return {"any": False}
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # rows without a valid cell: NaN
        masked = np.where(valid, own["line"], np.nan)
        row_lines = np.stack([np.nanmin(masked, axis=1), np.nanmax(masked, axis=1)], axis=1)
    steps = []
    for coordinate in (cells["line"], cells["sample"]):
        for axis in (0, 1):
            step = np.abs(np.diff(coordinate, axis=axis))
            if np.isfinite(step).any():
                steps.append(float(np.nanpercentile(step, 95)))
    return {
        "any": True,
        "line_range": (float(np.nanmin(own["line"][valid])), float(np.nanmax(own["line"][valid]))),
        "sample_range": (float(np.nanmin(own["sample"][valid])), float(np.nanmax(own["sample"][valid]))),
        "steps": max(steps, default=0.0),
        "along_track_rows": rows_run_along_track(cells["line"]),
        "range_spacing": _slant_range_spacing(cells),
        "smooth_samples": smooth_samples(own, stride, block.start),
        "row_lines": row_lines,  # per own row: the smallest and largest line of its cells
    }


def _task_masks(dem_rows: xr.DataArray, geometry: RadarGeometry, block: _Block, first_row: int,
                dem_first_row: int, n_rows: int, band, range_tolerance: float, image_shape: tuple[int, int]):
    """Masks of a block's cells from the profiles of the lines they fall in.

    ``dem_rows`` holds DEM rows ``dem_first_row`` on, with the ``n_rows`` rows from
    ``first_row`` whose cells cross those lines, and a neighbouring row each side.
    """
    crop = slice(first_row - dem_first_row, first_row - dem_first_row + n_rows)
    cells = _block_cells(dem_rows, geometry, crop)
    own = slice(block.start - first_row, block.stop - first_row)
    layover, shadow, mixing = _visibility(cells, cells["faces_away"], band, transpose=False,
                                          range_tolerance=range_tolerance, rows=(own.start, own.stop))
    layover, shadow = layover[own], shadow[own]
    line, sample = cells["line"][own], cells["sample"][own]
    n_image_lines, n_image_samples = image_shape
    with np.errstate(invalid="ignore"):
        inside = cells["valid"][own] & (line >= -0.5) & (line <= n_image_lines - 0.5) & (
            sample >= -0.5) & (sample <= n_image_samples - 0.5)
    layover[~inside] = MASK_OUTSIDE
    shadow[~inside] = MASK_OUTSIDE
    return layover, shadow, mixing


def _block_state(dem_rows: xr.DataArray, plan: dict, block: _Block, layover_own: np.ndarray,
                 shadow_own: np.ndarray, sub_window) -> tuple[_Simulation, slice]:
    """The simulation of a block's rows with their halo, in a radar sub-window."""
    cells = _block_cells(dem_rows, plan["geometry"])
    own = slice(block.start - block.halo_start, block.stop - block.halo_start)
    # Halo rows belong to the neighbouring blocks: their facets are not processed here.
    layover = np.full(cells["valid"].shape, MASK_OUTSIDE, dtype=np.uint8)
    shadow = np.full(cells["valid"].shape, MASK_OUTSIDE, dtype=np.uint8)
    layover[own] = layover_own
    shadow[own] = shadow_own
    state = _Simulation(dem_rows, plan["geometry"], cells, sub_window, plan["oversample"], plan["exact"],
                        plan["contribution"], layover, shadow, np.zeros((1, 1), dtype=np.uint16), {},
                        np.empty(0), plan["smooth"])
    return state, own


def _task_scatter(dem_rows, plan: dict, block: _Block, layover_own, shadow_own, sub_window) -> np.ndarray:
    """The block's own facets scattered into a radar sub-window of full width: (2, lines, samples)."""
    state, own = _block_state(dem_rows, plan, block, layover_own, shadow_own, sub_window)
    return state.facet_pass(gather=False, rows=(own.start, own.stop))[-1]


def _task_gather(dem_rows, plan: dict, block: _Block, layover_own, shadow_own, sub_window,
                 images: np.ndarray, observed: np.ndarray, mixing: np.ndarray) -> xr.Dataset:
    """The block's rows of the result: its facets gather the ratios of the global sums
    ``images`` and the observation on its sub-window."""
    state, own = _block_state(dem_rows, plan, block, layover_own, shadow_own, sub_window)
    state.images, state.mixing = images, mixing
    products = reallocate(state, observed, plan["output"], rows=(own.start, own.stop), keep_energy=False)
    own_state = replace(state, dem=dem_rows.isel(y=own), cells={name: array[own] for name, array in state.cells.items()},
                        layover=layover_own, shadow=shadow_own)
    return _result_dataset(own_state, products, plan["output"], plan["projection"])


# --- driver ---------------------------------------------------------------------------


def reconstruct_distributed(
    sar: Any,
    dem: Any,
    geometry: RadarGeometry | None = None,
    *,
    client: Any = None,
    rows_per_block: int = 512,
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
    rows_per_block : DEM rows per block; the memory per task scales with it.
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
    if out is not None and not Path(out).parent.is_dir():
        raise InvalidInputError(f"output folder {str(Path(out).parent)!r} does not exist: create it first")
    sar, geometry = _resolve_input(sar, geometry, measurement)
    if isinstance(sar, xr.DataArray) and {"y", "x"} <= set(sar.dims):
        raise InvalidInputError(
            "block-wise reconstruction takes observations in radar geometry or SAFE products; "
            "use reconstruct() for images geocoded to a map grid"
        )
    if not isinstance(sar, _LazyProduct):
        _check_values(sar)
    dem = open_dem(dem)
    if min(dem.shape) < 2:
        raise InvalidInputError(f"the DEM must have at least 2 x 2 cells to form facets, got {dem.shape}")
    resolved = _resolve_contribution(contribution, dem)
    executor, close = _executor(client)
    try:
        return _run(sar, dem, geometry, resolved, output, projection, oversample, rows_per_block,
                    executor, out, progress)
    finally:
        close()


def _executor(client: Any):
    if client == "threads":
        # One block per thread: each task's kernels run on threads of their own as well.
        local = _LocalExecutor(max(1, thread_count() // 2))
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
        pending.append((index, executor.submit(func, *args)))
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
    return executor.scatter(value, broadcast=True)


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
        self.results: dict[tuple[str, int], Any] = {}
        self.running: dict[tuple[str, int], Any] = {}
        self.users: dict[tuple[str, int], int] = {}

    def run(self, sequence, finished: Callable[[tuple[str, int], Any], None]) -> None:
        """``sequence``: (key, dependencies, make_call) in an order where every dependency
        comes first; ``make_call(results)`` returns (func, args) from the dependencies'
        results; ``finished(key, result)`` receives every result as it is collected."""
        for _key, dependencies, _ in sequence:
            for dependency in dependencies:
                self.users[dependency] = self.users.get(dependency, 0) + 1
        order: list[tuple[str, int]] = []
        for key, dependencies, make_call in sequence:
            for dependency in dependencies:
                self._collect(dependency, finished)
            func, args = make_call({d: self.results[d] for d in dependencies})
            for dependency in dependencies:
                self._release(dependency)
            self.running[key] = self.executor.submit(func, *args)
            order.append(key)
            while len(self.running) > self.in_flight:
                self._collect(next(k for k in order if k in self.running), finished)
        for key in order:
            if key in self.running:
                self._collect(key, finished)

    def _collect(self, key, finished) -> None:
        future = self.running.pop(key, None)
        if future is None:
            return
        result = future.result()
        del future
        self.update(1)
        finished(key, result)
        if self.users.get(key, 0) > 0:
            self.results[key] = result

    def _release(self, key) -> None:
        self.users[key] -= 1
        if self.users[key] == 0:
            self.results.pop(key, None)


def _run(sar, dem, geometry, resolved, output, projection, oversample, rows_per_block, executor,
         out, progress) -> xr.Dataset:
    rows, cols = dem.shape
    blocks = _blocks(rows, rows_per_block)
    # One task waiting per worker thread keeps them busy; each holds a block's data.
    in_flight = _threads(executor) + 1
    shared_geometry = _share(executor, geometry)
    # 1. Plan: extents, steps and the smooth-field samples of every block.
    stride = smooth_stride(dem.shape)

    def plan(stride: int) -> list[dict]:
        summaries = [None] * len(blocks)
        _bounded(executor, ((_task_plan, (_halo_rows(dem, b.start, b.stop), shared_geometry, b, stride))
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
    line_ranges = np.array([summaries[k]["line_range"] for k in present])
    sample_ranges = np.array([summaries[k]["sample_range"] for k in present])
    window = radar_window(
        np.array([[line_ranges[:, 0].min(), line_ranges[:, 1].max()]]),
        np.array([[sample_ranges[:, 0].min(), sample_ranges[:, 1].max()]]),
        np.ones((1, 2), bool), geometry,
    )
    line0, n_lines, sample0, n_samples = window
    steps = max(summaries[k]["steps"] for k in present)
    factor = int(oversample) if oversample != "auto" else (
        2 if projection == "exact" else int(min(16, max(1, math.ceil(2.0 * steps)))))
    range_tolerance = 0.05 * float(np.nanmedian([summaries[k]["range_spacing"] for k in present]))
    smooth = SmoothFields.fit(
        {name: np.concatenate([summaries[k]["smooth_samples"][name] for k in present])
         for name in summaries[present[0]]["smooth_samples"]}, window)
    margin = math.ceil(steps) + 3
    # Sub-windows (the lines a block's facets reach) and mask bands (the lines its cells
    # fall between), with the rows of the blocks whose cells cross those lines.
    subs, bands, mask_rows = {}, {}, {}
    for k in range(len(blocks)):
        if k not in present:  # no cell of the block in the image: nothing to scatter or gather
            subs[k] = (line0, 1, sample0, n_samples)
            continue
        low, high = summaries[k]["line_range"]
        sub0 = max(line0, math.floor(low) - margin)
        sub1 = min(line0 + n_lines, math.ceil(high) + margin + 1)
        subs[k] = (sub0, max(1, sub1 - sub0), sample0, n_samples)
        band0 = max(line0, math.floor(low) - 1)
        band1 = min(line0 + n_lines, math.ceil(high) + 2)
        bands[k] = (band0, band1 - band0, sample0, n_samples)
        # The rows whose cells fall within a line of the band (not whole neighbouring
        # blocks): a mask task holds little more than its own block.
        crossing = [blocks[j].start + np.flatnonzero((lines[:, 1] >= band0 - 1) & (lines[:, 0] <= band1 + 1))
                    for j in present for lines in [summaries[j]["row_lines"]]
                    if summaries[j]["line_range"][1] >= band0 - 1 and summaries[j]["line_range"][0] <= band1 + 1]
        crossing = np.concatenate([np.arange(blocks[k].start, blocks[k].stop), *crossing])
        mask_rows[k] = (int(crossing.min()), int(crossing.max()) + 1)
    exact = projection == "exact"

    def observed_on(sub) -> np.ndarray:
        source = sar.loader((sub[0], sub[0] + sub[1], sub[2], sub[2] + sub[3])) if isinstance(sar, _LazyProduct) else sar
        return _observation_on_window(source, geometry, sub)

    # The observation is checked before any heavy work, one sub-window at a time.
    covered = False
    for k in present:
        observed = observed_on(subs[k])
        if np.isfinite(observed).any():
            covered = True
            _check_intensity(observed, subs[k])
    if not covered:
        _check_intensity(np.full((1, 1), np.nan), window)  # raises: the image does not cover the DEM
    del observed

    def block_plan(k: int) -> dict:
        block = blocks[k]
        contribution = resolved
        if resolved.user_weight.shape[0] == rows:
            contribution = replace(resolved, user_weight=np.ascontiguousarray(
                resolved.user_weight[block.halo_start:min(rows, block.stop + 1)]))
        return {"geometry": shared_geometry, "oversample": factor, "exact": exact, "contribution": contribution,
                "smooth": smooth, "output": output, "projection": projection}

    # 2. The pipeline, block by block in the order of their lines: masks (each block's
    # lines swept with the rows of every block that crosses them), scatter into the
    # block's sub-window, then gather from the sums of every block whose sub-window
    # shares lines with it.
    order = sorted(present, key=lambda k: (summaries[k]["line_range"][0], k))
    needs = {k: [j for j in present if _overlap(subs[j], subs[k])] for k in present}
    mixing_from = {k: [j for j in present if _overlap(bands[j], subs[k])] for k in present}

    def mask_call(k: int):
        first_row, last_row = mask_rows[k]
        return lambda _: (_task_masks, (_halo_rows(dem, first_row, last_row), shared_geometry, blocks[k], first_row,
                                        max(0, first_row - 1), last_row - first_row, bands[k], range_tolerance,
                                        geometry.grid.shape))

    def own_rows(k: int, masks):
        block = blocks[k]
        if masks is not None:
            layover, shadow = masks[:2]
        else:  # a block with no cell in the image
            layover, shadow = (np.full((block.stop - block.start, cols), MASK_OUTSIDE, dtype=np.uint8) for _ in "ls")
        return (_halo_rows(dem, block.start, block.stop), block_plan(k), block, layover, shadow, subs[k])

    def scatter_call(k: int):
        return lambda results: (_task_scatter, own_rows(k, results[("masks", k)]))

    def gather_call(k: int):
        def make(results):
            sub = subs[k]
            images = np.zeros((2, sub[1], n_samples))
            mixing = np.zeros((sub[1], n_samples), dtype=np.uint16)
            for j in needs.get(k, []):
                _add_lines(images, sub[0], results[("scatter", j)], subs[j][0], np.add)
            for j in mixing_from.get(k, []):
                # Lines shared by two bands are swept over the same rows: their mixing agrees.
                _add_lines(mixing, sub[0], results[("masks", j)][2], bands[j][0], np.maximum)
            if k in present:
                _clear_residue(images)
            masks = results.get(("masks", k))
            return _task_gather, (*own_rows(k, masks), images, observed_on(sub), mixing)
        return make

    sequence, pending = [], list(order)
    done = set()
    for k in order:
        sequence.append((("masks", k), [], mask_call(k)))
        sequence.append((("scatter", k), [("masks", k)], scatter_call(k)))
        done.add(k)
        # A block is gathered once everything it needs is in the sequence.
        while pending and set(needs[pending[0]]) | set(mixing_from[pending[0]]) <= done:
            g = pending.pop(0)
            dependencies = sorted({("scatter", j) for j in needs[g]} | {("masks", j) for j in mixing_from[g]}
                                  | {("masks", g)})
            sequence.append((("gather", g), dependencies, gather_call(g)))
    sequence += [(("gather", k), [], gather_call(k)) for k in range(len(blocks)) if k not in present]

    with contextlib.ExitStack() as stack:
        update = stack.enter_context(progress_bar(len(sequence), "reconstruct (blocks)", progress, unit="task"))
        sink = _ResultSink(dem, geometry, rows_per_block, out, stack)

        def finished(key, result) -> None:
            if key[0] == "gather":
                sink.write(blocks[key[1]].start, result)

        _Pipeline(executor, in_flight, update).run(sequence, finished)
        result = sink.result()
    return sink.reopen() if out is not None else result


def _add_lines(target: np.ndarray, target_line0: int, part: np.ndarray, part_line0: int, combine) -> None:
    """Combine ``part`` (its lines from ``part_line0``) into ``target`` (lines from
    ``target_line0``) where they share lines; the line axis is the second to last."""
    first = max(target_line0, part_line0)
    stop = min(target_line0 + target.shape[-2], part_line0 + part.shape[-2])
    if stop <= first:
        return
    into = target[..., first - target_line0:stop - target_line0, :]
    combine(into, part[..., first - part_line0:stop - part_line0, :], out=into)


#: Variables of the result by the file they go to with ``out``: name suffix, dtype.
_FILES = {
    "": (("backscatter", "geocoded", "flattened", "simulated", "local_incidence_angle"), np.float32),
    "_masks": (("layover", "shadow", "mixing"), np.uint8),
    "_geometry": (("slant_range", "azimuth_time"), np.float64),
}


class _ResultSink:
    """Where the gathered blocks go: arrays of the whole DEM, or GeoTIFFs written block by block."""

    def __init__(self, dem: xr.DataArray, geometry: RadarGeometry, rows_per_block: int, out, stack):
        self.dem, self.geometry, self.rows_per_block, self.out = dem, geometry, rows_per_block, out
        self.stack = stack
        self.arrays: dict[str, tuple[np.ndarray, dict]] = {}
        self.attrs: dict[str, Any] = {}
        self.writers: dict[str, GeoTiffBlockWriter] = {}
        self.reference = np.datetime64(geometry.reference_time, "ns")

    def _path(self, suffix: str) -> Path:
        out = Path(self.out)
        return out.with_name(out.stem + suffix + out.suffix)

    def write(self, row_start: int, part: xr.Dataset) -> None:
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
                        GeoTiffBlockWriter(self._path(suffix), names, dtype, self.dem, tags=tags, units=units))
        if self.out is None:
            for name, (array, _) in self.arrays.items():
                array[row_start:row_start + part.sizes["y"]] = part[name].values
            return
        for suffix, (names, _) in _FILES.items():
            for name in names:
                values = part[name].values
                if name == "azimuth_time":
                    values = (values - self.reference) / np.timedelta64(1, "ns") / 1e9  # NaT gives NaN
                elif name == "mixing":
                    values = np.minimum(values, 254)  # 255 is the masks' no-data value
                self.writers[suffix].write(name, row_start, values)

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
            ds[name].attrs.update(flag_values="0 1 2 255", flag_meanings="none active passive outside")
        return ds.rio.write_crs(self.dem.rio.crs)
