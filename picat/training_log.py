"""One training log for every loop (pre-training, fine-tuning, part and scene segmentation).

Every loop writes the same things through :class:`TrainingLog`:

- ``log.csv`` in the run folder, always, in one long (tidy) format: one row per
  (epoch, split, metric), with the columns of :data:`COLUMNS`:

  ========  ==================================================================================
  epoch     the epoch the value belongs to (1-based); a test row: the epoch of the model tested
  step      optimiser steps completed by the end of that epoch (the x axis of the curves)
  split     ``train``, ``val`` or ``test``
  metric    the metric's name: ``loss``, ``accuracy``, ``local``, ``global``, ``lr_image``,
            ``overall_accuracy``, ``instance_miou``, ``miou``, ... (each loop documents its own)
  value     the value (a float, written as Python's ``repr``, so it reads back exactly)
  lr        the learning rate of the first parameter group in that epoch (empty on test rows)
  seconds   wall-clock seconds of that epoch's training (train and val rows) or of the test
  ========  ==================================================================================

  The file is rewritten whole and atomically after every epoch, from rows that are also part
  of the loop's resume state (:mod:`picat.resume`): a resumed run starts from the rows of
  the epochs its state holds, so the epochs it repeats are never written twice, and a kill
  never leaves a torn line.
- TensorBoard events under ``<run folder>/tensorboard`` when the ``tensorboard`` package is
  installed (and ``tensorboard: true``, the default): scalars ``<split>/<metric>`` (and
  ``train/lr``, ``train/seconds``) at the global step, plus a loop's step-level curves
  ``step/<name>``. A resumed run purges the events after its state's last step, so a repeated
  epoch is not drawn twice.
- Weights & Biases when enabled (``wandb: {enabled: true}``; ``mode: offline`` needs no
  account and writes under ``<run folder>/wandb`` or ``$WANDB_DIR``; ``wandb sync`` uploads it
  later). The same scalars as TensorBoard; a resumed run reuses its W&B run id. wandb is
  imported only when enabled.

Settings come from a config block ``logging: {tensorboard: true, wandb: {enabled: false,
project: picat, mode: offline, entity: null}}`` (:meth:`LoggingSettings.of`); every key is
optional and the defaults write the CSV and TensorBoard only.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from picat.atomic import write_text_atomically

CSV_FILE = "log.csv"
TENSORBOARD_DIR = "tensorboard"
WANDB_DIR = "wandb"
COLUMNS = ("epoch", "step", "split", "metric", "value", "lr", "seconds")
SPLITS = ("train", "val", "test")
WANDB_MODES = ("online", "offline", "disabled")


@dataclass(frozen=True)
class WandbSettings:
    """Weights & Biases: off unless ``enabled``; ``offline`` keeps the run on disk (no account)."""

    enabled: bool = False
    project: str = "picat"
    mode: str = "offline"  # "online" | "offline" | "disabled"
    entity: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in WANDB_MODES:
            raise ValueError(f"logging.wandb.mode must be one of {', '.join(WANDB_MODES)}, got {self.mode!r}")
        if not isinstance(self.enabled, bool):
            raise ValueError(f"logging.wandb.enabled must be true or false, got {self.enabled!r}")
        if not isinstance(self.project, str) or not self.project:
            raise ValueError(f"logging.wandb.project must be a non-empty string, got {self.project!r}")


@dataclass(frozen=True)
class LoggingSettings:
    """Which sinks a :class:`TrainingLog` writes besides the CSV (always written)."""

    tensorboard: bool = True  # when the package is installed
    wandb: WandbSettings = field(default_factory=WandbSettings)

    @classmethod
    def of(cls, block: LoggingSettings | Mapping[str, Any] | None) -> LoggingSettings:
        """From the config's ``logging`` block (None or {} = the defaults: CSV and TensorBoard).

        Raises:
            ValueError: naming an unknown key or a bad value.
        """
        if block is None:
            return cls()
        if isinstance(block, LoggingSettings):
            return block
        block = dict(block)
        _check_keys(block, {f.name for f in fields(cls)}, "logging")
        wandb = dict(block.pop("wandb", None) or {})
        _check_keys(wandb, {f.name for f in fields(WandbSettings)}, "logging.wandb")
        if not isinstance(block.get("tensorboard", True), bool):
            raise ValueError(f"logging.tensorboard must be true or false, got {block['tensorboard']!r}")
        return cls(**block, wandb=WandbSettings(**wandb))


# What a loop's ``logging_settings`` argument takes: the settings, or the config's block.
LoggingSpec = LoggingSettings | Mapping[str, Any]


def _check_keys(block: Mapping[str, Any], known: set[str], key: str) -> None:
    unknown = sorted(set(block) - known)
    if unknown:
        raise ValueError(f"{key}: unknown setting(s) {unknown} (known: {', '.join(sorted(known))})")


def tensorboard_available() -> bool:
    """Whether ``torch.utils.tensorboard`` can work (it needs the ``tensorboard`` package)."""
    return importlib.util.find_spec("tensorboard") is not None


def open_tensorboard(run_dir: Path, purge_step: int | None = None) -> Any | None:
    """A SummaryWriter writing to ``run_dir/tensorboard``, or None without TensorBoard.

    Args:
        purge_step: events of earlier runs in the folder at or after this step are hidden
            (0: all of them, for a run started afresh; a resumed run's first new step: the
            epochs it repeats are not drawn twice). None: keep them.
    """
    if not tensorboard_available():
        return None
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR), purge_step=purge_step)


def csv_text(rows: list[dict[str, Any]]) -> str:
    """``rows`` as the CSV text of :data:`COLUMNS` (floats as ``repr``, None as empty)."""
    handle = io.StringIO()
    writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows({key: "" if row[key] is None else row[key] for key in COLUMNS} for row in rows)
    return handle.getvalue()


def read_log(path: Path) -> list[dict[str, Any]]:
    """A ``log.csv`` back as rows: epoch and step int, value, lr and seconds float (None if empty)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [{"epoch": int(row["epoch"]), "step": int(row["step"]), "split": row["split"], "metric": row["metric"],
             "value": float(row["value"]), "lr": float(row["lr"]) if row["lr"] else None,
             "seconds": float(row["seconds"]) if row["seconds"] else None} for row in rows]


