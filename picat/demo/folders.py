"""Writing a stand-in's genuine on-disk layout: a folder that appears whole, and the text files in it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from picat.atomic import atomic_path


@contextmanager
def building(target: Path) -> Iterator[Path]:
    """A temporary folder next to ``target`` that becomes ``target`` if the block succeeds.

    ``target`` must not exist: the writers never merge into (or delete) existing data.
    """
    target = Path(target)
    if target.exists():
        raise FileExistsError(f"{target} already exists; remove it first (the stand-in writers never overwrite)")
    with atomic_path(target) as folder:
        folder.mkdir()
        yield folder


def write_ascii(path: Path, text: str) -> None:
    """Write ``text`` (ASCII) to ``path``, creating its folder.

    Not atomic by itself: the writers only call it inside a folder from ``building``,
    which appears whole or not at all.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="ascii")
