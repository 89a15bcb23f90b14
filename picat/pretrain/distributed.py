"""Data-parallel pre-training over several processes (torchrun + DistributedDataParallel).

How a run is split (``W`` processes, configured ``batch_size`` = ``B``):

* ``batch_size`` stays the GLOBAL batch: it must be divisible by ``W`` and each rank takes
  ``B / W`` objects per step. Step ``s`` of an epoch covers exactly the objects (and views)
  of step ``s`` of a single-process run: rank ``r`` takes the contiguous slice
  ``[r B/W, (r+1) B/W)`` of that global batch (:class:`GlobalBatchSlices`), so gathering
  the ranks' pieces in rank order rebuilds the single-process batch, row for row.
* The per-object rotations are drawn for the whole global batch from the same seeded
  generator on every rank, and each rank keeps its slice (:func:`rank_slice`).
* The InfoNCE negatives are image embeddings (paper eq. 1-3 contrast each point embedding
  against images); every rank gathers all ranks' global and local image embeddings with a
  gradient-carrying ``all_gather``, so its negatives are the whole global batch.
* Each rank's objective is ``W`` times its share of the global-batch loss; DDP averages
  gradients over ranks, and ``all_gather``'s backward sums the gradients that reach each
  rank's image embeddings, so the averaged gradient is the single-process gradient of the
  global-batch loss (tested on CPU with gloo).
* BatchNorm layers normalise with the statistics of the whole global batch
  (:class:`GlobalBatchNorm`, which works on the CPU too, unlike ``nn.SyncBatchNorm``): with
  per-rank statistics the forward pass itself would differ from a single process. DGCNN's
  EdgeConv computes its edge statistics itself (:mod:`picat.models.dgcnn`) and sums them
  over ranks through the layer's :meth:`GlobalBatchNorm.sum_across_ranks`.

Because nothing here depends on ``W`` except who computes what, a run checkpointed with
one number of processes resumes with another and follows the same trajectory (up to float
summation order).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import Sampler

from picat.devices import pick_device

ENV_WORLD_SIZE, ENV_RANK, ENV_LOCAL_RANK = "WORLD_SIZE", "RANK", "LOCAL_RANK"


@dataclass(frozen=True)
class Ranks:
    """Where this process stands in a data-parallel run (world_size 1: a single process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs and TensorBoard events."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def per_rank_batch(self, global_batch: int) -> int:
        """The objects each rank takes per step; ``global_batch`` must divide by the world size."""
        if global_batch % self.world_size:
            raise ValueError(f"pretrain.batch_size={global_batch} (the global batch) is not divisible by the "
                             f"{self.world_size} processes; choose a multiple of {self.world_size}")
        return global_batch // self.world_size

    def gather(self, tensor: Tensor) -> Tensor:
        """All ranks' ``tensor`` (same shape on every rank) concatenated along dim 0 in rank
        order; the gradient of every rank's loss with respect to this rank's rows flows back."""
        if not self.distributed:
            return tensor
        return _GatherRows.apply(tensor, self.rank, self.world_size)

    def sum_with_grad(self, tensor: Tensor) -> Tensor:
        """The sum over ranks of ``tensor``, differentiable (the backward sums the ranks' gradients)."""
        if not self.distributed:
            return tensor
        return _SumOverRanks.apply(tensor)

    def sum(self, tensor: Tensor) -> Tensor:
        """The sum over ranks of a (detached) tensor; every rank gets the result."""
        if not self.distributed:
            return tensor
        total = tensor.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def barrier(self) -> None:
        if self.distributed:
            if dist.get_backend() == dist.Backend.NCCL:
                dist.barrier(device_ids=[self.local_rank])
            else:
                dist.barrier()


SINGLE = Ranks()


class _GatherRows(torch.autograd.Function):
    """all_gather along dim 0 whose backward hands each rank the summed gradient of its rows.

    Written here rather than taken from ``torch.distributed.nn.functional`` (deprecated in
    recent PyTorch); the backward is an all_reduce, which gloo and nccl both have.
    """

    @staticmethod
    def forward(ctx, tensor: Tensor, rank: int, world_size: int) -> Tensor:  # type: ignore[override]
        ctx.rank, ctx.rows = rank, tensor.shape[0]
        pieces = [torch.empty_like(tensor) for _ in range(world_size)]
        dist.all_gather(pieces, tensor.contiguous())
        return torch.cat(pieces, dim=0)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows], None, None


