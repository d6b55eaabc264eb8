"""Composites of image time series: the per-pixel median of each calendar month.

MBHR-Net (Yadav et al. 2023) takes monthly Sentinel-1 and Sentinel-2 composites, twelve
per location. The median is robust to the odd outlier acquisition (a wet-snow date, a
cloud the mask missed) where the mean is not.

SAR stacks are composited in linear power. The median of an odd number of dates is the
same in dB and in linear power (the conversion is monotone), but of an even number it is
the mean of the two middle dates, which differs: a stack marked as dB (``units``
attribute) is converted to linear power, composited, and converted back.
"""

from __future__ import annotations

import warnings

import numpy as np
import xarray as xr

from ..errors import InvalidInputError
from .backscatter import from_db, is_db, to_db

__all__ = ["monthly_composite"]


def monthly_composite(stack: xr.DataArray) -> xr.DataArray:
    """Per-pixel median of the images of each calendar month of a time series.

    Parameters
    ----------
    stack : images along a ``time`` dim of datetime64 labels, e.g. dims
        ``("time", "band", "y", "x")`` or ``("time", "y", "x")``; NaN where missing
        (clouds, no data). SAR backscatter in linear power, or in dB when its ``units``
        attribute says so (then the median is taken in linear power, see the module
        docstring).

    Returns
    -------
    xarray.DataArray
        The medians over the valid (non-NaN) values of each month, NaN where a pixel has
        none that month. The ``time`` dim holds the first instant of each month that has
        at least one image (months without any are absent, not filled), in order; the
        coordinate ``acquisitions`` on ``time`` counts the images of each month. Other
        dims and coords (CRS included), name and attrs are kept, plus ``composite``
        ("monthly median").

    Raises
    ------
    InvalidInputError
        ``stack`` has no ``time`` dim, or its ``time`` labels are not dates.
    """
    if not isinstance(stack, xr.DataArray):
        raise InvalidInputError(
            f"monthly_composite takes an xarray.DataArray with a 'time' dim, got {type(stack).__name__}"
        )
    if "time" not in stack.dims:
        raise InvalidInputError(
            f"monthly_composite needs the dates along a 'time' dim, but the stack has dims {stack.dims}: "
            "stack the images with xarray.concat(images, dim='time') and their acquisition dates as "
            "the 'time' coordinate (or rename the dim that holds them to 'time')"
        )
    if "time" not in stack.coords or not np.issubdtype(stack["time"].dtype, np.datetime64):
        dtype = stack["time"].dtype if "time" in stack.coords else "no coordinate"
        raise InvalidInputError(
            f"the 'time' labels of the stack must be dates (datetime64), got {dtype}: assign them "
            "with stack.assign_coords(time=numpy.array(dates, 'datetime64[ns]'))"
        )
    if stack.sizes["time"] == 0:
        raise InvalidInputError("the stack has no images along 'time': nothing to composite")
    in_db = is_db(stack)
    linear = from_db(stack) if in_db else stack
    month = stack["time"].values.astype("datetime64[M]").astype("datetime64[ns]")
    grouped = linear.assign_coords(month=("time", month)).groupby("month")
    with warnings.catch_warnings():
        # Pixels without any valid value in a month: NaN is the answer, not a warning.
        warnings.simplefilter("ignore", RuntimeWarning)
        median = grouped.median(dim="time", skipna=True, keep_attrs=True)
    acquisitions = np.unique(month, return_counts=True)[1]
    out = median.rename(month="time").assign_coords(acquisitions=("time", acquisitions))
    out = out.transpose(*stack.dims)
    if in_db:
        out = to_db(out)
    out.attrs = {**stack.attrs, "composite": "monthly median"}
    out.name = stack.name
    return out
