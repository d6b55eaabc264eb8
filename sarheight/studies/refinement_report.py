"""The terrain refinement study's report: its results summarised over seeds (mean, spread,
per-DEM minimum, against the fair bar and the oracle), the table, the figure, and the
generated section of docs/terrain_refinement.md with the targets, every figure from the
study's JSON.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..plots import save_figure
from ..scores import pooled_rms
from ..terrain.classes import REFINEMENT_CLASSES
from ..terrain.methods import BASELINES, NON_LEARNED
from .refinement_methods import COLUMNS, Network
from .runs import mean_std, reduction


def prior_report(index: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per kind of prior among the held-out scenes: how many scenes, and the root mean
    square error of their priors against the truth (m: mean, least, most)."""
    kinds: dict[str, list[float]] = {}
    for entry in index:
        kinds.setdefault(entry["prior_kind"], []).append(entry["prior_error_rms_m"])
    return {kind: {"scenes": len(values), "error_rms_m": float(np.mean(values)), "least_m": float(np.min(values)),
                   "most_m": float(np.max(values))} for kind, values in sorted(kinds.items())}


def _pooled(scores: dict[str, Any], scenes: list[str]) -> dict[str, float]:
    """The figures of several scenes' scores as if they were one map."""
    figures: dict[str, float] = {}
    for column in COLUMNS:
        counts = [scores[s][f"count_{column}"] for s in scenes]
        figures[column] = pooled_rms([scores[s][column] for s in scenes], counts)
        figures[f"count_{column}"] = sum(counts)
    cells = sum(scores[s].get("std_cells", 0) for s in scenes)
    if cells:
        figures["within_1std"] = 100.0 * sum(scores[s]["within_1std"] for s in scenes) / cells
        figures["within_2std"] = 100.0 * sum(scores[s]["within_2std"] for s in scenes) / cells
    return figures


def summarise(index: Sequence[dict[str, Any]], baseline_scores: dict[str, Any],
              run_scores: dict[tuple[str, int], dict[str, Any]], planned: Sequence[Network],
              seeds: int) -> dict[str, Any]:
    """The study's figures from the per-scene scores: per ground, looks, DEM and coarse
    factor, every method's RMSE overall and per class (networks: mean ± std over seeds,
    and the share of cells within one and two standard deviations), the best non-learned
    method overall and per class, and every method's reduction against them and against
    the no-SAR network; then :func:`summary` over the DEMs."""
    groups: dict[tuple[str, float, str, int], list[str]] = {}
    for entry in index:
        groups.setdefault((entry["condition"], entry["looks"], entry["dem"], entry["coarse_factor"]),
                          []).append(entry["scene"])
    rows = []
    for (condition, looks, dem, factor), scenes in sorted(groups.items()):
        row: dict[str, Any] = {"condition": condition, "looks": looks, "dem": dem, "coarse_factor": factor,
                               "scenes": scenes, "methods": {}}
        for method in BASELINES:
            figures = _pooled({s: baseline_scores[s][method] for s in scenes}, scenes)
            row["methods"][method] = {"mean": {column: figures[column] for column in COLUMNS},
                                      "std": dict.fromkeys(COLUMNS, 0.0), "runs": 0}
        for network in planned:
            runs = [_pooled(run_scores[(network.name, seed)], scenes) for seed in range(seeds)]
            coverage = [key for key in ("within_1std", "within_2std") if all(key in run for run in runs)]
            row["methods"][network.name] = {**mean_std(runs, COLUMNS), "runs": len(runs),
                                            **({"coverage": mean_std(runs, coverage)["mean"]} if coverage else {})}
        counted = _pooled({s: baseline_scores[s]["coarse_bilinear"] for s in scenes}, scenes)
        row["cells"] = {column: int(counted[f"count_{column}"]) for column in COLUMNS}
        means = {method: row["methods"][method]["mean"] for method in row["methods"]}
        best = min(NON_LEARNED, key=lambda m: means[m]["overall"])
        best_by_class = {column: min(NON_LEARNED, key=lambda m, c=column: _finite(means[m][c]))
                         for column in COLUMNS}
        row["best_non_learned"] = best
        row["best_non_learned_by_class"] = best_by_class
        reductions = {}
        for method, figures in means.items():
            reductions[method] = {
                "vs_best": reduction(figures["overall"], means[best]["overall"]),
                "vs_lanczos": reduction(figures["overall"], means["coarse_lanczos"]["overall"]),
                "by_class_vs_best": {column: reduction(figures[column], means[best_by_class[column]][column])
                                     for column in REFINEMENT_CLASSES},
                **({"vs_nosar": reduction(figures["overall"], means["nosar"]["overall"]),
                    "by_class_vs_nosar": {column: reduction(figures[column], means["nosar"][column])
                                          for column in REFINEMENT_CLASSES}}
                   if "nosar" in means else {}),
            }
        row["reductions"] = reductions
        rows.append(row)
    labels = {**BASELINES, **{network.name: network.label for network in planned}}
    return {"rows": rows, "labels": labels, "summary": summary(rows)}


