"""Tests of sarheight.models: the attention blocks, ASK-UNet and its ablations, the builders.

References: the shared model test (tests/support/model_tester.py) on the four variants; parameter
counts from the layer formulae; ECA's kernel sizes and gates computed by hand; LSK's
receptive field from its kernel sizes; reflection and replication padding by index.
"""

import copy
import math

import pytest

torch = pytest.importorskip("torch", reason="the models need the ml extra (PyTorch)")

from sarheight.errors import InvalidInputError  # noqa: E402
from sarheight.models import (  # noqa: E402
    ECA,
    ASKUNet,
    LSKBlock,
    LSKUnit,
    UNet,
    available,
    build,
    eca_kernel_size,
    pad_to_multiple,
    register,
    registry,
)
from tests.support.model_tester import ModelTester  # noqa: E402

VARIANTS = ("unet", "unet_eca", "unet_lsk", "ask_unet")

# --------------------------------------------------------------------------------------
# the shared model test on the four variants (small: base 8, depth 3, stride 8)
# --------------------------------------------------------------------------------------


class VariantTester(ModelTester):
    name = ""

    def make(self, in_channels, seed):
        torch.manual_seed(seed)
        return build(self.name, in_channels=in_channels, base_channels=8, depth=3)


class TestUNet(VariantTester):
    name = "unet"


class TestUNetECA(VariantTester):
    name = "unet_eca"


class TestUNetLSK(VariantTester):
    name = "unet_lsk"


class TestASKUNet(VariantTester):
    name = "ask_unet"


class TestASKUNetUncertainty(ModelTester):
    """ASK-UNet with the second head: the height and the log of its standard deviation."""

    def make(self, in_channels, seed):
        torch.manual_seed(seed)
        return build("ask_unet", in_channels=in_channels, base_channels=8, depth=3, uncertainty=True)

    def expected_shape(self, batch, channels, height, width):
        return (batch, 2, height, width)


def test_uncertainty_head_is_in_the_output_unit():
    # The height head's output scale applies to the spread too: log_std moves by log(scale).
    model = build("unet", in_channels=2, base_channels=4, depth=2, uncertainty=True).eval()
    x = torch.randn(1, 2, 16, 16)
    before = model(x)
    model.output_scale.fill_(10.0)
    model.output_offset.fill_(5.0)
    after = model(x)
    assert torch.allclose(after[:, 0], 5.0 + 10.0 * before[:, 0], atol=1e-5)
    assert torch.allclose(after[:, 1], before[:, 1] + math.log(10.0), atol=1e-5)
    assert build(model.variant, **model.config).config == model.config == {
        "in_channels": 2, "base_channels": 4, "depth": 2, "uncertainty": True}
    assert "uncertainty" not in build("unet", in_channels=2, base_channels=4, depth=2).config


# --------------------------------------------------------------------------------------
# parameter counts
# --------------------------------------------------------------------------------------


def _conv_block(i, o):
    return 9 * i * o + 2 * o + 9 * o * o + 2 * o  # two bias-free 3 x 3 convolutions, two BatchNorms


def _lsk_unit(c):
    h = c // 2
    block = (25 * c + c) + (49 * c + c) + 2 * (c * h + h) + (2 * 2 * 49 + 2) + (h * c + c)
    return 2 * c + 2 * (c * c + c) + block + c  # BatchNorm, two projections, the block, the layer scale


def _expected_parameters(in_channels, base, depth, lsk, eca):
    c = [base * 2**i for i in range(depth + 1)]
    count = _conv_block(c[depth - 1], c[depth]) + c[0] + 1  # bottleneck, head
    for i in range(depth):
        count += _conv_block(in_channels if i == 0 else c[i - 1], c[i]) + (_lsk_unit(c[i]) if lsk else 0)
        count += c[i + 1] * c[i] + c[i] + _conv_block(2 * c[i], c[i])  # upsampling 1 x 1, decoder block
        count += 2 * eca_kernel_size(c[i]) if eca else 0  # skip and decoder ECAs
    return count


