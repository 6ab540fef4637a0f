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
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Sequence

from . import staging
from .api import DEFAULT_BATCH_SIZE, DEFAULT_MAX_OUTPUT_GB, Limits, RunProgress
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
    model.add_argument("--input-size", type=int, metavar="N",
                       help=f"side of the original preprocessing (default: the model's fixed input size, e.g. 224 for ViT, else {DEFAULT_INPUT_SIZE})")
    layers = parser.add_argument_group("layers")
    layers.add_argument("--layer", action="append", metavar="NAME",
                        help="dotted layer name, e.g. layer4, layer4.2.conv3, layer4[-1]; repeat or comma-separate "
                        "for several in one pass (default: the deepest layer whose output is a spatial map the prediction "
                        "depends on, e.g. layer4 of a ResNet; see --list-layers)")
    layers.add_argument("--list-layers", action="store_true",
                        help="print the model's layers, their output shapes, the maps drawn from them and the default, then exit")
    layers.add_argument("--target-class", type=int, metavar="N", help="class explained by Grad-CAM (default: the predicted class)")
    layers.add_argument("--no-gradcam", action="store_true", help="skip the Grad-CAM summary (and its backward pass)")
    render = parser.add_argument_group("rendering")
    render.add_argument("--scale", type=_scale, default=8.0, metavar="X|input", help="upsampling factor, or 'input' for the input size (default: 8)")
    render.add_argument("--norm", choices=NORM_MODES, default="channel", help="normalisation range per channel, per layer, or per-channel percentile clip (default: %(default)s)")
    render.add_argument("--clip", type=float, default=1.0, metavar="P", help="percent clipped at each end with --norm percentile (default: %(default)s)")
    render.add_argument("--cmap", default="viridis", help="any matplotlib colormap (default: %(default)s)")
    render.add_argument("--format", choices=IMAGE_FORMATS, default="png", help="channel and summary images: 8-bit palette PNG or JPEG (default: %(default)s)")
    render.add_argument("--channel-files", action="store_true",
                        help="one file per channel (channels/0000.png, ...) instead of the channels as tiles of one page "
                        "(channels.png; a few pages for large layers), which is much faster to write (JPEG: always files)")
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
    run.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="N",
                     help="images per forward pass (default: %(default)s; 1 gives bit-identical output whatever torch's kernels do)")
    run.add_argument("--out", type=Path, default=Path("viz-out"), metavar="DIR",
                     help="output directory; jobs go to DIR/<model>/<image>/<layer>/ and DIR/compare/<A>-vs-<B>/<image>/<layer>/ "
                     "(default: %(default)s)")
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
        channel_files=args.channel_files,
    )


def _load(name: str, weights: str, args: argparse.Namespace, display: RunProgress) -> LoadedModel:
    import torch

    from .models import build_model

    display.stage(f"building {name}" + ("" if weights == "none" else " and loading its weights"))
    torch.manual_seed(args.seed)  # random init is reproducible, so "none" vs "none" compares equal
    loaded = build_model(name, weights, num_classes=args.num_classes)
    if loaded.warning:
        _say(f"warning: {loaded.warning}")
    return loaded


def _structure(name: str, args: argparse.Namespace) -> tuple[object, object]:
    """The model's modules without weights (on torch's meta device: no memory, no initialisation)
    and its ImageNet weights entry (metadata only): enough for the checks made before building it."""
    import torch
    import torchvision

    from .models import _check_name, imagenet_weights_entry

    _check_name(name)
    kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
    with torch.device("meta"):
        skeleton = torchvision.models.get_model(name, weights=None, **kwargs)
    return skeleton, imagenet_weights_entry(name)


def _input_size(args: argparse.Namespace, skeleton: object, entry: object) -> int:
    """--input-size, checked against a model with a fixed input size, or that size, or the original's 384."""
    from .tokens import check_input_size, model_input_size

    needed = model_input_size(skeleton, entry)
    if args.input_size is not None:
        check_input_size(skeleton, (args.input_size, args.input_size), entry)
        return args.input_size
    return needed[0] if needed else DEFAULT_INPUT_SIZE


