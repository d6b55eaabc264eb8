"""The one scorer of the studies: RMSE, MAE and R² of height maps against their truth,
overall, per class and per group of classes, and the IoU of footprints, accumulated over
maps.

It is :class:`~sarheight.training.metrics.HeightMetrics`, the metric the training logs,
fed with numpy maps: a study's table and a training's validation curve count the same
cells the same way.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from ..errors import InvalidInputError
from ..training.metrics import HeightMetrics


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
    threshold.
    """

    def __init__(self, class_names: Sequence[str] = (), groups: Mapping[str, Sequence[str]] | None = None,
                 threshold_m: float | None = None):
        self.class_names = tuple(class_names)
        self.groups = {name: tuple(members) for name, members in (groups or {}).items()}
        unknown = sorted({member for members in self.groups.values() for member in members} - set(self.class_names))
        if unknown:
            raise InvalidInputError(f"groups name classes {unknown} that are not among {list(self.class_names)}")
        self.metrics = HeightMetrics(self.class_names, footprint_threshold=threshold_m)

    def add(self, prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray,
            classes: np.ndarray | None = None) -> None:
        """Add the cells of ``mask`` (bool) of one map: ``prediction`` and ``truth`` in metres,
        ``classes`` the class codes (needed with class names)."""
        mask = np.asarray(mask, dtype=bool) & np.isfinite(truth)
        if (mask & ~np.isfinite(prediction)).any():
            raise InvalidInputError("the prediction is not finite on cells to score: fill them first (a study scores "
                                    "every method on the same cells)")
        filled = np.where(mask, truth, 0.0).astype(np.float64)
        codes = None
        if self.class_names:
            if classes is None:
                raise InvalidInputError("scores per class need the classes of the cells")
            codes = torch.from_numpy(np.asarray(classes, dtype=np.int64))
        self.metrics.update(torch.from_numpy(np.where(mask, prediction, 0.0).astype(np.float64)),
                            torch.from_numpy(filled), torch.from_numpy(mask), codes)

    def compute(self) -> dict[str, float]:
        """The scores (see the class's docstring), as floats."""
        values = {name: float(value) for name, value in self.metrics.compute().items()}
        counts = self.metrics.class_count.double()
        sums = self.metrics.class_sum_sq.double()
        for index, name in enumerate(self.class_names):
            values[f"count_{name}"] = float(counts[index])
        for name, members in self.groups.items():
            indices = [self.class_names.index(member) for member in members]
            count = float(counts[indices].sum())
            values[f"rmse_{name}"] = math.sqrt(float(sums[indices].sum()) / count) if count else math.nan
            values[f"count_{name}"] = count
        return values


def map_rmse(prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> float:
    """The RMSE (m) of one height map on the cells of ``mask`` (bool) where the truth is
    known, as the studies and the training count it (:class:`MapScores`)."""
    scores = MapScores()
    scores.add(prediction, truth, mask)
    return scores.compute()["rmse"]

