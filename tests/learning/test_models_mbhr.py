"""Tests of sarheight.models.resnet, sarheight.models.mbhr and MBHR-Net's loss.

References: the shared model test (tests/support/model_tester.py) on MBHR-Net with both fusions;
torchvision's ResNet-50 parameter names and shapes written out from its structure (3, 4,
6, 3 bottlenecks of expansion 4; 320 tensors with the classifier, 25,557,032 parameters);
the first convolution's adaptation and the loss computed by hand.
"""

import math

import pytest

torch = pytest.importorskip("torch", reason="the models need the ml extra (PyTorch)")

from sarheight.errors import InvalidInputError, MissingInputError  # noqa: E402
from sarheight.models import (  # noqa: E402
    MBHRNet,
    ResNet50Encoder,
    adapt_first_conv,
    available,
    build,
    load_resnet_weights,
)
from sarheight.training.losses import mbhr_loss  # noqa: E402
from tests.support.model_tester import ModelTester  # noqa: E402

# --------------------------------------------------------------------------------------
# the shared model test, both fusions; channels are (Sentinel-1, Sentinel-2) pairs
# --------------------------------------------------------------------------------------


class MBHRTester(ModelTester):
    fusion = ""
    channels = ((1, 1), (2, 10), (2, 4), (3, 13))
    default_channels = (2, 10)
    default_size = (32, 32)
    sizes = ((37, 53), (17, 16), (1, 1), (3, 40))

    def make(self, in_channels, seed):
        torch.manual_seed(seed)
        s1_channels, s2_channels = in_channels
        return MBHRNet(s1_channels, s2_channels, fusion=self.fusion)

    def inputs(self, batch, channels, height, width, seed=0):
        generator = torch.Generator().manual_seed(seed)
        return tuple(torch.randn(batch, c, height, width, generator=generator) for c in channels)


class TestMBHRNetConcat(MBHRTester):
    fusion = "concat"


class TestMBHRNetSum(MBHRTester):
    fusion = "sum"


class TestMBHRNetSentinel1Only(MBHRTester):
    fusion = "concat"
    channels = ((1, 0), (2, 0), (3, 0))
    default_channels = (2, 0)


class TestMBHRNetSentinel2Only(MBHRTester):
    fusion = "sum"
    channels = ((0, 1), (0, 10), (0, 13))
    default_channels = (0, 10)


def test_a_single_sensor_model_has_one_encoder_and_ignores_the_other_input():
    torch.manual_seed(0)
    s1_only = MBHRNet(2, 0).eval()
    assert s1_only.encoder_s2 is None and len(s1_only.encoders) == 1
    both = MBHRNet(2, 10)
    assert sum(p.numel() for p in s1_only.parameters()) < sum(p.numel() for p in both.parameters())
    s1 = torch.randn(1, 2, 32, 32)
    with torch.no_grad():
        assert torch.equal(s1_only(s1, None), s1_only(s1, torch.zeros(1, 0, 32, 32)))
    # Its state dict loads into a model of the same sensors, the names those of the pair.
    assert all(not key.startswith("encoder_s2") for key in s1_only.state_dict())
    MBHRNet(**s1_only.config).load_state_dict(s1_only.state_dict())
    with pytest.raises(InvalidInputError, match="without s2"):
        s1_only(s1, torch.zeros(1, 10, 32, 32))
    with pytest.raises(InvalidInputError, match="at least one sensor"):
        MBHRNet(0, 0)


