"""Layers by name and their outputs by forward hooks, without editing any ``forward``."""

from __future__ import annotations

import difflib
import re
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

from .errors import VizError

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


def layer_table(model: Any, batch: Any) -> list[tuple[str, str, tuple[int, ...] | None]]:
    """(name, module type, output shape or None if it did not run) for every named module."""
    import torch

    shapes: dict[str, tuple[int, ...]] = {}
    handles = []
    for name, module in model.named_modules():
        if name:

            def hook(_m: Any, _i: Any, output: Any, name: str = name) -> None:
                if isinstance(output, torch.Tensor):
                    shapes.setdefault(name, tuple(output.shape))

            handles.append(module.register_forward_hook(hook))
    try:
        with torch.inference_mode():
            model(batch)
    finally:
        for handle in handles:
            handle.remove()
    return [(name, type(m).__name__, shapes.get(name)) for name, m in model.named_modules() if name]
