"""The user entries of the simulation: :func:`simulate` (areas, local incidence, layover
and shadow, the contributions projected onto the radar grid) and :func:`simulate_sar` (a
speckled observation of a ground, for tests, demos and training data).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import xarray as xr

from .._version import __version__
from ..compute import Compute, compute_for_run
from ..dem import checked_dem
from ..errors import InvalidInputError
from ..geometry import RadarGeometry
from ..ground import SIGMA0_LAWS, CellLaws, Ground, lognormal_texture
from ..threads import progress_bar
from .contribution import Contribution, Projection, values_on_dem_grid
from .engine import check_simulation_options, run_simulation, simulation_passes


def simulate(
    dem: Any,
    geometry: RadarGeometry,
    *,
    contribution: Contribution = "model",
    projection: Projection = "exact",
    oversample: int | Literal["auto"] = "auto",
    progress: bool = True,
    device: str | Compute | None = None,
) -> xr.Dataset:
    """Simulate the radar imaging of a DEM.

    Parameters
    ----------
    dem : DEM as :func:`sarheight.dem.open_dem` takes it (WGS84 ellipsoidal heights, m).
    geometry : acquisition geometry.
    contribution : what each facet returns: ``"model"`` (default: the empirical sigma0 law
        of SNAP's and ISCE3's simulators, 0.0118 cos t / (sin t + 0.111 cos t)^3, times the
        facet's sigma area), ``"gamma"`` (the projected area A_gamma: constant gamma0,
        Small 2011), any callable of the local incidence angle (degrees) returning linear
        sigma0, or a DataArray of per-cell weights on the DEM grid.
    projection : ``"exact"`` polygon-pixel overlap weights (Shiroma et al. 2022), or
        ``"bilinear"`` splatting of facet centres (fast approximation where the DEM spacing
        is about the pixel spacing; on a DEM coarser than the pixels its oversampling
        makes it slower than exact: ``sarheight benchmark``'s 30 m DEM under 10 m pixels
        takes k = 6 and runs at 0.85x exact's speed).
    oversample : facets per DEM cell side; ``"auto"``: 2 for exact (the DEM upsampled 2x, as
        OPERA does), for bilinear enough that a typical facet (the median cell step) spans
        at most about half a pixel, and at least 2.
    progress : show a progress bar (only when standard error is a terminal).
    device : where the passes run, as :func:`sarheight.reconstruct` takes it (None: the
        numba kernels on the CPU; ``"cuda"``: torch on the GPU where it has the pass).

    Returns
    -------
    xr.Dataset with, on the DEM grid (y, x): ``local_incidence_angle`` (deg),
    ``gamma_area``, ``sigma_area`` (m^2), ``contribution``, ``layover``, ``shadow`` (uint8:
    0 none, 1 active, 2 passive, 255 outside the image / no DEM), ``slant_range`` (m),
    ``radar_line``, ``radar_sample`` (the cell's fractional position in the product grid;
    named so beside the radar grid's own ``line``/``sample`` dimensions),
    ``azimuth_time``, ``incidence_angle``; and on the radar grid
    (line, sample; absolute product indices cropped to the DEM footprint):
    ``simulated_area`` (sum of w*c over the pixel area), ``simulated_gamma_area``,
    ``pixel_area`` (m^2), ``mixing`` (separate ground segments per pixel), ``valid`` (gamma
    area >= 5 % of flat terrain's).
    """
    compute = compute_for_run(device)
    check_simulation_options(geometry, projection, oversample)
    checked = checked_dem(dem, copy=False)
    with progress_bar(checked.shape[0], "simulate", progress) as update:
        state = run_simulation(checked, geometry, contribution=contribution, projection=projection,
                               oversample=oversample, progress=update, compute=compute)
    dataset = state.to_dataset()
    if compute != Compute():
        dataset.attrs["computed_on"] = compute.where((*simulation_passes(projection), "clear_residue",
                                                      "radar_products"))
    return dataset


def texture(shape: tuple[int, int], *, seed: int = 0, correlation_cells: float = 6.0,
            contrast_db: float = 3.0) -> np.ndarray:
    """A land-cover-like multiplicative texture (mean 1): smooth patches with log-normal
    values, their standard deviation ``contrast_db`` (dB; 0: all ones), independent of
    the terrain's slopes (:func:`sarheight.ground.lognormal_texture`)."""
    return lognormal_texture(shape, seed=seed, contrast_db=contrast_db, correlation_cells=correlation_cells)


def noise_floor(nesz_db: float, sin_incidence: np.ndarray) -> np.ndarray:
    """The additive noise floor (linear beta0) of an image of noise-equivalent sigma0
    ``nesz_db`` (dB) at pixels whose ellipsoid incidence has the sine ``sin_incidence``
    (NaN taken as 1; the sine bounded below at 1e-3): what :func:`simulate_sar` adds, and
    what a model of its images adds or takes off."""
    return 10.0 ** (nesz_db / 10.0) / np.maximum(np.nan_to_num(sin_incidence, nan=1.0), 1e-3)


def simulate_sar(
    dem: Any,
    geometry: RadarGeometry,
    *,
    backscatter: xr.DataArray | Callable[[np.ndarray], np.ndarray] | None = None,
    looks: float | None = 4.4,
    nesz_db: float | None = -22.0,
    seed: int = 0,
    projection: Projection = "exact",
    oversample: int | Literal["auto"] = "auto",
    return_truth: bool = False,
    law: str = "empirical",
    land_cover_db: float = 3.0,
    land_cover_seed: int | None = None,
    ground: Ground | None = None,
    device: str | Compute | None = None,
) -> xr.DataArray | tuple[xr.DataArray, xr.DataArray]:
    """Simulate a beta0-like radar observation (linear intensity) of a DEM.

    Parameters
    ----------
    dem, geometry : as for :func:`simulate`.
    backscatter : the true ground sigma0 (linear): a DataArray on the DEM grid, or a
        callable of the local incidence angle (degrees); default the sigma0 law ``law``
        times a land-cover-like texture (:func:`texture`, seeded by ``seed``) of
        ``land_cover_db``.
    law : with ``backscatter=None``, the ground's sigma0 law of the local incidence, a name
        of :data:`SIGMA0_LAWS` ("empirical": the law the reconstruction models;
        "lambert": another surface), carried as a ground of one class is (each facet the
        law of its own local incidence times its cell's texture).
    land_cover_db : with ``backscatter=None``, the standard deviation (dB) of the land-cover
        texture, patches of a few cells independent of the slopes (0: none, the ground
        follows the law alone).
    land_cover_seed : the seed of the land cover (default ``seed``): observations of one
        ground by several passes share it, while their speckle differs.
    ground : a :class:`sarheight.ground.Ground` on the DEM's grid (e.g. from
        :func:`sarheight.ground.draw_ground`): each facet that sees the sensor returns its
        cell's land-cover class law of the facet's own local incidence times the cell's
        texture, times its sigma area. It replaces ``law`` and the
        land cover: refused together with ``backscatter``, a ``law`` other than
        "empirical", ``land_cover_db`` other than 3 or a ``land_cover_seed``.
    looks : equivalent number of looks of the multiplicative gamma speckle; None: none.
    nesz_db : noise-equivalent sigma0 (dB) of an additive noise floor; None: none.
    seed : random seed of the texture, speckle and noise.
    projection, oversample : as for :func:`simulate`.
    return_truth : also return the true sigma0 of each DEM cell (the sigma-area-weighted
        mean over its facets), the reference against which reconstructions are judged.
    device : where the passes run, as for :func:`simulate`.

    Returns
    -------
    xr.DataArray (line, sample) on the radar window covering the DEM, beta0 (linear): the
    sum over facets of w * sigma0 * A_sigma divided by the pixel area, plus the noise
    floor, times the speckle. Pixels no facet reaches hold the noise floor alone (0
    without noise). With ``return_truth``: ``(observation, truth)``, truth on the DEM grid.
    """
    if looks is not None and not (isinstance(looks, (int, float, np.number)) and math.isfinite(looks) and looks > 0):
        raise InvalidInputError(f"looks must be a positive number or None, got {looks!r}")
    if nesz_db is not None and not (isinstance(nesz_db, (int, float, np.number)) and math.isfinite(nesz_db)):
        raise InvalidInputError(f"nesz_db must be a finite number (dB) or None for no noise floor, got {nesz_db!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    if law not in SIGMA0_LAWS:
        raise InvalidInputError(f"law must be one of {', '.join(SIGMA0_LAWS)}, got {law!r}")
    if not (isinstance(land_cover_db, (int, float, np.number)) and 0 <= land_cover_db < 30):
        raise InvalidInputError(f"land_cover_db must be a number of dB from 0 to 30, got {land_cover_db!r}")
    if ground is not None:
        if not isinstance(ground, Ground):
            raise InvalidInputError(f"ground must be a sarheight.ground.Ground (draw_ground makes one), got "
                                    f"{type(ground).__name__}")
        given = [name for name, clash in (("backscatter", backscatter is not None), ("law", law != "empirical"),
                                          ("land_cover_db", land_cover_db != 3.0),
                                          ("land_cover_seed", land_cover_seed is not None)) if clash]
        if given:
            raise InvalidInputError(
                f"ground gives the ground's sigma0 laws, land cover and texture: give it without {', '.join(given)}"
            )
    compute = compute_for_run(device)
    check_simulation_options(geometry, projection, oversample)
    # Checked once: every simulation below takes the Dem as checked.
    checked = checked_dem(dem)
    dem = checked.heights
    # The observation needs the masks, not the mixing: the sweep cuts only the lines
    # that bound its groups.
    options: dict[str, Any] = {"projection": projection, "oversample": oversample, "every_line": False,
                               "compute": compute}
    if ground is not None:
        if ground.shape != dem.shape:
            raise InvalidInputError(f"the ground's class map has shape {ground.shape}, the DEM {dem.shape}: draw "
                                    "the ground on this DEM (draw_ground(dem, family, seed))")

        # Each facet its cell's class law of its own local incidence times the cell's
        # texture, in one pass of the facet kernel.
        state = run_simulation(checked, geometry, contribution=ground.cell_laws(), **options)
        sigma_area = state.per_cell["sigma_area"]
        with np.errstate(invalid="ignore", divide="ignore"):
            truth = np.where(sigma_area > 0, state.per_cell["contribution"] / np.where(sigma_area > 0, sigma_area, 1),
                             np.nan)
    elif backscatter is None:
        # The law and its land-cover texture as a ground of one class: each facet the law
        # of its own local incidence times its cell's texture (as every ground is carried).
        cover = texture(dem.shape, seed=seed if land_cover_seed is None else int(land_cover_seed),
                        contrast_db=float(land_cover_db))
        classes = np.zeros(dem.shape, dtype=np.uint8)
        state = run_simulation(checked, geometry, contribution=CellLaws(classes, (SIGMA0_LAWS[law],), cover), **options)
        sigma_area = state.per_cell["sigma_area"]
        with np.errstate(invalid="ignore", divide="ignore"):
            truth = np.where(sigma_area > 0, state.per_cell["contribution"] / np.where(sigma_area > 0, sigma_area, 1),
                             np.nan)
    elif isinstance(backscatter, xr.DataArray):
        values = values_on_dem_grid(backscatter, dem, "backscatter")
        if np.isinf(values).any():
            raise InvalidInputError("backscatter (linear sigma0) has infinite values: give NaN where it is unknown")
        if np.any(values[np.isfinite(values)] < 0):
            raise InvalidInputError("backscatter (linear sigma0) must be non-negative")
        first = run_simulation(checked, geometry, contribution="gamma", **options)
        weights = np.nan_to_num(values) * first.per_cell["sigma_area"]
        state = run_simulation(checked, geometry, contribution=dem.copy(data=weights), **options)
        truth = values
    elif callable(backscatter):
        state = run_simulation(checked, geometry, contribution=backscatter, **options)
        with np.errstate(invalid="ignore", divide="ignore"):
            truth = state.per_cell["contribution"] / state.per_cell["sigma_area"]
    else:
        raise InvalidInputError("backscatter must be None, a DataArray of sigma0 or a callable law")
    pixel_area = state.pixel_area
    with np.errstate(invalid="ignore", divide="ignore"):
        intensity = np.where(pixel_area > 0, state.images[0] / pixel_area, 0.0)
    rng = np.random.default_rng(seed + 1)
    if nesz_db is not None:
        intensity = intensity + noise_floor(nesz_db, state.sin_incidence)
    if looks is not None:
        intensity = intensity * rng.gamma(looks, 1.0 / looks, size=intensity.shape)
    out = xr.DataArray(
        intensity.astype(np.float32),
        dims=("line", "sample"),
        coords=state.window.coords(),
        name="beta0",
        attrs={
            "long_name": "simulated beta0 (linear power)",
            "units": "1",
            "looks": "none" if looks is None else float(looks),
            "nesz_db": "none" if nesz_db is None else float(nesz_db),
            "seed": int(seed),
            "sigma0_law": ground.name if ground is not None else law if backscatter is None else "given",
            "land_cover_db": (ground.texture_db if ground is not None else float(land_cover_db) if backscatter is None
                              else "given"),
            "projection": projection,
            "oversample": state.oversample,
            "sarheight_version": __version__,
            **(ground.to_attrs() if ground is not None else {}),
        },
    )
    if not return_truth:
        return out
    truth_da = xr.DataArray(
        np.asarray(truth, dtype=np.float32), dims=("y", "x"), coords={"y": dem["y"], "x": dem["x"]},
        name="sigma0", attrs={"long_name": "true sigma0 of each DEM cell (linear)", "units": "1"},
    ).rio.write_crs(dem.rio.crs)
    return out, truth_da
