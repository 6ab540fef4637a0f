"""Benchmark of the ``viz`` feature-map visualiser against its two targets (2 CPU cores).

(a) ResNet-50 ``layer4`` of a 384x384 image (2048 channels of 12x12, upsampled 8x): from the
    feature maps in memory to every channel image (the tiles of ``channels.png``), the sum/mean/max maps, the contact sheet, the
    overlay and ``manifest.json`` on disk. Target: at most 2 s. Timed in a warm process
    (numba compiled, matplotlib imported), each round into a fresh directory. Outputs are
    deleted only after all rounds: deleting thousands of files right before a timed round makes
    the file system charge that round for the deletion.
(b) The whole CLI run, process start to exit: ``python -m viz --weights none`` (random-init
    ResNet-50, the default job: grace_hopper.jpg, layer4, 8x). Target: at most 15 s, and at
    least 30x faster than the original script doing the same job. The original
    (``benchmarks/original_script.py``, a faithful copy kept for timing) is run as a process
    that visualises 16 and then 32 channels; the per-channel cost is the difference / 16,
    and the job is extrapolated to 2048 channels:
    ``process time - both visualisations + fixed part + 2048 x per channel``. The extrapolation
    is linear and so favours the original (its pyplot images pile up in one figure, so each
    later ``savefig`` is slower).

(c) ``--families``: each of resnet50, vgg16, mobilenet_v3_small, convnext_tiny, efficientnet_b0,
    vit_b_16 and swin_t with default options and random weights (``python -m viz --model NAME
    --weights none``) exits 0 with every channel image, the summaries, Grad-CAM and the manifest.
(d) ``--folder``: a folder of ``--images`` (32) images, ResNet-50 ``layer4``, CPU, as processes:
    the CLI with ``--batch-size 8`` and with ``--batch-size 1`` (one image at a time, the
    baseline to beat), against a process that only imports torch/torchvision/viz, builds the
    model and runs the same forward passes in batches of 8 (same images, same preprocessing).
    Target: CLI total <= 1.3x that floor. Each process's CPU seconds are printed too: on a
    shared machine they say more than wall times about the work added to the forward passes.

(e) ``--stages``: the CPU milliseconds of each stage of one warm ``render_layer`` of (a) (upsampling,
    quantising into the page's tiles, encoding the page, the sum/mean/max maps, the sheet, the
    overlay, the manifest's numbers), each run alone, and of the whole call with its writer threads: where
    the rendering beside the forward passes of (d) goes.

``python -m benchmarks.bench_viz [--rounds N] [--scratch DIR] [--json PATH] [--families] [--folder
[--images N]] [--stages]`` from the repository root prints the numbers (wall and CPU seconds, machine
load) and whether each target is met; with ``--families``, ``--folder`` or ``--stages`` only those parts run.
Everything is written under ``--scratch`` (default ``viz-out/``, where the CLI writes too): the
file system matters (creating a file costs 0.04-1.3 ms of system CPU on the machine of the
measurements), which is why channels are tiles of one page, not 2048 files.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPOSITORY = Path(__file__).resolve().parent.parent
LAYER4_TARGET_S = 2.0
CLI_TARGET_S = 15.0
SPEEDUP_TARGET = 30.0
ORIGINAL_SUBSETS = (16, 32)
FULL_CHANNELS = 2048
FAMILIES = ("resnet50", "vgg16", "mobilenet_v3_small", "convnext_tiny", "efficientnet_b0", "vit_b_16", "swin_t")
FOLDER_TARGET = 1.3
FOLDER_BATCH = 8
#: The floor of (d): imports, model build, preprocessing and forward passes, nothing else.
FORWARD_ONLY = """
import sys, time
import torch, torchvision, viz
from viz.inputs import collect_images, load_image, original_preprocess
torch.manual_seed(0)
model = torchvision.models.resnet50().eval()
preprocess = original_preprocess()
paths = collect_images([sys.argv[1]])
with torch.inference_mode():
    for first in range(0, len(paths), int(sys.argv[2])):
        model(torch.cat([preprocess(load_image(p)) for p in paths[first:first + int(sys.argv[2])]]))
