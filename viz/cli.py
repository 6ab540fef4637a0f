"""``fastinterp-viz`` / ``python -m viz``: feature maps of a torchvision classifier from the shell.

With no arguments: every channel of ResNet-50's ``layer4`` for matplotlib's sample photo
``grace_hopper.jpg`` (ImageNet weights, or random ones with a warning when they cannot be
downloaded), written to ``viz-out/grace_hopper/layer4/``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Sequence

from .api import DEFAULT_MAX_OUTPUT_GB, Limits
from .errors import VizError
from .inputs import DEFAULT_INPUT_SIZE
from .models import DEFAULT_MODEL
from .render import DEFAULT_CHUNK_MB, IMAGE_FORMATS, NORM_MODES, RANK_MODES, RenderOptions, default_threads

if TYPE_CHECKING:  # the heavy modules (torch) are imported only when a command needs them
    from .api import LayerOutput
    from .inputs import Preprocess
    from .models import LoadedModel

PROG = "fastinterp-viz"
#: Subcommands and the module whose ``main(argv)`` runs each.
SUBCOMMANDS = {"scan": "viz.scan", "open": "viz.explorer"}


def _scale(text: str) -> float | None:
    if text == "input":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'input', got {text!r}") from None


class _OneLineErrorParser(argparse.ArgumentParser):
    """argparse with its usage errors as one line (``--help`` has the usage), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The command line's options, grouped as in ``--help``."""
    parser = _OneLineErrorParser(
        prog=PROG,
        description="Every channel of any layer of a torchvision classifier as images, plus the channel "
        "sum/mean/max, a top-k contact sheet, an overlay on the input and a manifest.json.",
    )
    parser.add_argument("images", nargs="*", type=Path, help="image files or folders (default: matplotlib's grace_hopper.jpg)")
    model = parser.add_argument_group("model")
    model.add_argument("--model", default=DEFAULT_MODEL, help="torchvision classification model (default: %(default)s)")
    model.add_argument("--weights", default="imagenet", metavar="imagenet|none|PATH",
                       help="ImageNet weights (random init with a warning if they cannot be downloaded), "
                       "none (random init), or a state-dict checkpoint (default: %(default)s)")
    model.add_argument("--num-classes", type=int, metavar="N", help="classifier size, for checkpoints not trained on ImageNet's 1000 classes")
    model.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the random initialisation (default: %(default)s)")
    model.add_argument("--preprocess", choices=("original", "weights"), default="original",
                       help="original: resize to --input-size bicubic + ImageNet mean/std, as the original script; "
                       "weights: the torchvision weights' own transforms (default: %(default)s)")
    model.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE, metavar="N", help="side of the original preprocessing (default: %(default)s)")
    layers = parser.add_argument_group("layers")
    layers.add_argument("--layer", action="append", metavar="NAME",
                        help="dotted layer name, e.g. layer4, layer4.2.conv3, layer4[-1]; repeat or comma-separate "
                        "for several in one pass (default: layer4)")
    layers.add_argument("--list-layers", action="store_true", help="print the model's layer names and output shapes, then exit")
    render = parser.add_argument_group("rendering")
    render.add_argument("--scale", type=_scale, default=8.0, metavar="X|input", help="upsampling factor, or 'input' for the input size (default: 8)")
    render.add_argument("--norm", choices=NORM_MODES, default="channel", help="normalisation range per channel, per layer, or per-channel percentile clip (default: %(default)s)")
    render.add_argument("--clip", type=float, default=1.0, metavar="P", help="percent clipped at each end with --norm percentile (default: %(default)s)")
    render.add_argument("--cmap", default="viridis", help="any matplotlib colormap (default: %(default)s)")
    render.add_argument("--format", choices=IMAGE_FORMATS, default="png", help="channel and summary images: 8-bit palette PNG or JPEG (default: %(default)s)")
    render.add_argument("--top-k", type=int, default=16, metavar="K", help="channels on the contact sheet (default: %(default)s)")
    render.add_argument("--rank", choices=RANK_MODES, default="mean", help="contact sheet ranking (default: %(default)s)")
    render.add_argument("--alpha", type=float, default=0.5, metavar="A", help="opacity of the sum map over the input (default: %(default)s)")
    render.add_argument("--chunk-mb", type=float, default=DEFAULT_CHUNK_MB, metavar="MB", help="memory for upsampled channels at once; layers are streamed in chunks of channels (default: %(default)s)")
    render.add_argument("--threads", type=int, default=default_threads(), metavar="N", help="image-writing threads (default: %(default)s)")
    compare = parser.add_argument_group("compare (baseline vs new method)")
    compare.add_argument("--compare", metavar="imagenet|none|PATH", help="weights of a second model: write shared-scale sum maps, sheets and a difference map instead")
    compare.add_argument("--compare-model", metavar="NAME", help="architecture of the second model (default: --model)")
    run = parser.add_argument_group("run")
    run.add_argument("--device", default="cpu", metavar="cpu|cuda", help="where the model runs (default: %(default)s)")
    run.add_argument("--out", type=Path, default=Path("viz-out"), metavar="DIR", help="output directory (default: %(default)s)")
    run.add_argument("--overwrite", action="store_true", help="replace existing output directories instead of stopping")
    run.add_argument("--max-output-gb", type=float, default=DEFAULT_MAX_OUTPUT_GB, metavar="GB",
                     help="refuse a run estimated to write more than this (images counted uncompressed; default: %(default)s)")
    run.add_argument("--max-memory-gb", type=float, metavar="GB",
                     help="refuse a run estimated to need more memory than this (default: the memory available)")
    run.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    return parser


