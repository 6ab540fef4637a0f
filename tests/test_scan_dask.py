"""viz.scan on a real distributed.LocalCluster (2 worker processes): the same result as the
in-process scan, a worker killed mid-scan, the CLI's --scheduler, an unreachable scheduler, and
resuming: after the client process is SIGKILLed with its LocalCluster, after the cluster goes
away under a live client, and between in-process and cluster scans in both directions."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

distributed = pytest.importorskip("distributed")

from test_scan import (  # noqa: E402
    CLI_JOB, PREPROCESS, REPO, assert_same_scan, make_images, run_cli, saved_pieces, scanning, tiny_model,
)
from viz.errors import VizError  # noqa: E402
from viz.scan import collect_scan_images, load_scan, scan  # noqa: E402


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as dask_client:
        yield dask_client


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    return make_images(tmp_path_factory.mktemp("scan-dask") / "images", 30, seed=4)


def test_cluster_scan_equals_in_process(client, images):
    model = tiny_model()
    here = scan(model, [images], ["1", "2"], top=6, batch_size=4, preprocess=PREPROCESS, progress=False)
    for partition_size in (5, 13):
        there = scan(model, [images], ["1", "2"], top=6, batch_size=3, client=client, partition_size=partition_size,
                     preprocess=PREPROCESS, progress=False)
        assert there.images == here.images and there.skipped == here.skipped and there.input_size == here.input_size
        for layer in ("1", "2"):
            assert_same_scan(there.layers[layer], here.layers[layer])
            np.testing.assert_allclose(there.layers[layer].top_maps, here.layers[layer].top_maps, rtol=1e-5, atol=1e-6)
    assert "cuda" not in str(next(model.parameters()).device)


#: Forward passes run in this process (per worker process: the class is imported there).
_forward_calls = 0


class DiesOnce(torch.nn.Module):
    """The tiny model, but its process exits on its 4th forward (in its second partition) if
    ``marker`` does not exist yet, creating it: one worker dies mid-scan, once."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.inner = tiny_model()
        self.marker = str(marker)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        global _forward_calls
        _forward_calls += 1
        if _forward_calls == 4 and not os.path.exists(self.marker):
            Path(self.marker).touch()
            os._exit(1)
        return self.inner(batch)


def test_a_worker_dying_mid_scan_is_retried(client, images, tmp_path):
    marker = tmp_path / "died"
    model = DiesOnce(marker)
    workers_before = set(client.scheduler_info()["workers"])
    there = scan(model, [images], ["inner.2"], top=5, batch_size=2, client=client, partition_size=6,
                 preprocess=PREPROCESS, progress=False)
    assert marker.exists()  # a worker did die
    client.wait_for_workers(2, timeout=120)
    assert set(client.scheduler_info()["workers"]) != workers_before  # the nanny replaced it
    here = scan(model, [images], ["inner.2"], top=5, batch_size=2, preprocess=PREPROCESS, progress=False)
    assert_same_scan(there.layers["inner.2"], here.layers["inner.2"])
    assert there.skipped == here.skipped


class StopsWhile(torch.nn.Module):
    """The tiny model, but its 3rd forward in a process raises while ``marker`` exists: an
    interrupted in-process scan. Its parameters are the tiny model's, so a resume accepts it."""

    def __init__(self, marker: Path) -> None:
        super().__init__()
        self.inner = tiny_model()
        self.marker = str(marker)
        self.calls = 0

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == 3 and os.path.exists(self.marker):
            raise RuntimeError("interrupted")
        return self.inner(batch)


