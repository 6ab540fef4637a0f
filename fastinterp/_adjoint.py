"""CPU adjoint of bilinear resize: the gradient with respect to the input.

The forward reads, for every output pixel, two input rows and two input columns. Its
adjoint could scatter each output gradient back to those four input pixels, but scattered
adds from several threads need atomics and give a run-to-run varying sum. Here every input
pixel instead *gathers* from the output pixels that read it, so each input pixel is
written by exactly one task, in a fixed order: no atomics, bit-identical results.

Which output pixels read an input index is the inverse of the per-axis tables of
:mod:`fastinterp._coords`, kept in CSR form (:class:`~fastinterp._coords.InverseTaps`).
The CPU kernels' driver runs it as tasks (``_cpu._adjoint_task``) of one plane and a block
of input rows, each making two passes of the same weighted row gather:

1. vertical: for each input row, the weighted sum of the output-gradient rows that read
   it (whole contiguous rows, so the inner loop vectorises), stored as one column of a
   transposed scratch block;
2. horizontal: for each input column, the weighted sum of the scratch rows (output
   columns) that read it, over all the task's rows at once.

Gathering the horizontal pass one scalar at a time would chain every add on the previous
one; over the transposed block the adds are independent and vectorise.
"""

from __future__ import annotations

import numpy as np

from . import _cpu
from ._coords import inverse_axis_taps


def resize_adjoint(grad_out: np.ndarray, grad_in: np.ndarray, align: str) -> None:
    """Write into ``grad_in`` (P, H, W) the gradient of resizing it to ``grad_out`` (P, OH, OW).

    Both arrays must be C-contiguous, of one dtype (float32 or float64, the compute dtype)
    and hold the same number of planes; ``align`` must already be validated.
    """
    planes, in_h, in_w = grad_in.shape
    _, out_h, out_w = grad_out.shape
    ys = inverse_axis_taps(in_h, out_h, align, grad_in.dtype)
    xs = inverse_axis_taps(in_w, out_w, align, grad_in.dtype)
    # Work is proportional to the output gradient read, so it is scheduled on its size.
    _cpu.run_tasks(grad_out, grad_in, ys, xs, *_cpu.schedule(planes, in_h, grad_out.size))
