"""Fresh terrain scenes drawn at random, in memory: every scene a crop of a DEM (as a
terrain transform turns it), a geometry, a coarse product, priors, an observation (looks,
law, land cover or ground, dates) and speckle drawn from the axes of a set
(:class:`sarheight.terrain.scene_sets.SceneAxes`), one scene per key. A data module that
draws new terrain while a network trains (:mod:`sarheight.data.drawn`) takes them instead
of, or beside, scene files on disk; on a GPU (``device="cuda"``) the physics of each scene
runs there.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from ..compute import compute_for
from ..dem import open_dem
from ..errors import InvalidInputError
from ..geometry import RadarGeometry
from .augment import terrain_on_a_projected_grid
from .observed import source_name
from .scene_options import SceneProducts
from .scene_sets import SceneAxes, SceneDraw, scene_file_name, simulated_scene, synthetic_variants, transformed_terrain
from .simulated import DEFAULT_PRODUCTS

__all__ = ["DRAW_STREAM", "SceneDrawer"]

#: The stream of the draws of the scenes' axes (NumPy's generator seeded by (stream, key)),
#: apart from every seed a scene draws its own properties with.
DRAW_STREAM = 0x5CE9E

#: Keys are non-negative and below this: a scene's seed is its key.
MAX_KEY = 2**31


class SceneDrawer:
    """Scenes drawn at random from DEMs, one per key (:meth:`draw`): the same key gives the
    same scene, wherever it is drawn (to the rounding of the physics' sums).

    Parameters
    ----------
    dems : the DEMs the terrain is drawn from (paths, or DataArrays from
        :func:`sarheight.dem.open_dem`; a DataArray's ``attrs["dem_name"]`` names it). Every
        scene's ``dem_name`` is its DEM's, so that a split by area keeps it in one split.
    axes : the values each scene draws one of (:class:`SceneAxes`: terrain transforms,
        passes, look sides, heading offsets, coarse factors and families, priors, looks,
        laws, land covers, grounds, dates, whether the opposite pass is observed); its
        ``seeds`` are not drawn: each key is its scene's seed (speckle, land cover, priors).
    crop_cells : the side of every scene (cells), a window of the (transformed) terrain
        drawn per scene (:func:`sarheight.terrain.augment.crop_window`), its geometry the
        whole terrain's, so that a crop lies anywhere from near to far range.
    products : what each scene makes from its observation (:class:`SceneProducts`).
    device : where the physics runs (:func:`sarheight.terrain.simulated.simulate_scene`):
        None, the numba kernels; ``"cuda"``, torch on the GPU. Checked when made.
    """

    def __init__(self, dems: Sequence[Any], axes: SceneAxes | None = None, *, crop_cells: int = 128,
                 products: SceneProducts = DEFAULT_PRODUCTS, device: str | None = None):
        self.axes = SceneAxes() if axes is None else axes
        if not isinstance(self.axes, SceneAxes):
            raise InvalidInputError(f"axes must be a SceneAxes (SceneAxes(coarse_factors=(3, 5))), got "
                                    f"{type(self.axes).__name__}")
        if not isinstance(products, SceneProducts):
            raise InvalidInputError(f"products must be a SceneProducts, got {type(products).__name__}")
        if isinstance(crop_cells, bool) or not isinstance(crop_cells, (int, np.integer)) or crop_cells < 16:
            raise InvalidInputError(f"crop_cells must be a number of cells a side (16 or more), got {crop_cells!r}")
        if isinstance(dems, (str, os.PathLike, xr.DataArray)) or not len(dems):
            raise InvalidInputError("dems must be a list of one DEM or more (paths or DataArrays)")
        if device is not None:
            compute_for(device)  # a GPU this machine lacks refused before any DEM is read
        self.crop_cells = int(crop_cells)
        self.products = products
        self.device = device
        self.sources = [open_dem(dem).assign_attrs(dem_name=source_name(dem)) for dem in dems]
        names = [source.attrs["dem_name"] for source in self.sources]
        if len(set(names)) != len(names):
            raise InvalidInputError(f"two DEMs share a name ({names}): rename one, so that their scenes' areas differ")
        self._projected: dict[int, xr.DataArray] = {}
        self._terrains: dict[tuple[int, int], tuple[xr.DataArray, str, list[tuple[str, RadarGeometry,
                                                                                  RadarGeometry]]]] = {}

    @property
    def dem_names(self) -> list[str]:
        """The names of the DEMs, the areas of their scenes."""
        return [source.attrs["dem_name"] for source in self.sources]

    def overlapping(self, footprint: tuple[float, float, float, float]) -> list[str]:
        """The names of the DEMs whose ground meets ``footprint`` ((west, south, east,
        north), degrees, WGS84): what a held-out scene there would share with them."""
        west, south, east, north = footprint
        found = []
        for source in self.sources:
            left, bottom, right, top = source.rio.transform_bounds("EPSG:4326")
            if left < east and west < right and bottom < north and south < top:
                found.append(source.attrs["dem_name"])
        return found

    def _terrain(self, dem: int, change: int) -> tuple[xr.DataArray, str, list[tuple[str, RadarGeometry,
                                                                                       RadarGeometry]]]:
        """A DEM as a terrain transform turns it, its name in the scenes' names, and its
        synthetic geometries; made on first use and kept."""
        key = (dem, change)
        if key not in self._terrains:
            source = self.sources[dem]
            transform = self.axes.terrain_transforms[change]
            if transform.label and dem not in self._projected:
                # A geographic DEM reprojected once, for all its transforms.
                self._projected[dem] = terrain_on_a_projected_grid(source)
            truth, name = transformed_terrain(source, self._projected.get(dem, source), transform)
            self._terrains[key] = (truth, name, synthetic_variants(truth, self.axes))
        return self._terrains[key]

    def draw(self, key: int) -> xr.Dataset:
        """The scene of ``key`` (0 <= key < 2**31): a DEM, a terrain transform, a geometry
        and a value of every other axis drawn with ``key``, and the scene simulated with
        ``key`` as its seed, named ``<scene file name>_k<key>``."""
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or not 0 <= key < MAX_KEY:
            raise InvalidInputError(f"a scene's key is a whole number from 0 to 2**31 - 1, got {key!r}")
        rng = np.random.default_rng([DRAW_STREAM, int(key)])
        axes = self.axes

        def pick(values: Sequence[Any]) -> Any:
            return values[int(rng.integers(len(values)))]

        truth, dem_name, variants = self._terrain(int(rng.integers(len(self.sources))),
                                                  int(rng.integers(len(axes.terrain_transforms))))
        tag, geometry, opposite = pick(variants)
        draw = SceneDraw(tag, geometry, opposite, pick(axes.coarse_factors), pick(axes.coarse_families),
                         pick(axes.priors), pick(axes.looks), pick(axes.laws), pick(axes.land_cover_db),
                         pick(axes.ground_families), pick(axes.dates), pick(axes.opposite_passes), int(key))
        name = f"{scene_file_name(dem_name, draw)}_k{int(key)}"
        scene = simulated_scene(name, truth, dem_name, None, draw, axes, self.crop_cells, self.products,
                                device=self.device)
        scene.attrs["draw_key"] = int(key)
        return scene
