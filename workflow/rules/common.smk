# Shared helpers: config validation, the selected suite's settings, paths, and the command
# that runs picat's entry points with this workflow's Python.
import json
import shlex
import sys
from pathlib import Path

from picat.config import ConfigError, pretrain_run_settings, pretrain_runs, suite_settings, validate_config

try:
    validate_config(config)
except ConfigError as error:
    raise WorkflowError(f"config.yaml: {error}") from None

SUITE = config["suite"]
SETTINGS = suite_settings(config)
# A missing dataset stops the run before any job starts, naming the path and the layout.
if SETTINGS["corpus"]["kind"] != "demo" and not Path(SETTINGS["corpus"]["root"]).is_dir():
    raise WorkflowError(
        f"config key '{SUITE}.corpus.root': the {SETTINGS['corpus']['kind']} corpus folder "
        f"{SETTINGS['corpus']['root']!r} does not exist (expected layouts: README, 'Real data')"
    )
RENDER_ENV = config["render_env"]
RENDER_ENV_STAMP = f"{RENDER_ENV}/picat-render-env.json"
# The Python running Snakemake has picat installed; calling it directly does not depend on
# the user's PATH (e.g. `.venv/bin/snakemake` without an activated venv). Under
# `--software-deployment-method conda` a job runs the `python` of its rule's conda env
# (envs/picat.yaml) with this checkout on PYTHONPATH.
PICAT = f"{shlex.quote(sys.executable)} -m picat"
if "conda" in {str(m).lower() for m in workflow.deployment_settings.deployment_method}:
    PICAT = f"PYTHONPATH={shlex.quote(workflow.basedir)}${{PYTHONPATH:+:$PYTHONPATH}} python -m picat"


wildcard_constraints:
    suite="demo|paper",
    shard=r"shard_\d{5}",


def as_json(value) -> str:
    """A config block as a shell-quoted JSON argument (stable key order, so params compare equal)."""
    return shlex.quote(json.dumps(value, sort_keys=True))


def shard_names(wildcards) -> list[str]:
    """Shard names of the suite, known once the corpus checkpoint has run."""
    corpus_dir = checkpoints.corpus.get(suite=wildcards.suite).output[0]
    return sorted(path.stem for path in Path(corpus_dir, "shards").glob("shard_*.tsv"))
