"""The neighbour ops of picat/models/ops.py against naive brute-force references written here:
farthest point sampling, ball query, k nearest neighbours, squared distances and gathers; the
chunked ball query and kNN against the dense versions they replaced (kept below as references),
with the bound on their working memory; FPS's CUDA-graph path against its eager loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import picat.models.ops as ops
from picat.models.ops import ball_query, farthest_point_sample, gather_points, knn, squared_distances

# ----------------------------------------------------------------------------- references


def fps_reference(xyz: np.ndarray, n_samples: int, start: int = 0) -> np.ndarray:
    """Textbook FPS on one cloud (N, 3): the point farthest from the chosen set, first on ties."""
    chosen = [start]
    min_d2 = np.full(len(xyz), np.inf)
    for _ in range(n_samples - 1):
        min_d2 = np.minimum(min_d2, ((xyz - xyz[chosen[-1]]) ** 2).sum(-1))
        chosen.append(int(np.argmax(min_d2)))
    return np.array(chosen)


def ball_query_reference(radius: float, k: int, xyz: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """The CUDA kernel's rule, one centre at a time; nearest point where the ball is empty."""
    out = np.empty((len(centres), k), dtype=np.int64)
    for s, centre in enumerate(centres):
        d2 = ((xyz - centre) ** 2).sum(-1)
        inside = [j for j in range(len(xyz)) if d2[j] < radius * radius][:k]
        if not inside:
            inside = [int(np.argmin(d2))]
        out[s] = inside + [inside[0]] * (k - len(inside))
    return out


