"""Models for the CLI: torchvision classifiers by name, with ImageNet weights, a checkpoint,
or random initialisation."""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import re
import sys
import warnings
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
#: torchvision's weight files end in ``-<first hex digits of their SHA-256>.pth``.
HASH_IN_NAME = re.compile(r"-([0-9a-f]{6,64})\.[A-Za-z0-9]+$")
#: A weights-only load names the Python object it refused in messages such as
#: "Unsupported global: GLOBAL torchvision.models.resnet.ResNet was not an allowed global".
REFUSED_GLOBAL = re.compile(r"GLOBAL ([\w.]+)")


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


class WeightsUnavailable(Exception):
    """The ImageNet weights could not be downloaded (no network, server error)."""


def imagenet_cache_path(weights: Any) -> Path:
    """Where torch.hub (and so torchvision) caches the file of a weights entry:
    ``$TORCH_HOME/hub/checkpoints/<file name of its URL>``."""
    import torch.hub

    from .paths import safe_component

    return Path(torch.hub.get_dir()) / "checkpoints" / safe_component(weights.url.rsplit("/", 1)[-1])


def _sha256_prefix_matches(path: Path, prefix: str) -> bool:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest().startswith(prefix)


def fetch_imagenet_state_dict(weights: Any) -> Mapping[str, Any]:
    """The state dict of a torchvision weights entry, from torch.hub's cache or downloaded
    into it, checked against the hash in its file name and loaded with ``weights_only=True``.

    Never goes through torchvision's ``get_state_dict`` (which unpickles with
    ``weights_only=False``, so a file planted in the cache would run code). Raises
    :class:`WeightsUnavailable` when the download fails, :class:`VizError` when the cached
    file is corrupt, replaced or not a plain state dict.
    """
    import torch.hub

    path = imagenet_cache_path(weights)
    match = HASH_IN_NAME.search(path.name)
    expected = match.group(1) if match else None
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # torch.hub announces downloads on stdout; stdout is kept for the CLI's summary.
            with contextlib.redirect_stdout(sys.stderr):
                # Downloads to a temporary file, checks the hash, then moves it into place.
                torch.hub.download_url_to_file(weights.url, str(path), hash_prefix=expected, progress=sys.stderr.isatty())
        except Exception as exc:  # no network, a server error, a hash mismatch: all "unavailable"
            raise WeightsUnavailable(_first_line(exc)) from None
    elif expected is not None and not _sha256_prefix_matches(path, expected):
        raise VizError(
            f"cached ImageNet weights {path} do not match the hash in their name (corrupt or replaced); "
            "delete the file to download it again"
        )
    return read_checkpoint(path, f"cached ImageNet weights {path}")


def _first_line(exc: BaseException) -> str:
    text = _without_ansi(str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _without_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def _checkpoint_problem(exc: BaseException) -> str:
    """What is wrong with a file torch.load(weights_only=True) refused, in our words."""
    import pickle

    text = _without_ansi(str(exc))
    refused = REFUSED_GLOBAL.search(text)
    if refused:
        return (
            f"it holds a pickled Python object ({refused.group(1)}), not only tensors, and loading it would run "
            "code; save model.state_dict() instead of the whole model"
        )
    if isinstance(exc, EOFError) or "central directory" in text or "truncated" in text.lower():
        return "the file is empty or truncated (an interrupted save or copy?)"
    if isinstance(exc, pickle.UnpicklingError) or "zip archive" in text or "invalid load key" in text:
        return "not a PyTorch checkpoint (neither a torch.save archive nor a pickle of tensors)"
    return f"not a readable PyTorch checkpoint ({type(exc).__name__}: {_first_line(exc)})"


def read_checkpoint(path: Path, what: str) -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, every failure one :class:`VizError`
    line in our words (never torch's advice to load with ``weights_only=False``)."""
    import torch

    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise for the user
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or unsafe files
        raise VizError(f"cannot read {what}: {_checkpoint_problem(exc)}") from None


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
            state = unwrap_state_dict(fetch_imagenet_state_dict(entry))
        except (WeightsUnavailable, OSError) as exc:  # no network or no cache: fall back, as promised
            reason = _first_line(exc)
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
    if not path.is_file():
        raise VizError(f"cannot read checkpoint {path}: no such file")
    raw = read_checkpoint(path, f"checkpoint {path}")
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
