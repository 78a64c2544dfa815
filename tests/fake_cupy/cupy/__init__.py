"""A NumPy stand-in for CuPy, to run tests/test_cupy.py on a machine without a GPU.

Arrays are an ndarray subclass whose module is ``cupy`` (so scratchcnn takes
its CuPy branches), functions are NumPy's, and ``RawModule`` kernels run on
the CPU through tests/kernel_emulator.h. It checks the CuPy-path code and the
GPU tests' own logic, not CuPy's numerics or speed (reductions are summed in
float64 here, as a stand-in for CuPy's tree sums). A stream's capture records the device
operations instead of running them, and its graph replays them on the same arrays, as CUDA does
(scratchcnn.graph); reading a device value while capturing fails, as it does on CUDA. Usage, from
the repository:

    PYTHONPATH=tests/fake_cupy:workflow python -m pytest -p fake_cupy_grids tests/test_cupy.py
"""

import collections
import contextlib
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


# While a stream captures: the device operations recorded, in order (None: they run at once)
_capture = None


def _device_op(run):
    """A device operation that writes into arrays it was given: run now, or recorded."""
    if _capture is None:
        run()
    else:
        _capture.append(run)


def _pure(run):
    """A device operation that makes a new array. While capturing it runs once for the result's
    shape (on whatever the inputs hold then), and its replay writes the result into that array."""
    if _capture is None:
        return _wrap(run())
    with _np.errstate(all="ignore"):
        result = _wrap(run())
    if not isinstance(result, ndarray):
        raise NotImplementedError(f"fake cupy: a {type(result).__name__} result while capturing")
    _capture.append(lambda: _np.copyto(result.view(_np.ndarray), run()))
    return result


def _no_sync(what):
    if _capture is not None:  # CUDA: cudaErrorStreamCaptureUnsupported, the capture invalidated
        raise RuntimeError(f"fake cupy: {what} reads a device value while a stream captures")


# CuPy's functions that call cuBLAS: while a stream captures, CuPy refuses them (its cuBLAS
# setStream wrapper raises), so every product of a captured step must go through scratchcnn.graph
_CUBLAS = frozenset({"matmul", "dot", "vdot", "inner", "tensordot", "einsum"})


def _no_cublas(what):
    if _capture is not None:  # CuPy's exception and words, as the H200 gave them on 2026-11-28
        raise NotImplementedError(f"fake cupy: {what}: calling cuBLAS API during stream capture is currently unsupported")


class _Pointer:
    def __init__(self, ptr):
        self.ptr = ptr


class ndarray(_np.ndarray):
    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        # CuPy refuses host arrays in its operations (TypeError: Unsupported type numpy.ndarray):
        # so does this stand-in, where NumPy would quietly compute on the host
        if any(_host(a) for a in inputs + (out or ())):
            raise TypeError(f"fake cupy: {ufunc.__name__} mixes a host NumPy array with a CuPy array")
        if ufunc.__name__ in _CUBLAS:
            _no_cublas(f"cupy.{ufunc.__name__}")
        launches[f"ufunc {ufunc.__name__}" + ("" if method == "__call__" else f".{method}")] += 1
        args = tuple(a.view(_np.ndarray) if isinstance(a, ndarray) else a for a in inputs)
        if out is not None:
            kwargs["out"] = tuple(o.view(_np.ndarray) if isinstance(o, ndarray) else o for o in out)
            _device_op(lambda: getattr(ufunc, method)(*args, **kwargs))
            return out[0] if len(out) == 1 else out
        return _pure(lambda: getattr(ufunc, method)(*args, **kwargs))

    def __getitem__(self, key):
        if isinstance(key, _np.ndarray) or (isinstance(key, tuple) and any(isinstance(k, _np.ndarray) for k in key)):
            launches["copy (fancy indexing)"] += 1
            return _pure(lambda: _np.ndarray.__getitem__(self, key))
        return super().__getitem__(key)

    def __setitem__(self, key, value):
        launches["copy (assignment)"] += 1
        _device_op(lambda: _np.ndarray.__setitem__(self, key, value))

    def astype(self, *args, **kwargs):
        launches["copy (astype)"] += 1
        return _pure(lambda: _np.ndarray.astype(self, *args, **kwargs))

    def dot(self, b, out=None):  # cupy.dot, refused while capturing
        return __getattr__("dot")(self, b, out=out)

    def copy(self, *args, **kwargs):
        launches["copy"] += 1
        return _pure(lambda: _np.ndarray.copy(self, *args, **kwargs))

    @property
    def data(self):  # CuPy's MemoryPointer: .ptr is the address of the first element
        return _Pointer(self.__array_interface__["data"][0])

    def __float__(self):
        _no_sync("float()")
        return super().__float__()

    def __int__(self):
        _no_sync("int()")
        return super().__int__()

    def __bool__(self):
        _no_sync("bool()")
        return super().__bool__()

    def item(self, *args):
        _no_sync(".item()")
        return super().item(*args)


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
        if name == "array":
            _no_sync("cupy.array (a copy from the host)")
        if name in _CUBLAS:
            _no_cublas(f"cupy.{name}")
        if name in ("empty", "empty_like"):  # memory only, no device operation
            return _wrap(attr(*args, **kwargs))
        return _pure(lambda: attr(*args, **kwargs))

    return call


def _as_strided(x, shape=None, strides=None):
    return _wrap(_np.lib.stride_tricks.as_strided(x, shape, strides))  # a view, still a device array


lib = types.SimpleNamespace(stride_tricks=types.SimpleNamespace(as_strided=_as_strided))  # CuPy's cupy.lib


