"""Lightning data modules of the learning floor: terrain scenes for the height model.

Needs the ``ml`` extra (``pip install 'sarheight[ml]'``): importing this package
without it raises :class:`~sarheight.extras.MissingExtraError` saying so.
"""

from ..extras import require

require("sarheight.data")

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
    "DEFAULT_CHANNELS",
    "HEIGHT_CHANNELS",
    "SPARSE_CHANNELS",
    "TERRAIN_CLASSES",
    "SceneArrays",
    "SceneHeader",
    "TerrainDataModule",
    "TerrainScenes",
    "scene_arrays",
    "scene_files",
    "scene_header",
]
