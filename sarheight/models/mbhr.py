"""MBHR-Net, the building-height model: a Sentinel-1 and a Sentinel-2 encoder (ResNet-50
each), their features fused at every scale, a U-Net decoder to one height per 10 m cell.

Public names
------------
MBHRNet
    The model, registered as ``"mbhr_net"``.
FUSIONS
    The ways of fusing the two encoders' features: ``"concat"``, ``"sum"``.
DECODER_CHANNELS
    The decoder's default channels, of which a model takes one per level.

Reference: the MBHR-Net paper (two ResNet-50 encoders for Sentinel-1 and Sentinel-2,
multi-scale fusion, U-Net decoder, monthly samples, MSE + cosine loss) and its authors'
released Keras code; where the two differ, the docstrings say which one we follow.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidInputError
from .blocks import ConvBlock
from .registry import integer_option, register
from .resnet import ResNet50Encoder, load_resnet_weights
from .unet import pad_to_multiple

__all__ = ["DECODER_CHANNELS", "FUSIONS", "MBHRNet"]

#: Fusion of the encoders' features at each scale: channel concatenation (the paper's text)
#: or element-wise sum (the authors' released code).
FUSIONS = ("concat", "sum")

#: The decoder's channels, deepest level first; a model of ``stages`` encoder stages has
#: ``stages + 1`` levels and takes the first ``stages + 1`` of these by default.
DECODER_CHANNELS = (256, 128, 64, 32, 16)


class _DecoderLevel(nn.Module):
    """Upsample the deeper features (bilinear x2), concatenate the skip if any, and a
    :class:`~sarheight.models.blocks.ConvBlock` to the level's channels."""

    def __init__(self, deep_channels: int, skip_channels: int, channels: int) -> None:
        super().__init__()
        self.block = ConvBlock(deep_channels + skip_channels, channels)

    def forward(self, deep: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        # Bilinear rather than a transposed convolution, whose overlapping strides print a
        # checkerboard onto a height map (as in ASK-UNet's decoder).
        x = F.interpolate(deep, scale_factor=2.0, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.block(x)


@register("mbhr_net")
class MBHRNet(nn.Module):
    """MBHR-Net: building heights (m) from a Sentinel-1 and a Sentinel-2 image of one month.

    Encoders: one :class:`~sarheight.models.resnet.ResNet50Encoder` per sensor, each giving
    the stem's features (stride 2) and those of its ``stages`` residual stages. The default
    ``stages=3`` follows the authors' released code, which stops ResNet-50 after stage 4
    of Keras's numbering (``conv4_block6``): features of 64, 256, 512 and 1024 channels at
    strides 2, 4, 8 and 16, fused at these four scales. ``stages=4`` adds ``layer4``
    (2048 channels, stride 32; 15 M more parameters per encoder) as the paper's figure of a
    whole ResNet-50 would have it.

    Fusion, at each scale: ``"concat"`` (the default, as the paper's text describes it)
    concatenates the two sensors' channels; ``"sum"`` (the released code) adds them, which
    halves the decoder's input channels.

    Decoder: the deepest fused features are the bridge; each level upsamples bilinearly
    x2, concatenates the fused skip of that scale and applies a (3 x 3 convolution,
    BatchNorm, ReLU) x 2 block; the last level, from stride 2 to the input's cells, has no
    skip (the encoders have nothing finer than stride 2). Head: 1 x 1 convolution and ReLU,
    so that heights are >= 0; its weights start non-negative and its bias at 0, so that
    the output starts above zero where the last features are (a ReLU head started below
    zero everywhere would pass no gradient).

    Parameters
    ----------
    s1_channels : Sentinel-1 input channels (2 for VV and VH backscatter).
    s2_channels : Sentinel-2 input channels (10 for the 10 m and 20 m bands).
        One of the two may be 0: that sensor has no encoder and its input is ignored,
        which makes the single-sensor networks of the paper's first experiments (one
        ResNet-50 encoder, the same decoder; ``fusion`` has nothing to fuse).
    fusion : one of :data:`FUSIONS`.
    weights : a ResNet-50 state dict file (ImageNet or SSL4EO-S12) loaded into both
        encoders by :func:`~sarheight.models.resnet.load_resnet_weights`, the first
        convolution adapted to each encoder's channels; or a pair (Sentinel-1 file,
        Sentinel-2 file), either None; or None for the random initialisation. Not part of
        :attr:`config`: a saved state dict carries the weights.
    stages : residual stages of each encoder (1 ... 4), 3 by default (see above).
    decoder_channels : the channels of the ``stages + 1`` decoder levels, deepest first;
        by default the first ``stages + 1`` of :data:`DECODER_CHANNELS`.

    Shapes: s1 (N, s1_channels, H, W) and s2 (N, s2_channels, H, W) float, on one grid (the
    input of a sensor of 0 channels may be None or of 0 channels) ->
    (N, 1, H, W) heights >= 0, for any H, W >= 1: the inputs are padded to a multiple of
    2**(stages + 1), at least twice that (so that the bridge has more than one cell and
    batch normalisation trains on a batch of one), and the output cropped back (see
    :func:`~sarheight.models.unet.pad_to_multiple`).
    """

    def __init__(self, s1_channels: int = 2, s2_channels: int = 10, *, fusion: str = "concat",
                 weights: str | os.PathLike[str] | Sequence[str | os.PathLike[str] | None] | None = None,
                 stages: int = 3, decoder_channels: Sequence[int] | None = None) -> None:
        super().__init__()
        self.s1_channels = integer_option(s1_channels, "MBHRNet's s1_channels", 0)
        self.s2_channels = integer_option(s2_channels, "MBHRNet's s2_channels", 0)
        if not (self.s1_channels or self.s2_channels):
            raise InvalidInputError("MBHRNet needs the channels of at least one sensor: s1_channels and s2_channels "
                                    "are both 0")
        self.stages = integer_option(stages, "MBHRNet's stages", 1, 4)
        if fusion not in FUSIONS:
            raise InvalidInputError(f"MBHRNet's fusion must be one of {', '.join(map(repr, FUSIONS))}, got {fusion!r}")
        self.fusion = fusion
        if decoder_channels is None:
            decoder_channels = DECODER_CHANNELS[:stages + 1]
        if isinstance(decoder_channels, (str, bytes)) or not isinstance(decoder_channels, Sequence) or \
                len(decoder_channels) != stages + 1:
            raise InvalidInputError(f"MBHRNet's decoder_channels must be {stages + 1} integers (one per decoder "
                                    f"level for stages={stages}), got {decoder_channels!r}")
        self.decoder_channels = tuple(integer_option(c, "MBHRNet's decoder_channels", 1) for c in decoder_channels)

        # A sensor of no channels has no encoder (None keeps the attribute and the other
        # encoder's parameter names those of the two-sensor model).
        self.encoder_s1 = ResNet50Encoder(s1_channels, stages=stages) if s1_channels else None
        self.encoder_s2 = ResNet50Encoder(s2_channels, stages=stages) if s2_channels else None
        per_sensor = self.encoders[0].channels
        both = len(self.encoders) == 2
        fused = tuple(2 * c for c in per_sensor) if fusion == "concat" and both else per_sensor
        #: Channels of the fused features, finest (stride 2) first.
        self.fused_channels = fused
        levels = []
        deep = fused[-1]
        for level, channels in enumerate(self.decoder_channels):
            skip_index = stages - 1 - level  # the fused scale this level reaches; none for the last level
            levels.append(_DecoderLevel(deep, fused[skip_index] if skip_index >= 0 else 0, channels))
            deep = channels
        self.decoder = nn.ModuleList(levels)
        self.head = nn.Conv2d(self.decoder_channels[-1], 1, 1)
        # The head's input is a ReLU's output (>= 0): with weights of both signs, the head
        # may start below zero at every cell, where the ReLU passes no gradient and the
        # model never learns. Non-negative weights and a zero bias start it alive.
        with torch.no_grad():
            self.head.weight.abs_()
            self.head.bias.zero_()
        self.activation = nn.ReLU()
        self.load_encoder_weights(weights)

    def load_encoder_weights(
        self, weights: str | os.PathLike[str] | Sequence[str | os.PathLike[str] | None] | None,
    ) -> None:
        """Load pretrained ResNet-50 weights into the encoders (see the ``weights``
        parameter); the decoder and head keep their parameters."""
        if weights is None:
            return
        if isinstance(weights, (str, os.PathLike)):
            pair = (weights, weights)
        elif isinstance(weights, Sequence) and len(weights) == 2:
            pair = tuple(weights)
        else:
            raise InvalidInputError(f"MBHRNet's weights must be a file, a pair (Sentinel-1 file, Sentinel-2 file) or "
                                    f"None, got {weights!r}")
        for encoder, path in zip((self.encoder_s1, self.encoder_s2), pair, strict=True):
            if path is not None and encoder is not None:
                load_resnet_weights(encoder, path, in_channels=encoder.in_channels)

    @property
    def encoders(self) -> list[ResNet50Encoder]:
        """The encoders of the sensors with channels, Sentinel-1's first."""
        return [encoder for encoder in (self.encoder_s1, self.encoder_s2) if encoder is not None]

    @property
    def config(self) -> dict[str, Any]:
        """The constructor's arguments but ``weights``: ``MBHRNet(**model.config)`` and
        ``build("mbhr_net", **model.config)`` build the same architecture."""
        return {"s1_channels": self.s1_channels, "s2_channels": self.s2_channels, "fusion": self.fusion,
                "stages": self.stages, "decoder_channels": self.decoder_channels}

    @property
    def variant(self) -> str:
        """The registered name, ``"mbhr_net"``."""
        return "mbhr_net"

    def check_inputs(self, s1: torch.Tensor, s2: torch.Tensor) -> None:
        """Raise :class:`~sarheight.errors.InvalidInputError` unless ``s1`` and ``s2`` are
        non-empty (N, C, H, W) tensors of the model's channels, of one batch size and
        grid, of the parameters' floating-point dtype (the input of a sensor without
        channels: None or a tensor of 0 channels, not checked further)."""
        name = type(self).__name__
        dtype = self.head.weight.dtype
        used = []
        for sensor, x, channels in (("s1", s1, self.s1_channels), ("s2", s2, self.s2_channels)):
            if not channels:
                if x is not None and not (isinstance(x, torch.Tensor) and x.dim() == 4 and x.shape[1] == 0):
                    raise InvalidInputError(
                        f"{name} was built without {sensor} (0 channels) but got {sensor} of "
                        f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}: give None or a "
                        "tensor of 0 channels"
                    )
                continue
            used.append(x)
            if not isinstance(x, torch.Tensor):
                raise InvalidInputError(f"{name} takes torch.Tensors, got {type(x).__name__} for {sensor}")
            if x.dim() != 4:
                raise InvalidInputError(
                    f"{name} takes 4-D tensors (batch, channels, height, width), got {sensor} of shape "
                    f"{tuple(x.shape)}: add the batch axis with x.unsqueeze(0) for a single image"
                )
            if x.shape[1] != channels:
                raise InvalidInputError(
                    f"{name} expected {channels} {sensor} channels, got {x.shape[1]} (shape {tuple(x.shape)}): "
                    "give the bands the model was built and trained with"
                )
            if 0 in x.shape:
                raise InvalidInputError(f"{name} got an empty {sensor} of shape {tuple(x.shape)}")
            if x.dtype != dtype:
                raise InvalidInputError(f"{name} expected {sensor} of {dtype} like its parameters, got {x.dtype}: "
                                        f"convert it with x.to({dtype})")
        if len(used) == 2 and (s1.shape[0] != s2.shape[0] or s1.shape[2:] != s2.shape[2:]):
            raise InvalidInputError(
                f"{name} takes s1 and s2 of one batch size on one grid, got s1 {tuple(s1.shape)} and s2 "
                f"{tuple(s2.shape)}: resample both sensors to the same 10 m grid"
            )

    def forward(self, s1: torch.Tensor | None, s2: torch.Tensor | None) -> torch.Tensor:
        """Heights (N, 1, H, W), in metres and >= 0, from ``s1`` (N, s1_channels, H, W) and
        ``s2`` (N, s2_channels, H, W)."""
        self.check_inputs(s1, s2)
        inputs = [x for x, channels in ((s1, self.s1_channels), (s2, self.s2_channels)) if channels]
        height, width = inputs[0].shape[-2:]
        multiple = 2**(self.stages + 1)
        features = []
        for encoder, x in zip(self.encoders, inputs, strict=True):
            x, (top, left) = pad_to_multiple(x, multiple, minimum=2 * multiple)  # one size: one offset
            features.append(encoder(x))
        if len(features) == 1:
            fused = features[0]
        elif self.fusion == "concat":
            fused = [torch.cat(pair, dim=1) for pair in zip(*features, strict=True)]
        else:
            fused = [a + b for a, b in zip(*features, strict=True)]
        x = fused[-1]
        for level, block in enumerate(self.decoder):
            skip_index = self.stages - 1 - level
            x = block(x, fused[skip_index] if skip_index >= 0 else None)
        x = self.activation(self.head(x))
        return x[..., top:top + height, left:left + width]

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.config.items())
