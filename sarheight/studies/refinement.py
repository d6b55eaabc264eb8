"""The terrain refinement study: how much better than the best refinement without learning
do the networks make a coarse DEM, and how much of that is the SAR's.

:func:`run_refinement_study` trains, from one configuration (``sarheight/configs/terrain_refine.yaml``,
parsed by the same reader as ``sarheight fit --config``:
:func:`sarheight.training.configured.configured_run`), the networks of :func:`networks` over
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
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..data.terrain import scene_arrays, scene_files, scene_header
from ..errors import InvalidInputError
from ..terrain.files import open_scene
from ..terrain.methods import NON_LEARNED, baseline_maps, scene_channel
from ..terrain.variables import refinement_classes
from .refinement_methods import DEFAULT_METHODS, Network, ground_label, networks, score_map, scoring_mask
from .refinement_report import plot_refinement, prior_report, summarise, write_table
from .runs import configured_training, read_sealed_json, seeded_runs, trained_steps, write_json

logger = logging.getLogger(__name__)


def held_out_index(paths: Sequence[Path]) -> list[dict[str, Any]]:
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
                from ..training.trained import load_checkpoint

                self.model = load_checkpoint(self.checkpoint, kind="height")
            result = predict_height(scene, [self.model], progress=False)
            self.maps[key] = (result["height"].values,
                              result["height_std"].values if "height_std" in result else None)
        heights, std = self.maps[key]
        reference = scene_channel(scene, self.network.reference)
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
    from ..threads import bar as progress_bar
    from ..training.configured import configured_run

    out = Path(out)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InvalidInputError(f"seeds must be a positive integer, got {seeds!r}")
    train_files = scene_files(train_scenes, "the training scenes")
    test_files = scene_files(test_scenes, "the test scenes")
    index = held_out_index(test_files)
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
    train_steps: dict[str, list[int]] = {}
    bar = progress_bar(total=len(planned) * seeds, desc="refinement study: trainings", unit="training",
                       enabled=progress)
    for network in planned:
        def train(seed: int, run_dir: Path, network: Network = network) -> dict[str, Any]:
            overrides = [*scenes_option, "--data.channels", _list_option(network.channels),
                         "--data.reference", network.reference, "--seed_everything", str(seed)]
            if network.scale is None:
                overrides += ["--data.scale", "null", "--data.score_shadow", str(network.score_shadow).lower(),
                              "--model.class_weights", "null"]
            return configured_training(config, overrides, run_dir, calibration_files=val_files,
                                       calibrate=bool(network.reference), max_epochs=epochs,
                                       max_time=budget["max_time"], accelerator=accelerator, progress=progress,
                                       description=f"{network.name} seed {seed}")

        records = seeded_runs(out / "runs" / network.name, seeds, train, bar.update)
        # Where the runs are, whatever folder the study was started from.
        checkpoints[network.name] = [out / "runs" / network.name / f"seed{seed}" / "last.ckpt" for seed in range(seeds)]
        calibrations[network.name] = [record.get("calibration") for record in records]
        train_seconds[network.name] = [float(record.get("train_seconds", math.nan)) for record in records]
        train_steps[network.name] = [trained_steps(path) for path in checkpoints[network.name]]
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
                   train_seconds=train_seconds, train_steps=train_steps, priors=prior_report(index),
                   command=command or f"run_refinement_study({str(train_scenes)!r}, {str(test_scenes)!r}, "
                                      f"{str(out)!r})")
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
