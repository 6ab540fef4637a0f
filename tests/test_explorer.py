"""The explorer page (viz.explorer) in a real headless Chromium: jobs written by viz.visualize and
viz.compare on a small random conv net, a dataset scan by viz.scan, and a 2,048-channel layer.

Set FASTINTERP_SCREENSHOTS=1 to (re)write the docs' screenshots docs/gallery/explorer-*.png.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import viz
from viz import cli, explorer
from viz.errors import VizError
from viz.inputs import default_image, original_preprocess
from viz.render import load_channel

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
GALLERY = Path(__file__).resolve().parents[1] / "docs" / "gallery"
SCREENSHOTS = os.environ.get("FASTINTERP_SCREENSHOTS") == "1"
INPUT_SIZE = 64
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
HOSTILE = "<img src=x onerror=alert(1)>"
#: How long a wait on the page (a condition) may take before the test fails. Playwright's default,
#: 30 s, is within reach of a cold, loaded 2-core CI machine, where Chromium shares the cores with
#: numba compiling in both pytest workers.
PATIENCE_MS = 180_000

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium (tests/run.sh installs it)")


def conv_net(seed: int, channels: tuple[int, ...] = (16, 32), stride: int = 2) -> torch.nn.Module:
    """Random convs named conv1, relu1, conv2, relu2, ...: a stand-in for a real model's layers."""
    torch.manual_seed(seed)
    layers: OrderedDict[str, torch.nn.Module] = OrderedDict()
    previous = 3
    for number, count in enumerate(channels, 1):
        layers[f"conv{number}"] = torch.nn.Conv2d(previous, count, 3, stride=stride, padding=1)
        layers[f"relu{number}"] = torch.nn.ReLU()
        previous = count
    return torch.nn.Sequential(layers).eval()


def photos(folder: Path) -> list[Path]:
    """Photos shipped with matplotlib (no download), and two crops of the first, as files."""
    samples = default_image().parent
    folder.mkdir(parents=True, exist_ok=True)
    with Image.open(default_image()) as hopper:
        hopper.crop((150, 50, 450, 350)).save(folder / "hopper_face.png")
        hopper.crop((0, 0, 260, 260)).save(folder / "hopper_flag.png")
    return [default_image(), samples / "Minduka_Present_Blue_Pack.png", samples / "logo2.png",
            folder / "hopper_face.png", folder / "hopper_flag.png"]


def scan(images: list[Path], model: torch.nn.Module, preprocess: viz.Preprocess) -> viz.ScanResult:
    """A real dataset scan (viz.scan) of ``images`` on the model's conv2, top 3."""
    return viz.scan(model, images, ["conv2"], top=3, batch_size=2, preprocess=preprocess, progress=False)


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def jobs(tmp_path_factory) -> Path:
    """One output directory with a one-image job (two layers), a compare job and a scan."""
    root = tmp_path_factory.mktemp("explorer")
    images = photos(root / "photos")
    out = root / "out"
    options = viz.RenderOptions(scale=4, threads=2)
    preprocess = original_preprocess(INPUT_SIZE)
    model = conv_net(0)
    viz.visualize(model, images[:1], ["conv1", "conv2"], out, options=options, preprocess=preprocess, progress=False)
    viz.compare(model, conv_net(1), images[:1], ["conv2"], out, labels=("seed 0", "seed 1"), options=options, preprocess=preprocess)
    broken = root / "photos" / "broken.jpg"
    broken.write_bytes(b"not an image")  # skipped and listed by the scan
    scan([*images, broken], model, preprocess).save(out / "dataset")
    explorer.write_index(out)
    return out


@pytest.fixture(scope="module")
def large(tmp_path_factory) -> Path:
    """A 2,048-channel layer on a tiny map (2 x 2, channel images 16 x 16), in both layouts: the
    channels as tiles of one page (``pages/``) and one file per channel (``files/``)."""
    root = tmp_path_factory.mktemp("large")
    model = conv_net(0, channels=(2048,), stride=32)
    for name, channel_files in (("pages", False), ("files", True)):
        viz.visualize(model, [default_image()], ["conv1"], root / name, options=viz.RenderOptions(scale=8, threads=2, channel_files=channel_files),
                      preprocess=original_preprocess(INPUT_SIZE), progress=False)
        explorer.write_index(root / name)
    return root


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=PATIENCE_MS)
        yield chromium
        chromium.close()


