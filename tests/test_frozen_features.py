"""The features step shared by the svm and few-shot protocols: the file's format, the checks that a
file is the run asked for, and records equal to extracting directly (the hand-called path and
picat.downstream's own extract_features + fit_and_score / probe), for a random init and a checkpoint."""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from picat.cli import build_parser
from picat.config import ConfigError, validate_config
from picat.datasets import write_modelnet40_h5
from picat.downstream.backbones import random_backbone
from picat.downstream.fewshot import FewshotSettings, probe
from picat.downstream.svm import SvmSettings, extract_features, fit_and_score
from picat.models.factory import backbone_checkpoint, build_point_backbone, load_backbone
from picat.stages.features import (
    METADATA_KEYS,
    FeatureSettings,
    read_features,
    run_features,
    write_features,
)
from picat.stages.fewshot import run_fewshot
from picat.stages.svm import run_svm

REPO = Path(__file__).resolve().parent.parent
TINY_DGCNN = {"k": 4, "emb_dims": 16, "local_centres": 8}
RANDOM = {"backbone": "dgcnn", "options": TINY_DGCNN, "up_axis": "y"}
SVM = {"n_points": 32, "c_grid": [0.01, 1.0, 10.0], "folds": 2, "batch_size": 4}
FEWSHOT = {"shots": [1, 3, "all"], "draws": 3, "n_points": 32, "batch_size": 4, "c_grid": [0.01, 1.0, 10.0],
           "folds": 2}
EXTRACTION = {"n_points": 32, "batch_size": 4}
# What the records held before the features step existed (picat/stages/svm.py, fewshot.py).
RECORD_KEYS = {"protocol", "benchmark", "backbone", "variant", "init", "seed", "metric", "value", "suite",
               "image_backbone", "trainable_pretrain_params", "checkpoint", "details"}
SVM_DETAILS = {"accuracy", "best_c", "cv_accuracy", "cv_scores", "folds", "n_train", "n_test", "seconds", "settings",
               "precision", "feature_dim", "train_source", "test_source"}
