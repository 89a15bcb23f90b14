"""Rendering with BlenderProc: the silhouettes must sit where picat.geometry projects the mesh.

These tests need the render environment (``.envs/render`` or the folder named by
PICAT_RENDER_ENV); conftest's ``render_env`` fixture builds it on first use.
The ShapeNet test also needs the shared fixtures (PICAT_FIXTURES or ``<repo>/../shared/fixtures``).
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import trimesh
import yaml

from picat.geometry import (
    camera_to_world,
    dilate_masks,
    dodecahedron_cameras,
    perspective,
    project_points,
    uv_to_pixels,
)
from picat.meshes import normalisation_transform
from picat.render.environment import BLENDERPROC_PINS, CORE_PINS, build_render_env, read_stamp
from picat.render.launch import RenderItem, RenderJob, output_is_complete, render_objects

REPO = Path(__file__).resolve().parents[1]
ENV_DIR = Path(os.environ.get("PICAT_RENDER_ENV", REPO / ".envs" / "render")).resolve()  # as conftest.render_env_dir
FIXTURES = Path(os.environ.get("PICAT_FIXTURES", REPO.parent / "shared" / "fixtures"))
SHAPENET_PLANE = FIXTURES / "shapenetcore_v1" / "02691156" / "1caa02b831cccff090baeef8ba5b93e5" / "model.obj"
SHAPENET_CHAIR = FIXTURES / "shapenetcore_v1" / "03001627" / "21bfb150cfc23accb01c58badc8bbc39" / "model.obj"

DISTANCE, FOV_DEG, SIZE = 2.5, 50.0, 224  # the unit sphere needs fov >= 2 asin(1/2.5) = 47.2 deg
MIN_HIT_RATE = 0.95
GRAZING_COS = 0.3


def needs_env(test):
    """Mark a test as needing the render environment; conftest's ``render_env`` fixture builds
    it on first use, or skips the test where PICAT_NO_RENDER_ENV_BUILD is set."""
    return pytest.mark.render(pytest.mark.usefixtures("render_env")(test))


def asymmetric_mesh() -> trimesh.Trimesh:
    """An off-centre box, a Y-up cylinder and a turned bar, tilted: no mirror or rotational symmetry."""
    box = trimesh.creation.box(extents=(0.8, 0.3, 0.5))
    box.apply_translation((0.35, -0.1, -0.2))
    cylinder = trimesh.creation.cylinder(radius=0.15, height=0.9, sections=24)
    cylinder.apply_transform(trimesh.transformations.rotation_matrix(-np.pi / 2, (1, 0, 0)))  # axis Z -> Y
    cylinder.apply_translation((-0.4, 0.3, 0.25))
    wedge = trimesh.creation.box(extents=(0.2, 0.2, 0.6))
    wedge.apply_transform(trimesh.transformations.rotation_matrix(0.5, (0, 1, 0)))
    wedge.apply_translation((0.5, 0.25, 0.3))
    mesh = trimesh.util.concatenate([box, cylinder, wedge])
    # A generic tilt, so that no box face is exactly edge-on in a dodecahedron view: such a
    # face projects onto the silhouette's outline, where half its points fall outside.
    mesh.apply_transform(trimesh.transformations.euler_matrix(0.3, 0.5, 0.2))
    return mesh


def world_from_file(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """picat's normalisation (the one the render stage hands to Blender) of a mesh's used vertices."""
    return normalisation_transform(vertices[np.unique(faces)])


def transform(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    return points @ matrix[:3, :3].T + matrix[:3, 3]


def surface_samples(mesh: trimesh.Trimesh, matrix: np.ndarray, count: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """Points on the mesh surface and their face normals, in the world frame, (N, 3) each."""
    points, faces = trimesh.sample.sample_surface(mesh, count, seed=0)
    normals = mesh.face_normals[faces] @ np.linalg.inv(matrix[:3, :3])  # normals transform by the inverse transpose
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    return transform(points, matrix), normals


def hit_rates(points: np.ndarray, normals: np.ndarray, masks: np.ndarray, views: np.ndarray,
              tolerance_px: int = 0) -> np.ndarray:
    """Per view, the fraction of surface points that project onto mask pixels, (V,).

    With ``tolerance_px`` = 0, points on surfaces seen at a grazing angle (|cos| < GRAZING_COS
    between normal and viewing ray) are left out: they project onto the silhouette's outline,
    where a pixel is in the mask only if the object covers more than half of it, so about
    half of them land outside even with perfect geometry (a cylinder's side puts ~15% of its
    points within half a pixel of its outline at this size). With ``tolerance_px`` > 0 every
    point counts, and a point hits if a mask pixel lies within that many pixels of it.
    """
    height, width = masks.shape[1:]
    if tolerance_px:
        masks = dilate_masks(masks, tolerance_px)
    uv, in_front = project_points(points, views, perspective(FOV_DEG, width / height))
    rows, cols, inside = uv_to_pixels(uv, height, width)
    on_mask = masks[np.arange(len(views))[:, None], rows, cols] & inside & in_front
    if tolerance_px:
        return on_mask.mean(axis=1)
    eyes = np.stack([camera_to_world(view)[:3, 3] for view in views])
    rays = points[None] - eyes[:, None]
    cosines = np.abs(np.einsum("vnk,nk->vn", rays, normals)) / np.linalg.norm(rays, axis=-1)
    counted = cosines >= GRAZING_COS
    return (on_mask & counted).sum(axis=1) / counted.sum(axis=1)


def assert_silhouettes_match(points: np.ndarray, normals: np.ndarray, masks: np.ndarray, views: np.ndarray,
                             min_strict: float = MIN_HIT_RATE) -> None:
    """Every view: >= 95% (``min_strict``) of the non-grazing points on mask pixels, >= 95% of all within 1 px."""
    strict = hit_rates(points, normals, masks, views)
    assert strict.min() >= min_strict, f"per view, non-grazing points on the mask: {np.round(strict, 3)}"
    near = hit_rates(points, normals, masks, views, tolerance_px=1)
    assert near.min() >= MIN_HIT_RATE, f"per view, points within 1 px of the mask: {np.round(near, 3)}"


def render(tmp_path: Path, items: list[RenderItem], name: str = "out.h5", **settings) -> tuple[Path, np.ndarray]:
    views, _ = dodecahedron_cameras(DISTANCE, FOV_DEG, up_axis="y")
    job = RenderJob(items=items, view_matrices=views.tolist(), fov_deg=FOV_DEG, width=SIZE, height=SIZE,
                    output=str(tmp_path / name), threads=0, **settings)
    log = io.StringIO()
    render_objects(job, ENV_DIR, log=log)
    assert "[render] 1/" in log.getvalue(), log.getvalue()
    return tmp_path / name, views


def read_result(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return {
            "object_ids": [s.decode() if isinstance(s, bytes) else s for s in f["object_ids"][()]],
            "images": f["images"][()],
            "masks": f["masks"][()],
            "cam2world": f["blender_cam2world"][()],
            "projection": f["blender_projection"][()],
            "failed_ids": [s.decode() for s in f["failed/object_ids"][()]],
            "failed_reasons": [s.decode() for s in f["failed/reasons"][()]],
            "attrs": dict(f.attrs),
            "chunks": f["images"].chunks,
        }


@pytest.fixture(scope="module")
def asymmetric_render(render_env: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One job: the asymmetric mesh, plus an OBJ without faces that Blender must report as failed."""
    tmp_path = tmp_path_factory.mktemp("render")
    mesh = asymmetric_mesh()
    obj_path = tmp_path / "asymmetric.obj"
    obj_path.write_text(trimesh.exchange.obj.export_obj(mesh, include_normals=False, include_texture=False))
    empty_path = tmp_path / "points_only.obj"
    empty_path.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\n")
    matrix = world_from_file(mesh.vertices, mesh.faces)
    items = [
        RenderItem("asymmetric", str(obj_path), matrix.tolist()),
        RenderItem("points_only", str(empty_path), np.eye(4).tolist()),
    ]
    output, views = render(tmp_path, items)
    points, normals = surface_samples(mesh, matrix)
    return {"result": read_result(output), "views": views, "points": points, "normals": normals}


