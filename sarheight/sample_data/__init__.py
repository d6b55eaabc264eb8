"""Built-in real example data, available offline.

- :func:`jacksboro_dem`: the real 3-arc-second DEM of the Jacksboro fault, Tennessee
  (344 x 403 cells, 236-1076 m), shipped with matplotlib: the terrain of
  ``sarheight demo``.
- :func:`bigtujunga_dem`: SRTM 30 m over the San Gabriel Mountains, California
  (240 x 240 cells in UTM 11N, 641-1647 m on EGM96): steep slopes with layover under
  Sentinel-1 geometries; the README's Quickstart runs on it.
- :func:`rome_dem`: the Copernicus DEM 30 m around Rome (160 x 160 cells, WGS 84 +
  EGM96 height, 7-85 m): flat terrain with a compound CRS.
  (Their EGM96 heights reach the ellipsoid offline through the global grid of
  ``sarheight/geoids``.)
- :func:`terrain_demo_checkpoint`: the first one-image refinement ASK-UNet, trained by
  ``sarheight fit --config terrain_refine`` on real DEMs other than Big Tujunga (taken
  where the stack network does not ship); ``terrain_stack_demo.ckpt``, the stack network of
  ``sarheight/configs/terrain_stack.yaml``, which corrects the inversion from one image
  or several (one pass of dates, both passes); :func:`packaged_terrain_network` picks
  among the packaged networks (:data:`TERRAIN_NETWORKS`, :data:`ONE_IMAGE_NETWORK`) by
  what a user gives.

:func:`path` gives each file; ``README.md`` beside them says where they come from,
their licences and how they were cut.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from affine import Affine

from ..dem import open_dem
from ..errors import InvalidInputError, MissingInputError

#: The folder of the sample files.
FOLDER = Path(__file__).resolve().parent

#: The sample files, by name.
FILES = (
    "bigtujunga_srtm30_utm11_crop.tif",
    "rome_cop30_egm96_crop.tif",
    "terrain_refine_demo.ckpt",
    "terrain_stack_demo.ckpt",
    "buildings_mbhr_demo.ckpt",
)


def path(name: str) -> Path:
    """The path of the sample file ``name`` (one of :data:`FILES`)."""
    if name not in FILES:
        raise MissingInputError(f"no sample file {name!r}: the samples are {', '.join(FILES)}")
    return FOLDER / name


def bigtujunga_dem() -> xr.DataArray:
    """SRTM 30 m over the Big Tujunga catchment (San Gabriel Mountains), EGM96 heights
    brought to the WGS84 ellipsoid with the packaged EGM96 grid (undulation about -33 m)."""
    return open_dem(path("bigtujunga_srtm30_utm11_crop.tif"), vertical_datum="egm96")


def rome_dem() -> xr.DataArray:
    """Copernicus DEM 30 m around Rome; its compound CRS (EPSG:9707) says EGM96, converted
    with the packaged EGM96 grid (undulation about 48.6 m)."""
    return open_dem(path("rome_cop30_egm96_crop.tif"))


def jacksboro_dem() -> xr.DataArray:
    """The Jacksboro fault DEM shipped with matplotlib, as a DEM DataArray (EPSG:4326).

    The file gives heights above the geoid (about -30 m from the ellipsoid there) and no
    datum. The demo declares them ellipsoidal (its figures were made so): under a synthetic
    geometry that only shifts the scene by a constant 30 m, which changes no layover or
    shadow. The attributes say so; ``open_dem(..., vertical_datum="egm96")`` on the same
    array would convert them with the packaged geoid grid.
    """
    from matplotlib import cbook

    with cbook.get_sample_data("jacksboro_fault_dem.npz") as npz:
        elevation = np.asarray(npz["elevation"], dtype=np.float32)
        dx, dy = float(npz["dx"]), float(npz["dy"])
        west = float(npz["xmin"])
        # The file's "ymin" is the northern edge: row 0 is the north (its "ymax" is the south).
        north = max(float(npz["ymin"]), float(npz["ymax"]))
    transform = Affine(dx, 0.0, west, 0.0, -dy, north)
    dem = open_dem((elevation, transform, "EPSG:4326"), vertical_datum="ellipsoid")
    dem.attrs.update(
        source="matplotlib sample data jacksboro_fault_dem.npz (Jacksboro fault, Tennessee, 3 arc-second)",
        source_vertical_datum="geoid heights declared ellipsoidal for the demo (about 30 m offset)",
        long_name="terrain height",
    )
    dem.name = "height"
    return dem


def terrain_demo_checkpoint() -> Path:
    """The first packaged one-image refinement checkpoint: the ASK-UNet of
    ``sarheight/configs/terrain_refine.yaml`` (16 base channels, the coarse DEM corrected in units
    of its cell with the SAR ratio and the priors), exported with ``sarheight terrain
    export --half`` (weights in float16)."""
    return path("terrain_refine_demo.ckpt")


#: The packaged refinement networks, by what they read: ``one_image``, one pass (its dates
#: composited); ``stack``, every date of either pass (:mod:`sarheight.models.stack`). A
#: kind whose file does not ship is not offered.
TERRAIN_NETWORKS = {"one_image": "terrain_refine_demo.ckpt", "stack": "terrain_stack_demo.ckpt"}

#: The kind of packaged network that refines one image: the one of the lower RMSE on the
#: validation DEMs (``benchmarks/terrain_stack/packaged.json``, its one-image choice; a
#: test holds this to it). The stack network takes one image as one date of one pass.
ONE_IMAGE_NETWORK = "stack"


def terrain_network(kind: str) -> Path | None:
    """The packaged refinement network of ``kind`` (:data:`TERRAIN_NETWORKS`), or None
    where it does not ship."""
    name = TERRAIN_NETWORKS.get(kind)
    if name is None:
        raise InvalidInputError(f"no packaged network of kind {kind!r}: the kinds are {', '.join(TERRAIN_NETWORKS)}")
    return FOLDER / name if name in FILES and (FOLDER / name).is_file() else None


def packaged_terrain_network(images: int) -> tuple[str, Path]:
    """The packaged refinement network for what a user gives: the stack network for
    several images (dates, or both passes) where it ships; for one image, the kind of
    :data:`ONE_IMAGE_NETWORK` where it ships; else the one-image network. Returns its kind
    and path."""
    wanted = "stack" if images > 1 else ONE_IMAGE_NETWORK
    found = terrain_network(wanted)
    if found is not None:
        return wanted, found
    return "one_image", terrain_demo_checkpoint()


def buildings_demo_checkpoint() -> Path:
    """The packaged MBHR-Net checkpoint of the demo's building step (exported with
    ``sarheight buildings export``: weights, channels, statistics; encoders of one
    residual stage, trained by ``sarheight/configs/buildings_demo.yaml`` on synthetic cities)."""
    return path("buildings_mbhr_demo.ckpt")