def _finite(value: float) -> float:
    return value if math.isfinite(value) else math.inf


def _stats(values: Sequence[float]) -> dict[str, float]:
    finite = [value for value in values if math.isfinite(value)]
    if not finite:
        return {"mean": math.nan, "least": math.nan, "most": math.nan}
    return {"mean": float(np.mean(finite)), "least": float(np.min(finite)), "most": float(np.max(finite))}


def summary(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per ground, looks and coarse factor, over the held-out DEMs (each counts once):
    every method's reduction against the best non-learned method (mean, and the least and
    most of the DEMs), against Lanczos and the no-SAR network; the DEMs on which it is
    above the best non-learned method overall, and the DEM x class pairs in which it is
    above the best non-learned method of that class; the networks' coverage."""
    keyed: dict[tuple[str, float, int], list[dict[str, Any]]] = {}
    for row in rows:
        keyed.setdefault((row["condition"], row["looks"], row["coarse_factor"]), []).append(row)
    found = []
    for (condition, looks, factor), members in sorted(keyed.items()):
        entry: dict[str, Any] = {"condition": condition, "looks": looks, "coarse_factor": factor,
                                 "dems": [row["dem"] for row in members], "methods": {},
                                 "best_non_learned": {row["dem"]: row["best_non_learned"] for row in members}}
        for method in members[0]["reductions"]:
            values = [row["reductions"][method] for row in members]
            figures: dict[str, Any] = {
                "vs_best": _stats([v["vs_best"] for v in values]),
                "vs_lanczos": _stats([v["vs_lanczos"] for v in values]),
                "worse_than_best": [row["dem"] for row, v in zip(members, values, strict=True) if v["vs_best"] < 0],
                "worse_in_class": [f"{row['dem']} {column}" for row, v in zip(members, values, strict=True)
                                   for column, value in v["by_class_vs_best"].items() if value < 0],
                "by_class_vs_best": {column: _stats([v["by_class_vs_best"][column] for v in values])
                                     for column in REFINEMENT_CLASSES},
            }
            if "vs_nosar" in values[0]:
                figures["vs_nosar"] = _stats([v["vs_nosar"] for v in values])
                figures["by_class_vs_nosar"] = {column: _stats([v["by_class_vs_nosar"][column] for v in values])
                                                for column in REFINEMENT_CLASSES}
            coverage = [row["methods"][method].get("coverage") for row in members]
            if all(coverage):
                figures["coverage"] = {key: _stats([c[key] for c in coverage]) for key in coverage[0]}
                figures["coverage_by_dem"] = {row["dem"]: c for row, c in zip(members, coverage, strict=True)}
            entry["methods"][method] = figures
        found.append(entry)
    return found


def _text(mean: float, std: float | None = None) -> str:
    if not math.isfinite(mean):
        return "–"
    digits = 1 if abs(mean) >= 10 else 2
    return f"{mean:.{digits}f}" if not std else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _looks(looks: float) -> str:
    return "no speckle" if math.isinf(looks) else f"{looks:g} looks"


def _share(figures: dict[str, float]) -> str:
    if not math.isfinite(figures["mean"]):
        return "–"
    return f"{figures['mean']:+.1f} (min {figures['least']:+.1f})"


