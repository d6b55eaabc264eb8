"""Run the inversion study (:mod:`sarheight.studies.inversion`) on the reference DEMs.

    python examples/inversion_study.py --data ../shared/data --out benchmarks/terrain_inversion

Validation DEMs (the settings and the fair bars are chosen on them): South Glacier and
Jacksboro; held out: the first eight of the other reference DEMs in alphabetical order
(the inversion learns nothing, so none is trained on; eight DEMs at two coarse factors
let a paired test reach p < 0.01; the other four, `--held-out` to add them, would cost
another hour on two cores). Writes ``inversion.json``, ``inversion.md`` and ``inversion.png``
into ``--out``; a rerun resumes from its ``cases/``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from build_terrain_scenes import DEMS, VALIDATION_DEMS, fail, open_dems

from sarheight.studies.inversion import CROP_CELLS, run_inversion_study

#: Held-out DEMs by default: the first of the others in alphabetical order.
HELD_OUT_COUNT = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data", help="the reference data folder (dem/, geoid/)")
    parser.add_argument("--out", default="benchmarks/terrain_inversion", help="the study's folder")
    parser.add_argument("--crop", type=int, default=CROP_CELLS, help=f"cells a side of each DEM's crop ({CROP_CELLS})")
    parser.add_argument("--factors", type=int, nargs="+", default=[3, 5], help="coarse factors (3 5)")
    parser.add_argument("--held-out", nargs="+", default=None,
                        help="held-out DEMs (default: the first eight others by name)")
    args = parser.parse_args()
    data = Path(args.data)
    if not (data / "dem").is_dir() or not (data / "geoid" / "egm96_15.gtx").is_file():
        fail(f"--data {args.data}: give the reference data folder (with dem/ and geoid/egm96_15.gtx)")
    held_out = tuple(sorted(name for name in DEMS if name not in VALIDATION_DEMS))[:HELD_OUT_COUNT]
    if args.held_out:
        held_out = tuple(args.held_out)
    dems, sea = open_dems(data, VALIDATION_DEMS + held_out)
    named = {dem.attrs["dem_name"]: (dem, sea.get(dem.attrs["dem_name"])) for dem in dems}
    started = time.perf_counter()
    results = run_inversion_study(named, [n for n in VALIDATION_DEMS if n in named],
                                  [n for n in held_out if n in named], args.out, factors=args.factors,
                                  crop_cells=args.crop, progress=True)
    for line in results["targets"]:
        print(line)
    print(f"wrote {args.out}/inversion.json, .md and .png in {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
