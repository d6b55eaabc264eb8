"""Grounds: a law per land-cover class, the class map and a within-class texture
(:class:`Ground`); the conditions of a date (moisture, wet snow) that change it; the
families grounds are drawn from (:data:`GROUND_FAMILIES`: "training", "test-family",
"outside" and single laws) and :func:`draw_ground`.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from .cover import LAND_COVER_CLASSES, NO_CLASS, LandCoverRule, lognormal_texture
from .laws import LAMBERT_LAW, SNAP_LAW, Sigma0Law

#: The limits of the land-cover thresholds of every family: the ordinary draws lie inside
#: them, the scenes nearly one class at their ends (quantiles beyond 0..1 put a line below
#: the lowest or above the highest cell, whatever the boundary fields add).
THRESHOLD_LIMITS: dict[str, tuple[float, float]] = {
    "treeline_quantile": (-0.3, 1.3),
    "snowline_quantile": (-0.3, 1.5),
    "rock_slope_deg": (5.0, 80.0),
    "aspect_snow_shift": (0.0, 0.15),
}


#: The ratio (dB) of the cross-polarised backscatter to the co-polarised one (VH/VV at
#: C-band) of each class of :data:`LAND_COVER_CLASSES`, the range a drawn ground's ratio
#: is drawn in: a surface depolarises little (bare rock and debris about -16 to -12 dB,
#: soil -13 to -9), a canopy's volume much (-8 to -5 dB), wet snow between (-11 to -7;
#: both polarisations drop under it). Within a class the ratio does not follow the slope:
#: a slope scales both polarisations alike.
CROSS_RATIO_RANGES_DB: dict[str, tuple[float, float]] = {
    "rock": (-16.0, -12.0), "soil": (-13.0, -9.0), "vegetation": (-8.0, -5.0), "snow": (-11.0, -7.0),
}

#: Each class's ratio where none is drawn: the middle of its range.
CROSS_RATIO_DB: tuple[float, ...] = tuple(0.5 * (low + high) for low, high in
                                          (CROSS_RATIO_RANGES_DB[name] for name in LAND_COVER_CLASSES))


@dataclasses.dataclass(frozen=True)
class CellLaws:
    """A sigma0 law per class of land cover, and a factor per cell: each facet of a cell
    that sees the sensor returns its cell's class law of the facet's own local incidence,
    times its sigma area and the cell's factor (a texture, an albedo). What a ground of
    land-cover classes returns (:class:`Ground`): a contribution
    :func:`sarheight.simulate.simulate` takes, one pass of the facet kernel; with one class
    and no factor, the law's contribution itself.

    Attributes
    ----------
    classes : (rows, cols) integer class of each DEM cell, an index into ``laws``; a cell
        of any other value (a void's 255) carries nothing.
    laws : one linear sigma0 law of the local incidence (degrees) per class.
    factor : (rows, cols) linear factor of each cell's law (an albedo, a texture), or None
        for 1 everywhere; NaN carries nothing.
    """

    classes: np.ndarray
    laws: tuple[Callable[[np.ndarray], np.ndarray], ...]
    factor: np.ndarray | None = None


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
    cross_ratios_db : each class's cross-polarised ratio (dB, VH/VV), one per class of
        :data:`LAND_COVER_CLASSES` (:meth:`cross_polarised`); default
        :data:`CROSS_RATIO_DB`.
    """

    laws: tuple[Sigma0Law, ...]
    classes: np.ndarray
    texture_db: float = 0.0
    texture_seed: int = 0
    correlation_cells: float = 6.0
    family: str = "given"
    seed: int | None = None
    rule: LandCoverRule | None = None
    cross_ratios_db: tuple[float, ...] = CROSS_RATIO_DB

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
        ratios = tuple(self.cross_ratios_db)
        if len(ratios) != len(LAND_COVER_CLASSES) or not all(
                isinstance(ratio, (int, float, np.number)) and -30.0 <= ratio <= 0.0 for ratio in ratios):
            raise InvalidInputError(f"cross_ratios_db takes one ratio of -30 to 0 dB per class of "
                                    f"{LAND_COVER_CLASSES}, got {self.cross_ratios_db!r}")
        object.__setattr__(self, "cross_ratios_db", tuple(float(ratio) for ratio in ratios))
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
                    ground.seed, ground.rule, ground.cross_ratios_db)

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

    def cross_polarised(self) -> Ground:
        """The ground as the cross-polarised channel sees it (VH beside VV): each class's
        law moved by its ratio (:attr:`cross_ratios_db`), the same classes and texture.
        Under a date's condition, apply the condition to this ground (wet snow turns every
        class to the snow law of the same polarisation)."""
        laws = tuple(Sigma0Law.with_level(law.form, law.level_db + ratio, *law.shape_parameters)
                     for law, ratio in zip(self.laws, self.cross_ratios_db, strict=True))
        return dataclasses.replace(self, laws=laws)

    def cell_laws(self) -> CellLaws:
        """The ground as the facet kernel carries it (:class:`CellLaws`): each facet its
        cell's class law of the facet's own local incidence times the cell's texture (on a
        plane, what :meth:`sigma0` gives per cell)."""
        return CellLaws(self.classes, self.laws, self.texture())

    def to_attrs(self) -> dict[str, str | float | int]:
        """Attributes for a scene or an image: the family, seeds, texture, each class's law
        and share, and the land-cover thresholds."""
        attrs: dict[str, str | float | int] = {
            "ground": self.name, "ground_seed": "none" if self.seed is None else int(self.seed),
            "ground_texture_db": round(self.texture_db, 4), "ground_texture_seed": int(self.texture_seed),
        }
        shares = self.class_shares()
        for name, law, ratio in zip(LAND_COVER_CLASSES, self.laws, self.cross_ratios_db, strict=True):
            attrs[f"ground_law_{name}"] = law.name
            attrs[f"ground_share_{name}"] = round(shares[name], 4)
            attrs[f"ground_cross_ratio_db_{name}"] = round(ratio, 4)
        if self.rule is not None:
            for field, value in dataclasses.asdict(self.rule).items():
                attrs[f"ground_{field}"] = round(float(value), 4)
        return attrs


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
        return all(low - tolerance <= value <= high + tolerance
                   for (low, high), value in zip(bounds, values, strict=True))


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
    patch_share : (low, high) of the share of the cells in patches of one class drawn at
        random that cut across the terrain's classes (:func:`terrain_land_cover`).
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
    patch_share: tuple[float, float] = (0.0, 0.25)

    def form(self, land_cover: str) -> str:
        """The form of the laws the family draws for the class ``land_cover``."""
        return self.laws[LAND_COVER_CLASSES.index(land_cover)].form

    def draw_rule(self, rng: np.random.Generator) -> LandCoverRule:
        """Land-cover thresholds: ordinary draws, or with probability ``dominant_share``
        those of a scene nearly one class."""
        low, high = THRESHOLD_LIMITS["treeline_quantile"], THRESHOLD_LIMITS["snowline_quantile"]
        steep = THRESHOLD_LIMITS["rock_slope_deg"]
        shift = rng.uniform(*self.aspect_snow_shift)
        patches = {"patch_share": float(rng.uniform(*self.patch_share)),
                   "patch_class": int(rng.integers(len(LAND_COVER_CLASSES)))}
        if rng.random() < self.dominant_share:
            dominant = LAND_COVER_CLASSES[int(rng.integers(len(LAND_COVER_CLASSES)))]
            treeline = {"vegetation": low[1]}.get(dominant, low[0])
            snowline = {"snow": high[0]}.get(dominant, high[1])
            rock = {"rock": steep[0]}.get(dominant, steep[1])
            return LandCoverRule(treeline, snowline, rock, shift, **patches)
        return LandCoverRule(rng.uniform(*self.treeline_quantile), rng.uniform(*self.snowline_quantile),
                             rng.uniform(*self.rock_slope_deg), shift, **patches)

    def contains(self, ground: Ground) -> bool:
        """Whether ``ground``'s laws, texture and thresholds lie in this family's ranges."""
        rule = ground.rule
        return (all(r.contains(law) for r, law in zip(self.laws, ground.laws, strict=True))
                and self.texture_db[0] <= ground.texture_db <= self.texture_db[1]
                and rule is not None
                and all(THRESHOLD_LIMITS[name][0] <= getattr(rule, name) <= THRESHOLD_LIMITS[name][1]
                        for name in THRESHOLD_LIMITS))


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


