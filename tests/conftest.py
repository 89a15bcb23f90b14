"""Shared fixtures: the genuine dataset samples (when present) and the render environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def fixtures_dir() -> Path | None:
    """The genuine dataset samples: $PICAT_FIXTURES or ../shared/fixtures beside the checkout."""
    candidate = Path(os.environ.get("PICAT_FIXTURES", REPO.parent / "shared" / "fixtures"))
    return candidate if candidate.is_dir() else None


@pytest.fixture(scope="session")
def fixtures() -> Path:
    folder = fixtures_dir()
    if folder is None:
        pytest.skip("genuine dataset samples not found (set PICAT_FIXTURES or place them at ../shared/fixtures)")
    return folder
