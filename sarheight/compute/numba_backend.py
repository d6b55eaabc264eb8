"""The numba backend of the kernel door: the compiled kernels (``sarheight.kernels``) on
row blocks run by threads (:func:`sarheight.threads.run_blocks`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import kernels
from ..kernels import buckets, columns, facets, facing, geodesy, radar_buffers, reallocation, speckle, visibility
from ..threads import BLOCK_CELLS, block_count, row_blocks, run_blocks, thread_count
from .bundles import (
    CellGeometry,
    FacetLaw,
    FacetTile,
    GatheredCells,
    Geocoded,
    GeocodingGeometry,
    OrbitPolynomial,
    PixelFields,
    ProfileCells,
    WindowImages,
)

__all__ = ["active_layover", "add_tile_rows", "cell_ecef", "cell_geometry", "clear_residue", "ecef", "facet_extent",
           "facet_pass_bilinear", "facet_pass_exact", "finish_cells", "gather_buffer", "geocode", "intensity_flags",
           "interpolate_rows", "layover_facing_share", "lee", "missing_pixels", "orbit_states", "polynomial_field",
           "radar_products", "reallocation_ratios", "refined_lee", "sample_cells", "samples_of_slant_ranges",
           "slant_ranges_of_samples", "valid_pixels", "visibility_masks", "weighted_mean"]

#: Radar lines per block of a per-pixel pass (a block's work for a thread).
LINES_PER_BLOCK = 256


def intensity_flags(image: np.ndarray, *, device: str) -> tuple[bool, bool, bool, bool]:
    """:func:`sarheight.compute.intensity_flags` with ``kernels.reallocation.intensity_problems``
    on row blocks in threads."""
    del device  # the CPU's threads
    plane = np.ascontiguousarray(image)
    found = run_blocks(lambda start, stop: reallocation.intensity_problems(plane, start, stop), plane.shape[0])
    return tuple(any(flags[k] for flags in found) for k in range(4))  # type: ignore[return-value]


def weighted_mean(weighted_sum: np.ndarray, weight_sum: np.ndarray, *, device: str) -> np.ndarray:
    """:func:`sarheight.compute.weighted_mean` with ``kernels.reallocation.weighted_mean`` on
    line blocks in threads."""
    del device  # the CPU's threads
    weighted, weight = (np.ascontiguousarray(values) for values in (weighted_sum, weight_sum))
    out = np.empty(weight.shape)
    run_blocks(lambda start, stop: reallocation.weighted_mean(weighted, weight, start, stop, out), out.shape[0])
    return out


def interpolate_rows(along: np.ndarray, row_node: np.ndarray, row_weight: np.ndarray, scale: float,
                     out: np.ndarray, *, device: str) -> None:
    """:func:`sarheight.compute.interpolate_rows` with ``kernels.geodesy.interpolate_rows`` on
    row blocks in threads (one block under a million cells: threads cost more than they save)."""
    del device  # the CPU's threads
    blocks = 1 if out.size < 1 << 20 else None
    run_blocks(lambda start, stop: geodesy.interpolate_rows(along, row_node[start:stop], row_weight[start:stop],
                                                            scale, out[start:stop]), out.shape[0], blocks)


def _filtered_rows(filter_rows: Callable[[np.ndarray, int, int], np.ndarray], image: np.ndarray) -> np.ndarray:
    """A speckle kernel that filters rows ``first:last`` of an image, run on row blocks in
    threads and its blocks joined."""
    plane = np.ascontiguousarray(image)
    return np.concatenate(run_blocks(lambda first, last: filter_rows(plane, first, last), plane.shape[0]))


def lee(image: np.ndarray, window: int, looks: float, *, device: str) -> np.ndarray:
    """:func:`sarheight.compute.lee` with ``kernels.speckle.lee`` on row blocks in threads."""
    del device  # the CPU's threads
    return _filtered_rows(lambda plane, first, last: speckle.lee(plane, window, looks, first, last), image)


def refined_lee(image: np.ndarray, looks: float, *, device: str) -> np.ndarray:
    """:func:`sarheight.compute.refined_lee` with ``kernels.speckle.refined_lee`` on row blocks."""
    del device  # the CPU's threads
    return _filtered_rows(lambda plane, first, last: speckle.refined_lee(plane, looks, first, last), image)


def _flat(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values, dtype=np.float64).ravel()


def orbit_states(orbit: OrbitPolynomial, seconds: np.ndarray, *, device: str
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`sarheight.compute.orbit_states` with ``kernels.orbit_states``."""
    del device  # the CPU
    states = kernels.orbit_states(np.ascontiguousarray(orbit.coeffs, dtype=np.float64), float(orbit.t_center),
                                  float(orbit.t_scale), _flat(seconds))
    return tuple(state.reshape(*seconds.shape, 3) for state in states)  # type: ignore[return-value]


