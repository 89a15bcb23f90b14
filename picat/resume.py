"""Per-epoch resume states shared by every long training loop (pre-training, fine-tuning, and
the two segmentation protocols).

A loop writes one state file (``resume.pt``) after every completed epoch, atomically
(:mod:`picat.atomic`), so a job that is killed (a SLURM time limit, a pre-empted node, a
crash) and run again continues after the last completed epoch and, on the CPU, ends
bit-identical to an uninterrupted run. A state holds the model, optimiser and scheduler,
the epoch, the loop's history and best-so-far values, the training log's rows, and every
random-number state the rest of the run draws from: torch's global generator (dropout,
DataLoader seeds), CUDA's, numpy's and Python's global ones, and the loop's own generators
(batch order, point samples, augmentation).

The file lives in a run folder that is not a declared Snakemake output (Snakemake deletes the
outputs of a failed job, and so would delete the state a retry needs): for pre-training the
checkpoint's folder, for a downstream record ``<name>.json`` the folder ``<name>/`` beside it
(:func:`run_folder_of`). The step that writes the final output removes the state.

A state remembers the identity of the run that wrote it (settings, seed, data sizes, the
initial weights' fingerprint); a rerun with another identity refuses it instead of silently
continuing someone else's run.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from picat.atomic import atomic_path

RESUME_FILE = "resume.pt"

# A loop's own random generators, by name: torch generators (batch order, augmentation) and
# numpy generators (point samples, crops).
Generators = Mapping[str, torch.Generator | np.random.Generator]


def run_folder_of(output: Path) -> Path:
    """The run folder of a downstream record: ``.../seed0.json`` -> ``.../seed0/``.

    It holds the run's resume state, training log (``log.csv``), TensorBoard events and
    Weights & Biases files; it is not a Snakemake output, so a failed job's retry finds it.
    """
    output = Path(output)
    if not output.suffix:
        raise ValueError(f"a record path needs a suffix (e.g. .json) to name its run folder: {output}")
    return output.with_suffix("")


def rng_states(generators: Generators | None = None) -> dict[str, Any]:
    """Every random-number state a training loop draws from, for :func:`restore_rng_states`.

    Args:
        generators: the loop's own generators by name.

    Returns:
        {"torch", "numpy", "python", "cuda" (a list per device; empty without CUDA),
         "generators": {name: state}}.
    """
    own: dict[str, Any] = {}
    for name, generator in (generators or {}).items():
        if isinstance(generator, torch.Generator):
            own[name] = {"kind": "torch", "state": generator.get_state()}
        elif isinstance(generator, np.random.Generator):
            own[name] = {"kind": "numpy", "state": generator.bit_generator.state}
        else:
            raise TypeError(f"generator {name!r}: expected a torch.Generator or numpy Generator, got {type(generator)}")
    # Only an initialised CUDA context has states to save (and asking would initialise one).
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": cuda, "generators": own}


def restore_rng_states(states: dict[str, Any], generators: Generators | None = None) -> None:
    """Put every generator back where :func:`rng_states` found it.

    Raises:
        RuntimeError: when the state names other generators than ``generators``.
    """
    generators = dict(generators or {})
    if set(states["generators"]) != set(generators):
        raise RuntimeError(f"the resume state has the generators {sorted(states['generators'])}, the loop "
                           f"{sorted(generators)}")
    torch.set_rng_state(states["torch"].cpu())
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([state.cpu() for state in states["cuda"]])
    for name, saved in states["generators"].items():
        generator = generators[name]
        if saved["kind"] == "torch":
            generator.set_state(saved["state"].cpu())
        else:
            generator.bit_generator.state = saved["state"]


def weights_fingerprint(module: nn.Module) -> str:
    """SHA-256 of a module's state_dict (names, dtypes, shapes and bytes): which initial
    weights (pre-trained checkpoint or random seed) a run started from."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        value = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class ResumeFile:
    """One run's resume state on disk, tied to the run's identity.

    Args:
        path: the state file (``<run folder>/resume.pt``).
        identity: what must match for a state to be continued: settings, seed, data sizes,
            initial weights (plain values: dicts, lists, tuples, numbers, strings).
    """

    def __init__(self, path: Path, identity: dict[str, Any]) -> None:
        self.path = Path(path)
        self.identity = identity

    def load(self, map_location: torch.device | str = "cpu") -> dict[str, Any] | None:
        """The saved state, or None when there is none.

        Raises:
            RuntimeError: when the state was written by a run with another identity.
        """
        if not self.path.is_file():
            return None
        state = torch.load(self.path, map_location=map_location, weights_only=False)
        saved = state.get("identity")
        if saved != self.identity:
            differ = sorted(key for key in set(self.identity) | set(saved or {})
                            if (saved or {}).get(key) != self.identity.get(key))
            raise RuntimeError(f"{self.path} was written by a run with other {', '.join(differ)}; delete it to start "
                               "afresh")
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` (and the identity) atomically: a kill mid-write keeps the previous state."""
        with atomic_path(self.path) as temporary:
            torch.save({**state, "identity": self.identity}, temporary)

    def remove(self) -> None:
        """Delete the state (the run is complete and its output written)."""
        self.path.unlink(missing_ok=True)
