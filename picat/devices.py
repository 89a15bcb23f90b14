"""Which torch device a step runs on (shared by pre-training, encoding and every downstream stage)."""

from __future__ import annotations

import torch


def pick_device(preferred: str = "auto") -> torch.device:
    """CUDA when present (or asked for), else the CPU.

    Args:
        preferred: "auto", or any torch device string ("cpu", "cuda", "cuda:1").
    """
    if preferred == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preferred)
