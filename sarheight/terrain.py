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
- ``coarse_height``: the coarse DEM on the scene grid, and ``coarse_corrected``: the
  coarse DEM plus the interpolated residuals of the priors from it (the best baseline a
  user with a coarse DEM and a few known heights has without a model);
- ``height``: the truth (simulated scenes; observed scenes with a reference DEM);
- optionally ``other_sar_reconstructed`` and ``other_sar_geocoded``: the opposite pass
  over the same terrain (ascending and descending see the slopes from both sides).

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
from pathlib import Path
from typing import Any, Literal

import numpy as np
import rasterio.warp
import xarray as xr

from ._version import __version__
from .dem import cell_size_m, open_dem
from .errors import InvalidInputError, MissingInputError
from .geometry import RadarGeometry
from .io import atomic_path
from .layover import reconstruct
from .masks import MASK_ATTRS
from .priors import distance_map, interpolate_priors, sample_priors
from .simulate import simulate_sar

logger = logging.getLogger(__name__)

PassDirection = Literal["ascending", "descending"]

#: Sentinel-1's headings over mid-latitudes (degrees clockwise from north).
PASS_HEADINGS = {"ascending": 348.0, "descending": 192.0}

#: The variables every scene has (``height`` only where the truth is known).
INPUT_VARIABLES = (
    "sar_reconstructed", "sar_geocoded", "local_incidence_angle", "layover", "shadow",
    "prior_height", "prior_mask", "prior_distance", "prior_interpolated", "coarse_height", "coarse_corrected",
)

#: The variables of the opposite pass, when a scene has it.
OTHER_PASS_VARIABLES = ("other_sar_reconstructed", "other_sar_geocoded")

_ATTRS = {
    "sar_reconstructed": {"units": "dB", "long_name": "sigma0 reconstructed in layover (reallocated)"},
    "sar_geocoded": {"units": "dB", "long_name": "sigma0 without reallocation (terrain-flattened, as sigma0)"},
    "local_incidence_angle": {"units": "degree", "long_name": "local incidence angle on the coarse DEM"},
    "prior_height": {"units": "m", "long_name": "known heights (WGS84 ellipsoid), NaN where none"},
    "prior_mask": {"long_name": "1 where a height is known"},
    "prior_distance": {"units": "m", "long_name": "distance to the nearest known height"},
    "prior_interpolated": {"units": "m", "long_name": "priors-only interpolation"},
    "coarse_height": {"units": "m", "long_name": "coarse DEM resampled to the scene grid"},
    "coarse_corrected": {"units": "m", "long_name": "coarse DEM plus the interpolated residuals of the priors"},
    "height": {"units": "m", "long_name": "true height above the WGS84 ellipsoid"},
}


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


