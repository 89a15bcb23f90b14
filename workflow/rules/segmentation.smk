# Downstream segmentation (Tables 4-5): the demo suite's part and room stand-ins, the one-off
# S3DIS conversion, DGCNN part segmentation and PointNeXt-S scene segmentation, per seed.


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
        "python -m picat seg-standins --settings {params.settings} --out {output:q} > {log:q} 2>&1"


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
        runtime=lambda w: 10 if w.suite in LAPTOP_SUITES else 120,
    conda:
        "../../envs/picat.yaml"
    params:
        raw=lambda w: dataset_spec(w.suite, "s3dis")["root"],
    shell:
        "python -m picat s3dis-convert --raw {params.raw:q} --out {output:q} > {log:q} 2>&1"


rule partseg:
    input:
        checkpoint=source_checkpoint("dgcnn"),
        datasets=seg_dataset_input,
    output:
        "results/downstream/{suite}/partseg/shapenetpart/dgcnn_{source}/seed{seed}.json",
    log:
        "results/logs/{suite}/partseg/shapenetpart_dgcnn_{source}_seed{seed}.log",
    benchmark:
        "results/benchmarks/{suite}/partseg/shapenetpart_dgcnn_{source}_seed{seed}.tsv"
    wildcard_constraints:
        source="scratch|full|no_local|no_global|no_pose",
    threads: lambda w: job_threads(w.suite)
    resources:
        mem_mb=lambda w: 8000 if w.suite in LAPTOP_SUITES else 16000,
        runtime=lambda w: 60 if w.suite in LAPTOP_SUITES else 24 * 60,
        gpu=lambda w: config[w.suite]["pretrain"]["gpus"],
    conda:
        "../../envs/picat.yaml"
    params:
        dataset=lambda w: as_json(dataset_spec(w.suite, "shapenetpart")),
        settings=lambda w: as_json(run_settings(w.suite, "partseg")),
        backbone=source_arguments("dgcnn"),
        amp=lambda w: config[w.suite]["amp"],
        logging=lambda w: as_json(config[w.suite].get("logging", {})),
    shell:
        "python -m picat partseg --dataset {params.dataset} --settings {params.settings} {params.backbone} "
        "--seed {wildcards.seed} --suite {wildcards.suite} --out {output:q} --amp {params.amp} "
        "--logging {params.logging} --threads {threads} > {log:q} 2>&1"


rule semseg:
    input:
        checkpoint=source_checkpoint("pointnext"),
        rooms=s3dis_rooms_input,
    output:
        "results/downstream/{suite}/semseg/s3dis/pointnext_{source}/seed{seed}.json",
    log:
        "results/logs/{suite}/semseg/s3dis_pointnext_{source}_seed{seed}.log",
    benchmark:
        "results/benchmarks/{suite}/semseg/s3dis_pointnext_{source}_seed{seed}.tsv"
    wildcard_constraints:
        source="scratch|full|no_local|no_global|no_pose",
    threads: lambda w: job_threads(w.suite)
    resources:
        mem_mb=lambda w: 6000 if w.suite in LAPTOP_SUITES else 32000,
        runtime=lambda w: 60 if w.suite in LAPTOP_SUITES else 24 * 60,
        gpu=lambda w: config[w.suite]["pretrain"]["gpus"],
    conda:
        "../../envs/picat.yaml"
    params:
        settings=lambda w: as_json(run_settings(w.suite, "semseg")),
        backbone=source_arguments("pointnext"),
        amp=lambda w: config[w.suite]["amp"],
        logging=lambda w: as_json(config[w.suite].get("logging", {})),
    shell:
        "python -m picat semseg --rooms {input.rooms:q} --settings {params.settings} {params.backbone} "
        "--seed {wildcards.seed} --suite {wildcards.suite} --out {output:q} --amp {params.amp} "
        "--logging {params.logging} --threads {threads} > {log:q} 2>&1"
