"""A CUDA graph of the training step on CuPy: ``SCRATCHCNN_GRAPH=1`` in the environment turns it on.

At 32 filters a training step was 56 kernel launches on the H200 (2026-11-28; 37 device operations
by the code since), each about 20 us of Python and launching, most of the 1.5 ms step: the host
set the pace, not the card. A graph replays the captured launches of a whole step in one call.

CuPy refuses cuBLAS calls while a stream is capturing (its ``setStream`` wrapper raises), though
cuBLAS itself can be captured. While this module captures, :func:`scratchcnn.layers.matmul`
calls ``cublasSgemm`` through ctypes on a handle and workspace of its own, set to the capturing
stream. The graph's temporaries come from a memory pool of its own, so nothing else ever gets
their memory; what outlives a step (parameters, gradients, BN state, the epoch's sums, the batch's
indices) lives in arrays made before the capture, at the addresses the graph keeps.

Off by default until it has been measured and checked on a GPU (benchmarks/NOTES.md). Where a
capture fails, the run goes on with the plain steps and the log says why.
"""

from __future__ import annotations

import contextlib
import ctypes
import os

import numpy as np

_active = None  # the _Cublas of the capture in progress, if any
_cublas = {}  # device -> _Cublas, made at the first capture
WORKSPACE_BYTES = 32 * 2**20  # cuBLAS's own memory for its kernels, fixed so a capture allocates none


class GraphError(RuntimeError):
    """cuBLAS through ctypes, or the capture, failed."""


def enabled() -> bool:
    """True when ``SCRATCHCNN_GRAPH=1``."""
    return os.environ.get("SCRATCHCNN_GRAPH", "0") == "1"


def capturing_gemm():
    """The cuBLAS route of the capture in progress (None outside one): its ``gemm(a, b, out)``."""
    return _active


# --------------------------------------------------------------------------- #
# Row-major products as column-major cuBLAS calls


