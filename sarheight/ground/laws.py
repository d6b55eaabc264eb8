"""The sigma0 laws of the local incidence (degrees in, linear sigma0 out) the ground can
follow: :class:`Sigma0Law` of one of the forms of :data:`SIGMA0_FORMS`, the empirical law of
SNAP's and ISCE3's simulators (:func:`empirical_sigma0`, the law the reconstruction
models) and Lambert's (:func:`lambert_sigma0`).

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
from collections.abc import Callable

import numpy as np

from ..errors import InvalidInputError

#: The local incidence angle (degrees) at which laws are levelled and compared: the middle
#: of Sentinel-1 IW's swath.
REFERENCE_INCIDENCE_DEG = 40.0


#: Coefficients (a0, a1, a2) of the empirical sigma0 law of SNAP's and ISCE3's
#: simulators (the law the reconstruction models):
#: sigma0 = a0 cos(t) / (sin(t) + a1 cos(t))^a2 (linear power).
EMPIRICAL_LAW = (0.0118, 0.111, 3.0)


#: The forms of :class:`Sigma0Law` and the names of their parameters, in order.
#:
#: - ``"empirical"`` (a0, a1, a2): ``a0 cos t / (sin t + a1 cos t)^a2``, a rough surface
#:   (SNAP's and ISCE3's simulators: :data:`EMPIRICAL_LAW`). a1 sets how fast it rises
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
SNAP_LAW = Sigma0Law("empirical", EMPIRICAL_LAW)


#: Lambert's law as ``sarheight.simulate.lambert_sigma0`` has it: 0.1 cos^2 t.
LAMBERT_LAW = Sigma0Law("cosine", (0.1, 2.0))


def empirical_sigma0(local_incidence_deg: np.ndarray | float) -> np.ndarray:
    """The empirical sigma0 law (linear) of the local incidence angle (degrees).

    sigma0 = 0.0118 cos(t) / (sin(t) + 0.111 cos(t))^3, 0 for t >= 90 degrees.
    """
    theta = np.radians(np.asarray(local_incidence_deg, dtype=np.float64))
    a0, a1, a2 = EMPIRICAL_LAW
    cos, sin = np.cos(theta), np.sin(theta)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = a0 * cos / (sin + a1 * cos) ** a2
    return np.where(cos > 0, value, 0.0)


def lambert_sigma0(local_incidence_deg: np.ndarray | float) -> np.ndarray:
    """Lambert's law (linear sigma0) of the local incidence angle (degrees): a rough,
    diffusely scattering surface, sigma0 = 0.1 cos^2(t), 0 for t >= 90 degrees.

    It falls with the incidence about a third as fast as :func:`empirical_sigma0` near
    40 degrees (0.12 against 0.3 dB per degree): a different surface than the one the
    reconstruction models, for scenes that test how much a model relies on that law.
    """
    cos = np.cos(np.radians(np.asarray(local_incidence_deg, dtype=np.float64)))
    return np.where(cos > 0, 0.1 * cos**2, 0.0)


#: The sigma0 laws of the local incidence angle (degrees -> linear) a simulated ground can
#: follow, by name.
SIGMA0_LAWS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"empirical": empirical_sigma0,
                                                              "lambert": lambert_sigma0}
