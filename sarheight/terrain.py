"""Terrain scenes: what the terrain-height model sees, simulated from a DEM or built from a
real observation, and the scene files they travel in.

A scene is an ``xr.Dataset`` on a map grid (y, x) with a CRS:

- ``sar_reconstructed`` and ``sar_geocoded``: sigma0 (dB) with and without the layover
  reallocation of :func:`sarheight.layover.reconstruct` (NaN in shadow and outside the
  image), so that the two can be compared (the ablation). "Without" is the geocoded
  image with the same radiometric terrain correction, Small's (2011) area-based
  flattening (``flattened`` times the cosine of the local incidence, as sigma0): a
  layover pixel's mixed value goes to all its cells alike. The two differ near layover
  only (by tenths of a dB elsewhere: the reallocation also weighs cells sharing a
  pixel by their modelled contribution); plain ellipsoid-normalised geocoding would
  differ on every slope and mix the terrain correction into the comparison;
- ``local_incidence_angle`` (deg), ``layover`` and ``shadow``
  (:class:`~sarheight.masks.MaskCode`), all from the *coarse* DEM;
- ``prior_height``, ``prior_mask``, ``prior_distance`` and ``prior_interpolated``: the
  sparse known heights, the distance to the nearest one (m) and the priors-only
  interpolation (:mod:`sarheight.priors`);
- ``coarse_height``: the coarse DEM resampled bilinearly to the scene grid (the DEM the
  reconstruction runs on), ``coarse_bicubic`` and ``coarse_lanczos``: resampled with
  sharper kernels (the refinement's reference and baselines), and ``coarse_corrected``:
  the coarse DEM plus the interpolated residuals of the priors from it;
- ``height``: the truth (simulated scenes; observed scenes with a reference DEM);
- optionally ``other_sar_reconstructed``, ``other_sar_geocoded`` and
  ``other_local_incidence_angle``: the opposite pass over the same terrain (ascending and
  descending see the slopes from both sides).

Attributes record the geometry (``heading_deg``, ``look_side``, and ``other_`` ones), the
coarse DEM's cell size ``coarse_cell_m``, the grid's ``grid_cell_m`` and their ratio
``coarse_factor``. :func:`scene_variable` also gives the variables of
:data:`DERIVED_VARIABLES`, computed from these on the fly: the refinement model's
scale-free inputs (the coarse DEM's slopes and curvature, the look direction, the ratio of
observed to simulated sigma0).

No input is computed from the true fine DEM except the observation itself (simulated
from it, as the real one is made by the real terrain) and the priors (known heights are
samples of the truth): the reconstruction, masks and local incidence come from the
coarse DEM a user would have. :func:`simulate_scene` is :func:`observed_scene` applied to
an observation simulated from the fine DEM, so that the two cannot drift apart.

Scene files are NetCDF-4 (one file per scene, written atomically with ``h5netcdf`` and
deflate): one self-describing file that xarray, GDAL and ncview read, with the CRS as a
CF grid mapping, that a training run opens by name and copies as a unit. Zarr would
suit scenes too large for memory or written in parallel; terrain scenes are a few
hundred MB at most.

Augment by simulating more geometries (passes, headings, incidence ranges, look sides),
prior draws and speckle seeds, never by flipping or rotating the images: a flip changes
the look direction, and with it which slopes are in layover.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio.transform
import rasterio.warp
import xarray as xr

from ._version import __version__
from .backprojection import back_project, shifted, upsample
from .coarse_dem import CoarseDemErrors, coarse_product, draw_errors
from .dem import FEET_UNITS, STEEP_SHARE, cell_size_m, open_dem, steep_step_share
from .errors import (
    InvalidInputError,
    MissingInputError,
    PartialCoverageWarning,
    PlausibilityWarning,
    deferred_warnings,
    user_stacklevel,
)
from .geometry import RadarGeometry
from .ground import (
    LAMBERT_LAW,
    SNAP_LAW,
    DateCondition,
    FittedLaw,
    Ground,
    draw_date_conditions,
    draw_ground,
    fit_sigma0_law,
)
from .inversion import (
    InversionImage,
    InversionSettings,
    composite_images,
    invert_dem,
    radar_image,
    register_to_images,
)
from .io import atomic_path
from .layover import reconstruct
from .masks import MASK_ATTRS, MaskCode
from .observation import intensity_summary
from .priors import (
    PRIOR_KINDS,
    PriorErrors,
    distance_map,
    draw_prior_errors,
    interpolate_priors,
    sample_priors,
)
from .simulate import empirical_sigma0, simulate_sar

logger = logging.getLogger(__name__)

PassDirection = Literal["ascending", "descending"]

#: Sentinel-1's headings over mid-latitudes (degrees clockwise from north).
PASS_HEADINGS = {"ascending": 348.0, "descending": 192.0}

#: The variables every scene has (``height`` only where the truth is known).
INPUT_VARIABLES = (
    "sar_reconstructed", "sar_geocoded", "local_incidence_angle", "layover", "shadow",
    "prior_height", "prior_mask", "prior_distance", "prior_interpolated", "coarse_height", "coarse_bicubic",
    "coarse_lanczos", "coarse_corrected", "coarse_registered", "coarse_backprojected", "coarse_refined",
    "prior_correction_std",
)

#: The variables of the opposite pass, when a scene has it.
OTHER_PASS_VARIABLES = ("other_sar_reconstructed", "other_sar_geocoded", "other_local_incidence_angle")

_ATTRS = {
    "sar_reconstructed": {"units": "dB", "long_name": "sigma0 reconstructed in layover (reallocated)"},
    "sar_geocoded": {"units": "dB", "long_name": "sigma0 without reallocation (terrain-flattened, as sigma0)"},
    "local_incidence_angle": {"units": "degree", "long_name": "local incidence angle on the coarse DEM"},
    "prior_height": {"units": "m", "long_name": "known heights (WGS84 ellipsoid), NaN where none"},
    "prior_mask": {"long_name": "1 where a height is known"},
    "prior_distance": {"units": "m", "long_name": "distance to the nearest known height"},
    "prior_interpolated": {"units": "m", "long_name": "priors-only interpolation"},
    "coarse_height": {"units": "m", "long_name": "coarse DEM resampled to the scene grid (bilinear)"},
    "coarse_bicubic": {"units": "m", "long_name": "coarse DEM resampled to the scene grid (bicubic)"},
    "coarse_lanczos": {"units": "m", "long_name": "coarse DEM resampled to the scene grid (Lanczos)"},
    "coarse_corrected": {"units": "m", "long_name": "coarse DEM plus the interpolated residuals of the priors"},
    "coarse_registered": {"units": "m", "long_name": "coarse DEM registered to the priors, resampled (Lanczos)"},
    "coarse_backprojected": {"units": "m", "long_name": "coarse DEM registered to the priors, back-projected"},
    "coarse_refined": {"units": "m", "long_name": "coarse DEM back-projected, corrected by the priors (kriged)"},
    "prior_correction_std": {"units": "m", "long_name": "standard deviation of the kriged correction"},
    "inverted": {"units": "m", "long_name": "refined by inverting the simulator against every observation"},
    "inversion_readable": {"long_name": "observations whose ratio the inversion read at the cell"},
    "height": {"units": "m", "long_name": "true height above the WGS84 ellipsoid"},
}


def variable_description(name: str) -> str:
    """What the scene variable ``name`` holds, in words (its ``long_name``; the name itself
    for a variable without one)."""
    return _ATTRS.get(name, {}).get("long_name", name)


def pass_direction(geometry: RadarGeometry) -> PassDirection:
    """``"ascending"`` when the platform flies northward over the scene, else ``"descending"``."""
    return _direction_of_heading(geometry.heading())


def _direction_of_heading(heading_deg: float) -> PassDirection:
    return "ascending" if math.cos(math.radians(heading_deg)) > 0 else "descending"


def scene_geometry(
    dem: Any,
    pass_direction: PassDirection = "ascending",
    *,
    incidence_near_deg: float = 30.0,
    incidence_far_deg: float = 46.0,
    look_side: Literal["right", "left"] = "right",
    heading_offset_deg: float = 0.0,
    pixel_spacing_m: float | None = None,
) -> RadarGeometry:
    """A Sentinel-1-like synthetic geometry centred on ``dem``, for simulated scenes.

    Parameters
    ----------
    dem : anything :func:`sarheight.dem.open_dem` takes.
    pass_direction : ``"ascending"`` (heading 348 degrees) or ``"descending"`` (192).
    incidence_near_deg, incidence_far_deg : the swath's incidence range (degrees;
        Sentinel-1 IW: 30-46).
    look_side : ``"right"`` (Sentinel-1) or ``"left"``: a left-looking pass sees the
        slopes a right-looking one has in layover from the other side.
    heading_offset_deg : added to the pass's heading (degrees), to vary the geometry.
    pixel_spacing_m : ground size of a radar pixel in azimuth and range (m); default the
        DEM's cell size, so that the scene's inputs keep the SAR's resolution.
    """
    if pass_direction not in PASS_HEADINGS:
        raise InvalidInputError(f"pass_direction must be 'ascending' or 'descending', got {pass_direction!r}")
    dem = open_dem(dem, copy=False)
    dy, dx = cell_size_m(dem)
    spacing = float(pixel_spacing_m) if pixel_spacing_m is not None else math.sqrt(dy * dx)
    if not (math.isfinite(spacing) and spacing > 0):
        raise InvalidInputError(f"pixel_spacing_m must be a positive number of metres, got {pixel_spacing_m!r}")
    west, south, east, north = dem.rio.transform_bounds("EPSG:4326")
    extent = math.hypot(dem.shape[0] * dy, dem.shape[1] * dx)
    mid_incidence = math.radians(0.5 * (incidence_near_deg + incidence_far_deg))
    return RadarGeometry.synthetic(
        center_lon=0.5 * (west + east),
        center_lat=0.5 * (south + north),
        heading_deg=(PASS_HEADINGS[pass_direction] + heading_offset_deg) % 360.0,
        incidence_near_deg=incidence_near_deg,
        incidence_far_deg=incidence_far_deg,
        line_spacing=spacing,
        # Slant-range pixels whose ground size at mid swath is the cell size.
        sample_spacing=spacing * math.sin(mid_incidence),
        look_side=look_side,
        azimuth_extent=1.5 * extent + 10e3,
    )


#: The scene variable holding the coarse DEM resampled by each kernel of :data:`sarheight.backprojection.UPSAMPLING`.
COARSE_VARIABLES = {"bilinear": "coarse_height", "bicubic": "coarse_bicubic", "lanczos": "coarse_lanczos"}


def block_mean(dem: Any, factor: int) -> xr.DataArray:
    """``dem`` as a ``factor`` times coarser DEM measures it: the mean height of every block
    of ``factor`` x ``factor`` cells (blocks at the edges average what they hold), on the
    coarse grid (its own transform, the same CRS and attributes).

    ``factor=1`` returns the heights unchanged.
    """
    dem = open_dem(dem, copy=False)
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 1:
        raise InvalidInputError(f"the coarse factor must be an integer >= 1, got {factor!r}")
    factor = int(factor)
    if factor == 1:
        return dem.copy()
    rows, cols = dem.shape
    if min(rows, cols) < 2 * factor:
        raise InvalidInputError(
            f"a {rows} x {cols} DEM is too small to degrade {factor}x (fewer than two coarse cells across): "
            "use a larger DEM or a smaller coarse factor"
        )
    coarse_rows, coarse_cols = -(-rows // factor), -(-cols // factor)
    padded = np.full((coarse_rows * factor, coarse_cols * factor), np.nan, dtype=np.float64)
    padded[:rows, :cols] = dem.values
    blocks = padded.reshape(coarse_rows, factor, coarse_cols, factor)
    finite = np.isfinite(blocks)
    counts = finite.sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        coarse = np.where(finite, blocks, 0.0).sum(axis=(1, 3)) / counts
    coarse[counts == 0] = np.nan
    transform = dem.rio.transform()
    coarse_transform = transform @ transform.scale(factor, factor)
    y = coarse_transform.f + coarse_transform.e * (np.arange(coarse_rows) + 0.5)
    x = coarse_transform.c + coarse_transform.a * (np.arange(coarse_cols) + 0.5)
    out = xr.DataArray(coarse.astype(np.float32), dims=("y", "x"), coords={"y": y, "x": x}, name=dem.name,
                       attrs={**dem.attrs, "coarse_factor": factor})
    return out.rio.write_crs(dem.rio.crs).rio.write_transform(coarse_transform)


def degrade_dem(dem: Any, factor: int, method: str = "bilinear") -> xr.DataArray:
    """``dem`` as a ``factor`` times coarser DEM would give it, resampled back to its grid.

    The heights are averaged over blocks of ``factor`` x ``factor`` cells
    (:func:`block_mean`: a coarser DEM measures the mean surface of its cells), then
    interpolated back to the original cells with ``method`` (:func:`upsample`; bilinear:
    the smooth surface a user with only the coarse DEM would resample to the SAR's grid).
    ``factor=1`` returns the heights unchanged.
    """
    dem = open_dem(dem, copy=False)
    coarse = block_mean(dem, factor)
    if int(factor) == 1:
        return coarse
    out = upsample(coarse, dem, method)
    out.attrs.update(coarse_factor=int(factor),
                     long_name=f"DEM degraded {int(factor)}x and resampled back ({method})")
    return out


#: The most a refinement refines (coarse cell over spacing): the models train at 2-10.
MAX_REFINEMENT_FACTOR = 10
#: The most cells a refined grid holds: a scene keeps about twenty float32 layers of it.
MAX_REFINEMENT_CELLS = 40_000_000


def check_refinement_spacing(cell_m: float, shape: tuple[int, int], spacing_m: Any) -> None:
    """Refuse, before any DEM is read, a refinement of a DEM of ``shape`` cells of
    ``cell_m`` metres to ``spacing_m`` metres that cannot be made: not a positive number,
    not finer than the DEM, more than :data:`MAX_REFINEMENT_FACTOR` times finer, or a
    grid beyond :data:`MAX_REFINEMENT_CELLS`."""
    if isinstance(spacing_m, bool) or not (isinstance(spacing_m, (int, float)) and math.isfinite(spacing_m)
                                           and spacing_m > 0):
        raise InvalidInputError(f"the spacing must be a positive number of metres, got {spacing_m!r}")
    cell = float(cell_m)
    rows, cols = shape
    if spacing_m >= 0.99 * cell:
        raise InvalidInputError(
            f"the DEM's cells are {cell:.1f} m, already as fine as the spacing {spacing_m:g} m: refine to a finer "
            f"spacing (from {cell / 10:.0f} to {cell / 2:.0f} m, 2-10 times finer), or give the coarser DEM"
        )
    if cell / spacing_m > MAX_REFINEMENT_FACTOR + 0.5:
        raise InvalidInputError(
            f"a spacing of {spacing_m:g} m is {cell / spacing_m:.0f} times finer than the DEM's {cell:.1f} m cells: "
            f"refinement reads at most {MAX_REFINEMENT_FACTOR} times finer (the models train at 2-10 times); give a "
            f"spacing of {cell / MAX_REFINEMENT_FACTOR:.0f} m or more")
    fine_cells = rows * cols * (cell / spacing_m) ** 2
    if fine_cells > MAX_REFINEMENT_CELLS:
        raise InvalidInputError(
            f"the refined grid would hold {fine_cells / 1e6:.0f} million cells (the DEM's {rows} x {cols} cells, "
            f"{cell / spacing_m:.1f} times finer), beyond the {MAX_REFINEMENT_CELLS / 1e6:.0f} million one refinement "
            "holds in memory: crop the DEM into parts, or give a coarser spacing")


def refinement_grid(dem: Any, spacing_m: float) -> xr.DataArray:
    """A grid of ``spacing_m`` metres over ``dem``'s extent, in its CRS (degrees of that
    size at its middle latitude on a geographic grid): where a refined DEM is made.

    Returns a DataArray of zeros on the grid (dims ``y``, ``x``, north-up) with the CRS.

    Raises
    ------
    InvalidInputError : the spacing is not a positive number of metres, not finer than
        the DEM's own cells (nothing to refine), more than :data:`MAX_REFINEMENT_FACTOR`
        times finer, or the grid beyond :data:`MAX_REFINEMENT_CELLS`.
    """
    dem = open_dem(dem, copy=False)
    dy, dx = cell_size_m(dem)
    check_refinement_spacing(math.sqrt(dy * dx), dem.shape, spacing_m)
    transform = dem.rio.transform()
    rows, cols = dem.shape
    # The grid's steps in the DEM's own units: metres (or feet...) on projected grids, degrees
    # on geographic ones, as many as make spacing_m metres.
    step_y, step_x = abs(transform.e) * spacing_m / dy, abs(transform.a) * spacing_m / dx
    west, north = transform.c, transform.f
    east, south = west + transform.a * cols, north + transform.e * rows
    left, right = min(west, east), max(west, east)
    bottom, top = min(north, south), max(north, south)
    n_cols, n_rows = max(round((right - left) / step_x), 1), max(round((top - bottom) / step_y), 1)
    x = left + step_x * (np.arange(n_cols) + 0.5)
    y = top - step_y * (np.arange(n_rows) + 0.5)
    grid = xr.DataArray(np.zeros((n_rows, n_cols), dtype=np.float32), dims=("y", "x"), coords={"y": y, "x": x},
                        name="grid", attrs={"spacing_m": float(spacing_m)})
    return grid.rio.write_crs(dem.rio.crs).rio.write_transform(
        rasterio.transform.from_origin(left, top, step_x, step_y))


def coarse_cell_size(scene: xr.Dataset) -> float:
    """The cell size (m, the geometric mean of its two sides) of the coarse DEM a scene was
    made from: its ``coarse_cell_m`` attribute, else its ``coarse_factor`` times the
    scene's cell size, else the scene's cell size."""
    if "coarse_cell_m" in scene.attrs:
        return float(scene.attrs["coarse_cell_m"])
    dy, dx = cell_size_m(scene[next(iter(scene.data_vars))])
    return float(scene.attrs.get("coarse_factor", 1)) * math.sqrt(dy * dx)


#: Variables a scene gives without storing them (:func:`scene_variable`), by the stored
#: variables each is computed from: the refinement model's scale-free inputs. None reads
#: the truth (``height``).
#:
#: - ``coarse_slope_east``, ``coarse_slope_north``: the gradient of the coarse DEM
#:   (``coarse_bicubic``, m/m), eastward and northward;
#: - ``coarse_curvature``: its Laplacian times the coarse cell size (m/m: the change of
#:   slope across one coarse cell; positive in valleys);
#: - ``coarse_factor``: the coarse cell size over the scene's (constant);
#: - ``look_east``, ``look_north`` (and ``other_``): the unit vector of the ground-range
#:   direction, away from the sensor (constant): which way the radar looks on the map;
#: - ``sar_ratio`` (and ``sar_ratio_geocoded``, ``other_sar_ratio``): the observed sigma0
#:   over a law of the local incidence fitted to the observation itself
#:   (:func:`scene_sigma0_law`), at the coarse DEM's local incidence (dB, its median over
#:   the fitted cells taken out): what the coarse DEM does not explain, whatever law the
#:   ground follows. In layover it is the reconstructed value;
#: - ``sar_slope`` (and ``sar_slope_geocoded``, ``other_sar_slope``): that ratio read as a
#:   change of the range slope (radians, rising away from the sensor) through the fitted
#:   law's sensitivity (:meth:`sarheight.ground.FittedLaw.sensitivity`), clipped at
#:   :data:`RANGE_SLOPE_LIMIT_RAD`; NaN where the law says little (sensitivity below
#:   :data:`MIN_SENSITIVITY_DB`) and in layover and shadow.
DERIVED_VARIABLES: dict[str, tuple[str, ...]] = {
    "coarse_slope_east": ("coarse_bicubic",),
    "coarse_slope_north": ("coarse_bicubic",),
    "coarse_curvature": ("coarse_bicubic",),
    "coarse_factor": ("coarse_height",),
    "look_east": ("coarse_height",),
    "look_north": ("coarse_height",),
    "other_look_east": ("other_sar_reconstructed",),
    "other_look_north": ("other_sar_reconstructed",),
    "sar_ratio": ("sar_reconstructed", "local_incidence_angle"),
    "sar_ratio_geocoded": ("sar_geocoded", "local_incidence_angle"),
    "other_sar_ratio": ("other_sar_reconstructed", "other_local_incidence_angle"),
    "sar_slope": ("sar_reconstructed", "local_incidence_angle"),
    "sar_slope_geocoded": ("sar_geocoded", "local_incidence_angle"),
    "other_sar_slope": ("other_sar_reconstructed", "other_local_incidence_angle"),
}

#: The largest range-slope change (radians) one cell's brightness may claim.
RANGE_SLOPE_LIMIT_RAD = math.radians(25.0)

#: The least sensitivity (dB per radian of range slope) at which brightness is read as
#: slope: below it (near grazing, or a ground whose law is flat) a dB of speckle would be
#: tens of degrees.
MIN_SENSITIVITY_DB = 3.0


def scene_sigma0_law(scene: xr.Dataset, sar: str = "sar_reconstructed",
                     incidence: str = "local_incidence_angle") -> FittedLaw:
    """The sigma0 law of the local incidence fitted to a scene's own observation
    (:func:`sarheight.ground.fit_sigma0_law`, robust medians per degree of incidence),
    outside layover and shadow (for the other pass, whose masks a scene does not keep,
    where it is finite: NaN in its shadow). A scene too small to fit one (fewer than 30
    cells in every degree of incidence) falls back to the empirical law, fitted to that
    law's own values.

    """
    sigma0, angles = scene[sar].values, scene[incidence].values
    valid = np.isfinite(sigma0) & np.isfinite(angles)
    if not sar.startswith("other_") and "layover" in scene.data_vars:
        valid &= (scene["layover"].values == MaskCode.NONE) & (scene["shadow"].values == MaskCode.NONE)
    try:
        return fit_sigma0_law(sigma0, angles, valid)
    except InvalidInputError:
        grid = np.linspace(5.0, 85.0, 81)
        with np.errstate(divide="ignore"):
            return fit_sigma0_law(10.0 * np.log10(np.repeat(empirical_sigma0(grid), 40)), np.repeat(grid, 40))


def _sar_ratio_and_slope(scene: xr.Dataset, sar: str, incidence: str, slope: bool) -> np.ndarray:
    law = scene_sigma0_law(scene, sar, incidence)
    angles = scene[incidence].values.astype(np.float64)
    ratio = law.ratio_db(scene[sar].values, angles)
    fitted = np.isfinite(ratio)
    if not sar.startswith("other_") and "layover" in scene.data_vars:
        fitted &= (scene["layover"].values == MaskCode.NONE) & (scene["shadow"].values == MaskCode.NONE)
    if fitted.any():
        # The ratio is defined up to a constant (speckle's mean in dB, the fit's level).
        ratio = ratio - np.median(ratio[fitted])
    if not slope:
        return np.where(np.isfinite(ratio), ratio, np.nan).astype(np.float32)
    sensitivity = law.sensitivity(angles)
    with np.errstate(invalid="ignore", divide="ignore"):
        change = np.clip(ratio / sensitivity, -RANGE_SLOPE_LIMIT_RAD, RANGE_SLOPE_LIMIT_RAD)
        readable = np.isfinite(change) & (sensitivity >= MIN_SENSITIVITY_DB)
    if not sar.startswith("other_") and "layover" in scene.data_vars:
        readable &= (scene["layover"].values == MaskCode.NONE) & (scene["shadow"].values == MaskCode.NONE)
    return np.where(readable, change, np.nan).astype(np.float32)


def variable_sources(name: str) -> tuple[str, ...]:
    """The stored variables a scene needs to give ``name`` (itself, unless it is derived)."""
    return DERIVED_VARIABLES.get(name, (name,))


def scene_variable(scene: xr.Dataset, name: str) -> np.ndarray:
    """The values (float32, (y, x)) of a scene's variable ``name``: stored, or derived from
    the stored ones (:data:`DERIVED_VARIABLES`).

    Raises
    ------
    InvalidInputError : a variable it needs is missing, or (for the look direction) the
        scene does not record its heading and look side.
    """
    if name in scene.data_vars:
        return scene[name].values.astype(np.float32)
    if name not in DERIVED_VARIABLES:
        raise InvalidInputError(f"the scene has no variable {name!r}: it has {', '.join(sorted(scene.data_vars))}")
    missing = [source for source in DERIVED_VARIABLES[name] if source not in scene.data_vars]
    if missing:
        raise InvalidInputError(f"{name!r} is computed from {', '.join(missing)}, which the scene lacks: write the "
                                "scene again with this version of sarheight")
    shape = scene[DERIVED_VARIABLES[name][0]].shape
    if name.startswith("coarse_") and name != "coarse_factor":
        return _coarse_terrain(scene, name)
    if name == "coarse_factor":
        return np.full(shape, float(scene.attrs.get("coarse_factor", coarse_cell_size(scene) / _grid_cell(scene))),
                       dtype=np.float32)
    if name.endswith(("look_east", "look_north")):
        prefix = "other_" if name.startswith("other_") else ""
        heading, side = scene.attrs.get(f"{prefix}heading_deg"), scene.attrs.get(f"{prefix}look_side")
        if heading is None or side not in ("right", "left"):
            raise InvalidInputError(f"{name!r} needs the scene's {prefix}heading_deg and {prefix}look_side attributes:"
                                    " write the scene again with this version of sarheight")
        azimuth = math.radians(float(heading) + (90.0 if side == "right" else -90.0))
        value = math.sin(azimuth) if name.endswith("east") else math.cos(azimuth)
        return np.full(shape, value, dtype=np.float32)
    sar, incidence = DERIVED_VARIABLES[name]
    return _sar_ratio_and_slope(scene, sar, incidence, slope="_slope" in name)


#: The terrain classes a refinement is judged in, gated by and its spread calibrated in:
#: the coarse DEM's layover (active or passive), its shadow, steep slopes outside both
#: (the coarse DEM's slope at least :data:`STEEP_SLOPE_DEG`), and the other cells. Each
#: cell is in one class, taken in that order.
REFINEMENT_CLASSES = ("layover", "shadow", "steep", "other")

#: The coarse slope (degrees) from which a cell outside layover and shadow is steep: about
#: where global DEMs' errors double (their error grows with the tangent of the slope).
STEEP_SLOPE_DEG = 20.0


def refinement_classes(scene: xr.Dataset) -> np.ndarray:
    """The code (uint8, the index in :data:`REFINEMENT_CLASSES`) of every cell of a
    scene, from its ``layover`` and ``shadow`` masks and the coarse DEM's slope: what a
    user knows, never the truth."""
    layover, shadow = scene["layover"].values, scene["shadow"].values
    slope = np.degrees(np.arctan(np.hypot(scene_variable(scene, "coarse_slope_east"),
                                          scene_variable(scene, "coarse_slope_north"))))
    codes = np.full(layover.shape, REFINEMENT_CLASSES.index("other"), dtype=np.uint8)
    codes[slope >= STEEP_SLOPE_DEG] = REFINEMENT_CLASSES.index("steep")
    codes[(shadow == MaskCode.ACTIVE) | (shadow == MaskCode.PASSIVE)] = REFINEMENT_CLASSES.index("shadow")
    codes[(layover == MaskCode.ACTIVE) | (layover == MaskCode.PASSIVE)] = REFINEMENT_CLASSES.index("layover")
    return codes


def _grid_cell(scene: xr.Dataset) -> float:
    dy, dx = cell_size_m(scene[next(iter(scene.data_vars))])
    return math.sqrt(dy * dx)


def grid_steps(grid: xr.DataArray) -> tuple[float, float]:
    """The signed steps (m) of one row northward and one column eastward of a map grid
    (``y``, ``x`` coordinates with a CRS): rows run south on north-up grids, so their step
    is negative there."""
    dy, dx = cell_size_m(grid)
    north = dy * (1.0 if grid["y"].size < 2 or float(grid["y"][1] - grid["y"][0]) > 0 else -1.0)
    east = dx * (1.0 if grid["x"].size < 2 or float(grid["x"][1] - grid["x"][0]) > 0 else -1.0)
    return north, east


def _coarse_terrain(scene: xr.Dataset, name: str) -> np.ndarray:
    heights = scene["coarse_bicubic"]
    north_step, east_step = grid_steps(heights)
    values = heights.values.astype(np.float64)
    along_rows, along_cols = np.gradient(values, north_step, east_step)
    if name == "coarse_slope_east":
        return along_cols.astype(np.float32)
    if name == "coarse_slope_north":
        return along_rows.astype(np.float32)
    laplacian = np.gradient(along_rows, north_step, axis=0) + np.gradient(along_cols, east_step, axis=1)
    return (laplacian * coarse_cell_size(scene)).astype(np.float32)


def _db(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10.0 * np.log10(values)
    out[~np.isfinite(out)] = np.nan
    return out.astype(np.float32)


def _on_grid(values: xr.DataArray | np.ndarray, grid: xr.DataArray, name: str, attrs: dict | None = None) -> xr.DataArray:
    data = values.values if isinstance(values, xr.DataArray) else values
    return xr.DataArray(data, dims=("y", "x"), coords={"y": grid["y"], "x": grid["x"]}, name=name,
                        attrs=dict(attrs if attrs is not None else _ATTRS.get(name, {})))


def _pass_inputs(sar: Any, coarse: xr.DataArray, geometry: RadarGeometry | None, *, measurement: str,
                 projection: str, progress: bool) -> tuple[dict[str, np.ndarray], dict]:
    with warnings.catch_warnings():
        # The image is read with a margin around the DEM: its edges' partial coverage is
        # the margin's, not the product's.
        warnings.filterwarnings("ignore", category=PartialCoverageWarning)
        result = reconstruct(sar, coarse, geometry, measurement=measurement, projection=projection,
                             progress=progress)
    arrays = {
        "sar_reconstructed": _db(result["backscatter"].values),
        # Without reallocation: the terrain-flattened backscatter (Small 2011), every cell of
        # a pixel given the pixel's value, as sigma0. Conventional geocoding would also
        # leave out the terrain's radiometric correction and differ everywhere on slopes;
        # this one differs from the reconstruction where reallocation acts, near layover.
        "sar_geocoded": _db(result["flattened"].values * np.cos(np.radians(result["local_incidence_angle"].values))),
        "local_incidence_angle": result["local_incidence_angle"].values.astype(np.float32),
        "layover": result["layover"].values,
        "shadow": result["shadow"].values,
    }
    return arrays, result.attrs


def _resolve_priors(priors: Any, grid: xr.DataArray, points_crs: Any, points_vertical_datum: str | None,
                    points_geoid_grid: Any = None) -> xr.Dataset:
    """Priors on ``grid``: a Dataset of :func:`sample_priors` on it, points to put on it, or
    None (no prior: heights NaN, the mask 0)."""
    if priors is None:
        return xr.Dataset({"prior_height": grid.copy(data=np.full(grid.shape, np.nan, dtype=np.float32)),
                           "prior_mask": grid.copy(data=np.zeros(grid.shape, dtype=np.uint8))})
    if isinstance(priors, xr.Dataset):
        missing = {"prior_height", "prior_mask"} - set(priors.data_vars)
        if missing:
            raise InvalidInputError(
                f"the priors lack {sorted(missing)}: give the Dataset sample_priors returns, or the points "
                "(a CSV, GeoJSON or GeoPackage file, or a DataFrame of x, y, height)"
            )
        if priors["prior_height"].shape != grid.shape or not (
                np.allclose(priors["x"], grid["x"]) and np.allclose(priors["y"], grid["y"])):
            raise InvalidInputError(
                f"the priors lie on a {priors['prior_height'].shape} grid, the scene on {grid.shape}: sample them "
                "on the scene's grid (sample_priors(grid, points=...)), or give the points themselves"
            )
        return priors
    return sample_priors(grid, points=priors, crs=points_crs, vertical_datum=points_vertical_datum,
                         geoid_grid=points_geoid_grid)


#: How far (m, the median over the priors) known heights may lie from the coarse DEM: no
#: real DEM is off by as much (SRTM's and Copernicus's biases are metres; a geoid mistaken
#: for the ellipsoid is tens of metres, warned of below this).
PRIOR_OFFSET_LIMIT_M = 100.0
#: The median departure (m) beyond which the priors are warned of: more than a DEM's bias.
PRIOR_OFFSET_WARNING_M = 20.0
#: A prior this far (m) from the coarse DEM beyond the others' median, and beyond eight of
#: their robust standard deviations, is an outlier and left out.
PRIOR_OUTLIER_M = 150.0


def check_priors_against(priors: xr.Dataset, coarse: xr.DataArray) -> xr.Dataset:
    """The known heights checked against the coarse DEM at their cells: refused where they
    cannot be of its terrain (3.28 times its heights: feet; a median departure beyond
    :data:`PRIOR_OFFSET_LIMIT_M`: another datum, units or place), warned of where their
    median departure is beyond :data:`PRIOR_OFFSET_WARNING_M` (a geoid taken for the
    ellipsoid?), and returned without the outliers (beyond :data:`PRIOR_OUTLIER_M` and
    eight robust standard deviations from the others' departure), which are named in a
    warning: one prior 3 km off would otherwise pull the map into a spike.

    Raises
    ------
    InvalidInputError : naming the offset and what to check.
    """
    known = (priors["prior_mask"].values > 0) & np.isfinite(priors["prior_height"].values) & np.isfinite(coarse.values)
    if known.sum() < 3:
        return priors
    heights, below = priors["prior_height"].values[known], coarse.values[known]
    departure = heights.astype(np.float64) - below
    offset = float(np.median(departure))
    if abs(offset) > 100.0 and np.median(np.abs(below)) > 50.0:
        ratio = float(np.median(heights / np.where(below != 0, below, np.nan)))
        if abs(ratio - 1 / 0.3048) < 0.1:
            raise InvalidInputError(f"the known heights are {ratio:.2f} times the coarse DEM's: in feet? Convert them "
                                    "to metres (multiply by 0.3048)")
    if abs(offset) > PRIOR_OFFSET_LIMIT_M:
        raise InvalidInputError(
            f"the known heights lie a median {offset:+.0f} m from the coarse DEM at their cells: no DEM is that far "
            "off; check their units (metres), their vertical datum (points_vertical_datum, WGS84 ellipsoidal "
            "heights after conversion) and their CRS")
    if abs(offset) > PRIOR_OFFSET_WARNING_M:
        warnings.warn(
            f"the known heights lie a median {offset:+.0f} m from the coarse DEM at their cells, more than a DEM's "
            "bias: are they on a geoid but said to be ellipsoidal (or the DEM on one), or in another place? The "
            "refinement moves the map towards them", PlausibilityWarning, stacklevel=user_stacklevel())
    spread = 1.4826 * float(np.median(np.abs(departure - offset)))
    outliers = np.abs(departure - offset) > max(PRIOR_OUTLIER_M, 8.0 * spread)
    if not outliers.any():
        return priors
    worst = float(departure[outliers][np.argmax(np.abs(departure[outliers] - offset))])
    warnings.warn(
        f"{int(outliers.sum())} of the {int(known.sum())} known heights lie far from the coarse DEM and the other "
        f"priors' departure (the farthest {worst:+.0f} m, the others a median {offset:+.0f} m): left out as outliers; "
        "check them", PlausibilityWarning, stacklevel=user_stacklevel())
    mask = priors["prior_mask"].values.copy()
    rows, cols = np.nonzero(known)
    mask[rows[outliers], cols[outliers]] = 0
    height = np.where(mask > 0, priors["prior_height"].values, np.nan).astype(priors["prior_height"].dtype)
    cleaned = priors.copy()
    cleaned["prior_mask"] = priors["prior_mask"].copy(data=mask)
    cleaned["prior_height"] = priors["prior_height"].copy(data=height)
    return cleaned


def _scene_dataset(inputs: dict[str, np.ndarray], grid: xr.DataArray, coarse: xr.DataArray,
                   priors: xr.Dataset, prior_method: str) -> xr.Dataset:
    variables = {name: _on_grid(values, grid, name) for name, values in inputs.items()}
    for name in ("layover", "shadow"):
        variables[name].attrs.update(MASK_ATTRS)
    variables["prior_height"] = _on_grid(priors["prior_height"].astype(np.float32), grid, "prior_height")
    variables["prior_mask"] = _on_grid(priors["prior_mask"].astype(np.uint8), grid, "prior_mask")
    variables["coarse_height"] = _on_grid(coarse.astype(np.float32), grid, "coarse_height")
    if priors["prior_mask"].values.any():
        distance = distance_map(priors["prior_mask"]).values
        interpolated = interpolate_priors(priors, method=prior_method).values
        residuals = priors[["prior_height", "prior_mask"]].copy()
        residuals["prior_height"] = priors["prior_height"] - coarse.values
        # A prior beyond the coarse DEM (a real product's grid need not reach the scene's
        # edge) has no residual.
        residuals["prior_mask"] = priors["prior_mask"] * np.isfinite(residuals["prior_height"]).astype(np.uint8)
        if residuals["prior_mask"].values.any():
            correction = interpolate_priors(residuals, method=prior_method).values
        else:
            correction = np.zeros(grid.shape)
    else:
        # No known height: every cell is farther from one than the grid is wide, and there
        # is nothing to interpolate (the coarse DEM is its own correction).
        dy, dx = cell_size_m(grid)
        distance = np.full(grid.shape, math.hypot(grid.shape[0] * dy, grid.shape[1] * dx))
        interpolated = np.full(grid.shape, np.nan)
        correction = np.zeros(grid.shape)
    variables["prior_distance"] = _on_grid(distance.astype(np.float32), grid, "prior_distance")
    variables["prior_interpolated"] = _on_grid(interpolated.astype(np.float32), grid, "prior_interpolated")
    variables["coarse_corrected"] = _on_grid((coarse.values + correction).astype(np.float32), grid, "coarse_corrected")
    scene = xr.Dataset(variables)
    return scene.rio.write_crs(grid.rio.crs)


def observed_scene(
    sar: Any,
    coarse_dem: Any,
    geometry: RadarGeometry | None,
    priors: Any,
    *,
    grid: Any = None,
    truth: Any = None,
    measurement: str = "IW/VV",
    points_crs: Any = None,
    points_vertical_datum: str | None = None,
    points_geoid_grid: Any = None,
    prior_method: str = "linear",
    other: tuple[Any, RadarGeometry | None] | None = None,
    projection: Literal["exact", "bilinear"] = "exact",
    sar_quantity: str = "sigma0",
    sar_db: bool = False,
    register: bool = True,
    inversion: bool = False,
    inversion_settings: InversionSettings | None = None,
    inversion_blocks: int | None = None,
    client: Any = None,
    name: str | None = None,
    progress: bool = True,
) -> xr.Dataset:
    """A terrain scene from a real observation, or several (dates, passes): the model's
    inputs for a user's own data.

    Parameters
    ----------
    sar : the observation, anything :func:`sarheight.layover.reconstruct` takes (a
        Sentinel-1 SAFE product path, a calibrated xarray-sentinel measurement, a radar
        geometry array with ``geometry``, or a geocoded GeoTIFF / map DataArray), or a
        sequence of them: dates and passes. They are read in radar geometry over the DEM
        and grouped (:func:`sarheight.inversion.composite_images`: the dates of one
        acquisition grid whose level agrees are averaged, looks summed; a date of another
        level, wet snow or frozen ground, kept apart); the first observation's pass is the
        scene's (``sar_*``, its composite), the first of the opposite direction its
        ``other_*``.
    coarse_dem : the DEM a user has (anything :func:`sarheight.dem.open_dem` takes; WGS84
        ellipsoidal heights: open it with ``open_dem(path, vertical_datum=...)`` first if
        it is on a geoid).
    geometry : the acquisition geometry (None: read from each SAFE product), one for every
        observation, or a sequence of one per observation.
    priors : the known heights: a Dataset of :func:`sarheight.priors.sample_priors` on the
        scene grid, or points (a CSV, GeoJSON or GeoPackage path, or a DataFrame of x, y,
        height) that are put on it (their heights WGS84-ellipsoidal), or None for none.
    points_crs, points_vertical_datum : the CRS of points given as a CSV or DataFrame (the
        other formats carry theirs) and the datum of their heights ("ellipsoid", "egm96",
        "egm2008": converted), as :func:`sarheight.priors.sample_priors` takes them.
    points_geoid_grid : the raster of geoid undulations that converts the points' heights
        on a geoid (:func:`sarheight.dem.geoid_undulation`); None: PROJ's.
    grid : the scene's grid: a DEM-like raster (path or DataArray) whose cells the scene
        takes, ideally at the SAR's pixel size; default the coarse DEM's own grid. The
        coarse DEM is resampled to it bilinearly.
    truth : a reference DEM (ellipsoidal heights) for ``height``, to evaluate a model on
        real data; None: the scene has no ``height``.
    measurement : the swath/polarisation of a SAFE product.
    prior_method : the method of :func:`sarheight.priors.interpolate_priors` for
        ``prior_interpolated``.
    other : ``(sar, geometry)`` of the opposite pass, giving ``other_sar_reconstructed``
        and ``other_sar_geocoded``.
    projection : as in :func:`sarheight.layover.reconstruct`.
    sar_quantity, sar_db : what a geocoded (map-grid) ``sar`` holds, as
        :func:`sarheight.layover.reconstruct` takes them (the other pass's too).
    register : register the coarse DEM to the image(s) before anything else
        (:func:`sarheight.inversion.register_to_images`; ``image_registration_*``
        attributes), where the image can tell the shift; the priors' registration then
        measures what is left (``coregistration_*``), a second opinion.
    inversion : also refine by inverting the simulator against every observation
        (:func:`sarheight.inversion.invert_dem`): ``inverted`` (m) and
        ``inversion_readable``, with ``inversion_*`` attributes.
    inversion_settings : the inversion's weights and regularisation (default
        :class:`sarheight.inversion.InversionSettings`).
    inversion_blocks, client : run the inversion block by block (cells a side of a block)
        on threads or a dask.distributed cluster, as :func:`sarheight.inversion.invert_dem`
        takes them.
    name : the scene's name (attribute ``scene_name``); default from the inputs.
    progress : show progress bars (only on a terminal).

    Returns
    -------
    xr.Dataset on the grid with the variables the module docstring lists.
    """
    native = open_dem(coarse_dem)
    if grid is None:
        grid_dem = native
    else:
        grid_dem = open_dem(grid, vertical_datum="ellipsoid") if not isinstance(grid, xr.DataArray) else grid
    # The reconstruction runs on the coarse DEM resampled bilinearly to the grid (a smooth
    # surface without the overshoot of sharper kernels); the sharper resamplings are
    # baselines and the refinement's reference.
    coarse = open_dem(upsample(native, grid_dem, "bilinear"), copy=False)
    observations = observation_list(sar, geometry, other)
    groups, own, opposite = _read_observations(observations, coarse, measurement=measurement,
                                               sar_quantity=sar_quantity, sar_db=sar_db)
    image_registration = None
    if register:
        # Before every method: the coarse DEM moved to where the image says its terrain is,
        # measured with its back-projection (a smooth surface, no coarse grid drawn in it).
        native_dy, native_dx = cell_size_m(native)
        image_registration = register_to_images(open_dem(back_project(native, grid_dem), vertical_datum="ellipsoid"),
                                                groups, coarse_cell_m=math.sqrt(native_dy * native_dx))
        east, north = image_registration.applied_shift()
        if east or north:
            native = shifted(native, coarse, east, north)
            coarse = open_dem(upsample(native, grid_dem, "bilinear"), copy=False)
    resampled = {COARSE_VARIABLES[method]: upsample(native, grid_dem, method) for method in ("bicubic", "lanczos")}
    resolved = _resolve_priors(priors, coarse, points_crs, points_vertical_datum, points_geoid_grid)
    resolved = check_priors_against(resolved, coarse)
    inputs, attrs = _pass_inputs(own.image, coarse, own.geometry, measurement=measurement, projection=projection,
                                 progress=progress)
    scene = _scene_dataset(inputs, coarse, coarse, resolved, prior_method)
    for variable, values in resampled.items():
        scene[variable] = _on_grid(values.astype(np.float32), coarse, variable)
    dy, dx = cell_size_m(native)
    # Where the image registered the DEM (to decimetres or metres), the priors' registration
    # is a second opinion, recorded; where it could not, the priors register it.
    refined, registration = refined_without_sar(native, coarse, resolved, math.sqrt(dy * dx),
                                                register=image_registration is None or not image_registration.applied)
    for variable, values in refined.items():
        scene[variable] = _on_grid(values, coarse, variable)
    if opposite is not None:
        other_inputs, other_attrs = _pass_inputs(opposite.image, coarse, opposite.geometry, measurement=measurement,
                                                 projection=projection, progress=progress)
        scene = _with_other_pass(scene, other_inputs, other_attrs)
        scene.attrs["other_dates"] = int(opposite.dates)
    if inversion:
        inverted = invert_dem(inversion_reference(scene, (inversion_settings or InversionSettings()).reference)
                              .rio.write_crs(coarse.rio.crs), native, groups,
                              prior_height=resolved["prior_height"].values, prior_mask=resolved["prior_mask"].values,
                              coarse_cell_m=math.sqrt(dy * dx), settings=inversion_settings, blocks=inversion_blocks,
                              client=client)
        scene["inverted"] = _on_grid(inverted["height"].values, coarse, "inverted")
        if "readable" in inverted:
            scene["inversion_readable"] = _on_grid(inverted["readable"].values, coarse, "inversion_readable")
        scene.attrs.update({key: value for key, value in inverted.attrs.items() if key.startswith("inversion_")})
    if truth is not None:
        scene["height"] = _on_grid(upsample(open_dem(truth), coarse, "bilinear", what="the reference DEM")
                                   .astype(np.float32), coarse, "height")
    grid_dy, grid_dx = cell_size_m(coarse)
    scene.attrs.update(_scene_attrs(attrs, kind="observed", name=name, dem_name=_source_name(coarse_dem),
                                    prior_method=prior_method))
    scene.attrs.update(registration)
    if image_registration is not None:
        scene.attrs.update(image_registration.to_attrs())
    scene.attrs.update(coarse_cell_m=math.sqrt(dy * dx), grid_cell_m=math.sqrt(grid_dy * grid_dx),
                       coarse_factor=round(math.sqrt(dy * dx / (grid_dy * grid_dx)), 3), dates=int(own.dates),
                       images=len(observations), image_groups=len(groups))
    return scene


def observation_list(sar: Any, geometry: Any, other: tuple[Any, Any] | None = None
                     ) -> list[tuple[Any, RadarGeometry | None]]:
    """The observations a refinement is given, as (observation, geometry) pairs: ``sar``
    one observation or a sequence of them (dates, passes), ``geometry`` one geometry for
    all (None: each SAFE product's own) or a sequence of one per observation, and
    ``other`` an opposite pass's ``(sar, geometry)``, appended.

    Raises
    ------
    InvalidInputError : no observation, or a sequence of geometries not one per image.
    """
    many = isinstance(sar, (list, tuple))
    images = list(sar) if many else [sar]
    if not images:
        raise InvalidInputError("no observation was given: give at least one SAR image")
    if isinstance(geometry, (list, tuple)):
        if len(geometry) != len(images):
            raise InvalidInputError(f"{len(geometry)} geometries for {len(images)} observations: give one geometry "
                                    "per observation (or one for all, or None for SAFE products)")
        geometries = list(geometry)
    else:
        geometries = [geometry] * len(images)
    pairs = list(zip(images, geometries, strict=True))
    if other is not None:
        pairs.append((other[0], other[1]))
    return pairs


def _read_observations(observations: list[tuple[Any, RadarGeometry | None]], coarse: xr.DataArray, *,
                       measurement: str, sar_quantity: str, sar_db: bool
                       ) -> tuple[list[InversionImage], InversionImage, InversionImage | None]:
    """Every observation read in radar geometry over the coarse DEM and grouped
    (:func:`sarheight.inversion.composite_images`); the group of the first observation's
    acquisition (the scene's own pass) and the first group of the opposite pass."""
    images = []
    for index, (sar, geometry) in enumerate(observations):
        label = f"observation {index + 1} of {len(observations)} ({_source_name(sar)})" if len(observations) > 1 \
            else None
        try:
            images.append(radar_image(sar, geometry, coarse, measurement=measurement, sar_quantity=sar_quantity,
                                      sar_db=sar_db, name=label or _source_name(sar)))
        except InvalidInputError as error:
            if label is None:
                raise
            raise InvalidInputError(f"{label}: {error}") from None
    groups = composite_images(images)
    first = images[0].geometry
    own = next(group for group in groups if group.geometry is first or group.geometry.to_attrs() == first.to_attrs())
    direction = pass_direction(own.geometry)
    opposite = next((group for group in groups if pass_direction(group.geometry) != direction), None)
    return groups, own, opposite


#: The spread (dB, robust standard deviation) of an observation's values below which it
#: carries no relief: speckle alone spreads a Sentinel-1 image by several dB even after
#: multi-looking, a constant fill or a placeholder by none.
MIN_OBSERVED_SPREAD_DB = 0.5
#: The levels (dB, median under the DEM) a calibrated Sentinel-1 backscatter image lies
#: within over land; outside, the quantity or the units are most likely not the ones said.
OBSERVED_LEVEL_DB = (-35.0, 10.0)
#: Relief (m) below which a coarse DEM is flat: nothing of the terrain for the SAR to read.
MIN_RELIEF_M = 1.0


def check_refinement_inputs(scene: xr.Dataset) -> None:
    """Refuse or warn about what a refinement is given but cannot refine with, before the
    model runs: an observation without relief information (constant or nearly constant
    under the DEM, linear or dB: refused), an observation whose level is far from
    Sentinel-1's backscatter (warned: the quantity or the units are wrong), a coarse DEM
    that is flat or whose heights look like kilometres (warned).

    Parameters
    ----------
    scene : a scene of a user's data (:func:`observed_scene`): its ``coarse_height`` and
        the attributes ``observed_median_db`` and ``observed_spread_db`` of the
        observation (:func:`sarheight.observation.intensity_summary`).

    Raises
    ------
    InvalidInputError : the observation carries no relief.
    """
    for prefix, which in (("", "the SAR image"), ("other_", "the opposite pass's SAR image")):
        spread = scene.attrs.get(f"{prefix}observed_spread_db")
        median = scene.attrs.get(f"{prefix}observed_median_db")
        if spread is None or not math.isfinite(float(spread)):
            continue
        if float(spread) < MIN_OBSERVED_SPREAD_DB:
            raise InvalidInputError(
                f"{which} is {'constant' if float(spread) == 0 else 'nearly constant'} where the DEM falls (median "
                f"{float(median):.1f} dB, spread {float(spread):.2f} dB; speckle alone gives several dB): it carries no "
                "relief to refine the DEM with (a placeholder, a mask or a fill?); give the calibrated image itself")
        low, high = OBSERVED_LEVEL_DB
        if not low <= float(median) <= high:
            warnings.warn(
                f"{which}'s median under the DEM is {float(median):.1f} dB, outside the {low:g}..{high:g} dB of "
                "calibrated Sentinel-1 backscatter over land: is the quantity (--sar-quantity) or the unit "
                "(--sar-db) the one said, or is it amplitude or digital numbers? The refinement reads the relief "
                "from the level's changes, and would read it wrong", PlausibilityWarning, stacklevel=user_stacklevel())
    heights = np.asarray(scene["coarse_height"].values, dtype=np.float64)
    finite = heights[np.isfinite(heights)]
    if not finite.size:
        return
    relief = float(finite.max() - finite.min())
    if relief < MIN_RELIEF_M:
        warnings.warn(
            f"the coarse DEM is flat (its heights span {relief:.2g} m): a refinement adds the relief the SAR and the "
            "priors show, but check that it is the DEM (not a mask, a fill or a single level)",
            PlausibilityWarning, stacklevel=user_stacklevel())
    elif -0.5 <= finite.min() and finite.max() <= 9.0 and not np.allclose(finite, np.round(finite)):
        warnings.warn(
            f"the coarse DEM's heights span {finite.min():.3g}..{finite.max():.3g}: if they are in kilometres, "
            "multiply them by 1000 (the refinement needs metres)", PlausibilityWarning, stacklevel=user_stacklevel())


def refined_without_sar(native: xr.DataArray, grid: xr.DataArray, priors: xr.Dataset,
                        coarse_cell_m: float, *, register: bool = True
                        ) -> tuple[dict[str, np.ndarray], dict[str, float | int]]:
    """The coarse DEM ``native`` (on its own grid) refined on ``grid`` without SAR and
    without learning (:mod:`sarheight.backprojection`): registered horizontally to the
    priors (``coarse_registered``: resampled with a Lanczos kernel), back-projected (``coarse_backprojected``), then corrected by the priors'
    residuals kriged (``coarse_refined``, with their standard deviation
    ``prior_correction_std``, m; NaN without priors): float32 arrays on the grid; and the
    co-registration's attributes. ``register=False``: the priors' registration is
    measured and recorded (``coregistration_applied`` 0) but not applied: the image has
    registered the DEM, and the priors are its second opinion."""
    from .backprojection import back_project, coregister, prior_correction

    registered, registration = coregister(native, grid, priors["prior_height"].values, priors["prior_mask"].values)
    if not register:
        registered = native
    backprojected = back_project(registered, grid)
    lanczos = upsample(registered, grid, "lanczos").values
    known = registration.corrected_priors(backprojected, priors["prior_height"].values)
    correction, deviation = prior_correction(backprojected, known, priors["prior_mask"].values,
                                             coarse_cell_m=coarse_cell_m)
    refined = backprojected.values + correction
    arrays = {"coarse_registered": lanczos.astype(np.float32),
              "coarse_backprojected": backprojected.values.astype(np.float32),
              "coarse_refined": refined.astype(np.float32),
              "prior_correction_std": np.where(np.isfinite(backprojected.values), deviation, np.nan).astype(np.float32)}
    return arrays, {**registration.to_attrs(), "coregistration_applied": int(register)}


#: The references the inversion may start from (:attr:`InversionSettings.reference`):
#: the coarse DEM back-projected (which also sharpens a real product's errors) or resampled
#: with a Lanczos kernel, each registered and corrected by the priors' kriged residuals.
INVERSION_REFERENCES = ("back_projection", "lanczos")


def inversion_reference(scene: xr.Dataset, reference: str = "back_projection") -> xr.DataArray:
    """The heights the inversion starts from and keeps the coarse-cell means of: the
    scene's ``coarse_refined`` (back-projection, kriged priors) or its Lanczos resampling
    (``coarse_registered``) corrected by the same kriged residuals."""
    if reference not in INVERSION_REFERENCES:
        raise InvalidInputError(f"reference must be one of {', '.join(INVERSION_REFERENCES)}, got {reference!r}")
    if reference == "back_projection":
        return scene["coarse_refined"]
    kriged = scene["coarse_refined"].values.astype(np.float64) - scene["coarse_backprojected"].values
    values = scene["coarse_registered"].values + np.where(np.isfinite(kriged), kriged, 0.0)
    return scene["coarse_registered"].copy(data=values.astype(np.float32))


def _with_other_pass(scene: xr.Dataset, other_inputs: dict[str, np.ndarray], other_attrs: dict) -> xr.Dataset:
    grid = scene["coarse_height"]
    for name in ("sar_reconstructed", "sar_geocoded", "local_incidence_angle"):
        attrs = {**_ATTRS[name], "long_name": _ATTRS[name]["long_name"] + ", opposite pass"}
        scene[f"other_{name}"] = _on_grid(other_inputs[name], grid, f"other_{name}", attrs)
    for key in ("heading_deg", "look_side", "observed_median_db", "observed_spread_db", "observed_sampled"):
        if key in other_attrs:
            scene.attrs[f"other_{key}"] = other_attrs[key]
    return scene


def _source_name(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).stem
    if isinstance(source, xr.DataArray):
        return str(source.attrs.get("dem_name") or source.name or "dem")
    return "dem"


def _scene_attrs(reconstruction_attrs: dict, *, kind: str, name: str | None, dem_name: str,
                 **parameters: Any) -> dict[str, Any]:
    keep = {key: value for key, value in reconstruction_attrs.items()
            if key.startswith(("geometry_", "observed_")) or key in ("product", "mission", "heading_deg", "look_side")}
    heading = reconstruction_attrs.get("geometry_heading_deg", reconstruction_attrs.get("heading_deg"))
    direction = None
    if heading is not None:
        direction = _direction_of_heading(float(heading))
    attrs = {
        "kind": kind,
        "dem_name": dem_name,
        "scene_name": name or f"{dem_name}_{direction or 'pass'}",
        "sarheight_version": __version__,
        **keep,
        **{key: value for key, value in parameters.items() if value is not None},
    }
    if direction is not None:
        attrs["pass_direction"] = direction
    return attrs


def simulate_scene(
    dem: Any,
    geometry: RadarGeometry,
    *,
    coarse_factor: int = 3,
    prior_fraction: float | None = 1e-3,
    prior_count: int | None = None,
    prior_pattern: str = "random",
    prior_noise_m: float = 0.0,
    prior_method: str = "linear",
    looks: float | None = 4.4,
    nesz_db: float | None = -22.0,
    seed: int = 0,
    other_geometry: RadarGeometry | None = None,
    projection: Literal["exact", "bilinear"] = "exact",
    law: str = "empirical",
    land_cover_db: float = 3.0,
    land_cover_seed: int | None = None,
    coarse_errors: CoarseDemErrors | None = None,
    prior_errors: PriorErrors | None = None,
    ground: Ground | None = None,
    unscored: Any = None,
    dates: int = 1,
    date_conditions: Sequence[DateCondition] | None = None,
    register: bool = True,
    inversion: bool = False,
    inversion_settings: InversionSettings | None = None,
    name: str | None = None,
    progress: bool = True,
) -> xr.Dataset:
    """A simulated terrain scene: the observation from the fine DEM, everything else from
    a DEM ``coarse_factor`` times coarser, and the fine DEM as the truth.

    The coarse DEM is the ideal one (the block mean on an aligned grid,
    :func:`block_mean`) unless ``coarse_errors`` describe a real product's
    (:func:`sarheight.coarse_dem.coarse_product`: correlated and slope-dependent error, a
    geolocation shift, a grid not aligned with the fine one); the priors are exact unless
    ``prior_errors`` give their instrument's; the ground follows one ``law`` with
    land-cover patches unless ``ground`` (:class:`sarheight.ground.Ground`: land cover that
    follows the terrain, a law per class) is given.

    Parameters
    ----------
    dem : the true (fine) DEM, anything :func:`sarheight.dem.open_dem` takes (WGS84
        ellipsoidal heights, m). Its grid is the scene's.
    geometry : the acquisition geometry (:func:`scene_geometry` makes a Sentinel-1-like one).
    coarse_factor : how much coarser the DEM used for the reconstruction is
        (:func:`degrade_dem`): 1 would leak the truth into the inputs.
    prior_fraction, prior_count : how many known heights, as a share of the DEM's cells
        or a number (give one; ``prior_count`` wins when both are set).
    prior_pattern : ``"random"``, ``"tracks"`` (altimeter-like lines) or ``"clusters"``
        (GNSS campaigns), as :func:`sarheight.priors.sample_priors` draws them.
    prior_noise_m : standard deviation (m) of the error of the known heights.
    prior_method : the interpolation of ``prior_interpolated``.
    looks, nesz_db : speckle looks and noise floor (dB) of the observation, as in
        :func:`sarheight.simulate.simulate_sar` (a temporal composite of N dates of 4.4
        looks: ``looks=4.4 * N``).
    seed : seeds the land cover, speckle, noise and the priors' draw.
    other_geometry : the opposite pass: also simulate and reconstruct it
        (``other_sar_reconstructed``, ``other_sar_geocoded``), with the same priors.
    projection : as in :func:`sarheight.simulate.simulate`.
    law, land_cover_db : the ground's sigma0 law and land-cover contrast (dB), as in
        :func:`sarheight.simulate.simulate_sar`; both passes see the same land cover.
    land_cover_seed : the seed of that land cover (default ``seed``).
    coarse_errors : the coarse product's errors (their ``factor`` must be
        ``coarse_factor``), drawn with :func:`sarheight.coarse_dem.draw_errors`; None: the
        ideal block mean.
    prior_errors : the priors' instrument errors
        (:func:`sarheight.priors.draw_prior_errors`); None: exact heights (plus
        ``prior_noise_m``).
    ground : the ground's sigma0 per terrain class (:func:`sarheight.ground.draw_ground`),
        instead of ``law`` and ``land_cover_db``.
    unscored : cells (bool, on the DEM grid) whose true height the scene leaves out of
        ``height`` (NaN: neither trained on nor scored), such as sea at a constant height.
    dates, date_conditions : a stack: ``dates`` observations per pass, each with its own
        speckle, the ground of each as its :class:`sarheight.ground.DateCondition` says
        (moisture, wet snow; :func:`sarheight.ground.draw_date_conditions` draws them;
        default ``dates`` dates of the same ground). The scene's ``sar_*`` are the
        composite of the dates that agree (:func:`observed_scene`).
    register, inversion, inversion_settings : as :func:`observed_scene` takes them.
    name : the scene's name; default ``<dem>_<pass>_c<factor>_s<seed>``.
    progress : show progress bars (only on a terminal).

    Returns
    -------
    xr.Dataset on the DEM grid with the variables the module docstring lists, ``height``
    the truth; attrs record the geometry, the DEM and the parameters.
    """
    truth = open_dem(dem)
    if prior_count is None and prior_fraction is None:
        raise InvalidInputError("give prior_fraction or prior_count: a scene needs known heights")
    if coarse_errors is not None and coarse_errors.factor != int(coarse_factor):
        raise InvalidInputError(f"coarse_errors are of a {coarse_errors.factor}x product, coarse_factor is "
                                f"{coarse_factor}: draw them for the scene's factor")
    if coarse_errors is None or coarse_errors.is_ideal:
        coarse = block_mean(truth, coarse_factor)
    else:
        coarse = coarse_product(truth, coarse_errors, seed=seed)
    priors = sample_priors(truth, **({"count": prior_count} if prior_count is not None else
                                     {"fraction": prior_fraction}),
                           pattern=prior_pattern, noise_m=prior_noise_m, seed=seed, errors=prior_errors,
                           track_layout=PRIOR_KINDS.get(getattr(prior_errors, "kind", ""), {}).get(
                               "track_layout") or "icesat2")

    observations, geometries = simulate_observations(
        truth, geometry, other_geometry, looks=looks, nesz_db=nesz_db, seed=seed, projection=projection, law=law,
        land_cover_db=land_cover_db, land_cover_seed=land_cover_seed, ground=ground, dates=dates,
        date_conditions=date_conditions)
    conditions = _conditions(dates, date_conditions)
    dem_name = _source_name(dem)
    scene_name = name or f"{dem_name}_{pass_direction(geometry)}_c{coarse_factor}_s{seed}"
    scene = observed_scene(observations, coarse, geometries, priors, grid=truth, prior_method=prior_method,
                           projection=projection, register=register, inversion=inversion,
                           inversion_settings=inversion_settings, name=scene_name, progress=progress)
    height = truth.values.astype(np.float32)
    if unscored is not None:
        left_out = np.asarray(unscored.values if isinstance(unscored, xr.DataArray) else unscored, dtype=bool)
        if left_out.shape != truth.shape:
            raise InvalidInputError(f"unscored is {left_out.shape}, the DEM {truth.shape}: give a mask on the DEM grid")
        height = np.where(left_out, np.float32(np.nan), height)
    scene["height"] = _on_grid(height, truth, "height")
    scene.attrs.update(
        kind="simulated",
        dem_name=dem_name,
        pass_direction=pass_direction(geometry),
        coarse_factor=int(coarse_factor),
        prior_pattern=prior_pattern,
        prior_count=int(priors["prior_mask"].sum()),
        prior_noise_m=float(prior_noise_m),
        prior_error_rms_m=float(priors.attrs.get("prior_error_rms_m", 0.0)),
        **(prior_errors.to_attrs() if prior_errors is not None else {"prior_kind": "exact"}),
        coarse_family=str(coarse.attrs.get("coarse_family", "ideal" if coarse_errors is None or coarse_errors.is_ideal
                                           else "given")),
        **{key: value for key, value in (coarse_errors.to_attrs() if coarse_errors is not None else {}).items()
           if key != "coarse_factor"},
        looks=float(looks) if looks is not None else "none",
        sigma0_law=ground.name if ground is not None else law,
        land_cover_db=float(ground.texture_db if ground is not None else land_cover_db),
        land_cover_seed=int(seed if land_cover_seed is None else land_cover_seed),
        **({"ground_family": ground.family, **ground.to_attrs()} if ground is not None else {}),
        nesz_db=float(nesz_db) if nesz_db is not None else "none",
        seed=int(seed),
        date_conditions=", ".join(condition.name for condition in conditions),
        other_pass=pass_direction(other_geometry) if other_geometry is not None else "none",
        dem_source_vertical_datum=str(truth.attrs.get("source_vertical_datum", "")),
        **{f"geometry_{key}": value for key, value in geometry.to_attrs().items()
           if isinstance(value, (str, int, float))},
    )
    return scene


def _conditions(dates: int, date_conditions: Sequence[DateCondition] | None) -> tuple[DateCondition, ...]:
    if date_conditions is None:
        if isinstance(dates, bool) or not isinstance(dates, (int, np.integer)) or dates < 1:
            raise InvalidInputError(f"dates must be a positive integer, got {dates!r}")
        return (DateCondition(),) * int(dates)
    conditions = tuple(date_conditions)
    if not conditions or not all(isinstance(condition, DateCondition) for condition in conditions):
        raise InvalidInputError("date_conditions must be DateConditions, one per date (draw_date_conditions makes "
                                "them)")
    return conditions


def simulate_observations(
    truth: xr.DataArray,
    geometry: RadarGeometry,
    other_geometry: RadarGeometry | None = None,
    *,
    looks: float | None = 4.4,
    nesz_db: float | None = -22.0,
    seed: int = 0,
    projection: Literal["exact", "bilinear"] = "exact",
    law: str = "empirical",
    land_cover_db: float = 3.0,
    land_cover_seed: int | None = None,
    ground: Ground | None = None,
    dates: int = 1,
    date_conditions: Sequence[DateCondition] | None = None,
) -> tuple[list[xr.DataArray], list[RadarGeometry]]:
    """The observations of a DEM (:func:`sarheight.simulate.simulate_sar`) as a scene
    takes them: each date of ``geometry``'s pass, then each of ``other_geometry``'s, and
    the geometry of each. Parameters as :func:`simulate_scene` takes them.

    Each pass is its own acquisition (its own speckle), and each date of it (the seed
    follows the pass and the date, not the scene file, so both passes' files of a pair
    hold the same images); the dates' grounds follow their conditions
    (:class:`sarheight.ground.DateCondition`), a law and its land cover taken as a
    uniform ground for that.
    """
    conditions = _conditions(dates, date_conditions)
    stack = len(conditions) > 1 or conditions[0] != DateCondition()
    if stack and ground is None:
        # A stack's dates change the ground's laws: the law and its land cover as a ground.
        base_law = {"empirical": SNAP_LAW, "lambert": LAMBERT_LAW}.get(law)
        if base_law is None:
            raise InvalidInputError(f"law must be one of empirical, lambert, got {law!r}")
        ground = Ground.uniform(base_law, truth.shape, texture_db=land_cover_db,
                                texture_seed=seed if land_cover_seed is None else land_cover_seed)

    def observe(pass_geometry: RadarGeometry) -> list[xr.DataArray]:
        offset = (pass_direction(pass_geometry) == "descending") + 2 * (pass_geometry.look_side == "left")
        pass_seed = seed + 1_000_003 * offset
        if not stack:
            if ground is not None:
                return [simulate_sar(truth, pass_geometry, looks=looks, nesz_db=nesz_db, seed=pass_seed,
                                     projection=projection, ground=ground)]
            return [simulate_sar(truth, pass_geometry, looks=looks, nesz_db=nesz_db, seed=pass_seed,
                                 projection=projection, law=law, land_cover_db=land_cover_db,
                                 land_cover_seed=seed if land_cover_seed is None else land_cover_seed)]
        return [simulate_sar(truth, pass_geometry, looks=looks, nesz_db=nesz_db, seed=pass_seed + 7_919 * date,
                             projection=projection, ground=condition.apply(ground))
                for date, condition in enumerate(conditions)]

    observations = observe(geometry)
    geometries = [geometry] * len(observations)
    if other_geometry is not None:
        opposite = observe(other_geometry)
        observations += opposite
        geometries += [other_geometry] * len(opposite)
    return observations, geometries


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
                for name in scene.data_vars if scene[name].ndim == 2}
    attrs = {key: (value if isinstance(value, (str, int, float, np.number)) else str(value))
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
    if min(scene.sizes.get("y", 0), scene.sizes.get("x", 0)) < 2 and scene.rio.transform() == rasterio.transform.Affine.identity():
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
                f"{name}'s {variable} holds {float(values.min()):.3g}..{float(values.max()):.3g} (median {median:.3g}): "
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


def _variant_tag(look_side: str, heading_offset: float) -> str:
    tag = "" if look_side == "right" else "_left"
    return tag + (f"_h{heading_offset:+g}" if heading_offset else "")


def _radiometry_tag(looks: float | None, law: str, land_cover_db: float) -> str:
    """The part of a scene's file name that tells its observation's looks, law and land
    cover apart from the default (4.4 looks, the empirical law, 3 dB of land cover)."""
    tag = "" if looks == 4.4 else f"_looks{looks:g}" if looks is not None else "_nospeckle"
    tag += "" if law == "empirical" else f"_{law}"
    return tag + ("" if land_cover_db == 3.0 else f"_cover{land_cover_db:g}")


def simulate_scenes(
    dems: list[Any],
    out: str | os.PathLike[str],
    *,
    geometries: list[RadarGeometry] | None = None,
    passes: tuple[PassDirection, ...] = ("ascending", "descending"),
    look_sides: tuple[str, ...] = ("right",),
    heading_offsets_deg: tuple[float, ...] = (0.0,),
    incidence_deg: tuple[float, float] = (30.0, 46.0),
    coarse_factors: tuple[int, ...] = (3,),
    prior_patterns: tuple[str, ...] = ("random",),
    seeds: tuple[int, ...] = (0,),
    looks: tuple[float | None, ...] = (4.4,),
    laws: tuple[str, ...] = ("empirical",),
    land_cover_db: tuple[float, ...] = (3.0,),
    coarse_families: tuple[str, ...] = ("ideal",),
    prior_kinds: tuple[str | None, ...] = (None,),
    ground_families: tuple[str | None, ...] = (None,),
    dates: tuple[int, ...] = (1,),
    moisture_db: float = 1.0,
    snow_share: float = 0.2,
    sample: int | None = None,
    unscored: dict[str, Any] | None = None,
    progress: bool = True,
    **scene_options: Any,
) -> list[Path]:
    """Simulate and write one scene file per DEM, geometry, coarse factor, prior pattern,
    observation (looks, law, land cover) and seed, or a random sample of them.

    Parameters
    ----------
    dems : DEMs (paths or DataArrays from :func:`sarheight.dem.open_dem`; a DataArray's
        ``attrs["dem_name"]`` names its files).
    out : the folder of the scene files (made if missing).
    geometries : the geometries of real products (each must cover every DEM); default
        synthetic ones from ``passes``, ``look_sides``, ``heading_offsets_deg`` and
        ``incidence_deg`` centred on each DEM (:func:`scene_geometry`).
    coarse_factors, prior_patterns, seeds : the other axes of the set; a seed draws the
        land cover, the speckle and the priors.
    looks, laws, land_cover_db : the observations: equivalent looks (4.4 a date, 44 a
        composite of ten), the ground's sigma0 law and the land cover's contrast (dB), as
        :func:`simulate_scene` takes them.
    coarse_families : the families of :data:`sarheight.coarse_dem.DEGRADATION_FAMILIES`
        the coarse DEM's errors are drawn from ("ideal": the block mean).
    prior_kinds : kinds of :data:`sarheight.priors.PRIOR_KINDS` whose pattern and errors
        the priors are drawn with; None: ``prior_patterns``, exact.
    ground_families : families of :data:`sarheight.ground.GROUND_FAMILIES` the ground
        (land cover following the terrain, a law per class) is drawn from, instead of
        ``laws`` and ``land_cover_db``; None: those.
    dates, moisture_db, snow_share : stacks: the numbers of dates per pass of the scenes
        (1: one observation a pass), each date its own speckle and its ground's level moved
        by a moisture drawn with ``moisture_db`` standard deviation (dB), ``snow_share`` of
        the dates under wet snow (:func:`sarheight.ground.draw_date_conditions`, from the
        scene's own seed).
    sample : per DEM, how many scenes to draw at random (without repeats, seeded by the
        DEM's name) from all the combinations of the axes above, instead of every one: a
        training set that spans many axes without their product.
    unscored : per DEM name, the cells whose truth its scenes leave out (see
        :func:`simulate_scene`: the sea).
    scene_options : passed to :func:`simulate_scene` (``prior_fraction``, ``nesz_db``, ...).

    Each scene carries the opposite pass (for synthetic geometries: with the same look
    side and heading offset, also when ``passes`` names one pass; for products: the first
    product of the other direction, if any) as its ``other_*`` variables; the scenes of
    one DEM, factor, pattern and seed share their priors. Every drawn property (the coarse
    DEM's errors, the priors' instrument errors, the ground and the land cover) is drawn
    with a seed of its own scene (the CRC-32 of its name without the pass): no two scenes
    share a land cover, except the two passes of a pair, which see the same ground. Files are named
    ``<dem>_<pass>[_left][_h<offset>]_c<factor>[_<coarse family>]_<pattern or kind>[_looks<n>][_<law>][_cover<dB>][_ground-<family>][_dates<n>]_s<seed>.nc``;
    a file that exists is kept, so an interrupted run resumes. Returns the paths, in order.
    """
    import itertools
    import zlib

    from ._threads import bar as progress_bar

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    truths = [open_dem(dem).assign_attrs(dem_name=_source_name(dem)) for dem in dems]
    names = [truth.attrs["dem_name"] for truth in truths]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"two DEMs share a name ({names}): their scene files would collide; rename one")
    unknown = sorted(set(unscored or {}) - set(names))
    if unknown:
        raise InvalidInputError(f"unscored names DEMs {unknown} that are not among {names}")
    if any(family is not None for family in ground_families) and (tuple(laws) != ("empirical",)
                                                                   or tuple(land_cover_db) != (3.0,)):
        raise InvalidInputError("ground_families draw each scene's laws and land cover: leave laws and land_cover_db "
                                "(--law, --land-cover) at their defaults with them")
    if not dates or any(isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1
                        for value in dates):
        raise InvalidInputError(f"dates must be positive numbers of dates per pass, got {dates!r}")
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int) or sample < 1):
        raise InvalidInputError(f"sample must be a positive number of scenes per DEM, got {sample!r}")

    def variants(truth: xr.DataArray) -> list[tuple[str, RadarGeometry, RadarGeometry | None]]:
        if geometries is not None:
            found = []
            for index, geometry in enumerate(geometries):
                others = [g for g in geometries if pass_direction(g) != pass_direction(geometry)]
                tag = f"_g{index}" if len(geometries) > 1 else ""
                found.append((f"{pass_direction(geometry)}{tag}", geometry, others[0] if others else None))
            return found
        found = []
        for look_side in look_sides:
            for offset in heading_offsets_deg:
                made = {direction: scene_geometry(truth, direction, incidence_near_deg=incidence_deg[0],
                                                  incidence_far_deg=incidence_deg[1], look_side=look_side,
                                                  heading_offset_deg=offset) for direction in PASS_HEADINGS}
                for direction in passes:
                    other = next(made[d] for d in PASS_HEADINGS if d != direction)
                    found.append((direction + _variant_tag(look_side, offset), made[direction], other))
        return found

    plans = []
    for truth, dem_name in zip(truths, names, strict=True):
        priors_axis = [kind for kind in prior_kinds if kind is not None] or list(prior_patterns)
        combinations = list(itertools.product(variants(truth), coarse_factors, coarse_families, priors_axis, looks,
                                              laws, land_cover_db, ground_families, dates, seeds))
        if sample is not None and sample < len(combinations):
            rng = np.random.default_rng(zlib.crc32(dem_name.encode()))
            combinations = [combinations[k] for k in sorted(rng.choice(len(combinations), sample, replace=False))]
        plans.append((truth, dem_name, combinations))
    paths: list[Path] = []
    # A scene's warnings (a DEM cropped to the image...) after the bar, once each with a count.
    with deferred_warnings(), progress_bar(total=sum(len(plan[2]) for plan in plans), desc="terrain scenes",
                                           unit="scene", enabled=progress) as bar:
        for truth, dem_name, combinations in plans:
            for (tag, geometry, other), factor, family, priors, scene_looks, law, cover, ground_family, stack, seed \
                    in combinations:
                radiometry = (_radiometry_tag(scene_looks, law, cover) if ground_family is None
                              else _radiometry_tag(scene_looks, "empirical", 3.0) + f"_ground-{ground_family}")
                radiometry += f"_dates{stack}" if stack > 1 else ""
                name = (f"{dem_name}_{tag}_c{factor}{'' if family == 'ideal' else '_' + family}_{priors}"
                        f"{radiometry}_s{seed}")
                path = out / f"{name}.nc"
                if not path.exists():
                    # The two passes of a pair see one ground, one coarse DEM and one set of
                    # priors (each holds the other's image): the draws follow the name
                    # without the pass.
                    pair = tag.removeprefix("ascending").removeprefix("descending")
                    draw = zlib.crc32(name.replace(f"{dem_name}_{tag}_", f"{dem_name}_pair{pair}_", 1).encode())
                    kind = priors if priors in PRIOR_KINDS and priors in prior_kinds else None
                    drawn: dict[str, Any] = {
                        "coarse_errors": None if family == "ideal" else draw_errors(factor, family, draw),
                        "prior_errors": draw_prior_errors(kind, draw + 1) if kind else None,
                        "prior_pattern": PRIOR_KINDS[kind]["pattern"] if kind else priors,
                        "ground": draw_ground(truth, ground_family, draw + 2) if ground_family else None,
                    }
                    if stack > 1:
                        drawn["date_conditions"] = draw_date_conditions(stack, draw + 3, moisture_db=moisture_db,
                                                                        snow_dates=round(snow_share * stack))
                    scene = simulate_scene(truth, geometry, coarse_factor=factor, seed=seed, other_geometry=other,
                                           name=name, looks=scene_looks, law=law, land_cover_db=cover,
                                           land_cover_seed=draw, unscored=(unscored or {}).get(dem_name),
                                           progress=False, **drawn, **scene_options)
                    scene.attrs["coarse_family"] = family
                    write_scene(scene, path)
                paths.append(path)
                bar.update()
    return paths
