"""viz.layers: names, hooks that equal the layer computed by hand, early stop, cleanup."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from viz.errors import VizError
from viz.layers import (
    capture_features,
    default_layer,
    describe_layers,
    feature_hooks,
    format_layers,
    layer_table,
    parse_layer,
    resolve_layer,
)
from viz.tokens import (
    CHANNELS_FIRST,
    CHANNELS_LAST,
    TOKENS,
    WINDOWS,
    check_input_size,
    map_layout,
    model_input_size,
    module_layouts,
    to_spatial_maps,
    token_grid,
)


@pytest.fixture(scope="module")
def resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18().eval()


@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def all_hooks(model: nn.Module) -> list:
    return [hook for module in model.modules() for hook in module._forward_hooks.values()]


class Boom(nn.Module):
    """Fails if the forward pass reaches it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the forward pass should have stopped before this module")


@pytest.mark.parametrize(
    ("spec", "tokens"),
    [("layer4", ["layer4"]), ("layer4.2.conv3", ["layer4", 2, "conv3"]), ("layer4[-1]", ["layer4", -1]),
     ("features[3].0", ["features", 3, 0])],
)
def test_parse_layer(spec, tokens):
    assert parse_layer(spec) == tokens


@pytest.mark.parametrize("spec", ["", ".layer4", "layer4[", "layer4[x]", "layer4..conv"])
def test_unparsable_layer_names(spec):
    with pytest.raises(VizError, match="cannot parse layer name"):
        parse_layer(spec)


def test_resolve_layer_names(resnet18):
    assert resolve_layer(resnet18, "layer4[-1]") == "layer4.1"
    assert resolve_layer(resnet18, "layer4[0].conv2") == "layer4.0.conv2"
    assert resolve_layer(resnet18, "layer3.1.bn1") == "layer3.1.bn1"
    with pytest.raises(VizError) as caught:
        resolve_layer(resnet18, "layer4.1.conv9")
    assert str(caught.value) == (
        "unknown layer 'layer4.1.conv9' in ResNet; closest: layer4.1.conv2, layer4.1.conv1, layer4.0.conv2, "
        "layer4.0.conv1 (see --list-layers)"
    )
    with pytest.raises(VizError, match=r"^unknown layer 'layer4\[5\]' in ResNet; closest: layer4"):
        resolve_layer(resnet18, "layer4[5]")


def test_hook_output_equals_the_layer_computed_by_hand(resnet18, batch):
    captured = capture_features(resnet18, batch, ["layer2", "layer1[-1].conv2"])
    with torch.no_grad():
        m = resnet18
        stem = m.maxpool(m.relu(m.bn1(m.conv1(batch))))
        block = m.layer1[1]
        inner = block.conv2(block.relu(block.bn1(block.conv1(m.layer1[0](stem)))))
        by_hand = m.layer2(m.layer1(stem))
    assert set(captured) == {"layer2", "layer1.1.conv2"}
    assert torch.equal(captured["layer2"], by_hand)
    assert torch.equal(captured["layer1.1.conv2"], inner)
    assert captured["layer2"].is_inference()
    assert all_hooks(resnet18) == []


def test_forward_stops_after_the_last_requested_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), Boom())
    x = torch.randn(1, 3, 8, 8)
    captured = capture_features(model, x, ["1", "0"])
    assert torch.equal(captured["1"], torch.relu(model[0](x)).detach())
    assert all_hooks(model) == []


def test_hooks_are_removed_when_the_forward_fails():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), Boom())
    with pytest.raises(AssertionError, match="should have stopped"):
        with feature_hooks(model, ["0"]):
            model(torch.randn(1, 3, 8, 8))
    assert all_hooks(model) == []


def test_feature_hooks_keep_the_model_output(resnet18, batch):
    with torch.no_grad(), feature_hooks(resnet18, ["layer4"]) as features:
        logits = resnet18(batch)
    assert logits.shape == (1, 1000)
    assert features["layer4"].shape == (1, 512, 2, 2)
    assert all_hooks(resnet18) == []


