# Shared by all rules: config validation, the selected suite's settings, how jobs run picat,
# and every function the rules call (the other .smk files hold rules only).
import json
import os
import shlex
import sys
from pathlib import Path
from types import SimpleNamespace

from picat.config import (
    SHARED_FEATURE_KEYS,
    ConfigError,
    imported_checkpoints,
    imported_protocols,
    merge_command_line_config,
    pretrain_run_settings,
    pretrain_runs,
    suite_settings,
    validate_config,
)
from picat.workflow_env import job_environment

# Snakemake has merged any --configfile files and --config values into config.yaml's nested
# settings key by key; --config's nested values arrive as strings ('demo={pretrain: {epochs: 2}}'
# gives "2"), so they are merged again with their YAML types. Then the effective config is checked.
merge_command_line_config(config, workflow.config_settings.config)
try:
    validate_config(config)
except ConfigError as error:
    overrides = [f"--configfile {path}" for path in workflow.overwrite_configfiles]
    overrides += ["--config"] if workflow.config_settings.config else []
    raise WorkflowError(f"config.yaml{' with ' + ', '.join(overrides) if overrides else ''}: {error}") from None

SUITE = config["suite"]
# Suites sized for a 2-core laptop: their jobs ask for the small thread, memory and time budgets
# (the bracketed figures of docs/cluster.md); the paper suite's jobs ask for cluster-sized ones.
LAPTOP_SUITES = ("demo", "evidence")
SETTINGS = suite_settings(config)
RENDER_ENV = config["render_env"]
RENDER_ENV_STAMP = f"{RENDER_ENV}/picat-render-env.json"


def job_threads(suite: str) -> int:
    """Threads of a training, encoding, feature-extraction or SVM job: the suite's `threads`, else
    2 on the laptop suites and 8 on the paper suite. On 2 cores, 1 runs two such jobs side by
    side, which finishes a fan-out sooner than one 2-thread job at a time (docs/reproducibility.md)."""
    return config[suite].get("threads", 2 if suite in LAPTOP_SUITES else 8)


# Every job runs `python -m picat ...`. The Python running Snakemake has picat installed; its
# folder goes first on the jobs' PATH, so `.venv/bin/snakemake` works without an activated
# venv. Under `--software-deployment-method conda` Snakemake puts the rule's env
# (envs/picat.yaml) first instead, and this checkout on PYTHONPATH makes picat importable there.
os.environ.update(job_environment(os.environ, sys.executable, workflow.basedir))


wildcard_constraints:
    suite="demo|evidence|paper",
    shard=r"(shard|heldout)_\d{5}",  # training shards, and held-out objects pre-training never reads
    backbone="dgcnn|pointnext",
    variant="full|no_local|no_global|no_pose|normals",
    seed=r"[0-9]+",
    benchmark="modelnet40|scanobjectnn_obj_bg|scanobjectnn_obj_only|scanobjectnn_pb_t50_rs",


STANDINS_DIR = "results/datasets/{suite}"
SEG_STANDINS_DIR = "results/seg_datasets/{suite}"
S3DIS_ROOMS_DIR = "results/s3dis/{suite}/rooms"
DATASET_SOURCES = {
    "modelnet40": "ModelNet40 as the PointNet authors' modelnet40_ply_hdf5_2048 (or modelnet40_normal_resampled, "
    "or the Princeton OFF meshes)",
    "scanobjectnn": "ScanObjectNN's h5_files folder, from its authors after agreeing to their terms of use",
    "shapenetpart": "ShapeNetPart's shapenetcore_partanno_segmentation_benchmark_v0_normal (or shapenet_part_seg_hdf5_data)",
    "s3dis": "S3DIS's Stanford3dDataset_v1.2_Aligned_Version (format s3dis_raw) or its converted Area_<k>_<room>.npy "
    "files (format s3dis_npy), from its authors after agreeing to their terms",
}


def as_json(value) -> str:
    """A config block as a shell-quoted JSON argument (stable key order, so params compare equal)."""
    return shlex.quote(json.dumps(value, sort_keys=True))


