"""Build a few synthetic cities for the building-height model.

Each city is a street grid with rows of low-rise buildings, towers, courtyard buildings
and parks on a gentle terrain, imaged for twelve months as Sentinel-1 (VV, VH sigma0 in
dB, with layover, shadow, a double-bounce line and speckle) and Sentinel-2 (ten bands as
L2A digital numbers, with sun shadows, seasonal vegetation and clouds)::

    python examples/build_synthetic_cities.py --out cities/ --count 4 --size 128

writes ``cities/city_000/`` ... with ``s1_YYYYMM.tif``, ``s2_YYYYMM.tif``,
``scl_YYYYMM.tif`` and ``height.tif`` on one 10 m grid (see ``sarheight.city``).
Hold out whole cities, never tiles of one, when splitting them for training. The
cities alternate between ascending and descending passes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from sarheight.city import city_layout, simulate_city, write_city


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder of the city folders")
    parser.add_argument("--count", type=int, default=4, help="number of cities")
    parser.add_argument("--size", type=int, default=128, help="cities' side in 10 m cells")
    parser.add_argument("--cloud-fraction", type=float, default=0.1, help="share of each month under cloud")
    args = parser.parse_args()
    for index in range(args.count):
        layout = city_layout((args.size, args.size), seed=index)
        city = simulate_city(layout, pass_direction="ascending" if index % 2 == 0 else "descending",
                             cloud_fraction=args.cloud_fraction, seed=index)
        folder = args.out / f"city_{index:03d}"
        write_city(city, folder)
        print(f"{folder}: {int((city['height'] > 0).sum())} building cells, "
              f"tallest {float(city['height'].max()):.0f} m")


if __name__ == "__main__":
    main()
