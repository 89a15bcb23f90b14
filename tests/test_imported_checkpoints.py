"""Imported checkpoints (``<suite>.imported``): outside backbones scored beside Pic@Point's.

An outside checkpoint converted with ``picat convert ... --from FORMAT`` is named in the
config (``demo.imported.crosspoint: {checkpoint, backbone}``); the workflow extracts its frozen
features and scores them with the linear SVM and the few-shot probe. Its records say init
"imported" with the import's name as ``variant``, and the tables show it as a row of its own,
never averaged with Pic@Point's runs. Checked here: the record format, the table rows, the
stage's naming of the source, the config checks, the planned jobs (dry runs of the real
Snakefile), the errors for a missing checkpoint and a backbone mismatch, and (workflow
marker) a tiny real run whose records are collated into the tables.
"""

from __future__ import annotations

import copy
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

from picat.config import ConfigError, imported_protocols, validate_config
from picat.convert.files import export_checkpoint
from picat.downstream.records import ResultFileError, validate_record, validate_records
from picat.models.factory import backbone_checkpoint, build_point_backbone
from picat.report.fewshot_table import fewshot_long_rows, fewshot_wide_table
from picat.report.paper_tables import build_long_table, build_wide_tables, load_paper_tables
from picat.report.results import load_results, summarise
from picat.stages.features import source_identity

REPO = Path(__file__).resolve().parent.parent
CONFIG = yaml.safe_load((REPO / "config.yaml").read_text())
IMAGE = "efficientnet_lite0/imagenet"
TINY_DGCNN = {"k": 4, "emb_dims": 32, "local_centres": 16}


# --- helpers -----------------------------------------------------------------------------------

def record(**overrides: Any) -> dict[str, Any]:
    """A Pic@Point DGCNN ModelNet40 SVM record; ``overrides`` replace its keys."""
    base = {"protocol": "svm", "benchmark": "modelnet40", "backbone": "dgcnn", "variant": "full",
            "init": "pic@point", "seed": 0, "metric": "overall_accuracy", "value": 80.0, "suite": "demo",
            "image_backbone": IMAGE, "trainable_pretrain_params": 1_500_000,
            "checkpoint": "results/pretrain/demo/dgcnn/full/seed0/checkpoint.pt", "details": {}}
    return {**base, **overrides}


def imported_record(**overrides: Any) -> dict[str, Any]:
    """What the svm stage writes for the import "crosspoint" (a converted checkpoint: no image weights)."""
    return record(**{"init": "imported", "variant": "crosspoint", "image_backbone": None,
                     "trainable_pretrain_params": None, "checkpoint": "weights/crosspoint_dgcnn.picat.pt",
                     **overrides})


def write_results(folder: Path, records: dict[str, Any]) -> list[Path]:
    """Each record (or list of records) as ``folder/<name>.json``; the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, content in records.items():
        path = folder / f"{name}.json"
        path.write_text(json.dumps(content))
        paths.append(path)
    return paths


def outside_dgcnn(tmp_path: Path, name: str = "crosspoint_dgcnn") -> Path:
    """A tiny DGCNN as CrossPoint's code saves it (the official DGCNN key names: ``conv1.0.weight``,
    ``bn1.*`` and its ``conv1.1.*`` alias, ...), made by exporting a random picat DGCNN."""
    torch.manual_seed(0)
    model = build_point_backbone("dgcnn", TINY_DGCNN)
    native = tmp_path / f"{name}.native.pt"
    torch.save(backbone_checkpoint("dgcnn", TINY_DGCNN, False, "y", model, {"variant": None}), native)
    outside = tmp_path / f"{name}.pth"
    export_checkpoint(native, outside, "crosspoint", log=lambda _: None)
    assert "conv1.0.weight" in torch.load(outside, weights_only=True)  # the official key names
    return outside


def picat_convert(source: Path, target: Path, format_name: str, *options: str) -> None:
    """``picat convert SOURCE TARGET --from FORMAT`` as a user runs it."""
    command = [sys.executable, "-m", "picat", "convert", str(source), str(target), "--from", format_name]
    for option in options:
        command += ["--option", option]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A picat checkpoint converted from a CrossPoint-style DGCNN file with ``picat convert``."""
    folder = tmp_path_factory.mktemp("imported")
    target = folder / "crosspoint_dgcnn.picat.pt"
    picat_convert(outside_dgcnn(folder), target, "crosspoint", "k=4")
    return target


# --- records -------------------------------------------------------------------------------------

