"""``picat fetch-data``: fetch the benchmark datasets whose authors publish direct downloads,
into exactly the layout the picat readers expect.

Modules (small, one job each):

* :mod:`picat.fetch.sources`: the one table of URLs, mirrors, checksums, layouts and terms.
* :mod:`picat.fetch.download`: resumable HTTP download (Range requests, ``.part`` file, tqdm).
* :mod:`picat.fetch.checksum`: sha256 of the archive and the check against the table.
* :mod:`picat.fetch.extract`: safe extraction into a temporary sibling, layout check, rename.
* :mod:`picat.fetch.dataset`: :func:`fetch_dataset`, the steps in order.
* :mod:`picat.fetch.cli`: the ``fetch-data`` subcommand (:func:`add_command`).

See docs/fetch-data.md.
"""

from __future__ import annotations

from typing import Any

from picat.fetch.errors import (
    ChecksumError,
    DownloadError,
    ExtractError,
    FetchError,
    LayoutError,
    UnverifiedArchiveError,
)
from picat.fetch.sources import SOURCES, Source, get_source

__all__ = ["SOURCES", "Source", "get_source", "FetchResult", "fetch_dataset", "FetchError", "DownloadError",
           "ChecksumError", "UnverifiedArchiveError", "ExtractError", "LayoutError"]


def __getattr__(name: str) -> Any:
    """The download steps on first use: they need tqdm (the [workflow] extra), and `picat --help`
    (which registers fetch-data) must work from the lean install."""
    if name in ("FetchResult", "fetch_dataset"):
        from picat.fetch import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'picat.fetch' has no attribute {name!r}")
