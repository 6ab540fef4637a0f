"""The viz command line end to end on a small random ResNet-18, checkpoints, compare and errors."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import viz
from viz import cli, models
from viz.inputs import original_preprocess
from viz.render import load_channel

#: A small job: ResNet-18 at 64x64, layer2 (128 channels of 8x8).
SMALL = ["--model", "resnet18", "--input-size", "64", "--layer", "layer2", "--top-k", "4"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A folder with two small photos-to-be (random RGB) and nothing else."""
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(3)
    for name in ("cat.png", "dog.jpg"):
        Image.fromarray(rng.integers(0, 256, (72, 90, 3), dtype=np.uint8)).save(folder / name)
    return folder


def run_cli(*argv: str | Path) -> tuple[int, str, str]:
    """main() in this process; returns (exit code, stdout, stderr)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def random_resnet18(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torchvision.models.resnet18().eval()


def test_default_arguments_are_the_main_job():
    args = cli.build_parser().parse_args([])
    assert (args.model, args.weights, args.out, args.scale, args.norm, args.cmap, args.format) == (
        "resnet50", "imagenet", Path("viz-out"), 8.0, "channel", "viridis", "png")
    assert cli._layers(args) is None  # the model's default layer (layer4 for ResNet-50)
    assert (args.input_size, args.batch_size, args.target_class, args.no_gradcam) == (None, 8, None, False)
    assert viz.inputs.default_image().name == "grace_hopper.jpg" and viz.inputs.default_image().is_file()


def test_cli_end_to_end_in_a_fresh_process(images, tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "viz", images / "cat.png", "--model", "resnet18", "--weights", "none",
         "--input-size", "64", "--out", out],
        # a hang guard: with numba's cache cold the child compiles first (83 s of CPU, 120 s at load 5-6)
        capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=600,
    )
    assert result.returncode == 0, result.stderr
    target = out / "resnet18" / "cat" / "layer4"
    assert result.stdout.splitlines() == [
        "model: resnet18, weights: random init (--weights none)",
        "preprocessing: resize 64x64 bicubic, ImageNet mean/std",
        f"{images / 'cat.png'} layer4 -> {target}/: 512 channels as 16x16 tiles of channels.png, "
        "sum.png, mean.png, max.png, sheet.png, overlay.png, gradcam.png, gradcam_overlay.png, manifest.json",
        f"open: {(out / 'index.html').as_uri()}",
    ]
    expected = ["channels.png"] + [
        "gradcam.png", "gradcam_overlay.png", "manifest.json", "max.png", "mean.png", "overlay.png", "sheet.png", "sum.png"]
    assert tree(target) == sorted(expected)
    assert sorted(os.listdir(out)) == [".explorer", "index.html", "resnet18"]  # no staging directory left
    manifest = json.loads((target / "manifest.json").read_text())
    assert (manifest["model"], manifest["weights"], manifest["layer"]) == ("resnet18", "random init (--weights none)", "layer4")
    assert manifest["feature_shape"] == [512, 2, 2] and manifest["image_size"] == [16, 16]
    assert manifest["input_shape"] == [1, 3, 64, 64]
    assert pixels(target / "overlay.png").shape == (64, 64, 3)


def test_files_and_folders_several_layers_and_repeated_names(images, tmp_path):
    (tmp_path / "more").mkdir()
    Image.open(images / "cat.png").save(tmp_path / "more" / "cat.bmp")
    (tmp_path / "more" / "readme.txt").write_text("not an image, not picked up")
    code, out, err = run_cli(images / "cat.png", tmp_path / "more", *SMALL, "--layer", "layer1[-1]", "--weights", "none",
                             "--out", tmp_path / "out", "--quiet")
    assert (code, out) == (0, ""), err
    dirs = sorted({str(Path(f).parent) for f in tree(tmp_path / "out" / "resnet18")})
    assert dirs == sorted(f"{name}/{layer}" for name in ("cat", "cat-2") for layer in ("layer1.1", "layer2"))
    assert json.loads((tmp_path / "out" / "resnet18" / "cat-2" / "layer1.1" / "manifest.json").read_text())["channels"]["atlas"]["count"] == 64
    manifest = json.loads((tmp_path / "out" / "resnet18" / "cat-2" / "layer2" / "manifest.json").read_text())
    assert manifest["image"] == str(tmp_path / "more" / "cat.bmp")


@pytest.mark.parametrize("wrap", ["plain", "module_prefix", "nested", "no_batchnorm_counters"])
def test_checkpoint_round_trip(images, tmp_path, wrap):
    model = random_resnet18(seed=123)
    state = model.state_dict()
    if wrap == "no_batchnorm_counters":
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    elif wrap == "module_prefix":
        state = {f"module.{k}": v for k, v in state.items()}
    elif wrap == "nested":
        state = {"epoch": 120, "state_dict": state}
    checkpoint = tmp_path / "net_120.pth"
    torch.save(state, checkpoint)
    code, _, err = run_cli(images / "cat.png", *SMALL, "--weights", checkpoint, "--out", tmp_path / "cli")
    assert code == 0, err
    viz.visualize(model, [images / "cat.png"], ["layer2"], tmp_path / "api",
                  options=viz.RenderOptions(top_k=4), preprocess=original_preprocess(64))
    cli_dir, api_dir = tmp_path / "cli" / "resnet18" / "cat" / "layer2", tmp_path / "api" / "cat" / "layer2"
    for name in ["channels.png", "sum.png", "max.png", "overlay.png"]:
        np.testing.assert_array_equal(pixels(cli_dir / name), pixels(api_dir / name))
    manifest = json.loads((cli_dir / "manifest.json").read_text())
    assert manifest["weights"] == f"checkpoint {checkpoint}"
    assert manifest["channels"]["mean"] == json.loads((api_dir / "manifest.json").read_text())["channels"]["mean"]


def test_imagenet_weights_fall_back_to_random_init_with_a_warning(images, tmp_path, monkeypatch):
    def offline(weights):
        raise OSError("<urlopen error [Errno -2] Name or service not known>")

    monkeypatch.setattr(models, "fetch_imagenet_state_dict", offline)
    code, out, err = run_cli(images / "cat.png", *SMALL, "--out", tmp_path / "out")
    assert code == 0
    assert err == (
        "fastinterp-viz: warning: could not get ImageNet weights ResNet18_Weights.IMAGENET1K_V1 (<urlopen error "
        "[Errno -2] Name or service not known>); using RANDOM weights, so the maps show an untrained network\n"
    )
    assert out.splitlines()[0] == "model: resnet18, weights: random init (ImageNet weights ResNet18_Weights.IMAGENET1K_V1 unavailable)"
    assert (tmp_path / "out" / "resnet18" / "cat" / "layer2" / "manifest.json").is_file()


def test_imagenet_weights_are_loaded_when_they_can_be_had(images, tmp_path, monkeypatch):
    trained = random_resnet18(seed=9)
    monkeypatch.setattr(models, "fetch_imagenet_state_dict", lambda weights: trained.state_dict())
    code, out, err = run_cli(images / "cat.png", *SMALL, "--out", tmp_path / "cli")
    assert (code, err) == (0, "")
    assert out.splitlines()[0] == "model: resnet18, weights: ImageNet (ResNet18_Weights.IMAGENET1K_V1)"
    viz.visualize(trained, [images / "cat.png"], ["layer2"], tmp_path / "api", preprocess=original_preprocess(64))
    np.testing.assert_array_equal(pixels(tmp_path / "cli" / "resnet18" / "cat" / "layer2" / "sum.png"),
                                  pixels(tmp_path / "api" / "cat" / "layer2" / "sum.png"))


def test_compare_a_model_with_itself_is_identical_with_zero_difference(images, tmp_path):
    code, out, err = run_cli(images / "cat.png", *SMALL, "--weights", "none", "--compare", "none", "--out", tmp_path)
    assert code == 0, err
    assert err == ("fastinterp-viz: warning: A (resnet18, weights: random init (--weights none)) and B (resnet18, weights: "
                   "random init (--weights none)) have IDENTICAL weights: the comparison can only show a blank difference\n")
    target = tmp_path / "compare" / "resnet18-vs-resnet18" / "cat" / "layer2"
    channels = ["channels_a.png", "channels_b.png", "channels_diff.png"]
    assert tree(target) == sorted([*channels, "difference.png", "manifest.json", "panel_sheet.png", "panel_sum.png",
                                   "sheet_a.png", "sheet_b.png", "sum_a.png", "sum_b.png"])
    manifest = json.loads((target / "manifest.json").read_text())
    np.testing.assert_array_equal(pixels(target / "channels_a.png"), pixels(target / "channels_b.png"))
    for c in (0, 127):  # per channel too: A equals B, and A - B is white
        assert np.unique(np.asarray(load_channel(target, manifest["channels"], c, "diff"))).tolist() == [128]
    np.testing.assert_array_equal(pixels(target / "sum_a.png"), pixels(target / "sum_b.png"))
    np.testing.assert_array_equal(pixels(target / "sheet_a.png"), pixels(target / "sheet_b.png"))
    assert np.unique(pixels(target / "difference.png")).tolist() == [128]  # the middle (white) of RdBu_r
    manifest = json.loads((target / "manifest.json").read_text())
    assert manifest["difference"]["max_abs"] == 0.0 and manifest["identical_weights"] is True
    assert out.splitlines()[0] == (
        "model: A = resnet18, weights: random init (--weights none); B = resnet18, weights: random init (--weights none)")


def test_the_summary_line_sums_up_a_compares_channel_files(images, tmp_path):
    """--channel-files with --compare: the line names each folder's first and last file, not all 384;
    pages are summed up as a one-image job's are."""
    others = "sum_a.png, sum_b.png, difference.png, sheet_a.png, sheet_b.png, panel_sum.png, panel_sheet.png, manifest.json"
    target = tmp_path / "{}" / "compare" / "resnet18-vs-resnet18" / "cat" / "layer2"
    code, out, err = run_cli(images / "cat.png", *SMALL, "--weights", "none", "--compare", "none", "--channel-files", "--out", tmp_path / "files")
    assert code == 0, err
    assert out.splitlines()[2] == (
        f"{images / 'cat.png'} layer2 -> {str(target).format('files')}/: 128 channel images (channels_a/0000.png .. channels_a/0127.png), "
        "128 channel images (channels_b/0000.png .. channels_b/0127.png), 128 channel images (channels_diff/0000.png .. "
        f"channels_diff/0127.png), {others}")
    code, out, err = run_cli(images / "cat.png", *SMALL, "--weights", "none", "--compare", "none", "--out", tmp_path / "pages")
    assert code == 0, err
    assert out.splitlines()[2] == (
        f"{images / 'cat.png'} layer2 -> {str(target).format('pages')}/: 128 channels as 64x64 tiles of channels_a.png, "
        f"128 channels as 64x64 tiles of channels_b.png, 128 channels as 64x64 tiles of channels_diff.png, {others}")


