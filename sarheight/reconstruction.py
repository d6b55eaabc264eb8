"""Reconstruction: reallocate the observed energy of radar pixels to the ground cells that made it.

:func:`reconstruct` is the one entry: it checks what it is given, resolves the
observation (:mod:`sarheight.observation`) and runs the reallocation in memory
(:mod:`sarheight.reallocation`) or block by block, on local threads or a dask cluster
(:mod:`sarheight.distributed`). Both engines share the physics:

    E_f = sum_p  w_{f,p} c_f / (sum_f' w_{f',p} c_f')  I_p a_p,
    sigma0_f = E_f / A_sigma,f   (or gamma0_f = E_f / A_gamma,f),

with I_p the observed beta0, a_p the pixel area, w_{f,p} the simulated overlap of facet
f with pixel p and c_f its contribution. With ``contribution="model"`` (default) c_f is
the empirical sigma0 law of the facet's local incidence angle times its area: facets
inside one layover pixel are told apart by their physics (a slope facing the radar
returns more than the flat beside it). With ``contribution="gamma"`` (c_f = A_gamma,f)
the reallocation reduces to area-weighted terrain flattening (Small 2011): every facet
of a pixel gets the same gamma0.

The result also carries, for comparison on the same grid, conventional geocoding
(``geocoded``: the pixel's sigma0 with the ellipsoid incidence angle, layover pixels
copied to every cell that maps to them) and Small-2011 terrain-flattened gamma0
(``flattened``). Energy is conserved exactly: the gather is the adjoint of the
simulation's scatter.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import xarray as xr

from .compute import Compute, compute_for_run
from .dem import checked_dem
from .distributed import check_client, output_files, reconstruct_blockwise
from .errors import InvalidInputError
from .geometry import RadarGeometry
from .io import write_geotiff
from .masks import to_isce3_mask
from .observation import Quantity, check_argument_order, resolve_observation
from .paths import check_outputs, check_writable_folder
from .reallocation import Output, reconstruct_in_memory
from .simulate.contribution import Contribution, Projection
from .simulate.engine import check_dem_shape, check_simulation_options

__all__ = ["RECONSTRUCTION_BANDS", "SIMULATION_BANDS", "reconstruct", "to_geotiff", "to_isce3_mask"]

#: DEM rows per block of a block-wise run that gives a client but no ``chunks``.
DEFAULT_ROWS_PER_BLOCK = 256


def reconstruct(
    dem: Any,
    sar: Any,
    geometry: RadarGeometry | None = None,
    *,
    contribution: Contribution = "model",
    output: Output = "sigma0",
    projection: Projection = "exact",
    oversample: int | Literal["auto"] = "auto",
    measurement: str = "IW/VV",
    sar_quantity: Quantity = "sigma0",
    sar_db: bool = False,
    chunks: int | tuple[int, int] | None = None,
    client: Any = None,
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
    device: str | Compute | None = None,
) -> xr.Dataset:
    """Reallocate the mixed energy of layover pixels to the ground cells that produced it.

    Parameters
    ----------
    dem : DEM as :func:`sarheight.dem.open_dem` takes it (WGS84 ellipsoidal heights).
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
    geometry : acquisition geometry (read from the product when ``sar`` is a SAFE).
    contribution : ``"model"`` (default), ``"gamma"``, a callable law or per-cell weights,
        as in :func:`sarheight.simulate.simulate`.
    output : ``"sigma0"`` (E / A_sigma) or ``"gamma0"`` (E / A_gamma) for ``backscatter``.
    projection, oversample : as in :func:`sarheight.simulate.simulate`.
    measurement : swath/polarisation when ``sar`` is a product path.
    sar_quantity, sar_db : what a map-grid ``sar`` holds: beta0, sigma0 or gamma0 (all
        ellipsoid-referenced), linear or dB.
    chunks : run block by block (bounded memory) instead of in memory: DEM rows per block,
        or (rows per block, columns per tile); columns default to 4 x rows. The result is
        the same as in memory (masks identical, values to float32 rounding). The DEM's
        rows must run along track (polar orbits over north-up grids; transpose it
        otherwise), and the observation must be in radar geometry or a product.
    client : where the blocks run: ``None`` (default) local threads; ``"local"`` a new
        dask.distributed ``LocalCluster`` on this machine (closed afterwards); a scheduler
        address (``"tcp://host:8786"``) or a ``dask.distributed.Client``. Implies
        block-wise (256 DEM rows per block unless ``chunks`` says otherwise).
    out : block-wise only: a GeoTIFF path; the result is written there block by block
        (float products; ``<out>_masks.tif``: layover, shadow, mixing as uint8;
        ``<out>_geometry.tif``: slant range and azimuth time in float64), each file
        atomically, and returned opened lazily (dask arrays), so that nothing of the
        DEM's size is held in memory (``mixing`` saturates at 254 there).
    progress : show a progress bar (only when standard error is a terminal).
    device : where the passes run: None or ``"cpu"`` the numba kernels on the CPU's
        threads; ``"cuda"`` or ``"cuda:N"`` torch on that GPU, the passes torch does not
        have yet on the numba kernels (the result's ``computed_on`` says which ran where).
        Refused in one line, before any work, where torch sees no such GPU; in memory only
        (not with ``chunks`` or ``client``). A :class:`sarheight.compute.Compute`
        (:func:`sarheight.compute.compute_for`) names a backend itself: torch on the CPU
        runs the GPU's code there.

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
    ``layover``, ``shadow`` (uint8 :class:`~sarheight.masks.MaskCode`: 0 none, 1 active,
    2 passive, 255 outside), ``mixing``
    (ground segments sharing the cell's pixel), ``slant_range``, ``azimuth_time``; attrs
    record geometry, datum, parameters and version.
    """
    check_argument_order(dem, sar, "reconstruct(dem, sar, geometry)")
    if output not in ("sigma0", "gamma0"):
        raise InvalidInputError(f"output must be 'sigma0' or 'gamma0', got {output!r}")
    blockwise = chunks is not None or client is not None
    compute = compute_for_run(device)
    if blockwise and compute.backend != "numba":
        raise InvalidInputError(f"device={device!r} runs the reconstruction in memory: leave chunks= and client= "
                                "out, or leave device unset for the block-wise engine on the CPU")
    rows_per_block, cols_per_tile = _blocks_and_tiles(chunks)
    check_client(client)
    if out is not None:
        if not blockwise:
            raise InvalidInputError(
                "out= writes the result block by block: give chunks= (or client=) too, or write an "
                "in-memory result with to_geotiff(result, path)"
            )
        check_writable_folder(out, "out")
        check_outputs([(path, f"out= ({path.name})") for path in output_files(out)],
                      [(sar, "the observation"), (dem, "the DEM")])
    observation = resolve_observation(sar, geometry, measurement=measurement, sar_quantity=sar_quantity,
                                      sar_db=sar_db)
    if blockwise and observation.on_map:
        raise InvalidInputError(
            "block-wise reconstruction (chunks=, client=) takes observations in radar geometry or SAFE "
            "products; reconstruct an image geocoded to a map grid in memory (leave chunks and client out)"
        )
    check_simulation_options(observation.geometry, projection, oversample)
    # The heights are only read: no copy of a DEM that is already ellipsoidal; checked once,
    # here, and handed on as checked.
    checked = checked_dem(dem, copy=False)
    dem = checked.heights
    check_dem_shape(dem)
    observation.check_covers(dem)
    options: dict[str, Any] = {"contribution": contribution, "output": output, "projection": projection,
               "oversample": oversample, "progress": progress}
    if not blockwise:
        return reconstruct_in_memory(observation, checked, compute=compute, **options)
    return reconstruct_blockwise(observation, dem, rows_per_block=rows_per_block, cols_per_tile=cols_per_tile,
                                 client=client, out=out, **options)


def _blocks_and_tiles(chunks: Any) -> tuple[int, int]:
    """(DEM rows per block, DEM columns per tile) from ``chunks``."""
    if chunks is None:
        chunks = DEFAULT_ROWS_PER_BLOCK
    sizes = chunks if isinstance(chunks, tuple) else (chunks,)
    for size in sizes or (None,):
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2 or len(sizes) > 2:
            raise InvalidInputError(
                "chunks (DEM rows per block, or rows per block and columns per tile) must be an integer of "
                f"at least 2, or a pair of them, got {chunks!r}"
            )
    # Near-square tiles by default: a tile's radar footprint stays compact when the lines
    # cross the DEM at an angle, so few neighbours' sums are held for its gather.
    rows = int(sizes[0])
    return rows, int(sizes[1]) if len(sizes) == 2 else 4 * rows


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
