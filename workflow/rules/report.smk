# Collation: every downstream record -> results/tables.csv (long form), results/tables/*.csv
# (shaped like the paper's, plus Figure 4's exemplar ranks) and Figures 2 and 4. All of them
# are marked for `snakemake --report results/report.html` (captions: workflow/report/).


# The correspondence metric (picat-only): one job per checkpoint with the local heads, on the
# held-out objects (picat/report/correspondence.py).
rule correspondence:
    input:
        checkpoint="results/pretrain/{suite}/{backbone}/{variant}/seed{seed}/checkpoint.pt",
        shards=heldout_shard_files,
        features=heldout_feature_files,
    output:
        "results/correspondence/{suite}/{backbone}_{variant}/seed{seed}.json",
    log:
        "results/logs/{suite}/correspondence/{backbone}_{variant}_seed{seed}.log",
    benchmark:
        "results/benchmarks/{suite}/correspondence/{backbone}_{variant}_seed{seed}.tsv"
    threads: 1
    resources:
        mem_mb=lambda w: 4000 if w.suite in LAPTOP_SUITES else 16000,
        runtime=lambda w: 20 if w.suite in LAPTOP_SUITES else 120,
    conda:
        "../../envs/picat.yaml"
    params:
        batch_size=lambda w: config[w.suite]["correspondence"]["batch_size"],
        seed=lambda w: config[w.suite]["correspondence"]["seed"],
    shell:
        "python -m picat correspondence --checkpoint {input.checkpoint:q} --shards {input.shards:q} "
        "--features {input.features:q} --batch-size {params.batch_size} --seed {params.seed} --threads {threads} "
        "--out {output:q} > {log:q} 2>&1"


rule figure4:
    input:
        checkpoint=figure4_checkpoint,
        shards=heldout_shard_files,
        features=heldout_feature_files,
        correspondence=figure4_correspondence,
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
        "python -m picat figure4 --checkpoint {input.checkpoint:q} --shards {input.shards:q} --features {input.features:q} "
        "--n-objects {params.n_objects} --seed {params.seed} --out {output.png:q} --summary {output.summary:q} "
        "--correspondence {input.correspondence:q} > {log:q} 2>&1"


rule tables:
    input:
        results=downstream_results(SUITE),
        figure4=figure4_summaries(SUITE),
        correspondence=correspondence_targets(SUITE),
    # report(...) puts the tables and Figure 2 into `snakemake --report results/report.html`.
    output:
        long=report("results/tables.csv", caption="../report/tables_long.rst", category="Tables",
                    labels={"table": "all tables (long form)", "file": "tables.csv"}),
        tables=report(directory("results/tables"), patterns=["{name}.csv"], caption="../report/tables.rst",
                      category="Tables", labels={"table": "{name}", "file": "{name}.csv"}),
        figure2=report("results/figures/figure2.png", caption="../report/figure2.rst", category="Figures",
                       labels={"figure": "Figure 2", "backbone": "all"}),
    log:
        "results/logs/tables.log",
    benchmark:
        "results/benchmarks/tables.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/picat.yaml"
    params:
        paper_suite=as_json({"pretrain": config["paper"]["pretrain"], "image_backbone": config["paper"]["image_backbone"]}),
    shell:
        "python -m picat tables --results {input.results:q} --out {output.long:q} --tables-dir {output.tables:q} "
        "--figure2 {output.figure2:q} --figure4 {input.figure4:q} --correspondence {input.correspondence:q} "
        "--paper-suite {params.paper_suite} > {log:q} 2>&1"
