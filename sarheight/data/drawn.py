"""Terrain scenes drawn fresh while a network trains: the training tiles cut from scenes
simulated on the fly (:class:`sarheight.terrain.scene_draws.SceneDrawer`: a crop of a
DEM, its transform, geometry, coarse product, priors, land cover or ground, law, dates and
speckle drawn per scene), beside or instead of the training split of the scene files on
disk; validation and test stay the files' (fixed tiles, so that epochs compare).

Decisions, in one place:

- **A scene per batch.** Consecutive keys of an epoch (:class:`EpochDraws`: each epoch
  its own run of keys) share a scene, ``tiles_per_scene`` of them (default a batch, and
  ``tiles_per_epoch`` a multiple of it): a batch holds tiles of one fresh scene, the next
  batch another, the next epoch new ones. The scene of a group of keys follows the keys
  alone, so that a run resumed, or read by several workers or processes, draws the same
  scenes; under DDP each process reads every n-th key, so a batch there draws from
  several scenes (the same scenes in all, more draws a batch).
- **Where it runs.** A loader's workers draw in parallel (``num_workers``); with
  ``draw_device="cuda"`` the physics of each scene runs on the GPU (torch), in the main
  process (``num_workers: 0``), as CUDA needs.
- **No leak.** The DEMs drawn from are areas of their own: a DEM whose name is the area
  of a validation or test file is refused before any scene is drawn.
- **Statistics.** The normalisation statistics pool the files' training cells with every
  cell of ``statistics_scenes`` drawn scenes (keys kept apart from the training ones).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import InvalidInputError
from ..priors import PriorSpec
from ..terrain.augment import TerrainTransform
from ..terrain.scene_draws import MAX_KEY, SceneDrawer
from ..terrain.scene_options import SceneProducts
from ..terrain.scene_sets import SceneAxes
from .terrain import SceneArrays, TerrainDataModule, TerrainScenes, check_scene, scene_arrays, scene_footprint
from .tiles import SPLITS, ChannelSums

__all__ = ["DrawnScenes", "DrawnTerrainDataModule", "scene_axes_from_options"]

logger = logging.getLogger(__name__)

#: The stream that decides, per group of keys, whether its tiles come from a drawn scene
#: or from the files (``drawn_share``).
SHARE_STREAM = 0xD5A3E


def scene_axes_from_options(options: dict[str, Any] | None) -> SceneAxes:
    """A :class:`SceneAxes` from plain values (a YAML mapping): each axis a list, ``priors``
    a list of :class:`sarheight.priors.PriorSpec` keyword mappings, ``terrain_transforms``
    a list of :class:`sarheight.terrain.augment.TerrainTransform` ones."""
    given = dict(options or {})
    if "seeds" in given:
        raise InvalidInputError("data.draw_axes names seeds, which a drawn scene does not take: each scene's key is "
                                "its seed; leave seeds out")
    unknown = sorted(set(given) - set(SceneAxes.__dataclass_fields__))
    if unknown:
        raise InvalidInputError(f"data.draw_axes names {unknown}, which are not axes of a scene set "
                                f"({', '.join(SceneAxes.__dataclass_fields__)})")
    for name, kind in (("priors", PriorSpec), ("terrain_transforms", TerrainTransform)):
        if name in given:
            values = given[name]
            if not isinstance(values, (list, tuple)) or not all(isinstance(value, (dict, kind)) for value in values):
                raise InvalidInputError(f"data.draw_axes.{name} must be a list of mappings of {kind.__name__}'s "
                                        f"options, got {values!r}")
            given[name] = tuple(value if isinstance(value, kind) else kind(**value) for value in values)
    for name, value in given.items():
        if isinstance(value, list):
            given[name] = tuple(value)
    return SceneAxes(**given)


class DrawnScenes(Dataset):
    """Training tiles of scenes drawn fresh, one scene per ``tiles_per_scene`` keys (the
    keys of :class:`~sarheight.data.tiles.EpochDraws`), or, for a share ``1 -
    drawn_share`` of the groups of keys, the tiles of ``files`` (the scene files'
    training tiles).

    Parameters
    ----------
    drawer : what draws a scene of a key (:class:`SceneDrawer`).
    arrays_of : a drawn scene's arrays, as the data module reads its files.
    tile, length : the side of the tiles (cells) and the tiles per epoch.
    tiles_per_scene : consecutive keys that share a scene.
    files : the training tiles of the files, or None.
    drawn_share : the share of the groups of keys whose tiles are drawn.
    with_baseline : whether the tiles carry the coarse DEM's baseline (as the files' do).
    """

    #: No fixed tiles: the loader draws each epoch's keys (:class:`~sarheight.data.tiles.EpochDraws`).
    windows = None

    def __init__(self, drawer: SceneDrawer, arrays_of: Any, tile: int, length: int, *, tiles_per_scene: int,
                 files: TerrainScenes | None = None, drawn_share: float = 1.0, with_baseline: bool = False):
        self.drawer = drawer
        self.arrays_of = arrays_of
        self.tile = int(tile)
        self.length = int(length)
        self.tiles_per_scene = int(tiles_per_scene)
        self.files = files
        self.drawn_share = float(drawn_share)
        self.with_baseline = bool(with_baseline)
        self._kept: tuple[int, TerrainScenes] | None = None
        #: Scenes this dataset (in this process) has drawn.
        self.drawn = 0

    def __len__(self) -> int:
        return self.length

    def scene_key(self, key: int) -> int | None:
        """The key of the drawn scene tile ``key`` is cut from, or None where it is a
        tile of the files."""
        group = int(key) // self.tiles_per_scene
        if self.files is not None and np.random.default_rng([SHARE_STREAM, group]).random() >= self.drawn_share:
            return None
        return group % MAX_KEY

    def tiles_of(self, scene_key: int) -> TerrainScenes:
        """The tiles of the drawn scene of ``scene_key`` (the last one kept: a batch's
        keys share it)."""
        if self._kept is None or self._kept[0] != scene_key:
            with warnings.catch_warnings(record=True) as caught:
                # A drawn scene's warnings (a registration the image cannot tell) are the
                # simulation's, many per epoch: logged, not shown.
                warnings.simplefilter("always")
                arrays = self.arrays_of(self.drawer.draw(scene_key))
            for warning in caught:
                logger.debug("drawn scene %d: %s", scene_key, warning.message)
            tiles = TerrainScenes([arrays], self.tile, areas=[np.ones(arrays.shape, dtype=bool)], length=1)
            if self.with_baseline and not tiles.with_baseline:
                raise InvalidInputError(f"the drawn scene {arrays.name} has no coarse_height, which the files' tiles "
                                        "carry as the baseline: draw scenes with the files' products")
            tiles.with_baseline = self.with_baseline
            self._kept = (scene_key, tiles)
            self.drawn += 1
        return self._kept[1]

    def __getitem__(self, key: int) -> dict[str, torch.Tensor]:
        if key < 0:
            raise IndexError(key)
        scene_key = self.scene_key(key)
        if scene_key is None:
            assert self.files is not None
            return self.files[key]
        tiles = self.tiles_of(scene_key)
        item = tiles.item(tiles.random_tile(int(key))[0])
        # A drawn scene has no index among the files' scenes.
        item["scene"] = torch.tensor(-1)
        return item


class DrawnTerrainDataModule(TerrainDataModule):
    """:class:`~sarheight.data.terrain.TerrainDataModule` whose training tiles are cut
    from scenes drawn fresh during training (see the module's docstring); validation and
    test are the files' (``scenes``, with the options of the terrain data module).

    Parameters
    ----------
    draw_dems : the DEM files (GeoTIFF) the training terrain is drawn from, none of them an
        area of a validation or test file.
    draw_axes : the axes each scene draws one value of (:class:`SceneAxes` as plain
        values: ``passes``, ``coarse_factors``, ``looks``, ``laws``, ``land_cover_db``,
        ``ground_families``, ``dates``, ``terrain_transforms``...; default its defaults).
    draw_products : what each drawn scene makes (:class:`SceneProducts` as plain values),
        as the files were made (default: registered, no inversion).
    draw_crop : the side of each drawn scene (cells), at least ``tile``.
    drawn_share : the share of the training tiles drawn (the rest the files' training
        tiles); 1: every one, and the files need no training area.
    tiles_per_scene : consecutive tiles cut from one drawn scene (default a batch).
    draw_device : where the physics of a drawn scene runs (None: the numba kernels;
        ``"cuda"``: torch on the GPU, with ``num_workers: 0``).
    statistics_scenes : drawn scenes whose cells join the normalisation statistics.
    **options : the options of :class:`~sarheight.data.terrain.TerrainDataModule`.
    """

    def __init__(self, draw_dems: Sequence[str] = (), draw_axes: dict[str, Any] | None = None,
                 draw_products: dict[str, Any] | None = None, draw_crop: int = 128, drawn_share: float = 1.0,
                 tiles_per_scene: int | None = None, draw_device: str | None = None, statistics_scenes: int = 4,
                 **options: Any):
        super().__init__(**options)
        self.save_hyperparameters()
        if isinstance(draw_dems, str) or not draw_dems:
            raise InvalidInputError("data.draw_dems must list the DEM files the training terrain is drawn from")
        if isinstance(drawn_share, bool) or not 0 < drawn_share <= 1:
            raise InvalidInputError(f"data.drawn_share must lie in (0, 1], got {drawn_share!r}")
        if isinstance(draw_crop, bool) or int(draw_crop) != draw_crop or draw_crop < self.tile:
            raise InvalidInputError(f"data.draw_crop ({draw_crop!r}) must be a whole number of cells of at least "
                                    f"data.tile ({self.tile}): a drawn scene holds whole tiles")
        for option, value, least in (("tiles_per_scene", tiles_per_scene, 1),
                                     ("statistics_scenes", statistics_scenes, 1)):
            if value is not None and (isinstance(value, bool) or int(value) != value or value < least):
                raise InvalidInputError(f"data.{option} must be an integer of at least {least}, got {value!r}")
        per_scene = int(tiles_per_scene or self.batch_size)
        if self.tiles_per_epoch % per_scene:
            raise InvalidInputError(f"data.tiles_per_epoch ({self.tiles_per_epoch}) is not a multiple of the tiles of "
                                    f"a drawn scene ({per_scene}, data.tiles_per_scene or data.batch_size): a batch "
                                    "would straddle two scenes; make it a multiple")
        if self.group_by is None:
            raise InvalidInputError("data.group_by is null: drawn terrain is kept apart from the validation and test "
                                    "areas by the files' area attribute; set data.group_by (dem_name)")
        if draw_device is not None and self.num_workers > 0 and str(draw_device).startswith("cuda"):
            raise InvalidInputError("data.draw_device cuda draws the scenes on the GPU in the main process: set "
                                    "data.num_workers 0")
        self.draw_dems = list(draw_dems)
        self.draw_axes = scene_axes_from_options(draw_axes)
        try:
            self.draw_products = SceneProducts(**dict(draw_products or {}))
        except TypeError as error:
            raise InvalidInputError(f"data.draw_products: {error}: give SceneProducts' options (register, "
                                    "inversion, keep_dates, error_sources)") from None
        self.draw_crop = int(draw_crop)
        self.drawn_share = float(drawn_share)
        self.tiles_per_scene = per_scene
        self.draw_device = draw_device
        self.statistics_scenes = int(statistics_scenes)
        self.training_needs_files = self.drawn_share < 1
        self.drawer: SceneDrawer | None = None

    def drawn_arrays(self, scene: Any) -> SceneArrays:
        """A drawn scene's arrays, as the files' are read, its variables checked."""
        check_scene(list(scene.data_vars), self.needed_variables(), str(scene.attrs.get("scene_name", "drawn")),
                    "the data module (data.channels, data.target, data.reference): draw it with data.draw_products")
        return scene_arrays(scene, self.channels, reference=self.reference, target=self.target,
                            name=str(scene.attrs.get("scene_name", "drawn")), scale=self.scale,
                            score_shadow=self.score_shadow)

    def setup(self, stage: str | None = None) -> None:
        """The files' scenes as :class:`TerrainDataModule` reads them; the DEMs drawn from,
        checked against the validation and test areas before any scene is drawn."""
        if self.data is None:
            # Opened before the files are split: a DEM that cannot be read is refused first.
            self.drawer = SceneDrawer(self.draw_dems, self.draw_axes, crop_cells=self.draw_crop,
                                      products=self.draw_products, device=self.draw_device)
        super().setup(stage)

    def training_sums(self, data: list[SceneArrays], drawn: Sequence[SceneArrays] = ()) -> ChannelSums:
        """The files' training sums with every cell of ``statistics_scenes`` drawn scenes,
        after the DEMs drawn from are checked against the held-out areas (by name and by
        footprint) and a drawn scene against the files' baseline."""
        assert self.drawer is not None
        held_out = [index for index, cells in enumerate(self.areas)
                    if np.any((cells == SPLITS.index("val")) | (cells == SPLITS.index("test")))]
        leaking = sorted({self.scene_areas[index] for index in held_out} & set(self.drawer.dem_names))
        if leaking:
            raise InvalidInputError(f"data.draw_dems holds {leaking}, areas of validation or test scenes: training "
                                    "on them would leak the answer; draw from other DEMs")
        files = self.scene_files()
        for index in held_out:
            overlapping = self.drawer.overlapping(scene_footprint(files[index]))
            if overlapping:
                raise InvalidInputError(f"data.draw_dems {overlapping} cover ground of the held-out scene "
                                        f"{data[index].name}: training on it would leak the answer; cut that ground "
                                        "out of the DEM, or draw from other DEMs")
        # Keys from the top of the range, apart from the first epochs' (each from seed x tiles up).
        kept = [self.drawn_arrays(self.drawer.draw(MAX_KEY - 1 - k)) for k in range(self.statistics_scenes)]
        if all(scene.baseline is not None for scene in data) and any(scene.baseline is None for scene in kept):
            raise InvalidInputError("the drawn scenes have no coarse_height, which the files' tiles carry as the "
                                    "baseline: draw scenes with the files' products (data.draw_products)")
        return super().training_sums(data, [*drawn, *kept])

    def training_tiles(self, data: list[SceneArrays]) -> Dataset:
        assert self.drawer is not None
        files = None
        if self.drawn_share < 1:
            files = super().training_tiles(data)
            assert isinstance(files, TerrainScenes)
        return DrawnScenes(self.drawer, self.drawn_arrays, self.tile, self.tiles_per_epoch,
                           tiles_per_scene=self.tiles_per_scene, files=files, drawn_share=self.drawn_share,
                           with_baseline=all(scene.baseline is not None for scene in data))
