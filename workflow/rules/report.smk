# Collation: every downstream record -> results/tables.csv (long form), results/tables/table*.csv
# (shaped like the paper's) and Figure 2; Figure 4 (segmentation.smk) is built alongside.
# All of them are marked for `snakemake --report results/report.html` (captions: workflow/report/).


def downstream_results(suite: str) -> list[str]:
    return svm_targets(suite) + finetune_targets(suite) + partseg_targets(suite) + semseg_targets(suite)


rule tables:
    input:
        results=downstream_results(SUITE),
        # Built with the tables so that one target gives every table and figure.
        figure4=figure4_targets(SUITE),
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
    params:
        paper_suite=as_json({"pretrain": config["paper"]["pretrain"], "image_backbone": config["paper"]["image_backbone"]}),
    shell:
        "{PICAT} tables --results {input.results:q} --out {output.long:q} --tables-dir {output.tables:q} "
        "--figure2 {output.figure2:q} --paper-suite {params.paper_suite} > {log:q} 2>&1"
