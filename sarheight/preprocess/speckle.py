"""Speckle filters of SAR intensity images: Lee (1980) and refined Lee (1981).

The filters estimate the backscatter under the multiplicative speckle model of an
L-look intensity image; the kernels (``sarheight.kernels.speckle``) describe the
estimate, the eight edge-aligned windows of refined Lee and how missing cells and image
edges are handled (NaN cells stay NaN and are left out of their neighbours' statistics;
windows shrink at the image edge to the cells inside it).

Both functions take linear power: speckle is multiplicative in linear power, and its
statistics (mean, variance ∝ mean² / L) do not hold in dB. Images marked as dB
(``units`` attribute) or holding negative values are refused; convert with
:func:`~sarheight.preprocess.backscatter.from_db`.

The number of looks L of Sentinel-1 IW GRD high-resolution products is about 4.4 (the
equivalent number of looks in ESA's product definition); SLC intensity has L = 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import xarray as xr

from ..compute import compute_for, lee, refined_lee
from ..errors import InvalidInputError
from .backscatter import require_linear_power

__all__ = ["IW_GRDH_LOOKS", "lee_filter", "refined_lee_filter"]

#: Equivalent number of looks of Sentinel-1 IW GRD high-resolution (GRDH) products.
IW_GRDH_LOOKS = 4.4


def lee_filter(image: xr.DataArray, *, window: int = 7, looks: float = IW_GRDH_LOOKS,
               device: str | None = None) -> xr.DataArray:
    """Lee filter (Lee 1980) with statistics over a square window.

    Parameters
    ----------
    image : linear power (β⁰, σ⁰, γ⁰ in m² m⁻², or |DN|²), NaN where missing. The last
        two dims are the image rows and columns (``("y", "x")``, ``("line", "sample")``);
        each slice along leading dims (band, time) is filtered on its own.
    window : odd side of the square window, in pixels (>= 3).
    looks : number of looks L of the intensity (speckle variance 1 / L); 4.4 for
        Sentinel-1 IW GRDH, 1 for single-look (SLC) intensity.
    device : where it runs: None or ``"cpu"`` (the numba kernels on the CPU's threads),
        ``"cuda"`` or ``"cuda:N"`` (torch on that GPU, float64).

    Returns
    -------
    xarray.DataArray
        The filtered image, same dims, coords (CRS included), name and attrs, plus
        ``speckle_filter`` saying which filter ran with which parameters. float32 input
        stays float32, float64 stays float64, other dtypes become float32.

    Raises
    ------
    InvalidInputError
        ``image`` in dB or negative, ``window`` not an odd integer >= 3, ``looks`` not a
        positive number.
    """
    require_linear_power(image, "the Lee filter")
    if not isinstance(window, (int, np.integer)) or isinstance(window, bool) or window < 3 or window % 2 == 0:
        raise InvalidInputError(
            f"window must be an odd integer of at least 3 pixels (the window is centred on the pixel), got {window!r}"
        )
    looks = _looks(looks)
    compute = compute_for(device)
    return _filtered(
        image,
        lambda values: lee(values, int(window), looks, compute=compute),
        f"Lee 1980, {int(window)} x {int(window)} window, {looks:g} looks",
    )


def refined_lee_filter(image: xr.DataArray, *, looks: float = IW_GRDH_LOOKS,
                       device: str | None = None) -> xr.DataArray:
    """Refined Lee filter (Lee 1981): statistics over the edge-aligned half of a 7 × 7
    window.

    The means of the nine 3 × 3 sub-windows of the 7 × 7 window give the gradient in
    four directions; the strongest names the edge, and the statistics are taken over the
    half window, of the eight edge-aligned ones, on the side of the edge the pixel
    belongs to (see ``sarheight.kernels.speckle``). Edges and thin features keep their
    sharpness where the square-window Lee filter blurs them.

    Parameters
    ----------
    image : linear power, NaN where missing; last two dims rows and columns, leading
        dims filtered slice by slice.
    looks : number of looks L of the intensity; 4.4 for Sentinel-1 IW GRDH.
    device : where it runs: None or ``"cpu"`` (the numba kernels); torch has no refined
        Lee pass yet, so a GPU is refused in one line.

    Returns
    -------
    xarray.DataArray
        The filtered image, same dims, coords, name and attrs plus ``speckle_filter``;
        dtype as for :func:`lee_filter`.

    Raises
    ------
    InvalidInputError
        ``image`` in dB or negative, ``looks`` not a positive number.
    """
    require_linear_power(image, "the refined Lee filter")
    looks = _looks(looks)
    compute = compute_for(device)
    return _filtered(
        image,
        lambda values: refined_lee(values, looks, compute=compute),
        f"refined Lee 1981, 7 x 7 window, {looks:g} looks",
    )


def _looks(looks: float) -> float:
    try:
        value = float(looks)
    except (TypeError, ValueError):
        value = math.nan
    if not (math.isfinite(value) and value > 0) or isinstance(looks, bool):
        raise InvalidInputError(
            f"looks must be a positive number (the number of looks of the intensity: 4.4 for "
            f"Sentinel-1 IW GRDH, 1 for SLC), got {looks!r}"
        )
    return value


def _filtered(image: xr.DataArray, run: Callable[[np.ndarray], np.ndarray], description: str) -> xr.DataArray:
    """Run a filter pass of the kernel door on every 2-D slice of ``image`` and wrap the
    result like it."""
    if image.ndim < 2:
        raise InvalidInputError(
            f"a speckle filter takes an image with at least two dims (rows, columns), got dims {image.dims}"
        )
    dtype = image.dtype if image.dtype in (np.float32, np.float64) else np.dtype(np.float32)
    values = np.asarray(image.values)
    if values.dtype not in (np.float32, np.float64):
        values = values.astype(np.float32)
    rows, cols = values.shape[-2:]
    flat = values.reshape(-1, rows, cols)
    out = np.empty(flat.shape, dtype)
    for k, plane in enumerate(flat if rows and cols else ()):
        plane = np.ascontiguousarray(plane)
        out[k] = run(plane)
    result = image.copy(data=out.reshape(values.shape))
    result.attrs["speckle_filter"] = description
    return result
