"""What the experiment runners share (the terrain refinement and ablation, the
building-height comparison, the LCZ sweep): one training of a fixed budget into a run folder, resumable scores, and
mean ± std over seeds.

Public names
------------
train_run
    Fit a task (heights or Local Climate Zones) on a data module into a run folder
    (``last.ckpt``, ``metrics.csv``, with :class:`BestCheckpoint` the best one and early
    stopping), quietly or with a bar over its steps; resumes from the folder's
    ``last.ckpt``; several processes with ``strategy="ddp"``.
trained_steps
    The optimiser steps a run's checkpoint holds (a time budget may stop it early).
configured_training
    One training of a configuration (with overrides) into a run folder, timed, then
    calibrated on the calibration scenes: what the terrain studies keep per seed.
step_progress
    A Lightning callback: a bar over one training's steps.
quiet_lightning
    A context in which Lightning logs warnings and errors only.
write_json
    Write JSON atomically.
seeded_runs
    The scores of a configuration's trainings, one per seed, resumable.
mean_std
    Mean and sample standard deviation of named figures over runs.
reduction
    The relative reduction (%) of an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..io import atomic_path

__all__ = ["BestCheckpoint", "TrainedRun", "configured_training", "mean_std", "quiet_lightning", "read_sealed_json",
           "reduction", "seeded_runs", "step_progress", "train_run", "trained_steps", "write_json"]


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's own INFO lines (accelerators found, tips) once per training would bury
    a runner's progress bar: warnings and errors only, while it trains; and not the
    deprecation warning of Lightning 2.6's own use of a torch API, which nothing a user
    does can change."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [each.level for each in loggers]
    for each in loggers:
        each.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")
            yield
    finally:
        for each, level in zip(loggers, levels, strict=True):
            each.setLevel(level)


def write_json(data: Any, path: str | Path, *, sealed: bool = False) -> None:
    """``data`` as indented JSON at ``path``, written atomically (floats as they are);
    ``sealed``: with its SHA-256 beside it (``PATH.sha256``), so that a study resuming
    from it (:func:`read_sealed_json`) takes only what it wrote itself."""
    text = json.dumps(data, indent=2, default=float)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    if sealed:
        with atomic_path(_seal_path(path)) as tmp:
            tmp.write_text(hashlib.sha256(text.encode()).hexdigest() + "\n")


def _seal_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def read_sealed_json(path: str | Path) -> Any:
    """What :func:`write_json` wrote sealed at ``path``, or None where there is no such
    file; a file that is not readable JSON (truncated) or that changed after it was
    written (its seal differs, or is missing) is refused, naming what to delete."""
    path = Path(path)
    if not path.exists():
        return None
    text = path.read_text()
    seal = _seal_path(path)
    redo = f"delete it (and {seal.name}) and run again to compute it anew"
    if not seal.is_file() or seal.read_text().strip() != hashlib.sha256(text.encode()).hexdigest():
        raise InvalidInputError(f"{str(path)!r} changed after the study wrote it (its seal {seal.name} "
                                f"{'is missing' if not seal.is_file() else 'differs'}): a study takes only its own "
                                f"figures; {redo}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"{str(path)!r} is not readable JSON ({error.msg} at line {error.lineno}): {redo}"
                                ) from None


@dataclass(frozen=True)
class BestCheckpoint:
    """Keep the best checkpoint by a validation figure (``best.ckpt``) and stop after
    ``patience`` epochs without improvement (early stopping)."""

    monitor: str
    mode: str = "max"
    patience: int = 5


@dataclass(frozen=True)
class TrainedRun:
    """What :func:`train_run` leaves: ``last`` (``last.ckpt``), and with a
    :class:`BestCheckpoint` the best one and its figure; ``epochs`` trained."""

    last: Path
    epochs: int
    best: Path | None = None
    best_score: float | None = None


def train_run(module: Any, data: Any, run_dir: str | Path, *, max_epochs: int, steps_per_epoch: int | None = None,
              accelerator: str = "auto", validate: bool = True, max_time: str | None = None,
              progress: bool = False, description: str = "training", best: BestCheckpoint | None = None,
              devices: int | str = 1, strategy: str = "auto") -> TrainedRun:
    """Fit ``module`` (a :class:`~sarheight.training.task.SarHeightTask`: heights or
    Local Climate Zones) on ``data`` for ``max_epochs`` (or until ``max_time``,
    Lightning's ``"DD:HH:MM:SS"``) into ``run_dir`` (made if missing): a CSV log
    (``metrics.csv``) and ``last.ckpt``, written atomically every quarter epoch (of
    ``steps_per_epoch``; None: at each epoch's end) and at the end; no sanity validation.
    The caller seeds (``lightning.seed_everything``) before building the module.

    A ``last.ckpt`` already in ``run_dir`` (a study interrupted mid-training) is resumed
    from: the steps it holds are not trained again (the data order after it differs from
    an uninterrupted run's). With ``progress``, a bar over the training's steps
    (``description``, its loss) beneath the caller's bar over trainings. ``best`` keeps
    the best checkpoint and stops early; ``devices`` and ``strategy`` are the Trainer's
    (``"ddp"`` as ``sarheight fit`` takes it; ``"ddp_spawn"`` for a runner that trains
    several times in one process, as ``"ddp"`` starts the whole program again in each
    process). Under ``"ddp_spawn"`` the processes get no step bar (the caller's bar over
    trainings stays): the trainer, callbacks and all, is pickled into each of them.
    """
    import lightning as L
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
    from lightning.pytorch.loggers import CSVLogger

    from ..training.checkpoints import AtomicCheckpointIO, ResumableCheckpoint

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    last = run_dir / "last.ckpt"
    every = max(1, steps_per_epoch // 4) if steps_per_epoch else None
    checkpoint = ResumableCheckpoint(dirpath=run_dir, save_last=True, save_top_k=0, every_n_train_steps=every)
    checkpoint.resume_hint = "run the same command again: the study resumes every training from its last.ckpt"
    callbacks: list[Any] = [checkpoint]
    keeper = None
    if best is not None:
        keeper = ModelCheckpoint(dirpath=run_dir, filename="best", monitor=best.monitor, mode=best.mode, save_top_k=1)
        callbacks += [keeper, EarlyStopping(best.monitor, mode=best.mode, patience=best.patience)]
    spawned = isinstance(strategy, str) and strategy.startswith("ddp_spawn")
    if progress and not spawned:
        callbacks.append(step_progress(max_epochs * steps_per_epoch if steps_per_epoch else None, description))
    with quiet_lightning(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
        # Losses are logged per epoch where steps are few: the logging interval does not matter.
        warnings.filterwarnings("ignore", message=r".*smaller than the logging interval.*")
        trainer = L.Trainer(max_epochs=max_epochs, max_time=max_time, accelerator=accelerator, devices=devices,
                            strategy=strategy, logger=CSVLogger(run_dir, name="", version=""), callbacks=callbacks,
                            plugins=[AtomicCheckpointIO()], enable_progress_bar=False,
                            enable_model_summary=False, limit_val_batches=1.0 if validate else 0,
                            log_every_n_steps=max(1, min(50, steps_per_epoch or 10)), num_sanity_val_steps=0)
        trainer.fit(module, data, ckpt_path=str(last) if last.is_file() else None)
    epochs = int(trainer.current_epoch)
    if spawned:
        # The spawned processes' loops and callbacks stay there: their files say them.
        from ..training.checkpoints import read_checkpoint

        epochs = int(read_checkpoint(last)["loops"]["fit_loop"]["epoch_progress"]["current"]["completed"])
    if keeper is None:
        return TrainedRun(last=last, epochs=epochs)
    best_path, score = keeper.best_model_path, keeper.best_model_score
    if spawned and not best_path and (run_dir / "best.ckpt").is_file():
        best_path, score = _kept_best(run_dir / "best.ckpt", best.monitor)
    return TrainedRun(last=last, epochs=epochs,
                      best=Path(best_path) if best_path else last,
                      best_score=float(score) if score is not None else None)


def trained_steps(checkpoint: str | Path) -> int:
    """The optimiser steps the checkpoint's training took (Lightning's ``global_step``):
    fewer than its epochs' steps where its time budget (``max_time``) stopped it, as on a
    slower machine."""
    from ..training.checkpoints import read_checkpoint

    return int(read_checkpoint(checkpoint).get("global_step", 0))


def configured_training(config: str | os.PathLike[str], overrides: Sequence[str], run_dir: str | Path, *,
                        calibration_files: Sequence[Path] = (), calibrate: bool = True,
                        max_epochs: int | None = None, max_time: str | None = None, accelerator: str = "auto",
                        progress: bool = False, description: str = "training") -> dict[str, Any]:
    """Train the height network a configuration describes (``sarheight fit``'s, with
    ``overrides`` in its command-line form) into ``run_dir`` with :func:`train_run`, then
    calibrate it on ``calibration_files``.

    Parameters
    ----------
    config : a packaged configuration's name or a YAML file.
    overrides : options after it (``["--data.scenes", "[...]", "--seed_everything", "0"]``).
    run_dir : the run's folder (resumed from its ``last.ckpt``).
    calibration_files : the validation scenes: the training validates on them and the
        network is calibrated on them; none, neither.
    calibrate : False: no calibration (a network without a reference has no gate).
    max_epochs, max_time : the budget; None: the configuration's (10 epochs without one).
    accelerator, progress, description : as :func:`train_run`'s.

    Returns
    -------
    ``{"checkpoint", "calibration", "train_seconds", "init_args"}``: the last checkpoint's
    path, the calibration's figures (None without one), the training's wall time (s) and
    the configuration as parsed.
    """
    from ..training.calibration import calibrate_checkpoint
    from ..training.configured import configured_run

    run = configured_run(config, list(overrides))
    trainer = run.trainer_options
    steps = int(run.datamodule.tiles_per_epoch) // int(run.datamodule.batch_size)
    started = time.perf_counter()
    checkpoint = train_run(run.model, run.datamodule, run_dir,
                           max_epochs=int(max_epochs or trainer.get("max_epochs") or 10), steps_per_epoch=steps,
                           accelerator=accelerator, validate=bool(calibration_files),
                           max_time=max_time or trainer.get("max_time"), progress=progress,
                           description=description).last
    seconds = time.perf_counter() - started
    figures = calibrate_checkpoint(checkpoint, list(calibration_files)) if calibration_files and calibrate else None
    return {"checkpoint": str(checkpoint), "calibration": figures, "train_seconds": seconds,
            "init_args": run.init_args}


def _kept_best(path: Path, monitor: str) -> tuple[str, float | None]:
    """The path and figure of a best checkpoint kept by a ModelCheckpoint on ``monitor``
    (its own state inside the file)."""
    from ..training.checkpoints import read_checkpoint

    for state in read_checkpoint(path).get("callbacks", {}).values():
        if isinstance(state, dict) and state.get("monitor") == monitor and "best_model_score" in state:
            score = state["best_model_score"]
            return str(path), None if score is None else float(score)
    return str(path), None


def step_progress(total_steps: int | None, description: str) -> Any:
    """A Lightning callback showing one bar over a training's ``total_steps`` (None: the
    trainer's estimate, which early stopping may cut short) with the latest loss: tqdm,
    below a caller's bar over trainings, gone when the training ends. (The class is made on
    use: Lightning is imported only by a study that trains.)"""
    from lightning.pytorch.callbacks import Callback
    from tqdm.auto import tqdm

    class StepProgress(Callback):
        bar: Any = None

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            total = total_steps if total_steps is not None else int(trainer.estimated_stepping_batches)
            self.bar = tqdm(total=total, initial=min(trainer.global_step, total), desc=description, unit="step",
                            leave=False, position=1)

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            self.bar.update(1)
            loss = trainer.callback_metrics.get("train_loss_step", trainer.callback_metrics.get("train_loss"))
            if loss is not None:
                self.bar.set_postfix(loss=f"{float(loss):.4g}", refresh=False)

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            self.bar.close()

        def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
            if self.bar is not None:
                self.bar.close()

    return StepProgress()


def seeded_runs(folder: str | Path, seeds: int, train_and_score: Callable[[int, Path], dict[str, Any]],
                progress: Callable[[], Any]) -> list[dict[str, Any]]:
    """The scores of ``seeds`` trainings of one configuration, in ``folder/seed<k>/``: read
    back from its ``scores.json`` where a finished run wrote it (a run resumes), else
    Lightning seeded with k, ``train_and_score(k, run_dir)`` run and its scores written
    there with ``"seed": k``; ``progress()`` is called after each."""
    import lightning as L

    runs = []
    for seed in range(seeds):
        run_dir = Path(folder) / f"seed{seed}"
        scores_path = run_dir / "scores.json"
        record = read_sealed_json(scores_path)
        if record is None:
            L.seed_everything(seed, workers=True, verbose=False)
            record = {**train_and_score(seed, run_dir), "seed": seed}
            write_json(record, scores_path, sealed=True)
        runs.append(record)
        progress()
    return runs


def mean_std(runs: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """``{"mean": {name: ...}, "std": {name: ...}}`` of the figures ``names`` over ``runs``
    (NaNs left out; the sample standard deviation, 0 for a single run)."""
    found: dict[str, Any] = {"mean": {}, "std": {}}
    for name in names:
        values = np.array([run[name] for run in runs], dtype=float)
        finite = values[np.isfinite(values)]
        found["mean"][name] = float(finite.mean()) if finite.size else float("nan")
        found["std"][name] = float(finite.std(ddof=1)) if finite.size > 1 else 0.0
    return found


def reduction(better: float, worse: float) -> float:
    """Relative reduction (%) of an error from ``worse`` to ``better`` (NaN when undefined)."""
    return 100.0 * (1.0 - better / worse) if worse and math.isfinite(better) and math.isfinite(worse) else float("nan")


def paired_test(ours: Sequence[float], theirs: Sequence[float]) -> dict[str, float]:
    """The paired comparison of two methods' errors over DEMs: the mean difference
    (``ours - theirs``), the exact two-sided sign-flip p-value of it (every sign of every
    difference), and Student's paired t with its two-sided p-value."""
    from scipy import stats

    differences = np.asarray(ours, dtype=np.float64) - np.asarray(theirs, dtype=np.float64)
    differences = differences[np.isfinite(differences)]
    if differences.size < 2:
        return {"dems": int(differences.size), "mean_difference": math.nan, "sign_flip_p": math.nan,
                "t": math.nan, "t_p": math.nan}
    observed = abs(differences.mean())
    flips = np.array(list(itertools.product((-1.0, 1.0), repeat=differences.size)))
    extreme = np.abs((flips * differences).mean(axis=1)) >= observed - 1e-12
    result = stats.ttest_rel(np.asarray(ours, dtype=np.float64)[np.isfinite(ours)],
                             np.asarray(theirs, dtype=np.float64)[np.isfinite(theirs)])
    return {"dems": int(differences.size), "mean_difference": float(differences.mean()),
            "sign_flip_p": float(extreme.mean()), "t": float(result.statistic), "t_p": float(result.pvalue)}