def check_real_datasets() -> None:
    """A missing real dataset stops the run before any job starts, naming the key, the path and the source."""
    if SETTINGS["corpus"]["kind"] != "demo" and not Path(SETTINGS["corpus"]["root"]).is_dir():
        raise WorkflowError(
            f"config key '{SUITE}.corpus.root': the {SETTINGS['corpus']['kind']} corpus folder "
            f"{SETTINGS['corpus']['root']!r} does not exist (expected layouts: docs/data-layouts.md)"
        )
    used = set()
    downstream = SETTINGS["downstream"]
    if "standins" not in SETTINGS:
        used |= set(downstream["svm"]["benchmarks"]) | set(downstream.get("finetune", {}).get("benchmarks", []))
        used |= set(downstream["fewshot"]["benchmarks"])
    if "seg_standins" not in SETTINGS:
        used |= {name for name, block in (("shapenetpart", "partseg"), ("s3dis", "semseg")) if block in downstream}
    for benchmark in sorted(used):
        root = Path(SETTINGS["downstream"]["datasets"][benchmark]["root"])
        if not root.is_dir():
            raise WorkflowError(
                f"config key '{SUITE}.downstream.datasets.{benchmark}.root': the folder {str(root)!r} does not exist; "
                f"expected {DATASET_SOURCES[benchmark.split('_')[0]]} (layouts: docs/data-layouts.md)"
            )


check_real_datasets()


# Imported checkpoints (`<suite>.imported`): outside backbones converted with `picat convert ...
# --from FORMAT`, scored beside Pic@Point's by the frozen-feature protocols. Their runs' source is
# "imported-<name>" in every path (never a pre-training variant's name), and their records say
# init "imported", variant <name>.
IMPORTED_PREFIX = "imported-"
IMPORTED_NAME = r"[A-Za-z0-9][A-Za-z0-9_-]*"  # the schema's name pattern (it also caps the length)
IMPORTED_SOURCE = f"{IMPORTED_PREFIX}{IMPORTED_NAME}"
# The sources of a frozen-feature run: random init, a pre-training variant, or an import.
FROZEN_SOURCES = f"random|full|no_local|no_global|no_pose|normals|{IMPORTED_SOURCE}"


def imported_seeds(suite: str, name: str) -> list[int]:
    """The seeds of an import's runs: one set of weights, so by default one run (seed 0)."""
    return list(imported_checkpoints(config[suite])[name].get("seeds", [0]))


def imported_benchmarks(suite: str, name: str) -> list[str]:
    """The benchmarks an import is scored on: those of the protocols it runs (svm, fewshot)."""
    downstream = config[suite]["downstream"]
    protocols = imported_protocols(config[suite], name)
    benchmarks = list(downstream["svm"]["benchmarks"]) if "svm" in protocols else []
    benchmarks += downstream["fewshot"]["benchmarks"] if "fewshot" in protocols else []
    return list(dict.fromkeys(benchmarks))


def check_imported_checkpoints() -> None:
    """Before any job runs: each import of the selected suite names a readable picat checkpoint
    of the configured backbone, whose input (xyz, or xyz + normals) its benchmarks provide."""
    imports = imported_checkpoints(SETTINGS)
    if not imports:
        return  # no torch import for the suites that import nothing
    from picat.models.factory import read_checkpoint

    for name, spec in imports.items():
        key, path = f"{SUITE}.imported.{name}", Path(spec["checkpoint"])
        if not path.is_file():
            raise WorkflowError(f"config key '{key}.checkpoint': the checkpoint file {str(path)!r} does not exist "
                                f"(write it with `picat convert OUTSIDE_FILE {path} --from FORMAT`, docs/convert.md)")
        try:
            payload = read_checkpoint(path)
        except Exception as error:  # torch.load raises many types for a file that is no checkpoint
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise WorkflowError(f"config key '{key}.checkpoint': {first}; an outside checkpoint is scored once "
                                "converted: `picat convert IN OUT --from FORMAT` (docs/convert.md)") from None
        if payload["backbone"] != spec["backbone"]:
            raise WorkflowError(f"config key '{key}.backbone': {spec['backbone']!r}, but the checkpoint "
                                f"{str(path)!r} holds a {payload['backbone']!r} backbone")
        if payload.get("normals"):
            lacking = [b for b in imported_benchmarks(SUITE, name) if not dataset_spec(SUITE, b).get("normals")]
            if lacking:
                raise WorkflowError(f"config key '{key}': the checkpoint {str(path)!r} reads xyz + normals, but "
                                    f"{', '.join(f'{SUITE}.downstream.datasets.{b}' for b in lacking)} give no "
                                    "normals (set normals: true there, or score it with protocols that read them)")


# --- shards ---------------------------------------------------------------------------------


