"""viz.gradcam: agreement with Grad-CAM computed by hand, batches, errors, the written files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image
from torch import nn

import fastinterp
from viz.errors import VizError
from viz.gradcam import GRADCAM_OVERLAY, gradcam, layer_maps, write_gradcam
from viz.render import RenderOptions, colormap_lut, overlay, palette_indices


class TinyCnn(nn.Module):
    """conv -> BatchNorm -> in-place ReLU -> conv -> in-place ReLU -> pool -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(6, 8, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.relu2(self.conv2(self.relu1(self.bn(self.conv1(x)))))).flatten(1))


@pytest.fixture(scope="module")
def cnn() -> nn.Module:
    torch.manual_seed(0)
    model = TinyCnn()
    with torch.no_grad():  # BatchNorm statistics that differ from a fresh layer's
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def vit() -> nn.Module:
    torch.manual_seed(0)
    model = torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5
    )
    nn.init.normal_(model.heads.head.weight)  # torchvision starts the head at zero
    return model.eval()


def images(count: int, seed: int) -> torch.Tensor:
    return torch.randn(count, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def by_hand(model: nn.Module, x: torch.Tensor, module: nn.Module, to_maps, target_class: int | None) -> tuple:
    """Grad-CAM as its paper states it: a hook keeps the layer's output, autograd.grad gives the
    gradient of the class score, its spatial mean weights the channels, sum, ReLU."""
    kept = []

    def hook(_m, _i, output):
        output = output[0] if isinstance(output, tuple) else output
        kept.append(output)
        return None if isinstance(output, tuple) else output.clone()

    handle = module.register_forward_hook(hook)
    try:
        scores = model(x)
    finally:
        handle.remove()
    chosen = scores.argmax(1) if target_class is None else torch.full((len(x),), target_class)
    cams = []
    for n in range(len(x)):
        (grad,) = torch.autograd.grad(scores[n, chosen[n]], kept[0], retain_graph=True)
        activation, gradient = to_maps(kept[0])[n], to_maps(grad)[n]
        weights = gradient.mean(dim=(1, 2))
        cams.append(torch.relu((weights[:, None, None] * activation).sum(0)))
    score = scores[torch.arange(len(x)), chosen]
    return torch.stack(cams).detach().numpy(), chosen.numpy(), score.detach().numpy()


def vit_tokens_to_maps(tokens: torch.Tensor) -> torch.Tensor:
    """pytorch-grad-cam's reshape_transform for ViTs: drop the class token, 4x4 grid, channels first."""
    return tokens[:, 1:].reshape(tokens.shape[0], 4, 4, tokens.shape[2]).permute(0, 3, 1, 2)


@pytest.mark.parametrize("target_class", [None, 3])
@pytest.mark.parametrize("layer", ["conv2", "bn"])
def test_cnn_gradcam_equals_the_one_computed_by_hand(cnn, layer, target_class):
    x = images(3, 1)
    result = gradcam(cnn, x, layer, target_class)
    cam, chosen, score = by_hand(cnn, x, getattr(cnn, layer), lambda t: t, target_class)
    assert result.cam.dtype == np.float32 and result.cam.shape == cam.shape
    assert cam.any()  # a map that could not be all zeros by accident of the test
    np.testing.assert_allclose(result.cam, cam, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.class_index, chosen)
    np.testing.assert_allclose(result.score, score, rtol=1e-6)
    if target_class is not None:
        assert (result.class_index == target_class).all()


@pytest.mark.parametrize("target_class", [None, 1])
def test_vit_gradcam_equals_the_one_computed_by_hand(vit, target_class):
    x = images(2, 2)
    layer = vit.encoder.layers.encoder_layer_1.ln_1
    result = gradcam(vit, x, "encoder.layers.encoder_layer_1.ln_1", target_class)
    cam, chosen, score = by_hand(vit, x, layer, vit_tokens_to_maps, target_class)
    assert result.cam.shape == (2, 4, 4) and cam.any()
    np.testing.assert_allclose(result.cam, cam, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.class_index, chosen)
    np.testing.assert_allclose(result.score, score, rtol=1e-6)


def test_swin_gradcam_reads_its_stage_channels_last():
    torch.manual_seed(0)
    model = torchvision.models.SwinTransformer(
        patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 1], window_size=[2, 2], num_classes=5
    ).eval()
    x = images(2, 3)
    result = gradcam(model, x, "norm")
    cam, chosen, _ = by_hand(model, x, model.norm, lambda t: t.permute(0, 3, 1, 2), None)
    assert result.cam.shape == (2, 4, 4) and cam.any()
    np.testing.assert_allclose(result.cam, cam, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.class_index, chosen)


