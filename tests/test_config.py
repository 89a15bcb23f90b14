import copy
from pathlib import Path

import pytest
import yaml

from picat.cli import main
from picat.config import ConfigError, validate_config

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def config():
    return yaml.safe_load((REPO / "config.yaml").read_text())


def test_shipped_config_is_valid(config):
    assert validate_config(config) is config
    assert config["suite"] == "demo"


@pytest.mark.parametrize(
    "change, key",
    [
        (lambda c: c.update(suite="full"), "suite"),
        (lambda c: c["demo"]["render"].update(engine="eevee"), "demo.render.engine"),
        (lambda c: c["demo"]["shards"].update(objects_per_shard=0), "demo.shards.objects_per_shard"),
        (lambda c: c["demo"]["sampling"].update(n_points="many"), "demo.sampling.n_points"),
        (lambda c: c["paper"]["corpus"].pop("root"), "paper.corpus"),
        (lambda c: c["demo"]["render"].update(fov_deg=20.0), "demo.render.fov_deg"),
        (lambda c: c["demo"].update(renderer={}), "demo.renderer"),
    ],
)
def test_invalid_values_name_their_key(config, change, key):
    bad = copy.deepcopy(config)
    change(bad)
    with pytest.raises(ConfigError, match=f"'{key}'"):
        validate_config(bad)


def test_check_config_command(tmp_path, config, capsys):
    config["demo"]["corpus"]["up_axis"] = "w"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["check-config", str(path)]) == 1
    assert "demo.corpus.up_axis" in capsys.readouterr().err
    assert main(["check-config", str(REPO / "config.yaml")]) == 0


# ---------------------------------------------------------------------------------------
# The evidence suite (issue 12): optional, synthetic, without Tables 2, 4 and 5


def test_evidence_suite_is_selectable_and_its_keys_are_checked(config):
    evidence = copy.deepcopy(config)
    evidence["suite"] = "evidence"
    assert validate_config(evidence)["evidence"]["corpus"]["n_objects"] >= 1000  # the floor
    pretrain = evidence["evidence"]["pretrain"]
    assert (pretrain["n_points"], pretrain["batch_size"], len(pretrain["seeds"])) == (1024, 32, 3)
    for change, key in [
        (lambda c: c["evidence"]["corpus"].update(categories="most"), "evidence.corpus.categories"),
        (lambda c: c["evidence"]["standins"].update(scan_yaw="tilted"), "evidence.standins.scan_yaw"),
        (lambda c: c["evidence"]["pretrain"].update(epochs=0), "evidence.pretrain.epochs"),
    ]:
        bad = copy.deepcopy(evidence)
        change(bad)
        with pytest.raises(ConfigError, match=f"'{key}'"):
            validate_config(bad)


def test_a_config_without_the_evidence_block_stays_valid(config):
    config.pop("evidence")
    assert validate_config(config) is config


def test_segmentation_blocks_are_optional_but_need_their_dataset(config):
    without = copy.deepcopy(config)
    for block in ("finetune", "partseg", "semseg"):
        without["demo"]["downstream"].pop(block)
    without["demo"]["downstream"]["datasets"].pop("shapenetpart")
    assert validate_config(without) is without
    needs = copy.deepcopy(config)
    needs["demo"]["downstream"]["datasets"].pop("s3dis")
    with pytest.raises(ConfigError, match=r"'demo.downstream.datasets'.*semseg.*'s3dis'"):
        validate_config(needs)


def test_suite_threads_are_a_positive_integer(config):
    assert config["demo"]["threads"] == 1  # two 1-thread jobs side by side on a 2-core machine
    for value in (0, 1.5, "2"):
        bad = copy.deepcopy(config)
        bad["demo"]["threads"] = value
        with pytest.raises(ConfigError, match="'demo.threads'"):
            validate_config(bad)


def test_pretrain_threads_choose_the_job_size_not_the_run(config):
    from picat.config import pretrain_run_settings

    pretrain = config["evidence"]["pretrain"]
    assert pretrain["threads"] == 1
    assert pretrain_run_settings(pretrain, "dgcnn") == pretrain_run_settings({**pretrain, "threads": 4}, "dgcnn")
    bad = copy.deepcopy(config)
    bad["evidence"]["pretrain"]["threads"] = 0
    with pytest.raises(ConfigError, match="'evidence.pretrain.threads'"):
        validate_config(bad)
