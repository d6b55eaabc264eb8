"""Lightning data modules of the learning floor: terrain scenes for the height model, and
cities of monthly Sentinel-1/2 images for building heights.

Needs the ``ml`` extra (``pip install 'sarheight[ml]'``): importing this package
without it raises :class:`~sarheight.extras.MissingExtraError` saying so.
"""

from ..extras import require

require("sarheight.data")

from .buildings import BUILDING_CLASSES, BuildingHeightDataModule, CityArrays, read_city  # noqa: E402
from .terrain import (  # noqa: E402  (after the check of the extra)
    DEFAULT_CHANNELS,
    HEIGHT_CHANNELS,
    SPARSE_CHANNELS,
    TERRAIN_CLASSES,
    SceneArrays,
    SceneHeader,
    TerrainDataModule,
    TerrainScenes,
    scene_arrays,
    scene_files,
    scene_header,
)

__all__ = [
    "BUILDING_CLASSES",
    "DEFAULT_CHANNELS",
    "HEIGHT_CHANNELS",
    "SPARSE_CHANNELS",
    "TERRAIN_CLASSES",
    "BuildingHeightDataModule",
    "CityArrays",
    "SceneArrays",
    "SceneHeader",
    "TerrainDataModule",
    "TerrainScenes",
    "read_city",
    "scene_arrays",
    "scene_files",
    "scene_header",
]
