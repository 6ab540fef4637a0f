"""Models for the CLI: torchvision classifiers by name, with ImageNet weights, a checkpoint,
or random initialisation."""

from __future__ import annotations

import contextlib
import difflib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .errors import VizError

DEFAULT_MODEL = "resnet50"
#: Key prefix that ``nn.DataParallel`` / DDP add to every parameter name.
DATA_PARALLEL_PREFIX = "module."
#: Containers in which training scripts commonly nest the state dict.
NESTED_STATE_DICT_KEYS = ("state_dict", "model_state_dict", "model")
#: Buffer name of BatchNorm's step counter.
BATCHNORM_COUNTER = "num_batches_tracked"
#: How many key names an error message lists before summarising the rest.
KEYS_LISTED = 8


@dataclass
class LoadedModel:
    """A model ready for inference and a plain description of where its weights came from."""

    model: Any
    name: str
    weights: str  # "imagenet", "none" or the checkpoint path
    weights_description: str
    tv_weights: Any = None  # the torchvision weights entry, for its transforms
    warning: str | None = None


def classifier_names() -> list[str]:
    """Names of torchvision's classification models."""
    import torchvision

    return torchvision.models.list_models(module=torchvision.models)


def _check_name(name: str) -> None:
    names = classifier_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise VizError(f"unknown torchvision classification model {name!r}{hint}")


def imagenet_weights_entry(name: str) -> Any:
    """torchvision's default weights entry for ``name`` (metadata only, nothing downloaded)."""
    import torchvision

    return torchvision.models.get_model_weights(name).DEFAULT


def fetch_imagenet_state_dict(weights: Any) -> Mapping[str, Any]:
    """Download (or read from torchvision's cache) the state dict of a weights entry."""
    # torch.hub announces downloads on stdout; stdout is kept for the CLI's summary.
    with contextlib.redirect_stdout(sys.stderr):
        return weights.get_state_dict(progress=sys.stderr.isatty(), check_hash=True)


def build_model(name: str = DEFAULT_MODEL, weights: str = "imagenet", *, num_classes: int | None = None) -> LoadedModel:
    """A torchvision classifier in eval mode with ``weights`` = ``imagenet``, ``none`` or a checkpoint path.

    When ImageNet weights cannot be had (no network, no cache) the model keeps its random
    initialisation and :attr:`LoadedModel.warning` says so.
    """
    import torchvision

    _check_name(name)
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    model = torchvision.models.get_model(name, weights=None, **kwargs)
    loaded = LoadedModel(model, name, weights, "random init (--weights none)")
    if weights == "imagenet":
        entry = imagenet_weights_entry(name)
        loaded.tv_weights = entry
        try:
            state = fetch_imagenet_state_dict(entry)
        except Exception as exc:  # any failure to download/read falls back, as promised
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            loaded.weights_description = f"random init (ImageNet weights {entry} unavailable)"
            loaded.warning = (
                f"could not get ImageNet weights {entry} ({reason}); using RANDOM weights, "
                "so the maps show an untrained network"
            )
        else:
            load_state_dict_strictly(model, state, f"ImageNet weights {entry}")
            loaded.weights_description = f"ImageNet ({entry})"
    elif weights != "none":
        load_checkpoint(model, Path(weights))
        loaded.weights_description = f"checkpoint {weights}"
    model.eval()
    return loaded


def unwrap_state_dict(obj: Any) -> dict[str, Any]:
    """The parameter dict inside a checkpoint: nested ``state_dict`` keys unwrapped, ``module.`` stripped."""
    while isinstance(obj, Mapping):
        nested = next((k for k in NESTED_STATE_DICT_KEYS if isinstance(obj.get(k), Mapping)), None)
        if nested is None:
            break
        obj = obj[nested]
    if not isinstance(obj, Mapping) or not obj:
        raise VizError("the checkpoint holds no state dict (expected a mapping of parameter names to tensors)")
    keys = list(obj)
    if all(isinstance(k, str) and k.startswith(DATA_PARALLEL_PREFIX) for k in keys):
        return {k[len(DATA_PARALLEL_PREFIX):]: v for k, v in obj.items()}
    return dict(obj)


def load_checkpoint(model: Any, path: Path) -> None:
    """Load a state-dict checkpoint with ``weights_only=True`` into ``model`` (strictly)."""
    import torch

    if not path.is_file():
        raise VizError(f"cannot read checkpoint {path}: no such file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VizError(f"cannot read checkpoint {path} (loaded with weights_only=True): {reason}") from None
    try:
        state = unwrap_state_dict(raw)
    except VizError as exc:
        raise VizError(f"checkpoint {path}: {exc}") from None
    load_state_dict_strictly(model, state, f"checkpoint {path}")


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:KEYS_LISTED])
    return shown + (f" (+{len(keys) - KEYS_LISTED} more)" if len(keys) > KEYS_LISTED else "")


def load_state_dict_strictly(model: Any, state: Mapping[str, Any], source: str) -> None:
    """``load_state_dict`` that reports every mismatch (keys and shapes) in one line."""
    own = model.state_dict()
    # BatchNorm's step counters are bookkeeping, absent from some older checkpoints: keep ours.
    state = {**{k: v for k, v in own.items() if k.endswith(BATCHNORM_COUNTER)}, **state}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listed(unexpected)}")
    if wrong_shape:
        problems.append(f"shape mismatches (checkpoint vs model): {_listed(wrong_shape)}")
    if problems:
        raise VizError(f"{source} does not match {type(model).__name__}: {'; '.join(problems)}")
    model.load_state_dict(state)
