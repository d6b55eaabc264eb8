"""The methods that refine a coarse DEM without learning, as a scene holds or makes them:
the coarse DEM resampled (bilinear, bicubic, Lanczos), registered to the priors,
back-projected, corrected by the priors' kriged residuals, clinometry, and the priors-only
interpolation (:func:`baseline_maps`); the bar a network must clear is the best of
:data:`NON_LEARNED`.

The same maps are inputs of a network that stacks them (:data:`STACKED_METHODS`: each
read as a correction of the network's reference, and chosen instead of the network per
terrain class where the validation scenes say it is better,
:mod:`sarheight.training.calibration`): :func:`scene_channel` gives a scene's channel,
stored, derived (:func:`sarheight.terrain.variables.scene_variable`) or one of these maps.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import InvalidInputError
from .clinometry import clinometry_heights
from .method_table import BAR_METHODS, BY_KEY, REFINEMENT_METHODS
from .variables import Scene, scene_variable, variable_sources

#: The methods that need no training and every scene gives, by key, with their labels
#: (:data:`sarheight.terrain.method_table.REFINEMENT_METHODS`).
BASELINES = {method.key: method.label for method in REFINEMENT_METHODS if method.every_scene and not method.learned}

#: The non-learned methods among which the best, per DEM and condition, is the bar every
#: network must clear (the priors-only interpolation, tens of metres off between priors,
#: is reported but never the best).
NON_LEARNED = BAR_METHODS


def baseline_maps(scene: xr.Dataset) -> dict[str, np.ndarray]:
    """The heights of every method that needs no training (:data:`BASELINES`) on a scene:
    the variable that holds each map, or the map made (clinometry)."""
    return {key: (scene[BY_KEY[key].variable].values if BY_KEY[key].variable else method_heights(scene, key))
            for key in BASELINES}


#: The non-learned maps a network may read as inputs and be replaced by, per terrain
#: class, where validation finds one better (a scene variable each; the inversion's map
#: only in scenes built with it): registered to the priors (Lanczos), back-projected with
#: the kriged priors (the usual reference itself), clinometry and the inversion.
STACKED_METHODS = ("coarse_registered", "coarse_refined", "clinometry", "inverted")

#: References that are a stacked map filled where it has none, by the map: a network of
#: such a reference corrects that map, so its calibration never offers it as an
#: alternative (the gate's ``keep`` of 0 is that map already).
FILLED_REFERENCES = {"inverted_filled": "inverted"}

#: The stored variables the clinometric map is made from (:func:`clinometry_heights`'s defaults).
CLINOMETRY_SOURCES = ("coarse_registered", "coarse_refined", "coarse_backprojected", "sar_reconstructed",
                      "local_incidence_angle", "layover", "shadow", "prior_height", "prior_mask")


def method_heights(scene: xr.Dataset | Scene, name: str) -> np.ndarray:
    """The heights (float32, m, (y, x)) of the non-learned map ``name`` of
    :data:`STACKED_METHODS` on a scene: stored, or (clinometry) made once per scene.

    Raises
    ------
    InvalidInputError : an unknown name, or a map the scene cannot give.
    """
    if name not in STACKED_METHODS:
        raise InvalidInputError(f"{name!r} is no stacked method: give one of {', '.join(STACKED_METHODS)}")
    if name != "clinometry":
        if name not in scene.data_vars:
            raise InvalidInputError(f"the scene has no {name!r} map"
                                    + (": build it with the inversion (inversion=True, sarheight terrain scenes "
                                       "--inversion)" if name == "inverted" else ""))
        return scene[name].values.astype(np.float32)
    scene = Scene.of(scene)
    return scene.made(("method", name), CLINOMETRY_SOURCES, lambda: clinometry_heights(scene).values.astype(np.float32))


def scene_channel(scene: xr.Dataset | Scene, name: str) -> np.ndarray:
    """The values (float32, (y, x)) of a model's input channel ``name``: a non-learned map
    of :data:`STACKED_METHODS` (:func:`method_heights`), else a stored or derived scene
    variable (:func:`sarheight.terrain.variables.scene_variable`)."""
    if name == "clinometry":
        return method_heights(scene, name)
    return scene_variable(scene, name)


def channel_sources(name: str) -> tuple[str, ...]:
    """The stored variables a scene needs to give the channel ``name``."""
    if name == "clinometry":
        return ("coarse_lanczos", "sar_reconstructed", "local_incidence_angle", "layover", "shadow")
    return variable_sources(name)