def test_compare_none_against_offline_imagenet_warns_of_identical_weights(images, tmp_path, monkeypatch):
    def offline(weights):
        raise OSError("no network")

    monkeypatch.setattr(models, "fetch_imagenet_state_dict", offline)
    code, _, err = run_cli(images / "cat.png", *SMALL, "--compare", "none", "--out", tmp_path)
    assert code == 0
    assert err.splitlines()[-1].startswith("fastinterp-viz: warning: A (resnet18, weights: random init (ImageNet weights ")
    assert "have IDENTICAL weights" in err.splitlines()[-1]


def test_compare_two_checkpoints_on_one_shared_scale(images, tmp_path):
    checkpoint = tmp_path / "new.pth"
    torch.save(random_resnet18(seed=5).state_dict(), checkpoint)
    code, _, err = run_cli(images / "cat.png", *SMALL, "--weights", "none", "--compare", checkpoint, "--out", tmp_path / "o")
    assert code == 0, err
    assert "IDENTICAL" not in err
    manifest = json.loads((tmp_path / "o" / "compare" / "resnet18-vs-resnet18" / "cat" / "layer2" / "manifest.json").read_text())
    assert manifest["difference"]["max_abs"] > 0 and manifest["identical_weights"] is False
    sum_a, sum_b = (pixels(tmp_path / "o" / "compare" / "resnet18-vs-resnet18" / "cat" / "layer2" / f"sum_{s}.png") for s in "ab")
    assert min(sum_a.min(), sum_b.min()) == 0 and max(sum_a.max(), sum_b.max()) == 255  # one scale spans both
    assert manifest["b"] == f"resnet18, weights: checkpoint {checkpoint}"


