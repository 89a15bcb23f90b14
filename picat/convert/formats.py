"""The outside checkpoint formats ``picat convert`` reads and writes, by name."""

from __future__ import annotations

from picat.convert.dgcnn import CrossPointLayout, OfficialDGCNNLayout
from picat.convert.layout import Layout
from picat.convert.pointnext import OpenPointsPointNeXtLayout

FORMATS: dict[str, Layout] = {layout.name: layout for layout in
                              (OfficialDGCNNLayout(), CrossPointLayout(), OpenPointsPointNeXtLayout())}


def get_format(name: str) -> Layout:
    """The layout called ``name``.

    Raises:
        ValueError: no such format, naming the valid ones.
    """
    if name not in FORMATS:
        raise ValueError(f"unknown checkpoint format {name!r}; valid: {', '.join(FORMATS)}")
    return FORMATS[name]
