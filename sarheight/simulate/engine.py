"""The simulation engine: :class:`Simulation` (the facets of a DEM projected onto the radar
grid, tile by tile on threads, exact area projection or bilinear splatting), the smooth
fields it samples, the checks of its options and memory, :func:`run_simulation`, and the
rounding residue cleared from the outputs.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import logging
import math
import threading
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import xarray as xr

from .. import compute as door
from .._version import __version__
from ..compute import Compute
from ..dem import Dem, checked_dem
from ..errors import InvalidInputError
from ..geometry import RadarGeometry, RadarWindow
from ..ground import empirical_sigma0
from ..io import check_memory
from ..masks import MASK_ATTRS, MaskCode
from ..threads import run_blocks, thread_count
from .cells import (
    ADD_BAND_LINES,
    cell_ecef,
    cell_geometry,
    channels,
    check_oversample,
    oversample_factor,
    radar_sums,
    radar_window,
    visibility_masks,
)
from .contribution import (
    VALID_AREA_FRACTION,
    Contribution,
    FacetContribution,
    Projection,
    resolve_contribution,
)

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class Simulation:
    """The simulation of a DEM under a geometry: what :func:`simulate` returns as a
    Dataset and what the reallocation engines work on (:func:`run_simulation` makes one;
    the block-wise engine makes one per tile).

    Attributes
    ----------
    dem : the DEM (ellipsoidal heights, m), or a tile of it with a halo of one cell.
    geometry : the acquisition geometry.
    cells : per-cell arrays of the cell geometry (:func:`cell_geometry`): ``line``,
        ``sample`` (fractional product indices, float64), ``slant_range`` (m),
        ``azimuth_time``, ``look`` (unit look vectors, float32), ``incidence`` (ellipsoid
        incidence, rad, float32), ``valid``, and ``lon``, ``lat`` (rad), ``height`` (m)
        from which the passes recompute ECEF positions.
    window : the part of the image the cells fall in; the radar-side arrays lie on it.
    oversample : facets per DEM cell side.
    exact : exact polygon-pixel overlap (True) or bilinear splatting (False).
    contribution : what each facet contributes.
    layover, shadow : :class:`~sarheight.masks.MaskCode` per cell (uint8).
    mixing : separate ground segments per window pixel (uint16).
    per_cell : the scatter's per-cell sums kept for the whole DEM (``sigma_area``,
        ``gamma_area``, ``contribution``, ``cos_local_incidence``), or empty.
    sums : the radar buffer (:func:`radar_sums`) of sum w c and sum w A_gamma.
    smooth : pixel area and incidence fitted on the whole DEM, when the cells are a
        block of it (else fitted on the cells when first needed).
    compute : where the passes run (:func:`sarheight.compute.compute_for`).
    """

    dem: xr.DataArray
    geometry: RadarGeometry
    cells: dict[str, np.ndarray]
    window: RadarWindow
    oversample: int
    exact: bool
    contribution: FacetContribution
    layover: np.ndarray
    shadow: np.ndarray
    mixing: np.ndarray
    per_cell: dict[str, np.ndarray]
    sums: np.ndarray
    smooth: SmoothFields | None = None
    compute: Compute = dataclasses.field(default_factory=Compute)

    @property
    def images(self) -> np.ndarray:
        """The simulated images (2, lines, samples): sum w c, sum w A_gamma (a view of ``sums``)."""
        return channels(self.sums)

    def facet_pass(self, *, gather: bool, ratios: np.ndarray | None = None, sums: np.ndarray | None = None,
                   contribution: FacetContribution | None = None, rows: tuple[int, int] | None = None,
                   cols: tuple[int, int] | None = None, consume: Callable[..., None] | None = None,
                   per_cell: bool = True,
                   progress: Callable[[int], None] | None = None) -> tuple[np.ndarray | None, ...]:
        """Run the facet pass (:func:`sarheight.compute.facet_pass`) on tiles of DEM cells in threads.

        The cells go by tiles (blocks of rows by ranges of columns, with a halo of one
        cell): each recomputes the ECEF positions of its cells and scatters into a buffer
        of the pixels its facets reach, added to the images under a lock; nothing per cell
        is kept for the whole DEM unless asked. (Row blocks of the whole width would each
        reach every line the DEM's width spans where the lines cross it at an angle.)

        Parameters
        ----------
        gather : False to scatter the contributions, True to gather ratios.
        ratios : (2, lines, samples) ratio images to gather, or
        sums : the radar buffer to gather, ready (:func:`sarheight.compute.gather_buffer`).
        contribution : what the facets carry, default the simulation's.
        rows, cols : (start, stop), the DEM rows and columns whose facets are processed
            (their neighbours are still read): a tile with halo rows and columns
            processes its own cells only.
        consume : ``consume(start, stop, col_start, col_stop, energy, per_cell)`` receives
            each tile's results (energy (2, n, m), per_cell the four arrays below, for DEM
            rows start:stop and columns col_start:col_stop), from the worker threads; the
            full-size arrays are then not made.
        per_cell : scattering, compute the per-cell sums; False: skip them (the caller
            keeps only the radar sums; ``consume`` gets empty arrays). A gather always
            computes them.
        progress : called with each finished tile's share of the DEM rows.

        Returns
        -------
        (energy (2, rows, cols), sigma_area, gamma_area, contribution, cos_local, sums (the
        radar buffer of sum w*c and sum w*A_gamma, ``channels`` gives the images) when
        scattering); the per-cell arrays are None with ``consume``, ``energy`` is None when
        scattering.
        """
        c = self.cells
        contribution = contribution or self.contribution
        line0, n_lines, sample0, n_samples = self.window
        shape = c["valid"].shape
        exact = self.exact
        if gather:
            if sums is None:
                sums = door.gather_buffer(ratios, exact, compute=self.compute)
        else:
            sums = radar_sums(n_lines, n_samples)
        full: list[np.ndarray | None] = [None] * 5
        if consume is None:
            full = [np.zeros((2, *shape)) if gather else None] + [np.zeros(shape) for _ in range(3)] + [
                np.full(shape, np.nan)]

            def consume(start: int, stop: int, col_start: int, col_stop: int, energy: np.ndarray,
                        sums_of_cells: list[np.ndarray]) -> None:
                if gather:
                    full[0][:, start:stop, col_start:col_stop] = energy
                for target, block in zip(full[1:], sums_of_cells, strict=True):
                    target[start:stop, col_start:col_stop] = block

        law = contribution.facet_law()
        user_weight = contribution.user_weight
        whole_weight = user_weight.shape == shape and user_weight.shape[0] > 1
        cell_class = contribution.cell_class
        whole_class = cell_class.shape == shape and cell_class.shape[0] > 1
        first, last = rows if rows is not None else (0, shape[0])
        col_first, col_last = cols if cols is not None else (0, shape[1])
        # One lock per band of radar lines: tiles add their buffers band by band, so that
        # tiles over different lines add at once (one lock for the whole buffer made the
        # adding serial, the more so the more threads).
        locks = [threading.Lock() for _ in range(math.ceil(sums.shape[0] / ADD_BAND_LINES))]

        def work(start: int, stop: int, col_start: int, col_stop: int) -> None:
            view = (slice(max(0, start - 1), min(shape[0], stop + 1)),
                    slice(max(0, col_start - 1), min(shape[1], col_stop + 1)))
            own = (slice(start - view[0].start, stop - view[0].start),
                   slice(col_start - view[1].start, col_stop - view[1].start))

            def take(array: np.ndarray) -> np.ndarray:
                return np.ascontiguousarray(array[view])

            line, sample = take(c["line"]), take(c["sample"])
            shadow = take(self.shadow)
            shadowed = (shadow == MaskCode.ACTIVE) | (shadow == MaskCode.PASSIVE)
            tile_shape = line.shape
            energy = np.zeros((2, *tile_shape)) if gather else np.zeros((2, 1, 1))
            if gather or per_cell:
                sums_of_cells = [np.zeros(tile_shape) for _ in range(3)] + [np.full(tile_shape, np.nan)]
            else:
                sums_of_cells = [np.zeros((0, 0))] * 4
            if gather:
                first_line = first_sample = 0
                buffer = sums
            else:
                border = (start == 0, stop == shape[0], col_start == 0, col_stop == shape[1])
                first_line, count, first_sample, n = tile_reach(line, sample, self.window, take(c["valid"]), border)
                buffer = np.zeros(door.scatter_buffer_shape(count, n, exact))
            tile = door.FacetTile(
                cell_ecef(c, view[0].start, view[0].stop, view[1].start, view[1].stop, self.compute), line, sample,
                take(c["look"]), take(c["valid"]), shadowed, take(user_weight) if whole_weight else user_weight,
                take(cell_class) if whole_class else cell_class, (own[0].start, own[0].stop, own[1].start, own[1].stop))
            door.facet_pass(tile, law, buffer, (line0 + first_line, sample0 + first_sample),
                            oversample=self.oversample, exact=exact, gather=gather, energy=energy,
                            per_cell=sums_of_cells, compute=self.compute)
            if not gather:
                rows_of_tile = buffer.shape[0] - 2 * door.RADAR_BUFFER_PAD
                top = first_line + door.RADAR_BUFFER_PAD  # the buffer row of the tile's first pixel row
                for band in range(top // ADD_BAND_LINES, (top + rows_of_tile - 1) // ADD_BAND_LINES + 1):
                    with locks[band]:
                        door.add_tile_rows(buffer, sums, (first_line, first_sample),
                                           (band * ADD_BAND_LINES - top, (band + 1) * ADD_BAND_LINES - top),
                                           exact=exact, compute=self.compute)
            consume(start, stop, col_start, col_stop, energy[:, own[0], own[1]] if gather else None,
                    [p[own] for p in sums_of_cells])
            if progress is not None:
                progress((stop - start) * (col_stop - col_start) / shape[1])

        own_tiles = door.facet_tile_cells(compute=self.compute)
        if own_tiles is None:
            tiles = _tiles(first, last, col_first, col_last)
            run_blocks(lambda a, b: [work(*tiles[t]) for t in range(a, b)], len(tiles), len(tiles))
        else:
            # The backend's own tiles (torch: large, one after the other).
            tiles = _tiles(first, last, col_first, col_last, cells=own_tiles, per_thread=0)
            for tile in tiles:
                work(*tile)
        return (*full, None if gather else sums)

    @property
    def projection(self) -> Projection:
        return "exact" if self.exact else "bilinear"

    def to_dataset(self, variables: tuple[str, ...] | None = None) -> xr.Dataset:
        """The simulation as a Dataset (what :func:`simulate` returns); ``variables``:
        only those (each built only when asked for)."""
        dem, c, cells = self.dem, self.per_cell, self.cells
        inside = cells["valid"]
        dims = ("y", "x")
        radar_dims = ("line", "sample")

        def on_cells(values: np.ndarray) -> np.ndarray:
            return np.where(inside, values, np.nan).astype(np.float32)

        def local_incidence() -> np.ndarray:
            with np.errstate(invalid="ignore"):
                return on_cells(np.degrees(np.arccos(np.clip(c["cos_local_incidence"], -1, 1))))

        radar = functools.cache(self.radar_products)

        builders = {
            "local_incidence_angle": lambda: (dims, local_incidence(),
                                              {"units": "degree", "long_name": "local incidence angle"}),
            "gamma_area": lambda: (dims, on_cells(c["gamma_area"]),
                                   {"units": "m2", "long_name": "projected (gamma) area, A . look"}),
            "sigma_area": lambda: (dims, on_cells(c["sigma_area"]),
                                   {"units": "m2", "long_name": "surface (sigma) area"}),
            "contribution": lambda: (dims, on_cells(c["contribution"]),
                                     {"units": "m2", "long_name": "contribution c = sum over facets",
                                      "model": self.contribution.description}),
            "layover": lambda: (dims, self.layover, {"long_name": "layover", **MASK_ATTRS}),
            "shadow": lambda: (dims, self.shadow, {"long_name": "shadow", **MASK_ATTRS}),
            "slant_range": lambda: (dims, cells["slant_range"], {"units": "m"}),
            "radar_line": lambda: (dims, np.where(inside, cells["line"], np.nan),
                                   {"long_name": "fractional line of the cell in the product grid (unclipped)"}),
            "radar_sample": lambda: (dims, np.where(inside, cells["sample"], np.nan),
                                     {"long_name": "fractional sample of the cell in the product grid (unclipped)"}),
            "azimuth_time": lambda: (dims, cells["azimuth_time"]),
            "incidence_angle": lambda: (dims, np.degrees(cells["incidence"]).astype(np.float32),
                                        {"units": "degree", "long_name": "ellipsoid incidence angle"}),
            "simulated_area": lambda: (radar_dims, radar()["simulated_area"],
                                       {"long_name": "simulated area image sum(w c) / pixel area"}),
            "simulated_gamma_area": lambda: (radar_dims, radar()["simulated_gamma_area"],
                                             {"long_name": "simulated gamma area image sum(w A_gamma) / pixel area"}),
            "pixel_area": lambda: (radar_dims, radar()["pixel_area"],
                                   {"units": "m2", "long_name": "slant-plane pixel area"}),
            "mixing": lambda: (radar_dims, self.mixing, {"long_name": "number of separate ground segments per pixel"}),
            "valid": lambda: (radar_dims, radar()["valid"], {"long_name": "gamma area >= 5 % of flat terrain"}),
        }
        names = variables if variables is not None else tuple(builders)
        wants_radar = bool({"simulated_area", "simulated_gamma_area", "pixel_area", "mixing", "valid"} & set(names))
        ds = xr.Dataset(
            {name: builders[name]() for name in names},
            coords={"y": dem["y"], "x": dem["x"], **(self.window.coords() if wants_radar else {})},
            attrs={
                **self.geometry.to_attrs(),
                "projection": self.projection,
                "oversample": self.oversample,
                "contribution": self.contribution.description,
                "vertical_datum": dem.attrs.get("vertical_datum", "ellipsoid"),
                # Where the heights came from: the DEM's datum before conversion, the geoid used.
                **{key: dem.attrs[key] for key in ("source_vertical_datum", "geoid_grid", "vertical_datum_assumed")
                   if key in dem.attrs},
                "sarheight_version": __version__,
            },
        )
        return ds.rio.write_crs(dem.rio.crs, inplace=True)

    @functools.cached_property
    def smooth_fields(self) -> SmoothFields:
        """Pixel area and incidence fitted on the cells, unless given (block-wise runs)."""
        return self.smooth if self.smooth is not None else SmoothFields.from_cells(self.cells, self.window)

    @functools.cached_property
    def pixel_area(self) -> np.ndarray:
        """Slant-plane pixel area (m^2) of every window pixel."""
        return self.smooth_fields.evaluate("pixel_area", self.window)

    @functools.cached_property
    def sin_incidence(self) -> np.ndarray:
        """Sine of the ellipsoid incidence angle at every window pixel."""
        return np.sin(self.smooth_fields.evaluate("incidence", self.window))

    def radar_products(self) -> dict[str, np.ndarray]:
        """The radar outputs of the window (``simulated_area``, ``simulated_gamma_area``,
        ``pixel_area``, all float32, and ``valid``, see :func:`simulate`) in one threaded
        pass over the pixels (:func:`sarheight.compute.radar_products`), the smooth fields
        evaluated per pixel: no whole-image float64 field."""
        images = self.images
        smooth = self.smooth_fields
        return door.radar_products(images, smooth.separable_terms("pixel_area", self.window),
                                   smooth.separable_terms("flat_gamma_area", self.window), VALID_AREA_FRACTION,
                                   compute=self.compute)

    @functools.cached_property
    def valid_pixels(self) -> np.ndarray:
        """Simulated gamma area at least 5 % of the flat-terrain gamma area a_p cot(theta)."""
        flat = self.smooth_fields.evaluate("flat_gamma_area", self.window)
        return door.valid_pixels(self.images[1], flat, VALID_AREA_FRACTION, compute=self.compute)


#: Cells of a tile of the facet passes: its buffers (facet tables of a DEM row, the
#: scatter buffer of the pixels it reaches) stay in the second-level cache.
TILE_CELLS = 1 << 15



#: Tiles per thread at least: threads take them as they finish, which evens out tiles
#: of unequal cost (layover, voids, the DEM's edge).
TILES_PER_THREAD = 4


def _tiles(first: int, last: int, col_first: int, col_last: int, *, cells: int = TILE_CELLS,
           per_thread: int = TILES_PER_THREAD) -> list[tuple[int, int, int, int]]:
    """Tiles (start, stop, col_start, col_stop) covering rows first:last and columns
    col_first:col_last: about square, of about ``cells`` cells, at least ``per_thread``
    per thread."""
    rows, cols = last - first, col_last - col_first
    if rows <= 0 or cols <= 0:
        return []
    side = int(math.sqrt(cells))
    n_col = max(1, round(cols / side)) if cols > 2 * side else 1
    col_edges = [col_first + round(k * cols / n_col) for k in range(n_col + 1)]
    rows_per_tile = max(1, cells // max(1, cols // n_col))
    n_row = max(math.ceil(rows / rows_per_tile), math.ceil(per_thread * thread_count() / n_col))
    n_row = min(n_row, rows)
    row_edges = [first + round(k * rows / n_row) for k in range(n_row + 1)]
    return [(r0, r1, c0, c1) for r0, r1 in itertools.pairwise(row_edges) if r1 > r0
            for c0, c1 in itertools.pairwise(col_edges) if c1 > c0]


def tile_reach(line: np.ndarray, sample: np.ndarray, window: RadarWindow, valid: np.ndarray | None = None,
                border: tuple[bool, bool, bool, bool] = (True, True, True, True)) -> tuple[int, int, int, int]:
    """The window pixels (first line, lines, first sample, samples; window-relative) that
    the facets of a tile's own cells can reach, from its cells with their halo (``line``,
    ``sample``, ``valid``: default where the line is finite): every facet vertex lies
    between those centres, or beyond them at the DEM's border, ``border``: whether the
    first row, last row, first column, last column are the DEM's (default all: a
    superset) (:func:`sarheight.compute.facet_extent`)."""
    line0, n_lines, sample0, n_samples = window
    if valid is None:
        valid = np.isfinite(line)
    l_min, l_max, s_min, s_max = door.facet_extent(line, sample, valid, borders=border)
    if not math.isfinite(l_min):
        return 0, 1, 0, 1
    margin = 2
    low = max(0, math.floor(l_min) - margin - line0)
    high = min(n_lines, math.ceil(l_max) + margin + 1 - line0)
    left = max(0, math.floor(s_min) - margin - sample0)
    right = min(n_samples, math.ceil(s_max) + margin + 1 - sample0)
    if high <= low or right <= left:
        return 0, 1, 0, 1
    return low, high - low, left, right - left


SMOOTH_SAMPLES = 40_000  # cells the smooth fields of the radar geometry are fitted to


SMOOTH_NAMES = ("pixel_area", "incidence")  # sampled at the cells


#: Fitted: the sampled fields and the flat-terrain gamma area a_p cot(theta) (m^2), the
#: reference of terrain flattening's validity, derived from them.
FIELD_NAMES = (*SMOOTH_NAMES, "flat_gamma_area")


def smooth_stride(shape: tuple[int, int], samples: int = SMOOTH_SAMPLES) -> int:
    """Row and column stride of the even subset of about ``samples`` cells of a DEM."""
    return max(1, int(math.sqrt(shape[0] * shape[1] / samples)))


def smooth_samples(cells: dict[str, np.ndarray], stride: int, first_row: int = 0) -> dict[str, np.ndarray]:
    """(line, sample, pixel area, incidence) of the valid cells on the DEM rows r with
    r % stride == 0 and every ``stride``-th column; ``first_row``: the DEM row of
    ``cells``' first row, so that blocks of rows pick the same cells as the whole DEM."""
    start = (-first_row) % stride
    valid = cells["valid"][start::stride, ::stride]
    return {name: cells[name][start::stride, ::stride][valid]
            for name in ("line", "sample", *SMOOTH_NAMES)}


