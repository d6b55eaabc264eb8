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
    cell_products,
    reallocation_ratios,
)
from .simulate import (
    MASK_OUTSIDE,
    _cell_geometry,
    _faces_away,
    _resolve_contribution,
    _Simulation,
    _slant_range_spacing,
    _visibility,
    radar_window,
    rows_run_along_track,
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

_OUTPUT_FIELDS = ("line", "sample", "incidence", "pixel_area", "time", "slant_range", "valid")


def _task_cells(dem: xr.DataArray, geometry: RadarGeometry, block: _Block, rows: int) -> dict[str, np.ndarray]:
    """Cell geometry of a block with its halo rows (kept on the worker)."""
    part = dem.isel(y=slice(block.halo_start, min(rows, block.stop + 1)))
    cells = _cell_geometry(part, geometry)
    cells["faces_away"] = _faces_away(cells["ecef"], cells["look"])
    return cells


def _own(cells: dict[str, np.ndarray], block: _Block) -> dict[str, np.ndarray]:
    own = slice(block.start - block.halo_start, block.stop - block.halo_start)
    return {name: array[own] for name, array in cells.items()}


def _task_summary(cells: dict[str, np.ndarray], block: _Block) -> dict[str, Any]:
    """What the client needs to plan: extents, steps, orientation, range spacing."""
    own = _own(cells, block)
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
    }


def _task_outputs(cells: dict[str, np.ndarray], block: _Block) -> dict[str, np.ndarray]:
    """The per-cell fields the client assembles into the result (own rows)."""
    own = _own(cells, block)
    return {name: own[name] for name in _OUTPUT_FIELDS}


def _task_masks(block: _Block, first_row: int, band, range_tolerance: float, *neighbour_cells):
    """Masks of a block's cells from the profiles of the lines they fall in.

    ``neighbour_cells`` are the cell geometries of the consecutive blocks whose cells
    cross those lines, from row ``first_row`` on.
    """
    parts = [_own(cells, other) for other, cells in neighbour_cells]
    joined = {name: np.concatenate([p[name] for p in parts], axis=0) for name in parts[0]}
    layover, shadow, mixing = _visibility(joined, joined["faces_away"], band, transpose=False,
                                          range_tolerance=range_tolerance)
    rows = slice(block.start - first_row, block.stop - first_row)
    return layover[rows], shadow[rows], mixing


def _task_facets(state_args: dict, block: _Block, cells: dict, layover_own: np.ndarray, shadow_own: np.ndarray,
                 sub_window, gather: bool, ratios: np.ndarray | None) -> dict[str, np.ndarray]:
    """Scatter (or gather) a block's own facets in a radar sub-window of full width."""
    own = slice(block.start - block.halo_start, block.stop - block.halo_start)
    full_layover = np.full(cells["valid"].shape, MASK_OUTSIDE, dtype=np.uint8)
    full_shadow = np.full(cells["valid"].shape, MASK_OUTSIDE, dtype=np.uint8)
    full_layover[own] = layover_own
    full_shadow[own] = shadow_own
    state = _Simulation(state_args["dem"], state_args["geometry"], cells, sub_window, state_args["oversample"],
                        state_args["exact"], state_args["contribution"], full_layover, full_shadow,
                        np.zeros((1, 1), dtype=np.uint16), {}, np.empty(0))
    energy, sigma_area, gamma_area, contribution, cos_local, images = state.facet_pass(
        gather=gather, ratios=ratios, rows=(own.start, own.stop))
    return {"energy": energy[:, own], "sigma_area": sigma_area[own], "gamma_area": gamma_area[own],
            "contribution": contribution[own], "cos_local_incidence": cos_local[own], "images": images}


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


def _resolve(executor, value):
    """A task argument: a dask future passes as is; a local future is waited for."""
    return value.result() if isinstance(executor, _LocalExecutor) else value