def _list_layers(args: argparse.Namespace, display: RunProgress) -> int:
    import torch

    from .layers import describe_layers, format_layers

    skeleton, entry = _structure(args.model, args)
    side = _input_size(args, skeleton, entry)
    loaded = _load(args.model, "none", args, display)
    preprocess = _preprocess(args, loaded, side)
    size = preprocess.input_size or (side, side)
    display.stage("probing the layers")
    infos = describe_layers(loaded.model, torch.zeros(1, 3, *size))
    display.close()
    print(f"layers of {args.model} (output shapes for a 1x3x{size[0]}x{size[1]} input; '-': cannot be drawn):")
    for line in format_layers(infos):
        print(f"  {line}")
    default = next((info.name for info in infos if info.default), None)
    print(f"default layer: {default}" if default else "no default layer: no spatial map the prediction depends on")
    return 0


def _preprocess(args: argparse.Namespace, loaded: LoadedModel, side: int) -> Preprocess:
    """The original script's preprocessing, or the transforms of the model's ImageNet weights."""
    from .inputs import original_preprocess, weights_preprocess
    from .models import imagenet_weights_entry

    if args.preprocess == "weights":
        return weights_preprocess(loaded.tv_weights or imagenet_weights_entry(loaded.name))
    return original_preprocess(side)


def _layers(args: argparse.Namespace) -> list[str] | None:
    """The layer names of every ``--layer`` (comma-separated too; an empty name is an error), or
    None for the model's default layer."""
    if args.layer is None:
        return None
    names = []
    for item in args.layer:
        for name in item.split(","):
            if not name.strip():
                raise VizError(f"--layer {item!r} holds an empty layer name (give names such as layer4 or layer3,layer4)")
            names.append(name.strip())
    return names


def _check_out_dir(out: Path) -> None:
    """--out can be created and written: its nearest existing ancestor is a writable directory."""
    existing = next(p for p in (out, *out.parents) if p.exists())
    if existing == out and not out.is_dir():
        raise VizError(f"output directory {out} exists and is not a directory")
    if not existing.is_dir():
        raise VizError(f"cannot create output directory {out}: Not a directory ({existing})")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise VizError(f"cannot write to output directory {out}: Permission denied")


def _check_before_building(args: argparse.Namespace, options: RenderOptions, layers: list[str] | None) -> tuple[list[Path], int]:
    """Every check that needs no weights, before the model is built: the options, the images,
    --out, the input size, and with --layer the layers, their maps, the output estimate and
    existing output. Returns the images and the input side."""
    from .api import (
        COMPARE_DIR, check_device, check_limits, check_not_there, compare_estimate, image_names, job_directories, render_estimate,
    )
    from .inputs import check_readable, collect_images, default_image
    from .layers import resolve_layer

    check_device(args.device)
    if args.batch_size < 1:
        raise VizError(f"--batch-size must be >= 1, got {args.batch_size}")
    classes = args.num_classes or 1000
    if args.target_class is not None and not 0 <= args.target_class < classes:
        raise VizError(f"--target-class {args.target_class} is out of range: the model has {classes} classes (0..{classes - 1})")
    if args.no_gradcam and args.target_class is not None:
        raise VizError("--target-class is for Grad-CAM: leave out --no-gradcam or --target-class")
    paths = collect_images(args.images or [default_image()])
    for path in paths:
        check_readable(path)
    _check_out_dir(args.out)
    skeleton, entry = _structure(args.model, args)
    side = _input_size(args, skeleton, entry)
    if args.compare is not None:
        _structure(args.compare_model or args.model, args)
    if layers is None:
        return paths, side
    canonical = list(dict.fromkeys(resolve_layer(skeleton, layer) for layer in layers))
    shapes = _map_shapes(skeleton, canonical, side)
    if shapes is not None and args.preprocess == "original":
        first = image_names(paths)[0]
        if args.compare is None:
            estimates = [render_estimate(f"{first}/{layer}", shape, options, (side, side)) for layer, shape in shapes.items()]
        else:
            estimates = [compare_estimate(f"{COMPARE_DIR}/{first}/{layer}", shape, options) for layer, shape in shapes.items()]
        check_limits(estimates, Limits(args.max_output_gb, args.max_memory_gb), repeats=len(paths))
    jobs = job_directories(image_names(paths), canonical, *_model_dir(args), compare=args.compare is not None)
    check_not_there(args.out, list(jobs.values()), args.overwrite)
    return paths, side


