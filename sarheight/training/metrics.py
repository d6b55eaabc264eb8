"""Metrics of height maps: RMSE, MAE, R², the RMSE of each class (terrain or height
class) and, for buildings, the IoU of footprints."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric


class HeightMetrics(Metric):
    """RMSE, MAE and R² (coefficient of determination) of heights over the valid cells,
    and the RMSE of each class of ``class_names``, accumulated over batches (and
    processes: torchmetrics sums the states).

    Sums are kept in float64: heights of a thousand metres squared over millions of cells
    lose the metre in float32. R² is ``1 - SS_res / SS_tot`` of the heights given (compare
    absolute heights for the user's R², relative ones for the relief's).

    Parameters
    ----------
    class_names : the names of the class codes 0, 1, ... (none: no per-class RMSE).
    footprint_threshold : a height (m): with it, the intersection over union of the
        footprints, the valid cells above it in the prediction and in the target (building
        footprints, 1 m by MBHR-Net's convention); None for none.

    ``compute()`` returns a dict: ``rmse``, ``mae``, ``r2``, ``count`` (cells),
    ``rmse_<class>`` for each class (NaN for a class with no cell), and with a threshold
    ``iou`` (NaN when neither map has a footprint).
    """

    full_state_update = False
    higher_is_better = False

    def __init__(self, class_names: Sequence[str] = (), footprint_threshold: float | None = None, **kwargs):
        super().__init__(**kwargs)
        self.class_names = tuple(class_names)
        self.footprint_threshold = footprint_threshold
        for name in ("count", "sum_abs", "sum_sq", "sum_target", "sum_target_sq", "intersection", "union"):
            self.add_state(name, default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
        classes = max(1, len(self.class_names))
        self.add_state("class_sum_sq", default=torch.zeros(classes, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("class_count", default=torch.zeros(classes, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
               classes: torch.Tensor | None = None) -> None:
        """Add the cells of ``mask`` (prediction and target in metres, one shape; ``classes``
        the class codes of the cells, needed when there are class names)."""
        mask = mask.bool()
        error = (prediction[mask] - target[mask]).double()
        wanted = target[mask].double()
        self.count += mask.sum()
        self.sum_abs += error.abs().sum()
        self.sum_sq += (error**2).sum()
        self.sum_target += wanted.sum()
        self.sum_target_sq += (wanted**2).sum()
        if self.footprint_threshold is not None:
            predicted_footprint = prediction[mask] > self.footprint_threshold
            true_footprint = target[mask] > self.footprint_threshold
            self.intersection += (predicted_footprint & true_footprint).sum()
            self.union += (predicted_footprint | true_footprint).sum()
        if self.class_names:
            if classes is None:
                raise ValueError("HeightMetrics with class names needs the classes of the cells")
            codes = classes[mask].long()
            self.class_sum_sq += torch.bincount(codes, weights=error**2, minlength=len(self.class_names)).double()
            self.class_count += torch.bincount(codes, minlength=len(self.class_names)).double()

    def compute(self) -> dict[str, torch.Tensor]:
        count = self.count
        nan = torch.tensor(float("nan"), dtype=torch.float64, device=count.device)
        if count == 0:
            values = {"rmse": nan, "mae": nan, "r2": nan}
        else:
            total = self.sum_target_sq - self.sum_target**2 / count
            values = {"rmse": torch.sqrt(self.sum_sq / count), "mae": self.sum_abs / count,
                      "r2": 1 - self.sum_sq / total if total > 0 else nan}
        for index, name in enumerate(self.class_names):
            cells = self.class_count[index]
            values[f"rmse_{name}"] = torch.sqrt(self.class_sum_sq[index] / cells) if cells > 0 else nan
        if self.footprint_threshold is not None:
            values["iou"] = self.intersection / self.union if self.union > 0 else nan
        values["count"] = count
        return values
