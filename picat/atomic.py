"""Atomic output: every file or folder picat writes appears whole or not at all.

A step writes under a temporary sibling name and renames it onto the target only when the
write succeeded, so a crashed or interrupted job never leaves a half-written file that a
reader, or Snakemake after a restart, would take as done. This is the one helper for it.

The temporary name is hidden (leading dot, so the readers' globs skip it), per process (no
clash between concurrent writers) and keeps the suffix (``np.save`` and other writers that
infer the format from the suffix still work). Python's ``tempfile`` would give files mode
0600; a plain name keeps the usual permissions.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def temporary_sibling(path: Path) -> Path:
    """The hidden temporary name beside ``path`` that :func:`atomic_path` writes to."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it onto ``path``.

    Works for a file or a folder written at the yielded path. A folder that already exists
    at ``path`` is replaced as a whole. On any exception the temporary is removed and the
    exception propagates; ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_sibling(path)
    _remove(temporary)
    try:
        yield temporary
        if temporary.is_dir() and path.is_dir():
            shutil.rmtree(path)  # os.replace cannot replace a non-empty folder
        os.replace(temporary, path)
    finally:
        if temporary.exists() or temporary.is_symlink():
            _remove(temporary)


def write_text_atomically(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def write_lines_atomically(path: Path | str, lines: Iterable[str]) -> None:
    """Write ``lines`` to ``path`` atomically, each ending in a newline."""
    write_text_atomically(path, "".join(f"{line}\n" for line in lines))


def write_json_atomically(path: Path | str, content: Any, indent: int | None = 2, sort_keys: bool = True) -> None:
    """Write ``content`` as JSON (with a final newline) to ``path`` atomically."""
    write_text_atomically(path, json.dumps(content, indent=indent, sort_keys=sort_keys) + "\n")