def _map_shapes(skeleton: object, layers: list[str], side: int) -> dict[str, tuple[int, int, int]] | None:
    """(C, h, w) maps of each layer from a forward pass on the meta device (shapes only, no
    arithmetic); a :class:`VizError` for a layer that cannot be drawn or runs several times.
    None where the model cannot run on the meta device (the checks then come after the build)."""
    import torch

    from .gradcam import layer_maps

    try:
        found = layer_maps(skeleton, torch.zeros(1, 3, side, side, device="meta"), layers, cams=False, keep_device=True)
    except VizError:  # a layer that cannot be drawn or runs several times: the user's to fix
        raise
    except Exception:  # an operation without a meta kernel: the same checks come later, on the real model
        return None
    return {layer: tuple(maps.shape[1:]) for layer, maps in found.maps.items()}


def _model_dir(args: argparse.Namespace) -> tuple[str]:
    """The folder that names the model(s) under --out, so that runs of several models share it."""
    if args.compare is None:
        return (args.model,)
    return (f"{args.model}-vs-{args.compare_model or args.model}",)


class _CheckpointProgress(RunProgress):
    """The run's display, each of whose calls is also a checkpoint of a signal received during the
    run (:func:`viz.staging.check_interrupted`): the writer threads count every band and file they
    write, so Ctrl-C stops the rendering within a band instead of at the end of the batch."""

    def stage(self, text: str) -> None:
        staging.check_interrupted()
        super().stage(text)

    def expect(self, count: int) -> None:
        staging.check_interrupted()
        super().expect(count)

    def update(self, count: int) -> None:
        staging.check_interrupted()
        super().update(count)


def run(args: argparse.Namespace) -> int:
    """Carry out a parsed command line; raises :class:`VizError` for the user's mistakes."""
    from .api import VizWarning
    from .render import warm_up_in_background

    display = _CheckpointProgress(False if args.quiet else None, "ch" if args.compare is None else "job")
    previous = warnings.showwarning

    def show(message, category, *rest):  # our warnings as one line each, others as Python prints them
        if issubclass(category, VizWarning):
            _say(f"warning: {message}")
        else:
            previous(message, category, *rest)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", VizWarning)
            warnings.showwarning = show
            if args.list_layers:
                display.stage("importing torch")
                return _list_layers(args, display)
            options = _options(args)
            layers = _layers(args)
            display.stage("importing torch, checking")
            images, side = _check_before_building(args, options, layers)
            warm_up = warm_up_in_background()
            try:
                label, preprocess, results = _jobs(args, options, layers, images, side, display)
            finally:
                warm_up.join()  # never leave the process with numba half-loaded on another thread
    finally:
        display.close()
    if not args.quiet:
        from .paths import printable

        print(printable(f"model: {label}"))
        print(f"preprocessing: {preprocess.description}")
        for result in results:
            print(printable(f"{result.image} {result.layer} -> {result.directory}/: {_listing(result.manifest)}"))
        index = args.out / "index.html"
        if index.is_file():
            print(printable(f"open: {index.resolve().as_uri()}"))
    return 0


def _listing(manifest: dict) -> str:
    """The files of a job in a line: each set of channel images (a one-image job's ``atlas`` or ``files``,
    a compare's ``atlas_a``/``files_a``, ...) summed up, then the other files."""
    channels = manifest.get("channels") or {}
    parts, summed = [], set()
    for key, value in channels.items():
        if key == "atlas" or key.startswith("atlas_"):
            (h, w), pages = value["tile"], value["pages"]
            where = pages[0] if len(pages) == 1 else f"{len(pages)} pages {pages[0]} .. {pages[-1]}"
            parts.append(f"{value['count']} channels as {h}x{w} tiles of {where}")
            summed.update(pages)
        elif (key == "files" or key.startswith("files_")) and value:
            parts.append(f"{len(value)} channel images ({value[0]} .. {value[-1]})")
            summed.update(value)
    return ", ".join([*parts, *(f for f in manifest["files"] if f not in summed)])


