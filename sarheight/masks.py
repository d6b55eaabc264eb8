"""Layover and shadow mask codes: one definition for the package, its files and its users.

The ``layover`` and ``shadow`` variables of a simulation or reconstruction are uint8
rasters of :class:`MaskCode` values. The kernels take the codes as plain integers
(:func:`kernel_codes`), so that this is the only place that says what they are.
"""

from __future__ import annotations

import enum

import numpy as np
import xarray as xr


class MaskCode(enum.IntEnum):
    """What a ``layover`` or ``shadow`` cell holds (uint8)."""

    #: Neither in layover (or shadow) nor outside.
    NONE = 0
    #: Caused by the cell's own surface: it faces the radar steeper than the incidence
    #: (layover), or faces away from it (shadow).
    ACTIVE = 1
    #: Caused by other terrain: overlain in the same pixels (layover), or in cast shadow.
    PASSIVE = 2
    #: Outside the radar image, or no height in the DEM: also the no-data value of mask files.
    OUTSIDE = 255


#: CF attributes of a mask variable (``flag_values``, ``flag_meanings``).
MASK_ATTRS = {
    "flag_values": " ".join(str(int(code)) for code in MaskCode),
    "flag_meanings": " ".join(code.name.lower() for code in MaskCode),
}


def kernel_codes() -> tuple[int, int, int, int]:
    """The codes (none, active, passive, outside) as plain ints, in the order the kernels take them."""
    return int(MaskCode.NONE), int(MaskCode.ACTIVE), int(MaskCode.PASSIVE), int(MaskCode.OUTSIDE)


#: Codes of the ISCE3/OPERA layover-shadow mask, for users who compare with it.
ISCE3_CODES = {"none": 0, "shadow": 1, "layover": 2, "layover_and_shadow": 3, "outside": int(MaskCode.OUTSIDE)}


def to_isce3_mask(result: xr.Dataset) -> xr.DataArray:
    """Layover/shadow mask in the ISCE3/OPERA convention: 0 none, 1 shadow, 2 layover, 3 both,
    255 outside the image or no DEM.

    Parameters
    ----------
    result : a simulation or reconstruction with ``layover`` and ``shadow`` (:class:`MaskCode`).

    Returns
    -------
    xr.DataArray (uint8) on the result's grid, with its CRS.
    """
    layover = result["layover"].values
    shadow = result["shadow"].values
    outside = (layover == MaskCode.OUTSIDE) | (shadow == MaskCode.OUTSIDE)
    code = ((shadow != MaskCode.NONE) & ~outside).astype(np.uint8) * ISCE3_CODES["shadow"] + (
        (layover != MaskCode.NONE) & ~outside).astype(np.uint8) * ISCE3_CODES["layover"]
    code = np.where(outside, np.uint8(MaskCode.OUTSIDE), code).astype(np.uint8)
    out = xr.DataArray(code, dims=("y", "x"), coords={"y": result["y"], "x": result["x"]}, name="layover_shadow_mask",
                       attrs={"flag_values": " ".join(str(v) for v in ISCE3_CODES.values()),
                              "flag_meanings": " ".join(ISCE3_CODES)})
    return out.rio.write_crs(result.rio.crs)


def inside_image(mask: xr.DataArray | np.ndarray) -> np.ndarray:
    """Where a mask's cells are inside the image (not :attr:`MaskCode.OUTSIDE`), as a bool array."""
    values = mask.values if isinstance(mask, xr.DataArray) else np.asarray(mask)
    return values != MaskCode.OUTSIDE
