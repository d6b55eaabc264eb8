"""The Local Climate Zone fusion study: where should Sentinel-1 and Sentinel-2 meet in a
classifier of So2Sat LCZ42 patches, and in which groups?

:func:`run_sweep` trains :class:`~sarheight.training.classification.LCZClassification`
for every configuration of the grid over several seeds and scores it on the test split:

- the single-sensor baselines ``sar`` and ``optical`` (one branch: no fusion stage);
- for each multi-branch split (``sar+optical``, ``physical``) the fusion stages 0-5
  (feature concatenation after block s), stage 6 (the dependent sum: the branches'
  probabilities summed, trained together) and the independent sum (each branch trained
  as a network of its own on its inputs, the probabilities of the trained networks
  summed; :func:`combine_checkpoints`, ``sarheight lcz combine``).

Each training runs as in the paper: Adam 1e-3, class-weighted cross-entropy, up to
``max_epochs`` (100) epochs, stopped when the validation overall accuracy has not
improved for ``patience`` (25) epochs; the checkpoint of the best validation overall
accuracy is scored on the test split (OA, AA, Cohen's kappa, per-class accuracy and
confusion matrix).

The run is resumable: a finished training leaves its ``scores.json`` beside its
checkpoints and is not trained again; an unfinished one resumes from its ``last.ckpt``.
Outputs in ``out``: ``runs/<configuration>/seed<k>/`` (checkpoints, metrics.csv,
scores.json), ``lcz_sweep.json`` and ``lcz_sweep.md`` (mean +- std over seeds),
``lcz_sweep.png`` (accuracy against the fusion stage, as the paper's Fig. 4) and
``confusion.png`` (the confusion matrix of the best configuration, summed over seeds).

Public names
------------
Configuration, configurations, run_sweep, combine_checkpoints, write_sweep_table,
plot_sweep, plot_confusion.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import InvalidInputError
from ..io import atomic_path
from ..models.fusion import GROUPS, SPLITS, STAGES, log_summed_probabilities
from ..plots import save_figure
from ..training.classification import SCORES, classification_scores
from ..training.trained import load_checkpoint
from .runs import BestCheckpoint, mean_std, quiet_lightning, seeded_runs, train_run, write_json

logger = logging.getLogger(__name__)

__all__ = ["Configuration", "combine_checkpoints", "configurations", "plot_confusion", "plot_sweep",
           "run_sweep", "write_sweep_table"]

#: The splits of one branch: the single-sensor baselines.
SINGLE = ("sar", "optical")

#: The members of each multi-branch split's independent sum: networks of one input group.
MEMBERS = {"sar+optical": SINGLE, "physical": tuple(GROUPS)}


@dataclass(frozen=True)
class Configuration:
    """One row of the study: a split and its fusion stage (``None`` for a network of one
    branch), or the independent sum of the split's members."""

    split: str
    stage: int | None = None
    independent: bool = False

    @property
    def name(self) -> str:
        """The configuration's folder and key: ``sar``, ``rgb``, ``sar+optical_stage3``,
        ``physical_independent_sum``."""
        if self.independent:
            return f"{self.split}_independent_sum"
        return self.split if self.stage is None else f"{self.split}_stage{self.stage}"

    @property
    def label(self) -> str:
        """The row's label in tables."""
        names = {"sar": "SAR only", "optical": "optical only", "sar+optical": "SAR | optical",
                 "physical": "physical groups"}
        split = names.get(self.split, self.split)
        if self.independent:
            return f"{split}, independent sum"
        if self.stage is None:
            return split
        return f"{split}, dependent sum" if self.stage == 6 else f"{split}, fusion after stage {self.stage}"


def configurations(splits: Sequence[str] = tuple(SPLITS), stages: Sequence[int] = STAGES) -> list[Configuration]:
    """The rows of the study for ``splits`` and ``stages``: one row per single-branch
    split, one per stage for the others, and with stage 6 their independent sum too."""
    unknown = [split for split in splits if split not in SPLITS]
    if unknown or not splits:
        raise InvalidInputError(f"splits {list(splits)}: give some of {', '.join(SPLITS)}")
    bad = [stage for stage in stages if isinstance(stage, bool) or stage not in STAGES]
    if bad or not stages:
        raise InvalidInputError(f"stages {list(stages)}: give some of 0-6")
    rows: list[Configuration] = []
    for split in dict.fromkeys(splits):
        if split in SINGLE:
            rows.append(Configuration(split))
            continue
        rows += [Configuration(split, stage) for stage in sorted(set(stages))]
        if 6 in stages:
            rows.append(Configuration(split, 6, independent=True))
    return rows