def test_layer_table_lists_names_types_and_shapes(resnet18, batch):
    table = {name: (kind, shape) for name, kind, shape in layer_table(resnet18, batch)}
    assert table["layer4"] == ("Sequential", (1, 512, 2, 2))
    assert table["layer1.0.conv1"] == ("Conv2d", (1, 64, 16, 16))
    assert table["fc"] == ("Linear", (1, 1000))
    assert all_hooks(resnet18) == []


def test_captured_output_survives_later_in_place_operations(resnet18, batch):
    # BasicBlock adds the shortcut to bn2's output in place, then applies an in-place ReLU:
    # a layer captured before a later one must keep the values it had when it ran.
    captured = capture_features(resnet18, batch, ["layer4.1.bn2", "layer4"])
    with torch.no_grad():
        m = resnet18
        entering = m.layer4[0](m.layer3(m.layer2(m.layer1(m.maxpool(m.relu(m.bn1(m.conv1(batch))))))))
        block = m.layer4[1]
        by_hand = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(entering)))))
    assert (by_hand < 0).any()  # so a ReLU applied afterwards would show
    assert torch.equal(captured["layer4.1.bn2"], by_hand)


def tiny_vit(num_classes: int = 5, patch_size: int = 8) -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=patch_size, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32,
        num_classes=num_classes,
    )
    return model.eval()


def tiny_swin() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.SwinTransformer(
        patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=[2, 2], num_classes=5
    ).eval()


def test_vit_tokens_fill_the_patch_grid_row_by_row():
    model = tiny_vit()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    captured = capture_features(model, x, ["conv_proj", "encoder.dropout"])
    maps = to_spatial_maps(captured["encoder.dropout"], model, "encoder.dropout")
    assert maps.shape == (2, 16, 4, 4)
    # encoder.dropout (identity in eval) holds patch embedding + position embedding, class token first
    position = model.encoder.pos_embedding.detach()[0]
    for row in range(4):
        for column in range(4):
            expected = captured["conv_proj"][:, :, row, column] + position[1 + 4 * row + column]
            assert torch.allclose(maps[:, :, row, column], expected, atol=1e-6)


def test_swin_stages_are_read_channels_last():
    model = tiny_swin()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    names = ["features.0.0", "features.0.1", "features.1", "norm", "permute"]
    captured = capture_features(model, x, names)
    layouts = module_layouts(model)
    assert [layouts[n] for n in names] == [CHANNELS_FIRST, CHANNELS_LAST, CHANNELS_LAST, CHANNELS_LAST, CHANNELS_FIRST]
    assert captured["norm"].shape == (1, 4, 4, 16)
    # the model's own permute turns its norm's output into (N, C, H, W): ours must agree
    assert torch.equal(to_spatial_maps(captured["norm"], model, "norm"), captured["permute"])
    # and the stem's Permute only moves the conv's channels last
    assert torch.equal(to_spatial_maps(captured["features.0.1"], model, "features.0.1"), captured["features.0.0"])
    assert torch.equal(to_spatial_maps(captured["features.0.0"], model, "features.0.0"), captured["features.0.0"])


def test_convnext_block_internals_are_channels_last_between_its_permutes():
    from torchvision.models.convnext import CNBlockConfig

    torch.manual_seed(0)
    model = torchvision.models.ConvNeXt([CNBlockConfig(8, None, 2)], num_classes=5).eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    block = "features.1.0.block"
    captured = capture_features(model, x, [f"{block}.0", f"{block}.1", f"{block}.2", f"{block}.6", "features.1.0"])
    layouts = module_layouts(model)
    assert [layouts[f"{block}.{i}"] for i in range(7)] == [CHANNELS_FIRST] + [CHANNELS_LAST] * 5 + [CHANNELS_FIRST]
    assert layouts["features.1.0"] == CHANNELS_FIRST
    assert torch.equal(to_spatial_maps(captured[f"{block}.1"], model, f"{block}.1"), captured[f"{block}.0"])
    assert to_spatial_maps(captured[f"{block}.2"], model, f"{block}.2").shape == (1, 8, 8, 8)


