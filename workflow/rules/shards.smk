# The data half of the DAG: corpus listing -> render (BlenderProc) -> sample & pack (HDF5).


checkpoint corpus:
    output:
        directory("results/corpus/{suite}"),
    log:
        "results/logs/{suite}/corpus.log",
    benchmark:
        "results/benchmarks/{suite}/corpus.tsv"
    threads: 1
    resources:
        mem_mb=lambda w: 2000 if w.suite in LAPTOP_SUITES else 4000,
        runtime=60,
    conda:
        "../../envs/picat.yaml"
    params:
        corpus=lambda w: corpus_settings(w.suite),
        objects_per_shard=lambda w: config[w.suite]["shards"]["objects_per_shard"],
    shell:
        "python -m picat corpus --settings {params.corpus} --objects-per-shard {params.objects_per_shard} "
        "--out {output:q} > {log:q} 2>&1"


# Held-out objects (heldout_NNNNN manifests): rendered, packed and encoded as the training shards,
# never read by pre-training; the correspondence metric and Figure 4 evaluate on them.
checkpoint heldout_corpus:
    output:
        directory("results/heldout_corpus/{suite}"),
    log:
        "results/logs/{suite}/heldout_corpus.log",
    benchmark:
        "results/benchmarks/{suite}/heldout_corpus.tsv"
    threads: 1
    resources:
        mem_mb=lambda w: 2000 if w.suite in LAPTOP_SUITES else 4000,
        runtime=60,
    conda:
        "../../envs/picat.yaml"
    params:
        corpus=lambda w: as_json(config[w.suite]["corpus"]),
        objects_per_shard=lambda w: config[w.suite]["shards"]["objects_per_shard"],
    shell:
        "python -m picat corpus --heldout --settings {params.corpus} --objects-per-shard {params.objects_per_shard} "
        "--out {output:q} > {log:q} 2>&1"


rule render:
    input:
        manifest=manifest_file,
        env=RENDER_ENV_STAMP,
    output:
        "results/renders/{suite}/{shard}.h5",
    log:
        "results/logs/{suite}/render/{shard}.log",
    benchmark:
        "results/benchmarks/{suite}/render/{shard}.tsv"
    threads: lambda w: config[w.suite]["render"]["threads"]
    resources:
        # Blender renders one object at a time into the HDF5 file; a little per object on top.
        mem_mb=lambda w: 6000 + 4 * config[w.suite]["shards"]["objects_per_shard"],
        # 20 views per object at 3 s (Cycles) or 0.5 s (Workbench) a view, with margin,
        # plus Blender's start-up: paper 515 min for 500 objects, demo 21 min for 40.
        runtime=lambda w: 15 + config[w.suite]["shards"]["objects_per_shard"] * 20
        * (6 if config[w.suite]["render"]["engine"] == "cycles" else 1) // 120,
    conda:
        "../../envs/picat.yaml"
    params:
        render=lambda w: as_json(config[w.suite]["render"]),
        up_axis=lambda w: config[w.suite]["corpus"]["up_axis"],
        env_dir=lambda w, input: Path(input.env).parent,
    shell:
        "python -m picat render --manifest {input.manifest:q} --out {output:q} --env {params.env_dir:q} "
        "--settings {params.render} --up-axis {params.up_axis} > {log:q} 2>&1"


rule pack:
    input:
        manifest=manifest_file,
        renders="results/renders/{suite}/{shard}.h5",
    output:
        "results/shards/{suite}/{shard}.h5",
    log:
        "results/logs/{suite}/pack/{shard}.log",
    benchmark:
        "results/benchmarks/{suite}/pack/{shard}.tsv"
    threads: 1
    resources:
        # Packs object by object; margin for the per-object arrays and HDF5 chunk caches.
        mem_mb=lambda w: 2000 + 8 * config[w.suite]["shards"]["objects_per_shard"],
        runtime=lambda w: 30 if w.suite in LAPTOP_SUITES else 120,
    conda:
        "../../envs/picat.yaml"
    params:
        n_points=lambda w: config[w.suite]["sampling"]["n_points"],
        seed=lambda w: config[w.suite]["sampling"]["seed"],
    shell:
        "python -m picat pack --manifest {input.manifest:q} --renders {input.renders:q} --out {output:q} "
        "--n-points {params.n_points} --seed {params.seed} --suite {wildcards.suite} > {log:q} 2>&1"


rule shard_index:
    input:
        shard_files,
    output:
        "results/shards/{suite}/index.json",
    log:
        "results/logs/{suite}/shard_index.log",
    benchmark:
        "results/benchmarks/{suite}/shard_index.tsv"
    threads: 1
    resources:
        mem_mb=lambda w: 1000 if w.suite in LAPTOP_SUITES else 4000,
        runtime=lambda w: 10 if w.suite in LAPTOP_SUITES else 60,
    conda:
        "../../envs/picat.yaml"
    shell:
        "python -m picat index --out {output:q} {input:q} > {log:q} 2>&1"


# Target: every shard of the selected suite (`snakemake --cores 2 shards`), held-out ones included.
rule shards:
    input:
        f"results/shards/{SUITE}/index.json",
        # The shard files too, so that a deleted shard is rebuilt (and only what reads it reruns).
        suite_shard_files,
        heldout_shard_files,
    default_target: False
