"""The state and batches the GPU tests compare on, shared with benchmarks/gpu_probe.py's accuracy probe."""

import numpy as np
from scratchcnn import model as cnn


def random_state(arch, seed):
    """He weights plus random BN scales, shifts, running statistics and small biases."""
    params, bn = cnn.init_params(arch, seed)
    rng = np.random.default_rng(seed + 100)
    for i in (1, 2):
        f = params[f"gamma{i}"].shape[0]
        params[f"gamma{i}"] = (0.5 + rng.random(f)).astype(np.float32)
        params[f"beta{i}"] = rng.normal(0, 0.3, f).astype(np.float32)
        params[f"b{i}"] = rng.normal(0, 0.1, f).astype(np.float32)
        bn[f"running_mean{i}"] = rng.normal(0, 0.5, f).astype(np.float32)
        bn[f"running_var{i}"] = (0.5 + rng.random(f)).astype(np.float32)
    params["b3"] = rng.normal(0, 0.1, params["b3"].shape).astype(np.float32)
    return params, bn


def batch(n, seed):
    rng = np.random.default_rng(seed)
    return rng.random((n, 32, 32, 3), dtype=np.float32), rng.integers(0, 10, n)
