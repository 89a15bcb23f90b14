"""Figure 4 on a tiny shard with tiny pre-trained checkpoints (written by the real pretrain job)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from test_pretrain_engine import ToyEncoder

from picat.config import pretrain_run_settings
from picat.geometry import dilate_masks, dodecahedron_cameras, project_points, uv_to_pixels
from picat.models.factory import backbone_checkpoint, build_point_backbone
from picat.pretrain.model import PicAtPoint
from picat.report.figure4 import cell_ranks, choose_objects, farthest_pair, mask_coverage, plot_figure4
from picat.shards import ShardObject, ShardWriter
from picat.stages.encode import encode_shard
from picat.stages.pretrain import run_pretraining

SIZE = 32  # render side; ToyEncoder pools any size to the 7 x 7 grid
N_POINTS = 128
SETTINGS = {
    "epochs": 1, "batch_size": 4, "n_points": N_POINTS, "latent_dim": 8, "pose_dim": 4, "lr_point": 1e-3,
    "lr_image": 5e-5, "weight_decay": 1e-6, "temperature": 0.1, "rotation": "so3", "num_workers": 0,
    "dgcnn": {"k": 4, "emb_dims": 16, "local_centres": 16},
    "pointnext": {"width": 8, "nsample": 8, "radius": 0.3},  # 128 points -> 8 local centres
}
SHAPES = {"slab": (0.8, 0.5, 0.2), "rod": (0.2, 0.9, 0.2), "ball": (0.6, 0.6, 0.6)}


def ellipsoid_surface(rng: np.random.Generator, axes: tuple[float, float, float], count: int) -> np.ndarray:
    directions = rng.normal(size=(count, 3))
    return directions / np.linalg.norm(directions, axis=1, keepdims=True) * axes


def write_shard(path: Path) -> None:
    """Five ellipsoids of three categories; masks are the splatted silhouettes, renders grey on white."""
    rng = np.random.default_rng(0)
    views, projs = dodecahedron_cameras(2.5, 50.0)
    categories = ["slab", "rod", "ball", "slab", "rod"]
    with ShardWriter(path, {"suite": "test"}) as writer:
        for index, category in enumerate(categories):
            points = ellipsoid_surface(rng, SHAPES[category], N_POINTS).astype(np.float32)
            dense = ellipsoid_surface(rng, SHAPES[category], 2000)
            masks = np.zeros((len(views), SIZE, SIZE), bool)
            for number, (view, proj) in enumerate(zip(views, projs, strict=True)):
                rows, cols, inside = uv_to_pixels(project_points(dense, view, proj)[0], SIZE, SIZE)
                masks[number, rows[inside], cols[inside]] = True
            masks = dilate_masks(masks, 1)
            images = np.where(masks[..., None], 90, 255).astype(np.uint8).repeat(3, axis=-1)
            normals = points / np.linalg.norm(points, axis=1, keepdims=True)
            writer.add(ShardObject(f"{category}_{index}", category, "-", points, normals, images, masks,
                                   views, projs, np.eye(4)))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A shard, its toy feature cache, 1-epoch dgcnn and pointnext checkpoints and an untrained no_local one."""
    folder = tmp_path_factory.mktemp("figure4")
    shard, features = folder / "shard_00000.h5", folder / "features_00000.h5"
    write_shard(shard)
    encode_shard(shard, features, ToyEncoder(), batch_size=50, dtype="float32", log=io.StringIO())
    checkpoints = {}
    for backbone in ("dgcnn", "pointnext"):
        output = folder / backbone / "full" / "checkpoint.pt"
        output.parent.mkdir(parents=True)
        checkpoints[backbone, "full"] = run_pretraining([shard], [features], output, backbone, "full", 0, SETTINGS,
                                                        "y", "test", device="cpu", log=io.StringIO())
    checkpoints["dgcnn", "no_local"] = untrained_checkpoint(folder / "dgcnn" / "no_local" / "checkpoint.pt", "no_local")
    return shard, features, checkpoints


