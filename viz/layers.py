"""Layers by name and their outputs by forward hooks, without editing any ``forward``."""

from __future__ import annotations

import difflib
import re
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Iterator, Sequence

from .errors import VizError
from .tokens import CHANNELS_FIRST, MapLayout, MapReader, layout_maps

_TOKEN = re.compile(r"\[(-?\d+)\]|\.?([^.\[\]]+)")


class _StopForward(Exception):
    """Raised from a hook once every requested layer has produced its output."""


def parse_layer(spec: str) -> list[str | int]:
    """``"layer4[-1].conv3"`` -> ``["layer4", -1, "conv3"]``; ``"layer4.2"`` -> ``["layer4", 2]``."""
    tokens: list[str | int] = []
    position = 0
    for match in _TOKEN.finditer(spec):
        if match.start() != position:
            break
        index, name = match.groups()
        if index is not None:
            tokens.append(int(index))
        else:
            tokens.append(int(name) if re.fullmatch(r"-?\d+", name) else name)
        position = match.end()
    if not spec or position != len(spec) or spec.startswith("."):
        raise VizError(f"cannot parse layer name {spec!r} (use dotted names such as layer4.2.conv3 or layer4[-1])")
    return tokens


def resolve_layer(model: Any, spec: str) -> str:
    """The canonical dotted name (as in ``model.named_modules()``) of the layer ``spec``."""
    module = model
    path: list[str] = []
    for token in parse_layer(spec):
        children = list(module.named_children())
        if isinstance(token, int):
            if not -len(children) <= token < len(children):
                module = None
            else:
                name, module = children[token]
                path.append(name)
        else:
            module = dict(children).get(token)
            path.append(token)
        if module is None:
            names = [name for name, _ in model.named_modules() if name]
            close = difflib.get_close_matches(spec, names, n=4, cutoff=0.5)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise VizError(f"unknown layer {spec!r} in {type(model).__name__}{hint} (see --list-layers)")
    if not path:
        raise VizError(f"layer name {spec!r} names no layer")
    return ".".join(path)


def _feature_output(name: str, output: Any) -> Any:
    import torch

    if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
        output = output[0]  # e.g. modules that also return attention weights
    if not isinstance(output, torch.Tensor):
        raise VizError(f"layer {name!r} returns {type(output).__name__}, not a tensor")
    # A copy: later in-place operations (ResNet's `out += identity`, ReLU(inplace=True))
    # would otherwise change the captured values after the hook ran.
    return output.detach().clone()


@contextmanager
def feature_hooks(model: Any, layers: Sequence[str], *, stop_after_last: bool = False) -> Iterator[dict[str, Any]]:
    """Record the outputs of ``layers`` (dotted names) during forward passes inside the block.

    Yields a dict filled as the model runs: canonical layer name -> detached output tensor
    of the latest call. With ``stop_after_last`` the forward is cut short (by an exception
    the block swallows) once every layer has produced its output, so later layers never run.
    The hooks are removed when the block ends, whatever happens.

    Example, replacing the original script's edited ``forward``::

        with feature_hooks(model, ["layer1"]) as features:
            logits = model(data)
        visualize_feature_map(features["layer1"], save_path, "drone", BI)
    """
    names = [resolve_layer(model, layer) for layer in layers]
    modules = dict(model.named_modules())
    captured: dict[str, Any] = {}
    wanted = set(names)

    def make_hook(name: str) -> Any:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            captured[name] = _feature_output(name, output)
            if stop_after_last and wanted.issubset(captured):
                raise _StopForward

        return hook

    handles = [modules[name].register_forward_hook(make_hook(name)) for name in dict.fromkeys(names)]
    try:
        yield captured
    except _StopForward:
        pass
    finally:
        for handle in handles:
            handle.remove()


def capture_features(model: Any, batch: Any, layers: Sequence[str]) -> dict[str, Any]:
    """Outputs of ``layers`` for ``batch``, under ``torch.inference_mode``, stopping the
    forward pass after the last of them. Keys are canonical dotted names."""
    import torch

    with torch.inference_mode(), feature_hooks(model, layers, stop_after_last=True) as captured:
        model(batch)
    missing = [name for name in (resolve_layer(model, layer) for layer in layers) if name not in captured]
    if missing:
        raise VizError(f"layer(s) {', '.join(missing)} did not run during the forward pass")
    return dict(captured)


