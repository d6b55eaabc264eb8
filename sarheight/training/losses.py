"""Losses of the pixel-wise regression, over the valid cells only: L1, MSE and Huber
(:func:`masked_loss`), and MBHR-Net's MSE + cosine (:func:`mbhr_loss`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import InvalidInputError

#: The losses by name: mean absolute error, mean squared error, Huber (quadratic within
#: ``delta`` metres, linear beyond: robust to the few cells a reference misses badly).
LOSSES = ("l1", "mse", "huber")


def _one_shape(mask: torch.Tensor, **tensors: torch.Tensor) -> torch.Tensor:
    """``mask`` as booleans, after refusing tensors and a mask of different shapes (named
    in the message, in the order given, the mask last)."""
    shapes = [tensor.shape for tensor in tensors.values()]
    if any(shape != mask.shape for shape in shapes):
        named = ", ".join(f"{name} {tuple(tensor.shape)}" for name, tensor in tensors.items())
        raise InvalidInputError(f"{named} and mask {tuple(mask.shape)} must have one shape")
    return mask.bool()


def masked_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "l1",
                delta: float = 1.0, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The mean ``kind`` loss over the cells where ``mask`` is true.

    Parameters
    ----------
    prediction, target : tensors of one shape (N, 1, H, W), in metres.
    mask : bool tensor of that shape: the cells that count (valid target, not shadow, not
        outside the image, not padding). Values elsewhere, NaN included, never reach the loss
        or its gradient.
    kind : one of :data:`LOSSES`.
    delta : the Huber threshold (m).
    weights : optional non-negative weights of the cells, of that shape: the loss is then
        their weighted mean (a class that is rare but matters counts more).

    Returns
    -------
    A scalar tensor (m for l1 and huber, m² for mse); 0 (still attached to the graph) when
    no cell counts.
    """
    if kind not in LOSSES:
        raise InvalidInputError(f"loss {kind!r} is not one of {', '.join(LOSSES)}")
    mask = _one_shape(mask, prediction=prediction, target=target)
    if not mask.any():
        return prediction.sum() * 0.0
    # Select, not multiply: 0 * NaN is NaN, and would poison the gradient.
    chosen, wanted = prediction[mask], target[mask]
    if weights is not None:
        if weights.shape != target.shape:
            raise InvalidInputError(f"weights {tuple(weights.shape)} must have the target's shape "
                                    f"{tuple(target.shape)}")
        chosen_weights = weights[mask].to(chosen.dtype)
        losses = {"l1": F.l1_loss, "mse": F.mse_loss}.get(kind)
        each = (losses(chosen, wanted, reduction="none") if losses is not None
                else F.huber_loss(chosen, wanted, delta=delta, reduction="none"))
        return (each * chosen_weights).sum() / chosen_weights.sum().clamp(min=torch.finfo(chosen.dtype).tiny)
    if kind == "l1":
        return F.l1_loss(chosen, wanted)
    if kind == "mse":
        return F.mse_loss(chosen, wanted)
    return F.huber_loss(chosen, wanted, delta=delta)


