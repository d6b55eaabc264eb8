"""The simulated ground: sigma0 laws, land cover that follows the terrain, and the law fitted
to an observation itself.

A terrain scene's observation is simulated with a ground sigma0 of the local incidence
angle. Trained on one law, a network reads slope from brightness through that law alone.
This module gives the simulator a *family* of grounds and the network an input that does
not assume one:

- :class:`Sigma0Law`: a sigma0 law of the local incidence (degrees in, linear sigma0 out)
  of one of the forms of :data:`SIGMA0_FORMS` ("empirical", "cosine", "exponential_db",
  "snow");
- :func:`terrain_land_cover`: classes (:data:`LAND_COVER_CLASSES`: rock, soil, vegetation,
  snow) that follow the terrain: vegetation below a treeline, snow above a snowline that
  is lower on shaded slopes, bare rock on steep slopes, the boundaries made irregular by a
  smooth random field; every threshold relative to the DEM's own height quantiles;
- :class:`Ground`: a law per class, the class map and a within-class texture;
  :func:`draw_ground` draws one from a family of :data:`GROUND_FAMILIES` ("training",
  "test-family", "outside" and named single laws);
- :class:`FittedLaw` and :func:`fit_sigma0_law`: the law fitted to an observation itself
  (median sigma0 per bin of local incidence, a monotone cubic), so that the network's SAR
  input can be the observed sigma0 over the fitted law, never over an assumed one.

Physics only (numpy, scipy, xarray). :func:`sarheight.simulate.simulate_sar` takes a
:class:`Ground` (``ground=``): this module sits below ``simulate`` and imports nothing of
it (its texture is :func:`lognormal_texture`, the same field as ``simulate.texture``).

Sources: Ulaby & Long 2014, "Microwave Radar and Radiometric Remote Sensing" (University
of Michigan Press): C-band sigma0 of bare surfaces, vegetation and snow and their fall
with incidence; Small 2011, "Flattening Gamma" (IEEE TGRS 49(8)): constant gamma0, the
volume scatterer; Nagler & Rott 2000, "Retrieval of wet snow by means of multitemporal
SAR data" (IEEE TGRS 38(2)): wet snow is dark, 3 dB and more below snow-free ground;
ESA SNAP's SAR simulation (and ISCE3's): the empirical law
0.0118 cos t / (sin t + 0.111 cos t)^3.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from typing import Any

import numpy as np
import xarray as xr
from scipy import optimize, stats

from .dem import open_dem
from .errors import InvalidInputError
from .raster import filled_with_mean, gradient, grid_steps, smooth_random_field

#: The local incidence angle (degrees) at which laws are levelled and compared: the middle
#: of Sentinel-1 IW's swath.
REFERENCE_INCIDENCE_DEG = 40.0

#: The coefficients (a0, a1, a2) of the empirical law of SNAP's and ISCE3's simulators
#: (the law the reconstruction models; ``sarheight.simulate.EMPIRICAL_LAW``).
SNAP_EMPIRICAL = (0.0118, 0.111, 3.0)

#: The forms of :class:`Sigma0Law` and the names of their parameters, in order.
#:
#: - ``"empirical"`` (a0, a1, a2): ``a0 cos t / (sin t + a1 cos t)^a2``, a rough surface
#:   (SNAP's and ISCE3's simulators: :data:`SNAP_EMPIRICAL`). a1 sets how fast it rises
#:   towards normal incidence (small: smooth, a strong specular peak), a2 how fast it falls
#:   at large angles.
#: - ``"cosine"`` (a0, n): ``a0 cos^n t``. n = 1 is constant gamma0 (sigma0 / cos t), the
#:   volume scattering of a vegetation canopy and the assumption of terrain flattening
#:   (Small 2011); n = 2 is Lambert's law.
#: - ``"exponential_db"`` (a_db, b_db_per_deg): ``sigma0_dB = a_db + b (t - 40 deg)``, linear
#:   in dB: the incidence normalisation commonly fitted to forests and crops (b about -0.1
#:   to -0.25 dB per degree).
#: - ``"snow"`` (a0, a1, a2): wet snow, the empirical form with a small a0 (about -20 dB at
#:   40 degrees) and a steep fall (see :data:`GROUND_FAMILIES` for the argument).
SIGMA0_FORMS: dict[str, tuple[str, ...]] = {
    "empirical": ("a0", "a1", "a2"),
    "cosine": ("a0", "n"),
    "exponential_db": ("a_db", "b_db_per_deg"),
    "snow": ("a0", "a1", "a2"),
}

#: The land-cover classes, by code (the uint8 values of a class map).
LAND_COVER_CLASSES = ("rock", "soil", "vegetation", "snow")

#: The class code of cells without a height (voids) in a class map.
NO_CLASS = 255


@dataclasses.dataclass(frozen=True)
class Sigma0Law:
    """A sigma0 law of the local incidence angle: linear sigma0 of degrees.

    Parameters
    ----------
    form : a form of :data:`SIGMA0_FORMS`.
    parameters : its parameters in the order :data:`SIGMA0_FORMS` names them (a0 linear,
        a_db in dB, b_db_per_deg in dB per degree, the others dimensionless).

    Calling the law on local incidence angles (degrees, any shape) returns linear sigma0:
    finite and non-negative on 0..90 degrees, 0 at and beyond 90 (the facet faces away),
    NaN where the angle is NaN. Angles are taken by their absolute value.

    Examples
    --------
    >>> law = Sigma0Law("cosine", (0.1, 1.0))
    >>> float(law(60.0)) == 0.1 * 0.5
    True
    """

    form: str
    parameters: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.form not in SIGMA0_FORMS:
            raise InvalidInputError(f"unknown sigma0 law form {self.form!r}: use one of {', '.join(SIGMA0_FORMS)}")
        names = SIGMA0_FORMS[self.form]
        try:
            values = tuple(float(value) for value in self.parameters)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(
                f"the {self.form} law takes the numbers ({', '.join(names)}), got {self.parameters!r}"
            ) from exc
        if len(values) != len(names) or not all(math.isfinite(value) for value in values):
            raise InvalidInputError(
                f"the {self.form} law takes {len(names)} finite numbers ({', '.join(names)}), got {self.parameters!r}"
            )
        if self.form in ("empirical", "snow") and not (values[0] >= 0 and values[1] > 0 and values[2] >= 0):
            raise InvalidInputError(
                f"the {self.form} law needs a0 >= 0, a1 > 0 (finite at normal incidence) and a2 >= 0, got {values}"
            )
        if self.form == "cosine" and not (values[0] >= 0 and values[1] > 0):
            raise InvalidInputError(f"the cosine law needs a0 >= 0 and n > 0, got {values}")
        object.__setattr__(self, "parameters", values)

    @classmethod
    def with_level(cls, form: str, level_db: float, *shape: float) -> Sigma0Law:
        """The law of ``form`` whose sigma0 at :data:`REFERENCE_INCIDENCE_DEG` is
        ``level_db`` (dB), its other parameters ``shape`` (a1, a2 for "empirical" and
        "snow"; n for "cosine"; b_db_per_deg for "exponential_db")."""
        if form not in SIGMA0_FORMS:
            raise InvalidInputError(f"unknown sigma0 law form {form!r}: use one of {', '.join(SIGMA0_FORMS)}")
        if form == "exponential_db":
            return cls(form, (level_db, *shape))
        unit = cls(form, (1.0, *shape))
        return cls(form, (10.0 ** (level_db / 10.0) / float(unit(REFERENCE_INCIDENCE_DEG)), *shape))

    def __call__(self, local_incidence_deg: np.ndarray | float) -> np.ndarray:
        """Linear sigma0 at ``local_incidence_deg`` (degrees)."""
        t = np.abs(np.asarray(local_incidence_deg, dtype=np.float64))
        facing = t < 90.0
        theta = np.radians(np.where(facing, t, 0.0))
        cos, sin = np.cos(theta), np.sin(theta)
        p = self.parameters
        if self.form in ("empirical", "snow"):
            value = p[0] * cos / (sin + p[1] * cos) ** p[2]
        elif self.form == "cosine":
            value = p[0] * cos ** p[1]
        else:
            value = 10.0 ** ((p[0] + p[1] * (np.where(facing, t, 0.0) - REFERENCE_INCIDENCE_DEG)) / 10.0)
        value = np.where(facing, value, 0.0)
        return np.where(np.isnan(t), np.nan, value)

    def db(self, local_incidence_deg: np.ndarray | float) -> np.ndarray:
        """sigma0 (dB) at ``local_incidence_deg`` (degrees); -inf at and beyond 90."""
        with np.errstate(divide="ignore"):
            return 10.0 * np.log10(self(local_incidence_deg))

    @property
    def level_db(self) -> float:
        """sigma0 (dB) at :data:`REFERENCE_INCIDENCE_DEG`."""
        return float(self.db(REFERENCE_INCIDENCE_DEG))

    @property
    def shape_parameters(self) -> tuple[float, ...]:
        """The parameters other than the level (a0 or a_db)."""
        return self.parameters[1:]

    @property
    def name(self) -> str:
        """A short description, e.g. ``"cosine(a0=0.1, n=1)"``."""
        names = SIGMA0_FORMS[self.form]
        return f"{self.form}({', '.join(f'{n}={v:.4g}' for n, v in zip(names, self.parameters, strict=True))})"

    def to_attrs(self, prefix: str = "sigma0_law") -> dict[str, str | float]:
        """Attributes for a scene or an image: ``{prefix}`` (the name), ``{prefix}_form``
        and ``{prefix}_db_at_40`` (dB)."""
        return {prefix: self.name, f"{prefix}_form": self.form, f"{prefix}_db_at_40": round(self.level_db, 4)}


#: SNAP's and ISCE3's empirical law (the one the reconstruction models).
SNAP_LAW = Sigma0Law("empirical", SNAP_EMPIRICAL)

#: Lambert's law as ``sarheight.simulate.lambert_sigma0`` has it: 0.1 cos^2 t.
LAMBERT_LAW = Sigma0Law("cosine", (0.1, 2.0))


# ---------------------------------------------------------------------------------------
# Smooth random fields


def lognormal_texture(shape: tuple[int, int], *, seed: int, contrast_db: float,
                      correlation_cells: float = 6.0) -> np.ndarray:
    """A multiplicative land-cover texture of mean 1: smooth patches (``correlation_cells``
    cells) with log-normal values whose standard deviation is ``contrast_db`` (dB; 0: all
    ones). ``sarheight.simulate.texture`` is this field."""
    if contrast_db == 0:
        return np.ones(shape)
    field = smooth_random_field(shape, seed=seed, correlation_cells=correlation_cells)
    sigma = contrast_db * np.log(10) / 10
    return np.exp(sigma * field - 0.5 * sigma**2)


# ---------------------------------------------------------------------------------------
# Land cover that follows the terrain


def _slope_aspect(heights: np.ndarray, dem: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """Slope (degrees) and aspect (degrees clockwise from north of the downslope direction)
    by central differences with metric cell sizes (any CRS, geographic included:
    ``sarheight.dem.terrain_attributes`` refuses geographic grids)."""
    dz_north, dz_east = gradient(filled_with_mean(heights), grid_steps(dem))
    slope = np.degrees(np.arctan(np.hypot(dz_north, dz_east)))
    aspect = np.mod(np.degrees(np.arctan2(-dz_east, -dz_north)), 360.0)
    return slope, aspect


def _centre_latitude(dem: xr.DataArray) -> float:
    bounds = dem.rio.transform_bounds("EPSG:4326")
    return 0.5 * (bounds[1] + bounds[3])


def height_quantiles(heights: np.ndarray) -> np.ndarray:
    """Each cell's height as a quantile of the DEM's own heights (0..1, ties averaged; NaN
    on voids): the scale of the land-cover thresholds, the same for a lowland and for a
    range 6000 m high."""
    heights = np.asarray(heights, dtype=np.float64)
    valid = np.isfinite(heights)
    out = np.full(heights.shape, np.nan)
    if valid.any():
        out[valid] = (stats.rankdata(heights[valid]) - 0.5) / valid.sum()
    return out


def shade_factor(slope_deg: np.ndarray, aspect_deg: np.ndarray, latitude_deg: float) -> np.ndarray:
    """How much a cell faces away from the sun, -1..1: the cosine of its aspect from the
    pole's direction (north in the northern hemisphere, south in the southern), times
    its slope over 15 degrees (at most 1): flat cells have no aspect."""
    away = 0.0 if latitude_deg >= 0 else 180.0
    return np.cos(np.radians(aspect_deg - away)) * np.clip(slope_deg / 15.0, 0.0, 1.0)


def terrain_land_cover(
    dem: Any,
    *,
    seed: int,
    treeline_quantile: float = 0.5,
    snowline_quantile: float = 0.85,
    rock_slope_deg: float = 40.0,
    aspect_snow_shift: float = 0.1,
    irregularity: float = 0.05,
    slope_irregularity_deg: float = 4.0,
    correlation_cells: float = 8.0,
) -> np.ndarray:
    """Land-cover classes that follow the terrain (codes of :data:`LAND_COVER_CLASSES`).

    With ``u`` a cell's height quantile in the DEM (:func:`height_quantiles`), ``s`` its
    slope and ``f`` its shade factor (:func:`shade_factor`: 1 on steep slopes facing the
    pole, -1 facing the equator), and ``n1, n2, n3`` smooth random fields of unit standard
    deviation (:func:`smooth_random_field`, ``correlation_cells``; they make the
    boundaries irregular, not iso-lines), a cell is, in this order of precedence:

    - rock where ``s + slope_irregularity_deg n3 > rock_slope_deg`` (bare rock on steep
      slopes, where neither snow nor soil stays);
    - snow where ``u + irregularity n1 > snowline_quantile - aspect_snow_shift f`` (the
      snowline lower on shaded slopes);
    - vegetation where ``u + irregularity n2 < treeline_quantile``;
    - soil otherwise (above the treeline, below the snowline, not steep).

    Parameters
    ----------
    dem : a DEM as :func:`sarheight.dem.open_dem` takes it (heights in m, any CRS, any
        vertical datum: read as they are).
    seed : seed of the boundary fields (non-negative integer).
    treeline_quantile, snowline_quantile : the lines as quantiles of the DEM's heights
        (below 0 or above 1: below the lowest or above the highest cell; the DEMs range from
        sea level to 6000 m, so absolute heights would mean nothing across scenes).
    rock_slope_deg : the slope (degrees) above which the ground is bare rock.
    aspect_snow_shift : how far (quantile units) the snowline drops on slopes facing the
        pole (and rises on those facing the equator).
    irregularity : standard deviation (quantile units) of the boundary fields of the
        height lines; ``slope_irregularity_deg`` (degrees) that of the rock threshold.
    correlation_cells : the boundary fields' correlation length (cells).

    Returns
    -------
    np.ndarray of uint8 codes on the DEM's grid; :data:`NO_CLASS` on voids.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    numbers = {"treeline_quantile": treeline_quantile, "snowline_quantile": snowline_quantile,
               "rock_slope_deg": rock_slope_deg, "aspect_snow_shift": aspect_snow_shift,
               "irregularity": irregularity, "slope_irregularity_deg": slope_irregularity_deg,
               "correlation_cells": correlation_cells}
    for name, value in numbers.items():
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not math.isfinite(value):
            raise InvalidInputError(f"{name} must be a finite number, got {value!r}")
    if irregularity < 0 or slope_irregularity_deg < 0 or correlation_cells <= 0:
        raise InvalidInputError("irregularity and slope_irregularity_deg must be >= 0, correlation_cells > 0")
    # The heights as they are: classes relative to the DEM's own quantiles do not depend
    # on the vertical datum (nor do slopes, to a part in a million).
    dem = open_dem(dem, vertical_datum="ellipsoid", copy=False)
    heights = np.asarray(dem.values, dtype=np.float64)
    valid = np.isfinite(heights)
    quantile = height_quantiles(heights)
    slope, aspect = _slope_aspect(heights, dem)
    shade = shade_factor(slope, aspect, _centre_latitude(dem))
    n1, n2, n3 = (smooth_random_field(heights.shape, seed=[int(seed), k], correlation_cells=correlation_cells)
                  for k in range(3))
    rock = slope + slope_irregularity_deg * n3 > rock_slope_deg
    snow = quantile + irregularity * n1 > snowline_quantile - aspect_snow_shift * shade
    vegetation = quantile + irregularity * n2 < treeline_quantile
    codes = np.full(heights.shape, LAND_COVER_CLASSES.index("soil"), dtype=np.uint8)
    codes[vegetation] = LAND_COVER_CLASSES.index("vegetation")
    codes[snow] = LAND_COVER_CLASSES.index("snow")
    codes[rock] = LAND_COVER_CLASSES.index("rock")
    codes[~valid] = NO_CLASS
    return codes