def asarray(a, dtype=None):
    host = not isinstance(a, ndarray)  # host data of any kind (an ndarray, a list, a Python number)
    if host:
        _no_sync("cupy.asarray (a copy from the host)")
    if host or (isinstance(a, ndarray) and dtype is not None and _np.dtype(dtype) != a.dtype):
        return _pure(lambda: _np.array(a, dtype=dtype))  # host arrays are copied
    return _wrap(_np.asarray(a, dtype=dtype))


def asnumpy(a):
    _no_sync("cupy.asnumpy")
    return _np.array(a).view(_np.ndarray)


def sum(a, axis=None, dtype=None, out=None, keepdims=False):  # noqa: A001 - CuPy's name
    # CuPy adds float32 in float32 unless given a dtype, each thread a run of thousands of rows;
    # NumPy's row-after-row order over axis 0 here drifts at least as far (a harsher stand-in)
    launches["reduction"] += 1

    def run():
        return _np.asarray(_np.sum(_np.asarray(a), axis=axis, dtype=dtype, keepdims=keepdims))

    if out is not None:
        _device_op(lambda: _np.copyto(out.view(_np.ndarray), run()))
        return out
    return _pure(run)


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


class Graph:
    """A stream's recorded device operations; each launch runs them again, in order."""

    def __init__(self, ops):
        self._ops = ops

    def launch(self, stream=None):
        _no_sync("Graph.launch")
        launches["graph launch"] += 1
        for op in self._ops:
            op()


class Stream:
    def __init__(self, null=False, non_blocking=False, ptds=False):
        self.ptr = 0 if null else id(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        _no_sync("Stream.synchronize")

    def begin_capture(self, mode=None):
        global _capture
        if self.ptr == 0:
            raise RuntimeError("cannot capture on the default (legacy) stream")
        if _capture is not None:
            raise RuntimeError("fake cupy: a stream is capturing already")
        _capture = []

    def end_capture(self):
        global _capture
        ops, _capture = _capture, None
        return Graph(ops)


class MemoryPool:
    def malloc(self, size):
        raise NotImplementedError("fake cupy: memory comes from NumPy")

    def total_bytes(self):
        return 0


@contextlib.contextmanager
def _using_allocator(allocator=None):
    yield


def _sgemm(handle, transa, transb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """cuBLAS's column-major ``C = alpha op(A) op(B) + beta C`` on raw addresses (scratchcnn.graph's ctypes call)."""
    launches["cublasSgemm"] += 1

    def matrix(ptr, rows, cols, ld):  # column-major, ``ld`` elements between columns
        buf = _np.ctypeslib.as_array(ctypes.cast(ptr.value, ctypes.POINTER(ctypes.c_float)), (ld * (cols - 1) + rows,))
        return _np.lib.stride_tricks.as_strided(buf, (rows, cols), (4, 4 * ld))

    op_a = matrix(a, m, k, lda) if transa == 0 else matrix(a, k, m, lda).T
    op_b = matrix(b, k, n, ldb) if transb == 0 else matrix(b, n, k, ldb).T
    out, alpha, beta = matrix(c, m, n, ldc), alpha._obj.value, beta._obj.value
    _device_op(lambda: _np.copyto(out, alpha * (op_a @ op_b) + (beta * out if beta else 0)))
    return 0


def _ok(*args):
    return 0


# scratchcnn.graph's cuBLAS library, as ctypes would load it
cublas_library = types.SimpleNamespace(cublasCreate_v2=_ok, cublasSetStream_v2=_ok, cublasSetWorkspace_v2=_ok,
                                       cublasSetMathMode=_ok, cublasSgemm_v2=_sgemm)  # fmt: skip

cuda = types.SimpleNamespace(
    Device=_Device,
    runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0,
                                  getDeviceProperties=lambda i: {"name": b"fake GPU (NumPy)"},
                                  runtimeGetVersion=lambda: 0, driverGetVersion=lambda: 0,
                                  deviceGetPCIBusId=lambda i: f"0000:{i + 1:02X}:00.0"),
    Stream=Stream, Graph=Graph, MemoryPool=MemoryPool, using_allocator=_using_allocator,
    get_current_stream=lambda: Stream(null=True),
    device=types.SimpleNamespace(get_cublas_handle=lambda: 0),
)  # fmt: skip

EMU_BLOCK = 64
_library = None


def _emulator():
    global _library
    if _library is None:
        source = ROOT / "workflow" / "scratchcnn" / "kernels.cu"
        names = re.findall(r'extern "C" __global__ void (\w+)\(', source.read_text())
        with tempfile.TemporaryDirectory(prefix="fake_cupy_") as tmp:  # a loaded library may be deleted
            _library = _build_emulator(Path(tmp), source, names)
    return _library


def _build_emulator(build, source, names):
    (build / "emulated.cpp").write_text(f'#include "{ROOT / "tests" / "kernel_emulator.h"}"\n#include "{source}"\n'
                                        + "".join(f"EMU_EXPORT({n})\n" for n in names))  # fmt: skip
    subprocess.run(["g++", "-std=c++20", "-O2", "-ffp-contract=off", "-shared", "-fPIC", "-pthread",
                    f"-DBLOCK={EMU_BLOCK}", str(build / "emulated.cpp"), "-o", str(build / "emulated.so")],
                   check=True)  # fmt: skip
    return ctypes.CDLL(str(build / "emulated.so"))


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
            _device_op(lambda: kernel(*args, **kwargs))

        return launch
