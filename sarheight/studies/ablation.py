"""The terrain-height ablation: which inputs and which attention modules lower the height
error, against the baselines, on held-out terrain.

For every prior pattern and coarse factor among the scenes, with one fixed training
budget and the same held-out DEMs, :func:`run_ablation` trains

- the four U-Net variants (U-Net, +LSK, +ECA, ASK-UNet) on the geocoded SAR
  (``sar_geocoded``: without reallocation) and on the reconstructed SAR
  (``sar_reconstructed``), each with the priors, their mask and distance map, relative to
  the priors-only interpolation;
- ASK-UNet with the coarse DEM as an extra channel, relative to the coarse DEM corrected
  by the interpolated prior residuals (the best coarse-DEM baseline: the network learns
  what the SAR adds to it);
- ASK-UNet with both passes (the other pass's reconstructed image as an extra channel);

over several seeds, and evaluates them beside the baselines that need no training: the
mean of the priors, the priors-only interpolation, the coarse DEM resampled, and the
coarse DEM corrected by the interpolated prior residuals. Every method is scored on the
same cells of the held-out scenes (the truth known, not in shadow, inside the image, the
SAR of both kinds defined), overall and per terrain class.

The run is resumable: each trained model's scores are written beside its checkpoint,
and a finished one is not trained again.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..data.terrain import TERRAIN_CLASSES, scene_files, scene_header, terrain_classes
from ..errors import InvalidInputError
from ..io import atomic_path
from ..masks import MaskCode
from ..plots import save_figure
from ..priors import interpolate_priors
from ..scores import MapScores
from ..terrain.files import open_scene
from .runs import mean_std, reduction, seeded_runs, train_run, write_json

logger = logging.getLogger(__name__)

#: The four U-Net variants of the ablation, plain first.
VARIANTS = ("unet", "unet_lsk", "unet_eca", "ask_unet")

#: Labels of the variants in tables.
VARIANT_LABELS = {"unet": "U-Net", "unet_lsk": "U-Net + LSK", "unet_eca": "U-Net + ECA", "ask_unet": "ASK-UNet"}

#: The prior channels every model has.
PRIOR_CHANNELS = ("prior_height", "prior_mask", "prior_distance")

#: Classes of the per-class RMSE, and the layover classes together.
CLASSES = (*TERRAIN_CLASSES, "layover")


@dataclass(frozen=True)
class Experiment:
    """One trained configuration of the ablation."""

    model: str
    sar: str  # "reconstructed" or "geocoded"
    extra: str = ""  # "", "coarse" or "both_passes"

    @property
    def name(self) -> str:
        return f"{self.model}_{self.sar}" + (f"_{self.extra}" if self.extra else "")

    @property
    def label(self) -> str:
        extra = {"": "", "coarse": " + coarse DEM", "both_passes": " + both passes"}[self.extra]
        return f"{VARIANT_LABELS[self.model]}, {self.sar} SAR{extra}"

    @property
    def channels(self) -> list[str]:
        # The local incidence angle of the coarse DEM gives the flattened SAR back its
        # terrain radiometry (see sarheight.data.terrain.DEFAULT_CHANNELS).
        channels = [f"sar_{self.sar}", "local_incidence_angle", *PRIOR_CHANNELS]
        if self.extra == "coarse":
            channels.append("coarse_height")
        if self.extra == "both_passes":
            channels.append(f"other_sar_{self.sar}")
        return channels

    @property
    def reference(self) -> str:
        return "coarse_corrected" if self.extra == "coarse" else "prior_interpolated"


def experiments(variants: Sequence[str] = VARIANTS) -> list[Experiment]:
    """The trained configurations: every variant on both SAR kinds, then ASK-UNet with the
    coarse DEM and with both passes."""
    found = [Experiment(model, sar) for sar in ("geocoded", "reconstructed") for model in variants]
    best = "ask_unet" if "ask_unet" in variants else variants[-1]
    found += [Experiment(best, "reconstructed", "coarse"), Experiment(best, "reconstructed", "both_passes")]
    return found


#: The baselines that need no training, by label.
BASELINES = ("prior mean", "priors-only interpolation", "coarse DEM", "coarse DEM + prior residuals")


def coarse_corrected(scene: xr.Dataset) -> np.ndarray:
    """The coarse DEM corrected by the priors: the prior heights' residuals from the coarse
    DEM, interpolated (:func:`~sarheight.priors.interpolate_priors`, linear), added back."""
    if "coarse_corrected" in scene.data_vars:
        return scene["coarse_corrected"].values
    residual = scene[["prior_height", "prior_mask"]].copy()
    residual["prior_height"] = scene["prior_height"] - scene["coarse_height"]
    return (scene["coarse_height"].values + interpolate_priors(residual).values).astype(np.float32)


def _index(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """What the ablation groups the scene files by, read from their headers."""
    found = []
    for path in paths:
        header = scene_header(path)
        found.append({"path": path, "scene": header.name, "dem": header.area,
                      "pattern": str(header.attrs.get("prior_pattern", "given")),
                      "coarse_factor": int(header.attrs.get("coarse_factor", 0)),
                      "has_other": "other_sar_reconstructed" in header.variables,
                      "has_truth": "height" in header.variables})
    return found


def evaluation_mask(scene: xr.Dataset, other_pass: bool) -> np.ndarray:
    """The cells every method is scored on: the truth known, not in shadow, inside the
    image, and the SAR of both kinds (and of the other pass) defined there."""
    mask = (np.isfinite(scene["height"].values) & (scene["shadow"].values == MaskCode.NONE)
            & (scene["layover"].values != MaskCode.OUTSIDE))
    names = ["sar_reconstructed", "sar_geocoded"] + (["other_sar_reconstructed"] if other_pass else [])
    for name in names:
        mask &= np.isfinite(scene[name].values)
    return mask


class Scores:
    """The ablation's scores on held-out scenes (:class:`~sarheight.scores.MapScores` over the
    terrain classes and layover as a whole), a model's NaN cells filled first."""

    def __init__(self) -> None:
        self.scores = MapScores(TERRAIN_CLASSES, groups={"layover": ("active_layover", "passive_layover")})
        self.filled = 0

    def add(self, prediction: np.ndarray, scene: xr.Dataset, mask: np.ndarray, classes: np.ndarray) -> None:
        fallback = ~np.isfinite(prediction) & mask
        if fallback.any():
            # Cells the model cannot see (an input missing) take the priors-only value:
            # every method is scored on the same cells.
            prediction = np.where(fallback, scene["prior_interpolated"].values, prediction)
            self.filled += int(fallback.sum())
        self.scores.add(prediction, scene["height"].values, mask, classes)

    def rmse(self) -> dict[str, float]:
        values = self.scores.compute()
        return {"overall": values["rmse"], **{name: values[f"rmse_{name}"] for name in CLASSES}}