#: Top-level children that hold the classifier in torchvision's models (and most others):
#: never a default layer, even where they keep a spatial layout (SqueezeNet's 1x1 conv head).
HEAD_NAMES = ("fc", "classifier", "head", "heads")


@dataclass(frozen=True)
class LayerInfo:
    """One named module as the example input ran through it."""

    name: str
    kind: str  # module type
    shape: tuple[int, ...] | None  # output shape of its first call; None if it did not run
    calls: int  # times it ran in one forward pass (a reused module runs several times)
    layout: MapLayout | None  # how its output reads as maps; None: it cannot be drawn
    map_shape: tuple[int, int, int] | None  # (C, h, w) of one image's maps
    default: bool = False

    @property
    def drawable(self) -> bool:
        """Its output can be rendered as channel images (a module run several times cannot: its calls cannot be told apart)."""
        return self.layout is not None and self.calls == 1

    @property
    def spatial(self) -> bool:
        """Drawable with more than one position (a 1x1 map after global pooling is not)."""
        return self.map_shape is not None and self.map_shape[1] * self.map_shape[2] > 1


@contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """``model`` in eval mode inside the block, each module's own mode restored afterwards
    (a probe pass must not update BatchNorm statistics of a model being trained)."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@dataclass
class _Recording:
    order: list[str]  # names in the order their first call finished
    calls: dict[str, int]
    outputs: dict[str, Any]  # first call's output, still in the autograd graph
    result: Any  # the model's own output
    head_input: Any = None  # what the classifier head (HEAD_NAMES) read


def _record(model: Any, batch: Any, *, with_graph: bool) -> _Recording:
    """Run ``batch`` through ``model`` in eval mode recording every named module; ``with_graph``:
    with autograd (the outputs can be differentiated), else under ``torch.inference_mode``."""
    import torch

    recording = _Recording([], {}, {}, None)

    def head_hook(_module: Any, inputs: Any) -> None:
        if recording.head_input is None and inputs and isinstance(inputs[0], torch.Tensor):
            recording.head_input = inputs[0]

    def hook(_module: Any, _inputs: Any, output: Any, name: str) -> None:
        recording.calls[name] = recording.calls.get(name, 0) + 1
        if isinstance(output, (tuple, list)) and output and isinstance(output[0], torch.Tensor):
            output = output[0]
        if name not in recording.outputs and isinstance(output, torch.Tensor):
            recording.order.append(name)
            recording.outputs[name] = output

    handles = [
        module.register_forward_hook(lambda m, i, o, name=name: hook(m, i, o, name))
        for name, module in model.named_modules()
        if name
    ]
    handles += [module.register_forward_pre_hook(head_hook) for name, module in model.named_children() if name in HEAD_NAMES]
    try:
        with eval_mode(model), torch.inference_mode(not with_graph), torch.set_grad_enabled(with_graph):
            if with_graph:  # an input that needs gradients keeps a graph even when every parameter is frozen
                batch = batch.detach().clone().requires_grad_(batch.is_floating_point())
            recording.result = model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return recording


def _input_hw(batch: Any) -> tuple[int, int] | None:
    return tuple(batch.shape[-2:]) if batch.ndim == 4 else None


def _is_default_candidate(name: str, module: Any, info: LayerInfo) -> bool:
    """Spatial, run once, outside the head, and computing values of its own."""
    from torch import nn
    from torchvision.ops.misc import Permute

    in_head = name.split(".")[0] in HEAD_NAMES
    # An adaptive pool's output size is set by the layer, not by the image (VGG's 7x7 avgpool);
    # Permute and Identity only pass their input on (Swin's final permute: its norm is the layer).
    passive = isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, Permute, nn.Identity))
    return info.spatial and info.calls == 1 and not in_head and not passive


#: Seed of the random weighting of the head's input in the dependence test.
DEPENDENCE_SEED = 0


def _deepest_the_head_depends_on(recording: _Recording, names: Sequence[str], layouts: dict[str, MapLayout]) -> str | None:
    """The first of ``names`` (deepest first) whose map positions what the classifier head reads depends on.

    The test is a non-zero gradient of a fixed random weighting of the head's input (the
    model's output when no head is named; the first name passes when that is not a tensor).
    The patch tokens of a ViT's last block fail it: the head reads the class token only.
    A random weighting, not the top score, so that a head initialised at zero (torchvision's
    ViT) does not hide every layer. One layer at a time: the backward pass then stops at that
    layer, so the usual case (the deepest candidate passes) costs little more than the head.
    """
    import torch

    target = recording.head_input if recording.head_input is not None else recording.result
    if isinstance(target, (tuple, list)) and target:
        target = target[0]
    if not names or not isinstance(target, torch.Tensor) or not target.requires_grad:
        return names[0] if names else None
    generator = torch.Generator().manual_seed(DEPENDENCE_SEED)
    weights = torch.randn(target.shape, generator=generator, dtype=torch.float64).to(target)
    objective = (target * weights).sum()
    for name in names:
        (grad,) = torch.autograd.grad(objective, recording.outputs[name], retain_graph=True, allow_unused=True)
        if grad is not None and layout_maps(grad, layouts[name]).any():
            return name
    return None


def describe_layers(model: Any, example_input: Any) -> list[LayerInfo]:
    """Every named module with its output shape, call count, map layout, and the default layer marked.

    One forward and one backward pass of ``example_input`` (eval mode, the model's modes
    restored). The default is the deepest layer (the last to finish) whose output is a spatial
    map the prediction depends on: run once, outside the classifier head (:data:`HEAD_NAMES`),
    not an adaptive pool or a pass-through, that the head's input depends on (a non-zero gradient).
    """
    recording = _record(model, example_input, with_graph=True)
    input_hw = _input_hw(example_input)
    reader = MapReader(model)
    modules = reader.modules
    infos: dict[str, LayerInfo] = {}
    for name, module in modules.items():
        if not name:
            continue
        output = recording.outputs.get(name)
        shape = None if output is None else tuple(output.shape)
        layout = None if shape is None else reader.layout(name, shape, input_hw)
        map_shape = None if layout is None else tuple(layout_maps(output, layout).shape[1:])
        infos[name] = LayerInfo(name, type(module).__name__, shape, recording.calls.get(name, 0), layout, map_shape)
    candidates = [n for n in reversed(recording.order) if _is_default_candidate(n, modules[n], infos[n])]
    default = _deepest_the_head_depends_on(recording, candidates, {n: infos[n].layout for n in candidates})
    if default is not None:
        infos[default] = replace(infos[default], default=True)
    return list(infos.values())


def default_layer(model: Any, example_input: Any) -> str:
    """The dotted name of the layer drawn when none is given (see :func:`describe_layers`)."""
    found = [info.name for info in describe_layers(model, example_input) if info.default]
    if not found:
        raise VizError(
            f"{type(model).__name__} has no layer whose output is a spatial map the prediction depends on "
            f"(for a {'x'.join(map(str, example_input.shape))} input); name one with --layer (see --list-layers)"
        )
    return found[0]


def format_layers(infos: Sequence[LayerInfo]) -> list[str]:
    """The lines of ``--list-layers``: name, module type, output shape, the maps drawn from it
    ("-": cannot be drawn), modules that run several times, and the default marked."""
    lines = []
    for info in infos:
        if info.layout is None or info.map_shape is None or info.calls > 1:
            drawn = "-"
        else:
            channels, height, width = info.map_shape
            layout = "" if info.layout.kind == CHANNELS_FIRST else f" from {info.layout.describe()}"
            drawn = f"{channels} maps {height}x{width}{layout}"
        notes = (f"  [runs {info.calls}x: its calls cannot be told apart, not drawn]" if info.calls > 1 else "") + ("  <- default" if info.default else "")
        shape = "not run" if info.shape is None else str(info.shape)
        lines.append(f"{info.name:<40} {info.kind:<22} {shape:<22} {drawn}{notes}")
    return lines


def layer_table(model: Any, batch: Any) -> list[tuple[str, str, tuple[int, ...] | None]]:
    """(name, module type, output shape or None if it did not run) for every named module."""
    recording = _record(model, batch, with_graph=False)
    return [
        (name, type(m).__name__, tuple(recording.outputs[name].shape) if name in recording.outputs else None)
        for name, m in model.named_modules()
        if name
    ]
