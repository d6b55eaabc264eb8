"""Scene files are NetCDF-4 (one file per scene, written atomically with ``h5netcdf`` and
deflate): one self-describing file that xarray, GDAL and ncview read, with the CRS as a
CF grid mapping, that a training run opens by name and copies as a unit. Zarr would
suit scenes too large for memory or written in parallel; terrain scenes are a few
hundred MB at most.

A scene opened is checked for layers in other units than a scene's.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import numpy as np
import rasterio.transform
import rasterio.warp
import xarray as xr

from ..dem import FEET_UNITS, STEEP_SHARE, steep_step_share
from ..errors import (
    InvalidInputError,
    MissingInputError,
    PlausibilityWarning,
    user_stacklevel,
)
from ..io import atomic_path
from ..observation import intensity_summary


def write_scene(scene: xr.Dataset, path: str | os.PathLike[str]) -> Path:
    """Write a scene to a NetCDF-4 file, atomically (deflate-compressed; the CRS as a CF
    grid mapping). Returns the path."""
    path = Path(path)
    if path.suffix != ".nc":
        raise InvalidInputError(f"scene files are NetCDF: give a path ending in .nc, got {str(path)!r}")
    if scene.rio.crs is None:
        raise InvalidInputError("the scene has no CRS: write one with scene.rio.write_crs(...) first")
    # Every variable names the grid mapping, also those added after the CRS was written.
    scene = scene.rio.write_crs(scene.rio.crs)
    # The grid is the coordinates (cell centres): a single row or column has no spacing to
    # georeference it, unless the caller wrote the transform. (It is not stored otherwise:
    # a stored transform goes stale when coordinates are reassigned.)
    stored = scene[scene.rio.grid_mapping].attrs.get("GeoTransform")
    if min(scene.sizes.get("y", 0), scene.sizes.get("x", 0)) < 2 and not stored:
        raise InvalidInputError(f"the scene of {scene.sizes.get('y', 0)} x {scene.sizes.get('x', 0)} cells has no "
                                "transform, and a single row or column has no cell size to georeference it: crop at "
                                "least 2 x 2 cells, or write the transform first (scene.rio.write_transform)")
    # (An encoding given to to_netcdf replaces the variable's own, grid mapping included.)
    encoding = {name: {**{key: value for key, value in scene[name].encoding.items()
                          if key in ("grid_mapping", "_FillValue", "dtype")}, "zlib": True, "complevel": 4}
                for name in scene.data_vars if scene[name].ndim in (2, 3)}
    # NetCDF has no boolean: a flag (the inversion's settings) is stored as 0 or 1.
    attrs = {key: (int(value) if isinstance(value, (bool, np.bool_))
                   else value if isinstance(value, (str, int, float, np.number)) else str(value))
             for key, value in scene.attrs.items()}
    with atomic_path(path) as tmp:
        scene.assign_attrs(attrs).to_netcdf(tmp, engine="h5netcdf", encoding=encoding)
    return path


def open_scene(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a scene file written by :func:`write_scene` (loaded into memory, CRS set)."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"no scene file {str(path)!r}: build scenes with `sarheight terrain scenes`")
    try:
        with xr.open_dataset(path, engine="h5netcdf", decode_coords="all") as opened:
            scene = opened.load()
    except (OSError, ValueError) as error:
        raise InvalidInputError(f"{str(path)!r} is not a readable scene file (NetCDF-4): {error}") from None
    missing = [name for name in ("sar_reconstructed", "prior_mask") if name not in scene.data_vars]
    if missing:
        raise InvalidInputError(f"{str(path)!r} is not a terrain scene: it lacks {missing}")
    if min(scene.sizes.get("y", 0),
           scene.sizes.get("x", 0)) < 2 and scene.rio.transform() == rasterio.transform.Affine.identity():
        raise InvalidInputError(f"{str(path)!r} holds {scene.sizes.get('y', 0)} x {scene.sizes.get('x', 0)} cells and "
                                "no transform: it lost its georeferencing; write the scene again with sarheight")
    check_scene_values(scene, repr(str(path)))
    return scene


def check_scene_values(scene: xr.Dataset, name: str) -> None:
    """Refuse a scene whose layers are in other units than a scene's (sigma0 linear
    instead of dB, incidence in radians), and warn of one whose SAR carries no relief
    (constant) or whose heights look like feet; ``name`` names it in the messages."""
    for variable in ("sar_reconstructed", "other_sar_reconstructed"):
        if variable not in scene.data_vars:
            continue
        values = np.asarray(scene[variable].values, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        if not values.size:
            continue
        summary = intensity_summary(values, in_db=True)
        median, spread = summary["observed_median_db"], summary["observed_spread_db"]
        if spread < 0.01:  # dB: not even rounding to a hundredth of a decibel
            warnings.warn(f"{name}'s {variable} is constant ({median:.1f} dB): it carries no relief, and a SAR "
                          "model reads nothing from it", PlausibilityWarning, stacklevel=user_stacklevel())
        elif float(values.min()) >= 0.0 and median < 2.0 and spread < 1.0:
            raise InvalidInputError(
                f"{name}'s {variable} holds {float(values.min()):.3g}..{float(values.max()):.3g} (median "
                f"{median:.3g}): "
                "sigma0 in linear units, where a scene holds dB (mostly negative); write it as 10 log10(sigma0)")
    for variable in ("local_incidence_angle", "other_local_incidence_angle"):
        if variable in scene.data_vars:
            values = np.asarray(scene[variable].values, dtype=np.float64)
            finite = values[np.isfinite(values)]
            if finite.size and float(np.max(np.abs(finite))) <= math.pi / 2 + 0.01:
                raise InvalidInputError(
                    f"{name}'s {variable} lies within {float(finite.min()):.3g}..{float(finite.max()):.3g}: radians, "
                    "where a scene holds degrees; write it in degrees")
    heights = scene["coarse_height"] if "coarse_height" in scene.data_vars else None
    if heights is not None and str(heights.attrs.get("units", "m")).strip().lower() in FEET_UNITS:
        raise InvalidInputError(f"{name}'s heights are in {heights.attrs['units']}: a scene holds metres; convert "
                                "them (multiply by 0.3048) and write it again")
    for variable in ("height", "coarse_height"):
        if variable not in scene.data_vars or scene.rio.crs is None:
            continue
        share = steep_step_share(scene[variable].rio.write_crs(scene.rio.crs))
        if share > STEEP_SHARE:
            # Warned, as a DEM is (open_dem): synthetic relief can be that steep on purpose.
            warnings.warn(
                f"{name}'s {variable}: {100 * share:.0f} % of its cell steps are steeper than 60 degrees, which real "
                "terrain at this resolution never is: are the heights in feet (multiply by 0.3048) or the cell size "
                "wrong? Then write the scene again in metres", PlausibilityWarning, stacklevel=user_stacklevel())
            break
