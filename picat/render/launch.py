"""Run a render job in the render environment (called from the main environment).

A job renders many meshes in one BlenderProc process (start-up costs ~3-4 s on 2 cores, so
one process per mesh would dominate). The job is handed over as a JSON file whose schema is
:class:`RenderJob`; ``blender_script.py`` reads it inside Blender and writes one HDF5 file:

* ``object_ids`` (n,) UTF-8 strings: the items rendered, in job order, failures left out
* ``images`` (n, V, H, W, 3) uint8: RGB composited over white
* ``masks`` (n, V, H, W) bool: alpha > 0.5. Measured against an exact rasterisation of
  picat.geometry's projection (pixel centres), for a ~7000-pixel silhouette: Workbench with
  workbench_aa="OFF" differs in 0-2 pixels, Cycles in ~12; Workbench's anti-aliased alpha
  runs low at edges, so with "8" its masks lie ~0.3 px inside the outline (60-100 pixels)
* ``blender_cam2world`` (V, 4, 4) float64: camera poses as Blender holds them
* ``blender_projection`` (4, 4) float64: Blender's OpenGL projection (BlenderProc's
  CameraUtility.get_projection_matrix), for cross-checking picat.geometry
* ``failed/object_ids``, ``failed/reasons`` (m,) strings: items that could not be imported
* attributes: engine, cycles_samples, workbench_aa, fov_deg, width, height, near, far,
  blender_version, blenderproc_version, seconds_per_view (per rendered view, start-up excluded)
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import numpy as np

from picat.render.environment import (
    blenderproc_command,
    blenderproc_environ,
    blenderproc_executable,
    kill_process_tree,
    read_stamp,
    render_env_python,
    stamp_path,
)

__all__ = ["RenderItem", "RenderJob", "render_objects", "render_env_python", "blenderproc_executable",
           "BLENDER_SCRIPT"]

BLENDER_SCRIPT = Path(__file__).with_name("blender_script.py")
ENGINES = ("workbench", "cycles")
WORKBENCH_AA = ("OFF", "FXAA", "5", "8", "11", "16", "32")
LOG_TAIL_LINES = 60


@dataclass
class RenderItem:
    """One mesh of a job.

    Attributes:
        object_id: unique name of the mesh within the job (e.g. ``<synset>/<model id>``).
        obj_path: Wavefront OBJ file (its MTL and textures beside it, as the OBJ names them).
        world_from_file: 4x4 nested list mapping the file's coordinates to the world frame
            (the normalisation into the unit sphere); the file's axes are kept as they are.
    """

    object_id: str
    obj_path: str
    world_from_file: list[list[float]]


@dataclass
class RenderJob:
    """A render job; ``asdict(job)`` is exactly the JSON that blender_script.py reads.

    Attributes:
        items: the meshes to render.
        view_matrices: (V, 4, 4) nested list, world-to-camera matrices in picat.geometry's
            convention (camera looks down -Z, +Y up), e.g. ``dodecahedron_cameras(...)[0]``.
        fov_deg: vertical field of view in degrees (picat.geometry.perspective).
        output: the HDF5 file to write (absolute path recommended).
        width, height: image size in pixels (224 in the paper).
        engine: "workbench" (fast, studio-lit, the demo default) or "cycles".
        cycles_samples: maximum samples per pixel for Cycles (adaptive sampling on).
        cycles_denoiser: None (default) or "INTEL" (OpenImageDenoise; ~3x slower on CPU).
        workbench_aa: Workbench anti-aliasing samples, one of WORKBENCH_AA. Cost grows with
            samples x triangles: a 55k-triangle ShapeNet plane took 0.72 s/view at "8",
            0.5 at "5" and 0.2 at "FXAA"/"OFF" on 2 cores (a 5k-triangle chair 0.26 at "8").
        threads: render threads; 0 uses every core.
        near, far: clipping planes, the defaults of picat.geometry.perspective; the object
            must lie between them.
    """

    items: list[RenderItem]
    view_matrices: list[list[list[float]]]
    fov_deg: float
    output: str
    width: int = 224
    height: int = 224
    engine: str = "workbench"
    cycles_samples: int = 16
    cycles_denoiser: str | None = None
    workbench_aa: str = "8"
    threads: int = 0
    near: float = 0.1
    far: float = 10.0

    def __post_init__(self) -> None:
        self.items = [item if isinstance(item, RenderItem) else RenderItem(**item) for item in self.items]
        self.view_matrices = np.asarray(self.view_matrices, dtype=np.float64).tolist()
        self.output = str(self.output)

    def validate(self) -> None:
        """Raise ValueError naming the first field that is wrong."""
        views = np.asarray(self.view_matrices)
        if views.ndim != 3 or views.shape[1:] != (4, 4) or len(views) == 0:
            raise ValueError(f"view_matrices must have shape (V, 4, 4), got {views.shape}")
        if not 0 < self.fov_deg < 180:
            raise ValueError(f"fov_deg must be in (0, 180), got {self.fov_deg}")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"width and height must be positive, got {self.width}x{self.height}")
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
        if self.cycles_samples <= 0:
            raise ValueError(f"cycles_samples must be positive, got {self.cycles_samples}")
        if self.cycles_denoiser not in (None, "INTEL", "OPTIX"):
            raise ValueError(f"cycles_denoiser must be None, 'INTEL' or 'OPTIX', got {self.cycles_denoiser!r}")
        if self.workbench_aa not in WORKBENCH_AA:
            raise ValueError(f"workbench_aa must be one of {WORKBENCH_AA}, got {self.workbench_aa!r}")
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0 (0 = all cores), got {self.threads}")
        if not 0 < self.near < self.far:
            raise ValueError(f"need 0 < near < far, got near={self.near}, far={self.far}")
        seen: set[str] = set()
        for item in self.items:
            if item.object_id in seen:
                raise ValueError(f"object_id {item.object_id!r} occurs twice in the job")
            seen.add(item.object_id)
            if not Path(item.obj_path).is_file():
                raise ValueError(f"item {item.object_id!r}: OBJ file not found: {item.obj_path}")
            matrix = np.asarray(item.world_from_file, dtype=np.float64)
            if matrix.shape != (4, 4) or not np.all(np.isfinite(matrix)):
                raise ValueError(f"item {item.object_id!r}: world_from_file must be a finite 4x4 matrix")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)


def output_is_complete(job: RenderJob) -> tuple[bool, str]:
    """Whether the job's HDF5 exists and accounts for every item; (ok, reason if not)."""
    import h5py  # the main environment has it; imported here so launch.py stays light to import

    path = Path(job.output)
    if not path.is_file():
        return False, f"no output file {path}"
    try:
        with h5py.File(path, "r") as f:
            n_done = f["object_ids"].shape[0]
            n_failed = f["failed/object_ids"].shape[0]
            views = f["images"].shape[1]
    except (OSError, KeyError) as exc:
        return False, f"output {path} is unreadable or incomplete: {exc}"
    if n_done + n_failed != len(job.items):
        return False, f"output {path} lists {n_done} rendered + {n_failed} failed items, the job has {len(job.items)}"
    if views != len(job.view_matrices):
        return False, f"output {path} has {views} views, the job has {len(job.view_matrices)}"
    return True, ""


