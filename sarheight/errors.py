"""Errors and warnings raised by sarheight.

Every error says what was wrong and what to do about it. They all derive from
:class:`SarHeightError`, and also from the built-in exception a caller would expect
(``ValueError``, ``FileNotFoundError``), so ``except ValueError`` keeps working.
"""

import contextlib
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def deferred_warnings() -> Iterator[None]:
    """Hold back the warnings raised inside the block (a progress bar's life) and show them
    after it, each distinct one once with how many times it came: not through the bar's
    line, nor once per scene or tile."""
    with warnings.catch_warnings(record=True) as caught:
        yield
    seen: dict[tuple[type, str], list] = {}
    for record in caught:
        seen.setdefault((record.category, str(record.message)), []).append(record)
    for (category, text), records in seen.items():
        first = records[0]
        times = f" ({len(records)} times)" if len(records) > 1 else ""
        warnings.warn_explicit(text + times, category, first.filename, first.lineno)


def user_stacklevel() -> int:
    """The ``stacklevel`` for ``warnings.warn`` that points at the first frame outside
    sarheight (the user's call), from the function that calls ``warnings.warn``."""
    package = str(Path(__file__).resolve().parent)
    frame: types.FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and str(Path(frame.f_code.co_filename).resolve()).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


class SarHeightError(Exception):
    """Base class of every error sarheight raises on purpose."""


class InvalidInputError(SarHeightError, ValueError):
    """An input array, raster or parameter is unusable (shape, dtype, CRS, values)."""


class OutputError(SarHeightError, OSError):
    """An output could not be written whole (no space left, a quota, a file-size limit):
    nothing is left under its name, and an earlier file there is as it was."""


class MissingInputError(SarHeightError, FileNotFoundError):
    """A file or directory that was named does not exist."""


class DatumError(SarHeightError, ValueError):
    """Heights cannot be brought to the WGS84 ellipsoid (no geoid grid, unknown datum)."""


class GeometryError(SarHeightError, ValueError):
    """The acquisition geometry cannot serve the request (orbit span, image coverage)."""


class ProductError(SarHeightError, ValueError):
    """A Sentinel-1 or Sentinel-2 product is not what was expected (not a SAFE, missing annotation or band file)."""


class UnsupportedProductError(ProductError):
    """A product type or acquisition mode sarheight does not handle."""


class VerticalDatumWarning(UserWarning):
    """Heights were taken as ellipsoidal because nothing said which datum they refer to.

    Shown every time it occurs (not once per code location, Python's default): each DEM
    opened that way may be 30-100 m off.
    """


class PartialCoverageWarning(UserWarning):
    """The observation lacks pixels under the DEM: the cells that land there are NaN."""


class PlausibilityWarning(UserWarning):
    """An input that is valid but looks wrong: an all-zero image, dB given as linear power
    or the reverse, heights that look like feet or kilometres, a DEM full of voids."""


class PriorsOutsideWarning(UserWarning):
    """Some prior points lie outside the DEM grid, or on its cells without height: they
    are left out, and the warning says how many and where the grid is."""