def degrade_dem(dem: Any, factor: int) -> xr.DataArray:
    """``dem`` as a ``factor`` times coarser DEM would give it, resampled back to its grid.

    The heights are averaged over blocks of ``factor`` x ``factor`` cells (a coarser DEM
    measures the mean surface of its cells; blocks at the edges average what they hold),
    then interpolated bilinearly back to the original cells (``rasterio.warp.reproject``,
    ``Resampling.bilinear``): the smooth surface a user with only the coarse DEM would
    resample to the SAR's grid. ``factor=1`` returns the heights unchanged.
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
    def back_to_fine(resampling: rasterio.warp.Resampling) -> np.ndarray:
        fine = np.full((rows, cols), np.nan, dtype=np.float32)
        rasterio.warp.reproject(
            coarse.astype(np.float32), fine,
            src_transform=coarse_transform, src_crs=dem.rio.crs, src_nodata=np.nan,
            dst_transform=transform, dst_crs=dem.rio.crs, dst_nodata=np.nan, resampling=resampling,
        )
        return fine

    fine = back_to_fine(rasterio.warp.Resampling.bilinear)
    # Bilinear resampling leaves the outer half coarse cell without four neighbours
    # (GDAL then returns nodata): those cells take the nearest coarse value.
    missing = ~np.isfinite(fine) & np.isfinite(dem.values)
    if missing.any():
        fine[missing] = back_to_fine(rasterio.warp.Resampling.nearest)[missing]
    fine[~np.isfinite(dem.values)] = np.nan
    out = dem.copy(data=fine)
    out.attrs.update(coarse_factor=factor, long_name=f"DEM degraded {factor}x and resampled back (bilinear)")
    return out


def _db(values: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10.0 * np.log10(values)
    out[~np.isfinite(out)] = np.nan
    return out.astype(np.float32)


def _on_grid(values: xr.DataArray | np.ndarray, grid: xr.DataArray, name: str, attrs: dict | None = None) -> xr.DataArray:
    data = values.values if isinstance(values, xr.DataArray) else values
    return xr.DataArray(data, dims=("y", "x"), coords={"y": grid["y"], "x": grid["x"]}, name=name,
                        attrs=dict(attrs if attrs is not None else _ATTRS.get(name, {})))


def _resample_to(source: xr.DataArray, grid: xr.DataArray, what: str) -> xr.DataArray:
    """``source`` (heights with a CRS) bilinearly on ``grid``'s cells; NaN outside it."""
    if source.rio.crs == grid.rio.crs and source.shape == grid.shape and np.allclose(
            source.rio.transform(), grid.rio.transform()):
        return source
    out = np.full(grid.shape, np.nan, dtype=np.float32)
    rasterio.warp.reproject(
        source.values.astype(np.float32), out,
        src_transform=source.rio.transform(), src_crs=source.rio.crs, src_nodata=np.nan,
        dst_transform=grid.rio.transform(), dst_crs=grid.rio.crs, dst_nodata=np.nan,
        resampling=rasterio.warp.Resampling.bilinear,
    )
    if not np.isfinite(out).any():
        raise InvalidInputError(f"{what} does not overlap the scene grid: give one that covers it")
    result = grid.copy(data=out)
    result.attrs = {**source.attrs}
    return result


def _pass_inputs(sar: Any, coarse: xr.DataArray, geometry: RadarGeometry | None, *, measurement: str,
                 projection: str, progress: bool) -> tuple[dict[str, np.ndarray], RadarGeometry | None]:
    result = reconstruct(sar, coarse, geometry, measurement=measurement, projection=projection, progress=progress)
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


def _resolve_priors(priors: Any, grid: xr.DataArray, points_crs: Any, points_vertical_datum: str | None) -> xr.Dataset:
    """Priors on ``grid``: a Dataset of :func:`sample_priors` on it, or points to put on it."""
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
    return sample_priors(grid, points=priors, crs=points_crs, vertical_datum=points_vertical_datum)