class Session:
    """A page with everything it reported: console errors, page errors, dialogs, requests."""

    def __init__(self, browser, viewport: dict[str, int]) -> None:
        self.context = browser.new_context(viewport=viewport)
        self.context.set_default_timeout(PATIENCE_MS)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.dialogs: list[str] = []
        self.page.on("console", lambda message: self.errors.append(message.text) if message.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("request", lambda request: self.requests.append(request.url))
        self.page.on("dialog", lambda dialog: (self.dialogs.append(dialog.message), dialog.dismiss()))

    def open(self, out: Path, hash_: str = "") -> None:
        """Navigate to ``out``'s index.html (the requests are counted from here)."""
        self.requests.clear()
        self.page.goto((out / "index.html").as_uri() + hash_)
        self.page.wait_for_selector("body[data-ready]")

    def images(self, part: str) -> list[str]:
        return [url for url in self.requests if part in url]

    def check_clean(self, out: Path) -> None:
        """No console or page errors, no dialogs, and every request a file inside ``out``."""
        assert self.errors == []
        assert self.dialogs == []
        root = out.resolve().as_uri() + "/"
        assert [url for url in self.requests if not url.startswith(root)] == []

    def screenshot(self, name: str) -> None:
        """The window as it is now, into the docs' gallery (only with FASTINTERP_SCREENSHOTS=1)."""
        if SCREENSHOTS:
            self.page.wait_for_timeout(200)  # images decoded
            self.page.screenshot(path=GALLERY / f"explorer-{name}.png")


@pytest.fixture
def session(browser):
    opened = Session(browser, LAPTOP)
    yield opened
    opened.context.close()


def manifest(out: Path, *parts: str) -> dict:
    return json.loads(out.joinpath(*parts, "manifest.json").read_text())


def shown_channels(page) -> list[int]:
    """The channels of the grid's first rows in reading order (top to bottom, left to right), with
    the grid scrolled to the top of the window (only rows near the window have cells)."""
    page.evaluate("window.scrollTo(0, document.querySelector('.grid').getBoundingClientRect().top + scrollY - 130)")
    drawn(page)
    cells = page.eval_on_selector_all(".cell", "cells => cells.map(c => [c.getBoundingClientRect().top, c.getBoundingClientRect().left, +c.dataset.channel])")
    return [channel for _, _, channel in sorted(cells)]


def drawn(page) -> None:
    """Wait until the grid has drawn what the window shows after the last scroll: the scroll event
    and the redraw it asks for (requestAnimationFrame) both come before the second frame from now."""
    page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")


def requested_channel_files(session: Session) -> set[str]:
    """The channel files requested, once the grid has drawn for the last scroll and every image
    in it has loaded (each was requested before it loaded)."""
    drawn(session.page)
    session.page.wait_for_function("[...document.querySelectorAll('.cell img')].every(i => i.complete)")
    return set(session.images("/channels/"))


def hash_params(page) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(page.evaluate("location.hash").lstrip("#")))


# --- the index -----------------------------------------------------------------------------------


def test_index_lists_every_job_and_refreshing_touches_nothing(jobs):
    html = (jobs / "index.html").read_text()
    index = json.loads(re.search(r'<script id="explorer-index" type="application/json">(.*?)</script>', html).group(1))
    found = {(job["kind"], job["id"]): [layer["id"] for layer in job["layers"]] for job in index["jobs"]}
    assert found == {("image", "grace_hopper"): ["conv1", "conv2"], ("compare", "compare/grace_hopper"): ["conv2"],
                     ("scan", "dataset"): ["conv2"]}
    files = sorted(p for p in jobs.rglob("*") if p.is_file())
    before = {p: p.stat().st_mtime_ns for p in files}
    assert explorer.write_index(jobs) == jobs.resolve() / "index.html"
    assert {p: p.stat().st_mtime_ns for p in sorted(p for p in jobs.rglob("*") if p.is_file())} == before
    assert len(html.encode()) - sum(len(part) for part in re.findall(r'type="application/json">(.*?)</script>', html)) < 100_000


def test_every_file_the_data_names_exists_inside_the_output(jobs):
    from urllib.parse import unquote

    for data_file in (jobs / ".explorer").glob("*.js"):
        data = json.loads(re.fullmatch(r'explorerData\("\w+",(.*)\);\n', data_file.read_text(), re.S).group(1))
        names = [data["dir"] + f for key in ("files", "filesA", "filesB") for f in data.get(key, [])]
        names += [data["dir"] + f for key in ("atlas", "atlasA", "atlasB") for f in data.get(key, {}).get("pages", [])]
        names += [f["src"] for f in data.get("figures", [])] + [f["src"] for g in data.get("groups", []) for f in g["figures"]]
        assert names
        for name in names:
            path = (jobs / unquote(name)).resolve()
            assert path.is_file() and jobs.resolve() in path.parents, name


# --- the page in Chromium ------------------------------------------------------------------------


def test_grid_shows_every_channel_and_sorts(jobs, session):
    page = session.page
    session.open(jobs, "#job=grace_hopper&layer=conv2")
    grid = page.locator(".grid")
    assert grid.get_attribute("data-total") == "32" and grid.get_attribute("data-shown") == "32"
    session.screenshot("layer")
    assert shown_channels(page) == list(range(32))

    maxima = manifest(jobs, "grace_hopper", "conv2")["channels"]["max"]
    page.select_option(".tools select", "max")
    assert shown_channels(page) == sorted(range(32), key=lambda c: (-maxima[c], c))
    session.screenshot("grid")
    assert hash_params(page)["sort"] == "max"
    page.click(".tools button")  # lowest first
    assert shown_channels(page) == sorted(range(32), key=lambda c: (maxima[c], c))
    assert hash_params(page)["order"] == "asc"

    page.fill(".tools input", "3-5, 10")
    assert sorted(shown_channels(page)) == [3, 4, 5, 10]
    assert grid.get_attribute("data-shown") == "4" and page.locator(".count").inner_text() == "4 of 32 channels"
    page.goto((jobs / "index.html").as_uri() + "#job=grace_hopper&layer=conv2&sort=active&filter=3-5%2C10")
    page.wait_for_selector("body[data-ready]")  # activity is a scan's statistic: back to the index order
    assert hash_params(page) == {"job": "grace_hopper", "layer": "conv2", "filter": "3-5,10"}
    assert shown_channels(page) == [3, 4, 5, 10]
    page.fill(".tools input", "3-x")
    assert page.locator(".tools input.bad").count() == 1 and grid.get_attribute("data-shown") == "32"
    session.check_clean(jobs)


