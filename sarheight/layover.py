"""Reconstruction: reallocate the observed energy of radar pixels to the ground cells that made it.

Given an observed image I_p (linear power, beta0 of a Sentinel-1 product) and the
simulation of the DEM under the same geometry, every pixel's energy I_p a_p (a_p: the
slant-plane pixel area) is shared among the facets that land in it in proportion to
their simulated contributions w_{f,p} c_f:

    E_f = sum_p  w_{f,p} c_f / (sum_f' w_{f',p} c_f')  I_p a_p,
    sigma0_f = E_f / A_sigma,f   (or gamma0_f = E_f / A_gamma,f).

With ``contribution="model"`` (default) c_f is the empirical sigma0 law of the facet's
local incidence angle times its area: facets inside one layover pixel are told apart by
their physics (a slope facing the radar returns more than the flat beside it). With
``contribution="gamma"`` (c_f = A_gamma,f) the reallocation reduces to area-weighted
terrain flattening (Small 2011): every facet of a pixel gets the same gamma0.

The result also carries, for comparison on the same grid, conventional geocoding
(``geocoded``: the pixel's sigma0 with the ellipsoid incidence angle, layover pixels
copied to every cell that maps to them) and Small-2011 terrain-flattened gamma0
(``flattened``). Energy is conserved exactly: the gather is the adjoint of the
simulation's scatter.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from ._threads import progress_bar, run_blocks
from ._version import __version__
from .dem import _open_dem
from .errors import InvalidInputError, PartialCoverageWarning
from .geometry import RadarGeometry
from .io import write_geotiff
from .kernels import facets, reallocation
from .masks import kernel_codes, to_isce3_mask
from .simulate import (
    Contribution,
    Projection,
    _as_dataset,
    _block_count,
    _clear_residue,
    _run_simulation,
    _Simulation,
    channels,
    gather_buffer,
    radar_sums,
)

__all__ = ["RECONSTRUCTION_BANDS", "SIMULATION_BANDS", "reconstruct", "to_geotiff", "to_isce3_mask"]

logger = logging.getLogger(__name__)

Output = Literal["sigma0", "gamma0"]


def _from_xarray_sentinel(sar: xr.DataArray) -> xr.DataArray:
    """An xarray-sentinel measurement (azimuth_time x slant_range_time|ground_range, with
    line/pixel coordinates) as a (line, sample) DataArray of absolute indices."""
    range_dim = next(d for d in ("slant_range_time", "ground_range", "pixel") if d in sar.dims)
    azimuth_dim = "azimuth_time" if "azimuth_time" in sar.dims else "line"
    if "line" not in sar.coords or "pixel" not in sar.coords:
        raise InvalidInputError(
            "the xarray-sentinel measurement has no line/pixel coordinates: open it with "
            "xarray_sentinel.open_sentinel1_dataset and calibrate it with calibrate_intensity"
        )
    if np.issubdtype(sar.dtype, np.complexfloating):
        raise InvalidInputError(
            "the measurement is complex: give calibrated intensity "
            "(xarray_sentinel.calibrate_intensity(measurement, calibration.betaNought))"
        )
    out = sar.swap_dims({azimuth_dim: "line"}) if azimuth_dim != "line" else sar
    out = out.swap_dims({range_dim: "pixel"}) if range_dim != "pixel" else out
    out = out.rename({"pixel": "sample"})
    return out.drop_vars([c for c in out.coords if c not in ("line", "sample")])


def _observation_on_window(sar: Any, geometry: RadarGeometry | None, window: tuple[int, int, int, int]) -> np.ndarray:
    """The observed intensity on the simulation window (lines x samples), NaN where the
    image has no pixel: float32 when the image is float32 (no wider copy), else float64;
    a view of a full-grid array. Only the window is read from a lazy (dask) DataArray."""
    line0, n_lines, sample0, n_samples = window
    if isinstance(sar, xr.DataArray) and "azimuth_time" in sar.dims:
        sar = _from_xarray_sentinel(sar)
    if isinstance(sar, xr.DataArray) and {"line", "sample"} <= set(sar.dims):
        values = sar.transpose("line", "sample")
        lines = np.asarray(values["line"].values) if "line" in values.coords else np.arange(values.shape[0])
        samples = np.asarray(values["sample"].values) if "sample" in values.coords else np.arange(values.shape[1])
        dtype = np.float32 if values.dtype == np.float32 else np.float64
        rows = lines - line0
        cols = samples - sample0
        if (rows.size == n_lines and cols.size == n_samples and _consecutive(rows) and _consecutive(cols)
                and rows[:1].tolist() == [0] and cols[:1].tolist() == [0]
                and isinstance(values.data, np.ndarray) and values.dtype == dtype and values.data.flags.c_contiguous):
            # Exactly the window (an image made on it, as simulate_sar's): no copy.
            return values.data
        out = np.full((n_lines, n_samples), np.nan, dtype=dtype)
        keep_r = (rows >= 0) & (rows < n_lines)
        keep_c = (cols >= 0) & (cols < n_samples)
        if not keep_r.any() or not keep_c.any():
            return out
        r_in, c_in = np.flatnonzero(keep_r), np.flatnonzero(keep_c)
        # Only the part over the window is read (a lazy array loads just that).
        part = values.isel(line=slice(r_in[0], r_in[-1] + 1), sample=slice(c_in[0], c_in[-1] + 1))
        data = np.asarray(part.values)
        r_in, c_in = r_in - r_in[0], c_in - c_in[0]
        if _consecutive(rows[keep_r]) and _consecutive(cols[keep_c]) and _consecutive(r_in) and _consecutive(c_in):
            # The usual case, an image on a regular grid: one slice, no fancy-index copy.
            first_r, first_c = rows[keep_r][0], cols[keep_c][0]
            out[first_r:first_r + data.shape[0], first_c:first_c + data.shape[1]] = data
        else:
            out[np.ix_(rows[keep_r], cols[keep_c])] = np.asarray(data, dtype=dtype)[np.ix_(r_in, c_in)]
        return out
    array = np.asarray(sar)
    if array.dtype not in (np.float32, np.float64):
        array = array.astype(np.float64)
    if geometry is not None and array.shape == geometry.grid.shape:
        return array[line0:line0 + n_lines, sample0:sample0 + n_samples]
    raise InvalidInputError(
        f"the SAR image has shape {array.shape} but the geometry's grid is "
        f"{None if geometry is None else geometry.grid.shape}: give the full image of the product "
        "grid, or a DataArray with dims (line, sample) and absolute line/sample coordinates"
    )


def _consecutive(index: np.ndarray) -> bool:
    return bool(index.size == 0 or (index[-1] - index[0] == index.size - 1 and np.all(np.diff(index) == 1)))


def _check_observation(sar: Any, geometry: RadarGeometry) -> None:
    """Refuse, before any work, an observation in radar geometry that cannot be one: not
    real numbers, not the product grid's shape, a (line, sample) DataArray of part of the
    grid without the coordinates that place it, or negative or infinite intensities."""
    if isinstance(sar, xr.DataArray) and "azimuth_time" in sar.dims:
        sar = _from_xarray_sentinel(sar)  # refuses complex measurements, says what to do
    dtype = getattr(sar, "dtype", None)
    if dtype is None:
        try:
            dtype = np.asarray(sar).dtype
        except Exception:
            dtype = np.dtype(object)
    if dtype.kind == "c":
        raise InvalidInputError(
            "the SAR image is complex (SLC values): give linear intensity calibrated to beta0, "
            "|s|^2 / A_beta^2 (a SAFE path does this), not the complex samples"
        )
    if dtype.kind not in "fiu":
        raise InvalidInputError(
            f"the SAR image must hold real numbers (linear beta0), got dtype {dtype}"
        )
    grid = geometry.grid.shape
    if isinstance(sar, xr.DataArray):
        if not {"line", "sample"} <= set(sar.dims) or sar.ndim != 2:
            raise InvalidInputError(
                f"a DataArray observation needs dims (line, sample) in radar geometry, or (y, x) with a CRS "
                f"on a map grid; got {sar.dims}"
            )
        sizes = (sar.sizes["line"], sar.sizes["sample"])
        missing = [dim for dim in ("line", "sample") if dim not in sar.coords]
        if missing and sizes != grid:
            raise InvalidInputError(
                f"the (line, sample) DataArray has {sizes[0]} x {sizes[1]} pixels, not the whole product grid "
                f"{grid[0]} x {grid[1]}, and no {' or '.join(missing)} coordinate: give the absolute "
                "line and sample indices of its pixels as coordinates"
            )
    else:
        shape = np.shape(sar)
        if shape != grid:
            raise InvalidInputError(
                f"the SAR image has shape {shape} but the geometry's grid is {grid}: give the full image of the "
                "product grid, or a DataArray with dims (line, sample) and absolute line/sample coordinates"
            )
    _check_values(sar)


def _check_values(sar: Any) -> None:
    """Refuse negative or infinite intensities of an array observation before any work
    (a lazy array is checked window by window as it is read instead)."""
    if isinstance(sar, xr.DataArray) and not isinstance(sar.data, np.ndarray):
        return
    # Callers pass observations whose kind _check_observation has accepted, or windows.
    values = np.asarray(sar.values if isinstance(sar, xr.DataArray) else sar)
    if values.dtype.kind in "iu":
        # Integers are never infinite; unsigned ones never negative.
        infinite, negative = False, bool(values.dtype.kind == "i" and values.size and values.min() < 0)
    elif values.ndim == 2 and values.dtype in (np.float32, np.float64) and values.flags.c_contiguous:
        # One threaded pass (the image can be a whole product's).
        found = run_blocks(lambda start, stop: reallocation.intensity_problems(values, start, stop), values.shape[0])
        infinite, negative = any(f[0] for f in found), any(f[1] for f in found)
    else:
        infinite = bool(np.isinf(values).any())
        negative = bool(values.size and np.nanmin(values, initial=np.inf) < 0)
    if infinite:
        raise InvalidInputError("the SAR image has infinite values: mask them as NaN first")
    if negative:
        raise InvalidInputError(
            "the SAR image has negative intensities: give linear power (e.g. beta0), not amplitude "
            "differences or dB (convert dB with 10 ** (db / 10))"
        )


def warn_partial_coverage(where: str, stacklevel: int) -> None:
    """Say that the observation lacks ``where`` (pixels under the DEM), and what follows."""
    warnings.warn(
        f"the SAR image has no value (NaN) in {where}: the cells whose facets reach them are NaN in "
        "backscatter and flattened (crop the DEM to the image, or give an image that covers it)",
        PartialCoverageWarning, stacklevel=stacklevel)


def _check_intensity(observed: np.ndarray, window: tuple[int, int, int, int]) -> None:
    if not np.isfinite(observed).any():
        line0, n_lines, sample0, n_samples = window
        raise InvalidInputError(
            f"the SAR image has no finite value where the DEM falls (lines {line0}..{line0 + n_lines - 1}, "
            f"samples {sample0}..{sample0 + n_samples - 1}): the image does not cover the DEM"
        )
    _check_values(observed)


#: Radar lines per block of the per-pixel pass.
_LINES_PER_BLOCK = 256


def _ratios_in_place(state: _Simulation, sums: np.ndarray, observed: np.ndarray, *,
                     prefix: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Turn the simulated sums (a radar buffer, ``simulate.radar_sums``) into the
    reallocation ratios, in place (``kernels.reallocation.ratio_lines``).

    Channel 0 becomes I_p a_p / sum(w c), channel 1 I_p a_p / sum(w A_gamma) (0 where
    nothing was simulated); with ``prefix``, the padded row prefix sums the exact gather
    reads. Returns what needs the sums before they are overwritten: the simulated image
    sum(w c) / a_p (float32, NaN where a_p is not positive), the pixels valid for terrain
    flattening (gamma area at least 5 % of flat terrain's), and how many pixels the
    facets reach but the observation lacks (NaN). Runs on blocks of lines in threads.
    """
    line0, n_lines, sample0, n_samples = state.window
    fields, powers, fitted, fit = state.smooth_fields.kernel_arguments()
    simulated = np.empty((n_lines, n_samples), dtype=np.float32)
    valid = np.empty((n_lines, n_samples), dtype=bool)

    def work(start: int, stop: int) -> int:
        return reallocation.ratio_lines(sums, observed, start, stop, prefix, fields, powers, fitted, fit, line0,
                                        sample0, simulated, valid)

    missing = sum(run_blocks(work, n_lines, max(1, math.ceil(n_lines / _LINES_PER_BLOCK))))
    return simulated, valid, missing


