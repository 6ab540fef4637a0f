"""Batches through the model give the files of one image at a time; every family runs from the CLI
with no options but a small input; a blank Grad-CAM is announced."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import viz
from viz import cli
from viz.inputs import original_preprocess


def conv_bn_net() -> nn.Module:
    """Convolutions, BatchNorm with its own statistics, a 1x1-conv head: float64, whose CPU kernels
    compute each image of a batch alone (float32 oneDNN kernels may sum in another order per batch size)."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 12, 3, stride=2, padding=1), nn.BatchNorm2d(12), nn.ReLU(),
        nn.Conv2d(12, 5, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    )
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model.double().eval()


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("count", [0, 1, 2, 5, 8, 9, 16, 32, 33])
@pytest.mark.parametrize("batch_size", [1, 3, 8])
def test_batches_are_whole_then_the_last_one_halved(count, batch_size):
    """Every image once, in order, at most ``batch_size`` at a time; the images of the last
    batch in halving batches, ending with one image (the rendering left after the last forward pass)."""
    from viz.api import batch_sizes

    sizes = batch_sizes(count, batch_size)
    assert sum(sizes) == count and all(1 <= size <= batch_size for size in sizes)
    full = max(0, (count - 1) // batch_size)
    assert sizes[:full] == [batch_size] * full
    left = count - full * batch_size
    for size in sizes[full:-1]:
        assert size == (left + 1) // 2  # half of what is left (rounded up), not cut to ones
        left -= size
    assert sizes[-1:] == ([1] if count else []) and left == (1 if count else 0)


def test_batches_write_the_bytes_of_one_image_at_a_time(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "in").mkdir()
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(tmp_path / "in" / f"img{i}.png")
    model = conv_bn_net()
    seen: list[int] = []
    model[0].register_forward_pre_hook(lambda _m, inputs: seen.append(len(inputs[0])))
    options = viz.RenderOptions(scale=2, top_k=3, threads=2)
    for batch_size in (1, 3):
        viz.visualize(model, [tmp_path / "in"], ["5", "2"], tmp_path / f"b{batch_size}", options=options,
                      preprocess=original_preprocess(32), progress=False, batch_size=batch_size)
    assert seen == [1, 1, 1, 1, 3, 1]  # batches of 1, then of 3 and 1
    one, three = (files(tmp_path / f"b{b}") for b in (1, 3))
    jobs = [name for name in one if not name.startswith((".explorer", "index.html"))]
    assert len(jobs) == 4 * 2 * (1 + 8)  # per image and layer: its channels' page, 4 summaries, 3 Grad-CAM/overlay, manifest
    assert {n: one[n] for n in jobs} == {n: three[n] for n in jobs}
    manifest = json.loads(one["img2/5/manifest.json"])
    assert manifest["gradcam"]["file"] == "gradcam.png" and manifest["input_shape"] == [1, 3, 32, 32]
    assert json.loads(one["img2/2/manifest.json"])["channels"]["atlas"]["count"] == 8 and "img2/2/channels.png" in jobs


def run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name, side, layer", [
    ("mobilenet_v3_small", "64", "features"),
    ("swin_t", "64", "norm"),
    pytest.param("vit_b_16", None, "encoder.layers.encoder_layer_11.ln_1", marks=pytest.mark.slow),
])
def test_each_family_runs_with_no_layer_given(tmp_path, name, side, layer):
    size = [] if side is None else ["--input-size", side]
    code, stdout, err = run_cli("--model", name, "--weights", "none", *size, "--top-k", "2", "--scale", "2", "--out", tmp_path)
    assert code == 0, err
    job = tmp_path / name / "grace_hopper" / layer
    manifest = json.loads((job / "manifest.json").read_text())
    assert manifest["layer"] == layer and "gradcam" in manifest
    assert {"sum.png", "sheet.png", "overlay.png", "gradcam.png", "gradcam_overlay.png"} <= set(manifest["files"])
    assert manifest["channels"]["atlas"]["count"] == manifest["feature_shape"][0] and (job / "channels.png").is_file()
    if name == "vit_b_16":  # its fixed 224 instead of the original's 384; its zero-initialised head: a blank Grad-CAM
        assert manifest["input_shape"] == [1, 3, 224, 224] and manifest["feature_shape"] == [768, 14, 14]
        assert "warning: Grad-CAM of encoder.layers.encoder_layer_11.ln_1 is blank" in err
    assert stdout.splitlines()[-1] == f"open: {(tmp_path / 'index.html').as_uri()}"


