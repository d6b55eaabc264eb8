"""Lightning data modules of the learning floor: terrain scenes for the height model,
cities of monthly Sentinel-1/2 images for building heights, and So2Sat LCZ42 patches
for Local Climate Zone classification.

Needs the ``ml`` extra (``pip install 'sarheight[ml]'``): importing this package
without it raises :class:`~sarheight.extras.MissingExtraError` saying so.
"""

from ..extras import require

require("sarheight.data")

from .buildings import BUILDING_CLASSES, BuildingHeightDataModule, CityArrays, read_city  # noqa: E402
from .drawn import DrawnScenes, DrawnTerrainDataModule  # noqa: E402
from .so2sat import (  # noqa: E402
    CHANNELS,
    FILES,
    LCZ_CLASSES,
    S1_CHANNELS,
    S2_CHANNELS,
    SETTINGS,
    ChannelStatistics,
    So2SatDataModule,
    So2SatLCZ42,
    channel_statistics,
    check_file,
    class_weights,
    read_labels,
    setting_indices,
)
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
    "CHANNELS",
    "DEFAULT_CHANNELS",
    "FILES",
    "HEIGHT_CHANNELS",
    "LCZ_CLASSES",
    "S1_CHANNELS",
    "S2_CHANNELS",
    "SETTINGS",
    "SPARSE_CHANNELS",
    "TERRAIN_CLASSES",
    "BuildingHeightDataModule",
    "ChannelStatistics",
    "CityArrays",
    "DrawnScenes",
    "DrawnTerrainDataModule",
    "SceneArrays",
    "SceneHeader",
    "So2SatDataModule",
    "So2SatLCZ42",
    "TerrainDataModule",
    "TerrainScenes",
    "channel_statistics",
    "check_file",
    "class_weights",
    "read_city",
    "read_labels",
    "scene_arrays",
    "scene_files",
    "scene_header",
    "setting_indices",
]
