"""One specification of a scene's known heights, taken by every function that makes priors.

A :class:`PriorSpec` says where the priors come from (drawn from a DEM in a pattern, or read
from points), how exact they are (an instrument's errors, noise) and, for points, their CRS,
vertical datum and geoid grid. :func:`sarheight.priors.sample_priors`, the scene builders
(:func:`sarheight.terrain.simulated.simulate_scene`, a set's axes
:class:`~sarheight.terrain.scene_sets.SceneAxes`, :func:`sarheight.terrain.observed.observed_scene`),
:func:`sarheight.refinement.refine_dem` and the command line all take it, so the points' CRS
or a pattern is spelled one way everywhere. It is checked whole when made, before any DEM is read.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InvalidInputError
from .instruments import PRIOR_KINDS, PriorErrors, draw_prior_errors, kind_spec

#: The patterns priors drawn from a DEM lie in (see :mod:`sarheight.priors.sampling`).
PATTERNS = ("random", "tracks", "clusters")


#: The layouts of ``pattern="tracks"``: ICESat-2's beam pairs or GEDI's eight tracks.
TRACK_LAYOUTS = ("icesat2", "gedi")


@dataclass(frozen=True)
class PriorSpec:
    """Where a scene's known heights come from, and how exact they are.

    Give exactly one of ``fraction``, ``count`` (priors drawn from a DEM) or ``points``
    (known heights read from a file or table).

    Parameters
    ----------
    fraction : float, optional
        Share of the DEM's cells with a height that get a prior, 0 < fraction <= 1 (at least
        one prior).
    count : int, optional
        Number of priors, 1 .. the number of cells with a height.
    pattern : {"random", "tracks", "clusters"}, optional
        How drawn priors lie (:mod:`sarheight.priors.sampling`); default the instrument
        ``kind``'s, else "random". Not for ``points``.
    kind : str, optional
        An instrument of :data:`sarheight.priors.PRIOR_KINDS` ("altimeter", "lidar", "gnss",
        "exact"): its pattern, track layout and error ranges. Its errors are drawn when the
        priors are (:meth:`with_errors_drawn`), unless ``errors`` gives them. Not for
        ``points``.
    errors : PriorErrors, optional
        The instrument's error model: each prior is measured at its cell's centre displaced
        by the geolocation error, averaged over the footprint, lowered by the slope bias and
        given vertical noise (:mod:`sarheight.priors.instruments`). Not for ``points``.
    noise_m : float, default 0
        Standard deviation (m) of Gaussian noise added to every prior height (drawn or
        given), on top of the errors.
    track_layout : {"icesat2", "gedi"}, optional
        The beams of ``pattern="tracks"``; default the instrument's (``kind``, or the kind
        ``errors`` name), else "icesat2".
    points : str, os.PathLike or pandas.DataFrame, optional
        Known heights: a CSV (``.csv``, ``.txt``), GeoJSON (``.geojson``, ``.json``) or
        GeoPackage (``.gpkg``) file, or a DataFrame (columns x, y and height or their aliases:
        lon/lat, h/z/elevation, ICESat-2's h_li). Each point goes to the cell that contains
        it; the mean of several points in a cell is its prior.
    crs : anything pyproj reads, optional
        The CRS of ``points``. Required for CSV files and DataFrames (a DataFrame's
        ``attrs["crs"]`` is read when present); GeoJSON is EPSG:4326 unless the file says
        otherwise, a GeoPackage carries its own. Given, it overrides the file's. A compound
        (EPSG:9707) or 3-D (EPSG:4979) CRS also says the heights' datum.
    vertical_datum : {"egm96", "egm2008", "ellipsoid"}, optional
        Datum of the points' heights, overriding the CRS's; nothing declaring one, they are
        taken as ellipsoidal with a :class:`~sarheight.errors.VerticalDatumWarning`.
    geoid_grid : str or os.PathLike, optional
        Raster of geoid undulations (m) that brings EGM96/EGM2008 point heights to the
        ellipsoid; None: PROJ's grid.
    layer : str, optional
        The table of a GeoPackage that holds several point tables.

    Raises
    ------
    InvalidInputError
        Not exactly one of fraction, count, points; a fraction outside (0, 1], a count below
        1; an unknown pattern, kind or track layout, a track layout without tracks; a
        negative or non-finite noise; errors that are not a PriorErrors; a pattern, kind or
        errors with points; the points' CRS, datum, geoid grid or layer without points.

    Examples
    --------
    >>> PriorSpec(fraction=1e-3, pattern="tracks").label
    'tracks'
    >>> PriorSpec(count=200, kind="lidar").track_layout
    'gedi'
    """

    fraction: float | None = None
    count: int | None = None
    pattern: str | None = None
    kind: str | None = None
    errors: PriorErrors | None = None
    noise_m: float = 0.0
    track_layout: str | None = None
    points: str | os.PathLike[str] | pd.DataFrame | None = None
    crs: Any = None
    vertical_datum: str | None = None
    geoid_grid: str | os.PathLike[str] | None = None
    layer: str | None = None

    def __post_init__(self) -> None:
        given = self._given("fraction", "count", "points")
        if len(given) != 1:
            raise InvalidInputError(
                "Give exactly one of fraction= (a share of the DEM's cells), count= (a number of priors) or points= "
                f"(known heights), not {' and '.join(given) if given else 'none'}."
            )
        if self.points is not None:
            self._check_points()
        else:
            self._check_drawn()
        if isinstance(self.noise_m, bool) or not isinstance(self.noise_m, (int, float, np.integer, np.floating)) \
                or not math.isfinite(self.noise_m) or self.noise_m < 0:
            raise InvalidInputError(f"noise_m={self.noise_m!r} must be a standard deviation in metres, 0 or more.")
        object.__setattr__(self, "noise_m", float(self.noise_m))

    def _given(self, *names: str) -> list[str]:
        """The fields among ``names`` that were given (not None), in their order."""
        return [name for name in names if getattr(self, name) is not None]

    def _check_points(self) -> None:
        drawn = self._given("pattern", "kind", "errors", "track_layout")
        if drawn:
            raise InvalidInputError(
                f"{', '.join(name + '=' for name in drawn)} describe priors drawn from a DEM; given points= lie where "
                f"they were measured "
                "and carry their own errors. Leave them out with points (noise_m= adds noise to them)."
            )
        if not isinstance(self.points, (str, os.PathLike, pd.DataFrame)):
            raise InvalidInputError(
                f"points={self.points!r} must be a CSV, GeoJSON or GeoPackage file or a DataFrame of x, y, height."
            )
        if self.layer is not None and not isinstance(self.layer, str):
            raise InvalidInputError(f"layer={self.layer!r} must be the name of a GeoPackage table.")

    def _check_drawn(self) -> None:
        extra = self._given("crs", "vertical_datum", "geoid_grid", "layer")
        if extra:
            raise InvalidInputError(
                f"{', '.join(extra)} describe points= and mean nothing for priors drawn from a DEM: open the DEM "
                "with open_dem(...) to give its own datum."
            )
        if self.fraction is not None and (
                isinstance(self.fraction, bool) or not isinstance(self.fraction, (int, float, np.integer, np.floating))
                or not 0.0 < float(self.fraction) <= 1.0):
            raise InvalidInputError(
                f"fraction={self.fraction!r} must be a number in (0, 1]: the share of the DEM's cells with a height "
                "that get a prior (e.g. 0.001)."
            )
        if self.count is not None and (isinstance(self.count, bool) or not isinstance(self.count, (int, np.integer))
                                       or self.count < 1):
            raise InvalidInputError(f"count={self.count!r} must be a whole number of priors, at least 1.")
        instrument = kind_spec(self.kind) if self.kind is not None else {}
        if self.errors is not None and not isinstance(self.errors, PriorErrors):
            raise InvalidInputError(
                f"errors={self.errors!r} must be a PriorErrors (draw_prior_errors(kind, seed) draws one), or None for "
                "exact priors."
            )
        pattern = self.pattern if self.pattern is not None else instrument.get("pattern", "random")
        if pattern not in PATTERNS:
            raise InvalidInputError(f"pattern={pattern!r} is not one of {', '.join(map(repr, PATTERNS))}.")
        named = self.kind or getattr(self.errors, "kind", None)
        layout = self.track_layout or PRIOR_KINDS.get(named or "", {}).get("track_layout") or "icesat2"
        if layout not in TRACK_LAYOUTS:
            raise InvalidInputError(f"track_layout={layout!r} is not one of {', '.join(map(repr, TRACK_LAYOUTS))}.")
        if self.track_layout is not None and layout != "icesat2" and pattern != "tracks":
            raise InvalidInputError(f"track_layout={layout!r} lays out pattern='tracks', not {pattern!r}.")
        object.__setattr__(self, "pattern", pattern)
        object.__setattr__(self, "track_layout", layout)

    @property
    def label(self) -> str:
        """The priors' name in a scene's name and attributes: the instrument kind, else the
        pattern, or "points"."""
        if self.points is not None:
            return "points"
        return self.kind or str(self.pattern)

    @property
    def source(self) -> str:
        """The points' file name, "the DataFrame", or "drawn from the DEM"."""
        if self.points is None:
            return "drawn from the DEM"
        return Path(self.points).name if isinstance(self.points, (str, os.PathLike)) else "the DataFrame"

    def with_errors_drawn(self, seed: int) -> PriorSpec:
        """This specification with its instrument's errors drawn from the kind's ranges
        (:func:`sarheight.priors.draw_prior_errors` with ``seed``); itself when it has errors
        already or names no kind."""
        if self.kind is None or self.errors is not None:
            return self
        return replace(self, errors=draw_prior_errors(self.kind, seed))