def untrained_checkpoint(path: Path, variant: str) -> Path:
    """A checkpoint with the payload picat.stages.pretrain writes, without spending time on training."""
    options = SETTINGS["dgcnn"]
    backbone = build_point_backbone("dgcnn", options)
    model = PicAtPoint(backbone, image_dim=8, variant=variant, latent_dim=SETTINGS["latent_dim"],
                       pose_dim=SETTINGS["pose_dim"])
    metadata = {"variant": variant, "seed": 0, "suite": "test", "image_backbone": {"name": "toy"},
                "settings": pretrain_run_settings(SETTINGS, "dgcnn")}
    payload = backbone_checkpoint("dgcnn", options, False, "y", backbone, metadata)
    payload["pretrain_state_dict"] = model.state_dict()
    path.parent.mkdir(parents=True)
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("backbone, n_objects", [("dgcnn", 3), ("pointnext", 2)])
def test_figure4_writes_a_png_and_a_summary_per_exemplar(tiny_run, tmp_path, backbone, n_objects):
    shard, features, checkpoints = tiny_run
    out = tmp_path / "figures" / "figure4.png"
    summary = plot_figure4(checkpoints[backbone, "full"], [shard], [features], out, n_objects=n_objects, seed=0)
    image = plt.imread(out)
    assert image.ndim == 3 and image.shape[0] > 100 * n_objects and image.shape[1] > 300 and image.std() > 0
    assert sorted(path.name for path in out.parent.iterdir()) == ["figure4.png"]  # no temporary left behind
    assert summary["backbone"] == backbone and summary["variant"] == "full" and summary["suite"] == "test"
    assert summary["cells"] == 49 and summary["chance_rank"] == 25.0
    objects = summary["objects"]
    assert len(objects) == n_objects and len({entry["category"] for entry in objects}) == n_objects  # distinct first
    local_centres = SETTINGS["dgcnn"]["local_centres"] if backbone == "dgcnn" else N_POINTS // 16
    ranks = []
    for entry in objects:
        assert len(entry["exemplars"]) == 2 and 2 <= entry["visible_centres"] <= local_centres
        first, second = entry["exemplars"]
        assert first["centre_index"] != second["centre_index"]
        for exemplar in entry["exemplars"]:
            assert 0 <= exemplar["centre_index"] < local_centres and 0 <= exemplar["cell"] < 49
            assert -1.0 - 1e-5 <= exemplar["similarity"] <= exemplar["best_similarity"] <= 1.0 + 1e-5
            assert 1 <= exemplar["rank"] <= 49
            assert (exemplar["rank"] == 1) == (exemplar["similarity"] == exemplar["best_similarity"])
            # The cell is the one the exemplar's uv falls into (row-major, v selects the row).
            u, v = exemplar["uv"]
            assert exemplar["cell"] == int(v * 7) * 7 + int(u * 7)
            ranks.append(exemplar["rank"])
    assert summary["mean_rank"] == pytest.approx(np.mean(ranks))


def test_checkpoint_without_local_heads_is_refused_by_name(tiny_run, tmp_path):
    shard, features, checkpoints = tiny_run
    with pytest.raises(ValueError, match=r"no_local/checkpoint\.pt: variant 'no_local'.*no local heads"):
        plot_figure4(checkpoints["dgcnn", "no_local"], [shard], [features], tmp_path / "figure4.png")
    assert not (tmp_path / "figure4.png").exists()


def test_bad_inputs_get_clear_errors(tiny_run, tmp_path):
    shard, features, checkpoints = tiny_run
    checkpoint = checkpoints["dgcnn", "full"]
    with pytest.raises(ValueError, match="fewer than n_objects=9"):
        plot_figure4(checkpoint, [shard], [features], tmp_path / "f.png", n_objects=9)
    with pytest.raises(ValueError, match="got 2 feature files for 1 shards"):
        plot_figure4(checkpoint, [shard], [features, features], tmp_path / "f.png")
    # The toy image encoder cannot be rebuilt from the checkpoint: the caches are needed.
    with pytest.raises(ValueError, match="pass the feature caches"):
        plot_figure4(checkpoint, [shard], None, tmp_path / "f.png")
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        plot_figure4(tmp_path / "missing.pt", [shard], [features], tmp_path / "f.png")


def test_ranks_coverage_pairs_and_object_choice(tiny_run):
    similarity = np.array([[0.1, 0.9, 0.5], [0.3, 0.3, 0.2]])
    assert cell_ranks(similarity, np.array([2, 0])).tolist() == [2, 1]  # ties count in the cell's favour
    assert cell_ranks(similarity, np.array([0, 2])).tolist() == [3, 3]
    mask = np.zeros((14, 14), bool)
    mask[:2, :4] = True  # cell (0, 0) full, cell (0, 1) full
    coverage = mask_coverage(mask, 7)
    assert coverage[:2].tolist() == [1.0, 1.0] and coverage[2:].sum() == 0.0
    uv = np.array([[0.5, 0.5], [0.1, 0.1], [0.9, 0.8], [0.95, 0.95]])
    assert farthest_pair(uv, np.array([0, 1, 2, 3])) == (1, 3)
    assert farthest_pair(uv, np.array([0, 2])) == (0, 2)
    shard = tiny_run[0]
    picked = choose_objects([shard], 5, seed=3)
    assert picked == choose_objects([shard], 5, seed=3) and len(set((s, r) for s, r, _ in picked)) == 5
    assert all(0 <= view < 20 for _, _, view in picked)
