"""The kernel switch, and the CUDA source compiled by NVRTC where NVRTC is installed (no GPU needed)."""

import numpy as np
import pytest

from scratchcnn import kernels


def test_kernels_only_take_float32_cupy_arrays_and_obey_the_switch(monkeypatch):
    assert not kernels.use(np.zeros(3, np.float32))  # NumPy: the reference code runs
    monkeypatch.delenv("SCRATCHCNN_KERNELS", raising=False)
    assert kernels.enabled()
    monkeypatch.setenv("SCRATCHCNN_KERNELS", "0")
    assert not kernels.enabled()
    monkeypatch.setenv("SCRATCHCNN_KERNELS", "1")
    assert kernels.enabled()


def test_kernel_source_compiles_with_nvrtc():
    nvrtc = pytest.importorskip("cuda.bindings.nvrtc", reason="NVRTC bindings not installed (cuda-bindings)")
    src = kernels.SOURCE.read_bytes()
    err, prog = nvrtc.nvrtcCreateProgram(src, b"kernels.cu", 0, [], [])
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS
    opts = [b"--gpu-architecture=compute_90", b"--std=c++17", f"-DBLOCK={kernels.BLOCK}".encode()]
    (err,) = nvrtc.nvrtcCompileProgram(prog, len(opts), opts)
    _, size = nvrtc.nvrtcGetProgramLogSize(prog)
    log = b" " * size
    nvrtc.nvrtcGetProgramLog(prog, log)
    nvrtc.nvrtcDestroyProgram(prog)
    assert err == nvrtc.nvrtcResult.NVRTC_SUCCESS, log.decode(errors="replace")
    for name in ("sgd_sumsq", "sgd_apply", "softmax_xent", "im2col_pad", "col2im_gather"):
        assert f'extern "C" __global__ void {name}(' in src.decode()
