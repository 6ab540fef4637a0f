"""fastinterp.torch: the registered operators, their gradients, the module, compile and export."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

import fastinterp  # noqa: E402
from fastinterp import reference  # noqa: E402
from fastinterp.torch import Resize, Upsample, resize  # noqa: E402

ALIGNS = ("center", "left", "corners")
TORCH_ALIGN_CORNERS = {"center": False, "corners": True}

# (input H, W) -> (output H, W): non-integer factors both ways, and sizes of 1 on either side.
SIZE_CASES = [
    ((5, 7), (12, 17)),
    ((9, 8), (4, 3)),
    ((1, 6), (3, 4)),
    ((6, 1), (4, 5)),
    ((4, 5), (1, 3)),
    ((4, 5), (3, 1)),
    ((1, 1), (3, 2)),
    ((3, 4), (1, 1)),
]
SIZE_IDS = [f"{a[0]}x{a[1]}-{b[0]}x{b[1]}" for a, b in SIZE_CASES]


def channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last)


def assert_values_and_grads_match(ours, theirs, x, tol, grad=None):
    """``ours`` equals ``theirs``, and so do their gradients with respect to ``x`` for one
    output gradient (random unless given); returns our gradient."""
    torch.testing.assert_close(ours, theirs, rtol=tol, atol=tol)
    grad = torch.randn_like(theirs) if grad is None else grad
    (our_grad,) = torch.autograd.grad(ours, x, grad)
    (their_grad,) = torch.autograd.grad(theirs, x, grad)
    torch.testing.assert_close(our_grad, their_grad, rtol=tol, atol=tol)
    return our_grad


# --- the operators ------------------------------------------------------------------------


def test_import_fastinterp_does_not_import_torch():
    code = "import sys, fastinterp; assert 'torch' not in sys.modules and 'fastinterp.torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# Each op with a (2, 3, H, W) tensor and the other side's (H, W): resize 5x7 -> 12x4, and back.
OPS = {"resize": ((5, 7), (12, 4)), "resize_backward": ((12, 4), (5, 7))}


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("align", ALIGNS)
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck(op, align, layout, dtype):
    tensor_hw, other_hw = OPS[op]
    x = torch.randn(2, 3, *tensor_hw, dtype=dtype)
    x = (channels_last(x) if layout == "channels_last" else x).requires_grad_()
    torch.library.opcheck(getattr(torch.ops.fastinterp, op).default, (x, *other_hw, align))


@pytest.mark.parametrize("op", sorted(OPS))
@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_opcheck_antialias(op, layout, dtype):
    """The operators with antialias=True (5x7 -> 12x4 downscales the width: the filter runs)."""
    tensor_hw, other_hw = OPS[op]
    x = torch.randn(2, 3, *tensor_hw, dtype=dtype)
    x = (channels_last(x) if layout == "channels_last" else x).requires_grad_()
    torch.library.opcheck(getattr(torch.ops.fastinterp, op).default, (x, *other_hw, "center", True))


@pytest.mark.parametrize(("in_size", "out_size"), SIZE_CASES + [((12, 9), (5, 4)), ((7, 20), (9, 6))],
                         ids=SIZE_IDS + ["down", "up-down"])  # fmt: skip
def test_gradcheck_and_gradgradcheck_antialias(in_size, out_size):
    x = torch.randn(1, 2, *in_size, dtype=torch.float64, requires_grad=True)

    def op(t):
        return resize(t, size=out_size, antialias=True)

    assert torch.autograd.gradcheck(op, (x,))
    assert torch.autograd.gradgradcheck(op, (x,))


def torch_antialias(x: torch.Tensor, out_size: tuple[int, int]) -> torch.Tensor:
    """``F.interpolate(antialias=True)``; with an output width of 1 on the transposed tensor:
    torch 2.14's CPU kernel then repeats the first output row ((4, 1) -> (3, 1) of [0, 1, 2, 3]
    gives [0.3, 0.3, 0.3]; transposed, and in the reference, [0.3, 1.5, 2.7])."""
    if out_size[1] == 1 < out_size[0]:
        return torch_antialias(x.transpose(-1, -2), out_size[::-1]).transpose(-1, -2)
    return F.interpolate(x, size=out_size, mode="bilinear", antialias=True, align_corners=False)


def test_torch_antialias_with_an_output_width_of_one_is_worked_around():
    x = torch.arange(4.0, dtype=torch.float64).reshape(1, 1, 4, 1)
    expected = reference.antialiased_resize(x[0, 0].numpy(), 3, 1)
    np.testing.assert_allclose(torch_antialias(x, (3, 1))[0, 0].numpy(), expected, rtol=0, atol=1e-15)
    np.testing.assert_allclose(resize(x, size=(3, 1), antialias=True)[0, 0].numpy(), expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize(("in_size", "out_size"), SIZE_CASES + [((40, 50), (9, 13)), ((20, 12), (7, 30))],
                         ids=SIZE_IDS + ["down", "down-up"])  # fmt: skip
def test_antialias_forward_and_backward_match_torch(in_size, out_size):
    for x in (torch.randn(2, 3, *in_size, dtype=torch.float64), channels_last(torch.randn(2, 3, *in_size, dtype=torch.float64))):
        x.requires_grad_()
        ours = resize(x, size=out_size, antialias=True)
        theirs = torch_antialias(x, out_size)
        assert_values_and_grads_match(ours, theirs, x, 1e-12)
        if not x.is_contiguous():  # (a 1x1 map is both)
            assert ours.is_contiguous(memory_format=torch.channels_last)
        assert_values_and_grads_match(fastinterp.resize(x, size=out_size, antialias=True), theirs, x, 1e-12)


def test_antialias_backward_is_deterministic_and_half_is_computed_in_float32():
    grad = torch.randn(3, 5, 24, 20)
    first = torch.ops.fastinterp.resize_backward(grad, 96, 80, "center", True)
    assert torch.equal(first, torch.ops.fastinterp.resize_backward(grad, 96, 80, "center", True))
    half = torch.ops.fastinterp.resize_backward(grad.half(), 96, 80, "center", True)
    assert torch.equal(half, torch.ops.fastinterp.resize_backward(grad.half().float(), 96, 80, "center", True).half())


@pytest.mark.parametrize("align", ALIGNS)
@pytest.mark.parametrize(("in_size", "out_size"), SIZE_CASES, ids=SIZE_IDS)
def test_gradcheck_and_gradgradcheck(align, in_size, out_size):
    x = torch.randn(1, 2, *in_size, dtype=torch.float64, requires_grad=True)

    def op(t):
        return resize(t, size=out_size, align=align)

    assert torch.autograd.gradcheck(op, (x,))
    assert torch.autograd.gradgradcheck(op, (x,))


@pytest.mark.parametrize("align", ALIGNS)
def test_gradcheck_channels_last_and_other_ranks(align):
    for x in (
        channels_last(torch.randn(2, 3, 3, 4, dtype=torch.float64)),
        torch.randn(4, 5, dtype=torch.float64),
        torch.randn(2, 1, 2, 4, 5, dtype=torch.float64),
    ):
        x.requires_grad_()
        assert torch.autograd.gradcheck(lambda t: resize(t, scale_factor=1.7, align=align), (x,))
        assert torch.autograd.gradgradcheck(lambda t: resize(t, scale_factor=1.7, align=align), (x,))


@pytest.mark.parametrize("align", ALIGNS)
@pytest.mark.parametrize(("in_size", "out_size"), SIZE_CASES + [((10, 13), (120, 150))], ids=SIZE_IDS + ["parallel"])
def test_adjoint_is_the_transpose_of_the_interpolation_matrix(align, in_size, out_size):
    grad = np.random.default_rng(0).standard_normal((4, 3, *out_size))
    rows = reference.interpolation_matrix(in_size[0], out_size[0], align)
    cols = reference.interpolation_matrix(in_size[1], out_size[1], align)
    expected = np.einsum("oi,ncop,pj->ncij", rows, grad, cols)
    got = torch.ops.fastinterp.resize_backward(torch.from_numpy(grad), *in_size, align)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12, atol=1e-12)


def test_adjoint_is_deterministic():
    grad = torch.randn(3, 5, 96, 80)
    first = torch.ops.fastinterp.resize_backward(grad, 12, 10, "center")
    assert torch.equal(first, torch.ops.fastinterp.resize_backward(grad, 12, 10, "center"))


# --- parity with torch --------------------------------------------------------------------


@pytest.mark.parametrize("align", TORCH_ALIGN_CORNERS)
@pytest.mark.parametrize(("in_size", "out_size"), SIZE_CASES, ids=SIZE_IDS)
def test_forward_and_backward_match_torch(align, in_size, out_size):
    x = torch.randn(2, 3, *in_size, dtype=torch.float64, requires_grad=True)
    ours = resize(x, size=out_size, align=align)
    theirs = F.interpolate(x, size=out_size, mode="bilinear", align_corners=TORCH_ALIGN_CORNERS[align])
    assert_values_and_grads_match(ours, theirs, x, 1e-12)


@pytest.mark.parametrize("align", TORCH_ALIGN_CORNERS)
@pytest.mark.parametrize("scale_factor", [2, 2.5, (1.5, 3.0), 0.4])
def test_scale_factor_gives_torchs_floor_size(align, scale_factor):
    x = torch.randn(2, 3, 7, 9)
    ours = resize(x, scale_factor=scale_factor, align=align)
    theirs = F.interpolate(
        x, scale_factor=scale_factor, mode="bilinear",
        align_corners=TORCH_ALIGN_CORNERS[align], recompute_scale_factor=True,
    )
    assert ours.shape == theirs.shape
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)


def test_float32_channels_last_matches_torch_and_keeps_the_layout():
    x = channels_last(torch.randn(2, 16, 12, 10)).requires_grad_()
    ours = resize(x, scale_factor=3)
    theirs = F.interpolate(x, scale_factor=3, mode="bilinear", align_corners=False)
    assert ours.is_contiguous(memory_format=torch.channels_last) and not ours.is_contiguous()
    our_grad = assert_values_and_grads_match(ours, theirs, x, 1e-5, grad=channels_last(torch.randn(theirs.shape)))
    assert our_grad.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(dtype):
    x = torch.randn(2, 3, 6, 5).to(dtype).requires_grad_()
    y = resize(x, size=(13, 11))
    x32 = x.detach().float().requires_grad_()
    y32 = resize(x32, size=(13, 11))
    assert y.dtype == dtype
    assert torch.equal(y, y32.to(dtype))
    grad = torch.randn(y.shape).to(dtype)
    (grad_x,) = torch.autograd.grad(y, x, grad)
    (grad_x32,) = torch.autograd.grad(y32, x32, grad.float())
    assert grad_x.dtype == dtype
    assert torch.equal(grad_x, grad_x32.to(dtype))


def test_fastinterp_resize_on_a_tensor_that_requires_grad():
    x = torch.randn(1, 2, 6, 10, dtype=torch.float64, requires_grad=True)
    y = fastinterp.resize(x, 2.5, 1.5)  # width rate first; sizes round(10 * 2.5), round(6 * 1.5)
    assert y.shape == (1, 2, 9, 25) and y.requires_grad
    reference_y = F.interpolate(x, size=(9, 25), mode="bilinear", align_corners=False)
    assert_values_and_grads_match(y, reference_y, x, 1e-12)


# --- the module, compile, export ----------------------------------------------------------


@pytest.mark.parametrize("align", TORCH_ALIGN_CORNERS)
def test_module_matches_nn_upsample(align):
    x = torch.randn(2, 3, 5, 6)
    ours = Resize(scale_factor=2, align=align)
    theirs = torch.nn.Upsample(scale_factor=2, mode="bilinear", align_corners=TORCH_ALIGN_CORNERS[align])
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)
    assert Resize(size=4)(x).shape == (2, 3, 4, 4)
    assert Resize(size=(3, 8))(x).shape == (2, 3, 3, 8)
    assert Upsample is Resize


def test_module_repr():
    assert repr(Resize(scale_factor=0.5, antialias=True)) == "Resize(scale_factor=0.5, align='center', antialias=True)"
    assert repr(Resize(scale_factor=2)) == "Resize(scale_factor=2.0, align='center')"
    assert repr(Resize(scale_factor=(2, 1.5))) == "Resize(scale_factor=(2.0, 1.5), align='center')"
    assert repr(Resize(size=(3, 4), align="corners")) == "Resize(size=(3, 4), align='corners')"


class SmallNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.up = Resize(scale_factor=2.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.up(self.conv(x)))


# backend="aot_eager": it traces forward and backward through the fake kernels and the
# registered autograd, as inductor does, without inductor's C++ build (about 40 s on the
# 2 shared CPU cores; checked by hand to agree within 2e-7).
@pytest.mark.parametrize("dynamic", [False, True])
def test_torch_compile_fullgraph(dynamic):
    torch.manual_seed(0)
    model = SmallNet()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager", dynamic=dynamic)
    for shape in [(2, 3, 8, 8), (1, 3, 9, 11)]:
        x = torch.randn(shape, requires_grad=True)
        expected = model(x)
        got = compiled(x)
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
        (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
        (got_grad,) = torch.autograd.grad(got.square().sum(), x)
        torch.testing.assert_close(got_grad, expected_grad, rtol=0, atol=0)


class DownNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.down = Resize(scale_factor=0.4, antialias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fastinterp.resize(torch.relu(self.down(self.conv(x))), size=(3, 2), antialias=True)


def test_torch_compile_fullgraph_antialias():
    torch.manual_seed(0)
    model = DownNet()
    compiled = torch.compile(model, fullgraph=True, backend="aot_eager")
    x = torch.randn(2, 3, 17, 13, requires_grad=True)
    expected, got = model(x), compiled(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    (expected_grad,) = torch.autograd.grad(expected.square().sum(), x)
    (got_grad,) = torch.autograd.grad(got.square().sum(), x)
    torch.testing.assert_close(got_grad, expected_grad, rtol=0, atol=0)
    exported = torch.export.export(model, (x.detach(),))
    assert "torch.ops.fastinterp.resize.default" in exported.graph_module.code
    torch.testing.assert_close(exported.module()(x.detach()), model(x.detach()), rtol=0, atol=0)


def test_torch_export():
    model = SmallNet()
    x = torch.randn(2, 3, 8, 8)
    dim_h = torch.export.Dim("h", min=2, max=64)
    exported = torch.export.export(model, (x,), dynamic_shapes=({2: dim_h},))
    assert "torch.ops.fastinterp.resize.default" in exported.graph_module.code
    for shape in [(2, 3, 8, 8), (2, 3, 13, 8)]:
        x = torch.randn(shape)
        torch.testing.assert_close(exported.module()(x), model(x), rtol=0, atol=0)


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda x: resize(x.numpy(), size=(2, 2)), TypeError, "expected a torch.Tensor"),
        (lambda x: resize(x[0, 0, 0], size=(2, 2)), ValueError, r"shape \(\.\.\., H, W\)"),
        (lambda x: resize(x.to(torch.int32), size=(2, 2)), TypeError, "needs a floating tensor"),
        (lambda x: resize(x[:0], size=(2, 2)), ValueError, "empty tensor"),
        (lambda x: resize(x.to("meta"), size=(2, 2)), ValueError, "not supported"),
        (lambda x: resize(x), ValueError, "exactly one of size= and scale_factor="),
        (lambda x: resize(x, scale_factor=2, size=(2, 2)), ValueError, "exactly one"),
        (lambda x: resize(x, size=(0, 2)), ValueError, "ints >= 1"),
        (lambda x: resize(x, size=(2, 2, 2)), ValueError, "pair"),
        (lambda x: resize(x, size=2.0), ValueError, "pair"),
        (lambda x: resize(x, scale_factor="2"), TypeError, "scale_factor"),
        (lambda x: resize(x, scale_factor=(2, True)), TypeError, "real numbers"),
        (lambda x: resize(x, scale_factor=-1.0), ValueError, "finite numbers > 0"),
        (lambda x: resize(x, scale_factor=float("nan")), ValueError, "finite numbers > 0"),
        (lambda x: resize(x, scale_factor=float("inf")), ValueError, "finite numbers > 0"),
        (lambda x: resize(x, scale_factor=0.01), ValueError, "empty 0x0 output"),
        (lambda x: resize(x, size=(2, 2), align="edges"), ValueError, "align must be one of"),
        (lambda x: Resize(), ValueError, "exactly one"),
        (lambda x: Resize(size=3, align="middle"), ValueError, "align must be one of"),
        (lambda x: Resize(scale_factor=0), ValueError, "finite numbers > 0"),
        (lambda x: resize(x, size=(2, 2), align="corners", antialias=True), ValueError, r"only for align in \('center',\)"),
        (lambda x: resize(x, size=(2, 2), antialias="yes"), TypeError, "antialias must be True or False"),
        (lambda x: Resize(size=2, align="left", antialias=True), ValueError, r"only for align in \('center',\)"),
        (lambda x: torch.ops.fastinterp.resize(x, 2, 2, "left", True), ValueError, "only for align in"),
        (lambda x: torch.ops.fastinterp.resize_backward(x, 9, 9, "corners", True), ValueError, "only for align in"),
        (lambda x: fastinterp.resize(x.requires_grad_(), 2.0, legacy=True), ValueError, "no gradient"),
        (lambda x: fastinterp.resize(x.requires_grad_(), 2.0, out=torch.empty(1)), ValueError, "out= cannot"),
    ],
)
def test_bad_input_gives_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call(torch.randn(1, 2, 4, 5))
