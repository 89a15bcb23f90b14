"""Determinism on the CPU: the same seed gives byte-identical shards and equal metrics.

Shards: packing the same renders twice (a second apart, so that HDF5 object timestamps
would differ if they were recorded) gives the same bytes. Metrics: a pre-training run, a
linear SVM and a fine-tuning run repeated with the same seed give equal weights and records;
a different seed gives different ones (so the comparisons can fail).
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from picat.corpus import MeshRecord, write_manifest
from picat.geometry import dodecahedron_cameras
from picat.meshes import load_mesh, write_obj
from picat.shards import write_strings
from picat.stages.pack import pack_shard
from picat.stages.pretrain import run_pretraining
from picat.synthetic import generate_shape
from test_downstream import TINY_POINTNEXT, datasets, shapes  # noqa: F401  (the shared fixture)
from test_pretrain_engine import toy_data  # noqa: F401  (the shared fixture)
from test_pretrain_stage import SETTINGS as PRETRAIN_SETTINGS


def fake_renders(folder: Path, categories: tuple[str, ...] = ("chair", "mug", "lamp")) -> tuple[Path, Path]:
    """A manifest of synthetic meshes and a render file in the render stage's layout (random
    images in place of Blender's, which packing copies without looking at them)."""
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for index, category in enumerate(categories):
        shape = generate_shape(category, seed=index)
        path = folder / f"{category}_{index}.obj"
        write_obj(shape.vertices, shape.faces, path)
        records.append(MeshRecord(f"{category}_{index}", category, str(path)))
    write_manifest(records, folder / "manifest.tsv")
    views, projs = dodecahedron_cameras(2.5, 50.0)
    rng = np.random.default_rng(0)
    renders = folder / "renders.h5"
    with h5py.File(renders, "w") as rendered:
        write_strings(rendered, "object_ids", [r.object_id for r in records])
        rendered.create_dataset("images", data=rng.integers(0, 256, (len(records), 20, 16, 16, 3), dtype=np.uint8))
        rendered.create_dataset("masks", data=rng.random((len(records), 20, 16, 16)) > 0.5)
        rendered.create_dataset("world_from_file", data=np.stack([load_mesh(r.path).world_from_file for r in records]))
        rendered.create_dataset("view_matrices", data=views)
        rendered.create_dataset("proj_matrices", data=projs)
        group = rendered.create_group("skipped")
        for name in ("object_ids", "paths", "reasons"):
            write_strings(group, name, [])
        rendered.attrs["settings"] = json.dumps({"render": {"engine": "fake"}, "up_axis": "y"})
    return folder / "manifest.tsv", renders


def test_same_seed_packs_byte_identical_shards(tmp_path):
    manifest, renders = fake_renders(tmp_path / "in")
    first, second, other = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    pack_shard(manifest, renders, first, 64, seed=3, suite="demo", log=io.StringIO())
    time.sleep(1.1)  # HDF5 timestamps have a one-second resolution
    pack_shard(manifest, renders, second, 64, seed=3, suite="demo", log=io.StringIO())
    assert first.read_bytes() == second.read_bytes()
    # The seed matters: another seed samples other points.
    pack_shard(manifest, renders, other, 64, seed=4, suite="demo", log=io.StringIO())
    with h5py.File(first) as a, h5py.File(other) as c:
        assert not np.array_equal(a["points"][()], c["points"][()])
        assert np.array_equal(a["images"][()], c["images"][()])


def loss_history(history: list[dict]) -> list[dict]:
    """A run's per-epoch history without the wall-clock columns (throughput, seconds)."""
    timing = ("objects_per_s", "seconds", "time", "elapsed", "steps_per_s")
    return [{k: v for k, v in row.items() if not any(t in k for t in timing)} for row in history]


@pytest.mark.parametrize("backbone", ["dgcnn", "pointnext"])
def test_same_seed_pretrains_equal_weights_on_cpu(toy_data, tmp_path, backbone):  # noqa: F811
    shards, features = toy_data
    settings = {**PRETRAIN_SETTINGS, "epochs": 1}
    states, histories = [], []
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        output = tmp_path / run / "checkpoint.pt"
        run_pretraining(shards, features, output, backbone, "full", seed, settings, "y", "test", device="cpu",
                        log=io.StringIO())
        payload = torch.load(output, weights_only=False)
        states.append(payload["pretrain_state_dict"])
        histories.append(loss_history(payload["metadata"]["history"]))
    assert states[0].keys() == states[1].keys()
    for name, tensor in states[0].items():
        assert torch.equal(tensor, states[1][name]), name
    assert histories[0] == histories[1] and "loss" in histories[0][0]
    assert any(not torch.equal(tensor, states[2][name]) for name, tensor in states[0].items())


def test_same_seed_gives_equal_svm_records(datasets, tmp_path):  # noqa: F811
    from picat.stages.downstream import run_svm

    settings = {"n_points": 64, "c_grid": [0.01, 1.0], "folds": 2}
    spec = {"backbone": "pointnext", "options": TINY_POINTNEXT, "up_axis": "y"}
    records = [run_svm("modelnet40", datasets["modelnet40"], settings, tmp_path / f"{i}.json", "demo", 5,
                       random_spec=spec, log=io.StringIO()) for i in range(2)]
    for record in records:
        record["details"].pop("seconds", None)
    assert records[0] == records[1]


def test_same_seed_gives_equal_finetuning_metrics_on_cpu():
    from picat.downstream.finetune import FinetuneSettings, finetune
    from picat.models.pointnext import PointNeXtClassifier, PointNeXtConfig

    train_x, train_y = shapes(6, 64, 0)
    test_x, test_y = shapes(3, 64, 1)
    settings = FinetuneSettings(epochs=2, batch_size=4, n_points=32, lr=0.01)

    def run(seed: int) -> tuple[dict, dict]:
        torch.manual_seed(seed)
        model = PointNeXtClassifier(2, PointNeXtConfig(**TINY_POINTNEXT))
        result = finetune(model, train_x[..., :3], train_y, test_x[..., :3], test_y, settings, seed=seed,
                          log=io.StringIO())
        return result, model.state_dict()

    (first, weights), (second, weights_again), (_, other) = run(0), run(0), run(1)
    assert loss_history(first["history"]) == loss_history(second["history"]) and first["test"] == second["test"]
    assert all(torch.equal(tensor, weights_again[name]) for name, tensor in weights.items())
    assert any(not torch.equal(tensor, other[name]) for name, tensor in weights.items())