def test_no_overwrite_unless_asked(images, tmp_path):
    out = tmp_path / "out"
    job = out / "resnet18" / "cat" / "layer2"
    assert run_cli(images / "cat.png", *SMALL, "--weights", "none", "--out", out, "--quiet")[0] == 0
    before = {name: (job / name).read_bytes() for name in tree(job)}
    code, stdout, err = run_cli(images / "cat.png", *SMALL, "--weights", "none", "--cmap", "magma", "--out", out)
    assert (code, stdout) == (2, "")
    assert err == (f"fastinterp-viz: error: {job} already exists; pass --overwrite to replace it, "
                   "or choose another --out\n")
    assert {name: (job / name).read_bytes() for name in tree(job)} == before
    code, _, err = run_cli(images / "cat.png", *SMALL, "--weights", "none", "--cmap", "magma", "--out", out, "--overwrite")
    assert code == 0, err
    assert (job / "sum.png").read_bytes() != before["sum.png"]
    assert json.loads((job / "manifest.json").read_text())["colormap"] == "magma"
    assert sorted(os.listdir(out)) == [".explorer", "index.html", "resnet18"]


def test_checks_that_need_no_weights_come_before_the_model_is_built(images, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert run_cli(images / "cat.png", *SMALL, "--weights", "none", "--out", out, "--quiet")[0] == 0

    def no_build(*args, **kwargs):
        raise AssertionError("the model was built")

    monkeypatch.setattr(models, "build_model", no_build)
    cat = images / "cat.png"
    cases = {
        "existing output": ([*SMALL, "--out", out], "already exists"),
        "target class": ([*SMALL, "--target-class", "1000", "--out", tmp_path / "o"],
                         "--target-class 1000 is out of range: the model has 1000 classes (0..999)"),
        "fixed input size": (["--model", "vit_b_16", "--input-size", "64", "--layer", "conv_proj", "--out", tmp_path / "o"],
                             "VisionTransformer takes only 224x224 inputs (its fixed input size), not 64x64"),
        "not drawable": ([*SMALL, "--layer", "avgpool,fc", "--out", tmp_path / "o"], "layer 'fc' outputs shape (1, 1000), not a spatial map"),
        "reused module": ([*SMALL, "--layer", "layer1.0.relu", "--out", tmp_path / "o"], "layer 'layer1.0.relu' ran 2 times"),
        "output too large": ([*SMALL, "--max-output-gb", "0.001", "--out", tmp_path / "o"], "this run would write up to"),
        "batch size": ([*SMALL, "--batch-size", "0", "--out", tmp_path / "o"], "--batch-size must be >= 1"),
        "unwritable out": ([*SMALL, "--out", tmp_path / "a-file" / "o"], f"cannot create output directory {tmp_path / 'a-file' / 'o'}"),
        "unknown layer": ([*SMALL, "--layer", "layer9", "--out", tmp_path / "o"], "unknown layer 'layer9' in ResNet"),
    }
    (tmp_path / "a-file").write_text("")
    for case, (argv, message) in cases.items():
        code, stdout, err = run_cli(cat, "--weights", "none", *argv)
        assert (code, stdout) == (2, ""), case
        assert err.startswith("fastinterp-viz: error: ") and message in err and err.count("\n") == 1, (case, err)
    assert not (tmp_path / "o").exists()


def test_two_models_share_one_out_without_colliding(images, tmp_path):
    for model in ("resnet18", "resnet34"):
        code, _, err = run_cli(images / "cat.png", "--model", model, "--weights", "none", "--input-size", "64",
                               "--layer", "layer4", "--top-k", "2", "--out", tmp_path, "--quiet")
        assert code == 0, err
    for model in ("resnet18", "resnet34"):
        manifest = json.loads((tmp_path / model / "cat" / "layer4" / "manifest.json").read_text())
        assert manifest["model"] == model and manifest["gradcam"]["file"] == "gradcam.png"


def test_list_layers(capsys):
    code, out, _ = run_cli("--model", "resnet18", "--input-size", "64", "--list-layers")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "layers of resnet18 (output shapes for a 1x3x64x64 input; '-': cannot be drawn):"
    assert "  layer4                                   Sequential             (1, 512, 2, 2)         512 maps 2x2  <- default" in lines
    assert "  layer4.1.conv2                           Conv2d                 (1, 512, 2, 2)         512 maps 2x2" in lines
    assert "  fc                                       Linear                 (1, 1000)              -" in lines
    assert lines[-1] == "default layer: layer4"


def test_preprocessing_can_follow_the_weights_transforms(images, tmp_path):
    code, out, err = run_cli(images / "cat.png", "--model", "resnet18", "--weights", "none", "--preprocess", "weights",
                             "--layer", "layer4", "--top-k", "2", "--out", tmp_path)
    assert code == 0, err
    assert out.splitlines()[1] == "preprocessing: transforms of ResNet18_Weights.IMAGENET1K_V1"
    manifest = json.loads((tmp_path / "resnet18" / "cat" / "layer4" / "manifest.json").read_text())
    assert manifest["input_shape"] == [1, 3, 224, 224] and manifest["feature_shape"] == [512, 7, 7]


def _bad_checkpoint(tmp_path: Path) -> Path:
    state = random_resnet18(seed=1).state_dict()
    del state["fc.bias"]
    state["extra.weight"] = torch.zeros(3)
    state["conv1.weight"] = torch.zeros(64, 3, 5, 5)
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, path)
    return path


