"""Realistic coarse DEMs: a fine (true) DEM as a global DEM product would measure it.

The ideal coarse DEM (:func:`sarheight.terrain.grid.block_mean`) is the exact mean of aligned
blocks of the truth. A real product (SRTM, Copernicus GLO-30/90, ASTER GDEM, AW3D30) is
not: its grid is not aligned with the truth's, its content is displaced by its geolocation
error, and its heights carry errors that are spatially correlated, grow with slope, share
a bias, and are stored in whole metres. :func:`coarse_product` makes such a product on its
own grid from the truth and one draw of :class:`CoarseDemErrors`; :func:`draw_errors`
draws them from a family of :data:`DEGRADATION_FAMILIES`.

The error model, per product cell (heights in m)::

    h = area mean of the truth displaced by the shift, over the cell's footprint
        + correlated_error_m * g        (g: Gaussian random field, unit std)
        + slope_error_m * tan(slope) * n  (n: standard normal, independent per cell)
        + bias_m,                         then rounded to quantum_m

The families' ranges, from published accuracy figures (LE90 = 1.645 sigma of a normal
error, CE90 = 2.146 sigma of a circular one):

- *Correlated error* (``correlated_error_m``). SRTM's absolute height error is 5.6-9.0 m
  LE90 by continent (Rodriguez, Morris & Belz 2006, PE&RS 72(3)): sigma 3.4-5.5 m, part of
  it a bias over a scene; Copernicus DEM's is < 4 m LE90 (product handbook), sigma < 2.4 m;
  SRTM's instrumental (uncorrelated) noise is +-1.55 m rms (Becek 2008, GRL 35). Training
  draws 0.5-5 m (Copernicus to SRTM); test draws 1-7 m, past SRTM's worst continent.
- *Correlation length* (``correlation_length_m``): the lag at which the correlation falls
  to 1/e. Attitude and baseline errors of a single-pass interferometer vary over
  kilometres; training draws 300-3000 m (a few coarse cells to a scene), test 200-5000 m.
- *Slope error* (``slope_error_m``, per unit tan slope). SRTM's error grows with slope
  (Gorokhovich & Voustianiouk 2006, Remote Sens. Environ. 104); SRTM 1" has an RMSE of
  9.2 m in the Himalaya, the 3" product 23-47 m before outlier filtering (Mukul et al.
  2017, Sci. Rep. 7:41672); Copernicus, NASADEM and AW3D30 have RMSEs of 6.6-6.7 m against
  ICESat-2 over Chinese terrain, correlated with slope (Li et al. 2022, Int. J. Digital
  Earth, 10.1080/17538947.2022.2094002). 10 m per unit tan gives 5.8 m on 30-degree
  slopes, with a 5 m correlated error 7.6 m RMSE, as the Himalayan and Chinese figures;
  training draws 0-10, test 2-14 (14 m on 45-degree slopes, toward the 3" figures).
- *Bias* (``bias_m``): the part of the absolute error a scene shares, bounded by the LE90
  figures above: training +-3 m, test +-4 m.
- *Shift* (``shift_east_m``, ``shift_north_m``). SRTM's absolute geolocation error is
  7.2-12.6 m (90 %) by continent (Rodriguez et al. 2006), Copernicus DEM's < 6 m CE90;
  a user confusing pixel-is-point and pixel-is-area registration shifts a 30 m or 90 m
  product by half a cell, 15-45 m. The magnitude is drawn uniformly in 0-30 m (training)
  or 0-45 m (test), the direction uniformly.
- *Grid offset*: uniform in [0, factor) fine cells per axis (a product's grid bears no
  relation to the truth's).
- *Quantum*: 0 (float32 products: Copernicus) or 1 m (int16 products: SRTM, NASADEM,
  ASTER, AW3D30), with equal odds.

Test values come from ranges wider than training's, so that a test sees values and
combinations training did not. The ``"ideal"`` family has no errors and an aligned grid:
the product is then :func:`~sarheight.terrain.grid.block_mean` on its whole blocks.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import numpy as np
import scipy.sparse
import xarray as xr
from affine import Affine

from .dem import Dem, open_dem
from .errors import InvalidInputError
from .raster import cell_centres, cell_size_m, gradient, smooth_random_field

__all__ = ["DEGRADATION_FAMILIES", "ERROR_PARTS", "CoarseDemErrors", "coarse_error_parts", "coarse_product",
           "draw_errors", "realistic_coarse_dem"]

#: For each family, the range (low, high) each parameter is drawn from, uniformly;
#: ``shift_m`` is the shift's magnitude (its direction is uniform), ``grid_offset`` a
#: fraction of the factor, and ``quantum_m`` takes one of its two ends with equal odds.
DEGRADATION_FAMILIES: dict[str, dict[str, tuple[float, float]]] = {
    "ideal": {"correlated_error_m": (0.0, 0.0), "correlation_length_m": (0.0, 0.0), "slope_error_m": (0.0, 0.0),
              "bias_m": (0.0, 0.0), "shift_m": (0.0, 0.0), "grid_offset": (0.0, 0.0), "quantum_m": (0.0, 0.0)},
    "training": {"correlated_error_m": (0.5, 5.0), "correlation_length_m": (300.0, 3000.0),
                 "slope_error_m": (0.0, 10.0), "bias_m": (-3.0, 3.0), "shift_m": (0.0, 30.0),
                 "grid_offset": (0.0, 1.0), "quantum_m": (0.0, 1.0)},
    "test": {"correlated_error_m": (1.0, 7.0), "correlation_length_m": (200.0, 5000.0),
             "slope_error_m": (2.0, 14.0), "bias_m": (-4.0, 4.0), "shift_m": (0.0, 45.0),
             "grid_offset": (0.0, 1.0), "quantum_m": (0.0, 1.0)},
}

# Overlaps within this many fine cells of a cell edge count as on it (float rounding of shifts).
_EDGE_TOLERANCE = 1e-9


def _check_factor(factor: object) -> int:
    if isinstance(factor, bool) or not isinstance(factor, (int, np.integer)) or factor < 2:
        raise InvalidInputError(f"the coarse factor must be an integer >= 2 (coarse cell / fine cell), got {factor!r}")
    return int(factor)


@dataclass(frozen=True)
class CoarseDemErrors:
    """The errors of one coarse DEM product (all in metres unless said).

    Attributes
    ----------
    factor : the coarse cell is ``factor`` fine cells across (>= 2).
    correlated_error_m : standard deviation of the spatially correlated error.
    correlation_length_m : lag (m) at which its correlation falls to 1/e (Gaussian
        covariance); below one coarse cell the error is white.
    slope_error_m : standard deviation of the error per unit tan(slope) of the terrain at
        the coarse scale, independent between coarse cells.
    bias_m : constant vertical offset.
    shift_east_m, shift_north_m : geolocation error: a feature at true position q appears
        at q + shift in the product.
    grid_offset : (row, col) of the product grid's origin in fine cells, each in
        [0, factor); non-integer: the grids are not aligned.
    quantum_m : heights are rounded to this step (1 m: int16 products); 0: not rounded.
    """

    factor: int
    correlated_error_m: float = 0.0
    correlation_length_m: float = 0.0
    slope_error_m: float = 0.0
    bias_m: float = 0.0
    shift_east_m: float = 0.0
    shift_north_m: float = 0.0
    grid_offset: tuple[float, float] = (0.0, 0.0)
    quantum_m: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "factor", _check_factor(self.factor))
        for name in ("correlated_error_m", "correlation_length_m", "slope_error_m", "bias_m", "shift_east_m",
                     "shift_north_m", "quantum_m"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                    or not math.isfinite(value):
                raise InvalidInputError(f"{name} must be a finite number of metres, got {value!r}")
            if name not in ("bias_m", "shift_east_m", "shift_north_m") and value < 0:
                raise InvalidInputError(f"{name} must be >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        try:
            offset = tuple(float(value) for value in np.ravel(np.asarray(self.grid_offset, dtype=float)))
        except (TypeError, ValueError):
            offset = ()
        if len(offset) != 2 or not all(0.0 <= value < self.factor for value in offset):
            raise InvalidInputError(
                f"grid_offset must be (row, col) fine cells, each in [0, {self.factor}) for factor {self.factor}, "
                f"got {self.grid_offset!r}: a whole coarse cell more is the same grid"
            )
        object.__setattr__(self, "grid_offset", offset)

    @classmethod
    def ideal(cls, factor: int) -> CoarseDemErrors:
        """No errors and a grid aligned with the fine one: the exact block mean."""
        return cls(factor=factor)

    @property
    def is_ideal(self) -> bool:
        """Whether the product is the exact block mean of the truth on an aligned grid."""
        return (self.correlated_error_m == self.slope_error_m == self.bias_m == self.shift_east_m
                == self.shift_north_m == self.quantum_m == 0.0 and self.grid_offset == (0.0, 0.0))

    def stated_error_m(self, product: xr.DataArray) -> float:
        """The vertical error (m, RMS) an accuracy figure of this product would state over
        ``product`` (the product on its own grid, whose slopes weigh the slope error): its
        correlated error, bias, slope-dependent error and rounding together; the shift
        aside (a horizontal error). 0 for the exact block mean."""
        heights = np.asarray(product.values, dtype=np.float64)
        dy, dx = cell_size_m(product)
        tan_slope = np.hypot(*gradient(heights, (dy, dx)))
        mean_tan2 = float(np.nanmean(tan_slope**2)) if np.isfinite(tan_slope).any() else 0.0
        return math.sqrt(self.correlated_error_m**2 + self.bias_m**2 + self.slope_error_m**2 * mean_tan2
                         + self.quantum_m**2 / 12.0)

    def to_attrs(self) -> dict[str, float | int]:
        """The errors as flat attributes (plain numbers, keys prefixed ``coarse_``), for
        NetCDF scene files."""
        attrs: dict[str, float | int] = {}
        for name, value in asdict(self).items():
            if name == "grid_offset":
                attrs["coarse_grid_offset_row"], attrs["coarse_grid_offset_col"] = value
            else:
                attrs[f"coarse_{name}"] = value
        return attrs


def draw_errors(factor: int, family: str, seed: int) -> CoarseDemErrors:
    """One product's errors drawn from ``family`` of :data:`DEGRADATION_FAMILIES`.

    Parameters
    ----------
    factor : coarse cell / fine cell (integer >= 2).
    family : ``"training"``, ``"test"`` or ``"ideal"``.
    seed : seed of :func:`numpy.random.default_rng`; the same seed draws the same errors.
    """
    factor = _check_factor(factor)
    if family not in DEGRADATION_FAMILIES:
        raise InvalidInputError(f"unknown degradation family {family!r}: use one of {', '.join(DEGRADATION_FAMILIES)}")
    ranges = DEGRADATION_FAMILIES[family]
    rng = np.random.default_rng(seed)

    def uniform(name: str) -> float:
        return float(rng.uniform(*ranges[name])) + 0.0  # + 0.0: no negative zeros in the attributes

    drawn = {name: uniform(name) for name in ("correlated_error_m", "correlation_length_m", "slope_error_m",
                                              "bias_m")}
    shift, direction = uniform("shift_m"), rng.uniform(0.0, 2 * math.pi)
    # Uniform draws are in [low, high): the largest offset stays below the factor after scaling.
    offset = tuple(min(uniform("grid_offset") * factor, math.nextafter(factor, 0.0)) for _ in range(2))
    quantum = float(ranges["quantum_m"][int(rng.integers(2))])
    return CoarseDemErrors(factor=factor, **drawn, shift_east_m=shift * math.sin(direction) + 0.0,
                           shift_north_m=shift * math.cos(direction) + 0.0, grid_offset=offset, quantum_m=quantum)


def _overlap_weights(fine_cells: int, start: float, factor: int) -> tuple[scipy.sparse.csr_matrix, int]:
    """Overlap lengths of the fine cells [k, k+1) with the coarse intervals
    [start + i*factor, start + (i+1)*factor) lying inside [0, fine_cells), and the index i
    of the first such interval (whose coarse cell is i cells past the product's origin)."""
    first = math.ceil(-start / factor - _EDGE_TOLERANCE)
    last = math.floor((fine_cells - start) / factor + _EDGE_TOLERANCE) - 1
    count = max(last - first + 1, 0)
    low = start + factor * (first + np.arange(count, dtype=np.float64))
    cells = np.floor(low + _EDGE_TOLERANCE)[:, None].astype(np.int64) + np.arange(factor + 1)[None, :]
    overlap = np.minimum(cells + 1, low[:, None] + factor) - np.maximum(cells, low[:, None])
    keep = (overlap > _EDGE_TOLERANCE) & (cells >= 0) & (cells < fine_cells)
    rows = np.broadcast_to(np.arange(count)[:, None], cells.shape)
    weights = scipy.sparse.csr_matrix((overlap[keep], (rows[keep], cells[keep])), shape=(count, fine_cells))
    return weights, first


def coarse_product(truth: xr.DataArray | Dem, errors: CoarseDemErrors, *, seed: int = 0) -> xr.DataArray:
    """The coarse DEM product that measures ``truth`` with ``errors``, on its own grid.

    Each product cell is the exact area mean of the truth displaced by the shift over the
    cell's footprint (separable overlap weights of fine cells, NaN-aware: a cell without
    finite truth is NaN), plus the correlated error, the slope error (from the product's
    own slopes) and the bias, rounded to the quantum. Only cells whose displaced footprint
    lies inside the truth grid are kept.

    Parameters
    ----------
    truth : the fine DEM (heights in m with a CRS; anything :func:`sarheight.dem.open_dem`
        takes).
    errors : the product's errors; :meth:`CoarseDemErrors.ideal` gives
        :func:`sarheight.terrain.grid.block_mean` on its whole blocks.
    seed : seed of :func:`numpy.random.default_rng` for the random errors.

    Returns
    -------
    The product (float32 heights in m, dims ``y``, ``x``): the truth's CRS and attributes
    plus :meth:`CoarseDemErrors.to_attrs` and ``coarse_seed``; its transform is the truth's
    moved by ``grid_offset`` (and whole coarse cells) and scaled by ``factor``. The shift
    is not in the transform: the product claims to be where it is registered.

    Raises
    ------
    InvalidInputError : the truth holds fewer than two product cells across.
    """
    truth = open_dem(truth, copy=False)
    factor = errors.factor
    rows, cols = truth.shape
    if min(rows, cols) < 2 * factor:
        raise InvalidInputError(
            f"a {rows} x {cols} DEM is too small for a {factor}x coarser product (fewer than two coarse cells "
            "across): use a larger DEM or a smaller factor"
        )
    transform = truth.rio.transform()
    dy, dx = cell_size_m(truth)
    # Content at product position p is the truth at p - shift (positions in fine cells).
    shift_rows = errors.shift_north_m / dy * math.copysign(1.0, transform.e)
    shift_cols = errors.shift_east_m / dx * math.copysign(1.0, transform.a)
    row_weights, first_row = _overlap_weights(rows, errors.grid_offset[0] - shift_rows, factor)
    col_weights, first_col = _overlap_weights(cols, errors.grid_offset[1] - shift_cols, factor)
    if min(row_weights.shape[0], col_weights.shape[0]) < 2:
        raise InvalidInputError(
            f"a {rows} x {cols} DEM holds fewer than two {factor}x coarser cells across once shifted by "
            f"({errors.shift_north_m:g} m north, {errors.shift_east_m:g} m east): use a larger DEM"
        )
    heights = truth.values.astype(np.float64)
    finite = np.isfinite(heights)

    def area_sum(values: np.ndarray) -> np.ndarray:
        return np.asarray(col_weights @ np.asarray(row_weights @ values).T).T

    total, area = area_sum(np.where(finite, heights, 0.0)), area_sum(finite.astype(np.float64))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(area > 0, total / area, np.nan)

    rng = np.random.default_rng(seed)
    coarse_dy, coarse_dx = factor * dy, factor * dx
    length = errors.correlation_length_m
    # A Gaussian field of unit variance correlated as exp(-(lag/length)^2): white noise
    # filtered with a Gaussian of std length/2; padded, so that the FFT's wrap-around does
    # not correlate opposite edges, and of the ensemble's std (a long correlation over a
    # small scene is partly a bias, as a real product's error is).
    correlated = smooth_random_field(mean.shape, seed=rng, correlation_cells=(0.5 * length / coarse_dy,
                                     0.5 * length / coarse_dx), boundary="padded")
    # Slopes of the terrain at the product's scale; cells beside voids get no slope error.
    tan_slope = np.nan_to_num(np.hypot(*gradient(mean, (coarse_dy, coarse_dx))), nan=0.0)
    product = (mean + errors.correlated_error_m * correlated
               + errors.slope_error_m * tan_slope * rng.standard_normal(mean.shape) + errors.bias_m)
    if errors.quantum_m > 0:
        product = np.round(product / errors.quantum_m) * errors.quantum_m

    coarse_transform = (transform @ Affine.translation(errors.grid_offset[1] + first_col * factor,
                                                       errors.grid_offset[0] + first_row * factor)
                        @ Affine.scale(factor))
    y, x = cell_centres(coarse_transform, product.shape)
    out = xr.DataArray(product.astype(np.float32), dims=("y", "x"), coords={"y": y, "x": x}, name=truth.name,
                       attrs={**truth.attrs, **errors.to_attrs(), "coarse_seed": int(seed)})
    return out.rio.write_crs(truth.rio.crs).rio.write_transform(coarse_transform)


def realistic_coarse_dem(truth: xr.DataArray, factor: int, family: str, seed: int
                         ) -> tuple[xr.DataArray, CoarseDemErrors]:
    """A coarse DEM product of ``truth`` with errors drawn from ``family``
    (:func:`draw_errors`, then :func:`coarse_product`, both seeded by ``seed``).

    Returns
    -------
    (product, errors): the product on its own grid (attribute ``coarse_family`` added)
    and the errors drawn.
    """
    errors = draw_errors(factor, family, seed)
    product = coarse_product(truth, errors, seed=seed)
    product.attrs["coarse_family"] = family
    return product, errors


#: The parts of a coarse product's error on its own grid that :func:`coarse_error_parts`
#: gives (the shift's part is the difference of two area means, see there).
ERROR_PARTS = ("correlated", "slope", "bias", "rounding")


def coarse_error_parts(truth: xr.DataArray, errors: CoarseDemErrors, *, seed: int = 0) -> dict[str, xr.DataArray]:
    """The product of :func:`coarse_product` (same ``truth``, ``errors`` and ``seed``) taken
    apart: the exact area means of the truth on the product's grid without the shift
    (``ideal``) and with it (``shifted``: their difference is the shift's part), and the
    other parts of its error (:data:`ERROR_PARTS`, m, on the product's grid), which sum
    to the product less ``shifted``. Each is made by the same random draws as the product
    (one seed draws them in the same order whatever is switched off).

    Returns
    -------
    dict of DataArrays: ``product``, ``shifted`` and the parts on the product's grid, and
    ``ideal`` on its own (without the shift the product's grid may keep other cells: put
    both on one grid before taking their difference).
    """
    product = coarse_product(truth, errors, seed=seed)
    plain = {"correlated_error_m": 0.0, "slope_error_m": 0.0, "bias_m": 0.0, "quantum_m": 0.0}
    ideal = coarse_product(truth, replace(errors, shift_east_m=0.0, shift_north_m=0.0, **plain), seed=seed)
    shifted = coarse_product(truth, replace(errors, **plain), seed=seed)
    correlated = coarse_product(truth, replace(errors, **{**plain, "correlated_error_m": errors.correlated_error_m}),
                                seed=seed) - shifted
    slope = coarse_product(truth, replace(errors, **{**plain, "slope_error_m": errors.slope_error_m}),
                           seed=seed) - shifted
    bias = xr.full_like(shifted, errors.bias_m)
    rounding = product - shifted - correlated - slope - bias
    return {"product": product, "ideal": ideal, "shifted": shifted, "correlated": correlated, "slope": slope,
            "bias": bias, "rounding": rounding}
