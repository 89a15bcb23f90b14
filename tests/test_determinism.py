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
from test_downstream import TINY_POINTNEXT, datasets, shapes  # noqa: F401  (the shared fixture)
from test_pretrain_engine import toy_data  # noqa: F401  (the shared fixture)
from test_pretrain_stage import SETTINGS as PRETRAIN_SETTINGS

from picat.demo.recipes import generate_shape
from picat.geometry import dodecahedron_cameras
from picat.manifests import MeshRecord, write_manifest
from picat.meshes import load_mesh, write_obj
from picat.pretrain.engine import TrainSettings, batch_rotations
from picat.shards import write_strings
from picat.stages.pack import pack_shard
from picat.stages.pretrain import run_pretraining


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


def test_each_use_of_the_pretraining_seed_changes_the_weights(toy_data, tmp_path, monkeypatch):  # noqa: F811
    """The counterpart of the test above, one use of the seed at a time.

    run_pretraining's seed (a) initialises the model (``torch.manual_seed``) and (b) drives
    the training loop's draws (``TrainSettings.seed``: epoch order, views, rotations). The
    test above changes both at once, so it would still pass with either one ignored. Here
    seeds 0 and 1 give different initial weights, and a seed-1 run started from seed 0's
    initial weights and torch RNG state still ends with other weights than the seed-0 run.
    """
    import picat.stages.pretrain as stage

    shards, features = toy_data
    settings = {**PRETRAIN_SETTINGS, "epochs": 1}
    real_train = stage.train
    starts: list[tuple[dict, torch.Tensor]] = []

    def spy(model, *args, **kwargs):
        starts.append(({k: v.clone() for k, v in model.state_dict().items()}, torch.get_rng_state()))
        if len(starts) == 2:  # the seed-1 run: from the seed-0 run's start, so only the loop's seed differs
            model.load_state_dict(starts[0][0])
            torch.set_rng_state(starts[0][1])
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(stage, "train", spy)
    finals = []
    for run, seed in (("a", 0), ("b", 1)):
        output = tmp_path / run / "checkpoint.pt"
        run_pretraining(shards, features, output, "pointnext", "full", seed, settings, "y", "test", device="cpu",
                        log=io.StringIO())
        finals.append(torch.load(output, weights_only=False)["pretrain_state_dict"])
    (first, _), (second, _) = starts
    assert any(not torch.equal(tensor, second[name]) for name, tensor in first.items())  # (a)
    assert any(not torch.equal(tensor, finals[1][name]) for name, tensor in finals[0].items())  # (b)
    # (b) has two draws; the sampler's seed is checked in test_wiring_data, the rotations' here.
    rotations = [batch_rotations(TrainSettings(epochs=1, seed=seed), 0, 0, 4) for seed in (0, 0, 1)]
    assert torch.equal(rotations[0], rotations[1]) and not torch.allclose(rotations[0], rotations[2])


def test_same_seed_gives_equal_svm_records(datasets, tmp_path):  # noqa: F811
    from picat.stages.svm import run_svm

    settings = {"n_points": 64, "c_grid": [0.01, 1.0], "folds": 2}
    spec = {"backbone": "pointnext", "options": TINY_POINTNEXT, "up_axis": "y"}
    records = [run_svm("modelnet40", datasets["modelnet40"], settings, tmp_path / f"{i}.json", "demo", 5,
                       random_spec=spec, log=io.StringIO()) for i in range(2)]
    for record in records:
        record["details"].pop("seconds", None)
    assert records[0] == records[1]


def test_different_seed_gives_different_svm_records(datasets, tmp_path, monkeypatch):  # noqa: F811
    """The counterpart of the test above: another seed, another SVM record.

    What an SVM record's seed is: the linear SVM itself (libsvm's ``SVC(kernel="linear")``)
    is deterministic on fixed features, so the seed enters in two places only:
    (1) a random-init baseline's backbone is initialised with ``torch.manual_seed(seed)``
    (:func:`picat.downstream.backbones.random_backbone`), so its features differ, and
    (2) the C search's ``StratifiedKFold`` shuffles the training set with ``random_state=seed``
    (:func:`picat.downstream.svm.fit_and_score`), so its CV scores (and possibly C) differ.
    For a Pic@Point checkpoint only (2) applies (the pre-training seed is in the checkpoint).
    Each is checked on its own, so a seed ignored in either place fails: the features the
    SVM is fitted on differ, run_svm hands its seed to the SVM, and on the same features the
    CV scores follow the seed; and the records differ beyond their ``seed`` field.
    """
    import picat.stages.svm as stage
    from picat.downstream.svm import SvmSettings, fit_and_score

    fitted = []

    def spy(train_x, train_y, test_x, test_y, settings, seed=0, **options):
        fitted.append({"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y,
                       "settings": settings, "seed": seed})
        return fit_and_score(train_x, train_y, test_x, test_y, settings, seed, **options)

    monkeypatch.setattr(stage, "fit_and_score", spy)
    settings = {"n_points": 64, "c_grid": [0.01, 1.0], "folds": 2}
    spec = {"backbone": "pointnext", "options": TINY_POINTNEXT, "up_axis": "y"}
    records = [stage.run_svm("modelnet40", datasets["modelnet40"], settings, tmp_path / f"{seed}.json", "demo", seed,
                             random_spec=spec, log=io.StringIO()) for seed in (5, 6)]
    assert [call["seed"] for call in fitted] == [5, 6]  # (2) reaches the SVM
    assert not np.allclose(fitted[0]["train_x"], fitted[1]["train_x"])  # (1): other init, other features
    for record in records:
        record["details"].pop("seconds", None)
    assert [record["seed"] for record in records] == [5, 6]
    assert records[0]["details"] != records[1]["details"]
    # (2) alone: the same features, other seeds, other CV folds (not all of four seeds agree).
    same = fitted[0]
    scores = {json.dumps(fit_and_score(same["train_x"], same["train_y"], same["test_x"], same["test_y"],
                                       SvmSettings.of(settings), seed)["cv_scores"]) for seed in range(5, 9)}
    assert len(scores) > 1, scores


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


def test_finetuning_seed_alone_changes_the_run():
    """The counterpart of the test above for fine-tuning's own seed: the same initial weights,
    ``finetune(seed=0)`` and ``finetune(seed=1)`` (batch order, point subsets, augmentation;
    with ``selection="val"`` also the validation split, not used here) end with other
    weights. The test above seeds the initialisation with the same seed, so it would still
    pass with ``finetune`` ignoring its seed."""
    from picat.downstream.finetune import FinetuneSettings, finetune
    from picat.models.pointnext import PointNeXtClassifier, PointNeXtConfig

    train_x, train_y = shapes(6, 64, 0)
    test_x, test_y = shapes(3, 64, 1)
    settings = FinetuneSettings(epochs=2, batch_size=4, n_points=32, lr=0.01)

    def run(seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = PointNeXtClassifier(2, PointNeXtConfig(**TINY_POINTNEXT))
        finetune(model, train_x[..., :3], train_y, test_x[..., :3], test_y, settings, seed=seed, log=io.StringIO())
        return model.state_dict()

    first, other = run(0), run(1)
    assert any(not torch.equal(tensor, other[name]) for name, tensor in first.items())