def shard_names(wildcards) -> list[str]:
    """Shard names of the suite, known once the corpus checkpoint has run."""
    corpus_dir = checkpoints.corpus.get(suite=wildcards.suite).output[0]
    return sorted(path.stem for path in Path(corpus_dir, "shards").glob("shard_*.tsv"))


def shard_files(wildcards) -> list[str]:
    return expand("results/shards/{suite}/{shard}.h5", suite=wildcards.suite, shard=shard_names(wildcards))


def feature_files(wildcards) -> list[str]:
    return expand("results/features/{suite}/{shard}.h5", suite=wildcards.suite, shard=shard_names(wildcards))


def corpus_settings(suite: str) -> str:
    """The corpus rule's settings: the demo's training meshes do not depend on the held-out count
    (held-out meshes are generated apart), a real corpus's do (held-out ids leave its shards)."""
    corpus = config[suite]["corpus"]
    return as_json({k: v for k, v in corpus.items() if k != "heldout_objects" or corpus["kind"] != "demo"})


def manifest_file(wildcards) -> str:
    """A shard's manifest: training shards from the corpus checkpoint, held-out ones from heldout_corpus."""
    folder = "heldout_corpus" if wildcards.shard.startswith("heldout_") else "corpus"
    return f"results/{folder}/{wildcards.suite}/shards/{wildcards.shard}.tsv"


def heldout_names(suite: str) -> list[str]:
    """Held-out shard names of the suite, known once the heldout_corpus checkpoint has run."""
    corpus_dir = checkpoints.heldout_corpus.get(suite=suite).output[0]
    return sorted(path.stem for path in Path(corpus_dir, "shards").glob("heldout_*.tsv"))


def heldout_shard_files(wildcards) -> list[str]:
    """The held-out objects' shards (never an input of pretrain_run)."""
    suite = getattr(wildcards, "suite", SUITE)
    return expand("results/shards/{suite}/{shard}.h5", suite=suite, shard=heldout_names(suite))


def heldout_feature_files(wildcards) -> list[str]:
    suite = getattr(wildcards, "suite", SUITE)
    return expand("results/features/{suite}/{shard}.h5", suite=suite, shard=heldout_names(suite))


def suite_shard_files(wildcards) -> list[str]:
    """The selected suite's shards (for targets without a suite wildcard)."""
    return shard_files(SimpleNamespace(suite=SUITE))


def suite_feature_files(wildcards) -> list[str]:
    return feature_files(SimpleNamespace(suite=SUITE))


# --- pre-training ---------------------------------------------------------------------------


def pretrain_targets(suite: str) -> list[str]:
    return [
        f"results/pretrain/{suite}/{backbone}/{variant}/seed{seed}/checkpoint.pt"
        for backbone, variant, seed in pretrain_runs(config[suite]["pretrain"])
    ]


# --- downstream -----------------------------------------------------------------------------


def dataset_spec(suite: str, benchmark: str) -> dict:
    return config[suite]["downstream"]["datasets"][benchmark]


def dataset_input(wildcards) -> list[str]:
    """The stand-in datasets for a suite that builds them (demo); nothing for real datasets."""
    return [STANDINS_DIR.format(suite=wildcards.suite)] if "standins" in config[wildcards.suite] else []


def seg_dataset_input(wildcards) -> list[str]:
    """The segmentation stand-ins for a suite that builds them (demo); nothing for real datasets."""
    return [SEG_STANDINS_DIR.format(suite=wildcards.suite)] if "seg_standins" in config[wildcards.suite] else []


def s3dis_rooms_input(wildcards) -> str:
    """Converted rooms: made by the s3dis_convert rule from the raw layout, or given as .npy files."""
    spec = dataset_spec(wildcards.suite, "s3dis")
    return S3DIS_ROOMS_DIR.format(suite=wildcards.suite) if spec["format"] == "s3dis_raw" else spec["root"]


def random_spec(suite: str, backbone: str) -> dict:
    """Random-init baselines use the architecture that pre-training trains."""
    return {
        "backbone": backbone,
        "options": config[suite]["pretrain"][backbone],
        "up_axis": config[suite]["corpus"]["up_axis"],
    }


def run_settings(suite: str, protocol: str, listing: tuple[str, ...] = ("variants", "seeds")) -> dict:
    """How a run trains or fits (not which runs exist): changing the run lists reruns nothing."""
    return {k: v for k, v in config[suite]["downstream"][protocol].items() if k not in listing}


