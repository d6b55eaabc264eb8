"""The building-height comparison: MBHR-Net (Sentinel-1 + Sentinel-2) against a
Sentinel-1-only and a Sentinel-2-only network and against predicting the mean height,
on cities held out from training.

These are the MBHR-Net paper's "first experiments" (one sensor, then both). Every
trained network has the same encoder depth, decoder, loss, optimiser and budget; the
single-sensor networks are MBHR-Net with the other sensor's channels set to 0 (one
ResNet-50 encoder, nothing to fuse). Each is trained ``seeds`` times; the held-out
cities are predicted as a user would (:func:`~sarheight.training.predict.predict_buildings`:
the mean over the months of overlapping, blended tiles) and scored on the same cells for
every method: the height is known and at least one month has every sensor's inputs.
Figures: RMSE, MAE, R², the IoU of footprints (cells above the threshold, 1 m) and the
RMSE of each height class (:data:`~sarheight.data.buildings.BUILDING_CLASSES`).

The baseline needs no training: the mean height of the training cities' cells (every
cell one height, so its IoU is the share of building cells when the mean exceeds the
threshold, 0 otherwise).

The run is resumable: each trained model's scores are written beside its checkpoint,
and a finished one is not trained again.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..data.buildings import BUILDING_CLASSES, building_classes, read_city, read_height
from ..errors import InvalidInputError
from ..io import atomic_path
from ..plots import save_figure
from ..scores import MapScores
from .runs import mean_std, reduction, seeded_runs, train_run, write_json

__all__ = ["COMPARISON_FIGURES", "MEAN_BASELINE", "NETWORKS", "Network", "plot_building_comparison",
           "run_building_comparison",
           "score_heights", "write_building_table"]


@dataclass(frozen=True)
class Network:
    """One trained configuration of the comparison."""

    name: str
    label: str
    sensors: tuple[str, ...]


#: The trained networks, both sensors first.
NETWORKS = (Network("mbhr_net", "MBHR-Net (S1 + S2)", ("s1", "s2")),
            Network("s1_only", "S1-only encoder", ("s1",)),
            Network("s2_only", "S2-only encoder", ("s2",)))

#: The figures of every method, in the tables' order.
COMPARISON_FIGURES = ("rmse", "mae", "r2", "iou", *(f"rmse_{name}" for name in BUILDING_CLASSES))

#: The baseline's name.
MEAN_BASELINE = "mean height of the training cities"


def score_heights(predictions: Sequence[np.ndarray], truths: Sequence[np.ndarray], masks: Sequence[np.ndarray], *,
                  threshold_m: float = 1.0) -> dict[str, float]:
    """RMSE, MAE, R², footprint IoU and the RMSE per height class (m) of predicted height
    maps against the truth over the cells of ``masks``, all maps together
    (:class:`~sarheight.scores.MapScores`)."""
    scores = MapScores(BUILDING_CLASSES, threshold_m=threshold_m)
    for prediction, truth, mask in zip(predictions, truths, masks, strict=True):
        scores.add(prediction, truth, mask, building_classes(np.where(mask, truth, 0.0), threshold_m))
    return scores.compute()


def run_building_comparison(
    root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    test_cities: Sequence[str],
    val_cities: Sequence[str] = (),
    seeds: int = 3,
    max_epochs: int = 10,
    tiles_per_epoch: int = 256,
    batch_size: int = 8,
    tile: int = 64,
    stages: int = 2,
    decoder_channels: Sequence[int] | None = (64, 32, 16),
    fusion: str = "concat",
    lr: float = 1e-3,
    threshold_m: float = 1.0,
    networks: Sequence[str] | None = None,
    accelerator: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Train and score the comparison; write ``comparison.json``, ``comparison.md`` and
    ``comparison.png`` into ``out`` and return the results.

    Parameters
    ----------
    root : the folder of city folders (:mod:`sarheight.data.buildings`).
    out : the folder of the runs (``runs/<network>/seed<k>/``) and the tables.
    test_cities, val_cities : the cities held out for testing and for validation (logged
        only: the last model of the budget is scored); every other city trains.
    seeds : trainings per network (mean ± std over them).
    max_epochs, tiles_per_epoch, batch_size, tile : the fixed budget of every training.
    stages, decoder_channels, fusion : MBHR-Net's encoder stages, decoder and fusion
        (the CPU-sized defaults of ``sarheight/configs/buildings_mbhr.yaml``).
    lr : Adam's learning rate (cosine schedule over the budget).
    threshold_m : the footprint threshold of the IoU and the height classes (m).
    networks : restrict to these of :data:`NETWORKS` by name (default all).
    accelerator : Lightning's ("auto": a GPU where there is one).
    progress : show progress.
    """
    from ..data.buildings import BuildingHeightDataModule
    from ..threads import bar as progress_bar
    from ..training.predict import predict_buildings
    from ..training.regression import PixelRegression

    root, out = Path(root), Path(out)
    if seeds < 1:
        raise InvalidInputError(f"seeds must be at least 1, got {seeds}")
    names = sorted(path.name for path in root.iterdir() if path.is_dir()) if root.is_dir() else []
    unknown = [name for name in (*test_cities, *val_cities) if name not in names]
    if unknown or not test_cities:
        raise InvalidInputError(f"test_cities {list(test_cities)} / val_cities {list(val_cities)}: name held-out "
                                f"cities among the folders of {str(root)!r} ({', '.join(names) or 'none'})"
                                + (f"; unknown: {unknown}" if unknown else ""))
    if set(test_cities) & set(val_cities):
        raise InvalidInputError("a city is named for both testing and validation: name each once")
    train_cities = [name for name in names if name not in (*test_cities, *val_cities)]
    if not train_cities:
        raise InvalidInputError("no city is left for training: hold out fewer")
    known = {network.name: network for network in NETWORKS}
    chosen = list(networks) if networks is not None else list(known)
    if not chosen or any(name not in known for name in chosen):
        raise InvalidInputError(f"networks {chosen}: choose among {', '.join(known)}")

    # Every method is scored on the same cells: the height known, and a month with all inputs.
    held_out = []
    for name in test_cities:
        city = read_city(root / name)
        scored = np.logical_or.reduce([city.loss_mask(month) for month in range(len(city.months))])
        held_out.append((name, city.height.astype(np.float64), scored))
    training_heights = np.concatenate([read_height(root / name).ravel() for name in train_cities])
    mean_height = float(np.nanmean(training_heights))

    out.mkdir(parents=True, exist_ok=True)
    budget = {"max_epochs": max_epochs, "tiles_per_epoch": tiles_per_epoch, "batch_size": batch_size, "tile": tile,
              "stages": stages, "decoder_channels": list(decoder_channels) if decoder_channels else None,
              "fusion": fusion, "lr": lr}
    truths = [truth for _, truth, _ in held_out]
    masks = [mask for _, _, mask in held_out]
    results: dict[str, Any] = {
        "budget": budget, "seeds": seeds, "train_cities": train_cities, "val_cities": list(val_cities),
        "test_cities": list(test_cities), "cells_scored": int(sum(mask.sum() for mask in masks)),
        "threshold_m": threshold_m,
        "baselines": {MEAN_BASELINE: {**score_heights([np.full(t.shape, mean_height) for t in truths], truths, masks,
                                                      threshold_m=threshold_m), "height_m": mean_height}},
        "networks": {},
    }
    model_options: dict[str, Any] = {"fusion": fusion, "stages": stages}
    if decoder_channels:
        model_options["decoder_channels"] = list(decoder_channels)
    bar = progress_bar(total=len(chosen) * seeds, desc="building-height comparison", unit="training",
                       enabled=progress)
    for network in (known[name] for name in chosen):
        def train_and_score(seed: int, run_dir: Path, network: Network = network) -> dict[str, Any]:
            data = BuildingHeightDataModule(str(root), cities=[*train_cities, *val_cities, *test_cities],
                                            split="city", val_cities=list(val_cities),
                                            test_cities=list(test_cities), val_fraction=0.0, test_fraction=0.0,
                                            tile=tile, tiles_per_epoch=tiles_per_epoch, batch_size=batch_size,
                                            seed=seed, height_threshold_m=threshold_m,
                                            sensors=list(network.sensors))
            module = PixelRegression(model="mbhr_net", model_options=model_options, in_channels=data.in_channels,
                                     loss="mbhr", lr=lr, weight_decay=0.0, scheduler="cosine")
            checkpoint = train_run(module, data, run_dir, max_epochs=max_epochs,
                                   steps_per_epoch=tiles_per_epoch // batch_size, accelerator=accelerator,
                                   validate=bool(val_cities), progress=progress,
                                   description=f"{network.name} seed {seed}").last
            predictions = [predict_buildings(root / name, checkpoint, tile=tile, overlap=tile // 4,
                                             progress=False)["height"].values.astype(np.float64)
                           for name, _, _ in held_out]
            return score_heights(predictions, truths, masks, threshold_m=threshold_m)

        runs = seeded_runs(out / "runs" / network.name, seeds, train_and_score, bar.update)
        results["networks"][network.name] = {"label": network.label, "sensors": list(network.sensors), "runs": runs,
                                             **mean_std(runs, COMPARISON_FIGURES)}
    bar.close()
    fused = results["networks"].get("mbhr_net")
    if fused:
        results["reductions"] = {
            name: reduction(fused["mean"]["rmse"], entry["mean"]["rmse"])
            for name, entry in results["networks"].items() if name != "mbhr_net"}
        results["reductions"][MEAN_BASELINE] = reduction(fused["mean"]["rmse"],
                                                         results["baselines"][MEAN_BASELINE]["rmse"])
    write_json(results, out / "comparison.json")
    write_building_table(results, out / "comparison.md")
    plot_building_comparison(results, root, out / "comparison.png")
    return results


