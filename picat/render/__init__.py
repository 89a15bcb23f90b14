"""Rendering meshes with BlenderProc, in a separate environment.

* :mod:`picat.render.environment` builds that environment (``python -m picat.render.environment DIR``).
* :mod:`picat.render.launch` runs a :class:`RenderJob` in it from the main environment.
* ``blender_script.py`` is the script BlenderProc runs inside Blender; it is not imported here.
"""

from picat.render.environment import blenderproc_executable, build_render_env, read_stamp, render_env_python
from picat.render.launch import RenderItem, RenderJob, render_objects

__all__ = [
    "RenderItem",
    "RenderJob",
    "blenderproc_executable",
    "build_render_env",
    "read_stamp",
    "render_env_python",
    "render_objects",
]