def matrix_layout(shape, strides, itemsize):
    """``("N", ld)`` for a row-major matrix (rows ``ld`` elements apart), ``("T", ld)`` for a
    column-major one (a transposed view), None for any other (it needs a copy first)."""
    rows, cols = shape
    s0 = strides[0] if rows > 1 else max(cols, 1) * itemsize  # a unit axis's stride is arbitrary
    s1 = strides[1] if cols > 1 else itemsize
    if s1 == itemsize and s0 % itemsize == 0 and s0 >= cols * itemsize:
        return "N", max(s0 // itemsize, 1)
    s0c = strides[0] if rows > 1 else itemsize
    s1c = strides[1] if cols > 1 else max(rows, 1) * itemsize
    if s0c == itemsize and s1c % itemsize == 0 and s1c >= rows * itemsize:
        return "T", max(s1c // itemsize, 1)
    return None


def gemm_arguments(a_layout, b_layout, m, n, k, ldc):
    """``cublasSgemm``'s (transa, transb, m, n, k, lda, ldb, ldc) for row-major ``C = A @ B``, in
    cuBLAS's naming, whose first operand is our B.

    cuBLAS reads matrices column-major, and a row-major matrix read column-major is its
    transpose: the call computes ``C^T = B^T A^T``, B first. A row-major operand then enters as
    it is ("N"), a column-major one (a transposed view) transposed ("T"); the leading dimensions
    are the layouts' ``ld``.
    """
    (op_a, lda), (op_b, ldb) = a_layout, b_layout
    return op_b, op_a, n, m, k, ldb, lda, ldc


class _Cublas:
    """A cuBLAS handle of this module's own, with a fixed workspace, called through ctypes."""

    OPS = {"N": 0, "T": 1}

    def __init__(self):
        import cupy

        cupy.cuda.device.get_cublas_handle()  # CuPy loads libcublas: the same library is used here
        self.lib = lib = _load_cublas()
        p, i, f = ctypes.c_void_p, ctypes.c_int, ctypes.POINTER(ctypes.c_float)
        lib.cublasCreate_v2.argtypes = [ctypes.POINTER(p)]
        lib.cublasSetStream_v2.argtypes = [p, p]
        lib.cublasSgemm_v2.argtypes = [p, i, i, i, i, i, f, p, i, p, i, f, p, i]
        for fn in (lib.cublasCreate_v2, lib.cublasSetStream_v2, lib.cublasSgemm_v2):
            fn.restype = i
        self.handle = p()
        self._check(lib.cublasCreate_v2(ctypes.byref(self.handle)), "cublasCreate")
        self.workspace = cupy.empty(WORKSPACE_BYTES, dtype=np.uint8)  # kept: captured kernels use it
        if hasattr(lib, "cublasSetWorkspace_v2"):
            lib.cublasSetWorkspace_v2.argtypes, lib.cublasSetWorkspace_v2.restype = [p, p, ctypes.c_size_t], i
        self._set_workspace()
        if os.environ.get("CUPY_TF32", "0") not in ("", "0"):  # as CuPy's own handle does then
            lib.cublasSetMathMode.argtypes, lib.cublasSetMathMode.restype = [p, i], i
            self._check(lib.cublasSetMathMode(self.handle, 3), "cublasSetMathMode")  # CUBLAS_TF32_TENSOR_OP_MATH
        self.one, self.zero = ctypes.c_float(1.0), ctypes.c_float(0.0)

    @staticmethod
    def _check(status, what):
        if status != 0:
            raise GraphError(f"{what} returned cuBLAS status {status}")

    def _set_workspace(self) -> None:
        if hasattr(self.lib, "cublasSetWorkspace_v2"):
            self._check(self.lib.cublasSetWorkspace_v2(self.handle, ctypes.c_void_p(self.workspace.data.ptr),
                                                       WORKSPACE_BYTES), "cublasSetWorkspace")  # fmt: skip

    def set_stream(self, stream_ptr: int) -> None:
        self._check(self.lib.cublasSetStream_v2(self.handle, ctypes.c_void_p(stream_ptr)), "cublasSetStream")
        # cublasSetStream "unconditionally resets the cuBLAS library workspace back to the default
        # workspace pool" (cuBLAS docs): give it ours again, or the captured products would not use it
        self._set_workspace()

    def gemm(self, a, b, out=None):
        """``a @ b`` for 2-D float32 CuPy arrays, into ``out`` (C-contiguous) when given."""
        import cupy

        if a.ndim != 2 or b.ndim != 2 or a.dtype != np.float32 or b.dtype != np.float32 or a.shape[1] != b.shape[0]:
            raise ValueError(f"gemm takes float32 matrices (m, k) @ (k, n), not {a.dtype} {a.shape} @ {b.dtype} {b.shape}")
        (m, k), n = a.shape, b.shape[1]
        if out is None:
            out = cupy.empty((m, n), dtype=np.float32)
        elif not (out.flags.c_contiguous and out.dtype == np.float32 and out.shape == (m, n)):
            raise ValueError(f"gemm: out must be a C-contiguous float32 ({m}, {n}) array, not {out.dtype} {out.shape}")
        layouts = []
        for x in (a, b):
            layout = matrix_layout(x.shape, x.strides, 4)
            if layout is None:
                x = cupy.ascontiguousarray(x)
                layout = matrix_layout(x.shape, x.strides, 4)
            layouts.append((x, layout))
        (a, la), (b, lb) = layouts
        if m == 0 or n == 0:
            return out
        if k == 0:
            out.fill(0)
            return out
        op_b, op_a, cm, cn, ck, ldb, lda, ldc = gemm_arguments(la, lb, m, n, k, max(n, 1))
        self._check(
            self.lib.cublasSgemm_v2(
                self.handle, self.OPS[op_b], self.OPS[op_a], cm, cn, ck, ctypes.byref(self.one),
                ctypes.c_void_p(b.data.ptr), ldb, ctypes.c_void_p(a.data.ptr), lda, ctypes.byref(self.zero),
                ctypes.c_void_p(out.data.ptr), ldc,
            ),
            "cublasSgemm",
        )  # fmt: skip
        return out


def _load_cublas():
    """The libcublas this process has loaded (CuPy's), else the first of the usual names found."""
    names = [path for path in _loaded_paths() if os.path.basename(path).startswith("libcublas.so")]
    errors = []
    for name in (*names, "libcublas.so.13", "libcublas.so.12", "libcublas.so"):
        try:
            return ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
        except OSError as exc:
            errors.append(str(exc))
    raise GraphError(f"no libcublas to load: {'; '.join(errors)}")


def _loaded_paths() -> list:
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            return [line.split(None, 5)[5].strip() for line in maps if len(line.split(None, 5)) == 6]
    except OSError:
        return []


# --------------------------------------------------------------------------- #
# Capture and replay


class StepGraph:
    """One captured step at a time, replayed by :meth:`launch`; ``key`` names what it was
    captured for (the learning rate: the update kernel takes it by value)."""

    def __init__(self, log=print):
        self.log = log
        self.key = None
        self.failed = None  # why a capture failed; then the caller runs the plain steps
        self._graph = None
        self._pool = self._stream = None

    def ready(self, key) -> bool:
        return self._graph is not None and self.key == key

    def _setup(self):
        import cupy

        if self._stream is None:
            self._pool = cupy.cuda.MemoryPool()  # the graph's temporaries, and nothing else's
            self._stream = cupy.cuda.Stream(non_blocking=True)

    def warm(self, body) -> None:
        """Run ``body()`` for real on the graph's stream and memory pool, ordered after the work
        queued before it: every kernel is loaded and what outlives a step is made before the
        capture, and the pool holds the blocks of a step's temporaries. The capture's products go
        through :class:`_Cublas`, not CuPy's ``matmul``, so its temporaries need not match the warm
        run's block for block; where one finds no free block, its ``cudaMalloc`` is allowed by
        CuPy's capture mode (relaxed, the default of ``begin_capture``) and the block stays in
        the graph's pool, which the graph keeps."""
        import cupy

        self._setup()
        cupy.cuda.get_current_stream().synchronize()
        with cupy.cuda.using_allocator(self._pool.malloc), self._stream:
            body()
        self._stream.synchronize()

    def capture(self, body, key) -> bool:
        """Capture ``body()`` (launches only: no host synchronisation, no host-to-device copy)
        for ``key``; False (and :attr:`failed` set, logged) where it cannot be captured.

        Nothing runs while capturing: the caller launches the graph for the step itself.
        """
        global _active
        import cupy

        self._graph, self.key = None, None
        try:
            device = cupy.cuda.runtime.getDevice()
            if device not in _cublas:
                _cublas[device] = _Cublas()
            self._setup()
            _cublas[device].set_stream(self._stream.ptr)
            with cupy.cuda.using_allocator(self._pool.malloc), self._stream:
                self._stream.begin_capture()
                _active = _cublas[device]
                try:
                    body()
                except BaseException:
                    _active = None
                    with contextlib.suppress(Exception):  # the capture is void: the first error says why
                        self._stream.end_capture()
                    raise
                _active = None
                graph = self._stream.end_capture()
        except Exception as exc:  # noqa: BLE001 - any failure leaves the plain steps, said in the log
            self.failed = f"{type(exc).__name__}: {exc}"
            self.log(f"CUDA graph of the training step not captured ({self.failed}); the plain steps go on")
            return False
        self._graph, self.key = graph, key
        return True

    def launch(self) -> None:
        self._graph.launch()

    def memory_bytes(self) -> int:
        """What the graph's own memory pool holds: its temporaries."""
        return self._pool.total_bytes() if self._pool is not None else 0
