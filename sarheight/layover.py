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
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from ._threads import run_blocks
from ._version import __version__
from .errors import InvalidInputError
from .geometry import RadarGeometry
from .io import write_geotiff
from .kernels.projection import sample_window
from .simulate import (
    MASK_ACTIVE,
    MASK_NONE,
    MASK_OUTSIDE,
    MASK_PASSIVE,
    Contribution,
    Projection,
    _as_dataset,
    _run_simulation,
    _Simulation,
)

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
    if np.iscomplexobj(sar.values):
        raise InvalidInputError(
            "the measurement is complex: give calibrated intensity "
            "(xarray_sentinel.calibrate_intensity(measurement, calibration.betaNought))"
        )
    out = sar.swap_dims({azimuth_dim: "line"}) if azimuth_dim != "line" else sar
    out = out.swap_dims({range_dim: "pixel"}) if range_dim != "pixel" else out
    out = out.rename({"pixel": "sample"})
    return out.drop_vars([c for c in out.coords if c not in ("line", "sample")])


def _observation_on_window(sar: Any, geometry: RadarGeometry | None, window: tuple[int, int, int, int]) -> np.ndarray:
    """The observed intensity on the simulation window (lines x samples), float64."""
    line0, n_lines, sample0, n_samples = window
    if isinstance(sar, xr.DataArray) and "azimuth_time" in sar.dims:
        sar = _from_xarray_sentinel(sar)
    if isinstance(sar, xr.DataArray) and {"line", "sample"} <= set(sar.dims):
        values = sar.transpose("line", "sample")
        lines = np.asarray(values["line"].values) if "line" in values.coords else np.arange(values.shape[0])
        samples = np.asarray(values["sample"].values) if "sample" in values.coords else np.arange(values.shape[1])
        out = np.full((n_lines, n_samples), np.nan)
        rows = lines - line0
        cols = samples - sample0
        keep_r = (rows >= 0) & (rows < n_lines)
        keep_c = (cols >= 0) & (cols < n_samples)
        out[np.ix_(rows[keep_r], cols[keep_c])] = np.asarray(values.values, dtype=np.float64)[np.ix_(keep_r, keep_c)]
        return out
    array = np.asarray(sar, dtype=np.float64)
    if geometry is not None and array.shape == geometry.grid.shape:
        return array[line0:line0 + n_lines, sample0:sample0 + n_samples]
    raise InvalidInputError(
        f"the SAR image has shape {array.shape} but the geometry's grid is "
        f"{None if geometry is None else geometry.grid.shape}: give the full image of the product "
        "grid, or a DataArray with dims (line, sample) and absolute line/sample coordinates"
    )


def _check_intensity(observed: np.ndarray, window: tuple[int, int, int, int]) -> None:
    finite = observed[np.isfinite(observed)]
    if finite.size == 0:
        line0, n_lines, sample0, n_samples = window
        raise InvalidInputError(
            f"the SAR image has no finite value where the DEM falls (lines {line0}..{line0 + n_lines - 1}, "
            f"samples {sample0}..{sample0 + n_samples - 1}): the image does not cover the DEM"
        )
    if np.any(finite < 0):
        raise InvalidInputError(
            "the SAR image has negative intensities: give linear power (e.g. beta0), not amplitude "
            "differences or dB (convert dB with 10 ** (db / 10))"
        )
    if np.isinf(observed).any():
        raise InvalidInputError("the SAR image has infinite values: mask them as NaN first")


def _sample_image(image: np.ndarray, line: np.ndarray, sample: np.ndarray, window, nearest: bool = False) -> np.ndarray:
    """Bilinear (or nearest) interpolation of a window image at fractional absolute (line, sample)."""
    line0, _, sample0, _ = window
    image = np.ascontiguousarray(image, dtype=np.float64)
    out = np.empty(line.shape)
    run_blocks(lambda start, stop: sample_window(image, line[start:stop], sample[start:stop], line0, sample0,
                                                 nearest, out[start:stop]), line.shape[0])
    return out


def reallocation_ratios(state: _Simulation, observed: np.ndarray) -> np.ndarray:
    """Per-pixel ratios I_p a_p / (sum of w c) for the model (channel 0) and gamma (channel 1)
    contributions; 0 where nothing was simulated."""
    pixel_area = np.nan_to_num(state.pixel_area)
    observed = np.nan_to_num(observed, nan=0.0)
    contribution_image, gamma_image = state.images[0], state.images[1]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio_model = np.where(contribution_image > 0, observed * pixel_area / contribution_image, 0.0)
        ratio_gamma = np.where(gamma_image > 0, observed * pixel_area / gamma_image, 0.0)
    return np.ascontiguousarray(np.stack([ratio_model, ratio_gamma]))


