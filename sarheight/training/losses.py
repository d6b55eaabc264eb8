"""Losses of the pixel-wise regression, over the valid cells only."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InvalidInputError

#: The losses by name: mean absolute error, mean squared error, Huber (quadratic within
#: ``delta`` metres, linear beyond: robust to the few cells a reference misses badly).
LOSSES = ("l1", "mse", "huber")


def masked_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "l1",
                delta: float = 1.0) -> torch.Tensor:
    """The mean ``kind`` loss over the cells where ``mask`` is true.

    Parameters
    ----------
    prediction, target : tensors of one shape (N, 1, H, W), in metres.
    mask : bool tensor of that shape: the cells that count (valid target, not shadow, not
        outside the image, not padding). Values elsewhere, NaN included, never reach the loss
        or its gradient.
    kind : one of :data:`LOSSES`.
    delta : the Huber threshold (m).

    Returns
    -------
    A scalar tensor (m for l1 and huber, m² for mse); 0 (still attached to the graph) when
    no cell counts.
    """
    if kind not in LOSSES:
        raise InvalidInputError(f"loss {kind!r} is not one of {', '.join(LOSSES)}")
    if prediction.shape != target.shape or mask.shape != target.shape:
        raise InvalidInputError(f"prediction {tuple(prediction.shape)}, target {tuple(target.shape)} and mask "
                                f"{tuple(mask.shape)} must have one shape")
    mask = mask.bool()
    if not mask.any():
        return prediction.sum() * 0.0
    # Select, not multiply: 0 * NaN is NaN, and would poison the gradient.
    chosen, wanted = prediction[mask], target[mask]
    if kind == "l1":
        return F.l1_loss(chosen, wanted)
    if kind == "mse":
        return F.mse_loss(chosen, wanted)
    return F.huber_loss(chosen, wanted, delta=delta)
