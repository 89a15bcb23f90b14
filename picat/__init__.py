"""picat: Pic@Point cross-modal point cloud pre-training, as a Snakemake workflow."""

__version__ = "0.1.0"


def load_backbone(path, local: bool = False, map_location="cpu"):
    """The pre-trained point backbone of a checkpoint (see :func:`picat.models.factory.load_backbone`)."""
    from picat.models.factory import load_backbone as _load

    return _load(path, local=local, map_location=map_location)
