"""Dataset scan: which images drive each channel, streamed over any number of images.

``scan(model, images, layers)`` runs the model over a whole image set in batches and keeps,
per layer and channel, only running statistics and the top-N images (with the map that put
each there): memory is bounded by ``channels x top`` maps, whatever the image count.

Determinism: an image's index is its position in the collected list; a top-N is ordered by
score, ties by lower image index; each image's per-channel sum is taken in float64 and the
sums are added image by image in index order. So a scan gives the same top lists whatever the
batch size, DataLoader worker count or Dask partitioning, and the same statistics up to float
rounding (bit-identical in-process; a Dask tree merge adds partial sums in another order).

``fastinterp-viz scan IMAGES...`` (:func:`main`) writes the on-disk format (``docs/scan.md``):
``OUT/scan.json``, ``OUT/<layer>/stats.npz`` and ``OUT/<layer>/strips/<channel>.png``, with a
resumable state ``OUT/.scan-state/`` while it runs (in-process or on Dask, either resuming the
other). Dask is imported only for a cluster scan.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import io
import json
import math
import os
import sys
import threading
import uuid
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NoReturn, Sequence

import numpy as np

from .errors import VizError
from .inputs import IMAGE_SUFFIXES, Preprocess
from .paths import inside, printable, unique_components, write_atomically, write_file
from .staging import remove_stale_staging_dirs

FORMAT_NAME = "fastinterp-scan"
FORMAT_VERSION = 1
SCAN_FILE = "scan.json"
STATS_FILE = "stats.npz"
STRIPS_DIR = "strips"
#: The resumable state, hidden in the output directory while a scan runs: a header (what the
#: scan is) and one file per saved range of images (a piece).
STATE_DIR = ".scan-state"
STATE_HEADER = "state.json"
STATE_FORMAT = "fastinterp-scan-state"
STATE_VERSION = 2
PIECE_PREFIX = "piece-"
TEMP_PREFIX = ".scan-tmp-"
#: A file with one of these suffixes lists image paths, one per line.
LIST_SUFFIXES = (".txt", ".lst", ".list")
DEFAULT_TOP = 9
DEFAULT_BATCH_SIZE = 32
DEFAULT_INPUT_SIZE = 224
DEFAULT_OUT_DIR = "scan-out"
#: Batches between two saves of the resumable state.
DEFAULT_CHECKPOINT_EVERY = 8
#: Seconds to wait for a Dask scheduler before giving up.
CONNECT_TIMEOUT_S = 10.0
#: Times a Dask partition is retried after an exception (a dead worker is rescheduled anyway).
PARTITION_RETRIES = 2
#: Partitions per Dask worker thread, for load balancing.
PARTITIONS_PER_THREAD = 4
#: Strip tiles: the crop around the maximum, as a fraction of the input's height and width.
CROP_FRACTION = 0.5
STRIP_GAP_PX = 2
STRIP_ALPHA = 0.5
STRIP_CMAP = "viridis"
#: Channels whose strips are drawn together (their top images decoded once, held meanwhile).
STRIP_CHANNEL_CHUNK = 64
#: Memory for decoded images kept between chunks of strips.
STRIP_CACHE_MB = 256


# --------------------------------------------------------------------------- paths

def layer_dirs(layers: Sequence[str]) -> dict[str, str]:
    """Layer name -> its directory name in the output: safe, unique, never a name the scan
    itself uses (a layer named ``scan.json`` gets ``scan.json-2``)."""
    reserved = [SCAN_FILE, STATE_DIR]
    return dict(zip(layers, unique_components([*reserved, *layers])[len(reserved):]))


def _remove(root: Path, path: Path) -> None:
    """Delete a file or directory tree that lies inside ``root`` (a symlink itself, not its target)."""
    import shutil

    if path.is_symlink() or not path.is_dir():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(inside(root, path))


def _write_atomically(root: Path, relative: str, write: Callable[[Any], None]) -> None:
    """Write ``root/relative``, proven inside ``root``, with :func:`viz.paths.write_atomically`
    (durable: the resumable state must survive a crash)."""
    write_atomically(inside(root, root / relative), write, prefix=TEMP_PREFIX, durable=True)


# --------------------------------------------------------------------------- images

class ImageList(list):
    """Image paths as :func:`collect_scan_images` found them; :func:`scan` takes it as it is."""


def collect_scan_images(sources: Sequence[Path | str]) -> ImageList:
    """Image paths from files, folders (recursively, sorted) and list files (``.txt``: one path a
    line, ``#`` comments, relative to the list's folder). A listed path is not checked here: one
    that cannot be read is skipped by the scan. The index of a path in the result is its image index."""
    images = ImageList()
    for raw in sources:
        source = Path(raw)
        if source.is_dir():
            for folder, subfolders, files in os.walk(source):
                subfolders.sort()
                images.extend(str(Path(folder) / f) for f in sorted(files) if Path(f).suffix.lower() in IMAGE_SUFFIXES)
        elif source.is_file() and source.suffix.lower() in LIST_SUFFIXES:
            try:
                lines = source.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise VizError(f"cannot read image list {source}: {exc}") from None
            for line in lines:
                entry = line.strip()
                if entry and not entry.startswith("#"):
                    images.append(str(source.parent / entry) if not Path(entry).is_absolute() else entry)
        elif source.is_file():
            images.append(str(source))
        else:
            raise VizError(f"cannot read {source}: no such file or folder")
    if not images:
        raise VizError(f"no images found in {', '.join(map(str, sources)) or 'the arguments'} ({', '.join(IMAGE_SUFFIXES)})")
    return images


class _ImageDataset:
    """Images ``paths[start:stop]`` decoded and preprocessed; an unreadable one gives its reason."""

    def __init__(self, paths: Sequence[str], start: int, stop: int, preprocess: Preprocess) -> None:
        self.paths, self.start, self.stop, self.preprocess = paths, start, stop, preprocess

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, offset: int) -> tuple[int, Any, str | None]:
        from .inputs import load_image

        index = self.start + offset
        try:
            return index, self.preprocess.transform(load_image(Path(self.paths[index]))), None
        except VizError as exc:
            return index, None, str(exc)
        except Exception as exc:  # a decoder's own error on a damaged file: skip it, never fatal
            return index, None, f"cannot read image {self.paths[index]}: {type(exc).__name__}: {exc}".splitlines()[0]


@dataclass
class _Batch:
    indices: np.ndarray  # image indices of the decoded images, ascending
    pixels: Any  # (B, 3, H, W) tensor, or None when no image of the batch could be read
    skipped: list[tuple[int, str]]
    count: int  # images in the batch, skipped ones included
    sizes: list[tuple[int, ...]] = field(default_factory=list)  # several: the images cannot be stacked


def _collate(items: list[tuple[int, Any, str | None]]) -> _Batch:
    """A batch of the readable images (raising here would reach the user wrapped in a DataLoader
    traceback: a problem is recorded for the main process instead)."""
    import torch

    good = [(i, t) for i, t, _ in items if t is not None]
    skipped = [(i, reason) for i, t, reason in items if t is None]
    sizes = sorted({tuple(t.shape) for _, t in good})
    pixels = torch.stack([t for _, t in good]) if len(sizes) == 1 else None
    return _Batch(np.array([i for i, _ in good], np.int64), pixels, skipped, len(items), sizes)


def _batches(paths: Sequence[str], start: int, stop: int, preprocess: Preprocess, batch_size: int, workers: int) -> Iterator[_Batch]:
    """Batches of ``paths[start:stop]`` in order, decoded by ``workers`` DataLoader processes."""
    from torch.utils.data import DataLoader

    loader = DataLoader(
        _ImageDataset(paths, start, stop, preprocess), batch_size=batch_size, shuffle=False,
        num_workers=workers, collate_fn=_collate, prefetch_factor=2 if workers else None,
    )
    yield from loader


# --------------------------------------------------------------------------- reduction

@dataclass
class LayerScan:
    """One layer's scan: per-channel statistics and top images (see the module docstring).

    ``top_maps`` (C, top, h, w) float32 holds the channel's map for each top image: present
    after a scan (for the strips), absent (None) after :func:`load_scan`.
    """

    mean: np.ndarray  # (C,) float64
    max: np.ndarray  # (C,) float32
    active: np.ndarray  # (C,) float64, fraction of positions > 0
    top_images: np.ndarray  # (C, top) int64, -1 pad
    top_scores: np.ndarray  # (C, top) float32, -inf pad
    top_where: np.ndarray  # (C, top, 2) int64 (y, x), -1 pad
    map_size: tuple[int, int]
    top_maps: np.ndarray | None = field(default=None, repr=False)

    @property
    def channels(self) -> int:
        return len(self.mean)


@dataclass
class _LayerState:
    """Running state of one layer: exact integer counts, float64 sums, top-N with maps."""

    sum: np.ndarray  # (C,) float64
    positive: np.ndarray  # (C,) int64
    positions: int  # positions seen per channel (images x h x w)
    max: np.ndarray  # (C,) float32
    top_scores: np.ndarray
    top_images: np.ndarray
    top_where: np.ndarray
    top_maps: np.ndarray

    @classmethod
    def empty(cls, channels: int, map_size: tuple[int, int], top: int) -> _LayerState:
        return cls(
            np.zeros(channels, np.float64), np.zeros(channels, np.int64), 0, np.full(channels, -np.inf, np.float32),
            np.full((channels, top), -np.inf, np.float32), np.full((channels, top), -1, np.int64),
            np.full((channels, top, 2), -1, np.int64), np.zeros((channels, top, *map_size), np.float32),
        )

    def add_batch(self, indices: np.ndarray, features: np.ndarray) -> None:
        """Fold a batch's (B, C, h, w) float32 maps of images ``indices`` (ascending) in."""
        batch, channels, height, width = features.shape
        flat = features.reshape(batch, channels, height * width)
        for image_sums in flat.sum(axis=2, dtype=np.float64):  # image by image: a fixed order
            self.sum += image_sums
        self.positive += np.count_nonzero(flat > 0, axis=2).sum(axis=0)
        self.positions += batch * height * width
        where = flat.argmax(axis=2)  # first position of the maximum
        scores = np.take_along_axis(flat, where[..., None], axis=2)[..., 0]
        np.maximum(self.max, scores.max(axis=0), out=self.max)
        self._merge_top(
            scores.T, np.broadcast_to(indices, (channels, batch)),
            np.stack([where.T // width, where.T % width], axis=-1), features.transpose(1, 0, 2, 3),
        )

    def merge(self, other: _LayerState) -> None:
        """Fold another partial state (of other images) in."""
        self.sum += other.sum
        self.positive += other.positive
        self.positions += other.positions
        np.maximum(self.max, other.max, out=self.max)
        self._merge_top(other.top_scores, other.top_images, other.top_where, other.top_maps)

    def _merge_top(self, scores: np.ndarray, images: np.ndarray, where: np.ndarray, maps: np.ndarray) -> None:
        """Keep the best ``top`` of the current and the candidate entries: by score, then image index."""
        top = self.top_scores.shape[1]
        all_scores = np.concatenate([self.top_scores, scores], axis=1)
        all_images = np.concatenate([self.top_images, images], axis=1)
        ties = np.where(all_images < 0, np.iinfo(np.int64).max, all_images)  # padding last
        order = np.lexsort((ties, -all_scores), axis=-1)[:, :top]
        self.top_scores = np.take_along_axis(all_scores, order, axis=1)
        self.top_images = np.take_along_axis(all_images, order, axis=1)
        self.top_where = np.take_along_axis(np.concatenate([self.top_where, where], axis=1), order[..., None], axis=1)
        self.top_maps = np.take_along_axis(np.concatenate([self.top_maps, maps], axis=1), order[..., None, None], axis=1)

    def result(self) -> LayerScan:
        positions = max(self.positions, 1)
        return LayerScan(
            self.sum / positions, self.max.copy(), self.positive / positions, self.top_images.copy(),
            self.top_scores.copy(), self.top_where.copy(), tuple(self.top_maps.shape[2:]), self.top_maps.copy(),
        )


@dataclass
class _ScanState:
    """Partial result over some images: per-layer states and the images skipped."""

    layers: dict[str, _LayerState] = field(default_factory=dict)
    skipped: list[tuple[int, str]] = field(default_factory=list)
    input_size: tuple[int, int] | None = None

    def add(self, batch: _Batch, maps: dict[str, Any], top: int) -> None:
        """Fold a batch in: ``maps`` holds each layer's (N, C, h, w) tensor of maps."""
        self.skipped.extend(batch.skipped)
        for layer, layer_maps in maps.items():
            features = np.ascontiguousarray(layer_maps.float().cpu().numpy())
            if layer not in self.layers:
                self.layers[layer] = _LayerState.empty(features.shape[1], features.shape[2:], top)
            expected = self.layers[layer].top_maps.shape
            if (features.shape[1], *features.shape[2:]) != (expected[0], *expected[2:]):
                raise VizError(f"layer {layer!r} gave maps of {features.shape[1:]} after {(expected[0], *expected[2:])}: "
                               "images must reach the model at one size")
            self.layers[layer].add_batch(batch.indices, features)
        if self.input_size is None:
            self.input_size = tuple(batch.pixels.shape[2:])

    def merge(self, other: _ScanState) -> _ScanState:
        for layer, state in other.layers.items():
            if layer in self.layers:
                self.layers[layer].merge(state)
            else:
                self.layers[layer] = copy.deepcopy(state)
        self.skipped = sorted(self.skipped + other.skipped)
        self.input_size = self.input_size or other.input_size
        return self


@dataclass(frozen=True)
class _ScanJob:
    """Everything a process needs to reduce a range of images, picklable for Dask."""

    layers: tuple[str, ...]
    top: int
    batch_size: int
    device: str
    preprocess: Preprocess


def _reduce_range(
    model: Any, paths: Sequence[str], start: int, stop: int, job: _ScanJob, workers: int,
    state: _ScanState | None = None, on_batch: Callable[[_ScanState, int, int], None] | None = None,
) -> _ScanState:
    """Fold images ``paths[start:stop]`` into ``state``; ``on_batch(state, next_index, count)`` after each batch.

    Each layer's output is read as maps by :mod:`viz.tokens`, as the one-image ``viz`` draws
    it: conv maps as they are, (N, H, W, C) stages permuted, (N, T, D) tokens on their patch
    grid; anything else is a one-line :class:`VizError`."""
    from .layers import capture_features
    from .tokens import MapReader

    reader = MapReader(model)
    state = state or _ScanState()
    position = start
    for batch in _batches(paths, start, stop, job.preprocess, job.batch_size, workers):
        if len(batch.sizes) > 1:
            raise VizError(f"images have different sizes after preprocessing ({batch.sizes}); use a preprocessing with a fixed size")
        if batch.pixels is not None:
            captured = capture_features(model, batch.pixels.to(job.device), job.layers)
            input_hw = tuple(batch.pixels.shape[2:])
            state.add(batch, {layer: reader.maps(captured[layer], layer, input_hw) for layer in job.layers}, job.top)
        else:
            state.skipped.extend(batch.skipped)
        position += batch.count
        if on_batch is not None:
            on_batch(state, position, batch.count)
    return state


# --------------------------------------------------------------------------- result

@dataclass
class ScanResult:
    """A scan: ``images`` (index = image index), ``skipped`` [{path, reason}], ``layers[name]``."""

    images: list[str]
    skipped: list[dict[str, str]]
    layers: dict[str, LayerScan]
    model: str
    weights: str
    input_size: tuple[int, int]
    top: int
    complete: bool = True
    preprocess: Preprocess | None = field(default=None, repr=False)

    def save(self, out_dir: Path | str, *, overwrite: bool = False, progress: bool | None = None) -> Path:
        """Write the on-disk format into ``out_dir`` (``docs/scan.md``); strips need ``top_maps``
        and ``preprocess`` (a fresh scan has both). Layer directories are written whole or not at
        all; an existing scan is replaced only with ``overwrite``. The explorer page
        ``out_dir/index.html`` is refreshed. Returns ``out_dir``."""
        from .staging import OutputStaging

        out = Path(out_dir)
        if (out / SCAN_FILE).exists() and not overwrite:
            raise VizError(f"{out / SCAN_FILE} already exists; pass --overwrite to replace it, or choose another --out")
        dirs = layer_dirs(list(self.layers))
        with OutputStaging(out, overwrite=overwrite) as staging:
            for layer, scan in self.layers.items():
                inside(out, out / dirs[layer])
                target = staging.claim(dirs[layer])
                _write_stats(target / STATS_FILE, scan)
                if scan.top_maps is not None and self.preprocess is not None:
                    (target / STRIPS_DIR).mkdir()
                    _write_strips(target / STRIPS_DIR, scan, self.images, self.preprocess, f"strips {layer}", progress)
        _write_atomically(out, SCAN_FILE, lambda f: f.write(json.dumps(self._header(dirs), indent=1).encode()))
        from .api import _write_index

        _write_index(out)  # the explorer page (index.html) shows the scan's channels
        return out

    def _header(self, dirs: dict[str, str]) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME, "version": FORMAT_VERSION, "model": self.model, "weights": self.weights,
            "input_size": list(self.input_size), "top": self.top, "images": self.images, "skipped": self.skipped,
            "layers": {layer: {"dir": dirs[layer], "channels": s.channels, "map_size": list(s.map_size)}
                       for layer, s in self.layers.items()},
            "complete": self.complete,
        }


def _write_stats(path: Path, scan: LayerScan) -> None:
    encoded = io.BytesIO()
    np.savez(encoded, mean=scan.mean, max=scan.max, active=scan.active, top_images=scan.top_images,
             top_scores=scan.top_scores, top_where=scan.top_where)
    write_file(path, encoded.getbuffer())


def load_scan(out_dir: Path | str) -> ScanResult:
    """A scan written by :meth:`ScanResult.save` (without ``top_maps``: the strips are on disk)."""
    out = Path(out_dir)
    try:
        header = json.loads((out / SCAN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VizError(f"{out} holds no readable scan ({SCAN_FILE}: {exc})") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME or header.get("version") != FORMAT_VERSION:
        raise VizError(f"{out / SCAN_FILE} is not a {FORMAT_NAME} version {FORMAT_VERSION} file")
    layers = {}
    for layer, info in header["layers"].items():
        try:  # the file's own word for where its layers are is not trusted
            stats_path = inside(out, out / str(info["dir"]) / STATS_FILE)
        except VizError:
            raise VizError(f"{out / SCAN_FILE} puts layer {printable(layer)!r} outside the scan: {printable(str(info['dir']))!r}") from None
        try:
            with np.load(stats_path, allow_pickle=False) as stats:
                arrays = {key: stats[key] for key in ("mean", "max", "active", "top_images", "top_scores", "top_where")}
        except (OSError, KeyError, ValueError) as exc:
            raise VizError(f"cannot read {stats_path}: {exc}") from None
        layers[layer] = LayerScan(**arrays, map_size=tuple(info["map_size"]))
    return ScanResult(
        list(header["images"]), list(header["skipped"]), layers, header["model"], header["weights"],
        tuple(header["input_size"]), int(header["top"]), bool(header["complete"]),
    )


# --------------------------------------------------------------------------- strips

def _display_image(path: str, preprocess: Preprocess) -> np.ndarray:
    from .inputs import load_image

    return preprocess.display_image(preprocess(load_image(Path(path))))


def _crop_box(center: tuple[float, float], size: tuple[int, int], crop: tuple[int, int]) -> tuple[slice, slice]:
    """The ``crop`` window centred on ``center`` (pixels), shifted to lie inside an image of ``size``."""
    box = []
    for c, n, k in zip(center, size, crop):
        first = min(max(0, int(round(c - k / 2))), n - k)
        box.append(slice(first, first + k))
    return box[0], box[1]


def _strip(scan: LayerScan, channel: int, shown: dict[int, np.ndarray], lut: np.ndarray) -> np.ndarray:
    """One channel's strip: its top images best first, each cropped around its maximum and
    overlaid with the channel's map (upsampled by fastinterp), all on one colour scale."""
    from .render import palette_indices, upsample

    ranks = [r for r in range(scan.top_images.shape[1]) if scan.top_images[channel, r] >= 0]
    height, width = next(iter(shown.values())).shape[:2]
    crop = (max(1, round(height * CROP_FRACTION)), max(1, round(width * CROP_FRACTION)))
    maps = upsample(np.ascontiguousarray(scan.top_maps[channel, ranks]), (height, width))
    colours = None if not ranks else palette_indices(maps, maps.min(), maps.max())
    strip = np.full((crop[0], len(ranks) * (crop[1] + STRIP_GAP_PX) - STRIP_GAP_PX if ranks else 1, 3), 255, np.uint8)
    h, w = scan.map_size
    for slot, rank in enumerate(ranks):
        y, x = scan.top_where[channel, rank]
        rows, cols = _crop_box(((y + 0.5) * height / h, (x + 0.5) * width / w), (height, width), crop)
        image = shown[int(scan.top_images[channel, rank])][rows, cols].astype(np.float32)
        blended = (1.0 - STRIP_ALPHA) * image + STRIP_ALPHA * lut[colours[slot][rows, cols]]
        left = slot * (crop[1] + STRIP_GAP_PX)
        strip[:, left : left + crop[1]] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return strip


def _write_strips(target: Path, scan: LayerScan, images: Sequence[str], preprocess: Preprocess, description: str,
                  progress: bool | None) -> None:
    """``target/<channel>.png`` for every channel, a chunk of channels at a time. The images a
    chunk needs are decoded in threads and kept, least recently used dropped first, up to
    :data:`STRIP_CACHE_MB` (a chunk's own images are always kept while it is drawn): channels
    share top images, and decoding dominates otherwise."""
    from collections import OrderedDict

    from PIL import Image
    from tqdm import tqdm

    from .render import PNG_COMPRESS_LEVEL, colormap_lut, default_threads

    lut = colormap_lut(STRIP_CMAP).astype(np.float32)
    digits = max(4, len(str(scan.channels - 1)))
    cache: OrderedDict[int, np.ndarray] = OrderedDict()

    def write(channel: int) -> None:
        encoded = io.BytesIO()
        Image.fromarray(_strip(scan, channel, cache, lut)).save(encoded, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
        path = target / f"{channel:0{digits}d}.png"
        inside(target, path)
        write_file(path, encoded.getbuffer())  # the name, not its resolution: a symlink there is refused

    with ThreadPoolExecutor(default_threads()) as pool, \
            tqdm(total=scan.channels, desc=description, unit="ch", disable=None if progress is None else not progress) as bar:
        for first in range(0, scan.channels, STRIP_CHANNEL_CHUNK):
            channels = range(first, min(first + STRIP_CHANNEL_CHUNK, scan.channels))
            wanted = sorted({int(i) for i in scan.top_images[channels.start : channels.stop].ravel() if i >= 0})
            missing = [i for i in wanted if i not in cache]
            cache.update(zip(missing, pool.map(lambda i: _display_image(images[i], preprocess), missing)))
            for i in wanted:
                cache.move_to_end(i)
            if cache:
                limit = max(len(wanted), int(STRIP_CACHE_MB * 2**20 // next(iter(cache.values())).nbytes))
                while len(cache) > limit:
                    cache.popitem(last=False)
                for _ in pool.map(write, channels):
                    bar.update()


# --------------------------------------------------------------------------- resumable state

def model_digest(model: Any) -> str:
    """A digest of the model's class, parameter names, shapes, dtypes and values."""
    import torch

    digest = hashlib.blake2b(type(model).__qualname__.encode(), digest_size=16)
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _fingerprint(model_name: str, weights: str, digest: str, layers: Sequence[str], top: int, images: Sequence[str],
                 preprocess: Preprocess) -> dict[str, Any]:
    """What a resumed scan must share with the interrupted one."""
    listing = hashlib.blake2b("\n".join(images).encode("utf-8", "surrogateescape"), digest_size=16).hexdigest()
    return {"model": f"{model_name} ({weights}) {digest}", "layers": list(layers), "top": top,
            "images": f"{len(images)} images, list digest {listing}", "preprocessing": preprocess.description}


def _check_same_scan(saved: dict[str, Any], current: dict[str, Any], out: Path) -> None:
    differ = [key for key in current if saved.get(key) != current[key]]
    if differ:
        raise VizError(f"--resume: the scan in {out} differs in {', '.join(differ)} "
                       f"(saved {'; '.join(f'{k}: {saved.get(k)}' for k in differ)}); use --overwrite to start a new scan")


@dataclass
class _Piece:
    """The partial state of the consecutive images ``start:stop``."""

    start: int
    stop: int
    state: _ScanState


def _gaps(pieces: Sequence[_Piece], total: int) -> list[tuple[int, int]]:
    """The ranges of images ``0:total`` that no piece covers, in order (``pieces``: sorted, disjoint)."""
    gaps, position = [], 0
    for piece in pieces:
        if piece.start > position:
            gaps.append((position, piece.start))
        position = piece.stop
    return gaps + ([(position, total)] if position < total else [])


def _partitions(gaps: Sequence[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    """The gaps cut at the multiples of ``size``: a resumed cluster scan reduces exactly the
    partitions that the interrupted one had not saved, so the merge tree is the same."""
    bounds = []
    for first, stop in gaps:
        while first < stop:
            end = min(stop, (first // size + 1) * size)
            bounds.append((first, end))
            first = end
    return bounds


def _fold_right(states: Sequence[_ScanState]) -> _ScanState:
    """``states[0]`` merged with (``states[1]`` merged with (...)); consumes them."""
    combined = states[-1] if states else _ScanState()
    for left in reversed(states[:-1]):
        combined = left.merge(combined)
    return combined


def _merged_copy(states: Sequence[_ScanState]) -> _ScanState:
    """All ``states`` merged, none of them changed (a single one is returned as it is)."""
    return states[0] if len(states) == 1 else _fold_right(copy.deepcopy(list(states)))


class _OrderedFold:
    """Partial states of consecutive image ranges, added in any order, merged in index order
    along a binary tree whose shape depends only on the number of ranges (a binary counter:
    two subtrees of one height merge as soon as both exist). So the float sums add up in one
    order whichever run or worker computed which range. Holds O(log n) merged states, plus the
    states that wait for an earlier range."""

    def __init__(self, starts: Iterable[int]) -> None:
        self._order = sorted(starts)
        self._next = 0
        self._waiting: dict[int, _ScanState] = {}
        self._stack: list[tuple[int, _ScanState]] = []  # (height, merged subtree)

    def add(self, start: int, state: _ScanState) -> None:
        """Take ``state`` (of the range from ``start``) over: later ranges are merged into it."""
        self._waiting[start] = state
        while self._next < len(self._order) and self._order[self._next] in self._waiting:
            merged, height = self._waiting.pop(self._order[self._next]), 0
            self._next += 1
            while self._stack and self._stack[-1][0] == height:
                merged, height = self._stack.pop()[1].merge(merged), height + 1
            self._stack.append((height, merged))

    def states(self) -> list[_ScanState]:
        """What was added so far, as few states (in index order)."""
        return [state for _, state in self._stack] + [self._waiting[start] for start in sorted(self._waiting)]

    def result(self) -> _ScanState:
        """Every range's states merged (all of them must have been added)."""
        assert self._next == len(self._order), "a range is missing"
        return _fold_right(self.states())


def _piece_name(start: int, stop: int) -> str:
    return f"{PIECE_PREFIX}{start:012d}-{stop:012d}.npz"


_LAYER_ARRAYS = ("sum", "positive", "max", "top_scores", "top_images", "top_where", "top_maps")


class _Checkpoint:
    """The resumable state of a scan in ``out/.scan-state``: ``state.json`` (the scan's
    fingerprint, to refuse resuming another scan, and the Dask partition size) and one
    ``piece-START-STOP.npz`` per saved range of images (NumPy arrays and a JSON header, read
    without pickle). Every file is written atomically, so a kill leaves whole files; an
    in-process scan grows its piece (the new file first, then the old one removed: a kill in
    between leaves both, and the longer wins), a cluster scan saves each partition as it
    arrives. Also keeps ``out/scan.json`` and the ``stats.npz`` up to date with the scan so
    far (``"complete": false``, no strips)."""

    def __init__(self, out: Path, fingerprint: dict[str, Any], paths: list[str], job: _ScanJob, name: str, weights: str) -> None:
        self.out, self.fingerprint = out, fingerprint
        self.folder = out / STATE_DIR
        self.partition_size: int | None = None
        self._partial = (paths, job, name, weights)
        self._saved: dict[int, int] = {}  # start -> stop of the piece files on disk

    def start(self) -> list[_Piece]:
        """A new state (replacing an old one): no piece yet."""
        self.out.mkdir(parents=True, exist_ok=True)
        if self.folder.exists() or self.folder.is_symlink():
            _remove(self.out, self.folder)
        inside(self.out, self.folder).mkdir()
        self._write_header()
        return []

    def resume(self) -> list[_Piece]:
        """The saved pieces (sorted, disjoint) of the same scan; a one-line refusal for another scan."""
        inside(self.out, self.folder)  # a symlink out of ``out`` must not take the state's reads, writes and deletes there
        try:
            header = json.loads((self.folder / STATE_HEADER).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise VizError(f"--resume: {self.out} holds no interrupted scan ({STATE_DIR}/{STATE_HEADER} not found)") from None
        except (OSError, ValueError) as exc:
            raise VizError(f"cannot read the saved scan state {self.folder / STATE_HEADER}: {exc}") from None
        if not isinstance(header, dict) or header.get("format") != STATE_FORMAT or header.get("version") != STATE_VERSION:
            raise VizError(f"{self.folder / STATE_HEADER} is not a {STATE_FORMAT} version {STATE_VERSION} file")
        _check_same_scan(header.get("fingerprint") or {}, self.fingerprint, self.out)
        self.partition_size = header.get("partition_size")
        for leftover in self.folder.glob(TEMP_PREFIX + "*"):  # of a killed run: ours, by name
            _remove(self.folder, leftover)
        kept: list[_Piece] = []
        loaded = sorted((self._load(path) for path in self.folder.glob(PIECE_PREFIX + "*.npz")), key=lambda p: (p.start, -p.stop))
        for piece in loaded:
            if kept and piece.start < kept[-1].stop:  # an older, shorter file of a grown piece
                (self.folder / _piece_name(piece.start, piece.stop)).unlink()
            else:
                kept.append(piece)
        self._saved = {piece.start: piece.stop for piece in kept}
        return kept

    def _load(self, path: Path) -> _Piece:
        images = len(self._partial[0])
        try:
            with np.load(path, allow_pickle=False) as saved:
                meta = json.loads(saved["meta"].tobytes())
                start, stop = int(meta["start"]), int(meta["stop"])
                if path.name != _piece_name(start, stop) or not 0 <= start < stop <= images:
                    raise ValueError(f"it covers images {start}:{stop} of {images}")
                state = _ScanState(skipped=[(int(i), str(r)) for i, r in meta["skipped"]],
                                   input_size=tuple(meta["input_size"]) if meta["input_size"] else None)
                for n, layer in enumerate(meta["layers"]):
                    fields = {key: saved[f"{n}.{key}"] for key in _LAYER_ARRAYS}
                    state.layers[layer] = _LayerState(**fields, positions=int(saved[f"{n}.positions"]))
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise VizError(f"cannot read the saved scan state {path}: {exc}; use --overwrite to start a new scan") from None
        return _Piece(start, stop, state)

    def _write_header(self) -> None:
        header = {"format": STATE_FORMAT, "version": STATE_VERSION, "fingerprint": self.fingerprint,
                  "partition_size": self.partition_size}
        _write_atomically(self.folder, STATE_HEADER, lambda f: f.write(json.dumps(header, indent=1).encode()))

    def use_partition_size(self, size: int) -> None:
        """Record the cluster scan's partition size: a resume without one takes it again."""
        if size != self.partition_size:
            self.partition_size = size
            self._write_header()

    def save(self, piece: _Piece, scan_so_far: _ScanState) -> None:
        """Save ``piece`` (replacing its shorter file, if any), then the partial view of ``scan_so_far``."""
        state = piece.state
        meta = {"start": piece.start, "stop": piece.stop, "skipped": state.skipped, "input_size": state.input_size,
                "layers": list(state.layers)}
        arrays = {"meta": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
        for n, layer_state in enumerate(state.layers.values()):
            arrays.update((f"{n}.{key}", getattr(layer_state, key)) for key in _LAYER_ARRAYS)
            arrays[f"{n}.positions"] = np.array(layer_state.positions, np.int64)
        _write_atomically(self.folder, _piece_name(piece.start, piece.stop), lambda f: np.savez(f, **arrays))
        shorter = self._saved.get(piece.start)
        self._saved[piece.start] = piece.stop
        if shorter is not None and shorter != piece.stop:
            (self.folder / _piece_name(piece.start, shorter)).unlink(missing_ok=True)
        if scan_so_far.layers:  # a partial scan a reader can already open
            _result(scan_so_far, *self._partial, complete=False).save(self.out, overwrite=True, progress=False)


# --------------------------------------------------------------------------- scan

def scan(
    model: Any,
    images: Sequence[Path | str],
    layers: Sequence[str],
    top: int = DEFAULT_TOP,
    batch_size: int = DEFAULT_BATCH_SIZE,
    device: str = "cpu",
    client: Any = None,
    *,
    preprocess: Preprocess | None = None,
    workers: int = 0,
    partition_size: int | None = None,
    checkpoint_dir: Path | str | None = None,
    checkpoint_every: int = DEFAULT_CHECKPOINT_EVERY,
    resume: bool = False,
    model_name: str | None = None,
    weights: str = "",
    progress: bool | None = None,
) -> ScanResult:
    """Scan ``images`` (files, folders, ``.txt`` lists, or an :class:`ImageList`) through ``model`` and keep, for each channel
    of ``layers``: mean, max and fraction of positive positions, and the ``top`` images by their
    spatial maximum (where it is, and the map, for the strips). Token layers ((N, T, D) ViT
    blocks) and channels-last stages (Swin) are read as maps as the one-image ``viz`` draws them.

    In-process (``client=None``): batches of ``batch_size`` decoded by ``workers`` DataLoader
    processes (0: in this process), the model on ``device``. With a ``distributed.Client``: the
    list is split into partitions of ``partition_size`` images reduced on the cluster's workers
    (the model shipped once to each, moved there to ``device``) and merged in a tree; the
    result is the same. ``checkpoint_dir``: save a resumable state there (in-process: every
    ``checkpoint_every`` batches; on a cluster: each partition as it arrives); ``resume=True``
    continues from it, in-process or on a cluster whichever saved it. Unreadable images are
    skipped and listed in ``result.skipped``; ``preprocess`` defaults to the original script's at 224 px.
    """
    from .api import check_device
    from .inputs import original_preprocess
    from .layers import resolve_layer
    from .tokens import check_input_size

    if client is None:  # a cluster's workers check their own device
        check_device(device)
    if top < 1 or batch_size < 1 or workers < 0 or checkpoint_every < 1 or (partition_size is not None and partition_size < 1):
        raise VizError("top, batch size, checkpoint interval and partition size must be >= 1 and workers >= 0")
    if resume and checkpoint_dir is None:
        raise VizError("resume=True needs the checkpoint_dir of the interrupted scan")
    preprocess = preprocess or original_preprocess(DEFAULT_INPUT_SIZE)
    if preprocess.input_size is not None:
        check_input_size(model, preprocess.input_size)  # a ViT's fixed size: one line, not the model's assertion
    paths = images if isinstance(images, ImageList) else collect_scan_images(images)
    canonical = tuple(dict.fromkeys(resolve_layer(model, layer) for layer in layers))
    if not canonical:
        raise VizError("no layer given")
    job = _ScanJob(canonical, top, batch_size, device, preprocess)
    name = model_name or type(model).__name__
    checkpoint, pieces = None, []
    if checkpoint_dir is not None:
        fingerprint = _fingerprint(name, weights, model_digest(model), job.layers, job.top, paths, job.preprocess)
        checkpoint = _Checkpoint(Path(checkpoint_dir), fingerprint, paths, job, name, weights)
        pieces = checkpoint.resume() if resume else checkpoint.start()
    if client is None:
        state = _scan_here(model.to(device).eval(), paths, job, workers, pieces, checkpoint, checkpoint_every, progress)
    else:  # the model goes to the device in each worker, never moved here
        state = _scan_on_cluster(client, model, paths, job, pieces, partition_size, checkpoint, progress)
    if not state.layers:
        first = state.skipped[0] if state.skipped else (0, "")
        raise VizError(f"none of the {len(paths)} images could be read (first: {printable(first[1])})")
    return _result(state, paths, job, name, weights, complete=True)


def _result(state: _ScanState, paths: list[str], job: _ScanJob, name: str, weights: str, *, complete: bool) -> ScanResult:
    return ScanResult(
        paths, [{"path": paths[i], "reason": reason} for i, reason in state.skipped],
        {layer: state.layers[layer].result() for layer in job.layers if layer in state.layers}, name, weights,
        state.input_size, job.top, complete, preprocess=job.preprocess if complete else None,
    )


def _progress_bar(total: int, initial: int, enabled: bool | None) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="scan", unit="img", disable=None if enabled is None else not enabled)


def _merge_in_order(pieces: Sequence[_Piece]) -> _ScanState:
    fold = _OrderedFold(piece.start for piece in pieces)
    for piece in pieces:
        fold.add(piece.start, piece.state)
    return fold.result()


def _scan_here(model: Any, paths: list[str], job: _ScanJob, workers: int, pieces: list[_Piece],
               checkpoint: _Checkpoint | None, checkpoint_every: int, progress: bool | None) -> _ScanState:
    """The in-process scan of the images no saved piece covers. Each gap continues the piece
    that ends where it starts, so a resumed in-process scan is the uninterrupted one, bit for
    bit; the piece is saved every ``checkpoint_every`` batches and at the end of the gap."""
    pieces = list(pieces)
    with _progress_bar(len(paths), sum(p.stop - p.start for p in pieces), progress) as bar:
        for first, stop in _gaps(pieces, len(paths)):
            piece = next((p for p in pieces if p.stop == first), None)
            if piece is None:
                piece = _Piece(first, first, _ScanState())
                pieces = sorted([*pieces, piece], key=lambda p: p.start)
            batches_done = 0

            def on_batch(_state: _ScanState, next_index: int, count: int, piece: _Piece = piece, stop: int = stop) -> None:
                nonlocal batches_done
                bar.update(count)
                piece.stop = next_index
                batches_done += 1
                if checkpoint is not None and (batches_done % checkpoint_every == 0 or next_index == stop):
                    checkpoint.save(piece, _merged_copy([p.state for p in pieces]))

            _reduce_range(model, paths, first, stop, job, workers, piece.state, on_batch)
    return _merge_in_order(pieces)


#: Models prepared in a Dask worker, one per thread, by scan token: hooks are per module, so
#: two threads must never run the same module object.
_WORKER_MODELS = threading.local()


def _worker_model(token: str, pickled_model: bytes, device: str) -> Any:
    """The scan's model in this worker thread, unpickled once (from the client's own bytes)."""
    import pickle

    import torch

    cache = _WORKER_MODELS.__dict__.setdefault("models", {})
    if token not in cache:
        cache.clear()  # one scan's model at a time
        # One torch thread per Dask thread, as Dask sets OMP_NUM_THREADS=1: a worker's
        # parallelism is its thread count, and more would oversubscribe the cores.
        torch.set_num_threads(1)
        cache[token] = pickle.loads(pickled_model).to(device).eval()
    return cache[token]


def _as_given(value: Any) -> Any:
    """A Dask task that returns its argument: data the cluster can recompute if a worker dies."""
    return value


def _reduce_partition(token: str, pickled_model: bytes, paths: Sequence[str], start: int, stop: int, job: _ScanJob) -> _ScanState:
    """A Dask task: images ``paths[start:stop]`` reduced to a partial state in the worker."""
    from distributed import get_worker

    from .api import check_device

    try:
        check_device(job.device)
    except VizError as exc:
        raise VizError(f"{exc} (on the Dask worker {get_worker().address})") from None
    return _reduce_range(_worker_model(token, pickled_model, job.device), paths, start, stop, job, workers=0)


def _scan_on_cluster(client: Any, model: Any, paths: list[str], job: _ScanJob, pieces: list[_Piece],
                     partition_size: int | None, checkpoint: _Checkpoint | None, progress: bool | None) -> _ScanState:
    """The partitions no saved piece covers, reduced on the workers; each partial state comes
    back as it is done, is saved (with a checkpoint) and merged with the others in index order."""
    import pickle

    from concurrent.futures import CancelledError

    from distributed import KilledWorker, as_completed

    threads = max(1, sum(client.nthreads().values()))
    size = (partition_size or (checkpoint.partition_size if checkpoint else None)
            or max(job.batch_size, math.ceil(len(paths) / (PARTITIONS_PER_THREAD * threads))))
    if checkpoint is not None:
        checkpoint.use_partition_size(size)
    token = uuid.uuid4().hex
    bounds = {f"scan-partition-{token}-{first}": (first, stop) for first, stop in _partitions(_gaps(pieces, len(paths)), size)}
    fold = _OrderedFold([piece.start for piece in pieces] + [first for first, _ in bounds.values()])
    for piece in pieces:
        fold.add(piece.start, piece.state)
    done = sum(piece.stop - piece.start for piece in pieces)
    if not bounds:
        return fold.result()
    # The model travels as plain pickle bytes: Dask's own torch serialisation of a module
    # loses its hook dictionaries' types, and bytes unpickle into one private copy per thread.
    pickled = pickle.dumps(copy.deepcopy(model).cpu())
    # Submitted, not scattered: a scattered value whose only holder dies is lost, and every task
    # that needs it is cancelled ("already forgotten"); a task's result is recomputed instead.
    with warnings.catch_warnings():  # the model's bytes are the point of this task, sent once
        warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
        model_future = client.submit(_as_given, pickled, pure=False)
    paths_future = client.submit(_as_given, list(paths), pure=False)
    partials = as_completed([
        client.submit(_reduce_partition, token, model_future, paths_future, first, stop, job,
                      retries=PARTITION_RETRIES, pure=False, key=key)
        for key, (first, stop) in bounds.items()
    ])
    try:
        with _progress_bar(len(paths), done, progress) as bar:
            for future in partials:
                if future.status not in ("finished", "error"):  # cancelled: the scheduler went away
                    raise _lost_cluster(f"a partition's task was {future.status}", done, len(paths), checkpoint)
                # One result fetched at a time, here (a task's error is raised): with_results=True
                # gathers results concurrently, and a scan hung with its last partition finished
                # in the client but never handed over (distributed 2026.8; see dask/distributed#7331).
                try:
                    state = future.result()
                except (CancelledError, OSError, TimeoutError):
                    if future.status == "error":  # the task's own error
                        raise
                    # Finished, then the cluster went away before its result was fetched: the
                    # fetch is cancelled or its connection closed, which was a traceback.
                    raise _lost_cluster("a finished partition's result was lost", done, len(paths), checkpoint) from None
                first, stop = bounds[future.key]
                if checkpoint is not None:  # saved before the fold merges later ranges into it
                    checkpoint.save(_Piece(first, stop, state), _merged_copy([*fold.states(), state]))
                fold.add(first, state)
                done += stop - first
                bar.update(stop - first)
    except KilledWorker as exc:  # the same partition killed worker after worker
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "KilledWorker"
        raise VizError(f"the Dask cluster lost a worker on every try of a task ({reason}); see the workers' logs") from None
    return fold.result()


def _lost_cluster(reason: str, done: int, total: int, checkpoint: _Checkpoint | None) -> VizError:
    """The one line for a cluster that went away mid-scan, saying what is saved."""
    saved = (f"the {done} images done are saved in {checkpoint.out}: the same scan with --resume continues it"
             if checkpoint is not None else "nothing is saved: give a checkpoint directory to make a cluster scan resumable")
    return VizError(f"lost the Dask cluster after {done} of {total} images ({reason}); {saved}")


# --------------------------------------------------------------------------- command line

class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, as the one-image command's (``--help`` has the usage), exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """``fastinterp-viz scan``'s options; the model options are those of the one-image command."""
    from .models import DEFAULT_MODEL

    parser = _Parser(
        prog="fastinterp-viz scan",
        description="Scan a dataset: per channel of each layer, its mean, max and active fraction and its top "
        "images (a strip of crops around the maximum with the channel's map overlaid). Resumable; runs on a Dask "
        "cluster with --scheduler.",
    )
    parser.add_argument("images", nargs="+", type=Path, help="image files, folders (recursive) or .txt files listing image paths")
    model = parser.add_argument_group("model")
    model.add_argument("--model", default=DEFAULT_MODEL, help="torchvision classification model (default: %(default)s)")
    model.add_argument("--weights", default="imagenet", metavar="imagenet|none|PATH", help="as for fastinterp-viz (default: %(default)s)")
    model.add_argument("--num-classes", type=int, metavar="N", help="classifier size of a checkpoint not trained on ImageNet")
    model.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the random initialisation (default: %(default)s)")
    model.add_argument("--preprocess", choices=("original", "weights"), default="original",
                       help="original: resize to --input-size bicubic + ImageNet mean/std; weights: the weights' transforms (default: %(default)s)")
    model.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE, metavar="N", help="side of the original preprocessing (default: %(default)s)")
    model.add_argument("--layer", action="append", metavar="NAME",
                       help="dotted layer name; repeat or comma-separate (default: the model's default layer, layer4 for ResNets)")
    run = parser.add_argument_group("scan")
    run.add_argument("--top", type=int, default=DEFAULT_TOP, metavar="N", help="top images kept per channel (default: %(default)s)")
    run.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, metavar="B", help="images per forward pass (default: %(default)s)")
    run.add_argument("--workers", type=int, default=min(4, len(os.sched_getaffinity(0))), metavar="K",
                     help="image-decoding processes; 0 decodes in this process (default: %(default)s)")
    run.add_argument("--device", default="cpu", metavar="cpu|cuda", help="where the model runs (default: %(default)s)")
    run.add_argument("--scheduler", metavar="tcp://HOST:PORT|local:N",
                     help="run on a Dask cluster, or on a LocalCluster of N single-thread worker processes")
    run.add_argument("--scheduler-timeout", type=float, default=CONNECT_TIMEOUT_S, metavar="S",
                     help="seconds to wait for the scheduler to answer (default: %(default)s)")
    run.add_argument("--partition-size", type=int, metavar="N", help="images per Dask task (default: about 4 per worker thread)")
    run.add_argument("--checkpoint-every", type=int, default=DEFAULT_CHECKPOINT_EVERY, metavar="N",
                     help="batches between saves of the resumable state in-process; a cluster scan saves each partition "
                     "(default: %(default)s)")
    run.add_argument("--resume", action="store_true",
                     help="continue the interrupted scan in --out, in-process or with --scheduler (whichever saved it)")
    run.add_argument("--out", type=Path, default=Path(DEFAULT_OUT_DIR), metavar="DIR", help="output directory (default: %(default)s)")
    run.add_argument("--overwrite", action="store_true", help="replace a scan already in --out")
    run.add_argument("--quiet", action="store_true", help="no progress bar, no summary")
    return parser


def _check_out_dir(args: argparse.Namespace) -> None:
    """Refuse to touch an existing scan unless asked, and a resume with nothing to resume."""
    out = args.out
    if out.exists() and not out.is_dir():
        raise VizError(f"output directory {out} exists and is not a directory")
    has_scan, has_state = (out / SCAN_FILE).exists(), (out / STATE_DIR / STATE_HEADER).exists()
    if args.resume:
        if args.overwrite:
            raise VizError("--resume and --overwrite contradict each other: choose one")
        if not has_state:
            done = has_scan and load_scan(out).complete
            raise VizError(f"--resume: the scan in {out} is complete, nothing to resume" if done
                           else f"--resume: {out} holds no interrupted scan ({STATE_DIR}/{STATE_HEADER} not found)")
    elif (has_scan or has_state) and not args.overwrite:
        raise VizError(f"{out} already holds a scan; pass --resume to continue it or --overwrite to replace it")


def _connect(address: str, timeout: float = CONNECT_TIMEOUT_S) -> tuple[Any, Any]:
    """A Dask client for ``tcp://host:port`` (answering within ``timeout`` seconds) or ``local:N``."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise VizError("--scheduler needs Dask: pip install 'fastinterp[dask]'") from None
    import logging

    if address.startswith("local:"):
        count = address.removeprefix("local:")
        if not count.isdigit() or int(count) < 1:
            raise VizError(f"--scheduler local:N needs a worker count N >= 1, got {address!r}")
        cluster = LocalCluster(n_workers=int(count), threads_per_worker=1, processes=True, dashboard_address=":0",
                               silence_logs=logging.ERROR)
        return Client(cluster), cluster
    try:
        return Client(address, timeout=timeout), None
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise VizError(f"cannot reach the Dask scheduler {address} within {timeout:g} s: {reason}") from None


def _load_model(args: argparse.Namespace) -> Any:
    """The torchvision classifier of ``--model`` / ``--weights``, random init seeded by ``--seed``."""
    import torch

    from .models import build_model

    torch.manual_seed(args.seed)  # the same random init in every run, so --resume accepts it
    loaded = build_model(args.model, args.weights, num_classes=args.num_classes)
    if loaded.warning:
        print(f"fastinterp-viz scan: warning: {printable(loaded.warning)}", file=sys.stderr)
    return loaded


def _preprocess(args: argparse.Namespace, loaded: Any) -> Preprocess:
    from .inputs import original_preprocess, weights_preprocess
    from .models import imagenet_weights_entry

    if args.preprocess == "weights":
        return weights_preprocess(loaded.tv_weights or imagenet_weights_entry(loaded.name))
    return original_preprocess(args.input_size)


def _layers(args: argparse.Namespace, model: Any, preprocess: Preprocess) -> list[str]:
    """The ``--layer`` names (repeated or comma-separated), or the model's default layer."""
    import torch

    from .layers import default_layer

    if args.layer is None:
        side = preprocess.input_size or (args.input_size, args.input_size)
        return [default_layer(model, torch.zeros(1, 3, *side))]
    names = [name.strip() for item in args.layer for name in item.split(",")]
    if not all(names):
        raise VizError(f"--layer {','.join(args.layer)!r} holds an empty layer name (give names such as layer4 or layer3,layer4)")
    return names


def run(args: argparse.Namespace) -> ScanResult:
    """Carry out a parsed ``scan`` command line; raises :class:`VizError` for the user's mistakes."""
    from .api import check_device
    from .tokens import check_input_size

    if args.top < 1 or args.batch_size < 1 or args.workers < 0 or args.checkpoint_every < 1:
        raise VizError("--top, --batch-size and --checkpoint-every must be >= 1, --workers >= 0")
    if not args.scheduler:  # a cluster's workers check their own device
        check_device(args.device)
    _check_out_dir(args)
    paths = collect_scan_images(args.images)  # fail on a bad argument before loading the model
    loaded = _load_model(args)
    preprocess = _preprocess(args, loaded)
    if preprocess.input_size is not None:  # before the default layer's forward pass: one line, not the model's assertion
        check_input_size(loaded.model, preprocess.input_size, loaded.tv_weights)
    layers = _layers(args, loaded.model, preprocess)
    if not args.resume and not args.overwrite:
        from .layers import resolve_layer

        for name in layer_dirs(list(dict.fromkeys(resolve_layer(loaded.model, layer) for layer in layers))).values():
            if (args.out / name).exists():
                raise VizError(f"{args.out / name} already exists; pass --overwrite to replace it, or choose another --out")
    options = dict(preprocess=preprocess, model_name=loaded.name, weights=loaded.weights_description,
                   progress=False if args.quiet else None)
    client, cluster = _connect(args.scheduler, args.scheduler_timeout) if args.scheduler else (None, None)
    try:
        args.out.mkdir(parents=True, exist_ok=True)
        for leftover in args.out.glob(TEMP_PREFIX + "*"):
            _remove(args.out, leftover)  # of a killed run: ours, by name
        # Staging folders: only dead runs' (their lock free); a live run's is left alone.
        remove_stale_staging_dirs(args.out)
        result = scan(loaded.model, paths, layers, args.top, args.batch_size, args.device, client, workers=args.workers,
                      partition_size=args.partition_size, checkpoint_dir=args.out, checkpoint_every=args.checkpoint_every,
                      resume=args.resume, **options)
    finally:
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()
    result.save(args.out, overwrite=True, progress=options["progress"])  # _check_out_dir allowed it
    _remove(args.out, args.out / STATE_DIR)
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """``fastinterp-viz scan``: returns the exit status (2 with a one-line message for bad input)."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        result = run(args)
    except VizError as exc:
        print(f"fastinterp-viz scan: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fastinterp-viz scan: interrupted; the same command with --resume continues from what was saved", file=sys.stderr)
        return 130
    if not args.quiet:
        read = len(result.images) - len(result.skipped)
        print(f"scanned {read} images ({len(result.skipped)} skipped) with {result.model}, weights: {result.weights}")
        for layer, scan_of_layer in result.layers.items():
            print(f"{layer}: {scan_of_layer.channels} channels of {scan_of_layer.map_size[0]}x{scan_of_layer.map_size[1]}")
        print(f"-> {args.out}/{SCAN_FILE}")
        index = args.out / "index.html"
        if index.is_file():
            print(printable(f"open: {index.resolve().as_uri()}"))
    return 0
