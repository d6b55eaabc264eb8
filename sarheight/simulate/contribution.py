"""What each facet of the DEM contributes to the image: a sigma0 law of the local incidence
(the empirical one, or a user's), the gamma area, or per-cell weights, in the form the facet
kernel takes (:class:`FacetContribution`, :func:`resolve_contribution`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import numpy as np
import xarray as xr

from .. import compute as door
from ..errors import InvalidInputError
from ..ground import EMPIRICAL_LAW, CellLaws, empirical_sigma0

#: Pixels whose simulated gamma area is below this fraction of the flat-terrain area are
#: not valid for terrain flattening (Small 2011).
VALID_AREA_FRACTION = door.VALID_AREA_FRACTION


Contribution = Literal["model", "gamma"] | Callable[[np.ndarray], np.ndarray] | xr.DataArray | CellLaws


Projection = Literal["exact", "bilinear"]


@dataclasses.dataclass(frozen=True)
class FacetContribution:
    """What each facet contributes, in the form the facet kernel takes
    (:func:`resolve_contribution` builds it from what a user gives).

    Attributes
    ----------
    code : ``compute.CONTRIBUTION_MODEL`` (a sigma0 law of the local incidence
        times the sigma area), ``CONTRIBUTION_GAMMA`` (the gamma area),
        ``CONTRIBUTION_USER`` (per-cell weights shared among the cell's facets) or
        ``CONTRIBUTION_CELL_LAW`` (a law per class of each facet's own incidence, a
        factor per cell, :class:`sarheight.ground.CellLaws`).
    law : the coefficients (a0, a1, a2) of the empirical sigma0 law.
    table : a user law tabulated over 0..90 degrees of local incidence (linear sigma0), or
        empty for the empirical law.
    user_weight : the per-cell weights on the DEM grid (float64, 0 where NaN; the laws'
        factor of ``CONTRIBUTION_CELL_LAW``), or a (1, 1) placeholder.
    description : what the contribution is, for the outputs' attributes.
    cell_class, class_tables : ``CONTRIBUTION_CELL_LAW``: each cell's class (int64 on the
        DEM grid) and each class's law tabulated over 0..90 degrees (classes, n + 1); else
        (1, 1) and (1, 2) placeholders.
    """

    code: int
    law: np.ndarray
    table: np.ndarray
    user_weight: np.ndarray
    description: str
    cell_class: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((1, 1), dtype=np.int64))
    class_tables: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((1, 2)))

    def facet_law(self) -> door.FacetLaw:
        """What each facet carries, as the kernel door's facet passes take it."""
        return door.FacetLaw(self.code, self.law, self.table, self.class_tables)

    def density_scale(self, reference_area: float) -> float:
        """The largest contribution per unit area a facet can have (the law's largest value,
        1 for gamma areas, the largest cell weight over ``reference_area`` (m^2) for user
        weights): the scale against which rounding residue is told from signal."""
        if self.code == door.CONTRIBUTION_GAMMA:
            return 1.0
        if self.code == door.CONTRIBUTION_USER:
            weight = float(np.max(self.user_weight, initial=0.0))
            return weight / reference_area if reference_area > 0 else weight
        if self.code == door.CONTRIBUTION_CELL_LAW:
            return float(np.max(self.user_weight, initial=0.0)) * float(np.max(self.class_tables, initial=0.0))
        if self.table.size > 1:
            return float(np.max(self.table))
        return float(empirical_sigma0(np.linspace(0.0, 90.0, 901)).max())


#: The steps over 0..90 degrees a law per class is tabulated in: the table's linear
#: interpolation within a part in a million of the law's own value (dark steep laws
#: included).
CELL_LAW_STEPS = 90_000


def law_table(law: Callable[[np.ndarray], np.ndarray], n: int = 9000) -> np.ndarray:
    angles = np.linspace(0.0, 90.0, n + 1)
    try:
        values = np.asarray(law(angles), dtype=np.float64)
    except Exception as exc:
        raise InvalidInputError(
            f"the contribution law {law!r} failed on local incidence angles 0..90 degrees ({exc}): "
            "it must take a numpy array of angles in degrees and return linear sigma0"
        ) from exc
    if values.shape != angles.shape or not np.all(np.isfinite(values)) or np.any(values < 0):
        raise InvalidInputError(
            "the contribution law must return one finite, non-negative linear sigma0 per angle"
        )
    return values