@pytest.mark.parametrize(("model_name", "layer"), [("cnn", "bn"), ("vit", "encoder.layers.encoder_layer_1.ln_1")])
def test_a_batch_gives_what_its_images_give_one_at_a_time(request, model_name, layer):
    model = request.getfixturevalue(model_name)
    model.train()  # gradcam runs in eval mode: BatchNorm must not use the batch's statistics
    try:
        x = images(2, 4)
        batch = gradcam(model, x, layer)
        single = [gradcam(model, x[n : n + 1], layer) for n in range(2)]
        assert model.training and all(m.training for m in model.modules())
    finally:
        model.eval()
    np.testing.assert_allclose(batch.cam, np.concatenate([s.cam for s in single]), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(batch.class_index, np.concatenate([s.class_index for s in single]))
    np.testing.assert_allclose(batch.score, np.concatenate([s.score for s in single]), rtol=1e-5)


def test_gradcam_leaves_no_trace_and_works_under_inference_mode(cnn):
    x = images(1, 5)
    expected = gradcam(cnn, x, "conv2")
    with torch.inference_mode():
        inside = gradcam(cnn, images(1, 5), "conv2")
    np.testing.assert_array_equal(inside.cam, expected.cam)
    assert all(p.grad is None for p in cnn.parameters())
    assert all(not m._forward_hooks for m in cnn.modules())


def test_frozen_parameters_still_give_a_map(cnn):
    for parameter in cnn.parameters():
        parameter.requires_grad_(False)
    try:
        frozen = gradcam(cnn, images(1, 6), "conv2")
    finally:
        for parameter in cnn.parameters():
            parameter.requires_grad_(True)
    np.testing.assert_array_equal(frozen.cam, gradcam(cnn, images(1, 6), "conv2").cam)


@pytest.mark.parametrize(
    ("layer", "target_class", "message"),
    [
        ("conv2", 7, r"^target class 7 is out of range: the model has 7 classes \(0\.\.6\)$"),
        ("conv2", -1, r"^target class -1 is out of range"),
        ("fc", None, r"^layer 'fc' outputs shape \(1, 7\), not a spatial map"),
        ("conv9", None, r"^unknown layer 'conv9' in TinyCnn"),
    ],
)
def test_bad_requests_are_one_line_errors(cnn, layer, target_class, message):
    with pytest.raises(VizError, match=message):
        gradcam(cnn, images(1, 7), layer, target_class)


def test_a_reused_module_is_refused():
    torch.manual_seed(0)
    relu = nn.ReLU()
    model = nn.Sequential(nn.Conv2d(3, 4, 3), relu, nn.Conv2d(4, 4, 3), relu, nn.Flatten(), nn.LazyLinear(3))
    model(images(1, 8))  # materialise the lazy layer
    message = r"^layer '1' ran 2 times in one forward pass \(a module the model reuses, .*\): its calls cannot be told apart"
    with pytest.raises(VizError, match=message):
        gradcam(model.eval(), images(1, 8), "1")
    with pytest.raises(VizError, match=message):  # the maps alone too: never silently the first call
        layer_maps(model, images(1, 8), ["0", "1"], cams=False)


def test_write_gradcam_files_and_manifest_entry(cnn, tmp_path):
    x = images(1, 9)
    result = gradcam(cnn, x, "conv2")
    cam = result.cam[0]
    picture = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    options = RenderOptions(scale=4.0, cmap="magma")
    entry = write_gradcam(cam, tmp_path, options, class_index=int(result.class_index[0]), score=float(result.score[0]),
                          image=picture, class_name="tench")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["gradcam.png", GRADCAM_OVERLAY])
    assert entry["file"] == "gradcam.png" and entry["overlay"] == GRADCAM_OVERLAY
    assert (entry["class"], entry["class_name"]) == (int(result.class_index[0]), "tench")
    assert entry["score"] == pytest.approx(float(result.score[0]))
    json.dumps(entry)  # goes into manifest.json as it is
    upsampled = fastinterp.resize(cam, size=(64, 64))
    assert entry["range"] == [float(upsampled.min()), float(upsampled.max())]
    written = Image.open(tmp_path / "gradcam.png")
    assert written.size == (64, 64)
    expected = palette_indices(upsampled, upsampled.min(), upsampled.max())
    np.testing.assert_array_equal(np.asarray(written), expected)
    assert written.getpalette()[:6] == colormap_lut("magma")[:2].ravel().tolist()
    with Image.open(tmp_path / GRADCAM_OVERLAY) as written_overlay:
        assert written_overlay.mode == "RGB"
        np.testing.assert_array_equal(np.asarray(written_overlay), overlay(picture, cam, colormap_lut("magma"), options.alpha))


def test_write_gradcam_refuses_a_batch(tmp_path):
    with pytest.raises(VizError, match=r"^expected one \(h, w\) Grad-CAM map, got shape \(2, 4, 4\)"):
        write_gradcam(np.zeros((2, 4, 4), np.float32), tmp_path, RenderOptions(), class_index=0, score=0.0)
