"""The study of the network on top of the physics: the stack network
(``sarheight/configs/terrain_stack.yaml``: every image, every non-learned map, a choice per
terrain class) against every refinement without learning, the inversion among them, on
DEMs it never saw, under each held-out condition.

Scenes (``examples/build_terrain_scenes.py --task stack``): training and calibration
scenes in one folder; the validation DEMs and the held-out DEMs under each condition in
``<root>/<condition>/`` folders (one image; one pass x 10 dates; both passes x 1 and x 10
dates on a ground of laws of a form training never saw; the plain ground). Every scene
holds the inversion of its images and its coarse DEM's error taken apart.

Per seed, the stack network and its control (the same backbone without any image,
``terrain_stack_noimage.yaml``) are trained and calibrated on the calibration scenes. On
every held-out scene every method is scored on the same cells. The bars:

- the oracle: per row (a DEM, condition, factor and prior kind), the best method without
  learning, chosen with the truth;
- the fair bar: per condition, the one method without learning (the inversion among
  them) of the lowest mean RMSE relative to back-projection with the kriged priors over
  the validation DEMs' scenes of that condition, chosen without the held-out truth; its
  validation scores are kept.

The figures per condition and factor: each reduction of the RMSE per held-out DEM (the
mean over its prior kinds), their mean over the DEMs and their least, mean and spread
over the seeds; a paired test over the DEMs (the network against the fair bar: the
exact sign-flip test of the mean difference, and Student's paired t); the SAR's share
(the network against its control) and the control against the fair bar; the network
against the fair bar with each kind of prior alone; the share of
cells within one and two calibrated standard deviations per DEM; and where the error
goes (:func:`error_by_source`). Results resume: a training or a scored scene is not made
again.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..data.terrain import scene_files, scene_header
from ..errors import InvalidInputError
from ..plots import save_figure
from ..scores import rms
from ..terrain.files import open_scene
from ..terrain.method_table import REFINEMENT_METHODS
from ..terrain.methods import NON_LEARNED, baseline_maps
from ..terrain.simulated import ERROR_SOURCE_VARIABLES
from ..terrain.variables import refinement_classes
from .refinement import PredictionCache
from .refinement_methods import Network, score_map, scoring_mask
from .refinement_report import TARGETS as REFINEMENT_TARGETS
from .runs import configured_training, paired_test, read_sealed_json, reduction, seeded_runs, write_json

logger = logging.getLogger(__name__)

#: The held-out conditions, in the order the tables give them (the folders' names).
CONDITIONS = ("one_image", "one_pass_10_dates", "both_passes", "both_passes_10_dates", "plain")

#: The conditions as the figure's axes name them.
CONDITION_LABELS = {"one_image": "one image", "one_pass_10_dates": "1 pass x 10", "both_passes": "2 passes",
                    "both_passes_10_dates": "2 passes x 10", "plain": "plain ground"}

#: The methods without learning: the baselines, and the inversion (the scenes' ``inverted``).
METHODS = (*NON_LEARNED, "inversion")

#: The method every relative figure is against, and the fair bar's is chosen by.
REFERENCE = "back_projection_priors"

#: The sources :func:`error_by_source` attributes an error to, then what none explains.
SOURCES = (*ERROR_SOURCE_VARIABLES, "unexplained")

#: The issue's targets (reductions, %), per condition and factor where they differ.
TARGETS = {
    "one_image": {"fair": 10.0, "inversion": 3.0},
    "both_passes_10_dates": {"reference": {3: 30.0, 5: 35.0}, "inversion": 5.0},
}

#: The calibrated spread's coverage, per DEM under every condition: the share (%) of cells
#: within one and two ``height_std`` of the truth, its target and tolerance (points).
COVERAGE = {key: REFINEMENT_TARGETS[key] for key in ("within_1std", "within_2std")}


def condition_index(root: str | os.PathLike[str], conditions: Sequence[str] = CONDITIONS, *,
                    require_inversion: bool = True) -> list[dict[str, Any]]:
    """The scenes of ``root/<condition>/`` for each condition present, from their headers:
    path, name, DEM, condition, coarse factor and prior kind.

    Raises
    ------
    MissingInputError, InvalidInputError : no condition folder, or a scene without its
        truth or (with ``require_inversion``) its inversion.
    """
    found = []
    root = Path(root)
    present = [condition for condition in conditions if (root / condition).is_dir()]
    if not present:
        raise InvalidInputError(f"{str(root)!r} holds no folder of a condition ({', '.join(conditions)}): build "
                                "them with examples/build_terrain_scenes.py --task stack")
    for condition in present:
        for path in scene_files(root / condition, f"the {condition} scenes"):
            header = scene_header(path)
            required = ("height", "inverted") if require_inversion else ("height",)
            missing = [name for name in required if name not in header.variables]
            if missing:
                raise InvalidInputError(f"scene {header.name!r} lacks {missing}: the study scores against the truth "
                                        "and the inversion (build the scenes with --task stack)")
            found.append({"path": Path(path), "scene": header.name, "dem": header.area, "condition": condition,
                          "factor": round(float(header.attrs.get("coarse_factor", 0))),
                          "prior_kind": str(header.attrs.get("prior_kind", "exact"))})
    return found


def scene_terrain(name: str, pass_direction: str) -> str:
    """The terrain a scene sees: its DEM as turned, mirrored or scaled
    (``boulder_indian_peaks_srtm3-r1m``), its name up to its pass."""
    return name.split(f"_{pass_direction}_")[0]


def method_maps(scene: xr.Dataset) -> dict[str, np.ndarray]:
    """The heights of every method without learning (:data:`METHODS`) on a scene."""
    maps = {name: values for name, values in baseline_maps(scene).items() if name in NON_LEARNED}
    maps["inversion"] = scene["inverted"].values
    return maps


def error_by_source(error: np.ndarray, scene: xr.Dataset, mask: np.ndarray) -> dict[str, float]:
    """Where a map's error comes from: the error (m) on the scored cells regressed, by
    least squares, on the parts of the coarse DEM's error the scene keeps
    (:data:`sarheight.terrain.simulated.ERROR_SOURCE_VARIABLES`: the relief its cells lose, its
    shift, correlated, slope, bias and rounding errors; the bias with a constant), and
    per part the RMS (m) of its fitted share; ``unexplained`` the RMS of what is left
    (speckle, the method's own error). Empty for a scene without those parts."""
    names = [name for name, variable in ERROR_SOURCE_VARIABLES.items() if variable in scene.data_vars]
    if len(names) != len(ERROR_SOURCE_VARIABLES):
        return {}
    counted = mask & np.isfinite(error)
    columns = []
    for name in names:
        values = scene[ERROR_SOURCE_VARIABLES[name]].values.astype(np.float64)
        counted &= np.isfinite(values)
        columns.append(values)
    if counted.sum() < 2 * len(names):
        return {}
    design = np.stack([np.ones(int(counted.sum())) if name == "bias" else values[counted]
                       for name, values in zip(names, columns, strict=True)], axis=1)
    target = error[counted].astype(np.float64)
    coefficients, *_ = np.linalg.lstsq(design, target, rcond=None)
    found = {name: rms(coefficients[index] * design[:, index]) for index, name in enumerate(names)}
    found["unexplained"] = rms(target - design @ coefficients)
    return found


def method_scores(scene: xr.Dataset, mask: np.ndarray, classes: np.ndarray) -> dict[str, dict[str, float]]:
    """The scores (:func:`score_map`) of every method without learning on a scene."""
    return {method: score_map(heights, scene, mask, classes) for method, heights in method_maps(scene).items()}


def mean_relative_rmse(records: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, float]:
    """Per name, the mean over ``records`` (each with its ``scores``) of its overall RMSE
    relative to :data:`REFERENCE`'s."""
    return {name: float(np.mean([record["scores"][name]["overall"] / record["scores"][REFERENCE]["overall"]
                                 for record in records])) for name in names}


def fair_bars(validation: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per condition, the method without learning of the lowest mean RMSE relative to
    back-projection with the kriged priors over the validation scenes of that condition,
    with every method's mean (``validation``: by scene, its condition and its scores)."""
    bars = {}
    for condition in CONDITIONS:
        records = [record for record in validation.values() if record["condition"] == condition]
        if not records:
            continue
        means = mean_relative_rmse(records, METHODS)
        bars[condition] = {"method": min(METHODS, key=lambda method: means[method]),
                           "validation_mean_relative_rmse": means, "validation_scenes": len(records)}
    return bars


def _rmse(row: dict[str, Any], method: str | None) -> float:
    """A held-out row's overall RMSE of ``method`` (None: the oracle, the best method
    without learning there)."""
    if method is None:
        return min(float(row["scores"][name]["overall"]) for name in METHODS)
    return float(row["scores"][method]["overall"])


def _per_dem(rows: list[dict[str, Any]], methods: Sequence[str]) -> dict[str, float]:
    """Per DEM, the mean RMSE over its rows (its prior kinds) of the mean map of
    ``methods`` (several: the seeds of a network, their RMSEs averaged)."""
    found: dict[str, list[float]] = {}
    for row in rows:
        found.setdefault(row["dem"], []).append(float(np.mean([_rmse(row, method) for method in methods])))
    return {dem: float(np.mean(values)) for dem, values in sorted(found.items())}


def _per_dem_reduction(rows: list[dict[str, Any]], ours: str, theirs: str | None) -> dict[str, float]:
    """Per DEM, the mean over its rows of the reduction (%) of ``ours`` against ``theirs``."""
    found: dict[str, list[float]] = {}
    for row in rows:
        found.setdefault(row["dem"], []).append(reduction(_rmse(row, ours), _rmse(row, theirs)))
    return {dem: float(np.mean(values)) for dem, values in sorted(found.items())}


def summarise(index: list[dict[str, Any]], held_out: dict[str, dict[str, Any]], bars: dict[str, dict[str, Any]],
              seeds: int) -> list[dict[str, Any]]:
    """The figures per condition and factor (see the module's docstring), from each held-out
    scene's record."""
    rows = []
    networks = [f"network_seed{seed}" for seed in range(seeds)]
    controls = [f"control_seed{seed}" for seed in range(seeds)]
    for condition, factor in itertools.product(CONDITIONS, sorted({entry["factor"] for entry in index})):
        chosen = [{**entry, **held_out[entry["scene"]]} for entry in index
                  if entry["condition"] == condition and entry["factor"] == factor]
        if not chosen or condition not in bars:
            continue
        bar = bars[condition]["method"]
        found: dict[str, Any] = {"condition": condition, "factor": factor, "fair_bar": bar, "scenes": len(chosen),
                                 "dems": sorted({row["dem"] for row in chosen})}
        for key, theirs in (("fair", bar), ("oracle", None), ("reference", REFERENCE), ("inversion", "inversion"),
                            ("sar_share", "control"), ("control_fair", bar)):
            per_seed = [_per_dem_reduction(chosen, control if key == "control_fair" else network,
                                           control if theirs == "control" else theirs)
                        for network, control in zip(networks, controls, strict=True)]
            means = [float(np.mean(list(dems.values()))) for dems in per_seed]
            least = [float(np.min(list(dems.values()))) for dems in per_seed]
            found[key] = {"mean": float(np.mean(means)), "spread": float(np.std(means, ddof=1)) if seeds > 1 else 0.0,
                          "least_dem": float(np.mean(least)),
                          "per_dem": {dem: float(np.mean([dems[dem] for dems in per_seed])) for dem in per_seed[0]}}
        # Each prior kind alone (its tracks' headings drawn per scene): the network against the fair bar.
        found["fair_by_prior_kind"] = {
            kind: float(np.mean([np.mean(list(_per_dem_reduction(
                [row for row in chosen if row["prior_kind"] == kind], network, bar).values()))
                for network in networks]))
            for kind in sorted({row["prior_kind"] for row in chosen})}
        found["rmse_m"] = {"network": _per_dem(chosen, networks), "control": _per_dem(chosen, controls),
                           "fair_bar": _per_dem(chosen, [bar]), "inversion": _per_dem(chosen, ["inversion"]),
                           "reference": _per_dem(chosen, [REFERENCE])}
        # The network (its seeds' mean RMSE) against the fair bar, DEM by DEM.
        found["paired_test_fair"] = paired_test(list(found["rmse_m"]["network"].values()),
                                                list(found["rmse_m"]["fair_bar"].values()))
        found["within_std"] = {
            dem: {"within_1std": float(np.mean([w[0] for w in values])),
                  "within_2std": float(np.mean([w[1] for w in values]))}
            for dem, values in _group_within(chosen, seeds).items()}
        # Each scene keeps the decomposition of the bar it was scored under, by the bar's name.
        parts = {"fair_bar": bar, "inversion": "inversion", "network": "network"}
        found["error_sources_m"] = {
            method: {source: rms([row["error_sources"][parts[method]][source] for row in chosen
                                  if row["error_sources"].get(parts[method])]) for source in SOURCES}
            for method in parts if any(row["error_sources"].get(parts[method])
                                                                      for row in chosen)}
        rows.append(found)
    return rows


def _group_within(rows: list[dict[str, Any]], seeds: int) -> dict[str, list[tuple[float, float]]]:
    found: dict[str, list[tuple[float, float]]] = {}
    for row in rows:
        for seed in range(seeds):
            scores = row["scores"][f"network_seed{seed}"]
            if scores.get("std_cells"):
                found.setdefault(row["dem"], []).append((scores["within_1std"] / scores["std_cells"],
                                                         scores["within_2std"] / scores["std_cells"]))
    return found


def target_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, each measured (from the summary rows)."""
    lines = []
    for row in rows:
        condition, factor = row["condition"], row["factor"]
        targets = TARGETS.get(condition)
        if not targets:
            continue
        for key, target in targets.items():
            value = target[factor] if isinstance(target, dict) else target
            figure = row[key]["mean"]
            against = {"fair": f"the fair bar ({row['fair_bar']})", "inversion": "the inversion",
                       "reference": "back-projection + kriged priors"}[key]
            verdict = "met" if figure >= value else f"missed by {value - figure:.1f} points"
            lines.append(f"{condition}, {factor}x: the network {figure:+.1f} ± {row[key]['spread']:.1f} % against "
                         f"{against} (target >= {value:g} %): {verdict}; least DEM {row[key]['least_dem']:+.1f} %")
        if row["fair"]["least_dem"] <= 0:
            lines.append(f"{condition}, {factor}x: not every DEM below the fair bar (least "
                         f"{row['fair']['least_dem']:+.1f}"
                         " %)")
    for row in rows:
        if not row["within_std"]:
            continue
        parts, outside = [], []
        for key, (target, tolerance) in COVERAGE.items():
            shares = {dem: 100.0 * values[key] for dem, values in row["within_std"].items()}
            parts.append(f"{min(shares.values()):.0f}-{max(shares.values()):.0f} % within {key[7]} std "
                         f"(target {target:.0f} ± {tolerance:.0f})")
            outside += [f"{dem} {share:.0f} % within {key[7]}" for dem, share in shares.items()
                        if abs(share - target) > tolerance]
        verdict = "met" if not outside else "missed (" + ", ".join(outside) + ")"
        lines.append(f"{row['condition']}, {row['factor']}x: coverage per DEM {', '.join(parts)}: {verdict}")
    return lines


def results_section(results: dict[str, Any]) -> str:
    """The study's figures as Markdown (the table of :func:`write_table` and the generated
    part of the documents): the splits by name, the fair bars with their validation
    scores, the reductions, the paired tests, where the error goes and the targets, every
    number read from ``results``."""
    splits = results["splits"]
    seconds = {name: [run["train_seconds"] for run in runs if run.get("train_seconds")]
               for name, runs in results["trainings"].items()}
    lines = [f"Training DEMs: {', '.join(splits['train_dems'])} (as {len(splits['train_terrain'])} terrains, "
             f"turned, mirrored and scaled); calibration of the networks: {', '.join(splits['calibration_dems'])}; "
             f"fair bars chosen on: {', '.join(splits['validation_dems'])}; held out (never trained, calibrated or "
             f"chosen on): {', '.join(splits['held_out_dems'])}, {len(results['held_out'])} scenes. "
             f"{results['seeds']} seeds of each network; "
             + "; ".join(f"a {name} training took {min(values) / 60:.1f}-{max(values) / 60:.1f} min"
                         for name, values in seconds.items() if values)
             + f". {results['note'][:1].upper()}{results['note'][1:]}.", "",
             "Fair bars (the method of the lowest mean RMSE relative to back-projection + kriged priors on the "
             "validation scenes of the condition): " + "; ".join(
                 f"{condition}: {bar['method']} ({bar['validation_mean_relative_rmse'][bar['method']]:.3f}, "
                 f"{bar['validation_scenes']} scenes)" for condition, bar in results["fair_bars"].items()) + ".", "",
             "Reductions of the RMSE (%) by the network, mean over the held-out DEMs ± spread over seeds, [least "
             "DEM]; positive: the network below.", "",
             "| condition | factor | fair bar | vs fair bar | vs oracle | vs inversion | vs back-projection + kriged "
             "| SAR's share | control vs fair bar | paired p (sign flip / t) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in results["summary"]:
        cells = [f"{row[key]['mean']:+.1f} ± {row[key]['spread']:.1f} [{row[key]['least_dem']:+.1f}]"
                 for key in ("fair", "oracle", "inversion", "reference", "sar_share", "control_fair")]
        test = row["paired_test_fair"]
        lines.append(f"| {row['condition']} | {row['factor']}x | {row['fair_bar']} | " + " | ".join(cells)
                     + f" | {test['sign_flip_p']:.3f} / {test['t_p']:.3f} |")
    kinds = sorted({kind for row in results["summary"] for kind in row.get("fair_by_prior_kind", {})})
    if kinds:
        lines += ["", "The network against the fair bar with each kind of prior alone (%, mean over the held-out DEMs "
                  "whose scenes drew it and the seeds; the tracks' headings drawn per scene):", "",
                  "| condition | factor | " + " | ".join(kinds) + " |", "|---|---|" + "---|" * len(kinds)]
        for row in results["summary"]:
            by_kind = row.get("fair_by_prior_kind", {})
            lines.append(f"| {row['condition']} | {row['factor']}x | "
                         + " | ".join(f"{by_kind[kind]:+.1f}" if kind in by_kind else "-" for kind in kinds) + " |")
    lines += ["", "Where the error goes (RMS, m, over the scenes of each row): the parts of the coarse DEM's error "
              "each map's error regresses on, and what none explains.", "",
              "| condition | factor | map | " + " | ".join(SOURCES) + " |", "|---|---|---|" + "---|" * len(SOURCES)]
    for row in results["summary"]:
        for method, parts in row["error_sources_m"].items():
            lines.append(f"| {row['condition']} | {row['factor']}x | {method} | "
                         + " | ".join(f"{parts[source]:.2f}" for source in SOURCES) + " |")
    lines += ["", "The targets, measured:", "", *[f"- {line}" for line in results["targets"]]]
    return "\n".join(lines)


def write_table(results: dict[str, Any], path: str | Path) -> Path:
    """The study's tables as Markdown (:func:`results_section` under a title)."""
    Path(path).write_text(f"# The network on top of the physics\n\n{results_section(results)}\n")
    return Path(path)


def plot_study(results: dict[str, Any], path: str | Path) -> Path:
    """Per condition and factor, the network's reduction against the fair bar, the
    inversion and its control, per held-out DEM."""
    import matplotlib.pyplot as plt

    rows = results["summary"]
    figure, axes = plt.subplots(1, 3, figsize=(15, 5), sharey=True)
    labels = [f"{CONDITION_LABELS.get(row['condition'], row['condition'])}\n{row['factor']}x" for row in rows]
    for axis, key, title in zip(axes, ("fair", "inversion", "sar_share"),
                                ("against the fair bar", "against the inversion", "against its control (SAR's share)"),
                                strict=True):
        for index, row in enumerate(rows):
            values = list(row[key]["per_dem"].values())
            axis.scatter([index] * len(values), values, color="0.5", s=12)
            axis.errorbar(index, row[key]["mean"], yerr=row[key]["spread"], fmt="o", color="C0")
        axis.axhline(0.0, color="k", linewidth=0.8)
        axis.set_xticks(range(len(rows)), labels, rotation=90, fontsize=7)
        axis.set_title(title)
    axes[0].set_ylabel("RMSE reduction (%): dots per DEM, mean ± spread over seeds")
    figure.suptitle("The stack network on the held-out DEMs (positive: below)")
    figure.tight_layout()
    return save_figure(figure, path)


def _scored_scenes(index: list[dict[str, Any]], path: Path, record: Any, description: str,
                   progress: bool, current: Any = None) -> dict[str, dict[str, Any]]:
    """``record(entry, scene, mask, classes)`` of every scene of ``index``, by scene name,
    kept in ``path`` (sealed) after each: those found there are not made again, unless
    ``current(entry, found)`` says a record is out of date."""
    from ..threads import bar as progress_bar

    found = read_sealed_json(path) or {}
    for entry in progress_bar(index, desc=description, unit="scene", enabled=progress):
        if entry["scene"] in found and (current is None or current(entry, found[entry["scene"]])):
            continue
        scene = open_scene(entry["path"])
        found[entry["scene"]] = record(entry, scene, scoring_mask(scene), refinement_classes(scene))
        write_json(found, path, sealed=True)
    return found


def _trained_elsewhere(checkpoint: Path, train_files: list[Path], calibration_dems: Sequence[str]) -> dict[str, Any]:
    """The record of a checkpoint trained elsewhere: its calibration (made on the
    calibration scenes among ``train_files`` where it has none), no time here."""
    from ..training.calibration import calibrate_checkpoint
    from ..training.trained import load_checkpoint

    calibration = load_checkpoint(checkpoint, kind="height").calibration
    if calibration is None:
        files = _calibration_files(train_files, calibration_dems)
        calibration = calibrate_checkpoint(checkpoint, files) if files else None
    return {"checkpoint": str(checkpoint), "calibration": calibration, "train_seconds": None,
            "trained_elsewhere": True}


def _calibration_files(train_files: list[Path], val_dems: Sequence[str]) -> list[Path]:
    return [path for path in train_files if scene_header(path).area in val_dems]


def packaging_choice(candidates: dict[str, str | os.PathLike[str]], validation_root: str | os.PathLike[str],
                     conditions: Sequence[str], *, progress: bool = True) -> dict[str, Any]:
    """Which network to ship for what a user gives, chosen on the validation DEMs: per
    condition, each candidate checkpoint's mean RMSE relative to back-projection with the
    kriged priors (:data:`REFERENCE`) over the validation scenes of that condition, the
    fair bar's beside, and the candidate of the lowest (``chosen``). The held-out DEMs are
    not read.

    Raises
    ------
    InvalidInputError : no candidate, or a condition without validation scenes.
    """
    from ..threads import bar as progress_bar
    from ..training.trained import load_checkpoint

    if not candidates:
        raise InvalidInputError("packaging_choice needs at least one candidate checkpoint")
    index = condition_index(validation_root, conditions)
    absent = sorted(set(conditions) - {entry["condition"] for entry in index})
    if absent:
        raise InvalidInputError(f"no validation scenes of {absent} in {str(validation_root)!r}: build them with "
                                "examples/build_terrain_scenes.py --task stack --sets validation")
    caches = {}
    for name, path in candidates.items():
        model = load_checkpoint(path, kind="height")
        caches[name] = PredictionCache(Network(name, name, tuple(model.channels), model.reference, model.scale),
                                       Path(path))
    records: dict[str, list[dict[str, Any]]] = {condition: [] for condition in conditions}
    for entry in progress_bar(index, desc="packaging choice", unit="scene", enabled=progress):
        scene = open_scene(entry["path"])
        mask, classes = scoring_mask(scene), refinement_classes(scene)
        scores = method_scores(scene, mask, classes)
        for name, cache in caches.items():
            scores[name] = score_map(cache.predict(scene)[0], scene, mask, classes)
        records[entry["condition"]].append({"scores": scores})
    choice = {}
    for condition, found in records.items():
        means = mean_relative_rmse(found, [*METHODS, *candidates])
        choice[condition] = {"scenes": len(found), "mean_relative_rmse": means,
                             "fair_bar": min(METHODS, key=means.get),
                             "chosen": min(candidates, key=means.get)}
    return {"validation_dems": sorted({entry["dem"] for entry in index}),
            "candidates": {name: str(path) for name, path in candidates.items()}, "conditions": choice}


#: The conditions of the study by what a user gives (:data:`sarheight.terrain.method_table.INPUT_KINDS`).
KIND_CONDITIONS = {"one_image": ("one_image",), "one_pass_dates": ("one_pass_10_dates",),
                   "both_passes": ("both_passes", "both_passes_10_dates")}

#: The study's non-learned methods that :func:`sarheight.refinement.refine_dem`
#: offers, by its names.
REFINEMENT_METHOD_NAMES = {method.key: method.command for method in REFINEMENT_METHODS
                           if method.command and not method.learned}


def default_methods(packaged: dict[str, Any]) -> dict[str, str]:
    """The method :func:`~sarheight.refinement.refine_dem` should take where none is
    named, by what it is given, from the validation figures of the networks that ship
    (``packaged.json`` of ``examples/package_terrain_networks.py``): the network shipped
    for that kind where its mean RMSE is :data:`~sarheight.refinement.NETWORK_MARGIN`
    below the inversion's in every condition of the kind, else the method of
    :data:`REFINEMENT_METHOD_NAMES` of the lowest mean over those conditions.

    Raises
    ------
    InvalidInputError : figures lacking a condition or a method.
    """
    from ..refinement import NETWORK_MARGIN

    found = {}
    for kind, conditions in KIND_CONDITIONS.items():
        group = packaged["one_image" if kind == "one_image" else "stack"]
        network = group["conditions"]["one_image"]["chosen"] if kind == "one_image" else group["chosen"]
        try:
            means = [group["conditions"][condition]["mean_relative_rmse"] for condition in conditions]
            if all(figures[network] <= (1.0 - NETWORK_MARGIN) * figures["inversion"] for figures in means):
                found[kind] = "network"
                continue
            best = min(REFINEMENT_METHOD_NAMES, key=lambda name: float(np.mean([figures[name] for figures in means])))
        except KeyError as missing:
            raise InvalidInputError(f"the packaged networks' figures lack {missing} for {kind}: run "
                                    "examples/package_terrain_networks.py again") from None
        found[kind] = REFINEMENT_METHOD_NAMES[best]
    return found


def run_stack_study(
    train_scenes: str | os.PathLike[str],
    validation_root: str | os.PathLike[str],
    test_root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    config: str | os.PathLike[str] = "terrain_stack",
    control: str | os.PathLike[str] = "terrain_stack_noimage",
    seeds: int = 2,
    control_scenes: tuple[str | os.PathLike[str], str | os.PathLike[str]] | None = None,
    trained: dict[str, Sequence[str | os.PathLike[str]]] | None = None,
    max_epochs: int | None = None,
    max_time: str | None = None,
    accelerator: str = "auto",
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Run the study and write ``stacking.json``, ``stacking.md`` and ``stacking.png`` in
    ``out`` (runs in ``out/runs``, scores in ``out/scores``: a rerun resumes).

    Parameters
    ----------
    train_scenes : the training and calibration scenes (the configuration's
        ``val_scenes`` name the calibration DEMs among them).
    validation_root, test_root : folders of ``<condition>/`` scene folders: the validation
        DEMs' (the fair bars are chosen there) and the held-out DEMs'.
    out : the study's folder.
    config, control : the stack network's configuration and its control's.
    seeds : trainings of each (mean ± spread over them).
    control_scenes : ``(train, test_root)``: the control's own training scenes and held-out
        ``<condition>/`` folders, twins of the others made without any image (the same
        names, so the same draws, with ``register=False``: no product moved by the image's
        registration; ``build_terrain_scenes.py --task stack`` writes them to
        ``train_noimage/`` and ``test_noimage/``). Every method is then scored on the cells
        both twins score. None: the control on the stack network's scenes (its reference
        registered to the image where the image could tell the shift).
    trained : by ``"network"`` and ``"control"``, checkpoints trained elsewhere (on a GPU:
        ``sarheight fit --config terrain_stack_gpu``), one per seed, scored instead of
        trained here (calibrated on the calibration scenes where they are not yet).
    max_epochs, max_time, accelerator : override the configurations' budget and device.
    progress : show progress.
    command : the command that ran the study, kept in the JSON.

    Raises
    ------
    InvalidInputError : a held-out or validation DEM among the training scenes, seeds
        below 1, scenes without their truth or inversion; before any training.
    """
    from ..threads import bar as progress_bar
    from ..training.configured import configured_run

    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InvalidInputError(f"seeds must be a positive integer, got {seeds!r}")
    given = {name: [Path(path) for path in paths] for name, paths in (trained or {}).items()}
    wrong = sorted(set(given) - {"network", "control"}) + [f"{name} ({len(paths)} checkpoints for {seeds} seeds)"
                                                           for name, paths in given.items() if len(paths) != seeds]
    missing = [str(path) for paths in given.values() for path in paths if not path.is_file()]
    if wrong or missing:
        raise InvalidInputError(f"trained checkpoints: {', '.join(wrong + missing)}: give network and control, one "
                                "existing checkpoint per seed")
    out = Path(out)
    train_files = scene_files(train_scenes, "the training scenes")
    validation_index = condition_index(validation_root)
    test_index = condition_index(test_root)
    headers = [scene_header(path) for path in train_files]
    train_areas = sorted({header.area for header in headers})
    held_out_dems = sorted({entry["dem"] for entry in test_index})
    validation_dems = sorted({entry["dem"] for entry in validation_index})
    overlap = sorted(set(held_out_dems) & (set(train_areas) | set(validation_dems)))
    if overlap:
        raise InvalidInputError(f"the DEMs {overlap} are held out and also trained or validated on: hold out "
                                "whole DEMs, or areas of them that training never reads under names of their own")
    option = ["--data.scenes", "[" + ", ".join(str(path) for path in train_files) + "]"]
    options = {"network": option, "control": option}
    scene_lists = {"network": train_files, "control": train_files}
    twins: dict[str, Path] = {}
    if control_scenes is not None:
        control_files = scene_files(control_scenes[0], "the control's training scenes")
        options["control"] = ["--data.scenes", "[" + ", ".join(str(path) for path in control_files) + "]"]
        scene_lists["control"] = control_files
        twins = {entry["scene"]: entry["path"] for entry in condition_index(control_scenes[1], require_inversion=False)}
        unmatched = sorted({entry["scene"] for entry in test_index} - set(twins))
        if unmatched:
            raise InvalidInputError(f"{len(unmatched)} held-out scenes have no twin among the control's "
                                    f"({unmatched[:3]}...): build both sets with build_terrain_scenes.py --task stack")
    parsed = {name: configured_run(source, options[name]) for name, source in (("network", config),
                                                                                ("control", control))}
    calibration_dems = list(parsed["network"].init_args["data"].get("val_scenes") or [])
    transforms = sorted({scene_terrain(header.name, str(header.attrs.get("pass_direction")))
                         for header in headers if header.area not in calibration_dems})
    splits = {"train_dems": [area for area in train_areas if area not in calibration_dems],
              "train_terrain": transforms, "calibration_dems": calibration_dems,
              "validation_dems": validation_dems, "held_out_dems": held_out_dems}
    out.mkdir(parents=True, exist_ok=True)
    write_json(splits, out / "splits.json")

    # 1. The trainings, each calibrated on the calibration scenes.
    checkpoints: dict[str, list[Path]] = {}
    records: dict[str, list[dict[str, Any]]] = {}
    bar = progress_bar(total=2 * seeds, desc="stack study: trainings", unit="training", enabled=progress)
    for name, source in (("network", config), ("control", control)):
        def train(seed: int, run_dir: Path, source: Any = source, name: str = name) -> dict[str, Any]:
            return configured_training(source, [*options[name], "--seed_everything", str(seed)], run_dir,
                                       calibration_files=_calibration_files(scene_lists[name], calibration_dems),
                                       max_epochs=max_epochs, max_time=max_time, accelerator=accelerator,
                                       progress=progress, description=f"{name} seed {seed}")

        if name in given:
            records[name] = [_trained_elsewhere(path, scene_lists[name], calibration_dems) for path in given[name]]
            checkpoints[name] = given[name]
            bar.update(seeds)
            continue
        records[name] = seeded_runs(out / "runs" / name, seeds, train, bar.update)
        checkpoints[name] = [out / "runs" / name / f"seed{seed}" / "last.ckpt" for seed in range(seeds)]
    bar.close()
    networks = {f"{name}_seed{seed}": PredictionCache(
        Network(name, name, tuple(parsed[name].datamodule.channels), parsed[name].datamodule.reference,
                parsed[name].datamodule.scale), path)
        for name in checkpoints for seed, path in enumerate(checkpoints[name])}

    # 2. The methods without learning on the validation DEMs: the fair bar of each condition.
    (out / "scores").mkdir(exist_ok=True)

    def validation_record(entry: dict[str, Any], scene: xr.Dataset, mask: np.ndarray,
                          classes: np.ndarray) -> dict[str, Any]:
        return {"condition": entry["condition"], "dem": entry["dem"], "scores": method_scores(scene, mask, classes)}

    validation = _scored_scenes(validation_index, out / "scores" / "validation.json", validation_record,
                                "stack study: validation", progress)
    bars = fair_bars(validation)

    # 3. Every method and network on the held-out scenes.
    def held_out_record(entry: dict[str, Any], scene: xr.Dataset, mask: np.ndarray,
                        classes: np.ndarray) -> dict[str, Any]:
        truth = scene["height"].values.astype(np.float64)
        twin = open_scene(twins[entry["scene"]]) if twins else scene
        if twins:
            # The cells both twins score (their products' edges differ by the shifts applied).
            mask = mask & scoring_mask(twin)
        maps = method_maps(scene)
        scores = {method: score_map(heights, scene, mask, classes) for method, heights in maps.items()}
        network_maps = {}
        for key, cache in networks.items():
            heights, std, filled = cache.predict(twin if key.startswith("control") else scene)
            scores[key] = {**score_map(heights, scene, mask, classes, std), "filled_cells": filled}
            network_maps[key] = heights
        bar_method = bars.get(entry["condition"], {}).get("method", REFERENCE)
        mean_network = np.mean([network_maps[f"network_seed{seed}"] for seed in range(seeds)], axis=0)
        sources = {bar_method: error_by_source(maps[bar_method] - truth, scene, mask),
                   "inversion": error_by_source(maps["inversion"] - truth, scene, mask),
                   "network": error_by_source(mean_network - truth, scene, mask)}
        return {"scores": scores, "error_sources": sources}

    # A record scored under another fair bar (the validation scenes changed) is scored again.
    held_out = _scored_scenes(test_index, out / "scores" / "held_out.json", held_out_record,
                              "stack study: held-out scenes", progress,
                              current=lambda entry, found: bars.get(entry["condition"], {}).get("method", REFERENCE)
                              in found["error_sources"])

    summary = summarise(test_index, held_out, bars, seeds)
    results = {
        "splits": splits, "conditions": sorted({entry["condition"] for entry in test_index}, key=CONDITIONS.index),
        "fair_bars": bars, "validation": validation, "held_out": held_out, "summary": summary,
        "trainings": {name: [{"train_seconds": record.get("train_seconds"), "calibration": record.get("calibration"),
                              "trained_elsewhere": bool(record.get("trained_elsewhere"))}
                             for record in runs] for name, runs in records.items()},
        "configs": {"network": str(config), "control": str(control)}, "seeds": seeds,
        "control_without_image": control_scenes is not None,
        "budget": {"max_epochs": max_epochs, "max_time": max_time, "accelerator": accelerator},
        "note": "simulated SAR: the figures are an upper bound of what real data give",
        "command": command or f"run_stack_study({str(train_scenes)!r}, {str(validation_root)!r}, "
                              f"{str(test_root)!r}, {str(out)!r})",
    }
    results["targets"] = target_lines(summary)
    write_json(results, out / "stacking.json")
    write_table(results, out / "stacking.md")
    plot_study(results, out / "stacking.png")
    return results