def mbhr_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, *,
              w_mse: float = 0.2, w_cos: float = 0.8, eps: float = 1e-6) -> torch.Tensor:
    """MBHR-Net's loss: ``w_mse * MSE + w_cos * (1 - cosine similarity)``, over the valid cells.

    MSE is the mean squared difference over all the batch's valid cells (m²). The cosine
    similarity is taken per sample between its prediction and target maps flattened to
    vectors, the cells outside ``mask`` set to 0 in both (so that they add to neither the
    dot product nor the norms), and averaged over the samples with at least one valid
    cell. The cosine term rewards the right pattern of heights whatever their scale, the
    MSE term their scale: a prediction ``k * target`` (k > 0) has cosine 1 and leaves
    ``w_mse * MSE``. The weights 0.2 and 0.8 are the paper's.

    The authors' released code trains with 0.4 MSE + 0.6 Keras ``CosineSimilarity``; as a
    loss Keras's cosine similarity is the *negative* similarity, so that code minimises
    0.4 MSE - 0.6 cos: the same gradient as 0.4 MSE + 0.6 (1 - cos), with other weights
    than the paper's and a loss that goes below zero. We follow the paper's weights and
    write the cosine term as 1 - cos, which is 0 for a perfect pattern and at most 2.

    A sample whose target (or prediction) is 0 at every valid cell, a tile without
    buildings, has no direction: its norm is clamped to ``eps`` so that nothing divides
    by 0, its cosine is then 0 and its cosine term 1, a constant with no gradient. Such
    tiles are learnt from the MSE term alone, which pulls their prediction to 0. Near a
    zero prediction the cosine's gradient grows as 1 / ||prediction|| (up to 1 / eps):
    the cosine ignores scale, so small maps move fast.

    Parameters
    ----------
    prediction, target : tensors of one shape (N, ...), heights in metres; the cosine is
        taken over all axes but the first.
    mask : bool tensor of that shape, the cells that count (valid reference, not padding);
        None for all. Values outside it, NaN included, never reach the loss or its gradient.
    w_mse, w_cos : the weights of the two terms (>= 0).
    eps : the smallest norm of a sample's map (m), for the all-zero maps.

    Returns
    -------
    A scalar tensor; 0 (still attached to the graph) when no cell counts.
    """
    if prediction.shape != target.shape or (mask is not None and mask.shape != target.shape):
        raise InvalidInputError(f"prediction {tuple(prediction.shape)}, target {tuple(target.shape)} and mask "
                                f"{None if mask is None else tuple(mask.shape)} must have one shape")
    if prediction.dim() < 2:
        raise InvalidInputError(f"mbhr_loss takes a batch of maps (N, ...), got shape {tuple(prediction.shape)}")
    for name, value in (("w_mse", w_mse), ("w_cos", w_cos), ("eps", eps)):
        if not (isinstance(value, (int, float)) and value >= 0 and value == value and value != float("inf")):
            raise InvalidInputError(f"mbhr_loss's {name} must be a finite number >= 0, got {value!r}")
    mask = torch.ones_like(target, dtype=torch.bool) if mask is None else mask.bool()
    if not mask.any():
        return prediction.sum() * 0.0
    # Select, not multiply: 0 * NaN is NaN, and would poison the gradient.
    mse = F.mse_loss(prediction[mask], target[mask])
    zero = torch.zeros((), dtype=prediction.dtype, device=prediction.device)
    p = torch.where(mask, prediction, zero).flatten(1)
    t = torch.where(mask, target, zero).flatten(1)
    # The norm through a clamped square: the norm's own gradient at 0 would be 0 / 0.
    p_norm, t_norm = (v.square().sum(1).clamp_min(eps**2).sqrt() for v in (p, t))
    cosine = (p * t).sum(1) / (p_norm * t_norm)
    counted = mask.flatten(1).any(1)
    return w_mse * mse + w_cos * (1.0 - cosine[counted]).mean()


#: The log standard deviations the uncertainty loss clamps to (in the output's unit): a
#: spread of e^-8 or e^6 output units is no answer, and an unbounded log would overflow.
LOG_STD_RANGE = (-8.0, 6.0)


def spread_loss(log_std: torch.Tensor, error: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The Gaussian negative log-likelihood of a prediction's ``error`` under the predicted
    spread, ``mean(log_std + error^2 / (2 exp(2 log_std)))`` over the cells of ``mask``.

    ``error`` is the target minus the prediction *detached* by the caller: the spread
    learns the size of the errors the height head makes without pulling the heights
    towards cells of small spread (the heights' own loss stays what it was; a joint
    likelihood trades accuracy for a smaller variance where the fit is hard, Seitzer et
    al. 2022). The minimum over ``log_std`` at a cell is ``log |error|``: the spread
    converges to the root mean square of the errors of cells that look alike.
    """
    mask = _one_shape(mask, log_std=log_std, error=error)
    if not mask.any():
        return log_std.sum() * 0.0
    chosen = log_std[mask].clamp(*LOG_STD_RANGE)
    return (chosen + 0.5 * error[mask] ** 2 * torch.exp(-2.0 * chosen)).mean()
