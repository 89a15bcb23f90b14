"""Build the render environment: BlenderProc 2.8 on PyPI's ``bpy`` wheel, in its own venv.

The main environment runs numpy 2; Blender 4.2 is built against numpy 1.x, so rendering
runs in a separate virtualenv. BlenderProc normally downloads a Blender release from
blender.org and pip-installs its own dependencies during the first render. Instead, this
module uses PyPI's ``bpy`` wheel as "Blender 4.2" and builds, once, everything BlenderProc's
``--custom-blender-path`` option expects, so that rendering never touches the network:

    ENV_DIR/                          a venv with blenderproc, bpy, numpy 1.26 and
      bin/python, bin/blenderproc     BlenderProc's own pinned packages
      custom-blender/                 what ``--custom-blender-path`` points at
        blender                       launcher: runs the venv's python on the shim
        blender_shim.py               imports bpy and runs ``--python SCRIPT`` like Blender
                                      (a copy of picat/render/blender_shim.py)
        blender_shim.json             the Blender version and python tag the shim reports
        4.2/python/bin/python3.11     "Blender's python" (a wrapper around the venv's python)
        4.2/python/lib/python3.11/site-packages -> the venv's site-packages
        custom-python-packages/installed_packages_cache_v2.json
      picat-render-env.json           stamp: written last, only after a smoke render worked

The stamp is the output of the workflow rule that builds the environment, so its existence
means the environment renders. Run as ``python -m picat.render.environment ENV_DIR``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from picat.atomic import write_json_atomically

BLENDER_VERSION = "4.2"  # the folder name is BlenderProc's only check of the Blender version
PYTHON_TAG = "python3.11"  # bpy 4.2.0 wheels exist for CPython 3.11 only

# The packages this project chose; bpy 4.2.0 is the PyPI build of Blender 4.2.
CORE_PINS = ("blenderproc==2.8.0", "bpy==4.2.0", "numpy==1.26.4")

# BlenderProc 2.8.0's own list (DefaultConfig.default_pip_packages), which it would otherwise
# pip-install into custom-python-packages on first run. ``wheel`` is unpinned there; we pin it.
# ``check_blenderproc_pins`` verifies this list against the installed BlenderProc.
BLENDERPROC_PINS = (
    "wheel==0.43.0",
    "pyyaml==6.0.1",
    "imageio==2.34.1",
    "gitpython==3.1.43",
    "scikit-image==0.23.2",
    "pypng==0.20220715.0",
    "scipy==1.13.1",
    "matplotlib==3.9.0",
    "pytz==2024.1",
    "h5py==3.11.0",
    "Pillow==10.3.0",
    "opencv-contrib-python==4.10.0.82",
    "scikit-learn==1.5.0",
    "python-dateutil==2.9.0.post0",
    "rich==13.7.1",
    "trimesh==4.4.0",
    "pyrender==0.1.45",
)

STAMP_NAME = "picat-render-env.json"
CUSTOM_BLENDER_DIR = "custom-blender"
SHIM_NAME = "blender_shim.py"
SHIM_SETTINGS_NAME = "blender_shim.json"  # read by the shim (blender_shim.SETTINGS_NAME)
SMOKE_TIMEOUT_S = 300

Logger = Callable[[str], None]

_LAUNCHER_SOURCE = """\
#!/bin/sh
# "Blender" for BlenderProc's --custom-blender-path: the bpy wheel driven by a shim (picat).
here="$(cd "$(dirname "$0")" && pwd -P)"
exec "$here/../bin/python" "$here/{shim}" "$@"
"""

# A wrapper, not a symlink: a symlinked venv python outside bin/ would not find pyvenv.cfg
# and would run as the base interpreter (so any pip BlenderProc ran would go astray).
_PYTHON_WRAPPER_SOURCE = """\
#!/bin/sh
# Blender's bundled python, as BlenderProc looks for it: the render venv's python (picat).
here="$(cd "$(dirname "$0")" && pwd -P)"
exec "$here/../../../../bin/python" "$@"
"""


def render_env_python(env_dir: Path) -> Path:
    """The render venv's python interpreter."""
    return Path(env_dir) / "bin" / "python"


def blenderproc_executable(env_dir: Path) -> Path:
    """The ``blenderproc`` command line tool of the render venv."""
    return Path(env_dir) / "bin" / "blenderproc"


