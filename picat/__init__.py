"""picat: Pic@Point cross-modal point cloud pre-training, as a Snakemake workflow."""

__version__ = "0.1.0"
