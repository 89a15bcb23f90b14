"""Resumable HTTP download with a progress bar, standard library only.

The file is written to ``<dest>.part`` and renamed onto ``dest`` only once every byte the
server announced has arrived, so ``dest`` is always a complete transfer. A ``.part`` left by
an interrupted or truncated transfer is continued with an HTTP ``Range: bytes=N-`` request;
a server that ignores the range (200 instead of 206) is downloaded again from the start.

URLs are tried in order (the authors' host, then mirrors) while a host cannot be reached or
answers an HTTP error; once bytes flow from one, a transfer that stops early is an error (the
``.part`` is kept) rather than a silent switch to another host.
"""

from __future__ import annotations

import http.client
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

from tqdm import tqdm

from picat.fetch.errors import DownloadError

USER_AGENT = "picat-fetch-data/0.1 (python urllib)"
CHUNK = 1 << 20
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(?:(\d+)-(\d+)|\*)/(\d+|\*)\s*$")


class _TryNext(Exception):
    """This URL gave nothing usable before any byte was written; try the next one."""


def part_path(dest: Path) -> Path:
    """Where the transfer of ``dest`` is written until it is complete: ``<dest>.part``."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def download(urls: Sequence[str], dest: Path, expected_size: int | None = None, progress: bool = True,
             timeout: float = 60.0, log: Callable[[str], None] = print) -> str:
    """Download ``dest`` from the first of ``urls`` that answers, resuming a ``.part``.

    Args:
        urls: the URLs to try in order.
        dest: the file to write (its folder must exist).
        expected_size: the size in bytes the file must have, where known.
        progress: show a tqdm progress bar (on stderr).
        timeout: seconds to wait for a connection or for data.
        log: where one-line notes go (resuming, restarting, skipping a dead host).

    Returns:
        The URL the file came from.

    Raises:
        DownloadError: no URL answered (each URL and its error named), or a transfer stopped
            before the announced size (the ``.part`` is kept: the same call resumes it).
    """
    if not urls:
        raise DownloadError(f"{dest}: no URL to download it from")
    failures = []
    for url in urls:
        try:
            _download_one(url, Path(dest), expected_size, progress, timeout, log)
        except _TryNext as error:
            failures.append(f"{url}: {error}")
            if url != urls[-1]:
                log(f"{url}: {error}; trying the next URL")
            continue
        return url
    raise DownloadError(f"{Path(dest).name}: no URL could be downloaded ({'; '.join(failures)})")


def _download_one(url: str, dest: Path, expected_size: int | None, progress: bool, timeout: float,
                  log: Callable[[str], None], restarted: bool = False) -> None:
    part = part_path(dest)
    offset = part.stat().st_size if part.is_file() else 0
    request = Request(url, headers={"User-Agent": USER_AGENT})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    try:
        response = urlopen(request, timeout=timeout)
    except HTTPError as error:
        if error.code == 416 and offset:  # nothing after offset: the .part may be complete already
            total = _content_range(error.headers.get("Content-Range", ""))[2]
            if (total if total is not None else expected_size) == offset:
                os.replace(part, dest)
                return
            if not restarted:
                log(f"{url}: the partial download {part} does not fit the file on the server; starting again")
                part.unlink()
                _download_one(url, dest, expected_size, progress, timeout, log, restarted=True)
                return
        raise _TryNext(f"HTTP {error.code} {error.reason}") from error
    except (URLError, OSError, http.client.HTTPException) as error:
        reason = error.reason if isinstance(error, URLError) else error
        raise _TryNext(f"cannot be reached ({reason})") from error
    with response:
        if offset and response.status == 206:
            start, _, total = _content_range(response.headers.get("Content-Range", ""))
            if start != offset:
                raise DownloadError(f"{url}: asked for the bytes from {offset} on, but the server answered a range "
                                    f"starting at {start}; delete {part} to download from the start")
            mode = "ab"
            log(f"{url}: resuming {part.name} from byte {offset}")
        else:
            if offset:
                log(f"{url}: the server does not resume downloads (HTTP {response.status}); starting again")
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        if total is None:
            total = expected_size
        elif expected_size is not None and total != expected_size:
            raise _TryNext(f"the server's file has {total} bytes, not the {expected_size} expected")
        written = _copy(response, part, mode, offset, total, url, progress)
    if total is not None and written != total:
        raise DownloadError(f"{url}: the transfer stopped after {written} of {total} bytes; the partial download "
                            f"{part} is kept: run the same command again to resume it")
    os.replace(part, dest)


def _copy(response: http.client.HTTPResponse, part: Path, mode: str, offset: int, total: int | None, url: str,
          progress: bool) -> int:
    """Append the response body to ``part``; the number of bytes ``part`` then holds."""
    written = offset
    with open(part, mode) as out, tqdm(total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
                                       desc=part.name.removesuffix(".part"), disable=not progress) as bar:
        try:
            for chunk in iter(lambda: response.read(CHUNK), b""):
                out.write(chunk)
                written += len(chunk)
                bar.update(len(chunk))
        except (OSError, http.client.HTTPException) as error:  # reset, timeout, IncompleteRead
            out.flush()
            raise DownloadError(f"{url}: the transfer stopped after {written} of {total or 'an unknown number of'} "
                                f"bytes ({error}); the partial download {part} is kept: run the same command again "
                                f"to resume it") from error
    return written


def _content_range(header: str) -> tuple[int | None, int | None, int | None]:
    """(first byte, last byte, total) of a ``Content-Range: bytes a-b/total`` header; None where absent."""
    match = _CONTENT_RANGE.match(header or "")
    if match is None:
        return None, None, None
    first, last, total = match.groups()
    return (int(first) if first else None, int(last) if last else None,
            int(total) if total and total != "*" else None)
