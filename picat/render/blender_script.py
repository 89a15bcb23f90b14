# picat's render script: runs INSIDE Blender through BlenderProc.
#
#   blenderproc run --custom-blender-path ENV/custom-blender blender_script.py JOB_JSON
#   blenderproc run --custom-blender-path ENV/custom-blender blender_script.py --self-test REPORT_JSON
#
# It renders every mesh of a job (schema: picat.render.launch.RenderJob) from the job's cameras
# and writes one HDF5 file. It runs in the render venv (bpy, BlenderProc 2.8, numpy 1.26,
# h5py 3.11), so it must not import picat (whose environment has numpy 2): it is
# self-contained, and the camera conventions below restate picat.geometry's.
#
# BlenderProc requires its import to be the first statement of the file (it checks the
# source text), hence comments here instead of a module docstring.
import blenderproc as bproc  # noqa: I001  (must come first, see above)

import json
import os
import sys
import time
import traceback
from pathlib import Path

import bmesh
import bpy
import h5py
import numpy as np
from blenderproc.python.camera import CameraUtility
from blenderproc.python.utility import Initializer as _initializer_module

ENGINES = ("workbench", "cycles")
WORKBENCH_AA = ("OFF", "FXAA", "5", "8", "11", "16", "32")  # Blender's scene.display.render_aa values
WHITE = 255.0


class _Override:
    """Read-through proxy that answers a few attributes itself and forwards everything else."""

    def __init__(self, target, **overrides):
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_overrides", overrides)

    def __getattr__(self, name):
        overrides = object.__getattribute__(self, "_overrides")
        if name in overrides:
            return overrides[name]
        return getattr(object.__getattribute__(self, "_target"), name)

    def __setattr__(self, name, value):
        setattr(object.__getattribute__(self, "_target"), name, value)


def init_blenderproc() -> None:
    """bproc.init(), tolerating a Blender built without translations (PyPI's bpy wheel).

    BlenderProc 2.8's init sets the UI language to "en_US" whenever it is not already; a
    build without international support has no such enum value and init fails with
    'enum "en_US" not found'. Such a build is English-only anyway, so for the duration of
    init the Initializer module sees a bpy whose language reads "en_US". Guarded: with a
    full Blender build, init runs untouched.
    """
    if bpy.app.build_options.international:
        bproc.init()
        return
    view = bpy.context.preferences.view
    preferences = _Override(bpy.context.preferences, view=_Override(view, language="en_US"))
    fake_bpy = _Override(bpy, context=_Override(bpy.context, preferences=preferences))
    _initializer_module.bpy = fake_bpy
    try:
        bproc.init()
    finally:
        _initializer_module.bpy = bpy


# ---------------------------------------------------------------- cameras (picat.geometry)


def intrinsics_matrix(fov_deg: float, width: int, height: int) -> np.ndarray:
    """Pinhole K for a vertical field of view, principal point at ((W-1)/2, (H-1)/2).

    Same as picat.geometry.intrinsics_matrix; (W-1)/2 is what BlenderProc's
    set_intrinsics_from_K_matrix takes as "no lens shift", i.e. the optical axis through
    the image centre, where picat's projection puts u = v = 0.5.
    """
    focal = (height / 2.0) / np.tan(np.radians(fov_deg) / 2.0)
    return np.array([[focal, 0.0, (width - 1) / 2.0], [0.0, focal, (height - 1) / 2.0], [0.0, 0.0, 1.0]])


def set_cameras(job: dict) -> None:
    """Intrinsics and one keyframed pose per view matrix (world -> camera, OpenGL axes).

    Blender cameras look down their local -Z with +Y up, the convention of picat's view
    matrices, so each camera pose is simply the inverse of its view matrix.
    """
    K = intrinsics_matrix(job["fov_deg"], job["width"], job["height"])
    bproc.camera.set_intrinsics_from_K_matrix(K, job["width"], job["height"], clip_start=job["near"],
                                              clip_end=job["far"])
    for view in np.asarray(job["view_matrices"], dtype=np.float64):
        bproc.camera.add_camera_pose(np.linalg.inv(view))


# ---------------------------------------------------------------- scene


