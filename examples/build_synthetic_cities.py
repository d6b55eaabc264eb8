"""Build a few synthetic cities for the building-height model.

Each city is a street grid with rows of low-rise buildings, towers, courtyard buildings
and parks on a gentle terrain, imaged for twelve months as Sentinel-1 (VV, VH sigma0 in
dB, with layover, shadow, a double-bounce line and speckle) and Sentinel-2 (ten bands as
L2A digital numbers, with sun shadows, seasonal vegetation and clouds)::

    python examples/build_synthetic_cities.py --out cities/ --count 4 --size 128

writes ``cities/city_000/`` ... with ``s1_YYYYMM.tif``, ``s2_YYYYMM.tif``,
``scl_YYYYMM.tif`` and ``height.tif`` on one 10 m grid (see ``sarheight.city``); the same
as ``sarheight buildings cities``. Hold out whole cities, never tiles of one, when
splitting them for training. The cities alternate between ascending and descending passes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import rasterio

from sarheight.city import write_cities


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the city folders")
    parser.add_argument("--count", type=int, default=4, help="number of cities")
    parser.add_argument("--size", type=int, default=128, help="cities' side in 10 m cells")
    parser.add_argument("--cloud-fraction", type=float, default=0.1, help="share of each month under cloud")
    args = parser.parse_args()
    for folder in write_cities(args.out, count=args.count, size=args.size, cloud_fraction=args.cloud_fraction):
        with rasterio.open(folder / "height.tif") as dataset:
            height = dataset.read(1)
        print(f"{folder}: {int((height > 0).sum())} building cells, tallest {float(height.max()):.0f} m")


if __name__ == "__main__":
    main()
