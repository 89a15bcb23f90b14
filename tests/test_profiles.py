"""Cluster profiles, per-rule resources and conda environments.

The SLURM test runs the real `snakemake --workflow-profile workflow/profiles/slurm` with the
SLURM executor plugin against fake SLURM commands (sbatch, sacctmgr, sinfo, ...) on PATH:
the plugin builds its genuine sbatch command line for each job, the fake sbatch records it
and refuses the submission, so no job runs and no cluster is needed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SLURM_PROFILE = REPO / "workflow" / "profiles" / "slurm"
DEFAULT_PROFILE = REPO / "workflow" / "profiles" / "default"
PRETRAIN_TARGET = "results/pretrain/demo/dgcnn/full/seed0/checkpoint.pt"
RENDER_TARGET = "results/renders/demo/shard_00000.h5"

# A SLURM command that records its arguments (JSON, one line per call) and answers like the
# real one would for the plugin's checks; sbatch refuses every submission.
FAKE_COMMAND = """#!{python}
import json, os, sys
name = os.path.basename(sys.argv[0])
with open(os.environ["FAKE_SLURM_LOG"], "a") as log:
    log.write(json.dumps({{"command": name, "argv": sys.argv[1:]}}) + "\\n")
if name == "sacctmgr":
    print("{account}")
elif name == "sbatch":
    print("sbatch: error: fake sbatch of picat's tests, nothing submitted", file=sys.stderr)
    sys.exit(1)
"""


def profile_settings(profile: Path) -> dict:
    return yaml.safe_load((profile / "config.yaml").read_text())


def gpu_config() -> dict:
    """The demo suite with one GPU per training job, 3 threads per training job and 4 render
    threads (so that caps show)."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["render_env"] = ".envs/render"
    demo = config["demo"]
    demo["pretrain"]["gpus"] = 1
    demo["threads"] = 3
    demo["render"]["threads"] = 4
    return config


def populate(workdir: Path) -> None:
    """A finished corpus, render environment, renders, shards and feature caches for one
    shard (in the order the workflow makes them), so that the pre-training job is ready."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(gpu_config()))
    files = [".envs/render/picat-render-env.json", "results/corpus/demo/manifest.tsv",
             "results/corpus/demo/shards/shard_00000.tsv", RENDER_TARGET,
             "results/shards/demo/shard_00000.h5", "results/features/demo/shard_00000.h5"]
    start = time.time() - 1000
    for i, name in enumerate(files):
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("object_id\tcategory\tpath\n" if name.endswith(".tsv") else "{}")
        os.utime(path, (start + 10 * i, start + 10 * i))
    corpus = workdir / "results/corpus/demo"
    os.utime(corpus / "shards", (start + 20, start + 20))
    os.utime(corpus, (start + 20, start + 20))


def fake_slurm(bin_dir: Path, account: str) -> None:
    bin_dir.mkdir()
    for name in ("sbatch", "sacctmgr", "sshare", "sacct", "squeue", "sinfo", "scontrol", "scancel"):
        script = bin_dir / name
        script.write_text(FAKE_COMMAND.format(python=sys.executable, account=account))
        script.chmod(0o755)


def run_snakemake(workdir: Path, *args: str, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(workdir / "config.yaml"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd, env=env)


def sbatch_calls(workdir: Path, target: str, *profile_args: str) -> list[list[str]]:
    """The sbatch argument lists the SLURM plugin built for the target's ready jobs."""
    bin_dir = workdir / f"fake-slurm-{len(list(workdir.glob('fake-slurm-*')))}"
    account = profile_settings(SLURM_PROFILE)["default-resources"]["slurm_account"]
    fake_slurm(bin_dir, account)
    log = bin_dir / "calls.jsonl"
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", FAKE_SLURM_LOG=str(log))
    env.pop("SLURM_JOB_ID", None)
    # No status checks are due (nothing gets submitted): do not wait the first 40 s for them.
    result = run_snakemake(workdir, *profile_args, "--retries", "0", "--slurm-init-seconds-before-status-checks", "1",
                           target, env=env)
    output = result.stdout + result.stderr
    assert result.returncode != 0 and "fake sbatch" in output, output[-4000:]
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return [c["argv"] for c in calls if c["command"] == "sbatch"]


def options(argv: list[str]) -> dict[str, str]:
    """sbatch's options as {flag: value} (argv as the shell split the plugin's command)."""
    words = argv
    found: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--wrap="):
            found["--wrap"] = word[len("--wrap="):]
        elif word.startswith("--") and "=" in word:
            key, value = word.split("=", 1)
            found[key] = value
        elif word.startswith("-") and i + 1 < len(words) and not words[i + 1].startswith("-"):
            found[word] = words[i + 1]
            i += 1
        else:
            found[word] = ""
        i += 1
    return found