def _scene_dataset(inputs: dict[str, np.ndarray], grid: xr.DataArray, coarse: xr.DataArray,
                   priors: xr.Dataset, prior_method: str) -> xr.Dataset:
    variables = {name: _on_grid(values, grid, name) for name, values in inputs.items()}
    for name in ("layover", "shadow"):
        variables[name].attrs.update(MASK_ATTRS)
    variables["prior_height"] = _on_grid(priors["prior_height"].astype(np.float32), grid, "prior_height")
    variables["prior_mask"] = _on_grid(priors["prior_mask"].astype(np.uint8), grid, "prior_mask")
    variables["prior_distance"] = _on_grid(distance_map(priors["prior_mask"]).astype(np.float32), grid,
                                           "prior_distance")
    variables["prior_interpolated"] = _on_grid(interpolate_priors(priors, method=prior_method).astype(np.float32),
                                               grid, "prior_interpolated")
    variables["coarse_height"] = _on_grid(coarse.astype(np.float32), grid, "coarse_height")
    residuals = priors[["prior_height", "prior_mask"]].copy()
    residuals["prior_height"] = priors["prior_height"] - coarse.values
    correction = interpolate_priors(residuals, method=prior_method).values
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
    prior_method: str = "linear",
    other: tuple[Any, RadarGeometry | None] | None = None,
    projection: Literal["exact", "bilinear"] = "exact",
    name: str | None = None,
    progress: bool = True,
) -> xr.Dataset:
    """A terrain scene from a real observation: the model's inputs for a user's own data.

    Parameters
    ----------
    sar : the observation, anything :func:`sarheight.layover.reconstruct` takes: a
        Sentinel-1 SAFE product path, a calibrated xarray-sentinel measurement, a radar
        geometry array with ``geometry``, or a geocoded GeoTIFF / map DataArray.
    coarse_dem : the DEM a user has (anything :func:`sarheight.dem.open_dem` takes; WGS84
        ellipsoidal heights: open it with ``open_dem(path, vertical_datum=...)`` first if
        it is on a geoid).
    geometry : the acquisition geometry (None: read from the SAFE product ``sar``).
    priors : the known heights: a Dataset of :func:`sarheight.priors.sample_priors` on the
        scene grid, or points (a CSV, GeoJSON or GeoPackage path, or a DataFrame of x, y,
        height) that are put on it (their heights WGS84-ellipsoidal).
    points_crs, points_vertical_datum : the CRS of points given as a CSV or DataFrame (the
        other formats carry theirs) and the datum of their heights ("ellipsoid", "egm96",
        "egm2008": converted), as :func:`sarheight.priors.sample_priors` takes them.
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
    name : the scene's name (attribute ``scene_name``); default from the inputs.
    progress : show progress bars (only on a terminal).

    Returns
    -------
    xr.Dataset on the grid with the variables the module docstring lists.
    """
    coarse = open_dem(coarse_dem)
    if grid is None:
        grid_dem = coarse
    else:
        grid_dem = open_dem(grid, vertical_datum="ellipsoid") if not isinstance(grid, xr.DataArray) else grid
        coarse = _resample_to(coarse, grid_dem, "the coarse DEM")
        coarse = open_dem(coarse, copy=False)
    resolved = _resolve_priors(priors, coarse, points_crs, points_vertical_datum)
    inputs, attrs = _pass_inputs(sar, coarse, geometry, measurement=measurement, projection=projection,
                                 progress=progress)
    scene = _scene_dataset(inputs, coarse, coarse, resolved, prior_method)
    if other is not None:
        other_inputs, _ = _pass_inputs(other[0], coarse, other[1], measurement=measurement, projection=projection,
                                       progress=progress)
        scene = _with_other_pass(scene, other_inputs)
    if truth is not None:
        scene["height"] = _on_grid(_resample_to(open_dem(truth), coarse, "the reference DEM").astype(np.float32),
                                   coarse, "height")
    scene.attrs.update(_scene_attrs(attrs, kind="observed", name=name, dem_name=_source_name(coarse_dem),
                                    prior_method=prior_method))
    return scene