@needs_env
def test_env_stamp_records_a_working_smoke_render() -> None:
    stamp = read_stamp(ENV_DIR)
    assert stamp["smoke"]["ok"] and stamp["blender_version"] == "4.2"
    assert stamp["packages"]["numpy"] == "1.26.4" and stamp["packages"]["blenderproc"] == "2.8.0"


@needs_env
def test_silhouettes_match_picat_projection_in_every_view(asymmetric_render: dict) -> None:
    result, views = asymmetric_render["result"], asymmetric_render["views"]
    points, normals = asymmetric_render["points"], asymmetric_render["normals"]
    assert result["object_ids"] == ["asymmetric"]
    masks = result["masks"][0]
    assert masks.shape == (20, SIZE, SIZE) and masks.dtype == bool
    assert_silhouettes_match(points, normals, masks, views)
    # Not trivially true: most of each image is background.
    assert masks.mean(axis=(1, 2)).max() < 0.5 and masks.mean(axis=(1, 2)).min() > 0.02
    # The check has teeth: the same points turned from Y-up to Z-up (the OBJ importer's
    # default conversion) miss the silhouettes in some views.
    z_up = trimesh.transformations.rotation_matrix(np.pi / 2, (1, 0, 0))[:3, :3]
    assert hit_rates(points @ z_up.T, normals @ z_up.T, masks, views).min() < 0.8


