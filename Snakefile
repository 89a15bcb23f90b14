# picat: Pic@Point pre-training and its benchmarks as one workflow.
#   snakemake --cores 2            the selected suite's default target (see README)
#   snakemake --cores 2 shards     every HDF5 shard of the selected suite
#   snakemake --cores 2 pretrain   every pre-training run (backbone x variant x seed)
#   snakemake --cores 2 results/tables.csv   everything: downstream benchmarks and the tables
from snakemake.utils import min_version

min_version("8.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/render_env.smk"
include: "workflow/rules/shards.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/downstream.smk"
include: "workflow/rules/segmentation.smk"
include: "workflow/rules/report.smk"


# Everything the selected suite makes (common.smk's final_targets): shards, pre-training
# runs, the tables and both figures.
rule all:
    default_target: True
    input:
        final_targets,