def write_table(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """The study as Markdown: the summary (reductions against the best non-learned method,
    averaged over the held-out DEMs with the least of them), then per ground and looks a
    table of every method's RMSE per DEM and factor, and the RMSE per terrain class."""
    labels = results["labels"]
    budget = results["budget"]
    lines = ["# Terrain refinement on held-out DEMs", "",
             f"Held-out DEMs (never trained or validated on): {', '.join(results['test_dems'])}; training DEMs: "
             f"{', '.join(results['train_dems'])}; validation (logged only, and the networks' calibration): "
             f"{', '.join(results['val_dems'])}.",
             f"Networks from `{results['config']}`, " + ", ".join(f"{k} {v}" for k, v in budget.items()) + ".",
             "RMSE in metres on the held-out scenes' cells (truth known, inside the image, shadow included); "
             "networks: mean ± std over seeds. The scenes' SAR is simulated: an upper bound of what real data give, "
             "even under laws and land cover the networks never saw.", "",
             "## Summary: reductions (%) against the best non-learned method of each DEM", "",
             "Mean over the held-out DEMs (the least of them in brackets); against the best of "
             f"{', '.join(labels[m] for m in NON_LEARNED)} per DEM and condition; the DEMs on which a method is above "
             "it; the SAR's share (SAR network against the no-SAR one); the share of cells within one and two "
             "standard deviations.", ""]
    methods = [m for m in labels if m not in BASELINES or m in ("back_projection_priors", "clinometry")]
    lines += ["| ground | looks | factor | " + " | ".join(labels[m] for m in methods) + " | SAR's share | "
              "within 1 / 2 std (SAR) |", "|---" * (len(methods) + 5) + "|"]
    for entry in results["summary"]:
        cells = []
        for method in methods:
            figures = entry["methods"].get(method)
            cells.append("–" if figures is None else f"{_share(figures['vs_best'])}"
                         + (f" [above on {len(figures['worse_than_best'])}]" if figures["worse_than_best"] else ""))
        sar = entry["methods"].get("sar", {})
        share = _share(sar["vs_nosar"]) if "vs_nosar" in sar else "–"
        coverage = sar.get("coverage")
        cover = (f"{coverage['within_1std']['mean']:.0f} / {coverage['within_2std']['mean']:.0f} %"
                 if coverage else "–")
        lines.append(f"| {entry['condition']} | {_looks(entry['looks'])} | {entry['coarse_factor']}x | "
                     + " | ".join(cells) + f" | {share} | {cover} |")
    lines.append("")
    lines += ["Classes in which a method is above the best non-learned method of that class (DEM class):", ""]
    for entry in results["summary"]:
        for method in [m for m in entry["methods"] if m not in BASELINES]:
            worse = entry["methods"][method]["worse_in_class"]
            lines.append(f"- {entry['condition']}, {_looks(entry['looks'])}, {entry['coarse_factor']}x, "
                         f"{labels[method]}: {', '.join(worse) if worse else 'none'}")
    lines.append("")
    keyed: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for row in results["rows"]:
        keyed.setdefault((row["condition"], row["looks"]), []).append(row)
    ordered = list(labels)
    for (condition, looks), rows in keyed.items():
        lines += [f"## {condition}, {_looks(looks)}: RMSE (m) overall", "",
                  "| DEM | factor | " + " | ".join(labels[m] for m in ordered) + " |",
                  "|---" * (len(ordered) + 2) + "|"]
        for row in rows:
            lines.append(f"| {row['dem']} | {row['coarse_factor']}x | " + " | ".join(
                _text(row["methods"][m]["mean"]["overall"], row["methods"][m]["std"]["overall"]) if m in row["methods"]
                else "–" for m in ordered) + " |")
        lines += ["", f"RMSE (m) per terrain class ({' / '.join(REFINEMENT_CLASSES)}), {condition}, "
                  f"{_looks(looks)}:", "",
                  "| DEM | factor | " + " | ".join(labels[m] for m in ordered) + " |",
                  "|---" * (len(ordered) + 2) + "|"]
        for row in rows:
            lines.append(f"| {row['dem']} | {row['coarse_factor']}x | " + " | ".join(
                " / ".join(_text(row["methods"][m]["mean"][c]) for c in REFINEMENT_CLASSES) if m in row["methods"]
                else "–" for m in ordered) + " |")
        lines.append("")
    if results.get("priors"):
        lines += ["Priors of the held-out scenes, by kind: " + "; ".join(
            f"{kind} {v['scenes']} scenes, error {v['error_rms_m']:.2f} m RMS ({v['least_m']:.2f}-{v['most_m']:.2f})"
            for kind, v in results["priors"].items()) + ".", ""]
    if any(results.get("filled_cells", {}).values()):
        lines.append("Cells a network left without a value, filled with its reference: " + ", ".join(
            f"{labels[m]} {count}" for m, count in results["filled_cells"].items() if count) + ".")
    path = Path(path)
    from ..io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def plot_refinement(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Per ground and looks, the reduction (%) of every method against the best
    non-learned method, averaged over the held-out DEMs (bars) with the least of them
    (ticks), per coarse factor; and the networks' coverage of one and two standard
    deviations per DEM."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    labels = results["labels"]
    panels: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for entry in results["summary"]:
        panels.setdefault((entry["condition"], entry["looks"]), []).append(entry)
    methods = [m for m in labels if m not in BASELINES or m in ("back_projection", "back_projection_priors",
                                                                   "clinometry")]
    methods = [m for m in methods if m != "priors_only_network"]
    keys = sorted(panels)
    fig, axes = plt.subplots(1, len(keys) + 1, figsize=(4.4 * (len(keys) + 1), 3.8), squeeze=False)
    width = 0.8 / max(len(methods), 1)
    for ax, key in zip(axes[0], keys, strict=False):
        entries = panels[key]
        factors = [entry["coarse_factor"] for entry in entries]
        x = np.arange(len(factors))
        for k, method in enumerate(methods):
            means = [entry["methods"].get(method, {}).get("vs_best", {}).get("mean", math.nan) for entry in entries]
            least = [entry["methods"].get(method, {}).get("vs_best", {}).get("least", math.nan) for entry in entries]
            position = x + (k - len(methods) / 2 + 0.5) * width
            ax.bar(position, means, width, label=labels[method])
            ax.plot(position, least, "k_", markersize=6)
        ax.axhline(0, color="k", linewidth=0.8)
        ax.set_xticks(x, [f"{f}x" for f in factors])
        ax.set_title(f"{key[0]}, {_looks(key[1])}", fontsize=9)
        ax.set_ylabel("RMSE reduction vs best non-learned (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="lower left")
    ax = axes[0, -1]
    coverage = [(f"{e['condition'].removeprefix('ground: ')} {e['coarse_factor']}x {dem}", c)
                for e in results["summary"]
                for dem, c in e["methods"].get("sar", {}).get("coverage_by_dem", {}).items()]
    if coverage:
        y = np.arange(len(coverage))
        ax.barh(y - 0.2, [c["within_1std"] for _, c in coverage], 0.4, label="within 1 std")
        ax.barh(y + 0.2, [c["within_2std"] for _, c in coverage], 0.4, label="within 2 std")
        for target in (68.27, 95.45):
            ax.axvline(target, color="k", linestyle="--", linewidth=0.8)
        ax.set_yticks(y, [label for label, _ in coverage], fontsize=6)
        ax.set_xlabel("cells (%)")
        ax.set_title("SAR network: calibration of height_std", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle("Terrain refinement on held-out DEMs: reduction against the best non-learned method "
                 "(ticks: the least DEM)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


#: The targets of the study (reductions in %, coverage in % of cells): the SAR network
#: against the best non-learned method, the SAR's share, and the calibration of its spread.
TARGETS = {"vs_best": {3: 10.0, 5: 20.0}, "share": {3: 5.0, 5: 15.0}, "within_1std": (68.27, 10.0),
           "within_2std": (95.45, 10.0)}


#: The markers around the parts of a Markdown file written from the study's JSON.
GENERATED_BEGIN = "<!-- generated from {source} by {writer}: edit the study, not this text -->"


GENERATED_END = "<!-- end of the generated text -->"


def _pct(figures: dict[str, float]) -> str:
    return "–" if not math.isfinite(figures["mean"]) else f"{figures['mean']:+.1f} ({figures['least']:+.1f})"


def _dem_label(dem: str) -> str:
    """A DEM's name as the tables show it: its file name up to the first underscore."""
    return dem.split("_")[0]


def _steps_text(results: dict[str, Any]) -> str:
    """How many of its planned steps each training took (a time budget stops one early on
    a slower machine); empty where the JSON does not say."""
    steps = [value for values in results.get("train_steps", {}).values() for value in values]
    budget = results.get("budget", {})
    if not steps or not budget.get("tiles_per_epoch") or not budget.get("batch_size"):
        return ""
    planned = int(budget["max_epochs"]) * (int(budget["tiles_per_epoch"]) // int(budget["batch_size"]))
    took = f"{min(steps)}" if min(steps) == max(steps) else f"{min(steps)}-{max(steps)}"
    return f" ({took} of its {planned} planned steps)"


def results_section(results: dict[str, Any]) -> str:
    """The study's figures as the Markdown the documentation shows (benchmarks/README.md,
    docs/terrain_refinement.md): every number in it read from ``results`` (the study's
    JSON, with the command that made it), so that text and data cannot drift apart."""
    command = str(results.get("command", ""))
    labels = results["labels"]
    seconds = [value for values in results.get("train_seconds", {}).values() for value in values
               if math.isfinite(value)]
    lines = [f"Held-out DEMs (never trained on, never validated on): "
             f"{', '.join(results['test_dems'])}; training DEMs: {', '.join(results['train_dems'])}; validation "
             f"and calibration: {', '.join(results['val_dems'])}. Networks: "
             + ", ".join(f"{labels[name]} ({len(runs)} seeds)" for name, runs in results["calibrations"].items())
             + (f"; a training took {min(seconds) / 60:.1f}-{max(seconds) / 60:.1f} min on this machine"
                if seconds else "") + _steps_text(results) + ".", "", "```bash", command, "```", "",
             "Reduction of the RMSE (%) against the best non-learned method of each DEM and ground (mean over the "
             "held-out DEMs, in brackets the least of them; positive: below it). The best non-learned method is "
             f"the best of {', '.join(labels[m] for m in NON_LEARNED)} on that DEM; the SAR's share is the SAR "
             "network against the no-SAR one.", "",
             "| ground | factor | best non-learned (per DEM) | clinometry | no-SAR network | SAR network | SAR's share "
             "|"
             " within 1 / 2 std (SAR, least-most DEM) |", "|---|---|---|---|---|---|---|---|"]
    for entry in results["summary"]:
        methods = entry["methods"]
        best = ", ".join(f"{_dem_label(dem)}: {labels[name]}" for dem, name in entry["best_non_learned"].items())
        sar = methods.get("sar", {})
        coverage = sar.get("coverage")
        cover = (f"{coverage['within_1std']['least']:.0f}-{coverage['within_1std']['most']:.0f} / "
                 f"{coverage['within_2std']['least']:.0f}-{coverage['within_2std']['most']:.0f} %" if coverage else "–")
        lines.append(f"| {entry['condition'].removeprefix('ground: ')} | {entry['coarse_factor']}x | {best} | "
                     f"{_pct(methods['clinometry']['vs_best'])} | "
                     f"{_pct(methods['nosar']['vs_best']) if 'nosar' in methods else '–'} | "
                     f"{_pct(sar['vs_best']) if sar else '–'} | "
                     f"{_pct(sar['vs_nosar']) if 'vs_nosar' in sar else '–'} | {cover} |")
    control = [reduction(row["methods"]["nosar"]["mean"]["overall"],
                         row["methods"]["back_projection_priors"]["mean"]["overall"])
               for row in results["rows"] if "nosar" in row["methods"]]
    if control:
        lines += ["", f"The no-SAR control moves off its reference ({labels['back_projection_priors']}): "
                  f"{min(control):+.1f} to {max(control):+.1f} % per held-out DEM, factor and ground, below it in "
                  f"{sum(value > 0 for value in control)} of {len(control)} rows, above it in "
                  f"{sum(value < 0 for value in control)}."]
    lines += ["", "The targets, measured (one date; realistic coarse DEMs and priors; grounds of land cover that "
              "follows the terrain):", ""]
    for line in target_lines(results):
        lines.append(f"- {line}")
    if results.get("priors"):
        lines += ["", "Priors of the held-out scenes: " + "; ".join(
            f"{kind}, {v['scenes']} scenes, {v['error_rms_m']:.2f} m RMS error ({v['least_m']:.2f}-{v['most_m']:.2f})"
            for kind, v in results["priors"].items()) + "."]
    return "\n".join(lines)


def target_lines(results: dict[str, Any]) -> list[str]:
    """One line per target of the study (:data:`TARGETS`): met or missed, and by how much,
    per ground and coarse factor, read from ``results``."""
    found = []
    for entry in results["summary"]:
        factor, ground = entry["coarse_factor"], entry["condition"].removeprefix("ground: ")
        methods = entry["methods"]
        sar, nosar = methods.get("sar"), methods.get("nosar")
        if sar is None:
            continue
        where = f"{ground}, {factor}x"
        goal = TARGETS["vs_best"].get(factor)
        if goal is not None:
            mean = sar["vs_best"]["mean"]
            verdict = "met" if mean >= goal else f"missed by {goal - mean:.1f} points"
            found.append(f"{where}: SAR network {mean:+.1f} % against the best non-learned method (target "
                         f">= {goal:.0f} %): {verdict}; least DEM {sar['vs_best']['least']:+.1f} %"
                         + (f", above it on {', '.join(_dem_label(d) for d in sar['worse_than_best'])}"
                            if sar["worse_than_best"] else ", below it on every DEM")
                         + (f"; above the best non-learned method of the class in {len(sar['worse_in_class'])} "
                            f"DEM x class pairs ({', '.join(sar['worse_in_class'])})" if sar["worse_in_class"]
                            else "; below it in every terrain class"))
        share_goal = TARGETS["share"].get(factor)
        if share_goal is not None and nosar is not None and "vs_nosar" in sar:
            share = sar["vs_nosar"]["mean"]
            control = not nosar["worse_than_best"]
            found.append(f"{where}: SAR's share {share:+.1f} % (least DEM {sar['vs_nosar']['least']:+.1f} %; target "
                         f">= {share_goal:.0f} %): {'met' if share >= share_goal else 'missed'}; the no-SAR network "
                         f"{nosar['vs_best']['mean']:+.1f} % against the best non-learned method, "
                         + ("below it on every DEM (a control)" if control else
                            f"above it on {', '.join(_dem_label(d) for d in nosar['worse_than_best'])} (not a control "
                            "there)"))
        coverage = sar.get("coverage")
        if coverage:
            parts = []
            for key, label in (("within_1std", "one"), ("within_2std", "two")):
                goal_value, tolerance = TARGETS[key]
                low, high = coverage[key]["least"], coverage[key]["most"]
                ok = goal_value - tolerance <= low and high <= goal_value + tolerance
                parts.append(f"{low:.0f}-{high:.0f} % of the cells within {label} height_std per DEM (target "
                             f"{goal_value:.0f} ± {tolerance:.0f}: {'met' if ok else 'missed'})")
            found.append(f"{where}: " + "; ".join(parts))
    seconds = [value for values in results.get("train_seconds", {}).values() for value in values
               if math.isfinite(value)]
    if seconds:
        most = max(seconds) / 60
        found.append(f"each training at most {most:.1f} min on two CPU cores (target <= 15): "
                     f"{'met' if most <= 15.5 else 'missed'}")
    return found


def write_generated(path: str | os.PathLike[str], text: str, *, source: str, writer: str) -> Path:
    """Replace the generated part of a Markdown file (between :data:`GENERATED_BEGIN` for
    ``source`` and ``writer`` and :data:`GENERATED_END`) by ``text``, atomically.

    Raises
    ------
    InvalidInputError : the file has no such markers.
    """
    from ..io import atomic_path

    path = Path(path)
    content = path.read_text()
    begin = GENERATED_BEGIN.format(source=source, writer=writer)
    if begin not in content or GENERATED_END not in content.split(begin, 1)[1]:
        raise InvalidInputError(f"{str(path)!r} has no generated part for {source}: add the lines {begin!r} and "
                                f"{GENERATED_END!r} where the figures go")
    head, rest = content.split(begin, 1)
    tail = rest.split(GENERATED_END, 1)[1]
    with atomic_path(path) as tmp:
        tmp.write_text(f"{head}{begin}\n{text}\n{GENERATED_END}{tail}")
    return path


def generated_text(path: str | os.PathLike[str], *, source: str, writer: str) -> str:
    """The generated part of a Markdown file (see :func:`write_generated`), or "" without one."""
    content = Path(path).read_text()
    begin = GENERATED_BEGIN.format(source=source, writer=writer)
    if begin not in content:
        return ""
    return content.split(begin, 1)[1].split(GENERATED_END, 1)[0].strip("\n")
