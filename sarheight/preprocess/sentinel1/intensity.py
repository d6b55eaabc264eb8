"""Calibrated Sentinel-1 intensity in radar geometry.

:func:`read_intensity` reads the pixels of one measurement of a Level-1 SLC or GRD
product and calibrates them with the product's own look-up tables (LUTs), read with
xarray-sentinel:

    I = (|DN|² − η) / K²

with ``DN`` the digital number, ``K`` the calibration LUT of the wanted backscatter
coefficient (β⁰, σ⁰ or γ⁰) and ``η`` the thermal noise power (range noise LUT times the
azimuth noise LUT where the product has one, IPF ≥ 2.9). Both LUTs are interpolated
bilinearly over the image from their sparse (line, pixel) tie points, as xarray-sentinel
does in ``calibrate_intensity``, but block by block, so that no image-sized LUT is ever
held in memory and dask-backed reads stay lazy.

Noise-corrected intensities are clipped at zero: where the noise estimate exceeds the
measured power (dark water, far-range edges) ``|DN|² − η`` is negative, and a negative
power has no dB value and is refused by the rest of sarheight (§9 of the design). The
clip biases averages of noise-dominated areas upwards; read with ``remove_noise=False``
and subtract the noise after averaging where that matters.

Parsing the XML of one product takes about a second (xmlschema), so the parsed
annotation and LUTs of the last few files read are kept, keyed by path, size and
modification time: reading a product window by window, or as β⁰ then σ⁰, parses once.

Pixels are indexed by the product raster: ``line`` is the row of the measurement TIFF
and ``sample`` its column, both absolute, so a window and its result can be put back
into the whole product. Line labels, times and bursts come from xarray-sentinel's
``open_pol_dataset``; the pixels from its ``open_rasterio_dataarray`` without dask
chunks, so that every block is a windowed read of just its pixels (the dask chunks
xarray-sentinel gives GRDs are one TIFF row each, and a read through them costs
milliseconds per row).
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import dask.array
import numpy as np
import rasterio.errors
import xarray as xr
from tqdm import tqdm
from tqdm.dask import TqdmCallback
from xarray_sentinel import esa_safe
from xarray_sentinel import sentinel1 as xs1

from ...errors import InvalidInputError, ProductError
from ...io import open_raster
from ..safe import SafeProduct, open_safe
from .product import check_identity, find_measurement, group_files, level1_product_type, read_manifest

logger = logging.getLogger(__name__)

__all__ = ["CALIBRATIONS", "read_intensity"]

#: Accepted calibration names: output name and the xarray-sentinel LUT variable.
CALIBRATIONS: dict[str, tuple[str, str]] = {
    "beta": ("beta0", "betaNought"),
    "beta0": ("beta0", "betaNought"),
    "betanought": ("beta0", "betaNought"),
    "sigma": ("sigma0", "sigmaNought"),
    "sigma0": ("sigma0", "sigmaNought"),
    "sigmanought": ("sigma0", "sigmaNought"),
    "gamma": ("gamma0", "gamma"),
    "gamma0": ("gamma0", "gamma"),
}

#: Pixels per block when the caller asks for an eager read: bounds the float64
#: temporaries (a few times 32 MiB per thread) whatever the window size.
_EAGER_BLOCK_PIXELS = 2**22

#: Parsed metadata of recently read files (see the module docstring).
_CACHE_SIZE = 16
_cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_cache_lock = threading.Lock()


def read_intensity(
    path: str | os.PathLike[str],
    measurement: str = "IW/VV",
    *,
    calibration: str = "beta",
    remove_noise: bool = True,
    burst: int | None = None,
    window: tuple[int, int, int, int] | None = None,
    chunks: int | str | Mapping[str, int | str] | None = None,
    progress: bool = True,
) -> xr.DataArray:
    """Calibrated intensity of one Sentinel-1 measurement, in radar geometry.

    Parameters
    ----------
    path : a ``.SAFE`` directory, its ``manifest.safe``, or a ``.zip`` of the SAFE. The
        product must hold the measurement TIFF and the calibration annotation (and the
        noise annotation when ``remove_noise``).
    measurement : swath and polarisation, e.g. "IW/VV" (GRD), "IW2/VH" (SLC; "IW/VV"
        picks the sub-swath when the product holds only one). A trailing "/N" selects
        SLC burst N, as ``burst=N`` does.
    calibration : "beta" (β⁰, default), "sigma" (σ⁰) or "gamma" (γ⁰); "beta0",
        "sigma0", "gamma0" are accepted too.
    remove_noise : subtract the thermal noise (range × azimuth noise LUTs) before
        calibrating; negative results are clipped to 0 (see the module docstring).
    burst : SLC burst index (0-based, xarray-sentinel's numbering). Without it an IW/EW
        SLC sub-swath is debursted with xarray-sentinel's ``mosaic_slc_iw`` (90 lines
        cropped at each burst edge, so rows are not evenly spaced in time at the seams).
    window : ``(line_start, line_stop, sample_start, sample_stop)``, half-open, in
        absolute product raster indices (rows and columns of the measurement TIFF). Only
        this part is read. With ``burst`` the lines must lie in that burst (its raster
        lines are ``burst * lines_per_burst`` onwards); for a debursted SLC the rows the
        deburst keeps within the window are returned.
    chunks : dask chunks of the result (an int, "auto", or a mapping on "line" and
        "sample"): the result is then lazy and the pixels are read when computed.
        ``None`` (default) reads and calibrates at once, on local threads (also under a
        dask.distributed client), and returns numpy-backed data.
    progress : show a progress bar for eager reads that last more than two seconds
        (never when stderr is not a terminal).

    Returns
    -------
    xarray.DataArray
        float32 linear intensity (units "1", i.e. m² m⁻²), dims ``("line", "sample")``
        with integer coordinates ``line`` and ``sample`` (absolute raster indices) and,
        where the rows are evenly spaced in time, ``azimuth_time`` (datetime64[ns], the
        product's line time labels) on ``line``. attrs: ``calibration`` ("beta0",
        "sigma0", "gamma0"), ``units``, ``noise_removed`` (1 or 0), ``product``,
        ``measurement`` (e.g. "IW1/VV" or "IW1/VV/3"), ``product_type``, ``long_name``.
        Pixels whose DN is 0 (the no-data border of GRDs) come out as 0.

    Raises
    ------
    InvalidInputError
        unknown calibration name, malformed window or one outside the image (or burst),
        bad ``chunks``.
    MissingInputError
        the product does not exist.
    ProductError
        not a SAFE, unknown measurement group or burst, measurement TIFF absent or not
        matching the annotation, calibration (or, with ``remove_noise``, noise)
        annotation absent or unreadable.
    """
    name, lut_variable = _calibration(calibration)
    window = _window_form(window)
    _check_chunks(chunks)

    safe = open_safe(path, mission="Sentinel-1")
    attrs, files = read_manifest(safe)
    product_type = level1_product_type(attrs)
    group, burst, _ = find_measurement(safe, files, measurement, product_type=product_type, burst=burst)
    found = group_files(safe, files, group)
    product = safe.name
    if "measurement" not in found:
        raise ProductError(
            f"{product} holds no measurement TIFF for {group}: the annotation gives the geometry "
            "but the pixels are absent: download the full product (not only its annotation)"
        )
    if "calibration" not in found:
        raise ProductError(
            f"{product} holds no calibration annotation for {group} "
            "(annotation/calibration/calibration-*.xml), which calibration needs: use the "
            "complete product as downloaded"
        )
    if remove_noise and "noise" not in found:
        raise ProductError(
            f"{product} holds no noise annotation for {group} (annotation/calibration/noise-*.xml), "
            "which thermal noise removal needs: pass remove_noise=False to calibrate without it, "
            "or use the complete product as downloaded"
        )

    source = _Source(safe, found, attrs, group)
    grid, raster_shape = _open_grid(source, product, group)
    grid, label = _select_grid(grid, group, burst, product_type)
    lines, samples = _window_indices(grid, window, raster_shape, burst, label)

    gain = _read_calibration(source, lut_variable, product)
    noise = _read_noise(source, product) if remove_noise else None

    pixels = _read_pixels(source, product, group, lines, samples, chunks)

    def block(values: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        (r0, r1), (c0, c1) = block_info[0]["array-location"]  # type: ignore[index]
        return _intensity_block(values, lines[r0:r1], samples[c0:c1], gain, noise)

    out = pixels.map_blocks(block, dtype=np.float32, meta=np.empty((0, 0), np.float32))
    coords: dict[str, Any] = {"line": lines, "sample": samples}
    if "azimuth_time" in grid.coords:
        times = grid["azimuth_time"].sel(line=lines).values.astype("datetime64[ns]")
        if _evenly_spaced(times):
            coords["azimuth_time"] = ("line", times)
    result = xr.DataArray(
        out,
        dims=("line", "sample"),
        coords=coords,
        name=name,
        attrs={
            "long_name": f"{name} backscatter coefficient, linear power",
            "calibration": name,
            "units": "1",
            "noise_removed": int(bool(remove_noise)),
            "product": product,
            "measurement": label,
            "product_type": product_type,
        },
    )
    if chunks is None:
        # Blocks written straight into the output: computing would also concatenate
        # them. Local threads: a numpy target cannot be written from remote workers.
        values = np.empty(out.shape, np.float32)
        bar = TqdmCallback(
            tqdm_class=tqdm,
            disable=None if progress else True,
            delay=2.0,
            leave=False,
            desc=f"reading {product} {label}",
        )
        try:
            with bar:
                dask.array.store(out, values, lock=False, scheduler="threads")
        except rasterio.errors.RasterioError as exc:
            raise ProductError(
                f"could not read the pixels of {product} {label} ({exc}): the measurement TIFF "
                "is truncated or corrupt; download it again"
            ) from exc
        result = result.copy(data=values)
    return result


# --------------------------------------------------------------------------------------
# Argument checks (before any reading)
# --------------------------------------------------------------------------------------


def _calibration(calibration: str) -> tuple[str, str]:
    key = str(calibration).strip().lower().replace("⁰", "0")
    if key not in CALIBRATIONS:
        raise InvalidInputError(
            f"unknown calibration {calibration!r}: use 'beta' (β⁰), 'sigma' (σ⁰) or 'gamma' (γ⁰)"
        )
    return CALIBRATIONS[key]


def _window_form(window: Any) -> tuple[int, int, int, int] | None:
    if window is None:
        return None
    try:
        values = tuple(window)
    except TypeError:
        values = ()
    if len(values) != 4 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values
    ):
        raise InvalidInputError(
            f"window must be four integers (line_start, line_stop, sample_start, sample_stop), got {window!r}"
        )
    line_start, line_stop, sample_start, sample_stop = (int(v) for v in values)
    if not (0 <= line_start < line_stop and 0 <= sample_start < sample_stop):
        raise InvalidInputError(
            f"window {values} is empty or negative: it is (line_start, line_stop, sample_start, "
            "sample_stop), half-open, with 0 <= start < stop"
        )
    return line_start, line_stop, sample_start, sample_stop


def _check_chunks(chunks: Any) -> None:
    if chunks is None or (isinstance(chunks, (int, str)) and not isinstance(chunks, bool)):
        return
    if isinstance(chunks, Mapping):
        unknown = set(chunks) - {"line", "sample"}
        if not unknown:
            return
        raise InvalidInputError(
            f"chunks names unknown dimensions {sorted(map(str, unknown))}: the result's dimensions "
            "are 'line' and 'sample'"
        )
    raise InvalidInputError(
        f"chunks must be None, an int, 'auto' or a mapping on 'line' and 'sample', got {chunks!r}"
    )


# --------------------------------------------------------------------------------------
# Product files
# --------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Source:
    """Where the files of one measurement are, and how to tell their versions apart."""

    safe: SafeProduct
    files: dict[str, str]
    attrs: dict[str, Any]  # the manifest's description of the product
    group: str

    def rasterio_path(self) -> str:
        """A path GDAL opens: the TIFF itself, or a /vsizip/ path into a zipped SAFE."""
        return self.safe.gdal_path(self.files["measurement"])

    def key(self, *kinds: str) -> tuple[Any, ...]:
        archive = self.safe.archive
        stats = [archive.stat()] if archive is not None else [os.stat(self.files[k]) for k in kinds]
        names = tuple(self.files[k] for k in kinds)
        return (str(archive), names, tuple((s.st_mtime_ns, s.st_size) for s in stats))

    def read(self, kind: str) -> bytes:
        """The ``kind`` XML (annotation, calibration, noise), bounded in size and checked to
        be this product's."""
        what = f"the {kind} file {self.files[kind]!r}"
        content = self.safe.read(self.files[kind], what)
        check_identity(content, self.attrs, self.group, what, self.safe)
        return content