def test_an_imported_record_names_its_import_in_variant(tmp_path: Path) -> None:
    row = validate_record(tmp_path / "r.json", imported_record())
    assert (row["init"], row["variant"], row["image_backbone"]) == ("imported", "crosspoint", "")
    # Any protocol may score an import (the training protocols too), with its own metrics.
    validate_records(tmp_path / "f.json", [imported_record(protocol="fewshot", metric="overall_accuracy_5shot"),
                                           imported_record(protocol="fewshot", metric="overall_accuracy_all")])
    validate_record(tmp_path / "t.json", imported_record(protocol="finetune", benchmark="scanobjectnn_obj_bg",
                                                         backbone="pointnext"))


@pytest.mark.parametrize("variant, problem", [(None, "names its import"), ("two words", "names its import"),
                                              ("-dash", "names its import"), (7, "names its import")])
def test_an_imported_record_without_a_valid_name_is_refused(tmp_path: Path, variant: Any, problem: str) -> None:
    with pytest.raises(ResultFileError, match=rf"r\.json: key 'variant': .*{problem}"):
        validate_record(tmp_path / "r.json", imported_record(variant=variant))


def test_the_other_inits_keep_their_variant_rules(tmp_path: Path) -> None:
    # A Pic@Point run still names one of the pre-training variants, never an import's name.
    with pytest.raises(ResultFileError, match="key 'variant': 'crosspoint' is not one of full"):
        validate_record(tmp_path / "r.json", record(variant="crosspoint"))
    with pytest.raises(ResultFileError, match="key 'variant': 'crosspoint' is not one of full"):
        validate_record(tmp_path / "r.json", record(init="random", variant="crosspoint"))
    with pytest.raises(ResultFileError, match="key 'init': 'outside' is not one of pic@point, random, scratch, "
                                              "imported"):
        validate_record(tmp_path / "r.json", record(init="outside"))


def test_one_files_records_agree_on_the_import(tmp_path: Path) -> None:
    with pytest.raises(ResultFileError, match=r"record \[1\]: key 'variant': 'other' differs"):
        validate_records(tmp_path / "f.json", [
            imported_record(protocol="fewshot", metric="overall_accuracy_1shot"),
            imported_record(protocol="fewshot", metric="overall_accuracy_all", variant="other")])


# --- tables --------------------------------------------------------------------------------------

def svm_summary(tmp_path: Path) -> pd.DataFrame:
    """Pic@Point full over three seeds, random init, and the import "crosspoint" on both Table 1 benchmarks."""
    records: dict[str, Any] = {}
    for benchmark in ("modelnet40", "scanobjectnn_obj_bg"):
        for seed, value in enumerate((80.0, 81.0, 83.0)):
            records[f"full_{benchmark}_{seed}"] = record(benchmark=benchmark, seed=seed, value=value)
        records[f"random_{benchmark}"] = record(benchmark=benchmark, init="random", variant=None, image_backbone=None,
                                                trainable_pretrain_params=None, checkpoint=None, value=50.0)
        records[f"crosspoint_{benchmark}"] = imported_record(benchmark=benchmark, value=99.0)
    records["no_local"] = record(variant="no_local", value=70.0)
    return summarise(load_results(write_results(tmp_path, records)))


def test_imports_are_rows_of_their_own_in_the_long_table(tmp_path: Path) -> None:
    long = build_long_table(svm_summary(tmp_path), load_paper_tables())
    imported = long[long["init"] == "imported"]
    assert sorted(imported["table"]) == ["table1", "table1"]  # not a row of Table 3's ablation of Pic@Point
    assert set(imported["method"]) == {"DGCNN imported: crosspoint (picat)"}
    assert set(imported["variant"]) == {"crosspoint"} and (imported["value"] == 99.0).all()
    assert imported["paper_value"].isna().all() and (imported["n_runs"] == 1).all()
    assert imported["source"].str.contains("imported checkpoint 'crosspoint', not a Pic@Point run").all()
    # Pic@Point's mean is its own three seeds, untouched by the import's 99.
    ours = long[(long["table"] == "table1") & (long["init"] == "pic@point") & (long["benchmark"] == "modelnet40")
                & long["n_runs"].notna()]
    assert ours["value"].tolist() == [pytest.approx(81.333333, abs=1e-5)] and ours["n_runs"].tolist() == [3]
    # The paper's own CrossPoint row stays a paper row of its own.
    paper_row = long[long["method"] == "DGCNN+CrossPoint (Afham et al. 2022)"]
    assert len(paper_row) == 2 and paper_row["value"].isna().all()


