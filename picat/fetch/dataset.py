"""Fetch one dataset of the sources table: download (resumable), verify, extract atomically.

The steps, each leaving nothing half-done behind:

1. ``<root>/<folder>`` already there with the reader's layout: done, nothing downloaded.
2. Download ``<root>/<archive>`` (via ``<archive>.part``, resumed on the next run when cut).
3. Check its sha256 against the table (or ``--sha256``). Without any known checksum, refuse
   to extract unless the user waives it, and show the computed digest either way.
4. Extract into a temporary sibling of ``<root>/<folder>``, check the layout, rename.
5. Remove the archive (unless asked to keep it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from picat.fetch.checksum import normalise_sha256, sha256_of, verify_sha256
from picat.fetch.download import download
from picat.fetch.errors import FetchError, LayoutError, UnverifiedArchiveError
from picat.fetch.extract import extract_archive, missing_paths
from picat.fetch.sources import Source


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch_dataset` did.

    Attributes:
        folder: the dataset folder (the reader's ``root``).
        downloaded: False when the folder was already present and nothing was fetched.
        sha256: the archive's digest (None when nothing was fetched).
        url: the URL the archive came from (None when it was already on disk or not needed).
    """

    folder: Path
    downloaded: bool
    sha256: str | None = None
    url: str | None = None


def fetch_dataset(source: Source, root: Path, sha256: str | None = None, accept_unverified: bool = False,
                  urls: Sequence[str] | None = None, keep_archive: bool = False, progress: bool = True,
                  log: Callable[[str], None] = print) -> FetchResult:
    """Make ``<root>/<source.folder>`` hold the dataset in the layout its picat reader expects.

    Args:
        source: a direct-download entry of :data:`picat.fetch.sources.SOURCES`.
        root: the folder the dataset folder (and, while fetching, the archive) goes into.
        sha256: the expected archive digest, overriding the table's (for a source without a
            known checksum, or a mirror's different but trusted copy).
        accept_unverified: extract an archive with no known checksum anyway.
        urls: URLs to use instead of the table's (e.g. a mirror of your own).
        keep_archive: keep ``<root>/<archive>`` after extracting it.
        progress: show progress bars.
        log: where one-line progress notes go.

    Raises:
        FetchError: the source is behind terms, or a path in the way is not a folder.
        DownloadError: no URL answered, or the transfer stopped early (``.part`` kept).
        ChecksumError: the archive's digest differs from the expected one (archive kept).
        UnverifiedArchiveError: no checksum known and none given or waived (archive kept).
        ExtractError, LayoutError: the archive cannot be extracted into the reader's layout.
    """
    root = Path(root)
    target = root / source.folder
    if source.behind_terms or source.archive is None:
        raise FetchError(f"{source.name}: no direct download; it is {source.terms}")
    if target.exists() or target.is_symlink():
        return _already_present(source, target, log)
    expected = normalise_sha256(sha256, "--sha256") if sha256 else source.sha256
    root.mkdir(parents=True, exist_ok=True)
    archive = root / source.archive
    url = None
    log(f"{source.name}: terms of use: {source.terms}")
    if archive.is_file():
        log(f"{source.name}: using the archive already downloaded at {archive}")
    else:
        # The table's size goes with the table's checksum; a user-given digest may describe another copy.
        size = source.size if expected == source.sha256 else None
        url = download(list(urls) if urls else source.urls, archive, expected_size=size, progress=progress, log=log)
    if expected is None:
        digest = sha256_of(archive, progress)
        if not accept_unverified:
            raise UnverifiedArchiveError(
                f"{archive}: no published sha256 is known for {source.archive} (see picat fetch-data --list); its "
                f"sha256 is {digest}. Check it against a source you trust, then run again with --sha256 {digest} "
                f"(or --accept-unverified). The archive is kept; nothing was extracted")
        log(f"{source.name}: WARNING: extracting an unverified archive (sha256 {digest}); record this digest")
    else:
        digest = verify_sha256(archive, expected, progress)
        log(f"{source.name}: sha256 verified ({digest})")
    extract_archive(archive, source, target, progress, log)
    if not keep_archive:
        archive.unlink()
    log(f"{source.name}: ready at {target} (picat reader: {source.reader})")
    return FetchResult(target, True, digest, url)


def _already_present(source: Source, target: Path, log: Callable[[str], None]) -> FetchResult:
    """The existing dataset folder checked for the reader's layout; nothing is downloaded."""
    if not target.is_dir():
        raise FetchError(f"{target}: exists but is not a folder; move it away to fetch {source.name}")
    missing = missing_paths(target, source)
    if missing:
        raise LayoutError(f"{target}: already exists but lacks {', '.join(missing)} (expected {source.layout}); "
                          f"move it away and run fetch-data again")
    log(f"{source.name}: already present at {target}; nothing downloaded")
    return FetchResult(target, False)
