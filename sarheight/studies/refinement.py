"""The terrain refinement study: how much better than the coarse DEM a user already has do
the networks and the physics make the heights, and how much of it is the SAR's.

:func:`run_refinement_study` trains, from one configuration (``configs/terrain_refine.yaml``:
the model, its budget, the reference and scale, the training and validation scenes), the
networks of :func:`networks` over seeds:

- the SAR network (the configuration as it is: the reconstructed sigma0 over the sigma0
  simulated from the coarse DEM), and the same on the geocoded sigma0 (without the
  reallocation in layover: what the reconstruction is worth there), and with both passes;
- the no-SAR network: the same with every SAR-derived channel removed (the control);
- the seed paper's setting: SAR and priors without the coarse DEM, relative to the
  priors-only interpolation (``configs/terrain_ask_unet.yaml``'s channels, the same model
  and budget, no class weights);

and scores them on held-out scenes beside the methods that need no training: the coarse
DEM resampled bilinearly, bicubically and with a Lanczos kernel, the Lanczos coarse DEM
plus the interpolated residuals of the priors, the priors-only interpolation, and the
clinometric refinement (:mod:`sarheight.clinometry`). Every method is scored on the same
cells (truth known, inside the image), overall and per terrain class (layover, shadow,
other), with the one scorer of the studies (:class:`~.scoring.MapScores`), per held-out
DEM, coarse factor, look count and ground (the sigma0 law and land cover the scene was
simulated with). Cells a network leaves without a value (an input missing) take its
reference's, and are counted.

The run resumes: a finished training is not trained again, a scored scene not scored again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..clinometry import refine_scene
from ..data.terrain import TERRAIN_CLASSES, scene_arrays, scene_files, scene_header, terrain_classes
from ..errors import InvalidInputError, MissingInputError
from ..io import atomic_path
from ..masks import MaskCode
from ..plots import save_figure
from ..priors import interpolate_priors
from ..terrain import open_scene
from .runs import mean_std, reduction, seeded_runs, train_run, write_json
from .scoring import MapScores

logger = logging.getLogger(__name__)

#: The SAR-derived channels a refinement configuration may hold: the control drops them.
SAR_CHANNELS = ("sar_ratio", "sar_ratio_geocoded", "local_incidence_angle", "look_east", "look_north", "layover",
                "shadow")

#: What the both-passes network adds: the opposite pass's ratio, incidence and look.
OTHER_PASS_CHANNELS = ("other_sar_ratio", "other_local_incidence_angle", "other_look_east", "other_look_north")

#: The seed paper's setting: SAR and priors, no coarse DEM (``configs/terrain_ask_unet.yaml``).
PRIORS_ONLY_CHANNELS = ("sar_reconstructed", "local_incidence_angle", "prior_height", "prior_mask", "prior_distance")

#: The terrain classes of the table, as groups of :data:`~sarheight.data.terrain.TERRAIN_CLASSES`.
CLASS_GROUPS = {"layover": ("active_layover", "passive_layover"), "shadow": ("shadow",),
                "other": ("shadow_adjacent", "other")}

#: The figures kept per scored scene: overall and per class.
COLUMNS = ("overall", *CLASS_GROUPS)

#: The methods that need no training, by key, with their labels.
BASELINES = {
    "coarse_bilinear": "coarse DEM, bilinear",
    "coarse_bicubic": "coarse DEM, bicubic",
    "coarse_lanczos": "coarse DEM, Lanczos",
    "coarse_priors": "coarse DEM (Lanczos) + interpolated prior residuals",
    "priors_only": "priors-only interpolation",
    "clinometry": "clinometry (physics, no learning)",
}

#: The coarse-DEM baselines, among which the best is the bar the networks must clear.
COARSE_BASELINES = ("coarse_bilinear", "coarse_bicubic", "coarse_lanczos")


@dataclass(frozen=True)
class Network:
    """One trained method of the study: its channels, reference and scale."""

    name: str
    label: str
    channels: tuple[str, ...]
    reference: str
    scale: str | None
    score_shadow: bool = True


def networks(channels: Sequence[str], reference: str, scale: str | None) -> list[Network]:
    """The trained methods derived from a refinement configuration's ``channels``: the SAR
    network (as configured), the no-SAR control, the SAR network on geocoded sigma0, with
    both passes, and the seed paper's priors-only setting.

    Raises
    ------
    InvalidInputError : the channels hold no ``sar_ratio``.
    """
    channels = tuple(channels)
    if "sar_ratio" not in channels:
        raise InvalidInputError(f"the configuration's channels {list(channels)} hold no sar_ratio: give a refinement "
                                "configuration (configs/terrain_refine.yaml)")
    sar = Network("sar", "SAR network (reconstructed sigma0)", channels, reference, scale)
    return [
        sar,
        Network("nosar", "no-SAR network (control)", tuple(c for c in channels if c not in SAR_CHANNELS), reference,
                scale),
        replace(sar, name="sar_geocoded", label="SAR network on geocoded sigma0",
                channels=tuple("sar_ratio_geocoded" if c == "sar_ratio" else c for c in channels)),
        replace(sar, name="both_passes", label="SAR network, both passes", channels=channels + OTHER_PASS_CHANNELS),
        Network("priors_only_network", "seed setting: SAR + priors, no coarse DEM", PRIORS_ONLY_CHANNELS,
                "prior_interpolated", None, score_shadow=False),
    ]


def read_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The parts of a training configuration (YAML, as ``sarheight fit`` reads it) the study
    takes: ``model`` (the PixelRegression options), ``data`` (the TerrainDataModule's
    ``init_args``) and ``trainer`` (``max_epochs``, ``max_time``)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"no configuration {str(path)!r}: give configs/terrain_refine.yaml or a copy of it")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise InvalidInputError(f"{str(path)!r} is not readable YAML: {error}") from None
    data = (config or {}).get("data") or {}
    data = data.get("init_args", data)
    if not isinstance(data, dict) or "channels" not in data:
        raise InvalidInputError(f"{str(path)!r} has no data.init_args.channels: give a terrain configuration")
    return {"model": dict(config.get("model") or {}), "data": dict(data), "trainer": dict(config.get("trainer") or {})}


def _condition(attrs: dict[str, Any]) -> str:
    law = str(attrs.get("sigma0_law", "empirical"))
    cover = float(attrs.get("land_cover_db", 3.0))
    return f"{law} law" + (f", land cover {cover:g} dB" if cover else ", no land cover")


def test_index(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """What the study groups the held-out scenes by, from their headers: the DEM, coarse
    factor, looks and ground (the sigma0 law and land cover)."""
    found = []
    for path in paths:
        header = scene_header(path)
        if "height" not in header.variables:
            raise InvalidInputError(f"test scene {header.name!r} has no height: the study scores against the truth")
        looks = header.attrs.get("looks", "none")
        found.append({"path": Path(path), "scene": header.name, "dem": header.area,
                      "coarse_factor": round(float(header.attrs.get("coarse_factor", 0))),
                      "looks": float(looks) if looks != "none" else math.inf,
                      "condition": _condition(header.attrs)})
    return found


def scoring_mask(scene: xr.Dataset) -> np.ndarray:
    """The cells every method is scored on: the truth and the coarse DEM known, inside the
    image (shadow included: a refinement predicts there from the coarse DEM)."""
    return (np.isfinite(scene["height"].values) & np.isfinite(scene["coarse_bicubic"].values)
            & (scene["layover"].values != MaskCode.OUTSIDE))


def score_map(prediction: np.ndarray, scene: xr.Dataset, mask: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    """RMSE and cell count overall and per class of :data:`CLASS_GROUPS` of one map."""
    scores = MapScores(TERRAIN_CLASSES, groups=CLASS_GROUPS)
    scores.add(prediction, scene["height"].values, mask, classes)
    values = scores.compute()
    found = {"overall": values["rmse"], "count_overall": values["count"]}
    for name in CLASS_GROUPS:
        found[name] = values[f"rmse_{name}"]
        found[f"count_{name}"] = values[f"count_{name}"]
    return found


def baseline_maps(scene: xr.Dataset) -> dict[str, np.ndarray]:
    """The heights of every method that needs no training (:data:`BASELINES`) on a scene."""
    residual = scene[["prior_height", "prior_mask"]].copy()
    residual["prior_height"] = scene["prior_height"] - scene["coarse_lanczos"]
    return {
        "coarse_bilinear": scene["coarse_height"].values,
        "coarse_bicubic": scene["coarse_bicubic"].values,
        "coarse_lanczos": scene["coarse_lanczos"].values,
        "coarse_priors": scene["coarse_lanczos"].values + interpolate_priors(residual).values,
        "priors_only": scene["prior_interpolated"].values,
        "clinometry": refine_scene(scene).values,
    }


class PredictionCache:
    """Predictions of one checkpoint keyed by the content of the inputs it reads: the
    no-SAR network sees the same inputs in the scenes of one DEM, factor and prior draw
    whatever their SAR, and runs once for them."""

    def __init__(self, network: Network, checkpoint: Path):
        self.network, self.checkpoint = network, checkpoint
        self.maps: dict[str, np.ndarray] = {}

    def predict(self, scene: xr.Dataset) -> tuple[np.ndarray, int]:
        """The network's heights on ``scene`` (NaN cells filled with its reference) and how
        many cells were filled."""
        from ..training.predict import predict_height

        arrays = scene_arrays(scene, self.network.channels, reference=self.network.reference,
                              scale=self.network.scale)
        key = hashlib.sha1(np.ascontiguousarray(arrays.inputs).tobytes()
                           + np.ascontiguousarray(arrays.offset).tobytes()).hexdigest()
        if key not in self.maps:
            self.maps[key] = predict_height(scene, [self.checkpoint], progress=False)["height"].values
        heights = self.maps[key]
        reference = scene[self.network.reference].values
        missing = ~np.isfinite(heights)
        return np.where(missing, reference, heights), int((missing & np.isfinite(reference)).sum())


def _scored(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def run_refinement_study(
    train_scenes: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    test_scenes: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    config: str | os.PathLike[str],
    seeds: int = 2,
    methods: Sequence[str] | None = None,
    max_epochs: int | None = None,
    max_time: str | None = None,
    accelerator: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Train the study's networks, score every method on the held-out scenes, and write
    ``refinement.json``, ``refinement.md`` and ``refinement.png`` into ``out``.

    Parameters
    ----------
    train_scenes : the training and validation scenes (a folder, files or patterns); the
        configuration's ``val_scenes`` name the validation DEMs among them.
    test_scenes : the held-out scenes (with their truth), of DEMs none of the training
        scenes shows.
    out : the folder of the runs (``runs/<network>/seed<k>/``), the per-scene scores
        (``scores/``) and the tables.
    config : the refinement configuration (``configs/terrain_refine.yaml``): model, budget,
        channels, reference and scale of the SAR network, from which the others derive.
    seeds : trainings per network (mean ± std over them).
    methods : the networks to train (names of :func:`networks`; default all).
    max_epochs, max_time : override the configuration's budget (a quick trial).
    accelerator : Lightning's ("auto": a GPU where there is one).
    progress : show progress.

    Raises
    ------
    InvalidInputError : a held-out DEM among the training scenes, a bad configuration or
        method, seeds below 1; before any training.
    """
    from tqdm.auto import tqdm

    out = Path(out)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InvalidInputError(f"seeds must be a positive integer, got {seeds!r}")
    settings = read_config(config)
    data_options, model_options, trainer_options = settings["data"], settings["model"], settings["trainer"]
    planned = networks(data_options["channels"], data_options.get("reference") or "coarse_lanczos",
                       data_options.get("scale"))
    names = [network.name for network in planned]
    unknown = sorted(set(methods or names) - set(names))
    if unknown:
        raise InvalidInputError(f"unknown methods {unknown}: choose among {', '.join(names)}")
    planned = [network for network in planned if network.name in (methods or names)]
    train_files = scene_files(train_scenes, "the training scenes")
    test_files = scene_files(test_scenes, "the test scenes")
    index = test_index(test_files)
    train_dems = sorted({scene_header(path).area for path in train_files})
    overlap = sorted(set(train_dems) & {entry["dem"] for entry in index})
    if overlap:
        raise InvalidInputError(f"the DEMs {overlap} have training and test scenes: hold whole DEMs out")
    val_dems = list(data_options.get("val_scenes") or [])
    budget = {key: data_options.get(key) for key in ("tile", "tiles_per_epoch", "batch_size")}
    budget.update(max_epochs=int(max_epochs or trainer_options.get("max_epochs", 10)),
                  max_time=max_time or trainer_options.get("max_time"), model=model_options.get("model", "ask_unet"),
                  model_options=model_options.get("model_options") or {}, loss=model_options.get("loss", "mse"),
                  lr=model_options.get("lr", 2e-3))
    out.mkdir(parents=True, exist_ok=True)
    scores_dir = out / "scores"
    scores_dir.mkdir(exist_ok=True)

    # 1. The trainings.
    checkpoints: dict[str, list[Path]] = {}
    bar = tqdm(total=len(planned) * seeds, desc="refinement study: trainings", unit="training",
               disable=not progress)
    for network in planned:
        def train(seed: int, run_dir: Path, network: Network = network) -> dict[str, Any]:
            from ..data.terrain import TerrainDataModule
            from ..training.regression import PixelRegression

            data = TerrainDataModule(
                [str(path) for path in train_files], channels=list(network.channels), reference=network.reference,
                scale=network.scale, score_shadow=network.score_shadow, split="scene", val_scenes=val_dems,
                val_fraction=0.0, test_fraction=0.0, tile=budget["tile"], tiles_per_epoch=budget["tiles_per_epoch"],
                batch_size=budget["batch_size"], seed=seed)
            # The seed setting keeps its own loss weights (none): only the budget is shared.
            weights = model_options.get("class_weights") if network.scale is not None else None
            module = PixelRegression(model=budget["model"], model_options=dict(budget["model_options"]),
                                     in_channels=len(network.channels), loss=budget["loss"], lr=budget["lr"],
                                     weight_decay=model_options.get("weight_decay", 1e-4),
                                     scheduler=model_options.get("scheduler", "cosine"), class_weights=weights)
            checkpoint = train_run(module, data, run_dir, max_epochs=budget["max_epochs"],
                                   steps_per_epoch=budget["tiles_per_epoch"] // budget["batch_size"],
                                   accelerator=accelerator, validate=bool(val_dems), max_time=budget["max_time"],
                                   progress=progress, description=f"{network.name} seed {seed}")
            return {"checkpoint": str(checkpoint)}

        seeded_runs(out / "runs" / network.name, seeds, train, bar.update)
        # Where the runs are, whatever folder the study was started from.
        checkpoints[network.name] = [out / "runs" / network.name / f"seed{seed}" / "last.ckpt" for seed in range(seeds)]
    bar.close()

    # 2. The scores, per scene, resumable.
    baseline_path = scores_dir / "baselines.json"
    baseline_scores = _scored(baseline_path)
    run_scores = {(name, seed): _scored(scores_dir / f"{name}_seed{seed}.json")
                  for name in checkpoints for seed in range(seeds)}
    caches = {(network.name, seed): PredictionCache(network, path)
              for network in planned for seed, path in enumerate(checkpoints[network.name])}
    filled: dict[str, int] = {}
    for entry in tqdm(index, desc="refinement study: scoring", unit="scene", disable=not progress):
        name = entry["scene"]
        if name in baseline_scores and all(name in scores for scores in run_scores.values()):
            continue
        scene = open_scene(entry["path"])
        mask = scoring_mask(scene)
        classes = terrain_classes(scene["layover"].values, scene["shadow"].values)
        if name not in baseline_scores:
            baseline_scores[name] = {method: score_map(heights, scene, mask, classes)
                                     for method, heights in baseline_maps(scene).items()}
            write_json(baseline_scores, baseline_path)
        for (method, seed), scores in run_scores.items():
            if name in scores:
                continue
            heights, count = caches[(method, seed)].predict(scene)
            scores[name] = {**score_map(heights, scene, mask, classes), "filled_cells": count}
            write_json(scores, scores_dir / f"{method}_seed{seed}.json")
    for (method, _), scores in run_scores.items():
        filled[method] = filled.get(method, 0) + sum(int(s.get("filled_cells", 0)) for s in scores.values())

    results = summarise(index, baseline_scores, run_scores, planned, seeds)
    results.update(budget={key: value for key, value in budget.items()}, config=str(config),
                   train_dems=train_dems, val_dems=val_dems, test_dems=sorted({e["dem"] for e in index}),
                   filled_cells=filled)
    write_json(results, out / "refinement.json")
    write_table(results, out / "refinement.md")
    plot_refinement(results, out / "refinement.png")
    return results


