#!/usr/bin/env bash
# The GPU checks of nplstm's CuPy path, in one go (a few minutes on one NVIDIA GPU):
#   1. the GPU tests: every layer against the NumPy engine (float64 to 1e-10, float32 to 1e-4),
#      the CUDA kernels and the plain-ufunc path, gradient checks on the GPU, a short training run;
#   2. nplstm against torch.nn.LSTM on CUDA (cuDNN), float32: training step, inference and memory
#      on hidden 256/512/1024 x batch 64/256, T 100, printed as a table of ratios.
# It uses the Python packages the machine has (CuPy, torch, pytest, numba) and runs nplstm from this
# tree, installing nothing. Extra arguments go to bench_gpu.py (e.g. --out table.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PY" -c "import cupy, torch; print('CuPy', cupy.__version__, '| torch', torch.__version__, '| CUDA device:', torch.cuda.get_device_name(0))"
echo "== 1. GPU tests"
"$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py
echo "== 2. nplstm (CuPy) against torch.nn.LSTM (cuDNN)"
"$PY" benchmarks/bench_gpu.py "$@"
