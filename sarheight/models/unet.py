"""ASK-UNet, the terrain-height model, and its ablations down to the plain U-Net.

ASK-UNet (Luo et al., EGU26-8644) is a U-Net whose encoder stages end in an LSK attention
unit (large, selectable receptive fields: terrain context over hundreds of metres at 10 m
cells) and whose skip connections and decoder blocks pass through Efficient Channel
Attention. Its inputs are the reconstructed SAR image (dB, normalised), the prior heights,
the prior mask and the distance to the nearest prior, plus optional channels; its output
is one height per cell.

Public names
------------
ASKUNet
    The model; ``lsk`` and ``eca`` switch the attention off for the ablations.
UNet
    The plain U-Net (ASK-UNet without LSK and ECA).
pad_to_multiple
    The padding of :meth:`ASKUNet.forward`: any input size to a multiple of 2**depth.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidInputError
from .blocks import ECA, ConvBlock, LSKUnit
from .registry import integer_option, register

__all__ = ["ASKUNet", "UNet", "pad_to_multiple"]


def pad_to_multiple(x: torch.Tensor, multiple: int, minimum: int = 1) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad the last two axes of ``x`` to multiples of ``multiple`` that are at least
    ``minimum``, half before and half after (the extra cell after).

    Each axis is padded by reflection where its pad is shorter than the axis (the usual
    case: reflection continues the terrain's texture without a seam of repeated values),
    by replication where the input is too small to reflect (a few cells).

    Parameters
    ----------
    x : tensor of shape (..., H, W), at least 3-D (torch pads the last two axes of (C, H,
        W) and (N, C, H, W) tensors).
    multiple : the padded sizes are multiples of this (cells, >= 1).
    minimum : the padded sizes are at least this (cells).

    Returns
    -------
    padded : tensor of shape (..., H', W').
    offset : (top, left), where ``x`` starts inside ``padded``:
        ``padded[..., top:top + H, left:left + W]`` equals ``x``.
    """
    integer_option(multiple, "the padding multiple", 1)
    offset = []
    for axis in (-2, -1):
        size = x.shape[axis]
        target = max(-(-size // multiple), -(-minimum // multiple), 1) * multiple
        before = (target - size) // 2
        after = target - size - before
        offset.append(before)
        if before == after == 0:
            continue
        mode = "reflect" if after < size else "replicate"
        pads = (before, after, 0, 0) if axis == -1 else (0, 0, before, after)
        x = F.pad(x, pads, mode=mode)
    return x, (offset[0], offset[1])


class _DecoderLevel(nn.Module):
    """One decoder level: upsample the deeper features (bilinear x2, then 1 x 1 to the
    level's channels), concatenate the skip (ECA on it), convolution block, ECA."""

    def __init__(self, deep_channels: int, channels: int, eca: bool) -> None:
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
            nn.Conv2d(deep_channels, channels, 1),
        )
        self.skip_attention = ECA(channels) if eca else nn.Identity()
        self.block = ConvBlock(2 * channels, channels)
        self.attention = ECA(channels) if eca else nn.Identity()

    def forward(self, deep: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = torch.cat([self.up(deep), self.skip_attention(skip)], dim=1)
        return self.attention(self.block(x))


class ASKUNet(nn.Module):
    """ASK-UNet: a U-Net with LSK attention after its encoder stages and ECA on its skip
    connections and decoder blocks.

    Encoder: ``depth`` stages, stage i a :class:`~sarheight.models.blocks.ConvBlock` to
    ``base_channels * 2**i`` channels followed by an :class:`~sarheight.models.blocks.LSKUnit`
    (when ``lsk``), its output kept as the skip and max-pooled 2 x 2; a bottleneck block
    at ``base_channels * 2**depth``. Decoder: per level, bilinear upsampling x2 followed by
    a 1 x 1 convolution to the level's channels (rather than a transposed convolution,
    whose overlapping strides leave a checkerboard pattern that a height map shows as a
    periodic ripple), concatenation with the skip (passed through ECA when ``eca``), a
    convolution block, and ECA after it (when ``eca``). A 1 x 1 head gives one channel,
    and with ``uncertainty`` a second head (3 x 3 convolution, GELU, 1 x 1 convolution) gives
    the log of the standard deviation of the height's error, in the output's unit
    (heteroscedastic regression, Kendall & Gal 2017: the network says where it is unsure,
    trained on its own errors). That head reads the decoder's features *detached*: its
    loss never reaches the layers the heights come from (sharing them, the spread's
    likelihood outweighed the heights' loss and the heights stopped learning).

    The output is ``output_offset + output_scale * head``: two float buffers (0 and 1 at
    construction, saved in the state dict) that the training core sets from the training
    split's target statistics, so that the network learns a normalised target while the
    model, as saved, returns metres.

    Parameters
    ----------
    in_channels : number of input channels (>= 1).
    base_channels : channels of the first encoder stage (>= 2); stage i has
        ``base_channels * 2**i``.
    depth : number of encoder stages, i.e. of 2 x 2 poolings (>= 1).
    lsk : an LSK unit after each encoder stage.
    eca : ECA on each skip connection and after each decoder block.
    uncertainty : a second output channel, ``log_std``.

    Shapes: (N, in_channels, H, W) float -> (N, 1, H, W) (with ``uncertainty``, (N, 2, H, W):
    the height and the log of its standard deviation), for any H, W >= 1: the input is
    padded to a multiple of 2**depth (at least 2 * 2**depth, so that the bottleneck has
    more than one cell and batch normalisation trains on a batch of one) and the output
    cropped back (see :func:`pad_to_multiple`).

    Attributes
    ----------
    memory_format : the memory layout of the activations, ``torch.channels_last`` (the
        default) or ``torch.contiguous_format``. Channels last is what oneDNN's depthwise
        and 1 x 1 convolutions run fastest on: on the CPU it makes a training step of
        ASK-UNet about 1.45x faster and leaves the U-Net's as it is
        (``benchmarks/models.py``). The values agree to float rounding; the attribute is
        not part of :attr:`config`.
    """

    def __init__(self, in_channels: int, *, base_channels: int = 32, depth: int = 4, lsk: bool = True,
                 eca: bool = True, uncertainty: bool = False) -> None:
        super().__init__()
        self.in_channels = integer_option(in_channels, "in_channels", 1)
        self.base_channels = integer_option(base_channels, "base_channels", 2)
        self.depth = integer_option(depth, "depth", 1)
        for name, value in (("lsk", lsk), ("eca", eca), ("uncertainty", uncertainty)):
            if not isinstance(value, bool):
                raise InvalidInputError(f"{name} must be True or False, got {value!r}")
        self.lsk, self.eca, self.uncertainty = lsk, eca, uncertainty
        channels = [base_channels * 2**i for i in range(depth + 1)]
        self.encoder = nn.ModuleList(
            nn.Sequential(ConvBlock(in_channels if i == 0 else channels[i - 1], channels[i]),
                          LSKUnit(channels[i]) if lsk else nn.Identity())
            for i in range(depth)
        )
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = ConvBlock(channels[depth - 1], channels[depth])
        self.decoder = nn.ModuleList(_DecoderLevel(channels[i + 1], channels[i], eca)
                                     for i in reversed(range(depth)))
        self.head = nn.Conv2d(channels[0], 1, 1)
        self.uncertainty_head = nn.Sequential(
            nn.Conv2d(channels[0], channels[0], 3, padding=1), nn.GELU(), nn.Conv2d(channels[0], 1, 1),
        ) if uncertainty else None
        self.memory_format = torch.channels_last
        self.register_buffer("output_offset", torch.tensor(0.0))
        self.register_buffer("output_scale", torch.tensor(1.0))

    @property
    def config(self) -> dict[str, Any]:
        """The constructor's arguments: ``type(model)(**model.config)`` builds the same
        architecture, and so does ``build(model.variant, **model.config)``."""
        config = {"in_channels": self.in_channels, "base_channels": self.base_channels, "depth": self.depth,
                  "lsk": self.lsk, "eca": self.eca}
        # Only when set: the configurations of models without it stay what they were.
        return {**config, "uncertainty": True} if self.uncertainty else config

    @property
    def variant(self) -> str:
        """The registered name of this configuration: ``"ask_unet"``, ``"unet_lsk"``,
        ``"unet_eca"`` or ``"unet"``."""
        return {(True, True): "ask_unet", (True, False): "unet_lsk", (False, True): "unet_eca",
                (False, False): "unet"}[(self.lsk, self.eca)]

    def check_input(self, x: torch.Tensor) -> None:
        """Raise :class:`~sarheight.errors.InvalidInputError` unless ``x`` is an (N,
        in_channels, H, W) tensor, non-empty, of the parameters' floating-point dtype."""
        if not isinstance(x, torch.Tensor):
            raise InvalidInputError(f"{type(self).__name__} takes a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise InvalidInputError(
                f"{type(self).__name__} takes a 4-D tensor (batch, channels, height, width), got shape "
                f"{tuple(x.shape)}: add the batch axis with x.unsqueeze(0) for a single image"
            )
        if x.shape[1] != self.in_channels:
            raise InvalidInputError(
                f"{type(self).__name__} expected {self.in_channels} input channels, got {x.shape[1]} "
                f"(input shape {tuple(x.shape)}): give the channels the model was built and trained with"
            )
        if 0 in x.shape:
            raise InvalidInputError(f"{type(self).__name__} got an empty input of shape {tuple(x.shape)}")
        dtype = self.head.weight.dtype
        if x.dtype != dtype:
            raise InvalidInputError(
                f"{type(self).__name__} expected a {dtype} input like its parameters, got {x.dtype}: "
                f"convert it with x.to({dtype})"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Heights (N, 1, H, W) of the inputs ``x`` (N, in_channels, H, W); with
        ``uncertainty``, (N, 2, H, W): the heights and the log of their standard deviation."""
        self.check_input(x)
        height, width = x.shape[-2:]
        multiple = 2**self.depth
        x, (top, left) = pad_to_multiple(x, multiple, minimum=2 * multiple)
        x = x.contiguous(memory_format=self.memory_format)
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for level, skip in zip(self.decoder, reversed(skips), strict=True):
            x = level(x, skip)
        features = x[..., top:top + height, left:left + width]
        heights = self.output_offset + self.output_scale * self.head(features)
        if self.uncertainty_head is None:
            return heights
        # In the output's unit: the head learns a normalised spread, as the height head does.
        log_std = self.uncertainty_head(features.detach()) + torch.log(self.output_scale)
        return torch.cat([heights, log_std], dim=1)


class UNet(ASKUNet):
    """The plain U-Net: :class:`ASKUNet` without LSK and ECA, the ablation baseline.

    Parameters
    ----------
    in_channels, base_channels, depth : as :class:`ASKUNet`.
    """

    def __init__(self, in_channels: int, *, base_channels: int = 32, depth: int = 4,
                 uncertainty: bool = False) -> None:
        super().__init__(in_channels, base_channels=base_channels, depth=depth, lsk=False, eca=False,
                         uncertainty=uncertainty)

    @property
    def config(self) -> dict[str, Any]:
        """The constructor's arguments: ``UNet(**model.config)`` builds the same architecture."""
        config = {"in_channels": self.in_channels, "base_channels": self.base_channels, "depth": self.depth}
        return {**config, "uncertainty": True} if self.uncertainty else config


def _variant(name: str, with_lsk: bool, with_eca: bool, description: str) -> Callable[..., ASKUNet]:
    """Register the builder of one ablation variant under ``name``."""

    def builder(in_channels: int, *, base_channels: int = 32, depth: int = 4, lsk: bool = with_lsk,
                eca: bool = with_eca, uncertainty: bool = False) -> ASKUNet:
        if (lsk, eca) != (with_lsk, with_eca):
            raise InvalidInputError(
                f"the model {name!r} has lsk={with_lsk}, eca={with_eca}, got lsk={lsk}, eca={eca}: build "
                "'ask_unet', 'unet_lsk', 'unet_eca' or 'unet' for the other combinations"
            )
        if not (lsk or eca):
            return UNet(in_channels, base_channels=base_channels, depth=depth, uncertainty=uncertainty)
        return ASKUNet(in_channels, base_channels=base_channels, depth=depth, lsk=lsk, eca=eca,
                       uncertainty=uncertainty)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = (
        f"{description}: :class:`{'ASKUNet' if with_lsk or with_eca else 'UNet'}` with ``in_channels``, "
        f"``base_channels``, ``depth`` and ``uncertainty``; ``lsk`` and ``eca``, if given, must be {with_lsk} and "
        f"{with_eca}, "
        "so that ``build(model.variant, **model.config)`` rebuilds a model."
    )
    return register(name)(builder)


ask_unet = _variant("ask_unet", True, True, "ASK-UNet, LSK and ECA")
unet_lsk = _variant("unet_lsk", True, False, "U-Net with LSK units only")
unet_eca = _variant("unet_eca", False, True, "U-Net with ECA only")
unet = _variant("unet", False, False, "The plain U-Net")
