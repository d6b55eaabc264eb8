"""Forward simulation of the radar imaging of a DEM: areas, layover, shadow, simulated images.

:func:`simulate` maps every DEM facet into the radar image (zero-Doppler geometry),
computes its local incidence angle and areas, finds layover and shadow per zero-Doppler
line, and projects the facets' contributions onto the radar grid (exact polygon-pixel
overlap, or bilinear splatting). :func:`simulate_sar` turns that into a speckled
observation for tests, demos and training data.
The modules: ``contribution`` (what a facet contributes), ``cells`` (where the cells
fall: geometry, visibility, windows), ``engine`` (:class:`Simulation`,
:func:`run_simulation`) and ``images`` (:func:`simulate`, :func:`simulate_sar`). The
sigma0 laws a ground follows are :mod:`sarheight.ground`'s.
"""

from __future__ import annotations

from ..ground import CellLaws
from .contribution import Contribution, FacetContribution, Projection, resolve_contribution
from .engine import Simulation, resimulated, run_simulation
from .images import noise_floor, simulate, simulate_sar, texture

__all__ = ["CellLaws", "Contribution", "FacetContribution", "Projection", "Simulation", "noise_floor",
           "resimulated", "resolve_contribution", "run_simulation", "simulate", "simulate_sar", "texture"]