def configure_renderer(job: dict) -> None:
    """Engine settings that survive bproc.clean_up() (scene render/display settings)."""
    scene = bpy.context.scene
    bproc.renderer.set_output_format(file_format="PNG", color_depth=8, enable_transparency=True)
    bproc.renderer.set_cpu_threads(job["threads"])
    if job["engine"] == "workbench":
        scene.render.engine = "BLENDER_WORKBENCH"
        shading = scene.display.shading
        shading.light = "STUDIO"  # studio light follows the camera: every view equally lit
        shading.color_type = "TEXTURE"  # image textures where the material has one, else its colour
        shading.show_cavity = False
        shading.show_backface_culling = False  # ShapeNet meshes are often single-sided
        scene.display.render_aa = job["workbench_aa"]
        scene.view_settings.view_transform = "Standard"  # material colours as authored
    else:
        scene.render.engine = "CYCLES"
        bproc.renderer.set_max_amount_of_samples(job["cycles_samples"])
        bproc.renderer.set_denoiser(job["cycles_denoiser"])


def add_lights(job: dict) -> None:
    """Cycles lighting (Workbench needs none): soft white environment plus a camera-fixed key light.

    The key light is parented to the camera, so every one of the views is lit the same way
    relative to the viewer, as in Workbench's studio lighting.
    """
    if job["engine"] != "cycles":
        return
    bproc.renderer.set_world_background([1.0, 1.0, 1.0], strength=0.6)
    light_data = bpy.data.lights.new("picat_key_light", type="SUN")
    light_data.energy = 2.5
    light = bpy.data.objects.new("picat_key_light", light_data)
    bpy.context.scene.collection.objects.link(light)
    light.parent = bpy.context.scene.camera
    light.rotation_euler = (np.radians(35.0), np.radians(-25.0), 0.0)  # from above-left of the viewer


def merge_coincident_faces(meshes) -> int:
    """Remove faces that coincide with another face (after welding vertices); returns how many.

    ShapeNet v1 makes surfaces double-sided by storing every face twice, with opposite
    windings. In Cycles each ray leaving one face hits its twin at once (speckled, near-black
    surfaces); in Workbench the twins z-fight, and the inward-facing one, lit from behind,
    blackens patches. Keeping one face of each pair leaves the surface, hence the mask,
    unchanged (both engines shade back faces), and halves the triangles to draw.
    """
    removed = 0
    for mesh in meshes:
        data = mesh.blender_obj.data
        bm = bmesh.new()
        bm.from_mesh(data)
        bmesh.ops.remove_doubles(bm, verts=list(bm.verts), dist=1e-7)
        seen, twins = set(), []
        for face in bm.faces:
            key = frozenset(vertex.index for vertex in face.verts)
            if key in seen:
                twins.append(face)
            else:
                seen.add(key)
        if twins:
            bmesh.ops.delete(bm, geom=twins, context="FACES_ONLY")
        bm.to_mesh(data)
        bm.free()
        removed += len(twins)
    return removed


def load_textures() -> None:
    """Read every image texture into memory before rendering.

    Otherwise Workbench sometimes drew the first frame of a render before a texture had
    loaded: view 0 of a textured ShapeNet chair came out grey or black, the other views fine.
    """
    for image in bpy.data.images:
        if image.source in ("FILE", "SEQUENCE", "TILED") and len(image.pixels) > 0:
            image.pixels[0]  # noqa: B018  (the access loads the image buffer)


def import_mesh(item: dict):
    """Import one OBJ and place it with its world_from_file matrix.

    forward_axis="Y", up_axis="Z" make the importer's axis conversion the identity (its
    default turns Y-up files into Blender's Z-up), so mesh data keeps the file's coordinates
    and world_from_file alone (computed by picat in the main environment) places it.

    Returns:
        the imported mesh objects; raises ValueError with the reason if there are none
        or they have no faces.
    """
    path = item["obj_path"]
    if not os.path.isfile(path):
        raise ValueError(f"file not found: {path}")
    meshes = bproc.loader.load_obj(path, forward_axis="Y", up_axis="Z")
    if not meshes:
        raise ValueError(f"import produced no mesh object from {path}")
    if sum(len(mesh.get_mesh().polygons) for mesh in meshes) == 0:
        raise ValueError(f"import produced meshes without faces from {path}")
    world_from_file = np.asarray(item["world_from_file"], dtype=np.float64)
    for mesh in meshes:
        # An OBJ's objects have no parents; setting the world matrix directly is exact.
        mesh.set_local2world_mat(world_from_file)
    return meshes