def test_imports_are_labelled_rows_of_the_shaped_tables(tmp_path: Path) -> None:
    wide = build_wide_tables(build_long_table(svm_summary(tmp_path), load_paper_tables()))
    table1 = wide["table1"].set_index("method")
    row = table1.loc["DGCNN imported: crosspoint (picat)"]
    assert (row["modelnet40"], row["scanobjectnn_obj_bg"], row["modelnet40_n"]) == (99.0, 99.0, 1)
    assert math.isnan(row["modelnet40_paper"]) and row["suite"] == "demo"
    assert table1.loc["DGCNN+Pic@Point (picat)", "modelnet40"] == pytest.approx(81.33)
    assert not wide["table3"]["method"].str.contains("imported").any()


def test_imports_are_labelled_rows_of_the_fewshot_table(tmp_path: Path) -> None:
    def fewshot(**overrides: Any) -> list[dict[str, Any]]:
        return [{**overrides, "protocol": "fewshot", "metric": metric, "value": value}
                for metric, value in (("overall_accuracy_1shot", 40.0), ("overall_accuracy_all", 70.0))]

    records = {"full": fewshot(**record()), "crosspoint": fewshot(**imported_record()),
               "random": fewshot(**record(init="random", variant=None, image_backbone=None,
                                          trainable_pretrain_params=None, checkpoint=None))}
    long = fewshot_long_rows(summarise(load_results(write_results(tmp_path, records))))
    # Pic@Point's variants, then the imports, then random init.
    assert list(dict.fromkeys(long["method"])) == ["DGCNN+Pic@Point full (picat)", "DGCNN imported: crosspoint (picat)",
                                                   "DGCNN random init (picat)"]
    imported = long[long["init"] == "imported"]
    assert len(imported) == 2 and imported["source"].str.startswith("picat only (demo suite); imported").all()
    wide = fewshot_wide_table(long)
    row = wide[wide["init"] == "imported"].iloc[0]
    assert (row["variant"], row["method"], row["1-shot"]) == ("crosspoint", "DGCNN imported: crosspoint (picat)",
                                                             "40.00 (1)")


# --- the stage names its source --------------------------------------------------------------------

def test_a_source_is_imported_when_named_or_converted() -> None:
    converted = {"variant": None, "converted_from": {"format": "crosspoint", "file": "best_model.pth"}}
    ours = {"variant": "full", "image_backbone": {"name": "efficientnet_lite0"}}
    checkpoint = Path("x.pt")
    assert source_identity("pic@point", None, converted, checkpoint, "cp_dgcnn") == ("imported", "cp_dgcnn")
    # Without a name (picat svm --checkpoint by hand) a converted checkpoint is named by its format.
    assert source_identity("pic@point", None, converted, checkpoint, None) == ("imported", "crosspoint")
    assert source_identity("pic@point", "full", ours, checkpoint, None) == ("pic@point", "full")
    assert source_identity("random", None, None, None, None) == ("random", None)
    with pytest.raises(ValueError, match="not a random init"):
        source_identity("random", None, None, None, "crosspoint")
    with pytest.raises(ValueError, match="letters, digits"):
        source_identity("pic@point", None, converted, checkpoint, "two words")


# --- config --------------------------------------------------------------------------------------

def with_imports(imports: Any, suite: str = "demo") -> dict[str, Any]:
    config = copy.deepcopy(CONFIG)
    config[suite]["imported"] = imports
    return config


def test_the_default_config_imports_nothing() -> None:
    assert all(not CONFIG[suite].get("imported") for suite in ("demo", "evidence", "paper") if suite in CONFIG)
    for empty in (None, {}):
        validate_config(with_imports(empty))


def test_default_protocols_follow_the_backbone() -> None:
    config = with_imports({"cp": {"checkpoint": "a.pt", "backbone": "dgcnn"},
                           "px": {"checkpoint": "b.pt", "backbone": "pointnext"},
                           "only": {"checkpoint": "c.pt", "backbone": "dgcnn", "protocols": ["fewshot"]}})
    validate_config(config)
    # The svm protocol scores downstream.svm.backbone (dgcnn): a PointNeXt import gets the few-shot probe.
    assert [imported_protocols(config["demo"], name) for name in ("cp", "px", "only")] == [
        ["svm", "fewshot"], ["fewshot"], ["fewshot"]]


