"""Text equals data: the terrain studies' figures in benchmarks/README.md and
docs/terrain_refinement.md are the ones their JSON hold (written by
benchmarks/terrain_docs.py), and every target line says met or missed as the figures
say."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sarheight.studies.refinement_report import GENERATED_BEGIN, generated_text, results_section, target_lines

ROOT = Path(__file__).resolve().parents[2]
RESULTS = "benchmarks/terrain_refinement/refinement.json"
WRITER = "benchmarks/terrain_docs.py"


@pytest.fixture(scope="module")
def results():
    return json.loads((ROOT / RESULTS).read_text())


@pytest.mark.parametrize("document", ["benchmarks/README.md", "docs/terrain_refinement.md"])
def test_the_documents_show_the_studys_figures(results, document):
    text = (ROOT / document).read_text()
    assert GENERATED_BEGIN.format(source=RESULTS, writer=WRITER) in text, f"{document} has no generated part"
    assert generated_text(ROOT / document, source=RESULTS, writer=WRITER) == results_section(results), (
        f"{document} differs from {RESULTS}: run python {WRITER}")


def test_every_target_is_judged_by_its_figures(results):
    lines = target_lines(results)
    assert lines and all(("met" in line) or ("missed" in line) for line in lines)
    for entry in results["summary"]:
        sar = entry["methods"].get("sar")
        if sar is None or entry["coarse_factor"] not in (3, 5):
            continue
        goal = {3: 10.0, 5: 20.0}[entry["coarse_factor"]]
        where = f"{entry['condition'].removeprefix('ground: ')}, {entry['coarse_factor']}x: SAR network"
        line = next(line for line in lines if line.startswith(where))
        assert ("missed" in line.split(";")[0]) == (sar["vs_best"]["mean"] < goal)


def test_the_study_judges_the_sar_against_the_best_non_learned_method_of_each_dem(results):
    for row in results["rows"]:
        best = row["best_non_learned"]
        assert row["methods"][best]["mean"]["overall"] == min(
            row["methods"][m]["mean"]["overall"] for m in results["labels"] if row["methods"][m]["runs"] == 0
            and m != "priors_only")


INVERSION_RESULTS = "benchmarks/terrain_inversion/inversion.json"
INVERSION_SPEED = "benchmarks/terrain_inversion/speed.json"


@pytest.mark.parametrize("document", ["benchmarks/README.md", "docs/terrain_refinement.md"])
def test_the_documents_show_the_inversion_studys_figures(document):
    from sarheight.studies import inversion

    results = json.loads((ROOT / INVERSION_RESULTS).read_text())
    speed = json.loads((ROOT / INVERSION_SPEED).read_text()) if (ROOT / INVERSION_SPEED).exists() else None
    assert generated_text(ROOT / document, source=INVERSION_RESULTS, writer=WRITER) == inversion.results_section(
        results, speed), f"{document} differs from {INVERSION_RESULTS}: run python {WRITER}"


def test_the_inversions_speed_is_judged_by_its_figure():
    """The speed line says met, or missed by the factor the measured time gives."""
    from sarheight.studies import inversion

    results = json.loads((ROOT / INVERSION_RESULTS).read_text())
    speed = json.loads((ROOT / INVERSION_SPEED).read_text())
    for seconds, verdict in ((speed["target_seconds"] * 0.5, "(target <= 60 s): met"),
                             (speed["target_seconds"] * 6.44, "(target <= 60 s): missed by 6.4x")):
        timed = {**speed, "best_seconds": {**speed["best_seconds"], "inversion": seconds}}
        assert verdict in inversion.results_section(results, timed)


def test_the_inversions_defaults_are_the_settings_its_study_chose():
    from dataclasses import asdict

    from sarheight.terrain.inversion import InversionSettings

    chosen = json.loads((ROOT / "benchmarks/terrain_inversion/settings.json").read_text())["settings"]
    assert asdict(InversionSettings()) == chosen
    results = json.loads((ROOT / INVERSION_RESULTS).read_text())
    assert results["settings"] == chosen and set(results["validation_dems"]).isdisjoint(results["held_out_dems"])


ABLATION_RESULTS = "benchmarks/terrain_ablation/ablation.json"


def test_the_readme_shows_the_ablations_figures():
    from sarheight.studies import ablation

    results = json.loads((ROOT / ABLATION_RESULTS).read_text())
    text = ablation.results_section(results)
    assert generated_text(ROOT / "benchmarks/README.md", source=ABLATION_RESULTS, writer=WRITER) == text, (
        f"benchmarks/README.md differs from {ABLATION_RESULTS}: run python {WRITER}")
    # One row per method, one column per prior pattern and coarse factor, every cell filled.
    rows = [line for line in text.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert len(rows) == 4 + len(next(iter(results["cells"].values()))["experiments"])
    assert all(line.count("|") == len(results["cells"]) + 2 and "–" not in line for line in rows)


STACK_RESULTS = "benchmarks/terrain_stack/stacking.json"


@pytest.fixture(scope="module")
def stack_results():
    return json.loads((ROOT / STACK_RESULTS).read_text())


@pytest.mark.parametrize("document", ["benchmarks/README.md", "docs/terrain_refinement.md"])
def test_the_documents_show_the_stack_studys_figures(stack_results, document):
    from sarheight.studies import stacking

    assert generated_text(ROOT / document, source=STACK_RESULTS, writer=WRITER) == stacking.results_section(
        stack_results), f"{document} differs from {STACK_RESULTS}: run python {WRITER}"


def test_the_stack_studys_targets_are_judged_by_its_figures(stack_results):
    from sarheight.studies import stacking

    # Recomputed from the summary, the targets are the ones the JSON holds.
    assert stacking.target_lines(stack_results["summary"]) == stack_results["targets"]
    for row in stack_results["summary"]:
        for key, target in stacking.TARGETS.get(row["condition"], {}).items():
            goal = target[row["factor"]] if isinstance(target, dict) else target
            line = next(line for line in stack_results["targets"]
                        if line.startswith(f"{row['condition']}, {row['factor']}x: the network")
                        and f"(target >= {goal:g} %)" in line and (key != "inversion" or "the inversion" in line))
            assert ("missed" in line) == (row[key]["mean"] < goal)
    # The held-out DEMs were never trained, calibrated or chosen on.
    splits = stack_results["splits"]
    assert set(splits["held_out_dems"]).isdisjoint(splits["train_dems"] + splits["calibration_dems"]
                                                   + splits["validation_dems"])


def test_more_images_are_never_worse_for_the_inversion_on_the_held_out_scenes():
    """Every held-out DEM and factor: the inversion of the stack (both passes x 10 dates)
    is not worse than that of its one-image scene (the same DEM, product, ground and
    priors) beyond the study's tolerance; the rows are the ones its records give, and the
    target line counts every method's worse pairs (the methods that read the image only
    through the registration can be: the registration of one image of a land cover
    misses, see docs/terrain_refinement.md)."""
    from sarheight.studies import inversion

    results = json.loads((ROOT / INVERSION_RESULTS).read_text())
    rows = results["more_images"]
    assert rows == inversion.more_images(results["held_out"])
    assert {row["dem"] for row in rows} == set(results["held_out_dems"])
    assert {row["method"] for row in rows} == {*inversion.NON_LEARNED, "inversion"}
    worse = [f"{row['dem']} {row['condition']} {row['factor']}x {row['method']}: {row['change_pct']:+.1f} %"
             for row in rows if row["worse"]]
    assert not [row for row in rows if row["worse"] and row["method"] == "inversion"], worse
    line = next(line for line in results["targets"] if line.startswith("more images never worse"))
    assert line.startswith(f"more images never worse: {len(worse)} of {len(rows)} ")
    # The second polarisation: the same image with its band, paired on every held-out DEM.
    second = results["second_polarisation"]
    assert second == inversion.more_images(results["held_out"], inversion.SECOND_POLARISATION)
    assert {(row["dem"], row["factor"]) for row in second if row["method"] == "inversion"} == {
        (dem, factor) for dem in results["held_out_dems"] for factor in results["factors"]}


def test_refine_dems_defaults_are_the_methods_best_on_the_validation_dems():
    from sarheight.refinement import DEFAULT_METHODS
    from sarheight.studies.stacking import default_methods

    packaged = json.loads((ROOT / "benchmarks/terrain_stack/packaged.json").read_text())
    assert DEFAULT_METHODS == default_methods(packaged), (
        "sarheight.refinement.DEFAULT_METHODS differs from the validation figures of "
        "benchmarks/terrain_stack/packaged.json")


def test_one_dual_polarisation_images_default_is_the_best_on_the_validation_dems():
    from sarheight.studies.inversion import NON_LEARNED
    from sarheight.terrain.method_table import BY_KEY, DUAL_POLARISATION_METHOD

    bars = json.loads((ROOT / INVERSION_RESULTS).read_text())["fair_bars"]
    means = bars["cover_dual"]["validation_mean_relative_rmse"]
    best = min((*NON_LEARNED, "inversion"), key=means.get)
    assert BY_KEY[best].command == DUAL_POLARISATION_METHOD, (best, means)


def test_the_packaged_network_for_one_image_is_the_one_chosen_on_the_validation_dems():
    from sarheight import sample_data

    packaged = json.loads((ROOT / "benchmarks/terrain_stack/packaged.json").read_text())
    chosen = packaged["one_image"]["conditions"]["one_image"]["chosen"]
    kind = "stack" if chosen.startswith("stack network") else "one_image"
    assert sample_data.ONE_IMAGE_NETWORK == kind, (
        f"the one-image choice of benchmarks/terrain_stack/packaged.json is {chosen!r}: "
        "sarheight.sample_data.ONE_IMAGE_NETWORK should say so")


def test_the_stack_networks_own_share_is_the_one_its_calibrations_hold(stack_results):
    from sarheight.training.calibration import network_share

    shares = [network_share(training["calibration"]) for training in stack_results["trainings"]["network"]]
    text = " ".join((ROOT / "docs/terrain_refinement.md").read_text().split())
    assert (f"kept the network's own correction in {100 * shares[0]:.1f} % and {100 * shares[1]:.1f} % of the "
            "validation cells") in text