def test_an_in_process_state_resumes_on_the_cluster(client, images, tmp_path):
    marker, out = tmp_path / "stop", tmp_path / "out"
    marker.touch()
    paths = collect_scan_images([shutil.copytree(images, tmp_path / "images")])
    options = dict(top=5, batch_size=4, preprocess=PREPROCESS, progress=False)
    whole = scan(tiny_model(), paths, ["2"], **options)
    with pytest.raises(RuntimeError, match="interrupted"):
        scan(StopsWhile(marker), paths, ["inner.2"], checkpoint_dir=out, checkpoint_every=1, **options)
    assert saved_pieces(out) == [(0, 8)]  # two batches of four saved
    marker.unlink()
    # What is saved is not computed again: an image of the saved piece made unreadable now is not skipped.
    Path(paths[3]).write_bytes(b"no longer an image")
    with pytest.raises(VizError, match="differs in top") as error:  # the same refusals as in-process
        scan(StopsWhile(marker), paths, ["inner.2"], client=client, checkpoint_dir=out, resume=True, **{**options, "top": 4})
    assert "\n" not in str(error.value)
    resumed = scan(StopsWhile(marker), paths, ["inner.2"], client=client, checkpoint_dir=out, resume=True,
                   partition_size=7, **options)
    assert saved_pieces(out) == [(0, 8), (8, 14), (14, 21), (21, 28), (28, 31)]  # cut at the multiples of 7
    for start, stop in saved_pieces(out):  # each file holds its own images, whatever order they arrived in
        readable = sum(not p.endswith("broken.png") for p in paths[start:stop])
        with np.load(out / scanning.STATE_DIR / f"{scanning.PIECE_PREFIX}{start:012d}-{stop:012d}.npz") as piece:
            assert int(piece["0.positions"]) == readable * 7 * 7
    assert resumed.skipped == whole.skipped
    assert_same_scan(resumed.layers["inner.2"], whole.layers["2"])
    # Resumed again, complete: nothing computed again (an image of a piece the cluster saved made
    # unreadable is not skipped), the same tree of the same pieces, bit for bit.
    Path(paths[20]).write_bytes(b"no longer an image")
    again = scan(StopsWhile(marker), paths, ["inner.2"], client=client, checkpoint_dir=out, resume=True, **options)
    assert again.skipped == whole.skipped
    assert_same_scan(again.layers["inner.2"], resumed.layers["inner.2"], rtol=0)
    np.testing.assert_array_equal(again.layers["inner.2"].mean, resumed.layers["inner.2"].mean)


def test_a_device_without_cuda_on_the_workers_is_one_line(client, images):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(VizError, match=r"--device cuda: CUDA is not available here .* \(on the Dask worker tcp://") as error:
        scan(tiny_model(), [images], ["2"], device="cuda", client=client, preprocess=PREPROCESS, progress=False)
    assert "\n" not in str(error.value)


def test_cli_local_cluster_equals_in_process(images, tmp_path):
    code, _, stderr = run_cli(images, *CLI_JOB, "--out", tmp_path / "here", "--workers", "0")
    assert code == 0, stderr
    code, _, stderr = run_cli(images, *CLI_JOB, "--out", tmp_path / "there", "--scheduler", "local:2", "--partition-size", "7")
    assert code == 0, stderr
    here, there = load_scan(tmp_path / "here"), load_scan(tmp_path / "there")
    assert there.complete and there.images == here.images and there.skipped == here.skipped
    assert_same_scan(there.layers["layer2"], here.layers["layer2"])
    assert len(list((tmp_path / "there" / "layer2" / "strips").iterdir())) == 128


