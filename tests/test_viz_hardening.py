"""viz under hostile input (issue 12, items 1-6): file names, planted checkpoints, signals,
runaway outputs, checkpoint errors and empty layer lists. Everything is real: real files,
real torch.save checkpoints, real subprocesses and real signals."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from viz import cli, models

REPO = Path(__file__).resolve().parents[1]
#: A fast job: ResNet-18 at 64x64 with random weights, layer1 (64 channels of 16x16), no upsampling.
FAST = ["--model", "resnet18", "--weights", "none", "--input-size", "64", "--layer", "layer1", "--scale", "1", "--top-k", "2"]


def run_cli(*argv: str | Path) -> tuple[int, str, str]:
    """main() in this process; returns (exit code, stdout, stderr)."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def files_under(root: Path) -> dict[str, bytes]:
    """Every file (and symlink target name) under root, by relative path."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            found[str(path.relative_to(root))] = os.readlink(path).encode()
        elif path.is_file():
            found[str(path.relative_to(root))] = path.read_bytes()
    return found


def save_photo(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path, format="PNG")
    return path


def assert_one_line_error(code: int, stdout: str, stderr: str, *fragments: str) -> None:
    assert (code, stdout) == (2, ""), stderr
    assert stderr.startswith("fastinterp-viz: error: ") and stderr.count("\n") == 1, stderr
    assert "\x1b" not in stderr and "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in stderr, stderr


# --- 1. path traversal and deletion through image names ------------------------------------------

HOSTILE_STEMS = ["..", ".", "layer1", "CON", "nul", "a\x01b", "tab\there", "back\\slash", "x" * 240, "Cat", "cat",
                 ".viz-partial-mine", "trailing. ", "\u202eevil"]


def test_hostile_image_names_write_only_inside_out_even_with_overwrite(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for seed, stem in enumerate(HOSTILE_STEMS):
        save_photo(images / f"{stem}.png", seed)
    # What '...png' (stem '..') reached before: OUT/../layer1, replaced with --overwrite.
    (tmp_path / "layer1").mkdir()
    (tmp_path / "layer1" / "keep.txt").write_text("the user's file")
    outside_before = {k: v for k, v in files_under(tmp_path).items() if not k.startswith("out")}
    out = tmp_path / "out"
    code, _, err = run_cli(images, *FAST, "--out", out, "--overwrite", "--quiet")
    assert code == 0, err
    assert {k: v for k, v in files_under(tmp_path).items() if not k.startswith("out")} == outside_before
    assert sorted(os.listdir(out)) == [".explorer", "index.html", "resnet18"]
    out = out / "resnet18"  # the model's folder holds one folder per image
    jobs = sorted(os.listdir(out))
    assert len(jobs) == len(HOSTILE_STEMS)  # one directory per image: none merged, none lost
    assert len({job.casefold() for job in jobs}) == len(jobs)
    for job in jobs:
        assert job not in (".", "..") and not job.startswith(".") and len(job.encode()) <= 130
        assert not any(unicodedata.category(c).startswith("C") or c in '/\\<>:"|?*' for c in job)
        assert os.listdir(out / job) == ["layer1"]
        assert json.loads((out / job / "layer1" / "manifest.json").read_text())["channels"]["atlas"]["count"] == 64
        assert (out / job / "layer1" / "channels.png").is_file()
    # A second run with --overwrite replaces exactly the same directories, still only inside.
    code, _, err = run_cli(images, *FAST, "--out", out.parent, "--overwrite", "--quiet", "--cmap", "magma")
    assert code == 0, err
    assert sorted(os.listdir(out)) == jobs
    assert {k: v for k, v in files_under(tmp_path).items() if not k.startswith("out")} == outside_before


@pytest.mark.parametrize("link", ["image directory", "job directory"])
def test_a_symlink_inside_out_pointing_outside_is_never_followed(tmp_path, link):
    save_photo(tmp_path / "cat.png")
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "layer1").mkdir(parents=True)
    (elsewhere / "layer1" / "keep.txt").write_text("the user's file")
    out = tmp_path / "out"
    if link == "image directory":  # out/resnet18/cat -> elsewhere: the job would write elsewhere/layer1
        (out / "resnet18").mkdir(parents=True)
        (out / "resnet18" / "cat").symlink_to(elsewhere)
    else:  # out/resnet18/cat/layer1 -> elsewhere/layer1
        (out / "resnet18" / "cat").mkdir(parents=True)
        (out / "resnet18" / "cat" / "layer1").symlink_to(elsewhere / "layer1")
    before = files_under(tmp_path)
    code, stdout, err = run_cli(tmp_path / "cat.png", *FAST, "--out", out, "--overwrite")
    assert_one_line_error(code, stdout, err, "refusing to write", "outside the output directory")
    assert files_under(tmp_path) == before


def test_safe_names_helpers_examples():
    from viz.paths import safe_component, unique_components

    assert [safe_component(n) for n in ["..", ".", "", "a/b", "CON", "con.txt", "x\x00y", "ok name", "layer4.1"]] == [
        "__", "_", "_", "a_b", "CON_", "con_.txt", "x_y", "ok name", "layer4.1"]
    assert unique_components(["cat", "cat", "cat-2", "Cat"]) == ["cat", "cat-3", "cat-2", "Cat-4"]
    long_a, long_b = safe_component("a" * 300 + "1"), safe_component("a" * 300 + "2")
    assert long_a != long_b and len(long_a.encode()) <= 120


@given(st.text(max_size=300))
def test_safe_component_is_one_harmless_name(name):
    from viz.paths import MAX_COMPONENT_BYTES, safe_component

    safe = safe_component(name)
    assert safe and safe not in (".", "..") and not safe.startswith(".") and not safe.endswith((".", " "))
    assert not any(c in '/\\<>:"|?*' or unicodedata.category(c).startswith("C") for c in safe)
    assert len(safe.encode("utf-8")) <= MAX_COMPONENT_BYTES
    assert safe_component(safe) == safe
    assert Path(safe).name == safe and len(Path(safe).parts) == 1


@given(st.lists(st.sampled_from(["a", "A", "a-2", "..", ".", "a/", "con", "CON", ""]), max_size=12))
def test_unique_components_are_distinct_even_ignoring_case(names):
    from viz.paths import unique_components

    unique = unique_components(names)
    assert len(unique) == len(names) and len({u.casefold() for u in unique}) == len(names)


def test_inside_resolves_symlinks(tmp_path):
    from viz.errors import VizError
    from viz.paths import inside

    (tmp_path / "out" / "real").mkdir(parents=True)
    (tmp_path / "out" / "link").symlink_to(tmp_path)
    assert inside(tmp_path / "out", "real/new") == (tmp_path / "out" / "real" / "new").resolve()
    for escaping in ["../x", "link/x", tmp_path / "x", "real/../../x"]:
        with pytest.raises(VizError, match="outside the output directory"):
            inside(tmp_path / "out", escaping)


# --- 6. empty layer lists ------------------------------------------------------------------------

@pytest.mark.parametrize("layer", ["", ",", " , ", "layer1,,layer2"])
def test_empty_layer_names_are_an_error(tmp_path, layer):
    save_photo(tmp_path / "cat.png")
    argv = [a for a in FAST if a not in ("--layer", "layer1")]
    code, stdout, err = run_cli(tmp_path / "cat.png", *argv, "--layer", layer, "--out", tmp_path / "out")
    assert_one_line_error(code, stdout, err, "--layer")
    assert not (tmp_path / "out").exists()


# --- 2. no code execution through the ImageNet weights cache -------------------------------------

class PlantedPayload:
    """Unpickling this creates the marker file: what a planted checkpoint could do."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def plant(path: Path, marker: Path, how: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"conv1.weight": PlantedPayload(marker)}
    if how == "torch.save":
        torch.save(payload, path)
    else:
        with open(path, "wb") as file:
            pickle.dump(payload, file)
    return path


