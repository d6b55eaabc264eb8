"""The pieces of a block-wise run and the tasks that run on them: blocks of DEM rows, tiles
(a block of rows by a range of columns, with a halo), bands of radar lines and the sheared
strips of DEM rows whose cells fall in them, their radar sub-windows; the plan, masks,
scatter and gather of each piece.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from .. import compute as door
from ..dem import geodetic_at_rows, horizontal_crs, is_wgs84_degrees
from ..geometry import RadarGeometry, RadarWindow
from ..masks import MaskCode
from ..observation import (
    check_values,
    intensity_on_window,
)
from ..reallocation import Output, reallocate, result_dataset
from ..simulate import Simulation
from ..simulate.cells import (
    cell_geometry,
    cell_geometry_arrays,
    cell_steps,
    radar_sums,
    rows_run_along_track,
    slant_range_spacing,
    visibility_masks,
)
from ..simulate.contribution import FacetContribution
from ..simulate.engine import SmoothFields, smooth_samples
from .workers import Workers


@dataclasses.dataclass(frozen=True)
class Block:
    """DEM rows ``start:stop``, read with the row before (``halo_start``) where there is one."""

    start: int
    stop: int
    halo_start: int


def blocks_of(rows: int, rows_per_block: int) -> list[Block]:
    edges = [*range(0, rows, rows_per_block), rows]
    return [Block(a, b, max(0, a - 1)) for a, b in itertools.pairwise(edges) if b > a]


@dataclasses.dataclass(frozen=True)
class Tile:
    """A block of rows by a range of columns: the unit of the facet passes."""

    block: int
    rows: tuple[int, int]
    cols: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class TileExtent:
    """Where a tile's cells fall in the image (from its block's plan)."""

    any_own: bool  # whether any of its own cells has a solution
    extent: tuple[float, float, float, float]  # lines and samples (min, max, min, max) of its facets
    own_lines: tuple[float, float]  # the smallest and largest line of its own cells


@dataclasses.dataclass
class BlockPlan:
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
    tiles: list[TileExtent] = dataclasses.field(default_factory=list)
    # Each column's smallest and largest line over intervals of rows: (rows (n, 2),
    # lines (n, 2, cols)).
    column_lines: tuple[np.ndarray, np.ndarray] | None = None


@dataclasses.dataclass(frozen=True)
class TilePlan:
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


def task_plan(dem_rows: xr.DataArray, geometry: RadarGeometry, block: Block, stride: int,
               steps_every: int, col_edges: list[int]) -> BlockPlan:
    """What the client needs to plan, from the cell geometry of a block's rows (with halo).

    Extents (the lines of the own cells' centres, the lines and samples of the facets,
    :func:`sarheight.compute.facet_extent`), the cell steps (``simulate.cell_steps``) every
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
        return BlockPlan(any=False, faces_away=cells["faces_away"][own_rows],
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
            extent = door.facet_extent(cells["line"][ring], cells["sample"][ring], cells["valid"][ring],
                                       borders=(top, bottom, c0 == 0, c1 == cols))
            own_lines = (np.nanmin(line[own_tile]), np.nanmax(line[own_tile])) if any_own else (np.nan, np.nan)
            tiles.append(TileExtent(any_own, extent, own_lines))
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
    return BlockPlan(
        any=True,
        faces_away=cells["faces_away"][own_rows],
        active_layover=cells["active_layover"][own_rows],
        line_range=(float(np.nanmin(own["line"][valid])), float(np.nanmax(own["line"][valid]))),
        facet_range=door.facet_extent(cells["line"], cells["sample"], cells["valid"],
                                      borders=(top, bottom, True, True)),
        steps=cell_steps(cells, steps_every, block.halo_start, (own_rows.start, own_rows.stop)),
        along_track_rows=rows_run_along_track(cells["line"]),
        range_spacing=slant_range_spacing(cells),
        smooth_samples=smooth_samples(own, stride, block.start),
        tiles=tiles,
        column_lines=(interval_rows, interval_lines),
    )


def task_masks(axes: Axes, row_start: np.ndarray, height: np.ndarray, faces_away: np.ndarray,
                active_layover: np.ndarray, geometry: RadarGeometry, band: tuple[int, int], window: RadarWindow,
                range_tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Layover, shadow and mixing of a band of lines [band[0], band[1]).

    ``height``, ``faces_away`` and ``active_layover`` hold, column by column, the DEM rows from ``row_start``
    whose cells cross the band's lines and the next (a sheared strip, ``sheared``; rows
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


def _tile_simulation(dem_view: xr.DataArray, geometry: RadarGeometry, plan: TilePlan, layover_view: np.ndarray,
                     shadow_view: np.ndarray, sub_window: RadarWindow) -> Simulation:
    """The simulation of a tile with its halo, in a radar sub-window (masks outside in the
    halo: the neighbouring tiles' cells are not processed here)."""
    # The masks are given: the flags of the cells' own surface are not needed here.
    cells = cell_geometry(dem_view, geometry, own_surface=False)
    return Simulation(dem_view, geometry, cells, sub_window, plan.oversample, plan.exact, plan.contribution,
                      layover_view, shadow_view, np.zeros((1, 1), dtype=np.uint16), {}, radar_sums(0, 0),
                      plan.smooth)


def task_scatter(dem_view: xr.DataArray, geometry: RadarGeometry, plan: TilePlan, own: tuple[slice, slice],
                  layover_view: np.ndarray, shadow_view: np.ndarray, sub_window: RadarWindow) -> np.ndarray:
    """The tile's own facets scattered into its radar sub-window: a radar buffer
    (``simulate.radar_sums``) of its two channels."""
    state = _tile_simulation(dem_view, geometry, plan, layover_view, shadow_view, sub_window)
    rows, cols = own
    return state.facet_pass(gather=False, rows=(rows.start, rows.stop), cols=(cols.start, cols.stop),
                            consume=lambda *_: None, per_cell=False)[-1]


def task_gather(dem_view: xr.DataArray, geometry: RadarGeometry, plan: TilePlan, own: tuple[slice, slice],
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


def halo_rows(dem: xr.DataArray, first: int, stop: int) -> xr.DataArray:
    """DEM rows ``first:stop`` with one neighbouring row each side where the DEM has it."""
    return dem.isel(y=slice(max(0, first - 1), min(dem.shape[0], stop + 1)))


def bounded(workers: Workers, calls, consume: Callable[[int, Any], None], in_flight: int) -> None:
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


def sub_window(extent: tuple[float, float, float, float], window: RadarWindow, margin: int = 2) -> RadarWindow:
    """The radar sub-window of a tile whose facets span ``extent`` (lines, samples: min,
    max, min, max; :func:`sarheight.compute.facet_extent`, the DEM's border included), ``margin``
    pixels around it as the window's own (``simulate.radar_window``), within the window."""
    first_line = max(window.line0, math.floor(extent[0]) - margin)
    stop_line = min(window.line_stop, math.ceil(extent[1]) + margin + 1)
    first_sample = max(window.sample0, math.floor(extent[2]) - margin)
    stop_sample = min(window.sample_stop, math.ceil(extent[3]) + margin + 1)
    return RadarWindow(first_line, max(1, stop_line - first_line), first_sample, max(1, stop_sample - first_sample))


def overlapping(windows: dict[Any, RadarWindow]) -> dict[Any, list[Any]]:
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


def add_window(target: np.ndarray, target_window: RadarWindow, part: np.ndarray, part_window: RadarWindow) -> None:
    """Add ``part`` (2, lines, samples) on ``part_window`` into ``target`` on ``target_window``
    where the two share pixels."""
    shared = target_window.intersection(part_window)
    if shared is None:
        return
    target[(slice(None), *shared.index_in(target_window))] += part[(slice(None), *shared.index_in(part_window))]


def band_rows(interval_rows: np.ndarray, interval_lines: np.ndarray, first: int, stop: int,
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


def strip_rows(row_start: np.ndarray, depth: int) -> np.ndarray:
    """DEM row index (depth, cols) of each cell of a sheared strip whose column j starts at
    DEM row ``row_start[j]`` (beyond the DEM's rows where the strip runs past them)."""
    return row_start[None, :] + np.arange(depth)[:, None]


def sheared(dem: xr.DataArray, row_start: np.ndarray, row_stop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Height (float32) and DEM row index of a sheared strip: column j holds DEM rows
    ``row_start[j]:row_stop[j]`` from the top, void (NaN) below."""
    depth = max(1, int((row_stop - row_start).max(initial=0)))
    index = strip_rows(row_start, depth)
    inside = index < row_stop[None, :]
    clipped = np.clip(index, 0, dem.shape[0] - 1)
    column = np.broadcast_to(np.arange(row_start.size)[None, :], index.shape)
    height = np.where(inside, dem.values[clipped, column], np.nan).astype(np.float32)
    return height, index


@dataclasses.dataclass(frozen=True)
class Axes:
    """A DEM's coordinate axes and horizontal CRS: what a worker needs to place the cells of
    a sheared strip (sent once; the strip itself travels as heights only)."""

    x: np.ndarray
    y: np.ndarray
    crs: Any  # pyproj.CRS, horizontal

    @classmethod
    def of(cls, dem: xr.DataArray) -> Axes:
        return cls(np.asarray(dem["x"].values, dtype=np.float64), np.asarray(dem["y"].values, dtype=np.float64),
                   horizontal_crs(dem))

    def lon_lat(self, row_start: np.ndarray, depth: int) -> tuple[np.ndarray, np.ndarray]:
        """Longitude and latitude (rad) of the strip's cells (``sheared``): those the whole
        DEM's cells get in memory (``dem.geodetic_at_rows``), so that the masks judged
        here see the same terrain."""
        index = np.clip(strip_rows(row_start, depth), 0, self.y.size - 1)
        if is_wgs84_degrees(self.crs):
            # A broadcast view: the geometry kernel takes one sine and cosine per column.
            lon = np.broadcast_to(np.radians(self.x)[None, :], index.shape)
            return lon, np.ascontiguousarray(np.radians(self.y)[index])
        lon, lat = geodetic_at_rows(self.x, self.y, index, self.crs)
        return np.radians(lon), np.radians(lat)
