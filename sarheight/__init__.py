"""sarheight: physics-plus-learning SAR toolkit.

Layover/shadow simulation and reconstruction from a DEM and the Sentinel-1 geometry,
and models for terrain height, building height and local climate zones.

The user entries are importable from here (``from sarheight import reconstruct``); each
is loaded on first use, so that ``import sarheight`` costs nothing and the physics runs
without the learning extra (torch, Lightning): those entries need ``pip install
'sarheight[ml]'`` only when used.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from ._version import __version__
from .errors import (
    DatumError,
    GeometryError,
    InvalidInputError,
    MissingInputError,
    ProductError,
    SarHeightError,
    UnsupportedProductError,
)

# rioxarray (0.15-0.19) multiplies affine transforms with `*`, which affine 2.4 marks for
# deprecation in favour of `@`: a warning about their code that no user can act on, and
# that PYTHONWARNINGS=error would turn into a failure of every raster read.
warnings.filterwarnings("ignore", message=r"Use `@` matmul instead of `\*` mul operator",
                        category=PendingDeprecationWarning)

#: The user entries, by the module that holds each (loaded on first use).
ENTRIES = {
    # the physics
    "open_dem": "dem",
    "checked_dem": "dem",
    "Dem": "dem",
    "RadarGeometry": "geometry",
    "simulate": "simulate",
    "simulate_sar": "simulate",
    "reconstruct": "reconstruction",
    "to_geotiff": "reconstruction",
    "to_isce3_mask": "reconstruction",
    "MaskCode": "masks",
    "PriorSpec": "priors",
    "sample_priors": "priors",
    "interpolate_priors": "priors",
    "refine_dem": "refinement",
    "observed_scene": "terrain.observed",
    "simulate_scene": "terrain.simulated",
    "ObservationSpec": "terrain.scene_options",
    "SceneProducts": "terrain.scene_options",
    "SarReading": "terrain.scene_options",
    "Execution": "terrain.scene_options",
    "open_scene": "terrain.files",
    "invert_dem": "terrain.inversion",
    # the learning floor (the ml extra)
    "load_checkpoint": "training.trained",
    "predict_height": "training.predict",
    "predict_buildings": "training.predict",
}

__all__ = [
    "DatumError",
    "GeometryError",
    "InvalidInputError",
    "MissingInputError",
    "ProductError",
    "SarHeightError",
    "UnsupportedProductError",
    "__version__",
    *sorted(ENTRIES),
]


def __getattr__(name: str) -> Any:
    if name in ENTRIES:
        return getattr(importlib.import_module(f".{ENTRIES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(ENTRIES))
