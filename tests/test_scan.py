"""viz.scan in-process: against a brute-force scan holding every activation, across batch sizes
and DataLoader workers, the on-disk format, resume after a real kill, and bad input."""

from __future__ import annotations

import contextlib
import copy
import importlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

from viz.errors import VizError
from viz.inputs import Preprocess, original_preprocess
from viz.scan import ImageList, collect_scan_images, load_scan, scan

# The module itself: ``viz.scan`` may be exported as the function, shadowing the attribute.
scanning = importlib.import_module("viz.scan")
REPO = Path(__file__).resolve().parents[1]
INPUT = 32
PREPROCESS = original_preprocess(INPUT)
#: Channel 3 of layer "1" is dead (bias far below zero): every image ties at 0, so its top list
#: must be the lowest readable image indices.
DEAD = 3
#: The CLI job of the resume and CLI tests: a small random ResNet-18.
CLI_JOB = ["--model", "resnet18", "--weights", "none", "--input-size", "64", "--layer", "layer2", "--top", "4", "--quiet"]


def make_images(folder: Path, count: int, seed: int) -> Path:
    """``count`` random RGB images of assorted sizes in ``folder`` and a subfolder, plus a corrupt one."""
    rng = np.random.default_rng(seed)
    (folder / "deeper").mkdir(parents=True)
    for n in range(count):
        where = folder / "deeper" if n % 4 == 0 else folder
        pixels = rng.integers(0, 256, (24 + n % 7, 30 + n % 5, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(where / f"img{n:03d}.{'png' if n % 2 else 'jpg'}")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_images(tmp_path_factory.mktemp("scan") / "images", 30, seed=1)


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(5)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 6, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(6, 5, 3, stride=2), torch.nn.AdaptiveAvgPool2d(1)
    )
    with torch.no_grad():
        model[0].bias[DEAD] = -1e3
    return model.eval()


def brute_force(model: torch.nn.Module, paths: list[str], layer: int | Callable, top: int) -> dict[str, np.ndarray]:
    """Every image's activations in memory, one forward each; statistics and top lists by sorting.
    ``layer``: the Sequential ``model``'s index, or a function of a (1, 3, H, W) batch giving one image's (C, h, w) maps."""
    from viz.inputs import load_image

    maps_of = layer if callable(layer) else (lambda batch: model[: layer + 1](batch)[0].numpy())
    maps, kept = [], []
    for index, path in enumerate(paths):
        try:
            image = load_image(Path(path))
        except VizError:
            continue
        with torch.no_grad():
            maps.append(maps_of(PREPROCESS(image)))
        kept.append(index)
    maps = np.stack(maps)  # (N, C, h, w)
    n, channels, height, width = maps.shape
    flat = maps.reshape(n, channels, -1)
    reference = {
        "mean": flat.astype(np.float64).mean(axis=(0, 2)), "max": flat.max(axis=(0, 2)),
        "active": (flat > 0).mean(axis=(0, 2)),
        "top_images": np.full((channels, top), -1), "top_scores": np.full((channels, top), -np.inf, np.float32),
        "top_where": np.full((channels, top, 2), -1),
    }
    for c in range(channels):
        ranked = sorted(range(n), key=lambda i: (-flat[i, c].max(), kept[i]))[:top]
        for r, i in enumerate(ranked):
            reference["top_images"][c, r] = kept[i]
            reference["top_scores"][c, r] = flat[i, c].max()
            reference["top_where"][c, r] = np.unravel_index(np.argmax(maps[i, c]), (height, width))
    return reference


def assert_same_scan(a: scanning.LayerScan, b, *, rtol: float = 1e-5) -> None:
    """Top lists equal; scores and statistics equal within float rounding."""
    get = (lambda key: b[key]) if isinstance(b, dict) else (lambda key: getattr(b, key))
    np.testing.assert_array_equal(a.top_images, get("top_images"))
    np.testing.assert_array_equal(a.top_where, get("top_where"))
    np.testing.assert_allclose(a.top_scores, get("top_scores"), rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(a.max, get("max"), rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(a.mean, get("mean"), rtol=rtol, atol=1e-6)
    np.testing.assert_array_equal(a.active, get("active"))


def test_collect_walks_folders_and_reads_lists(images, tmp_path):
    found = collect_scan_images([images])
    assert len(found) == 31 and found == sorted(found, key=lambda p: (Path(p).parent != images, p))
    assert str(images / "broken.png") in found and any("/deeper/" in p for p in found)
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my images\n{images / 'img001.png'}\n\n../nowhere/missing.png\n")
    assert collect_scan_images([listing]) == [str(images / "img001.png"), str(tmp_path / "../nowhere/missing.png")]


def test_scan_matches_brute_force(images):
    model = tiny_model()
    result = scan(model, [images], ["1", "2"], top=6, batch_size=4, preprocess=PREPROCESS, progress=False)
    paths = collect_scan_images([images])
    assert result.images == paths and result.input_size == (INPUT, INPUT)
    assert [s["path"] for s in result.skipped] == [str(images / "broken.png")]
    assert "broken.png" in result.skipped[0]["reason"] and "\n" not in result.skipped[0]["reason"]
    for name, layer in (("1", 1), ("2", 2)):
        assert_same_scan(result.layers[name], brute_force(model, paths, layer, 6))
    dead = result.layers["1"]
    readable = [i for i, p in enumerate(paths) if not p.endswith("broken.png")]
    assert dead.top_images[DEAD].tolist() == readable[:6] and dead.max[DEAD] == 0 and dead.active[DEAD] == 0
    assert dead.top_where[DEAD].tolist() == [[0, 0]] * 6  # the first position of a flat maximum


def test_same_result_whatever_batch_size_and_workers(images):
    model = tiny_model()
    results = [
        scan(model, [images], ["2"], top=5, batch_size=b, workers=w, preprocess=PREPROCESS, progress=False)
        for b, w in ((1, 0), (7, 2), (64, 1))
    ]
    for other in results[1:]:
        assert_same_scan(other.layers["2"], results[0].layers["2"])
        assert other.skipped == results[0].skipped


def tiny_vit() -> torch.nn.Module:
    """A 2-block ViT on 32x32 inputs: 8x8 patches, a 4x4 grid of 16-dim tokens after one class token."""
    import torchvision

    torch.manual_seed(6)
    return torchvision.models.VisionTransformer(image_size=INPUT, patch_size=8, num_layers=2, num_heads=2, hidden_dim=16,
                                                mlp_dim=32, num_classes=5).eval()


def tiny_swin() -> torch.nn.Module:
    """A 2-stage Swin on 32x32 inputs: (N, 8, 8, 8) then (N, 4, 4, 16) channels-last stages."""
    import torchvision

    torch.manual_seed(7)
    return torchvision.models.SwinTransformer(patch_size=[4, 4], embed_dim=8, depths=[1, 1], num_heads=[1, 1],
                                              window_size=[2, 2], num_classes=5).eval()


def output_of(model: torch.nn.Module, layer: str, batch: torch.Tensor) -> torch.Tensor:
    """``layer``'s output for ``batch``, by a plain forward hook on the whole model."""
    found = []
    handle = dict(model.named_modules())[layer].register_forward_hook(lambda _m, _i, output: found.append(output))
    try:
        model(batch)
    finally:
        handle.remove()
    return found[0]


def test_token_and_channels_last_layers_match_brute_force(images, tmp_path):
    """ViT blocks' (N, 1 + 16, D) tokens are scanned on their 4x4 patch grid (class token dropped,
    row-major), Swin stages' (N, H, W, C) permuted: top_where is in that grid."""
    paths = collect_scan_images([images])
    vit, swin = tiny_vit(), tiny_swin()
    block = "encoder.layers.encoder_layer_1"
    result = scan(vit, paths, [block, "encoder.ln"], top=4, batch_size=5, preprocess=PREPROCESS, progress=False)

    def vit_grid(layer: str):  # by hand: the patch tokens after the class token, a row of the grid at a time
        return lambda batch: output_of(vit, layer, batch)[0, 1:].reshape(4, 4, 16).permute(2, 0, 1).numpy()

    for layer in (block, "encoder.ln"):
        assert result.layers[layer].map_size == (4, 4) and result.layers[layer].channels == 16
        assert_same_scan(result.layers[layer], brute_force(vit, paths, vit_grid(layer), 4))
    stages = scan(swin, paths, ["features.1", "features.3"], top=4, batch_size=7, preprocess=PREPROCESS, progress=False)
    for layer, (channels, side) in (("features.1", (8, 8)), ("features.3", (16, 4))):
        by_hand = brute_force(swin, paths, lambda batch, layer=layer: output_of(swin, layer, batch)[0].permute(2, 0, 1).numpy(), 4)
        assert stages.layers[layer].map_size == (side, side) and stages.layers[layer].channels == channels
        assert_same_scan(stages.layers[layer], by_hand)
    # The strips overlay the token grid's map, upsampled, on the crops around its maximum.
    result.save(tmp_path / "vit")
    assert json.loads((tmp_path / "vit" / "scan.json").read_text())["layers"][block]["map_size"] == [4, 4]
    crop = round(INPUT * scanning.CROP_FRACTION)
    strip = Image.open(tmp_path / "vit" / block / "strips" / "0000.png")
    assert strip.size == (4 * crop + 3 * scanning.STRIP_GAP_PX, crop)


def test_layers_that_are_not_maps_and_wrong_vit_sizes_are_one_line(images):
    cases = [
        (tiny_vit(), ["heads"], PREPROCESS, "layer 'heads' outputs shape (4, 5), not a spatial map ("),
        (tiny_vit(), ["encoder.ln"], original_preprocess(64), "takes only 32x32 inputs"),
    ]
    for model, layers, preprocess, message in cases:
        with pytest.raises(VizError, match=re.escape(message)) as error:
            scan(model, [images], layers, batch_size=5, preprocess=preprocess, progress=False)
        assert "\n" not in str(error.value)


def test_partial_states_merge_alike_in_any_order(images):
    """The fold of the partitions' states is one tree whatever order they arrive in: bit-identical
    statistics; and a gap is cut at the multiples of the partition size."""
    assert scanning._partitions([(3, 20), (21, 22)], 7) == [(3, 7), (7, 14), (14, 20), (21, 22)]
    model, paths = tiny_model(), collect_scan_images([images])
    job = scanning._ScanJob(("1", "2"), 4, 3, "cpu", PREPROCESS)
    ranges = scanning._partitions([(0, len(paths))], 7)
    states = {first: scanning._reduce_range(model, paths, first, stop, job, workers=0) for first, stop in ranges}
    merged = []
    for order in (ranges, ranges[::-1], [ranges[i] for i in (2, 0, 4, 1, 3)]):
        fold = scanning._OrderedFold(first for first, _ in ranges)
        for first, _ in order:
            fold.add(first, copy.deepcopy(states[first]))
        merged.append(fold.result())
    whole = scan(model, paths, ["1", "2"], top=4, preprocess=PREPROCESS, progress=False)
    for state in merged:
        assert state.skipped == merged[0].skipped and [i for i, _ in state.skipped] == [paths.index(str(images / "broken.png"))]
        for layer in ("1", "2"):
            np.testing.assert_array_equal(state.layers[layer].sum, merged[0].layers[layer].sum)
            assert_same_scan(state.layers[layer].result(), whole.layers[layer])


def test_more_top_than_images_pads(images, tmp_path):
    few = [images / "img001.png", images / "img003.png"]
    result = scan(tiny_model(), few, ["2"], top=4, preprocess=PREPROCESS, progress=False)
    layer = result.layers["2"]
    assert (layer.top_images[:, 2:] == -1).all() and np.isneginf(layer.top_scores[:, 2:]).all()
    assert (layer.top_where[:, 2:] == -1).all() and set(layer.top_images[:, :2].ravel()) == {0, 1}
    result.save(tmp_path / "out")
    strip = Image.open(tmp_path / "out" / "2" / "strips" / "0000.png")
    crop = round(INPUT * scanning.CROP_FRACTION)
    assert strip.size == (2 * crop + scanning.STRIP_GAP_PX, crop)


def test_save_and_load_follow_the_format(images, tmp_path):
    model = tiny_model()
    result = scan(model, [images], ["1", "2"], top=3, preprocess=PREPROCESS, model_name="tiny", weights="random", progress=False)
    out = tmp_path / "out"
    result.save(out)
    header = json.loads((out / "scan.json").read_text())
    assert {k: header[k] for k in ("format", "version", "model", "weights", "input_size", "top", "complete")} == {
        "format": "fastinterp-scan", "version": 1, "model": "tiny", "weights": "random", "input_size": [INPUT, INPUT],
        "top": 3, "complete": True}
    assert header["images"] == result.images and header["skipped"] == result.skipped
    assert header["layers"] == {"1": {"dir": "1", "channels": 6, "map_size": [15, 15]},
                                "2": {"dir": "2", "channels": 5, "map_size": [7, 7]}}
    with np.load(out / "1" / "stats.npz") as stats:
        assert {k: stats[k].dtype.name for k in stats.files} == {
            "mean": "float64", "max": "float32", "active": "float64", "top_images": "int64", "top_scores": "float32",
            "top_where": "int64"}
    assert sorted(p.name for p in (out / "1" / "strips").iterdir()) == [f"{c:04d}.png" for c in range(6)]
    loaded = load_scan(out)
    assert loaded.images == result.images and loaded.skipped == result.skipped and loaded.complete
    for name in ("1", "2"):
        assert_same_scan(loaded.layers[name], result.layers[name], rtol=0)
    index = (out / "index.html").read_text()  # the explorer page, refreshed by save
    pages = sorted(p.name for p in (out / ".explorer").iterdir())
    with pytest.raises(VizError, match="already exists; pass --overwrite"):
        result.save(out)
    # nothing half-written left, and the page lists both layers of the scan
    assert sorted(p.name for p in out.iterdir()) == [".explorer", "1", "2", "index.html", "scan.json"]
    assert "fastinterp" in index and len([p for p in pages if p.endswith(".js")]) == 2


def test_strip_tiles_are_crops_around_the_maximum():
    assert scanning._crop_box((2.0, 30.0), (32, 32), (16, 16)) == (slice(0, 16), slice(16, 32))
    assert scanning._crop_box((16.0, 16.0), (32, 32), (16, 16)) == (slice(8, 24), slice(8, 24))
    # One channel, one image: its map peaks at the bottom-right cell, so the tile is the image's
    # bottom-right quarter, blended half and half with the colormap's top colour there.
    maps = np.zeros((1, 1, 4, 4), np.float32)
    maps[0, 0, 3, 3] = 1.0
    layer = scanning.LayerScan(np.zeros(1), np.ones(1, np.float32), np.zeros(1), np.array([[0]]),
                               np.ones((1, 1), np.float32), np.array([[[3, 3]]]), (4, 4), maps)
    image = np.arange(32 * 32 * 3, dtype=np.uint8).reshape(32, 32, 3)
    lut = np.zeros((256, 3), np.float32)
    lut[255] = 200.0
    strip = scanning._strip(layer, 0, {0: image}, lut)
    assert strip.shape == (16, 16, 3)
    assert (strip[-1, -1] == np.rint(0.5 * image[-1, -1] + 100)).all()  # the maximum: top colour
    assert (strip[0, 0] == np.rint(0.5 * image[16, 16])).all()  # far from it: colour 0


def test_layer_directory_names_are_safe_and_unique(tmp_path):
    names = ["layer4", "layer4.2", "../etc", ".hidden", "a/b", "scan.json", "", "a_b"]
    dirs = scanning.layer_dirs(names)
    assert dirs["layer4"] == "layer4" and dirs["layer4.2"] == "layer4.2"  # canonical names stay readable
    assert len(set(dirs.values())) == len(names) and not {"scan.json", scanning.STATE_DIR} & set(dirs.values())
    for name in dirs.values():
        assert name and "/" not in name and not name.startswith(".")
        assert (tmp_path / name).resolve().parent == tmp_path.resolve()
    header = json.loads(json.dumps({"layers": {"x": {"dir": "../outside", "channels": 1, "map_size": [1, 1]}}}))
    (tmp_path / "scan.json").write_text(json.dumps({"format": "fastinterp-scan", "version": 1, "images": [], "skipped": [],
                                                    "model": "m", "weights": "w", "input_size": [1, 1], "top": 1,
                                                    "complete": True, **header}))
    with pytest.raises(VizError, match="outside the scan"):
        load_scan(tmp_path)


def test_bad_input_is_one_line(images, tmp_path):
    model = tiny_model()
    (tmp_path / "empty").mkdir()
    (tmp_path / "only-bad").mkdir()
    (tmp_path / "only-bad" / "x.png").write_bytes(b"junk")
    cases = [
        ([tmp_path / "empty"], ["2"], "no images found"),
        ([tmp_path / "nope"], ["2"], "no such file or folder"),
        ([tmp_path / "only-bad"], ["2"], "none of the 1 images could be read"),
        ([images], ["layer9"], "unknown layer"),
    ]
    for sources, layers, message in cases:
        with pytest.raises(VizError, match=message) as error:
            scan(model, sources, layers, preprocess=PREPROCESS, progress=False)
        assert "\n" not in str(error.value)
    with pytest.raises(VizError, match=">= 1"):
        scan(model, [images], ["2"], top=0)
    from torchvision import transforms

    as_is = Preprocess(transforms.ToTensor(), (0.0,) * 3, (1.0,) * 3, "as is")  # no fixed size
    for batch_size, message in ((4, "different sizes after preprocessing"), (1, "at one size")):
        with pytest.raises(VizError, match=message) as error:
            scan(model, [images], ["2"], batch_size=batch_size, workers=2, preprocess=as_is, progress=False)
        assert "\n" not in str(error.value)


def test_resume_refuses_another_scan(images, tmp_path):
    out = tmp_path / "out"
    model = tiny_model()
    paths = collect_scan_images([images])
    scan(model, paths, ["2"], batch_size=8, preprocess=PREPROCESS, checkpoint_dir=out, progress=False)
    assert saved_pieces(out) == [(0, len(paths))] and not load_scan(out).complete  # the API leaves its state
    other_model = tiny_model()
    with torch.no_grad():
        other_model[2].weight[0, 0, 0, 0] += 1
    refusals = [
        (model, paths, ["1"], "differs in layers"),
        (other_model, paths, ["2"], "differs in model"),
        (model, ImageList(paths[:-1]), ["2"], "differs in images"),
    ]
    for which, listed, layers, message in refusals:
        with pytest.raises(VizError, match=message) as error:
            scan(which, listed, layers, preprocess=PREPROCESS, checkpoint_dir=out, resume=True, progress=False)
        assert "\n" not in str(error.value)
    # The same scan resumed from its end: nothing left to do, the same result.
    again = scan(model, paths, ["2"], preprocess=PREPROCESS, checkpoint_dir=out, resume=True, progress=False)
    fresh = scan(model, paths, ["2"], preprocess=PREPROCESS, progress=False)
    assert_same_scan(again.layers["2"], fresh.layers["2"])


def saved_pieces(out: Path) -> list[tuple[int, int]]:
    """The (start, stop) image ranges of the resumable state's piece files in ``out``, sorted."""
    names = (path.name for path in (out / scanning.STATE_DIR).glob(scanning.PIECE_PREFIX + "*.npz"))
    return sorted(tuple(int(n) for n in name.removeprefix(scanning.PIECE_PREFIX).removesuffix(".npz").split("-")) for name in names)


def run_cli(*argv) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = scanning.main([str(a) for a in argv])
        except SystemExit as stop:  # argparse's own exit
            code = stop.code
    return code, out.getvalue(), err.getvalue()


def test_cli_errors_are_one_line_exit_2(images, tmp_path):
    out = tmp_path / "out"
    for argv, message in [
        ([tmp_path / "missing", "--out", out], "no such file or folder"),
        ([images, "--out", out, "--resume"], "holds no interrupted scan"),
        ([images, "--out", out, "--top", "0"], "--top"),
        *([([images, "--out", out, "--device", "cuda"], "--device cuda: CUDA is not available here")]
          if not torch.cuda.is_available() else []),
        ([images, "--out", out, "--scheduler", "local:zero"], "local:N needs a worker count"),
        ([images, "--out", out, "--layer", "layer9"], "unknown layer"),
    ]:
        code, stdout, stderr = run_cli(*CLI_JOB, *argv)
        assert (code, stdout) == (2, ""), stderr
        assert stderr.count("\n") == 1 and message in stderr and stderr.startswith("fastinterp-viz scan: error: ")
    # A ViT at another input size, its default layer asked for (a forward pass): one line, not torch's assertion.
    code, stdout, stderr = run_cli(images, "--out", out, "--model", "vit_b_16", "--weights", "none", "--input-size", "64")
    assert (code, stdout, stderr.count("\n")) == (2, "", 1) and "VisionTransformer takes only 224x224 inputs" in stderr, stderr
    assert not out.exists()  # no bad run created anything
    code, _, stderr = run_cli(images, "--top", "many")
    assert code == 2 and stderr.count("\n") == 1 and "--top: invalid int value" in stderr


def test_cli_refuses_to_replace_without_asking(images, tmp_path):
    out = tmp_path / "out"
    (out / "layer2").mkdir(parents=True)
    (out / "layer2" / "mine.txt").write_text("the user's")
    code, _, stderr = run_cli(images, "--out", out, "--workers", "0", *CLI_JOB)
    assert code == 2 and "layer2 already exists" in stderr and (out / "layer2" / "mine.txt").read_text() == "the user's"
    code, _, stderr = run_cli(images, "--out", out, "--workers", "0", "--overwrite", *CLI_JOB)
    assert code == 0, stderr
    assert load_scan(out).complete and not (out / "layer2" / "mine.txt").exists() and not (out / scanning.STATE_DIR).exists()
    code, _, stderr = run_cli(images, "--out", out, *CLI_JOB)
    assert code == 2 and "already holds a scan; pass --resume" in stderr
    code, _, stderr = run_cli(images, "--out", out, "--resume", *CLI_JOB)
    assert code == 2 and "complete, nothing to resume" in stderr


def test_resume_after_a_real_kill_equals_an_uninterrupted_run(tmp_path):
    images = make_images(tmp_path / "images", 40, seed=2)
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    code, _, stderr = run_cli(images, *CLI_JOB, "--out", whole, "--batch-size", "5", "--workers", "0")
    assert code == 0, stderr

    # The killed run is a real process, SIGKILLed as soon as it has saved a state.
    process = subprocess.Popen([sys.executable, "-m", "viz", "scan", str(images), *CLI_JOB, "--out", str(killed),
                                "--batch-size", "2", "--workers", "2", "--checkpoint-every", "1"],
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        while not saved_pieces(killed) and process.poll() is None:
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL  # it was killed mid-scan, not finished
    pieces = saved_pieces(killed)  # one growing piece (and its previous file, if killed between the two)
    next_index = max(stop for _, stop in pieces)
    assert {first for first, _ in pieces} == {0} and 0 < next_index < 41
    assert not (killed / "scan.json").exists() or not load_scan(killed).complete  # the partial view, if written yet

    code, _, stderr = run_cli(images, *CLI_JOB, "--out", killed, "--resume", "--layer", "layer3")
    assert code == 2 and stderr.count("\n") == 1 and "differs in layers" in stderr
    code, _, stderr = run_cli(images, *CLI_JOB, "--out", killed, "--resume", "--batch-size", "3", "--workers", "0")
    assert code == 0, stderr
    a, b = load_scan(whole), load_scan(killed)
    assert a.complete and b.complete and a.images == b.images and a.skipped == b.skipped
    assert_same_scan(b.layers["layer2"], a.layers["layer2"])
    # no state, no temporaries left: the scan and its explorer page
    assert sorted(p.name for p in killed.iterdir()) == [".explorer", "index.html", "layer2", "scan.json"]
    assert len(list((killed / "layer2" / "strips").iterdir())) == 128


def test_importing_scan_does_not_import_dask():
    code = "import sys, viz.scan; assert not {'dask', 'distributed'} & set(sys.modules), 'dask imported'"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
