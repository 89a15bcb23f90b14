"""Rendering meshes with BlenderProc, in a separate environment.

* :mod:`picat.render.environment` builds that environment (``python -m picat.render.environment DIR``).
* :mod:`picat.render.launch` runs a :class:`RenderJob` in it from the main environment.
* ``blender_script.py`` is the script BlenderProc runs inside Blender; it is not imported here.

Names are imported lazily, so that ``python -m picat.render.environment`` does not find its
own module already imported by this package.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RenderItem": "picat.render.launch",
    "RenderJob": "picat.render.launch",
    "render_objects": "picat.render.launch",
    "blenderproc_executable": "picat.render.environment",
    "build_render_env": "picat.render.environment",
    "read_stamp": "picat.render.environment",
    "render_env_python": "picat.render.environment",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'picat.render' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