def custom_blender_path(env_dir: Path) -> Path:
    """The folder to pass to ``blenderproc run --custom-blender-path``."""
    return Path(env_dir) / CUSTOM_BLENDER_DIR


def stamp_path(env_dir: Path) -> Path:
    """The stamp file whose existence means the render environment works."""
    return Path(env_dir) / STAMP_NAME


def read_stamp(env_dir: Path) -> dict | None:
    """The stamp's content, or None where the environment was never completed."""
    path = stamp_path(env_dir)
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RuntimeError(f"render env stamp {path} is unreadable ({exc}); rebuild the environment") from exc


def site_packages(env_dir: Path) -> Path:
    """The venv's site-packages folder."""
    return Path(env_dir) / "lib" / PYTHON_TAG / "site-packages"


def blenderproc_command(env_dir: Path, script: Path, script_args: Sequence[str], temp_dir: Path) -> list[str]:
    """The command line that runs ``script`` inside "Blender" through BlenderProc.

    Args:
        env_dir: the render environment.
        script: the python file to run inside Blender (must start with a blenderproc import).
        script_args: arguments the script receives as ``sys.argv[1:]``.
        temp_dir: folder under which BlenderProc puts its per-run scratch folder.
    """
    return [
        str(blenderproc_executable(env_dir)),
        "run",
        "--custom-blender-path",
        str(custom_blender_path(env_dir)),
        "--temp-dir",
        str(temp_dir),
        str(script),
        *map(str, script_args),
    ]


