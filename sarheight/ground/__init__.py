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

The modules: ``laws`` (the sigma0 laws), ``cover`` (land cover that follows the terrain),
``grounds`` (grounds, dates and their families) and ``fitted`` (the law fitted to an
observation). Physics only (numpy, scipy, xarray): :func:`sarheight.simulate.simulate_sar`
takes a :class:`Ground` (``ground=``); this package sits below ``simulate`` and imports
nothing of it. Their public names are importable from here.
"""

from __future__ import annotations

from .cover import (
    LAND_COVER_CLASSES,
    NO_CLASS,
    LandCoverRule,
    height_quantiles,
    lognormal_texture,
    shade_factor,
    terrain_land_cover,
)
from .fitted import FittedLaw, fit_sigma0_law
from .grounds import (
    CROSS_RATIO_DB,
    CROSS_RATIO_RANGES_DB,
    GROUND_FAMILIES,
    THRESHOLD_LIMITS,
    CellLaws,
    DateCondition,
    Ground,
    GroundFamily,
    LawRange,
    draw_date_conditions,
    draw_ground,
)
from .laws import (
    EMPIRICAL_LAW,
    LAMBERT_LAW,
    REFERENCE_INCIDENCE_DEG,
    SIGMA0_FORMS,
    SIGMA0_LAWS,
    SNAP_LAW,
    Sigma0Law,
    empirical_sigma0,
    lambert_sigma0,
)

__all__ = [
    "CROSS_RATIO_DB",
    "CROSS_RATIO_RANGES_DB",
    "EMPIRICAL_LAW",
    "GROUND_FAMILIES",
    "LAMBERT_LAW",
    "LAND_COVER_CLASSES",
    "NO_CLASS",
    "REFERENCE_INCIDENCE_DEG",
    "SIGMA0_FORMS",
    "SIGMA0_LAWS",
    "SNAP_LAW",
    "THRESHOLD_LIMITS",
    "CellLaws",
    "DateCondition",
    "FittedLaw",
    "Ground",
    "GroundFamily",
    "LandCoverRule",
    "LawRange",
    "Sigma0Law",
    "draw_date_conditions",
    "draw_ground",
    "empirical_sigma0",
    "fit_sigma0_law",
    "height_quantiles",
    "lambert_sigma0",
    "lognormal_texture",
    "shade_factor",
    "terrain_land_cover",
]