def source_checkpoint(backbone: str):
    """Input function: the Pic@Point checkpoint a run starts from (none from scratch)."""

    def inputs(wildcards) -> list[str]:
        if wildcards.source == "scratch":
            return []
        return [f"results/pretrain/{wildcards.suite}/{backbone}/{wildcards.source}/seed{wildcards.seed}/checkpoint.pt"]

    return inputs


def source_arguments(backbone: str):
    """Params function: --checkpoint, or --random with the architecture pre-training trains."""

    def arguments(wildcards, input) -> str:
        if wildcards.source == "scratch":
            return f"--random {as_json(random_spec(wildcards.suite, backbone))}"
        return f"--checkpoint {shlex.quote(input.checkpoint[0])}"

    return arguments


def imported_targets(suite: str, protocol: str, benchmarks) -> list[str]:
    """The runs of ``protocol`` on ``benchmarks`` of every import that it scores, seed by seed."""
    imports = imported_checkpoints(config[suite])
    return [
        f"results/downstream/{suite}/{protocol}/{benchmark}/{imports[name]['backbone']}_{IMPORTED_PREFIX}{name}/"
        f"seed{seed}.json"
        for name in imports if protocol in imported_protocols(config[suite], name)
        for benchmark in benchmarks
        for seed in imported_seeds(suite, name)
    ]


def svm_targets(suite: str) -> list[str]:
    svm = config[suite]["downstream"]["svm"]
    return [
        f"results/downstream/{suite}/svm/{benchmark}/{svm['backbone']}_{source}/seed{seed}.json"
        for benchmark, variants in svm["benchmarks"].items()
        for seed in config[suite]["pretrain"]["seeds"]
        for source in ["random", *variants]
    ] + imported_targets(suite, "svm", svm["benchmarks"])


def finetune_targets(suite: str) -> list[str]:
    if "finetune" not in config[suite]["downstream"]:  # a suite without Table 2 (evidence)
        return []
    finetune = config[suite]["downstream"]["finetune"]
    return expand(
        "results/downstream/{suite}/finetune/{benchmark}/pointnext_{source}/seed{seed}.json",
        suite=suite,
        benchmark=finetune["benchmarks"],
        source=["scratch", "full"],
        seed=finetune["seeds"],
    )


def partseg_targets(suite: str) -> list[str]:
    if "partseg" not in config[suite]["downstream"]:  # a suite without this table (evidence)
        return []
    partseg = config[suite]["downstream"]["partseg"]
    return expand(
        "results/downstream/{suite}/partseg/shapenetpart/dgcnn_{source}/seed{seed}.json",
        suite=suite,
        source=["scratch", *partseg["variants"]],
        seed=partseg["seeds"],
    )


def semseg_targets(suite: str) -> list[str]:
    if "semseg" not in config[suite]["downstream"]:  # a suite without this table (evidence)
        return []
    semseg = config[suite]["downstream"]["semseg"]
    return expand(
        "results/downstream/{suite}/semseg/s3dis/pointnext_{source}/seed{seed}.json",
        suite=suite,
        source=["scratch", *semseg["variants"]],
        seed=semseg["seeds"],
    )


def fewshot_targets(suite: str) -> list[str]:
    """The few-shot probe (picat-only): every pre-training run, and each backbone at random init with
    the pre-training seeds (as the svm protocol's random baseline), on each fewshot benchmark. The
    `normals` variant reads xyz + normals, so it runs only on benchmarks whose spec has `normals: true`."""
    pretrain = config[suite]["pretrain"]
    sources = [(backbone, variant, seed) for backbone, variant, seed in pretrain_runs(pretrain)]
    sources += [(backbone, "random", seed) for backbone in pretrain["runs"] for seed in pretrain["seeds"]]
    benchmarks = config[suite]["downstream"]["fewshot"]["benchmarks"]
    return [
        f"results/downstream/{suite}/fewshot/{benchmark}/{backbone}_{source}/seed{seed}.json"
        for benchmark in benchmarks
        for backbone, source, seed in sources
        if source != "normals" or dataset_spec(suite, benchmark).get("normals")
    ] + imported_targets(suite, "fewshot", benchmarks)


# One frozen-feature file per (benchmark, backbone, variant or random init, seed): the features
# rule writes it, the svm and fewshot rules read it.
FROZEN_FEATURES = "results/frozen_features/{suite}/{benchmark}/{backbone}_{source}/seed{seed}.npz"