@pytest.mark.parametrize("imports, key, message", [
    ({"two words": {"checkpoint": "a.pt", "backbone": "dgcnn"}}, "demo.imported", "does not match"),
    ({"cp": {"checkpoint": "a.pt"}}, "demo.imported.cp", "'backbone' is a required property"),
    ({"cp": {"checkpoint": "a.pt", "backbone": "pointnet"}}, "demo.imported.cp.backbone", "is not one of"),
    ({"cp": {"checkpoint": "a.pt", "backbone": "dgcnn", "protocols": ["finetune"]}}, "demo.imported.cp.protocols.0",
     "is not one of"),
    ({"px": {"checkpoint": "a.pt", "backbone": "pointnext", "protocols": ["svm"]}}, "demo.imported.px.protocols",
     r"'svm' scores demo.downstream.svm.backbone \(dgcnn\), but this import is a pointnext"),
])
def test_invalid_imports_are_refused_naming_the_key(imports: dict, key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"invalid config key '{re.escape(key)}': .*{message}"):
        validate_config(with_imports(imports))


# --- the workflow: dry runs of the real Snakefile ---------------------------------------------------

def snakemake(workdir: Path, *args: str, config: dict[str, Any]) -> subprocess.CompletedProcess:
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory",
               str(workdir), "--configfile", str(workdir / "config.yaml"), "--cores", "1", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=600)


def job_counts(output: str) -> dict[str, int]:
    """The "Job stats" table of a dry run, by rule."""
    table = re.search(r"Job stats:\n.*?\n-+\s+-+\n(.*?)\ntotal", output, re.S)
    return {line.split()[0]: int(line.split()[1]) for line in (table.group(1).splitlines() if table else [])}


