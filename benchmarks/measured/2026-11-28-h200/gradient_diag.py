"""Throwaway diagnostic run on the H200 on 2026-11-28 (call 1 of the second series, commit 5a115e5,
`python3 gpu_diag.py` from the repository root; its output is gradient_diag.json here): how far NumPy float32
and CuPy float32 gradients each sit from a float64 reference, and cuBLAS float32 products alone."""
import json, os, sys
import numpy as np
sys.path[:0] = ["workflow", "tests"]
from scratchcnn import model as cnn
out = {}
try:
    import cupy as cp
except ImportError:
    cp = None
def rel(a, b):
    a = np.asarray(a if cp is None or isinstance(a, np.ndarray) else cp.asnumpy(a), np.float64)
    b = np.asarray(b if cp is None or isinstance(b, np.ndarray) else cp.asnumpy(b), np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-30))
import importlib.util
spec = importlib.util.spec_from_file_location("tc", "tests/test_cupy.py")
for filters, n in [(256, 64), (64, 64), (256, 7)]:
    arch = cnn.make_arch(filters)
    # same state as tests/test_cupy.py's random_state/batch
    params, bn = cnn.init_params(arch, filters)
    rng = np.random.default_rng(filters + 100)
    for i in (1, 2):
        f = params[f"gamma{i}"].shape[0]
        params[f"gamma{i}"] = (0.5 + rng.random(f)).astype(np.float32)
        params[f"beta{i}"] = rng.normal(0, 0.3, f).astype(np.float32)
        params[f"b{i}"] = rng.normal(0, 0.1, f).astype(np.float32)
        bn[f"running_mean{i}"] = rng.normal(0, 0.5, f).astype(np.float32)
        bn[f"running_var{i}"] = (0.5 + rng.random(f)).astype(np.float32)
    params["b3"] = rng.normal(0, 0.1, params["b3"].shape).astype(np.float32)
    r = np.random.default_rng(n)
    x, y = r.random((n, 32, 32, 3), dtype=np.float32), r.integers(0, 10, n)
    p64 = {k: v.astype(np.float64) for k, v in params.items()}
    b64 = {k: v.astype(np.float64) for k, v in bn.items()}
    g64 = cnn.loss_and_grads(p64, b64, x.astype(np.float64), y, arch, 1e-3, momentum=0.8)[2]
    g32 = cnn.loss_and_grads(params, bn, x, y, arch, 1e-3, momentum=0.8)[2]
    key = f"f{filters}_b{n}"
    out[key] = {"numpy32_vs_64": {k: rel(g64[k], g32[k]) for k in cnn.WEIGHT_NAMES},
                "numpy32_vs_64_gamma1": rel(g64["gamma1"], g32["gamma1"])}
    if cp is not None:
        for mode in ("1", "0"):
            os.environ["SCRATCHCNN_KERNELS"] = mode
            gg = cnn.loss_and_grads({k: cp.asarray(v) for k, v in params.items()},
                                    {k: cp.asarray(v) for k, v in bn.items()},
                                    cp.asarray(x), cp.asarray(y), arch, 1e-3, momentum=0.8)[2]
            out[key][f"cupy32_k{mode}_vs_64"] = {k: rel(g64[k], gg[k]) for k in cnn.WEIGHT_NAMES}
            out[key][f"cupy32_k{mode}_vs_numpy32"] = {k: rel(g32[k], gg[k]) for k in cnn.WEIGHT_NAMES}
    print(key, json.dumps(out[key]), flush=True)
json.dump(out, open(os.path.join(os.environ.get("OUT", "/tmp/h"), "diag.json"), "w"), indent=1)
# cuBLAS float32 GEMM alone, shapes like W1's and W2's gradient products, against float64
g = {"env": {k: v for k, v in os.environ.items() if "TF32" in k or "CUBLAS" in k or k.startswith("CUPY")}}
if cp is not None:
    rng = np.random.default_rng(0)
    for m, k, n2 in [(27, 65536, 256), (27, 65536, 64), (2304, 14400, 256), (27, 448, 256)]:
        a = rng.standard_normal((m, k)).astype(np.float32); b = rng.standard_normal((k, n2)).astype(np.float32)
        ref = a.astype(np.float64) @ b.astype(np.float64)
        g[f"{m}x{k}x{n2}"] = {"cupy": rel(ref, cp.asnumpy(cp.asarray(a) @ cp.asarray(b))),
                              "numpy": rel(ref, a @ b),
                              "cupy_T": rel(ref, cp.asnumpy(cp.asarray(np.ascontiguousarray(a.T)).T @ cp.asarray(b)))}
print(json.dumps(g), flush=True)
json.dump({"grads": out, "gemm": g}, open(os.path.join(os.environ.get("OUT", "/tmp/h"), "diag.json"), "w"), indent=1)
