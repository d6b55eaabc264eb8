"""Models of the learning floor (torch only): terrain height (ASK-UNet), building height
(MBHR-Net) and Local Climate Zone fusion networks, with their shared blocks.

Needs the ``ml`` extra (``pip install 'sarheight[ml]'``): importing this package
without PyTorch raises :class:`~sarheight.extras.MissingExtraError` saying so.

Models are built by name (``build("ask_unet", in_channels=4)``); :func:`available` lists
the names, :func:`register` adds a builder. Modules: ``blocks`` (ECA, LSK, the convolution
block), ``unet`` (ASK-UNet and its ablations), ``resnet`` (ResNet-50 with torchvision's
names, pretrained weights from a local file), ``mbhr`` (MBHR-Net), ``fusion`` (the LCZ
fusion network), ``stack`` (the refinement network over stacks of dates and both passes),
``registry`` (the names).
"""

from ..extras import require

require("sarheight.models", "torch")

from .blocks import ECA, ConvBlock, LSKBlock, LSKUnit, eca_kernel_size  # noqa: E402
from .fusion import FusionNet, split_groups  # noqa: E402  (registers fusion_net)
from .mbhr import MBHRNet  # noqa: E402  (registers mbhr_net)
from .registry import available, build, register  # noqa: E402
from .resnet import ResNet50Encoder, adapt_first_conv, load_resnet_weights  # noqa: E402
from .stack import DateStackNet  # noqa: E402  (registers ask_unet_stack)
from .unet import ASKUNet, UNet, pad_to_multiple  # noqa: E402  (registers the U-Net family)

__all__ = [
    "ECA",
    "ASKUNet",
    "ConvBlock",
    "DateStackNet",
    "FusionNet",
    "LSKBlock",
    "LSKUnit",
    "MBHRNet",
    "ResNet50Encoder",
    "UNet",
    "adapt_first_conv",
    "available",
    "build",
    "eca_kernel_size",
    "load_resnet_weights",
    "pad_to_multiple",
    "register",
    "split_groups",
]
