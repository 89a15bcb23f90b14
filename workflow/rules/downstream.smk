# Downstream classification (Tables 1-3): the demo suite's stand-in datasets, frozen features
# (extracted once, read by the linear SVMs and the few-shot probe), and PointNeXt-S
# fine-tuning, fanned out over pre-training seeds.


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
        "python -m picat standins --settings {params.settings} --out {output:q} > {log:q} 2>&1"


# One extraction of a frozen backbone's global features per (benchmark, backbone, variant,
# random init or imported checkpoint, seed), read by both frozen-feature protocols below (svm, fewshot) instead of each
# extracting its own. Its params are the extraction's alone (n_points, batch_size: equal in the
# two blocks, picat.config checks), so changing how a protocol fits reruns only that protocol.
rule features:
    input:
        checkpoint=frozen_checkpoint,
        datasets=dataset_input,
    output:
        FROZEN_FEATURES,
    log:
        "results/logs/{suite}/features/{benchmark}_{backbone}_{source}_seed{seed}.log",
    benchmark:
        "results/benchmarks/{suite}/features/{benchmark}_{backbone}_{source}_seed{seed}.tsv"
    wildcard_constraints:
        source=FROZEN_SOURCES,
    threads: lambda w: job_threads(w.suite)
    resources:
        mem_mb=lambda w: 6000 if w.suite in LAPTOP_SUITES else 16000,
        runtime=lambda w: 30 if w.suite in LAPTOP_SUITES else 180,
    conda:
        "../../envs/picat.yaml"
    params:
        dataset=lambda w: as_json(dataset_spec(w.suite, w.benchmark)),
        settings=lambda w: as_json(feature_settings(w.suite)),
        backbone=frozen_backbone_arguments,
        amp=lambda w: config[w.suite]["amp"],
    shell:
        "python -m picat features --benchmark {wildcards.benchmark} --dataset {params.dataset} "
        "--settings {params.settings} {params.backbone} --seed {wildcards.seed} --suite {wildcards.suite} "
        "--out {output:q} --amp {params.amp} --threads {threads} > {log:q} 2>&1"


rule svm_pretrained:
    input:
        features=frozen_features("{variant}"),
    output:
        "results/downstream/{suite}/svm/{benchmark}/{backbone}_{variant}/seed{seed}.json",
    log:
        "results/logs/{suite}/svm/{benchmark}_{backbone}_{variant}_seed{seed}.log",
    benchmark:
        "results/benchmarks/{suite}/svm/{benchmark}_{backbone}_{variant}_seed{seed}.tsv"
    threads: lambda w: job_threads(w.suite)
    resources:
        mem_mb=lambda w: 4000 if w.suite in LAPTOP_SUITES else 16000,
        runtime=lambda w: 30 if w.suite in LAPTOP_SUITES else 180,
    conda:
        "../../envs/picat.yaml"
    params:
        settings=lambda w: as_json(run_settings(w.suite, "svm", listing=("backbone", "benchmarks"))),
    shell:
        "python -m picat svm --benchmark {wildcards.benchmark} --features {input.features:q} "
        "--settings {params.settings} --seed {wildcards.seed} --suite {wildcards.suite} --out {output:q} "
        "--threads {threads} > {log:q} 2>&1"


rule svm_random:
    input:
        features=frozen_features("random"),
    output:
        "results/downstream/{suite}/svm/{benchmark}/{backbone}_random/seed{seed}.json",
    log:
        "results/logs/{suite}/svm/{benchmark}_{backbone}_random_seed{seed}.log",
    benchmark:
        "results/benchmarks/{suite}/svm/{benchmark}_{backbone}_random_seed{seed}.tsv"
    threads: lambda w: job_threads(w.suite)
    resources:
        mem_mb=lambda w: 4000 if w.suite in LAPTOP_SUITES else 16000,
        runtime=lambda w: 30 if w.suite in LAPTOP_SUITES else 180,
    conda:
        "../../envs/picat.yaml"
    params:
        settings=lambda w: as_json(run_settings(w.suite, "svm", listing=("backbone", "benchmarks"))),
    shell:
        "python -m picat svm --benchmark {wildcards.benchmark} --features {input.features:q} "
        "--settings {params.settings} --seed {wildcards.seed} --suite {wildcards.suite} --out {output:q} "
        "--threads {threads} > {log:q} 2>&1"