def _with_other_pass(scene: xr.Dataset, other_inputs: dict[str, np.ndarray]) -> xr.Dataset:
    grid = scene["coarse_height"]
    for name in ("sar_reconstructed", "sar_geocoded"):
        attrs = {**_ATTRS[name], "long_name": _ATTRS[name]["long_name"] + ", opposite pass"}
        scene[f"other_{name}"] = _on_grid(other_inputs[name], grid, f"other_{name}", attrs)
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
            if key.startswith("geometry_") or key in ("product", "mission", "heading_deg", "look_side")}
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
    name: str | None = None,
    progress: bool = True,
) -> xr.Dataset:
    """A simulated terrain scene: the observation from the fine DEM, everything else from
    a DEM ``coarse_factor`` times coarser, and the fine DEM as the truth.

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
        :func:`sarheight.simulate.simulate_sar`.
    seed : seeds the texture, speckle, noise and the priors' draw.
    other_geometry : the opposite pass: also simulate and reconstruct it
        (``other_sar_reconstructed``, ``other_sar_geocoded``), with the same priors.
    projection : as in :func:`sarheight.simulate.simulate`.
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
    coarse = degrade_dem(truth, coarse_factor)
    priors = sample_priors(truth, **({"count": prior_count} if prior_count is not None else
                                     {"fraction": prior_fraction}),
                           pattern=prior_pattern, noise_m=prior_noise_m, seed=seed)

    def observe(pass_geometry: RadarGeometry) -> xr.DataArray:
        # Each pass is its own acquisition (its own speckle), the same in the files of both
        # passes of a pair: the seed follows the pass, not the file.
        offset = (pass_direction(pass_geometry) == "descending") + 2 * (pass_geometry.look_side == "left")
        pass_seed = seed + 1_000_003 * offset
        return simulate_sar(truth, pass_geometry, looks=looks, nesz_db=nesz_db, seed=pass_seed, projection=projection)

    dem_name = _source_name(dem)
    scene_name = name or f"{dem_name}_{pass_direction(geometry)}_c{coarse_factor}_s{seed}"
    other = None
    if other_geometry is not None:
        other = (observe(other_geometry), other_geometry)
    scene = observed_scene(observe(geometry), coarse, geometry, priors, prior_method=prior_method,
                           other=other, projection=projection, name=scene_name, progress=progress)
    scene["height"] = _on_grid(truth.values.astype(np.float32), truth, "height")
    scene.attrs.update(
        kind="simulated",
        dem_name=dem_name,
        pass_direction=pass_direction(geometry),
        coarse_factor=int(coarse_factor),
        prior_pattern=prior_pattern,
        prior_count=int(priors["prior_mask"].sum()),
        prior_noise_m=float(prior_noise_m),
        looks=float(looks) if looks is not None else "none",
        nesz_db=float(nesz_db) if nesz_db is not None else "none",
        seed=int(seed),
        other_pass=pass_direction(other_geometry) if other_geometry is not None else "none",
        dem_source_vertical_datum=str(truth.attrs.get("source_vertical_datum", "")),
        **{f"geometry_{key}": value for key, value in geometry.to_attrs().items()
           if isinstance(value, (str, int, float))},
    )
    return scene


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
    return scene


def _variant_tag(look_side: str, heading_offset: float) -> str:
    tag = "" if look_side == "right" else "_left"
    return tag + (f"_h{heading_offset:+g}" if heading_offset else "")


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
    progress: bool = True,
    **scene_options: Any,
) -> list[Path]:
    """Simulate and write one scene file per DEM, geometry, coarse factor, prior pattern and seed.

    Parameters
    ----------
    dems : DEMs (paths or DataArrays from :func:`sarheight.dem.open_dem`; a DataArray's
        ``attrs["dem_name"]`` names its files).
    out : the folder of the scene files (made if missing).
    geometries : the geometries of real products (each must cover every DEM); default
        synthetic ones from ``passes``, ``look_sides``, ``heading_offsets_deg`` and
        ``incidence_deg`` centred on each DEM (:func:`scene_geometry`).
    coarse_factors, prior_patterns, seeds : the other axes of the set; a seed draws the
        texture, the speckle and the priors.
    scene_options : passed to :func:`simulate_scene` (``prior_fraction``, ``looks``, ...).

    Each scene carries the first geometry of the opposite pass (with the same look side
    and heading offset, for synthetic ones) as its ``other_*`` variables; the scenes of
    one DEM, factor, pattern and seed share their priors. Files are named
    ``<dem>_<pass>[_left][_h<offset>]_c<factor>_<pattern>_s<seed>.nc``; a file that exists
    is kept, so an interrupted run resumes. Returns the paths, in order.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    truths = [open_dem(dem).assign_attrs(dem_name=_source_name(dem)) for dem in dems]
    names = [truth.attrs["dem_name"] for truth in truths]
    if len(set(names)) != len(names):
        raise InvalidInputError(f"two DEMs share a name ({names}): their scene files would collide; rename one")

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
                                                  heading_offset_deg=offset) for direction in passes}
                for direction in passes:
                    others = [made[d] for d in passes if d != direction]
                    found.append((direction + _variant_tag(look_side, offset), made[direction],
                                  others[0] if others else None))
        return found

    total = len(truths) * len(coarse_factors) * len(prior_patterns) * len(seeds) * (
        len(geometries) if geometries is not None else len(passes) * len(look_sides) * len(heading_offsets_deg))
    paths: list[Path] = []
    with tqdm(total=total, desc="terrain scenes", unit="scene", disable=not progress) as bar:
        for truth, dem_name in zip(truths, names, strict=True):
            for tag, geometry, other in variants(truth):
                for factor in coarse_factors:
                    for pattern in prior_patterns:
                        for seed in seeds:
                            name = f"{dem_name}_{tag}_c{factor}_{pattern}_s{seed}"
                            path = out / f"{name}.nc"
                            if not path.exists():
                                scene = simulate_scene(truth, geometry, coarse_factor=factor, prior_pattern=pattern,
                                                       seed=seed, other_geometry=other, name=name, progress=False,
                                                       **scene_options)
                                write_scene(scene, path)
                            paths.append(path)
                            bar.update()
    return paths
