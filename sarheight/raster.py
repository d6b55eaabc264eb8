"""The raster core: how every grid of heights or backscatter is measured, differentiated,
converted and sampled, in one place.

- :func:`metres_per_degree`: the metres of a degree of latitude and longitude on the WGS84
  ellipsoid (its meridional and prime-vertical radii of curvature): the only conversion
  of degrees to metres in sarheight;
- :class:`Grid`: a grid measured once (transform, CRS, shape, metres of a cell), which
  the functions below take in place of a raster;
- :func:`cell_steps_m` and :func:`grid_steps`: the signed steps (m) of one row northward
  and one column eastward of a grid; :func:`cell_size_m`: their sizes, (dy, dx), and
  :func:`cell_side_m` the side of a square of the cell's area;
  :func:`cell_centres`: the coordinates of its cells' centres;
- :func:`gradient`: the one derivative of a raster, with one NaN policy (a derivative that
  reads a void is NaN; :func:`filled_with_mean` fills voids first where a caller wants
  one everywhere);
- :func:`nan_smoothed` and :func:`nan_box_mean`: a Gaussian smoothing and a box mean that
  read only the finite cells;
- :func:`robust_spread`: the scaled median absolute deviation, a standard deviation that
  outliers do not move;
- :func:`power_to_db` and :func:`db_to_power`: decibels of linear power and back;
- :func:`smooth_random_field`: Gaussian random fields of a given correlation;
- :func:`bilinear_at`: values at fractional (row, column) positions, NaN-aware.

Nothing here reads a file or knows what a DEM is: ``dem`` and everything above it
measure their grids with these.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Literal

import affine
import numpy as np
import pyproj
import rasterio.crs
import rioxarray  # noqa: F401  (the .rio accessor of grids)
import scipy.ndimage
import xarray as xr

from .compute import WGS84_A, WGS84_E2
from .errors import InvalidInputError

__all__ = ["Grid", "bilinear_at", "cell_centres", "cell_side_m", "cell_size_m", "cell_steps_m", "check_not_rotated",
           "crs_from_user_input", "db_to_power",
           "filled_with_mean", "gradient", "grid_steps", "horizontal_part", "metres_per_degree", "nan_box_mean",
           "nan_smoothed",
           "power_to_db", "robust_spread", "smooth_random_field"]


# ---------------------------------------------------------------------------------------
# Metres of a grid


def metres_per_degree(latitude_deg: Any) -> tuple[Any, Any]:
    """(north, east): the metres of one degree of latitude and of one degree of longitude
    at ``latitude_deg`` (a number, or an array: arrays back) on the WGS84 ellipsoid (the
    meridional radius of curvature, and the prime-vertical one times the cosine of the
    latitude)."""
    latitude = np.radians(latitude_deg)
    w = np.sqrt(1.0 - WGS84_E2 * np.sin(latitude) ** 2)
    north = math.radians(1.0) * WGS84_A * (1.0 - WGS84_E2) / w**3
    east = math.radians(1.0) * WGS84_A / w * np.cos(latitude)
    if np.ndim(north) == 0:
        return float(north), float(east)
    return north, east


def horizontal_part(crs: pyproj.CRS) -> pyproj.CRS:
    """The 2-D horizontal part of a compound or 3-D CRS (a 2-D one unchanged).

    Raises
    ------
    InvalidInputError : the CRS has no horizontal part (vertical only).
    """
    if crs.is_compound:
        for sub in crs.sub_crs_list:
            if not sub.is_vertical:
                return horizontal_part(sub)
        raise InvalidInputError(
            f"The DEM's CRS {crs.name!r} has no horizontal part. Write a map CRS with "
            "dem.rio.write_crs(...)."
        )
    if crs.is_vertical:
        raise InvalidInputError(
            f"The DEM's CRS {crs.name!r} is vertical only. Write a compound CRS (e.g. "
            "'EPSG:4326+5773') or a map CRS with dem.rio.write_crs(...)."
        )
    if len(crs.axis_info) == 3:
        return crs.to_2d()
    return crs


def crs_from_user_input(crs: Any) -> pyproj.CRS:
    """A pyproj CRS from what a user or a file gives (a rasterio CRS, an EPSG code, WKT...).

    Raises
    ------
    InvalidInputError : not a CRS pyproj understands.
    """
    try:
        if isinstance(crs, rasterio.crs.CRS):
            return pyproj.CRS.from_wkt(crs.to_wkt())
        return pyproj.CRS.from_user_input(crs)
    except pyproj.exceptions.CRSError as error:
        raise InvalidInputError(
            f"{crs!r} is not a CRS pyproj understands ({error}). Give e.g. 'EPSG:32611'."
        ) from error


def cell_centres(transform: affine.Affine, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The coordinates (y, x) of the centres of a north-up grid's rows and columns, in the
    units of its CRS: the grid's corner ``transform`` moved by half a cell."""
    rows, cols = shape
    return (transform.f + transform.e * (np.arange(rows) + 0.5), transform.c + transform.a * (np.arange(cols) + 0.5))