@pytest.fixture(scope="module")
def slurm_submissions(tmp_path_factory) -> dict[str, dict[str, str]]:
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install snakemake-executor-plugin-slurm")
    workdir = tmp_path_factory.mktemp("slurm")
    populate(workdir)
    profile = ("--workflow-profile", str(SLURM_PROFILE))
    (pretrain,) = sbatch_calls(workdir, PRETRAIN_TARGET, *profile)
    (workdir / RENDER_TARGET).unlink()
    (render,) = sbatch_calls(workdir, RENDER_TARGET, *profile)
    submissions = {"pretrain_run": options(pretrain), "render": options(render)}
    # Shown with `pytest -s`: the exact requests.
    for rule, argv in (("pretrain_run", pretrain), ("render", render)):
        print(f"{rule}: sbatch {' '.join(a for a in argv if not a.startswith('--wrap'))[:400]}")
    return submissions


def test_slurm_profile_requests_a_gpu_for_pretraining(slurm_submissions):
    sbatch = slurm_submissions["pretrain_run"]
    settings = profile_settings(SLURM_PROFILE)
    assert sbatch["-p"] == settings["set-resources"]["pretrain_run"]["slurm_partition"]
    assert sbatch["-A"] == settings["default-resources"]["slurm_account"]
    assert sbatch["--gpus"] == "1"
    assert sbatch["-t"] == "60"                       # demo: 60 min (paper: 24 h)
    assert sbatch["--mem"] == str(6000 + 8 * 1)       # demo: no loader workers, one shard
    assert sbatch["--cpus-per-task"] == "3"           # the suite's threads
    assert "rule_pretrain_run" in sbatch["--comment"]
    assert "--executor slurm-jobstep" in sbatch["--wrap"] and PRETRAIN_TARGET not in sbatch.get("-D", "")