def _error_cases(tmp_path: Path, images: Path) -> dict[str, tuple[list, str]]:
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "a-file").write_text("")
    (tmp_path / "garbage.pth").write_bytes(b"\x00not a checkpoint")
    cat = images / "cat.png"
    return {
        "unreadable image": ([tmp_path / "notes.jpg"], f"cannot read image {tmp_path / 'notes.jpg'}: not an image file Pillow can read"),
        "missing image": ([tmp_path / "nope.png"], f"cannot read image {tmp_path / 'nope.png'}: no such file or folder"),
        "unknown layer": ([cat, "--layer", "layer9"], "unknown layer 'layer9' in ResNet; closest: layer4, layer3, layer2, layer1 (see --list-layers)"),
        "unknown model": ([cat, "--model", "resnet19"], "unknown torchvision classification model 'resnet19'; closest: resnet18, resnet152, resnet101"),
        "checkpoint mismatch": ([cat, "--weights", _bad_checkpoint(tmp_path)],
                                f"checkpoint {tmp_path / 'bad.pth'} does not match ResNet: missing keys: fc.bias; "
                                "unexpected keys: extra.weight; shape mismatches (checkpoint vs model): "
                                "conv1.weight (64, 3, 5, 5) vs (64, 3, 7, 7)"),
        "unreadable checkpoint": ([cat, "--weights", tmp_path / "garbage.pth"],
                                  f"cannot read checkpoint {tmp_path / 'garbage.pth'}: not a PyTorch checkpoint "
                                  "(neither a torch.save archive nor a pickle of tensors)"),
        "missing checkpoint": ([cat, "--weights", tmp_path / "net_120.pth"], f"cannot read checkpoint {tmp_path / 'net_120.pth'}: no such file"),
        "out dir not writable": ([cat, "--out", tmp_path / "a-file" / "out"],
                                 f"cannot create output directory {tmp_path / 'a-file' / 'out'}: Not a directory"),
        "not a feature map": ([cat, "--layer", "layer1,fc"], "layer 'fc' outputs shape (1, 1000), not a spatial map"),
        "compare of different shapes": ([cat, "--layer", "layer2", "--compare", "none", "--compare-model", "resnet50"],
                                        "cannot compare feature maps of shapes (128, 8, 8) and (512, 8, 8)"),
        "cuda without cuda": ([cat, "--device", "cuda"],
                              "--device cuda: CUDA is not available here (torch.cuda.is_available() is False); use --device cpu"),
        "cuda with a bad index": ([cat, "--device", "cuda:x"], "--device must be cpu or cuda (or cuda:N), got 'cuda:x'"),
    }


