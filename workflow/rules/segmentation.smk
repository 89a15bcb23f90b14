# Downstream segmentation (Tables 4-5): the demo suite's part and room stand-ins, the one-off
# S3DIS conversion, DGCNN part segmentation and PointNeXt-S scene segmentation, per seed.


from types import SimpleNamespace


SEG_STANDINS_DIR = "results/seg_datasets/{suite}"
S3DIS_ROOMS_DIR = "results/s3dis/{suite}/rooms"


def seg_dataset_input(wildcards) -> list[str]:
    """The segmentation stand-ins for a suite that builds them (demo); nothing for real datasets."""
    return [SEG_STANDINS_DIR.format(suite=wildcards.suite)] if "seg_standins" in config[wildcards.suite] else []


def segmentation_source(backbone: str):
    """Input function: the Pic@Point checkpoint a run starts from (none from scratch)."""

    def inputs(wildcards) -> list[str]:
        if wildcards.source == "scratch":
            return []
        return [f"results/pretrain/{wildcards.suite}/{backbone}/{wildcards.source}/seed{wildcards.seed}/checkpoint.pt"]

    return inputs


def segmentation_backbone_args(backbone: str):
    """Params function: --checkpoint, or --random with the architecture pre-training trains."""

    def args(wildcards, input) -> str:
        if wildcards.source == "scratch":
            return "--random " + as_json(random_spec(wildcards.suite, backbone))
        return f"--checkpoint {shlex.quote(input.checkpoint[0])}"

    return args


def run_settings(suite: str, protocol: str) -> dict:
    """How a run trains (not which runs exist): changing the variant or seed lists reruns nothing."""
    return {k: v for k, v in config[suite]["downstream"][protocol].items() if k not in ("variants", "seeds")}


def partseg_targets(suite: str) -> list[str]:
    partseg = config[suite]["downstream"]["partseg"]
    return expand("results/downstream/{suite}/partseg/shapenetpart/dgcnn_{source}/seed{seed}.json",
                  suite=suite, source=["scratch", *partseg["variants"]], seed=partseg["seeds"])


def semseg_targets(suite: str) -> list[str]:
    semseg = config[suite]["downstream"]["semseg"]
    return expand("results/downstream/{suite}/semseg/s3dis/pointnext_{source}/seed{seed}.json",
                  suite=suite, source=["scratch", *semseg["variants"]], seed=semseg["seeds"])


def s3dis_rooms_input(wildcards) -> str:
    """Converted rooms: made by the s3dis_convert rule from the raw layout, or given as .npy files."""
    spec = dataset_spec(wildcards.suite, "s3dis")
    return S3DIS_ROOMS_DIR.format(suite=wildcards.suite) if spec["format"] == "s3dis_raw" else spec["root"]


SEG_DATASET_SOURCES = {
    "shapenetpart": "ShapeNetPart's shapenetcore_partanno_segmentation_benchmark_v0_normal (or shapenet_part_seg_hdf5_data)",
    "s3dis": "S3DIS's Stanford3dDataset_v1.2_Aligned_Version (format s3dis_raw) or its converted Area_<k>_<room>.npy "
             "files (format s3dis_npy), from its authors after agreeing to their terms",
}


# As for classification: a missing real dataset stops the run before any job starts.
if "seg_standins" not in SETTINGS:
    for _benchmark in ("shapenetpart", "s3dis"):
        _root = Path(SETTINGS["downstream"]["datasets"][_benchmark]["root"])
        if not _root.is_dir():
            raise WorkflowError(
                f"config key '{SUITE}.downstream.datasets.{_benchmark}.root': the folder {str(_root)!r} does not exist; "
                f"expected {SEG_DATASET_SOURCES[_benchmark]} (layouts: README, 'Real data')"
            )


rule seg_standins:
    output:
        directory(SEG_STANDINS_DIR),
    log:
        "results/logs/{suite}/seg_standins.log",
    benchmark:
        "results/benchmarks/{suite}/seg_standins.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    conda:
        "../../envs/picat.yaml"
    params:
        settings=lambda w: as_json(config[w.suite]["seg_standins"]),
    shell:
        "{PICAT} seg-standins --settings {params.settings} --out {output:q} > {log:q} 2>&1"


rule s3dis_convert:
    input:
        seg_dataset_input,
    output:
        directory(S3DIS_ROOMS_DIR),
    log:
        "results/logs/{suite}/s3dis_convert.log",
    benchmark:
        "results/benchmarks/{suite}/s3dis_convert.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=lambda w: 10 if w.suite == "demo" else 120,
    conda:
        "../../envs/picat.yaml"
    params:
        raw=lambda w: dataset_spec(w.suite, "s3dis")["root"],
    shell:
        "{PICAT} s3dis-convert --raw {params.raw:q} --out {output:q} > {log:q} 2>&1"