FEWSHOT_DETAILS = {"shots", "picat_only", "settings", "precision", "feature_dim", "n_train", "n_test",
                   "train_source", "test_source", "seconds"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    """Three classes of 5 training / 3 test clouds, 40 points (xyz + normals), overlapping so the SVM errs."""
    root = tmp_path_factory.mktemp("frozen") / "modelnet40_ply_hdf5_2048"
    rng = np.random.default_rng(3)
    for split, per_class in (("train", 5), ("test", 3)):
        labels = np.repeat(np.arange(3), per_class)
        clouds = rng.normal(0, 1, (len(labels), 40, 6)).astype(np.float32)
        clouds[..., 1] *= 1 + 0.3 * labels[:, None]  # a weak class signal: accuracy strictly inside (0, 100)
        write_modelnet40_h5(root, split, clouds, labels, ["a", "b", "c"])
    return {"format": "modelnet40_h5", "root": str(root), "normals": True}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("frozen_ckpt") / "checkpoint.pt"
    torch.manual_seed(11)
    module = build_point_backbone("dgcnn", TINY_DGCNN, False, "y")
    metadata = {"variant": "full", "seed": 2, "suite": "demo", "image_backbone": {"name": "toy", "weights": "none"},
                "trainable_parameters": {"backbone": 1, "total": 4321}, "history": [{"epoch": 0, "loss": 1.0}]}
    torch.save(backbone_checkpoint("dgcnn", TINY_DGCNN, False, "y", module, metadata), path)
    return path


def direct_features(dataset: dict, source: dict) -> tuple[np.ndarray, ...]:
    """picat.downstream's own extraction, without the stages: (train_x, train_y, test_x, test_y)."""
    from picat.datasets import read_classification

    if "checkpoint" in source:
        backbone = load_backbone(source["checkpoint"])
    else:
        backbone = random_backbone("dgcnn", TINY_DGCNN, source["seed"], "y")
    train, test = read_classification(dataset, "train"), read_classification(dataset, "test")
    return (extract_features(backbone, train.points, 32, 4, log=io.StringIO()), train.labels,
            extract_features(backbone, test.points, 32, 4, log=io.StringIO()), test.labels)


def without_timing(content):
    """A record (or list of them) without the wall-clock fields, the only ones allowed to differ."""
    content = copy.deepcopy(content)
    for record in content if isinstance(content, list) else [content]:
        record["details"].pop("seconds", None)  # a list's records share one details object
    return content


@pytest.mark.parametrize("source", ["random", "checkpoint"])
def test_records_from_a_features_file_equal_extracting_directly(source, dataset, checkpoint, tmp_path):
    backbone = {"checkpoint": checkpoint} if source == "checkpoint" else {"random_spec": RANDOM}
    seed = 2
    log = io.StringIO()
    path = tmp_path / "frozen_features" / "demo" / "modelnet40" / f"dgcnn_{source}" / f"seed{seed}.npz"
    run_features("modelnet40", dataset, EXTRACTION, path, "demo", seed, log=log, **backbone)
    # The hand-called path (extracting inside the protocol) and the workflow's (reading the file).
    svm_old = run_svm("modelnet40", dataset, SVM, tmp_path / "svm_old.json", "demo", seed, log=log, **backbone)
    svm_new = run_svm("modelnet40", None, SVM, tmp_path / "svm_new.json", "demo", seed, log=log, features=path)
    few_old = run_fewshot("modelnet40", dataset, FEWSHOT, tmp_path / "fs_old.json", "demo", seed, log=log, **backbone)
    few_new = run_fewshot("modelnet40", None, FEWSHOT, tmp_path / "fs_new.json", "demo", seed, log=log, features=path)
    assert without_timing(svm_new) == without_timing(svm_old)
    assert without_timing(few_new) == without_timing(few_old)
    assert json.loads((tmp_path / "svm_new.json").read_text()) == json.loads(json.dumps(svm_new))

    # Both equal picat.downstream's functions called on directly extracted features.
    train_x, train_y, test_x, test_y = direct_features(
        dataset, {"checkpoint": checkpoint} if source == "checkpoint" else {"seed": seed})
    expected = fit_and_score(train_x, train_y, test_x, test_y, SvmSettings.of(SVM), seed)
    assert 0 < expected["accuracy"] < 100  # the data is not trivially separable: a wrong feature would show
    assert svm_new["value"] == expected["accuracy"] and svm_new["details"]["best_c"] == expected["best_c"]
    assert svm_new["details"]["cv_scores"] == expected["cv_scores"]
    assert svm_new["details"]["cv_accuracy"] == expected["cv_accuracy"]
    shots = probe(train_x, train_y, test_x, test_y, ["a", "b", "c"], FewshotSettings.of(FEWSHOT), seed,
                  log=io.StringIO())
    assert [r["value"] for r in few_new] == [shots[label]["mean"] for label in ("1", "3", "all")]
    assert few_new[0]["details"]["shots"]["3"]["accuracies"] == shots["3"]["accuracies"]
    assert few_new[-1]["value"] == svm_new["value"]  # "all" is the svm protocol

    # The same record keys as before the features step, and the backbone's provenance.
    assert set(svm_new) == RECORD_KEYS and set(svm_new["details"]) == SVM_DETAILS
    assert all(set(r) == RECORD_KEYS and set(r["details"]) == FEWSHOT_DETAILS for r in few_new)
    assert set(few_new[0]["details"]["seconds"]) == {"features", "fits"}
    for record in (svm_new, *few_new):
        if source == "checkpoint":
            assert (record["init"], record["variant"], record["checkpoint"]) == ("pic@point", "full", str(checkpoint))
            assert record["image_backbone"] == "toy/none" and record["trainable_pretrain_params"] == 4321
        else:
            assert (record["init"], record["variant"], record["checkpoint"], record["image_backbone"],
                    record["trainable_pretrain_params"]) == ("random", None, None, None, None)
        assert record["details"]["feature_dim"] == 32 and record["details"]["precision"] == "fp32"
        assert record["details"]["train_source"].endswith("ply_data_train0.h5")


def test_the_file_is_plain_arrays_with_json_metadata_written_atomically(dataset, tmp_path):
    path = tmp_path / "out" / "seed0.npz"
    features = run_features("modelnet40", dataset, EXTRACTION, path, "demo", 0, random_spec=RANDOM, log=io.StringIO())
    assert sorted(p.name for p in path.parent.iterdir()) == ["seed0.npz"]  # no temporary left behind
    with np.load(path, allow_pickle=False) as archive:  # no pickled object anywhere
        assert set(archive.files) == {"train_x", "train_y", "test_x", "test_y", "class_names", "metadata"}
        assert archive["train_x"].shape == (15, 32) and archive["train_x"].dtype == np.float32
        assert archive["test_x"].shape == (9, 32) and archive["test_y"].dtype == np.int64
        assert archive["class_names"].tolist() == ["a", "b", "c"]
        metadata = json.loads(str(archive["metadata"]))
    assert set(metadata) == set(METADATA_KEYS)
    assert (metadata["n_points"], metadata["batch_size"], metadata["feature_dim"]) == (32, 4, 32)
    assert metadata["random_spec"] == RANDOM and metadata["checkpoint"] is None and metadata["init"] == "random"
    assert metadata["backbone_metadata"]["options"] == TINY_DGCNN and metadata["dataset"] == dataset
    np.testing.assert_array_equal(read_features(path).train_x, features.train_x)


def test_a_file_of_another_run_or_setting_is_refused_naming_the_key(dataset, tmp_path):
    path = tmp_path / "seed0.npz"
    run_features("modelnet40", dataset, EXTRACTION, path, "demo", 0, random_spec=RANDOM, log=io.StringIO())
    for asked, key in (({"benchmark": "scanobjectnn_obj_bg"}, "benchmark"), ({"suite": "paper"}, "suite"),
                       ({"seed": 1}, "seed"), ({"settings": FeatureSettings(64, 4)}, "n_points"),
                       ({"settings": FeatureSettings(32, 8)}, "batch_size")):
        with pytest.raises(ValueError, match=f"seed0.npz: metadata key '{key}'"):
            read_features(path, **asked)
    # The protocols check their own n_points / batch_size against the file.
    with pytest.raises(ValueError, match="metadata key 'n_points' is 32, this run asks for 1024"):
        run_svm("modelnet40", None, {**SVM, "n_points": 1024}, tmp_path / "s.json", "demo", 0, features=path,
                log=io.StringIO())
    with pytest.raises(ValueError, match="metadata key 'batch_size' is 4, this run asks for 32"):
        run_fewshot("modelnet40", None, {**FEWSHOT, "batch_size": 32}, tmp_path / "f.json", "demo", 0,
                    features=path, log=io.StringIO())
    with pytest.raises(ValueError, match="not both"):
        run_svm("modelnet40", None, SVM, tmp_path / "s.json", "demo", 0, features=path, random_spec=RANDOM)
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "f.json").exists()


