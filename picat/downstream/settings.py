"""Protocol settings dataclasses built from config blocks, with errors that name the key."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

T = TypeVar("T")


def settings_from_block(cls: type[T], block: dict[str, Any], key: str) -> T:
    """``cls(**block)`` for a frozen settings dataclass; lists become tuples where the field is one.

    Raises:
        ValueError: naming ``key`` (e.g. "downstream.svm") and the unknown settings.
    """
    fields = {field.name: field for field in dataclasses.fields(cls)}
    unknown = sorted(set(block) - set(fields))
    if unknown:
        raise ValueError(f"{key}: unknown setting(s) {unknown}; valid: {sorted(fields)}")
    values = {name: tuple(value) if isinstance(value, list) else value for name, value in block.items()}
    return cls(**values)


def check_training_settings(settings: Any, key: str, integers: tuple[str, ...]) -> None:
    """The checks every training protocol's settings share; a ValueError names ``key`` and the field.

    ``integers`` must be positive ints; ``lr``, ``min_lr``, ``label_smoothing`` and
    ``scale_range`` are checked as a cosine schedule, a smoothing factor and a scaling range.
    """
    for name in integers:
        value = getattr(settings, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key}.{name} must be a positive integer, got {value!r}")
    if not (settings.lr > 0 and 0 <= settings.min_lr <= settings.lr):
        raise ValueError(f"{key}: need lr > 0 and 0 <= min_lr <= lr, got lr={settings.lr}, min_lr={settings.min_lr}")
    if not 0 <= settings.label_smoothing < 1:
        raise ValueError(f"{key}.label_smoothing must be in [0, 1), got {settings.label_smoothing}")
    low_high = settings.scale_range
    if len(low_high) != 2 or not 0 < low_high[0] <= low_high[1]:
        raise ValueError(f"{key}.scale_range must be [low, high] with 0 < low <= high, got {low_high}")
