"""A whole pre-training job with the real backbones (tiny), and loading its checkpoint back."""

from __future__ import annotations

import io
import json

import pytest
import torch
from test_pretrain_engine import toy_data  # noqa: F401  (the shared fixture)

import picat
from picat.models.factory import build_point_backbone
from picat.stages.pretrain import run_pretraining
from picat.training_log import read_log

SETTINGS = {
    "epochs": 2, "batch_size": 4, "n_points": 32, "latent_dim": 8, "pose_dim": 4, "lr_point": 1e-3, "lr_image": 5e-5,
    "weight_decay": 1e-6, "temperature": 0.1, "rotation": "so3", "num_workers": 0,
    "dgcnn": {"k": 4, "emb_dims": 16, "local_centres": 8},
    "pointnext": {"width": 8, "nsample": 8, "radius": 0.3},
}


@pytest.mark.parametrize("backbone, variant", [("dgcnn", "full"), ("pointnext", "normals")])
def test_pretraining_job_writes_a_loadable_checkpoint(toy_data, tmp_path, backbone, variant):  # noqa: F811
    shards, features = toy_data
    output = tmp_path / "checkpoint.pt"
    assert run_pretraining(shards, features, output, backbone, variant, 3, SETTINGS, "y", "test", device="cpu",
                           log=io.StringIO()) == output
    rows = read_log(tmp_path / "log.csv")  # the long format shared by every loop (picat.training_log)
    assert sorted({row["epoch"] for row in rows}) == [1, 2] and {row["split"] for row in rows} == {"train"}
    first = {row["metric"]: row for row in rows if row["epoch"] == 1}
    assert first["loss"]["lr"] == 1e-3 and first["lr_image"]["value"] == 5e-5 and first["objects_per_s"]["value"] > 0
    history = torch.load(output, weights_only=False)["metadata"]["history"]
    assert first["loss"]["value"] == history[0]["loss"] and first["loss"]["seconds"] == history[0]["seconds"]
    assert json.loads((tmp_path / "config.json").read_text())["pretrain"] == SETTINGS
    model = picat.load_backbone(output)
    metadata = model.picat_metadata
    assert metadata["variant"] == variant and metadata["seed"] == 3 and metadata["image_backbone"] == {"name": "toy"}
    assert metadata["normals"] == (variant == "normals") and metadata["trainable_parameters"]["backbone"] > 0
    channels = 6 if variant == "normals" else 3
    points = torch.randn(2, 32, channels)
    with torch.no_grad():
        features_global = model(points)
        global_features, local_features, centres = picat.load_backbone(output, local=True)(points)
    assert features_global.shape == (2, model.global_dim) and torch.allclose(features_global, global_features)
    assert local_features.shape[:2] == (2, model.local_dim) and centres.shape[-1] == 3
    # The weights are the trained ones, not a fresh initialisation.
    torch.manual_seed(3)
    fresh = build_point_backbone(backbone, SETTINGS[backbone], variant == "normals")
    assert any(not torch.equal(a, b)
               for a, b in zip(fresh.state_dict().values(), model.state_dict().values(), strict=True))


def test_stopping_early_leaves_no_checkpoint_and_resumes(toy_data, tmp_path):  # noqa: F811
    shards, features = toy_data
    output = tmp_path / "checkpoint.pt"
    assert run_pretraining(shards, features, output, "dgcnn", "no_pose", 0, SETTINGS, "y", "test", device="cpu",
                           stop_after_epochs=1, log=io.StringIO()) is None
    assert not output.exists() and (tmp_path / "resume.pt").exists()
    log = io.StringIO()
    assert run_pretraining(shards, features, output, "dgcnn", "no_pose", 0, SETTINGS, "y", "test", device="cpu",
                           log=log)
    assert "resuming" in log.getvalue()
    assert output.exists() and not (tmp_path / "resume.pt").exists()


def test_unknown_backbone_setting_is_named():
    with pytest.raises(ValueError, match="pretrain.dgcnn: unknown setting\\(s\\) \\['kk'\\]"):
        build_point_backbone("dgcnn", {"kk": 3})
    with pytest.raises(FileNotFoundError, match="nope.pt does not exist"):
        picat.load_backbone("nope.pt")
