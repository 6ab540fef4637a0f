"""viz.layers: names, hooks that equal the layer computed by hand, early stop, cleanup."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from viz.errors import VizError
from viz.layers import capture_features, feature_hooks, layer_table, parse_layer, resolve_layer


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