@dataclasses.dataclass(frozen=True)
class SmoothFields:
    """Quantities of the radar geometry alone (pixel area, incidence, flat-terrain gamma
    area) on the radar window.

    They are known at the cells' (line, sample) positions and vary smoothly with them, so
    a least-squares polynomial of degree 2 in (line, sample), fitted to an even subset of
    about 40 000 valid cells, represents them to about 1e-6 relative and fills every
    window pixel, including those no cell centre reaches. Evaluating on a sub-window
    gives exactly the matching part of the whole window's field.
    """

    window: RadarWindow
    coefficients: dict[str, np.ndarray | None]
    degree: int = 2

    @classmethod
    def fit(cls, samples: dict[str, np.ndarray], window: RadarWindow,
            degree: int = 2) -> SmoothFields:
        line0, n_lines, sample0, n_samples = window
        if samples["line"].size == 0:
            return cls(window, dict.fromkeys(FIELD_NAMES), degree)
        u = (samples["line"] - line0 - 0.5 * n_lines) / max(n_lines, 1)
        v = (samples["sample"] - sample0 - 0.5 * n_samples) / max(n_samples, 1)
        design = np.stack([u**p * v**q for p, q in cls._terms(degree)], axis=1)
        incidence = samples["incidence"].astype(np.float64)
        values = {name: samples[name].astype(np.float64) for name in SMOOTH_NAMES}
        values["flat_gamma_area"] = values["pixel_area"] * np.cos(incidence) / np.sin(incidence)
        coefficients = {name: np.linalg.lstsq(design, values[name], rcond=None)[0] for name in FIELD_NAMES}
        return cls(window, coefficients, degree)

    @classmethod
    def from_cells(cls, cells: dict[str, np.ndarray], window: RadarWindow) -> SmoothFields:
        stride = smooth_stride(cells["valid"].shape)
        samples = smooth_samples(cells, stride)
        if samples["line"].size == 0 and stride > 1:
            samples = smooth_samples(cells, 1)
        return cls.fit(samples, window)

    @staticmethod
    def _terms(degree: int) -> list[tuple[int, int]]:
        return [(p, q) for p in range(degree + 1) for q in range(degree + 1 - p)]

    def pixel_fields(self, window: RadarWindow, contribution: FacetContribution) -> door.PixelFields:
        """The pixel area's and the flat terrain's gamma area's polynomials as the per-pixel
        passes of the kernel door evaluate them on ``window`` (the simulation's radar
        window), with the thresholds of ``contribution``'s rounding residue
        (:func:`residue_thresholds`)."""
        powers = np.array(self._terms(self.degree), dtype=np.int64)
        fitted = self.coefficients["pixel_area"] is not None
        fields = np.zeros((2, powers.shape[0]))
        if fitted:
            fields[0] = self.coefficients["pixel_area"]
            fields[1] = self.coefficients["flat_gamma_area"]
        fit_window = tuple(int(value) for value in self.window)
        return door.PixelFields(fields, powers, fitted, fit_window,  # type: ignore[arg-type]
                                   int(window[0]), int(window[2]), residue_thresholds(contribution, self))

    def separable_terms(self, name: str, window: RadarWindow | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The field on ``window`` (default: the whole fitted window) as row terms (n_terms,
        lines) and column terms (n_terms, samples), the field being the sum over the terms
        of their products, in order (:func:`sarheight.compute.polynomial_field`): each term
        (c u^p) v^q is its factors along lines and along samples. One NaN term when
        nothing was fitted."""
        line0, n_lines, sample0, n_samples = self.window
        sub_line0, sub_lines, sub_sample0, sub_samples = window or self.window
        coefficients = self.coefficients[name]
        if coefficients is None:
            return np.full((1, sub_lines), np.nan), np.ones((1, sub_samples))
        lines = np.arange(sub_line0 - line0, sub_line0 - line0 + sub_lines)
        samples = np.arange(sub_sample0 - sample0, sub_sample0 - sample0 + sub_samples)
        uu = (lines - 0.5 * n_lines) / max(n_lines, 1)
        vv = (samples - 0.5 * n_samples) / max(n_samples, 1)
        terms = list(zip(self._terms(self.degree), coefficients, strict=True))
        row_terms = np.array([c * uu**p for (p, _), c in terms]).reshape(len(terms), sub_lines)
        column_terms = np.array([vv**q for (_, q), _ in terms]).reshape(len(terms), sub_samples)
        return row_terms, column_terms

    def evaluate(self, name: str, window: RadarWindow | None = None) -> np.ndarray:
        """The field on ``window`` (default: the whole fitted window), NaN when nothing was fitted."""
        _, sub_lines, _, sub_samples = window or self.window
        if self.coefficients[name] is None:
            return np.full((sub_lines, sub_samples), np.nan)
        # One threaded pass over the pixels (no whole-image temporary per term).
        return door.polynomial_field(*self.separable_terms(name, window))


def check_simulation_options(geometry: Any, projection: Any, oversample: Any) -> None:
    """Refuse, before any work, a geometry that is not a :class:`RadarGeometry`, an
    unknown projection or a bad oversampling factor."""
    if not isinstance(geometry, RadarGeometry):
        raise InvalidInputError(
            f"geometry must be a RadarGeometry (from_sentinel1 or synthetic), got {type(geometry).__name__}"
        )
    if projection not in ("exact", "bilinear"):
        raise InvalidInputError(f"projection must be 'exact' or 'bilinear', got {projection!r}")
    if oversample != "auto":
        check_oversample(oversample)


#: Peak memory of an in-memory simulation or reconstruction per DEM cell (98-130 bytes
#: measured by benchmarks/reconstruct.py, outputs included) and per pixel of its radar
#: window (simulated sums, ratios, mixing, the observation, smooth fields).
BYTES_PER_CELL = 130


BYTES_PER_PIXEL = 48


def check_run_memory(cells: int, window: RadarWindow | None = None) -> None:
    """Refuse, before the costly passes, a simulation of ``cells`` DEM cells onto
    ``window`` that needs more memory than the machine has available."""
    pixels = 0 if window is None else window.lines * window.samples
    where = f"{cells} DEM cells" + ("" if window is None else f" onto {window.lines} x {window.samples} radar pixels")
    check_memory(cells * BYTES_PER_CELL + pixels * BYTES_PER_PIXEL, f"simulating {where}",
                 ": crop the DEM, use coarser radar pixels, or reconstruct block by block (chunks=256)")


def check_dem_shape(dem: xr.DataArray) -> None:
    """Refuse a DEM too small to form facets (fewer than 2 x 2 cells)."""
    if min(dem.shape) < 2:
        raise InvalidInputError(f"the DEM must have at least 2 x 2 cells to form facets, got {dem.shape}")


def simulation_passes(projection: Projection) -> tuple[str, ...]:
    """The passes of the kernel door that take a simulation's cells and pixels with
    ``projection``, as :meth:`sarheight.compute.Compute.where` names where each ran (the
    smooth fields' few evaluations on the numba kernels aside)."""
    return ("cell_geometry", "active_layover", "visibility_masks", "facet_extent", "cell_ecef",
            f"facet_pass_{projection}", "add_tile_rows")


def run_simulation(dem: Any, geometry: RadarGeometry, *, contribution: Contribution = "model",
                   projection: Projection = "exact", oversample: int | Literal["auto"] = "auto",
                   keep_per_cell: bool = True, progress: Callable[[int], None] | None = None,
                   on_window: Callable[[RadarWindow], None] | None = None, clear: bool = True,
                   every_line: bool = True, compute: Compute | None = None) -> Simulation:
    """Cell geometry, masks, and the scatter of the facets into the radar window.

    Parameters
    ----------
    dem, geometry, contribution, projection, oversample : as for :func:`simulate`.
    keep_per_cell : keep the per-cell sums of the scatter (sigma and gamma areas,
        contribution, local incidence) for the whole DEM; ``reconstruct`` does without
        them (its gather computes them again, block by block).
    progress : called with the DEM rows of each scattered block.
    on_window : called with the radar window as soon as it is known, before the masks
        and facets (to check an observation on it).
    clear : clear the rounding residue of the sums (:func:`clear_residue`); False leaves
        it to the reallocation's ratio pass, which clears as it reads them (one pass over
        the window fewer: ``reconstruct``).
    every_line : the mixing of every line of the window from its own profile; False: only
        the lines that bound the sweep's groups are cut, the others take the mixing of the
        nearer (:func:`visibility_masks`; the masks are the same), for callers that do
        not use the mixing.
    compute : where the passes run (:func:`sarheight.compute.compute_for`; the numba
        kernels by default), kept by the simulation for the passes that follow.

    The user's entries (:func:`simulate`, :func:`simulate_sar`, :func:`sarheight.reconstruct`)
    check the options before they read the DEM (:func:`check_simulation_options`); this
    pass, public between modules, checks them again (a few comparisons), so that a caller
    of it alone cannot pass an unknown projection into the kernels.
    """
    check_simulation_options(geometry, projection, oversample)
    # The heights are only read: no copy of a DEM that is already ellipsoidal (a Dem: not
    # checked again).
    dem = checked_dem(dem, copy=False).heights
    check_dem_shape(dem)
    resolved = resolve_contribution(contribution, dem)
    check_run_memory(dem.size)
    compute = compute or Compute()
    cells = cell_geometry(dem, geometry, compute=compute)
    window = radar_window(cells["line"], cells["sample"], cells["valid"], geometry)
    check_run_memory(dem.size, window)
    if on_window is not None:
        on_window(window)
    factor = oversample_factor(oversample, projection, dem, cells)
    lines, samples = geometry.grid.shape
    layover, shadow, mixing = visibility_masks(cells, cells["faces_away"], cells["active_layover"], window,
                                               every_line=every_line, compute=compute)
    # Cells whose centre falls outside the image are "outside" (255); a cell straddling
    # the image's edge keeps only the energy of its part inside.
    with np.errstate(invalid="ignore"):
        outside = ~(cells["valid"] & (cells["line"] >= -0.5) & (cells["line"] <= lines - 0.5) & (
            cells["sample"] >= -0.5) & (cells["sample"] <= samples - 0.5))
    layover[outside] = MaskCode.OUTSIDE
    shadow[outside] = MaskCode.OUTSIDE
    del outside
    smooth = SmoothFields.from_cells(cells, window)
    # What only the masks and the smooth fields needed goes now: 33 bytes per cell.
    for name in ("look_angle", "cross_track", "pixel_area", "faces_away", "active_layover"):
        del cells[name]
    state = Simulation(dem, geometry, cells, window, factor, projection == "exact", resolved,
                       layover, shadow, mixing, {}, radar_sums(0, 0), smooth, compute)
    if keep_per_cell:
        _, sigma_area, gamma_area, contrib, cos_local, sums = state.facet_pass(gather=False, progress=progress)
        state.per_cell = {"sigma_area": sigma_area, "gamma_area": gamma_area, "contribution": contrib,
                          "cos_local_incidence": cos_local}
    else:
        sums = state.facet_pass(gather=False, consume=lambda *_: None, per_cell=False, progress=progress)[-1]
    state.sums = sums
    if clear:
        clear_residue(state.images, window, smooth, resolved, compute=compute)
    return state


def resimulated(state: Simulation, dem: xr.DataArray | Dem, *,
                cells: dict[str, np.ndarray] | None = None) -> Simulation:
    """``state``'s simulation of ``dem``, a DEM on the same grid whose heights differ a
    little from ``state``'s (a probe of a derivative): the cells' zero-Doppler geometry
    recomputed and the facets scattered again with the same contribution; the radar
    window, the layover and shadow masks and the smooth fields kept (a derivative does not
    move a cell into shadow, nor refit the pixel areas), no per-cell sums. About half the
    work of :func:`run_simulation`. ``cells``: the cells' geometry of ``dem``
    (:func:`sarheight.simulate.cells.cell_geometry`, ``own_surface=False``) where the
    caller has it (each cell's is of its own height alone: a probe that raises some cells
    takes theirs from a surface raised everywhere)."""
    dem = checked_dem(dem, copy=False).heights
    if dem.shape != state.dem.shape:
        raise InvalidInputError(f"resimulated takes a DEM of the simulation's grid {state.dem.shape}, got {dem.shape}")
    cells = dict(cells) if cells is not None else cell_geometry(dem, state.geometry, own_surface=False,
                                                                compute=state.compute)
    for name in ("look_angle", "cross_track", "pixel_area"):
        cells.pop(name, None)
    again = dataclasses.replace(state, dem=dem, cells=cells, per_cell={}, sums=radar_sums(0, 0))
    again.sums = again.facet_pass(gather=False, consume=lambda *_: None, per_cell=False)[-1]
    clear_residue(again.images, again.window, again.smooth_fields, again.contribution, compute=again.compute)
    return again


#: Fraction of a pixel's flat-terrain sum below which a simulated sum is taken for
#: rounding residue and cleared.
RESIDUE_FRACTION = 1e-9


def residue_thresholds(contribution: FacetContribution, smooth: SmoothFields) -> np.ndarray:
    """(2,) per unit of pixel area, the sums (contribution, gamma area) below which a
    pixel's simulated sum is rounding residue (:func:`clear_residue`)."""
    return RESIDUE_FRACTION * np.array(_flat_densities(contribution, smooth))


def _flat_densities(contribution: FacetContribution, smooth: SmoothFields) -> tuple[float, float]:
    """The least that flat terrain gives per unit of pixel area anywhere in the scene:
    contribution (channel 0) and gamma area (channel 1), at the largest incidence of the
    simulation's window (the contribution laws fall with incidence). Constants of the
    whole scene, so that every block of it clears the same pixels."""
    line0, n_lines, sample0, n_samples = smooth.window
    corners = [smooth.evaluate("incidence", (line, 1, sample, 1))[0, 0]
               for line in (line0, line0 + n_lines - 1) for sample in (sample0, sample0 + n_samples - 1)]
    incidence = float(np.nanmax(corners)) if np.isfinite(corners).any() else math.radians(45.0)
    gamma = math.cos(incidence) / math.sin(incidence)
    if contribution.code == door.CONTRIBUTION_GAMMA:
        return gamma, gamma
    if contribution.code in (door.CONTRIBUTION_USER, door.CONTRIBUTION_CELL_LAW):
        centre = (line0 + n_lines // 2, 1, sample0 + n_samples // 2, 1)
        reference_area = float(np.nan_to_num(smooth.evaluate("pixel_area", centre)[0, 0]))
        return contribution.density_scale(reference_area), gamma
    degrees = math.degrees(incidence)
    if contribution.table.size > 1:
        law = float(np.interp(degrees, np.linspace(0.0, 90.0, contribution.table.size), contribution.table))
    else:
        law = float(empirical_sigma0(degrees))
    return law / math.sin(incidence), gamma


def clear_residue(images: np.ndarray, window: RadarWindow, smooth: SmoothFields,
                  contribution: FacetContribution, *, compute: Compute | None = None) -> None:
    """Clear the rounding residue of the simulated sums (2, lines, samples) on ``window``.

    The difference sums of exact projection leave residue (about 1e-16 of a line's
    deposits) in pixels no facet reaches, and a ratio over such a pixel would be huge,
    which the row prefix sums of the gather would spread (by cancellation) over the whole
    line. A pixel is cleared where its sum is below ``RESIDUE_FRACTION`` of its area times
    the least that flat terrain gives per unit area in the scene: a criterion of the
    pixel and the scene, so that block-wise runs clear the same pixels as in memory. It
    drops only slivers of facets under a billionth of a pixel, and bounds the ratios at
    about a billion times flat terrain's.
    """
    door.clear_residue(images, smooth.pixel_fields(window, contribution), compute=compute)
