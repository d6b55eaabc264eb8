"""Writing results: atomic, tiled, compressed GeoTIFFs with band names.

Every file is written under a temporary name in the destination folder and renamed into
place only once complete, so an interrupted run never leaves a half-written file under
the final name.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.windows
import rioxarray  # noqa: F401  (the .rio accessor)
import xarray as xr

from .errors import InvalidInputError
from .masks import MaskCode

#: No-data value of uint8 mask bands: outside the image or no DEM.
MASK_NODATA = int(MaskCode.OUTSIDE)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` if the block succeeds."""
    final = Path(path)
    if not final.parent.exists():
        raise InvalidInputError(f"output folder {str(final.parent)!r} does not exist: create it first")
    # Not tempfile.mkstemp: it creates the file private (0600), and the rename would keep
    # that; an exclusive open() gives the usual permissions (0666 less the umask).
    while True:
        tmp_path = final.parent / f".{final.name}.{secrets.token_hex(6)}.part"
        try:
            with open(tmp_path, "x"):
                break
        except FileExistsError:
            continue
    try:
        yield tmp_path
        os.replace(tmp_path, final)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _band_array(da: xr.DataArray) -> tuple[np.ndarray, float | int | None]:
    values = da.values
    if values.dtype.kind == "M":
        raise InvalidInputError(
            f"variable {da.name!r} holds times, which GeoTIFF cannot store: convert it to seconds "
            "first (e.g. seconds since a reference) or leave it out"
        )
    if values.dtype == np.uint8:
        return values, MASK_NODATA
    if values.dtype.kind == "b":
        return values.astype(np.uint8), None
    # Geometry (slant range, line, sample, time) needs float64: float32 steps are 6 cm
    # at 850 km. Everything else is stored as float32.
    return values.astype(np.float64 if values.dtype == np.float64 else np.float32, copy=False), float("nan")


#: Largest tile side of the GeoTIFFs written (pixels).
TILE_SIDE = 256


def tile_side(rows: int, cols: int, largest: int = TILE_SIDE) -> int:
    """Tile side for a raster of ``rows`` x ``cols``: ``largest``, or for a smaller raster
    its larger side rounded up to a multiple of 16 (GeoTIFF's rule for tile sizes), so
    that every file is tiled, a small one in a single tile."""
    return min(largest, 16 * max(1, math.ceil(max(rows, cols) / 16)))


def write_geotiff(
    data: xr.Dataset | xr.DataArray,
    path: str | os.PathLike[str],
    variables: Sequence[str] | None = None,
) -> Path:
    """Write variables of a dataset on a map grid as one multi-band GeoTIFF, atomically.

    Parameters
    ----------
    data : Dataset (or DataArray) with dims (y, x) and a rioxarray CRS.
    path : destination file.
    variables : names of the variables to write, in band order; default all 2-D (y, x)
        variables that are not times. Masks (uint8) and floats cannot share one file in
        GeoTIFF's single data type, so floats are written as float32 (float64 when a band
        is float64) and uint8 masks are promoted to float with 255 kept as a value,
        unless every band is uint8.

    Returns
    -------
    The path written. Band descriptions carry the variable names; dataset attributes
    become GeoTIFF tags.
    """
    ds = data.to_dataset(name=data.name or "band") if isinstance(data, xr.DataArray) else data
    if variables is None:
        variables = [
            name for name, var in ds.data_vars.items()
            if var.dims == ("y", "x") and var.dtype.kind != "M"
        ]
    missing = [v for v in variables if v not in ds.data_vars]
    if missing:
        raise InvalidInputError(f"variables {missing} are not in the dataset ({list(ds.data_vars)})")
    if not variables:
        raise InvalidInputError("nothing to write: no (y, x) variable selected")
    if ds.rio.crs is None:
        raise InvalidInputError("the dataset has no CRS: write one with ds.rio.write_crs(...) first")
    bands = []
    for name in variables:
        if ds[name].dims != ("y", "x"):
            raise InvalidInputError(f"variable {name!r} has dims {ds[name].dims}, expected ('y', 'x')")
        bands.append(_band_array(ds[name]))
    all_masks = all(arr.dtype == np.uint8 for arr, _ in bands)
    dtype = np.uint8 if all_masks else (np.float64 if any(arr.dtype == np.float64 for arr, _ in bands) else np.float32)
    nodata = MASK_NODATA if all_masks else float("nan")
    rows, cols = bands[0][0].shape
    profile = {
        "driver": "GTiff",
        "height": rows,
        "width": cols,
        "count": len(bands),
        "dtype": np.dtype(dtype).name,
        "crs": ds.rio.crs,
        "transform": ds.rio.transform(),
        "nodata": nodata,
        "compress": "deflate",
        "predictor": 2 if all_masks else 3,
        "tiled": True,
        "blockxsize": tile_side(rows, cols),
        "blockysize": tile_side(rows, cols),
        "BIGTIFF": "IF_SAFER",
    }
    tags = {k: str(v) for k, v in ds.attrs.items() if isinstance(v, (str, int, float, np.number))}
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        for index, ((arr, _), name) in enumerate(zip(bands, variables, strict=True), start=1):
            dst.write(arr.astype(dtype, copy=False), index)
            dst.set_band_description(index, name)
            units = ds[name].attrs.get("units")
            if units:
                dst.update_tags(index, units=str(units))
        dst.update_tags(**tags)
    return Path(path)