def _cached(key: tuple[Any, ...], make: Callable[[], Any]) -> Any:
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    value = make()
    with _cache_lock:
        _cache[key] = value
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return value


def _open_grid(source: _Source, product: str, group: str) -> tuple[xr.DataArray, tuple[int, int]]:
    """The raster's line axis as xarray-sentinel describes it, and the raster shape.

    xarray-sentinel's pol dataset (cached) gives the line labels, azimuth times and burst
    attributes; its pixels are never computed (see the module docstring). The returned
    array is one zero column carrying those coordinates, for burst cropping and
    debursting to act on.
    """

    def make() -> xr.Dataset:
        annotation = io.BytesIO(source.read("annotation"))
        return xs1.open_pol_dataset(source.rasterio_path(), annotation, attrs={})

    # A GeoTIFF, as every Sentinel-1 measurement is, before xarray-sentinel lets GDAL open
    # it with any driver (a VRT in its place could present any file as pixels).
    with open_raster(source.rasterio_path(), f"the {group} measurement of {product}", drivers=("GTiff",)):
        pass
    try:
        dataset = _cached(("measurement", *source.key("measurement", "annotation")), make)
    except Exception as exc:  # rasterio, xmlschema, xarray raise many kinds
        raise ProductError(
            f"could not open the {group} measurement of {product} ({type(exc).__name__}: {exc}): "
            "the TIFF or its annotation is truncated, or the TIFF's size differs from the one "
            "the annotation gives; download the product again"
        ) from exc
    measurement = dataset["measurement"]
    line_dim, sample_dim = measurement.dims
    # Coordinates only: slicing the dask array itself costs a task per TIFF row.
    coords = {
        name: coord.isel({sample_dim: slice(0, 1)}) if sample_dim in coord.dims else coord
        for name, coord in measurement.coords.items()
        if set(coord.dims) <= {line_dim, sample_dim} and coord.ndim == 1
    }
    grid = xr.DataArray(
        np.zeros((measurement.shape[0], 1), np.uint8),
        dims=measurement.dims,
        coords=coords,
        attrs=dict(measurement.attrs),
    )
    return grid, (int(measurement.sizes[line_dim]), int(measurement.sizes[sample_dim]))


