"""Run the study of the network on top of the physics (:mod:`sarheight.studies.stacking`) on
the scenes of ``build_terrain_scenes.py --task stack``.

    python examples/build_terrain_scenes.py --task stack --data ../shared/data --out stack_scenes
    python examples/stack_study.py --scenes stack_scenes --out benchmarks/terrain_stack

The stack network (``terrain_stack``) and its control without any image
(``terrain_stack_noimage``, on the image-free twins of the scenes, ``train_noimage/`` and
``test_noimage/``) are trained (``--seeds`` each) and calibrated on the validation DEMs of
their training scenes; the fair bar of each condition is chosen on
``stack_scenes/validation``; every method is scored on ``stack_scenes/test``. Writes
``stacking.json``, ``stacking.md``, ``stacking.png`` and ``splits.json`` into ``--out``; a
rerun resumes. ``--config terrain_stack_gpu`` trains the GPU configuration (and its control
``terrain_stack_noimage_gpu``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from sarheight.errors import SarHeightError
from sarheight.studies.stacking import run_stack_study


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", default="stack_scenes", help="the folder of train/, validation/ and test/")
    parser.add_argument("--out", default="benchmarks/terrain_stack", help="the study's folder")
    parser.add_argument("--config", default="terrain_stack", help="the stack network's configuration")
    parser.add_argument("--control", default=None,
                        help="its control's configuration (default the one of the same size: terrain_stack_noimage, "
                        "or terrain_stack_noimage_gpu with --config terrain_stack_gpu)")
    parser.add_argument("--seeds", type=int, default=2, help="trainings of each network (2)")
    parser.add_argument("--accelerator", default="auto", help="Lightning's accelerator (auto: a GPU if there is one)")
    parser.add_argument("--trained-network", action="append", default=None, metavar="CKPT",
                        help="a stack network trained elsewhere (a GPU: sarheight fit --config terrain_stack_gpu), one "
                        "per seed, scored instead of trained here; with --trained-control")
    parser.add_argument("--trained-control", action="append", default=None, metavar="CKPT",
                        help="its control trained elsewhere, one per seed")
    args = parser.parse_args()
    scenes = Path(args.scenes)
    control = args.control or ("terrain_stack_noimage_gpu" if args.config == "terrain_stack_gpu"
                               else "terrain_stack_noimage")
    started = time.perf_counter()
    try:
        twins = (scenes / "train_noimage", scenes / "test_noimage")
        results = run_stack_study(scenes / "train", scenes / "validation", scenes / "test", args.out,
                                  config=args.config, control=control, seeds=args.seeds,
                                  control_scenes=twins if all(path.is_dir() for path in twins) else None,
                                  trained={name: paths for name, paths in (("network", args.trained_network),
                                                                           ("control", args.trained_control)) if paths}
                                  or None,
                                  accelerator=args.accelerator, command=" ".join(["python", *sys.argv]))
    except SarHeightError as error:
        print(f"stack_study: error: {error}", file=sys.stderr)
        return 2
    for line in results["targets"]:
        print(line)
    print(f"wrote {args.out}/stacking.json, .md and .png in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