def test_read_only_output_directory(images, tmp_path, monkeypatch):
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o500)
    if os.geteuid() == 0:  # root writes anywhere: make creating files there fail as it would for a user
        real_mkstemp = tempfile.mkstemp  # a run's first file in out: its staging lock

        def refuse_in_out(*args, dir=None, **kwargs):
            if dir is not None and Path(dir) == out:
                raise PermissionError(errno.EACCES, "Permission denied")
            return real_mkstemp(*args, dir=dir, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", refuse_in_out)
    try:
        code, _, err = run_cli(images / "cat.png", *SMALL, "--weights", "none", "--out", out)
    finally:
        out.chmod(0o700)
    assert code == 2
    assert err == f"fastinterp-viz: error: cannot write to output directory {out}: Permission denied\n"
    assert os.listdir(out) == []


ERROR_CASES = [
    "unreadable image", "missing image", "unknown layer", "unknown model", "checkpoint mismatch",
    "unreadable checkpoint", "missing checkpoint", "out dir not writable",
    "not a feature map", "compare of different shapes", "cuda without cuda", "cuda with a bad index",
]


@pytest.mark.parametrize("case", ERROR_CASES)
def test_errors_are_one_line_exit_2_and_leave_nothing(images, tmp_path, case):
    if case == "cuda without cuda" and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    argv, message = _error_cases(tmp_path, images)[case]
    out = tmp_path / "parent" / "out"
    defaults = {"--model": "resnet18", "--weights": "none", "--out": out, "--input-size": "64"}
    argv += [item for option, value in defaults.items() if option not in argv for item in (option, value)]
    before = tree(tmp_path)
    code, stdout, err = run_cli(*argv)
    assert (code, stdout) == (2, "")
    assert err.startswith(f"fastinterp-viz: error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "parent").exists()
    assert tree(tmp_path) == before