"""


def _environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPOSITORY), os.environ.get("PYTHONPATH")])),
            "MPLBACKEND": "Agg"}


def layer4_features() -> tuple[Any, Any]:
    """Real layer4 maps (random-init ResNet-50, seed 0) of the default image, and the input as seen."""
    import torch
    import torchvision

    from viz.inputs import default_image, load_image, original_preprocess
    from viz.layers import capture_features

    torch.manual_seed(0)
    model = torchvision.models.resnet50().eval()
    preprocess = original_preprocess()
    batch = preprocess(load_image(default_image()))
    features = capture_features(model, batch, ["layer4"])["layer4"][0].numpy()
    return features, preprocess.display_image(batch)


def bench_layer4(rounds: int, scratch: Path) -> dict[str, Any]:
    """(a): render_layer of (2048, 12, 12) at 8x, warm process, fresh directory per round."""
    from viz.render import RenderOptions, render_layer

    features, image = layer4_features()
    assert features.shape == (2048, 12, 12), features.shape
    options = RenderOptions()
    context = {"model": "resnet50", "layer": "layer4"}
    warm = scratch / "warm"
    warm.mkdir()
    render_layer(features[:8], warm, options, image=image, context=context)  # compile, import, caches
    walls, users, systems = [], [], []
    for round_index in range(rounds):
        target = scratch / f"layer4-{round_index}"
        target.mkdir()
        wall, before = time.perf_counter(), os.times()
        manifest = render_layer(features, target, options, image=image, context=context)
        after = os.times()
        walls.append(time.perf_counter() - wall)
        users.append(after.user - before.user)
        systems.append(after.system - before.system)
        assert manifest["channels"]["atlas"]["count"] == 2048 and len(manifest["files"]) == 1 + 6  # the page + 6
    return {"wall_s": walls, "user_s": users, "system_s": systems, "median_wall_s": statistics.median(walls),
            "best_wall_s": min(walls), "target_s": LAYER4_TARGET_S}


def bench_cli(rounds: int, scratch: Path) -> dict[str, Any]:
    """(b): ``python -m viz --weights none`` from process start to exit."""
    walls, users, systems = [], [], []
    command = [sys.executable, "-m", "viz", "--weights", "none", "--quiet"]
    for round_index in range(rounds):
        out = scratch / f"cli-{round_index}"
        wall, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([*command, "--out", str(out)], check=True, env=_environment(), cwd=REPOSITORY)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        walls.append(time.perf_counter() - wall)
        users.append(after.ru_utime - before.ru_utime)
        systems.append(after.ru_stime - before.ru_stime)
        assert len(list((out / "resnet50" / "grace_hopper" / "layer4" / "channels").iterdir())) == FULL_CHANNELS
    return {"command": " ".join(command[1:]), "wall_s": walls, "user_s": users, "system_s": systems,
            "median_wall_s": statistics.median(walls), "best_wall_s": min(walls), "target_s": CLI_TARGET_S}


def bench_original(scratch: Path) -> dict[str, Any]:
    """The original script on 16 and 32 channels in one process, extrapolated to 2048."""
    out = scratch / "original"
    out.mkdir()
    wall = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.original_script", f"{out}/", *map(str, ORIGINAL_SUBSETS)],
        check=True, env=_environment(), cwd=REPOSITORY, capture_output=True, text=True,
    )
    process_s = time.perf_counter() - wall
    timings = json.loads(result.stdout.splitlines()[-1])
    small, large = (timings[f"visualize_{n}_s"] for n in ORIGINAL_SUBSETS)
    per_channel = (large - small) / (ORIGINAL_SUBSETS[1] - ORIGINAL_SUBSETS[0])
    fixed_visualize = small - ORIGINAL_SUBSETS[0] * per_channel
    outside_visualize = process_s - small - large
    estimate = outside_visualize + fixed_visualize + FULL_CHANNELS * per_channel
    return {**timings, "process_s": process_s, "per_channel_s": per_channel,
            "estimated_2048_channel_job_s": estimate}


def bench_families(scratch: Path) -> dict[str, Any]:
    """(c): every family with default options, random weights; checks what each job wrote."""
    results = {}
    for name in FAMILIES:
        out = scratch / f"family-{name}"
        command = [sys.executable, "-m", "viz", "--model", name, "--weights", "none", "--quiet", "--out", str(out)]
        wall = time.perf_counter()
        process = subprocess.run(command, env=_environment(), cwd=REPOSITORY, capture_output=True, text=True)
        wall = time.perf_counter() - wall
        problems = [] if process.returncode == 0 else [f"exit {process.returncode}: {process.stderr.strip()[-300:]}"]
        manifests = list(out.glob(f"{name}/grace_hopper/*/manifest.json")) if out.exists() else []
        layer = None
        if not problems and len(manifests) != 1:
            problems.append(f"{len(manifests)} manifests")
        elif not problems:
            manifest = json.loads(manifests[0].read_text())
            layer, job = manifest["layer"], manifests[0].parent
            channels = manifest["channels"]["atlas"]["count"]
            pages = [page for page in manifest["channels"]["atlas"]["pages"] if (job / page).is_file()]
            if channels != manifest["feature_shape"][0] or pages != manifest["channels"]["atlas"]["pages"]:
                problems.append(f"{channels} channel images for {manifest['feature_shape'][0]} channels")
            missing = [f for f in ("sum.png", "mean.png", "max.png", "sheet.png", "overlay.png", "gradcam.png",
                                   "gradcam_overlay.png") if not (job / f).is_file()]
            if missing or "gradcam" not in manifest:
                problems.append(f"missing {missing or 'gradcam entry'}")
        results[name] = {"wall_s": wall, "layer": layer, "ok": not problems, "problems": problems,
                         "warnings": process.stderr.strip().splitlines()}
    return results


def bench_stages(scratch: Path, repeats: int = 5) -> dict[str, float]:
    """(e): CPU seconds of each stage of one warm ``render_layer`` of ResNet-50 layer4 at 8x, each
    stage run alone (best of ``repeats``), and of the whole call (all its threads)."""
    import numpy as np

    from viz import render

    features, image = layer4_features()
    options = render.RenderOptions()
    size = options.output_size(features.shape[1:], image.shape[:2])
    lut = render.colormap_lut(options.cmap)
    budget = render.channels_per_chunk(size, options.chunk_mb)
    atlas = render.Atlas.plan("channels", len(features), size, options.page_pixels, budget)
    step = max(1, budget // atlas.columns) * atlas.columns
    chunks = [(start, min(start + step, len(features))) for start in range(0, len(features), step)]
    buffer = np.empty((step, *size), np.float32)
    pages = np.zeros((-(-len(features) // atlas.columns), size[0], atlas.columns, size[1]), np.uint8)
    max_map = np.full(size, -np.inf, np.float32)
    ranked = render.ChannelStats.of(features).top(options.rank_by, options.top_k)
    sum_map = render.upsample(features.sum(axis=0, dtype=np.float64), size)
    page = pages.reshape(-1, atlas.columns * size[1])
    band_rows = size[0] * max(1, render.BAND_PIXELS // (atlas.columns * size[0] * size[1]))

    def quantize() -> None:
        for start, end in chunks:
            up = render.upsample(features[start:end], size, None, buffer[: end - start])
            lo, hi = np.empty(end - start, np.float32), np.empty(end - start, np.float32)
            render.quantize_planes(up, lo, hi, max_map, own_range=True, out=pages[start // atlas.columns :])

    stages = {
        "upsample": lambda: [render.upsample(features[a:b], size, None, buffer[: b - a]) for a, b in chunks],
        "upsample + quantize": quantize,
        "encode the page": lambda: [render.idat_band(page[max(0, top - 1) : top + band_rows], int(top > 0), zlib_header=top == 0)
                                    for top in range(0, len(page), band_rows)],
        "sum/mean/max": lambda: render._write_summaries(features, max_map, size, scratch, options, lut),
        "sheet": lambda: render._write_sheet(features[ranked], ranked, len(features), size, scratch / "sheet.png", options, {}),
        "overlay": lambda: render.overlay(image, sum_map, lut, options.alpha),
        "manifest numbers": lambda: [render.rounded(features.mean(axis=(1, 2))) for _ in range(6)],
    }
    results = {}
    for name, stage in stages.items():
        stage()
        times = []
        for _ in range(repeats):
            before = time.process_time()  # with fastinterp's worker threads; nothing else runs meanwhile
            stage()
            times.append(time.process_time() - before)
        results[name] = min(times)
    whole = []
    for index in range(repeats + 1):
        target = scratch / f"stages-{index}"
        target.mkdir()
        before = os.times()
        render.render_layer(features, target, options, image=image, context={"model": "resnet50", "layer": "layer4"})
        after = os.times()
        whole.append(after.user - before.user + after.system - before.system)
    results["render_layer (all threads)"] = min(whole[1:])
    return results


def _timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, all threads) of a process."""
    wall, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, env=_environment(), cwd=REPOSITORY, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.perf_counter() - wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def make_folder(folder: Path, count: int) -> None:
    """``count`` different photos: crops of grace_hopper.jpg at shifting offsets."""
    from PIL import Image

    from viz.inputs import default_image

    folder.mkdir()
    with Image.open(default_image()) as photo:
        width, height = photo.size
        for index in range(count):
            left, top = (index * 7) % (width // 4), (index * 5) % (height // 4)
            photo.crop((left, top, left + 3 * width // 4, top + 3 * height // 4)).save(folder / f"photo{index:03d}.png")


def bench_folder(scratch: Path, count: int) -> dict[str, Any]:
    """(d): the CLI on a folder, batched and one at a time, against imports + build + forward passes."""
    folder = scratch / "folder"
    make_folder(folder, count)
    cli = [sys.executable, "-m", "viz", str(folder), "--model", "resnet50", "--weights", "none", "--layer", "layer4", "--quiet"]
    # Not timed: one image first, so numba's cache is filled (a source edited since the last run
    # is compiled again) before the timed runs, and the first of them is not charged for it.
    one_image = scratch / "one-image"
    make_folder(one_image, 1)
    _timed([*cli[:3], str(one_image), *cli[4:], "--out", str(scratch / "folder-warm-up")])
    floor_s, floor_cpu_s = _timed([sys.executable, "-c", FORWARD_ONLY, str(folder), str(FOLDER_BATCH)])
    batched_s, batched_cpu_s = _timed([*cli, "--batch-size", str(FOLDER_BATCH), "--out", str(scratch / "folder-batched")])
    single_s, single_cpu_s = _timed([*cli, "--batch-size", "1", "--out", str(scratch / "folder-single")])
    pages = list((scratch / "folder-batched" / "resnet50").glob("*/layer4/channels*.png"))
    written = len(list((scratch / "folder-batched" / "resnet50").glob("*/layer4/manifest.json")))
    assert written == count, written
    return {"images": count, "forward_floor_s": floor_s, "cli_batched_s": batched_s, "cli_one_at_a_time_s": single_s,
            "ratio_batched": batched_s / floor_s, "ratio_one_at_a_time": single_s / floor_s, "target": FOLDER_TARGET,
            "cpu_s": {"floor": floor_cpu_s, "batched": batched_cpu_s, "one_at_a_time": single_cpu_s},
            "channel_bytes_per_channel": sum(path.stat().st_size for path in pages) / (count * 2048)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of (a) and (b) (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--skip-original", action="store_true", help="do not run the original script")
    parser.add_argument("--scratch", type=Path, default=REPOSITORY / "viz-out", help="where to write (default: %(default)s)")
    parser.add_argument("--families", action="store_true", help="only (c): every model family with default options")
    parser.add_argument("--folder", action="store_true", help="only (d): a folder of --images images, batched vs one at a time")
    parser.add_argument("--images", type=int, default=32, help="images of (d) (default: %(default)s)")
    parser.add_argument("--stages", action="store_true", help="only (e): CPU of each stage of a warm layer4 render")
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
    if args.families or args.folder or args.stages:
        return _parts(args)
    with tempfile.TemporaryDirectory(prefix="bench-viz-", dir=args.scratch) as scratch_dir:
        scratch = Path(scratch_dir)
        results: dict[str, Any] = {"cpus": len(os.sched_getaffinity(0)), "load_before": os.getloadavg()}
        results["layer4_render"] = bench_layer4(args.rounds, scratch)
        results["cli"] = bench_cli(args.rounds, scratch)
        if not args.skip_original:
            results["original"] = bench_original(scratch)
            results["speedup"] = results["original"]["estimated_2048_channel_job_s"] / results["cli"]["median_wall_s"]
        results["load_after"] = os.getloadavg()
    print(f"scratch {args.scratch}; cpus {results['cpus']}; load average before {results['load_before'][0]:.2f}, "
          f"after {results['load_after'][0]:.2f}")
    for key, title in (("layer4_render", "(a) layer4 maps -> 2048 channel tiles + sum/mean/max + sheet + overlay + manifest"),
                       ("cli", f"(b) {results['cli']['command']}")):
        case = results[key]
        met = "met" if case["median_wall_s"] <= case["target_s"] else "MISSED"
        print(f"{title}: median {case['median_wall_s']:.2f} s, best {case['best_wall_s']:.2f} s, target <= {case['target_s']} s: {met}")
        print("    rounds (wall / user / sys s): " + ", ".join(
            f"{w:.2f}/{u:.2f}/{y:.2f}" for w, u, y in zip(case["wall_s"], case["user_s"], case["system_s"])))
    if "original" in results:
        original = results["original"]
        print(f"    original script: {original['per_channel_s'] * 1000:.0f} ms per channel, whole 2048-channel job "
              f"~{original['estimated_2048_channel_job_s']:.0f} s (extrapolated from 16 and 32 channels); "
              f"speedup {results['speedup']:.0f}x, target >= {SPEEDUP_TARGET:.0f}x: "
              f"{'met' if results['speedup'] >= SPEEDUP_TARGET else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


def _parts(args: argparse.Namespace) -> int:
    """(c) and/or (d); exit 1 when a family fails."""
    with tempfile.TemporaryDirectory(prefix="bench-viz-", dir=args.scratch) as scratch_dir:
        scratch = Path(scratch_dir)
        results: dict[str, Any] = {"cpus": len(os.sched_getaffinity(0)), "load_before": os.getloadavg()}
        if args.families:
            results["families"] = bench_families(scratch)
        if args.folder:
            results["folder"] = bench_folder(scratch, args.images)
        if args.stages:
            results["stages"] = bench_stages(scratch)
        results["load_after"] = os.getloadavg()
    print(f"cpus {results['cpus']}; load average before {results['load_before'][0]:.2f}, after {results['load_after'][0]:.2f}")
    failed = False
    for name, family in results.get("families", {}).items():
        failed |= not family["ok"]
        state = "ok" if family["ok"] else "FAILED: " + "; ".join(family["problems"])
        print(f"(c) {name:<20} {family['wall_s']:6.1f} s  default layer {family['layer']}  {state}")
    if "folder" in results:
        folder = results["folder"]
        met = "met" if folder["ratio_batched"] <= folder["target"] else "MISSED"
        print(f"(d) {folder['images']} images, resnet50 layer4: imports + build + forward passes {folder['forward_floor_s']:.1f} s; "
              f"CLI --batch-size {FOLDER_BATCH} {folder['cli_batched_s']:.1f} s ({folder['ratio_batched']:.2f}x), one at a time "
              f"{folder['cli_one_at_a_time_s']:.1f} s ({folder['ratio_one_at_a_time']:.2f}x); target <= {folder['target']}x: {met}")
        cpu = folder["cpu_s"]
        print(f"    CPU seconds (user + system): floor {cpu['floor']:.1f}, CLI --batch-size {FOLDER_BATCH} {cpu['batched']:.1f}, "
              f"one at a time {cpu['one_at_a_time']:.1f}; channel pages {folder['channel_bytes_per_channel'] / 1000:.2f} kB per channel")
    for name, seconds in results.get("stages", {}).items():
        print(f"(e) {name:<28} {seconds * 1000:6.1f} ms of CPU")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