class _SumOverRanks(torch.autograd.Function):
    """all_reduce(SUM) with an all_reduce(SUM) backward: d(sum of losses)/d(input) on each rank."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # type: ignore[override]
        total = tensor.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the whole global batch.

    Holds the replaced layer's own parameters and buffers (state_dict keys unchanged, so a
    checkpoint loads into the plain model). In training under several ranks it all-reduces
    per-channel sums (differentiably) for the mean, then the centred squares for the biased
    variance, and updates the running statistics as ``nn.BatchNorm`` does (unbiased variance,
    same momentum); otherwise it is ordinary BatchNorm.
    """

    def __init__(self, layer: nn.modules.batchnorm._BatchNorm, ranks: Ranks) -> None:
        super().__init__(layer.num_features, layer.eps, layer.momentum, layer.affine, layer.track_running_stats)
        self.ranks = ranks
        self.weight, self.bias = layer.weight, layer.bias
        self.running_mean, self.running_var = layer.running_mean, layer.running_var
        self.num_batches_tracked = layer.num_batches_tracked
        self.train(layer.training)

    def sum_across_ranks(self, tensor: Tensor) -> Tensor:
        """Differentiable sum over ranks while training (layers that compute their own batch
        statistics from this layer's parameters, e.g. DGCNN's EdgeConv, use it); identity otherwise."""
        return self.ranks.sum_with_grad(tensor) if self.training else tensor

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2-D input (N, C, ...), got {input.dim()}-D")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and self.ranks.distributed):
            return super().forward(input)
        self._check_input_dim(input)
        dims = [d for d in range(input.dim()) if d != 1]
        shape = [1, -1] + [1] * (input.dim() - 2)
        local = torch.cat([input.sum(dims), input.new_full((1,), input.numel() / input.shape[1])])
        totals = self.ranks.sum_with_grad(local)
        count = totals[-1].detach()  # stays on the device: reading it would stall a GPU every layer
        mean = totals[:-1] / count
        centred = input - mean.view(shape)
        var = self.ranks.sum_with_grad(centred.square().sum(dims)) / count
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                unbiased = var.detach() * (count / (count - 1.0).clamp_min(1.0))
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        return out


def use_global_batch_norm(module: nn.Module, ranks: Ranks, device: torch.device | None = None) -> nn.Module:
    """Replace (in place) every plain BatchNorm1d/2d/3d inside ``module`` by a global-batch one.

    On CUDA the layers become ``nn.SyncBatchNorm`` (NCCL's fused kernels), on the CPU
    :class:`GlobalBatchNorm` (SyncBatchNorm runs on CUDA only). A layer whose parent computes
    the statistics itself from the layer's parameters (a parent with
    ``owns_batch_statistics = True``, e.g. DGCNN's EdgeConv, which never calls the layer but
    sums through its :meth:`GlobalBatchNorm.sum_across_ranks`) is always a
    :class:`GlobalBatchNorm`. Parameters and buffers are the replaced layer's own, so
    state_dict keys are unchanged. A no-op for a single process. Returns ``module``.
    """
    if not ranks.distributed:
        return module
    plain = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
    use_sync = device is not None and device.type == "cuda"
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) not in plain:
                continue
            if use_sync and not getattr(parent, "owns_batch_statistics", False):
                setattr(parent, name, _sync_batch_norm(child))
            else:
                setattr(parent, name, GlobalBatchNorm(child, ranks))
    return module


def _sync_batch_norm(layer: nn.modules.batchnorm._BatchNorm) -> nn.SyncBatchNorm:
    """``layer`` as an ``nn.SyncBatchNorm`` holding the same parameters and buffers."""
    synced = nn.SyncBatchNorm(layer.num_features, layer.eps, layer.momentum, layer.affine, layer.track_running_stats)
    synced.weight, synced.bias = layer.weight, layer.bias
    synced.running_mean, synced.running_var = layer.running_mean, layer.running_var
    synced.num_batches_tracked = layer.num_batches_tracked
    synced.train(layer.training)
    return synced