def test_cli_unreachable_scheduler_is_one_line(images, tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, stdout, stderr = run_cli(images, *CLI_JOB, "--out", tmp_path / "out", "--scheduler", f"tcp://127.0.0.1:{port}",
                                   "--scheduler-timeout", "2")
    assert (code, stdout) == (2, "") and stderr.count("\n") == 1, stderr
    assert f"cannot reach the Dask scheduler tcp://127.0.0.1:{port} within 2 s" in stderr
    assert not (tmp_path / "out").exists()


def _cli_process(*argv) -> subprocess.Popen:
    """``fastinterp-viz scan`` in a process of its own session: killing its group kills the
    LocalCluster it started too."""
    return subprocess.Popen([sys.executable, "-m", "viz", "scan", *map(str, argv)], env={**os.environ, "PYTHONPATH": str(REPO)},
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _kill_group_when_saved(process: subprocess.Popen, out: Path, pieces: int) -> None:
    """SIGKILL ``process``'s whole group as soon as ``pieces`` pieces are saved in ``out``."""
    try:
        while len(saved_pieces(out)) < pieces and process.poll() is None:
            time.sleep(0.002)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=60)


def covered(out: Path) -> int:
    return sum(stop - start for start, stop in saved_pieces(out))


def test_a_killed_cluster_scan_resumes_on_a_cluster_or_in_process(tmp_path):
    images = make_images(tmp_path / "images", 40, seed=3)
    whole, killed, copied = tmp_path / "whole", tmp_path / "killed", tmp_path / "copied"
    reference = scan_in_process_cli(images, whole)
    job = [images, *CLI_JOB, "--scheduler", "local:2", "--partition-size", "4", "--batch-size", "2"]
    process = _cli_process(*job, "--out", killed)
    _kill_group_when_saved(process, killed, 2)
    assert process.returncode == -signal.SIGKILL, process.stderr.read()  # killed mid-scan, not finished
    pieces = saved_pieces(killed)
    # whole partitions of 4, the last one (40, 41) holding the one image left; Dask may finish it first
    assert all(start % 4 == 0 and stop == min(start + 4, 41) for start, stop in pieces), pieces
    assert 0 < covered(killed) < 41, pieces
    assert not load_scan(killed).complete  # the partial view
    shutil.copytree(killed, copied)

    code, _, stderr = run_cli(*job, "--out", killed, "--resume", "--top", "5")
    assert code == 2 and stderr.count("\n") == 1 and "differs in top" in stderr
    code, _, stderr = run_cli(*job, "--out", killed, "--resume")
    assert code == 0, stderr
    code, _, stderr = run_cli(images, *CLI_JOB, "--out", copied, "--resume", "--workers", "0", "--batch-size", "3")
    assert code == 0, stderr
    for out in (killed, copied):
        result = load_scan(out)
        assert result.complete and result.images == reference.images and result.skipped == reference.skipped
        assert_same_scan(result.layers["layer2"], reference.layers["layer2"])
        assert sorted(p.name for p in out.iterdir()) == [".explorer", "index.html", "layer2", "scan.json"]
        assert len(list((out / "layer2" / "strips").iterdir())) == 128


def test_a_cluster_gone_mid_scan_is_one_line_then_resumes(tmp_path):
    images = make_images(tmp_path / "images", 40, seed=5)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cluster = [
        subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                          "--dashboard-address", ":0"], env=env, start_new_session=True, stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1"],
                         env=env, start_new_session=True, stderr=subprocess.DEVNULL),
    ]
    out = tmp_path / "out"

    def stop_the_cluster() -> None:
        try:
            while not saved_pieces(out) and all(p.poll() is None for p in cluster):
                time.sleep(0.002)
        finally:
            for process in cluster:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=60)

    stopper = threading.Thread(target=stop_the_cluster)
    stopper.start()
    try:
        code, stdout, stderr = run_cli(images, *CLI_JOB, "--out", out, "--scheduler", f"tcp://127.0.0.1:{port}",
                                       "--scheduler-timeout", "60", "--partition-size", "4", "--batch-size", "2")
    finally:
        stopper.join()
    done = covered(out)
    assert (code, stdout) == (2, "") and stderr.count("\n") == 1, stderr
    assert f"lost the Dask cluster after {done} of 41 images" in stderr and "--resume continues it" in stderr
    assert 0 < done < 41
    code, _, stderr = run_cli(images, *CLI_JOB, "--out", out, "--resume", "--workers", "0")
    assert code == 0, stderr
    whole = scan_in_process_cli(images, tmp_path / "whole")
    assert load_scan(out).skipped == whole.skipped
    assert_same_scan(load_scan(out).layers["layer2"], whole.layers["layer2"])


def scan_in_process_cli(images: Path, out: Path):
    code, _, stderr = run_cli(images, *CLI_JOB, "--out", out, "--workers", "0")
    assert code == 0, stderr
    return load_scan(out)