class TrainingLog:
    """A run's log: CSV rows, TensorBoard and W&B scalars (see the module docstring).

    Lifecycle: construct (no side effects), :meth:`start` (with the ``state()`` of a resume
    state, or None), :meth:`record` per epoch (and once for the test), :meth:`close`.

    Args:
        run_dir: the run folder; None keeps the rows in memory only (no file, no sink).
        name: the loop's name (``pretrain``, ``finetune``, ``partseg``, ``semseg``): W&B's group.
        settings: which sinks; None: the defaults (CSV, and TensorBoard when installed).
        config: the run's settings, given to W&B as the run's config.
    """

    def __init__(self, run_dir: Path | None, name: str, settings: LoggingSpec | None = None,
                 config: Mapping[str, Any] | None = None) -> None:
        self.run_dir = None if run_dir is None else Path(run_dir)
        self.name = name
        self.settings = LoggingSettings.of(settings)
        self.config = dict(config or {})
        self.rows: list[dict[str, Any]] = []
        self.wandb_id: str | None = None
        self._board: Any | None = None
        self._wandb: Any | None = None
        self._started = False

    @property
    def csv_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / CSV_FILE

    @property
    def last_step(self) -> int:
        return self.rows[-1]["step"] if self.rows else 0

    def start(self, state: Mapping[str, Any] | None = None) -> None:
        """Open the sinks; with a resume state's ``log`` entry, continue from its rows.

        The CSV is rewritten from the restored rows (dropping any of epochs the resume repeats),
        TensorBoard purges events after the last restored step, W&B reuses the run id.
        """
        if self._started:
            raise RuntimeError("the training log was started already")
        self._started = True
        if state is not None:
            self.rows = [dict(row) for row in state["rows"]]
            self.wandb_id = state.get("wandb_id")
        if self.run_dir is None:
            return
        self._write_csv()
        if self.settings.tensorboard:
            # Fresh: hide an earlier run's curves in the folder (purge 0); resumed: only what
            # came after the state's last step.
            self._board = open_tensorboard(self.run_dir, purge_step=self.last_step + 1 if self.rows else 0)
        if self.settings.wandb.enabled and self.settings.wandb.mode != "disabled":
            self._wandb = self._open_wandb()

    def _open_wandb(self) -> Any:
        import wandb  # lazy: wandb is optional, and slow to import

        settings = self.settings.wandb
        self.wandb_id = self.wandb_id or uuid.uuid4().hex[:16]
        folder = Path(os.environ.get("WANDB_DIR") or self.run_dir / WANDB_DIR)
        folder.mkdir(parents=True, exist_ok=True)
        label = "/".join(self.run_dir.resolve().parts[-3:])
        return wandb.init(project=settings.project, entity=settings.entity, mode=settings.mode, dir=str(folder),
                          id=self.wandb_id, resume="allow", name=f"{self.name}:{label}", group=self.name,
                          config={"protocol": self.name, **self.config})

    def _write_csv(self) -> None:
        write_text_atomically(self.csv_path, csv_text(self.rows))

    def record(self, epoch: int, metrics: Mapping[str, Mapping[str, float]], *, step: int | None = None,
               lr: float | None = None, seconds: float | None = None) -> None:
        """Log one epoch's (or the test's) values.

        Args:
            epoch: 1-based epoch the values belong to.
            metrics: {split: {metric: value}}, split one of ``train``, ``val``, ``test``.
            step: optimiser steps completed by then; None: the last step logged (test rows).
            lr: the epoch's learning rate (first parameter group); None on test rows.
            seconds: the epoch's (or the test's) wall-clock seconds.
        """
        if not self._started:
            raise RuntimeError("start the training log before recording")
        step = self.last_step if step is None else int(step)
        new = []
        for split, values in metrics.items():
            if split not in SPLITS:
                raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
            new += [{"epoch": int(epoch), "step": step, "split": split, "metric": metric, "value": float(value),
                     "lr": None if lr is None else float(lr), "seconds": None if seconds is None else float(seconds)}
                    for metric, value in values.items()]
        self.rows += new
        if self.run_dir is None:
            return
        self._write_csv()
        scalars = {f"{row['split']}/{row['metric']}": row["value"] for row in new}
        if "train" in metrics:
            scalars.update({"train/lr": lr, "train/seconds": seconds})
        self._scalars({key: value for key, value in scalars.items() if value is not None}, step, epoch)

    def scalars(self, step: int, values: Mapping[str, float]) -> None:
        """Step-level curves (``step/<name>``) for TensorBoard and W&B; not in the CSV."""
        if self.run_dir is not None and self._started:
            self._scalars({f"step/{key}": float(value) for key, value in values.items()}, step)

    def _scalars(self, values: Mapping[str, float], step: int, epoch: int | None = None) -> None:
        if self._board is not None:
            for key, value in values.items():
                self._board.add_scalar(key, value, step)
            self._board.flush()
        if self._wandb is not None:
            self._wandb.log({**values, **({} if epoch is None else {"epoch": epoch})}, step=step)

    def state(self) -> dict[str, Any]:
        """What a resume state keeps of the log: its rows and the W&B run id."""
        return {"rows": [dict(row) for row in self.rows], "wandb_id": self.wandb_id}

    def close(self, failed: bool = False) -> None:
        """Close the sinks (safe to call twice, or without :meth:`start`); ``failed`` marks
        the W&B run as crashed (a resumed attempt continues it)."""
        if self._board is not None:
            self._board.close()
            self._board = None
        if self._wandb is not None:
            self._wandb.finish(exit_code=1 if failed else 0)
            self._wandb = None

    def __enter__(self) -> TrainingLog:
        return self

    def __exit__(self, kind: type[BaseException] | None, *exc_info: object) -> None:
        self.close(failed=kind is not None)