class GeoTiffBlockWriter:
    """A multi-band GeoTIFF written block of rows by block of rows, atomically.

    For results too large to hold: each block's rows go to disk as they are computed.
    The file is written under a temporary name and renamed into place when the ``with``
    block ends without an error; on an error it is removed.

    Parameters
    ----------
    path : destination file.
    names : band names, in band order (band descriptions).
    dtype : numpy dtype of every band.
    like : a (y, x) DataArray or Dataset with a CRS: the grid (shape, transform, CRS).
    nodata : no-data value (default NaN for floats, 255 for uint8 masks, none otherwise).
    tags : dataset tags; units : per-band ``units`` tags, by band name.
    block_shape : (rows, cols) of the file's tiles, multiples of 16: write in blocks that
        cover whole tiles, or GDAL reads back, and compresses again, the tiles written in
        parts.
    """

    #: GDAL block cache while writing (MB).
    CACHE_MB = 64

    def __init__(self, path: str | os.PathLike[str], names: Sequence[str], dtype: Any, like: xr.DataArray | xr.Dataset,
                 *, nodata: float | int | None = None, tags: dict[str, Any] | None = None,
                 units: dict[str, str] | None = None, block_shape: tuple[int, int] = (256, 256)):
        self.path = Path(path)
        self.names = list(names)
        self.dtype = np.dtype(dtype)
        if like.rio.crs is None:
            raise InvalidInputError("the grid has no CRS: write one with .rio.write_crs(...) first")
        if nodata is None:
            nodata = float("nan") if self.dtype.kind == "f" else (MASK_NODATA if self.dtype == np.uint8 else None)
        rows, cols = like.rio.height, like.rio.width
        self.profile = {
            "driver": "GTiff", "height": rows, "width": cols, "count": len(self.names), "dtype": self.dtype.name,
            "crs": like.rio.crs, "transform": like.rio.transform(), "nodata": nodata, "compress": "deflate",
            "predictor": 3 if self.dtype.kind == "f" else 2,
            # Band by band: each band is written on its own, a whole tile at a time.
            "interleave": "band", "BIGTIFF": "IF_SAFER",
        }
        block_rows, block_cols = block_shape
        if rows < block_rows or cols < block_cols:
            block_rows = block_cols = tile_side(rows, cols, min(block_shape))
        self.profile.update(tiled=True, blockysize=block_rows, blockxsize=block_cols)
        self.tags = {k: str(v) for k, v in (tags or {}).items() if isinstance(v, (str, int, float, np.number))}
        self.units = units or {}
        self._stack = contextlib.ExitStack()
        self._dst = None

    def __enter__(self) -> GeoTiffBlockWriter:
        tmp = self._stack.enter_context(atomic_path(self.path))
        # GDAL keeps written blocks in its cache (by default 5 % of the RAM) until it
        # needs the room: bound it, so that memory follows the block size, not the file.
        self._stack.enter_context(rasterio.Env(GDAL_CACHEMAX=self.CACHE_MB))
        self._dst = self._stack.enter_context(rasterio.open(tmp, "w", **self.profile))
        for index, name in enumerate(self.names, start=1):
            self._dst.set_band_description(index, name)
            if name in self.units:
                self._dst.update_tags(index, units=str(self.units[name]))
        self._dst.update_tags(**self.tags)
        return self

    def write(self, name: str, row_start: int, col_start: int, values: np.ndarray) -> None:
        """Write ``values`` (rows, cols) into band ``name`` from row ``row_start``, column ``col_start``."""
        window = rasterio.windows.Window(col_start, row_start, values.shape[1], values.shape[0])
        self._dst.write(np.asarray(values).astype(self.dtype, copy=False), self.names.index(name) + 1, window=window)

    def __exit__(self, *exc_info) -> bool:
        return self._stack.__exit__(*exc_info)
