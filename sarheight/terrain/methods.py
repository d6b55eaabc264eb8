"""The methods that refine a coarse DEM without learning, as a scene holds or makes them:
the coarse DEM resampled (bilinear, bicubic, Lanczos), registered to the priors,
back-projected, corrected by the priors' kriged residuals, clinometry, and the priors-only
interpolation (:func:`baseline_maps`); the bar a network must clear is the best of
:data:`NON_LEARNED`.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from .clinometry import refine_scene

#: The methods that need no training, by key, with their labels.
BASELINES = {
    "coarse_bilinear": "coarse DEM, bilinear",
    "coarse_bicubic": "coarse DEM, bicubic",
    "coarse_lanczos": "coarse DEM, Lanczos",
    "registered": "registered to the priors (Lanczos)",
    "back_projection": "registered, back-projection",
    "back_projection_priors": "registered, back-projection, kriged priors",
    "clinometry": "clinometry (SAR physics)",
    "priors_only": "priors-only interpolation",
}

#: The non-learned methods among which the best, per DEM and condition, is the bar every
#: network must clear (the priors-only interpolation, tens of metres off between priors,
#: is reported but never the best).
NON_LEARNED = ("coarse_bilinear", "coarse_bicubic", "coarse_lanczos", "registered", "back_projection",
               "back_projection_priors", "clinometry")


def baseline_maps(scene: xr.Dataset) -> dict[str, np.ndarray]:
    """The heights of every method that needs no training (:data:`BASELINES`) on a scene."""
    return {
        "coarse_bilinear": scene["coarse_height"].values,
        "coarse_bicubic": scene["coarse_bicubic"].values,
        "coarse_lanczos": scene["coarse_lanczos"].values,
        "registered": scene["coarse_registered"].values,
        "back_projection": scene["coarse_backprojected"].values,
        "back_projection_priors": scene["coarse_refined"].values,
        "clinometry": refine_scene(scene).values,
        "priors_only": scene["prior_interpolated"].values,
    }