def render_objects(job: RenderJob, env_dir: Path, log: TextIO | None = None, timeout_s: float | None = None) -> None:
    """Render every item of ``job`` with BlenderProc in the render environment at ``env_dir``.

    The child runs with a private TMPDIR (Blender leaves files there) that is deleted
    afterwards, its output is streamed line by line to ``log`` (default: stderr). Success is
    judged by the output file: the script writes it under a temporary name and renames it
    last, so a complete file with a non-zero exit code (BlenderProc's known exit segfault)
    counts as success, and an exit code of 0 without the file does not.

    Raises:
        ValueError: the job is malformed (names the field).
        RuntimeError: the environment is not built, or rendering failed (with the log tail).
    """
    job.validate()
    env_dir = Path(env_dir).absolute()
    if read_stamp(env_dir) is None:
        raise RuntimeError(
            f"render environment {env_dir} is not built ({stamp_path(env_dir)} missing); "
            f"run: python -m picat.render.environment {env_dir}"
        )
    log = log if log is not None else sys.stderr
    output = Path(job.output).absolute()
    output.parent.mkdir(parents=True, exist_ok=True)
    output.unlink(missing_ok=True)  # a stale file must not pass for this run's result
    job = RenderJob(**{**asdict(job), "output": str(output)})

    tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
    with tempfile.TemporaryDirectory(prefix="picat-render-") as tmp:
        tmp_dir = Path(tmp)
        job_path = tmp_dir / "job.json"
        job_path.write_text(job.to_json(), encoding="utf-8")
        private_tmp = tmp_dir / "tmp"
        private_tmp.mkdir()
        cmd = blenderproc_command(env_dir, BLENDER_SCRIPT, [job_path], private_tmp)
        t0 = time.perf_counter()
        returncode = _stream(cmd, blenderproc_environ(private_tmp, job.threads), log, tail, timeout_s)
        seconds = time.perf_counter() - t0

    complete, reason = output_is_complete(job)
    if complete:
        if returncode != 0:
            _write(log, f"[render] exit code {returncode}, but the output is complete and is accepted "
                        "(Blender may crash while exiting)")
        _write(log, f"[render] job done in {seconds:.1f} s: {output}")
        return
    for partial in output.parent.glob(f".{output.name}.*.tmp"):  # left by a killed or crashed script
        partial.unlink(missing_ok=True)
    raise RuntimeError(
        f"render job for {output} failed (exit code {returncode}): {reason}\n"
        f"last lines of the render log:\n" + "\n".join(tail)
    )


def _write(log: TextIO, line: str) -> None:
    log.write(line + "\n")
    log.flush()


def _stream(cmd: Sequence[str], env: dict[str, str], log: TextIO, tail: collections.deque[str],
            timeout_s: float | None) -> int:
    """Run ``cmd``, copying each output line to ``log`` and ``tail``; returns the exit code.

    The child stays in our process group, so Ctrl-C or a scheduler's signal to the group
    stops Blender too; on a timeout we kill the child and its descendants ourselves.
    """
    _write(log, "$ " + " ".join(map(str, cmd)))
    with subprocess.Popen(list(map(str, cmd)), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                          text=True, errors="replace", bufsize=1) as proc:
        assert proc.stdout is not None
        stdout = proc.stdout

        def pump() -> None:
            for line in stdout:
                line = line.rstrip("\n")
                tail.append(line)
                _write(log, line)

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            returncode = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            kill_process_tree(proc.pid)
            returncode = proc.wait()
            tail.append(f"[render] killed after the {timeout_s} s timeout")
        except BaseException:
            kill_process_tree(proc.pid)  # e.g. an exception in this thread: take Blender down with us
            raise
        reader.join(timeout=10)
        return returncode