def test_slurm_profile_sends_renders_to_the_cpu_partition(slurm_submissions):
    sbatch = slurm_submissions["render"]
    settings = profile_settings(SLURM_PROFILE)
    assert sbatch["-p"] == settings["default-resources"]["slurm_partition"] != "gpu"
    assert "--gpus" not in sbatch and "--gres" not in sbatch
    assert sbatch["--cpus-per-task"] == "4"           # render.threads, not capped by this machine
    assert sbatch["--mem"] == str(6000 + 4 * 40)
    assert sbatch["-t"] == str(15 + 40 * 20 // 120)   # Workbench, 40 objects per shard
    assert sbatch["--ntasks"] == "1"


def test_slurm_profile_asks_gpu_partition_for_every_training_rule():
    settings = profile_settings(SLURM_PROFILE)
    assert settings["executor"] == "slurm" and settings["jobs"] >= 1 and settings["latency-wait"] >= 10
    assert settings["retries"] >= 1
    gpu_rules = {rule for rule, res in settings["set-resources"].items() if res.get("slurm_partition") == "gpu"}
    assert gpu_rules == {"encode", "pretrain_run", "finetune", "partseg", "semseg"}
    for key in ("rerun-incomplete", "keep-going", "printshellcmds", "show-failed-logs"):
        assert settings[key] is True, key


def populate_paper(workdir: Path, n_shards: int = 100) -> None:
    """The paper suite with stand-in dataset folders and a finished corpus, renders, shards and
    feature caches for ``n_shards`` shards (50k objects at 500 per shard), in the order the
    workflow makes them, plus a PointNeXt checkpoint: pre-training and fine-tuning are ready."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    config["suite"] = "paper"
    config["render_env"] = ".envs/render"
    paper = config["paper"]
    paper["corpus"].update(kind="mesh_folder", root=str(workdir / "meshes"))
    (workdir / "meshes").mkdir()
    for spec in paper["downstream"]["datasets"].values():
        spec["root"] = str(workdir / "datasets" / Path(spec["root"]).name)
        Path(spec["root"]).mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    shards = [f"shard_{i:05d}" for i in range(n_shards)]
    files = [".envs/render/picat-render-env.json", "results/corpus/paper/manifest.tsv"]
    files += [f"results/corpus/paper/shards/{s}.tsv" for s in shards]
    for stage in ("renders", "shards", "features"):
        files += [f"results/{stage}/paper/{s}.h5" for s in shards]
    files.append("results/pretrain/paper/pointnext/full/seed0/checkpoint.pt")
    start = time.time() - 10_000
    for i, name in enumerate(files):
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("object_id\tcategory\tpath\n" if name.endswith(".tsv") else "{}")
        os.utime(path, (start + i, start + i))
    for folder in ("results/corpus/paper/shards", "results/corpus/paper"):
        os.utime(workdir / folder, (start + 1, start + 1))


def test_paper_suite_resources_per_rule(tmp_path):
    """The sbatch requests the SLURM profile makes for the paper suite's jobs (read from the
    plugin's genuine sbatch calls, not from a dry run, whose display of string and
    input-dependent resources differs between Snakemake versions)."""
    pytest.importorskip("snakemake_executor_plugin_slurm", reason="pip install snakemake-executor-plugin-slurm")
    populate_paper(tmp_path)
    profile = ("--workflow-profile", str(SLURM_PROFILE))
    settings = profile_settings(SLURM_PROFILE)
    gpu_partition = settings["set-resources"]["pretrain_run"]["slurm_partition"]
    cpu_partition = settings["default-resources"]["slurm_partition"]
    assert gpu_partition != cpu_partition

    checkpoint = "results/pretrain/paper/dgcnn/full/seed0/checkpoint.pt"
    (pretrain,) = map(options, sbatch_calls(tmp_path, checkpoint, *profile))
    assert pretrain["--cpus-per-task"] == "8" and pretrain["--gpus"] == "1" and pretrain["-p"] == gpu_partition
    assert pretrain["-t"] == str(24 * 60) and pretrain["--mem"] == str(6000 + 2000 * 4 + 8 * 100)

    target = "results/downstream/paper/finetune/scanobjectnn_obj_bg/pointnext_full/seed0.json"
    (finetune,) = map(options, sbatch_calls(tmp_path, target, *profile))
    assert finetune["--gpus"] == "1" and finetune["-p"] == gpu_partition and finetune["-t"] == str(12 * 60)

    (tmp_path / "results/features/paper/shard_00000.h5").unlink()
    (encode,) = map(options, sbatch_calls(tmp_path, "results/features/paper/shard_00000.h5", *profile))
    # the frozen 2D network over ~1M renders: on a GPU node (issue 13)
    assert encode["--gpus"] == "1" and encode["-p"] == gpu_partition

    (tmp_path / "results/renders/paper/shard_00000.h5").unlink()
    (render,) = map(options, sbatch_calls(tmp_path, "results/renders/paper/shard_00000.h5", *profile))
    assert render["--cpus-per-task"] == "4" and "--gpus" not in render and render["-p"] == cpu_partition
    assert render["-t"] == str(15 + 500 * 20 * 6 // 120) and render["--mem"] == "8000"

    # Every training and encoding job gets the suite's precision (printshellcmds in a dry run).
    result = run_snakemake(tmp_path, "-n", *profile, "--forceall", checkpoint)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--amp auto" in result.stdout


def test_default_profile_is_applied_without_being_named(tmp_path):
    """`snakemake` with no profile picks up workflow/profiles/default (via profiles/default
    beside the Snakefile), also when run from another directory, as the workflow tests do."""
    assert (REPO / "profiles" / "default").resolve() == DEFAULT_PROFILE.resolve()
    settings = profile_settings(DEFAULT_PROFILE)
    assert settings["cores"] == "all"
    for key in ("rerun-incomplete", "keep-going", "printshellcmds", "show-failed-logs"):
        assert settings[key] is True, key
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(tmp_path, "-n", "results/corpus/demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "workflow specific profile" in result.stderr and "profiles/default" in result.stderr
    # printshellcmds from the profile: the dry run shows the corpus job's command.
    assert "-m picat corpus" in result.stdout
    result = run_snakemake(tmp_path, "-n", "--workflow-profile", "none", "--cores", "1", "results/corpus/demo",
                           cwd=tmp_path)
    assert "workflow specific profile" not in result.stderr and "-m picat corpus" not in result.stdout


def pip_requirements(env_file: Path) -> list[str]:
    spec = yaml.safe_load(env_file.read_text())
    (pip,) = [d["pip"] for d in spec["dependencies"] if isinstance(d, dict)]
    return pip


def test_main_conda_environment_matches_pyproject():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "envs" / "picat.yaml").read_text())
    assert "python=3.11" in env["dependencies"]
    workflow = project["dependencies"] + project["optional-dependencies"]["workflow"]  # the lean install + [workflow]
    assert sorted(pip_requirements(REPO / "envs" / "picat.yaml")) == sorted(workflow)


def test_render_conda_environment_matches_the_render_venv():
    from picat.render.environment import BLENDERPROC_PINS, CORE_PINS

    assert sorted(pip_requirements(REPO / "envs" / "blender.yaml")) == sorted(CORE_PINS + BLENDERPROC_PINS)


def test_every_job_rule_declares_resources_and_a_conda_environment():
    rules = re.split(r"\n(?:rule|checkpoint) ",
                     "\n".join(p.read_text() for p in (REPO / "workflow/rules").glob("*.smk")))
    checked = 0
    for rule in rules[1:]:
        name = rule.split(":", 1)[0]
        if "\n    shell:" not in rule or name in ("tables", "figure2"):  # report.smk is not this test's
            continue
        checked += 1
        assert "\n    threads:" in rule and "mem_mb=" in rule and "runtime=" in rule, name
        assert '\n    conda:\n        "../../envs/picat.yaml"' in rule, name
    assert checked >= 15
