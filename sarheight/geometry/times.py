"""Times and the constants of the radar geometry: datetime64 at the surface, float seconds
since a reference inside; the speed of light and Sentinel-1's wavelength."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ..errors import InvalidInputError

SPEED_OF_LIGHT = 299_792_458.0  # m/s
#: Sentinel-1 C-band radar frequency (Hz) and wavelength (m).
SENTINEL1_FREQUENCY = 5.405000454334350e9
SENTINEL1_WAVELENGTH = SPEED_OF_LIGHT / SENTINEL1_FREQUENCY
#: Earth's gravitational parameter (m^3/s^2).
EARTH_GM = 3.986004418e14
#: One nanosecond, the resolution of the times at the surface.
NANOSECOND = np.timedelta64(1, "ns")

LookSide = Literal["right", "left"]


def as_datetime64(value: Any) -> np.ndarray:
    """``value`` (datetime64 values or ISO 8601 strings) as datetime64[ns]; a clear error
    for anything else."""
    try:
        return np.asarray(value, dtype="datetime64[ns]")
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"could not read {value!r} as times: give numpy datetime64 values or ISO 8601 "
            "strings such as '2022-10-16T01:50:44.5'"
        ) from exc


def as_nanoseconds(value: Any) -> np.datetime64:
    """One time (datetime64, ISO 8601 string) as datetime64[ns]."""
    return np.datetime64(value, "ns")


def seconds_since(times: Any, reference: np.datetime64) -> np.ndarray:
    """Float seconds from ``reference`` to ``times`` (datetime64 or ISO strings)."""
    delta = as_datetime64(times) - as_nanoseconds(reference)
    return delta.astype("timedelta64[ns]").astype(np.int64) / 1e9


def datetime_from_seconds(seconds: Any, reference: np.datetime64) -> np.ndarray:
    """``reference`` plus float ``seconds``, as datetime64[ns] (NaN gives NaT)."""
    seconds = np.asarray(seconds, dtype=np.float64)
    ns = np.where(np.isfinite(seconds), np.round(seconds * 1e9), 0).astype(np.int64)
    out = as_nanoseconds(reference) + ns.astype("timedelta64[ns]")
    return np.where(np.isfinite(seconds), out, np.datetime64("NaT", "ns"))