def _range_pass(kernel: Callable[..., np.ndarray], line_time: np.ndarray, values: np.ndarray,
                geometry: GeocodingGeometry) -> np.ndarray:
    """A range-axis kernel over flat copies of ``line_time`` and ``values``, in their shape."""
    g = geometry
    return kernel(_flat(line_time), _flat(values), g.range_times, g.range_sr0, g.range_coeffs,
                  g.range_spacing).reshape(line_time.shape)


def samples_of_slant_ranges(line_time: np.ndarray, slant_range: np.ndarray, geometry: GeocodingGeometry, *,
                            device: str) -> np.ndarray:
    """:func:`sarheight.compute.samples_of_slant_ranges` with ``kernels.samples_of_slant_ranges``."""
    del device  # the CPU
    return _range_pass(kernels.samples_of_slant_ranges, line_time, slant_range, geometry)


def slant_ranges_of_samples(line_time: np.ndarray, sample: np.ndarray, geometry: GeocodingGeometry, *,
                            device: str) -> np.ndarray:
    """:func:`sarheight.compute.slant_ranges_of_samples` with ``kernels.slant_ranges_of_samples``."""
    del device  # the CPU
    return _range_pass(kernels.slant_ranges_of_samples, line_time, sample, geometry)


def ecef(lon_rad: np.ndarray, lat_rad: np.ndarray, height: np.ndarray, *, device: str) -> np.ndarray:
    """:func:`sarheight.compute.ecef` with ``kernels.geodetic_to_ecef_grid`` (2-D grids) or
    ``kernels.geodetic_to_ecef`` (points of any other shape)."""
    del device  # the CPU
    if height.ndim == 2:
        return kernels.geodetic_to_ecef_grid(lon_rad, lat_rad, height, kernels.WGS84_A, kernels.WGS84_E2)
    flat = [np.ascontiguousarray(values, dtype=np.float64).ravel() for values in (lon_rad, lat_rad, height)]
    return kernels.geodetic_to_ecef(*flat, kernels.WGS84_A, kernels.WGS84_E2).reshape(*height.shape, 3)


def geocode(lon_rad: np.ndarray, lat_rad: np.ndarray, height: np.ndarray, geometry: GeocodingGeometry, *,
            clip: bool, device: str) -> Geocoded:
    """:func:`sarheight.compute.geocode` with ``kernels.geocode_grid`` (``device``: the CPU)."""
    del device  # the CPU's threads
    g = geometry
    shape = height.shape
    # One allocation for the five outputs: large enough for transparent huge pages, whose
    # first touch (in the kernel threads) costs a fraction of that of 4 KiB pages; five
    # arrays of under 4 MiB each (512^2 cells) were faulted in page by page.
    cells = height.size
    buffer = np.empty(36 * cells, dtype=np.uint8)
    az_ns = buffer[: 8 * cells].view(np.int64).reshape(shape)
    slant_range = buffer[8 * cells : 16 * cells].view(np.float64).reshape(shape)
    line = buffer[16 * cells : 24 * cells].view(np.float64).reshape(shape)
    sample = buffer[24 * cells : 32 * cells].view(np.float64).reshape(shape)
    incidence = buffer[32 * cells :].view(np.float32).reshape(shape)
    reference_ns = np.int64(g.reference_ns)

    def work(start: int, stop: int) -> None:
        rows = slice(start, stop)
        # ``clip`` given, not left to its default: Numba compiles a call that omits an
        # argument as a signature of its own, and the simulation passes it.
        kernels.geocode_grid(
            lon_rad[rows], lat_rad[rows], height[rows], kernels.WGS84_A, kernels.WGS84_E2,
            g.orbit_coeffs, g.orbit_t_center, g.orbit_t_scale, g.valid_min, g.valid_max,
            g.first_line_time, g.line_interval, g.lines, g.samples,
            g.range_times, g.range_sr0, g.range_coeffs, g.range_spacing, g.look_sign,
            g.bistatic_rate, g.bistatic_reference_range, reference_ns,
            az_ns[rows], slant_range[rows], line[rows], sample[rows], incidence[rows], clip,
        )

    run_blocks(work, shape[0])
    return Geocoded(az_ns, slant_range, line, sample, incidence)