@pytest.mark.parametrize(
    ("tokens", "input_hw", "expected"),
    [(197, None, (1, (14, 14))), (201, None, (5, (14, 14))), (16, None, (0, (4, 4))), (17, None, (1, (4, 4))),
     (392, (224, 448), (0, (14, 28))), (197, (224, 230), (1, (14, 14))), (3, None, None),
     (200, None, (4, (14, 14))), (240, None, None), (392, None, None)],
)
def test_token_grid_fallback(tokens, input_hw, expected):
    assert token_grid(tokens, input_hw) == expected


class RegisterTokens(nn.Module):
    """A ViT-like model outside torchvision: a class token and two register tokens before 4x4 patches."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, 6, 8, stride=8)
        self.prefix = nn.Parameter(torch.randn(1, 3, 6))
        self.mix = nn.Linear(6, 6)
        self.head = nn.Linear(6, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.embed(x).flatten(2).transpose(1, 2)
        tokens = self.mix(torch.cat([self.prefix.expand(len(x), -1, -1), patches], 1))
        return self.head(tokens[:, 0] + tokens[:, 3:].mean(1))


def test_token_fallback_drops_class_and_register_tokens():
    torch.manual_seed(0)
    model = RegisterTokens().eval()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    captured = capture_features(model, x, ["embed", "mix"])
    layout = map_layout(model, "mix", tuple(captured["mix"].shape), (32, 32))
    assert (layout.kind, layout.prefix_tokens, layout.grid) == (TOKENS, 3, (4, 4))
    with torch.no_grad():
        by_hand = model.mix(captured["embed"].permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    assert torch.allclose(to_spatial_maps(captured["mix"], model, "mix", (32, 32)), by_hand, atol=1e-6)
    assert default_layer(model, x) == "mix"


def test_a_vit_inside_another_module_keeps_its_grid():
    wrapped = nn.Sequential(tiny_vit()).eval()
    output = torch.zeros(1, 17, 16)
    assert map_layout(wrapped, "0.encoder.layers.encoder_layer_0", output.shape).grid == (4, 4)
    assert map_layout(wrapped, "0.encoder.layers.encoder_layer_0", (1, 18, 16)) is None


def test_outputs_that_are_not_maps_are_refused(resnet18):
    with pytest.raises(VizError, match=r"^layer 'fc' outputs shape \(1, 1000\), not a spatial map"):
        to_spatial_maps(torch.zeros(1, 1000), resnet18, "fc")
    sequence = nn.Sequential(nn.Conv1d(3, 16, 1))
    assert map_layout(sequence, "0", (1, 16, 17)) is None  # (N, C, L), not 16 tokens
    maxvit = torchvision.models.maxvit_t()
    layouts = module_layouts(maxvit)
    window = "blocks.0.layers.0.layers.window_attention"
    assert layouts[f"{window}.attn_layer"] == WINDOWS and layouts[window] == CHANNELS_FIRST
    assert map_layout(maxvit, f"{window}.attn_layer", (1, 64, 49, 64)) is None
    assert model_input_size(maxvit) == (224, 224)
    weights = torchvision.models.MaxVit_T_Weights.DEFAULT
    assert model_input_size(maxvit, weights) == (224, 224)


def test_fixed_input_sizes_are_found_and_wrong_ones_refused(resnet18):
    vit = tiny_vit()
    assert model_input_size(vit) == (32, 32)
    assert model_input_size(resnet18) is None
    check_input_size(vit, (32, 32))
    check_input_size(resnet18, (384, 384))
    with pytest.raises(VizError) as caught:
        check_input_size(vit, (384, 384))
    assert str(caught.value) == (
        "VisionTransformer takes only 32x32 inputs (its fixed input size), not 384x384: "
        "leave --input-size out or set it to 32"
    )


class Reused(nn.Module):
    """One ReLU object applied after two convolutions, then a VGG-like adaptive pool and head."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.relu = nn.ReLU()
        self.avgpool = nn.AdaptiveAvgPool2d(7)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(6 * 49, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.avgpool(self.relu(self.bn(self.conv2(self.relu(self.conv1(x)))))))


