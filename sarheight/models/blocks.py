"""Attention blocks of the terrain-height models: Efficient Channel Attention (ECA) and the
Large Selective Kernel (LSK) block with its residual attention unit.

Public names
------------
ConvBlock
    The U-Net's convolution block: (3 x 3 convolution, BatchNorm, ReLU) twice.
eca_kernel_size
    The 1-D kernel size ECA takes for a number of channels.
ECA
    Channel attention: global average pool, 1-D convolution across channels, sigmoid gate.
LSKBlock
    Spatial selection between two large depthwise receptive fields (LSKNet).
LSKUnit
    The LSK block inside a normalised, layer-scaled residual unit, as LSKNet uses it.

References: Wang et al. 2020, "ECA-Net: Efficient Channel Attention for Deep Convolutional
Neural Networks" (CVPR); Li et al. 2023, "Large Selective Kernel Network for Remote Sensing
Object Detection" (ICCV).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .registry import integer_option

__all__ = ["ECA", "ConvBlock", "LSKBlock", "LSKUnit", "eca_kernel_size"]

#: The initial value of the LSK unit's layer scale (LSKNet's ``layer_scale_init_value``).
LAYER_SCALE_INIT = 1e-2


class ConvBlock(nn.Sequential):
    """(3 x 3 convolution, BatchNorm, ReLU) twice, the U-Net's convolution block; the
    convolutions have no bias, which the BatchNorm after them would cancel.

    Parameters
    ----------
    in_channels, out_channels : numbers of input and output channels (>= 1).

    Shapes: (N, in_channels, H, W) -> (N, out_channels, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        integer_option(in_channels, "ConvBlock's in_channels")
        integer_option(out_channels, "ConvBlock's out_channels")
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


def eca_kernel_size(channels: int, gamma: int = 2, b: int = 1) -> int:
    """The size of ECA's 1-D convolution across ``channels`` channels (Wang et al. 2020, eq. 12).

    t = int(|(log2(C) + b) / gamma|); k = t if t is odd else t + 1; at least 3, so that every
    channel's gate sees its two neighbours.

    Parameters
    ----------
    channels : number of channels C (>= 1).
    gamma, b : the mapping's constants, 2 and 1 in the paper.

    Returns
    -------
    int
        The odd kernel size k: 3 for C < 128, 5 for 128 <= C < 2048, 7 for 2048 <= C < 32768.
    """
    integer_option(channels, "eca_kernel_size's channels")
    t = int(abs((math.log2(channels) + b) / gamma))
    k = t if t % 2 else t + 1
    return max(k, 3)


class ECA(nn.Module):
    """Efficient Channel Attention: each channel scaled by a sigmoid gate computed from the
    global average of its neighbouring channels.

    Global average pool -> 1-D convolution over the channel axis (no bias, zero padding at
    the ends) -> sigmoid -> multiply the input. The kernel size follows the paper's mapping
    from C (:func:`eca_kernel_size`); the authors' released code (``eca_layer``) ignores that
    mapping and uses k = 3 for every layer. We use the mapping, as the paper states it: at
    the 128-512 channels of the deeper decoder levels it widens the gate to 5 neighbours.

    Parameters
    ----------
    channels : number of input channels C (>= 1).

    Shapes: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = integer_option(channels, "ECA's channels")
        self.kernel_size = eca_kernel_size(channels)
        self.conv = nn.Conv1d(1, 1, self.kernel_size, padding=(self.kernel_size - 1) // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = x.mean(dim=(2, 3))  # (N, C)
        gate = torch.sigmoid(self.conv(pooled.unsqueeze(1))).squeeze(1)  # channels as a 1-D signal
        return x * gate[:, :, None, None]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, kernel_size={self.kernel_size}"


class LSKBlock(nn.Module):
    """Large Selective Kernel block: a spatial gate that selects, per pixel, between a
    medium and a large receptive field (LSKNet's ``LSKblock``).

    Depthwise 5 x 5 (padding 2), then a depthwise 7 x 7 with dilation 3 (padding 9) on its
    output: the two branches see 5 x 5 and 23 x 23 pixels. Each is reduced by a 1 x 1
    convolution to C/2 channels; their concatenation's channel mean and channel maximum go
    through a 7 x 7 convolution (2 -> 2, padding 3) and a sigmoid, giving one spatial weight
    map per branch. The weighted sum of the branches is brought back to C channels by a
    1 x 1 convolution and multiplies the input. The output at a pixel therefore depends on
    inputs up to 2 + 9 + 3 = 14 pixels away (a 29 x 29 window).

    Parameters
    ----------
    channels : number of input channels C (>= 2, the branches have C // 2).

    Shapes: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = integer_option(channels, "LSKBlock's channels", 2)
        half = channels // 2
        self.conv_medium = nn.Conv2d(channels, channels, 5, padding=2, groups=channels)
        self.conv_large = nn.Conv2d(channels, channels, 7, padding=9, dilation=3, groups=channels)
        self.reduce_medium = nn.Conv2d(channels, half, 1)
        self.reduce_large = nn.Conv2d(channels, half, 1)
        self.conv_squeeze = nn.Conv2d(2, 2, 7, padding=3)
        self.conv_out = nn.Conv2d(half, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        medium = self.conv_medium(x)
        large = self.conv_large(medium)  # stacked on the 5 x 5: the dilated kernel's gaps are filled
        medium, large = self.reduce_medium(medium), self.reduce_large(large)
        both = torch.cat([medium, large], dim=1)
        descriptor = torch.cat([both.mean(dim=1, keepdim=True), both.amax(dim=1, keepdim=True)], dim=1)
        selection = torch.sigmoid(self.conv_squeeze(descriptor))
        attention = medium * selection[:, 0:1] + large * selection[:, 1:2]
        return x * self.conv_out(attention)

    def extra_repr(self) -> str:
        return f"channels={self.channels}"


class LSKUnit(nn.Module):
    """The LSK attention unit as LSKNet places it in its blocks: a normalised, layer-scaled
    residual around proj 1 x 1 -> GELU -> :class:`LSKBlock` -> proj 1 x 1.

    y = x + s * unit(BatchNorm(x)), with s a learnable per-channel layer scale initialised to
    1e-2. The bare unit of the paper's figure (no normalisation, unit residual) multiplies
    features by features in the LSK gate, so their scale compounds from stage to stage and
    gradients can explode in a deep encoder; LSKNet's own blocks normalise before the unit
    and scale the residual, and so do we: at initialisation the unit is close to the
    identity and learns how much attention to add.

    Parameters
    ----------
    channels : number of input channels C (>= 2).

    Shapes: (N, C, H, W) -> (N, C, H, W).
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = integer_option(channels, "LSKUnit's channels", 2)
        self.norm = nn.BatchNorm2d(channels)
        self.proj_in = nn.Conv2d(channels, channels, 1)
        self.activation = nn.GELU()
        self.lsk = LSKBlock(channels)
        self.proj_out = nn.Conv2d(channels, channels, 1)
        self.layer_scale = nn.Parameter(torch.full((channels,), LAYER_SCALE_INIT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.proj_out(self.lsk(self.activation(self.proj_in(self.norm(x)))))
        return x + self.layer_scale[:, None, None] * y

    def extra_repr(self) -> str:
        return f"channels={self.channels}"