def cell_geometry(lon_rad: np.ndarray, lat_rad: np.ndarray, height: np.ndarray, geometry: GeocodingGeometry, *,
                  own_surface: bool, device: str, blocks: int | None = None) -> CellGeometry:
    """:func:`sarheight.compute.cell_geometry` with ``kernels.cells.cell_geometry`` on row
    blocks in threads (``device``: the CPU); with ``own_surface``, each block's positions
    (and those of the rows either side, which a surface's normals need) go on to
    ``kernels.facing.faces_away`` and are not kept for the whole grid."""
    del device  # the CPU's threads
    g = geometry
    shape = height.shape
    # In the kernel's argument order. Allocated here, written (first touch too) by the
    # row blocks on their threads.
    out = {name: np.empty((*shape, *trailing), dtype=dtype) for name, dtype, trailing in (
        ("azimuth_time_ns", np.int64, ()), ("slant_range", np.float64, ()), ("line", np.float64, ()),
        ("sample", np.float64, ()), ("look", np.float32, (3,)), ("pixel_area", np.float32, ()),
        ("incidence", np.float32, ()), ("look_angle", np.float64, ()), ("cross_track", np.float64, ()),
        ("valid", np.bool_, ()))}
    away = np.empty(shape, dtype=bool) if own_surface else None
    reference_ns = np.int64(g.reference_ns)

    def work(start: int, stop: int) -> None:
        rows = slice(start, stop)
        # With the own surface, the positions of one row more on each side, with the
        # kernel's arithmetic.
        first, last = (max(0, start - 1), min(shape[0], stop + 1)) if away is not None else (start, stop)
        ecef = np.empty((last - first, shape[1], 3))
        kernels.cells.cell_geometry(
            lon_rad[rows], lat_rad[rows], height[rows], kernels.WGS84_A, kernels.WGS84_E2,
            g.orbit_coeffs, g.orbit_t_center, g.orbit_t_scale, g.valid_min, g.valid_max,
            g.first_line_time, g.line_interval, g.range_times, g.range_sr0, g.range_coeffs, g.range_spacing,
            g.look_sign, g.bistatic_rate, g.bistatic_reference_range, reference_ns,
            ecef[start - first:stop - first], *(array[rows] for array in out.values()),
        )
        if away is None:
            return
        for row in {first, last - 1} - set(range(start, stop)):
            kernels.cells.ecef_of_cells(lon_rad[row:row + 1], lat_rad[row:row + 1], height[row:row + 1],
                                        kernels.WGS84_A, kernels.WGS84_E2, ecef[row - first:row - first + 1])
        ring = slice(first, last)
        facing.faces_away(ecef, out["look"][ring], start - first, stop - first, away[ring])

    run_blocks(work, shape[0], blocks)
    return CellGeometry(**out, faces_away=away)


def cell_ecef(lon_rad: np.ndarray, lat_rad: np.ndarray, height: np.ndarray, *, device: str) -> np.ndarray:
    """:func:`sarheight.compute.cell_ecef` with ``kernels.cells.ecef_of_cells`` (one call: the
    callers' blocks are a thread's work already)."""
    del device  # the caller's thread
    out = np.empty((*height.shape, 3))
    kernels.cells.ecef_of_cells(lon_rad, lat_rad, height, kernels.WGS84_A, kernels.WGS84_E2, out)
    return out


