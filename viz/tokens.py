"""Layer outputs read as spatial maps, and the input sizes that models with a patch grid need.

Three layouts are drawn, each becoming (N, C, h, w) maps:

* ``channels_first``: (N, C, H, W) convolutional maps, the default for 4-D outputs.
* ``channels_last``: (N, H, W, C) maps. Decided by module types, never by sizes: torchvision
  expresses a change of layout with its ``Permute`` module (Swin's stem and head, ConvNeXt's
  blocks), so the model's children are followed in the order they are registered (the order
  torchvision's models run them) and every output after ``Permute([0, 2, 3, 1])`` up to
  ``Permute([0, 3, 1, 2])`` is channels-last.
* ``tokens``: (N, T, D) outputs of ViT-like models. The first ``prefix_tokens`` (class,
  distillation, register tokens) are dropped and the rest, in row-major order, fill the patch
  grid. Inside torchvision's ``VisionTransformer`` the grid is ``image_size // patch_size``
  on each side after one class token. Elsewhere a fallback takes the smallest ``k`` in
  0..:data:`MAX_PREFIX_TOKENS` for which ``T - k`` tokens fill a grid of at least 2x2 with the
  input's aspect ratio (a square grid when the input size is not given), e.g. 197 tokens ->
  class token + 14x14. A (N, C, L) sequence of a 1-D convolutional model whose length fits
  such a grid would be misread; the direct outputs of 1-D layers are refused for that reason.

The windows inside torchvision MaxViT's ``PartitionAttentionLayer`` ((N, windows, pixels, C))
are not maps and are refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .errors import VizError

CHANNELS_FIRST = "channels_first"
CHANNELS_LAST = "channels_last"
TOKENS = "tokens"
#: Inside MaxViT's partition layers: window tensors, not maps.
WINDOWS = "windows"
#: The most leading tokens (class, distillation, registers) the token fallback drops.
MAX_PREFIX_TOKENS = 8
#: torchvision Permute dims that switch to channels-last and back.
TO_CHANNELS_LAST = (0, 2, 3, 1)
TO_CHANNELS_FIRST = (0, 3, 1, 2)
#: MaxViT's stem and its first block each halve the input before the first partition layer.
MAXVIT_INPUT_PER_GRID = 4


@dataclass(frozen=True)
class MapLayout:
    """How a layer's output reads as (N, C, h, w) maps."""

    kind: str  # CHANNELS_FIRST, CHANNELS_LAST or TOKENS
    prefix_tokens: int = 0
    grid: tuple[int, int] | None = None  # tokens only: (h, w) of the patch grid

    def describe(self) -> str:
        """A short label for layer tables and manifests."""
        if self.kind == TOKENS:
            assert self.grid is not None
            return f"tokens: {self.prefix_tokens} dropped + {self.grid[0]}x{self.grid[1]} grid"
        return "(N, H, W, C)" if self.kind == CHANNELS_LAST else "(N, C, H, W)"


def _permute_target(module: Any) -> str | None:
    from torchvision.ops.misc import Permute

    if isinstance(module, Permute):
        dims = tuple(module.dims)
        if dims == TO_CHANNELS_LAST:
            return CHANNELS_LAST
        if dims == TO_CHANNELS_FIRST:
            return CHANNELS_FIRST
    return None


def module_layouts(model: Any) -> dict[str, str]:
    """Dotted name -> layout (CHANNELS_FIRST, CHANNELS_LAST or WINDOWS) of every module's output.

    Children are followed in registration order, each taking the layout its predecessor
    produced; ``Permute`` modules switch it (see the module docstring).
    """
    from torchvision.models.maxvit import PartitionAttentionLayer

    layouts: dict[str, str] = {}

    def walk(module: Any, name: str, layout: str) -> str:
        if isinstance(module, PartitionAttentionLayer):
            layouts.update((inner, WINDOWS) for inner, _ in module.named_modules(prefix=name))
        else:
            layout = _permute_target(module) or layout
            for child_name, child in module.named_children():
                layout = walk(child, f"{name}.{child_name}" if name else child_name, layout)
        # a partition layer departitions its windows back to its input's layout
        layouts[name] = layout
        return layout

    walk(model, "", CHANNELS_FIRST)
    layouts.pop("", None)
    return layouts


def token_grid(tokens: int, input_hw: tuple[int, int] | None = None) -> tuple[int, tuple[int, int]] | None:
    """(prefix tokens, (h, w)) of the fallback for ``tokens`` tokens, or None if no grid fits.

    The grid must be at least 2x2 and square, or with ``input_hw`` have the input's aspect
    ratio: the same patch size (within one pixel) along both axes.
    """
    height_per_width = 1.0 if input_hw is None else input_hw[0] / input_hw[1]
    for prefix in range(min(MAX_PREFIX_TOKENS, tokens) + 1):
        patches = tokens - prefix
        height = round(math.sqrt(patches * height_per_width))
        if height < 2 or patches % height:
            continue
        width = patches // height
        fits = height == width if input_hw is None else abs(input_hw[0] / height - input_hw[1] / width) < 1
        if width >= 2 and fits:
            return prefix, (height, width)
    return None


