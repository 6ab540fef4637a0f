"""All-or-nothing output: everything is written into a hidden directory inside the output
directory and moved into place only when the whole run succeeded.

A run that is killed (SIGKILL, power loss) cannot clean up after itself, so each staging
directory ``.viz-partial-X`` has a lock file ``.viz-partial-X.lock`` beside it that its run keeps
locked (``flock``) while it lives; the kernel drops the lock when the process dies, however it
dies. The lock is made and locked before the directory and removed after it, so no instant of a
run leaves a directory without a lock. Every later run removes the staging directories whose
lock it can take (their runs are dead), with the lock, and leaves the others alone.

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
import stat
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Iterator

from .errors import VizError
from .paths import inside

#: Prefix of the hidden staging directory inside the output directory.
STAGING_PREFIX = ".viz-partial-"
#: Suffix of a staging directory's lock file, beside it: ``.viz-partial-X`` has ``.viz-partial-X.lock``,
#: locked by its run for as long as it lives. The leading dot keeps both apart from job
#: directories (their names never start with a dot).
LOCK_SUFFIX = ".lock"
#: Errors of ``flock`` on a file system without locks.
_NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)


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


def _names(descriptor: int, path: Path) -> bool:
    """Whether ``path`` still names the file open as ``descriptor`` (a cleaning run unlinks a lock it took)."""
    try:
        named = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _staging_dir_of(lock: Path) -> Path:
    return lock.with_name(lock.name[: -len(LOCK_SUFFIX)])


def _lock_of(staging: Path) -> Path:
    return staging.with_name(staging.name + LOCK_SUFFIX)


def _make_staging_dir(out_dir: Path, attempts: int = 10) -> tuple[Path, int | None]:
    """Make a staging directory in ``out_dir`` with its lock beside it, locked; returns the
    directory and the lock's open descriptor to keep (None on a file system without locks: the
    directory then has no lock file and is never taken for stale).

    A cleaning run that opens the new lock before it is locked takes it for a dead run's and
    removes it: this run then finds its lock taken or unlinked and starts again with a new name.
    """
    for _ in range(attempts):
        descriptor, name = tempfile.mkstemp(prefix=STAGING_PREFIX, suffix=LOCK_SUFFIX, dir=out_dir)
        lock = Path(name)
        staging = _staging_dir_of(lock)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(descriptor)
            if exc.errno in _NO_LOCKS:
                os.unlink(lock)
                os.mkdir(staging, 0o700)
                return staging, None
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                continue  # a cleaning run holds it, and removes it
            os.unlink(lock)
            raise
        try:
            if not _names(descriptor, lock):
                os.close(descriptor)  # a cleaning run took it and has removed it
                continue
            # For a person looking at the directory; liveness is decided by the lock alone.
            os.write(descriptor, f"pid {os.getpid()} on {socket.gethostname()} since {time.ctime()}\n".encode())
            os.mkdir(staging, 0o700)
        except BaseException as exc:
            if not isinstance(exc, FileExistsError):  # e.g. a Ctrl-C raised as mkdir returned: the dir is ours
                with contextlib.suppress(OSError):
                    os.rmdir(staging)
            os.unlink(lock)
            os.close(descriptor)
            raise
        return staging, descriptor
    raise OSError(errno.EAGAIN, f"cleaning runs took {attempts} new staging locks in a row")


def remove_stale_staging_dirs(out_dir: Path) -> list[Path]:
    """Remove the staging directories in ``out_dir`` left by runs that died, with their locks;
    returns them.

    A staging directory is removed only when its lock can be locked, i.e. the run that made it
    no longer runs; a lock without its directory (a run killed as it began or ended) is removed
    as well. Directories without a lock (made on a file system without locks, or by an older
    version) and symlinks are left alone.
    """
    try:
        entries = list(os.scandir(out_dir))
    except OSError:
        return []
    locks = [Path(e.path) for e in entries if e.name.startswith(STAGING_PREFIX) and e.name.endswith(LOCK_SUFFIX)]
    return [staging for staging in map(_remove_if_dead, locks) if staging is not None]


def _remove_dir_then_lock(staging: Path) -> bool:
    """Remove ``staging``, then its lock only if the directory is gone; whether both are.

    A directory that cannot be emptied (EBUSY, EACCES, EIO) keeps its lock, so a later run
    tries again rather than finding a directory it can never tell for dead."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.lstat(staging).st_mode):
            shutil.rmtree(staging, ignore_errors=True)
            if os.path.lexists(staging):
                return False
    lock = _lock_of(staging)
    with contextlib.suppress(OSError):  # a lock that stays is only tried again
        os.unlink(lock)
    return not os.path.lexists(lock)


def _remove_if_dead(lock: Path) -> Path | None:
    """Remove ``lock``'s staging directory, then ``lock``, if its run is dead; returns the directory."""
    try:
        # Read-write: on NFS, flock is a POSIX lock, and an exclusive one needs a file open for writing.
        descriptor = os.open(lock, os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return None  # locked: its run is alive (or no locks here: never taken for stale)
        if not stat.S_ISREG(os.fstat(descriptor).st_mode) or not _names(descriptor, lock):
            return None  # not a lock of ours, or another cleaning run removed it first
        staging = _staging_dir_of(lock)
        return staging if _remove_dir_then_lock(staging) else None
    finally:
        os.close(descriptor)


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
        self._pid = os.getpid()
        self.removed_stale: list[Path] = []

    def __enter__(self) -> OutputStaging:
        # A signal waits while the folders, the staging dir and its lock are made and stale ones
        # removed, then has them removed again: cut short, the folders would stay, and a lock
        # or a half-removed stale directory would wait for a later run.
        self._pid = os.getpid()
        with _signals_deferred():
            self._create_out_dir()
            try:
                self._staging, self._lock = _make_staging_dir(self.out_dir)
            except BaseException as exc:  # a KeyboardInterrupt too, where no viz.cli handler defers it
                self._remove_created_dirs()
                if not isinstance(exc, OSError):
                    raise
                raise VizError(f"cannot write to output directory {self.out_dir}: {exc.strerror or exc}") from None
        try:
            with _signals_deferred():
                self.removed_stale = remove_stale_staging_dirs(self.out_dir)
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
        if os.getpid() != self._pid:  # a forked child leaving the block: the staging is its parent's
            return
        try:
            if exc_type is None:
                self._commit()
        finally:
            with _signals_deferred():
                if self._staging is not None:
                    if self._lock is None:  # no locks here: no lock file either
                        shutil.rmtree(self._staging, ignore_errors=True)
                    else:
                        _remove_dir_then_lock(self._staging)
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