def test_describe_layers_marks_drawable_layers_calls_and_the_default():
    torch.manual_seed(0)
    model = Reused().train()
    before = model.bn.running_mean.clone()
    infos = {info.name: info for info in describe_layers(model, torch.randn(2, 3, 8, 8))}
    assert infos["relu"].calls == 2 and not infos["relu"].default
    assert infos["avgpool"].spatial and not infos["avgpool"].default  # set by the layer, not the image
    assert [n for n, info in infos.items() if info.default] == ["bn"]
    assert infos["bn"].map_shape == (6, 8, 8) and infos["bn"].layout.kind == CHANNELS_FIRST
    assert not infos["classifier.1"].drawable and infos["classifier.1"].shape == (2, 3)
    # the probe ran in eval mode and left the model as it found it
    assert model.training and all(m.training for m in model.modules())
    assert torch.equal(model.bn.running_mean, before)
    assert all(p.grad is None for p in model.parameters())
    assert dict((n, s) for n, _, s in layer_table(model, torch.randn(2, 3, 8, 8)))["bn"] == (2, 6, 8, 8)
    assert model.training and torch.equal(model.bn.running_mean, before)


def test_a_spatial_classifier_head_is_never_the_default():
    torch.manual_seed(0)
    model = nn.Module()
    model.features = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())
    model.classifier = nn.Sequential(nn.Conv2d(8, 5, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    model.forward = lambda x: model.classifier(model.features(x))
    assert default_layer(model, torch.randn(1, 3, 8, 8)) == "features"


def test_vit_default_is_the_last_layer_its_patch_tokens_still_feed():
    # after the last block's attention only the class token reaches the head; with the
    # zero-initialised head of a fresh torchvision ViT the scores could not tell that
    model = tiny_vit()
    assert not model.heads.head.weight.any()
    infos = {info.name: info for info in describe_layers(model, torch.zeros(1, 3, 32, 32))}
    assert [n for n, info in infos.items() if info.default] == ["encoder.layers.encoder_layer_1.ln_1"]
    assert infos["encoder"].map_shape == (16, 4, 4)
    assert infos["encoder"].layout.describe() == "tokens: 1 dropped + 4x4 grid"


def test_a_model_without_a_spatial_layer_has_no_default():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 3))
    with pytest.raises(VizError, match=r"^Sequential has no layer whose output is a spatial map .* 1x3x2x2 input"):
        default_layer(model, torch.zeros(1, 3, 2, 2))


def test_format_layers_marks_what_is_drawn_and_the_default():
    torch.manual_seed(0)
    model = tiny_swin()
    lines = {line.split()[0]: line for line in format_layers(describe_layers(model, torch.zeros(1, 3, 32, 32)))}
    assert lines["norm"].endswith("(1, 4, 4, 16)          16 maps 4x4 from (N, H, W, C)  <- default")
    assert lines["features.0.0"].split()[1:] == ["Conv2d", "(1,", "8,", "8,", "8)", "8", "maps", "8x8"]
    assert lines["head"].split()[-1] == "-"
    reused = {line.split()[0]: line for line in format_layers(describe_layers(Reused(), torch.zeros(1, 3, 8, 8)))}
    assert reused["relu"].endswith("-  [runs 2x: its calls cannot be told apart, not drawn]")


class EmptyHead(nn.Module):
    """A convolution whose head keeps none of its channels: an empty (1, 0, h, w) map."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.head = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x)[:, :0])


def test_an_empty_map_is_refused_in_one_line_and_never_the_default(tmp_path):
    model = EmptyHead().eval()
    with pytest.raises(VizError, match=r"^layer 'head' outputs shape \(1, 0, 6, 6\), an empty map: nothing to draw$"):
        to_spatial_maps(torch.zeros(1, 0, 6, 6), model, "head")
    assert map_layout(model, "head", (1, 0, 6, 6)) is None and map_layout(model, "head", (1, 3, 0, 6)) is None
    with pytest.raises(VizError, match="^EmptyHead has no layer whose output is a spatial map"):  # not 'head'
        default_layer(model, torch.zeros(1, 3, 8, 8))