def test_a_broken_file_is_refused_naming_it(dataset, tmp_path):
    good = tmp_path / "good.npz"
    features = run_features("modelnet40", dataset, EXTRACTION, good, "demo", 0, random_spec=RANDOM, log=io.StringIO())
    with pytest.raises(FileNotFoundError, match="absent.npz"):
        read_features(tmp_path / "absent.npz")
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(ValueError, match="text.npz: not a readable picat features file"):
        read_features(tmp_path / "text.npz")
    np.savez(tmp_path / "partial.npz", train_x=features.train_x)
    with pytest.raises(ValueError, match=r"partial.npz: not a picat features file: no \['train_y'"):
        read_features(tmp_path / "partial.npz")
    for change, message in (({"format": 0}, "key 'format' is 0"), ({"feature_dim": 7}, "'feature_dim'")):
        broken = type(features)(**{**features.__dict__, "metadata": {**features.metadata, **change}})
        write_features(broken, tmp_path / "broken.npz")
        with pytest.raises(ValueError, match=f"broken.npz: .*{message}"):
            read_features(tmp_path / "broken.npz")
    labels = type(features)(**{**features.__dict__, "train_y": features.train_y + 5})
    write_features(labels, tmp_path / "labels.npz")
    with pytest.raises(ValueError, match="labels.npz: train_y has labels outside"):
        read_features(tmp_path / "labels.npz")


def test_cli_reads_a_features_file_or_extracts_but_not_both(monkeypatch):
    seen = {}
    monkeypatch.setattr("picat.stages.svm.run_svm", lambda *args, **kwargs: seen.update(args=args, kwargs=kwargs))
    threads = torch.get_num_threads()
    common = ["--benchmark", "modelnet40", "--settings", "{}", "--seed", "0", "--suite", "demo", "--out", "x.json",
              "--threads", "1"]
    try:
        args = build_parser().parse_args(["svm", *common, "--features", "f.npz"])
        args.run(args)
        assert seen["kwargs"]["features"] == Path("f.npz") and seen["args"][1] is None
        for extra in (["--random", "{}"], ["--dataset", "{}"], ["--checkpoint", "c.pt"]):
            args = build_parser().parse_args(["svm", *common, "--features", "f.npz", *extra])
            with pytest.raises(ValueError, match="--features already names"):
                args.run(args)
        args = build_parser().parse_args(["fewshot", *common, "--random", "{}"])
        with pytest.raises(ValueError, match="give --dataset"):
            args.run(args)
        # By hand, without a features file: the extracting path, as before.
        args = build_parser().parse_args(["svm", *common, "--dataset", "{}", "--checkpoint", "c.pt"])
        args.run(args)
        assert seen["kwargs"]["checkpoint"] == Path("c.pt") and "features" not in seen["kwargs"]
    finally:
        torch.set_num_threads(threads)


def test_config_refuses_svm_and_fewshot_extracting_differently():
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    validate_config(config)
    for suite in ("demo", "paper"):
        for key in ("n_points", "batch_size"):
            broken = copy.deepcopy(config)
            broken[suite]["downstream"]["fewshot"][key] *= 2
            both = rf"'{suite}.downstream.fewshot.{key}'.*'{suite}.downstream.svm.{key}'"
            with pytest.raises(ConfigError, match=both):
                validate_config(broken)
