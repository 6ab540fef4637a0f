"""All-or-nothing output: everything is written into a hidden directory inside the output
directory and moved into place only when the whole run succeeded.

A run that is killed (SIGKILL, power loss) cannot clean up after itself, so each staging
directory holds a lock file that its run keeps locked (``flock``) while it lives; the kernel
drops the lock when the process dies, however it dies. Every later run removes the staging
directories whose lock it can take (their runs are dead) and leaves the others alone.

A signal that interrupts a run (the command line's SIGINT and SIGTERM handlers, :mod:`viz.cli`)
is recorded here as well as raised: Python drops an exception raised inside a ``__del__``, a
weakref or a gc callback (it prints "Exception ignored" and goes on), so every checkpoint
(:func:`check_interrupted`; a claim, the commit) raises the recorded one again, and a run that
was interrupted never moves its output into place.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Iterator

from .errors import VizError
from .paths import inside

#: Prefix of the hidden staging directory inside the output directory.
STAGING_PREFIX = ".viz-partial-"
#: The lock file inside a staging directory, locked by its run for as long as it lives. Its
#: leading dot keeps it apart from job directories (their names never start with a dot).
OWNER_LOCK = ".owner.lock"


#: The exception of the signal that interrupted this run (KeyboardInterrupt, viz.cli.Terminated), if any.
_interruption: type[BaseException] | None = None
#: Whether the output is being moved into place or the staging cleaned up: a signal then waits
#: for the end of that work (half of the jobs in place would break the all-or-nothing promise; a
#: cleanup cut short by a second Ctrl-C would leave the staging directory in the output).
_deferring = False


def interrupt(exception: type[BaseException]) -> None:
    """A signal handler's work: record ``exception`` and raise it, at once, or right after a
    commit or cleanup that is under way."""
    global _interruption
    _interruption = exception
    if not _deferring:
        raise exception


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Within the block, :func:`interrupt` only records its signal (a checkpoint raises it after)."""
    global _deferring
    _deferring = True
    try:
        yield
    finally:
        _deferring = False


def check_interrupted() -> None:
    """A checkpoint: raise the exception of the signal that interrupted the run, if one did."""
    if _interruption is not None:
        raise _interruption


def forget_interruption() -> None:
    """Start a run afresh (a process may run several, e.g. tests calling the command line)."""
    global _interruption
    _interruption = None


def _lock_staging_dir(staging: Path) -> int | None:
    """Create and lock the owner lock of ``staging``; returns the open descriptor to keep, or
    None on a file system without locks (the directory is then never taken for stale).

    The lock is taken on a temporary name and then renamed into place, so a cleaning run never
    finds the lock file unlocked while its owner is alive.
    """
    pending = staging / f"{OWNER_LOCK}.{os.getpid()}"
    descriptor = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(descriptor)
        pending.unlink(missing_ok=True)
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            return None
        raise
    try:
        # For a person looking at the directory; liveness is decided by the lock alone.
        os.write(descriptor, f"pid {os.getpid()} on {socket.gethostname()} since {time.ctime()}\n".encode())
        os.replace(pending, staging / OWNER_LOCK)
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor


