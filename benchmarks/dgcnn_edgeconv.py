"""Time picat's fast DGCNN against the textbook one (tests/dgcnn_reference.py) in one run.

Two workloads, each timed for both models with the same weights and inputs:

* ``forward``: eval mode under ``torch.no_grad()`` (feature extraction, e.g. for the SVM);
* ``fwd+bwd``: train mode forward, backward of a fixed random projection of the global
  feature (a pre-training step without the optimiser, whose cost is negligible here).

Runs alternate between the two models (so drift in machine load hits both alike); each
figure is the median over ``--repeats`` runs after ``--warmup`` runs. The script first prints
how far each model's float32 eval output and train-mode input gradient are from a float64 run
(the two models agree to ~1e-13 in float64; in float32 the textbook one drifts further).

Measured (November 2026, a 2-core AMD EPYC shared with other jobs, load average 3-4; torch
2.14.1, float32, batch 8, 1024 points, k 20, emb_dims 1024, median of 3):

    =========  =========  ========  ========  ========  ===========
    threads    workload   fast      textbook  speed-up  distrib.*
    =========  =========  ========  ========  ========  ===========
    2          forward    1.57 s    3.83 s    x2.4      x2.1
    2          fwd+bwd    4.81 s    11.25 s   x2.3      x1.7
    1          forward    0.92 s    3.38 s    x3.7
    1          fwd+bwd    2.14 s    7.23 s    x3.4
    =========  =========  ========  ========  ========  ===========

    * speed-up over the textbook model of a throw-away variant (separate run) that distributes
      the linear map but then gathers the (B*N*k, O) edges for BatchNorm, LeakyReLU and max,
      without the monotonicity trick: the kept version was 1.7x / 1.6x faster than it.

With two threads on a loaded machine every parallel region waits for the scheduler, which
hurts the fast model (many short memory-bound ops) more than the textbook one (few huge
ones): expect the one-thread ratios, or better, on a quiet machine. What remains in the fast
model: the 512 -> 1024 matmul (~30%), top-k of the kNN (~15%), the max over neighbours
(embedding_bag, ~12%). At toy sizes (a few clouds of 128 points) the fast model's extra
small ops make it no faster, or slower, than the textbook one.

Usage (from the repository root)::

    .venv/bin/python benchmarks/dgcnn_edgeconv.py                       # batch 32, 1024 points, k 20
    .venv/bin/python benchmarks/dgcnn_edgeconv.py --batch 8 --repeats 3  # smaller
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the textbook reference lives beside the tests
sys.path.insert(0, str(REPO))

from dgcnn_reference import ReferenceDGCNN  # noqa: E402

from picat.models.dgcnn import DGCNN, DGCNNConfig  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--points", type=int, default=1024)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--emb-dims", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="e.g. cpu or cuda")
    parser.add_argument("--skip-reference-backward", action="store_true",
                        help="time only the forward of the textbook model (it needs ~0.3 GB per cloud for backward)")
    return parser.parse_args(argv)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def run_double(model: torch.nn.Module, points: torch.Tensor, projection: torch.Tensor, train: bool) -> torch.Tensor:
    """Float64 result of ``model`` (already float64): the input gradient in train mode, else the output."""
    model.train(train)
    inputs = points.double().requires_grad_(train)
    with torch.set_grad_enabled(train):
        output = model(inputs)
        if not train:
            return output
        (output * projection.double()).sum().backward()
    return inputs.grad


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    config = DGCNNConfig(k=args.k, emb_dims=args.emb_dims)
    fast = DGCNN(config).to(device)
    reference = ReferenceDGCNN(config).to(device)
    reference.load_state_dict(fast.state_dict())
    points = torch.randn(args.batch, args.points, 3, device=device)
    projection = torch.randn(args.batch, fast.global_dim, device=device)

    def forward(model: torch.nn.Module) -> Callable[[], object]:
        def run() -> object:
            model.eval()
            with torch.no_grad():
                return model(points)
        return run

    def forward_backward(model: torch.nn.Module) -> Callable[[], object]:
        def run() -> object:
            model.train()
            model.zero_grad(set_to_none=True)
            inputs = points.clone().requires_grad_()
            (model(inputs) * projection).sum().backward()
            return inputs.grad
        return run

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
          f"batch {args.batch}, {args.points} points, k {args.k}, emb_dims {args.emb_dims}, "
          f"median of {args.repeats} after {args.warmup} warm-up")

    # Agreement, against the fast model run in float64 (it equals the textbook one to ~1e-13
    # in float64, see tests/test_dgcnn.py): in float32, the textbook model's batch norm over
    # B*N*k edges drifts more than the fast model's statistics do.
    exact = copy.deepcopy(fast).double()
    grads = {label: forward_backward(model)() for label, model in (("fast", fast), ("textbook", reference))}
    exact_grad = run_double(exact, points, projection, train=True)
    outputs = {label: forward(model)() for label, model in (("fast", fast), ("textbook", reference))}
    exact_output = run_double(exact, points, projection, train=False)
    for label in ("fast", "textbook"):
        grad_error = (grads[label].double() - exact_grad).abs().max().item()
        output_error = (outputs[label].double() - exact_output).abs().max().item()
        print(f"max abs diff to float64, {label}: train-mode input gradient {grad_error:.3g} "
              f"(scale {exact_grad.abs().max().item():.3g}), eval output {output_error:.3g} "
              f"(scale {exact_output.abs().max().item():.3g})")
    grad_diff = (grads["fast"] - grads["textbook"]).abs().max().item()
    output_diff = (outputs["fast"] - outputs["textbook"]).abs().max().item()
    print(f"max abs diff fast vs textbook (float32): input gradient {grad_diff:.3g}, eval output {output_diff:.3g}")
    del exact

    for name, make in (("forward", forward), ("fwd+bwd", forward_backward)):
        runs = {"fast": make(fast), "textbook": make(reference)}
        if name == "fwd+bwd" and args.skip_reference_backward:
            runs.pop("textbook")
        times: dict[str, list[float]] = {label: [] for label in runs}
        for i in range(args.warmup + args.repeats):
            for label, fn in runs.items():  # alternate, so load drift hits both
                elapsed = timed(fn, device)
                if i >= args.warmup:
                    times[label].append(elapsed)
        medians = {label: statistics.median(t) for label, t in times.items()}
        line = ", ".join(f"{label} {m:.3f} s" for label, m in medians.items())
        if len(medians) == 2:
            line += f", speed-up x{medians['textbook'] / medians['fast']:.1f}"
        print(f"{name:8s}: {line}")


if __name__ == "__main__":
    main()
