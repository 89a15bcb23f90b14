"""Unpack a verified archive into exactly the layout the picat reader expects, atomically.

The archive's single top-level folder (``Source.archive_folder``) becomes ``<root>/<folder>``:
its contents are written into a hidden temporary sibling (:func:`picat.atomic.atomic_path`),
checked against the source's required paths, and renamed into place only when all of that
succeeded. A corrupt entry, an unexpected layout or an interrupted run leaves no dataset folder.

Skipped: macOS debris (``__MACOSX/``, ``._*``, ``.DS_Store``), and entries outside the expected
top-level folder (reported; they are not part of the reader's layout). Refused: absolute paths and
``..`` components.
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from picat.atomic import atomic_path
from picat.fetch.errors import ExtractError, LayoutError
from picat.fetch.sources import Source

CHUNK = 1 << 20
_JUNK_NAMES = (".DS_Store", "Thumbs.db")


def is_junk(name: str) -> bool:
    """True for archive debris that is not part of any dataset (macOS resource forks, Finder files)."""
    parts = PurePosixPath(name.replace("\\", "/")).parts
    return bool(parts) and (parts[0] == "__MACOSX" or parts[-1] in _JUNK_NAMES or parts[-1].startswith("._"))


def member_path(name: str, top: str, archive: Path) -> str | None:
    """The path of entry ``name`` relative to the archive's top-level folder ``top`` ("" for the
    folder itself), or None for an entry outside ``top``.

    Raises:
        LayoutError: an absolute or drive path, or a ``..`` component.
    """
    normalised = name.replace("\\", "/")  # archives written on Windows may use backslashes
    if normalised.startswith("/") or re.match(r"^[A-Za-z]:", normalised):
        raise LayoutError(f"{archive}: unsafe entry {name!r} (an absolute path); nothing was extracted")
    parts = PurePosixPath(normalised).parts
    if ".." in parts:
        raise LayoutError(f"{archive}: unsafe entry {name!r} (a '..' component); nothing was extracted")
    if not parts or parts[0] != top:
        return None
    return "/".join(parts[1:])


def missing_paths(folder: Path, source: Source) -> list[str]:
    """The patterns of ``source.required`` that match nothing under ``folder``."""
    return [pattern for pattern in source.required if next(Path(folder).glob(pattern), None) is None]


def extract_archive(archive: Path, source: Source, target: Path, progress: bool = True,
                    log: Callable[[str], None] = print) -> Path:
    """Extract ``archive`` so that ``target`` holds the contents of its top-level folder.

    Args:
        archive: a zip archive whose entries all lie under ``source.archive_folder``.
        source: the table entry (top-level folder, required paths, layout text).
        target: the dataset folder to create (must not exist yet).
        progress: show a tqdm progress bar (on stderr).
        log: where the note about skipped entries goes.

    Returns:
        ``target``.

    Raises:
        ExtractError: not a readable zip, or an entry fails its CRC or cannot be read.
        LayoutError: an unsafe entry, nothing under the top-level folder, or a required path
            missing after extraction.
    """
    archive, target = Path(archive), Path(target)
    if source.archive_folder is None:
        raise ExtractError(f"{source.name}: the sources table names no top-level folder for {archive.name}")
    try:
        handle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise ExtractError(f"{archive}: not a readable zip archive ({error})") from error
    with handle:
        entries, outside = [], []
        for info in handle.infolist():
            if is_junk(info.filename):
                continue
            path = member_path(info.filename, source.archive_folder, archive)
            if path is None:
                outside.append(info.filename)
            elif path:
                entries.append((info, path))
        if not entries:
            raise LayoutError(f"{archive}: holds no files under {source.archive_folder}/ (not the published "
                              f"archive?); nothing was extracted")
        if outside:
            log(f"{archive}: skipped the entries outside {source.archive_folder}/ ({len(outside)} in all, first: "
                f"{outside[0]!r}); they are not part of the reader's layout")
        remove_stale_temporaries(target, log)
        with atomic_path(target) as temporary:
            temporary.mkdir()
            for info, path in tqdm(entries, desc=f"extract {archive.name}", unit="file", disable=not progress,
                                   leave=False):
                _extract_member(handle, info, temporary / path, archive)
            missing = missing_paths(temporary, source)
            if missing:
                raise LayoutError(f"{archive}: {source.archive_folder}/ lacks {', '.join(missing)} (the picat reader "
                                  f"{source.reader} expects {source.layout}); nothing was extracted")
    return target


def remove_stale_temporaries(target: Path, log: Callable[[str], None] = print) -> None:
    """Remove the temporary siblings of ``target`` (:func:`picat.atomic.temporary_sibling`) left by
    extractions whose process is gone (killed mid-way); those of live processes are left alone."""
    target = Path(target)
    prefix, suffix = f".{target.stem}.tmp-", target.suffix
    for path in target.parent.glob(f"{prefix}*{suffix}"):
        pid = path.name[len(prefix):len(path.name) - len(suffix)]
        if not pid.isdigit() or int(pid) == os.getpid() or _process_alive(int(pid)):
            continue
        log(f"{path}: removing the leftover of an interrupted extraction (process {pid} is gone)")
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _extract_member(handle: zipfile.ZipFile, info: zipfile.ZipInfo, out: Path, archive: Path) -> None:
    """Write one entry (a folder, or a file's bytes; CRC checked by zipfile) to ``out``."""
    if info.is_dir():
        out.mkdir(parents=True, exist_ok=True)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with handle.open(info) as source, open(out, "wb") as destination:
            shutil.copyfileobj(source, destination, CHUNK)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError) as error:
        raise ExtractError(f"{archive}: entry {info.filename!r} cannot be extracted ({error}); "
                           f"nothing was extracted") from error