def test_channel_from_the_url_a_click_and_the_keyboard(jobs, session):
    page = session.page
    channels = manifest(jobs, "grace_hopper", "conv2")["channels"]
    by_energy = sorted(range(32), key=lambda c: (-channels["energy"][c], c))
    session.open(jobs, f"#job=grace_hopper&layer=conv2&channel={by_energy[3]}&sort=energy")
    dialog = page.locator("#view")
    assert dialog.is_visible()
    assert f"#{by_energy[3]}" in page.inner_text("#view-title")
    assert "rank 4 of 32 by energy" in dialog.inner_text()
    image = page.locator("#channel-image")  # a canvas with the channel's tile of the page
    atlas = manifest(jobs, "grace_hopper", "conv2")["channels"]["atlas"]
    assert image.get_attribute("data-src") == "grace_hopper/conv2/channels.png"
    row, column = divmod(by_energy[3], atlas["columns"])
    assert image.get_attribute("data-box") == f"{column * 64},{row * 64},64,64"
    page.wait_for_selector("#channel-image[data-drawn]")
    assert str(round(channels["mean"][by_energy[3]], 3))[:5] in dialog.inner_text()  # its real statistics
    session.screenshot("channel")

    for key, expected in (("j", 4), ("ArrowRight", 5), ("k", 4), ("ArrowLeft", 3)):
        page.keyboard.press(key)
        assert hash_params(page)["channel"] == str(by_energy[expected])
        assert f"#{by_energy[expected]}" in page.inner_text("#view-title")
    page.keyboard.press("Escape")
    assert dialog.is_hidden() and "channel" not in hash_params(page)

    page.click('.cell[data-channel="17"]')
    assert dialog.is_visible() and "#17" in page.inner_text("#view-title")
    page.reload()  # the URL names the view
    page.wait_for_selector("body[data-ready]")
    assert page.locator("#view").is_visible() and "#17" in page.inner_text("#view-title")
    assert page.locator(".tools select").input_value() == "energy"
    session.check_clean(jobs)


def test_layer_summaries_and_navigation(jobs, session):
    page = session.page
    session.open(jobs)
    assert page.locator("h1").inner_text() == f"Jobs in {jobs.name}"
    page.click('#side a[data-layer="conv1"]')
    page.wait_for_selector('.grid[data-total="16"]')
    layer = manifest(jobs, "grace_hopper", "conv1")
    captions = page.locator("figure figcaption").all_inner_texts()
    assert [c.split(" ")[0] for c in captions] == [*layer["summaries"], "overlay", "sheet:"]
    page.wait_for_function("[...document.querySelectorAll('figure img')].every(i => i.complete && i.naturalWidth > 0)")
    assert f"{layer['summaries']['sum']['max']:.4g}"[:5] in page.locator("figure").first.inner_text()
    page.go_back()
    assert page.locator("h1").inner_text() == f"Jobs in {jobs.name}"
    session.check_clean(jobs)


def test_every_summary_the_manifest_lists_is_shown(jobs, tmp_path, session):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(jobs / "grace_hopper", out / "grace_hopper")
    job = out / "grace_hopper" / "conv2"
    shutil.copy(job / "max.png", job / "gradcam.png")
    shutil.copy(job / "overlay.png", job / "gradcam_overlay.png")
    edited = json.loads((job / "manifest.json").read_text())
    edited["gradcam"] = {"file": "gradcam.png", "class": 281, "class_name": "tabby", "score": 12.5, "range": [0.0, 3.25],
                         "map_shape": [16, 16], "overlay": "gradcam_overlay.png"}
    edited["summaries"]["energy"] = {"file": "sum.png", "min": -1.0, "max": 1.0}
    (job / "manifest.json").write_text(json.dumps(edited))
    explorer.write_index(out)
    session.open(out, "#layer=conv2")
    captions = session.page.locator("figcaption").all_inner_texts()
    assert captions[3] == "energy"
    assert captions[4:6] == ["gradcam (class 281, class_name tabby, score 12.5)", "gradcam overlay"]
    assert session.page.locator("figure").nth(4).locator(".ends").inner_text().split() == ["0", "3.25"]
    session.check_clean(out)


def test_compare_page_shows_a_beside_b_on_one_scale_and_the_difference(jobs, session):
    page = session.page
    session.open(jobs, "#job=compare/grace_hopper&layer=conv2")
    compared = manifest(jobs, "compare", "grace_hopper", "conv2")
    page.wait_for_function("[...document.querySelectorAll('figure img')].every(i => i.complete && i.naturalWidth > 0)")
    sources = [src.rsplit("/", 1)[1] for src in page.eval_on_selector_all("figure img", "imgs => imgs.map(i => i.getAttribute('src'))")]
    assert sources == ["sum_a.png", "sum_b.png", "difference.png", "sheet_a.png", "sheet_b.png", "panel_sum.png", "panel_sheet.png"]
    ends = page.eval_on_selector_all("figure .ends", "bars => bars.map(b => b.innerText)")
    low, high = (f"{v:.4g}" for v in compared["sum_range"])
    assert ends[0] == ends[1] and low[:5] in ends[0] and high[:5] in ends[0]  # one scale for A and B
    limit = f"{compared['difference']['max_abs']:.4g}"[:5]
    assert f"-{limit}" in ends[2] and limit in ends[2]
    assert "seed 0" in page.inner_text(".meta") and "seed 1" in page.inner_text(".meta")
    session.screenshot("compare")
    session.check_clean(jobs)


