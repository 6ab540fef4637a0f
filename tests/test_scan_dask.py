"""viz.scan on a real distributed.LocalCluster (2 worker processes): the same result as the
in-process scan, a worker killed mid-scan, the CLI's --scheduler, an unreachable scheduler."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch

distributed = pytest.importorskip("distributed")

from test_scan import CLI_JOB, PREPROCESS, assert_same_scan, make_images, run_cli, tiny_model  # noqa: E402
from viz.errors import VizError  # noqa: E402
from viz.scan import load_scan, scan  # noqa: E402


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


def test_cluster_scan_needs_no_checkpoint(client, images, tmp_path):
    with pytest.raises(VizError, match="not resumable"):
        scan(tiny_model(), [images], ["2"], client=client, checkpoint_dir=tmp_path, preprocess=PREPROCESS)


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