def cell_products(state: _Simulation, observed: np.ndarray, energy: np.ndarray, output: Output) -> dict[str, np.ndarray]:
    """Per-cell products (float32) from the gathered energies (2, rows, cols)."""
    sigma_area, gamma_area = state.per_cell["sigma_area"], state.per_cell["gamma_area"]
    cells = state.cells
    shadowed = (state.shadow == MASK_ACTIVE) | (state.shadow == MASK_PASSIVE) | (state.shadow == MASK_OUTSIDE)

    def ratio(numerator: np.ndarray, area: np.ndarray, excluded: np.ndarray) -> np.ndarray:
        out = np.full(area.shape, np.nan, dtype=np.float32)
        np.divide(numerator, area, out=out, where=(area > 0) & ~excluded, casting="same_kind")
        return out

    backscatter = ratio(energy[0], sigma_area if output == "sigma0" else gamma_area, shadowed)
    # Pixels whose gamma area is under 5 % of flat terrain's would divide by almost
    # nothing: cells that land in one are NaN in the flattened product (Small 2011).
    # (NaN cannot enter the gather itself: its row prefix sums would spread it.)
    valid_at_cell = _sample_image(state.valid_pixels.astype(np.float64), cells["line"], cells["sample"],
                                  state.window, nearest=True) > 0.5
    flattened = ratio(energy[1], gamma_area, shadowed | ~valid_at_cell)
    del valid_at_cell
    geocoded = _sample_image(np.nan_to_num(observed, nan=0.0), cells["line"], cells["sample"], state.window)
    geocoded *= np.sin(cells["incidence"])
    pixel_area = state.pixel_area
    with np.errstate(invalid="ignore", divide="ignore"):
        simulated_image = np.where(pixel_area > 0, state.images[0] / np.where(pixel_area > 0, pixel_area, 1), np.nan)
    simulated = _sample_image(simulated_image, cells["line"], cells["sample"], state.window)
    return {
        "energy": energy[0],
        "backscatter": backscatter,
        "flattened": flattened,
        "geocoded": geocoded.astype(np.float32),
        "simulated": simulated.astype(np.float32),
    }


def reallocate(state: _Simulation, observed: np.ndarray, output: Output = "sigma0") -> dict[str, np.ndarray]:
    """Reallocate an observed window image (beta0, linear) with a simulation's weights.

    Returns per-cell arrays: ``energy`` (m^2, reallocated I a), ``backscatter`` (sigma0 or
    gamma0), ``flattened`` (gamma0), ``geocoded`` (sigma0), ``simulated``.
    """
    energy = state.facet_pass(gather=True, ratios=reallocation_ratios(state, observed))[0]
    return cell_products(state, observed, energy, output)


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
          mean beta0 of the cells in each pixel) before reallocation.
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
        from .distributed import reconstruct_distributed

        return reconstruct_distributed(
            sar, dem, geometry, client="threads", rows_per_block=chunks, contribution=contribution,
            output=output, projection=projection, oversample=oversample, measurement=measurement,
        )
    sar, geometry = _resolve_input(sar, geometry, measurement)
    state = _run_simulation(dem, geometry, contribution, projection, oversample)
    if isinstance(sar, xr.DataArray) and {"y", "x"} <= set(sar.dims):
        sar = _radar_image_from_map(sar, state, sar_quantity, sar_db)
    if isinstance(sar, _LazyProduct):
        line0, n_lines, sample0, n_samples = state.window
        sar = sar.loader((line0, line0 + n_lines, sample0, sample0 + n_samples))
    observed = _observation_on_window(sar, geometry, state.window)
    _check_intensity(observed, state.window)
    result = reallocate(state, observed, output)
    return _result_dataset(state, result, output, projection)


def _resolve_input(sar: Any, geometry: RadarGeometry | None, measurement: str):
    """(observation or a loader of it, geometry) from the accepted kinds of input."""
    if isinstance(sar, (str, os.PathLike)) and Path(sar).is_file() and Path(sar).suffix.lower() in (".tif", ".tiff"):
        import rioxarray

        image = rioxarray.open_rasterio(sar, masked=True).squeeze("band", drop=True)
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