def check_not_rotated(transform: affine.Affine) -> None:
    """Refuse a rotated transform, or one with a zero cell size: every grid of sarheight is
    north-up (or south-up) with cells of a size."""
    if transform.b != 0.0 or transform.d != 0.0:
        raise InvalidInputError(
            f"The DEM's grid is rotated (transform {tuple(transform)[:6]}). Warp it to a "
            "north-up grid first, e.g. dem.rio.reproject(dem.rio.crs)."
        )
    if transform.a == 0.0 or transform.e == 0.0:
        raise InvalidInputError(
            f"The DEM's transform {tuple(transform)[:6]} has a zero cell size. Write the "
            "right one with dem.rio.write_transform(...)."
        )


def cell_steps_m(transform: affine.Affine, crs: Any, shape: tuple[int, int]) -> tuple[float, float]:
    """(north, east): the signed metres of one row and one column of a grid, positive
    northward and eastward (rows run south on north-up grids: negative there).

    Projected grids: the CRS's linear units converted to metres. Geographic grids: the
    WGS84 metres of a degree (:func:`metres_per_degree`) at the grid's middle latitude, a
    few parts per ten thousand off at the edges of a tile one degree high.

    Parameters
    ----------
    transform : the grid's affine transform (not rotated).
    crs : its CRS (pyproj, rasterio or anything pyproj reads; compound and 3-D CRSs by
        their horizontal part).
    shape : (rows, columns).
    """
    horizontal = horizontal_part(crs_from_user_input(crs))
    if horizontal.is_geographic:
        north, east = metres_per_degree(transform.f + transform.e * 0.5 * shape[0])
        return transform.e * north, transform.a * max(east, 1e-6 * north)
    units = [axis.unit_conversion_factor or 1.0 for axis in horizontal.axis_info] or [1.0]
    return transform.e * units[-1], transform.a * units[0]


@dataclasses.dataclass(frozen=True)
class Grid:
    """A north-up map grid, measured once: what every function that works on a grid's
    cells in metres reads of it, instead of deriving the transform from the coordinates
    and the metres from the CRS again at every door.

    Attributes
    ----------
    transform : the corner transform (not rotated).
    crs : the horizontal CRS (pyproj).
    shape : (rows, columns).
    steps_m : (north, east), the signed metres of one row and one column
        (:func:`cell_steps_m`: negative northward steps on north-up grids).
    """

    transform: affine.Affine
    crs: pyproj.CRS
    shape: tuple[int, int]
    steps_m: tuple[float, float]

    @classmethod
    def of(cls, raster: Grid | xr.DataArray | xr.Dataset) -> Grid:
        """The grid of a raster with ``y``, ``x`` and a CRS (a :class:`Grid`: itself).

        Raises
        ------
        InvalidInputError : no CRS, a rotated transform or a zero cell size.
        """
        if isinstance(raster, Grid):
            return raster
        crs = raster.rio.crs
        if crs is None:
            raise InvalidInputError("the grid has no CRS: write the one its coordinates are in "
                                    "(grid.rio.write_crs('EPSG:32611'), say)")
        transform = raster.rio.transform()
        check_not_rotated(transform)
        shape = (int(raster.sizes["y"]), int(raster.sizes["x"]))
        horizontal = horizontal_part(crs_from_user_input(crs))
        return cls(transform, horizontal, shape, cell_steps_m(transform, horizontal, shape))

    @property
    def size_m(self) -> tuple[float, float]:
        """(dy, dx): the size (m, positive) of a cell, in the order of the axes."""
        return abs(self.steps_m[0]), abs(self.steps_m[1])

    @property
    def side_m(self) -> float:
        """The side (m) of a square of the cell's area: the geometric mean of its sizes."""
        dy, dx = self.size_m
        return math.sqrt(dy * dx)

    def centres(self) -> tuple[np.ndarray, np.ndarray]:
        """The coordinates (y, x) of the cells' centres (:func:`cell_centres`)."""
        return cell_centres(self.transform, self.shape)