@needs_env
def test_images_are_shaded_objects_on_white(asymmetric_render: dict) -> None:
    result = asymmetric_render["result"]
    images, masks = result["images"][0], result["masks"][0]
    assert images.shape == (20, SIZE, SIZE, 3) and images.dtype == np.uint8
    assert images[~masks].mean() > 250, "background should be white"
    for view in range(20):
        foreground = images[view][masks[view]].astype(float)
        assert foreground.mean() < 235, f"view {view}: object is as bright as the background"
        assert foreground.std() > 5, f"view {view}: object is a flat colour, no shading"
    assert result["chunks"] == (1, 1, SIZE, SIZE, 3)


@needs_env
def test_failed_import_is_recorded(asymmetric_render: dict) -> None:
    result = asymmetric_render["result"]
    assert result["failed_ids"] == ["points_only"]
    assert "without faces" in result["failed_reasons"][0], result["failed_reasons"]


@needs_env
def test_blender_cameras_equal_picat_matrices(asymmetric_render: dict) -> None:
    result, views = asymmetric_render["result"], asymmetric_render["views"]
    expected_poses = np.stack([camera_to_world(view) for view in views])
    np.testing.assert_allclose(result["cam2world"], expected_poses, atol=1e-5)
    np.testing.assert_allclose(result["projection"], perspective(FOV_DEG, 1.0, 0.1, 10.0), rtol=1e-5, atol=1e-6)
    assert result["attrs"]["engine"] == "workbench" and result["attrs"]["fov_deg"] == FOV_DEG


@needs_env
@pytest.mark.skipif(not SHAPENET_PLANE.is_file(), reason=f"ShapeNet fixture not found: {SHAPENET_PLANE} "
                    "(set PICAT_FIXTURES to the shared fixtures folder)")
def test_shapenet_objs_render_where_picat_projects_them(tmp_path: Path) -> None:
    """Genuine ShapeNetCore v1 OBJs: a plane with MTL colours and, where present, a textured chair."""
    paths = [SHAPENET_PLANE] + ([SHAPENET_CHAIR] if SHAPENET_CHAIR.is_file() else [])
    meshes, items = [], []
    for path in paths:
        mesh = trimesh.load(path, force="mesh", process=False)
        matrix = world_from_file(np.asarray(mesh.vertices), np.asarray(mesh.faces))
        meshes.append((mesh, matrix))
        items.append(RenderItem(f"{path.parent.parent.name}/{path.parent.name}", str(path), matrix.tolist()))
    output, views = render(tmp_path, items)
    result = read_result(output)
    assert result["failed_ids"] == [] and result["object_ids"] == [item.object_id for item in items]
    for index, (mesh, matrix) in enumerate(meshes):
        images, masks = result["images"][index], result["masks"][index]
        points, normals = surface_samples(mesh, matrix)
        # The chair's legs are 2-3 px wide, so a larger share of its points lies within half a
        # pixel of an outline; the 1 px check below still holds it to 95%.
        assert_silhouettes_match(points, normals, masks, views, min_strict=0.95 if index == 0 else 0.93)
        assert masks.mean() < 0.5
        # Every view is shaded alike: none comes out black (seen when a texture loaded late,
        # or when ShapeNet's doubled faces z-fought).
        brightness = np.array([images[view][masks[view]].mean() for view in range(len(views))])
        assert brightness.min() > 0.5 * np.median(brightness), f"foreground brightness per view: {brightness.round()}"
    # The plane's MTL gives it several colours (blue belly, red tail): not a single grey.
    plane = result["images"][0][result["masks"][0]].astype(float)
    assert (plane[:, 2] - plane[:, 0]).max() > 60, "no blue in the plane: MTL colours missing"


def triangle_job(tmp_path: Path, names: tuple[str, ...] = ("tri",), **settings) -> RenderJob:
    """A job rendering one small triangle OBJ (under each of ``names``) into tmp_path/x.h5."""
    obj = tmp_path / "tri.obj"
    obj.write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 3\n")
    views, _ = dodecahedron_cameras(DISTANCE, FOV_DEG)
    items = [RenderItem(name, str(obj), np.eye(4).tolist()) for name in names]
    return RenderJob(items=items, view_matrices=views.tolist(), fov_deg=FOV_DEG, output=str(tmp_path / "x.h5"),
                     **settings)


@needs_env
def test_render_objects_fails_clearly_without_output(tmp_path: Path) -> None:
    """A job the script rejects raises RuntimeError with the log tail, and leaves no output."""
    job = triangle_job(tmp_path, width=SIZE, height=SIZE)
    # Bypass validate() to hand Blender a job it must refuse (unknown engine).
    job.validate = lambda: None  # type: ignore[method-assign]
    job.engine = "eevee"
    with pytest.raises(RuntimeError, match="engine must be one of"):
        render_objects(job, ENV_DIR, log=io.StringIO())
    assert not (tmp_path / "x.h5").exists()


