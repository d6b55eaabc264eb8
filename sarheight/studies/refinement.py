"""The terrain refinement study: how much better than the best refinement without learning
do the networks make a coarse DEM, and how much of that is the SAR's.

:func:`run_refinement_study` trains, from one configuration (``sarheight/configs/terrain_refine.yaml``,
parsed by the same reader as ``sarheight fit --config``:
:func:`sarheight.training.cli.configured_run`), the networks of :func:`networks` over
seeds, each calibrated on the validation scenes after its training
(:mod:`sarheight.training.calibration`: the gate of its correction and the scale of its
spread per terrain class):

- the SAR network (the configuration as it is), and on request the same on the geocoded
  sigma0 (without the reallocation in layover), with both passes, and the seed paper's
  setting (SAR and priors, no coarse DEM);
- the no-SAR network: the same with every SAR-derived channel removed (the control).

It scores them on held-out scenes beside every method that needs no learning
(:data:`BASELINES`): the coarse DEM resampled bilinearly, bicubically and with a Lanczos
kernel, registered horizontally to the priors, then back-projected, then with the
priors' residuals kriged, clinometry, and the priors-only interpolation. Every method is scored on the same
cells (truth known, inside the image), overall and per terrain class of
:data:`sarheight.terrain.variables.REFINEMENT_CLASSES`, with the one scorer of the studies, per
held-out DEM, coarse factor, looks and ground (the sigma0 laws the scene was simulated
with). The bar a network must clear in each row is the best of the methods of
:data:`NON_LEARNED` on that DEM and condition; in each class, the best of them in that
class. The SAR's share is the SAR network against the no-SAR one, which counts as a
control only where it is itself below the best non-learned method.

The run resumes: a finished training is not trained again, a scored scene not scored
again.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..data.terrain import scene_arrays, scene_files, scene_header
from ..errors import InvalidInputError
from ..masks import MaskCode
from ..plots import save_figure
from ..scores import MapScores
from ..terrain.clinometry import refine_scene
from ..terrain.files import open_scene
from ..terrain.variables import REFINEMENT_CLASSES, refinement_classes
from .runs import mean_std, read_sealed_json, reduction, seeded_runs, train_run, write_json

logger = logging.getLogger(__name__)

#: The SAR-derived channels a refinement configuration may hold: the control drops them.
SAR_CHANNELS = ("sar_ratio", "sar_ratio_geocoded", "sar_slope", "sar_slope_geocoded", "local_incidence_angle",
                "look_east", "look_north", "layover", "shadow")

#: What the both-passes network adds: the opposite pass's ratio, slope, incidence and look.
OTHER_PASS_CHANNELS = ("other_sar_ratio", "other_sar_slope", "other_local_incidence_angle", "other_look_east",
                       "other_look_north")

#: The seed paper's setting: SAR and priors, no coarse DEM (``sarheight/configs/terrain_ask_unet.yaml``).
PRIORS_ONLY_CHANNELS = ("sar_reconstructed", "local_incidence_angle", "prior_height", "prior_mask", "prior_distance")

#: The figures kept per scored scene and map: overall and per terrain class.
COLUMNS = ("overall", *REFINEMENT_CLASSES)

#: The methods that need no training, by key, with their labels.
BASELINES = {
    "coarse_bilinear": "coarse DEM, bilinear",
    "coarse_bicubic": "coarse DEM, bicubic",
    "coarse_lanczos": "coarse DEM, Lanczos",
    "registered": "registered to the priors (Lanczos)",
    "back_projection": "registered, back-projection",
    "back_projection_priors": "registered, back-projection, kriged priors",
    "clinometry": "clinometry (SAR physics)",
    "priors_only": "priors-only interpolation",
}

#: The non-learned methods among which the best, per DEM and condition, is the bar every
#: network must clear (the priors-only interpolation, tens of metres off between priors,
#: is reported but never the best).
NON_LEARNED = ("coarse_bilinear", "coarse_bicubic", "coarse_lanczos", "registered", "back_projection",
               "back_projection_priors", "clinometry")

#: The networks the study trains unless told otherwise: the two the SAR's share needs.
DEFAULT_METHODS = ("sar", "nosar")


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
                                "configuration (sarheight/configs/terrain_refine.yaml)")
    geocoded = {"sar_ratio": "sar_ratio_geocoded", "sar_slope": "sar_slope_geocoded"}
    sar = Network("sar", "SAR network", channels, reference, scale)
    return [
        sar,
        Network("nosar", "no-SAR network (control)", tuple(c for c in channels if c not in SAR_CHANNELS), reference,
                scale),
        replace(sar, name="sar_geocoded", label="SAR network on geocoded sigma0",
                channels=tuple(geocoded.get(c, c) for c in channels)),
        replace(sar, name="both_passes", label="SAR network, both passes",
                channels=channels + tuple(c for c in OTHER_PASS_CHANNELS
                                          if c.removeprefix("other_") in channels)),
        Network("priors_only_network", "seed setting: SAR + priors, no coarse DEM", PRIORS_ONLY_CHANNELS,
                "prior_interpolated", None, score_shadow=False),
    ]


def ground_label(attrs: dict[str, Any]) -> str:
    """The ground a scene was simulated with, as the study's tables name it: its ground
    family (``ground_family``: laws drawn per terrain class), else its one law and land
    cover (scenes of earlier versions)."""
    family = attrs.get("ground_family")
    if family:
        return f"ground: {family}"
    law = str(attrs.get("sigma0_law", "empirical"))
    cover = float(attrs.get("land_cover_db", 3.0))
    return f"{law} law" + (f", land cover {cover:g} dB" if cover else ", no land cover")


def test_index(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """What the study groups the held-out scenes by, from their headers: the DEM, coarse
    factor, looks and ground; and what it reports of them (the coarse DEM's family, the
    priors' kind and error)."""
    found = []
    for path in paths:
        header = scene_header(path)
        if "height" not in header.variables:
            raise InvalidInputError(f"test scene {header.name!r} has no height: the study scores against the truth")
        looks = header.attrs.get("looks", "none")
        found.append({"path": Path(path), "scene": header.name, "dem": header.area,
                      "coarse_factor": round(float(header.attrs.get("coarse_factor", 0))),
                      "looks": float(looks) if looks != "none" else math.inf,
                      "condition": ground_label(header.attrs),
                      "coarse_family": str(header.attrs.get("coarse_family", "ideal")),
                      "prior_kind": str(header.attrs.get("prior_kind", "exact")),
                      "prior_error_rms_m": float(header.attrs.get("prior_error_rms_m", 0.0))})
    return found


#: The layers a scored cell has a value in: the truth and every product of the coarse DEM
#: (the registered ones stop short of the edges by the registration's shift).
SCORED_LAYERS = ("height", "coarse_height", "coarse_bicubic", "coarse_lanczos", "coarse_registered",
                 "coarse_backprojected", "coarse_refined")


def scoring_mask(scene: xr.Dataset) -> np.ndarray:
    """The cells every method is scored on: the truth and every product of the coarse DEM
    known (:data:`SCORED_LAYERS`), inside the image (shadow included: a refinement
    predicts there from the coarse DEM)."""
    mask = scene["layover"].values != MaskCode.OUTSIDE
    for name in SCORED_LAYERS:
        if name in scene.data_vars:
            mask &= np.isfinite(scene[name].values)
    return mask


def score_map(prediction: np.ndarray, scene: xr.Dataset, mask: np.ndarray, classes: np.ndarray,
              std: np.ndarray | None = None) -> dict[str, float]:
    """RMSE and cell count overall and per class of :data:`REFINEMENT_CLASSES` of one
    map; with ``std`` (m), also the cells whose error is within one and two of it."""
    scores = MapScores(REFINEMENT_CLASSES)
    scores.add(prediction, scene["height"].values, mask, classes)
    values = scores.compute()
    found = {"overall": values["rmse"], "count_overall": values["count"]}
    for name in REFINEMENT_CLASSES:
        found[name] = values[f"rmse_{name}"]
        found[f"count_{name}"] = values[f"count_{name}"]
    if std is not None:
        counted = mask & np.isfinite(scene["height"].values) & np.isfinite(std)
        z = np.abs(prediction - scene["height"].values)[counted] / np.maximum(std[counted], 1e-9)
        found.update(std_cells=int(counted.sum()), within_1std=int(np.sum(z <= 1)), within_2std=int(np.sum(z <= 2)))
    return found


def baseline_maps(scene: xr.Dataset) -> dict[str, np.ndarray]:
    """The heights of every method that needs no training (:data:`BASELINES`) on a scene."""
    return {
        "coarse_bilinear": scene["coarse_height"].values,
        "coarse_bicubic": scene["coarse_bicubic"].values,
        "coarse_lanczos": scene["coarse_lanczos"].values,
        "registered": scene["coarse_registered"].values,
        "back_projection": scene["coarse_backprojected"].values,
        "back_projection_priors": scene["coarse_refined"].values,
        "clinometry": refine_scene(scene).values,
        "priors_only": scene["prior_interpolated"].values,
    }


class PredictionCache:
    """Predictions of one checkpoint keyed by the content of the inputs it reads: the
    no-SAR network sees the same inputs in the scenes of one DEM, factor and prior draw
    whatever their SAR, and runs once for them."""

    def __init__(self, network: Network, checkpoint: Path):
        self.network, self.checkpoint = network, checkpoint
        self.maps: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
        self.model: Any = None  # loaded once, on the first scene it predicts

    def predict(self, scene: xr.Dataset) -> tuple[np.ndarray, np.ndarray | None, int]:
        """The network's heights on ``scene`` (NaN cells filled with its reference), their
        standard deviation where it gives one, and how many cells were filled."""
        from ..training.predict import predict_height

        arrays = scene_arrays(scene, self.network.channels, reference=self.network.reference,
                              scale=self.network.scale)
        key = hashlib.sha1(np.ascontiguousarray(arrays.inputs).tobytes()
                           + np.ascontiguousarray(arrays.offset).tobytes()).hexdigest()
        if key not in self.maps:
            if self.model is None:
                from ..training.checkpoints import load_checkpoint

                self.model = load_checkpoint(self.checkpoint)
            result = predict_height(scene, [self.model], progress=False)
            self.maps[key] = (result["height"].values,
                              result["height_std"].values if "height_std" in result else None)
        heights, std = self.maps[key]
        reference = scene[self.network.reference].values
        missing = ~np.isfinite(heights)
        return np.where(missing, reference, heights), std, int((missing & np.isfinite(reference)).sum())


def _scored(path: Path) -> dict[str, Any]:
    return read_sealed_json(path) or {}


def _list_option(values: Sequence[str]) -> str:
    return "[" + ", ".join(values) + "]"


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
    command: str | None = None,
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
    config : the refinement configuration (``sarheight/configs/terrain_refine.yaml``): each network
        is what ``sarheight fit --config`` builds from it, with its channels (and the seed)
        overridden.
    seeds : trainings per network (mean ± std over them).
    methods : the networks to train (names of :func:`networks`; default
        :data:`DEFAULT_METHODS`).
    max_epochs, max_time : override the configuration's budget (a quick trial).
    accelerator : Lightning's ("auto": a GPU where there is one).
    progress : show progress.
    command : the command that ran the study, kept in the JSON (the documentation shows it
        beside the figures).

    Raises
    ------
    InvalidInputError : a held-out DEM among the training scenes, a bad configuration or
        method, seeds below 1; before any training.
    """
    from .._threads import bar as progress_bar
    from ..training.configured import configured_run

    out = Path(out)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InvalidInputError(f"seeds must be a positive integer, got {seeds!r}")
    train_files = scene_files(train_scenes, "the training scenes")
    test_files = scene_files(test_scenes, "the test scenes")
    index = test_index(test_files)
    train_dems = sorted({scene_header(path).area for path in train_files})
    overlap = sorted(set(train_dems) & {entry["dem"] for entry in index})
    if overlap:
        raise InvalidInputError(f"the DEMs {overlap} have training and test scenes: hold whole DEMs out")
    scenes_option = ["--data.scenes", _list_option([str(path) for path in train_files])]
    parsed = configured_run(config, scenes_option)
    data_options, model_options = parsed.init_args["data"], parsed.init_args["model"]
    trainer_options = parsed.trainer_options
    planned = networks(data_options["channels"], data_options.get("reference") or "coarse_refined",
                       data_options.get("scale"))
    names = [network.name for network in planned]
    chosen = list(methods or DEFAULT_METHODS)
    unknown = sorted(set(chosen) - set(names))
    if unknown:
        raise InvalidInputError(f"unknown methods {unknown}: choose among {', '.join(names)}")
    planned = [network for network in planned if network.name in chosen]
    val_dems = list(data_options.get("val_scenes") or [])
    val_files = [path for path in train_files
                 if scene_header(path).area in val_dems or scene_header(path).name in val_dems]
    epochs = int(max_epochs or trainer_options.get("max_epochs") or 10)
    budget = {"max_epochs": epochs, "max_time": max_time or trainer_options.get("max_time"),
              **{key: data_options.get(key) for key in ("tile", "tiles_per_epoch", "batch_size")},
              "model": model_options.get("model"), "model_options": model_options.get("model_options") or {},
              "loss": model_options.get("loss"), "lr": model_options.get("lr")}
    out.mkdir(parents=True, exist_ok=True)
    scores_dir = out / "scores"
    scores_dir.mkdir(exist_ok=True)

    # 1. The trainings, each then calibrated on the validation scenes.
    checkpoints: dict[str, list[Path]] = {}
    calibrations: dict[str, list[dict[str, Any]]] = {}
    train_seconds: dict[str, list[float]] = {}
    bar = progress_bar(total=len(planned) * seeds, desc="refinement study: trainings", unit="training",
                       enabled=progress)
    for network in planned:
        def train(seed: int, run_dir: Path, network: Network = network) -> dict[str, Any]:
            from ..training.calibration import calibrate_checkpoint

            overrides = [*scenes_option, "--data.channels", _list_option(network.channels),
                         "--data.reference", network.reference, "--seed_everything", str(seed)]
            if network.scale is None:
                overrides += ["--data.scale", "null", "--data.score_shadow", str(network.score_shadow).lower(),
                              "--model.class_weights", "null"]
            run = configured_run(config, overrides)
            steps = int(run.datamodule.tiles_per_epoch) // int(run.datamodule.batch_size)
            started = time.perf_counter()
            checkpoint = train_run(run.model, run.datamodule, run_dir, max_epochs=epochs,
                                   steps_per_epoch=steps, accelerator=accelerator, validate=bool(val_files),
                                   max_time=budget["max_time"], progress=progress,
                                   description=f"{network.name} seed {seed}").last
            trained = time.perf_counter() - started
            calibration = (calibrate_checkpoint(checkpoint, val_files) if val_files and network.reference
                           else None)
            return {"checkpoint": str(checkpoint), "calibration": calibration, "train_seconds": trained,
                    "init_args": run.init_args}

        records = seeded_runs(out / "runs" / network.name, seeds, train, bar.update)
        # Where the runs are, whatever folder the study was started from.
        checkpoints[network.name] = [out / "runs" / network.name / f"seed{seed}" / "last.ckpt" for seed in range(seeds)]
        calibrations[network.name] = [record.get("calibration") for record in records]
        train_seconds[network.name] = [float(record.get("train_seconds", math.nan)) for record in records]
    bar.close()

    # 2. The scores, per scene, resumable.
    baseline_path = scores_dir / "baselines.json"
    baseline_scores = _scored(baseline_path)
    run_scores = {(name, seed): _scored(scores_dir / f"{name}_seed{seed}.json")
                  for name in checkpoints for seed in range(seeds)}
    caches = {(network.name, seed): PredictionCache(network, path)
              for network in planned for seed, path in enumerate(checkpoints[network.name])}
    for entry in progress_bar(index, desc="refinement study: scoring", unit="scene", enabled=progress):
        name = entry["scene"]
        if name in baseline_scores and all(name in scores for scores in run_scores.values()):
            continue
        scene = open_scene(entry["path"])
        mask = scoring_mask(scene)
        classes = refinement_classes(scene)
        if name not in baseline_scores:
            baseline_scores[name] = {method: score_map(heights, scene, mask, classes)
                                     for method, heights in baseline_maps(scene).items()}
            write_json(baseline_scores, baseline_path, sealed=True)
        for (method, seed), scores in run_scores.items():
            if name in scores:
                continue
            heights, std, count = caches[(method, seed)].predict(scene)
            scores[name] = {**score_map(heights, scene, mask, classes, std), "filled_cells": count}
            write_json(scores, scores_dir / f"{method}_seed{seed}.json", sealed=True)
    filled = {method: sum(int(s.get("filled_cells", 0)) for (m, _), scores in run_scores.items() if m == method
                          for s in scores.values()) for method in checkpoints}

    # The methods without learning on the validation scenes too: the one a user could
    # pick without the truth of the held-out ones (the fair bar) is chosen there.
    validation_path = scores_dir / "validation_baselines.json"
    validation_scores = _scored(validation_path)
    for path in progress_bar(val_files, desc="refinement study: validation baselines", unit="scene", enabled=progress):
        scene = open_scene(path)
        name = str(scene.attrs.get("scene_name", Path(path).stem))
        if name in validation_scores or "height" not in scene.data_vars:
            continue
        validation_scores[name] = {method: score_map(heights, scene, scoring_mask(scene), refinement_classes(scene))
                                   for method, heights in baseline_maps(scene).items()}
        write_json(validation_scores, validation_path, sealed=True)

    results = summarise(index, baseline_scores, run_scores, planned, seeds)
    results.update(validation_baselines=validation_scores, fair_bar=fair_bar(validation_scores))
    results.update(budget=budget, config=str(config), train_dems=train_dems, val_dems=val_dems,
                   test_dems=sorted({e["dem"] for e in index}), filled_cells=filled, calibrations=calibrations,
                   train_seconds=train_seconds, priors=prior_report(index),
                   command=command or f"run_refinement_study({str(train_scenes)!r}, {str(test_scenes)!r}, {str(out)!r})")
    write_json(results, out / "refinement.json")
    write_table(results, out / "refinement.md")
    plot_refinement(results, out / "refinement.png")
    return results


def fair_bar(validation_scores: dict[str, dict[str, dict[str, float]]]) -> dict[str, Any]:
    """The method without learning (:data:`NON_LEARNED`) a user would pick from the
    validation scenes: the lowest mean RMSE relative to back-projection with the kriged
    priors over them, with every method's mean; empty without validation scores."""
    if not validation_scores:
        return {}
    means = {}
    for method in NON_LEARNED:
        ratios = [scores[method]["overall"] / scores["back_projection_priors"]["overall"]
                  for scores in validation_scores.values()
                  if method in scores and scores["back_projection_priors"]["overall"] > 0]
        if ratios:
            means[method] = float(np.mean(ratios))
    return {"method": min(means, key=means.get), "mean_relative_rmse": means,
            "scenes": len(validation_scores)} if means else {}


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
        count = sum(scores[s][f"count_{column}"] for s in scenes)
        squares = sum(scores[s][column] ** 2 * scores[s][f"count_{column}"] for s in scenes
                      if scores[s][f"count_{column}"])
        figures[column] = math.sqrt(squares / count) if count else math.nan
        figures[f"count_{column}"] = count
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
                for e in results["summary"] for dem, c in e["methods"].get("sar", {}).get("coverage_by_dem", {}).items()]
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
             + (f"; a training took {min(seconds) / 60:.1f}-{max(seconds) / 60:.1f} min on this machine."
                if seconds else "."), "", "```bash", command, "```", "",
             "Reduction of the RMSE (%) against the best non-learned method of each DEM and ground (mean over the "
             "held-out DEMs, in brackets the least of them; positive: below it). The best non-learned method is "
             f"the best of {', '.join(labels[m] for m in NON_LEARNED)} on that DEM; the SAR's share is the SAR "
             "network against the no-SAR one.", "",
             "| ground | factor | best non-learned (per DEM) | clinometry | no-SAR network | SAR network | SAR's share |"
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
