"""The normalisation of a model's inputs by its training statistics: the one a task
trains with and a loaded checkpoint predicts with."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import InvalidInputError

__all__ = ["normalise_groups", "normalise_inputs"]


def normalise_inputs(inputs: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """``(inputs - mean) / std`` per channel of (N, C, H, W) inputs, missing values (NaN)
    set to 0 afterwards: the channel's training mean, the least surprising value."""
    normalised = (inputs - mean[:, None, None]) / std[:, None, None]
    return torch.where(torch.isfinite(normalised), normalised, torch.zeros((), dtype=normalised.dtype,
                                                                             device=normalised.device))


def normalise_groups(inputs: Sequence[torch.Tensor], mean: torch.Tensor, std: torch.Tensor) -> list[torch.Tensor]:
    """:func:`normalise_inputs` of several input tensors (N, C_k, H, W) whose channels are,
    one group after the other, those of the statistics ``mean`` and ``std`` (sum C_k)."""
    sizes = [tensor.shape[1] for tensor in inputs]
    if sum(sizes) != mean.numel():
        raise InvalidInputError(f"inputs of {sizes} channels for statistics of {mean.numel()} channels: give the "
                                "input groups the model was trained with")
    means, stds = torch.split(mean, sizes), torch.split(std, sizes)
    return [normalise_inputs(tensor, m, s) for tensor, m, s in zip(inputs, means, stds, strict=True)]