def _read_pixels(
    source: _Source,
    product: str,
    group: str,
    lines: np.ndarray,
    samples: np.ndarray,
    chunks: int | str | Mapping[str, int | str] | None,
) -> Any:
    """DNs of ``lines`` x ``samples`` as a dask array, each block a windowed read.

    xarray-sentinel's ``open_rasterio_dataarray`` without chunks gives xarray's lazily
    indexed array: slicing it and then chunking reads exactly each block's window.
    """
    try:
        raster = xs1.open_rasterio_dataarray(source.rasterio_path(), None, None).squeeze("band", drop=True)
    except Exception as exc:
        raise ProductError(
            f"could not open the {group} measurement TIFF of {product} ({type(exc).__name__}: {exc}): "
            "the file is truncated or corrupt; download it again"
        ) from exc
    line_dim, sample_dim = raster.dims
    if chunks is None:
        strip = max(1, _EAGER_BLOCK_PIXELS // max(1, samples.size))
        piece_chunks: Any = {line_dim: strip, sample_dim: -1}
    elif isinstance(chunks, Mapping):
        piece_chunks = {line_dim: chunks.get("line", -1), sample_dim: chunks.get("sample", -1)}
    else:
        piece_chunks = chunks
    columns = slice(int(samples[0]), int(samples[-1]) + 1)
    # Debursted SLC rows come in runs of consecutive raster lines, one per burst.
    breaks = np.flatnonzero(np.diff(lines) != 1) + 1
    pieces = [
        raster.isel({line_dim: slice(int(run[0]), int(run[-1]) + 1), sample_dim: columns})
        .chunk(piece_chunks)
        .data
        for run in np.split(lines, breaks)
    ]
    data = pieces[0] if len(pieces) == 1 else dask.array.concatenate(pieces, axis=0)
    if len(pieces) > 1 and chunks is not None:
        data = xr.DataArray(data, dims=("line", "sample")).chunk(chunks).data
    return data


def _to_line_sample(arr: xr.DataArray) -> xr.DataArray:
    """Index by raster line and pixel whatever time or range dims xarray-sentinel chose."""
    swaps = {}
    for dim in arr.dims:
        if dim in ("line", "pixel"):
            continue
        for name in ("line", "pixel"):
            if name in arr.coords and arr.coords[name].dims == (dim,):
                swaps[dim] = name
    if swaps:
        arr = arr.swap_dims(swaps)
    return arr.rename(pixel="sample")


def _select_grid(
    dn: xr.DataArray, group: str, burst: int | None, product_type: str
) -> tuple[xr.DataArray, str]:
    bursts = int(dn.attrs.get("number_of_bursts", 0) or 0) if product_type == "SLC" else 0
    if burst is not None:
        if not 0 <= burst < bursts:
            raise ProductError(
                f"burst {burst} does not exist: {group} has {bursts} bursts"
                + (f", numbered 0 .. {bursts - 1}" if bursts else " (not a TOPS product)")
            )
        selected = xs1.crop_burst_dataset(dn, burst_index=burst)
        return _to_line_sample(selected), f"{group}/{burst}"
    if bursts:
        logger.debug("debursting %s with xarray-sentinel's mosaic_slc_iw", group)
        return _to_line_sample(xs1.mosaic_slc_iw(dn)), group
    return _to_line_sample(dn), group


def _window_indices(
    grid: xr.DataArray,
    window: tuple[int, int, int, int] | None,
    raster_shape: tuple[int, int],
    burst: int | None,
    label: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Raster lines and samples to read: the grid's, within the window."""
    lines = grid["line"].values.astype(np.int64)
    n_lines, n_samples = raster_shape
    if window is None:
        return lines, np.arange(n_samples, dtype=np.int64)
    line_start, line_stop, sample_start, sample_stop = window
    if burst is not None:
        first, last = int(lines[0]), int(lines[-1])
        where = f"burst {burst} of {label.rsplit('/', 1)[0]}, raster lines {first} .. {last}"
    else:
        first, last = 0, n_lines - 1
        where = f"the {n_lines} x {n_samples} image of {label}"
    if not (first <= line_start and line_stop <= last + 1 and sample_stop <= n_samples):
        raise InvalidInputError(
            f"window lines {line_start}:{line_stop}, samples {sample_start}:{sample_stop} is not "
            f"inside {where}: windows are in absolute raster indices, half-open"
        )
    selected = lines[(lines >= line_start) & (lines < line_stop)]
    if selected.size == 0:
        raise InvalidInputError(
            f"window lines {line_start}:{line_stop} lie entirely in burst overlaps that the deburst "
            f"of {label} drops: widen the window or read one burst with burst="
        )
    return selected, np.arange(sample_start, sample_stop, dtype=np.int64)


# --------------------------------------------------------------------------------------
# Look-up tables
# --------------------------------------------------------------------------------------


def _weights(nodes: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear interpolation indices and weights; the edge values hold outside the nodes."""
    if nodes.size == 1:
        zero = np.zeros(query.shape, np.intp)
        return zero, zero, np.zeros(query.shape)
    lower = np.clip(np.searchsorted(nodes, query, side="right") - 1, 0, nodes.size - 2)
    weight = (query - nodes[lower]) / (nodes[lower + 1] - nodes[lower])
    return lower, lower + 1, np.clip(weight, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class _Lut:
    """A LUT sampled at (line, pixel) tie points; bilinear in between.

    Outside the tie points the edge values hold, where xarray-sentinel's ``interp`` gives
    NaN: a LUT whose vectors stop short of the image edge still calibrates every pixel.
    """

    lines: np.ndarray
    pixels: np.ndarray
    values: np.ndarray

    @classmethod
    def from_dataarray(cls, lut: xr.DataArray) -> _Lut:
        lines = np.asarray(lut["line"].values, np.float64)
        pixels = np.asarray(lut["pixel"].values, np.float64)
        values = np.asarray(lut.values, np.float64)
        # Vectors are annotated in order; a repeated line (seen at product edges) would
        # make the interpolation divide by zero: keep its first vector.
        order = np.argsort(lines, kind="stable")
        lines, keep = np.unique(lines[order], return_index=True)
        values = values[order][keep]
        if pixels.size > 1 and np.any(np.diff(pixels) <= 0):
            raise ValueError("LUT pixels are not increasing")
        return cls(lines, pixels, values)

    def at(self, lines: np.ndarray, samples: np.ndarray) -> np.ndarray:
        """LUT values (float64) on the grid ``lines`` × ``samples``.

        A constant LUT (β⁰ of most products) comes back as a (1, 1) array to broadcast.
        """
        if self.values.min() == self.values.max():
            return np.full((1, 1), self.values.flat[0])
        p0, p1, wp = _weights(self.pixels, np.asarray(samples, np.float64))
        l0, l1, wl = _weights(self.lines, np.asarray(lines, np.float64))
        needed = np.unique(np.concatenate([l0, l1]))
        rows = np.full((self.lines.size, wp.size), np.nan)
        rows[needed] = self.values[needed][:, p0] * (1.0 - wp) + self.values[needed][:, p1] * wp
        # Between two LUT lines the value is linear in the line: low + w * (high - low)
        # per run of lines, two passes over the block instead of two row gathers.
        out = np.empty((wl.size, wp.size))
        edges = np.concatenate([[0], np.flatnonzero(np.diff(l0)) + 1, [wl.size]])
        for a, b in itertools.pairwise(edges):
            low = rows[l0[a]]
            np.multiply(wl[a:b, None], rows[l1[a]] - low, out=out[a:b])
            out[a:b] += low
        return out


@dataclasses.dataclass(frozen=True)
class _AzimuthNoise:
    """One azimuth noise vector: a block of lines and samples of one (sub-)swath."""

    first_line: int
    last_line: int
    first_sample: int
    last_sample: int
    lines: np.ndarray
    values: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Noise:
    range_lut: _Lut
    azimuth: tuple[_AzimuthNoise, ...]

    def at(self, lines: np.ndarray, samples: np.ndarray) -> np.ndarray:
        """Noise power η (float64, DN² units) on the grid ``lines`` × ``samples``."""
        noise = self.range_lut.at(lines, samples)
        if noise.shape != (lines.size, samples.size):
            noise = np.broadcast_to(noise, (lines.size, samples.size)).copy()
        for vector in self.azimuth:
            rows = _span((lines >= vector.first_line) & (lines <= vector.last_line))
            cols = _span((samples >= vector.first_sample) & (samples <= vector.last_sample))
            if rows is not None and cols is not None:
                factor = np.interp(lines[rows], vector.lines, vector.values)[:, None]
                if isinstance(rows, slice) and isinstance(cols, slice):
                    noise[rows, cols] *= factor
                else:
                    where = np.ix_(np.arange(lines.size)[rows], np.arange(samples.size)[cols])
                    noise[where] *= factor
        return noise


def _span(mask: np.ndarray) -> slice | np.ndarray | None:
    """The True entries of a mask: a slice where they are contiguous, as they are for
    ascending lines and samples; None where there are none."""
    index = np.flatnonzero(mask)
    if index.size == 0:
        return None
    if index[-1] - index[0] + 1 == index.size:
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


def _read_calibration(source: _Source, variable: str, product: str) -> _Lut:
    path = source.files["calibration"]

    def make() -> xr.Dataset:
        return xs1.open_calibration_dataset(io.BytesIO(source.read("calibration")), attrs={})

    try:
        dataset = _cached(("calibration", *source.key("calibration")), make)
        lut = _Lut.from_dataarray(dataset[variable])
    except Exception as exc:  # xmlschema, ElementTree, numpy raise many kinds
        raise ProductError(
            f"could not read the {variable} calibration LUT of {product} from "
            f"{os.path.basename(path)!r} ({type(exc).__name__}: {exc}): the file is truncated or "
            "not a Sentinel-1 calibration annotation"
        ) from exc
    if not (np.all(np.isfinite(lut.values)) and np.all(lut.values > 0)):
        raise ProductError(
            f"the {variable} calibration LUT of {product} has non-positive or non-finite values: "
            "the calibration annotation is corrupt"
        )
    return lut


def _read_noise(source: _Source, product: str) -> _Noise:
    return _cached(("noise", *source.key("noise")), lambda: _parse_noise(source, product))


def _parse_noise(source: _Source, product: str) -> _Noise:
    path = source.files["noise"]
    content = source.read("noise")
    try:
        range_lut = _Lut.from_dataarray(
            xs1.open_noise_range_dataset(io.BytesIO(content), attrs={})["noiseRangeLut"]
        )
    except Exception as exc:
        raise ProductError(
            f"could not read the range noise LUT of {product} from {os.path.basename(path)!r} "
            f"({type(exc).__name__}: {exc}): products processed before IPF 2.9 keep it in another "
            "layout that xarray-sentinel does not read; pass remove_noise=False to calibrate "
            "without thermal noise removal"
        ) from exc
    # xarray-sentinel's open_noise_azimuth_dataset keeps only the first vector, while GRDs
    # have one per sub-swath block: read them all with its parser and apply each to its block.
    try:
        vectors = esa_safe.parse_tag_as_list(io.BytesIO(content), "//noiseAzimuthVector", "noise")
        azimuth = tuple(
            _AzimuthNoise(
                int(v["firstAzimuthLine"]),
                int(v["lastAzimuthLine"]),
                int(v["firstRangeSample"]),
                int(v["lastRangeSample"]),
                np.asarray(str(v["line"]["$"]).split(), np.float64),
                np.asarray(str(v["noiseAzimuthLut"]["$"]).split(), np.float64),
            )
            for v in vectors
        )
    except Exception as exc:
        raise ProductError(
            f"could not read the azimuth noise LUT of {product} from {os.path.basename(path)!r} "
            f"({type(exc).__name__}: {exc}): pass remove_noise=False to calibrate without thermal "
            "noise removal"
        ) from exc
    for vector in azimuth:
        if vector.lines.size != vector.values.size or vector.lines.size == 0:
            raise ProductError(
                f"an azimuth noise vector of {product} has {vector.lines.size} lines but "
                f"{vector.values.size} values: the noise annotation is corrupt; pass "
                "remove_noise=False to calibrate without thermal noise removal"
            )
    return _Noise(range_lut, azimuth)


# --------------------------------------------------------------------------------------
# Pixels
# --------------------------------------------------------------------------------------


def _intensity_block(
    dn: np.ndarray, lines: np.ndarray, samples: np.ndarray, gain: _Lut, noise: _Noise | None
) -> np.ndarray:
    """(|DN|² − η) / K² on one block, in float64, returned as float32."""
    if np.iscomplexobj(dn):
        power = np.square(dn.real, dtype=np.float64) + np.square(dn.imag, dtype=np.float64)
    else:
        # float64 before squaring: uint16 DNs would overflow.
        power = np.square(dn, dtype=np.float64)
    if noise is not None:
        power -= noise.at(lines, samples)
        np.maximum(power, 0.0, out=power)
    power /= np.square(gain.at(lines, samples))
    return power.astype(np.float32)


def _evenly_spaced(times: np.ndarray) -> bool:
    """Whether line times step evenly (within 1 % of the step)."""
    if times.size < 3:
        return True
    steps = np.diff(times.astype("datetime64[ns]").astype(np.int64)).astype(np.float64)
    mean = steps.mean()
    return bool(mean > 0 and np.all(np.abs(steps - mean) <= 0.01 * mean))
