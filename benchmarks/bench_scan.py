"""Benchmark of ``viz.scan`` against its two targets (issue 15), on the CPU.

(a) Throughput: ResNet-50 ``layer4`` (random weights) over N generated 224x224 JPEGs, batches of
    B, the images decoded by one DataLoader process: ``scan`` (decode, preprocess, forward to
    layer4, statistics and top-N) against the model's forward passes alone over the same
    batches already decoded in memory, in the same process. Target: scan throughput at least
    0.9x the forward passes'. The strips (``result.save``) are timed apart: they are a fixed
    cost after the scan, not a per-image one.
(b) Scaling: the same scan on a ``distributed.LocalCluster`` of 2 worker processes x 1 thread
    against 1 worker x 1 thread (each cluster started, and warmed by a small scan, before the
    clock starts; shipping the model to the workers is timed). Target: at least 1.7x.

``--checkpoint`` runs both scans as the command line does, resumable: the state and the partial
statistics saved in a scratch folder (in-process every 8 batches, on Dask every partition).

``python -m benchmarks.bench_scan [--images N] [--batch-size B] [--checkpoint] [--json PATH]`` from the
repository root prints the timings, the ratios, whether each target is met, and the load
average before and after (the machine is shared: the load says how far to trust a ratio).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

THROUGHPUT_TARGET = 0.9
SCALING_TARGET = 1.7
SIDE = 224
LAYER = "layer4"


def make_images(folder: Path, count: int) -> list[str]:
    """``count`` random 224x224 JPEGs (noise compresses badly: decoding is not made cheap)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for n in range(count):
        path = folder / f"{n:05d}.jpg"
        Image.fromarray(rng.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return paths


def resnet50() -> Any:
    import torch
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.resnet50().eval()


def bench_throughput(paths: list[str], batch_size: int, scratch: Path, checkpoint: bool) -> dict[str, Any]:
    """(a): forward passes alone, then the scan, over the same batches."""
    import torch

    from viz.inputs import load_image, original_preprocess
    from viz.scan import ImageList, scan

    model, preprocess = resnet50(), original_preprocess(SIDE)
    batches = [torch.stack([preprocess.transform(load_image(Path(p))) for p in paths[i : i + batch_size]])
               for i in range(0, len(paths), batch_size)]
    def forward_passes_s() -> float:
        with torch.inference_mode():
            start = time.perf_counter()
            for batch in batches:
                model(batch)
            return time.perf_counter() - start

    with torch.inference_mode():
        model(batches[0][:2])  # first-call allocations out of the timing
    before = forward_passes_s()
    start = time.perf_counter()
    result = scan(model, ImageList(paths), [LAYER], batch_size=batch_size, workers=1, preprocess=preprocess, progress=False,
                  checkpoint_dir=scratch / "state-throughput" if checkpoint else None)
    scan_s = time.perf_counter() - start
    after = forward_passes_s()
    forward_s = (before + after) / 2  # the scan is bracketed: a load that drifts evenly cancels out
    start = time.perf_counter()
    result.save(scratch / "scan-out", progress=False)
    strips_s = time.perf_counter() - start
    return {"images": len(paths), "batch_size": batch_size, "torch_threads": torch.get_num_threads(),
            "forward_before_s": before, "forward_after_s": after, "forward_s": forward_s, "scan_s": scan_s, "ratio": forward_s / scan_s, "target": THROUGHPUT_TARGET,
            "strips_s": strips_s, "strips": result.layers[LAYER].channels}


def _process_cpu_s() -> float:
    """CPU seconds (user + system) this process has used: run in each worker by ``client.run``."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _cluster_scan_s(workers: int, paths: list[str], batch_size: int, checkpoint_dir: Path | None) -> tuple[float, float]:
    """Wall seconds of the scan on a fresh cluster, and the CPU seconds its workers used meanwhile."""
    import logging

    from distributed import Client, LocalCluster

    from viz.inputs import original_preprocess
    from viz.scan import ImageList, scan

    model, preprocess = resnet50(), original_preprocess(SIDE)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        # Warm-up: imports and first-call costs in every worker, out of the timing.
        scan(model, ImageList(paths[: 2 * workers]), [LAYER], batch_size=1, client=client, partition_size=1,
             preprocess=preprocess, progress=False)
        cpu_before = sum(client.run(_process_cpu_s).values())
        start = time.perf_counter()
        scan(model, ImageList(paths), [LAYER], batch_size=batch_size, client=client, preprocess=preprocess, progress=False,
             checkpoint_dir=checkpoint_dir)
        wall = time.perf_counter() - start
        return wall, sum(client.run(_process_cpu_s).values()) - cpu_before


def bench_scaling(paths: list[str], batch_size: int, scratch: Path, checkpoint: bool) -> dict[str, Any]:
    """(b): 1 worker x 1 thread, then 2 workers x 1 thread, on the same scan. The workers' CPU
    seconds say whether the work itself grew with the workers (it should not) and how many
    cores the shared machine actually gave them (CPU seconds / wall seconds)."""
    one, one_cpu = _cluster_scan_s(1, paths, batch_size, scratch / "state-one" if checkpoint else None)
    two, two_cpu = _cluster_scan_s(2, paths, batch_size, scratch / "state-two" if checkpoint else None)
    return {"one_worker_s": one, "two_workers_s": two, "ratio": one / two, "target": SCALING_TARGET,
            "one_worker_cpu_s": one_cpu, "two_workers_cpu_s": two_cpu}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256, help="generated images (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="(default: %(default)s)")
    parser.add_argument("--skip-dask", action="store_true", help="only (a)")
    parser.add_argument("--skip-throughput", action="store_true", help="only (b)")
    parser.add_argument("--checkpoint", action="store_true", help="resumable scans, as the command line runs them")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    results: dict[str, Any] = {"cpus": len(os.sched_getaffinity(0)), "load_before": os.getloadavg(), "checkpoint": args.checkpoint}
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as scratch_dir:
        scratch = Path(scratch_dir)
        (scratch / "images").mkdir()
        paths = make_images(scratch / "images", args.images)
        if not args.skip_throughput:
            results["throughput"] = bench_throughput(paths, args.batch_size, scratch, args.checkpoint)
        if not args.skip_dask:
            results["scaling"] = bench_scaling(paths, args.batch_size, scratch, args.checkpoint)
    results["load_after"] = os.getloadavg()
    print(f"cpus {results['cpus']}; {'resumable scans; ' if args.checkpoint else ''}load average (1 min) before {results['load_before'][0]:.2f}, after {results['load_after'][0]:.2f}")
    a = results.get("throughput")
    if a:
        print(f"(a) {a['images']} images, batch {a['batch_size']}, {a['torch_threads']} torch threads: forward alone "
              f"{a['forward_s']:.2f} s (mean of {a['forward_before_s']:.2f} before and {a['forward_after_s']:.2f} after "
              f"the scan; {a['images'] / a['forward_s']:.2f} img/s), scan {a['scan_s']:.2f} s "
              f"({a['images'] / a['scan_s']:.2f} img/s): {a['ratio']:.3f}x, target >= {THROUGHPUT_TARGET}x: "
              f"{'met' if a['ratio'] >= THROUGHPUT_TARGET else 'MISSED'}; strips of {a['strips']} channels {a['strips_s']:.2f} s")
    if "scaling" in results:
        b = results["scaling"]
        print(f"(b) Dask 1 worker x 1 thread {b['one_worker_s']:.2f} s, 2 workers x 1 thread {b['two_workers_s']:.2f} s: "
              f"{b['ratio']:.2f}x, target >= {SCALING_TARGET}x: {'met' if b['ratio'] >= SCALING_TARGET else 'MISSED'}; "
              f"workers' CPU {b['one_worker_cpu_s']:.1f} s vs {b['two_workers_cpu_s']:.1f} s, cores granted "
              f"{b['one_worker_cpu_s'] / b['one_worker_s']:.2f} vs {b['two_workers_cpu_s'] / b['two_workers_s']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
