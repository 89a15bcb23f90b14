"""The render-env step: build the BlenderProc render environment once (see :mod:`picat.render.environment`)."""

from __future__ import annotations

from pathlib import Path

from picat.render.environment import build_render_env


def build(env_dir: Path) -> Path:
    """Build (or verify) the render environment at ``env_dir``; returns its stamp file."""
    return build_render_env(Path(env_dir))
