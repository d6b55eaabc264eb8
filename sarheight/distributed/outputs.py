"""The outputs of a block-wise run: in memory, or written to GeoTIFFs as the pieces come
(:func:`output_files` names them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..geometry import RadarGeometry
from ..io import GeoTiffBlockWriter
from ..masks import MASK_ATTRS, MaskCode

#: Variables of the result by the file they go to with ``out``: name suffix, dtype.
_FILES = {
    "": (("backscatter", "geocoded", "flattened", "simulated", "local_incidence_angle"), np.float32),
    "_masks": (("layover", "shadow", "mixing"), np.uint8),
    "_geometry": (("slant_range", "azimuth_time"), np.float64),
}


def _output_file(out: Path, suffix: str) -> Path:
    return out.with_name(out.stem + suffix + out.suffix)


def output_files(out: str | os.PathLike[str]) -> list[Path]:
    """The files a run with ``out`` writes: the float products, ``<out>_masks`` and ``<out>_geometry``."""
    return [_output_file(Path(out), suffix) for suffix in _FILES]


class ResultSink:
    """Where the gathered blocks go: arrays of the whole DEM, or GeoTIFFs written block by block."""

    def __init__(self, dem: xr.DataArray, geometry: RadarGeometry, rows_per_block: int, out, stack,
                 tile_shape: tuple[int, int]):
        self.dem, self.geometry, self.rows_per_block, self.out = dem, geometry, rows_per_block, out
        # The files' tiles are the computation's (when GeoTIFF allows: multiples of 16), so
        # that every write covers whole tiles.
        self.block_shape = tile_shape if all(n % 16 == 0 for n in tile_shape) else (256, 256)
        self.stack = stack
        self.arrays: dict[str, tuple[np.ndarray, dict]] = {}
        self.attrs: dict[str, Any] = {}
        self.writers: dict[str, GeoTiffBlockWriter] = {}
        self.reference = np.datetime64(geometry.reference_time, "ns")
        self.tiles_missing_pixels = 0  # tiles whose facets reach pixels the image lacks

    def _path(self, suffix: str) -> Path:
        return _output_file(Path(self.out), suffix)

    def write(self, row_start: int, col_start: int, part: xr.Dataset) -> None:
        missing = int(part.attrs.pop("missing_pixels", 0))
        self.tiles_missing_pixels += missing > 0
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
                        GeoTiffBlockWriter(self._path(suffix), names, dtype, self.dem, tags=tags, units=units,
                                           block_shape=self.block_shape))
        if self.out is None:
            for name, (array, _) in self.arrays.items():
                array[row_start:row_start + part.sizes["y"], col_start:col_start + part.sizes["x"]] = part[name].values
            return
        for suffix, (names, _) in _FILES.items():
            for name in names:
                values = part[name].values
                if name == "azimuth_time":
                    values = (values - self.reference) / np.timedelta64(1, "ns") / 1e9  # NaT gives NaN
                elif name == "mixing":
                    values = np.minimum(values, MaskCode.OUTSIDE - 1)  # the masks file's no-data value is outside
                self.writers[suffix].write(name, row_start, col_start, values)

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
            ds[name].attrs.update(MASK_ATTRS)
        return ds.rio.write_crs(self.dem.rio.crs)
