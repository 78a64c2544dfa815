#!/usr/bin/env bash
# The GPU checks as one prepared script, for a machine with CuPy and a GPU (no Snakemake needed):
# CuPy against NumPy (tests marked gpu), then an epoch per filter count against PyTorch eager,
# with peak GPU memory. Writes its outputs under ${OUT:-benchmarks/runs}.
#   bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-benchmarks/runs}
mkdir -p "$out"
export PYTHONPATH="$PWD/workflow${PYTHONPATH:+:$PYTHONPATH}"
unset CUPY_TF32  # full float32 for the correctness checks
python -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__, \
  cupy.cuda.runtime.getDeviceProperties(0)['name'])" | tee "$out/device.txt"
python -m pytest -q -p no:cacheprovider tests/test_cupy.py 2>&1 | tee "$out/gpu_tests.txt"
python benchmarks/epoch_speed.py --device gpu --filters 32 64 128 256 --batch-size 64 2>&1 | tee "$out/speed_b64.txt"
python benchmarks/epoch_speed.py --device gpu --filters 64 256 --batch-size 256 2>&1 | tee "$out/speed_b256.txt"
