"""Review of stop 22 (f66bbf8: "every file the viz tools write is opened with O_NOFOLLOW"): files
the tools opened by name through a symlink, so that a symlink in ``--out`` led a write (or a
delete) outside it, and a scan that removed a live run's staging folder. Each test plants the symlink as pre-existing content of the output folder,
or (stats.npz) at a name the writer creates, as the commit's own test does for the other writers."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import threading

import numpy as np
import pytest

from viz import explorer
from viz.errors import VizError

scan_module = importlib.import_module("viz.scan")  # ``viz.scan`` the attribute is the function


def test_a_symlink_at_the_explorers_lock_creates_nothing_outside_out(tmp_path):
    """``.explorer`` of an output folder someone else made (unpacked, shared) holds its marker and
    a symlink ``lock`` pointing outside: refreshing index.html must not create that file."""
    out, outside = tmp_path / "out", tmp_path / "outside"
    (out / explorer.DATA_DIR).mkdir(parents=True)
    outside.mkdir()
    (out / explorer.DATA_DIR / explorer.MARKER_NAME).write_text("planted")
    (out / explorer.DATA_DIR / explorer.LOCK_NAME).symlink_to(outside / "created")
    try:
        explorer.write_index(out)
    except (OSError, VizError):
        pass  # refusing is fine
    assert not (outside / "created").exists()


def test_a_symlink_at_stats_npz_is_not_followed(tmp_path):
    """The scan's stats.npz is written by name (np.savez), not through viz.paths.write_file as
    every other writer since f66bbf8: a symlink planted there is followed."""
    secret = tmp_path / "secret"
    secret.write_bytes(b"keep")
    (tmp_path / "layer").mkdir()
    (tmp_path / "layer" / scan_module.STATS_FILE).symlink_to(secret)
    layer = scan_module.LayerScan(
        mean=np.zeros(2), max=np.zeros(2, np.float32), active=np.zeros(2), top_images=np.zeros((2, 1), np.int64),
        top_scores=np.zeros((2, 1), np.float32), top_where=np.zeros((2, 1, 2), np.int64), map_size=(1, 1))
    with pytest.raises(OSError):
        scan_module._write_stats(tmp_path / "layer" / scan_module.STATS_FILE, layer)
    assert secret.read_bytes() == b"keep"


def test_resume_does_not_follow_a_symlinked_state_folder_out_of_out(tmp_path):
    """``out/.scan-state`` is a symlink to a folder outside ``out`` that holds a state of the same
    scan: --resume deletes the ``.scan-tmp-*`` files there and writes its pieces there (every
    ``inside(self.folder, ...)`` check resolves its root through the same symlink)."""
    out, outside = tmp_path / "out", tmp_path / "outside"
    out.mkdir()
    outside.mkdir()
    fingerprint = {"model": "m", "layers": ["x"], "top": 1, "images": "1 images", "preprocessing": "p"}
    (outside / scan_module.STATE_HEADER).write_text(json.dumps(
        {"format": scan_module.STATE_FORMAT, "version": scan_module.STATE_VERSION, "fingerprint": fingerprint,
         "partition_size": None}))
    kept = outside / f"{scan_module.TEMP_PREFIX}someone-elses"
    kept.write_bytes(b"keep")
    (out / scan_module.STATE_DIR).symlink_to(outside, target_is_directory=True)
    checkpoint = scan_module._Checkpoint(out, fingerprint, ["image.png"], None, "m", "w")
    try:
        checkpoint.resume()
        checkpoint.use_partition_size(7)  # rewrites state.json, as a cluster scan does
    except (OSError, VizError):
        pass  # refusing is fine
    assert kept.exists()
    assert json.loads((outside / scan_module.STATE_HEADER).read_text())["partition_size"] is None


def test_a_scan_leaves_the_staging_folder_of_a_live_run_alone(tmp_path):
    """Another run (a render, another scan's save) is staging into the same ``--out``: its lock is
    held, so :func:`viz.staging.remove_stale_staging_dirs` leaves it; the scan command must too."""
    from PIL import Image

    from viz.staging import OutputStaging

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for n in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(images / f"{n}.png")
    out = tmp_path / "out"
    with OutputStaging(out) as live:  # the lock is held as by a live process (flock is per open file)
        staged = live.claim("other-job")
        (staged / "file").write_bytes(b"x")
        code = scan_module.main([str(images), "--out", str(out), "--model", "resnet18", "--weights", "none",
                                 "--input-size", "64", "--layer", "layer2", "--top", "2", "--quiet"])
        assert code == 0
        assert (staged / "file").exists()


@pytest.mark.parametrize("planted", [
    f"{explorer.DATA_DIR}/{explorer.LOCK_NAME}", f"{explorer.DATA_DIR}/{explorer.STAMPS_NAME}", "index.html",
    "job/layer4/manifest.json",
])  # fmt: skip
def test_a_fifo_where_the_explorer_opens_a_file_does_not_hang_the_index(tmp_path, planted):
    """A FIFO planted where the explorer opens a file (pre-existing content of ``--out``): opening
    it waits forever for the other end, a reader for the lock it writes, a writer for the stamps,
    the page it may replace or a job's manifest. Each is refused (ENXIO for the lock, then the
    usual warning) or skipped, as the explorer's own PNG reader does."""
    out = tmp_path / "out"
    (out / explorer.DATA_DIR).mkdir(parents=True)
    (out / explorer.DATA_DIR / explorer.MARKER_NAME).write_text("planted")
    fifo = out / planted
    fifo.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(fifo)

    def refresh() -> None:
        with contextlib.suppress(OSError, VizError):
            explorer.write_index(out)

    worker = threading.Thread(target=refresh, daemon=True)
    worker.start()
    worker.join(5)
    hung = worker.is_alive()
    while worker.is_alive():  # opened at both ends, a hung open returns, so the thread ends
        os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))
        worker.join(0.5)
    assert not hung
