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

import itertools
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import xarray as xr

from .dem import open_dem
from .errors import InvalidInputError
from .geometry import RadarGeometry
from .layover import (
    Output,
    _check_intensity,
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
    }


def _task_masks(dem_rows: xr.DataArray, geometry: RadarGeometry, block: _Block, first_row: int,
                dem_first_row: int, n_rows: int, band, range_tolerance: float, image_shape: tuple[int, int]):
    """Masks of a block's cells from the profiles of the lines they fall in.

    ``dem_rows`` holds DEM rows ``dem_first_row`` on, with the ``n_rows`` rows from
    ``first_row`` whose cells cross those lines, and a neighbouring row each side.
    """
    crop = slice(first_row - dem_first_row, first_row - dem_first_row + n_rows)
    cells = _block_cells(dem_rows, geometry, crop)
    layover, shadow, mixing = _visibility(cells, cells["faces_away"], band, transpose=False,
                                          range_tolerance=range_tolerance)
    own = slice(block.start - first_row, block.stop - first_row)
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
    contribution: Any = "model",
    output: Output = "sigma0",
    projection: Literal["exact", "bilinear"] = "exact",
    oversample: int | Literal["auto"] = "auto",
    measurement: str = "IW/VV",
    sar_quantity: Literal["beta0", "sigma0", "gamma0"] = "sigma0",
    sar_db: bool = False,
) -> xr.Dataset:
    """:func:`sarheight.layover.reconstruct` block by block on a dask.distributed cluster.

    Parameters
    ----------
    sar, dem, geometry, contribution, output, projection, oversample, measurement,
    sar_quantity, sar_db : as for :func:`sarheight.layover.reconstruct`.
    client : a ``dask.distributed.Client``, a scheduler address (str), ``None`` for a new
        ``LocalCluster`` (closed afterwards), or ``"threads"`` for local threads without
        dask (what ``reconstruct(..., chunks=...)`` uses).
    rows_per_block : DEM rows per block; the workers' memory per task scales with it.

    Returns
    -------
    The same Dataset as :func:`sarheight.layover.reconstruct`, to float rounding.
    Cell geometry, masks and facets stay on the workers; the client holds the DEM, the
    radar-window sums and the per-cell outputs.
    """
    if output not in ("sigma0", "gamma0"):
        raise InvalidInputError(f"output must be 'sigma0' or 'gamma0', got {output!r}")
    if projection not in ("exact", "bilinear"):
        raise InvalidInputError(f"projection must be 'exact' or 'bilinear', got {projection!r}")
    sar, geometry = _resolve_input(sar, geometry, measurement)
    dem = open_dem(dem)
    if min(dem.shape) < 2:
        raise InvalidInputError(f"the DEM must have at least 2 x 2 cells to form facets, got {dem.shape}")
    resolved = _resolve_contribution(contribution, dem)
    executor, close = _executor(client)
    try:
        return _run(sar, dem, geometry, resolved, output, projection, oversample, rows_per_block,
                    executor, sar_quantity, sar_db)
    finally:
        close()


def _executor(client: Any):
    if client == "threads":
        local = _LocalExecutor()
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