def parse_stages(text: str) -> list[int]:
    """Stages from the command line's ``0-6``, ``3`` or ``0,3,6``."""
    stages: list[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            stages += range(int(first), int(last or first) + 1)
    except ValueError:
        raise InvalidInputError(f"--stages {text!r}: give stages as 0-6, 3 or 0,3,6") from None
    return stages


def _train(configuration: Configuration, data: Any, run_dir: Path, *, max_epochs: int, patience: int,
           lr: float, widths: Sequence[int], accelerator: str, devices: int = 1, progress: bool = False,
           description: str = "training") -> dict[str, Any]:
    """Fit one network into ``run_dir`` (resuming from its ``last.ckpt``), score its best
    checkpoint on the test split; with ``progress``, a bar over the training's steps."""
    import lightning as L

    from ..data.so2sat import LCZ_CLASSES
    from ..training.checkpoints import AtomicCheckpointIO
    from ..training.classification import LCZClassification

    module = LCZClassification(configuration.split, configuration.stage or 0, num_classes=len(LCZ_CLASSES),
                               lr=lr, widths=tuple(widths), class_names=list(LCZ_CLASSES))
    # The same run helper as the other studies: resumable, the best by validation OA kept,
    # early stopping.
    # Several processes by spawning: "ddp" would start the whole sweep again in each.
    run = train_run(module, data, run_dir, max_epochs=max_epochs, accelerator=accelerator, progress=progress,
                    description=description, best=BestCheckpoint("val_oa", "max", patience), devices=devices,
                    strategy="ddp_spawn" if devices > 1 else "auto")
    with quiet_lightning(), warnings.catch_warnings():
        # The tester needs none of the training's callbacks that the checkpoint names.
        warnings.filterwarnings("ignore", message=r"Be aware that when using `ckpt_path`")
        tester = L.Trainer(accelerator=accelerator, devices=1, logger=False, plugins=[AtomicCheckpointIO()],
                           enable_progress_bar=False, enable_model_summary=False)
        tester.test(module, data, ckpt_path=str(run.best), verbose=False)
    scores = dict(module.scores["test"])
    scores.update(best_val_oa=run.best_score if run.best_score is not None else float("nan"),
                  epochs=run.epochs, checkpoint=run.best.name)
    return scores


def combine_checkpoints(checkpoints: Sequence[str | os.PathLike[str]], loader: Any,
                        accelerator: str = "cpu") -> dict[str, Any]:
    """Score the sum of the class probabilities of separately trained classifiers (an
    independent sum) on the batches of ``loader``.

    Parameters
    ----------
    checkpoints : checkpoints of :class:`~sarheight.training.classification.LCZClassification`
        (each with its own input group, statistics and classes; the classes must agree).
    loader : batches of ``(patches, labels)``, raw 18-channel patches.
    accelerator : ``"cpu"``, ``"cuda"`` (or ``"gpu"``) or ``"auto"`` (a GPU where there is one).

    Returns
    -------
    :func:`~sarheight.training.classification.classification_scores` of the summed
    probabilities' arg-max, with ``confusion`` (the matrix) and ``members`` (the checkpoints).
    """
    if not checkpoints:
        raise InvalidInputError("combine needs at least one checkpoint")
    if accelerator in ("cuda", "gpu") and not torch.cuda.is_available():
        raise InvalidInputError(f"device {accelerator!r} was asked for, but torch sees no CUDA device here: give cpu "
                                "(or auto), or run where a GPU is")
    device = torch.device("cuda" if accelerator in ("auto", "cuda", "gpu") and torch.cuda.is_available() else "cpu")
    models = [load_checkpoint(path, device=device, kind="lcz") for path in checkpoints]
    classes = {model.num_classes for model in models}
    if len(classes) != 1:
        raise InvalidInputError(f"the checkpoints classify into different numbers of classes ({sorted(classes)}): "
                                "combine classifiers of one study")
    (num_classes,) = classes
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.long)
    with torch.no_grad():
        for patches, labels in loader:
            patches = patches.to(device)
            predicted = log_summed_probabilities([model(patches) for model in models]).argmax(1).cpu()
            matrix += torch.bincount(labels.long() * num_classes + predicted,
                                     minlength=num_classes**2).reshape(num_classes, num_classes)
    return {**classification_scores(matrix), "confusion": matrix.tolist(),
            "members": [os.fspath(path) for path in checkpoints]}


