"""Outputs that appear under their final name only when complete: write to a hidden sibling, rename at the end."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from internet.errors import InputError


def temporary_sibling(path: Path) -> Path:
    """A hidden temporary name next to ``path`` (same folder, so the final rename is atomic)."""
    return path.with_name(f".{path.stem}.partial-{uuid.uuid4().hex[:8]}{path.suffix}")


def checked_destination(path: str | os.PathLike) -> Path:
    """``path`` as a Path, after checking that its folder exists."""
    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"Output folder does not exist: {path.parent}")
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path; rename it to ``path`` if the block succeeds, delete it otherwise."""
    path = checked_destination(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class AtomicWriter:
    """A streamed output file: subclasses write into ``self._tmp``, then :meth:`close` finishes and renames it,
    :meth:`abort` (or an exception inside ``with``) deletes it."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = checked_destination(path)
        self._tmp = temporary_sibling(self.path)

    def _publish(self) -> Path:
        os.replace(self._tmp, self.path)
        return self.path

    def _discard(self) -> None:
        self._tmp.unlink(missing_ok=True)

    def close(self) -> Path:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