def _run(sar, dem, geometry, resolved, output, projection, oversample, rows_per_block, executor,
         sar_quantity, sar_db) -> xr.Dataset:
    if isinstance(sar, xr.DataArray) and {"y", "x"} <= set(sar.dims):
        raise InvalidInputError(
            "block-wise reconstruction takes observations in radar geometry or SAFE products; "
            "use reconstruct() for images geocoded to a map grid"
        )
    rows, cols = dem.shape
    blocks = _blocks(rows, rows_per_block)
    in_flight = 2 * _threads(executor)
    # 1. Plan: extents, steps and the smooth-field samples of every block.
    stride = smooth_stride(dem.shape)

    def plan(stride: int) -> list[dict]:
        summaries = [None] * len(blocks)
        _bounded(executor, ((_task_plan, (_halo_rows(dem, b.start, b.stop), geometry, b, stride)) for b in blocks),
                 summaries.__setitem__, in_flight)
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
    subs = {}
    for k in range(len(blocks)):
        if k not in present:  # no cell of the block in the image: nothing to scatter or gather
            subs[k] = (line0, 1, sample0, n_samples)
            continue
        low, high = summaries[k]["line_range"]
        sub0 = max(line0, math.floor(low) - margin)
        sub1 = min(line0 + n_lines, math.ceil(high) + margin + 1)
        subs[k] = (sub0, max(1, sub1 - sub0), sample0, n_samples)
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
        return {"geometry": geometry, "oversample": factor, "exact": exact, "contribution": contribution,
                "smooth": smooth, "output": output, "projection": projection}

    # 2. Masks: each block's lines swept with the rows of every block that crosses them.
    layover = np.full((rows, cols), MASK_OUTSIDE, dtype=np.uint8)
    shadow = np.full((rows, cols), MASK_OUTSIDE, dtype=np.uint8)
    mixing = np.zeros((n_lines, n_samples), dtype=np.uint16)
    bands = {}

    def mask_calls():
        for k in present:
            low, high = summaries[k]["line_range"]
            band0 = max(line0, math.floor(low) - 1)
            band1 = min(line0 + n_lines, math.ceil(high) + 2)
            members = [j for j in present
                       if summaries[j]["line_range"][1] >= band0 - 1 and summaries[j]["line_range"][0] <= band1 + 1]
            first_row, last_row = blocks[min([*members, k])].start, blocks[max([*members, k])].stop
            bands[k] = (band0, band1 - band0, sample0, n_samples)
            yield _task_masks, (_halo_rows(dem, first_row, last_row), geometry, blocks[k], first_row,
                                max(0, first_row - 1), last_row - first_row, bands[k], range_tolerance,
                                geometry.grid.shape)

    def consume_masks(index: int, result) -> None:
        k = present[index]
        block_layover, block_shadow, block_mixing = result
        layover[blocks[k].start:blocks[k].stop] = block_layover
        shadow[blocks[k].start:blocks[k].stop] = block_shadow
        offset = bands[k][0] - line0
        # Lines shared by two bands are swept over the same rows: their mixing agrees.
        target = mixing[offset:offset + bands[k][1]]
        np.maximum(target, block_mixing, out=target)

    _bounded(executor, mask_calls(), consume_masks, in_flight)

    def own_rows(k: int):
        block = blocks[k]
        return (_halo_rows(dem, block.start, block.stop), block_plan(k), block,
                layover[block.start:block.stop], shadow[block.start:block.stop], subs[k])

    # 3. Scatter: each block's facets into the sub-window of the lines it reaches, summed here.
    images = np.zeros((2, n_lines, n_samples))

    def consume_scatter(index: int, part: np.ndarray) -> None:
        offset = subs[present[index]][0] - line0
        images[:, offset:offset + part.shape[1]] += part

    _bounded(executor, ((_task_scatter, own_rows(k)) for k in present), consume_scatter, in_flight)
    for channel in (0, 1):
        image = images[channel]
        image[image < 1e-10 * max(float(np.abs(image).max()), 1e-300)] = 0.0

    # 4. Gather: ratios of the global sums, sub-window by sub-window; each block returns
    # its rows of the result.
    def gather_calls():
        for k in range(len(blocks)):
            sub = subs[k]
            lines = slice(sub[0] - line0, sub[0] - line0 + sub[1])
            yield _task_gather, (*own_rows(k), np.ascontiguousarray(images[:, lines]), observed_on(sub),
                                 np.ascontiguousarray(mixing[lines]))

    assembled: dict[str, Any] = {}

    def consume_gather(k: int, part: xr.Dataset) -> None:
        if not assembled:
            assembled["attrs"] = part.attrs
            assembled["variables"] = {name: (np.empty((rows, cols), dtype=var.dtype), var.attrs)
                                      for name, var in part.data_vars.items()}
        for name, (array, _) in assembled["variables"].items():
            array[blocks[k].start:blocks[k].stop] = part[name].values

    _bounded(executor, gather_calls(), consume_gather, in_flight)
    result = xr.Dataset(
        {name: (("y", "x"), array, attrs) for name, (array, attrs) in assembled["variables"].items()},
        coords={"y": dem["y"], "x": dem["x"]},
        attrs={**assembled["attrs"], "rows_per_block": rows_per_block},
    )
    return result.rio.write_crs(dem.rio.crs, inplace=True)