# --------------------------------------------------------------------------------------
# ResNet-50: torchvision's names, shapes and parameter count
# --------------------------------------------------------------------------------------

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def torchvision_resnet50_shapes():
    """Names and shapes of torchvision's ``resnet50().state_dict()``, in its order, from
    the architecture: a 7 x 7 stem of 64, stages of 3, 4, 6, 3 bottlenecks (1 x 1 to the
    width, 3 x 3, 1 x 1 to four times the width; a projection shortcut in each stage's
    first block), the 1000-class classifier."""
    shapes = {"conv1.weight": (64, 3, 7, 7)}

    def batch_norm(prefix, channels):
        for name in BN:
            shapes[f"{prefix}.{name}"] = () if name == "num_batches_tracked" else (channels,)

    batch_norm("bn1", 64)
    in_channels = 64
    for stage, blocks in enumerate((3, 4, 6, 3), start=1):
        width = 64 * 2 ** (stage - 1)
        for block in range(blocks):
            prefix = f"layer{stage}.{block}"
            shapes[f"{prefix}.conv1.weight"] = (width, in_channels, 1, 1)
            batch_norm(f"{prefix}.bn1", width)
            shapes[f"{prefix}.conv2.weight"] = (width, width, 3, 3)
            batch_norm(f"{prefix}.bn2", width)
            shapes[f"{prefix}.conv3.weight"] = (4 * width, width, 1, 1)
            batch_norm(f"{prefix}.bn3", 4 * width)
            if block == 0:
                shapes[f"{prefix}.downsample.0.weight"] = (4 * width, in_channels, 1, 1)
                batch_norm(f"{prefix}.downsample.1", 4 * width)
            in_channels = 4 * width
    shapes["fc.weight"] = (1000, 2048)
    shapes["fc.bias"] = (1000,)
    return shapes


def test_encoder_has_torchvision_names_and_shapes():
    shapes = torchvision_resnet50_shapes()
    assert len(shapes) == 320
    for name in ("layer4.2.conv3.weight", "layer3.5.bn2.running_var", "layer1.0.downsample.0.weight",
                 "layer2.3.bn3.num_batches_tracked", "fc.weight", "fc.bias"):
        assert name in shapes
    assert "layer1.1.downsample.0.weight" not in shapes and "layer3.6.conv1.weight" not in shapes
    encoder = ResNet50Encoder(3, stages=4)
    own = {name: tuple(value.shape) for name, value in encoder.state_dict().items()}
    expected = {name: shape for name, shape in shapes.items() if not name.startswith("fc.")}
    assert list(own) == list(expected)  # the same names in torchvision's order
    assert own == expected
    # torchvision's published count, 25,557,032, less the classifier's 2048 x 1000 + 1000.
    assert sum(p.numel() for p in encoder.parameters()) == 25_557_032 - 2_049_000
    # v1.5: the stride on the 3 x 3 convolution of a stage's first block, and on its shortcut.
    assert encoder.layer2[0].conv1.stride == (1, 1) and encoder.layer2[0].conv2.stride == (2, 2)
    assert encoder.layer2[0].downsample[0].stride == (2, 2) and encoder.layer1[0].conv2.stride == (1, 1)
    for stages in (1, 2, 3):
        kept = ResNet50Encoder(5, stages=stages).state_dict()
        dropped = tuple(f"layer{i}." for i in range(stages + 1, 5))
        assert list(kept) == [n for n in expected if not n.startswith(dropped)]


