"""viz on a CUDA model upsamples on fastinterp's GPU backend: the same files as on the host."""

from __future__ import annotations

import numpy as np
import pytest

from fastinterp import _cuda
from viz.api import _on_device
from viz.render import RenderOptions, render_layer

pytestmark = pytest.mark.cudasim


def _counted(function, calls):
    def wrapper(*args, **kwargs):
        calls.append(args)
        return function(*args, **kwargs)

    return wrapper


def test_cuda_model_upsamples_on_the_gpu():
    assert _on_device(RenderOptions(), "cuda:0").resize_device == "cuda:0"
    assert _on_device(RenderOptions(resize_device="cuda"), "cpu").resize_device is None


@pytest.mark.parametrize("channel_files, channel_pngs", [(False, 1), (True, 3)], ids=["page", "channel-files"])
def test_render_on_the_gpu_writes_the_hosts_files(tmp_path, monkeypatch, channel_files, channel_pngs):
    gpu_calls = []
    monkeypatch.setattr(_cuda, "resize_host", _counted(_cuda.resize_host, gpu_calls))
    features = np.random.default_rng(3).standard_normal((3, 3, 4)).astype(np.float32)
    written = {}
    for where, device in (("host", None), ("gpu", "cuda")):
        target = tmp_path / where
        target.mkdir()
        options = RenderOptions(scale=4, top_k=2, threads=1, resize_device=device, channel_files=channel_files)
        render_layer(features, target, options)
        written[where] = {p.relative_to(target): p.read_bytes() for p in target.rglob("*.png")}
    assert len(gpu_calls) == 1  # the one chunk of channels went to the GPU
    # the channels (one page of tiles by default, else a file each), sum/mean/max, the sheet
    assert len(written["gpu"]) == channel_pngs + 3 + 1
    assert written["gpu"] == written["host"]
