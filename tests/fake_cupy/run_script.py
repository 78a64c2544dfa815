"""Run a step script (train.py, evaluate.py) with the NumPy stand-in for CuPy and its small grids.

    PYTHONPATH=tests/fake_cupy:workflow python tests/fake_cupy/run_script.py workflow/scripts/train.py ... --device gpu
"""

import runpy
import sys

import fake_cupy_grids  # noqa: F401 - small blocks and grids, so the CPU emulator keeps up

script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
