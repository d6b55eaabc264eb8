"""What validation scenes say of a trained refinement model, kept in its checkpoint: per
terrain class, how much of its correction to keep and how to scale its spread.

A refinement network corrects a reference (the best non-learned refinement of the coarse
DEM). In some terrain it may correct wrongly: where layover folds slope, foot and far
terrain into one pixel, the SAR misleads, and too few training cells are there to learn
it. The gate is fitted where the truth is known and the model never trained: on the
validation scenes, per class of :data:`sarheight.terrain.classes.REFINEMENT_CLASSES` (layover,
shadow, steep, other), the share ``keep`` of its correction ``d`` that best predicts the
truth's departure ``r`` from the reference (least squares, ``sum(d r) / sum(d^2)``,
between 0 and 1: 0 falls back to the reference, 1 keeps the network as trained). A
class the validation scenes hold fewer than :data:`MIN_CELLS` cells of keeps 1 (nothing
to judge by).

A network that stacks the non-learned maps (reads them as channels,
:data:`sarheight.terrain.methods.STACKED_METHODS`) is also weighed against each of them:
per class, the one of the gated network and these maps whose validation RMSE is lowest is
chosen (``choice``), so that a class where clinometry or the inversion beats the network
gets that map, and the network's floor is the best of them where validation can tell. A
map without a value at a cell leaves the network's there, as it does when predicting.

A spread head (``model_options.uncertainty``) learns the size of its errors on the
training scenes, which it has seen; on new terrain its errors are larger. Its spread is
scaled per class by the factor that puts 68.27 % of the validation cells' errors
(after the gate) within one standard deviation: the quantile of the standardised
errors, not their root mean square, so that a few large errors do not inflate the
spread of every cell.

:func:`calibrate_checkpoint` measures both and writes them into the checkpoint (under
``"sarheight"``, key ``"calibration"``), which :func:`~sarheight.training.predict.predict_height`
then applies.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from ..data.terrain import scene_arrays
from ..errors import InvalidInputError
from ..io import atomic_path
from ..scores import rms
from ..terrain.classes import REFINEMENT_CLASSES
from ..terrain.files import open_scene
from ..terrain.methods import FILLED_REFERENCES, STACKED_METHODS, method_heights
from ..terrain.variables import refinement_classes
from .checkpoints import CHECKPOINT_KEY, read_checkpoint, resolve_device
from .losses import LOG_STD_RANGE
from .predict import TileBlending, model_alignment
from .trained import load_checkpoint

#: The fewest validation cells of a class that calibrate it.
MIN_CELLS = 200

#: The share of a Gaussian's mass within one standard deviation.
ONE_SIGMA = 0.6827

#: Cells kept per scene and class for the spread's quantile (an even subsample beyond).
SAMPLE_CELLS = 200_000


def calibration_figures(corrections: Sequence[np.ndarray], departures: Sequence[np.ndarray],
                        classes: Sequence[np.ndarray], stds: Sequence[np.ndarray] | None = None,
                        alternatives: dict[str, Sequence[np.ndarray]] | None = None) -> dict[str, Any]:
    """The gate and the spread's scale from arrays (see the module's docstring).

    Parameters
    ----------
    corrections : per scene, the network's correction of its reference (m) at the cells
        that count (truth known, inside the image), flat.
    departures : per scene, the truth minus the reference (m) at those cells.
    classes : per scene, the cells' codes of :data:`~sarheight.terrain.classes.REFINEMENT_CLASSES`.
    stds : per scene, the network's standard deviation (m) at those cells, or None for a
        model without a spread head.
    alternatives : by name, per scene, a non-learned map's departure from the reference
        (m, NaN where it has no value) at those cells: the maps the class may choose
        instead of the network.

    Returns
    -------
    dict of plain values: ``classes`` (the names), ``keep`` and ``std_scale`` (one float
    per class), ``cells`` (validation cells per class), ``rmse_reference``,
    ``rmse_network`` and ``rmse_gated`` (m, per class), ``choice`` (per class,
    ``"network"`` or the alternative chosen), ``rmse_chosen`` (m, per class) and
    ``rmse_alternatives`` (by name, m per class), ``network_share`` (:func:`network_share`)
    and, with ``stds``, ``within_1std`` and
    ``within_2std`` (the shares of cells after scaling, of the chosen heights' errors).
    """
    d = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in corrections]) if corrections else np.zeros(0)
    r = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in departures]) if departures else np.zeros(0)
    c = np.concatenate([np.asarray(v).ravel() for v in classes]) if classes else np.zeros(0, dtype=np.uint8)
    s = (np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in stds]) if stds else None)
    others = {name: (np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in values]) if values
                     else np.zeros(0)) for name, values in (alternatives or {}).items()}
    if (not (d.shape == r.shape == c.shape) or (s is not None and s.shape != d.shape)
            or any(values.shape != d.shape for values in others.values())):
        raise InvalidInputError("corrections, departures, classes, stds and alternatives must give one value per cell")
    found: dict[str, Any] = {"classes": list(REFINEMENT_CLASSES), "keep": [], "std_scale": [], "cells": [],
                             "rmse_reference": [], "rmse_network": [], "rmse_gated": [], "choice": [],
                             "rmse_chosen": [], "rmse_alternatives": {name: [] for name in others}}
    within: list[tuple[float, float]] = []
    for code in range(len(REFINEMENT_CLASSES)):
        chosen = (c == code) & np.isfinite(d) & np.isfinite(r) & (np.isfinite(s) if s is not None else True)
        count = int(chosen.sum())
        dc, rc = d[chosen], r[chosen]
        keep = 1.0
        if count >= MIN_CELLS and float(np.sum(dc * dc)) > 0:
            keep = float(np.clip(np.sum(dc * rc) / np.sum(dc * dc), 0.0, 1.0))
        error = rc - keep * dc
        gated = rms(error)
        choice, best = "network", gated
        for name, values in others.items():
            # Where the map has no value the network's height stays, as when predicting.
            alternative = np.where(np.isfinite(values[chosen]), values[chosen], keep * dc)
            score = rms(rc - alternative)
            found["rmse_alternatives"][name].append(score)
            if count >= MIN_CELLS and score < best:
                choice, best, error = name, score, rc - alternative
        scale = 1.0
        if s is not None and count >= MIN_CELLS:
            standardised = np.abs(error) / np.maximum(s[chosen], 1e-6)
            scale = float(max(np.quantile(standardised, ONE_SIGMA), 1e-3))
        if s is not None and count:
            z = np.abs(error) / np.maximum(s[chosen] * scale, 1e-9)
            within.append((float(np.mean(z <= 1.0)), float(np.mean(z <= 2.0))))
        else:
            within.append((float("nan"), float("nan")))

        found["keep"].append(keep)
        found["std_scale"].append(scale)
        found["cells"].append(count)
        found["rmse_reference"].append(rms(rc))
        found["rmse_network"].append(rms(rc - dc))
        found["rmse_gated"].append(gated)
        found["choice"].append(choice)
        found["rmse_chosen"].append(best)
    found["network_share"] = network_share(found)
    if s is not None:
        found["within_1std"] = [w[0] for w in within]
        found["within_2std"] = [w[1] for w in within]
    return found


def network_share(figures: dict[str, Any]) -> float:
    """The share of the validation cells in which a calibrated network's own correction
    counts, weighted by how much of it is kept: per class ``keep`` where the class chose
    the network, 0 where it chose a non-learned map. Near 0, the network hands its
    reference (or the map chosen) on under its own name."""
    cells = np.asarray(figures["cells"], dtype=np.float64)
    if cells.sum() <= 0:
        return 1.0
    own = np.array([keep if choice == "network" else 0.0
                    for keep, choice in zip(figures["keep"], figures.get("choice", ["network"] * len(cells)),
                                            strict=True)])
    return float(np.sum(cells * own) / cells.sum())


def calibrate_checkpoint(checkpoint: str | os.PathLike[str], scenes: Sequence[str | os.PathLike[str] | xr.Dataset],
                         *, target: str = "height", tile: int = 256, overlap: int = 64, device: str | None = None,
                         write: bool = True) -> dict[str, Any]:
    """Calibrate a refinement checkpoint on validation scenes (see the module's docstring)
    and, with ``write``, store the result in the checkpoint (atomically).

    Parameters
    ----------
    checkpoint : a refinement checkpoint of ``sarheight fit`` (a reference is needed: the
        gate scales the correction of it).
    scenes : validation scenes (files or Datasets) with the truth ``target``, of terrain
        the model never trained on.
    tile, overlap, device : as :func:`~sarheight.training.predict.predict_height` takes
        them.
    write : write the calibration into the checkpoint.

    Returns
    -------
    The figures of :func:`calibration_figures`, with ``scenes`` (their names).

    Raises
    ------
    InvalidInputError : a checkpoint without a reference, no scene, a scene without the
        truth.
    """
    member = load_checkpoint(checkpoint, device=resolve_device(device), kind="height")
    if member.reference is None:
        raise InvalidInputError(f"checkpoint {str(checkpoint)!r} predicts absolute heights: the calibration gates a "
                                "refinement of a reference; give a refinement checkpoint")
    if not scenes:
        raise InvalidInputError("no validation scene to calibrate on: give scenes with their truth")
    torch_device = resolve_device(device)
    align = model_alignment(member)
    stacked = stacked_alternatives(member.channels, member.reference)
    corrections, departures, classes, stds, names = [], [], [], [], []
    alternatives: dict[str, list[np.ndarray]] = {name: [] for name in stacked}
    for source in scenes:
        ds = source if isinstance(source, xr.Dataset) else open_scene(source)
        arrays = scene_arrays(ds, member.channels, reference=member.reference, target=target, scale=member.scale,
                              score_shadow=True, needed_by=f"checkpoint {Path(checkpoint).name!r}")
        tiling = TileBlending(arrays.shape, tile, overlap, align)
        with torch.inference_mode():
            outputs = tiling.predict_outputs(member, [arrays.inputs], device=torch_device)
        counted = arrays.loss_mask & np.isfinite(outputs[0])
        codes = refinement_classes(ds)
        kept = _subsample(np.flatnonzero(counted), SAMPLE_CELLS)
        corrections.append(arrays.scale * outputs[0].ravel()[kept])
        departures.append(arrays.scale * arrays.target.ravel()[kept])
        classes.append(codes.ravel()[kept])
        for name in stacked:
            alternatives[name].append((method_heights(ds, name).ravel()[kept] - arrays.offset.ravel()[kept])
                                      .astype(np.float64))
        if member.outputs == 2:
            stds.append(arrays.scale * np.exp(np.clip(outputs[1].ravel()[kept], *LOG_STD_RANGE)))
        names.append(arrays.name)
    figures = calibration_figures(corrections, departures, classes, stds if member.outputs == 2 else None,
                                  alternatives)
    figures["scenes"] = names
    if write:
        stored = read_checkpoint(checkpoint)  # the one door: data only
        stored[CHECKPOINT_KEY]["calibration"] = figures
        with atomic_path(Path(checkpoint)) as temporary:
            torch.save(stored, temporary)
    return figures


def describe_calibration(figures: dict[str, Any]) -> str:
    """One line of what a calibration found: per class, the RMSE of the reference, the
    network and the gated network (m), the share of the correction kept and, with a
    spread, the cells within one standard deviation after scaling."""
    parts = []
    for index, name in enumerate(figures["classes"]):
        if not figures["cells"][index]:
            continue
        choice = figures.get("choice", ["network"] * len(figures["classes"]))[index]
        chosen = figures.get("rmse_chosen", figures["rmse_gated"])[index]
        text = (f"{name} {figures['rmse_reference'][index]:.2f} -> {chosen:.2f} m "
                + (f"(keep {figures['keep'][index]:.2f}" if choice == "network" else f"({choice}"))
        if "within_1std" in figures:
            text += f", {100 * figures['within_1std'][index]:.0f} % within 1 std"
        parts.append(text + ")")
    share = figures.get("network_share", network_share(figures))
    return "; ".join(parts) + f"; the network's own correction in {100 * share:.0f} % of the validation cells"


def stacked_alternatives(channels: Sequence[str], reference: str | None) -> list[str]:
    """The non-learned maps a model reads as channels (:data:`sarheight.terrain.methods.STACKED_METHODS`),
    its reference aside, and the map a filled reference is made of
    (:data:`sarheight.terrain.methods.FILLED_REFERENCES`; the gate's ``keep`` of 0 is the
    reference): those a terrain class may choose instead of the network."""
    own = {reference, FILLED_REFERENCES.get(str(reference))}
    return [name for name in STACKED_METHODS if name in channels and name not in own]


def _subsample(indices: np.ndarray, limit: int) -> np.ndarray:
    if indices.size <= limit:
        return indices
    return indices[np.linspace(0, indices.size - 1, limit).round().astype(np.int64)]
