"""sha256 of a downloaded archive, and the check against the expected digest."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from tqdm import tqdm

from picat.fetch.errors import ChecksumError, FetchError

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1 << 20


def normalise_sha256(text: str, what: str = "sha256") -> str:
    """``text`` as 64 lower-case hex digits, or a FetchError saying what is wrong with it."""
    digest = text.strip().lower()
    if not _HEX64.match(digest):
        raise FetchError(f"{what} must be 64 hexadecimal digits, got {text!r}")
    return digest


def sha256_of(path: Path, progress: bool = True) -> str:
    """The sha256 (lower-case hex) of the file at ``path``, read in 1 MiB chunks."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as handle, tqdm(total=path.stat().st_size, unit="B", unit_scale=True, unit_divisor=1024,
                                          desc=f"sha256 {path.name}", disable=not progress, leave=False) as bar:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str, progress: bool = True) -> str:
    """Check the file's sha256 against ``expected``; return the digest.

    Raises:
        ChecksumError: the digests differ (message: the file, both digests, what to do).
    """
    expected = normalise_sha256(expected, "expected sha256")
    actual = sha256_of(path, progress)
    if actual != expected:
        raise ChecksumError(f"{path}: sha256 is {actual} but {expected} was expected; the archive is corrupt or "
                            f"not the published one. Nothing was extracted. Delete it to download it again")
    return actual
