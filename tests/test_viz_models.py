"""Every torchvision family the issue names, with random weights and the smallest input it allows:
the default layer is a sensible spatial map (never the classifier) and Grad-CAM runs on it."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torchvision

from viz.errors import VizError
from viz.gradcam import gradcam
from viz.layers import describe_layers
from viz.tokens import TOKENS, check_input_size, model_input_size, to_spatial_maps

#: name -> (input side, expected default layer, its (C, h, w) maps, how its output is laid out)
FAMILIES = {
    "resnet18": (64, "layer4", (512, 2, 2), "(N, C, H, W)"),
    "resnet50": (64, "layer4", (2048, 2, 2), "(N, C, H, W)"),
    "vgg16": (64, "features", (512, 2, 2), "(N, C, H, W)"),
    "mobilenet_v3_small": (64, "features", (576, 2, 2), "(N, C, H, W)"),
    "convnext_tiny": (64, "features", (768, 2, 2), "(N, C, H, W)"),
    "efficientnet_b0": (64, "features", (1280, 2, 2), "(N, C, H, W)"),
    "swin_t": (64, "norm", (768, 2, 2), "(N, H, W, C)"),
    # the last block's attention input: after it only the class token reaches the head
    "vit_b_16": (224, "encoder.layers.encoder_layer_11.ln_1", (768, 14, 14), "tokens: 1 dropped + 14x14 grid"),
}
#: Families that take more than ~10 s here (2 shared cores): still run, marked slow.
SLOW = {"vit_b_16"}


@functools.cache
def build(name: str) -> torch.nn.Module:
    """Each model once per test module (the functions under test restore its modes and leave no hooks)."""
    torch.manual_seed(0)
    return torchvision.models.get_model(name, weights=None).eval()


@functools.cache
def layers_of(name: str) -> dict:
    side = FAMILIES[name][0]
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    return {info.name: info for info in describe_layers(build(name), x)}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in FAMILIES]
)
def test_default_layer_and_gradcam(name):
    side, expected, map_shape, layout = FAMILIES[name]
    model = build(name)
    x = torch.randn(1, 3, side, side, generator=torch.Generator().manual_seed(1))
    infos = layers_of(name)
    defaults = [n for n, info in infos.items() if info.default]
    assert defaults == [expected]
    chosen = infos[expected]
    assert chosen.drawable and chosen.spatial and chosen.calls == 1
    assert (chosen.map_shape, chosen.layout.describe()) == (map_shape, layout)
    # the classifier's scores are listed but cannot be drawn
    scores = [info for info in infos.values() if info.shape == (1, 1000)]
    assert scores and not any(info.drawable for info in scores)

    result = gradcam(model, x, expected)
    assert result.cam.shape == (1, *map_shape[1:]) and result.cam.dtype == np.float32
    assert np.isfinite(result.cam).all() and (result.cam >= 0).all()
    assert 0 <= result.class_index[0] < 1000 and np.isfinite(result.score).all()
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.slow
def test_vit_b_16_input_size_and_token_maps():
    model = build("vit_b_16")
    assert model_input_size(model) == (224, 224)
    assert model_input_size(model, torchvision.models.ViT_B_16_Weights.DEFAULT) == (224, 224)
    with pytest.raises(VizError, match=r"^VisionTransformer takes only 224x224 inputs .* not 384x384"):
        check_input_size(model, (384, 384))
    tokens = torch.randn(2, 197, 768)
    maps = to_spatial_maps(tokens, model, "encoder")
    assert maps.shape == (2, 768, 14, 14)
    assert torch.equal(maps[:, :, 1, 2], tokens[:, 1 + 14 + 2])
    infos = layers_of("vit_b_16")
    assert infos["encoder"].layout.kind == TOKENS and not infos["encoder"].default
    assert infos["conv_proj"].map_shape == (768, 14, 14)


def test_models_that_take_any_size_keep_the_original_default():
    for name in ("resnet18", "swin_t"):
        model = build(name)
        assert model_input_size(model) is None
        check_input_size(model, (384, 384))