def reallocation_ratios(state: _Simulation, observed: np.ndarray) -> np.ndarray:
    """Per-pixel ratios I_p a_p / (sum of w c) for the model (channel 0) and gamma (channel 1)
    contributions; 0 where nothing was simulated."""
    sums = state.sums.copy()
    _ratios_in_place(state, sums, observed, prefix=False)
    return np.array(channels(sums))


def reallocate(state: _Simulation, observed: np.ndarray, output: Output = "sigma0", *,
               rows: tuple[int, int] | None = None, cols: tuple[int, int] | None = None,
               in_place: bool = False, keep_energy: bool = True,
               progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Reallocate an observed window image (beta0, linear) with a simulation's weights.

    Parameters
    ----------
    state : the simulation of the DEM (``simulate._run_simulation``).
    observed : (lines, samples) beta0 on the simulation's window, NaN where unknown.
    output : ``"sigma0"`` or ``"gamma0"`` for ``backscatter``.
    rows, cols : (start, stop), the DEM rows and columns to reallocate to (the others only
        lend their positions to the facets at the edge): a tile with halo rows and columns.
    in_place : consume ``state``: overwrite its images with the ratios instead of working
        on a copy (the window's images are the largest radar-side array) and release the
        cells' incidence angles once used (``reconstruct`` does).
    keep_energy : also return the reallocated energy of every cell (float64).
    progress : called with the DEM rows of each gathered block.

    Returns
    -------
    Per-cell arrays (of ``rows`` x ``cols``): ``backscatter`` (sigma0 or gamma0), ``flattened`` (gamma0),
    ``geocoded`` (sigma0), ``simulated``, ``local_incidence_angle`` (float32; NaN in
    shadow, outside the image or where undefined), ``mixing`` (uint16) and, with
    ``keep_energy``, ``energy`` (m^2, the reallocated I a); ``missing_pixels``, how many
    pixels the facets reach that the observation lacks (an int, not an array).
    """
    cells = state.cells
    first, last = rows if rows is not None else (0, cells["valid"].shape[0])
    col_first, col_last = cols if cols is not None else (0, cells["valid"].shape[1])
    own_cols = slice(col_first, col_last)
    shape = (last - first, col_last - col_first)
    line0, _, sample0, _ = state.window
    sums = state.sums if in_place else state.sums.copy()
    # Pixels the image lacks (NaN) but facets reach: the cells whose facets reach one get
    # only part of their energy, so they are NaN, not biased low. Found while the sums
    # are still there, rarely: the ratios' pass counts them.
    with np.errstate(invalid="ignore"):
        if bool(np.isnan(observed).any()):
            images = channels(sums)
            missing = np.isnan(observed) & ((images[0] > 0) | (images[1] > 0))
            del images
        else:
            missing = None
    simulated_image, valid_pixels, n_missing = _ratios_in_place(state, sums, observed, prefix=state.exact)
    if not n_missing:
        missing = None
    elif rows is None and cols is None:
        warn_partial_coverage(f"{n_missing} pixels that the DEM's facets reach", stacklevel=4)
    # Allocated here, written by the row blocks of sample_cells and the gather's tiles.
    products = {name: np.empty(shape, dtype=np.float32)
                for name in ("backscatter", "flattened", "geocoded", "simulated", "local_incidence_angle")}
    products["mixing"] = np.empty(shape, dtype=np.uint16)
    if keep_energy:
        products["energy"] = np.empty(shape)
    # Window images needed before the gather only: released once sampled.
    held = {"observed": observed, "simulated": simulated_image}
    del simulated_image, observed

    def sample_cells(start: int, stop: int) -> None:
        at, out = (slice(first + start, first + stop), own_cols), slice(start, stop)
        reallocation.sample_cells(cells["line"][at], cells["sample"][at], cells["valid"][at],
                                  cells["incidence"][at], held["observed"], held["simulated"], state.mixing,
                                  line0, sample0, products["geocoded"][out], products["simulated"][out],
                                  products["mixing"][out])

    run_blocks(sample_cells, shape[0], _block_count(shape))
    held.clear()
    if in_place:
        del cells["incidence"]
    shadow = state.shadow

    def consume(start: int, stop: int, col_start: int, col_stop: int, energy: np.ndarray,
                per_cell: list[np.ndarray]) -> None:
        at = (slice(start, stop), slice(col_start, col_stop))
        out = (slice(start - first, stop - first), slice(col_start - col_first, col_stop - col_first))
        sigma_area, gamma_area, _, cos_local = per_cell
        # Pixels whose gamma area is under 5 % of flat terrain's would divide by almost
        # nothing: cells that land in one are NaN in the flattened product (Small 2011).
        # (NaN cannot enter the gather itself: its row prefix sums would spread it.)
        reallocation.finish_cells(energy, sigma_area, gamma_area, cos_local, shadow[at], cells["valid"][at],
                                  cells["line"][at], cells["sample"][at], valid_pixels, line0, sample0,
                                  output == "sigma0", kernel_codes(), products["backscatter"][out],
                                  products["flattened"][out], products["local_incidence_angle"][out])
        if keep_energy:
            products["energy"][out] = energy[0]

    state.facet_pass(gather=True, sums=sums, rows=(first, last), cols=cols, consume=consume, progress=progress)
    if missing is not None:
        del sums
        if in_place:
            state.sums = radar_sums(0, 0)
        _void_where_missing(state, missing, products, (first, last), cols)
    products["missing_pixels"] = int(n_missing)
    return products


def _void_where_missing(state: _Simulation, missing: np.ndarray, products: dict[str, np.ndarray],
                        rows: tuple[int, int], cols: tuple[int, int] | None) -> None:
    """Set NaN the reallocated products of the cells whose facets reach a ``missing`` pixel.

    The indicator of those pixels is gathered like the ratios (both channels): a cell's
    sum is positive exactly where one of its facets overlaps one (to rounding, hence the
    relative floor).
    """
    indicator = radar_sums(*missing.shape)
    channels(indicator)[:] = missing
    del missing
    gather_buffer(channels(indicator), state.exact, out=indicator)
    first = rows[0]
    col_first, col_last = cols if cols is not None else (0, state.cells["valid"].shape[1])

    def consume(start: int, stop: int, col_start: int, col_stop: int, energy: np.ndarray,
                per_cell: list[np.ndarray]) -> None:
        _, gamma_area, contribution, _ = per_cell
        reached = (energy[0] > 1e-9 * np.abs(contribution)) | (energy[1] > 1e-9 * np.abs(gamma_area))
        out = (slice(start - first, stop - first), slice(col_start - col_first, col_stop - col_first))
        for name in ("backscatter", "flattened"):
            products[name][out][reached] = np.nan
        if "energy" in products:
            products["energy"][out][reached] = np.nan

    state.facet_pass(gather=True, sums=indicator, rows=rows, cols=(col_first, col_last), consume=consume)


def reconstruct(
    sar: Any,
    dem: Any,
    geometry: RadarGeometry | None = None,
    *,
    contribution: Contribution = "model",
    output: Output = "sigma0",
    projection: Projection = "exact",
    oversample: int | Literal["auto"] = "auto",
    measurement: str = "IW/VV",
    sar_quantity: Literal["beta0", "sigma0", "gamma0"] = "sigma0",
    sar_db: bool = False,
    chunks: int | None = None,
    progress: bool = True,
) -> xr.Dataset:
    """Reallocate the mixed energy of layover pixels to the ground cells that produced it.

    Parameters
    ----------
    sar : the observation, one of
        - a numpy array of the full product grid, or a DataArray with dims (line, sample)
          and absolute ``line``/``sample`` coordinates: linear beta0, with ``geometry``;
        - an xarray-sentinel measurement calibrated to beta0 intensity
          (``xarray_sentinel.calibrate_intensity``), dims azimuth_time x slant_range_time
          or ground_range with its line/pixel coordinates; ``geometry`` from the same product;
        - a path to a Sentinel-1 SAFE product (beta0 from its calibration LUTs, thermal
          noise removed; ``measurement`` selects the swath; only the pixels under the
          DEM are read);
        - an image already geocoded to a map grid: a DataArray with dims (y, x) and a CRS,
          or the path of such a GeoTIFF, holding ``sar_quantity`` (ellipsoid-referenced
          sigma0 by default; ``sar_db`` if in dB), with ``geometry``. It is resampled
          to the DEM grid and the radar pixels are rebuilt from it (the area-weighted
          mean beta0 of the cells in each pixel) before reallocation. Geocoding has
          already mixed what layover mixed, and resampling it at the cells adds its own
          blur: on relief the result is only as good as that input allows (on flat
          terrain it matches the radar-geometry input; give the product itself where
          you have it).
    dem : DEM as :func:`sarheight.dem.open_dem` takes it (WGS84 ellipsoidal heights).
    geometry : acquisition geometry (read from the product when ``sar`` is a SAFE).
    contribution : ``"model"`` (default), ``"gamma"``, a callable law or per-cell weights,
        as in :func:`sarheight.simulate.simulate`.
    output : ``"sigma0"`` (E / A_sigma) or ``"gamma0"`` (E / A_gamma) for ``backscatter``.
    projection, oversample : as in :func:`sarheight.simulate.simulate`.
    measurement : swath/polarisation when ``sar`` is a product path.
    sar_quantity, sar_db : what a map-grid ``sar`` holds: beta0, sigma0 or gamma0 (all
        ellipsoid-referenced), linear or dB.
    chunks : DEM rows per block: run block by block on local threads
        (:func:`sarheight.distributed.reconstruct_distributed` runs the same on a cluster).
    progress : show a progress bar (only when standard error is a terminal).

    Notes
    -----
    The energy of a pixel is shared among the DEM's facets in it: pixels at the DEM's
    edge, which also hold terrain beyond it, give their whole energy to the edge cells.
    Let the DEM extend a few pixels beyond the area of interest.

    Returns
    -------
    xr.Dataset on the DEM grid (y, x) with the DEM's CRS: ``backscatter`` (reallocated
    sigma0 or gamma0, linear; NaN in shadow), ``geocoded`` (conventional sigma0),
    ``flattened`` (Small-2011 gamma0), ``simulated``, ``local_incidence_angle``,
    ``layover``, ``shadow`` (uint8 0 none, 1 active, 2 passive, 255 outside), ``mixing``
    (ground segments sharing the cell's pixel), ``slant_range``, ``azimuth_time``; attrs
    record geometry, datum, parameters and version.
    """
    if output not in ("sigma0", "gamma0"):
        raise InvalidInputError(f"output must be 'sigma0' or 'gamma0', got {output!r}")
    if sar_quantity not in ("beta0", "sigma0", "gamma0"):
        raise InvalidInputError(f"sar_quantity must be 'beta0', 'sigma0' or 'gamma0', got {sar_quantity!r}")
    if chunks is not None:
        if isinstance(chunks, bool) or not isinstance(chunks, (int, np.integer)) or chunks < 2:
            raise InvalidInputError(f"chunks (DEM rows per block) must be an integer of at least 2, got {chunks!r}")
        from .distributed import reconstruct_distributed

        return reconstruct_distributed(
            sar, dem, geometry, client="threads", rows_per_block=chunks, contribution=contribution,
            output=output, projection=projection, oversample=oversample, measurement=measurement,
            sar_quantity=sar_quantity, sar_db=sar_db, progress=progress,
        )
    sar, geometry = _resolve_input(sar, geometry, measurement)
    on_map = isinstance(sar, xr.DataArray) and {"y", "x"} <= set(sar.dims)
    if on_map:
        _check_map_image(sar)
    elif not isinstance(sar, _LazyProduct):
        _check_observation(sar, geometry)  # before any work: what the window will not change
    dem, _ = _open_dem(dem, None, None, False, share_values=True)
    if on_map:
        _check_map_overlap(sar, dem)
    observed = []

    def observe(window: tuple[int, int, int, int]) -> None:
        # Once the window is known, before the masks and facets: an image that does not
        # cover the DEM is refused at once, not after the costly passes.
        image = sar
        if isinstance(image, _LazyProduct):
            line0, n_lines, sample0, n_samples = window
            image = image.loader((line0, line0 + n_lines, sample0, sample0 + n_samples))
        observed.append(_observation_on_window(image, geometry, window))
        _check_intensity(observed[0], window)

    # Scatter and gather each pass over every DEM row.
    with progress_bar(2 * dem.shape[0], "reconstruct", progress) as update:
        state = _run_simulation(dem, geometry, contribution, projection, oversample, keep_per_cell=on_map,
                                progress=update, on_window=None if on_map else observe)
        if on_map:
            sar = _radar_image_from_map(sar, state, sar_quantity, sar_db)
            state.per_cell = {}
            observe(state.window)
        # Handed over, not kept here: reallocate releases the window once it is sampled.
        result = reallocate(state, observed.pop(), output, in_place=True, keep_energy=False, progress=update)
    dataset = _result_dataset(state, result, output, projection)
    dataset.attrs["observation"] = (f"map-grid {sar_quantity}{' (dB)' if sar_db else ''}, rebuilt in radar geometry"
                                    if on_map else "radar geometry, beta0")
    return dataset


def _resolve_input(sar: Any, geometry: RadarGeometry | None, measurement: str):
    """(observation or a loader of it, geometry) from the accepted kinds of input."""
    if isinstance(sar, (str, os.PathLike)) and Path(sar).is_file() and Path(sar).suffix.lower() in (".tif", ".tiff"):
        import rioxarray

        image = rioxarray.open_rasterio(sar, masked=True)
        if image.sizes.get("band", 1) != 1:
            raise InvalidInputError(
                f"{str(sar)!r} has {image.sizes['band']} bands: give a single-band GeoTIFF of the observation "
                "(e.g. gdal_translate -b 1 IN.tif OUT.tif)"
            )
        image = image.squeeze("band", drop=True)
        if image.rio.crs is None:
            raise InvalidInputError(
                f"{str(sar)!r} has no CRS: a GeoTIFF observation must be geocoded to a map grid "
                "(radar-geometry arrays are given as arrays with a geometry)"
            )
        sar = image
    if isinstance(sar, (str, os.PathLike)):
        path = Path(sar)
        if geometry is None:
            geometry = RadarGeometry.from_sentinel1(path, measurement)

        def load_window(window=None):
            from .preprocess.sentinel1 import read_intensity

            return read_intensity(path, measurement, calibration="beta", remove_noise=True, window=window)

        return _LazyProduct(load_window), geometry
    if geometry is None:
        raise InvalidInputError(
            "a geometry is needed for an array observation: pass geometry=RadarGeometry.from_sentinel1(...) "
            "or RadarGeometry.synthetic(...), or give the product path instead"
        )
    if not isinstance(geometry, RadarGeometry):
        raise InvalidInputError(f"geometry must be a RadarGeometry, got {type(geometry).__name__}")
    return sar, geometry


def _check_map_image(image: xr.DataArray) -> None:
    """Refuse a map-grid observation without a CRS or with values that are not real, or
    infinite, before any work (negative values are judged once the dB question is settled,
    on the resampled image)."""
    if image.rio.crs is None:
        raise InvalidInputError("the geocoded SAR image has no CRS: write one with image.rio.write_crs(...)")
    if image.dtype.kind not in "fiu":
        raise InvalidInputError(f"the geocoded SAR image must hold real numbers, got dtype {image.dtype}")
    if image.dtype.kind == "f" and bool(np.isinf(image.values).any()):
        raise InvalidInputError("the geocoded SAR image has infinite values: mask them as NaN first")


def _check_map_overlap(image: xr.DataArray, dem: xr.DataArray) -> None:
    """Refuse a map-grid observation whose footprint misses the DEM's, before any work."""
    left, bottom, right, top = image.rio.transform_bounds(dem.rio.crs)
    d_left, d_bottom, d_right, d_top = dem.rio.bounds()
    if not (left < d_right and right > d_left and bottom < d_top and top > d_bottom):
        # Degrees need decimals to tell places apart; metres do not.
        decimals = 5 if dem.rio.crs.is_geographic else 0

        def box(w: float, s: float, e: float, n: float) -> str:
            return f"west {w:.{decimals}f}, south {s:.{decimals}f}, east {e:.{decimals}f}, north {n:.{decimals}f}"

        raise InvalidInputError(
            f"the geocoded SAR image ({box(left, bottom, right, top)}) does not overlap the DEM "
            f"({box(d_left, d_bottom, d_right, d_top)}; both in the DEM's CRS, {dem.rio.crs.to_string()}): "
            "give a DEM of the imaged area, or check the CRS written in each file"
        )


def _radar_image_from_map(image: xr.DataArray, state: _Simulation, quantity: str, in_db: bool) -> xr.DataArray:
    """Rebuild radar pixels from an image geocoded to a map grid.

    The image is resampled (bilinear) onto the DEM grid, converted to beta0 with the
    ellipsoid incidence angle of each cell (sigma0 = beta0 sin(theta), gamma0 = beta0
    tan(theta)), and each radar pixel gets the area-weighted mean beta0 of the cells whose
    facets land in it, through the same exact projection as the simulation. Cells in
    shadow carry no signal (only noise) and are left out.
    """
    from rasterio.enums import Resampling

    from .simulate import _Contribution

    on_dem = image.rio.reproject_match(state.dem, resampling=Resampling.bilinear)
    values = np.asarray(on_dem.values, dtype=np.float64)
    if in_db:
        values = 10.0 ** (values / 10.0)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        raise InvalidInputError("the geocoded SAR image does not overlap the DEM")
    if np.any(finite < 0):
        raise InvalidInputError("the geocoded SAR image has negative values: give linear power, or sar_db=True for dB")
    theta = state.cells["incidence"].astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        beta = {"beta0": values, "sigma0": values / np.sin(theta), "gamma0": values / np.tan(theta)}[quantity]
    area = np.nan_to_num(state.per_cell["sigma_area"])
    have = np.isfinite(beta) & (area > 0)
    weights = [np.where(have, beta * area, 0.0), np.where(have, area, 0.0)]
    images = []
    for weight in weights:
        contribution = _Contribution(facets.CONTRIBUTION_USER, state.contribution.law, np.zeros(0),
                                     np.ascontiguousarray(weight), "map-grid observation")
        rebuilt = channels(state.facet_pass(gather=False, contribution=contribution, consume=lambda *_: None,
                                            per_cell=False)[-1])[:1]
        _clear_residue(rebuilt, state.window, state.smooth_fields, contribution)
        images.append(rebuilt[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        pixels = np.where(images[1] > 0, images[0] / images[1], np.nan)
    line0, n_lines, sample0, n_samples = state.window
    return xr.DataArray(pixels, dims=("line", "sample"),
                        coords={"line": np.arange(line0, line0 + n_lines), "sample": np.arange(sample0, sample0 + n_samples)})


class _LazyProduct:
    """A product whose pixels are read only for the window the DEM needs."""

    def __init__(self, loader):
        self.loader = loader


def _result_dataset(state: _Simulation, result: dict[str, np.ndarray], output: str, projection: str) -> xr.Dataset:
    """The reconstruction Dataset from ``reallocate``'s products and the simulation's masks
    and geometry (the arrays are used as they are, not copied)."""
    simulation = _as_dataset(state, projection, ("layover", "shadow", "slant_range", "azimuth_time"))
    dims = ("y", "x")
    unit_name = "sigma0" if output == "sigma0" else "gamma0"
    ds = xr.Dataset(
        {
            "backscatter": (dims, result["backscatter"],
                            {"long_name": f"reallocated {unit_name} (linear)", "units": "1"}),
            "geocoded": (dims, result["geocoded"],
                         {"long_name": "conventionally geocoded sigma0 (ellipsoid incidence, linear)", "units": "1"}),
            "flattened": (dims, result["flattened"],
                          {"long_name": "terrain-flattened gamma0 (Small 2011, linear)", "units": "1"}),
            "simulated": (dims, result["simulated"],
                          {"long_name": "simulated image (sum w c / pixel area) at the cell"}),
            "local_incidence_angle": (dims, result["local_incidence_angle"],
                                      {"units": "degree", "long_name": "local incidence angle"}),
            "layover": simulation["layover"],
            "shadow": simulation["shadow"],
            "mixing": (dims, result["mixing"], {"long_name": "separate ground segments sharing the cell's pixel"}),
            "slant_range": simulation["slant_range"],
            "azimuth_time": simulation["azimuth_time"],
        },
        coords={"y": simulation["y"], "x": simulation["x"]},
        attrs={**simulation.attrs, "output": output, "sarheight_version": __version__},
    )
    return ds.rio.write_crs(state.dem.rio.crs, inplace=True)


#: The float bands ``to_geotiff`` writes by default, of a reconstruction and of a simulation.
RECONSTRUCTION_BANDS = ("backscatter", "geocoded", "flattened", "simulated", "local_incidence_angle")
SIMULATION_BANDS = ("local_incidence_angle", "incidence_angle", "gamma_area", "sigma_area", "contribution",
                    "slant_range", "radar_line", "radar_sample")


def to_geotiff(result: xr.Dataset, path: str | os.PathLike[str], variables: list[str] | None = None) -> Path:
    """Write a reconstruction (or simulation) to a tiled, compressed GeoTIFF, atomically.

    ``variables`` default: the float products of a reconstruction (backscatter, geocoded,
    flattened, simulated, local_incidence_angle), or those of a simulation (local and
    ellipsoid incidence angles, gamma and sigma areas, contribution, slant range, radar
    line and sample), whichever are present. Masks alone are written as uint8 with nodata
    255; mixed with floats they are stored as float32 values (255 kept). Band
    descriptions carry the names.
    """
    if variables is None:
        preferred = (RECONSTRUCTION_BANDS if "backscatter" in result.data_vars else SIMULATION_BANDS)
        variables = [v for v in preferred if v in result.data_vars]
    return write_geotiff(result, path, variables)
