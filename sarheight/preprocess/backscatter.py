"""Backscatter images in linear power and in dB, and multilooking.

sarheight keeps backscatter in linear power (β⁰, σ⁰, γ⁰ in m² m⁻², attribute
``units`` "1") and converts to dB only for model inputs and plots (design §3). An image
says which it is through its ``units`` attribute: "dB" for decibels, anything else (or
nothing) for linear power. :func:`to_db` and :func:`from_db` convert and set it;
:func:`require_linear_power` is the check that the processing in linear power (speckle
filters, multilooking, composites) runs first.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import InvalidInputError
from ..raster import power_to_db

__all__ = ["DB_UNITS", "from_db", "is_db", "multilook", "require_linear_power", "to_db"]

#: Spellings of the ``units`` attribute that mark an image as decibels.
DB_UNITS = frozenset({"db", "decibel", "decibels"})


def is_db(image: xr.DataArray) -> bool:
    """Whether the ``units`` attribute of ``image`` says decibels ("dB", "decibel")."""
    return str(image.attrs.get("units", "")).strip().lower() in DB_UNITS


def require_linear_power(image: xr.DataArray, what: str) -> None:
    """Refuse an image that is not linear power, before ``what`` processes it.

    Parameters
    ----------
    image : the image to check; numpy-backed values are also checked for negative
        values, which linear power cannot have but dB values of weak targets do.
    what : the processing, named in the error ("the Lee filter").

    Raises
    ------
    InvalidInputError
        ``image`` is marked as dB (``units`` attribute), or holds negative values.
    """
    if not isinstance(image, xr.DataArray):
        raise InvalidInputError(
            f"{what} takes an xarray.DataArray, got {type(image).__name__}: wrap the array in "
            "xarray.DataArray with its dims (e.g. ('y', 'x'))"
        )
    if is_db(image):
        raise InvalidInputError(
            f"{what} works on linear power, but {image.name or 'the image'} is in dB "
            f"(units={image.attrs.get('units')!r}): convert it with sarheight.preprocess.backscatter."
            "from_db first, and back with to_db after"
        )
    if not np.issubdtype(image.dtype, np.number) or np.issubdtype(image.dtype, np.complexfloating):
        raise InvalidInputError(
            f"{what} takes real intensities, got dtype {image.dtype}: give |DN|² or calibrated "
            "power, not complex or non-numeric values"
        )
    if isinstance(image.data, np.ndarray) and image.size and np.nanmin(image.values, initial=0.0) < 0:
        raise InvalidInputError(
            f"{what} works on linear power, but {image.name or 'the image'} has negative values "
            f"(down to {float(np.nanmin(image.values)):.4g}): it looks like dB; convert it with "
            "from_db (and set attrs['units'] = 'dB' on dB images)"
        )


def to_db(image: xr.DataArray) -> xr.DataArray:
    """Linear power to decibels, 10 log10(image).

    Parameters
    ----------
    image : linear power (m² m⁻²), any dims; lazy (dask) data stays lazy.

    Returns
    -------
    xarray.DataArray
        float32 dB (float64 kept), same dims, coords and attrs, with ``units`` "dB".
        Zero, negative and non-finite powers give NaN (no dB value), not -inf.

    Raises
    ------
    InvalidInputError
        ``image`` is already marked as dB.
    """
    if is_db(image):
        raise InvalidInputError(
            f"{image.name or 'the image'} is already in dB (units={image.attrs.get('units')!r}): "
            "to_db takes linear power"
        )
    dtype = np.float64 if image.dtype == np.float64 else np.float32
    out = xr.apply_ufunc(power_to_db, image, kwargs={"dtype": dtype}, dask="parallelized", output_dtypes=[dtype])
    out.attrs = {**image.attrs, "units": "dB"}
    out.name = image.name
    return out


def from_db(image: xr.DataArray) -> xr.DataArray:
    """Decibels to linear power, 10^(image / 10).

    Parameters
    ----------
    image : backscatter in dB, any dims; the ``units`` attribute, where present, must
        say dB (an image marked otherwise is refused rather than exponentiated twice).

    Returns
    -------
    xarray.DataArray
        float32 linear power (float64 kept), same dims, coords and attrs, ``units`` "1".

    Raises
    ------
    InvalidInputError
        ``image`` has a ``units`` attribute other than dB.
    """
    units = image.attrs.get("units")
    if units is not None and not is_db(image):
        raise InvalidInputError(
            f"{image.name or 'the image'} has units={units!r}, not dB: from_db takes decibels; "
            "drop or correct the attribute if the values are dB"
        )
    dtype = np.float64 if image.dtype == np.float64 else np.float32
    out = (10.0 ** (image / 10.0)).astype(dtype)
    out.attrs = {**image.attrs, "units": "1"}
    out.name = image.name
    return out


def multilook(image: xr.DataArray, looks_y: int, looks_x: int) -> xr.DataArray:
    """Average blocks of ``looks_y`` × ``looks_x`` pixels in linear power.

    Parameters
    ----------
    image : linear power; its last two dims are the image rows and columns
        (``("y", "x")`` or ``("line", "sample")``), leading dims (band, time) are kept.
    looks_y, looks_x : block size in rows and columns, positive integers.

    Returns
    -------
    xarray.DataArray
        The block means over the valid (non-NaN) pixels of each block, NaN for blocks
        without any; rows and columns that do not fill a whole block at the end are
        dropped. Coordinates are the means of the block's coordinates (the centres of
        the new pixels), so a CRS transform recomputed from them is the coarser grid.
        attrs keep the input's, plus ``multilook`` = (looks_y, looks_x). Averaging n
        pixels of independent speckle multiplies the number of looks by n (less where
        neighbouring pixels are correlated, as in GRD products).

    Raises
    ------
    InvalidInputError
        non-integer or non-positive looks, looks larger than the image, an image in dB.
    """
    require_linear_power(image, "multilook")
    if image.ndim < 2:
        raise InvalidInputError(
            f"multilook takes an image with at least two dims (rows, columns), got dims {image.dims}"
        )
    row_dim, col_dim = image.dims[-2:]
    for name, looks, size in (("looks_y", looks_y, image.sizes[row_dim]), ("looks_x", looks_x, image.sizes[col_dim])):
        if not isinstance(looks, (int, np.integer)) or isinstance(looks, bool) or looks < 1:
            raise InvalidInputError(f"{name} must be a positive integer number of pixels, got {looks!r}")
        if looks > size:
            raise InvalidInputError(
                f"{name}={looks} is larger than the image ({size} pixels along that dim): use fewer looks"
            )
    # NaN-aware block sums and counts; a block without valid pixels gets NaN, quietly.
    blocks = {row_dim: int(looks_y), col_dim: int(looks_x)}
    valid = image.notnull()
    total = image.where(valid, 0).coarsen(blocks, boundary="trim").sum()
    count = valid.coarsen(blocks, boundary="trim").sum()
    out = (total / count.where(count > 0)).astype(np.float64 if image.dtype == np.float64 else np.float32)
    out.attrs = {**image.attrs, "multilook": (int(looks_y), int(looks_x))}
    out.name = image.name
    if "spatial_ref" in out.coords:
        # The stored transform is the fine grid's: drop it so that rioxarray recomputes
        # the coarse one from the coordinates.
        out.coords["spatial_ref"].attrs.pop("GeoTransform", None)
    return out