def grid_steps(grid: Grid | xr.DataArray | xr.Dataset) -> tuple[float, float]:
    """(north, east): the signed metres of one row and one column of a map grid (``y``,
    ``x`` with a CRS, or a :class:`Grid`), from its coordinates (:func:`cell_steps_m`)."""
    return Grid.of(grid).steps_m


def cell_size_m(grid: Grid | xr.DataArray | xr.Dataset) -> tuple[float, float]:
    """(dy, dx): the size (m, positive) of a cell of ``grid`` (a raster or a
    :class:`Grid`), in the order of its axes (:func:`grid_steps` without their signs)."""
    return Grid.of(grid).size_m


# ---------------------------------------------------------------------------------------
# Derivatives


def cell_side_m(grid: Grid | xr.DataArray | xr.Dataset) -> float:
    """The side (m) of a square of the grid's cell area: the geometric mean of its cell's
    sizes (:func:`cell_size_m`), the one figure of a cell's size on the ground."""
    return Grid.of(grid).side_m


def gradient(values: np.ndarray, steps: tuple[float, float] = (1.0, 1.0), *, axis: int | None = None
             ) -> Any:
    """The derivative of a raster along its rows and its columns (per metre of the signed
    ``steps``, (north, east) from :func:`grid_steps`: slopes rising northward and eastward).

    Central differences inside, one-sided at the edges (second order in the steps), in
    float64. The one NaN policy: a derivative that reads a NaN is NaN; a caller that
    wants slopes across voids fills them first. A raster of one row (column) has no
    derivative along it: zeros.

    Returns
    -------
    (along rows, along columns), or the one along ``axis`` (0 or 1).
    """
    values = np.asarray(values, dtype=np.float64)
    out = []
    for which in (0, 1) if axis is None else (axis,):
        if values.shape[which] < 2:
            out.append(np.zeros_like(values))
        else:
            out.append(np.gradient(values, float(steps[which]), axis=which))
    return tuple(out) if axis is None else out[0]


def filled_with_mean(values: np.ndarray) -> np.ndarray:
    """``values`` (float64) with every NaN replaced by the mean of the finite ones: the
    surface a caller differentiates where it wants a derivative at every cell (voids then
    read as flat ground at the mean height)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    if finite.all():
        return values
    return np.where(finite, values, np.nanmean(values) if finite.any() else 0.0)


def nan_smoothed(values: np.ndarray, sigma_cells: float | Sequence[float], *, least_weight: float = 0.3
                 ) -> np.ndarray:
    """A Gaussian smoothing of ``values`` (standard deviation ``sigma_cells``, per axis or
    one for both) that reads only the finite cells: the weighted mean of the finite cells
    around each cell, NaN where their weight is below ``least_weight`` of a full
    neighbourhood's (a void's middle, a scene's ragged edge)."""
    values = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(values)
    total = scipy.ndimage.gaussian_filter(np.where(finite, values, 0.0), sigma_cells, mode="constant")
    weight = scipy.ndimage.gaussian_filter(finite.astype(np.float64), sigma_cells, mode="constant")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight >= least_weight, total / weight, np.nan)