def _jobs(args: argparse.Namespace, options: RenderOptions, layers: list[str] | None, images: list[Path], side: int,
          display: RunProgress) -> tuple[str, Preprocess, list[LayerOutput]]:
    """Load the model(s) and run the visualisation or the comparison."""
    from .api import compare, visualize

    limits = Limits(args.max_output_gb, args.max_memory_gb)
    loaded = _load(args.model, args.weights, args, display)
    preprocess = _preprocess(args, loaded, side)
    label = f"{loaded.name}, weights: {loaded.weights_description}"
    (model_dir,) = _model_dir(args)
    if args.compare is None:
        trained = loaded.tv_weights is not None and loaded.weights_description.startswith("ImageNet")
        results = visualize(
            loaded.model, images, layers, args.out, options=options, preprocess=preprocess,
            device=args.device, overwrite=args.overwrite, progress=display,
            context={"tool": PROG, "model": loaded.name, "weights": loaded.weights_description}, limits=limits,
            batch_size=args.batch_size, gradcam=not args.no_gradcam, target_class=args.target_class,
            class_names=loaded.tv_weights.meta.get("categories") if trained else None, model_dir=model_dir,
        )
        return label, preprocess, results
    other = _load(args.compare_model or args.model, args.compare, args, display)
    other_label = f"{other.name}, weights: {other.weights_description}"
    results = compare(
        loaded.model, other.model, images, layers, args.out, labels=(label, other_label),
        options=options, preprocess=preprocess, device=args.device, overwrite=args.overwrite,
        context={"tool": PROG}, limits=limits, progress=display, batch_size=args.batch_size, model_dir=model_dir,
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
        with _signals_as_exceptions():
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


#: The exception each handled signal raises.
SIGNAL_EXCEPTIONS = {signal.SIGINT: KeyboardInterrupt, signal.SIGTERM: Terminated}


class _signals_as_exceptions:
    """Within the block, SIGINT raises KeyboardInterrupt and SIGTERM :class:`Terminated` in the
    main thread, and each is recorded for the run's checkpoints (:func:`viz.staging.interrupt`),
    which raise it again where Python swallowed it (its "Exception ignored" report is not
    printed); the end of the block is the last of them. A signal ignored when the process
    started stays ignored, as Python leaves it (a shell starts its background jobs, ``cmd &``,
    with SIGINT ignored), and one handled outside Python is left alone. The previous handlers
    come back after the block. In another thread the block does nothing."""

    def __enter__(self) -> None:
        # Signal handlers live in the main thread only; a run in another thread leaves alone the
        # signal recorded for the main thread's run (the interruption is one per process).
        self._main = threading.current_thread() is threading.main_thread()
        self._previous = {}
        if self._main:
            staging.forget_interruption()
            self._previous = {signum: signal.signal(signum, self._interrupt)
                              for signum in SIGNAL_EXCEPTIONS if signal.getsignal(signum) not in (signal.SIG_IGN, None)}
        self._unraisable = sys.unraisablehook
        if self._previous:
            sys.unraisablehook = self._report_unraisable

    @staticmethod
    def _interrupt(signum: int, _frame: object) -> None:
        staging.interrupt(SIGNAL_EXCEPTIONS[signum])

    def _report_unraisable(self, unraisable: object) -> None:
        if unraisable.exc_type not in SIGNAL_EXCEPTIONS.values():  # ours is raised again at a checkpoint
            self._unraisable(unraisable)

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        if self._previous:
            sys.unraisablehook = self._unraisable
        if not self._main:
            return
        try:
            if exc_type is None:  # the last checkpoint: a signal swallowed after the commit still stops the run
                staging.check_interrupted()
        finally:
            staging.forget_interruption()
