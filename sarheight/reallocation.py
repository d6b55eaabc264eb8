"""The in-memory reallocation engine: the observed energy of radar pixels shared among the ground cells that made it.

Given an observed image I_p (linear power, beta0) and the simulation of the DEM under
the same geometry, every pixel's energy I_p a_p (a_p: the slant-plane pixel area) is
shared among the facets that land in it in proportion to their simulated contributions
w_{f,p} c_f:

    E_f = sum_p  w_{f,p} c_f / (sum_f' w_{f',p} c_f')  I_p a_p,
    sigma0_f = E_f / A_sigma,f   (or gamma0_f = E_f / A_gamma,f).

The gather is the adjoint of the simulation's scatter, so energy is conserved exactly.
:func:`reallocate` works on a :class:`~sarheight.simulate.Simulation` (the whole DEM, or
a tile of it for the block-wise engine in :mod:`sarheight.distributed`);
:func:`reconstruct_in_memory` runs the whole reconstruction of a DEM held in memory;
:func:`result_dataset` assembles the result both engines return.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import xarray as xr

from . import compute as door
from ._version import __version__
from .compute import Compute
from .dem import Dem
from .geometry import RadarWindow
from .masks import kernel_codes
from .observation import (
    Observation,
    check_intensity,
    intensity_flags,
    intensity_summary,
    rebuilt_in_radar_geometry,
    warn_if_implausible,
    warn_partial_coverage,
)
from .simulate import Simulation, run_simulation
from .simulate.cells import channels, radar_sums
from .simulate.contribution import Contribution, Projection
from .simulate.engine import clear_residue, simulation_passes
from .threads import progress_bar

#: What ``backscatter`` holds: the reallocated energy over the sigma or the gamma area.
Output = Literal["sigma0", "gamma0"]


def ratios_in_place(state: Simulation, sums: np.ndarray, observed: np.ndarray, *,
                     prefix: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Turn the simulated sums (a radar buffer, ``simulate.radar_sums``) into the
    reallocation ratios, in place (:func:`sarheight.compute.reallocation_ratios`).

    Channel 0 becomes I_p a_p / sum(w c), channel 1 I_p a_p / sum(w A_gamma) (0 where
    nothing was simulated); with ``prefix``, the padded row prefix sums the exact gather
    reads. Returns what needs the sums before they are overwritten: the simulated image
    sum(w c) / a_p (float32, NaN where a_p is not positive), the pixels valid for terrain
    flattening (gamma area at least 5 % of flat terrain's), and how many pixels the
    facets reach but the observation lacks (NaN). The sums' rounding residue is cleared
    as they are read (a state that was cleared already reads the same).
    """
    fields = state.smooth_fields.pixel_fields(state.window, state.contribution)
    return door.reallocation_ratios(sums, observed, fields, prefix=prefix, compute=state.compute)


def reallocation_ratios(state: Simulation, observed: np.ndarray) -> np.ndarray:
    """Per-pixel ratios I_p a_p / (sum of w c) for the model (channel 0) and gamma (channel 1)
    contributions; 0 where nothing was simulated."""
    sums = state.sums.copy()
    ratios_in_place(state, sums, observed, prefix=False)
    return np.array(channels(sums))