def frozen_features(source: str) -> str:
    """The features file a frozen-feature run reads; ``source`` is "random" or a wildcard ("{variant}")."""
    return FROZEN_FEATURES.replace("{source}", source)


def feature_settings(suite: str) -> dict:
    """How the features are extracted: the keys the svm and fewshot blocks share (and must agree on)."""
    return {key: config[suite]["downstream"]["svm"][key] for key in SHARED_FEATURE_KEYS}


def imported_spec(wildcards) -> dict:
    """The config entry of the import a run's source names ("imported-<name>"), checked against its backbone."""
    name = wildcards.source.removeprefix(IMPORTED_PREFIX)
    imports = imported_checkpoints(config[wildcards.suite])
    if name not in imports:
        raise WorkflowError(f"{wildcards.source}: config key '{wildcards.suite}.imported' has no entry {name!r} "
                            f"(it has: {', '.join(imports) or 'none'})")
    if imports[name]["backbone"] != wildcards.backbone:
        raise WorkflowError(f"{wildcards.backbone}_{wildcards.source}: config key '{wildcards.suite}.imported.{name}"
                            f".backbone' is {imports[name]['backbone']!r}")
    return imports[name]


def frozen_checkpoint(wildcards) -> list[str]:
    """Input function: the checkpoint a features job reads (none at random init; an import's own file)."""
    if wildcards.source == "random":
        return []
    if wildcards.source.startswith(IMPORTED_PREFIX):
        return [imported_spec(wildcards)["checkpoint"]]
    return [
        f"results/pretrain/{wildcards.suite}/{wildcards.backbone}/{wildcards.source}/seed{wildcards.seed}/checkpoint.pt"
    ]


def frozen_backbone_arguments(wildcards, input) -> str:
    """Params function: --checkpoint (an import's with --imported NAME, so that its records say
    init "imported"), or --random with the architecture pre-training trains."""
    if wildcards.source == "random":
        return f"--random {as_json(random_spec(wildcards.suite, wildcards.backbone))}"
    if wildcards.source.startswith(IMPORTED_PREFIX):
        name = wildcards.source.removeprefix(IMPORTED_PREFIX)
        return f"--checkpoint {shlex.quote(input.checkpoint[0])} --imported {shlex.quote(name)}"
    return f"--checkpoint {shlex.quote(input.checkpoint[0])}"


check_imported_checkpoints()  # needs dataset_spec (above)


def downstream_results(suite: str) -> list[str]:
    return (svm_targets(suite) + fewshot_targets(suite) + finetune_targets(suite) + partseg_targets(suite)
            + semseg_targets(suite))


# --- report ---------------------------------------------------------------------------------


def figure4_checkpoint(wildcards) -> str:
    figure4 = config[SUITE]["figure4"]
    return f"results/pretrain/{SUITE}/{wildcards.backbone}/{figure4['variant']}/seed{figure4['seed']}/checkpoint.pt"


def correspondence_result(suite: str, backbone: str, variant: str, seed) -> str:
    return f"results/correspondence/{suite}/{backbone}_{variant}/seed{seed}.json"


def correspondence_targets(suite: str) -> list[str]:
    """The correspondence metric (picat-only) of every pre-training run of a listed variant."""
    wanted = config[suite]["correspondence"]["variants"]
    return [correspondence_result(suite, backbone, variant, seed)
            for backbone, variant, seed in pretrain_runs(config[suite]["pretrain"]) if variant in wanted]


def figure4_correspondence(wildcards) -> str:
    """The correspondence result of Figure 4's checkpoint (its summary quotes the headline)."""
    figure4 = config[SUITE]["figure4"]
    return correspondence_result(SUITE, wildcards.backbone, figure4["variant"], figure4["seed"])


def figure4_summaries(suite: str) -> list[str]:
    return [f"results/figures/figure4_{backbone}.json" for backbone in config[suite]["figure4"]["backbones"]]


def final_targets(wildcards) -> list[str]:
    """Everything the selected suite makes: its shards, pre-training runs, the tables and both figures."""
    figures = [f"results/figures/figure4_{backbone}.png" for backbone in config[SUITE]["figure4"]["backbones"]]
    return [
        f"results/shards/{SUITE}/index.json",
        *suite_shard_files(wildcards),
        *pretrain_targets(SUITE),
        "results/tables.csv",
        "results/figures/figure2.png",
        *figures,
    ]
