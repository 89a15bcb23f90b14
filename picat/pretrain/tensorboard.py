"""TensorBoard logging when the ``tensorboard`` package is installed; nothing otherwise.

TensorBoard is optional (the CSV log is always written): a laptop user should not need it,
and a cluster user who has it gets live curves under ``<run folder>/tensorboard``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

TENSORBOARD_DIR = "tensorboard"


def tensorboard_available() -> bool:
    """Whether ``torch.utils.tensorboard`` can work (it needs the ``tensorboard`` package)."""
    return importlib.util.find_spec("tensorboard") is not None


def open_tensorboard(run_dir: Path, purge_step: int = 0) -> Any | None:
    """A SummaryWriter writing to ``run_dir/tensorboard``, or None without TensorBoard.

    Args:
        purge_step: global step to restart from; events at or after it from an interrupted
            run are hidden, so a resumed run does not draw its repeated epoch twice.
    """
    if not tensorboard_available():
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR), purge_step=purge_step or None)