def reallocate(state: Simulation, observed: np.ndarray, output: Output = "sigma0", *,
               rows: tuple[int, int] | None = None, cols: tuple[int, int] | None = None,
               in_place: bool = False, keep_energy: bool = True,
               progress: Callable[[int], None] | None = None) -> dict[str, np.ndarray]:
    """Reallocate an observed window image (beta0, linear) with a simulation's weights.

    Parameters
    ----------
    state : the simulation of the DEM (``simulate.run_simulation``).
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
    if intensity_flags(observed)[3]:
        # Which pixels the facets reach is read from the sums without their residue.
        clear_residue(channels(sums), state.window, state.smooth_fields, state.contribution, compute=state.compute)
        missing = door.missing_pixels(observed, sums, compute=state.compute)
    else:
        missing = None
    simulated_image, valid_pixels, n_missing = ratios_in_place(state, sums, observed, prefix=state.exact)
    if not n_missing:
        missing = None
    elif rows is None and cols is None:
        warn_partial_coverage(f"{n_missing} pixels that the DEM's facets reach")
    # Allocated here, written by the row blocks of sample_cells and the gather's tiles.
    products = {name: np.empty(shape, dtype=np.float32)
                for name in ("backscatter", "flattened", "geocoded", "simulated", "local_incidence_angle")}
    products["mixing"] = np.empty(shape, dtype=np.uint16)
    if keep_energy:
        products["energy"] = np.empty(shape)
    # Window images needed before the gather only: released once sampled.
    held = {"observed": observed, "simulated": simulated_image}
    del simulated_image, observed

    own = (slice(first, last), own_cols)
    door.sample_cells(cells["line"][own], cells["sample"][own], cells["valid"][own], cells["incidence"][own],
                      door.WindowImages(held["observed"], held["simulated"], state.mixing, line0, sample0),
                      out=(products["geocoded"], products["simulated"], products["mixing"]), compute=state.compute)
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
        door.finish_cells(door.GatheredCells(energy, sigma_area, gamma_area, cos_local), cells["line"][at],
                          cells["sample"][at], cells["valid"][at], shadow[at], valid_pixels, (line0, sample0),
                          use_sigma=output == "sigma0", codes=kernel_codes(),
                          out=(products["backscatter"][out], products["flattened"][out],
                               products["local_incidence_angle"][out]), compute=state.compute)
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


def _void_where_missing(state: Simulation, missing: np.ndarray, products: dict[str, np.ndarray],
                        rows: tuple[int, int], cols: tuple[int, int] | None) -> None:
    """Set NaN the reallocated products of the cells whose facets reach a ``missing`` pixel.

    The indicator of those pixels is gathered like the ratios (both channels): a cell's
    sum is positive exactly where one of its facets overlaps one (to rounding, hence the
    relative floor).
    """
    indicator = radar_sums(*missing.shape)
    channels(indicator)[:] = missing
    del missing
    door.gather_buffer(channels(indicator), state.exact, out=indicator, compute=state.compute)
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


def result_dataset(state: Simulation, result: dict[str, np.ndarray], output: Output) -> xr.Dataset:
    """The reconstruction Dataset from ``reallocate``'s products and the simulation's masks
    and geometry (the arrays are used as they are, not copied)."""
    simulation = state.to_dataset(("layover", "shadow", "slant_range", "azimuth_time"))
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


def reconstruct_in_memory(observation: Observation, dem: Dem, *, contribution: Contribution,
                          output: Output, projection: Projection, oversample: int | Literal["auto"],
                          progress: bool = True, compute: Compute | None = None) -> xr.Dataset:
    """Reconstruct a DEM held in memory (:func:`sarheight.reconstruction.reconstruct` without
    ``chunks``), from an observation and a DEM it has checked and opened; ``compute``:
    where the passes run (the numba kernels by default).

    The observation is read on the radar window as soon as the window is known, before
    the masks and facets, so that an image that does not cover the DEM is refused at
    once, not after the costly passes. A map-grid observation's radar pixels are rebuilt
    once the simulation is known.
    """
    observed: list[np.ndarray] = []
    # What the observation holds under the DEM, for a caller to judge whether it carries
    # relief: a map-grid image's own values (its rebuilt radar pixels vary with the
    # terrain's areas even where the image is constant), else the radar pixels read.
    summary = (intensity_summary(observation.image.values, in_db=observation.in_db) if observation.on_map else {})

    def observe(window: RadarWindow) -> None:
        observed.append(source.on_window(window))
        check_intensity(observed[0], window)
        warn_if_implausible(observed[0])
        if not summary:
            summary.update(intensity_summary(observed[0]))

    source = observation
    # Scatter and gather each pass over every DEM row.
    with progress_bar(2 * dem.shape[0], "reconstruct", progress) as update:
        # The ratio pass clears the sums' rounding residue as it reads them.
        state = run_simulation(dem, observation.geometry, contribution=contribution, projection=projection,
                               oversample=oversample, keep_per_cell=observation.on_map, progress=update,
                               on_window=None if observation.on_map else observe, clear=False, compute=compute)
        if observation.on_map:
            source = rebuilt_in_radar_geometry(observation, state)
            state.per_cell = {}
            observe(state.window)
        # Handed over, not kept here: reallocate releases the window once it is sampled.
        result = reallocate(state, observed.pop(), output, in_place=True, keep_energy=False, progress=update)
    dataset = result_dataset(state, result, output)
    dataset.attrs["observation"] = observation.description
    dataset.attrs.update(summary)
    if compute is not None and compute != Compute():
        # The passes of the kernel door it ran, and where each ran.
        dataset.attrs["computed_on"] = compute.where(
            (*simulation_passes(projection), "reallocation_ratios", "sample_cells", "finish_cells"))
    return dataset