def numbers(text: str) -> list[float]:
    """The numbers in a text the page wrote (its fmt: 4 significant digits, − as a minus)."""
    return [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", text.replace("−", "-"))]


def test_compare_channel_view_shows_a_beside_b_on_one_scale_and_the_difference(jobs, session):
    page = session.page
    compared = manifest(jobs, "compare", "grace_hopper", "conv2")
    channels, width = compared["channels"], compared["image_size"][1]
    session.open(jobs, "#job=compare/grace_hopper&layer=conv2&sort=diff")
    assert page.locator(".grid").get_attribute("data-total") == "32"
    by_difference = sorted(range(32), key=lambda c: (-channels["max_abs_diff"][c], c))
    assert shown_channels(page) == by_difference  # the grid sorts by the difference's max
    channel = by_difference[0]
    page.click(f'.cell[data-channel="{channel}"]')
    assert f"#{channel}" in page.inner_text("#view-title") and "rank 1 of 32 by max |A − B|" in page.inner_text("#view")
    for image, file in (("#channel-a", "channels_a.png"), ("#channel-b", "channels_b.png"), ("#channel-image", "channels_diff.png")):
        assert page.locator(image).get_attribute("data-src") == f"compare/grace_hopper/conv2/{file}"
        assert page.locator(image).get_attribute("width") == str(width)
        page.wait_for_selector(f"{image}[data-drawn]")
    ab_bars, diff_bars = page.locator("#channel-ab .vbar"), page.locator("#channel-diff .vbar")
    assert ab_bars.count() == 1 and diff_bars.count() == 1  # A and B share ONE colour bar
    lo, hi, limit = channels["scale_lo"][channel], channels["scale_hi"][channel], channels["diff_limit"][channel]
    assert numbers(ab_bars.get_attribute("title")) == pytest.approx([lo, hi], rel=1e-3)
    assert numbers(diff_bars.get_attribute("title")) == pytest.approx([-limit, limit], rel=1e-3)
    for bar, (low, high) in ((ab_bars, (lo, hi)), (diff_bars, (-limit, limit))):
        ticks = numbers(" ".join(bar.locator("span").all_inner_texts()))
        assert len(ticks) >= 2 and all(low - 1e-6 <= t <= high + 1e-6 for t in ticks)  # real values of the scale
    assert page.locator("#channel-ab .pane").first.inner_text() == "A: seed 0"
    rows = dict(page.eval_on_selector_all("#view tbody tr", "rows => rows.map(r => [r.cells[0].innerText, r.cells[1].innerText])"))
    for label, key in (("max |A − B|", "max_abs_diff"), ("mean of A", "mean_a"), ("max of A", "max_a"), ("mean of B", "mean_b"), ("max of B", "max_b")):
        assert float(rows[label]) == pytest.approx(channels[key][channel], rel=1e-3, abs=1e-6)
    assert load_channel(jobs / "compare" / "grace_hopper" / "conv2", channels, channel, "a").size == (width, compared["image_size"][0])
    session.screenshot("compare-channel")
    page.keyboard.press("j")
    assert hash_params(page)["channel"] == str(by_difference[1]) and f"#{by_difference[1]}" in page.inner_text("#view-title")
    session.check_clean(jobs)


def test_a_compare_with_channel_files_shows_a_b_and_the_difference_from_them(tmp_path, session):
    """The one-file-per-channel compare layout (--channel-files, and every compare written before
    pages): the channel view's three panes are those files, loaded."""
    out = tmp_path / "out"
    viz.compare(conv_net(0), conv_net(1), [default_image()], ["conv2"], out, labels=("seed 0", "seed 1"),
                options=viz.RenderOptions(scale=4, threads=2, channel_files=True), preprocess=original_preprocess(INPUT_SIZE))
    explorer.write_index(out)
    session.open(out, "#job=compare/grace_hopper&layer=conv2&channel=5")
    page = session.page
    for image, folder in (("#channel-a", "channels_a"), ("#channel-b", "channels_b"), ("#channel-image", "channels_diff")):
        assert page.locator(image).get_attribute("src") == f"compare/grace_hopper/conv2/{folder}/0005.png"
        page.wait_for_function(f"document.querySelector('{image}').naturalWidth > 0")
    assert page.locator(".cell img[src$='channels_diff/0005.png']").count() == 1  # the grid shows A - B
    session.check_clean(out)


def test_a_compare_without_per_channel_files_still_shows_its_maps(jobs, tmp_path, session):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(jobs / "compare", out / "compare")
    job = out / "compare" / "grace_hopper" / "conv2"
    older = json.loads((job / "manifest.json").read_text())
    del older["channels"]  # as compares wrote before they had per-channel images
    (job / "manifest.json").write_text(json.dumps(older))
    explorer.write_index(out)
    session.open(out, "#layer=conv2&channel=3")
    assert session.page.locator(".grid").count() == 0 and session.page.locator("#view").is_hidden()
    assert "without per-channel images" in session.page.inner_text("main")
    assert session.page.locator("figure img").count() == 7
    session.check_clean(out)


def test_scan_page_shows_each_channels_top_images(jobs, session):
    page = session.page
    stats = dict(np.load(jobs / "dataset" / "conv2" / "stats.npz"))
    images = json.loads((jobs / "dataset" / "scan.json").read_text())["images"]
    session.open(jobs, "#job=dataset&layer=conv2&sort=active")
    assert page.locator(".grid").get_attribute("data-total") == "32"
    assert shown_channels(page) == sorted(range(32), key=lambda c: (-stats["active"][c], c))
    assert "1 skipped" in page.inner_text(".meta")
    session.screenshot("scan-grid")
    channel = int(np.argmax(stats["max"]))
    page.click(f'.cell[data-channel="{channel}"]')
    rows = page.eval_on_selector_all(".tops tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText))")
    assert [row[1] for row in rows] == [Path(images[i]).name for i in stats["top_images"][channel]]
    assert [float(row[2]) for row in rows] == pytest.approx(stats["top_scores"][channel].tolist(), rel=1e-3)
    assert [row[3] for row in rows] == [f"({y}, {x})" for y, x in stats["top_where"][channel]]
    assert page.locator("#channel-image").get_attribute("src").endswith(f"strips/{channel:04d}.png")
    session.screenshot("scan-channel")
    session.check_clean(jobs)


def test_a_partial_scan_without_strips_and_an_empty_folder(jobs, tmp_path, session):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(jobs / "dataset", out / "dataset")
    shutil.rmtree(out / "dataset" / "conv2" / "strips")  # a resumable scan's partial save has none yet
    header = json.loads((out / "dataset" / "scan.json").read_text())
    (out / "dataset" / "scan.json").write_text(json.dumps({**header, "complete": False}))
    explorer.write_index(out)
    session.open(out, "#layer=conv2&channel=4")
    assert "partial: the scan has not finished" in session.page.inner_text(".meta")
    assert "No strip file for this channel" in session.page.inner_text("#view")
    assert session.page.locator(".tops tbody tr").count() == 3
    session.check_clean(out)

    empty = tmp_path / "empty"
    empty.mkdir()
    explorer.write_index(empty)
    session.open(empty)
    assert "No jobs found in this folder" in session.page.inner_text("main")
    session.check_clean(empty)


def test_a_missing_data_file_says_what_to_do(jobs, tmp_path, session):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(jobs / "grace_hopper", out / "grace_hopper")
    explorer.write_index(out)
    for data_file in (out / ".explorer").glob("*.js"):
        data_file.unlink()
    session.open(out, "#layer=conv2")
    assert "run fastinterp-viz open on this folder again" in session.page.inner_text("main")
    assert len(session.errors) == 1 and "ERR_FILE_NOT_FOUND" in session.errors[0]  # the browser's own report
    explorer.write_index(out)  # and that repairs it
    session.errors.clear()
    session.open(out, "#layer=conv2")
    assert session.page.locator(".grid").get_attribute("data-total") == "32"
    session.check_clean(out)


def test_phone_viewport_has_no_sideways_scroll(jobs, browser):
    phone = Session(browser, PHONE)
    try:
        phone.open(jobs, "#job=grace_hopper&layer=conv2")
        page = phone.page
        assert page.locator("#picker").is_visible() and page.locator("#side").is_hidden()
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        page.evaluate("window.scrollTo(0, document.querySelector('.grid').offsetTop - 100)")
        phone.screenshot("phone-grid")
        page.click('.cell[data-channel="5"]')
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        assert page.locator("#channel-image").bounding_box()["width"] <= PHONE["width"]
        phone.screenshot("phone-channel")
        page.keyboard.press("Escape")
        page.select_option("#picker", label="conv1 (16)")  # the phone's menu of jobs and layers
        page.wait_for_selector('.grid[data-total="16"]')
        phone.check_clean(jobs)
    finally:
        phone.context.close()


def test_2048_channel_files_scroll_without_loading_every_image(large, session):
    """The layout of one file per channel (--channel-files, and every output before pages)."""
    large = large / "files"
    page = session.page
    session.open(large, "#layer=conv1")
    grid = page.locator(".grid")
    assert grid.get_attribute("data-total") == "2048" and grid.get_attribute("data-shown") == "2048"
    first = len(requested_channel_files(session))
    assert 0 < first < 2048 / 8
    page.evaluate("window.scrollTo(0, document.body.scrollHeight / 2)")
    drawn(page)
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_selector('.cell[data-channel="2047"]')
    loaded = requested_channel_files(session)
    assert first < len(loaded) < 2048 / 4
    assert page.locator(".cell").count() < 2048 / 8  # cells that scrolled away are gone
    session.screenshot("large")
    page.keyboard.press("k")  # from no channel: the last one
    assert hash_params(page)["channel"] == "2047"
    session.check_clean(large)


def test_2048_channel_tiles_come_from_one_page(large, session):
    """The default layout: every thumbnail is a tile of channels.png, the page read once."""
    out = large / "pages"
    atlas = manifest(out, "grace_hopper", "conv1")["channels"]["atlas"]
    assert atlas["pages"] == ["channels.png"] and atlas["tile"] == [16, 16]
    page = session.page
    session.open(out, "#layer=conv1")
    assert page.locator(".grid").get_attribute("data-total") == "2048"
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_selector('.cell[data-channel="2047"] .tile')
    row, column = divmod(2047, atlas["columns"])
    style = page.eval_on_selector('.cell[data-channel="2047"] .tile', "t => [t.style.backgroundPosition, t.style.width, t.style.height]")
    assert style == [f"{-16 * column}px {-16 * row}px", "16px", "16px"]
    page.click('.cell[data-channel="2047"]')
    page.wait_for_selector("#channel-image[data-drawn]")
    assert page.locator(".cell").count() < 2048 / 8  # still only the rows near the window
    assert {url.rsplit("/", 1)[1] for url in session.images("/conv1/channels")} == {"channels.png"}
    assert not session.images("/channels/")
    session.check_clean(out)


def test_the_channel_view_shows_its_tile_pixel_for_pixel(jobs, session):
    """A screenshot of the one-channel view: the channel's tile of the page, each pixel a square of
    zoom x zoom screen pixels, colours exact (the pixels of the channel's own file)."""
    page = session.page
    job = jobs / "grace_hopper" / "conv2"
    channels = manifest(jobs, "grace_hopper", "conv2")["channels"]
    session.open(jobs, "#job=grace_hopper&layer=conv2&channel=29")
    page.wait_for_selector("#channel-image[data-drawn]")
    canvas = page.locator("#channel-image")
    zoom = round(canvas.bounding_box()["width"] / 64)
    assert zoom >= 2 and f"64 × 64 px, shown {zoom}×" in page.inner_text("#view")
    box = canvas.bounding_box()  # the layout may put it at a fractional y; its pixels are drawn snapped to the screen's
    clip = {"x": round(box["x"]), "y": round(box["y"]), "width": 64 * zoom, "height": 64 * zoom}
    with Image.open(io.BytesIO(page.screenshot(clip=clip))) as shot:
        shown = np.asarray(shot.convert("RGB"))
    expected = np.asarray(load_channel(job, channels, 29).convert("RGB")).repeat(zoom, 0).repeat(zoom, 1)
    np.testing.assert_array_equal(shown, expected)
    session.check_clean(jobs)


def test_a_page_that_is_a_symlink_is_not_shown(jobs, tmp_path, session):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(jobs / "grace_hopper", out / "grace_hopper")
    secret = tmp_path / "secret.png"
    shutil.copy(out / "grace_hopper" / "conv2" / "channels.png", secret)
    (out / "grace_hopper" / "conv2" / "channels.png").unlink()
    (out / "grace_hopper" / "conv2" / "channels.png").symlink_to(secret)
    explorer.write_index(out)
    session.open(out, "#job=grace_hopper&layer=conv2&channel=4")
    cells = session.page.locator(".cell")
    assert cells.count() > 8 and session.page.locator(".cell img[alt=missing]").count() == cells.count()
    assert session.page.locator("#channel-image").get_attribute("src") is None
    assert not [url for url in session.requests if "secret" in url or url.endswith("channels.png")]
    session.check_clean(out)


def test_a_page_replaced_by_a_symlink_after_the_index_was_written_is_dropped_on_refresh(jobs, tmp_path):
    """A refresh rebuilds a layer whose pages changed, not only one whose manifest did: a page
    swapped for a symlink to a file outside OUT was still named in the layer's data file."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(jobs / "grace_hopper", out / "grace_hopper")
    explorer.write_index(out)
    page = out / "grace_hopper" / "conv2" / "channels.png"
    secret = tmp_path / "secret.png"
    shutil.copy(page, secret)
    with Image.open(secret) as image:
        image.crop((0, 0, 8, 8)).save(secret)  # another picture, as an outside file would be
    page.unlink()
    page.symlink_to(secret)
    explorer.write_index(out)
    data = "".join(path.read_text() for path in (out / explorer.DATA_DIR).glob("*.js"))
    assert data.count("channels.png") == 1  # conv1's page only


#: Refreshes argv[1]'s index in a child that SIGKILLs itself as it renames argv[2] into place.
KILLED_AT_A_RENAME = """
import os, signal, sys
from viz import explorer

out, target, rename = sys.argv[1], sys.argv[2], os.replace

def killed_at_the_rename(source, destination):
    if os.path.basename(destination) == target:
        os.kill(os.getpid(), signal.SIGKILL)
    return rename(source, destination)

os.replace = killed_at_the_rename
explorer.write_index(out)
"""


@pytest.mark.parametrize("target", [explorer.INDEX_NAME, explorer.STAMPS_NAME])
def test_a_temporary_file_of_a_killed_refresh_is_removed_by_the_next(tmp_path, target):
    """A refresh killed between writing a file and renaming it into place (a scan SIGKILLed as it
    saves its partial view) left its temporary file in OUT or .explorer for good."""
    import subprocess
    import sys

    out = tmp_path / "out"
    out.mkdir()
    killed = subprocess.run([sys.executable, "-c", KILLED_AT_A_RENAME, str(out), target], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}, timeout=600)
    assert killed.returncode == -9, killed.stderr
    folder = out if target == explorer.INDEX_NAME else out / explorer.DATA_DIR
    ours = {explorer.DATA_DIR, explorer.INDEX_NAME, explorer.LOCK_NAME, explorer.MARKER_NAME, explorer.STAMPS_NAME}
    assert len(set(os.listdir(folder)) - ours) == 1  # the killed write's temporary file
    (out / f"{explorer.TEMP_PREFIX}folder").mkdir()  # a folder or a link of that name is not a temporary file
    (out / f"{explorer.TEMP_PREFIX}link").symlink_to(tmp_path)
    explorer.write_index(out)
    assert sorted(os.listdir(out)) == sorted(
        [f"{explorer.TEMP_PREFIX}folder", f"{explorer.TEMP_PREFIX}link", explorer.DATA_DIR, explorer.INDEX_NAME])
    assert sorted(os.listdir(out / explorer.DATA_DIR)) == sorted([explorer.LOCK_NAME, explorer.MARKER_NAME, explorer.STAMPS_NAME])


# --- untrusted names and files -------------------------------------------------------------------


def test_names_that_are_not_utf8_are_shown_and_their_images_load(tmp_path, browser):
    """A photo and a job folder whose names are bytes that are not UTF-8 (possible on Linux)."""
    folder = os.fsencode(tmp_path)
    image = Path(os.fsdecode(folder + b"/bad\xff.png"))
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    (result,) = viz.visualize(conv_net(0, (8,)), [image], ["conv1"], out, options=viz.RenderOptions(scale=2, threads=1),
                              preprocess=original_preprocess(32), progress=False)
    assert (out / "index.html").is_file()  # the run's own refresh of the page did not fail
    os.rename(result.directory.parent, os.fsdecode(os.fsencode(out) + b"/job\xfe\xff"))
    explorer.write_index(out)

    visitor = Session(browser, LAPTOP)
    try:
        visitor.open(out)  # the only layer, opened
        page = visitor.page
        assert "bad\\xff.png" in page.inner_text(".meta")  # the image's name, its odd byte shown escaped
        assert page.inner_text("#where") == "Images · job\\xfe\\xff · conv1"
        page.wait_for_function("[...document.querySelectorAll('figure img')].every(i => i.complete && i.naturalWidth > 0)")
        assert page.locator(".cell .tile").count() == 8
        page.click('.cell[data-channel="3"]')
        page.wait_for_selector("#channel-image[data-drawn]")
        assert visitor.images("/job%FE%FF/conv1/channels.png")  # the real bytes, percent-encoded
        params = hash_params(page)
        page.reload()  # the escaped job name names the view
        page.wait_for_selector("body[data-ready]")
        assert hash_params(page) == params and "#3" in page.inner_text("#view-title")
        visitor.check_clean(out)
    finally:
        visitor.context.close()



def test_names_from_files_are_text_and_paths_stay_inside(tmp_path, browser):
    image = tmp_path / f"{HOSTILE}.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    (results,) = viz.visualize(conv_net(0, (8,)), [image], ["conv1"], out, options=viz.RenderOptions(scale=2, threads=1, channel_files=True),
                               preprocess=original_preprocess(32), progress=False, context={"model": "</script><script>alert(2)</script>"})
    secret = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(secret)
    job = results.directory
    edited = json.loads((job / "manifest.json").read_text())
    edited["layer"] = "<script>alert(3)</script>"
    edited["summaries"]["sum"]["file"] = "../../../secret.png"
    edited["summaries"]["mean"]["file"] = "javascript:alert(4)"
    edited["channels"]["files"][1] = "/etc/passwd"
    (job / "manifest.json").write_text(json.dumps(edited))
    (job / "channels" / "0002.png").unlink()
    (job / "channels" / "0002.png").symlink_to(secret)
    (out / "linked").mkdir()
    (out / "linked" / "manifest.json").symlink_to(job / "manifest.json")
    (out / "broken").mkdir()
    (out / "broken" / "manifest.json").write_text("{not json")
    explorer.write_index(out)

    visitor = Session(browser, LAPTOP)
    try:
        visitor.open(out)  # the only layer, opened
        page = visitor.page
        assert page.inner_text("h1") == "<script>alert(3)</script>"
        page.click("#home")
        overview = page.inner_text("main")
        assert "</script><script>alert(2)</script>" in overview
        assert "broken/manifest.json: cannot read it" in overview and "linked" not in overview
        page.click("#side a")
        page.wait_for_selector(".grid")
        assert HOSTILE in page.inner_text(".meta")
        assert [c.split(" ")[0] for c in page.locator("figcaption").all_inner_texts()] == ["max", "overlay", "sheet:"]
        page.keyboard.press("j")
        page.keyboard.press("j")
        page.keyboard.press("j")  # channel 2: its file is a symlink, not shown
        assert page.locator("#channel-image").get_attribute("src") is None
        visitor.check_clean(out)
        assert not [url for url in visitor.requests if "secret" in url or "passwd" in url]
    finally:
        visitor.context.close()


@pytest.mark.parametrize("part, field, junk", [
    ("image", ("sheet", "channels"), 5),
    ("image", ("channels", "mean"), [1, 2]),
    ("image", ("channels", "atlas"), "channels"),
    ("image", ("channels", "atlas", "pages"), ["../../../x.png"]),
    ("image", ("channels", "atlas", "pages"), ["\ud800.png"]),  # a lone surrogate: no file name can be made of it
    ("image", ("channels", "atlas", "columns"), -1),
    ("compare", ("channels", "atlas_b", "count"), 31),
    ("image", ("summaries",), [{"file": "sum.png"}]),
    ("image", ("feature_shape",), "32x16x16"),
    ("compare", ("difference",), "difference.png"),
    ("compare", ("sum_range",), {"min": "low"}),
    ("scan", ("layers",), {"conv2": {"dir": "../.."}}),
    ("scan", ("images",), 7),
    ("stats", ("top_where",), np.zeros((32, 3))),
    ("stats", ("top_scores",), np.zeros(3)),
    ("stats", ("top_images",), np.full((32, 3), np.nan)),
])
def test_a_job_file_with_wrong_types_is_listed_not_fatal(jobs, tmp_path, part, field, junk):
    out = tmp_path / "out"
    import shutil

    shutil.copytree(jobs, out, symlinks=True, ignore=shutil.ignore_patterns(".explorer", "index.html"))
    where = {"image": out / "grace_hopper" / "conv2" / "manifest.json", "compare": out / "compare" / "grace_hopper" / "conv2" / "manifest.json",
             "scan": out / "dataset" / "scan.json", "stats": out / "dataset" / "conv2" / "stats.npz"}[part]
    if part == "stats":
        arrays = dict(np.load(where))
        arrays[field[0]] = junk
        np.savez(where, **arrays)
    else:
        document = json.loads(where.read_text())
        inner = document
        for key in field[:-1]:
            inner = inner[key]
        inner[field[-1]] = junk
        where.write_text(json.dumps(document))
    explorer.write_index(out)
    html = (out / "index.html").read_text()
    index = json.loads(re.search(r'type="application/json">(.*?)</script>', html).group(1))
    shown = {job["id"] for job in index["jobs"]}
    broken = {"image": "grace_hopper", "compare": "compare/grace_hopper", "scan": "dataset", "stats": "dataset"}[part]
    assert {"grace_hopper", "compare/grace_hopper", "dataset"} - {broken} <= shown  # the other jobs are all there
    assert broken in shown or any(entry["path"].startswith(broken) for entry in index["skipped"])  # shown, or listed with why


@pytest.mark.parametrize("change, page", [
    ({"tile": "x1000"}, "kept"),  # tiles far larger than the page: a 10^5 px canvas, CSS boxes
    ({"count": 2**40, "per_page": 2**40, "columns": 2**20}, "kept"),  # 2^40 tiles on the 1 small page
    ({"count": 2**40, "per_page": 2**40, "columns": 2**20}, "removed"),  # a grid of 2^40 channels, no page to check
])
def test_an_atlas_that_its_pages_cannot_hold_is_not_shown(jobs, tmp_path, change, page):
    """A layout consistent in itself (Atlas.from_entry takes it) that the page file on disk (or the
    explorer's channel limit) contradicts: the layer is listed as skipped with why, not shown."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(jobs / "grace_hopper", out / "grace_hopper")
    where = out / "grace_hopper" / "conv2" / "manifest.json"
    document = json.loads(where.read_text())
    atlas = document["channels"]["atlas"]
    atlas.update(change)
    if atlas["tile"] == "x1000":
        atlas["tile"] = [side * 1000 for side in document["image_size"]]
    for key in explorer.SORT_KEYS + ("scale_lo", "scale_hi"):  # their lengths would give the count away
        document["channels"].pop(key, None)
    where.write_text(json.dumps(document))
    if page == "removed":
        (where.parent / "channels.png").unlink()
    explorer.write_index(out)
    index = json.loads(re.search(r'type="application/json">(.*?)</script>', (out / "index.html").read_text()).group(1))
    assert [layer["id"] for job in index["jobs"] for layer in job["layers"]] == ["conv1"]
    (skipped,) = index["skipped"]
    assert skipped["path"] == "grace_hopper/conv2" and "channels.atlas" in skipped["reason"]


def test_write_index_never_replaces_what_it_did_not_write(tmp_path):
    (tmp_path / "index.html").write_text("<p>my own page</p>")
    with pytest.raises(VizError, match="not written by the explorer"):
        explorer.write_index(tmp_path)
    assert (tmp_path / "index.html").read_text() == "<p>my own page</p>"
    (tmp_path / "index.html").unlink()
    (tmp_path / ".explorer").mkdir()
    (tmp_path / ".explorer" / "notes.js").write_text("mine")
    with pytest.raises(VizError, match="not written by the explorer"):
        explorer.write_index(tmp_path)
    assert (tmp_path / ".explorer" / "notes.js").read_text() == "mine" and not (tmp_path / "index.html").exists()
    with pytest.raises(VizError, match="is not a directory"):
        explorer.write_index(tmp_path / "missing")


def test_a_removed_job_leaves_the_index(tmp_path):
    out = tmp_path / "out"
    for name in ("first", "second"):
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / f"{name}.png")
    viz.visualize(conv_net(0, (4,)), [tmp_path / "first.png", tmp_path / "second.png"], ["conv1"], out,
                  options=viz.RenderOptions(scale=1, threads=1), preprocess=original_preprocess(16), progress=False)
    explorer.write_index(out)
    assert len(list((out / ".explorer").glob("*.js"))) == 2
    import shutil

    shutil.rmtree(out / "second")
    explorer.write_index(out)
    assert len(list((out / ".explorer").glob("*.js"))) == 1
    assert '"id":"second"' not in (out / "index.html").read_text()


def test_open_prints_the_file_url(jobs, monkeypatch):
    monkeypatch.setenv("CI", "1")  # never start a browser from the tests
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert cli.main(["open", str(jobs)]) == 0
        assert cli.main(["open", str(jobs / "nowhere")]) == 2
    assert out.getvalue() == (jobs.resolve() / "index.html").as_uri() + "\n"
    assert err.getvalue().count("\n") == 1 and "is not a directory" in err.getvalue()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as stopped:
        cli.main(["open"])
    assert stopped.value.code == 2 and err.getvalue().count("\n") == 1 and "DIR" in err.getvalue()


def test_a_page_swapped_for_a_fifo_is_not_waited_on(tmp_path):
    """A channel page replaced by a named pipe after the checks: reading its PNG header must not
    block until some writer opens the pipe (the index would hang)."""
    import threading

    fifo = tmp_path / "channels.png"
    os.mkfifo(fifo)
    sizes: list = []
    reader = threading.Thread(target=lambda: sizes.append(explorer._png_size(fifo)), daemon=True)
    reader.start()
    reader.join(timeout=30)  # a hang guard, not a timing: the read returns at once or never
    try:
        assert not reader.is_alive() and sizes == [None]
    finally:
        if reader.is_alive():  # release the blocked reader
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))