def test_the_planted_payload_does_run_under_an_unrestricted_load(tmp_path):
    """The payload is real: torch.load(weights_only=False), as torchvision's get_state_dict, runs it."""
    marker = tmp_path / "code-ran"
    torch.load(plant(tmp_path / "evil.pth", marker, "torch.save"), weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_a_planted_imagenet_cache_file_never_runs(tmp_path, monkeypatch, how):
    save_photo(tmp_path / "cat.png")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    entry = torchvision.models.get_model_weights("resnet18").DEFAULT
    cached = tmp_path / "torch-home" / "hub" / "checkpoints" / entry.url.rsplit("/", 1)[-1]
    marker = tmp_path / "code-ran"
    plant(cached, marker, how)
    code, stdout, err = run_cli(tmp_path / "cat.png", *[a for a in FAST if a not in ("--weights", "none")],
                                "--weights", "imagenet", "--out", tmp_path / "out")
    assert not marker.exists()
    assert_one_line_error(code, stdout, err, f"cached ImageNet weights {cached}", "delete the file")
    assert not (tmp_path / "out").exists()


class CachedEntry:
    """A weights entry whose URL names a file we control, so the cache hit is tested for real."""

    def __init__(self, name: str) -> None:
        self.url = f"https://weights.invalid/models/{name}"


def _named_by_hash(path: Path) -> Path:
    import hashlib

    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    return path.rename(path.with_name(f"model-{digest}.pth"))


def test_a_cache_file_with_the_right_hash_is_still_loaded_weights_only(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    checkpoints = tmp_path / "hub" / "checkpoints"
    marker = tmp_path / "code-ran"
    evil = _named_by_hash(plant(checkpoints / "evil.pth", marker, "torch.save"))
    with pytest.raises(models.VizError, match="pickled Python object"):
        models.fetch_imagenet_state_dict(CachedEntry(evil.name))
    assert not marker.exists()
    state = torchvision.models.resnet18().state_dict()
    torch.save(state, checkpoints / "good.pth")
    good = _named_by_hash(checkpoints / "good.pth")
    loaded = models.fetch_imagenet_state_dict(CachedEntry(good.name))
    assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


def test_weights_that_cannot_be_downloaded_fall_back_with_one_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty-torch-home"))
    with pytest.raises(models.WeightsUnavailable):
        models.fetch_imagenet_state_dict(CachedEntry("model-0123abcd.pth"))  # .invalid never resolves
    assert not any((tmp_path / "empty-torch-home").rglob("*.pth"))


# --- 5. checkpoint errors in our own words -------------------------------------------------------

def _whole_model(path: Path) -> None:
    torch.save(torchvision.models.resnet18(), path)


def _random_bytes(path: Path) -> None:
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())


def _truncated(path: Path) -> None:
    torch.save(torchvision.models.resnet18().state_dict(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _other_architecture(path: Path) -> None:
    torch.save(torchvision.models.mobilenet_v2().state_dict(), path)


def _planted(path: Path) -> None:
    torch.save({"conv1.weight": PlantedPayload(path.with_name("code-ran"))}, path)


CHECKPOINTS = {
    "random bytes": (_random_bytes, "not a PyTorch checkpoint"),
    "whole model": (_whole_model, "holds a pickled Python object (torchvision.models.resnet.ResNet)"),
    "truncated": (_truncated, "empty or truncated"),
    "empty": (_empty, "empty or truncated"),
    "other architecture": (_other_architecture, "does not match ResNet: missing keys: conv1.weight"),
    "planted code": (_planted, "holds a pickled Python object"),
}


@pytest.mark.parametrize("case", CHECKPOINTS)
def test_checkpoint_errors_are_one_line_in_our_words(tmp_path, case):
    write, expected = CHECKPOINTS[case]
    save_photo(tmp_path / "cat.png")
    checkpoint = tmp_path / "net.pth"
    write(checkpoint)
    argv = [a for a in FAST if a not in ("--weights", "none")]
    code, stdout, err = run_cli(tmp_path / "cat.png", *argv, "--weights", checkpoint, "--out", tmp_path / "out")
    assert_one_line_error(code, stdout, err, f"checkpoint {checkpoint}", expected)
    assert "weights_only=False" not in err and "weights_only" not in err.replace("weights_only=True", "")
    assert not (tmp_path / "code-ran").exists() and not (tmp_path / "out").exists()


# --- 4. runaway outputs --------------------------------------------------------------------------

@pytest.mark.parametrize("extra, expected", [
    ([], "would write up to 1.54e+04 GB (e.g. cat/layer1: 64 images of 480000x480000), more than --max-output-gb 4"),
    (["--max-output-gb", "1e9"], "cat/layer1 needs about 1.2e+04 GB of memory to render 480000x480000 images"),
    (["--compare", "none"], "would write up to"),
    (["--compare", "none", "--max-output-gb", "1e9"], "compare/cat/layer1 needs about"),
    (["--max-memory-gb", "0.001", "--scale", "8"], "more than the 0.001 GB allowed by --max-memory-gb"),
])
def test_runaway_jobs_are_refused_before_rendering(tmp_path, extra, expected):
    save_photo(tmp_path / "cat.png")
    argv = [a for a in FAST if a not in ("--scale", "1")]
    code, stdout, err = run_cli(tmp_path / "cat.png", *argv, "--input-size", "384", "--scale", "5000", *extra,
                                "--out", tmp_path / "out")
    assert_one_line_error(code, stdout, err, expected)
    assert not (tmp_path / "out").exists()


def test_the_output_limit_counts_every_image_and_can_be_raised(tmp_path):
    (tmp_path / "in").mkdir()
    for seed in range(3):
        save_photo(tmp_path / "in" / f"{seed}.png", seed)
    from viz.api import render_estimate
    from viz.render import RenderOptions

    per_image = render_estimate("x", (64, 16, 16), RenderOptions(scale=1, top_k=2), (64, 64)).output_bytes
    limit = 2.5 * per_image / 1e9  # room for two of the three images, not three
    code, stdout, err = run_cli(tmp_path / "in", *FAST, "--out", tmp_path / "out", "--max-output-gb", f"{limit:.9f}")
    assert_one_line_error(code, stdout, err, f"would write up to {3 * per_image / 1e9:.3g} GB")
    assert not (tmp_path / "out").exists()
    code, _, err = run_cli(tmp_path / "in", *FAST, "--out", tmp_path / "out", "--max-output-gb", f"{4 * per_image / 1e9:.9f}", "--quiet")
    assert code == 0, err


@pytest.mark.parametrize("image_format", ["png", "jpg"])
@pytest.mark.parametrize("norm", ["channel", "percentile"])
def test_the_estimate_bounds_what_is_written(tmp_path, image_format, norm):
    """Noise photos at 4x: the estimate is an upper bound of the bytes really written."""
    import viz
    from viz.api import render_estimate

    save_photo(tmp_path / "cat.png")
    options = viz.RenderOptions(scale=4, image_format=image_format, norm=norm, top_k=4)
    model = torchvision.models.resnet18().eval()
    [result] = viz.visualize(model, [tmp_path / "cat.png"], ["layer1"], tmp_path / "out", options=options,
                             preprocess=viz.original_preprocess(64))
    written = sum(p.stat().st_size for p in result.directory.rglob("*") if p.is_file())
    estimate = render_estimate("cat/layer1", result.manifest["feature_shape"], options, (64, 64)).output_bytes
    assert written <= estimate


# --- 3. interrupted runs -------------------------------------------------------------------------

#: A job that renders for seconds: 512 channels of 1050x1050 (ResNet-18 layer4 at 224, 150x).
SLOW = ["--model", "resnet18", "--weights", "none", "--input-size", "224", "--layer", "layer4", "--scale", "150",
        "--top-k", "2", "--quiet"]
#: Guards against a hung child; never an assertion on time. A child that finds numba's cache cold
#: compiles first: the one-image CLI took 83 s of CPU, 120 s at load 5-6.
PATIENCE_S = 600


def partial_dirs(out: Path) -> set[str]:
    """The staging directories in ``out`` (each with its ``.lock`` beside it while its run lives)."""
    if not out.exists():
        return set()
    return {name for name in os.listdir(out) if name.startswith(".viz-partial-") and (out / name).is_dir()}


def with_sigint(disposition: str) -> list[str]:
    """A command that runs Python with the rest of its command line and SIGINT set to
    ``disposition`` (a process keeps an ignored signal across exec)."""
    return [sys.executable, "-c", f"import os, signal, sys; signal.signal(signal.SIGINT, signal.{disposition}); "
            "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"]


#: As a terminal runs a foreground job: SIGINT at its default (Python turns it into KeyboardInterrupt).
#: A shell starts background jobs (``cmd &``) with SIGINT ignored: a test run started that way (the
#: cold CI run) made the child ignore the test's SIGINT and finish, exit 0.
FOREGROUND = with_sigint("SIG_DFL")
#: As a shell runs a background job.
BACKGROUND = with_sigint("SIG_IGN")


def start_slow_run(image: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*FOREGROUND, "-m", "viz", str(image), *SLOW, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=out.parent,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def wait_until_rendering(process: subprocess.Popen, out: Path, known: set[str] = frozenset()) -> Path:
    """The staging directory of ``process`` once channel images are being written into it."""
    deadline = time.monotonic() + PATIENCE_S
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        for name in partial_dirs(out) - known:
            layer = out / name / "resnet18" / "cat" / "layer4"
            if layer.is_dir() and any(layer.glob("channels*")):  # a page (or a channel file) is being written
                return out / name
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the run never started rendering")


@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_signal_mid_render_exits_cleanly_and_removes_the_staging_dir(tmp_path, signum, code, word):
    save_photo(tmp_path / "cat.png")
    out = tmp_path / "out"
    process = start_slow_run(tmp_path / "cat.png", out)
    try:
        staging = wait_until_rendering(process, out)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=PATIENCE_S)
    finally:
        process.kill()
    assert process.returncode == code, stderr
    assert (stdout, stderr) == ("", f"fastinterp-viz: {word} ({signum.name}); unfinished output removed\n")
    assert not staging.exists() and not out.exists()  # the run made --out, so it removed it too


#: The command line, with the model's first forward pass once the output is staged dropping an
#: object whose ``__del__`` sends the process a signal. Its handler runs inside ``__del__``, where
#: Python reports what it raises ("Exception ignored in ...") and goes on.
SIGNAL_IN_A_FINALIZER = """
import os, signal, sys, torch
from viz.cli import main
signum, out = signal.Signals[sys.argv.pop(1)], sys.argv[sys.argv.index("--out") + 1]

class SignalsWhenDropped:
    def __del__(self):
        os.kill(os.getpid(), signum)

def hook(module, inputs, output):
    if os.path.isdir(out) and any(name.startswith(".viz-partial-") for name in os.listdir(out)):
        handle.remove()
        SignalsWhenDropped()

handle = torch.nn.modules.module.register_module_forward_hook(hook)
raise SystemExit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("signum, code, word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_signal_whose_exception_python_swallows_still_stops_the_run(tmp_path, signum, code, word):
    """The signal is recorded as well as raised: the run's next checkpoint raises it again."""
    save_photo(tmp_path / "cat.png")
    out = tmp_path / "out"
    done = subprocess.run([*FOREGROUND, "-c", SIGNAL_IN_A_FINALIZER, signum.name, tmp_path / "cat.png", *FAST, "--quiet",
                           "--out", out], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                          timeout=PATIENCE_S)
    assert (done.returncode, done.stdout, done.stderr) == (code, "", f"fastinterp-viz: {word} ({signum.name}); unfinished output removed\n")
    assert not out.exists()


def test_a_sigint_ignored_from_the_start_stays_ignored(tmp_path):
    """A background job of a shell (``fastinterp-viz ... &``) is not stopped by Ctrl-C, as any program."""
    save_photo(tmp_path / "cat.png")
    out = tmp_path / "out"
    done = subprocess.run([*BACKGROUND, "-c", SIGNAL_IN_A_FINALIZER, "SIGINT", tmp_path / "cat.png", *FAST, "--quiet",
                           "--out", out], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
                          timeout=PATIENCE_S)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert (out / "resnet18" / "cat" / "layer1" / "channels.png").is_file()


def hold_staging_dir(out: Path) -> subprocess.Popen:
    """A live run of OutputStaging in another process, held open until its stdin gets a line."""
    script = (
        "import sys\n"
        "from viz.staging import OutputStaging\n"
        "with OutputStaging(sys.argv[1]) as staging:\n"
        "    staging.claim('held/layer1')\n"
        "    print('ready', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert holder.stdout.readline() == "ready\n"
    return holder


def test_the_next_run_removes_a_killed_runs_litter_and_keeps_a_live_runs(tmp_path):
    save_photo(tmp_path / "cat.png")
    save_photo(tmp_path / "dog.png", 1)
    out = tmp_path / "out"
    holder = hold_staging_dir(out)
    try:
        live = partial_dirs(out)
        assert len(live) == 1
        killed = start_slow_run(tmp_path / "cat.png", out)
        try:
            litter = wait_until_rendering(killed, out, known=live)
            killed.send_signal(signal.SIGKILL)
            killed.communicate(timeout=PATIENCE_S)
        finally:
            killed.kill()
        assert litter.exists()  # SIGKILL cannot be handled: the litter stays until the next run
        code, _, err = run_cli(tmp_path / "dog.png", *FAST, "--out", out, "--quiet")
        assert code == 0, err
        assert partial_dirs(out) == live  # the dead run's directory is gone, the live run's kept
        [name] = live
        assert os.listdir(out / name) == ["held"] and sorted(n for n in os.listdir(out) if n.startswith(".viz-")) == [
            name, f"{name}.lock"]  # the dead run's lock is gone too
    finally:
        holder.communicate("done\n", timeout=PATIENCE_S)
    assert holder.returncode == 0
    assert partial_dirs(out) == set() and sorted(os.listdir(out)) == [".explorer", "held", "index.html", "resnet18"]


def test_stale_staging_dirs_are_found_only_by_their_unlocked_lock(tmp_path):
    from viz.staging import LOCK_SUFFIX, STAGING_PREFIX, OutputStaging, remove_stale_staging_dirs

    dead = tmp_path / f"{STAGING_PREFIX}dead"
    (dead / "cat").mkdir(parents=True)
    Path(f"{dead}{LOCK_SUFFIX}").write_text("pid 1")  # nobody holds its lock
    ended = tmp_path / f"{STAGING_PREFIX}ended"
    Path(f"{ended}{LOCK_SUFFIX}").write_text("pid 2")  # a run killed after removing its directory
    no_lock = tmp_path / f"{STAGING_PREFIX}nolock"
    no_lock.mkdir()  # no lock: made on a file system without locks, or by an older version
    outside = tmp_path / "outside"
    (outside / "keep").mkdir(parents=True)
    link = tmp_path / f"{STAGING_PREFIX}link"
    link.symlink_to(outside)
    Path(f"{link}{LOCK_SUFFIX}").write_text("pid 3")
    linked_lock = tmp_path / f"{STAGING_PREFIX}linked{LOCK_SUFFIX}"
    linked_lock.symlink_to(outside / "keep")  # a lock that is a symlink is not ours
    user = tmp_path / "_viz-partial-user"  # a job directory is never named with a leading dot
    user.mkdir()
    with OutputStaging(tmp_path) as staging:
        assert sorted(staging.removed_stale) == [dead, ended, link]
        assert remove_stale_staging_dirs(tmp_path) == []  # this run's own directory is locked
    assert not dead.exists() and no_lock.is_dir() and link.is_symlink() and user.is_dir() and linked_lock.is_symlink()
    assert (outside / "keep").is_dir()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(LOCK_SUFFIX)) == [linked_lock.name]


@pytest.mark.parametrize("cleaner", ["removed it", "holds it"])
def test_a_new_lock_a_cleaning_run_takes_first_is_given_up_for_a_new_one(tmp_path, monkeypatch, cleaner):
    """Between creating its lock and locking it, a run's lock looks dead: a cleaning run that
    takes it then removes it. The run must notice and start again, not go on without a lock."""
    import fcntl
    import tempfile

    from viz import staging

    held, made, mkstemp = [], [], tempfile.mkstemp

    def mkstemp_then_a_cleaner(*args, **kwargs):
        descriptor, name = mkstemp(*args, **kwargs)
        made.append(Path(name))
        if len(made) == 1 and cleaner == "removed it":
            assert staging.remove_stale_staging_dirs(tmp_path) == [Path(name[: -len(staging.LOCK_SUFFIX)])]
        elif len(made) == 1:
            held.append(os.open(name, os.O_RDONLY))
            fcntl.flock(held[0], fcntl.LOCK_EX | fcntl.LOCK_NB)
        return descriptor, name

    monkeypatch.setattr(staging.tempfile, "mkstemp", mkstemp_then_a_cleaner)
    with staging.OutputStaging(tmp_path) as run:
        (run.claim("job") / "file").write_text("done")
        lock = made[-1]
        assert len(made) == 2 and lock.is_file() and staging.remove_stale_staging_dirs(tmp_path) == []
    for descriptor in held:  # the cleaner that held the first lock removes it
        assert staging.remove_stale_staging_dirs(tmp_path) == []  # still held
        os.close(descriptor)
        assert staging.remove_stale_staging_dirs(tmp_path) == [Path(str(made[0])[: -len(staging.LOCK_SUFFIX)])]
    assert sorted(os.listdir(tmp_path)) == ["job"]


def test_on_a_file_system_without_locks_the_staging_dir_has_none_and_is_never_taken_for_stale(tmp_path, monkeypatch):
    import errno
    import fcntl

    from viz import staging

    def no_locks(descriptor, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    with staging.OutputStaging(tmp_path) as first:
        monkeypatch.setattr(staging.fcntl, "flock", no_locks)
        with staging.OutputStaging(tmp_path) as second:
            monkeypatch.setattr(staging.fcntl, "flock", fcntl.flock)
            [unlocked] = [p for p in tmp_path.iterdir() if p.is_dir() and p.name != first._staging.name]
            assert not Path(f"{unlocked}{staging.LOCK_SUFFIX}").exists()
            assert staging.remove_stale_staging_dirs(tmp_path) == []  # the first's lock is held, the second has none
            (second.claim("job") / "file").write_text("done")
    assert sorted(os.listdir(tmp_path)) == ["job"]


#: Runs OutputStaging once per step ``n`` = 1, 2, ... in a forked child that SIGKILLs itself right
#: after the n-th call it makes to ``os``, ``tempfile``, ``fcntl`` or ``shutil`` (every change
#: staging makes to the file system), in ``argv[1]/n``, until a child runs to the end unkilled.
#: Prints one line per step: the step and the child's wait status.
KILLED_AT_EVERY_STEP = """
import os, signal, sys
import viz.staging as staging

class KilledAfter:
    def __init__(self, module, step, calls):
        self.module, self.step, self.calls = module, step, calls

    def __getattr__(self, name):
        value = getattr(self.module, name)
        if not callable(value) or isinstance(value, type):
            return value
        def counted(*args, **kwargs):
            result = value(*args, **kwargs)
            self.calls[0] += 1
            if self.calls[0] == self.step:
                os.kill(os.getpid(), signal.SIGKILL)
            return result
        return counted

step = 0
while True:
    step += 1
    out = os.path.join(sys.argv[1], str(step))
    os.mkdir(out)
    child = os.fork()
    if child == 0:
        calls = [0]
        for name in ("os", "tempfile", "fcntl", "shutil"):
            setattr(staging, name, KilledAfter(getattr(staging, name), step, calls))
        with staging.OutputStaging(out) as run:
            with open(run.claim("job") / "file", "w") as file:
                file.write("done")
        os._exit(0)
    status = os.waitpid(child, 0)[1]
    print(step, status, flush=True)
    if status == 0:
        break
"""


def test_a_run_killed_at_any_step_of_its_staging_leaves_nothing_the_next_run_keeps(tmp_path):
    """No instant of a run's staging (making the staging directory and its lock, the commit, the
    cleanup) leaves a directory that a later run cannot tell for dead: SIGKILL after each call."""
    from viz.staging import remove_stale_staging_dirs

    done = subprocess.run([sys.executable, "-c", KILLED_AT_EVERY_STEP, str(tmp_path)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=PATIENCE_S)
    assert done.returncode == 0, done.stderr
    steps = [tuple(map(int, line.split())) for line in done.stdout.splitlines()]
    killed = [step for step, status in steps if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL]
    assert killed == [step for step, _ in steps[:-1]] and len(killed) >= 5, steps  # the last one ran to its end
    for step, _ in steps:
        out = tmp_path / str(step)
        remove_stale_staging_dirs(out)
        assert sorted(os.listdir(out)) in ([], ["job"]), (step, sorted(os.listdir(out)))
        if os.listdir(out):
            assert (out / "job" / "file").read_text() == "done"
    assert os.listdir(tmp_path / str(steps[-1][0])) == ["job"]


# --- every error of the command line: one line, exit 2 ------------------------------------------

@pytest.mark.parametrize("argv, fragment", [
    (["--scale", "big"], "argument --scale: expected a number or 'input', got 'big'"),
    (["--norm", "nope"], "argument --norm: invalid choice: 'nope'"),
    (["--max-output-gb", "-1"], "--max-output-gb must be a number > 0, got -1.0"),
    (["--max-memory-gb", "nan"], "--max-memory-gb must be a number > 0, got nan"),
    (["--no-such-option"], "unrecognized arguments: --no-such-option"),
])
def test_usage_errors_are_one_line_exit_2(tmp_path, capsys, argv, fragment):
    save_photo(tmp_path / "cat.png")
    try:  # argparse's errors exit, the tool's own errors return 2
        code = cli.main([str(tmp_path / "cat.png"), *FAST, "--out", str(tmp_path / "out"), *argv])
    except SystemExit as stopped:
        code = stopped.code
    captured = capsys.readouterr()
    assert_one_line_error(code, captured.out, captured.err, fragment)
    assert not (tmp_path / "out").exists()


def test_imagenet_weights_with_an_empty_cache_are_downloaded_or_fall_back_with_one_warning(tmp_path, monkeypatch):
    save_photo(tmp_path / "cat.png")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    argv = [a for a in FAST if a not in ("--weights", "none")]
    code, stdout, err = run_cli(tmp_path / "cat.png", *argv, "--weights", "imagenet", "--out", tmp_path / "out", "--quiet")
    assert code == 0, err
    files = [p for p in (tmp_path / "torch-home").rglob("*") if p.is_file()]
    if files:  # a machine with a network: the checked file was downloaded and used
        assert [p.name for p in files] == ["resnet18-f37072fd.pth"] and err == ""
    else:  # no network (as where this was written): one warning, random weights, nothing left behind
        assert err.startswith("fastinterp-viz: warning: could not get ImageNet weights ResNet18_Weights.IMAGENET1K_V1 (")
        assert err.endswith("); using RANDOM weights, so the maps show an untrained network\n") and err.count("\n") == 1


def test_hostile_names_are_printed_escaped(tmp_path):
    """Names with terminal escapes or bytes that are not UTF-8, in the summary and in errors."""
    folder = os.fsencode(tmp_path / "in")
    os.mkdir(folder)
    save_photo(Path(os.fsdecode(folder + b"/red\x1b[31m.png")))
    save_photo(Path(os.fsdecode(folder + b"/bytes\xff.png")), 1)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONIOENCODING": "utf-8"}
    command = [sys.executable, "-m", "viz", os.fsdecode(folder), *FAST, "--out", str(tmp_path / "out")]
    result = subprocess.run(command, capture_output=True, env=env, timeout=PATIENCE_S)
    assert result.returncode == 0, result.stderr
    assert b"\x1b" not in result.stdout and b"red\\x1b[31m" in result.stdout and b"bytes\\xff" in result.stdout
    assert sorted(os.listdir(tmp_path / "out" / "resnet18")) == ["bytes_", "red_[31m"]
    (tmp_path / "in" / "bad\x1b[2J.png").write_text("not an image")
    result = subprocess.run(command, capture_output=True, env=env, timeout=PATIENCE_S)
    assert result.returncode == 2 and result.stdout == b""
    assert result.stderr.count(b"\n") == 1 and b"\x1b" not in result.stderr and b"bad\\x1b[2J.png" in result.stderr
