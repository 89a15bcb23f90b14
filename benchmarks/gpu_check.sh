#!/usr/bin/env bash
# The prepared GPU check (issue 13): CUDA-marked tests, pre-training step rates at the paper's
# sizes (fp32+TF32 vs bf16), peak GPU memory, a PointNeXt-S S3DIS step at 24000 points, and the
# tiny demo DAG with the paper suite's GPU settings. One CSV (default
# results/benchmarks/gpu_check.csv); about 5 minutes on one H200. Without CUDA it says so, runs
# the CPU parts and exits 0. Arguments go to benchmarks/gpu_check.py (--help lists them), e.g.
#
#   bash benchmarks/gpu_check.sh --dag-dir .gpucheck/tiny --out /tmp/gpu_check.csv
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
