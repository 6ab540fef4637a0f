"""All-or-nothing output: everything is written into a hidden directory inside the output
directory and moved into place only when the whole run succeeded."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from .errors import VizError

#: Prefix of the hidden staging directory inside the output directory.
STAGING_PREFIX = ".viz-partial-"


class OutputStaging:
    """Context manager that stages a run's output directories and commits them atomically.

    ``claim(relative)`` reserves ``out_dir/relative`` for the run, refusing (with a
    :class:`VizError`) if it already exists and ``overwrite`` is False, and returns the
    staging directory to write into. On a clean exit every claimed directory is moved into
    place (replacing the old one with ``overwrite``); on any exception the staging directory
    and every directory this run created are removed, so nothing half-written is left.
    """

    def __init__(self, out_dir: Path | str, *, overwrite: bool = False) -> None:
        self.out_dir = Path(out_dir)
        self.overwrite = overwrite
        self._claimed: list[Path] = []
        self._created: list[Path] = []
        self._staging: Path | None = None

    def __enter__(self) -> OutputStaging:
        self._create_out_dir()
        try:
            self._staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.out_dir))
        except OSError as exc:
            self._remove_created_dirs()
            raise VizError(f"cannot write to output directory {self.out_dir}: {exc.strerror or exc}") from None
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
        relative = Path(relative)
        final = self.out_dir / relative
        if relative in self._claimed:
            raise VizError(f"two jobs would write the same directory {final}")
        if final.exists() and not self.overwrite:
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
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)
            if exc_type is not None:
                self._remove_created_dirs()

    def _commit(self) -> None:
        assert self._staging is not None
        for relative in self._claimed:
            final = self.out_dir / relative
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():  # only reachable with overwrite=True
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
