# Downstream classification (Tables 1-3): the demo suite's stand-in datasets, linear SVMs on
# frozen features, and PointNeXt-S fine-tuning, fanned out over pre-training seeds.


wildcard_constraints:
    benchmark="modelnet40|scanobjectnn_obj_bg|scanobjectnn_obj_only|scanobjectnn_pb_t50_rs",


STANDINS_DIR = "results/datasets/{suite}"


def dataset_spec(suite: str, benchmark: str) -> dict:
    return config[suite]["downstream"]["datasets"][benchmark]


def dataset_input(wildcards) -> list[str]:
    """The stand-in datasets for a suite that builds them (demo); nothing for real datasets."""
    return [STANDINS_DIR.format(suite=wildcards.suite)] if "standins" in config[wildcards.suite] else []


def random_spec(suite: str, backbone: str) -> dict:
    """Random-init baselines use the architecture that pre-training trains."""
    return {"backbone": backbone, "options": config[suite]["pretrain"][backbone],
            "up_axis": config[suite]["corpus"]["up_axis"]}


def svm_settings(suite: str) -> dict:
    """How an SVM run fits (not which runs exist): changing the benchmark lists reruns nothing."""
    return {k: v for k, v in config[suite]["downstream"]["svm"].items() if k not in ("backbone", "benchmarks")}


def svm_targets(suite: str) -> list[str]:
    svm = config[suite]["downstream"]["svm"]
    targets = []
    for benchmark, variants in svm["benchmarks"].items():
        for seed in config[suite]["pretrain"]["seeds"]:
            for source in ["random", *variants]:
                targets.append(f"results/downstream/{suite}/svm/{benchmark}/{svm['backbone']}_{source}/seed{seed}.json")
    return targets


def finetune_targets(suite: str) -> list[str]:
    finetune = config[suite]["downstream"]["finetune"]
    return expand("results/downstream/{suite}/finetune/{benchmark}/pointnext_{source}/seed{seed}.json",
                  suite=suite, benchmark=finetune["benchmarks"], source=["scratch", "full"], seed=finetune["seeds"])


DATASET_SOURCES = {
    "modelnet40": "ModelNet40 as the PointNet authors' modelnet40_ply_hdf5_2048 (or modelnet40_normal_resampled, "
                  "or the Princeton OFF meshes)",
    "scanobjectnn": "ScanObjectNN's h5_files folder, from its authors after agreeing to their terms of use",
}


# A missing real dataset stops the run before any job starts, naming the path and the source.
if "standins" not in SETTINGS:
    _used = set(SETTINGS["downstream"]["svm"]["benchmarks"]) | set(SETTINGS["downstream"]["finetune"]["benchmarks"])
    for _benchmark in sorted(_used):
        _root = Path(SETTINGS["downstream"]["datasets"][_benchmark]["root"])
        if not _root.is_dir():
            raise WorkflowError(
                f"config key '{SUITE}.downstream.datasets.{_benchmark}.root': the folder {str(_root)!r} does not exist; "
                f"expected {DATASET_SOURCES[_benchmark.split('_')[0]]} (layouts: README, 'Real data')"
            )


rule standins:
    output:
        directory(STANDINS_DIR),
    log:
        "results/logs/{suite}/standins.log",
    benchmark:
        "results/benchmarks/{suite}/standins.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/picat.yaml"
    params:
        settings=lambda w: as_json(config[w.suite]["standins"]),
    shell:
        "{PICAT} standins --settings {params.settings} --out {output:q} > {log:q} 2>&1"