def render_views(job: dict) -> tuple[np.ndarray, np.ndarray]:
    """Render all keyframed views at once: RGB over white (V, H, W, 3) uint8, masks (V, H, W) bool."""
    data = bproc.renderer.render(verbose=False)
    rgba = np.stack(data["colors"])  # (V, H, W, 4), 8-bit PNGs with straight (unpremultiplied) alpha
    if rgba.shape[-1] != 4 or rgba.dtype != np.uint8:
        raise RuntimeError(f"expected 8-bit RGBA renders, got {rgba.dtype} of shape {rgba.shape}")
    rgba = rgba.astype(np.float32)
    alpha = rgba[..., 3:] / 255.0
    rgb = rgba[..., :3] * alpha + WHITE * (1.0 - alpha)
    images = np.clip(np.rint(rgb), 0, 255).astype(np.uint8)
    masks = alpha[..., 0] > 0.5
    return images, masks


# ---------------------------------------------------------------- output


class ResultWriter:
    """Writes the job's HDF5 incrementally under a temporary name; ``finish`` renames it.

    The final name therefore only ever holds a complete file, which is how the launcher
    judges success (the process's exit code is not reliable, see os._exit below).
    """

    def __init__(self, output: str, n_views: int, height: int, width: int) -> None:
        self.output = Path(output)
        # This script runs in Blender's python, which cannot import picat (a separate venv), so it
        # keeps its own temporary-name-then-rename instead of picat.atomic; launch.py removes a
        # leftover of a killed run by this name.
        self.tmp_path = self.output.with_name(f".{self.output.name}.{os.getpid()}.tmp")
        self.file = h5py.File(self.tmp_path, "w")
        text = h5py.string_dtype("utf-8")
        self.object_ids = self.file.create_dataset("object_ids", (0,), maxshape=(None,), dtype=text, chunks=(256,))
        self.images = self.file.create_dataset(
            "images", (0, n_views, height, width, 3), maxshape=(None, n_views, height, width, 3), dtype=np.uint8,
            chunks=(1, 1, height, width, 3), compression="gzip", compression_opts=4)
        self.masks = self.file.create_dataset(
            "masks", (0, n_views, height, width), maxshape=(None, n_views, height, width), dtype=bool,
            chunks=(1, 1, height, width), compression="gzip", compression_opts=4)
        self.n_rendered = 0
        self.failed_ids: list[str] = []
        self.failed_reasons: list[str] = []

    def add(self, object_id: str, images: np.ndarray, masks: np.ndarray) -> None:
        n = self.n_rendered
        for dataset in (self.object_ids, self.images, self.masks):
            dataset.resize(n + 1, axis=0)
        self.object_ids[n] = object_id
        self.images[n] = images
        self.masks[n] = masks
        self.n_rendered = n + 1

    def add_failure(self, object_id: str, reason: str) -> None:
        self.failed_ids.append(object_id)
        self.failed_reasons.append(reason)

    def abort(self) -> None:
        """Close and delete the temporary file (after an error): no partial output is left."""
        try:
            self.file.close()
        finally:
            Path(self.tmp_path).unlink(missing_ok=True)

    def finish(self, cam2world: np.ndarray, projection: np.ndarray, attrs: dict) -> None:
        text = h5py.string_dtype("utf-8")
        self.file.create_dataset("blender_cam2world", data=np.asarray(cam2world, dtype=np.float64))
        self.file.create_dataset("blender_projection", data=np.asarray(projection, dtype=np.float64))
        failed = self.file.create_group("failed")
        failed.create_dataset("object_ids", data=np.array(self.failed_ids, dtype=object), dtype=text)
        failed.create_dataset("reasons", data=np.array(self.failed_reasons, dtype=object), dtype=text)
        for key, value in attrs.items():
            self.file.attrs[key] = value
        self.file.close()
        os.replace(self.tmp_path, self.output)


# ---------------------------------------------------------------- job


def load_job(path: str) -> dict:
    """Read the job JSON, filling defaults and checking what the script relies on."""
    with open(path, encoding="utf-8") as f:
        job = json.load(f)
    job.setdefault("engine", "workbench")
    job.setdefault("cycles_samples", 16)
    job.setdefault("cycles_denoiser", None)
    job.setdefault("workbench_aa", "8")
    job.setdefault("threads", 0)
    job.setdefault("width", 224)
    job.setdefault("height", 224)
    job.setdefault("near", 0.1)
    job.setdefault("far", 10.0)
    for key in ("items", "view_matrices", "fov_deg", "output"):
        if key not in job:
            raise ValueError(f"render job {path}: missing key {key!r}")
    if job["workbench_aa"] not in WORKBENCH_AA:
        raise ValueError(f"render job {path}: workbench_aa must be one of {WORKBENCH_AA}, got {job['workbench_aa']!r}")
    if job["engine"] not in ENGINES:
        raise ValueError(f"render job {path}: engine must be one of {ENGINES}, got {job['engine']!r}")
    views = np.asarray(job["view_matrices"], dtype=np.float64)
    if views.ndim != 3 or views.shape[1:] != (4, 4) or len(views) == 0:
        raise ValueError(f"render job {path}: view_matrices must be (V, 4, 4), got shape {views.shape}")
    return job