def draw_ground(dem: Any, family: str | GroundFamily, seed: int, *,
                dark_share: tuple[float, float] | None = None) -> Ground:
    """A ground drawn from a family for a DEM.

    Parameters
    ----------
    dem : the DEM the ground lies on (as :func:`sarheight.dem.open_dem` takes it).
    family : a name of :data:`GROUND_FAMILIES`, or a :class:`GroundFamily`.
    seed : non-negative integer. The same DEM, family and seed give the same ground; each
        family draws from its own random stream, so that "test-family" seed k is not
        "training" seed k.
    dark_share : (low, high): the patches that cut across the terrain's classes are of the
        class of the darkest law (at 40 degrees) and hold a share of the cells drawn in that
        range (a dark class over a third of the cells: (0.34, 0.45)); None: the family's
        patches.

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
    if dark_share is not None:
        low, high = (float(value) for value in dark_share)
        if not 0.0 <= low <= high <= 1.0:
            raise InvalidInputError(f"dark_share must be (low, high) shares within 0..1, got {dark_share!r}")
        darkest = int(np.argmin([law.level_db for law in laws]))
        rule = dataclasses.replace(rule, patch_share=float(rng.uniform(low, high)), patch_class=darkest)
    classes = rule.classify(dem, land_cover_seed)
    # The cross-polarised ratios from a stream of their own: the draws above stay those of
    # grounds drawn before the ratios were.
    cross = np.random.default_rng([zlib.crc32(b"cross-polarised ratio"), zlib.crc32(family.name.encode()), int(seed)])
    ratios = tuple(float(cross.uniform(*CROSS_RATIO_RANGES_DB[name])) for name in LAND_COVER_CLASSES)
    return Ground(laws, classes, texture_db=texture_db, texture_seed=texture_seed, family=family.name,
                  seed=int(seed), rule=rule, cross_ratios_db=ratios)
