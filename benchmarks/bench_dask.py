"""Benchmark of ``fastinterp.dask.resize`` on an image 4x larger than the memory it is allowed.

The input is a uint8 RGB image (a whole-slide image, a satellite strip), 8190 pixels wide
and tall enough to hold at least 4x the worker's ``memory_limit`` bytes, generated block by
block from a seed (each block from ``numpy.random.default_rng((seed, row block, column
block))``), so it never exists whole. A
``distributed.LocalCluster`` of one worker process with one thread and that memory limit
resizes it by 0.8 and ``da.store`` writes the result into a ``numpy.memmap`` file under
``--scratch``, block by block: the result never sits in memory either.

Checks and numbers:

* bit-identical: three regions of the written output (the top-left corner, one across input
  block boundaries, the bottom-right corner) equal ``fastinterp.resize`` in memory of the
  matching input crop. Height and width are multiples of 5 and each crop starts and ends on
  multiples of 5, so with the rate 0.8 both have exactly 1.25 input pixels per output pixel:
  the crop's source coordinates are the whole image's minus the crop's offset, exactly in
  float64, and
  no tap is clamped, so the crop's resize must equal that region of the whole resize;
* time, against the in-memory resize of the same bytes per chunk: the client process
  (one numba thread, like the worker) generates every input chunk in turn, resizes it with
  ``fastinterp.resize``, in memory, and writes the result into a ``numpy.memmap`` file through
  the same :class:`MemmapTarget` (the same store: the Dask run must write its output somewhere
  too, since it does not fit in memory either). Target: the Dask run takes at most 1.5x that.
  The table also gives the ratio against the baseline without its store and against the
  resize alone;
* CPU seconds of both sides (user + system; for Dask every process of the cluster: this one,
  which runs the client and the scheduler, the nanny and the worker): on a shared machine
  under load the wall times carry the other users' work, the CPU seconds do not;
* the number of tasks (each costs the scheduler and the worker some bookkeeping);
* the worker's peak resident memory (its own ``ru_maxrss``), beside its limit, its user and
  system seconds and minor page faults during the run, and how much it spilled to
  ``--scratch``: an input block stays in memory until every output block that reads it is
  done, so the order dask runs the blocks in decides how many are held at once.

``python -m benchmarks.bench_dask [--memory-limit 512MiB] [--chunk 2048] [--width 8190]
[--scratch DIR]`` from the repository root prints a table (with the machine load). Numba runs one thread per process
(``NUMBA_NUM_THREADS=1``, set before numba loads), so both sides use one core.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

RATE = 0.8
TARGET_RATIO = 1.5
#: How many times the allowed memory the input holds.
OVERSUBSCRIPTION = 4
CHANNELS = 3


def generated_block(seed: int, shape: tuple[int, ...], block_id: tuple[int, ...]) -> np.ndarray:
    """One uint8 block of the input, the same wherever and whenever it is made."""
    return np.random.default_rng((seed, *block_id)).integers(0, 256, size=shape, dtype=np.uint8)


def generated_image(height: int, width: int, chunk: int, seed: int) -> Any:
    """A ``height`` x ``width`` x 3 uint8 dask array in ``chunk`` x ``chunk`` blocks, made block by block."""
    import dask.array as da

    def block(block_info: dict) -> np.ndarray:
        info = block_info[None]
        return generated_block(seed, info["chunk-shape"], info["chunk-location"])

    chunks = da.core.normalize_chunks((chunk, chunk, CHANNELS), (height, width, CHANNELS))
    return da.map_blocks(block, chunks=chunks, dtype=np.uint8, meta=np.empty((0, 0, 0), np.uint8))


class MemmapTarget:
    """A ``da.store`` target that writes each block into a ``numpy.memmap`` file, opened per block:
    it pickles as a path (a memmap would pickle as a copy) and keeps no pages mapped."""

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.shape, self.dtype, self.ndim = str(path), shape, np.dtype(dtype), len(shape)

    def __setitem__(self, index: Any, value: np.ndarray) -> None:
        target = np.memmap(self.path, self.dtype, "r+", shape=self.shape)
        target[index] = value
        del target  # unmapped; the kernel writes the pages back


def cpu_seconds(processes: list[Any]) -> float:
    """User + system CPU seconds of these ``psutil.Process`` objects so far."""
    return sum(sum(process.cpu_times()[:2]) for process in processes)


def peak_rss_bytes() -> int:
    """Peak resident memory of the calling process (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def process_usage() -> tuple[float, float, int]:
    """(user s, system s, minor page faults) of the calling process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime, usage.ru_minflt


def spilled(dask_worker: Any) -> tuple[int, int]:
    """(times, bytes) the worker wrote data to its spill directory so far."""
    metrics = getattr(dask_worker.data, "cumulative_metrics", {})
    return int(metrics.get(("disk-write", "count"), 0)), int(metrics.get(("disk-write", "bytes"), 0))


def height_for(limit: int, width: int) -> int:
    """The smallest height, a multiple of 5, whose RGB image of ``width`` holds at least 4x ``limit`` bytes."""
    height = 5
    while height * width * CHANNELS < OVERSUBSCRIPTION * limit:
        height += 5
    return height


def in_memory_baseline(height: int, width: int, chunk: int, seed: int, output_path: Path) -> tuple[float, float, float, float]:
    """(generation s, resize s, store s, CPU s) of every input chunk made, resized in memory and
    written into a ``numpy.memmap`` file at ``output_path`` through :class:`MemmapTarget`, as
    ``da.store`` writes the Dask run's blocks, one after another."""
    import fastinterp

    tops, lefts = range(0, height, chunk), range(0, width, chunk)
    out_rows = [round(min(chunk, height - top) * RATE) for top in tops]
    out_columns = [round(min(chunk, width - left) * RATE) for left in lefts]
    shape = (sum(out_rows), sum(out_columns), CHANNELS)
    np.memmap(output_path, np.uint8, "w+", shape=shape).flush()
    target = MemmapTarget(output_path, shape, np.uint8)
    row_starts, column_starts = np.cumsum((0, *out_rows)), np.cumsum((0, *out_columns))
    generate = resize = store = 0.0
    cpu_began = time.process_time()
    for row, top in enumerate(tops):
        for column, left in enumerate(lefts):
            shape = (min(chunk, height - top), min(chunk, width - left), CHANNELS)
            began = time.perf_counter()
            block = generated_block(seed, shape, (row, column, 0))
            made = time.perf_counter()
            resized = fastinterp.resize(block, RATE)
            done = time.perf_counter()
            target[row_starts[row] : row_starts[row + 1], column_starts[column] : column_starts[column + 1]] = resized
            generate, resize, store = generate + made - began, resize + done - made, store + time.perf_counter() - done
    return generate, resize, store, time.process_time() - cpu_began


def check_regions(source: Any, written: np.ndarray, chunk: int) -> list[tuple[str, bool]]:
    """Regions of the written output against ``fastinterp.resize`` of their input crops in memory."""
    import fastinterp

    height, width = source.shape[:2]
    across = (chunk // 5) * 5 - 100  # 300 input rows and columns over a block corner
    crops = {"top-left corner": (0, 0), "across block boundaries": (across, across),
             "bottom-right corner": (height - 300, width - 300)}  # fmt: skip
    results = []
    for name, (top, left) in crops.items():
        expected = fastinterp.resize(source[top : top + 300, left : left + 300].compute(), RATE)
        got = written[top * 4 // 5 : (top + 300) * 4 // 5, left * 4 // 5 : (left + 300) * 4 // 5]
        results.append((name, bool(np.array_equal(got, expected))))
    return results


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_dask", description=__doc__.split("\n\n")[0])
    parser.add_argument("--memory-limit", default="512MiB", help="the worker's memory limit (default 512MiB)")
    parser.add_argument("--chunk", type=int, default=2048, help="input chunk side in pixels (default 2048)")
    parser.add_argument("--width", type=int, default=8190, help="image width, a multiple of 5 (default 8190)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scratch", type=Path, help="where the output file goes (default: a new temporary folder)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if "numba" in sys.modules:
        raise SystemExit("bench_dask: numba was imported before NUMBA_NUM_THREADS could be set")
    os.environ["NUMBA_NUM_THREADS"] = "1"  # for this process and the worker it spawns
    import dask
    import dask.array as da
    import distributed
    import psutil
    from dask.utils import format_bytes, parse_bytes

    import fastinterp
    import fastinterp.dask

    limit = parse_bytes(args.memory_limit)
    if args.width % 5:
        raise SystemExit("bench_dask: --width must be a multiple of 5 (see the bit-identity check)")
    height = height_for(limit, args.width)
    scratch = Path(tempfile.mkdtemp(prefix="bench-dask-")) if args.scratch is None else args.scratch.resolve()
    scratch.mkdir(parents=True, exist_ok=True)
    output_path = scratch / "resized.uint8"
    load_before = os.getloadavg()
    try:
        with distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, memory_limit=limit,
            scheduler_kwargs={"dashboard": False}, local_directory=str(scratch), silence_logs=40,
        ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
            source = generated_image(height, args.width, args.chunk, args.seed)
            lazy = fastinterp.dask.resize(source, RATE)
            # Warm both processes: numba loads its cached kernels on the first call.
            fastinterp.dask.resize(source[:64, :64], RATE).compute()
            fastinterp.resize(generated_block(args.seed, (64, 64, CHANNELS), (0, 0, 0)), RATE)
            np.memmap(output_path, np.uint8, "w+", shape=lazy.shape).flush()
            cluster_processes = [psutil.Process(), *psutil.Process().children(recursive=True)]
            (usage_before,) = client.run(process_usage).values()
            cpu_began, began = cpu_seconds(cluster_processes), time.perf_counter()
            da.store(lazy, MemmapTarget(output_path, lazy.shape, np.uint8), lock=False)
            dask_s, dask_cpu_s = time.perf_counter() - began, cpu_seconds(cluster_processes) - cpu_began
            (usage_after,) = client.run(process_usage).values()
            worker_user, worker_system, worker_faults = (b - a for a, b in zip(usage_before, usage_after))
            (spills,) = client.run(spilled).values()
            (worker_peak,) = client.run(peak_rss_bytes).values()
            written = np.memmap(output_path, np.uint8, "r", shape=lazy.shape)
            regions = check_regions(source, written, args.chunk)
            del written
        output_path.unlink()
        baseline_usage = process_usage()
        generate_s, resize_s, store_s, baseline_cpu_s = in_memory_baseline(
            height, args.width, args.chunk, args.seed, output_path
        )
        baseline_user, baseline_system, baseline_faults = (b - a for a, b in zip(baseline_usage, process_usage()))
    finally:
        output_path.unlink(missing_ok=True)
        if args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)
    baseline_s = generate_s + resize_s + store_s
    ratio = dask_s / baseline_s
    rows = [
        ("input", f"{height}x{args.width}x{CHANNELS} uint8, {format_bytes(source.nbytes)}, chunks {args.chunk}x{args.chunk}"
                  f"x{CHANNELS} ({source.npartitions} blocks)"),
        ("allowed memory", f"1 worker process, 1 thread, memory_limit {format_bytes(limit)} "
                           f"(input = {source.nbytes / limit:.2f}x)"),
        ("output", f"rate {RATE}: {lazy.shape[0]}x{lazy.shape[1]}x{CHANNELS}, {format_bytes(lazy.nbytes)}, "
                   f"{lazy.npartitions} blocks, da.store into a numpy.memmap file"),
        ("tasks", f"{len(lazy.__dask_graph__()):,} in the resize's graph ({source.npartitions} of them make the input), "
                  f"and one store task per output block"),
        ("dask run", f"{dask_s:.2f} s wall, {dask_cpu_s:.2f} s CPU (all cluster processes)"),
        ("in memory, per chunk", f"{baseline_s:.2f} s wall (generate {generate_s:.2f} s + fastinterp.resize "
                                 f"{resize_s:.2f} s + the same store {store_s:.2f} s), {baseline_cpu_s:.2f} s CPU ({baseline_user:.2f} s user, "
                                 f"{baseline_system:.2f} s system, {baseline_faults:,} minor page faults)"),
        ("ratio, wall", f"{ratio:.2f}x (target <= {TARGET_RATIO}x: {'met' if ratio <= TARGET_RATIO else 'NOT met'}); "
                        f"without the baseline's store {dask_s / (generate_s + resize_s):.2f}x, against the resize alone "
                        f"{dask_s / resize_s:.2f}x"),
        ("ratio, CPU", f"{dask_cpu_s / baseline_cpu_s:.2f}x"),
        ("worker peak RSS", f"{format_bytes(worker_peak)} of {format_bytes(limit)}"),
        ("worker, dask run", f"{worker_user:.2f} s user, {worker_system:.2f} s system, {worker_faults:,} minor page "
                             f"faults; spilled {spills[0]} times, {format_bytes(spills[1])}"),
        *((f"bit-identical: {name}", "yes" if same else "NO") for name, same in regions),
        ("machine", f"{len(os.sched_getaffinity(0))} cpus; load average before {load_before[0]:.2f}, "
                    f"after {os.getloadavg()[0]:.2f}; dask {dask.__version__}, fastinterp {fastinterp.__version__}"),
    ]  # fmt: skip
    width = max(len(name) for name, _ in rows)
    print(f"| {'what':<{width}} | value |\n|{'-' * (width + 2)}|-------|")
    for name, value in rows:
        print(f"| {name:<{width}} | {value} |")
    return 0 if ratio <= TARGET_RATIO and all(same for _, same in regions) else 1


if __name__ == "__main__":
    raise SystemExit(main())
