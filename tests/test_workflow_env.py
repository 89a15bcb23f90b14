"""The jobs' environment: `python -m picat` resolves to the Python running Snakemake (or a conda env's)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from picat.workflow_env import job_environment

REPO = Path(__file__).resolve().parent.parent


def test_the_snakemake_python_folder_and_the_checkout_come_first_once():
    env = job_environment({"PATH": f"/usr/bin{os.pathsep}/venv/bin", "PYTHONPATH": "/elsewhere"}, "/venv/bin/python3",
                          REPO)
    assert env["PATH"].split(os.pathsep) == ["/venv/bin", "/usr/bin"]
    assert env["PYTHONPATH"].split(os.pathsep) == [str(REPO), "/elsewhere"]


def test_unset_variables_give_just_the_new_entry():
    env = job_environment({}, "/venv/bin/python3", REPO)
    assert env == {"PATH": "/venv/bin", "PYTHONPATH": str(REPO)}


def test_python_on_the_job_path_imports_this_checkouts_picat(tmp_path):
    """A shell with only the job PATH (no activated venv) finds a Python that imports this picat."""
    env = {**job_environment({"PATH": "/usr/bin:/bin"}, sys.executable, REPO), "HOME": str(tmp_path)}
    result = subprocess.run(["sh", "-c", "python -c 'import picat, sys; print(picat.__file__); print(sys.prefix)'"],
                            env=env, capture_output=True, text=True, check=True)
    picat_file, prefix = result.stdout.split()
    assert Path(picat_file).resolve().parent == REPO / "picat"
    assert prefix == sys.prefix