def dense_ball_query_reference(radius: float, n_samples: int, xyz: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """picat's ball query before chunking (commit 2cc5909), over the whole (B, S, N) matrix."""
    d2 = squared_distances(xyz, centres)
    n_points = xyz.shape[1]
    inside = d2 < radius * radius
    order = torch.arange(n_points, dtype=torch.int32, device=xyz.device)
    keys = torch.where(inside, order, n_points)
    take = min(n_samples, n_points)
    idx = keys.topk(take, dim=-1, largest=False, sorted=True).values.long()
    first = idx[..., :1]
    empty = first == n_points
    if bool(empty.any()):
        first = torch.where(empty, d2.argmin(dim=-1, keepdim=True), first)
    idx = torch.where(idx == n_points, first, idx)
    if take < n_samples:
        idx = torch.cat([idx, first.expand(-1, -1, n_samples - take)], dim=-1)
    return idx


def dense_knn_reference(k: int, xyz: torch.Tensor, centres: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """picat's kNN before chunking (commit 2cc5909), over the whole (B, S, N) matrix."""
    values, idx = squared_distances(xyz, centres).topk(k, dim=-1, largest=False, sorted=True)
    return values.clamp_min_(0).sqrt_(), idx


def rand_points(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=generator, dtype=dtype) * 2 - 1


def grid_points(batch: int, n: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, N, 3) points drawn with replacement from a 4 x 4 x 4 grid of step 0.25: duplicated
    points and many exactly equal distances (every value is exact in binary floating point)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 4, (batch, n, 3), generator=generator).to(dtype) * 0.25


# ----------------------------------------------------------------------------- ops


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fps_matches_reference(dtype: torch.dtype) -> None:
    xyz = rand_points(3, 50, 3, dtype=dtype)
    idx = farthest_point_sample(xyz, 20)
    assert idx.shape == (3, 20) and idx.dtype == torch.long
    for b in range(3):
        np.testing.assert_array_equal(idx[b].numpy(), fps_reference(xyz[b].numpy(), 20))
    idx = farthest_point_sample(xyz, 20, start=7)
    np.testing.assert_array_equal(idx[1].numpy(), fps_reference(xyz[1].numpy(), 20, start=7))


def test_fps_covers_every_point_and_random_start() -> None:
    xyz = rand_points(2, 30, 3)
    idx = farthest_point_sample(xyz, np.int64(30))  # numpy integers are counts too
    assert all(sorted(row.tolist()) == list(range(30)) for row in idx)  # a permutation
    first = farthest_point_sample(xyz, 5, start="random", generator=torch.Generator().manual_seed(3))
    again = farthest_point_sample(xyz, 5, start="random", generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, again)
    for b in range(2):
        np.testing.assert_array_equal(first[b].numpy(), fps_reference(xyz[b].numpy(), 5, start=int(first[b, 0])))


def test_ball_query_matches_reference() -> None:
    xyz = rand_points(2, 60, 3, seed=1)
    centres = torch.cat([xyz[:, :10], rand_points(2, 5, 3, seed=2) * 3], dim=1)  # some far outside
    for radius, k in [(0.3, 4), (0.6, 16), (0.05, 3), (2.0, 70)]:
        idx = ball_query(radius, k, xyz, centres)
        assert idx.shape == (2, 15, k) and idx.dtype == torch.long
        for b in range(2):
            ref = ball_query_reference(radius, k, xyz[b].numpy(), centres[b].numpy())
            np.testing.assert_array_equal(idx[b].numpy(), ref)


def test_ball_query_padding_boundary_and_empty_ball() -> None:
    # Points on the x axis at 0, 0.25, 0.5, ..., 1.75 (exact in binary floating point).
    xyz = torch.zeros(1, 8, 3)
    xyz[0, :, 0] = torch.arange(8) * 0.25
    centres = torch.tensor([[[0.5, 0.0, 0.0], [0.6, 0.0, 0.0], [9.0, 0.0, 0.0], [-3.0, 1.0, 0.0]]])
    idx = ball_query(0.25, 5, xyz, centres)[0].tolist()
    assert idx[0] == [2, 2, 2, 2, 2]  # 0.25 and 0.75 lie exactly on the sphere: outside (d2 < r2 is strict)
    assert idx[1] == [2, 3, 2, 2, 2]  # two inside, padded with the first
    assert idx[2] == [7] * 5  # nothing inside: the nearest point
    assert idx[3] == [0] * 5
    assert ball_query(0.3, 2, xyz, centres)[0, 1].tolist() == [2, 3]  # truncated to K in index order


def test_knn_and_squared_distances_match_brute_force() -> None:
    xyz = rand_points(2, 40, 3, seed=4)
    centres = rand_points(2, 7, 3, seed=5)
    d2 = squared_distances(xyz, centres)
    ref = ((centres[:, :, None, :].double() - xyz[:, None, :, :].double()) ** 2).sum(-1)
    torch.testing.assert_close(d2.double(), ref, rtol=1e-6, atol=1e-6)
    dist, idx = knn(5, xyz, centres)
    assert dist.shape == idx.shape == (2, 7, 5)
    order = np.argsort(ref.numpy(), axis=-1, kind="stable")[..., :5]
    np.testing.assert_array_equal(idx.numpy(), order)
    torch.testing.assert_close(dist.double(), ref.gather(-1, idx).sqrt(), rtol=1e-5, atol=1e-6)
    assert torch.all(dist[..., 1:] >= dist[..., :-1])


# ----------------------------------------------------------------------------- chunked neighbour search


def tie_cases() -> tuple[torch.Tensor, torch.Tensor]:
    """B = 3 clouds of 50 grid points (duplicates, equal distances) and 20 centres per cloud:
    points of the cloud (a duplicate's ball holds both copies), grid nodes, and centres far
    outside (empty balls whose nearest points tie)."""
    xyz = grid_points(3, 50, seed=20)
    centres = torch.cat([xyz[:, :8], grid_points(3, 8, seed=21), grid_points(3, 4, seed=22) + 5.0], dim=1)
    return xyz, centres


# Chunk budgets in elements: one centre per chunk (the minimum, also below one row of N), runs
# of 7 centres (7 does not divide S = 20), S - 1 centres (a last chunk of one), one whole cloud,
# two clouds (3 clouds: a last chunk of one cloud), everything at once, the default.
CHUNKS = [1, 7 * 50, 19 * 50, 20 * 50, 2 * 20 * 50, 10**9, None]


@pytest.mark.parametrize("chunk_elements", CHUNKS)
def test_chunked_ball_query_matches_dense_and_brute_force(chunk_elements: int | None) -> None:
    xyz, centres = tie_cases()
    # 0.25 puts grid neighbours exactly on the sphere (outside), 0.3 inside; K = 70 > N pads.
    for radius, k in [(0.25, 4), (0.3, 16), (0.6, 3), (0.05, 5), (2.0, 70)]:
        idx = ball_query(radius, k, xyz, centres, chunk_elements=chunk_elements)
        assert idx.shape == (3, 20, k) and idx.dtype == torch.long
        assert torch.equal(idx, dense_ball_query_reference(radius, k, xyz, centres))
        for b in range(3):
            np.testing.assert_array_equal(idx[b].numpy(), ball_query_reference(radius, k, xyz[b].numpy(),
                                                                               centres[b].numpy()))
    # Random clouds, float64 and float16 inputs (distances in float64 and float32).
    for dtype in (torch.float64, torch.float16):
        points, middles = rand_points(2, 40, 3, seed=23, dtype=dtype), rand_points(2, 13, 3, seed=24, dtype=dtype)
        assert torch.equal(ball_query(0.4, 8, points, middles, chunk_elements=chunk_elements),
                           dense_ball_query_reference(0.4, 8, points, middles))


@pytest.mark.parametrize("chunk_elements", CHUNKS)
def test_chunked_knn_matches_dense_and_brute_force(chunk_elements: int | None) -> None:
    xyz, centres = tie_cases()
    for k in (1, 3, 10, 50):
        dist, idx = knn(k, xyz, centres, chunk_elements=chunk_elements)
        ref_dist, ref_idx = dense_knn_reference(k, xyz, centres)
        assert dist.shape == idx.shape == (3, 20, k) and idx.dtype == torch.long
        assert torch.equal(idx, ref_idx) and torch.equal(dist, ref_dist)  # ties resolved alike
        # Brute force, up to the order among ties: the k smallest distances, at distinct indices
        # whose distances are the ones returned.
        # Grid coordinates: the squared distances are exact in float32 too.
        d2 = ((centres[:, :, None, :].double() - xyz[:, None, :, :].double()) ** 2).sum(-1).float()
        expected = d2.sort(dim=-1).values[..., :k].sqrt()
        assert torch.equal(dist, expected)
        assert torch.equal(d2.gather(-1, idx).sqrt(), expected)
        assert all(len(set(row)) == k for row in idx.reshape(-1, k).tolist())
    # Random clouds (no ties): the stable argsort's indices exactly.
    points, middles = rand_points(2, 40, 3, seed=25), rand_points(2, 13, 3, seed=26)
    dist, idx = knn(6, points, middles, chunk_elements=chunk_elements)
    d2 = ((middles[:, :, None, :].double() - points[:, None, :, :].double()) ** 2).sum(-1)
    np.testing.assert_array_equal(idx.numpy(), np.argsort(d2.numpy(), axis=-1, kind="stable")[..., :6])
    assert torch.equal(dist, dense_knn_reference(6, points, middles)[0])


def test_chunk_plan_covers_every_centre_once() -> None:
    for batch, n_centres, n_points, elements in [(3, 20, 50, 1), (3, 20, 50, 350), (3, 20, 50, 2000),
                                                 (5, 7, 11, 200), (1, 1, 4, 1), (2, 9, 9, 10**9)]:
        covered = torch.zeros(batch, n_centres, dtype=torch.long)
        for rows, cols in ops._chunks(batch, n_centres, n_points, elements):
            covered[rows, cols] += 1
            block = (rows.stop - rows.start) * (cols.stop - cols.start) * n_points
            assert block <= max(elements, n_points)  # one centre's row at least
        assert torch.equal(covered, torch.ones_like(covered))


def test_neighbour_search_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a budget of 4 rows, no distance block of the stride-1 case (S = N) holds more
    than 4 x N elements: the dense versions built (B, S, N) at once."""
    blocks: list[tuple[int, ...]] = []
    plane_distances = ops._plane_distances

    def spy(a: torch.Tensor, b: torch.Tensor, *work: torch.Tensor) -> torch.Tensor:
        assert all(buffer.numel() <= 4 * 300 for buffer in work)  # reused chunk-sized buffers
        d2 = plane_distances(a, b, *work)
        blocks.append(tuple(d2.shape))
        return d2

    def dense(*args: object) -> torch.Tensor:
        raise AssertionError("ball_query/knn must not build the dense (B, S, N) matrix")

    monkeypatch.setattr(ops, "_plane_distances", spy)
    monkeypatch.setattr(ops, "squared_distances", dense)
    xyz = rand_points(2, 300, 3, seed=27)
    budget = 4 * 300
    ball_query(0.2, 16, xyz, xyz, chunk_elements=budget)
    assert len(blocks) == 2 * 75 and all(shape == (1, 4, 300) for shape in blocks)
    blocks.clear()
    knn(3, xyz[:, :75], xyz, chunk_elements=budget // 4)  # the decoder's case: N / 4 coarse points
    assert len(blocks) == 2 * 75 and all(shape == (1, 4, 75) for shape in blocks)
    # The process-wide setting and the per-device defaults.
    assert ops.neighbour_chunk_elements("cpu") == ops.CPU_CHUNK_ELEMENTS
    assert ops.neighbour_chunk_elements("cuda") == ops.DEVICE_CHUNK_ELEMENTS
    previous = ops.set_neighbour_chunk_elements(budget)
    try:
        assert ops.neighbour_chunk_elements("cpu") == ops.neighbour_chunk_elements("cuda") == budget
        blocks.clear()
        ball_query(0.2, 16, xyz, xyz)
        knn(3, xyz, xyz)
        assert len(blocks) == 2 * 2 * 75 and max(np.prod(shape) for shape in blocks) == budget
    finally:
        ops.set_neighbour_chunk_elements(previous)
    assert ops.neighbour_chunk_elements("cpu") == ops.CPU_CHUNK_ELEMENTS
    with pytest.raises(ValueError, match="chunk_elements"):
        knn(3, xyz, xyz, chunk_elements=0)
    with pytest.raises(ValueError, match="elements"):
        ops.set_neighbour_chunk_elements(-1)


def test_neighbour_ops_never_read_tensor_values_on_the_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """No bool()/item()/float()/int()/tolist() of a tensor inside the ops (on CUDA each would
    make the host wait for the device), even with empty balls and K > N."""

    def refuse(*args: object) -> None:
        raise AssertionError("a tensor's value was read on the host")

    xyz, centres = tie_cases()
    for name in ("__bool__", "item", "__float__", "__int__", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, refuse)
    idx = ball_query(0.3, 70, xyz, centres, chunk_elements=7 * 50)
    knn(5, xyz, centres, chunk_elements=7 * 50)
    farthest_point_sample(xyz, 10)
    monkeypatch.undo()
    assert torch.equal(idx, dense_ball_query_reference(0.3, 70, xyz, centres))


def test_fps_on_the_cpu_never_takes_the_cuda_graph_path(monkeypatch: pytest.MonkeyPatch) -> None:
    def graph(*args: object) -> None:
        raise AssertionError("CUDA graph path taken on the CPU")

    monkeypatch.setattr(ops, "_fps_on_graph", graph)
    monkeypatch.setattr(ops, "_fps_cuda_graphs", True)
    xyz = grid_points(2, 40, seed=28)
    idx = farthest_point_sample(xyz, 40)
    for b in range(2):
        np.testing.assert_array_equal(idx[b].numpy(), fps_reference(xyz[b].numpy(), 40))


def test_fps_graph_steps_match_the_eager_loop_without_capture() -> None:
    """The steps the CUDA graph captures (a gathered centre, the pick written at a step counter
    on the device, replays of 64 steps overshooting S), run eagerly: the eager loop's picks.
    Only the capture and replay themselves need a GPU (test_fps_cuda_graphs_match_the_eager_loop)."""
    cases = [(grid_points(3, 64, seed=30), 64), (grid_points(2, 500, seed=31), 130),
             (rand_points(2, 300, 3, seed=32), 1), (rand_points(1, 200, 3, seed=33, dtype=torch.float64), 128)]
    for xyz, n_samples in cases:
        batch, n_points = xyz.shape[:2]
        planes = ops._planes(xyz, ops._work_dtype(xyz))
        steps = ops._FPSGraph(batch, n_points, planes.dtype, planes.device, capture=False)
        for start in (torch.zeros(batch, dtype=torch.long), torch.arange(batch) + 3):
            eager = ops._fps_eager(planes, start, n_samples)
            assert torch.equal(steps.run(planes, start, n_samples), eager)  # the buffers reused too
        for b in range(batch):
            np.testing.assert_array_equal(eager[b].numpy(), fps_reference(xyz[b].numpy(), n_samples, start=b + 3))


def test_gather_points_layouts_and_gradient() -> None:
    features = torch.randn(2, 6, 4, requires_grad=True)  # (B, N, C)
    idx = torch.tensor([[[0, 5], [5, 5], [1, 2]], [[3, 3], [4, 0], [2, 1]]])  # (B, S, K)
    out = gather_points(features, idx)
    assert out.shape == (2, 3, 2, 4)
    for b in range(2):
        torch.testing.assert_close(out[b], features[b][idx[b]])
    out_cf = gather_points(features.transpose(1, 2), idx[:, :, 0], channels_first=True)
    assert out_cf.shape == (2, 4, 3)
    torch.testing.assert_close(out_cf.transpose(1, 2), out[:, :, 0])
    out.sum().backward()
    counts = torch.stack([torch.bincount(idx[b].flatten(), minlength=6) for b in range(2)]).float()
    torch.testing.assert_close(features.grad, counts[:, :, None].expand(-1, -1, 4))


def test_ops_reject_bad_input() -> None:
    xyz = rand_points(2, 10, 3)
    with pytest.raises(ValueError, match=r"\(B, N, 3\)"):
        farthest_point_sample(xyz[..., :2], 4)
    with pytest.raises(ValueError, match="floating"):
        farthest_point_sample(xyz.long(), 4)
    with pytest.raises(ValueError, match="n_samples.*got 11"):
        farthest_point_sample(xyz, 11)
    with pytest.raises(ValueError, match="n_samples.*got 0"):
        farthest_point_sample(xyz, 0)
    with pytest.raises(ValueError, match="n_samples.*got 2.5"):
        farthest_point_sample(xyz, 2.5)
    with pytest.raises(ValueError, match="'middle'"):
        farthest_point_sample(xyz, 3, start="middle")
    with pytest.raises(ValueError, match="start"):
        farthest_point_sample(xyz, 3, start=10)
    with pytest.raises(ValueError, match="radius"):
        ball_query(0.0, 4, xyz, xyz)
    with pytest.raises(ValueError, match="n_samples"):
        ball_query(0.1, 0, xyz, xyz)
    with pytest.raises(ValueError, match="batch size"):
        ball_query(0.1, 4, xyz, xyz[:1])
    with pytest.raises(ValueError, match="k must.*got 11"):
        knn(11, xyz, xyz)
    with pytest.raises(ValueError, match="torch.long"):
        gather_points(xyz, torch.zeros(2, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="3-D"):
        gather_points(xyz[0], torch.zeros(2, 3, dtype=torch.long))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(),
                    reason="torch.cuda.is_available() is False: CPU/CUDA agreement not checked here")
def test_ops_on_cuda_match_the_cpu() -> None:
    xyz = rand_points(2, 512, 3, seed=14)
    cuda = xyz.cuda()
    assert torch.equal(farthest_point_sample(cuda, 64).cpu(), farthest_point_sample(xyz, 64))
    assert torch.equal(ball_query(0.2, 16, cuda, cuda[:, :64]).cpu(), ball_query(0.2, 16, xyz, xyz[:, :64]))
    assert torch.equal(knn(8, cuda, cuda[:, :64])[1].cpu(), knn(8, xyz, xyz[:, :64])[1])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.cuda.is_available() is False: FPS's CUDA graphs")
def test_fps_cuda_graphs_match_the_eager_loop() -> None:
    """Captured-graph FPS == eager FPS == CPU FPS, with ties (duplicates, equal distances), S not
    a multiple of the captured steps, S = N, random starts, several dtypes, cached graphs reused."""
    cases = [(grid_points(3, 64, seed=30), 64), (grid_points(2, 500, seed=31), 130),
             (rand_points(2, 1000, 3, seed=32), 250), (rand_points(1, 2000, 3, seed=33, dtype=torch.float64), 500),
             (rand_points(2, 1000, 3, seed=34, dtype=torch.float16), 65), (rand_points(2, 1000, 3, seed=35), 1)]

    def random_start(cloud: torch.Tensor, n_samples: int) -> torch.Tensor:
        return farthest_point_sample(cloud, n_samples, start="random", generator=torch.Generator("cuda").manual_seed(1))

    previous = ops.set_fps_cuda_graphs(False)
    try:
        eager = [(farthest_point_sample(xyz.cuda(), n), random_start(xyz.cuda(), n)) for xyz, n in cases]
        ops.set_fps_cuda_graphs(True)
        for (xyz, n_samples), (eager_picks, eager_random) in zip(cases, eager, strict=True):
            cuda = xyz.cuda()
            fast = farthest_point_sample(cuda, n_samples)
            again = farthest_point_sample(cuda, n_samples)  # the cached graph, buffers re-initialised
            assert torch.equal(fast, eager_picks) and torch.equal(again, eager_picks)
            assert torch.equal(random_start(cuda, n_samples), eager_random)
            assert torch.equal(fast.cpu(), farthest_point_sample(xyz, n_samples))
        with torch.inference_mode():  # graphs captured here are reused outside inference mode
            first = farthest_point_sample(rand_points(2, 300, 3, seed=36).cuda(), 75)
        assert torch.equal(farthest_point_sample(rand_points(2, 300, 3, seed=36).cuda(), 75), first)
        assert torch.equal(first.cpu(), farthest_point_sample(rand_points(2, 300, 3, seed=36), 75))
    finally:
        ops.set_fps_cuda_graphs(previous)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.cuda.is_available() is False: CUDA neighbour ops")
def test_neighbour_ops_on_cuda_are_chunked_exactly_and_never_synchronise() -> None:
    xyz, centres = (t.cuda() for t in tie_cases())
    for chunk_elements in CHUNKS:
        assert torch.equal(ball_query(0.3, 70, xyz, centres, chunk_elements=chunk_elements),
                           dense_ball_query_reference(0.3, 70, xyz, centres))
        dist, idx = knn(5, xyz, centres, chunk_elements=chunk_elements)
        ref_dist, ref_idx = dense_knn_reference(5, xyz, centres)
        assert torch.equal(dist, ref_dist)
        # CUDA's topk may order tied neighbours differently from run to run of its algorithms:
        # same distances, and the indices at those distances.
        d2 = squared_distances(xyz, centres)
        assert torch.equal(d2.gather(-1, idx), d2.gather(-1, ref_idx))
    big = rand_points(2, 6000, 3, seed=37).cuda()
    previous = ops.set_fps_cuda_graphs(True)
    try:
        farthest_point_sample(big, 1500)  # capture this shape's graph first: a capture synchronises
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        idx = ball_query(0.1, 32, big, big, chunk_elements=2**20)
        dist, nn_idx = knn(3, big[:, :1500], big, chunk_elements=2**20)
        picks = farthest_point_sample(big, 1500)
        ops.set_fps_cuda_graphs(False)
        eager_picks = farthest_point_sample(big, 1500)
    finally:
        torch.cuda.set_sync_debug_mode("default")
        ops.set_fps_cuda_graphs(previous)
    assert torch.equal(idx.cpu(), ball_query(0.1, 32, big.cpu(), big.cpu()))
    assert torch.equal(nn_idx.cpu(), knn(3, big[:, :1500].cpu(), big.cpu())[1])
    assert torch.equal(picks.cpu(), farthest_point_sample(big.cpu(), 1500))
    assert torch.equal(eager_picks, picks)