def ranks_from_env() -> Ranks:
    """The torchrun environment (WORLD_SIZE, RANK, LOCAL_RANK), or a single process without it."""
    world = int(os.environ.get(ENV_WORLD_SIZE, "1"))
    if world <= 1:
        return SINGLE
    try:
        return Ranks(int(os.environ[ENV_RANK]), world, int(os.environ[ENV_LOCAL_RANK]))
    except KeyError as missing:
        raise RuntimeError(f"WORLD_SIZE={world} but {missing} is not set; "
                           "start multi-process runs with torchrun") from None


def init_distributed(preferred_device: str = "auto") -> tuple[Ranks, torch.device]:
    """Join the process group torchrun set up and pick this rank's device.

    One process (no torchrun): nothing is initialised and the device is ``preferred_device``
    (``auto``: CUDA when present). Several: ``auto``/``cuda`` give ``cuda:LOCAL_RANK`` with the
    nccl backend, ``cpu`` (or no CUDA) the CPU with gloo.

    Raises:
        ValueError: a specific device (``cuda:1``) with several processes, or fewer CUDA
            devices than local ranks.
    """
    ranks = ranks_from_env()
    if not ranks.distributed:
        return ranks, pick_device(preferred_device)
    if preferred_device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"--device {preferred_device} names one device, but {ranks.world_size} processes run; "
                         "use auto, cuda or cpu (each process takes cuda:LOCAL_RANK)")
    use_cuda = preferred_device == "cuda" or (preferred_device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if ranks.local_rank >= torch.cuda.device_count():
            raise ValueError(f"local rank {ranks.local_rank} needs cuda:{ranks.local_rank}, but "
                             f"{torch.cuda.device_count()} CUDA device(s) are visible; start fewer processes per node")
        torch.cuda.set_device(ranks.local_rank)
        device, backend = torch.device("cuda", ranks.local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=ranks.rank, world_size=ranks.world_size,
                                device_id=device if use_cuda else None)
    return ranks, device


def shutdown_distributed() -> None:
    """Leave the process group (if one was joined)."""
    if dist.is_initialized():
        dist.destroy_process_group()


class GlobalBatchSlices(Sampler):
    """This rank's slice of every full global batch of an epoch order.

    ``order`` yields the epoch's items in single-process order (an :class:`EpochSampler`).
    Global batch ``s`` is items ``[s B, (s+1) B)`` (an incomplete last
    batch is dropped, as in a single-process run); rank ``r`` gets its items
    ``[r b, (r+1) b)``, b = B / W. Every rank therefore runs the same number of steps (a
    must: a rank with one step more would wait for the others forever), and the ranks'
    slices, concatenated in rank order, are the single-process batch.
    """

    def __init__(self, order: Sampler, global_batch: int, ranks: Ranks = SINGLE) -> None:
        if global_batch < 1:
            raise ValueError(f"batch size must be positive, got {global_batch}")
        self.order, self.global_batch, self.ranks = order, global_batch, ranks
        self.per_rank = ranks.per_rank_batch(global_batch)

    def __iter__(self) -> Iterator[list]:
        start, stop = self.ranks.rank * self.per_rank, (self.ranks.rank + 1) * self.per_rank
        batch: list = []
        for item in self.order:
            batch.append(item)
            if len(batch) == self.global_batch:
                yield batch[start:stop]
                batch = []

    def __len__(self) -> int:
        return len(self.order) // self.global_batch  # type: ignore[arg-type]


def rank_slice(values: Tensor, ranks: Ranks) -> Tensor:
    """This rank's rows of a tensor drawn for the whole global batch (rows split as in :class:`GlobalBatchSlices`)."""
    per_rank = ranks.per_rank_batch(len(values))
    return values[ranks.rank * per_rank:(ranks.rank + 1) * per_rank]


def launcher_command(argv: Sequence[str], nproc: int, executable: str = sys.executable) -> list[str]:
    """The torchrun command line that runs ``picat <argv>`` in ``nproc`` processes on this node.

    ``python -m torch.distributed.run`` is torchrun run by the same interpreter (no reliance on
    a ``torchrun`` script on PATH); ``--standalone`` picks a free local rendezvous port, so
    several jobs can share a node.
    """
    return [executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
            "-m", "picat", *argv]
