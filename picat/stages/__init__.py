"""The workflow's steps, one module each; the Snakemake rules call them through `picat.cli`."""
