"""A refinement network over every image a user has: one image, one pass x N dates, or
both passes x N dates, with one set of weights.

The inputs are the static channels (the coarse DEM's terrain, the priors, the
non-learned maps, the own pass's geometry), then, per pass, ``dates`` slots of
``date_channels`` channels each: a presence flag (1 where the date has a value at the
cell, 0 where it has none or the slot is empty), then the date's own channels (its
sigma0 over the fitted law, its pass's local incidence...). Each pass is a stream of its
own: an encoder shared by every date of the pass reads each date, and its features are
pooled over the dates present at the cell (their mean and their maximum, with the share
of the slots present), so that the output does not depend on the order of the dates and
takes any number of them, one to ``dates``. The pooled streams and the static channels
go into an ASK-UNet (or one of its ablations) that predicts the correction.

Public names
------------
DateStackNet
    The model (registered as ``ask_unet_stack``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError
from .registry import build, integer_option, register

__all__ = ["DateStackNet"]


#: The backbones a stack network may put its pooled streams into.
BACKBONES = ("ask_unet", "unet_lsk", "unet_eca", "unet")


class DateEncoder(nn.Module):
    """What one date of one pass says, cell by cell: two 3 x 3 convolutions (GELU) from
    the date's channels to ``features`` channels. Shapes: (N, channels, H, W) ->
    (N, features, H, W)."""

    def __init__(self, channels: int, features: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(channels, features, 3, padding=1), nn.GELU(),
                                    nn.Conv2d(features, features, 3, padding=1), nn.GELU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DateStackNet(nn.Module):
    """A U-Net family refinement network over stacks of dates and passes (see the
    module's docstring).

    Parameters
    ----------
    in_channels : every input channel: the static ones, then ``passes * dates *
        date_channels`` of the stacks (pass by pass, date by date, each date's presence
        flag first).
    passes : the streams (1: the own pass; 2: with the opposite one).
    dates : the date slots per pass.
    date_channels : the channels of a date slot, its presence flag included (>= 2).
    date_features : the features of the date encoder of each pass.
    backbone : the network the pooled streams and the static channels go into
        (:data:`BACKBONES`), built with ``base_channels``, ``depth`` and ``uncertainty``.

    Shapes: (N, in_channels, H, W) -> (N, 1, H, W), or (N, 2, H, W) with ``uncertainty``
    (the height and the log of its standard deviation), for any H, W >= 1.
    """

    def __init__(self, in_channels: int, *, passes: int = 2, dates: int = 10, date_channels: int = 3,
                 date_features: int = 16, backbone: str = "ask_unet", base_channels: int = 32, depth: int = 4,
                 uncertainty: bool = False) -> None:
        super().__init__()
        self.passes = integer_option(passes, "passes")
        self.dates = integer_option(dates, "dates")
        self.date_channels = integer_option(date_channels, "date_channels")
        self.date_features = integer_option(date_features, "date_features")
        if self.date_channels < 2:
            raise InvalidInputError(f"date_channels ({date_channels}) counts a date's presence flag and at least one "
                                    "channel of the date: give 2 or more")
        if backbone not in BACKBONES:
            raise InvalidInputError(f"backbone must be one of {', '.join(BACKBONES)}, got {backbone!r}")
        stacked = self.passes * self.dates * self.date_channels
        in_channels = integer_option(in_channels, "in_channels")
        if in_channels <= stacked:
            raise InvalidInputError(
                f"in_channels ({in_channels}) must exceed the stacks' {stacked} channels ({passes} passes x {dates} "
                f"dates x {date_channels}): give the static channels (the coarse DEM's terrain, the priors) first")
        self.in_channels = in_channels
        self.static_channels = in_channels - stacked
        self.backbone_name = backbone
        self.encoders = nn.ModuleList(DateEncoder(self.date_channels - 1, self.date_features)
                                      for _ in range(self.passes))
        self.backbone = build(backbone, in_channels=self.static_channels + self.passes * (2 * self.date_features + 1),
                              base_channels=base_channels, depth=depth, uncertainty=uncertainty)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor's arguments: ``build("ask_unet_stack", **model.config)`` builds
        the same architecture."""
        inner = self.backbone.config
        config = {"in_channels": self.in_channels, "passes": self.passes, "dates": self.dates,
                  "date_channels": self.date_channels, "date_features": self.date_features,
                  "backbone": self.backbone_name, "base_channels": inner["base_channels"], "depth": inner["depth"]}
        return {**config, "uncertainty": True} if inner.get("uncertainty") else config

    @property
    def date_layout(self) -> dict[str, int]:
        """The stacks the network reads after its static channels (as a terrain data
        module's ``date_layout`` gives them)."""
        return {"passes": self.passes, "dates": self.dates, "date_channels": self.date_channels}

    # The training core sets the output's offset and scale on the backbone's head.
    @property
    def output_offset(self) -> torch.Tensor:
        return self.backbone.output_offset

    @property
    def output_scale(self) -> torch.Tensor:
        return self.backbone.output_scale

    def pooled(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per pass, the date features pooled over the dates present at each cell: their
        mean and maximum (0 where no date is) and the share of the slots present."""
        batch, _, height, width = x.shape
        stacks = x[:, self.static_channels:].reshape(batch, self.passes, self.dates, self.date_channels, height,
                                                     width)
        found = []
        for index, encoder in enumerate(self.encoders):
            present = (stacks[:, index, :, :1] > 0.5).to(x.dtype)  # (N, D, 1, H, W)
            values = stacks[:, index, :, 1:].reshape(batch * self.dates, self.date_channels - 1, height, width)
            features = encoder(values).reshape(batch, self.dates, self.date_features, height, width)
            count = present.sum(dim=1)
            mean = (features * present).sum(dim=1) / count.clamp(min=1.0)
            # Absent dates never win the maximum; a cell without any date has features 0.
            lowest = torch.finfo(features.dtype).min
            maximum = torch.where(present > 0, features, torch.full_like(features, lowest)).amax(dim=1)
            maximum = torch.where(count > 0, maximum, torch.zeros_like(maximum))
            found += [mean, maximum, count / self.dates]
        return found

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The correction (N, 1, H, W), or with ``uncertainty`` (N, 2, H, W), of the inputs
        ``x`` (N, in_channels, H, W)."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise InvalidInputError(f"{type(self).__name__} takes an (N, {self.in_channels}, H, W) tensor, got "
                                    f"{shape}: give the channels the model was built and trained with")
        return self.backbone(torch.cat([x[:, :self.static_channels], *self.pooled(x)], dim=1))


@register("ask_unet_stack")
def ask_unet_stack(in_channels: int, *, passes: int = 2, dates: int = 10, date_channels: int = 3,
                   date_features: int = 16, backbone: str = "ask_unet", base_channels: int = 32, depth: int = 4,
                   uncertainty: bool = False) -> DateStackNet:
    """The stack network of :class:`DateStackNet` (one image to both passes x ``dates``)."""
    return DateStackNet(in_channels, passes=passes, dates=dates, date_channels=date_channels,
                        date_features=date_features, backbone=backbone, base_channels=base_channels, depth=depth,
                        uncertainty=uncertainty)