def summarise(index: Sequence[dict[str, Any]], baseline_scores: dict[str, Any],
              run_scores: dict[tuple[str, int], dict[str, Any]], planned: Sequence[Network],
              seeds: int) -> dict[str, Any]:
    """The study's figures from the per-scene scores: per ground, looks, DEM and coarse
    factor, every method's RMSE overall and per class (networks: mean ± std over seeds),
    and the reductions against the best coarse baseline and the no-SAR network."""
    groups: dict[tuple[str, float, str, int], list[str]] = {}
    for entry in index:
        groups.setdefault((entry["condition"], entry["looks"], entry["dem"], entry["coarse_factor"]),
                          []).append(entry["scene"])

    def pooled(scores: dict[str, Any], scenes: list[str]) -> dict[str, float]:
        figures = {}
        for column in COLUMNS:
            count = sum(scores[s][f"count_{column}"] for s in scenes)
            squares = sum(scores[s][column] ** 2 * scores[s][f"count_{column}"] for s in scenes
                          if scores[s][f"count_{column}"])
            figures[column] = math.sqrt(squares / count) if count else math.nan
            figures[f"count_{column}"] = count
        return figures

    rows = []
    for (condition, looks, dem, factor), scenes in sorted(groups.items(), key=lambda item: (
            item[0][0], item[0][1], item[0][2], item[0][3])):
        row: dict[str, Any] = {"condition": condition, "looks": looks, "dem": dem, "coarse_factor": factor,
                               "scenes": scenes, "methods": {}}
        for method in BASELINES:
            figures = pooled({s: baseline_scores[s][method] for s in scenes}, scenes)
            row["methods"][method] = {"mean": {column: figures[column] for column in COLUMNS},
                                      "std": dict.fromkeys(COLUMNS, 0.0), "runs": 0}
        for network in planned:
            runs = [pooled(run_scores[(network.name, seed)], scenes) for seed in range(seeds)]
            row["methods"][network.name] = {**mean_std(runs, COLUMNS), "runs": len(runs)}
        counted = pooled({s: baseline_scores[s]["coarse_bilinear"] for s in scenes}, scenes)
        row["cells"] = {column: int(counted[f"count_{column}"]) for column in COLUMNS}
        best = min(COARSE_BASELINES, key=lambda m: row["methods"][m]["mean"]["overall"])
        row["best_coarse"] = best
        reductions = {}
        for method in row["methods"]:
            figures = row["methods"][method]["mean"]
            reductions[method] = {
                "vs_best_coarse": reduction(figures["overall"], row["methods"][best]["mean"]["overall"]),
                "vs_bicubic": reduction(figures["overall"], row["methods"]["coarse_bicubic"]["mean"]["overall"]),
                **({"vs_nosar": reduction(figures["overall"], row["methods"]["nosar"]["mean"]["overall"]),
                    "vs_nosar_layover": reduction(figures["layover"], row["methods"]["nosar"]["mean"]["layover"])}
                   if "nosar" in row["methods"] else {}),
            }
        row["reductions"] = reductions
        rows.append(row)
    return {"rows": rows, "labels": {**BASELINES, **{network.name: network.label for network in planned}},
            "summary": _summary(rows)}


