"""ResNet-50 as an encoder of multi-scale features, with torchvision's parameter names, and
the loading of published ResNet-50 weights (ImageNet, SSL4EO-S12) from a local file.

The modules are named as torchvision's ``resnet50`` names them (``conv1``, ``bn1``,
``layer1.0.conv1``, ``layer1.0.downsample.0``, ...; timm's ResNet-50 uses the same names),
so that a published state dict loads into :class:`ResNet50Encoder` unchanged apart from
the classifier (``fc``), which an encoder lacks, and the first convolution, which
:func:`load_resnet_weights` adapts to the number of input bands. Nothing is downloaded:
the weights are a file the user names.

Public names
------------
Bottleneck
    The residual block of ResNet-50 (1 x 1, 3 x 3, 1 x 1 convolutions, expansion 4).
ResNet50Encoder
    The stem and the first ``stages`` residual stages of ResNet-50; returns the features of
    every scale.
load_resnet_weights
    Load a ResNet-50 state dict file into an encoder, the first convolution adapted to its
    input channels.
adapt_first_conv
    The adaptation: the RGB filters cycled over the C input channels and scaled by 3 / C.

Reference: He et al. 2016, "Deep Residual Learning for Image Recognition" (CVPR), in the
"v1.5" form of torchvision (the stride of a stage's first block on its 3 x 3 convolution,
not on the first 1 x 1).
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import InvalidInputError, MissingInputError
from .registry import integer_option

__all__ = ["STAGE_BLOCKS", "STAGE_CHANNELS", "Bottleneck", "ResNet50Encoder", "adapt_first_conv",
           "load_resnet_weights"]

#: Residual blocks in each of ResNet-50's four stages (``layer1`` ... ``layer4``).
STAGE_BLOCKS = (3, 4, 6, 3)

#: Output channels of the stem and of each stage: the stem's 64, then 256 ... 2048.
STAGE_CHANNELS = (64, 256, 512, 1024, 2048)

#: Prefixes that training frameworks put before a backbone's parameter names: DataParallel
#: (``module.``), Lightning and timm wrappers (``model.``), detection and SSL code
#: (``backbone.``, ``encoder.``), MoCo's query encoder (``encoder_q.``, SSL4EO-S12).
WRAPPER_PREFIXES = ("module.", "model.", "backbone.", "encoder.", "encoder_q.")


class Bottleneck(nn.Module):
    """ResNet-50's residual block: 1 x 1 to ``width`` channels, 3 x 3 (carrying the
    stride), 1 x 1 to ``4 * width``, each followed by BatchNorm; the sum with the shortcut
    (a strided 1 x 1 convolution and BatchNorm where the shape changes) goes through ReLU.

    Parameters
    ----------
    in_channels : channels of the input.
    width : channels of the inner convolutions; the output has ``4 * width``.
    stride : stride of the 3 x 3 convolution and of the shortcut (1 or 2).

    Shapes: (N, in_channels, H, W) -> (N, 4 * width, ceil(H / stride), ceil(W / stride)).
    """

    expansion = 4

    def __init__(self, in_channels: int, width: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = width * self.expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_channels != out_channels:
            self.downsample = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + identity)


class ResNet50Encoder(nn.Module):
    """The stem and the first ``stages`` stages of ResNet-50, returning each scale's features.

    Stem: 7 x 7 convolution with stride 2 (``conv1``), BatchNorm (``bn1``), ReLU; its
    output is the first feature map (64 channels, stride 2). Then a 3 x 3 max pool with
    stride 2 and the stages ``layer1`` ... ``layer{stages}`` of 3, 4, 6 and 3
    :class:`Bottleneck` blocks, with 256, 512, 1024 and 2048 output channels at strides 4,
    8, 16 and 32.

    The parameters are initialised as torchvision initialises ResNet-50 (He normal on the
    convolutions' fan-out, BatchNorm to the identity) and named as torchvision names them,
    so that :func:`load_resnet_weights` loads published weights into it.

    Parameters
    ----------
    in_channels : number of input channels C (>= 1).
    stages : how many of the four residual stages to keep (1 ... 4). Four is the whole
        backbone; the MBHR-Net authors' released code stops after ``layer3`` (stage 4 in
        Keras's numbering, which counts the stem as stage 1): ``stages=3``.
    weights : a ResNet-50 state dict file to load (see :func:`load_resnet_weights`), or None
        for the random initialisation.

    Shapes: (N, C, H, W) -> a list of ``stages + 1`` tensors, the i-th (N, STAGE_CHANNELS[i],
    H_i, W_i) with H_i = ceil(H / 2**(i + 1)) for the sizes a multiple of 2**(stages + 1)
    (others round as the strided convolutions do).

    Attributes
    ----------
    channels : the channels of the returned features, ``STAGE_CHANNELS[:stages + 1]``.
    reductions : their strides, ``(2, 4, ..., 2**(stages + 1))``.
    """

    def __init__(self, in_channels: int = 3, *, stages: int = 4, weights: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        integer_option(in_channels, "ResNet50Encoder's in_channels")
        integer_option(stages, "ResNet50Encoder's stages", 1, 4)
        self.in_channels, self.stages = in_channels, stages
        self.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        channels = 64
        for index in range(stages):
            width = 64 * 2**index
            blocks = [Bottleneck(channels if block == 0 else width * 4, width, 2 if block == 0 and index else 1)
                      for block in range(STAGE_BLOCKS[index])]
            self.add_module(f"layer{index + 1}", nn.Sequential(*blocks))
            channels = width * 4
        self.channels = STAGE_CHANNELS[:stages + 1]
        self.reductions = tuple(2**(i + 1) for i in range(stages + 1))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if weights is not None:
            load_resnet_weights(self, weights, in_channels=in_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The features of every scale, finest (the stem's, stride 2) first."""
        x = self.relu(self.bn1(self.conv1(x)))
        features = [x]
        x = self.maxpool(x)
        for index in range(self.stages):
            x = getattr(self, f"layer{index + 1}")(x)
            features.append(x)
        return features

    def extra_repr(self) -> str:
        return f"in_channels={self.in_channels}, stages={self.stages}"


def adapt_first_conv(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A first convolution's RGB filters spread over ``in_channels`` input channels.

    Input channel c gets the filter of RGB channel c mod 3, scaled by 3 / C: the filters
    are cycled over the channels, and the scale keeps the sum of all the filters' weights
    (for C a multiple of 3 exactly, otherwise nearly), so that an image whose bands all
    have the same value gives the first layer the response that a grey RGB image gave, and
    the pretrained BatchNorm statistics after it stay about right. This is
    segmentation_models_pytorch's ``patch_first_conv`` for C > 3; we apply the same rule
    for C < 3 (C = 2: R and G scaled by 1.5; C = 1: R scaled by 3), where that library
    sums the three filters for C = 1, so that one rule gives every channel count.

    Parameters
    ----------
    weight : tensor (out, 3, kh, kw), the pretrained filters.
    in_channels : number of input channels C (>= 1).

    Returns
    -------
    tensor (out, C, kh, kw), a new tensor.
    """
    if weight.dim() != 4 or weight.shape[1] != 3:
        raise InvalidInputError(f"adapt_first_conv takes RGB filters of shape (out, 3, kh, kw), got "
                                f"{tuple(weight.shape)}")
    integer_option(in_channels, "in_channels")
    index = torch.arange(in_channels) % 3
    return weight[:, index].clone() * (3.0 / in_channels)


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a state dict file, unwrapped from a training checkpoint and with the
    wrappers' prefixes removed."""
    if not path.is_file():
        raise MissingInputError(f"ResNet-50 weights {str(path)!r} do not exist: give a local state dict file "
                                "(.pth, .pt) of torchvision's or timm's resnet50; nothing is downloaded")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        # torch.save writes a zip archive; torchvision's older files are bare pickles, which
        # load as well, so only a zip that fails is known to hold more than tensors.
        if zipfile.is_zipfile(path) and isinstance(error, pickle.UnpicklingError):
            raise InvalidInputError(f"{str(path)!r} holds Python objects beyond tensors and plain values: save the "
                                    "weights as a state dict (torch.save(model.state_dict(), path))") from None
        raise InvalidInputError(f"{str(path)!r} is not a readable PyTorch state dict ({type(error).__name__}: "
                                f"{str(error).splitlines()[0] if str(error) else ''})") from None
    # Training checkpoints (Lightning, MoCo, timm's train script) keep the weights under a key.
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state or \
            not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise InvalidInputError(f"{str(path)!r} holds no state dict (a mapping of parameter names to tensors): "
                                f"got {type(state).__name__}")
    stripped = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, changed = key[len(prefix):], True
        stripped[key] = value
    return stripped


def _names(keys: list[str], limit: int = 6) -> str:
    shown = ", ".join(keys[:limit])
    return f"{shown} and {len(keys) - limit} more" if len(keys) > limit else shown


def load_resnet_weights(module: ResNet50Encoder, path: str | os.PathLike[str], *, in_channels: int) -> dict[str, Any]:
    """Load a ResNet-50 state dict from a local file into ``module``, in place.

    The file is read with ``torch.load(weights_only=True)`` (no code runs from it). It may
    hold the state dict itself or a checkpoint with it under ``"state_dict"`` or
    ``"model"``; the prefixes of :data:`WRAPPER_PREFIXES` are removed from the names. The
    classifier (``fc.*``) is dropped, and so are the stages the encoder does not keep
    (``layer4.*`` for ``stages=3``). The first convolution's filters are used as they are
    when they have ``in_channels`` input channels (weights pretrained on the same bands,
    as SSL4EO-S12's), and adapted by :func:`adapt_first_conv` when they have 3 (ImageNet).

    Parameters
    ----------
    module : the encoder to load into.
    path : the state dict file (torchvision's ``resnet50-*.pth``, timm's or torchgeo's
        ResNet-50 weights, a MoCo checkpoint's query encoder).
    in_channels : the encoder's number of input channels (must equal
        ``module.in_channels``; said explicitly, as the adaptation depends on it).

    Returns
    -------
    dict with ``"adapted"`` (whether the first convolution was adapted from RGB) and
    ``"dropped"`` (the names not loaded: the classifier and the stages not kept).

    Raises
    ------
    MissingInputError : the file does not exist.
    InvalidInputError : it is no state dict; it is not a ResNet-50's (the message names
        the missing and the unexpected parameters); a tensor's shape differs (the first
        convolution's included, when it has neither 3 nor ``in_channels`` input channels).
    """
    if not isinstance(module, ResNet50Encoder):
        raise InvalidInputError(f"load_resnet_weights loads into a ResNet50Encoder, got {type(module).__name__}")
    if in_channels != module.in_channels:
        raise InvalidInputError(f"in_channels={in_channels!r}, but the encoder takes {module.in_channels} channels")
    path = Path(path)
    state = _read_state_dict(path)
    own = module.state_dict()
    # Everything of a whole ResNet-50 that this encoder leaves out: the classifier, later stages.
    skipped_prefixes = ("fc.", *(f"layer{i}." for i in range(module.stages + 1, 5)))
    dropped = sorted(k for k in state if k.startswith(skipped_prefixes))
    state = {k: v for k, v in state.items() if not k.startswith(skipped_prefixes)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"it lacks {len(missing)} of the encoder's {len(own)} tensors ({_names(missing)})")
        if unexpected:
            parts.append(f"it has {len(unexpected)} that are no ResNet-50's ({_names(unexpected)})")
        raise InvalidInputError(f"{str(path)!r} is not a ResNet-50 state dict with torchvision's names: "
                                f"{'; '.join(parts)}")
    weight = state["conv1.weight"]
    adapted = False
    if weight.dim() == 4 and weight.shape[1] != in_channels and weight.shape[1] == 3:
        state["conv1.weight"], adapted = adapt_first_conv(weight, in_channels), True
    wrong = [f"{k} {tuple(state[k].shape)} (the encoder's is {tuple(v.shape)})" for k, v in own.items()
             if state[k].shape != v.shape]
    if wrong:
        hint = ""
        if state["conv1.weight"].shape[1:] != own["conv1.weight"].shape[1:]:
            hint = (f": only first convolutions of 3 (RGB) or {in_channels} input channels are used; for weights "
                    "pretrained on other bands, select the filters of the bands given")
        raise InvalidInputError(f"{str(path)!r} does not fit a ResNet-50 encoder of {in_channels} input channels: "
                                f"{_names(wrong, 3)}{hint}")
    # Match the encoder's dtype (a half-precision file into a float32 model).
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return {"adapted": adapted, "dropped": dropped}
