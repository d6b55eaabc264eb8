"""Choose the refinement networks sarheight ships, on the validation DEMs, and export the
stack network chosen (weights in float16) for the package.

    python examples/stack_study.py --scenes stack_scenes --out benchmarks/terrain_stack
    python examples/package_terrain_networks.py --scenes stack_scenes --study benchmarks/terrain_stack

For several images (one pass x 10 dates, both passes x 1 and x 10 dates), the candidates
are the seeds of the study's stack network; for one image, the packaged one-image network
(``terrain_refine_demo.ckpt``) and the stack network chosen. Each is scored on the
validation scenes of those conditions (:func:`sarheight.studies.stacking.packaging_choice`:
the mean RMSE relative to back-projection with the kriged priors; the held-out DEMs are
not read). The stack seed of the lowest mean over the conditions of several images is
exported (``--out``, default
``terrain_stack_demo.ckpt``: sarheight writes nothing among its own files, so copy it to
``sarheight/sample_data/`` to ship it); the choice is written to ``<study>/packaged.json``, with the method
:func:`sarheight.refinement.refine_dem` should take by default for each kind of
input (:func:`sarheight.studies.stacking.default_methods`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sarheight.errors import SarHeightError
from sarheight.paths import check_outputs
from sarheight.sample_data import TERRAIN_NETWORKS, terrain_demo_checkpoint
from sarheight.studies.runs import write_json
from sarheight.studies.stacking import default_methods, packaging_choice
from sarheight.training.checkpoints import export_checkpoint

#: The conditions of several images, the stack network's.
STACK_CONDITIONS = ("one_pass_10_dates", "both_passes", "both_passes_10_dates")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenes", default="stack_scenes", help="the stack scenes (their validation/ folder)")
    parser.add_argument("--study", default="benchmarks/terrain_stack", help="the stack study's folder")
    parser.add_argument("--seeds", type=int, default=2, help="the study's seeds (2)")
    parser.add_argument("--out", default=TERRAIN_NETWORKS["stack"],
                        help=f"where the chosen stack network is exported (default {TERRAIN_NETWORKS['stack']})")
    args = parser.parse_args()
    study = Path(args.study)
    seeds = {f"stack network seed {seed}": study / "runs" / "network" / f"seed{seed}" / "last.ckpt"
             for seed in range(args.seeds)}
    try:
        check_outputs([(args.out, "--out"), (study / "packaged.json", "the choice")])
        stack = packaging_choice(seeds, Path(args.scenes) / "validation", STACK_CONDITIONS)
        means = {name: float(np.mean([stack["conditions"][condition]["mean_relative_rmse"][name]
                                      for condition in STACK_CONDITIONS])) for name in seeds}
        chosen = min(means, key=means.get)
        # One image: the one-image network against the stack network chosen (two files ship).
        one_image = packaging_choice({"one-image network (packaged)": terrain_demo_checkpoint(),
                                      chosen: seeds[chosen]}, Path(args.scenes) / "validation", ("one_image",))
    except SarHeightError as error:
        print(f"package_terrain_networks: error: {error}", file=sys.stderr)
        return 2
    written = export_checkpoint(seeds[chosen], args.out, half=True)
    # The checkpoints by where they live: the package's by name, the study's within it.
    shown = {str(terrain_demo_checkpoint()): f"sarheight/sample_data/{terrain_demo_checkpoint().name}",
             **{str(path): str(path.relative_to(study)) for path in seeds.values()}}
    for found in (one_image, stack):
        found["candidates"] = {name: shown[path] for name, path in found["candidates"].items()}
    choice = {"one_image": one_image, "stack": {**stack, "mean_over_conditions": means, "chosen": chosen,
                                                "exported": f"sarheight/sample_data/{written.name}"}}
    # What refine_dem should take where no method is named (sarheight.refinement.DEFAULT_METHODS).
    choice["defaults"] = default_methods(choice)
    write_json(choice, study / "packaged.json")
    for condition, found in {**one_image["conditions"], **stack["conditions"]}.items():
        print(f"{condition} ({found['scenes']} validation scenes), RMSE relative to back-projection + kriged priors: "
              + ", ".join(f"{name} {value:.3f}" for name, value in found["mean_relative_rmse"].items())
              + f"; chosen: {found['chosen']}")
    print(f"stack network: {chosen} (mean {means[chosen]:.3f} over {', '.join(STACK_CONDITIONS)}), exported to "
          f"{written}; wrote {study / 'packaged.json'}")
    print("refine_dem's defaults (sarheight.refinement.DEFAULT_METHODS): "
          + ", ".join(f"{kind} {method}" for kind, method in choice["defaults"].items()))
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