def _parameters(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts_follow_the_layer_formulae():
    """base 4, depth 2, 3 input channels, by hand: U-Net 268 + 896 (encoder) + 3520
    (bottleneck) + 136 + 1760 + 36 + 448 (decoder) + 5 (head) = 7069; ECA adds four 3-tap
    kernels (12); the LSK units add 586 (4 channels) + 1086 (8 channels) = 1672."""
    expected = {"unet": 7069, "unet_eca": 7081, "unet_lsk": 8741, "ask_unet": 8753}
    for name in VARIANTS:
        model = build(name, in_channels=3, base_channels=4, depth=2)
        assert _parameters(model) == expected[name], name
        assert _expected_parameters(3, 4, 2, model.lsk, model.eca) == expected[name], name
    for base, depth, in_channels in ((6, 3, 5), (32, 4, 4)):
        for name in VARIANTS:
            model = build(name, in_channels=in_channels, base_channels=base, depth=depth)
            assert _parameters(model) == _expected_parameters(in_channels, base, depth, model.lsk, model.eca)


def test_parameter_counts_of_the_ablations(capsys):
    """At the default configuration (base 32, depth 4, 4 input channels): U-Net 7,241,089;
    +ECA 7,241,121; +LSK 7,586,361; ASK-UNet 7,586,393 (LSK adds 4.8 %, ECA 32 weights)."""
    counts = {name: _parameters(build(name, in_channels=4)) for name in VARIANTS}
    with capsys.disabled():
        print("\nparameters (base 32, depth 4, 4 channels): "
              + ", ".join(f"{name} {count:,}" for name, count in counts.items()))
    assert counts["unet"] < counts["unet_eca"] < counts["unet_lsk"] < counts["ask_unet"]
    # The two attentions add their parameters independently.
    assert counts["ask_unet"] - counts["unet"] == (counts["unet_eca"] - counts["unet"]) + (
        counts["unet_lsk"] - counts["unet"])
    assert counts == {"unet": 7_241_089, "unet_eca": 7_241_121, "unet_lsk": 7_586_361, "ask_unet": 7_586_393}


# --------------------------------------------------------------------------------------
# ECA
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("channels", "k"), [
    # (log2 C + 1) / 2 = 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6 -> t = 2, 3, 3, 4, 4, 5, 5, 6 -> odd k
    (16, 3), (32, 3), (64, 3), (128, 5), (256, 5), (512, 5), (1024, 5), (2048, 7),
    # t = 0 or 1 for C = 1 .. 7 (k would be 1): at least 3
    (1, 3), (2, 3), (4, 3), (8, 3),
])
def test_eca_kernel_size_follows_the_paper(channels, k):
    assert eca_kernel_size(channels) == k
    eca = ECA(channels)
    assert eca.conv.kernel_size == (k,)
    assert eca.conv.padding == ((k - 1) // 2,)


def test_eca_gates_each_channel_by_its_neighbours_means():
    """The gate of channel c is sigmoid(sum_j w_j m_{c + j - k // 2}), with m the channels'
    spatial means and zeros beyond the first and last channel."""
    torch.manual_seed(0)
    eca = ECA(256).double()
    k = eca.kernel_size
    x = torch.randn(2, 256, 5, 7, dtype=torch.float64)
    w = eca.conv.weight.detach().reshape(-1)
    means = x.mean(dim=(2, 3))
    expected = torch.empty_like(x)
    for n in range(2):
        for c in range(256):
            total = sum(float(w[j]) * float(means[n, c + j - k // 2])
                        for j in range(k) if 0 <= c + j - k // 2 < 256)
            expected[n, c] = x[n, c] / (1.0 + math.exp(-total))
    torch.testing.assert_close(eca(x), expected, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------------------
# LSK
# --------------------------------------------------------------------------------------


def _support_radius(gradient, centre):
    """The largest Chebyshev distance from ``centre`` of a non-zero cell of ``gradient``."""
    rows, cols = torch.nonzero(gradient.abs().sum(dim=(0, 1)) > 0, as_tuple=True)
    return int(torch.maximum((rows - centre[0]).abs(), (cols - centre[1]).abs()).max())


def test_lsk_large_branch_spans_23_pixels():
    """The depthwise 5 x 5 followed by the 7 x 7 with dilation 3 reach 2 + 9 = 11 pixels
    from an impulse: a 23-pixel-wide receptive field."""
    torch.manual_seed(0)
    block = LSKBlock(4).double()
    impulse = torch.zeros(1, 4, 41, 41, dtype=torch.float64)
    impulse[:, :, 20, 20] = 1.0
    with torch.no_grad():
        branch = lambda x: block.conv_large(block.conv_medium(x))  # noqa: E731
        response = branch(impulse) - branch(torch.zeros_like(impulse))  # without the biases
    assert _support_radius(response, (20, 20)) == 11
    assert (response[0, :, 20, 20 + 11] != 0).all() and (response[0, :, 20 - 11, 20] != 0).all()


def test_lsk_block_reaches_14_pixels():
    """The block's output at a pixel depends on inputs up to 11 + 3 (the 7 x 7 selection
    convolution) = 14 pixels away, and on none farther."""
    torch.manual_seed(0)
    for module in (LSKBlock(6), LSKUnit(6).eval()):
        module = module.double()
        x = torch.randn(1, 6, 45, 45, dtype=torch.float64, requires_grad=True)
        module(x)[0, :, 22, 22].sum().backward()
        assert _support_radius(x.grad, (22, 22)) == 14, type(module).__name__
        assert x.grad[0, :, 22, 22 + 14].abs().sum() > 0


def test_lsk_widens_the_models_receptive_field():
    """Through the whole network (evaluation mode, where batch statistics do not couple the
    cells): each LSK unit adds its 14 pixels, at its stage's resolution, to the plain U-Net's
    reach: 14 at the first stage, 2 x 14 at the second (half resolution)."""
    radii = {}
    for name in ("unet", "unet_lsk"):
        torch.manual_seed(0)
        model = build(name, in_channels=2, base_channels=8, depth=2).double().eval()
        x = torch.randn(1, 2, 160, 160, dtype=torch.float64, requires_grad=True)
        model(x)[0, 0, 80, 80].backward()
        radii[name] = _support_radius(x.grad, (80, 80))
    assert radii["unet_lsk"] == radii["unet"] + 14 + 2 * 14


def test_lsk_block_gates_its_input():
    torch.manual_seed(0)
    block = LSKBlock(5)  # an odd channel count: branches of 2 channels
    assert block.reduce_medium.out_channels == 2
    assert torch.equal(block(torch.zeros(2, 5, 9, 11)), torch.zeros(2, 5, 9, 11))


def test_lsk_unit_is_a_scaled_residual():
    """Layer scale 1e-2 at construction; with the scale at zero the unit is the identity."""
    torch.manual_seed(0)
    unit = LSKUnit(8)
    assert torch.equal(unit.layer_scale.detach(), torch.full((8,), 1e-2))
    x = torch.randn(2, 8, 13, 9)
    assert not torch.equal(unit(x), x)
    with torch.no_grad():
        unit.layer_scale.zero_()
    assert torch.equal(unit(x), x)


# --------------------------------------------------------------------------------------
# ASK-UNet: output scaling, padding, configuration, errors, stability
# --------------------------------------------------------------------------------------


def test_output_offset_and_scale_bring_the_output_to_metres(tmp_path):
    torch.manual_seed(0)
    model = build("ask_unet", in_channels=4, base_channels=4, depth=2).eval()
    x = torch.randn(2, 4, 23, 31)
    with torch.no_grad():
        raw = model(x)
        model.output_offset.fill_(812.5)
        model.output_scale.fill_(140.0)
        metres = model(x)
    torch.testing.assert_close(metres, 812.5 + 140.0 * raw)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    assert float(state["output_offset"]) == 812.5 and float(state["output_scale"]) == 140.0
    rebuilt = build(model.variant, **model.config).eval()
    rebuilt.load_state_dict(state)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), metres)


@pytest.mark.parametrize("name", VARIANTS)
def test_config_rebuilds_the_model(name):
    torch.manual_seed(0)
    model = build(name, in_channels=3, base_channels=4, depth=2)
    assert model.variant == name
    for rebuilt in (type(model)(**model.config), build(model.variant, **model.config)):
        assert type(rebuilt) is type(model)
        assert rebuilt.config == model.config
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes
    assert isinstance(model, ASKUNet)
    assert isinstance(model, UNet) == (name == "unet")


def test_padding_reflects_and_replicates_by_index():
    x = torch.arange(2 * 37 * 53, dtype=torch.float32).reshape(1, 2, 37, 53)
    padded, (top, left) = pad_to_multiple(x, 16, minimum=32)
    assert padded.shape == (1, 2, 48, 64) and (top, left) == (5, 5)
    assert torch.equal(padded[..., 5:42, 5:58], x)
    assert torch.equal(padded[..., 4, 5:58], x[..., 1, :])  # reflection leaves out the edge row
    assert torch.equal(padded[..., 42 + 5, 5:58], x[..., 35 - 5, :])  # bottom: 6 rows, the last 36 - 6
    assert torch.equal(padded[..., 5:42, 0], x[..., :, 5])
    small = torch.tensor([[[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]]])  # 3 x 2: too small to reflect 15 cells
    padded, (top, left) = pad_to_multiple(small, 16, minimum=32)
    assert padded.shape == (1, 1, 32, 32) and (top, left) == (14, 15)
    assert torch.equal(padded[0, 0, :14 + 1, :15 + 1], torch.ones(15, 16))
    assert torch.equal(padded[0, 0, 14 + 3:, 15 + 2:], torch.full((15, 15), 6.0))
    exact = torch.randn(1, 3, 32, 64)
    padded, offset = pad_to_multiple(exact, 16, minimum=32)
    assert offset == (0, 0) and torch.equal(padded, exact)


@pytest.mark.parametrize("size", [(1, 1), (7, 200), (16, 16), (31, 33), (64, 64), (97, 50)])
def test_output_size_equals_input_size(size):
    torch.manual_seed(0)
    model = build("ask_unet", in_channels=2, base_channels=4, depth=4)
    for mode in (model.train, model.eval):
        mode()
        assert model(torch.randn(1, 2, *size)).shape == (1, 1, *size)


def test_build_names_the_available_models():
    assert set(VARIANTS) <= set(available())
    with pytest.raises(InvalidInputError, match="unknown model 'askunet'") as raised:
        build("askunet", in_channels=4)
    for name in VARIANTS:
        assert name in str(raised.value)


def test_build_checks_the_options_before_building():
    with pytest.raises(InvalidInputError, match=r"it takes in_channels.*base_channels=32"):
        build("unet", in_channels=4, width=3)
    with pytest.raises(InvalidInputError, match="in_channels"):
        build("ask_unet")
    with pytest.raises(InvalidInputError, match="'unet' has lsk=False, eca=False, got lsk=True"):
        build("unet", in_channels=4, lsk=True)
    with pytest.raises(InvalidInputError, match="'ask_unet' has lsk=True, eca=True"):
        build("ask_unet", **build("unet_lsk", in_channels=2, base_channels=4, depth=1).config)
    for kwargs, message in (({"in_channels": 0}, "in_channels must be an integer >= 1, got 0"),
                            ({"in_channels": 2.0}, "in_channels must be an integer"),
                            ({"in_channels": 3, "base_channels": 1}, "base_channels must be an integer >= 2"),
                            ({"in_channels": 3, "depth": 0}, "depth must be an integer >= 1"),
                            ({"in_channels": 3, "lsk": "yes"}, "lsk must be True or False")):
        with pytest.raises(InvalidInputError, match=message):
            ASKUNet(**kwargs)


def test_register_refuses_taken_and_malformed_names(monkeypatch):
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))

    @register("toy_net")
    def toy_net(in_channels: int) -> torch.nn.Module:
        return torch.nn.Conv2d(in_channels, 1, 1)

    assert "toy_net" in available()
    assert build("toy_net", in_channels=3).in_channels == 3
    with pytest.raises(InvalidInputError, match=r"'unet' is taken by sarheight\.models\.unet\.unet"):
        register("unet")(toy_net)
    for name in ("Toy", "2net", "toy-net", ""):
        with pytest.raises(InvalidInputError, match="lower case letters"):
            register(name)


def test_forward_refuses_unusable_inputs():
    model = build("ask_unet", in_channels=4, base_channels=4, depth=2)
    cases = [
        (torch.randn(4, 16, 16), r"4-D tensor \(batch, channels, height, width\), got shape \(4, 16, 16\)"),
        (torch.randn(2, 3, 16, 16), r"expected 4 input channels, got 3"),
        (torch.randn(0, 4, 16, 16), "empty input"),
        (torch.ones(1, 4, 16, 16, dtype=torch.int64), "expected a torch.float32 input.*got torch.int64"),
        (torch.randn(1, 4, 16, 16, dtype=torch.float64), "got torch.float64: convert it"),
        ([[1.0]], "takes a torch.Tensor, got list"),
    ]
    for x, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            model(x)


def test_training_with_lsk_keeps_gradients_bounded():
    """Twenty steps of SGD with momentum on random data: the gradient norm stays finite and
    within 10x its first value, and the loss goes down."""
    torch.manual_seed(0)
    model = build("ask_unet", in_channels=4, base_channels=8, depth=3).train()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(4, 4, 48, 48, generator=generator)
    target = x[:, :1] * 2.0 + torch.randn(4, 1, 48, 48, generator=generator) * 0.1
    norms, losses = [], []
    for _ in range(20):
        optimiser.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), target)
        loss.backward()
        norms.append(float(torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))))
        losses.append(loss.item())
        optimiser.step()
    assert all(math.isfinite(n) for n in norms)
    assert max(norms) < 10.0 * norms[0], norms
    assert losses[-1] < 0.5 * losses[0], losses