def test_a_model_without_class_scores_is_drawn_without_grad_cam_unless_asked(tmp_path):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU(), nn.Conv2d(4, 6, 3)).eval()  # maps out, no scores
    photo = viz.inputs.default_image()
    options = viz.RenderOptions(scale=1, top_k=2, threads=1)
    (result,) = viz.visualize(model, [photo], None, tmp_path / "a", options=options, preprocess=original_preprocess(32),
                              progress=False)
    assert result.layer == "2" and "gradcam" not in result.manifest and "gradcam.png" not in result.manifest["files"]
    with pytest.raises(viz.VizError, match=r"^Grad-CAM needs class scores of shape \(N, classes\) from the model, got \(1, 6, 13, 13\)"):
        viz.visualize(model, [photo], ["0"], tmp_path / "b", options=options, preprocess=original_preprocess(32),
                      progress=False, gradcam=True)
    assert not (tmp_path / "b").exists()


def test_one_progress_display_counts_every_channel_of_the_run_once(tmp_path):
    rng = np.random.default_rng(2)
    (tmp_path / "in").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "in" / f"p{i}.png")
    shown = io.StringIO()
    display = viz.RunProgress(True, file=shown)
    # 40 channels in chunks of 18 (not a multiple of the 16 channels per writer task)
    model = nn.Sequential(nn.Conv2d(3, 40, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    options = viz.RenderOptions(scale=4, top_k=2, threads=2, chunk_mb=18 * 10 * 32 * 32 / 2**20)
    viz.visualize(model, [tmp_path / "in"], ["0"], tmp_path / "out", options=options, preprocess=original_preprocess(8),
                  progress=display, batch_size=2)
    assert display.bar.n == display.bar.total == 3 * 40
    display.close()
    assert "120/120" in shown.getvalue() and "done" in shown.getvalue()


def tiny_vit(seed: int) -> nn.Module:
    from torchvision.models import VisionTransformer

    torch.manual_seed(seed)
    model = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16, mlp_dim=32, num_classes=5)
    nn.init.normal_(model.heads.head.weight)  # torchvision starts the head at zero: a blank Grad-CAM
    return model.eval()


def test_vit_tokens_are_drawn_compared_and_explained_like_cnn_maps(tmp_path):
    photo = viz.inputs.default_image()
    options = viz.RenderOptions(scale=2, top_k=4, threads=1)
    preprocess = original_preprocess(32)
    (result,) = viz.visualize(tiny_vit(0), [photo], None, tmp_path, options=options, preprocess=preprocess, progress=False)
    assert result.layer == "encoder.layers.encoder_layer_1.ln_1"
    assert result.manifest["feature_shape"] == [16, 4, 4] and result.manifest["image_size"] == [8, 8]
    assert result.manifest["gradcam"]["map_shape"] == [4, 4] and result.manifest["gradcam"]["range"][1] > 0
    (compared,) = viz.compare(tiny_vit(0), tiny_vit(1), [photo], ["encoder"], tmp_path, options=options, preprocess=preprocess)
    assert compared.directory == tmp_path / "compare" / "grace_hopper" / "encoder"
    assert compared.manifest["difference"]["max_abs"] > 0 and compared.manifest["identical_weights"] is False


def test_a_model_with_no_spatial_layer_is_one_error_and_writes_nothing(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 4)).eval()
    with pytest.raises(viz.VizError, match=r"^Sequential has no layer whose output is a spatial map"):
        viz.visualize(model, [viz.inputs.default_image()], None, tmp_path / "out", preprocess=original_preprocess(8), progress=False)
    assert not (tmp_path / "out").exists()


def test_the_job_survives_an_explorer_page_that_fails(tmp_path, monkeypatch):
    from viz import explorer

    def broken(out_dir):
        raise OSError("disk full while writing the page")

    monkeypatch.setattr(explorer, "write_index", broken)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
    with pytest.warns(viz.VizWarning, match=r"the explorer page of .* was not updated: disk full while writing the page"):
        (result,) = viz.visualize(model, [viz.inputs.default_image()], ["0"], tmp_path, preprocess=original_preprocess(16),
                                  options=viz.RenderOptions(scale=1, top_k=2, threads=1), progress=False)
    assert (result.directory / "manifest.json").is_file() and not (tmp_path / "index.html").exists()
