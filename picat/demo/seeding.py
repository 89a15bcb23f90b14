"""Seeds and random streams of the demo's held-out stand-ins, shared by every stand-in module.

Held out by construction: the pre-training corpus (``picat.demo.recipes.demo_objects``) uses
shape seeds that are uint32 values, below 2**32. Every stand-in shape gets a seed in
[2**32, 2**33): ``2**32 + split_value * 2**30 + 30 random bits`` (``held_out_seed``), so no
stand-in shape is ever a corpus shape. The split value in bits 30-31 is the split's index in
``SPLITS`` (train 0, test 1, val 2) for classification and part-segmentation shapes, so
splits never share a shape whatever the seeds, and ``ROOM_SEED_SPLIT`` (3, free) for room
furniture, so no furniture item is ever a classification or part-segmentation shape.

Streams: every random draw comes from ``stream(seed, key)``, a generator seeded by the
dataset seed and a spawn key naming what it is for (dataset, split or area, category,
object index, purpose). The same arguments therefore give the same draws, and one object's
draws never depend on how many others are asked for. The keys' leading elements keep the
stand-ins apart: the classification stand-ins' keys start with the split index (0-2), the
segmentation stand-ins' with a dataset tag (``PART_TAG``, ``ROOM_TAG``, ``AREA_TAG``).
These values are part of every generated file: never renumber them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Split names and their index (the index goes into the seeds, see the module docstring).
SPLITS: tuple[str, ...] = ("train", "test", "val")

HELD_OUT_SEED_BASE = 2**32  # corpus seeds are uint32, i.e. below this
_SPLIT_BITS = 30  # shape seed = base + split_index * 2**30 + 30 random bits

# The split value room furniture uses in bits 30-31 of its held-out seed (0-2 are SPLITS').
ROOM_SEED_SPLIT = 3
# Dataset tags: the first element of the segmentation stand-ins' spawn keys.
PART_TAG, ROOM_TAG, AREA_TAG = 101, 102, 103
# Purposes: the last element of a segmentation stand-in's spawn key.
PURPOSE_SHAPE, PURPOSE_SAMPLE, PURPOSE_LIST, PURPOSE_LAYOUT, PURPOSE_COLOUR, PURPOSE_SHELL = 0, 1, 2, 3, 4, 5


def index_of_split(split: str) -> int:
    """The index of ``split`` in ``SPLITS`` (what goes into its seeds)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits: {', '.join(SPLITS)}")
    return SPLITS.index(split)


def held_out_seed(split_value: int, word: int) -> int:
    """A shape seed in [2**32, 2**33) whose bits 30-31 encode the split (see module docstring).

    Args:
        split_value: 0-2 (the index in SPLITS) or ROOM_SEED_SPLIT.
        word: a uint32 random word; its 30 high bits become the seed's low bits.
    """
    return HELD_OUT_SEED_BASE + (split_value << _SPLIT_BITS) + (int(word) >> (32 - _SPLIT_BITS))


def draw_held_out_seed(seed: int, key: tuple[int, ...], split_value: int) -> int:
    """The held-out shape seed of spawn key ``key``: ``held_out_seed`` of its first uint32 word."""
    word = np.random.SeedSequence(seed, spawn_key=key).generate_state(1, dtype=np.uint32)[0]
    return held_out_seed(split_value, int(word))


def stream(seed: int, key: tuple[int, ...]) -> np.random.Generator:
    """An independent generator for the purpose that spawn key ``key`` names."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def check_int(name: str, value: Any, low: int) -> int:
    """``value`` as an int, if it is an integer (not a bool) >= ``low``; else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)