def _text(mean: float, std: float | None = None, digits: int = 2) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


def write_building_table(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """The comparison as Markdown: every method's figures on the held-out cities (trained
    networks: mean ± std over seeds) and MBHR-Net's RMSE reductions."""
    budget = results["budget"]
    columns = COMPARISON_FIGURES
    headers = {"rmse": "RMSE (m)", "mae": "MAE (m)", "r2": "R²", "iou": "IoU"}
    lines = ["# Building-height comparison", "",
             f"Held-out cities: {', '.join(results['test_cities'])}; training cities: "
             f"{', '.join(results['train_cities'])}"
             + (f"; validation: {', '.join(results['val_cities'])}" if results["val_cities"] else "") + ".",
             "Budget of every training: " + ", ".join(f"{k} {v}" for k, v in budget.items()) + ".",
             f"Scored on {results['cells_scored']} cells (height known, a month with every input); prediction: "
             f"the mean over months; footprints above {results['threshold_m']} m; trained networks: mean ± std over "
             f"{results['seeds']} seed{'s' * (results['seeds'] > 1)}.", "",
             "| method | " + " | ".join(headers.get(c, c.replace("rmse_", "RMSE ").replace("_", "-") + " (m)")
                                      for c in columns) + " |",
             "|---" * (len(columns) + 1) + "|"]
    for name, figures in results["baselines"].items():
        lines.append(f"| {name} ({figures['height_m']:.2f} m) | " + " | ".join(_text(figures[c]) for c in columns)
                     + " |")
    for entry in results["networks"].values():
        lines.append(f"| {entry['label']} | " + " | ".join(_text(entry["mean"][c], entry["std"][c]) for c in columns)
                     + " |")
    if results.get("reductions"):
        lines += ["", "MBHR-Net's RMSE reduction against: " + "; ".join(
            f"{results['networks'][name]['label'] if name in results['networks'] else name} {value:.1f} %"
            for name, value in results["reductions"].items()) + "."]
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def plot_building_comparison(results: dict[str, Any], root: str | os.PathLike[str],
                             path: str | os.PathLike[str]) -> Path:
    """Bars of every method's RMSE and IoU, and the maps of the first held-out city: the
    truth and each network's prediction (first seed), on one colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..training.predict import predict_buildings

    city = results["test_cities"][0]
    truth = read_height(Path(root) / city)
    maps = [("truth", truth)]
    for name, entry in results["networks"].items():
        checkpoint = Path(path).parent / "runs" / name / "seed0" / "last.ckpt"
        if checkpoint.is_file():
            tile = results["budget"]["tile"]
            maps.append((entry["label"], predict_buildings(Path(root) / city, checkpoint, tile=tile,
                                                           overlap=tile // 4, progress=False)["height"].values))
    fig = plt.figure(figsize=(4 * max(len(maps), 2), 7.6))
    grid = fig.add_gridspec(2, max(len(maps), 2), height_ratios=(1, 1.2))
    labels, rmse, rmse_std, iou, iou_std = [], [], [], [], []
    for name, figures in results["baselines"].items():
        labels.append(name.replace(" of the training cities", ""))
        rmse.append(figures["rmse"])
        iou.append(figures["iou"] if math.isfinite(figures["iou"]) else 0.0)
        rmse_std.append(0.0)
        iou_std.append(0.0)
    for entry in results["networks"].values():
        labels.append(entry["label"])
        rmse.append(entry["mean"]["rmse"])
        rmse_std.append(entry["std"]["rmse"])
        iou.append(entry["mean"]["iou"])
        iou_std.append(entry["std"]["iou"])
    x = np.arange(len(labels))
    half = max(len(maps), 2) // 2
    for ax, values, errors, title in ((fig.add_subplot(grid[0, :half]), rmse, rmse_std, "RMSE (m)"),
                                      (fig.add_subplot(grid[0, half:]), iou, iou_std, "footprint IoU")):
        ax.bar(x, values, yerr=errors, color=["tab:gray"] * len(results["baselines"])
               + ["tab:blue"] * len(results["networks"]))
        ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
    top = float(np.nanpercentile(truth, 99.5)) or 1.0
    for column, (title, values) in enumerate(maps):
        ax = fig.add_subplot(grid[1, column])
        image = ax.imshow(values, cmap="viridis", vmin=0, vmax=top, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    fig.colorbar(image, ax=fig.axes[-len(maps):], shrink=0.8, label="building height (m)")
    fig.suptitle(f"Building height on held-out cities ({', '.join(results['test_cities'])}); maps: {city}",
                 fontsize=11)
    return save_figure(fig, path, dpi=90)

