"""Filesystem helpers shared by every writer: atomic writes and iteration folders."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds.

    Works for files and folders. On an exception the temporary is removed and ``path`` is
    left untouched, so a crash or bad input never leaves a half-written output behind.
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        if final.is_dir() and tmp.is_dir():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def searchForMaxIteration(folder: str | os.PathLike, prefix: str = "iteration_") -> int:
    """Largest N among ``<folder>/<prefix>N`` entries (the original 3DGS helper's name).

    Raises:
        FileNotFoundError: ``folder`` is missing or holds no ``<prefix>N`` entry.
    """
    pattern = re.compile(re.escape(prefix) + r"(\d+)$")
    folder = Path(folder)
    found = [int(m.group(1)) for p in (folder.iterdir() if folder.is_dir() else [])
             if (m := pattern.match(p.name))]
    if not found:
        raise FileNotFoundError(f"{folder}: no '{prefix}<N>' entries found")
    return max(found)
