"""Build a terrain-height training set from real DEMs.

Simulates, for every DEM, an ascending and a descending Sentinel-1-like pass (each scene
file also holds the other pass), with a DEM 3x coarser for the reconstruction, random and
altimeter-track priors and two seeds, into one NetCDF file per scene::

    python examples/build_terrain_scenes.py --data ../shared/data --out scenes/

The DEMs are the real ones of the shared reference data (SRTM, Copernicus and OGGM
rasters; their heights are on EGM96 and brought to the ellipsoid with its geoid grid) and
matplotlib's Jacksboro fault DEM. Which scenes train and which are held out is the data
module's choice (``data.test_scenes`` in the training configuration, by DEM name):
hold out whole DEMs, never tiles of one area. Augment with more geometries
(``--look-side left``, ``--heading-offset``), not by flipping images: a flip changes the
look direction, and with it which slopes are in layover.

The same, from the command line, for one DEM::

    sarheight terrain scenes --dem dem.tif --vertical-datum egm96 --geoid-grid egm96_15.gtx \\
        --prior-pattern random --prior-pattern tracks --seeds 2 --out scenes/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sarheight.dem import open_dem
from sarheight.sample_data import jacksboro_dem
from sarheight.terrain import simulate_scenes

#: The DEMs of ../shared/data/dem and the datum of their heights.
DEMS = {
    "bigtujunga_srtm30_utm11.tif": "egm96",
    "chhota_shigri_94m.tif": "egm96",
    "columbia_100m.tif": "egm96",
    "eastern_turkey_srtm3.tif": "egm96",
    "rome_cop30_egm96.tif": None,  # its compound CRS says EGM96
    "south_glacier_20m.tif": "egm96",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data", help="the reference data folder (dem/, geoid/)")
    parser.add_argument("--out", default="scenes", help="folder of the scene files")
    parser.add_argument("--seeds", type=int, default=2, help="scenes per geometry and pattern")
    parser.add_argument("--coarse-factor", type=int, action="append", default=None,
                        help="coarse DEM factors (default 3; repeat for several)")
    parser.add_argument("--prior-pattern", action="append", default=None,
                        help="prior patterns (default random and tracks)")
    parser.add_argument("--prior-fraction", type=float, default=1e-3, help="share of cells with a known height")
    parser.add_argument("--look-side", action="append", default=None, help="look sides (default right)")
    args = parser.parse_args()

    data = Path(args.data)
    geoid = data / "geoid" / "egm96_15.gtx"
    dems = []
    for name, datum in DEMS.items():
        path = data / "dem" / name
        if not path.exists():
            print(f"skipping {path}: absent")
            continue
        dem = open_dem(path, vertical_datum=datum, geoid_grid=geoid)
        dem.attrs["dem_name"] = path.stem
        dems.append(dem)
    jacksboro = jacksboro_dem()
    jacksboro.attrs["dem_name"] = "jacksboro"
    dems.append(jacksboro)
    paths = simulate_scenes(
        dems, args.out,
        coarse_factors=tuple(args.coarse_factor or (3,)),
        prior_patterns=tuple(args.prior_pattern or ("random", "tracks")),
        seeds=tuple(range(args.seeds)),
        look_sides=tuple(args.look_side or ("right",)),
        prior_fraction=args.prior_fraction,
    )
    print(f"{len(paths)} scenes in {args.out}")


if __name__ == "__main__":
    main()