def remove_stale_staging_dirs(out_dir: Path) -> list[Path]:
    """Remove the staging directories in ``out_dir`` left by runs that died; returns them.

    A staging directory is removed only when its owner lock exists and can be locked, i.e. the
    run that made it no longer runs. Directories without a lock file (a run in its first
    instant, or made by an older version) and symlinks are left alone.
    """
    removed = []
    try:
        entries = list(os.scandir(out_dir))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(STAGING_PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        try:
            descriptor = os.open(Path(entry.path) / OWNER_LOCK, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)  # locked: its run is alive
            continue
        try:
            shutil.rmtree(entry.path, ignore_errors=True)
        finally:
            os.close(descriptor)
        removed.append(Path(entry.path))
    return removed


class OutputStaging:
    """Context manager that stages a run's output directories and commits them atomically.

    ``claim(relative)`` reserves ``out_dir/relative`` for the run, refusing (with a
    :class:`VizError`) if it already exists and ``overwrite`` is False, and returns the
    staging directory to write into. On a clean exit every claimed directory is moved into
    place (replacing the old one with ``overwrite``); on any exception the staging directory
    and every directory this run created are removed, so nothing half-written is left.

    Every claimed directory is proven (symlinks resolved) to lie inside ``out_dir`` when it is
    claimed and again just before it is moved into place, so nothing outside ``out_dir`` is
    ever written, replaced or removed. Entering also removes the staging directories of dead
    runs (:func:`remove_stale_staging_dirs`); :attr:`removed_stale` lists them.
    """

    def __init__(self, out_dir: Path | str, *, overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.overwrite = overwrite
        self._claimed: list[Path] = []
        self._created: list[Path] = []
        self._staging: Path | None = None
        self._lock: int | None = None
        self.removed_stale: list[Path] = []

    def __enter__(self) -> OutputStaging:
        # A signal waits while the folders, the staging dir and its lock are made and stale ones
        # removed, then has them removed again: cut short, they would stay (a staging dir
        # without its lock, or a stale one that lost its lock, is never taken for stale).
        with _signals_deferred():
            self._create_out_dir()
            try:
                self._staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.out_dir))
                self._lock = _lock_staging_dir(self._staging)
            except OSError as exc:
                if self._staging is not None:
                    shutil.rmtree(self._staging, ignore_errors=True)
                self._remove_created_dirs()
                raise VizError(f"cannot write to output directory {self.out_dir}: {exc.strerror or exc}") from None
            self.removed_stale = remove_stale_staging_dirs(self.out_dir)
        try:
            check_interrupted()
        except BaseException as exc:
            self.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    def _create_out_dir(self) -> None:
        missing = [p for p in (self.out_dir, *self.out_dir.parents) if not p.exists()]
        for directory in reversed(missing):
            try:
                directory.mkdir()
            except OSError as exc:
                self._remove_created_dirs()
                raise VizError(
                    f"cannot create output directory {self.out_dir}: {exc.strerror or exc} ({directory})"
                ) from None
            self._created.append(directory)
        if not self.out_dir.is_dir():
            raise VizError(f"output directory {self.out_dir} exists and is not a directory")

    def claim(self, relative: Path | str) -> Path:
        """Reserve ``out_dir/relative`` and return the staging directory to fill instead."""
        assert self._staging is not None, "claim() outside the with-block"
        check_interrupted()
        relative = Path(relative)
        final = self.out_dir / relative
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise VizError(f"refusing to write {final}: job directories must be names inside the output directory")
        inside(self.out_dir, relative)
        for other in self._claimed:
            if other == relative or other in relative.parents or relative in other.parents:
                raise VizError(f"two jobs would write the same directory {final}")
        if (final.exists() or final.is_symlink()) and not self.overwrite:
            raise VizError(f"{final} already exists; pass --overwrite to replace it, or choose another --out")
        self._claimed.append(relative)
        staged = self._staging / relative
        staged.mkdir(parents=True)
        return staged

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            if exc_type is None:
                self._commit()
        finally:
            with _signals_deferred():
                if self._staging is not None:
                    shutil.rmtree(self._staging, ignore_errors=True)
                if self._lock is not None:
                    os.close(self._lock)
                    self._lock = None
                if exc_type is not None:
                    self._remove_created_dirs()
        check_interrupted()  # a signal during the cleanup of a committed run: the run still stops

    def _commit(self) -> None:
        assert self._staging is not None
        check_interrupted()
        with _signals_deferred():
            self._move_into_place()
        check_interrupted()  # a signal during the moves: the output is complete, the run still stops

    def _move_into_place(self) -> None:
        assert self._staging is not None
        for relative in self._claimed:
            final = self.out_dir / relative
            inside(self.out_dir, relative.parent)
            final.parent.mkdir(parents=True, exist_ok=True)
            # Checked again now: a symlink made since the claim must not redirect the move.
            inside(self.out_dir, relative)
            if final.exists() or final.is_symlink():  # only reachable with overwrite=True
                # Move the old copy into the staging area first so the swap is two renames.
                discarded = self._staging / ".replaced" / relative
                discarded.parent.mkdir(parents=True, exist_ok=True)
                os.replace(final, discarded)
            os.replace(self._staging / relative, final)

    def _remove_created_dirs(self) -> None:
        for directory in reversed(self._created):
            try:
                directory.rmdir()  # only if empty: never removes anything else
            except OSError:
                break
        self._created.clear()