def _say(message: str) -> None:
    from .paths import printable

    print(f"{PROG}: {printable(message)}", file=sys.stderr)


def _options(args: argparse.Namespace) -> RenderOptions:
    return RenderOptions(
        scale=args.scale, norm=args.norm, clip=args.clip, cmap=args.cmap, image_format=args.format,
        top_k=args.top_k, rank_by=args.rank, alpha=args.alpha, chunk_mb=args.chunk_mb, threads=args.threads,
    )


def _load(name: str, weights: str, args: argparse.Namespace) -> LoadedModel:
    import torch

    from .models import build_model

    torch.manual_seed(args.seed)  # random init is reproducible, so "none" vs "none" compares equal
    loaded = build_model(name, weights, num_classes=args.num_classes)
    if loaded.warning:
        _say(f"warning: {loaded.warning}")
    return loaded


def _list_layers(args: argparse.Namespace) -> int:
    import torch

    from .layers import layer_table
    from .models import build_model

    loaded = build_model(args.model, "none", num_classes=args.num_classes)
    preprocess = _preprocess(args, loaded)
    side = preprocess.input_size or (224, 224)
    dummy = torch.zeros(1, 3, *side)
    print(f"layers of {args.model} (output shapes for a 1x3x{side[0]}x{side[1]} input):")
    for name, kind, shape in layer_table(loaded.model, dummy):
        print(f"  {name:<32} {kind:<20} {'not run' if shape is None else tuple(shape)}")
    return 0


def _preprocess(args: argparse.Namespace, loaded: LoadedModel) -> Preprocess:
    """The original script's preprocessing, or the transforms of the model's ImageNet weights."""
    from .inputs import original_preprocess, weights_preprocess
    from .models import imagenet_weights_entry

    if args.preprocess == "weights":
        return weights_preprocess(loaded.tv_weights or imagenet_weights_entry(loaded.name))
    return original_preprocess(args.input_size)


def _layers(args: argparse.Namespace) -> list[str]:
    """The layer names of every ``--layer`` (comma-separated too); an empty name is an error."""
    names = []
    for item in args.layer or ["layer4"]:
        for name in item.split(","):
            if not name.strip():
                raise VizError(f"--layer {item!r} holds an empty layer name (give names such as layer4 or layer3,layer4)")
            names.append(name.strip())
    return names


