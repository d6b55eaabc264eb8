"""Tests of sarheight.models.fusion: FusionNet through the shared model test at the fusion
stages that build differently (inputs, a middle block, the dense block, the sum), and its
structure: branches share no parameter before the fusion stage, everything after it is
shared, and each branch sees only its channels.
"""

import pytest

torch = pytest.importorskip("torch", reason="the models need the ml extra (PyTorch)")

from sarheight.errors import InvalidInputError  # noqa: E402
from sarheight.models import FusionNet, available, build, split_groups  # noqa: E402
from sarheight.models.fusion import GROUPS, SPLITS, STAGES  # noqa: E402
from tests.support.model_tester import ModelTester  # noqa: E402


class FusionTester(ModelTester):
    split = "sar+optical"
    stage = 0
    sum_mode = "dependent"
    channels = (18,)
    default_channels = 18
    sizes = ((37, 53), (17, 16), (1, 1), (3, 40))

    def make(self, in_channels, seed):
        torch.manual_seed(seed)
        return FusionNet(self.split, self.stage, num_classes=17, sum_mode=self.sum_mode, in_channels=in_channels,
                         widths=(8, 16, 16, 16, 32, 32))

    def expected_shape(self, batch, channels, height, width):
        return (batch, 17)


class TestFusionStage0(FusionTester):
    stage = 0


class TestFusionPhysicalStage3(FusionTester):
    split = "physical"
    stage = 3


class TestFusionStage5(FusionTester):
    stage = 5


class TestFusionPhysicalDependentSum(FusionTester):
    split = "physical"
    stage = 6


class TestFusionIndependentSum(FusionTester):
    stage = 6
    sum_mode = "independent"


def _branch_parameters(model):
    return [{id(p) for p in branch.parameters()} for branch in model.branches]


@pytest.mark.parametrize("split", ["sar+optical", "physical"])
@pytest.mark.parametrize("stage", STAGES)
def test_branches_share_nothing_before_the_fusion_everything_after_is_shared(split, stage):
    model = FusionNet(split, stage, widths=(8, 16, 16, 16, 32, 32))
    branches = _branch_parameters(model)
    assert len(branches) == len(SPLITS[split])
    for i, first in enumerate(branches):
        for second in branches[i + 1:]:
            assert not first & second
    trunk = {id(p) for p in model.trunk.parameters()}
    assert not trunk & set().union(*branches)
    # Every parameter is in a branch or the shared trunk; each branch holds the blocks up
    # to the stage (two convolutions per convolution block), the trunk the rest.
    assert {id(p) for p in model.parameters()} == trunk | set().union(*branches)
    convolution_blocks = min(stage, 5)
    for branch in model.branches:
        assert len(branch) == stage
        assert sum(1 for m in branch.modules() if isinstance(m, torch.nn.Conv2d)) == 2 * convolution_blocks
    assert len(model.trunk) == 6 - stage
    if stage == 6:
        assert sum(1 for p in model.trunk.parameters()) == 0
        for branch in model.branches:
            assert sum(1 for m in branch.modules() if isinstance(m, torch.nn.Linear)) == 2


@pytest.mark.parametrize("stage", [0, 2, 6])
def test_each_branch_sees_only_its_channels(stage):
    """The gradient of a branch's first layer with respect to the input is zero outside its group;
    a SAR-only network ignores the optical channels entirely."""
    torch.manual_seed(0)
    model = FusionNet("sar", stage, widths=(8, 16, 16, 16, 32, 32)).eval()
    x = torch.randn(2, 18, 32, 32, requires_grad=True)
    model(x).sum().backward()
    assert x.grad[:, 8:].abs().max() == 0
    assert x.grad[:, :8].abs().max() > 0
    model = FusionNet("rgb", stage, widths=(8, 16, 16, 16, 32, 32)).eval()
    x = torch.randn(2, 18, 32, 32, requires_grad=True)
    model(x).sum().backward()
    used = x.grad.abs().amax(dim=(0, 2, 3)) > 0
    assert used.nonzero().flatten().tolist() == [8, 9, 10]


def test_the_groups_partition_the_channels():
    flat = sorted(i for group in GROUPS.values() for i in group)
    assert flat == list(range(18))
    assert sorted(i for group in SPLITS["sar+optical"] for i in group) == list(range(18))
    assert GROUPS["rgb"] == (10, 9, 8)  # B4 B3 B2 of sen2's B2 B3 B4 ... after 8 SAR channels


def test_stage6_is_the_log_of_the_summed_branch_probabilities():
    torch.manual_seed(3)
    model = FusionNet("physical", 6, widths=(8, 16, 16, 16, 32, 32)).eval()
    x = torch.randn(4, 18, 32, 32)
    with torch.no_grad():
        summed = sum(torch.softmax(z, dim=1) for z in model.branch_logits(x))
        torch.testing.assert_close(model(x).exp(), summed)
        torch.testing.assert_close(torch.softmax(model(x), dim=1), summed / len(GROUPS))


def test_widths_follow_the_number_of_branches():
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    single = count(FusionNet("sar+optical", 0))
    # Capacity comparable across splits and stages: within a factor of two of the single network.
    for split in ("sar+optical", "physical"):
        for stage in STAGES:
            assert 0.5 < count(FusionNet(split, stage)) / single < 2.0, (split, stage)


def test_registered_and_built_by_name():
    assert "fusion_net" in available()
    model = build("fusion_net", split="physical", stage=4)
    assert isinstance(model, FusionNet) and model.stage == 4


@pytest.mark.parametrize("kwargs, words", [
    ({"split": "radar"}, "unknown split"),
    ({"stage": 7}, "stage must be one of 0-6"),
    ({"stage": True}, "stage must be one of 0-6"),
    ({"stage": 3, "sum_mode": "independent"}, "give stage=6"),
    ({"sum_mode": "mean"}, "sum_mode must be one of"),
    ({"split": [[0, 1], [1, 2]]}, "one group only"),
    ({"split": [[0, 30]]}, "beyond the 18 input channels"),
    ({"num_classes": 1}, "num_classes"),
    ({"dropout": 1.0}, "dropout"),
])
def test_bad_options_are_refused_before_building(kwargs, words):
    with pytest.raises(InvalidInputError, match=words):
        FusionNet(**kwargs)


def test_wrong_input_channels_say_what_is_expected():
    with pytest.raises(InvalidInputError, match=r"\(N, 18, H, W\)"):
        FusionNet()(torch.zeros(1, 10, 32, 32))


def test_split_groups_of_names_and_custom_groups():
    assert split_groups("nir") == ((14,),)
    assert split_groups([[0, 1], [5]]) == ((0, 1), (5,))
