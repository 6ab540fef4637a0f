"""Benchmark of the ``viz`` feature-map visualiser against its two targets (2 CPU cores).

(a) ResNet-50 ``layer4`` of a 384x384 image (2048 channels of 12x12, upsampled 8x): from the
    feature maps in memory to every channel PNG, the sum/mean/max maps, the contact sheet, the
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

``python -m benchmarks.bench_viz [--rounds N] [--scratch DIR] [--json PATH]`` from the repository
root prints the numbers (wall and CPU seconds, machine load) and whether each target is met.
Everything is written under ``--scratch`` (default ``viz-out/``, where the CLI writes too): the
file system matters, as (a) creates 2054 files.
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
        assert len(manifest["files"]) == 2048 + 6  # + sum, mean, max, sheet, overlay, manifest
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
        assert len(list((out / "grace_hopper" / "layer4" / "channels").iterdir())) == FULL_CHANNELS
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds of (a) and (b) (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--skip-original", action="store_true", help="do not run the original script")
    parser.add_argument("--scratch", type=Path, default=REPOSITORY / "viz-out", help="where to write (default: %(default)s)")
    args = parser.parse_args()
    args.scratch.mkdir(parents=True, exist_ok=True)
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
    for key, title in (("layer4_render", "(a) layer4 maps -> 2048 PNGs + sum/mean/max + sheet + overlay + manifest"),
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


if __name__ == "__main__":
    raise SystemExit(main())
