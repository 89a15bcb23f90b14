# The data half of the DAG: corpus listing -> render (BlenderProc) -> sample & pack (HDF5).
from pathlib import Path


checkpoint corpus:
    output:
        directory("results/corpus/{suite}"),
    log:
        "results/logs/{suite}/corpus.log",
    benchmark:
        "results/benchmarks/{suite}/corpus.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        corpus=lambda w: as_json(config[w.suite]["corpus"]),
        objects_per_shard=lambda w: config[w.suite]["shards"]["objects_per_shard"],
    shell:
        "{PICAT} corpus --settings {params.corpus} --objects-per-shard {params.objects_per_shard} "
        "--out {output:q} > {log:q} 2>&1"


rule render:
    input:
        manifest="results/corpus/{suite}/shards/{shard}.tsv",
        env=RENDER_ENV_STAMP,
    output:
        "results/renders/{suite}/{shard}.h5",
    log:
        "results/logs/{suite}/render/{shard}.log",
    benchmark:
        "results/benchmarks/{suite}/render/{shard}.tsv"
    threads: lambda w: config[w.suite]["render"]["threads"]
    resources:
        mem_mb=6000,
        runtime=lambda w: 240 if config[w.suite]["render"]["engine"] == "cycles" else 60,
    params:
        render=lambda w: as_json(config[w.suite]["render"]),
        up_axis=lambda w: config[w.suite]["corpus"]["up_axis"],
        env_dir=RENDER_ENV,
    shell:
        "{PICAT} render --manifest {input.manifest:q} --out {output:q} --env {params.env_dir:q} "
        "--settings {params.render} --up-axis {params.up_axis} > {log:q} 2>&1"


rule pack:
    input:
        manifest="results/corpus/{suite}/shards/{shard}.tsv",
        renders="results/renders/{suite}/{shard}.h5",
    output:
        "results/shards/{suite}/{shard}.h5",
    log:
        "results/logs/{suite}/pack/{shard}.log",
    benchmark:
        "results/benchmarks/{suite}/pack/{shard}.tsv"
    threads: 1
    resources:
        mem_mb=3000,
        runtime=60,
    params:
        n_points=lambda w: config[w.suite]["sampling"]["n_points"],
        seed=lambda w: config[w.suite]["sampling"]["seed"],
    shell:
        "{PICAT} pack --manifest {input.manifest:q} --renders {input.renders:q} --out {output:q} "
        "--n-points {params.n_points} --seed {params.seed} --suite {wildcards.suite} > {log:q} 2>&1"


rule shard_index:
    input:
        lambda w: expand("results/shards/{suite}/{shard}.h5", suite=w.suite, shard=shard_names(w)),
    output:
        "results/shards/{suite}/index.json",
    log:
        "results/logs/{suite}/shard_index.log",
    benchmark:
        "results/benchmarks/{suite}/shard_index.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "{PICAT} index --out {output:q} {input:q} > {log:q} 2>&1"


# Target: every shard of the selected suite (`snakemake --cores 2 shards`).
rule shards:
    input:
        f"results/shards/{SUITE}/index.json",
    default_target: False