def test_channel_files_and_figures_swapped_for_symlinks_after_the_index_are_dropped_on_refresh(tmp_path):
    """Loose channel files (``channel_files=True``) and the summary figures: a refresh notices a
    file replaced by a symlink to a file outside OUT, as it does for pages."""
    image = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "out"
    (result,) = viz.visualize(conv_net(0, (8,)), [image], ["conv1"], out, options=viz.RenderOptions(scale=2, threads=1, channel_files=True),
                              preprocess=original_preprocess(32), progress=False)
    data = lambda: "".join(path.read_text() for path in (out / explorer.DATA_DIR).glob("*.js"))  # noqa: E731
    assert "0002.png" in data() and "sum.png" in data()
    secret = tmp_path / "secret.png"
    Image.new("RGB", (4, 4)).save(secret)
    for swapped in (result.directory / "channels" / "0002.png", result.directory / "sum.png"):
        swapped.unlink()
        swapped.symlink_to(secret)
    explorer.write_index(out)
    assert "0002.png" not in data() and "sum.png" not in data()


def test_a_job_file_is_read_up_to_its_limit_and_refused_above_it(tmp_path):
    limit = 1 << 20
    path = tmp_path / "manifest.json"
    body = limit - len(b'{"a": ""}')
    path.write_bytes(b'{"a": "' + b"x" * body + b'"}')  # exactly the limit
    assert explorer._read_json(path, limit)["a"] == "x" * body
    path.write_bytes(b'{"a": "' + b"x" * (body + 1) + b'"}')  # one byte more
    with pytest.raises(explorer.BadJobFile, match="larger than 1 MB"):
        explorer._read_json(path, limit)
