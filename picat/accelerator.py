"""How a training loop uses its device: mixed precision, TF32, copies, and step bookkeeping
that never waits for the device.

Every loop (pre-training, fine-tuning, both segmentation protocols) follows the same rules:

* ``amp`` (the suite's ``amp`` setting): ``"bf16"`` runs the forward pass under bfloat16
  autocast (no gradient scaler: bf16 has float32's exponent range), ``"fp32"`` runs float32,
  ``"auto"`` means bf16 on CUDA and float32 elsewhere. Losses are computed in float32 from
  the autocast outputs by the callers.
* On CUDA, float32 matrix products use TF32 (:func:`prepare_device`).
* Host copies are ``non_blocking`` (from pinned memory when the data loader pins it).
* A step never reads a device value on the host: running sums stay on the device
  (:class:`DeviceSums`) and the non-finite-loss check looks at the device's record every
  ``check_every`` steps and at the end of the epoch (:class:`FiniteLossGuard`). On a GPU a
  host read stalls the CPU until the queued kernels finish, so the next step's launches
  cannot overlap the current step's work.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from torch import Tensor

AMP_MODES = ("fp32", "bf16", "auto")


def resolve_amp(amp: str, device: torch.device) -> str:
    """The precision a loop runs in: "bf16" or "fp32" ("auto": bf16 on CUDA only)."""
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    if amp == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return amp


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """The forward pass's precision context: bf16 autocast, or a no-op for float32."""
    if resolve_amp(amp, device) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def precision_label(amp: str, device: torch.device) -> str:
    """What a record says the run used: "bf16-autocast", "fp32+tf32" (CUDA) or "fp32"."""
    if resolve_amp(amp, device) == "bf16":
        return "bf16-autocast"
    return "fp32+tf32" if device.type == "cuda" else "fp32"


def prepare_device(device: torch.device) -> None:
    """Allow TF32 in float32 matrix products and convolutions on CUDA (no effect elsewhere)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def to_device(tensors: Mapping[str, Tensor] | Sequence[Tensor], device: torch.device
              ) -> dict[str, Tensor] | tuple[Tensor, ...]:
    """Non-blocking copies of a batch (a dict or a sequence of tensors) to ``device``."""
    if isinstance(tensors, Mapping):
        return {key: value.to(device, non_blocking=True) for key, value in tensors.items()}
    return tuple(value.to(device, non_blocking=True) for value in tensors)


def loader_options(device: torch.device, num_workers: int) -> dict[str, bool]:
    """DataLoader keywords for ``device``: pinned host memory for CUDA, workers kept across epochs."""
    return {"pin_memory": device.type == "cuda", "persistent_workers": num_workers > 0}


class DeviceSums:
    """Running sums of per-step scalars, kept on the device in float64 until read.

    ``add`` queues an addition and never waits; ``values`` (one host read for all of them)
    is called once per epoch.
    """

    def __init__(self, names: Sequence[str], device: torch.device) -> None:
        self.names = list(names)
        self._sums = torch.zeros(len(self.names), dtype=torch.float64, device=device)

    def add(self, values: Mapping[str, Tensor | float]) -> None:
        """Add one step's values (0-dim tensors on the device, or Python numbers)."""
        stacked = torch.stack([torch.as_tensor(values[name], device=self._sums.device).detach().double().reshape(())
                               for name in self.names])
        self._sums.add_(stacked)

    def values(self) -> dict[str, float]:
        """The sums so far, read to the host."""
        return dict(zip(self.names, self._sums.tolist(), strict=True))


class FiniteLossGuard:
    """Remembers, on the device, the first step whose loss was NaN or infinite.

    Args:
        check_every: read the device's record every this many steps (and at :meth:`check`).
        error: called with the first bad step's number (1-based) to make the exception raised.
    """

    def __init__(self, device: torch.device, check_every: int, error: Callable[[int], Exception]) -> None:
        if check_every < 1:
            raise ValueError(f"check_every must be >= 1, got {check_every}")
        self.check_every, self.error = check_every, error
        self._first_bad = torch.zeros((), dtype=torch.long, device=device)  # 0: none yet
        self._seen = 0

    def observe(self, loss: Tensor) -> None:
        """Record one step's loss; every ``check_every`` steps, raise if a loss so far was not finite."""
        self._seen += 1
        bad = ~torch.isfinite(loss.detach()).all()
        self._first_bad = torch.where(bad & (self._first_bad == 0), self._seen, self._first_bad)
        if self._seen % self.check_every == 0:
            self.check()

    def check(self) -> None:
        """Raise the error for the first non-finite step, if any (one host read)."""
        first = int(self._first_bad)
        if first:
            raise self.error(first)

    def steps_seen(self) -> int:
        return self._seen


@contextlib.contextmanager
def float32_losses(device: torch.device) -> Iterator[None]:
    """Autocast off inside: losses and their logits are computed in float32 from autocast outputs."""
    with torch.autocast(device_type=device.type, enabled=False):
        yield