def run_sweep(
    data_root: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    splits: Sequence[str] = tuple(SPLITS),
    stages: Sequence[int] = STAGES,
    seeds: int = 5,
    setting: str = "train-val-test",
    max_epochs: int = 100,
    patience: int = 25,
    batch_size: int = 32,
    lr: float = 1e-3,
    widths: Sequence[int] | None = None,
    limit: int | None = None,
    num_workers: int = 0,
    accelerator: str = "auto",
    devices: int = 1,
    progress: bool = True,
) -> dict[str, Any]:
    """Train and score the fusion study; write the table, the figures and the JSON into
    ``out`` and return the results.

    Parameters
    ----------
    data_root : the folder of ``training.h5``, ``validation.h5``, ``testing.h5``.
    out : the folder of the runs and the results.
    splits, stages : the grid (:func:`configurations`).
    seeds : trainings per configuration (mean +- std over them); seed k also draws the
        80/10/10 partition in that setting.
    setting : ``"train-val-test"`` (the three files: test cities never seen) or
        ``"80-10-10"`` (parts of the training file: the paper's second setting).
    max_epochs, patience : the training budget and early stopping on validation OA.
    batch_size, lr, widths : the training's batch, Adam's rate, the networks' widths.
    limit : at most this many patches per split (quick runs; ``None``: all).
    num_workers : data-loading processes.
    accelerator : Lightning's (``"auto"``: a GPU where there is one).
    devices : processes per training (GPUs, or CPU processes over gloo); more than one
        trains with DDP: each process draws batches of ``batch_size`` from its share of
        the patches (the batch of one step is ``devices * batch_size``).
    progress : show a progress bar over the trainings.
    """
    from ..data.so2sat import LCZ_CLASSES, So2SatDataModule
    from ..models.fusion import WIDTHS
    from ..threads import bar as progress_bar

    rows = configurations(splits, stages)
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InvalidInputError(f"seeds must be an integer >= 1, got {seeds!r}")
    for name, value, minimum in (("max_epochs", max_epochs, 1), ("patience", patience, 1),
                                 ("batch_size", batch_size, 1), ("devices", devices, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise InvalidInputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    widths = tuple(widths or WIDTHS)
    out = Path(out)
    # The data of every seed, checked (files, layout) before any training.
    data = {seed: So2SatDataModule(os.fspath(data_root), setting=setting, seed=seed, batch_size=batch_size,
                                   num_workers=num_workers, limit=limit) for seed in range(seeds)}
    data[0].setup()
    trained = {row.name: row for row in rows if not row.independent}
    for row in rows:
        if row.independent:
            trained.update({member: Configuration(member) for member in MEMBERS[row.split]})
    total = seeds * (len(trained) + sum(row.independent for row in rows))
    bar = progress_bar(total=total, desc="LCZ sweep", unit="run", enabled=progress)
    options = {"max_epochs": max_epochs, "patience": patience, "lr": lr, "widths": widths,
               "accelerator": accelerator, "devices": devices}

    def train(configuration: Configuration) -> Callable[[int, Path], dict[str, Any]]:
        def train_and_score(seed: int, run_dir: Path) -> dict[str, Any]:
            bar.set_postfix_str(f"{configuration.name} seed {seed}")
            data[seed].setup()
            return _train(configuration, data[seed], run_dir, progress=progress,
                          description=f"{configuration.name} seed {seed}", **options)
        return train_and_score

    runs = {name: seeded_runs(out / "runs" / name, seeds, train(configuration), bar.update)
            for name, configuration in trained.items()}
    for row in rows:
        if not row.independent:
            continue

        def independent(seed: int, run_dir: Path, row: Configuration = row) -> dict[str, Any]:
            bar.set_postfix_str(f"{row.name} seed {seed}")
            run_dir.mkdir(parents=True, exist_ok=True)
            data[seed].setup()
            members = [out / "runs" / member / f"seed{seed}" / runs[member][seed]["checkpoint"]
                       for member in MEMBERS[row.split]]
            return combine_checkpoints(members, data[seed].test_dataloader(), accelerator=accelerator)

        runs[row.name] = seeded_runs(out / "runs" / row.name, seeds, independent, bar.update)
    bar.close()
    results: dict[str, Any] = {
        "setting": setting, "seeds": seeds, "classes": list(LCZ_CLASSES),
        "options": {**options, "widths": list(widths), "batch_size": batch_size, "limit": limit},
        "rows": {},
    }
    for row in rows:
        records = runs[row.name]
        summary = mean_std(records, SCORES)
        per_class = np.nanmean(np.array([r["per_class"] for r in records], dtype=float), axis=0)
        results["rows"][row.name] = {
            "label": row.label, "split": row.split, "stage": row.stage, "independent": row.independent,
            **summary, "per_class_mean": [float(v) for v in per_class],
            "confusion_sum": np.sum([r["confusion"] for r in records], axis=0).tolist(),
            "runs": [{key: r[key] for key in ("seed", *SCORES, "per_class") if key in r} for r in records],
        }
    write_json(results, out / "lcz_sweep.json")
    write_sweep_table(results, out / "lcz_sweep.md")
    plot_sweep(results, out / "lcz_sweep.png")
    best = max(results["rows"].values(), key=lambda row: row["mean"]["aa"])
    plot_confusion(np.array(best["confusion_sum"]), results["classes"], out / "confusion.png",
                   title=f"{best['label']}: test confusion, summed over {seeds} seed(s)")
    return results


def _percent(mean: float, std: float) -> str:
    return "–" if not np.isfinite(mean) else f"{100 * mean:.2f} ± {100 * std:.2f}"


def _cell(text: str) -> str:
    """Text for a Markdown table cell (a ``|`` of its own would end the cell)."""
    return text.replace("|", "\\|")


def write_sweep_table(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """The study's table in Markdown: OA, AA and kappa (%, mean ± std over seeds) per row,
    the best AA in bold, then the per-class accuracy of every row."""
    rows = results["rows"]
    best = max(rows, key=lambda name: rows[name]["mean"]["aa"])
    lines = [f"# LCZ fusion study ({results['setting']}, {results['seeds']} seed(s), test split)", "",
             "| configuration | OA (%) | AA (%) | κ (×100) |", "|---|---|---|---|"]
    for name, row in rows.items():
        aa = _percent(row["mean"]["aa"], row["std"]["aa"])
        lines.append(f"| {_cell(row['label'])} | {_percent(row['mean']['oa'], row['std']['oa'])} | "
                     f"{f'**{aa}**' if name == best else aa} | {_percent(row['mean']['kappa'], row['std']['kappa'])} |")
    classes = results["classes"]
    lines += ["", "Per-class accuracy (%), mean over seeds:", "",
              "| configuration | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for row in rows.values():
        lines.append(f"| {_cell(row['label'])} | " + " | ".join("–" if not np.isfinite(v) else f"{100 * v:.1f}"
                                                        for v in row["per_class_mean"]) + " |")
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    return path


def plot_sweep(results: dict[str, Any], path: str | os.PathLike[str]) -> Path:
    """Average accuracy against the fusion stage, one line per multi-branch split with its
    independent sum beside stage 6, the single-sensor baselines as horizontal lines (the
    form of the paper's Fig. 4); error bars: std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    colours = {"sar+optical": "tab:blue", "physical": "tab:orange"}
    for split, colour in colours.items():
        staged = [row for row in results["rows"].values() if row["split"] == split and not row["independent"]]
        if staged:
            ax.errorbar([row["stage"] for row in staged], [100 * row["mean"]["aa"] for row in staged],
                        yerr=[100 * row["std"]["aa"] for row in staged], marker="o", capsize=3, color=colour,
                        label=staged[0]["label"].split(",")[0])
        for row in results["rows"].values():
            if row["split"] == split and row["independent"]:
                ax.errorbar([7], [100 * row["mean"]["aa"]], yerr=[100 * row["std"]["aa"]], marker="s", capsize=3,
                            color=colour, linestyle="none", label=row["label"])
    for split, style in (("sar", ":"), ("optical", "--")):
        for row in results["rows"].values():
            if row["split"] == split:
                ax.axhline(100 * row["mean"]["aa"], color="grey", linestyle=style, label=row["label"])
    ax.set_xticks(range(8), ["0\ninputs", "1", "2", "3", "4", "5", "6\nsum", "ind.\nsum"])
    ax.set_xlim(-0.5, 7.5)
    ax.set_xlabel("fusion stage")
    ax.set_ylabel("average accuracy (%)")
    ax.set_title(f"LCZ fusion study, {results['setting']} setting, test split", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str], path: str | os.PathLike[str],
                   title: str = "confusion matrix") -> Path:
    """The confusion matrix normalised per true class (rows), with the counts' shares in %."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = matrix / matrix.sum(1, keepdims=True)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(0.45 * n + 3, 0.45 * n + 2))
    image = ax.imshow(100 * share, cmap="Blues", vmin=0, vmax=100)
    for i in range(n):
        for j in range(n):
            if np.isfinite(share[i, j]) and share[i, j] >= 0.005:
                ax.text(j, i, f"{100 * share[i, j]:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, label="% of the true class", shrink=0.8)
    fig.tight_layout()
    return save_figure(fig, path)
