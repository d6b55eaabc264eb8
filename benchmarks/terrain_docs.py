"""Write the terrain studies' figures (refinement, inversion, ablation, stack network) into the documentation from
their JSON.

    python benchmarks/terrain_docs.py [--results benchmarks/terrain_refinement/refinement.json]

benchmarks/README.md and docs/terrain_refinement.md hold the figures between markers
(``sarheight.studies.refinement_report.GENERATED_BEGIN`` / ``GENERATED_END``); this script
rewrites those parts from the JSON ``sarheight terrain study``, the inversion study and
``sarheight terrain ablate`` and ``examples/stack_study.py`` wrote, and tests/studies/test_terrain_docs.py fails when
the
text and the JSON differ.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sarheight.studies import ablation, inversion, stacking
from sarheight.studies.refinement_report import results_section, write_generated

ROOT = Path(__file__).resolve().parents[1]
RESULTS = "benchmarks/terrain_refinement/refinement.json"
INVERSION_RESULTS = "benchmarks/terrain_inversion/inversion.json"
INVERSION_SPEED = "benchmarks/terrain_inversion/speed.json"
ABLATION_RESULTS = "benchmarks/terrain_ablation/ablation.json"
STACK_RESULTS = "benchmarks/terrain_stack/stacking.json"
WRITER = "benchmarks/terrain_docs.py"
DOCUMENTS = ("benchmarks/README.md", "docs/terrain_refinement.md")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(ROOT / RESULTS), help=f"the study's JSON (default {RESULTS})")
    args = parser.parse_args()
    text = results_section(json.loads(Path(args.results).read_text()))
    for document in DOCUMENTS:
        write_generated(ROOT / document, text, source=RESULTS, writer=WRITER)
        print(f"wrote the figures of {RESULTS} into {document}")
    results = json.loads((ROOT / INVERSION_RESULTS).read_text())
    # The speed of the settings the study chose, where it was measured since.
    speed = json.loads((ROOT / INVERSION_SPEED).read_text()) if (ROOT / INVERSION_SPEED).exists() else None
    inversion.write_table(results, ROOT / INVERSION_RESULTS.replace(".json", ".md"), speed)
    for document in DOCUMENTS:
        write_generated(ROOT / document, inversion.results_section(results, speed), source=INVERSION_RESULTS,
                        writer=WRITER)
        print(f"wrote the figures of {INVERSION_RESULTS} into {document}")
    text = ablation.results_section(json.loads((ROOT / ABLATION_RESULTS).read_text()))
    write_generated(ROOT / "benchmarks/README.md", text, source=ABLATION_RESULTS, writer=WRITER)
    print(f"wrote the figures of {ABLATION_RESULTS} into benchmarks/README.md")
    results = json.loads((ROOT / STACK_RESULTS).read_text())
    stacking.write_table(results, ROOT / STACK_RESULTS.replace(".json", ".md"))
    for document in DOCUMENTS:
        write_generated(ROOT / document, stacking.results_section(results), source=STACK_RESULTS, writer=WRITER)
        print(f"wrote the figures of {STACK_RESULTS} into {document}")


if __name__ == "__main__":
    main()
