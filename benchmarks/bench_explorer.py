"""Benchmark of the explorer page (``viz.explorer``) against its two targets.

(a) Time to interactive of the page of a 2,048-channel layer (a conv of 2048 channels at 7 x 7,
    upsampled 8x, as ResNet-50's ``layer4`` at 224 px), opened from disk (``file://``) in
    headless Chromium, a fresh browser context each load: from the start of the navigation to
    the page's ``explorer-ready`` mark (layer data loaded, grid drawn, keys and clicks handled),
    read from the page's own performance timeline. Also: the same page until every drawn
    thumbnail is decoded, and the time of a key press that opens a channel (from the press to
    the channel's image loaded, or its tile drawn), both as seen from Playwright. The baseline, in the same run
    and browser: a static HTML file of the same byte size as index.html, navigation start to
    its load event. Target: interactive within 1 s (median of the loads).
(b) The page's own files (HTML template, CSS, JavaScript, in ``viz/explorer_static/``) and the
    generated index.html without its inlined job index. Target: under 100 kB.

``python -m benchmarks.bench_explorer [--loads N] [--json PATH]`` from the repository root.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any

INTERACTIVE_TARGET_MS = 1000.0
SIZE_TARGET_BYTES = 100_000
CHANNELS = 2048
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def write_job(out: Path, channel_files: bool = False) -> Path:
    """A one-image job with a 2,048-channel layer of 7 x 7 maps (channel images 56 x 56), and its index.html:
    the channels as tiles of one page (the default), or one file each with ``channel_files``."""
    import torch

    import viz
    from viz import explorer
    from viz.inputs import default_image, original_preprocess

    torch.manual_seed(0)
    model = torch.nn.Sequential(OrderedDict(conv=torch.nn.Conv2d(3, CHANNELS, 3, stride=32, padding=1))).eval()
    viz.visualize(model, [default_image()], ["conv"], out, options=viz.RenderOptions(scale=8, channel_files=channel_files),
                  preprocess=original_preprocess(224), progress=False)
    return explorer.write_index(out)


# Every thumbnail shown: an image of its own decoded, or for tiles (CSS sprites of one page) the
# page, which a fresh image of the same URL finds decoded once the browser has it.
THUMBNAILS_DECODED = """() => {
  const cells = [...document.querySelectorAll('.cell img, .cell .tile')];
  if (!cells.length) return false;
  return cells.every(c => {
    if (c.tagName === 'IMG') return c.complete && c.naturalWidth > 0;
    const page = new Image();
    page.src = getComputedStyle(c).backgroundImage.slice(5, -2);
    return page.complete && page.naturalWidth > 0;
  });
}"""
# The one-channel view shown: its image loaded, or its tile drawn on the canvas.
CHANNEL_DRAWN = """() => {
  const i = document.getElementById('channel-image');
  return !!i && (i.dataset.drawn === '1' || (i.complete && i.naturalWidth > 0));
}"""


def page_bytes(index_html: Path) -> dict[str, int]:
    from viz.explorer import STATIC_DIR

    static = {path.name: path.stat().st_size for path in sorted(STATIC_DIR.iterdir()) if path.is_file()}
    html = index_html.read_text(encoding="utf-8")
    start = html.index('type="application/json">') + len('type="application/json">')
    inlined_index = html.index("</script>", start) - start
    return {**static, "static total": sum(static.values()), "index.html": len(html.encode()),
            "index.html without its job index": len(html.encode()) - len(html[start : start + inlined_index].encode())}


def measure(index_html: Path, loads: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    baseline_html = index_html.with_name("baseline.html")
    baseline_html.write_text("<!DOCTYPE html><title>baseline</title><p>" + "x" * index_html.stat().st_size)
    url = index_html.as_uri() + "#layer=conv"
    result: dict[str, list[float]] = {"baseline load event ms": [], "interactive ms": [], "thumbnails decoded ms": [],
                                      "key to channel image ms": [], "channel images requested": []}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(loads + 1):  # the first load warms the browser's process and disk caches; not counted
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            requested: list[str] = []
            page.on("request", lambda request: requested.append(request.url) if "/channels" in request.url else None)
            page.goto(baseline_html.as_uri())
            baseline = page.evaluate("performance.getEntriesByType('navigation')[0].loadEventStart")
            start = time.perf_counter()
            page.goto(url)
            page.wait_for_function("performance.getEntriesByName('explorer-ready').length > 0")
            ready = page.evaluate("performance.getEntriesByName('explorer-ready')[0].startTime")
            page.wait_for_function(THUMBNAILS_DECODED)
            decoded = (time.perf_counter() - start) * 1000
            pressed = time.perf_counter()
            page.keyboard.press("j")
            page.wait_for_function(CHANNEL_DRAWN)
            key = (time.perf_counter() - pressed) * 1000
            if _:
                for name, value in zip(result, (baseline, ready, decoded, key, len(set(requested)))):
                    result[name].append(value)
            context.close()
        browser.close()
    baseline_html.unlink()
    return {name: {"median": statistics.median(values), "all": [round(v, 1) for v in values]} for name, values in result.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", type=int, default=5, help="timed page loads (default: %(default)s)")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument("--channel-files", action="store_true", help="the channels as one file each, not tiles of one page")
    args = parser.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-explorer-") as scratch:
        index_html = write_job(Path(scratch) / "out", args.channel_files)
        sizes = page_bytes(index_html)
        times = measure(index_html, args.loads)
    report = {"times": times, "bytes": sizes, "load average before, after": [load_before, os.getloadavg()],
              "cpus": os.cpu_count()}
    for name, value in times.items():
        print(f"{name:>28}: median {value['median']:.1f}  (all: {value['all']})")
    for name, value in sizes.items():
        print(f"{name:>34}: {value:,} bytes")
    print(f"load average (1, 5, 15 min) before: {load_before}, after: {os.getloadavg()}")
    interactive, own = times["interactive ms"]["median"], sizes["index.html without its job index"]
    print(f"target (a) interactive < {INTERACTIVE_TARGET_MS:.0f} ms: {interactive:.0f} ms, "
          f"{interactive / times['baseline load event ms']['median']:.1f}x the baseline file's load: "
          f"{'met' if interactive < INTERACTIVE_TARGET_MS else 'NOT met'}")
    print(f"target (b) page's own files < {SIZE_TARGET_BYTES:,} bytes: {own:,} (static files {sizes['static total']:,}): "
          f"{'met' if own < SIZE_TARGET_BYTES and sizes['static total'] < SIZE_TARGET_BYTES else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
