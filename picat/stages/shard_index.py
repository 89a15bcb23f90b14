"""The shard-index step: validate every shard of a suite and write their index (JSON)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from picat.shards import write_index


def index_shards(shards: Sequence[Path], output: Path, log: TextIO = sys.stdout) -> dict[str, Any]:
    """Validate ``shards`` and write their index to ``output`` atomically; returns the index.

    Raises:
        picat.shards.ShardError: a shard fails validation (naming the file and the problem).
    """
    index = write_index([Path(path) for path in shards], Path(output))
    print(f"{output}: {index['objects']} objects in {len(index['shards'])} shards, {index['skipped']} skipped",
          file=log, flush=True)
    return index
