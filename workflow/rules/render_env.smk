# The BlenderProc render environment (BlenderProc 2.8 on PyPI's bpy 4.2), built on first
# use so that a fresh machine needs no manual Blender install. Its stamp file is written last.


rule render_env:
    output:
        RENDER_ENV_STAMP,
    log:
        "results/logs/render_env.log",
    benchmark:
        "results/benchmarks/render_env.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/picat.yaml"
    params:
        env_dir=lambda w, output: Path(output[0]).parent,
    shell:
        "python -m picat render-env {params.env_dir:q} > {log:q} 2>&1"
