"""Issue 12, item 9: ``torch.compile`` of code that calls plain :func:`fastinterp.resize`
gets a graph (tensors go through the registered op) or a clean graph break, never an error."""

import numpy as np
import pytest
import torch

import fastinterp

torch._dynamo.config.cache_size_limit = 64


def _model(x):
    return fastinterp.resize(x * 2, 2) + 1


@pytest.mark.parametrize("fullgraph", [True, False])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
def test_compiled_plain_resize_matches_eager(fullgraph, layout):
    torch._dynamo.reset()
    x = torch.randn(2, 3, 5, 7)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    compiled = torch.compile(_model, backend="aot_eager", fullgraph=fullgraph)
    got, want = compiled(x), _model(x)
    assert got.shape == (2, 3, 10, 14)
    assert torch.equal(got, want)
    assert got.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")


@pytest.mark.parametrize("align", ["center", "corners", "left"])
def test_compiled_resize_with_size_align_and_grad(align):
    torch._dynamo.reset()
    x = torch.randn(3, 6, 4, requires_grad=True)

    def model(t):
        return fastinterp.resize(t, size=(9, 5), align=align).square().sum()

    compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
    (grad,) = torch.autograd.grad(compiled(x), x)
    (want,) = torch.autograd.grad(model(x), x)
    assert torch.allclose(grad, want)


def test_what_the_op_cannot_do_breaks_the_graph_cleanly():
    """uint8 images, legacy=True and out= have no registered op: eager code, same result."""
    torch._dynamo.reset()
    image = torch.from_numpy(np.random.default_rng(0).integers(0, 255, (5, 7), dtype=np.uint8))
    out = torch.empty(10, 14, dtype=torch.uint8)

    def model(t):
        return fastinterp.resize(t, 2), fastinterp.resize(t, 2, legacy=True), fastinterp.resize(t, 2, out=out)

    got = torch.compile(model, backend="aot_eager")(image)
    want = model(image)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
