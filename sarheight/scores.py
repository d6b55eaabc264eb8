"""The one scorer of height maps: root mean squares, and RMSE, MAE and R² of maps against
their truth, overall, per class and per group of classes, and the IoU of footprints,
accumulated over maps (numpy, float64 sums).

Every RMSE sarheight reports comes from here: the studies' tables, the calibration of a
refinement network, a prediction scored against a reference, the demo, the inversion's
diagnostics. The training's metric (:class:`sarheight.training.metrics.HeightMetrics`,
torch, summed across processes) counts the same cells the same way; a test holds the two
to the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import InvalidInputError

__all__ = ["MapScores", "map_rmse", "pooled_rms", "rms"]


def rms(values: Any) -> float:
    """The root mean square of the finite ``values`` (an error, a change, a residual: m, or
    whatever their unit); NaN where none is finite."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    return float(np.sqrt(np.mean(values**2))) if values.size else math.nan


def pooled_rms(values: Sequence[float], counts: Sequence[int]) -> float:
    """The root mean square of several sets of values taken as one, from each set's RMS
    and its count (sets without values left out); NaN where there are none."""
    total = sum(int(count) for count in counts)
    if not total:
        return math.nan
    squares = sum(float(value) ** 2 * int(count) for value, count in zip(values, counts, strict=True) if count)
    return math.sqrt(squares / total)


class MapScores:
    """Scores of height maps (m) against their truth, accumulated over maps.

    Parameters
    ----------
    class_names : the names of the class codes 0, 1, ... of :meth:`add`'s ``classes``
        (none: no per-class scores).
    groups : named groups of classes scored together (``{"layover": ("active_layover",
        "passive_layover")}``).
    threshold_m : with a height (m), the IoU of the footprints above it (buildings).

    :meth:`compute` gives ``rmse``, ``mae``, ``r2``, ``count``, ``rmse_<class>`` for each
    class and group (NaN for one without a cell), ``count_<class>``, and ``iou`` with a
    threshold. R² is ``1 - SS_res / SS_tot`` of the heights given.
    """

    def __init__(self, class_names: Sequence[str] = (), groups: Mapping[str, Sequence[str]] | None = None,
                 threshold_m: float | None = None):
        self.class_names = tuple(class_names)
        self.groups = {name: tuple(members) for name, members in (groups or {}).items()}
        unknown = sorted({member for members in self.groups.values() for member in members} - set(self.class_names))
        if unknown:
            raise InvalidInputError(f"groups name classes {unknown} that are not among {list(self.class_names)}")
        self.threshold_m = threshold_m
        self.count = self.sum_abs = self.sum_sq = self.sum_truth = self.sum_truth_sq = 0.0
        self.intersection = self.union = 0.0
        self.class_sum_sq = np.zeros(max(1, len(self.class_names)))
        self.class_count = np.zeros(max(1, len(self.class_names)))

    def add(self, prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray,
            classes: np.ndarray | None = None) -> None:
        """Add the cells of ``mask`` (bool) of one map where the truth is known:
        ``prediction`` and ``truth`` in metres, ``classes`` the class codes (needed with
        class names).

        Raises
        ------
        InvalidInputError : the prediction is not finite on a cell to score (a study scores
            every method on the same cells), or classes are missing.
        """
        truth = np.asarray(truth)
        prediction = np.asarray(prediction)
        mask = np.asarray(mask, dtype=bool) & np.isfinite(truth)
        if (mask & ~np.isfinite(prediction)).any():
            raise InvalidInputError("the prediction is not finite on cells to score: fill them first (a study scores "
                                    "every method on the same cells)")
        if self.class_names and classes is None:
            raise InvalidInputError("scores per class need the classes of the cells")
        wanted = truth[mask].astype(np.float64)
        predicted = prediction[mask].astype(np.float64)
        error = predicted - wanted
        self.count += float(mask.sum())
        self.sum_abs += float(np.abs(error).sum())
        self.sum_sq += float((error**2).sum())
        self.sum_truth += float(wanted.sum())
        self.sum_truth_sq += float((wanted**2).sum())
        if self.threshold_m is not None:
            above, true_above = predicted > self.threshold_m, wanted > self.threshold_m
            self.intersection += float((above & true_above).sum())
            self.union += float((above | true_above).sum())
        if self.class_names:
            codes = np.asarray(classes)[mask].astype(np.int64)
            self.class_sum_sq += np.bincount(codes, weights=error**2, minlength=len(self.class_names))
            self.class_count += np.bincount(codes, minlength=len(self.class_names))

    def compute(self) -> dict[str, float]:
        """The scores (see the class's docstring), as floats."""
        if self.count == 0:
            values = {"rmse": math.nan, "mae": math.nan, "r2": math.nan}
        else:
            total = self.sum_truth_sq - self.sum_truth**2 / self.count
            values = {"rmse": math.sqrt(self.sum_sq / self.count), "mae": self.sum_abs / self.count,
                      "r2": 1.0 - self.sum_sq / total if total > 0 else math.nan}
        for index, name in enumerate(self.class_names):
            cells = float(self.class_count[index])
            values[f"rmse_{name}"] = math.sqrt(float(self.class_sum_sq[index]) / cells) if cells > 0 else math.nan
        if self.threshold_m is not None:
            values["iou"] = self.intersection / self.union if self.union > 0 else math.nan
        values["count"] = float(self.count)
        for index, name in enumerate(self.class_names):
            values[f"count_{name}"] = float(self.class_count[index])
        for name, members in self.groups.items():
            indices = [self.class_names.index(member) for member in members]
            count = float(self.class_count[indices].sum())
            values[f"rmse_{name}"] = math.sqrt(float(self.class_sum_sq[indices].sum()) / count) if count else math.nan
            values[f"count_{name}"] = count
        return values


def map_rmse(prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """The RMSE (m) of one height map on the cells of ``mask`` (bool) where the truth is
    known, as the studies and the training count it (:class:`MapScores`)."""
    scores = MapScores()
    scores.add(prediction, truth, mask)
    return scores.compute()["rmse"]