# An imported outside checkpoint (`<suite>.imported.<name>`, converted with `picat convert`)
# under the same linear-SVM protocol: its records say init "imported", variant <name>.
rule svm_imported:
    input:
        features=frozen_features(f"{IMPORTED_PREFIX}{{name}}"),
    output:
        "results/downstream/{suite}/svm/{benchmark}/{backbone}_imported-{name}/seed{seed}.json",
    log:
        "results/logs/{suite}/svm/{benchmark}_{backbone}_imported-{name}_seed{seed}.log",
    benchmark:
        "results/benchmarks/{suite}/svm/{benchmark}_{backbone}_imported-{name}_seed{seed}.tsv"
    wildcard_constraints:
        name=IMPORTED_NAME,
    threads: lambda w: job_threads(w.suite)
    resources:
        mem_mb=lambda w: 4000 if w.suite in LAPTOP_SUITES else 16000,
        runtime=lambda w: 30 if w.suite in LAPTOP_SUITES else 180,
    conda:
        "../../envs/picat.yaml"
    params:
        settings=lambda w: as_json(run_settings(w.suite, "svm", listing=("backbone", "benchmarks"))),
    shell:
        "python -m picat svm --benchmark {wildcards.benchmark} --features {input.features:q} "
        "--settings {params.settings} --seed {wildcards.seed} --suite {wildcards.suite} --out {output:q} "
        "--threads {threads} > {log:q} 2>&1"


# picat-only (not in the paper): the few-shot linear probe, one job per (benchmark, backbone,
# variant, random init or imported checkpoint, seed); every shot count and draw fitted on the
# shared features.
rule fewshot:
    input:
        features=frozen_features("{source}"),
    output:
        "results/downstream/{suite}/fewshot/{benchmark}/{backbone}_{source}/seed{seed}.json",
    log:
        "results/logs/{suite}/fewshot/{benchmark}_{backbone}_{source}_seed{seed}.log",
    benchmark:
        "results/benchmarks/{suite}/fewshot/{benchmark}_{backbone}_{source}_seed{seed}.tsv"
    wildcard_constraints:
        source=FROZEN_SOURCES,
    threads: lambda w: job_threads(w.suite)
    resources:
        mem_mb=lambda w: 4000 if w.suite in LAPTOP_SUITES else 16000,
        runtime=lambda w: 30 if w.suite in LAPTOP_SUITES else 180,
    conda:
        "../../envs/picat.yaml"
    params:
        settings=lambda w: as_json(run_settings(w.suite, "fewshot", listing=("benchmarks",))),
    shell:
        "python -m picat fewshot --benchmark {wildcards.benchmark} --features {input.features:q} "
        "--settings {params.settings} --seed {wildcards.seed} --suite {wildcards.suite} "
        "--out {output:q} --threads {threads} > {log:q} 2>&1"


rule finetune:
    input:
        checkpoint=source_checkpoint("pointnext"),
        datasets=dataset_input,
    output:
        "results/downstream/{suite}/finetune/{benchmark}/pointnext_{source}/seed{seed}.json",
    log:
        "results/logs/{suite}/finetune/{benchmark}_pointnext_{source}_seed{seed}.log",
    benchmark:
        "results/benchmarks/{suite}/finetune/{benchmark}_pointnext_{source}_seed{seed}.tsv"
    wildcard_constraints:
        source="scratch|full|no_local|no_global|no_pose",
    threads: lambda w: job_threads(w.suite)
    resources:
        mem_mb=lambda w: 8000 if w.suite in LAPTOP_SUITES else 16000,
        runtime=lambda w: 60 if w.suite in LAPTOP_SUITES else 12 * 60,
        gpu=lambda w: config[w.suite]["pretrain"]["gpus"],
    conda:
        "../../envs/picat.yaml"
    params:
        dataset=lambda w: as_json(dataset_spec(w.suite, w.benchmark)),
        settings=lambda w: as_json(run_settings(w.suite, "finetune", listing=("benchmarks", "seeds"))),
        backbone=source_arguments("pointnext"),
        amp=lambda w: config[w.suite]["amp"],
        logging=lambda w: as_json(config[w.suite].get("logging", {})),
    shell:
        "python -m picat finetune --benchmark {wildcards.benchmark} --dataset {params.dataset} --settings {params.settings} "
        "{params.backbone} --seed {wildcards.seed} --suite {wildcards.suite} --out {output:q} "
        "--amp {params.amp} --logging {params.logging} --threads {threads} > {log:q} 2>&1"