def blenderproc_environ(private_tmp: Path, threads: int, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment variables for a BlenderProc child process.

    Args:
        private_tmp: the job's own TMPDIR (Blender leaves ``blender_*`` files behind in it).
        threads: thread budget for numpy/OpenMP and llvmpipe inside the child (0 leaves them
            as they are); Blender's own render threads are set by the script.
        base: the environment to start from (default: this process's).
    """
    env = dict(os.environ if base is None else base)
    # The render venv must not see the main environment's packages.
    for name in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"):
        env.pop(name, None)
    # Blender takes its session folder from TEMP before TMPDIR, and Snakemake sets TEMP and
    # TMP for its jobs: point every one of them at the private folder.
    for name in ("TMPDIR", "TEMP", "TMP", "TEMPDIR"):
        env[name] = str(private_tmp)
    env["PYTHONUNBUFFERED"] = "1"  # progress lines reach the log as they happen
    if threads > 0:
        # numpy/OpenMP inside Blender, and Mesa's llvmpipe, which rasterises Workbench on CPU.
        for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "LP_NUM_THREADS"):
            env[name] = str(threads)
    return env


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (Linux /proc; just ``pid`` elsewhere), children first."""
    children: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            children += [int(c) for c in (task / "children").read_text().split()]
    except OSError:
        pass
    return [p for child in children for p in process_tree(child)] + [pid]


def kill_process_tree(pid: int) -> None:
    """SIGKILL a process and its descendants (blenderproc runs "Blender" as a grandchild).

    The children stay in our process group, so Ctrl-C or a scheduler's group signal reaches
    them too; this is for timeouts, where only we know to stop them.
    """
    for victim in process_tree(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)


def _run(cmd: Sequence[str], log: Logger, what: str, env: dict[str, str] | None = None,
         timeout: float | None = None, stream: bool = False) -> str:
    """Run a command and return its output; raise RuntimeError with the output's tail if it fails.

    With ``stream``, every output line also goes to ``log`` as it arrives (for long steps);
    otherwise ``timeout`` applies, and on expiry the command and its descendants are killed.
    """
    log("$ " + " ".join(map(str, cmd)).replace("\n", "; "))
    with subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env, errors="replace") as proc:
        assert proc.stdout is not None
        if stream:
            lines = []
            for line in proc.stdout:
                lines.append(line.rstrip("\n"))
                log("  " + lines[-1])
            output = "\n".join(lines)
        else:
            try:
                output, _ = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_process_tree(proc.pid)
                output = proc.communicate()[0] + f"\n(killed after {timeout} s)"
        returncode = proc.wait()
    if returncode != 0:
        tail = "\n".join(output.splitlines()[-40:])
        raise RuntimeError(f"{what} failed (exit {returncode}):\n{tail}")
    return output


def _prepare_dir(env_dir: Path, log: Logger) -> None:
    """Make ``env_dir`` empty, refusing to wipe a folder that is not a (half-built) venv."""
    if env_dir.exists():
        if not env_dir.is_dir():
            raise RuntimeError(f"render env path {env_dir} exists and is not a folder")
        entries = list(env_dir.iterdir())
        ours = (env_dir / "pyvenv.cfg").exists() or (env_dir / CUSTOM_BLENDER_DIR).exists()
        if entries and not ours:
            raise RuntimeError(
                f"render env folder {env_dir} is not empty and holds no venv; refusing to delete its contents"
            )
        if entries:
            # A half-built or outdated env: start again from nothing (pip's cache makes this cheap)
            # rather than trust whatever an interrupted pip left behind.
            log(f"removing the previous contents of {env_dir}")
            stamp_path(env_dir).unlink(missing_ok=True)  # first, so a crash below never leaves a stale stamp
            shutil.rmtree(env_dir)
    env_dir.mkdir(parents=True, exist_ok=True)


def _installed_packages(env_dir: Path, log: Logger) -> dict[str, str]:
    """{lower-case name: version} of the venv, parsed the way BlenderProc parses pip freeze."""
    out = _run([render_env_python(env_dir), "-m", "pip", "list", "--format=freeze", "--disable-pip-version-check"],
               log, "pip list in the render env")
    packages = {}
    for line in out.splitlines():
        if "==" in line:
            name, version = line.strip().lower().split("==", 1)
            packages[name] = version
    return packages


def check_blenderproc_pins(env_dir: Path, installed: dict[str, str], log: Logger) -> None:
    """Check that every package BlenderProc would pip-install is installed at its pinned version.

    Reads BlenderProc's own list from the installed package (not from BLENDERPROC_PINS), so a
    different BlenderProc version is caught here rather than by a pip run at render time.
    """
    code = (
        "import json\n"
        "from blenderproc.python.utility.DefaultConfig import DefaultConfig\n"
        "print(json.dumps(DefaultConfig.default_pip_packages))\n"
    )
    # blenderproc/__init__.py refuses to be imported outside `blenderproc run` unless told so.
    env = dict(os.environ, OUTSIDE_OF_THE_INTERNAL_BLENDER_PYTHON_ENVIRONMENT_BUT_IN_RUN_SCRIPT="1")
    out = _run([render_env_python(env_dir), "-c", code], log, "reading BlenderProc's package list", env=env)
    wanted = json.loads(out.strip().splitlines()[-1])
    problems = []
    for requirement in wanted:
        name, _, version = requirement.lower().partition("==")
        have = installed.get(name)
        if have is None or (version and have != version):
            problems.append(f"{requirement} (installed: {have})")
    if problems:
        raise RuntimeError(
            f"render env {env_dir}: BlenderProc would pip-install these at render time: {', '.join(problems)}; "
            "update BLENDERPROC_PINS in picat/render/environment.py"
        )


def _write_executable(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)


def write_custom_blender(env_dir: Path, installed: dict[str, str]) -> Path:
    """Write the folder BlenderProc's ``--custom-blender-path`` expects; returns it."""
    root = custom_blender_path(env_dir)
    _write_executable(root / "blender", _LAUNCHER_SOURCE.format(shim=SHIM_NAME))
    # The shim is picat/render/blender_shim.py, copied verbatim; what it must know of this
    # environment goes into the JSON file beside it.
    shutil.copyfile(Path(__file__).with_name(SHIM_NAME), root / SHIM_NAME)
    (root / SHIM_SETTINGS_NAME).write_text(
        json.dumps({"version": BLENDER_VERSION, "python_tag": PYTHON_TAG}, indent=1) + "\n", encoding="utf-8"
    )
    python_dir = root / BLENDER_VERSION / "python"
    _write_executable(python_dir / "bin" / PYTHON_TAG, _PYTHON_WRAPPER_SOURCE)
    # BlenderProc lists "Blender's own" packages from here when it rebuilds its cache
    # (blenderproc run --force-pip-update): point it at the venv's site-packages.
    link = python_dir / "lib" / PYTHON_TAG / "site-packages"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.is_symlink():
        link.symlink_to(os.path.relpath(site_packages(env_dir), link.parent))
    # With this cache present and listing every pinned package, BlenderProc never runs pip.
    cache = root / "custom-python-packages" / "installed_packages_cache_v2.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(installed, indent=1, sort_keys=True), encoding="utf-8")
    return root


def smoke_test(env_dir: Path, log: Logger) -> dict:
    """Render one tiny image through ``blenderproc run``; returns what the script reported.

    Runs blender_script.py's self test (bproc.init, a cube, one Workbench view), which covers
    the launcher, the shim, the sys.path and language workarounds and the pip cache.
    """
    script = Path(__file__).with_name("blender_script.py")
    with tempfile.TemporaryDirectory(prefix="picat-render-smoke-") as tmp:
        tmp_path = Path(tmp)
        report = tmp_path / "smoke.json"
        cmd = blenderproc_command(env_dir, script, ["--self-test", report], tmp_path)
        t0 = time.perf_counter()
        out = _run(cmd, log, "smoke render", env=blenderproc_environ(tmp_path, 1), timeout=SMOKE_TIMEOUT_S)
        if "Installing pip package" in out:
            raise RuntimeError(f"render env {env_dir}: BlenderProc tried to pip-install packages:\n{out[-2000:]}")
        if not report.is_file():
            raise RuntimeError(f"smoke render wrote no report {report}; its output ended with:\n{out[-2000:]}")
        result = json.loads(report.read_text(encoding="utf-8"))
    if not result.get("ok"):
        raise RuntimeError(f"smoke render in {env_dir} failed its checks: {result}")
    result["seconds"] = round(time.perf_counter() - t0, 2)
    log(f"smoke render ok in {result['seconds']} s: {result}")
    return result


def build_render_env(env_dir: Path, base_python: str = sys.executable, log: Logger | None = None) -> Path:
    """Create the render environment at ``env_dir`` and return its stamp file.

    Anything already in ``env_dir`` (a half-built or older environment) is removed first,
    provided it looks like a venv. Needs PyPI (or a pip cache / index configured for pip).

    Args:
        env_dir: where the venv goes, e.g. ``.envs/render``.
        base_python: a CPython 3.11 interpreter to create the venv from.
        log: progress sink (default: print to stderr).
    """
    log = log or (lambda msg: print(f"[render-env] {msg}", file=sys.stderr, flush=True))
    env_dir = Path(env_dir).absolute()
    t_start = time.perf_counter()
    version = _run([base_python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], log, "base python")
    if version.strip() != PYTHON_TAG.removeprefix("python"):
        raise RuntimeError(f"base python {base_python} is {version.strip()}; bpy==4.2.0 needs {PYTHON_TAG}")

    _prepare_dir(env_dir, log)
    log(f"creating the venv at {env_dir}")
    _run([base_python, "-m", "venv", env_dir], log, "python -m venv")
    log("installing packages (bpy is a ~0.5 GB wheel; this takes a while on first download)")
    _run(
        [render_env_python(env_dir), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
         "--progress-bar", "off", *CORE_PINS, *BLENDERPROC_PINS],
        log,
        "pip install into the render env",
        stream=True,
    )
    installed = _installed_packages(env_dir, log)
    check_blenderproc_pins(env_dir, installed, log)
    write_custom_blender(env_dir, installed)
    log("smoke render")
    smoke = smoke_test(env_dir, log)

    stamp = {
        "blender_version": BLENDER_VERSION,
        "python": version.strip(),
        "pins": list(CORE_PINS) + list(BLENDERPROC_PINS),
        "packages": installed,
        "smoke": smoke,
        "custom_blender_path": str(custom_blender_path(env_dir)),
        "build_seconds": round(time.perf_counter() - t_start, 1),
    }
    write_json_atomically(stamp_path(env_dir), stamp)
    log(f"done in {stamp['build_seconds']} s; stamp {stamp_path(env_dir)}")
    return stamp_path(env_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m picat.render.environment ENV_DIR [--python PYTHON]``."""
    parser = argparse.ArgumentParser(description="Build picat's BlenderProc render environment.")
    parser.add_argument("env_dir", type=Path, help="folder for the venv, e.g. .envs/render")
    parser.add_argument("--python", default=sys.executable, help="CPython 3.11 to base the venv on")
    args = parser.parse_args(argv)
    try:
        build_render_env(args.env_dir, args.python)
    except RuntimeError as exc:
        print(f"[render-env] error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
