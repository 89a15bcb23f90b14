"""The environment the workflow's jobs run in (used by ``workflow/rules/common.smk``).

Every rule runs ``python -m picat ...``. Which ``python`` that is comes from the jobs' PATH,
so the shell commands name no interpreter path: moving the checkout or the venv changes no
rule's code and so reruns nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def _prepend(entry: str, value: str | None) -> str:
    parts = [part for part in (value or "").split(os.pathsep) if part and part != entry]
    return os.pathsep.join([entry, *parts])


def job_environment(environ: Mapping[str, str], python: str, checkout: str | Path) -> dict[str, str]:
    """PATH and PYTHONPATH for the jobs of a workflow run.

    Args:
        environ: the current environment (``os.environ``).
        python: the interpreter running Snakemake (``sys.executable``); its folder goes first
            on PATH, as activating its venv would do. Under conda deployment Snakemake puts
            the rule's env in front of it.
        checkout: the workflow's folder (``workflow.basedir``); first on PYTHONPATH so that a
            conda env, which installs picat's dependencies but not picat, imports this
            checkout's ``picat``.

    Returns:
        {"PATH": ..., "PYTHONPATH": ...}; entries already present are moved to the front, not repeated.
    """
    return {
        "PATH": _prepend(str(Path(python).parent), environ.get("PATH")),
        "PYTHONPATH": _prepend(str(Path(checkout).resolve()), environ.get("PYTHONPATH")),
    }
