"""Review of stop 23 (ba7174e: "the lock sits beside the staging dir and is made before it"): ways
a run could still leave a staging directory without its lock, which no later run removes, or
touch a live run's staging. Each test failed on ba7174e."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_viz_hardening import FOREGROUND, partial_dirs

from viz import staging
from viz.staging import LOCK_SUFFIX, OutputStaging, remove_stale_staging_dirs

ROOT = Path(__file__).resolve().parents[1]


def lockless_dirs(out: Path) -> list[str]:
    """The staging directories in ``out`` without their lock: no later run can tell them for dead."""
    return sorted(name for name in partial_dirs(out) if not (out / f"{name}{LOCK_SUFFIX}").exists())


@pytest.mark.parametrize("who", ["the run", "a cleaning run"])
def test_a_staging_dir_that_cannot_be_emptied_keeps_its_lock(tmp_path, monkeypatch, who):
    """rmtree(ignore_errors=True) leaves what it cannot remove (EBUSY on a mount point, an NFS
    ``.nfsXXXX`` file, EACCES); the lock must stay with the directory so that a later run tries again.
    Here rmtree removes nothing, as when every entry fails."""
    out = tmp_path / "out"
    dead = out / f"{staging.STAGING_PREFIX}dead"
    (dead / "job").mkdir(parents=True)
    Path(f"{dead}{LOCK_SUFFIX}").write_text("pid 1")
    rmtree = staging.shutil.rmtree
    monkeypatch.setattr(staging.shutil, "rmtree", lambda path, ignore_errors=False: None)
    if who == "the run":
        remove_stale_staging_dirs(out)  # the dead one is kept (and not reported): its lock stays
        with pytest.raises(RuntimeError), OutputStaging(out) as run:
            (run.claim("job") / "file").write_text("half")
            raise RuntimeError("the run fails")
    else:
        assert remove_stale_staging_dirs(out) == []  # not reported as removed: it is still there
    assert lockless_dirs(out) == []
    monkeypatch.setattr(staging.shutil, "rmtree", rmtree)  # the obstacle is gone: a later run removes all
    remove_stale_staging_dirs(out)
    assert os.listdir(out) == []


def test_a_ctrl_c_raised_as_the_staging_mkdir_returns_leaves_no_lockless_dir(tmp_path):
    """In a notebook or a training script (no viz.cli handler) Ctrl-C is a KeyboardInterrupt, which
    CPython raises as soon as the call it arrived in returns: here, as the staging dir is made."""
    def ctrl_c_after_mkdir(frame, event, arg):
        if event == "c_return" and arg is os.mkdir and frame.f_code is staging._make_staging_dir.__code__:
            raise KeyboardInterrupt

    sys.setprofile(ctrl_c_after_mkdir)
    try:
        with pytest.raises(KeyboardInterrupt), OutputStaging(tmp_path):
            pass
    finally:
        sys.setprofile(None)
    assert os.listdir(tmp_path) == []


#: A run in a plain Python program (no viz.cli handler: SIGINT is a KeyboardInterrupt) interrupted
#: as it looks for dead runs' staging dirs. argv: the output dir, the folder to list after.
CTRL_C_WHILE_CLEANING = """
import os, signal, sys
from viz.staging import OutputStaging

armed = True

def ctrl_c_at_the_search(event, args):
    global armed
    if armed and event == "os.scandir":
        armed = False
        signal.raise_signal(signal.SIGINT)

sys.addaudithook(ctrl_c_at_the_search)
try:
    with OutputStaging(sys.argv[1]):
        print("entered")
except KeyboardInterrupt:
    print("KeyboardInterrupt")
print(sorted(os.listdir(sys.argv[2])))
"""


def test_a_ctrl_c_while_the_run_removes_dead_staging_dirs_leaves_nothing(tmp_path):
    """It used to leave the folders it made, its staging dir and its lock (held by a descriptor
    never closed): ``__enter__`` raised before the cleanup could run."""
    out = tmp_path / "made" / "out"
    child = subprocess.run([*FOREGROUND, "-c", CTRL_C_WHILE_CLEANING, str(out), str(tmp_path)], capture_output=True,
                           text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=600)
    assert child.stdout.splitlines() == ["KeyboardInterrupt", "[]"], child.stderr


def test_a_forked_child_leaving_the_block_leaves_the_parents_staging_alone(tmp_path):
    """A child forked inside the block (``os.fork()`` without ``os._exit``) that leaves it must
    neither commit nor remove the staging its parent is still writing."""
    with OutputStaging(tmp_path) as run:
        staged = run.claim("job")
        (staged / "half").write_text("half")
        child = os.fork()
        if child == 0:
            try:
                run.__exit__(None, None, None)  # what the child's with-statement does as it falls through
            finally:
                os._exit(0)
        os.waitpid(child, 0)
        assert staged.is_dir() and not (tmp_path / "job").exists()
        (staged / "rest").write_text("rest")
    assert sorted(os.listdir(tmp_path / "job")) == ["half", "rest"]