rule svm_pretrained:
    input:
        checkpoint="results/pretrain/{suite}/{backbone}/{variant}/seed{seed}/checkpoint.pt",
        datasets=dataset_input,
    output:
        "results/downstream/{suite}/svm/{benchmark}/{backbone}_{variant}/seed{seed}.json",
    log:
        "results/logs/{suite}/svm/{benchmark}_{backbone}_{variant}_seed{seed}.log",
    benchmark:
        "results/benchmarks/{suite}/svm/{benchmark}_{backbone}_{variant}_seed{seed}.tsv"
    threads: lambda w: 2 if w.suite == "demo" else 8
    resources:
        mem_mb=lambda w: 6000 if w.suite == "demo" else 16000,
        runtime=lambda w: 30 if w.suite == "demo" else 180,
    conda:
        "../../envs/picat.yaml"
    params:
        dataset=lambda w: as_json(dataset_spec(w.suite, w.benchmark)),
        settings=lambda w: as_json(svm_settings(w.suite)),
    shell:
        "{PICAT} svm --benchmark {wildcards.benchmark} --dataset {params.dataset} --settings {params.settings} "
        "--checkpoint {input.checkpoint:q} --seed {wildcards.seed} --suite {wildcards.suite} --out {output:q} "
        "--threads {threads} > {log:q} 2>&1"


rule svm_random:
    input:
        datasets=dataset_input,
    output:
        "results/downstream/{suite}/svm/{benchmark}/{backbone}_random/seed{seed}.json",
    log:
        "results/logs/{suite}/svm/{benchmark}_{backbone}_random_seed{seed}.log",
    benchmark:
        "results/benchmarks/{suite}/svm/{benchmark}_{backbone}_random_seed{seed}.tsv"
    threads: lambda w: 2 if w.suite == "demo" else 8
    resources:
        mem_mb=lambda w: 6000 if w.suite == "demo" else 16000,
        runtime=lambda w: 30 if w.suite == "demo" else 180,
    conda:
        "../../envs/picat.yaml"
    params:
        dataset=lambda w: as_json(dataset_spec(w.suite, w.benchmark)),
        settings=lambda w: as_json(svm_settings(w.suite)),
        random=lambda w: as_json(random_spec(w.suite, w.backbone)),
    shell:
        "{PICAT} svm --benchmark {wildcards.benchmark} --dataset {params.dataset} --settings {params.settings} "
        "--random {params.random} --seed {wildcards.seed} --suite {wildcards.suite} --out {output:q} "
        "--threads {threads} > {log:q} 2>&1"


def finetune_source(wildcards) -> list[str]:
    if wildcards.source == "scratch":
        return []
    return [f"results/pretrain/{wildcards.suite}/pointnext/{wildcards.source}/seed{wildcards.seed}/checkpoint.pt"]


def finetune_backbone_args(wildcards, input) -> str:
    if wildcards.source == "scratch":
        return "--random " + as_json(random_spec(wildcards.suite, "pointnext"))
    return f"--checkpoint {shlex.quote(input.checkpoint[0])}"


rule finetune:
    input:
        checkpoint=finetune_source,
        datasets=dataset_input,
    output:
        "results/downstream/{suite}/finetune/{benchmark}/pointnext_{source}/seed{seed}.json",
    log:
        "results/logs/{suite}/finetune/{benchmark}_pointnext_{source}_seed{seed}.log",
    benchmark:
        "results/benchmarks/{suite}/finetune/{benchmark}_pointnext_{source}_seed{seed}.tsv"
    wildcard_constraints:
        source="scratch|full|no_local|no_global|no_pose",
    threads: lambda w: 2 if w.suite == "demo" else 8
    resources:
        mem_mb=lambda w: 8000 if w.suite == "demo" else 16000,
        runtime=lambda w: 60 if w.suite == "demo" else 12 * 60,
        gpu=lambda w: config[w.suite]["pretrain"]["gpus"],
    conda:
        "../../envs/picat.yaml"
    params:
        dataset=lambda w: as_json(dataset_spec(w.suite, w.benchmark)),
        settings=lambda w: as_json({k: v for k, v in config[w.suite]["downstream"]["finetune"].items()
                                    if k not in ("benchmarks", "seeds")}),
        backbone=finetune_backbone_args,
    shell:
        "{PICAT} finetune --benchmark {wildcards.benchmark} --dataset {params.dataset} --settings {params.settings} "
        "{params.backbone} --seed {wildcards.seed} --suite {wildcards.suite} --out {output:q} "
        "--threads {threads} > {log:q} 2>&1"