def test_an_import_gets_its_svm_and_fewshot_jobs(tmp_path: Path, converted: Path) -> None:
    baseline = snakemake(tmp_path, "-n", "results/tables.csv", config=CONFIG)
    assert baseline.returncode == 0, baseline.stderr[-3000:]
    config = with_imports({"crosspoint": {"checkpoint": str(converted), "backbone": "dgcnn"}})
    result = snakemake(tmp_path, "-n", "-p", "results/tables.csv", config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    downstream = CONFIG["demo"]["downstream"]
    svm_benchmarks, fewshot_benchmarks = list(downstream["svm"]["benchmarks"]), downstream["fewshot"]["benchmarks"]
    features = len(set(svm_benchmarks) | set(fewshot_benchmarks))  # one extraction serves both protocols
    before, after = job_counts(baseline.stdout), job_counts(result.stdout)
    assert after == {**before, "features": before["features"] + features, "svm_imported": len(svm_benchmarks),
                     "fewshot": before["fewshot"] + len(fewshot_benchmarks)}
    outputs = set(re.findall(r"output: (results/downstream/\S+)", result.stdout))
    expected = {f"results/downstream/demo/svm/{b}/dgcnn_imported-crosspoint/seed0.json" for b in svm_benchmarks}
    expected |= {f"results/downstream/demo/fewshot/{b}/dgcnn_imported-crosspoint/seed0.json"
                 for b in fewshot_benchmarks}
    assert {path for path in outputs if "imported" in path} == expected
    # Its features jobs read the configured file and name the import, so that its records say so.
    commands = [line for line in result.stdout.splitlines() if "picat features" in line and "imported" in line]
    assert len(commands) == features
    assert all(f"--checkpoint {converted} --imported crosspoint" in line for line in commands)


def test_seeds_and_protocols_choose_an_imports_runs(tmp_path: Path, converted: Path) -> None:
    config = with_imports({"cp": {"checkpoint": str(converted), "backbone": "dgcnn", "protocols": ["svm"],
                                  "seeds": [0, 1]}})
    result = snakemake(tmp_path, "-n", "results/tables.csv", config=config)
    assert result.returncode == 0, result.stderr[-3000:]
    outputs = {path for path in re.findall(r"output: (\S+)", result.stdout) if "imported-cp" in path}
    assert {path for path in outputs if "/downstream/" in path} == {
        f"results/downstream/demo/svm/{b}/dgcnn_imported-cp/seed{seed}.json"
        for b in CONFIG["demo"]["downstream"]["svm"]["benchmarks"] for seed in (0, 1)}


def test_a_missing_checkpoint_stops_the_workflow_naming_the_key_and_path(tmp_path: Path) -> None:
    config = with_imports({"crosspoint": {"checkpoint": "weights/crosspoint_dgcnn.picat.pt", "backbone": "dgcnn"}})
    result = snakemake(tmp_path, "-n", "results/tables.csv", config=config)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Job stats" not in output
    assert ("config key 'demo.imported.crosspoint.checkpoint': the checkpoint file "
            "'weights/crosspoint_dgcnn.picat.pt' does not exist") in output
    assert "picat convert" in output


def test_an_unconverted_file_is_refused_naming_the_key(tmp_path: Path) -> None:
    outside = outside_dgcnn(tmp_path)  # the outside layout itself, not converted
    config = with_imports({"crosspoint": {"checkpoint": str(outside), "backbone": "dgcnn"}})
    result = snakemake(tmp_path, "-n", "results/tables.csv", config=config)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Job stats" not in output
    assert "config key 'demo.imported.crosspoint.checkpoint'" in output and "is not a picat checkpoint" in output


def test_a_backbone_mismatch_stops_the_workflow_naming_both(tmp_path: Path, converted: Path) -> None:
    config = with_imports({"crosspoint": {"checkpoint": str(converted), "backbone": "pointnext",
                                          "protocols": ["fewshot"]}})
    result = snakemake(tmp_path, "-n", "results/tables.csv", config=config)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "Job stats" not in output
    assert (f"config key 'demo.imported.crosspoint.backbone': 'pointnext', but the checkpoint '{converted}' holds "
            "a 'dgcnn' backbone") in output


# --- the workflow: a tiny real run, collated -------------------------------------------------------

@pytest.mark.workflow
def test_an_imports_records_land_in_the_tables_labelled_as_imported(tmp_path: Path, converted: Path) -> None:
    """The tiny demo suite's stand-ins, the import's features, SVMs and few-shot probe for real
    (no renders, no pre-training), then the collation of its records beside Pic@Point-style ones."""
    from test_workflow import tiny_config

    from picat.stages.tables import collate

    config = tiny_config(tmp_path / "no-render-env")
    config["demo"]["imported"] = {"crosspoint": {"checkpoint": str(converted), "backbone": "dgcnn"}}
    downstream = config["demo"]["downstream"]
    targets = [f"results/downstream/demo/{protocol}/{b}/dgcnn_imported-crosspoint/seed0.json"
               for protocol, benchmarks in (("svm", downstream["svm"]["benchmarks"]),
                                            ("fewshot", downstream["fewshot"]["benchmarks"]))
               for b in benchmarks]
    workdir = tmp_path / "work"
    workdir.mkdir()
    result = snakemake(workdir, *targets, config=config)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # The stand-ins, and the import's jobs only: no render, no pre-training, no Pic@Point run.
    assert job_counts(result.stdout + result.stderr) == {"standins": 1, "features": 2, "svm_imported": 2,
                                                         "fewshot": 1}
    svm = json.loads((workdir / targets[0]).read_text())
    assert (svm["init"], svm["variant"], svm["backbone"], svm["image_backbone"]) == (
        "imported", "crosspoint", "dgcnn", None)
    assert svm["checkpoint"] == str(converted) and svm["details"]["imported"]["format"] == "crosspoint"
    fewshot = json.loads((workdir / targets[-1]).read_text())
    assert {(r["init"], r["variant"]) for r in fewshot} == {("imported", "crosspoint")}

    # Collated beside a Pic@Point and a random-init run (Table 1 and Figure 2 need them).
    others = write_results(tmp_path / "others", {
        "full": record(value=60.0), "random": record(init="random", variant=None, image_backbone=None,
                                                     trainable_pretrain_params=None, checkpoint=None, value=40.0)})
    tables = tmp_path / "tables"
    collate([*others, *(workdir / target for target in targets)], tmp_path / "tables.csv", tables,
            tmp_path / "figure2.png", {key: CONFIG["paper"][key] for key in ("pretrain", "image_backbone")})
    long = pd.read_csv(tmp_path / "tables.csv", keep_default_na=False)
    imported = long[long["init"] == "imported"]
    assert set(imported["method"]) == {"DGCNN imported: crosspoint (picat)"}
    assert set(imported["table"]) == {"table1", "fewshot"} and set(imported["variant"]) == {"crosspoint"}
    assert len(imported[imported["table"] == "table1"]) == len(downstream["svm"]["benchmarks"])
    # Pic@Point's measured row is its own run alone.
    ours = long[(long["table"] == "table1") & (long["init"] == "pic@point") & (long["n_runs"] != "")]
    assert ours["value"].tolist() == ["60.0"] and ours["n_runs"].tolist() == ["1"]
    table1 = pd.read_csv(tables / "table1.csv")
    assert "DGCNN imported: crosspoint (picat)" in set(table1["method"])
    fewshot_table = pd.read_csv(tables / "fewshot.csv", keep_default_na=False)
    assert fewshot_table[fewshot_table["init"] == "imported"]["method"].tolist() == [
        "DGCNN imported: crosspoint (picat)"] * len(downstream["fewshot"]["benchmarks"])