def values_on_dem_grid(field: xr.DataArray, dem: xr.DataArray, what: str) -> np.ndarray:
    """The values of ``field`` (float64, rows and columns of the DEM) once it is known to lie
    on the DEM's grid: the DEM's dimensions (in either order), its shape and, where
    ``field`` has coordinates, the same ones (to a millionth of a cell). Raises a clear
    error otherwise, naming ``what`` the field is."""
    if set(field.dims) != set(dem.dims):
        raise InvalidInputError(
            f"{what}: dims {field.dims}, but the DEM's are {dem.dims}; give it on the DEM grid, e.g. "
            "dem.copy(data=values)"
        )
    field = field.transpose(*dem.dims)
    if field.shape != dem.shape:
        raise InvalidInputError(
            f"{what}: shape {field.shape}, but the DEM's is {dem.shape}; give one value per DEM cell on the "
            "DEM grid"
        )
    for dim in dem.dims:
        if dim not in field.coords or dim not in dem.coords or dem.sizes[dim] < 2:
            continue
        mine, theirs = np.asarray(field[dim].values, dtype=np.float64), np.asarray(dem[dim].values, dtype=np.float64)
        step = abs(float(theirs[1] - theirs[0]))
        if not np.allclose(mine, theirs, rtol=0.0, atol=1e-6 * step):
            raise InvalidInputError(
                f"not on the DEM grid: the {dim} coordinates of {what} run {mine[0]:.10g}..{mine[-1]:.10g}, "
                f"the DEM's {theirs[0]:.10g}..{theirs[-1]:.10g}; resample it to the DEM "
                "(field.rio.reproject_match(dem)) or build it with dem.copy(data=values)"
            )
    if field.dtype.kind not in "fiu":
        raise InvalidInputError(f"{what}: dtype {field.dtype}; give real numbers")
    return np.asarray(field.values, dtype=np.float64)


def resolve_contribution(contribution: Contribution, dem: xr.DataArray) -> FacetContribution:
    """The facet kernel's form of a contribution as a user gives it (see :func:`simulate`):
    ``"model"``, ``"gamma"``, a callable law of the local incidence angle (degrees), a
    DataArray of per-cell weights on ``dem``'s grid or :class:`CellLaws`. Raises
    InvalidInputError for anything else, a law that fails or returns negative values, or
    weights off the grid."""
    empty = np.zeros(0)
    no_weight = np.zeros((1, 1))
    if isinstance(contribution, str):
        if contribution == "model":
            return FacetContribution(door.CONTRIBUTION_MODEL, np.array(EMPIRICAL_LAW), empty, no_weight,
                                 "model: empirical sigma0 law x sigma area")
        if contribution == "gamma":
            return FacetContribution(door.CONTRIBUTION_GAMMA, np.array(EMPIRICAL_LAW), empty, no_weight,
                                 "gamma: projected (gamma) area, constant gamma0")
        raise InvalidInputError(
            f"unknown contribution model {contribution!r}: use 'model', 'gamma', a callable of the "
            "local incidence angle (degrees) returning linear sigma0, or a DataArray of per-cell weights"
        )
    if isinstance(contribution, CellLaws):
        return _cell_laws(contribution, dem)
    if isinstance(contribution, xr.DataArray):
        weights = values_on_dem_grid(contribution, dem, "the contribution weights")
        if np.any(weights < 0) or not np.all(np.isfinite(weights) | np.isnan(dem.values)):
            raise InvalidInputError("contribution weights must be finite and non-negative on the DEM")
        return FacetContribution(door.CONTRIBUTION_USER, np.array(EMPIRICAL_LAW), empty,
                             np.nan_to_num(weights), "user weights per cell")
    if callable(contribution):
        return FacetContribution(door.CONTRIBUTION_MODEL, np.array(EMPIRICAL_LAW), law_table(contribution),
                             no_weight, f"law {getattr(contribution, '__name__', repr(contribution))} x sigma area")
    raise InvalidInputError(
        f"contribution must be 'model', 'gamma', a callable or a DataArray, not {type(contribution).__name__}"
    )


def _cell_laws(contribution: CellLaws, dem: xr.DataArray) -> FacetContribution:
    """The facet kernel's form of :class:`CellLaws` on ``dem``'s grid."""
    classes = np.asarray(contribution.classes)
    if classes.shape != dem.shape or classes.dtype.kind not in "iu":
        raise InvalidInputError(f"CellLaws.classes must be integer classes of the DEM's shape {dem.shape}, got "
                                f"{classes.dtype} of shape {classes.shape}")
    laws = tuple(contribution.laws)
    if not laws or not all(callable(law) for law in laws):
        raise InvalidInputError("CellLaws.laws must be one callable sigma0 law (of degrees) per class")
    if contribution.factor is None:
        factor = np.ones(dem.shape)
    else:
        factor = np.asarray(contribution.factor, dtype=np.float64)
        if factor.shape != dem.shape:
            raise InvalidInputError(f"CellLaws.factor has shape {factor.shape}, the DEM {dem.shape}: give one factor "
                                    "per DEM cell")
        if np.any(factor[np.isfinite(factor)] < 0) or np.isinf(factor).any():
            raise InvalidInputError("CellLaws.factor must be finite and non-negative (NaN where a cell carries "
                                    "nothing)")
    return FacetContribution(door.CONTRIBUTION_CELL_LAW, np.array(EMPIRICAL_LAW), np.zeros(0),
                             np.ascontiguousarray(np.nan_to_num(factor, nan=0.0)),
                             f"a law per class ({len(laws)}) x a factor per cell x sigma area",
                             np.ascontiguousarray(classes, dtype=np.int64),
                             np.stack([law_table(law, CELL_LAW_STEPS) for law in laws]))