@pytest.mark.parametrize("stages", [1, 3, 4])
def test_encoder_features_have_the_stage_channels_and_strides(stages):
    torch.manual_seed(0)
    encoder = ResNet50Encoder(4, stages=stages).eval()
    with torch.no_grad():
        features = encoder(torch.randn(2, 4, 64, 96))
    assert [f.shape[1] for f in features] == [64, 256, 512, 1024, 2048][:stages + 1] == list(encoder.channels)
    assert [(f.shape[2], f.shape[3]) for f in features] == [(64 // s, 96 // s) for s in encoder.reductions]
    assert encoder.reductions == (2, 4, 8, 16, 32)[:stages + 1]
    assert all((f >= 0).all() for f in features)  # every feature is after a ReLU


# --------------------------------------------------------------------------------------
# pretrained weights: adaptation of the first convolution, loading, errors
# --------------------------------------------------------------------------------------


def _torchvision_file(path, conv1_channels=3, wrap=True, seed=0):
    """A state dict file as torchvision's resnet50 writes it (classifier included), random
    values, BatchNorm statistics away from their initial values; wrapped as a DataParallel
    Lightning checkpoint when ``wrap``."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, shape in torchvision_resnet50_shapes().items():
        if name.endswith("num_batches_tracked"):
            state[name] = torch.tensor(1000)
        elif name.endswith("running_var"):
            state[name] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[name] = torch.randn(shape, generator=generator) * 0.05
    state["conv1.weight"] = torch.randn(64, conv1_channels, 7, 7, generator=generator) * 0.05
    if wrap:
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    else:
        torch.save(state, path)
    return state


def test_adapt_first_conv_cycles_and_scales_by_hand():
    rgb = torch.randn(64, 3, 7, 7)
    for channels in (1, 2, 3, 4, 10, 13):
        adapted = adapt_first_conv(rgb, channels)
        assert adapted.shape == (64, channels, 7, 7)
        for c in range(channels):
            assert torch.equal(adapted[:, c], rgb[:, c % 3] * (3 / channels)), (channels, c)
    assert torch.equal(adapt_first_conv(rgb, 3), rgb)
    with pytest.raises(InvalidInputError, match=r"RGB filters of shape \(out, 3, kh, kw\)"):
        adapt_first_conv(torch.randn(64, 4, 7, 7), 10)


def test_adapted_filters_answer_equal_bands_as_rgb_answers_grey():
    """Six bands all equal to one image x give the first layer the response that (x, x, x)
    gives the RGB filters: each filter appears twice at half its weight."""
    rgb = torch.randn(64, 3, 7, 7, dtype=torch.float64)  # float64: the sums of 147 and 294 terms agree closely
    x = torch.randn(2, 1, 20, 20, dtype=torch.float64)
    grey = torch.nn.functional.conv2d(x.expand(2, 3, 20, 20), rgb)
    bands = torch.nn.functional.conv2d(x.expand(2, 6, 20, 20), adapt_first_conv(rgb, 6))
    torch.testing.assert_close(bands, grey, rtol=1e-10, atol=1e-12)


def test_load_resnet_weights_round_trip_with_ten_channels(tmp_path):
    path = tmp_path / "resnet50.pth"
    state = _torchvision_file(path)
    torch.manual_seed(1)
    encoder = ResNet50Encoder(10, stages=3)
    report = load_resnet_weights(encoder, path, in_channels=10)
    assert report["adapted"] is True
    assert report["dropped"] == sorted(["fc.bias", "fc.weight"] + [n for n in state if n.startswith("layer4.")])
    loaded = encoder.state_dict()
    rgb = state["conv1.weight"]
    for c in range(10):
        assert torch.equal(loaded["conv1.weight"][:, c], rgb[:, c % 3] * (3 / 10))
    for name, value in loaded.items():
        if name != "conv1.weight":
            assert torch.equal(value, state[name]), name
    # The whole backbone, unwrapped and with the same bands as the file: used as it is.
    path3 = tmp_path / "plain.pth"
    state3 = _torchvision_file(path3, wrap=False, seed=2)
    whole = ResNet50Encoder(3, stages=4)
    assert load_resnet_weights(whole, path3, in_channels=3) == {"adapted": False, "dropped": ["fc.bias", "fc.weight"]}
    assert all(torch.equal(v, state3[k]) for k, v in whole.state_dict().items())


def test_weights_of_the_encoders_bands_load_unadapted(tmp_path):
    """SSL4EO-S12's Sentinel-1 weights have two input channels: a two-channel encoder takes
    them as they are, under MoCo's and Lightning's prefixes."""
    path = tmp_path / "ssl4eo_s1.pth"
    state = _torchvision_file(path, conv1_channels=2, wrap=False)
    torch.save({"model": {f"backbone.encoder_q.{k}": v for k, v in state.items()}}, path)
    encoder = ResNet50Encoder(2, weights=path)
    assert torch.equal(encoder.conv1.weight, state["conv1.weight"])


def test_mbhr_weights_load_into_both_encoders(tmp_path):
    path = tmp_path / "imagenet.pth"
    state = _torchvision_file(path)
    model = MBHRNet(2, 10, weights=path)
    for encoder, channels in ((model.encoder_s1, 2), (model.encoder_s2, 10)):
        assert torch.equal(encoder.conv1.weight, adapt_first_conv(state["conv1.weight"], channels))
        assert torch.equal(encoder.layer3[5].bn2.running_var, state["layer3.5.bn2.running_var"])
    s2_path = tmp_path / "s2.pth"
    s2_state = _torchvision_file(s2_path, conv1_channels=10, seed=5)
    model = MBHRNet(2, 10, weights=(None, s2_path))
    assert torch.equal(model.encoder_s2.conv1.weight, s2_state["conv1.weight"])
    assert not torch.equal(model.encoder_s1.layer1[0].conv1.weight, s2_state["layer1.0.conv1.weight"])
    assert "weights" not in model.config
    with pytest.raises(InvalidInputError, match="a file, a pair"):
        MBHRNet(weights=(path, path, path))


class Unsafe:
    """An object that a weights-only load refuses."""


def test_bad_weight_files_raise_clear_errors(tmp_path):
    encoder = ResNet50Encoder(10, stages=3)
    with pytest.raises(MissingInputError, match=r"do not exist.*nothing is downloaded"):
        load_resnet_weights(encoder, tmp_path / "absent.pth", in_channels=10)
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(InvalidInputError, match="is not a readable PyTorch state dict"):
        load_resnet_weights(encoder, text, in_channels=10)
    objects = tmp_path / "objects.pth"
    torch.save({"conv1.weight": torch.zeros(1), "thing": Unsafe()}, objects)
    with pytest.raises(InvalidInputError, match="holds Python objects beyond tensors"):
        load_resnet_weights(encoder, objects, in_channels=10)
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    with pytest.raises(InvalidInputError, match=r"holds no state dict.*got Tensor"):
        load_resnet_weights(encoder, tensor, in_channels=10)
    other = tmp_path / "unet.pth"
    torch.save(build("unet", in_channels=3, base_channels=4, depth=2).state_dict(), other)
    with pytest.raises(InvalidInputError, match=r"not a ResNet-50 state dict.*lacks 258 of the encoder's 258 tensors "
                                                r"\(bn1\.bias.*; it has \d+ that are no ResNet-50's"):
        load_resnet_weights(encoder, other, in_channels=10)

    good = tmp_path / "resnet50.pth"
    state = _torchvision_file(good, wrap=False)
    for change, message in (
        (lambda s: s.pop("layer3.5.bn2.running_var"),
         r"lacks 1 of the encoder's 258 tensors \(layer3\.5\.bn2\.running_var\)"),
        (lambda s: s.update({"layer2.0.extra.weight": torch.zeros(1)}),
         r"has 1 that are no ResNet-50's \(layer2\.0\.extra"),
        (lambda s: s.update({"layer2.0.conv2.weight": torch.zeros(128, 128, 1, 1)}),
         r"layer2\.0\.conv2\.weight \(128, 128, 1, 1\) \(the encoder's is \(128, 128, 3, 3\)\)"),
        (lambda s: s.update({"conv1.weight": torch.zeros(64, 13, 7, 7)}),
         r"conv1\.weight \(64, 13, 7, 7\).*only first convolutions of 3 \(RGB\) or 10 input channels"),
    ):
        broken = dict(state)
        change(broken)
        torch.save(broken, tmp_path / "broken.pth")
        with pytest.raises(InvalidInputError, match=message):
            load_resnet_weights(encoder, tmp_path / "broken.pth", in_channels=10)
    with pytest.raises(InvalidInputError, match="in_channels=3, but the encoder takes 10"):
        load_resnet_weights(encoder, good, in_channels=3)
    with pytest.raises(InvalidInputError, match="loads into a ResNet50Encoder"):
        load_resnet_weights(torch.nn.Linear(2, 2), good, in_channels=2)


# --------------------------------------------------------------------------------------
# MBHR-Net: fusion, decoder, parameter counts, configuration, inputs
# --------------------------------------------------------------------------------------


def _conv_block(i, o):
    return 9 * i * o + 2 * o + 9 * o * o + 2 * o  # two bias-free 3 x 3 convolutions, two BatchNorms


def _encoder_parameters(in_channels, stages):
    count, channels = 64 * in_channels * 49 + 2 * 64, 64
    for stage in range(stages):
        width = 64 * 2**stage
        for block in range((3, 4, 6, 3)[stage]):
            count += channels * width + 9 * width * width + width * 4 * width + 2 * 6 * width
            if block == 0:
                count += channels * 4 * width + 2 * 4 * width
            channels = 4 * width
    return count


def _mbhr_parameters(s1, s2, fusion, stages, decoder):
    fused = [c * (2 if fusion == "concat" else 1) for c in (64, 256, 512, 1024, 2048)[:stages + 1]]
    count = _encoder_parameters(s1, stages) + _encoder_parameters(s2, stages) + decoder[-1] + 1
    deep = fused[-1]
    for level, channels in enumerate(decoder):
        skip = fused[stages - 1 - level] if level < stages else 0
        count += _conv_block(deep + skip, channels)
        deep = channels
    return count


def test_parameter_counts_follow_the_layer_formulae():
    assert _encoder_parameters(3, 4) == 23_508_032
    expected = {"concat": 26_019_233, "sum": 22_148_513}  # the default configuration
    for fusion, count in expected.items():
        model = MBHRNet(fusion=fusion)
        assert sum(p.numel() for p in model.parameters()) == count
        assert _mbhr_parameters(2, 10, fusion, 3, (256, 128, 64, 32)) == count
    for s1, s2, fusion, stages, decoder in ((1, 4, "sum", 1, (8, 4)), (3, 13, "concat", 2, (32, 16, 8))):
        model = MBHRNet(s1, s2, fusion=fusion, stages=stages, decoder_channels=decoder)
        assert sum(p.numel() for p in model.parameters()) == _mbhr_parameters(s1, s2, fusion, stages, decoder)


def test_fusion_sets_the_decoder_channels():
    concat, plain = MBHRNet(2, 10, fusion="concat"), MBHRNet(2, 10, fusion="sum")
    assert concat.fused_channels == (128, 512, 1024, 2048) and plain.fused_channels == (64, 256, 512, 1024)
    assert [level.block[0].in_channels for level in concat.decoder] == [2048 + 1024, 256 + 512, 128 + 128, 64]
    assert [level.block[0].in_channels for level in plain.decoder] == [1024 + 512, 256 + 256, 128 + 64, 64]
    assert [level.block[0].out_channels for level in plain.decoder] == [256, 128, 64, 32]
    torch.manual_seed(0)
    model = MBHRNet(2, 10, fusion="sum").eval()
    s1, s2 = torch.randn(1, 2, 32, 32), torch.randn(1, 10, 32, 32)
    with torch.no_grad():
        fused = [a + b for a, b in zip(model.encoder_s1(s1), model.encoder_s2(s2), strict=True)]
        x = fused[-1]
        for level, block in enumerate(model.decoder):
            x = block(x, fused[2 - level] if level < 3 else None)
        torch.testing.assert_close(model(s1, s2), torch.relu(model.head(x)))


def test_heights_are_never_negative_and_start_alive():
    """The ReLU head gives heights >= 0; it starts above zero at most cells, in both modes,
    whatever the seed (with weights of both signs it may start at 0 everywhere)."""
    s1, s2 = torch.randn(2, 2, 24, 40) * 10, torch.randn(2, 4, 24, 40) * 10
    for seed in range(4):
        torch.manual_seed(seed)
        model = MBHRNet(2, 4, decoder_channels=(16, 8, 8, 8))
        for mode in (model.train, model.eval):
            mode()
            with torch.no_grad():
                heights = model(s1, s2)
            assert heights.min() >= 0 and (heights > 0).float().mean() > 0.5, (seed, mode.__name__)
    with torch.no_grad():
        model.head.bias.fill_(-1e3)  # every cell below zero before the ReLU
        assert torch.equal(model(s1, s2), torch.zeros(2, 1, 24, 40))


@pytest.mark.parametrize(("stages", "size"), [(1, (5, 9)), (2, (33, 20)), (4, (70, 65))])
def test_other_depths_give_the_input_size(stages, size):
    torch.manual_seed(0)
    model = MBHRNet(1, 3, stages=stages, fusion="sum")
    assert len(model.decoder) == stages + 1 and model.decoder_channels == (256, 128, 64, 32, 16)[:stages + 1]
    model.train()
    assert model(torch.randn(1, 1, *size), torch.randn(1, 3, *size)).shape == (1, 1, *size)


def test_config_rebuilds_the_model():
    model = MBHRNet(3, 13, fusion="sum", decoder_channels=[64, 32, 16, 8])
    assert model.config == {"s1_channels": 3, "s2_channels": 13, "fusion": "sum", "stages": 3,
                            "decoder_channels": (64, 32, 16, 8)}
    assert "mbhr_net" in available() and model.variant == "mbhr_net"
    plain = {k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items()}  # as a checkpoint keeps it
    for rebuilt in (MBHRNet(**model.config), build(model.variant, **model.config), build("mbhr_net", **plain)):
        assert type(rebuilt) is MBHRNet and rebuilt.config == model.config
        shapes = {k: v.shape for k, v in model.state_dict().items()}
        assert {k: v.shape for k, v in rebuilt.state_dict().items()} == shapes


def test_constructor_refuses_bad_options():
    for kwargs, message in (({"fusion": "add"}, "fusion must be one of 'concat', 'sum', got 'add'"),
                            ({"stages": 5}, "stages must be an integer from 1 to 4, got 5"),
                            ({"s1_channels": -1}, "s1_channels must be an integer >= 0"),
                            ({"decoder_channels": (8, 8)}, r"decoder_channels must be 4 integers.*stages=3"),
                            ({"stages": 1, "decoder_channels": (8, 0)}, "decoder_channels must be an integer >= 1")):
        with pytest.raises(InvalidInputError, match=message):
            MBHRNet(**kwargs)
    with pytest.raises(InvalidInputError, match="stages must be an integer from 1 to 4"):
        ResNet50Encoder(3, stages=0)


def test_forward_refuses_unusable_inputs():
    model = MBHRNet(2, 4, stages=1, decoder_channels=(8, 8))
    s1, s2 = torch.randn(1, 2, 16, 16), torch.randn(1, 4, 16, 16)
    cases = [
        ((s1[0], s2), r"4-D tensors.*got s1 of shape \(2, 16, 16\)"),
        ((s1, torch.randn(1, 3, 16, 16)), "expected 4 s2 channels, got 3"),
        ((s1, torch.randn(1, 4, 16, 17)), r"one grid, got s1 \(1, 2, 16, 16\) and s2 \(1, 4, 16, 17\)"),
        ((s1, torch.randn(2, 4, 16, 16)), "one batch size"),
        ((s1.double(), s2), "expected s1 of torch.float32.*got torch.float64"),
        ((s1[:0], s2[:0]), "empty s1"),
        ((s1, [[1.0]]), "takes torch.Tensors, got list for s2"),
    ]
    for inputs, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            model(*inputs)


# --------------------------------------------------------------------------------------
# the loss
# --------------------------------------------------------------------------------------


def test_mbhr_loss_by_hand_with_a_mask():
    """Sample A: p = (1, 2, 2, 0), t = (2, 1, 2, 0): squared errors 1 + 1, cosine 8 / 9.
    Sample B, its last cell masked (target NaN there): p = (0, 3, 4), t = (0, 4, 3):
    squared errors 1 + 1, cosine 24 / 25. MSE = 4 / 7 over the seven valid cells."""
    prediction = torch.tensor([[1.0, 2.0, 2.0, 0.0], [0.0, 3.0, 4.0, 50.0]]).reshape(2, 1, 2, 2).requires_grad_()
    target = torch.tensor([[2.0, 1.0, 2.0, 0.0], [0.0, 4.0, 3.0, math.nan]]).reshape(2, 1, 2, 2)
    mask = torch.tensor([[True] * 4, [True, True, True, False]]).reshape(2, 1, 2, 2)
    loss = mbhr_loss(prediction, target, mask)
    expected = 0.2 * 4 / 7 + 0.8 * (1 - (8 / 9 + 24 / 25) / 2)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    loss.backward()
    assert torch.isfinite(prediction.grad).all() and prediction.grad[1, 0, 1, 1] == 0
    weighted = mbhr_loss(prediction, target, mask, w_mse=0.4, w_cos=0.6)
    assert weighted.item() == pytest.approx(0.4 * 4 / 7 + 0.6 * (1 - (8 / 9 + 24 / 25) / 2), rel=1e-6)


def test_mbhr_loss_of_a_scaled_target_is_the_weighted_mse():
    generator = torch.Generator().manual_seed(0)
    target = torch.rand(3, 1, 8, 8, generator=generator) * 30
    for k in (0.5, 1.0, 2.5):
        prediction = target * k
        mse = ((prediction - target) ** 2).mean()
        torch.testing.assert_close(mbhr_loss(prediction, target), 0.2 * mse, rtol=1e-5, atol=1e-6)


def test_mbhr_loss_of_maps_without_buildings():
    """A target of zeros has cosine 0 with anything: its cosine term is 1, with no
    gradient, and the MSE term alone pulls the prediction to 0."""
    prediction = torch.tensor([[[[0.0, 2.0], [1.0, 3.0]]]], requires_grad=True)
    target = torch.zeros(1, 1, 2, 2)
    loss = mbhr_loss(prediction, target)
    assert loss.item() == pytest.approx(0.2 * 14 / 4 + 0.8)
    loss.backward()
    torch.testing.assert_close(prediction.grad, 0.2 * 2 * prediction.detach() / 4)
    for prediction, target in ((torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 4)),
                               (torch.zeros(2, 1, 4, 4), torch.rand(2, 1, 4, 4) + 1)):
        prediction.requires_grad_()
        loss = mbhr_loss(prediction, target)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(prediction.grad).all()
        assert 0.8 <= loss.item()  # cosine 0: the term is 1


def test_mbhr_loss_leaves_out_samples_and_batches_without_valid_cells():
    prediction = torch.tensor([[1.0, 2.0, 2.0, 0.0], [5.0, 1.0, 7.0, 2.0]]).reshape(2, 1, 2, 2).requires_grad_()
    target = torch.tensor([[2.0, 1.0, 2.0, 0.0], [math.nan] * 4]).reshape(2, 1, 2, 2)
    mask = torch.isfinite(target)
    assert mbhr_loss(prediction, target, mask).item() == pytest.approx(0.2 * 2 / 4 + 0.8 * (1 - 8 / 9), rel=1e-6)
    empty = mbhr_loss(prediction, target, torch.zeros_like(mask))
    assert empty.item() == 0.0 and empty.requires_grad
    empty.backward()
    assert torch.equal(prediction.grad, torch.zeros_like(prediction))


def test_mbhr_loss_refuses_bad_arguments():
    x = torch.zeros(2, 1, 3, 3)
    with pytest.raises(InvalidInputError, match="must have one shape"):
        mbhr_loss(x, torch.zeros(2, 1, 3, 4))
    with pytest.raises(InvalidInputError, match="must have one shape"):
        mbhr_loss(x, x, torch.ones(2, 3, 3, dtype=torch.bool))
    with pytest.raises(InvalidInputError, match="batch of maps"):
        mbhr_loss(torch.zeros(3), torch.zeros(3))
    for name in ("w_mse", "w_cos", "eps"):
        with pytest.raises(InvalidInputError, match=f"{name} must be a finite number >= 0"):
            mbhr_loss(x, x, **{name: -1.0})