def run(args: argparse.Namespace) -> int:
    """Carry out a parsed command line; raises :class:`VizError` for the user's mistakes."""
    from .api import check_device
    from .render import warm_up_in_background

    if args.list_layers:
        return _list_layers(args)
    options = _options(args)
    layers = _layers(args)
    check_device(args.device)
    warm_up = warm_up_in_background()
    try:
        label, preprocess, results = _jobs(args, options, layers)
    finally:
        warm_up.join()  # never leave the process with numba half-loaded on another thread
    if not args.quiet:
        from .paths import printable

        print(printable(f"model: {label}"))
        print(f"preprocessing: {preprocess.description}")
        for result in results:
            files = result.manifest["files"]
            channels = [f for f in files if f.startswith("channels/")]
            others = [f for f in files if not f.startswith("channels/")]
            listed = (f"{len(channels)} channel images ({channels[0]} .. {channels[-1]}), " if channels else "") + ", ".join(others)
            print(printable(f"{result.image} {result.layer} -> {result.directory}/: {listed}"))
    return 0


def _jobs(args: argparse.Namespace, options: RenderOptions, layers: list[str]) -> tuple[str, Preprocess, list[LayerOutput]]:
    """Load the model(s) and run the visualisation or the comparison."""
    from .api import compare, visualize
    from .inputs import default_image

    images = args.images or [default_image()]
    limits = Limits(args.max_output_gb, args.max_memory_gb)
    loaded = _load(args.model, args.weights, args)
    preprocess = _preprocess(args, loaded)
    label = f"{loaded.name}, weights: {loaded.weights_description}"
    if args.compare is None:
        results = visualize(
            loaded.model, images, layers, args.out, options=options, preprocess=preprocess,
            device=args.device, overwrite=args.overwrite, progress=False if args.quiet else None,
            context={"tool": PROG, "model": loaded.name, "weights": loaded.weights_description}, limits=limits,
        )
        return label, preprocess, results
    other = _load(args.compare_model or args.model, args.compare, args)
    other_label = f"{other.name}, weights: {other.weights_description}"
    results = compare(
        loaded.model, other.model, images, layers, args.out, labels=(label, other_label),
        options=options, preprocess=preprocess, device=args.device, overwrite=args.overwrite,
        context={"tool": PROG}, limits=limits,
    )
    return f"A = {label}; B = {other_label}", preprocess, results


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``fastinterp-viz`` and ``python -m viz``; returns the exit status.

    ``fastinterp-viz scan ...`` (a dataset scan, :mod:`viz.scan`) and ``fastinterp-viz open DIR``
    (the explorer page, :mod:`viz.explorer`) are subcommands with their own options; anything
    else is the one-image usage.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        return importlib.import_module(SUBCOMMANDS[argv[0]]).main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        with _terminate_as_interrupt():
            return run(args)
    except VizError as exc:
        _say(f"error: {exc}")
        return 2
    except BrokenPipeError:  # e.g. `--list-layers | head`: stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except KeyboardInterrupt:
        _say("interrupted (SIGINT); unfinished output removed")
        return 128 + signal.SIGINT
    except Terminated:
        _say("terminated (SIGTERM); unfinished output removed")
        return 128 + signal.SIGTERM
    except MemoryError:
        _say("error: out of memory; lower --scale or --chunk-mb, or pick fewer layers")
        return 2
    except OSError as exc:  # a full disk, a file system gone read-only, a lost network share
        where = f": {exc.filename}" if exc.filename else ""
        _say(f"error: {exc.strerror or type(exc).__name__}{where}")
        return 2


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM, so a terminated run unwinds (and cleans up) as
    one interrupted by Ctrl-C; a BaseException, like KeyboardInterrupt, so no ``except
    Exception`` swallows it."""


class _terminate_as_interrupt:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (SIGINT already
    raises KeyboardInterrupt); the previous handler comes back after it."""

    def __enter__(self) -> None:
        self._previous = None
        if threading.current_thread() is threading.main_thread():  # signal handlers live there only
            self._previous = signal.signal(signal.SIGTERM, self._raise)

    @staticmethod
    def _raise(_signum: int, _frame: object) -> None:
        raise Terminated

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