def _run(sar, dem, geometry, resolved, output, projection, oversample, rows_per_block, executor,
         sar_quantity, sar_db) -> xr.Dataset:
    rows, cols = dem.shape
    blocks = _blocks(rows, rows_per_block)
    # 1. Cell geometry per block, kept on the workers; summaries to the client.
    cell_futures = [executor.submit(_task_cells, dem, geometry, b, rows) for b in blocks]
    summaries = executor.gather([executor.submit(_task_summary, _resolve(executor, f), b)
                                 for f, b in zip(cell_futures, blocks, strict=True)])
    present = [k for k, s in enumerate(summaries) if s["any"]]
    if not present:
        radar_window(np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1), bool), geometry)  # raises
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
    n_image_lines, n_image_samples = geometry.grid.shape
    # 2. Masks: each block's lines swept with every block that crosses them.
    mask_futures, bands = {}, {}
    for k in present:
        low, high = summaries[k]["line_range"]
        band0 = max(line0, math.floor(low) - 1)
        band1 = min(line0 + n_lines, math.ceil(high) + 2)
        members = [j for j in present
                   if summaries[j]["line_range"][1] >= band0 - 1 and summaries[j]["line_range"][0] <= band1 + 1]
        members = list(range(min([*members, k]), max([*members, k]) + 1))
        bands[k] = (band0, band1 - band0, sample0, n_samples)
        neighbours = [(blocks[j], _resolve(executor, cell_futures[j])) for j in members]
        mask_futures[k] = executor.submit(_task_masks, blocks[k], blocks[members[0]].start, bands[k],
                                          range_tolerance, *neighbours)
    layover = np.full((rows, cols), MASK_OUTSIDE, dtype=np.uint8)
    shadow = np.full((rows, cols), MASK_OUTSIDE, dtype=np.uint8)
    mixing = np.zeros((n_lines, n_samples), dtype=np.uint16)
    outputs = executor.gather([executor.submit(_task_outputs, _resolve(executor, cell_futures[k]), blocks[k])
                               for k in range(len(blocks))])
    cells = {name: np.concatenate([o[name] for o in outputs], axis=0) for name in _OUTPUT_FIELDS}
    inside = cells["valid"] & (cells["line"] >= -0.5) & (cells["line"] <= n_image_lines - 0.5) & (
        cells["sample"] >= -0.5) & (cells["sample"] <= n_image_samples - 0.5)
    for k, (block_layover, block_shadow, block_mixing) in zip(
            present, executor.gather([mask_futures[k] for k in present]), strict=True):
        block = blocks[k]
        layover[block.start:block.stop] = block_layover
        shadow[block.start:block.stop] = block_shadow
        offset = bands[k][0] - line0
        # Lines shared by two bands are swept over the same rows: their mixing agrees.
        np.maximum(mixing[offset:offset + bands[k][1]], block_mixing, out=mixing[offset:offset + bands[k][1]])
    layover[~inside] = MASK_OUTSIDE
    shadow[~inside] = MASK_OUTSIDE
    # 3. Scatter per block into sub-windows of the lines it reaches, summed here.
    margin = math.ceil(steps) + 3
    subs = {}
    for k in present:
        low, high = summaries[k]["line_range"]
        sub0 = max(line0, math.floor(low) - margin)
        sub1 = min(line0 + n_lines, math.ceil(high) + margin + 1)
        subs[k] = (sub0, max(1, sub1 - sub0), sample0, n_samples)

    def block_args(k: int) -> dict:
        block = blocks[k]
        contribution = resolved
        if resolved.user_weight.shape[0] == rows:
            contribution = replace(resolved, user_weight=np.ascontiguousarray(
                resolved.user_weight[block.halo_start:min(rows, block.stop + 1)]))
        return {"dem": None, "geometry": geometry, "oversample": factor, "exact": projection == "exact",
                "contribution": contribution}

    scatter = executor.gather([
        executor.submit(_task_facets, block_args(k), blocks[k], _resolve(executor, cell_futures[k]),
                        layover[blocks[k].start:blocks[k].stop], shadow[blocks[k].start:blocks[k].stop],
                        subs[k], False, None)
        for k in present])
    images = np.zeros((2, n_lines, n_samples))
    per_cell = {name: np.zeros((rows, cols)) for name in ("sigma_area", "gamma_area", "contribution")}
    per_cell["cos_local_incidence"] = np.full((rows, cols), np.nan)
    for k, part in zip(present, scatter, strict=True):
        offset = subs[k][0] - line0
        images[:, offset:offset + subs[k][1]] += part["images"]
        for name in per_cell:
            per_cell[name][blocks[k].start:blocks[k].stop] = part[name]
    for channel in (0, 1):
        image = images[channel]
        image[image < 1e-10 * max(float(np.abs(image).max()), 1e-300)] = 0.0
    state = _Simulation(dem, geometry, cells, window, factor, projection == "exact", resolved,
                        layover, shadow, mixing, per_cell, images)
    if isinstance(sar, xr.DataArray) and {"y", "x"} <= set(sar.dims):
        raise InvalidInputError(
            "block-wise reconstruction takes observations in radar geometry or SAFE products; "
            "use reconstruct() for images geocoded to a map grid"
        )
    if isinstance(sar, _LazyProduct):
        sar = sar.loader((line0, line0 + n_lines, sample0, sample0 + n_samples))
    observed = _observation_on_window(sar, geometry, window)
    _check_intensity(observed, window)
    ratios = reallocation_ratios(state, observed)
    # 4. Gather per block against the global ratios.
    gathered = executor.gather([
        executor.submit(_task_facets, block_args(k), blocks[k], _resolve(executor, cell_futures[k]),
                        layover[blocks[k].start:blocks[k].stop], shadow[blocks[k].start:blocks[k].stop],
                        subs[k], True,
                        np.ascontiguousarray(ratios[:, subs[k][0] - line0:subs[k][0] - line0 + subs[k][1]]))
        for k in present])
    energy = np.zeros((2, rows, cols))
    for k, part in zip(present, gathered, strict=True):
        energy[:, blocks[k].start:blocks[k].stop] = part["energy"]
    products = cell_products(state, observed, energy, output)
    result = _result_dataset(state, products, output, projection)
    result.attrs["rows_per_block"] = rows_per_block
    return result
