"""FusionNet, the Local Climate Zone classifier of Sentinel-1 and Sentinel-2 patches with a
configurable fusion: which inputs form separate branches (the split) and after which block
the branches meet (the stage).

Public names
------------
FusionNet
    The model, registered as ``"fusion_net"``.
GROUPS
    The seven physical input groups, as indices of the 18 So2Sat LCZ42 channels.
SPLITS
    The input splits by name: ``"sar"``, ``"optical"``, ``"sar+optical"``, ``"physical"``.
STAGES
    The fusion stages, 0 to 6.
SUM_MODES
    ``"dependent"`` and ``"independent"``: how the branches of a stage-6 sum are trained.
split_groups
    The branches (channel index groups) of a split name or a group name.
log_summed_probabilities
    log sum_b softmax(z_b) of branch logits: stage 6's output.

Reference: Gawlikowski et al., "Fusion strategies for Sentinel-1 and Sentinel-2 data in
Local Climate Zone classification" (So2Sat LCZ42): five convolutional blocks and a dense
block, B1-B6; a fusion layer (channel concatenation) after stage s; s = 0 concatenates the
inputs, s = 6 sums the branches' class probabilities.

Decisions, where the paper leaves the details open:

- **Blocks.** B1-B5 are :class:`~sarheight.models.blocks.ConvBlock` s (two 3 x 3
  convolutions with BatchNorm and ReLU), a 2 x 2 max-pool after B1-B4 (32 -> 2 cells on a
  So2Sat patch; ``ceil_mode`` so that any size works); B6 is the dense block: global
  average pool, a dense layer with ReLU, dropout (0.4), and the class layer. The model
  returns logits; the softmax is in the loss (or :func:`torch.softmax` for probabilities).
- **Width.** A block of a network with k branches has ``ceil(width / sqrt(k))`` channels
  per branch (at least 8): a convolution's weights grow with the square of its width, so
  the k branches of a block hold about as many weights as the single network's block, and
  every split and stage has about the same capacity (within a factor of two, tested): the
  comparison is of where the inputs meet, not of network size.
- **Stage 6** returns the log of the summed branch probabilities, log(sum_b softmax(z_b)):
  its softmax (what the cross-entropy takes) is the mean of the branch probabilities and
  its arg-max the class the sum picks. Trained ``"dependent"`` the cross-entropy is taken
  of that sum (the branches learn together); trained ``"independent"`` each branch has its
  own cross-entropy (:meth:`FusionNet.branch_logits`), and since the branches share no
  parameter this is training them separately, in one run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InvalidInputError
from .blocks import ConvBlock
from .registry import integer_option, register

__all__ = ["GROUPS", "SPLITS", "STAGES", "SUM_MODES", "FusionNet", "log_summed_probabilities", "split_groups"]

#: The physical groups of the 18 So2Sat LCZ42 channels (Sentinel-1: Re/Im VH, Re/Im VV,
#: Lee-filtered VH and VV intensity, Re/Im of the Lee-filtered covariance; Sentinel-2: B2,
#: B3, B4, B5, B6, B7, B8, B8A, B11, B12), by index.
GROUPS: dict[str, tuple[int, ...]] = {
    "sar_complex": (0, 1, 2, 3),
    "sar_lee_intensity": (4, 5),
    "sar_lee_covariance": (6, 7),
    "rgb": (10, 9, 8),  # B4 B3 B2
    "red_edge": (11, 12, 13, 15),  # B5 B6 B7 B8A
    "nir": (14,),  # B8
    "swir": (16, 17),  # B11 B12
}

_SAR = tuple(range(8))
_OPTICAL = tuple(range(8, 18))

#: The input splits: the channel groups of each branch.
SPLITS: dict[str, tuple[tuple[int, ...], ...]] = {
    "sar": (_SAR,),
    "optical": (_OPTICAL,),
    "sar+optical": (_SAR, _OPTICAL),
    "physical": tuple(GROUPS.values()),
}

#: The fusion stages: after block s (0: the inputs, 6: the class probabilities).
STAGES = tuple(range(7))

#: How the branches of a stage-6 sum are trained.
SUM_MODES = ("dependent", "independent")

#: Channels of the blocks B1-B5 and of B6's dense layer, for a single branch.
WIDTHS = (32, 64, 128, 128, 256, 256)

#: The number of So2Sat LCZ42 channels, Sentinel-1 first.
SO2SAT_CHANNELS = 18


def split_groups(split: str | Sequence[Sequence[int]]) -> tuple[tuple[int, ...], ...]:
    """The branches of ``split``: a name of :data:`SPLITS`, a name of :data:`GROUPS` (one
    branch: a member of an independent sum), or the groups themselves (sequences of
    channel indices, each group one branch)."""
    if isinstance(split, str):
        if split in SPLITS:
            return SPLITS[split]
        if split in GROUPS:
            return (GROUPS[split],)
        raise InvalidInputError(f"unknown split {split!r}: give one of {', '.join(SPLITS)}, a physical group "
                                f"({', '.join(GROUPS)}) or the groups of channel indices")
    try:
        groups = tuple(tuple(int(i) for i in group) for group in split)
    except TypeError:
        raise InvalidInputError(f"a split is a name or a sequence of channel index groups, got {split!r}") from None
    if not groups or any(not group or min(group) < 0 for group in groups):
        raise InvalidInputError(f"every group of a split needs channel indices >= 0, got {split!r}")
    flat = [i for group in groups for i in group]
    if len(set(flat)) != len(flat):
        raise InvalidInputError(f"a channel belongs to one group only; {split!r} repeats some")
    return groups


def log_summed_probabilities(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """log sum_b softmax(z_b) of the (N, classes) logits of each branch, computed stably
    (log-sum-exp of the log-probabilities): the output of a stage-6 network."""
    return torch.logsumexp(torch.stack([F.log_softmax(z, dim=1) for z in logits]), dim=0)


def _block(index: int, in_channels: int, out_channels: int, num_classes: int, dropout: float) -> nn.Module:
    """Block B<index + 1>: a convolution block (pooled after B1-B4) or the dense block."""
    if index < 4:
        return nn.Sequential(ConvBlock(in_channels, out_channels), nn.MaxPool2d(2, ceil_mode=True))
    if index == 4:
        return ConvBlock(in_channels, out_channels)
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, out_channels),
                         nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(out_channels, num_classes))


@register("fusion_net")
class FusionNet(nn.Module):
    """The LCZ classifier with its inputs split into branches fused after block ``stage``.

    Parameters
    ----------
    split : ``"sar"``, ``"optical"``, ``"sar+optical"``, ``"physical"`` (the seven groups of
        :data:`GROUPS`), one group's name, or channel index groups.
    stage : the block after which the branches are concatenated (0: the inputs; 1-5 the
        convolution blocks; 6: the branches' class probabilities are summed).
    num_classes : classes (17 local climate zones).
    sum_mode : ``"dependent"`` (the stage-6 branches trained through their sum) or
        ``"independent"`` (each branch through its own loss); only with ``stage=6``.
    in_channels : channels of the input (18 for So2Sat); every group's indices lie below.
    dropout : dropout probability after the dense layer.
    widths : channels of B1-B5 and of the dense layer for one branch.

    Forward
    -------
    x : (N, in_channels, H, W) float, normalised per channel; So2Sat patches are 32 x 32,
        any size works.

    Returns (N, num_classes) logits (stage 6: the log of the summed branch probabilities).
    """

    def __init__(self, split: str | Sequence[Sequence[int]] = "sar+optical", stage: int = 0,
                 num_classes: int = 17, sum_mode: str = "dependent", *, in_channels: int = SO2SAT_CHANNELS,
                 dropout: float = 0.4, widths: Sequence[int] = WIDTHS) -> None:
        super().__init__()
        groups = split_groups(split)
        if isinstance(stage, bool) or stage not in STAGES:
            raise InvalidInputError(f"stage must be one of 0-6 (the block after which branches fuse), got {stage!r}")
        if sum_mode not in SUM_MODES:
            raise InvalidInputError(f"sum_mode must be one of {', '.join(SUM_MODES)}, got {sum_mode!r}")
        if sum_mode == "independent" and stage != 6:
            raise InvalidInputError(f"sum_mode='independent' trains the branches of a stage-6 sum apart; "
                                    f"stage {stage} fuses features, give stage=6 or sum_mode='dependent'")
        integer_option(num_classes, "num_classes", 2)
        if max(i for group in groups for i in group) >= in_channels:
            raise InvalidInputError(f"the split {split!r} names channels beyond the {in_channels} input channels")
        if not 0.0 <= float(dropout) < 1.0:
            raise InvalidInputError(f"dropout is a probability in [0, 1), got {dropout!r}")
        widths = tuple(int(w) for w in widths)
        if len(widths) != 6 or min(widths) < 1:
            raise InvalidInputError(f"widths gives six channel counts >= 1 (B1-B5 and the dense layer), got {widths}")
        self.groups = groups
        self.stage = stage
        self.sum_mode = sum_mode
        self.in_channels = in_channels
        self.num_classes = num_classes
        branches = len(groups)
        branch_widths = [max(8, math.ceil(w / math.sqrt(branches))) if branches > 1 else w for w in widths]
        # Index tensors as buffers follow the model to its device; not persistent, so a
        # checkpoint holds the weights only (the groups come from the configuration).
        for b, group in enumerate(groups):
            self.register_buffer(f"channels_{b}", torch.tensor(group, dtype=torch.long), persistent=False)
        self.branches = nn.ModuleList()
        for group in groups:
            blocks, channels = [], len(group)
            for index in range(stage):
                blocks.append(_block(index, channels, branch_widths[index], num_classes, dropout))
                channels = branch_widths[index]
            self.branches.append(nn.Sequential(*blocks))
        trunk, channels = [], (sum(len(g) for g in groups) if stage == 0 else branches * branch_widths[stage - 1])
        for index in range(stage, 6):
            trunk.append(_block(index, channels, widths[index], num_classes, dropout))
            channels = widths[index]
        self.trunk = nn.Sequential(*trunk)

    def _branch_outputs(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise InvalidInputError(f"FusionNet takes (N, {self.in_channels}, H, W) inputs, got {tuple(x.shape)}")
        return [branch(x.index_select(1, getattr(self, f"channels_{b}"))) for b, branch in enumerate(self.branches)]

    def branch_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The logits of each branch of a stage-6 network, (N, num_classes) each: what an
        independent sum trains each branch on."""
        if self.stage != 6:
            raise InvalidInputError(f"only a stage-6 network has a class output per branch; this one fuses after "
                                    f"stage {self.stage}")
        return self._branch_outputs(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = self._branch_outputs(x)
        if self.stage == 6:
            return log_summed_probabilities(outputs)
        return self.trunk(torch.cat(outputs, dim=1))
