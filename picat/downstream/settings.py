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