rule partseg:
    input:
        checkpoint=segmentation_source("dgcnn"),
        datasets=seg_dataset_input,
    output:
        "results/downstream/{suite}/partseg/shapenetpart/dgcnn_{source}/seed{seed}.json",
    log:
        "results/logs/{suite}/partseg/shapenetpart_dgcnn_{source}_seed{seed}.log",
    benchmark:
        "results/benchmarks/{suite}/partseg/shapenetpart_dgcnn_{source}_seed{seed}.tsv"
    wildcard_constraints:
        source="scratch|full|no_local|no_global|no_pose",
    threads: lambda w: 2 if w.suite == "demo" else 8
    resources:
        mem_mb=lambda w: 8000 if w.suite == "demo" else 16000,
        runtime=lambda w: 60 if w.suite == "demo" else 24 * 60,
        gpu=lambda w: config[w.suite]["pretrain"]["gpus"],
    conda:
        "../../envs/picat.yaml"
    params:
        dataset=lambda w: as_json(dataset_spec(w.suite, "shapenetpart")),
        settings=lambda w: as_json(run_settings(w.suite, "partseg")),
        backbone=segmentation_backbone_args("dgcnn"),
    shell:
        "{PICAT} partseg --dataset {params.dataset} --settings {params.settings} {params.backbone} "
        "--seed {wildcards.seed} --suite {wildcards.suite} --out {output:q} --threads {threads} > {log:q} 2>&1"


rule semseg:
    input:
        checkpoint=segmentation_source("pointnext"),
        rooms=s3dis_rooms_input,
    output:
        "results/downstream/{suite}/semseg/s3dis/pointnext_{source}/seed{seed}.json",
    log:
        "results/logs/{suite}/semseg/s3dis_pointnext_{source}_seed{seed}.log",
    benchmark:
        "results/benchmarks/{suite}/semseg/s3dis_pointnext_{source}_seed{seed}.tsv"
    wildcard_constraints:
        source="scratch|full|no_local|no_global|no_pose",
    threads: lambda w: 2 if w.suite == "demo" else 8
    resources:
        mem_mb=lambda w: 6000 if w.suite == "demo" else 32000,
        runtime=lambda w: 60 if w.suite == "demo" else 24 * 60,
        gpu=lambda w: config[w.suite]["pretrain"]["gpus"],
    conda:
        "../../envs/picat.yaml"
    params:
        settings=lambda w: as_json(run_settings(w.suite, "semseg")),
        backbone=segmentation_backbone_args("pointnext"),
    shell:
        "{PICAT} semseg --rooms {input.rooms:q} --settings {params.settings} {params.backbone} "
        "--seed {wildcards.seed} --suite {wildcards.suite} --out {output:q} --threads {threads} > {log:q} 2>&1"


def figure4_targets(suite: str) -> list[str]:
    figure4 = config[suite]["figure4"]
    return [f"results/figures/figure4_{backbone}.png" for backbone in figure4["backbones"]]


rule figure4:
    input:
        checkpoint=lambda w: f"results/pretrain/{SUITE}/{w.backbone}/{config[SUITE]['figure4']['variant']}/"
                             f"seed{config[SUITE]['figure4']['seed']}/checkpoint.pt",
        shards=lambda w: shard_files(SimpleNamespace(suite=SUITE)),
        features=lambda w: feature_files(SimpleNamespace(suite=SUITE)),
    output:
        png=report("results/figures/figure4_{backbone}.png", caption="../report/figure4.rst", category="Figures",
                   labels={"figure": "Figure 4", "backbone": "{backbone}"}),
        summary="results/figures/figure4_{backbone}.json",
    log:
        "results/logs/figure4_{backbone}.log",
    benchmark:
        "results/benchmarks/figure4_{backbone}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=20,
    conda:
        "../../envs/picat.yaml"
    params:
        n_objects=lambda w: config[SUITE]["figure4"]["n_objects"],
        seed=lambda w: config[SUITE]["figure4"]["seed"],
    shell:
        "{PICAT} figure4 --checkpoint {input.checkpoint:q} --shards {input.shards:q} --features {input.features:q} "
        "--n-objects {params.n_objects} --seed {params.seed} --out {output.png:q} --summary {output.summary:q} "
        "> {log:q} 2>&1"