class MapReader:
    """Reads the outputs of one model's layers as maps; walks the model's modules once."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.modules = dict(model.named_modules())
        self.layouts = module_layouts(model)

    def _enclosing_vit(self, layer: str) -> Any:
        """The torchvision VisionTransformer that ``layer`` belongs to (the model or a parent module), if any."""
        from torchvision.models import VisionTransformer

        parts = layer.split(".")
        for depth in range(len(parts), -1, -1):
            candidate = self.modules.get(".".join(parts[:depth]))
            if isinstance(candidate, VisionTransformer):
                return candidate
        return None

    def layout(self, layer: str, shape: tuple[int, ...], input_hw: tuple[int, int] | None = None) -> MapLayout | None:
        """How the output of ``layer`` (canonical dotted name) with ``shape`` reads as maps; None if it cannot.

        ``input_hw``: the (H, W) of the model's input, which the token fallback uses for the
        grid's aspect ratio.
        """
        from torch import nn

        if 0 in shape:  # no channels or no positions: nothing to draw
            return None
        if len(shape) == 4:
            layout = self.layouts.get(layer, CHANNELS_FIRST)
            return None if layout == WINDOWS else MapLayout(layout)
        if len(shape) != 3 or isinstance(self.modules.get(layer), (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AvgPool1d)):
            return None
        tokens = shape[1]
        vit = self._enclosing_vit(layer)
        if vit is not None:
            side = vit.image_size // vit.patch_size
            # torchvision's ViT: one class token before the patches
            return MapLayout(TOKENS, 1, (side, side)) if tokens == 1 + side * side else None
        found = token_grid(tokens, input_hw)
        return None if found is None else MapLayout(TOKENS, found[0], found[1])

    def maps(self, output: Any, layer: str, input_hw: tuple[int, int] | None = None) -> Any:
        """The (N, C, h, w) maps of ``layer``'s ``output``; a :class:`VizError` if it is not a map."""
        layout = self.layout(layer, tuple(output.shape), input_hw)
        if 0 in output.shape:
            raise VizError(f"layer {layer!r} outputs shape {tuple(output.shape)}, an empty map: nothing to draw")
        if layout is None:
            raise VizError(
                f"layer {layer!r} outputs shape {tuple(output.shape)}, not a spatial map "
                "((N, C, H, W), (N, H, W, C) stages or (N, T, D) tokens on a patch grid); see fastinterp-viz --list-layers"
            )
        return layout_maps(output, layout)


def layout_maps(output: Any, layout: MapLayout) -> Any:
    """``output`` rearranged as (N, C, h, w) maps according to ``layout`` (a view where possible)."""
    if layout.kind == CHANNELS_LAST:
        return output.permute(0, 3, 1, 2)
    if layout.kind == TOKENS:
        assert layout.grid is not None
        patches = output[:, layout.prefix_tokens :]
        return patches.reshape(output.shape[0], *layout.grid, output.shape[2]).permute(0, 3, 1, 2)
    return output


def map_layout(model: Any, layer: str, shape: tuple[int, ...], input_hw: tuple[int, int] | None = None) -> MapLayout | None:
    """:meth:`MapReader.layout` for one layer of ``model``."""
    return MapReader(model).layout(layer, shape, input_hw)


def to_spatial_maps(output: Any, model: Any, layer: str, input_hw: tuple[int, int] | None = None) -> Any:
    """The (N, C, h, w) maps of ``layer``'s ``output`` (canonical dotted name): conv maps as they
    are, channels-last stages permuted, tokens on their patch grid (see the module docstring).

    A :class:`VizError` for an output that is not a map (a classifier's scores, MaxViT's windows).
    """
    return MapReader(model).maps(output, layer, input_hw)


def model_input_size(model: Any, tv_weights: Any = None) -> tuple[int, int] | None:
    """The (H, W) input a model with a fixed input size needs, or None when any size works.

    torchvision's ViT: its ``image_size``. MaxViT: the crop size of ``tv_weights``' transforms
    when given, else four times the grid of its first partition layer. Other models take any
    size large enough (the original script's 384 stays their default).
    """
    from torchvision.models import MaxVit, VisionTransformer
    from torchvision.models.maxvit import PartitionAttentionLayer

    if isinstance(model, VisionTransformer):
        return model.image_size, model.image_size
    if isinstance(model, MaxVit):
        crop = getattr(tv_weights.transforms(), "crop_size", None) if tv_weights is not None else None
        if crop:
            return crop[0], crop[-1]
        first = next(m for m in model.modules() if isinstance(m, PartitionAttentionLayer))
        return MAXVIT_INPUT_PER_GRID * first.grid_size[0], MAXVIT_INPUT_PER_GRID * first.grid_size[1]
    return None


def check_input_size(model: Any, size: tuple[int, int], tv_weights: Any = None) -> None:
    """A one-line :class:`VizError` when ``model`` has a fixed input size and ``size`` is not it
    (found before any forward pass, instead of the model's own assertion)."""
    needed = model_input_size(model, tv_weights)
    if needed is not None and tuple(size) != needed:
        raise VizError(
            f"{type(model).__name__} takes only {needed[0]}x{needed[1]} inputs (its fixed input size), "
            f"not {size[0]}x{size[1]}: leave --input-size out or set it to {needed[0]}"
        )