def nan_box_mean(values: np.ndarray, size: int | Sequence[int], *, mode: str = "constant",
                 least_share: float = 0.0) -> np.ndarray:
    """The mean of the finite values over a box of ``size`` cells (per axis or one for
    both) around each cell: NaN where the finite cells' share of the box is not above
    ``least_share``. ``mode``: how the box reads past the edges (scipy.ndimage's). The sums
    are taken in the values' own float precision."""
    values = np.asarray(values)
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    finite = np.isfinite(values)
    total = scipy.ndimage.uniform_filter(np.where(finite, values, 0.0), size, mode=mode)
    # The filter's running sums leave a rounding residue (1e-17) where a box holds no finite
    # cell: the share is a whole number of the box's cells, so it is taken as one.
    cells = float(np.prod(np.broadcast_to(np.asarray(size), (values.ndim,))))
    share = np.rint(scipy.ndimage.uniform_filter(finite.astype(np.float64), size, mode=mode) * cells) / cells
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(share > least_share, total / share, np.nan)


#: The factor that makes a median absolute deviation the standard deviation of Gaussian
#: values (1 / the normal distribution's quantile at 3/4).
MAD_TO_STD = 1.4826


def robust_spread(values: Any, centre: float | None = None) -> float:
    """:data:`MAD_TO_STD` times the median absolute deviation of ``values`` from ``centre``
    (their median where None): their standard deviation where they are Gaussian, which a
    few outliers do not move, in the values' own float precision. NaN for no values."""
    values = np.asarray(values).ravel()
    if not np.issubdtype(values.dtype, np.floating):
        values = values.astype(np.float64)
    if not values.size:
        return math.nan
    centre = float(np.median(values)) if centre is None else centre
    return MAD_TO_STD * float(np.median(np.abs(values - centre)))


# ---------------------------------------------------------------------------------------
# Decibels


def power_to_db(values: Any, dtype: Any = np.float32) -> Any:
    """Linear power to decibels, ``10 log10``; zero, negative and non-finite powers give
    NaN (no dB value), never -inf. A DataArray gives a DataArray (same coordinates and
    attributes, ``units`` "dB"); anything else an array of ``dtype``."""
    if isinstance(values, xr.DataArray):
        return values.copy(data=power_to_db(values.values, dtype)).assign_attrs(units="dB")
    values = np.asarray(values)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10.0 * np.log10(np.where(np.isfinite(values) & (values > 0), values, np.nan))
    return out.astype(dtype)


def db_to_power(values: Any, dtype: Any = np.float64) -> np.ndarray:
    """Decibels to linear power, ``10^(dB / 10)`` (NaN stays NaN)."""
    return np.power(10.0, np.asarray(values, dtype=np.float64) / 10.0).astype(dtype)


# ---------------------------------------------------------------------------------------
# Random fields