def _baselines(scene: xr.Dataset) -> dict[str, np.ndarray]:
    priors = scene["prior_height"].values
    known = np.isfinite(priors) & (scene["prior_mask"].values > 0)
    return {
        "prior mean": np.full(priors.shape, float(priors[known].mean()), dtype=np.float32),
        "priors-only interpolation": scene["prior_interpolated"].values,
        "coarse DEM": scene["coarse_height"].values,
        "coarse DEM + prior residuals": scene["coarse_corrected"].values,
    }


def run_ablation(
    scenes: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    test_dems: Sequence[str],
    val_dems: Sequence[str] = (),
    seeds: int = 3,
    max_epochs: int = 10,
    tiles_per_epoch: int = 128,
    batch_size: int = 8,
    tile: int = 96,
    base_channels: int = 16,
    depth: int = 4,
    lr: float = 2e-3,
    variants: Sequence[str] = VARIANTS,
    patterns: Sequence[str] | None = None,
    coarse_factors: Sequence[int] | None = None,
    accelerator: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Train and score the ablation; write ``ablation.json``, ``ablation.md`` and
    ``ablation.png`` into ``out`` and return the results.

    Parameters
    ----------
    scenes : a folder of scene files (``sarheight terrain scenes``) or a list of files.
    out : the folder of the runs (``runs/<pattern>_c<factor>/<experiment>/seed<k>/``) and
        the tables.
    test_dems, val_dems : the DEMs (``dem_name`` of the scenes) held out for testing and
        for validation (logged only: the last model of the budget is scored); every
        scene of the others trains.
    seeds : trainings per configuration (mean +- std over them).
    max_epochs, tiles_per_epoch, batch_size, tile : the fixed budget of every training.
    base_channels, depth, lr : the models' width and depth and the learning rate.
    variants : the U-Net variants (default all four).
    patterns, coarse_factors : restrict the grid (default every one among the scenes).
    accelerator : Lightning's ("auto": a GPU where there is one).
    progress : show progress.
    """
    from ..data.terrain import TerrainDataModule
    from ..threads import bar as progress_bar
    from ..training.predict import predict_height
    from ..training.regression import PixelRegression

    out = Path(out)
    if seeds < 1:
        raise InvalidInputError(f"seeds must be at least 1, got {seeds}")
    index = _index(scene_files(scenes, "scenes"))
    dems = sorted({entry["dem"] for entry in index})
    unknown = [dem for dem in (*test_dems, *val_dems) if dem not in dems]
    if unknown or not test_dems:
        raise InvalidInputError(f"test_dems {list(test_dems)} / val_dems {list(val_dems)}: name held-out DEMs among "
                                f"those of the scenes "
                                f"({', '.join(dems)}){'; unknown: ' + str(unknown) if unknown else ''}")
    if set(test_dems) & set(val_dems):
        raise InvalidInputError("a DEM is named for both testing and validation: name each once")
    if not set(dems) - set(test_dems) - set(val_dems):
        raise InvalidInputError("no DEM is left for training: hold out fewer")
    unknown_variants = [v for v in variants if v not in VARIANTS]
    if unknown_variants:
        raise InvalidInputError(f"unknown variants {unknown_variants}: choose among {', '.join(VARIANTS)}")
    cells = sorted({(entry["pattern"], entry["coarse_factor"]) for entry in index
                    if (patterns is None or entry["pattern"] in patterns)
                    and (coarse_factors is None or entry["coarse_factor"] in coarse_factors)})
    if not cells:
        raise InvalidInputError(f"no scene has prior pattern {patterns} and coarse factor {coarse_factors}")
    plan = experiments(variants)
    for pattern, factor in cells:
        members = [e for e in index if e["pattern"] == pattern and e["coarse_factor"] == factor]
        if not any(e["dem"] in test_dems and e["has_truth"] for e in members):
            raise InvalidInputError(f"no held-out scene with a truth for prior pattern {pattern!r}, coarse factor "
                                    f"{factor}: the held-out DEMs need scenes of every pattern and factor")
    out.mkdir(parents=True, exist_ok=True)
    budget = {"max_epochs": max_epochs, "tiles_per_epoch": tiles_per_epoch, "batch_size": batch_size, "tile": tile,
              "base_channels": base_channels, "depth": depth, "lr": lr}
    results: dict[str, Any] = {"budget": budget, "test_dems": list(test_dems), "val_dems": list(val_dems),
                               "train_dems": sorted(set(dems) - set(test_dems) - set(val_dems)), "cells": {}}
    total = len(cells) * len(plan) * seeds
    bar = progress_bar(total=total, desc="ablation", unit="training", enabled=progress)
    for pattern, factor in cells:
        members = [e for e in index if e["pattern"] == pattern and e["coarse_factor"] == factor]
        files = [str(e["path"]) for e in members]
        test = [e for e in members if e["dem"] in test_dems and e["has_truth"]]
        test_scenes = [e["scene"] for e in test]
        val_scenes = [e["scene"] for e in members if e["dem"] in val_dems]
        other_pass = all(e["has_other"] for e in test)
        held_out = []
        for entry in test:
            scene = open_scene(entry["path"])
            classes = terrain_classes(scene["layover"].values, scene["shadow"].values)
            held_out.append((entry, scene, evaluation_mask(scene, other_pass), classes))
        cell_key = f"{pattern}_c{factor}"
        cell: dict[str, Any] = {"pattern": pattern, "coarse_factor": factor, "test_scenes": test_scenes,
                                "cells_scored": int(sum(m.sum() for _, _, m, _ in held_out)),
                                "baselines": {}, "experiments": {}}
        for name in BASELINES:
            scores = Scores()
            for _, scene, mask, classes in held_out:
                scores.add(_baselines(scene)[name], scene, mask, classes)
            cell["baselines"][name] = scores.rmse()
        for experiment in plan:
            if experiment.extra == "both_passes" and not other_pass:
                bar.update(seeds)
                continue

            # Called at once by seeded_runs: the loop's values are bound as defaults all the same.
            def train_and_score(seed: int, run_dir: Path, experiment: Experiment = experiment, files: list[str] = files,
                                val_scenes: list[str] = val_scenes, test_scenes: list[str] = test_scenes,
                                held_out: list[Any] = held_out) -> dict[str, Any]:
                data = TerrainDataModule(files, channels=experiment.channels, reference=experiment.reference,
                                         split="scene", val_scenes=val_scenes, test_scenes=test_scenes,
                                         val_fraction=0.0, test_fraction=0.0, tile=tile,
                                         tiles_per_epoch=tiles_per_epoch, batch_size=batch_size, seed=seed)
                module = PixelRegression(model=experiment.model,
                                         model_options={"base_channels": base_channels, "depth": depth},
                                         in_channels=len(experiment.channels), loss="huber", lr=lr,
                                         scheduler="cosine")
                checkpoint = train_run(module, data, run_dir, max_epochs=max_epochs,
                                       steps_per_epoch=tiles_per_epoch // batch_size, accelerator=accelerator,
                                       validate=bool(val_scenes), progress=progress,
                                       description=f"{experiment.name} seed {seed}").last
                scores = Scores()
                for _, scene, mask, classes in held_out:
                    predicted = predict_height(scene, checkpoint, progress=False)["height"].values
                    scores.add(predicted, scene, mask, classes)
                return {**scores.rmse(), "filled_cells": scores.filled}

            runs = seeded_runs(out / "runs" / cell_key / experiment.name, seeds, train_and_score, bar.update)
            cell["experiments"][experiment.name] = {"label": experiment.label, "model": experiment.model,
                                                    "sar": experiment.sar, "extra": experiment.extra,
                                                    "channels": experiment.channels,
                                                    "reference": experiment.reference,
                                                    "runs": runs, **mean_std(runs, ("overall", *CLASSES))}
        cell["reductions"] = _reductions(cell, variants)
        results["cells"][cell_key] = cell
    bar.close()
    write_json(results, out / "ablation.json")
    write_table(results, out / "ablation.md")
    plot_ablation(results, out / "ablation.png")
    return results


def _reductions(cell: dict[str, Any], variants: Sequence[str]) -> dict[str, Any]:
    experiments_ = cell["experiments"]
    found: dict[str, Any] = {"reconstructed_vs_geocoded": {}, "ask_unet_vs_unet": {}}
    for model in variants:
        rec, geo = experiments_.get(f"{model}_reconstructed"), experiments_.get(f"{model}_geocoded")
        if rec and geo:
            found["reconstructed_vs_geocoded"][model] = {
                name: reduction(rec["mean"][name], geo["mean"][name]) for name in ("overall", "layover")}
    for sar in ("reconstructed", "geocoded"):
        ask, plain = experiments_.get(f"ask_unet_{sar}"), experiments_.get(f"unet_{sar}")
        if ask and plain:
            found["ask_unet_vs_unet"][sar] = {name: reduction(ask["mean"][name], plain["mean"][name])
                                              for name in ("overall", "layover")}
    priors_only = cell["baselines"]["priors-only interpolation"]["overall"]
    if "ask_unet_reconstructed" in experiments_:
        found["ask_unet_reconstructed_vs_priors_only"] = reduction(
            experiments_["ask_unet_reconstructed"]["mean"]["overall"], priors_only)
    coarse = [name for name in experiments_ if name.endswith("_coarse")]
    if coarse:
        best = min(cell["baselines"][name]["overall"] for name in ("coarse DEM", "coarse DEM + prior residuals"))
        found["coarse_channel_vs_best_coarse_baseline"] = reduction(experiments_[coarse[0]]["mean"]["overall"], best)
    return found


def _cell_text(mean: float, std: float | None = None) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"


def write_table(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """The ablation as Markdown: per prior pattern and coarse factor, RMSE (m) of every
    method overall and per terrain class (mean ± std over seeds), and the reductions."""
    budget = results["budget"]
    lines = ["# Terrain-height ablation", "",
             f"Held-out DEMs: {', '.join(results['test_dems'])}; training DEMs: {', '.join(results['train_dems'])}"
             + (f"; validation: {', '.join(results['val_dems'])}" if results["val_dems"] else "") + ".",
             "Budget of every training: " + ", ".join(f"{k} {v}" for k, v in budget.items()) + ".",
             "RMSE in metres on the held-out scenes' scored cells (truth known, not in shadow, inside the image); "
             "trained models: mean ± std over seeds.", ""]
    columns = ("overall", *CLASSES)
    for cell in results["cells"].values():
        lines += [f"## Priors {cell['pattern']}, coarse DEM {cell['coarse_factor']}x ({cell['cells_scored']} cells)",
                  "",
                  "| method | " + " | ".join(c.replace("_", " ") for c in columns) + " |",
                  "|---" * (len(columns) + 1) + "|"]
        for name, rmse in cell["baselines"].items():
            lines.append(f"| {name} | " + " | ".join(_cell_text(rmse[c]) for c in columns) + " |")
        for experiment in cell["experiments"].values():
            seeds = len(experiment["runs"])
            lines.append(f"| {experiment['label']} ({seeds} seed{'s' * (seeds > 1)}) | " + " | ".join(
                _cell_text(experiment["mean"][c], experiment["std"][c]) for c in columns) + " |")
        reductions = cell["reductions"]
        lines += ["", "Relative RMSE reductions (%, overall / in layover):", ""]
        for model, figures in reductions["reconstructed_vs_geocoded"].items():
            lines.append(f"- reconstructed vs geocoded SAR, {VARIANT_LABELS[model]}: "
                         f"{figures['overall']:.1f} / {figures['layover']:.1f}")
        for sar, figures in reductions["ask_unet_vs_unet"].items():
            lines.append(f"- ASK-UNet vs U-Net, {sar} SAR: {figures['overall']:.1f} / {figures['layover']:.1f}")
        if "ask_unet_reconstructed_vs_priors_only" in reductions:
            lines.append(f"- ASK-UNet (reconstructed) vs priors-only interpolation: "
                         f"{reductions['ask_unet_reconstructed_vs_priors_only']:.1f} (overall)")
        if "coarse_channel_vs_best_coarse_baseline" in reductions:
            lines.append(f"- with the coarse DEM channel vs the best coarse-DEM baseline: "
                         f"{reductions['coarse_channel_vs_best_coarse_baseline']:.1f} (overall)")
        lines.append("")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines))
    return path


def results_section(results: dict[str, Any]) -> str:
    """The ablation as the documents show it: one table of every method (rows) in every
    prior pattern and coarse factor (columns), RMSE (m) overall (± std over seeds) / in
    layover, then each cell's relative reductions; every number read from ``results``."""
    cells = list(results["cells"].values())
    header = [f"{cell['pattern']}, {cell['coarse_factor']}x" for cell in cells]
    methods = list(dict.fromkeys([*(name for cell in cells for name in cell["baselines"]),
                                  *(experiment["label"] for cell in cells
                                    for experiment in cell["experiments"].values())]))
    lines = ["| method | " + " | ".join(header) + " |", "|---" * (len(header) + 1) + "|"]
    for method in methods:
        row = []
        for cell in cells:
            experiment = next((e for e in cell["experiments"].values() if e["label"] == method), None)
            if method in cell["baselines"]:
                figures = cell["baselines"][method]
                row.append(f"{_cell_text(figures['overall'])} / {figures['layover']:.0f}")
            elif experiment is not None:
                row.append(f"{_cell_text(experiment['mean']['overall'], experiment['std']['overall'])} / "
                           f"{experiment['mean']['layover']:.0f}")
            else:
                row.append("–")
        lines.append(f"| {method} | " + " | ".join(row) + " |")
    lines += ["", "Relative RMSE reductions (%, overall / in layover; positive: the first named lower):", ""]
    for title, cell in zip(header, cells, strict=True):
        reductions = cell["reductions"]
        parts = ["reconstructed vs geocoded SAR: " + ", ".join(
            f"{VARIANT_LABELS[model]} {figures['overall']:+.1f} / {figures['layover']:+.1f}"
            for model, figures in reductions["reconstructed_vs_geocoded"].items())]
        parts += [f"ASK-UNet vs U-Net ({sar} SAR) {figures['overall']:+.1f} / {figures['layover']:+.1f}"
                  for sar, figures in reductions["ask_unet_vs_unet"].items()]
        if "ask_unet_reconstructed_vs_priors_only" in reductions:
            parts.append("ASK-UNet (reconstructed) vs the priors-only interpolation "
                         f"{reductions['ask_unet_reconstructed_vs_priors_only']:+.1f}")
        if "coarse_channel_vs_best_coarse_baseline" in reductions:
            parts.append("with the coarse DEM channel vs the best coarse-DEM baseline "
                         f"{reductions['coarse_channel_vs_best_coarse_baseline']:+.1f}")
        lines.append(f"- {title}: " + "; ".join(parts) + ".")
    return "\n".join(lines)


def plot_ablation(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Bars of the overall and layover RMSE of every method, one panel per pattern and factor."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = list(results["cells"].values())
    fig, axes = plt.subplots(len(cells), 1, figsize=(11, 4.2 * len(cells)), squeeze=False)
    for ax, cell in zip(axes[:, 0], cells, strict=True):
        labels, overall, layover, errors = [], [], [], []
        for name, rmse in cell["baselines"].items():
            labels.append(name)
            overall.append(rmse["overall"])
            layover.append(rmse["layover"])
            errors.append(0.0)
        for experiment in cell["experiments"].values():
            labels.append(experiment["label"].replace(", ", "\n"))
            overall.append(experiment["mean"]["overall"])
            layover.append(experiment["mean"]["layover"])
            errors.append(experiment["std"]["overall"])
        x = np.arange(len(labels))
        ax.bar(x - 0.2, overall, 0.4, yerr=errors, label="overall", color="tab:blue")
        ax.bar(x + 0.2, layover, 0.4, label="in layover", color="tab:orange")
        ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("RMSE (m)")
        ax.set_title(f"priors {cell['pattern']}, coarse DEM {cell['coarse_factor']}x", fontsize=10)
        ax.legend(fontsize=8)
    fig.suptitle("Terrain height on held-out DEMs: baselines and trained models", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)