def _line_blocks(lines: int) -> int:
    return max(1, -(-lines // LINES_PER_BLOCK))


def clear_residue(images: np.ndarray, fields: PixelFields, *, device: str) -> None:
    """:func:`sarheight.compute.clear_residue` with ``kernels.reallocation.clear_residue``
    on line blocks in threads."""
    del device  # the CPU's threads
    thresholds = np.asarray(fields.thresholds, dtype=np.float64)[:images.shape[0]]
    run_blocks(lambda start, stop: reallocation.clear_residue(
        images, start, stop, fields.coefficients, fields.powers, fields.fitted, fields.fit_window, fields.line0,
        fields.sample0, thresholds), images.shape[1], _line_blocks(images.shape[1]))


def reallocation_ratios(sums: np.ndarray, observed: np.ndarray, fields: PixelFields, *, prefix: bool, device: str
                        ) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`sarheight.compute.reallocation_ratios` with ``kernels.reallocation.ratio_lines``
    on line blocks in threads."""
    del device  # the CPU's threads
    simulated = np.empty(observed.shape, dtype=np.float32)
    valid = np.empty(observed.shape, dtype=bool)
    thresholds = np.asarray(fields.thresholds, dtype=np.float64)
    missing = run_blocks(lambda start, stop: reallocation.ratio_lines(
        sums, observed, start, stop, prefix, fields.coefficients, fields.powers, fields.fitted, fields.fit_window,
        fields.line0, fields.sample0, thresholds, simulated, valid), observed.shape[0], _line_blocks(observed.shape[0]))
    return simulated, valid, int(sum(missing))


def missing_pixels(observed: np.ndarray, sums: np.ndarray, *, device: str) -> np.ndarray:
    """:func:`sarheight.compute.missing_pixels` with ``kernels.reallocation.missing_pixels``
    on line blocks in threads."""
    del device  # the CPU's threads
    out = np.empty(observed.shape, dtype=bool)
    run_blocks(lambda start, stop: reallocation.missing_pixels(observed, sums, start, stop, out), observed.shape[0],
               _line_blocks(observed.shape[0]))
    return out


def sample_cells(line: np.ndarray, sample: np.ndarray, valid: np.ndarray, incidence: np.ndarray,
                 images: WindowImages, out: tuple[np.ndarray, np.ndarray, np.ndarray], *, device: str) -> None:
    """:func:`sarheight.compute.sample_cells` with ``kernels.reallocation.sample_cells`` on
    row blocks in threads."""
    del device  # the CPU's threads
    geocoded, simulated, mixing = out

    def block(start: int, stop: int) -> None:
        rows = slice(start, stop)
        reallocation.sample_cells(line[rows], sample[rows], valid[rows], incidence[rows], images.observed,
                                  images.simulated, images.mixing, images.line0, images.sample0, geocoded[rows],
                                  simulated[rows], mixing[rows])

    run_blocks(block, line.shape[0], block_count(line.shape))


def finish_cells(gathered: GatheredCells, line: np.ndarray, sample: np.ndarray, valid: np.ndarray,
                 shadow: np.ndarray, valid_pixels: np.ndarray, origin: tuple[int, int], use_sigma: bool,
                 codes: tuple[int, int, int, int], out: tuple[np.ndarray, np.ndarray, np.ndarray], *,
                 device: str) -> None:
    """:func:`sarheight.compute.finish_cells` with ``kernels.reallocation.finish_cells`` (one
    tile: the gather's threads call it)."""
    del device  # the caller's thread
    backscatter, flattened, local_incidence = out
    reallocation.finish_cells(gathered.energy, gathered.sigma_area, gathered.gamma_area, gathered.cos_local, shadow,
                              valid, line, sample, valid_pixels, origin[0], origin[1], use_sigma, codes, backscatter,
                              flattened, local_incidence)


def facet_extent(line: np.ndarray, sample: np.ndarray, valid: np.ndarray, borders: tuple[bool, bool, bool, bool], *,
                 device: str) -> tuple[float, float, float, float]:
    """:func:`sarheight.compute.facet_extent` with ``kernels.radar_buffers.facet_extent_rows``
    on row blocks in threads, their extremes combined: the same extent, bit for bit."""
    del device  # the CPU's threads
    # A tile's (under a block's cells, on its own worker thread) in one call.
    blocks = 1 if line.size < BLOCK_CELLS else block_count(line.shape)
    parts = np.array(run_blocks(lambda start, stop: radar_buffers.facet_extent_rows(
        line, sample, valid, start, stop, *borders), line.shape[0], blocks))
    if np.all(np.isnan(parts[:, 0])):
        return math.nan, math.nan, math.nan, math.nan
    return (float(np.nanmin(parts[:, 0])), float(np.nanmax(parts[:, 1])), float(np.nanmin(parts[:, 2])),
            float(np.nanmax(parts[:, 3])))


def _own_footprints(kernel: Callable[..., None], dtype: type, line: np.ndarray, sample: np.ndarray,
                    valid: np.ndarray, orientation: int) -> np.ndarray:
    """A ``kernels.facing`` pass over the cells' own footprints, on row blocks in threads,
    into a new array of ``dtype``."""
    out = np.empty(line.shape, dtype=dtype)
    run_blocks(lambda start, stop: kernel(line, sample, valid, orientation, start, stop, out), line.shape[0],
               block_count(line.shape))
    return out


def layover_facing_share(line: np.ndarray, sample: np.ndarray, valid: np.ndarray, orientation: int, *,
                         device: str) -> np.ndarray:
    """:func:`sarheight.compute.layover_facing_share` with ``kernels.facing.layover_facing_share``
    on row blocks in threads."""
    del device  # the CPU's threads
    return _own_footprints(facing.layover_facing_share, np.float32, line, sample, valid, orientation)


def active_layover(line: np.ndarray, sample: np.ndarray, valid: np.ndarray, orientation: int, *,
                   device: str) -> np.ndarray:
    """:func:`sarheight.compute.active_layover` with ``kernels.facing.active_layover`` on row
    blocks in threads."""
    del device  # the CPU's threads
    return _own_footprints(facing.active_layover, np.bool_, line, sample, valid, orientation)


def visibility_masks(cells: ProfileCells, window: tuple[int, int, int, int], range_tolerance: float,
                     judged: np.ndarray | None, every_line: bool, codes: tuple[int, int, int, int], *,
                     device: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`sarheight.compute.visibility_masks` with ``kernels.visibility.visibility_lines``
    on ranges of line groups in threads, the cells bucketed by line first
    (``kernels.buckets``)."""
    del device  # the CPU's threads
    line0, n_lines, sample0, n_samples = window
    line, valid = cells.line, cells.valid
    layover = np.empty(line.shape, dtype=np.uint8)
    shadow = np.empty(line.shape, dtype=np.uint8)
    mixing = np.zeros((n_lines, n_samples), dtype=np.uint16)

    def prepared() -> tuple[tuple[np.ndarray, ...], int]:
        # The column runs and the lines per group: cells are set against the profiles of
        # every group-th line (a DEM row's worth on a DEM coarser than the lines), so that
        # the work per pair of profiles follows the rows.
        return columns.column_runs(line, valid), buckets.line_group(line, valid)

    def bucketed() -> tuple[np.ndarray, np.ndarray]:
        return _buckets(cells, valid if judged is None else judged, line0, n_lines, codes, layover, shadow)

    if thread_count() > 1:
        # The serial preparations on a thread of their own beside the bucketing.
        with ThreadPoolExecutor(max_workers=1) as side:
            preparing = side.submit(prepared)
            start, bucket = bucketed()
            runs, group = preparing.result()
    else:
        start, bucket = bucketed()
        runs, group = prepared()
    bounds = buckets.line_groups(n_lines, group)
    # Ranges of groups are independent: each thread cuts the profile before its first.
    # Many more ranges than threads even out where layover (the costly cells) gathers
    # (16 per thread: about 10 % faster than 4 at 4096^2, measured).
    run_blocks(lambda first, stop: visibility.visibility_lines(
        *cells.arrays(), runs, start, bucket, line0, sample0, n_lines, n_samples, range_tolerance, bounds[first],
        bounds[stop], group, codes, layover, shadow, mixing, every_line), len(bounds) - 1, 16 * thread_count())
    return layover, shadow, mixing


def _buckets(cells: ProfileCells, judged: np.ndarray, line0: int, n_lines: int, codes: tuple[int, int, int, int],
             layover: np.ndarray, shadow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``kernels.buckets`` on row blocks in threads: a counting sort of the cells by key,
    counted per block, placed per block (rows in order, so the cells of a key stay
    row-major); every cell's initial masks (active or none) are written here."""
    line, valid = cells.line, cells.valid
    blocks = row_blocks(line.shape[0], block_count(line.shape))
    counts = np.zeros((len(blocks), n_lines + 2), dtype=np.int64)
    run_blocks(lambda a, b: [buckets.bucket_counts(line, valid, judged, cells.faces_away, cells.active_layover, line0,
                                                   n_lines, *blocks[k], codes, layover, shadow, counts[k])
                             for k in range(a, b)], len(blocks), len(blocks))
    # Key b's cells are bucket[start[b]:start[b + 1]]; block k's begin at cursor[k, b].
    per_key = counts[:, :n_lines + 1].sum(axis=0)
    start = np.zeros(n_lines + 2, dtype=np.int64)
    np.cumsum(per_key, out=start[1:])
    cursors = start[:n_lines + 1] + np.cumsum(counts[:, :n_lines + 1], axis=0) - counts[:, :n_lines + 1]
    bucket = np.empty(start[-1], dtype=np.int64)
    run_blocks(lambda a, b: [buckets.bucket_fill(line, valid, judged, line0, n_lines, *blocks[k], cursors[k], bucket)
                             for k in range(a, b)], len(blocks), len(blocks))
    return start, bucket


def _facet_pass(tile: FacetTile, law: FacetLaw, buffer: np.ndarray, origin: tuple[int, int], oversample: int,
                exact: bool, gather: bool, energy: np.ndarray, per_cell: list[np.ndarray]) -> None:
    """``kernels.facets.facet_pass`` on one tile (the caller's threads run the tiles)."""
    row_start, row_stop, col_start, col_stop = tile.own
    facets.facet_pass(
        tile.ecef, tile.line, tile.sample, tile.look, tile.valid, tile.shadowed, tile.user_weight, tile.cell_class,
        law.class_tables, oversample, law.code, law.law, law.table, exact, gather, origin[0], origin[1], buffer,
        buffer.reshape(-1), row_start, row_stop, col_start, col_stop, energy, *per_cell)


def facet_pass_exact(tile: FacetTile, law: FacetLaw, buffer: np.ndarray, origin: tuple[int, int], *,
                     oversample: int, gather: bool, energy: np.ndarray, per_cell: list[np.ndarray],
                     device: str) -> None:
    """:func:`sarheight.compute.facet_pass` with exact projection: ``kernels.facets.facet_pass``."""
    del device  # the caller's thread
    _facet_pass(tile, law, buffer, origin, oversample, True, gather, energy, per_cell)


def facet_pass_bilinear(tile: FacetTile, law: FacetLaw, buffer: np.ndarray, origin: tuple[int, int], *,
                        oversample: int, gather: bool, energy: np.ndarray, per_cell: list[np.ndarray],
                        device: str) -> None:
    """:func:`sarheight.compute.facet_pass` with bilinear splatting: ``kernels.facets.facet_pass``."""
    del device  # the caller's thread
    _facet_pass(tile, law, buffer, origin, oversample, False, gather, energy, per_cell)


def add_tile_rows(tile_buffer: np.ndarray, sums: np.ndarray, origin: tuple[int, int], rows: tuple[int, int], *,
                  exact: bool, device: str) -> None:
    """:func:`sarheight.compute.add_tile_rows` with ``kernels.radar_buffers.add_tile_rows``."""
    del device  # the caller's thread
    radar_buffers.add_tile_rows(tile_buffer, exact, sums, origin[0], origin[1], rows[0], rows[1])


def gather_buffer(images: np.ndarray, exact: bool, out: np.ndarray, *, device: str) -> None:
    """:func:`sarheight.compute.gather_buffer` with ``kernels.radar_buffers.prefix_buffer``
    (one call: each row's prefix sums run along it)."""
    del device  # the CPU
    radar_buffers.prefix_buffer(images, 0, images.shape[1], exact, out)


def polynomial_field(row_terms: np.ndarray, column_terms: np.ndarray, out: np.ndarray, *, device: str) -> None:
    """:func:`sarheight.compute.polynomial_field` with ``kernels.radar_buffers.polynomial_field``
    on row blocks in threads."""
    del device  # the CPU's threads
    run_blocks(lambda start, stop: radar_buffers.polynomial_field(row_terms, column_terms, start, stop, out),
               out.shape[0], block_count(out.shape))


def radar_products(images: np.ndarray, area_terms: tuple[np.ndarray, np.ndarray],
                   flat_terms: tuple[np.ndarray, np.ndarray], fraction: float, out: dict[str, np.ndarray], *,
                   device: str) -> None:
    """:func:`sarheight.compute.radar_products` with ``kernels.radar_buffers.radar_products``
    on row blocks in threads."""
    del device  # the CPU's threads
    shape = images.shape[1:]
    run_blocks(lambda start, stop: radar_buffers.radar_products(
        images, *area_terms, *flat_terms, fraction, start, stop, out["simulated_area"], out["simulated_gamma_area"],
        out["pixel_area"], out["valid"]), shape[0], block_count(shape))


def valid_pixels(gamma_image: np.ndarray, flat_gamma_area: np.ndarray, fraction: float, *, device: str
                 ) -> np.ndarray:
    """:func:`sarheight.compute.valid_pixels` with ``kernels.radar_buffers.valid_pixels`` on
    row blocks in threads."""
    del device  # the CPU's threads
    out = np.empty(gamma_image.shape, dtype=bool)
    run_blocks(lambda start, stop: radar_buffers.valid_pixels(gamma_image, flat_gamma_area, fraction, start, stop,
                                                              out), gamma_image.shape[0], block_count(out.shape))
    return out
