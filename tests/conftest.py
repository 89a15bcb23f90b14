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


def render_env_dir() -> Path:
    """The render environment the tests use: $PICAT_RENDER_ENV or <repo>/.envs/render."""
    return Path(os.environ.get("PICAT_RENDER_ENV", REPO / ".envs" / "render")).resolve()


@pytest.fixture(scope="session")
def render_env() -> Path:
    """A working BlenderProc render environment, built on first use (a few minutes, ~2.2 GB
    from PyPI) unless PICAT_NO_RENDER_ENV_BUILD is set, in which case the test is skipped."""
    from picat.render.environment import build_render_env, stamp_path

    env_dir = render_env_dir()
    if not stamp_path(env_dir).is_file():
        if os.environ.get("PICAT_NO_RENDER_ENV_BUILD"):
            pytest.skip(f"no render environment at {env_dir} and PICAT_NO_RENDER_ENV_BUILD is set "
                        "(build it with `picat render-env .envs/render`)")
        build_render_env(env_dir)
    return env_dir
