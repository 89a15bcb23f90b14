"""The errors of ``picat fetch-data``: each one line naming the file or URL and what is wrong.

All are :class:`RuntimeError` subclasses, so ``picat``'s command line prints them as one line
without a traceback (``PICAT_DEBUG=1`` shows it).
"""

from __future__ import annotations


class FetchError(RuntimeError):
    """Any failure to fetch a dataset; the message names the file or URL and what is wrong."""


class DownloadError(FetchError):
    """No URL could be reached, or a transfer stopped early (the ``.part`` file is kept for resuming)."""


class ChecksumError(FetchError):
    """The archive's sha256 differs from the expected one; the message gives both digests."""


class UnverifiedArchiveError(FetchError):
    """No checksum is known for the archive and the user has not supplied or waived one; the
    message gives the computed digest so that it can be checked and recorded."""


class LayoutError(FetchError):
    """The archive does not hold the layout the picat reader expects (or holds an unsafe path)."""


class ExtractError(FetchError):
    """The archive is not a readable zip, or an entry of it cannot be extracted."""
