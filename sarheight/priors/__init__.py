"""Sparse elevation priors: a few known heights on a DEM's grid, the distance from every cell
to the nearest one, and the heights the priors alone give.

The terrain-height model is given, beside the SAR image, a few known heights (priors), a mask
of where they are and the distance to the nearest one; every model is compared with the
priors-only interpolation. This module makes all three.

Public functions
----------------
PriorSpec
    One specification of a scene's known heights (drawn in a pattern or read from points,
    their errors, CRS, vertical datum and geoid grid), taken by every function that makes
    priors and by the command line.
sample_priors
    Priors on a DEM's grid: sampled from the DEM in one of the patterns real priors come in,
    exact or with an instrument's errors, or read from points (GNSS, ICESat-2) in any CRS and
    vertical datum.
instrument_priors
    Priors as an instrument kind of :data:`PRIOR_KINDS` gives them: its pattern, and errors
    drawn from its ranges.
draw_prior_errors, PriorErrors
    One instrument's error model, drawn from a kind's ranges or given.
distance_map
    The distance (m) from every cell to the nearest prior, geographic grids included.
interpolate_priors
    The priors-only baseline: linear inside the priors' convex hull, inverse-distance
    weighting or nearest prior, with no hole.

The modules: ``sampling`` (:func:`sample_priors` and the patterns), ``instruments`` (the
errors of altimeters, lidars and GNSS, :data:`PRIOR_KINDS`), ``points`` (CSV, GeoJSON and
GeoPackage readers), ``spec`` (:class:`PriorSpec`), ``distance`` (:func:`distance_map`) and ``baseline``
(:func:`interpolate_priors`). Their public names are importable from here.
"""

from __future__ import annotations

from .baseline import INTERPOLATION_METHODS, interpolate_priors
from .distance import distance_map
from .instruments import PRIOR_ERROR_ATTRS, PRIOR_KINDS, PriorErrors, draw_prior_errors
from .points import POINT_FORMATS
from .sampling import instrument_priors, sample_priors
from .spec import PATTERNS, TRACK_LAYOUTS, PriorSpec

__all__ = [
    "INTERPOLATION_METHODS",
    "PATTERNS",
    "POINT_FORMATS",
    "PRIOR_ERROR_ATTRS",
    "PRIOR_KINDS",
    "TRACK_LAYOUTS",
    "PriorErrors",
    "PriorSpec",
    "distance_map",
    "draw_prior_errors",
    "instrument_priors",
    "interpolate_priors",
    "sample_priors",
]