def test_memory_layouts_give_the_same_heights():
    """Channels last (the default, faster on the CPU) and NCHW activations agree to float
    rounding, in both modes, gradients included."""
    torch.manual_seed(0)
    original = build("ask_unet", in_channels=3, base_channels=8, depth=3)
    assert original.memory_format == torch.channels_last
    x = torch.randn(2, 3, 45, 38)
    results = []
    for memory_format in (torch.channels_last, torch.contiguous_format):
        model = copy.deepcopy(original)  # the same weights and statistics for each layout
        model.memory_format = memory_format
        model.train()
        model(x).square().mean().backward()
        gradient = model.encoder[0][0][0].weight.grad.clone()
        model.eval()
        with torch.no_grad():
            results.append((model(x), gradient))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------------------
# the stack network: the shared model test, and invariance to the order of the dates
# --------------------------------------------------------------------------------------

#: A small layout: 2 passes x 3 dates x 3 channels (presence first) after the static ones.
STACK = {"passes": 2, "dates": 3, "date_channels": 3}
STACKED = 2 * 3 * 3


def stack_inputs(batch, channels, height, width, seed=0, present=None):
    """Standard normal inputs whose presence flags are 1 (or as ``present`` says, per pass
    and date)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, height, width, generator=generator)
    static = channels - STACKED
    for p in range(2):
        for d in range(3):
            flag = 1.0 if present is None else float(present[p][d])
            x[:, static + (p * 3 + d) * 3] = flag
    return x


class TestDateStackNet(ModelTester):
    channels = tuple(STACKED + k for k in (1, 2, 5))
    default_channels = STACKED + 4

    def make(self, in_channels, seed):
        torch.manual_seed(seed)
        return build("ask_unet_stack", in_channels=in_channels, base_channels=4, depth=2, date_features=4, **STACK)

    def inputs(self, batch, channels, height, width, seed=0):
        return (stack_inputs(batch, channels, height, width, seed),)


class TestDateStackNetUncertainty(TestDateStackNet):
    def make(self, in_channels, seed):
        torch.manual_seed(seed)
        return build("ask_unet_stack", in_channels=in_channels, base_channels=4, depth=2, date_features=4,
                     uncertainty=True, backbone="unet", **STACK)

    def expected_shape(self, batch, channels, height, width):
        return (batch, 2, height, width)


def _slots(x, static):
    return x[:, static:].reshape(x.shape[0], 2, 3, 3, *x.shape[-2:])


def test_the_stack_is_invariant_to_the_order_of_the_dates():
    torch.manual_seed(0)
    model = build("ask_unet_stack", in_channels=STACKED + 4, base_channels=4, depth=2, date_features=4,
                  **STACK).eval()
    x = stack_inputs(2, STACKED + 4, 20, 20, seed=1)
    slots = _slots(x, 4)
    shuffled = torch.cat([x[:, :4], slots[:, :, [2, 0, 1]].reshape(2, STACKED, 20, 20)], dim=1)
    with torch.no_grad():
        torch.testing.assert_close(model(shuffled), model(x), rtol=1e-5, atol=1e-5)
        # The passes are streams of their own: swapping them changes the output.
        swapped = torch.cat([x[:, :4], slots[:, [1, 0]].reshape(2, STACKED, 20, 20)], dim=1)
        assert not torch.allclose(model(swapped), model(x), atol=1e-4)


def test_an_absent_date_changes_nothing_and_a_present_one_does():
    torch.manual_seed(0)
    model = build("ask_unet_stack", in_channels=STACKED + 2, base_channels=4, depth=2, date_features=4,
                  **STACK).eval()
    present = [[1, 1, 0], [1, 0, 0]]
    x = stack_inputs(1, STACKED + 2, 16, 16, seed=2, present=present)
    with torch.no_grad():
        before = model(x)
        # The values of an absent slot (pass 0, date 2) are never read.
        changed = x.clone()
        changed[:, 2 + (0 * 3 + 2) * 3 + 1:2 + (0 * 3 + 2) * 3 + 3] += 50.0
        torch.testing.assert_close(model(changed), before)
        # A present one's are.
        changed = x.clone()
        changed[:, 2 + 1] += 5.0
        assert not torch.allclose(model(changed), before)
        # With no date at all, a stream gives zeros.
        empty = stack_inputs(1, STACKED + 2, 16, 16, seed=2, present=[[0, 0, 0], [0, 0, 0]])
        features = model.pooled(empty)
        assert all(torch.count_nonzero(f) == 0 for f in features)


def test_the_stack_refuses_a_layout_without_static_channels():
    with pytest.raises(InvalidInputError, match="static channels"):
        build("ask_unet_stack", in_channels=STACKED, **STACK)
    with pytest.raises(InvalidInputError, match="presence flag"):
        build("ask_unet_stack", in_channels=10, passes=1, dates=2, date_channels=1)
    with pytest.raises(InvalidInputError, match="backbone"):
        build("ask_unet_stack", in_channels=30, backbone="mbhr_net", **STACK)
    model = build("ask_unet_stack", in_channels=STACKED + 1, base_channels=4, depth=2, **STACK)
    with pytest.raises(InvalidInputError, match=r"\(N, 19, H, W\)"):
        model(torch.zeros(1, 5, 8, 8))
    # The configuration builds the same architecture.
    again = build("ask_unet_stack", **model.config)
    assert [tuple(p.shape) for p in again.parameters()] == [tuple(p.shape) for p in model.parameters()]
