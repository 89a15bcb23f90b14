"""Point sampling and grouping in plain PyTorch: farthest point sampling, ball query, kNN, gather.

PointNeXt/OpenPoints implement these as CUDA-only kernels; these versions run on any device
(CPU or CUDA: every tensor is created on the input's device) and reproduce the kernels'
semantics where they are defined:

* FPS starts from index 0 and picks, at each step, the point whose distance to the chosen
  set is largest (the first such index on ties).
* Ball query returns, for each centre, the first ``n_samples`` point indices in index order
  whose squared distance is strictly below ``radius**2``, padded with the first index found.
  Where the CUDA kernel leaves a centre with no neighbour as all zeros, this one uses the
  nearest point instead, so that a group is never made of an unrelated point.

Indices are ``torch.long`` and carry no gradient; :func:`gather_points` is differentiable
with respect to the features.

Memory: ball query and kNN compare every centre with every point, but never hold the whole
(B, S, N) distance matrix. They walk over chunks of centres (whole clouds at a time when a
cloud fits) whose distance block has at most :func:`neighbour_chunk_elements` elements
(by default 2**24 on every device: :data:`CPU_CHUNK_ELEMENTS`, :data:`DEVICE_CHUNK_ELEMENTS`;
13 bytes of work tensors per element), so the peak is O(chunk x N) instead of O(S x N). PointNeXt-S on S3DIS compares
N / 4 centres with N points in its first set abstraction (and N fine with N / 4 coarse
points in its last decoder level): for the whole-room test's sub-clouds of ~160k points
(0.04 m voxels) the dense matrix alone would be 6.3e9 distances, 25 GB in float32. Each
centre's row is computed exactly as the dense :func:`squared_distances` computes it, so the
results do not depend on the chunking. None of the ops reads a tensor's value on the host (no
``.item()``/``bool()``, no data-dependent shape), so on CUDA they queue their kernels
without waiting for the device.

On CUDA, FPS can replay its fixed-shape loop from captured CUDA graphs (:class:`_FPSGraph`)
instead of launching every step's ten small kernels from Python, with the eager loop's
picks. It is opt-in (:func:`set_fps_cuda_graphs`) until tests/test_ops.py's ``cuda`` tests
have passed on a GPU; the CPU always runs the eager loop.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from numbers import Integral

import torch
from torch import Tensor

__all__ = ["farthest_point_sample", "ball_query", "knn", "gather_points", "squared_distances",
           "neighbour_chunk_elements", "set_neighbour_chunk_elements", "set_fps_cuda_graphs", "CPU_CHUNK_ELEMENTS",
           "DEVICE_CHUNK_ELEMENTS"]

# Elements of one chunk's (centres x points) distance block in ball_query and knn, by device.
# A call holds four work tensors of that size (float distances, a float temporary, int32 keys,
# a bool mask: 13 bytes per element in float32, ~220 MB at 2**24), reused from chunk to chunk,
# so the peak is bounded whatever S and N. Smaller CPU blocks looked faster on 24000-point
# crops but made pre-training's searches (batch 32, 1024 points) 5-15x slower than the dense
# version on 2 cores (ball query 1024 -> 512 centres: 2.8 s at 2**18, 1.5 s at 2**20, 0.58 s
# at 2**22, 0.29 s at 2**24 vs 0.29 s dense; benchmarks/neighbour_memory.py for the large
# clouds). On an accelerator 2**24 keeps each kernel large enough for launch overhead not to
# matter.
CPU_CHUNK_ELEMENTS = 2**24
DEVICE_CHUNK_ELEMENTS = 2**24
_chunk_elements: int | None = None  # None: the device's default above


def _check_xyz(name: str, xyz: Tensor) -> None:
    """Raise ValueError unless ``xyz`` is a floating (B, N, 3) tensor with N >= 1."""
    if not isinstance(xyz, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(xyz).__name__}")
    if xyz.dim() != 3 or xyz.shape[-1] != 3:
        raise ValueError(f"{name} must have shape (B, N, 3), got {tuple(xyz.shape)}")
    if not xyz.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {xyz.dtype}")
    if xyz.shape[1] < 1:
        raise ValueError(f"{name} must hold at least one point, got shape {tuple(xyz.shape)}")


def _check_pair(xyz: Tensor, centres: Tensor) -> None:
    _check_xyz("xyz", xyz)
    _check_xyz("centres", centres)
    if xyz.shape[0] != centres.shape[0]:
        raise ValueError(f"xyz and centres must have the same batch size, got {xyz.shape[0]} and {centres.shape[0]}")
    if xyz.device != centres.device:
        raise ValueError(f"xyz and centres must be on the same device, got {xyz.device} and {centres.device}")


def _count(name: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high], else ValueError (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low or (high is not None and value > high):
        bounds = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be an int {bounds}, got {value!r}")
    return int(value)


def _work_dtype(xyz: Tensor) -> torch.dtype:
    # Distances in half precision lose the ordering FPS and the radius test depend on.
    return torch.promote_types(xyz.dtype, torch.float32)


def neighbour_chunk_elements(device: torch.device | str = "cpu") -> int:
    """The chunk budget of ball_query and knn on ``device``: elements of one (centres x points) block."""
    if _chunk_elements is not None:
        return _chunk_elements
    return CPU_CHUNK_ELEMENTS if torch.device(device).type == "cpu" else DEVICE_CHUNK_ELEMENTS


def set_neighbour_chunk_elements(elements: int | None) -> int | None:
    """Set the chunk budget of ball_query and knn for the whole process; returns the previous setting.

    Args:
        elements: elements (>= 1) of one chunk's (centres x points) distance block on every
            device, or None for the per-device defaults (:data:`CPU_CHUNK_ELEMENTS`,
            :data:`DEVICE_CHUNK_ELEMENTS`). A chunk always holds at least one centre's full
            row of N points, whatever the budget. The results do not depend on it.
    """
    global _chunk_elements
    previous = _chunk_elements
    _chunk_elements = None if elements is None else _count("elements", elements, 1)
    return previous


def _chunks(batch: int, n_centres: int, n_points: int, elements: int) -> list[tuple[slice, slice]]:
    """(batch slice, centre slice) pairs that cover (B, S) with blocks of at most ``elements``
    (chunk x N) distances (at least one centre row).

    Whole clouds are grouped when one cloud's S x N block fits, so small inputs (pre-training's
    1024-point clouds) take one or a few chunks, as the dense version took one pass; a large
    cloud is cut into runs of centres. The plan depends on the shapes alone.
    """
    rows = max(1, elements // n_points)
    if rows >= n_centres:
        clouds = max(1, rows // n_centres)
        return [(slice(b, min(b + clouds, batch)), slice(0, n_centres)) for b in range(0, batch, clouds)]
    return [(slice(b, b + 1), slice(s, min(s + rows, n_centres)))
            for b in range(batch) for s in range(0, n_centres, rows)]


def _planes(points: Tensor, dtype: torch.dtype) -> Tensor:
    """(B, M, 3) -> contiguous (3, B, M) coordinate planes in ``dtype``, detached."""
    return points.detach().to(dtype).permute(2, 0, 1).contiguous()


def _plane_distances(a: Tensor, b: Tensor, out: Tensor | None = None, work: Tensor | None = None) -> Tensor:
    """Squared distances between centre planes ``a`` (3, B, S) and point planes ``b`` (3, B, N): (B, S, N).

    ``dx*dx + dy*dy + dz*dz`` one coordinate at a time (peak (B, S, N), not (B, S, N, 3)), in
    this order: every caller (dense or chunked) gets bit-identical values for a given pair.
    ``out`` and ``work``, (B, S, N) tensors of the work dtype, receive the result and the
    per-axis term when given (the chunked ops reuse them from chunk to chunk: on the CPU a
    fresh block per chunk costs more in page faults than the arithmetic).
    """
    d2 = out if out is not None else a.new_empty(a.shape[1], a.shape[2], b.shape[2])
    torch.sub(a[0, :, :, None], b[0, :, None, :], out=d2).square_()
    for axis in (1, 2):
        term = a[axis, :, :, None] - b[axis, :, None, :] if work is None else \
            torch.sub(a[axis, :, :, None], b[axis, :, None, :], out=work)
        d2.add_(term.square_())
    return d2


def _block(buffer: Tensor, shape: tuple[int, ...]) -> Tensor:
    """A contiguous ``shape`` view of the start of a flat work ``buffer``."""
    return buffer[:math.prod(shape)].view(shape)


class _Workspace:
    """The flat work buffers of one chunked ball_query / knn call, sized for its largest chunk."""

    def __init__(self, plan: list[tuple[slice, slice]], n_points: int, device: torch.device) -> None:
        self.size = max((rows.stop - rows.start) * (cols.stop - cols.start) for rows, cols in plan) * n_points
        self.device = device
        self._buffers: dict[torch.dtype, list[Tensor]] = {}

    def get(self, dtype: torch.dtype, shape: tuple[int, ...], slot: int = 0) -> Tensor:
        """Work tensor number ``slot`` of ``dtype``, as a ``shape`` view (allocated on first use)."""
        buffers = self._buffers.setdefault(dtype, [])
        while len(buffers) <= slot:
            buffers.append(torch.empty(self.size, dtype=dtype, device=self.device))
        return _block(buffers[slot], shape)


def squared_distances(xyz: Tensor, centres: Tensor) -> Tensor:
    """Exact squared Euclidean distances between every centre and every point.

    Computed as ``dx*dx + dy*dy + dz*dz`` (as the CUDA kernels do), not through the
    ``|a|^2 + |b|^2 - 2ab`` expansion that ``torch.cdist`` switches to on large inputs, whose
    cancellation error can move points across a ball's boundary.

    Args:
        xyz: (B, N, 3) points.
        centres: (B, S, 3) query centres.

    Returns:
        (B, S, N) squared distances, in at least float32, without gradient.
    """
    _check_pair(xyz, centres)
    dtype = _work_dtype(xyz)
    with torch.no_grad():
        return _plane_distances(_planes(centres, dtype), _planes(xyz, dtype))


def farthest_point_sample(
    xyz: Tensor, n_samples: int, start: str | int = 0, generator: torch.Generator | None = None
) -> Tensor:
    """Iterative farthest point sampling, O(S*N) time with a running min-distance tensor.

    Args:
        xyz: (B, N, 3) points.
        n_samples: S, the number of points to pick, 1 <= S <= N.
        start: index of the first point of every cloud (0 by default, as the CUDA kernel),
            or ``"random"`` for a uniformly random first point per cloud.
        generator: random generator for ``start="random"`` (on xyz's device).

    Returns:
        (B, S) long indices into N. They are distinct unless the cloud holds fewer than S
        distinct positions, in which case duplicates of already chosen points are picked
        (as by the CUDA kernel).
    """
    _check_xyz("xyz", xyz)
    batch, n_points, _ = xyz.shape
    n_samples = _count("n_samples", n_samples, 1, n_points)
    device = xyz.device
    if isinstance(start, str):
        if start != "random":
            raise ValueError(f"start must be an int index or 'random', got {start!r}")
        current = torch.randint(n_points, (batch,), device=device, generator=generator)
    elif isinstance(start, Integral) and not isinstance(start, bool):
        if not 0 <= start < n_points:
            raise ValueError(f"start must be an index in [0, N={n_points}), got {start}")
        current = torch.full((batch,), int(start), dtype=torch.long, device=device)
    else:
        raise ValueError(f"start must be an int index or 'random', got {start!r}")

    with torch.no_grad():
        # Coordinate planes (3, B, N): the per-step distance is then three contiguous
        # element-wise passes, several times faster on CPU than a sum over a last dim of 3.
        planes = xyz.detach().to(_work_dtype(xyz)).permute(2, 0, 1).contiguous()
        if planes.is_cuda and _fps_cuda_graphs and not torch.cuda.is_current_stream_capturing():
            return _fps_on_graph(planes, current, n_samples)
        return _fps_eager(planes, current, n_samples)


def _fps_eager(planes: Tensor, current: Tensor, n_samples: int) -> Tensor:
    """The FPS loop: planes (3, B, N), first picks (B,) -> (B, S) picks."""
    batch, n_points = planes.shape[1:]
    device = planes.device
    rows = torch.arange(batch, device=device)
    chosen = torch.empty(batch, n_samples, dtype=torch.long, device=device)
    min_d2 = torch.full((batch, n_points), float("inf"), dtype=planes.dtype, device=device)
    # Two (B, N) work tensors reused by every step: on the CPU, fresh ones above malloc's mmap
    # threshold (~128 KB: 32k points) cost a page fault per page at every step.
    d2, term = torch.empty_like(min_d2), torch.empty_like(min_d2)
    for i in range(n_samples):
        chosen[:, i] = current
        centre = planes[:, rows, current]  # (3, B)
        torch.sub(planes[0], centre[0, :, None], out=d2).square_()
        d2.add_(torch.sub(planes[1], centre[1, :, None], out=term).square_())
        d2.add_(torch.sub(planes[2], centre[2, :, None], out=term).square_())
        torch.minimum(min_d2, d2, out=min_d2)
        # argmax returns the first maximal index: the deterministic tie rule.
        current = min_d2.argmax(dim=1)
    return chosen


# ----------------------------------------------------------------------------------------
# FPS on CUDA from captured graphs
# ----------------------------------------------------------------------------------------

_FPS_GRAPH_STEPS = 64  # FPS steps per captured graph, replayed ceil(S / 64) times
_FPS_GRAPH_CACHE = 16  # graphs kept, one per (B, N, dtype, device); 4 per whole-room test room
# Off until the `cuda` tests of tests/test_ops.py have run on a GPU: written without one.
_fps_cuda_graphs = False
_fps_graphs: OrderedDict[tuple[int, int, torch.dtype, torch.device], _FPSGraph] = OrderedDict()
_fps_lock = threading.Lock()


def set_fps_cuda_graphs(enabled: bool) -> bool:
    """Let FPS on CUDA replay captured graphs or run the eager loop (the default); returns the
    previous setting. Both give the same picks; the CPU always runs the eager loop."""
    global _fps_cuda_graphs
    previous, _fps_cuda_graphs = _fps_cuda_graphs, bool(enabled)
    return previous


class _FPSGraph:
    """:func:`_fps_eager`'s loop for one (B, N, dtype, device), captured as a CUDA graph.

    Eager FPS launches about ten tiny kernels per pick from Python, so on a GPU it is bound
    by launch overhead (S = 6000 picks for a 24000-point S3DIS crop, 37500 for a 150k-point
    whole-room sub-cloud). Here ``_FPS_GRAPH_STEPS`` steps are captured once, on static
    buffers, and the graph is replayed until S picks are made. The steps run the eager loop's
    kernels on the same values (the centre is gathered instead of indexed, the pick is
    written at a step counter kept on the device), so the picks are identical. A replay may
    run past S (at most ``_FPS_GRAPH_STEPS - 1`` extra steps, written into spare columns of
    ``chosen``); the extra picks are dropped. All shapes are fixed, so nothing waits for the
    device except the capture of a new shape (``torch.cuda.graph`` synchronises).

    With ``capture=False`` (tests, on any device) the same steps run eagerly instead of the
    replays: the loop's logic can be checked without a GPU.
    """

    def __init__(self, batch: int, n_points: int, dtype: torch.dtype, device: torch.device,
                 capture: bool = True) -> None:
        self.steps = _FPS_GRAPH_STEPS
        self.graph: torch.cuda.CUDAGraph | None = None
        # Plain tensors even if the caller is under inference_mode: they are updated in place
        # by later calls, which inference tensors would refuse outside inference mode.
        with torch.inference_mode(False), torch.no_grad():
            self.planes = torch.zeros(3, batch, n_points, dtype=dtype, device=device)
            self.min_d2 = torch.full((batch, n_points), float("inf"), dtype=dtype, device=device)
            self.current = torch.zeros(batch, dtype=torch.long, device=device)
            self.step = torch.zeros(1, 1, dtype=torch.long, device=device)  # the next pick's column
            self.chosen = torch.zeros(batch, n_points + self.steps, dtype=torch.long, device=device)
            if capture:
                self._capture(device)

    def _capture(self, device: torch.device) -> None:
        self.done = torch.cuda.Event()
        self.graph = torch.cuda.CUDAGraph()
        with torch.autocast("cuda", enabled=False):
            # Warm up on a side stream before capturing, as torch.cuda.graphs asks.
            stream = torch.cuda.current_stream(device)
            side = torch.cuda.Stream(device)
            side.wait_stream(stream)
            with torch.cuda.stream(side):
                self._advance(1)
            stream.wait_stream(side)
            # thread_local: CUDA calls of other threads (a DataLoader's pin-memory thread) do
            # not invalidate the capture.
            with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
                self._advance(self.steps)

    def _advance(self, count: int) -> None:
        """``count`` FPS steps on the static buffers (eagerly, or into the graph being captured)."""
        batch = self.current.shape[0]
        column = self.step.expand(batch, 1)
        for _ in range(count):
            self.chosen.scatter_(1, column, self.current[:, None])
            centre = self.planes.gather(2, self.current.view(1, batch, 1).expand(3, batch, 1))  # (3, B, 1)
            d2 = (self.planes[0] - centre[0]).square_()
            d2.add_((self.planes[1] - centre[1]).square_())
            d2.add_((self.planes[2] - centre[2]).square_())
            torch.minimum(self.min_d2, d2, out=self.min_d2)
            torch.argmax(self.min_d2, dim=1, out=self.current)
            self.step.add_(1)

    def run(self, planes: Tensor, current: Tensor, n_samples: int) -> Tensor:
        """planes (3, B, N), first picks (B,) -> (B, S) picks, queued on the current stream."""
        if self.graph is not None:
            stream = torch.cuda.current_stream(planes.device)
            stream.wait_event(self.done)  # a previous run's clone, perhaps on another stream
        self.planes.copy_(planes)
        self.min_d2.fill_(float("inf"))
        self.current.copy_(current)
        self.step.zero_()
        for _ in range(math.ceil(n_samples / self.steps)):
            if self.graph is not None:
                self.graph.replay()
            else:
                self._advance(self.steps)
        chosen = self.chosen[:, :n_samples].clone()
        if self.graph is not None:
            self.done.record(stream)
        return chosen


def _fps_on_graph(planes: Tensor, current: Tensor, n_samples: int) -> Tensor:
    """:func:`_fps_eager`'s result from the cached graph of planes' (B, N, dtype, device),
    captured on first use. One run at a time: the graph's buffers are shared."""
    key = (planes.shape[1], planes.shape[2], planes.dtype, planes.device)
    with _fps_lock, torch.cuda.device(planes.device):
        graph = _fps_graphs.get(key)
        if graph is None:
            graph = _FPSGraph(planes.shape[1], planes.shape[2], planes.dtype, planes.device)
            # Evict after capturing: the capture synchronised the device, so no replay of an
            # evicted graph is still running when its memory is released.
            while len(_fps_graphs) >= _FPS_GRAPH_CACHE:
                _fps_graphs.popitem(last=False)
            _fps_graphs[key] = graph
        else:
            _fps_graphs.move_to_end(key)
        return graph.run(planes, current, n_samples)


def _chunk_budget(chunk_elements: int | None, device: torch.device) -> int:
    if chunk_elements is None:
        return neighbour_chunk_elements(device)
    return _count("chunk_elements", chunk_elements, 1)


def ball_query(radius: float, n_samples: int, xyz: Tensor, centres: Tensor, *,
               chunk_elements: int | None = None) -> Tensor:
    """Indices of up to K points within ``radius`` of every centre, padded to K.

    Args:
        radius: ball radius (> 0); a point belongs to the ball when its squared distance is
            strictly below ``radius**2``.
        n_samples: K (>= 1); K may exceed N, the padding then fills the rest.
        xyz: (B, N, 3) points to group.
        centres: (B, S, 3) ball centres.
        chunk_elements: elements of one chunk's (centres x N) distance block; None for the
            module's budget (:func:`set_neighbour_chunk_elements`). The result does not depend on it.

    Returns:
        (B, S, K) long indices into N: the first K points inside the ball in index order,
        the remaining slots filled with the first of them; a centre with no point inside
        gets its nearest point (the first on ties) in every slot.
    """
    if not radius > 0:
        raise ValueError(f"radius must be positive, got {radius!r}")
    n_samples = _count("n_samples", n_samples, 1)
    _check_pair(xyz, centres)
    budget = _chunk_budget(chunk_elements, xyz.device)
    batch, n_points, _ = xyz.shape
    n_centres = centres.shape[1]
    take = min(n_samples, n_points)
    device, dtype = xyz.device, _work_dtype(xyz)
    idx = torch.empty(batch, n_centres, n_samples, dtype=torch.long, device=device)
    plan = _chunks(batch, n_centres, n_points, budget)
    if not plan:  # B = 0
        return idx
    work = _Workspace(plan, n_points, device)
    with torch.no_grad():
        a, b = _planes(centres, dtype), _planes(xyz, dtype)
        # int32 keys halve the memory traffic of the (chunk, N) passes.
        order = torch.arange(n_points, dtype=torch.int32, device=device)
        outside = torch.full((), n_points, dtype=torch.int32, device=device)  # a fill, not a host copy
        for rows, cols in plan:
            centre_planes, point_planes = a[:, rows, cols], b[:, rows]
            shape = (centre_planes.shape[1], centre_planes.shape[2], n_points)  # (b, s, N)
            d2 = _plane_distances(centre_planes, point_planes, work.get(dtype, shape, 0), work.get(dtype, shape, 1))
            inside = torch.lt(d2, radius * radius, out=work.get(torch.bool, shape))
            # Points outside get key N, so the k smallest keys are the first k inside in index
            # order: topk is O(N log K) per centre where a full sort would be O(N log N).
            keys = torch.where(inside, order, outside, out=work.get(torch.int32, shape))
            found = keys.topk(take, dim=-1, largest=False, sorted=True).values.long()  # (b, s, take)
            # The nearest point (argmin: the first on ties) stands in for an empty ball. It is
            # computed for every chunk rather than behind a test of whether any ball is empty,
            # which would make the host wait for the device.
            first = found[..., :1]
            first = torch.where(first == n_points, d2.argmin(dim=-1, keepdim=True), first)
            idx[rows, cols, :take] = torch.where(found == n_points, first, found)
            if take < n_samples:
                idx[rows, cols, take:] = first
    return idx


def knn(k: int, xyz: Tensor, centres: Tensor, *, chunk_elements: int | None = None) -> tuple[Tensor, Tensor]:
    """The k nearest points of every centre.

    Args:
        k: number of neighbours, 1 <= k <= N.
        xyz: (B, N, 3) points.
        centres: (B, S, 3) query centres.
        chunk_elements: elements of one chunk's (centres x N) distance block; None for the
            module's budget (:func:`set_neighbour_chunk_elements`). The result does not depend on it.

    Returns:
        dist: (B, S, k) Euclidean distances, ascending (``topk``'s order, also among ties),
            in at least float32, without gradient.
        idx: (B, S, k) long indices into N.
    """
    _check_pair(xyz, centres)
    k = _count("k", k, 1, xyz.shape[1])
    budget = _chunk_budget(chunk_elements, xyz.device)
    batch, n_points, _ = xyz.shape
    n_centres = centres.shape[1]
    device, dtype = xyz.device, _work_dtype(xyz)
    values = torch.empty(batch, n_centres, k, dtype=dtype, device=device)
    idx = torch.empty(batch, n_centres, k, dtype=torch.long, device=device)
    plan = _chunks(batch, n_centres, n_points, budget)
    if not plan:  # B = 0
        return values, idx
    work = _Workspace(plan, n_points, device)
    with torch.no_grad():
        a, b = _planes(centres, dtype), _planes(xyz, dtype)
        for rows, cols in plan:
            centre_planes, point_planes = a[:, rows, cols], b[:, rows]
            shape = (centre_planes.shape[1], centre_planes.shape[2], n_points)  # (b, s, N)
            d2 = _plane_distances(centre_planes, point_planes, work.get(dtype, shape, 0), work.get(dtype, shape, 1))
            # topk works row by row, so a chunk's rows come out as they would from the whole
            # (B, S, N) matrix, ties included.
            chunk_values, chunk_idx = d2.topk(k, dim=-1, largest=False, sorted=True)
            values[rows, cols] = chunk_values
            idx[rows, cols] = chunk_idx
    return values.clamp_min_(0).sqrt_(), idx


def gather_points(features: Tensor, idx: Tensor, channels_first: bool = False) -> Tensor:
    """Pick per-batch rows of ``features`` by index (differentiable in ``features``).

    Args:
        features: (B, N, C), or (B, C, N) with ``channels_first=True``. The layout is an
            argument, not guessed from the shape, since N may equal C.
        idx: (B, S) or (B, S, K) (any trailing shape) long indices into N.
        channels_first: layout of ``features`` and of the result.

    Returns:
        (B, *idx.shape[1:], C), or (B, C, *idx.shape[1:]) with ``channels_first=True``.
    """
    if not isinstance(features, Tensor) or features.dim() != 3:
        shape = tuple(features.shape) if isinstance(features, Tensor) else type(features).__name__
        raise ValueError(f"features must be a 3-D tensor (B, N, C) or (B, C, N), got {shape}")
    if not isinstance(idx, Tensor) or idx.dim() < 2:
        shape = tuple(idx.shape) if isinstance(idx, Tensor) else type(idx).__name__
        raise ValueError(f"idx must be a (B, S, ...) index tensor, got {shape}")
    if idx.dtype != torch.long:
        raise ValueError(f"idx must be torch.long, got {idx.dtype}")
    if idx.shape[0] != features.shape[0]:
        raise ValueError(f"features and idx must have the same batch size, got {features.shape[0]} and {idx.shape[0]}")
    batch, rest = idx.shape[0], idx.shape[1:]
    flat = idx.reshape(batch, -1)
    if channels_first:
        channels = features.shape[1]
        out = features.gather(2, flat[:, None, :].expand(-1, channels, -1))
        return out.reshape(batch, channels, *rest)
    n_points, channels = features.shape[1], features.shape[2]
    # Whole-row copies through index_select on the flattened batch run about twice as fast
    # on CPU as an element-wise gather with an expanded index (same values and gradients).
    offsets = torch.arange(batch, device=idx.device)[:, None] * n_points
    out = features.reshape(batch * n_points, channels).index_select(0, (flat + offsets).reshape(-1))
    return out.reshape(batch, *rest, channels)