@dataclasses.dataclass(frozen=True)
class LandCoverRule:
    """The thresholds of :func:`terrain_land_cover` (see there for their meaning and units)."""

    treeline_quantile: float = 0.5
    snowline_quantile: float = 0.85
    rock_slope_deg: float = 40.0
    aspect_snow_shift: float = 0.1
    irregularity: float = 0.05
    slope_irregularity_deg: float = 4.0
    correlation_cells: float = 8.0

    def classify(self, dem: Any, seed: int) -> np.ndarray:
        """The class map of ``dem`` under this rule (:func:`terrain_land_cover`)."""
        return terrain_land_cover(dem, seed=seed, **dataclasses.asdict(self))


# ---------------------------------------------------------------------------------------
# The ground


@dataclasses.dataclass(frozen=True, eq=False)
class Ground:
    """A simulated ground: a sigma0 law per land-cover class, the class map and a texture.

    Parameters
    ----------
    laws : one :class:`Sigma0Law` per class of :data:`LAND_COVER_CLASSES`, in that order.
    classes : the class map (rows, cols) of uint8 codes (:data:`NO_CLASS` on voids), on the
        grid of the DEM it is simulated with.
    texture_db : the within-class texture's contrast (dB, standard deviation of smooth
        log-normal patches of mean 1, :func:`lognormal_texture`; 0: none).
    texture_seed : the texture's seed.
    correlation_cells : the texture's patch size (cells).
    family : the family it was drawn from (:data:`GROUND_FAMILIES`), or "given".
    seed : the seed it was drawn with (None: not drawn).
    rule : the land-cover thresholds of the class map (None: given).
    """

    laws: tuple[Sigma0Law, ...]
    classes: np.ndarray
    texture_db: float = 0.0
    texture_seed: int = 0
    correlation_cells: float = 6.0
    family: str = "given"
    seed: int | None = None
    rule: LandCoverRule | None = None

    def __post_init__(self) -> None:
        laws = tuple(self.laws)
        if len(laws) != len(LAND_COVER_CLASSES) or not all(isinstance(law, Sigma0Law) for law in laws):
            raise InvalidInputError(
                f"a Ground takes one Sigma0Law per class of {LAND_COVER_CLASSES}, got {self.laws!r}"
            )
        classes = np.asarray(self.classes)
        if classes.ndim != 2 or classes.dtype.kind not in "iu":
            raise InvalidInputError(f"classes must be a 2-D array of integer class codes, got {classes.dtype} "
                                    f"of shape {classes.shape}")
        known = (classes < len(LAND_COVER_CLASSES)) | (classes == NO_CLASS)
        if np.any(classes < 0) or not known.all():
            raise InvalidInputError(f"class codes must be 0..{len(LAND_COVER_CLASSES) - 1} "
                                    f"({', '.join(LAND_COVER_CLASSES)}) or {NO_CLASS} (no data)")
        if not (isinstance(self.texture_db, (int, float, np.number)) and 0 <= self.texture_db < 30):
            raise InvalidInputError(f"texture_db must be a number of dB from 0 to 30, got {self.texture_db!r}")
        classes = classes.astype(np.uint8)
        classes.flags.writeable = False
        object.__setattr__(self, "laws", laws)
        object.__setattr__(self, "classes", classes)
        object.__setattr__(self, "texture_db", float(self.texture_db))

    @classmethod
    def uniform(cls, law: Sigma0Law, shape: tuple[int, int], *, land_cover: str = "soil",
                texture_db: float = 0.0, texture_seed: int = 0) -> Ground:
        """A ground of one class ``land_cover`` following ``law`` everywhere."""
        if land_cover not in LAND_COVER_CLASSES:
            raise InvalidInputError(f"land_cover must be one of {LAND_COVER_CLASSES}, got {land_cover!r}")
        classes = np.full(shape, LAND_COVER_CLASSES.index(land_cover), dtype=np.uint8)
        return cls((law,) * len(LAND_COVER_CLASSES), classes, texture_db=texture_db, texture_seed=texture_seed,
                   family=f"uniform:{law.form}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Ground):
            return NotImplemented
        def scalars(ground: Ground) -> tuple:
            return (ground.laws, ground.texture_db, ground.texture_seed, ground.correlation_cells, ground.family,
                    ground.seed, ground.rule)

        return scalars(self) == scalars(other) and np.array_equal(self.classes, other.classes)

    __hash__ = None  # type: ignore[assignment]

    @property
    def shape(self) -> tuple[int, int]:
        """The shape of the class map (rows, cols)."""
        return self.classes.shape

    @property
    def name(self) -> str:
        """A short description, e.g. ``"ground:training"``."""
        return f"ground:{self.family}"

    def law_of(self, land_cover: str) -> Sigma0Law:
        """The law of the class named ``land_cover``."""
        return self.laws[LAND_COVER_CLASSES.index(land_cover)]

    def texture(self) -> np.ndarray:
        """The within-class texture (mean 1) on the class map's grid."""
        return lognormal_texture(self.shape, seed=self.texture_seed, contrast_db=self.texture_db,
                                 correlation_cells=self.correlation_cells)

    def class_shares(self) -> dict[str, float]:
        """The share of each class among the cells with a class."""
        classified = self.classes[self.classes != NO_CLASS]
        total = max(classified.size, 1)
        return {name: float(np.count_nonzero(classified == code)) / total
                for code, name in enumerate(LAND_COVER_CLASSES)}

    def sigma0(self, local_incidence_deg: np.ndarray) -> np.ndarray:
        """The ground's linear sigma0 per cell: each cell's class law of its own local
        incidence (degrees, an array of the class map's shape) times the texture. 0 where
        the cell faces away (90 degrees and beyond), NaN where the angle is NaN or the cell
        has no class."""
        angles = np.asarray(local_incidence_deg, dtype=np.float64)
        if angles.shape != self.shape:
            raise InvalidInputError(f"local incidence angles of shape {angles.shape} for a ground of shape "
                                    f"{self.shape}: give one angle per cell of its class map")
        out = np.full(self.shape, np.nan)
        for code, law in enumerate(self.laws):
            here = self.classes == code
            out[here] = law(angles[here])
        return out * self.texture()

    def to_attrs(self) -> dict[str, str | float | int]:
        """Attributes for a scene or an image: the family, seeds, texture, each class's law
        and share, and the land-cover thresholds."""
        attrs: dict[str, str | float | int] = {
            "ground": self.name, "ground_seed": "none" if self.seed is None else int(self.seed),
            "ground_texture_db": round(self.texture_db, 4), "ground_texture_seed": int(self.texture_seed),
        }
        shares = self.class_shares()
        for name, law in zip(LAND_COVER_CLASSES, self.laws, strict=True):
            attrs[f"ground_law_{name}"] = law.name
            attrs[f"ground_share_{name}"] = round(shares[name], 4)
        if self.rule is not None:
            for field, value in dataclasses.asdict(self.rule).items():
                attrs[f"ground_{field}"] = round(float(value), 4)
        return attrs


# ---------------------------------------------------------------------------------------
# The ground on one date


@dataclasses.dataclass(frozen=True)
class DateCondition:
    """How the ground of one date of a stack differs from the scene's ground.

    Attributes
    ----------
    level_db : moisture: every law's level moved by this many dB (a wetter soil and
        canopy return more at C-band; a dry or frozen one less: a dB or two over a season).
    wet_snow : the ground is under wet snow on that date: every class follows the ground's
        snow law (dark and steep: 3 dB and more below snow-free ground, Nagler & Rott
        2000), the same cells' texture.
    """

    level_db: float = 0.0
    wet_snow: bool = False

    def __post_init__(self) -> None:
        if not (isinstance(self.level_db, (int, float, np.number)) and math.isfinite(self.level_db)
                and abs(self.level_db) <= 10.0):
            raise InvalidInputError(f"level_db must be a number of dB within +-10, got {self.level_db!r}")

    def apply(self, ground: Ground) -> Ground:
        """``ground`` as it is on this date."""
        laws = (ground.law_of("snow"),) * len(LAND_COVER_CLASSES) if self.wet_snow else ground.laws
        if self.level_db:
            laws = tuple(Sigma0Law.with_level(law.form, law.level_db + self.level_db, *law.shape_parameters)
                         for law in laws)
        return dataclasses.replace(ground, laws=laws)

    @property
    def name(self) -> str:
        """A short description, e.g. ``"+0.7 dB"`` or ``"wet snow, -0.3 dB"``."""
        return ("wet snow, " if self.wet_snow else "") + f"{self.level_db:+.1f} dB"


def draw_date_conditions(dates: int, seed: int, *, moisture_db: float = 1.0, snow_dates: int = 0
                         ) -> tuple[DateCondition, ...]:
    """The conditions of ``dates`` dates of a stack: each date's moisture a level drawn
    from a normal of ``moisture_db`` standard deviation (dB), and ``snow_dates`` of them,
    drawn at random, under wet snow. The same ``seed`` draws the same conditions."""
    if isinstance(dates, bool) or not isinstance(dates, (int, np.integer)) or dates < 1:
        raise InvalidInputError(f"dates must be a positive integer, got {dates!r}")
    if isinstance(snow_dates, bool) or not isinstance(snow_dates, (int, np.integer)) or not 0 <= snow_dates <= dates:
        raise InvalidInputError(f"snow_dates must be an integer from 0 to dates ({dates}), got {snow_dates!r}")
    if not (isinstance(moisture_db, (int, float, np.number)) and 0 <= moisture_db <= 5):
        raise InvalidInputError(f"moisture_db must be a number of dB from 0 to 5, got {moisture_db!r}")
    rng = np.random.default_rng([zlib.crc32(b"dates"), int(seed)])
    levels = np.clip(rng.normal(0.0, float(moisture_db), size=int(dates)), -10.0, 10.0)
    snow = set(rng.choice(int(dates), size=int(snow_dates), replace=False).tolist())
    return tuple(DateCondition(float(level), index in snow) for index, level in enumerate(levels))


# ---------------------------------------------------------------------------------------
# Families of grounds


@dataclasses.dataclass(frozen=True)
class LawRange:
    """The laws a family draws for one class: one form, its level and shape parameters
    each uniform in a range.

    Parameters
    ----------
    form : a form of :data:`SIGMA0_FORMS`.
    level_db : (low, high), sigma0 (dB) at :data:`REFERENCE_INCIDENCE_DEG`.
    shape : (low, high) of each shape parameter (:meth:`Sigma0Law.with_level`).
    law : the one law of a range that holds nothing else (:meth:`fixed`), or None.
    """

    form: str
    level_db: tuple[float, float]
    shape: tuple[tuple[float, float], ...]
    law: Sigma0Law | None = None

    @classmethod
    def fixed(cls, law: Sigma0Law) -> LawRange:
        """The range holding ``law`` alone."""
        return cls(law.form, (law.level_db, law.level_db), tuple((v, v) for v in law.shape_parameters), law)

    def draw(self, rng: np.random.Generator) -> Sigma0Law:
        """A law drawn uniformly in the ranges (the fixed law, for :meth:`fixed`)."""
        if self.law is not None:
            return self.law
        level = rng.uniform(*self.level_db)
        return Sigma0Law.with_level(self.form, level, *(rng.uniform(low, high) for low, high in self.shape))

    def contains(self, law: Sigma0Law, tolerance: float = 1e-9) -> bool:
        """Whether ``law`` is of this form with its level and shape in the ranges."""
        if law.form != self.form or (self.law is not None and law != self.law):
            return False
        bounds = (self.level_db, *self.shape)
        values = (law.level_db, *law.shape_parameters)
        return all(low - tolerance <= value <= high + tolerance for (low, high), value in zip(bounds, values, strict=True))


@dataclasses.dataclass(frozen=True)
class GroundFamily:
    """A family of grounds :func:`draw_ground` draws from.

    Parameters
    ----------
    name, description : what the study reports.
    laws : one :class:`LawRange` per class of :data:`LAND_COVER_CLASSES`.
    texture_db : (low, high) of the within-class texture contrast (dB).
    treeline_quantile, snowline_quantile, rock_slope_deg, aspect_snow_shift : (low, high)
        of the ordinary draws of the land-cover thresholds (:func:`terrain_land_cover`).
    dominant_share : the probability that a scene is nearly one class: its thresholds at
        the ends of :data:`THRESHOLD_LIMITS` instead (vegetation, soil, rock or snow
        everywhere but where the terrain forbids it).
    """

    name: str
    description: str
    laws: tuple[LawRange, ...]
    texture_db: tuple[float, float] = (0.0, 3.0)
    treeline_quantile: tuple[float, float] = (0.0, 1.0)
    snowline_quantile: tuple[float, float] = (0.5, 1.3)
    rock_slope_deg: tuple[float, float] = (25.0, 60.0)
    aspect_snow_shift: tuple[float, float] = (0.0, 0.15)
    dominant_share: float = 0.2

    def form(self, land_cover: str) -> str:
        """The form of the laws the family draws for the class ``land_cover``."""
        return self.laws[LAND_COVER_CLASSES.index(land_cover)].form

    def draw_rule(self, rng: np.random.Generator) -> LandCoverRule:
        """Land-cover thresholds: ordinary draws, or with probability ``dominant_share``
        those of a scene nearly one class."""
        low, high = THRESHOLD_LIMITS["treeline_quantile"], THRESHOLD_LIMITS["snowline_quantile"]
        steep = THRESHOLD_LIMITS["rock_slope_deg"]
        shift = rng.uniform(*self.aspect_snow_shift)
        if rng.random() < self.dominant_share:
            dominant = LAND_COVER_CLASSES[int(rng.integers(len(LAND_COVER_CLASSES)))]
            treeline = {"vegetation": low[1]}.get(dominant, low[0])
            snowline = {"snow": high[0]}.get(dominant, high[1])
            rock = {"rock": steep[0]}.get(dominant, steep[1])
            return LandCoverRule(treeline, snowline, rock, shift)
        return LandCoverRule(rng.uniform(*self.treeline_quantile), rng.uniform(*self.snowline_quantile),
                             rng.uniform(*self.rock_slope_deg), shift)

    def contains(self, ground: Ground) -> bool:
        """Whether ``ground``'s laws, texture and thresholds lie in this family's ranges."""
        rule = ground.rule
        return (all(r.contains(law) for r, law in zip(self.laws, ground.laws, strict=True))
                and self.texture_db[0] <= ground.texture_db <= self.texture_db[1]
                and rule is not None
                and all(THRESHOLD_LIMITS[name][0] <= getattr(rule, name) <= THRESHOLD_LIMITS[name][1]
                        for name in THRESHOLD_LIMITS))


#: The limits of the land-cover thresholds of every family: the ordinary draws lie inside
#: them, the scenes nearly one class at their ends (quantiles beyond 0..1 put a line below
#: the lowest or above the highest cell, whatever the boundary fields add).
THRESHOLD_LIMITS: dict[str, tuple[float, float]] = {
    "treeline_quantile": (-0.3, 1.3),
    "snowline_quantile": (-0.3, 1.5),
    "rock_slope_deg": (5.0, 80.0),
    "aspect_snow_shift": (0.0, 0.15),
}

# The training family's class laws, and why (C-band, VV, at 40 degrees of local incidence):
# - rock and soil: the empirical form of SNAP's simulator with a1 0.05-0.3 (smooth to rough:
#   the width of the rise towards normal incidence) and a2 1.5-3.5 (the fall at large
#   angles), levelled at -6..-12 dB (rock, rough) and -8..-14 dB (soil, smoother and drier):
#   bare surfaces at C-band (Ulaby & Long 2014) fall 0.15-0.4 dB per degree there.
# - vegetation: cos^n with n 0.8-1.3 (n = 1: constant gamma0, the volume scattering of a
#   canopy, Small 2011), -7..-11 dB: forests and shrubs fall only 0.05-0.08 dB per degree.
# - snow: wet snow, dark and steep (Nagler & Rott 2000: 3 dB and more below snow-free
#   ground, about -20 dB). Modelled in the empirical form with a small a0 (-18..-24 dB) and a
#   steep fall (a1 0.05-0.15, a2 3-4.5: 0.3-0.45 dB per degree): at C-band wet snow
#   absorbs within centimetres, so it scatters at its surface, which the empirical form
#   describes (finite at normal incidence, flattening towards grazing); and exponential_db,
#   the other candidate, is then a form the training family never uses for any class,
#   which keeps the "outside" family cleanly outside.
_ROCK = LawRange("empirical", (-12.0, -6.0), ((0.05, 0.3), (1.5, 3.5)))
_SOIL = LawRange("empirical", (-14.0, -8.0), ((0.05, 0.3), (1.5, 3.5)))
_VEGETATION = LawRange("cosine", (-11.0, -7.0), ((0.8, 1.3),))
_SNOW = LawRange("snow", (-24.0, -18.0), ((0.05, 0.15), (3.0, 4.5)))
_TRAINING_LAWS = (_ROCK, _SOIL, _VEGETATION, _SNOW)

# The outside family: every class an exponential_db law (linear in dB, the incidence
# normalisation fitted to forests and crops), a form training never uses, at the training
# family's levels, with slopes of -0.1..-0.25 dB per degree (-0.05..-0.12 for vegetation,
# -0.25..-0.35 for wet snow).
_OUTSIDE_LAWS = (
    LawRange("exponential_db", (-12.0, -6.0), ((-0.25, -0.1),)),
    LawRange("exponential_db", (-14.0, -8.0), ((-0.25, -0.1),)),
    LawRange("exponential_db", (-11.0, -7.0), ((-0.12, -0.05),)),
    LawRange("exponential_db", (-24.0, -18.0), ((-0.35, -0.25),)),
)


def _single(name: str, law: Sigma0Law, description: str) -> GroundFamily:
    return GroundFamily(name, description, (LawRange.fixed(law),) * len(LAND_COVER_CLASSES))


#: The families of grounds, by the names the study reports.
#:
#: - ``"training"``: what the networks are trained on. Per class: rock and soil the
#:   empirical form (a1 0.05-0.3, a2 1.5-3.5; -6..-12 and -8..-14 dB at 40 degrees),
#:   vegetation cos^n (n 0.8-1.3, -7..-11 dB), wet snow the empirical form dark and steep
#:   (a1 0.05-0.15, a2 3-4.5, -24..-18 dB); land cover from :func:`terrain_land_cover` with
#:   thresholds drawn scene by scene (a fifth of the scenes nearly one class); texture
#:   0-3 dB.
#: - ``"test-family"``: new draws of the training family (the same ranges) from another
#:   random stream: a network's score on grounds it could have seen, but did not.
#: - ``"outside"``: every class an exponential_db law (a form training never uses), at the
#:   training family's levels, slopes -0.1..-0.25 dB per degree (vegetation -0.05..-0.12,
#:   snow -0.25..-0.35); the training family's land cover and texture.
#: - ``"empirical"``: SNAP's law everywhere (the law the reconstruction models; the
#:   default ground of ``simulate_sar``), with the family's texture.
#: - ``"lambert"``: Lambert's law 0.1 cos^2 t everywhere (``simulate_sar``'s "lambert").
#: - ``"gamma0"``: constant gamma0 everywhere, 0.1 cos t (-11.2 dB at 40 degrees): no
#:   bare-surface fall at all.
GROUND_FAMILIES: dict[str, GroundFamily] = {
    "training": GroundFamily("training", "the training family: per-class laws of the empirical and cosine "
                             "forms, land cover following the terrain", _TRAINING_LAWS),
    "test-family": GroundFamily("test-family", "new draws of the training family (another random stream)",
                                _TRAINING_LAWS),
    "outside": GroundFamily("outside", "every class an exponential_db law, a form the training family "
                            "does not contain", _OUTSIDE_LAWS),
    "empirical": _single("empirical", SNAP_LAW, "SNAP's empirical law everywhere"),
    "lambert": _single("lambert", LAMBERT_LAW, "Lambert's law 0.1 cos^2 t everywhere"),
    "gamma0": _single("gamma0", Sigma0Law("cosine", (0.1, 1.0)), "constant gamma0 (0.1 cos t) everywhere"),
}


def draw_ground(dem: Any, family: str | GroundFamily, seed: int) -> Ground:
    """A ground drawn from a family for a DEM.

    Parameters
    ----------
    dem : the DEM the ground lies on (as :func:`sarheight.dem.open_dem` takes it).
    family : a name of :data:`GROUND_FAMILIES`, or a :class:`GroundFamily`.
    seed : non-negative integer. The same DEM, family and seed give the same ground; each
        family draws from its own random stream, so that "test-family" seed k is not
        "training" seed k.

    Returns
    -------
    Ground with the land-cover thresholds, each class's law and the texture contrast
    drawn from the family, the class map of :func:`terrain_land_cover` on ``dem``.
    """
    if isinstance(family, str):
        if family not in GROUND_FAMILIES:
            raise InvalidInputError(f"unknown ground family {family!r}: use one of {', '.join(GROUND_FAMILIES)}")
        family = GROUND_FAMILIES[family]
    if not isinstance(family, GroundFamily):
        raise InvalidInputError(f"family must be a name of GROUND_FAMILIES or a GroundFamily, got {family!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidInputError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng([zlib.crc32(family.name.encode()), int(seed)])
    rule = family.draw_rule(rng)
    laws = tuple(law_range.draw(rng) for law_range in family.laws)
    texture_db = float(rng.uniform(*family.texture_db))
    land_cover_seed, texture_seed = (int(value) for value in rng.integers(0, 2**31, size=2))
    classes = rule.classify(dem, land_cover_seed)
    return Ground(laws, classes, texture_db=texture_db, texture_seed=texture_seed, family=family.name,
                  seed=int(seed), rule=rule)


# ---------------------------------------------------------------------------------------
# The law fitted to an observation


#: The points of the table a fitted law is evaluated on for large arrays.
_TABLE_POINTS = 90_001


def _bernstein(x: np.ndarray, degree: int) -> np.ndarray:
    """(len(x), degree + 1) Bernstein basis polynomials of ``degree`` on 0..1."""
    x = np.asarray(x, dtype=np.float64)[:, None]
    k = np.arange(degree + 1)[None, :]
    return np.asarray([math.comb(degree, int(i)) for i in range(degree + 1)])[None, :] * x**k * (1 - x) ** (degree - k)


@dataclasses.dataclass(frozen=True)
class FittedLaw:
    """A sigma0 law (dB) of the local incidence fitted to an observation
    (:func:`fit_sigma0_law`).

    Inside the populated range the law is a polynomial in the angle, in the Bernstein basis
    of that range with non-increasing coefficients (so the law never rises with the
    incidence); outside it is continued with the slope it has at the range's ends.

    Attributes
    ----------
    coefficients : Bernstein coefficients (dB), non-increasing.
    range_deg : (low, high), the populated range of local incidence (degrees).
    bin_angles_deg, bin_medians_db, bin_counts : the bins fitted: median angle (degrees),
        median sigma0 (dB) and number of cells of each.
    cells : the valid cells the fit saw.
    """

    coefficients: tuple[float, ...]
    range_deg: tuple[float, float]
    bin_angles_deg: tuple[float, ...]
    bin_medians_db: tuple[float, ...]
    bin_counts: tuple[int, ...]
    cells: int

    @property
    def degree(self) -> int:
        """The polynomial's degree."""
        return len(self.coefficients) - 1

    def _inside(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Value (dB) and slope (dB per degree) of the polynomial at ``t`` inside the range."""
        low, high = self.range_deg
        span = high - low
        c = np.asarray(self.coefficients)
        if self.degree == 0 or span <= 0:
            return np.full(t.shape, c[0]), np.zeros(t.shape)
        if t.size > 4 * _TABLE_POINTS:
            # A smooth polynomial on a table of a thousandth of a degree or finer,
            # interpolated: the basis of a million cells would take a second a scene.
            grid = np.linspace(low, high, _TABLE_POINTS)
            value, slope = self._inside(grid)
            return np.interp(t, grid, value), np.interp(t, grid, slope)
        x = (t - low) / span
        value = _bernstein(x.ravel(), self.degree) @ c
        slope = _bernstein(x.ravel(), self.degree - 1) @ (self.degree * np.diff(c)) / span
        return value.reshape(t.shape), slope.reshape(t.shape)

    def _evaluate(self, local_incidence_deg: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
        t = np.asarray(local_incidence_deg, dtype=np.float64)
        low, high = self.range_deg
        inside = np.clip(np.nan_to_num(t, nan=low), low, high)
        value, slope = self._inside(inside)
        value = value + slope * (np.nan_to_num(t, nan=low) - inside)
        defined = np.isfinite(t) & (t >= 0) & (t < 90)
        return np.where(defined, value, np.nan), np.where(defined, slope, np.nan)

    def __call__(self, local_incidence_deg: np.ndarray | float) -> np.ndarray:
        """The fitted sigma0 (dB) at ``local_incidence_deg`` (degrees); NaN outside 0..90."""
        return self._evaluate(local_incidence_deg)[0]

    def slope_db_per_deg(self, local_incidence_deg: np.ndarray | float) -> np.ndarray:
        """d sigma0_dB / dt (dB per degree; non-positive)."""
        return self._evaluate(local_incidence_deg)[1]

    def ratio_db(self, sigma0_db: np.ndarray, local_incidence_deg: np.ndarray) -> np.ndarray:
        """The observed sigma0 over the fitted law (dB): ``sigma0_db - law(t)``. Defined up
        to a constant (the fit follows the median, speckle's mean in dB is an offset)."""
        return np.asarray(sigma0_db, dtype=np.float64) - self(local_incidence_deg)

    def sensitivity(self, local_incidence_deg: np.ndarray | float) -> np.ndarray:
        """How fast the brightness of a pixel rises with the range slope (dB per radian):
        ``S = -d(10 log10(sigma0(x) / sin x)) / dx`` at the local incidence ``x`` (degrees
        in), as ``sarheight.terrain.clinometry.range_slope_sensitivity`` for a known law. NaN
        outside (0, 90) degrees."""
        t = np.asarray(local_incidence_deg, dtype=np.float64)
        x = np.radians(t)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = -self.slope_db_per_deg(t) * (180.0 / math.pi) + (10.0 / math.log(10.0)) / np.tan(x)
        return np.where(np.isfinite(t) & (t > 0) & (t < 90), s, np.nan)

    @property
    def name(self) -> str:
        """A short description."""
        low, high = self.range_deg
        return f"fitted(monotone degree {self.degree}, {low:.1f}-{high:.1f} deg)"

    def to_attrs(self, prefix: str = "fitted_law") -> dict[str, str | float | int]:
        """Attributes: the description, coefficients (dB), range (degrees), sigma0 (dB) at
        40 degrees and the cells fitted."""
        return {prefix: self.name,
                f"{prefix}_coefficients_db": ", ".join(f"{c:.6g}" for c in self.coefficients),
                f"{prefix}_range_deg": f"{self.range_deg[0]:.4g}, {self.range_deg[1]:.4g}",
                f"{prefix}_db_at_40": round(float(self(REFERENCE_INCIDENCE_DEG)), 4),
                f"{prefix}_cells": int(self.cells)}


def _monotone_fit(x_deg: np.ndarray, y: np.ndarray, weights: np.ndarray, degree: int, low: float,
                  high: float) -> tuple[float, ...]:
    """Bernstein coefficients (non-increasing) of the weighted least-squares polynomial of
    ``degree`` on low..high through (x_deg, y)."""
    if degree == 0 or high <= low:
        return (float(np.average(y, weights=weights)),)
    basis = _bernstein((x_deg - low) / (high - low), degree)
    # c_k = c_0 - sum_{i <= k} d_i with d_i >= 0: columns sum_k B_k (= 1) and -sum_{k >= i} B_k.
    tails = -np.cumsum(basis[:, ::-1], axis=1)[:, ::-1][:, 1:]
    design = np.column_stack([basis.sum(axis=1), tails]) * np.sqrt(weights)[:, None]
    bounds = (np.r_[-np.inf, np.zeros(degree)], np.full(degree + 1, np.inf))
    solution = optimize.lsq_linear(design, y * np.sqrt(weights), bounds=bounds, method="bvls").x
    return tuple(float(v) for v in solution[0] - np.r_[0.0, np.cumsum(solution[1:])])


def fit_sigma0_law(
    sigma0_db: np.ndarray,
    local_incidence_deg: np.ndarray,
    valid: np.ndarray | None = None,
    *,
    bin_deg: float = 1.0,
    min_cells: int = 30,
    degree: int = 5,
) -> FittedLaw:
    """Fit a sigma0 law of the local incidence to an observation itself, robustly.

    1. Cells: ``valid`` (the caller leaves out layover and shadow), with finite sigma0 (dB)
       and a local incidence in (0, 90) degrees.
    2. Bins of ``bin_deg`` degrees of local incidence holding at least ``min_cells`` cells;
       per bin the *median* sigma0 (dB) and angle: speckle (log of a gamma variable) and
       land cover are heavy-tailed, and a tenth of outliers moves a median by a fraction of
       the spread, the same in every bin (an offset, which the ratio allows).
    3. A polynomial of ``degree`` in the angle (fewer where fewer bins are populated), in
       the Bernstein basis of the populated range with non-increasing coefficients, fitted
       by bounded weighted least squares (weights: cells over the squared robust spread of
       the bin). Monotone because every physical law here (surface and volume scattering)
       falls with the local incidence: a fit that rises somewhere, from land cover
       correlated with the angle or a thin bin, would turn the slope read from brightness
       around there. Non-increasing Bernstein coefficients are sufficient for a
       non-increasing polynomial, and they keep the fit a linear least-squares problem.
    4. Beyond the populated range: the value continued with the slope at its end.

    Parameters
    ----------
    sigma0_db : observed sigma0 (dB), any shape.
    local_incidence_deg : the local incidence of each cell (degrees), the same shape.
    valid : where to fit (bool, the same shape); default everywhere.
    bin_deg : bin width (degrees), 0.1..10 (1-2 usual).
    min_cells : the fewest cells a bin must have to be used (at least 3).
    degree : the polynomial's degree, 0..6.

    Returns
    -------
    FittedLaw

    Raises
    ------
    InvalidInputError
        Shapes that differ, bad options, or no bin with ``min_cells`` valid cells.
    """
    sigma0_db = np.asarray(sigma0_db, dtype=np.float64)
    angles = np.asarray(local_incidence_deg, dtype=np.float64)
    if sigma0_db.shape != angles.shape:
        raise InvalidInputError(f"sigma0_db has shape {sigma0_db.shape}, local_incidence_deg {angles.shape}: "
                                "give one local incidence per cell")
    mask = np.ones(angles.shape, dtype=bool) if valid is None else np.asarray(valid)
    if mask.shape != angles.shape or mask.dtype != bool:
        raise InvalidInputError(f"valid must be a bool array of shape {angles.shape}, got {mask.dtype} {mask.shape}")
    if not (isinstance(bin_deg, (int, float, np.number)) and 0.1 <= bin_deg <= 10):
        raise InvalidInputError(f"bin_deg must be 0.1..10 degrees, got {bin_deg!r}")
    if isinstance(min_cells, bool) or not isinstance(min_cells, (int, np.integer)) or min_cells < 3:
        raise InvalidInputError(f"min_cells must be an integer >= 3, got {min_cells!r}")
    if isinstance(degree, bool) or not isinstance(degree, (int, np.integer)) or not 0 <= degree <= 6:
        raise InvalidInputError(f"degree must be an integer 0..6, got {degree!r}")
    with np.errstate(invalid="ignore"):
        use = mask & np.isfinite(sigma0_db) & np.isfinite(angles) & (angles > 0) & (angles < 90)
    t, s = angles[use], sigma0_db[use]
    index = np.floor(t / bin_deg).astype(np.int64)
    order = np.argsort(index, kind="stable")
    index, t, s = index[order], t[order], s[order]
    starts = np.flatnonzero(np.r_[True, np.diff(index) > 0]) if index.size else np.zeros(0, np.int64)
    stops = np.r_[starts[1:], index.size] if index.size else starts
    centres, medians, counts, spreads = [], [], [], []
    for start, stop in zip(starts, stops, strict=True):
        if stop - start < min_cells:
            continue
        values = s[start:stop]
        median = float(np.median(values))
        centres.append(float(np.median(t[start:stop])))
        medians.append(median)
        counts.append(int(stop - start))
        spreads.append(max(1.4826 * float(np.median(np.abs(values - median))), 0.05))
    if not centres:
        raise InvalidInputError(
            f"no bin of {bin_deg} degrees of local incidence holds {min_cells} valid cells ({int(use.sum())} valid "
            "cells in all): give more cells, wider bins (bin_deg) or a smaller min_cells"
        )
    x_deg, y = np.asarray(centres), np.asarray(medians)
    # The variance of a bin's median: pi/2 spread^2 / cells (a normal sample's).
    weights = np.asarray(counts) / (0.5 * math.pi * np.asarray(spreads) ** 2)
    low, high = float(x_deg.min()), float(x_deg.max())
    best: tuple[float, tuple[float, ...]] | None = None
    for n in range(min(int(degree), len(centres) - 1) + 1):
        coefficients = _monotone_fit(x_deg, y, weights, n, low, high)
        residual = y - FittedLaw(coefficients, (low, high), (), (), (), 0)(x_deg)
        criterion = float(np.sum(weights * residual**2)) + 2.0 * (n + 1)
        if best is None or criterion < best[0]:
            best = (criterion, coefficients)
    coefficients = best[1]
    return FittedLaw(coefficients, (low, high), tuple(centres), tuple(medians), tuple(counts), int(use.sum()))