def resident_mb() -> float:
    """This process's resident memory in MB (shown in progress lines: it must stay flat)."""
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def render_items(job: dict, writer: ResultWriter) -> float:
    """Render each item into ``writer``; returns the seconds spent on rendered items."""
    items = job["items"]
    rendered_seconds = 0.0
    for index, item in enumerate(items, start=1):
        t0 = time.perf_counter()
        object_id = item["object_id"]
        bproc.clean_up()  # drops meshes, materials, images, keyframes: memory stays flat
        set_cameras(job)
        add_lights(job)
        try:
            meshes = import_mesh(item)
        except Exception as exc:  # noqa: BLE001  (any import failure is recorded, not fatal)
            reason = f"{type(exc).__name__}: {exc}"
            writer.add_failure(object_id, reason)
            print(f"[render] {index}/{len(items)} {object_id} FAILED: {reason}", flush=True)
            continue
        merge_coincident_faces(meshes)
        load_textures()
        images, masks = render_views(job)
        writer.add(object_id, images, masks)
        seconds = time.perf_counter() - t0
        rendered_seconds += seconds
        print(f"[render] {index}/{len(items)} {object_id} {seconds:.1f} s ({resident_mb():.0f} MB)", flush=True)
    return rendered_seconds


def run_job(job_path: str) -> None:
    """Render every item of the job and write the HDF5 file."""
    job = load_job(job_path)
    n_views = len(job["view_matrices"])
    t_job = time.perf_counter()
    init_blenderproc()
    configure_renderer(job)
    set_cameras(job)
    cam2world = np.stack([bproc.camera.get_camera_pose(frame) for frame in range(n_views)])
    projection = CameraUtility.get_projection_matrix()
    writer = ResultWriter(job["output"], n_views, job["height"], job["width"])
    try:
        rendered_seconds = render_items(job, writer)
    except BaseException:
        writer.abort()
        raise
    writer.finish(cam2world, projection, {
        "engine": job["engine"],
        "cycles_samples": job["cycles_samples"] if job["engine"] == "cycles" else 0,
        "workbench_aa": job["workbench_aa"] if job["engine"] == "workbench" else "",
        "fov_deg": float(job["fov_deg"]),
        "width": job["width"],
        "height": job["height"],
        "near": float(job["near"]),
        "far": float(job["far"]),
        "blender_version": bpy.app.version_string,
        "blenderproc_version": bproc.__version__,
        "seconds_per_view": rendered_seconds / max(1, writer.n_rendered * n_views),
    })
    print(f"[render] wrote {job['output']}: {writer.n_rendered} rendered, {len(writer.failed_ids)} failed, "
          f"{time.perf_counter() - t_job:.1f} s", flush=True)


def self_test(report_path: str) -> None:
    """Render a cube in one small Workbench view and report whether it worked (env smoke test)."""
    init_blenderproc()
    camera_at_z5 = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, -5.0], [0, 0, 0, 1]]
    job = {"engine": "workbench", "workbench_aa": "8", "threads": 1, "fov_deg": 40.0, "width": 32, "height": 32,
           "near": 0.1, "far": 10.0, "view_matrices": [camera_at_z5]}
    configure_renderer(job)
    set_cameras(job)
    bproc.object.create_primitive("CUBE")
    images, masks = render_views(job)
    fraction = float(masks.mean())
    report = {
        "ok": bool(0.05 < fraction < 0.95 and images.shape == (1, 32, 32, 3)),
        "mask_fraction": fraction,
        "blender_version": bpy.app.version_string,
        "blenderproc_version": bproc.__version__,
        "numpy_version": np.__version__,
        "h5py_version": h5py.__version__,
        "python": sys.version.split()[0],
    }
    with open(report_path, "w", encoding="utf-8") as f:
        json.dump(report, f)


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--self-test":
        self_test(argv[1])
    elif len(argv) == 1:
        run_job(argv[0])
    else:
        print(f"usage: blenderproc run blender_script.py JOB_JSON | --self-test REPORT_JSON (got {argv})",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    try:
        exit_code = main(sys.argv[1:])
    except Exception:  # noqa: BLE001  (print, then exit without the interpreter shutdown)
        traceback.print_exc()
        exit_code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    # Interpreter shutdown after BlenderProc was imported segfaults; every output is
    # already flushed and closed, so leave without it.
    os._exit(exit_code)