def test_job_validation_names_the_bad_field(tmp_path: Path) -> None:
    good = vars(triangle_job(tmp_path)).copy()
    RenderJob(**good).validate()
    with pytest.raises(ValueError, match="engine"):
        RenderJob(**{**good, "engine": "eevee"}).validate()
    with pytest.raises(ValueError, match="not found"):
        RenderJob(**{**good, "items": [RenderItem("gone", str(tmp_path / "gone.obj"), np.eye(4).tolist())]}).validate()
    with pytest.raises(ValueError, match="twice"):
        RenderJob(**{**good, "items": good["items"] * 2}).validate()
    with pytest.raises(ValueError, match="view_matrices"):
        RenderJob(**{**good, "view_matrices": [[1.0]]}).validate()
    # The JSON round trip is what blender_script.py reads.
    data = json.loads(RenderJob(**good).to_json())
    assert data["items"][0]["object_id"] == "tri" and len(data["view_matrices"]) == 20
    assert RenderJob(**data) == RenderJob(**good)


def test_missing_env_is_a_clear_error(tmp_path: Path) -> None:
    job = triangle_job(tmp_path)
    with pytest.raises(RuntimeError, match="python -m picat.render.environment"):
        render_objects(job, tmp_path / "no-env")


def test_output_completeness_check(tmp_path: Path) -> None:
    """A file missing items, or with the wrong number of views, is not a finished job."""
    job = triangle_job(tmp_path, names=("a", "b"))
    assert output_is_complete(job) == (False, f"no output file {tmp_path / 'x.h5'}")
    text = h5py.string_dtype("utf-8")
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("object_ids", data=np.array(["a"], dtype=object), dtype=text)
        f.create_dataset("images", shape=(1, 20, 4, 4, 3), dtype=np.uint8)
        f.create_dataset("failed/object_ids", data=np.array(["b"], dtype=object), dtype=text)
    assert output_is_complete(job) == (True, "")
    job.items = job.items + [RenderItem("c", job.items[0].obj_path, np.eye(4).tolist())]
    assert not output_is_complete(job)[0]


def test_conda_file_pins_the_same_packages() -> None:
    """envs/blender.yaml describes the same environment as environment.py builds."""
    spec = yaml.safe_load((REPO / "envs" / "blender.yaml").read_text())
    pip_section = next(entry["pip"] for entry in spec["dependencies"] if isinstance(entry, dict))
    assert sorted(pip_section) == sorted(CORE_PINS + BLENDERPROC_PINS)
    assert "python=3.11" in spec["dependencies"]


def test_env_builder_refuses_to_wipe_a_foreign_folder(tmp_path: Path) -> None:
    """Rebuilding replaces a (half-built) venv, but never deletes a folder that is not one."""
    foreign = tmp_path / "data"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(RuntimeError, match="refusing to delete"):
        build_render_env(foreign, log=lambda message: None)
    assert (foreign / "precious.txt").read_text() == "keep me"


# --- the Blender shim: a real module, copied into the environment -------------------------


def test_shim_parses_the_blenderproc_command_line():
    from picat.render.blender_shim import parse_blender_args

    args = ["--background", "--python-use-system-env", "--python-exit-code", "2", "--python", "run.py", "--", "x"]
    assert parse_blender_args(args) == ("run.py", 2)
    assert parse_blender_args(["-b", "-P", "s.py"]) == ("s.py", 1)


@pytest.mark.parametrize("args", [["--python", "s.py", "--window-geometry", "0"], ["--background"]])
def test_shim_refuses_what_it_cannot_do(args):
    from picat.render.blender_shim import parse_blender_args

    with pytest.raises(SystemExit, match="blender shim"):
        parse_blender_args(args)


def test_custom_blender_gets_the_shim_module_verbatim_and_its_settings(tmp_path, monkeypatch):
    import picat.render.environment as environment

    monkeypatch.setattr(environment, "site_packages", lambda env_dir: Path(env_dir) / "lib" / "site-packages")
    root = environment.write_custom_blender(tmp_path, {"bpy": "4.2.0"})
    module = Path(environment.__file__).with_name("blender_shim.py")
    assert (root / environment.SHIM_NAME).read_bytes() == module.read_bytes()
    settings = json.loads((root / environment.SHIM_SETTINGS_NAME).read_text())
    assert settings == {"version": environment.BLENDER_VERSION, "python_tag": environment.PYTHON_TAG}
    assert environment.SHIM_NAME in (root / "blender").read_text()
