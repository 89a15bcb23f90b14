"""Blender's stand-in for BlenderProc: run a ``--python`` script the way Blender would, with PyPI's bpy.

Copied into the render environment by :func:`picat.render.environment.write_custom_blender`
and run there as a script by the render venv's python (it never runs inside picat's own
environment, and imports nothing of picat). BlenderProc's CLI starts

    blender --background --python-use-system-env --python-exit-code 2 --python SCRIPT -- ARGS

and the script expects to run inside Blender: bpy already imported, sys.argv holding the
whole Blender command line, sys.executable being Blender's bundled python (BlenderProc
derives its custom-python-packages folder from that path). The Blender version and python
tag of that path come from ``blender_shim.json``, written beside the copy.
"""
import json
import os
import runpy
import sys
import traceback
from importlib.util import find_spec

HERE = os.path.dirname(os.path.abspath(__file__))
SETTINGS_NAME = "blender_shim.json"


def parse_blender_args(args):
    """(script, exit code on error) from a Blender command line; only what BlenderProc uses."""
    script, error_code, i = None, 1, 0
    while i < len(args) and args[i] != "--":
        arg = args[i]
        if arg in ("--background", "-b", "--python-use-system-env", "--factory-startup"):
            i += 1
        elif arg in ("--python", "-P", "--python-exit-code") and i + 1 < len(args):
            if arg == "--python-exit-code":
                error_code = int(args[i + 1])
            else:
                script = args[i + 1]
            i += 2
        else:
            sys.exit(f"blender shim ({__file__}): unsupported Blender option {arg!r}")
    if script is None:
        sys.exit(f"blender shim ({__file__}): no --python SCRIPT given in {args}")
    return script, error_code


def keep_site_packages_after_blenderproc_import():
    """blenderproc/__init__.py removes its parent folder from sys.path once (list.remove).

    Here that folder is the venv's site-packages, which also holds requests, bpy and every
    other dependency, so the imports right after it would fail. A second copy at the end
    of sys.path survives the removal.
    """
    spec = find_spec("blenderproc")
    if spec is None or not spec.submodule_search_locations:
        return
    parent = os.path.abspath(os.path.join(list(spec.submodule_search_locations)[0], ".."))
    if sys.path.count(parent) < 2:
        sys.path.append(parent)


def main():
    args = sys.argv[1:]
    script, error_code = parse_blender_args(args)
    import bpy  # noqa: F401  (Blender has bpy loaded before any --python script runs)

    sys.argv = [os.path.join(HERE, "blender")] + args
    with open(os.path.join(HERE, SETTINGS_NAME), encoding="utf-8") as handle:
        settings = json.load(handle)
    sys.executable = os.path.join(HERE, settings["version"], "python", "bin", settings["python_tag"])
    keep_site_packages_after_blenderproc_import()
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if not isinstance(exc.code, (int, type(None))):
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
        code = error_code
    sys.stdout.flush()
    sys.stderr.flush()
    # Interpreter shutdown after BlenderProc has been imported segfaults; skip it.
    os._exit(code)


if __name__ == "__main__":
    main()
