# Pic@Point pre-training: cache the frozen 2D backbone's features once per shard (encode),
# then one job per (backbone, variant, seed).


rule encode:
    input:
        "results/shards/{suite}/{shard}.h5",
    output:
        "results/features/{suite}/{shard}.h5",
    log:
        "results/logs/{suite}/encode/{shard}.log",
    benchmark:
        "results/benchmarks/{suite}/encode/{shard}.tsv"
    threads: lambda w: job_threads(w.suite)
    resources:
        mem_mb=lambda w: 4000 if w.suite in LAPTOP_SUITES else 12000,
        runtime=lambda w: 60 if w.suite in LAPTOP_SUITES else 180,
        gpu=lambda w: config[w.suite]["encode"]["gpus"],
    conda:
        "../../envs/picat.yaml"
    params:
        image_backbone=lambda w: as_json(config[w.suite]["image_backbone"]),
        batch_size=lambda w: config[w.suite]["encode"]["batch_size"],
        dtype=lambda w: config[w.suite]["encode"]["dtype"],
        amp=lambda w: config[w.suite]["amp"],
    shell:
        "python -m picat encode --shard {input:q} --out {output:q} --image-backbone {params.image_backbone} "
        "--batch-size {params.batch_size} --dtype {params.dtype} --amp {params.amp} --threads {threads} > {log:q} 2>&1"


rule pretrain_run:
    input:
        shards=shard_files,
        features=feature_files,
    output:
        checkpoint="results/pretrain/{suite}/{backbone}/{variant}/seed{seed}/checkpoint.pt",
        history="results/pretrain/{suite}/{backbone}/{variant}/seed{seed}/log.csv",
    log:
        "results/logs/{suite}/pretrain/{backbone}_{variant}_seed{seed}.log",
    benchmark:
        "results/benchmarks/{suite}/pretrain/{backbone}_{variant}_seed{seed}.tsv"
    # pretrain.threads when set (evidence: 1, so that 2 cores run two runs side by side), else the suite's.
    threads: lambda w: config[w.suite]["pretrain"].get("threads", job_threads(w.suite))
    resources:
        # Shards and feature caches are read lazily: a fixed part (model, batches, the 2D
        # heads), 2 GB per data-loader worker, and a few MB per open shard and cache (measured
        # ~1-5 MB by benchmarks/pretrain_memory.py; README "Memory"), budgeted at 8 MB each.
        mem_mb=lambda w, input: 6000 + 2000 * config[w.suite]["pretrain"]["num_workers"] + 8 * len(input.shards),
        runtime=lambda w: 60 if w.suite in LAPTOP_SUITES else 24 * 60,
        gpu=lambda w: config[w.suite]["pretrain"]["gpus"],
    conda:
        "../../envs/picat.yaml"
    params:
        # Only what this run depends on: adding a seed or a variant leaves finished runs alone.
        settings=lambda w: as_json(pretrain_run_settings(config[w.suite]["pretrain"], w.backbone)),
        up_axis=lambda w: config[w.suite]["corpus"]["up_axis"],
        amp=lambda w: config[w.suite]["amp"],
        # Turning W&B on changes this param, so Snakemake would rerun finished runs; README
        # "Training logs" gives the --rerun-triggers that avoids it.
        logging=lambda w: as_json(config[w.suite].get("logging", {})),
    shell:
        "python -m picat pretrain --shards {input.shards:q} --features {input.features:q} --out {output.checkpoint:q} "
        "--backbone {wildcards.backbone} --variant {wildcards.variant} --seed {wildcards.seed} "
        "--settings {params.settings} --up-axis {params.up_axis} --suite {wildcards.suite} "
        "--amp {params.amp} --logging {params.logging} --threads {threads} --nproc {resources.gpu} > {log:q} 2>&1"


# Target: every pre-training run of the selected suite (`snakemake --cores 2 pretrain`).
rule pretrain:
    input:
        pretrain_targets(SUITE),
    default_target: False