def _radar_image_from_map(image: xr.DataArray, state: _Simulation, quantity: str, in_db: bool) -> xr.DataArray:
    """Rebuild radar pixels from an image geocoded to a map grid.

    The image is resampled (bilinear) onto the DEM grid, converted to beta0 with the
    ellipsoid incidence angle of each cell (sigma0 = beta0 sin(theta), gamma0 = beta0
    tan(theta)), and each radar pixel gets the area-weighted mean beta0 of the cells whose
    facets land in it, through the same exact projection as the simulation. Cells in
    shadow carry no signal (only noise) and are left out.
    """
    from rasterio.enums import Resampling

    from .kernels import facets
    from .simulate import _Contribution

    if image.rio.crs is None:
        raise InvalidInputError("the geocoded SAR image has no CRS: write one with image.rio.write_crs(...)")
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
        rebuilt = state.facet_pass(gather=False, contribution=contribution)[-1][0]
        rebuilt[rebuilt < 1e-10 * max(float(np.abs(rebuilt).max()), 1e-300)] = 0.0  # cover-sum residue
        images.append(rebuilt)
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
    simulation = _as_dataset(state, projection, ("local_incidence_angle", "layover", "shadow", "slant_range",
                                                 "azimuth_time"))
    cells = state.cells
    line0, _, sample0, _ = state.window
    rows = np.clip(np.floor(cells["line"] + 0.5).astype(np.int64) - line0, 0, state.mixing.shape[0] - 1)
    cols = np.clip(np.floor(cells["sample"] + 0.5).astype(np.int64) - sample0, 0, state.mixing.shape[1] - 1)
    mixing = np.where(cells["valid"], state.mixing[rows, cols], 0).astype(np.uint16)
    dims = ("y", "x")
    unit_name = "sigma0" if output == "sigma0" else "gamma0"
    ds = xr.Dataset(
        {
            "backscatter": (dims, result["backscatter"].astype(np.float32),
                            {"long_name": f"reallocated {unit_name} (linear)", "units": "1"}),
            "geocoded": (dims, result["geocoded"].astype(np.float32),
                         {"long_name": "conventionally geocoded sigma0 (ellipsoid incidence, linear)", "units": "1"}),
            "flattened": (dims, result["flattened"].astype(np.float32),
                          {"long_name": "terrain-flattened gamma0 (Small 2011, linear)", "units": "1"}),
            "simulated": (dims, result["simulated"].astype(np.float32),
                          {"long_name": "simulated image (sum w c / pixel area) at the cell"}),
            "local_incidence_angle": simulation["local_incidence_angle"],
            "layover": simulation["layover"],
            "shadow": simulation["shadow"],
            "mixing": (dims, mixing, {"long_name": "separate ground segments sharing the cell's pixel"}),
            "slant_range": simulation["slant_range"],
            "azimuth_time": simulation["azimuth_time"],
        },
        coords={"y": simulation["y"], "x": simulation["x"]},
        attrs={**simulation.attrs, "output": output, "sarheight_version": __version__},
    )
    return ds.rio.write_crs(state.dem.rio.crs, inplace=True)


def to_geotiff(result: xr.Dataset, path: str | os.PathLike[str], variables: list[str] | None = None) -> Path:
    """Write a reconstruction (or simulation) to a tiled, compressed GeoTIFF, atomically.

    ``variables`` default: the float products (backscatter, geocoded, flattened, simulated,
    local_incidence_angle) when present. Masks alone are written as uint8 with nodata 255;
    mixed with floats they are stored as float32 values (255 kept). Band descriptions carry
    the names.
    """
    if variables is None:
        preferred = ["backscatter", "geocoded", "flattened", "simulated", "local_incidence_angle"]
        variables = [v for v in preferred if v in result.data_vars]
    return write_geotiff(result[[v for v in variables]], path, variables)


def to_isce3_mask(result: xr.Dataset) -> xr.DataArray:
    """Layover/shadow mask in the ISCE3/OPERA convention: 0 none, 1 shadow, 2 layover, 3 both,
    255 outside the image or no DEM."""
    layover = result["layover"].values
    shadow = result["shadow"].values
    outside = (layover == MASK_OUTSIDE) | (shadow == MASK_OUTSIDE)
    code = ((shadow != MASK_NONE) & ~outside).astype(np.uint8) + 2 * ((layover != MASK_NONE) & ~outside).astype(np.uint8)
    code = np.where(outside, np.uint8(255), code).astype(np.uint8)
    out = xr.DataArray(code, dims=("y", "x"), coords={"y": result["y"], "x": result["x"]}, name="layover_shadow_mask",
                       attrs={"flag_values": "0 1 2 3 255", "flag_meanings": "none shadow layover layover_and_shadow outside"})
    return out.rio.write_crs(result.rio.crs)
