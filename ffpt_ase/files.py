"""Writing files so that a crash never leaves a half-written one under the final name."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp"):
    """Yield a temporary path beside ``path`` (its name + ``suffix``); when the block ends
    without an error the temporary file replaces ``path`` by a rename, so readers see the old
    file or the new one, never a partial one; after an error it is removed."""
    path = Path(path)
    tmp = path.with_name(path.name + suffix)
    try:
        yield tmp
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def make_folder(path: str | Path) -> Path:
    """Create the folder ``path`` (and its parents); a file in the way is a ValueError that
    names it, not an OS error about some parent."""
    path = Path(path)
    for parent in [path, *path.parents]:
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"cannot make the folder {path}: {parent} is a file")
    path.mkdir(parents=True, exist_ok=True)
    return path