def _summary(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per ground, looks and coarse factor: the reductions averaged over the held-out DEMs
    (each DEM counts once), and how many DEMs a method is worse than the best coarse
    baseline on."""
    keyed: dict[tuple[str, float, int], list[dict[str, Any]]] = {}
    for row in rows:
        keyed.setdefault((row["condition"], row["looks"], row["coarse_factor"]), []).append(row)
    summary = []
    for (condition, looks, factor), members in sorted(keyed.items()):
        entry: dict[str, Any] = {"condition": condition, "looks": looks, "coarse_factor": factor,
                                 "dems": [row["dem"] for row in members], "methods": {}}
        for method in members[0]["reductions"]:
            values = [row["reductions"][method] for row in members]
            entry["methods"][method] = {
                key: float(np.nanmean([value[key] for value in values])) for key in values[0]}
            entry["methods"][method]["worse_than_coarse"] = sum(value["vs_best_coarse"] < 0 for value in values)
        summary.append(entry)
    return summary


def _text(mean: float, std: float | None = None) -> str:
    if not math.isfinite(mean):
        return "–"
    digits = 1 if abs(mean) >= 10 else 2
    return f"{mean:.{digits}f}" if not std else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _looks(looks: float) -> str:
    return "no speckle" if math.isinf(looks) else f"{looks:g} looks"


def write_table(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """The study as Markdown: the summary (reductions averaged over the held-out DEMs),
    then per ground and looks a table of every method's RMSE per DEM and factor, and the
    RMSE per terrain class."""
    labels = results["labels"]
    budget = results["budget"]
    lines = ["# Terrain refinement on held-out DEMs", "",
             f"Held-out DEMs (never trained or validated on): {', '.join(results['test_dems'])}; training DEMs: "
             f"{', '.join(results['train_dems'])}; validation (logged only): {', '.join(results['val_dems'])}.",
             f"Networks from `{results['config']}`, " + ", ".join(f"{k} {v}" for k, v in budget.items()) + ".",
             "RMSE in metres on the held-out scenes' cells (truth known, inside the image, shadow included); "
             "networks: mean ± std over seeds. The scenes' SAR is simulated: the figures of the empirical law "
             "without land cover are an upper bound; land cover and a different law bracket what real data give.",
             "", "## Summary: reductions (%) averaged over the held-out DEMs", "",
             "Against the best coarse-DEM baseline of each DEM (the best of bilinear, bicubic and Lanczos) "
             "/ against the bicubic coarse DEM; in brackets, on how many DEMs the method is worse than the best "
             "coarse baseline; then the SAR's share: against the no-SAR network overall and in layover.", ""]
    methods = [m for m in labels if m not in COARSE_BASELINES]
    lines += ["| ground | looks | factor | " + " | ".join(labels[m] for m in methods) + " |",
              "|---" * (len(methods) + 3) + "|"]
    for entry in results["summary"]:
        cells = []
        for method in methods:
            figures = entry["methods"].get(method)
            if figures is None:
                cells.append("–")
                continue
            text = f"{figures['vs_best_coarse']:+.1f} / {figures['vs_bicubic']:+.1f} ({figures['worse_than_coarse']})"
            if "vs_nosar" in figures and method not in ("nosar", "priors_only", "priors_only_network"):
                text += f"; SAR {figures['vs_nosar']:+.1f} / lay. {figures['vs_nosar_layover']:+.1f}"
            cells.append(text)
        lines.append(f"| {entry['condition']} | {_looks(entry['looks'])} | {entry['coarse_factor']}x | "
                     + " | ".join(cells) + " |")
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
        lines += ["", f"RMSE (m) per terrain class (layover / shadow / other), {condition}, {_looks(looks)}:", "",
                  "| DEM | factor | " + " | ".join(labels[m] for m in ordered) + " |",
                  "|---" * (len(ordered) + 2) + "|"]
        for row in rows:
            lines.append(f"| {row['dem']} | {row['coarse_factor']}x | " + " | ".join(
                " / ".join(_text(row["methods"][m]["mean"][c]) for c in CLASS_GROUPS) if m in row["methods"] else "–"
                for m in ordered) + " |")
        lines.append("")
    if any(results.get("filled_cells", {}).values()):
        lines.append("Cells a network left without a value, filled with its reference: " + ", ".join(
            f"{labels[m]} {count}" for m, count in results["filled_cells"].items() if count) + ".")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def plot_refinement(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Per ground and looks, the reduction (%) of every method against the best coarse
    baseline, averaged over the held-out DEMs, per coarse factor."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    labels = results["labels"]
    panels: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for entry in results["summary"]:
        panels.setdefault((entry["condition"], entry["looks"]), []).append(entry)
    methods = [m for m in labels if m not in COARSE_BASELINES and m != "priors_only"
               and m != "priors_only_network"]
    conditions = sorted({key[0] for key in panels})
    looks = sorted({key[1] for key in panels})
    fig, axes = plt.subplots(len(conditions), len(looks), figsize=(4.2 * len(looks), 3.4 * len(conditions)),
                             squeeze=False, sharey=True)
    width = 0.8 / max(len(methods), 1)
    for (condition, look), entries in panels.items():
        ax = axes[conditions.index(condition), looks.index(look)]
        factors = [entry["coarse_factor"] for entry in entries]
        x = np.arange(len(factors))
        for k, method in enumerate(methods):
            values = [entry["methods"].get(method, {}).get("vs_best_coarse", math.nan) for entry in entries]
            ax.bar(x + (k - len(methods) / 2 + 0.5) * width, values, width, label=labels[method])
        ax.axhline(0, color="k", linewidth=0.8)
        ax.axhline(30, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xticks(x, [f"{f}x" for f in factors])
        ax.set_title(f"{condition}, {_looks(look)}", fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("RMSE reduction vs best coarse (%)")
    axes[0, -1].legend(fontsize=7, loc="lower right")
    fig.suptitle("Terrain refinement on held-out DEMs: reduction against the best coarse-DEM baseline "
                 "(dashed: the 30 % target)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