def smooth_random_field(shape: tuple[int, int], *, seed: Any, correlation_cells: float | Sequence[float],
                        boundary: Literal["periodic", "padded", "reflect"] = "periodic") -> np.ndarray:
    """A smooth Gaussian random field of zero mean and unit standard deviation: white noise
    filtered by a Gaussian kernel of ``correlation_cells`` cells (its standard deviation;
    one per axis, or one for both) through the FFT.

    Parameters
    ----------
    seed : an integer, a sequence of integers (``numpy.random.default_rng``'s entropy) or a
        ``numpy.random.Generator`` to draw from.
    boundary : ``"periodic"``: the field wraps around, and is scaled to the sample's mean
        and standard deviation (a texture: every scene has its full contrast);
        ``"padded"``: drawn on a grid padded by three kernel widths so that opposite edges
        do not correlate, scaled by the ensemble's standard deviation (an error field: over
        a scene small against the correlation, part of it is a bias, as in a real
        product). A kernel narrower than one cell leaves the noise white; ``"reflect"``:
        filtered in space with the edges mirrored, scaled to the sample's statistics (a
        mask drawn by a quantile of it: clouds).
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    sigma = [float(correlation_cells)] * 2 if np.ndim(correlation_cells) == 0 else [float(c) for c in correlation_cells]
    if boundary == "periodic":
        noise = rng.standard_normal(shape)
        fy = np.fft.fftfreq(shape[0])[:, None]
        fx = np.fft.rfftfreq(shape[1])[None, :]
        kernel = np.exp(-0.5 * (2 * np.pi) ** 2 * ((sigma[0] * fy) ** 2 + (sigma[1] * fx) ** 2))
        field = np.fft.irfft2(np.fft.rfft2(noise) * kernel, s=shape)
        return (field - field.mean()) / (field.std() + 1e-12)
    if boundary == "reflect":
        field = scipy.ndimage.gaussian_filter(rng.standard_normal(shape), sigma=sigma)
        return (field - field.mean()) / (field.std() + 1e-12)
    if boundary != "padded":
        raise InvalidInputError(f"boundary must be 'periodic', 'padded' or 'reflect', got {boundary!r}")
    sigma = [s if s >= 0.5 else 0.0 for s in sigma]
    pads = [math.ceil(3 * s) for s in sigma]
    padded = (shape[0] + 2 * pads[0], shape[1] + 2 * pads[1])
    noise = rng.standard_normal(padded)
    if max(sigma) == 0.0:
        return noise[: shape[0], : shape[1]]
    fy = np.fft.fftfreq(padded[0])[:, None]
    fx = np.fft.fftfreq(padded[1])[None, :]
    kernel = np.exp(-2 * np.pi**2 * ((sigma[0] * fy) ** 2 + (sigma[1] * fx) ** 2))
    field = np.fft.ifft2(np.fft.fft2(noise) * kernel).real
    field /= np.linalg.norm(kernel) / math.sqrt(kernel.size)  # the ensemble's standard deviation
    return field[pads[0] : pads[0] + shape[0], pads[1] : pads[1] + shape[1]]


# ---------------------------------------------------------------------------------------
# Sampling


def bilinear_at(values: np.ndarray, rows: np.ndarray, cols: np.ndarray, *,
                edge: Literal["nearest", "odd"] = "nearest") -> np.ndarray:
    """``values`` (float64) at fractional (row, column) positions of any shape, bilinear
    between cell centres; NaN where none of the four nearest cells has a value.

    Cells without a value are left out of the four (the others' weights renormalised), as
    interpolation alone would spread a NaN over every value next to it. Past the grid's
    edge, ``edge="nearest"`` continues the edge's values; ``"odd"`` continues by odd
    reflection (``2 v_edge - v_mirror``: a slope goes on, where "nearest" would flatten
    the terrain). Only the window the positions need is read.
    """
    values = np.asarray(values)
    rows, cols = np.asarray(rows, dtype=np.float64), np.asarray(cols, dtype=np.float64)
    n_rows, n_cols = values.shape
    if rows.size == 0:
        return np.full(rows.shape, np.nan)
    window, shifts = [], []
    for positions, size in ((rows, n_rows), (cols, n_cols)):
        low, high = float(positions.min()), float(positions.max())
        # At least two cells a side (where there are), so that a reflection past the edge
        # has a slope to continue.
        start = min(max(0, math.floor(low)), max(size - 2, 0))
        stop = max(min(size, math.floor(high) + 2), min(start + 2, size))
        if edge == "odd":
            # Past the edge, 256 cells at most are continued; further positions take the last.
            before = min(256, math.ceil(-low) + 1) if low < 0 else 0
            after = min(256, math.ceil(high - (size - 1)) + 1) if high > size - 1 else 0
        else:
            before = after = 0
        window.append((start, stop, before, after))
        shifts.append(before - start)
    (r0, r1, rb, ra), (c0, c1, cb, ca) = window
    part = values[r0:r1, c0:c1]
    if rb or ra or cb or ca:
        part = np.pad(part, ((rb, ra), (cb, ca)), mode="reflect", reflect_type="odd")
    found = np.isfinite(part)
    coordinates = np.stack([rows + shifts[0], cols + shifts[1]])
    total = scipy.ndimage.map_coordinates(np.where(found, part, 0.0), coordinates, output=np.float64,
                                          order=1, mode="nearest")
    weight = scipy.ndimage.map_coordinates(found.astype(np.float32), coordinates, output=np.float64,
                                           order=1, mode="nearest")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 1e-6, total / weight, np.nan)
