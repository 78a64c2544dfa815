"""A NumPy stand-in for CuPy, to run tests/test_cupy.py on a machine without a GPU.

Arrays are an ndarray subclass whose module is ``cupy`` (so scratchcnn takes
its CuPy branches), functions are NumPy's, and ``RawModule`` kernels run on
the CPU through tests/kernel_emulator.h. It checks the CuPy-path code and the
GPU tests' own logic, not CuPy's numerics or speed (reductions are summed in
float64 here, as a stand-in for CuPy's tree sums). Usage, from the repository:

    PYTHONPATH=tests/fake_cupy:workflow python -m pytest -p fake_cupy_grids tests/test_cupy.py
"""

import collections
import ctypes
import functools
import re
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import numpy as _np

ROOT = Path(__file__).resolve().parents[3]
__version__ = "0+fake"

# What would be kernel launches on CuPy, by kind: elementwise operations and matrix products
# ("ufunc"), reductions, copies (fancy indexing, assignments, astype), the CUDA kernels ("raw").
# A count of the code's device operations, not of a GPU's launches (cuBLAS may run several kernels
# for one product): tests/test_fake_gpu.py holds the training step to it.
launches = collections.Counter()


def _host(a):
    # CuPy refuses a host ndarray of any ndim, 0-d included (NumPy scalars and Python numbers pass)
    return isinstance(a, _np.ndarray) and not isinstance(a, ndarray)


class ndarray(_np.ndarray):
    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        # CuPy refuses host arrays in its operations (TypeError: Unsupported type numpy.ndarray):
        # so does this stand-in, where NumPy would quietly compute on the host
        if any(_host(a) for a in inputs + (out or ())):
            raise TypeError(f"fake cupy: {ufunc.__name__} mixes a host NumPy array with a CuPy array")
        launches[f"ufunc {ufunc.__name__}" + ("" if method == "__call__" else f".{method}")] += 1
        args = tuple(a.view(_np.ndarray) if isinstance(a, ndarray) else a for a in inputs)
        if out is not None:
            kwargs["out"] = tuple(o.view(_np.ndarray) if isinstance(o, ndarray) else o for o in out)
        result = getattr(ufunc, method)(*args, **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __getitem__(self, key):
        if isinstance(key, _np.ndarray) or (isinstance(key, tuple) and any(isinstance(k, _np.ndarray) for k in key)):
            launches["copy (fancy indexing)"] += 1
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        launches["copy (assignment)"] += 1
        super().__setitem__(key, value)

    def astype(self, *args, **kwargs):
        launches["copy (astype)"] += 1
        return super().astype(*args, **kwargs)

    def copy(self, *args, **kwargs):
        launches["copy"] += 1
        return super().copy(*args, **kwargs)


ndarray.__module__ = "cupy"


def _wrap(r):
    if isinstance(r, _np.ndarray) and not isinstance(r, ndarray):
        return r.view(ndarray)
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    return r


def __getattr__(name):
    attr = getattr(_np, name)
    if isinstance(attr, (type, types.ModuleType)) or not callable(attr):
        return attr

    @functools.wraps(attr)
    def call(*args, **kwargs):
        # CuPy's functions take device arrays only (cupy.array copies host data; asarray is below)
        if name != "array" and any(_host(a) for a in (*args, *kwargs.values())):
            raise TypeError(f"fake cupy: cupy.{name} was given a host NumPy array")
        return _wrap(attr(*args, **kwargs))

    return call


def _as_strided(x, shape=None, strides=None):
    return _wrap(_np.lib.stride_tricks.as_strided(x, shape, strides))  # a view, still a device array


lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(as_strided=_as_strided))  # CuPy's cupy.lib


def asarray(a, dtype=None):
    host = isinstance(a, _np.ndarray) and not isinstance(a, ndarray)
    return _wrap(_np.array(a, dtype=dtype) if host else _np.asarray(a, dtype=dtype))  # host arrays are copied


def asnumpy(a):
    return _np.array(a).view(_np.ndarray)


def sum(a, axis=None, dtype=None, out=None, keepdims=False):  # noqa: A001 - CuPy's name
    # CuPy adds float32 in float32 unless given a dtype, each thread a run of thousands of rows;
    # NumPy's row-after-row order over axis 0 here drifts at least as far (a harsher stand-in)
    launches["reduction"] += 1
    r = _np.asarray(_np.sum(_np.asarray(a), axis=axis, dtype=dtype, keepdims=keepdims))
    if out is not None:
        out[...] = r
        return out
    return _wrap(r)


class _Pool:
    def used_bytes(self):
        return 0

    def total_bytes(self):
        return 0

    def free_all_blocks(self):
        pass


_pool = _Pool()


def get_default_memory_pool():
    return _pool


class _Device:
    def __init__(self, i=0):
        self.id = i

    def use(self):
        pass

    def synchronize(self):
        pass


cuda = types.SimpleNamespace(
    Device=_Device,
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0,
                                  getDeviceProperties=lambda i: {"name": b"fake GPU (NumPy)"},
                                  runtimeGetVersion=lambda: 0, driverGetVersion=lambda: 0),
)  # fmt: skip

EMU_BLOCK = 64
_library = None


def _emulator():
    global _library
    if _library is None:
        source = ROOT / "workflow" / "scratchcnn" / "kernels.cu"
        names = re.findall(r'extern "C" __global__ void (\w+)\(', source.read_text())
        build = Path(tempfile.mkdtemp(prefix="fake_cupy_"))
        (build / "emulated.cpp").write_text(f'#include "{ROOT / "tests" / "kernel_emulator.h"}"\n#include "{source}"\n'
                                            + "".join(f"EMU_EXPORT({n})\n" for n in names))  # fmt: skip
        subprocess.run(["g++", "-std=c++20", "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-pthread",
                        f"-DBLOCK={EMU_BLOCK}", str(build / "emulated.cpp"), "-o", str(build / "emulated.so")],
                       check=True)  # fmt: skip
        _library = ctypes.CDLL(str(build / "emulated.so"))
    return _library


class RawModule:
    def __init__(self, code, options=()):
        assert f"-DBLOCK={EMU_BLOCK}" in options, f"run pytest with -p fake_cupy_grids ({options})"

    def get_function(self, name):
        sys.path.insert(0, str(ROOT / "tests"))
        import test_kernels

        test_kernels.EMU_BLOCK = EMU_BLOCK
        kernel = test_kernels.EmulatedKernel(_emulator(), name)

        def launch(*args, **kwargs):
            launches[f"raw {name}"] += 1
            return kernel(*args, **kwargs)

        return launch
