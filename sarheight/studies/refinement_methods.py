"""The methods the terrain refinement study compares: the non-learned baselines (resampling,
back-projection and kriged priors, clinometry) and the networks with and without SAR,
derived from the shipped configuration; a scene's scored cells and the maps of the
baselines on it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import xarray as xr

from ..errors import InvalidInputError
from ..masks import MaskCode
from ..scores import MapScores
from ..terrain.classes import REFINEMENT_CLASSES

#: The SAR-derived channels a refinement configuration may hold: the control drops them.
SAR_CHANNELS = ("sar_ratio", "sar_ratio_geocoded", "sar_slope", "sar_slope_geocoded", "local_incidence_angle",
                "look_east", "look_north", "layover", "shadow")


#: What the both-passes network adds: the opposite pass's ratio, slope, incidence and look.
OTHER_PASS_CHANNELS = ("other_sar_ratio", "other_sar_slope", "other_local_incidence_angle", "other_look_east",
                       "other_look_north")


#: The seed paper's setting: SAR and priors, no coarse DEM (``sarheight/configs/terrain_ask_unet.yaml``).
PRIORS_ONLY_CHANNELS = ("sar_reconstructed", "local_incidence_angle", "prior_height", "prior_mask", "prior_distance")


#: The figures kept per scored scene and map: overall and per terrain class.
COLUMNS = ("overall", *REFINEMENT_CLASSES)


#: The networks the study trains unless told otherwise: the two the SAR's share needs.
DEFAULT_METHODS = ("sar", "nosar")


@dataclass(frozen=True)
class Network:
    """One trained method of the study: its channels, reference and scale."""

    name: str
    label: str
    channels: tuple[str, ...]
    reference: str
    scale: str | None
    score_shadow: bool = True


def networks(channels: Sequence[str], reference: str, scale: str | None) -> list[Network]:
    """The trained methods derived from a refinement configuration's ``channels``: the SAR
    network (as configured), the no-SAR control, the SAR network on geocoded sigma0, with
    both passes, and the seed paper's priors-only setting.

    Raises
    ------
    InvalidInputError : the channels hold no ``sar_ratio``.
    """
    channels = tuple(channels)
    if "sar_ratio" not in channels:
        raise InvalidInputError(f"the configuration's channels {list(channels)} hold no sar_ratio: give a refinement "
                                "configuration (sarheight/configs/terrain_refine.yaml)")
    geocoded = {"sar_ratio": "sar_ratio_geocoded", "sar_slope": "sar_slope_geocoded"}
    sar = Network("sar", "SAR network", channels, reference, scale)
    return [
        sar,
        Network("nosar", "no-SAR network (control)", tuple(c for c in channels if c not in SAR_CHANNELS), reference,
                scale),
        replace(sar, name="sar_geocoded", label="SAR network on geocoded sigma0",
                channels=tuple(geocoded.get(c, c) for c in channels)),
        replace(sar, name="both_passes", label="SAR network, both passes",
                channels=channels + tuple(c for c in OTHER_PASS_CHANNELS
                                          if c.removeprefix("other_") in channels)),
        Network("priors_only_network", "seed setting: SAR + priors, no coarse DEM", PRIORS_ONLY_CHANNELS,
                "prior_interpolated", None, score_shadow=False),
    ]


def ground_label(attrs: dict[str, Any]) -> str:
    """The ground a scene was simulated with, as the study's tables name it: its ground
    family (``ground_family``: laws drawn per terrain class), else its one law and land
    cover (scenes of earlier versions)."""
    family = attrs.get("ground_family")
    if family:
        return f"ground: {family}"
    law = str(attrs.get("sigma0_law", "empirical"))
    cover = float(attrs.get("land_cover_db", 3.0))
    return f"{law} law" + (f", land cover {cover:g} dB" if cover else ", no land cover")


#: The layers a scored cell has a value in: the truth and every product of the coarse DEM
#: (the registered ones stop short of the edges by the registration's shift).
SCORED_LAYERS = ("height", "coarse_height", "coarse_bicubic", "coarse_lanczos", "coarse_registered",
                 "coarse_backprojected", "coarse_refined")


def scoring_mask(scene: xr.Dataset) -> np.ndarray:
    """The cells every method is scored on: the truth and every product of the coarse DEM
    known (:data:`SCORED_LAYERS`), inside the image (shadow included: a refinement
    predicts there from the coarse DEM)."""
    mask = scene["layover"].values != MaskCode.OUTSIDE
    for name in SCORED_LAYERS:
        if name in scene.data_vars:
            mask &= np.isfinite(scene[name].values)
    return mask


def score_map(prediction: np.ndarray, scene: xr.Dataset, mask: np.ndarray, classes: np.ndarray,
              std: np.ndarray | None = None) -> dict[str, float]:
    """RMSE and cell count overall and per class of :data:`REFINEMENT_CLASSES` of one
    map; with ``std`` (m), also the cells whose error is within one and two of it."""
    scores = MapScores(REFINEMENT_CLASSES)
    scores.add(prediction, scene["height"].values, mask, classes)
    values = scores.compute()
    found = {"overall": values["rmse"], "count_overall": values["count"]}
    for name in REFINEMENT_CLASSES:
        found[name] = values[f"rmse_{name}"]
        found[f"count_{name}"] = values[f"count_{name}"]
    if std is not None:
        counted = mask & np.isfinite(scene["height"].values) & np.isfinite(std)
        z = np.abs(prediction - scene["height"].values)[counted] / np.maximum(std[counted], 1e-9)
        found.update(std_cells=int(counted.sum()), within_1std=int(np.sum(z <= 1)), within_2std=int(np.sum(z <= 2)))
    return found


