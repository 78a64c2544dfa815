"""scratchcnn.graph's pieces that need no GPU: how a matrix's strides become cuBLAS's layout
(tests/test_cupy.py runs the products themselves, on a GPU and on tests/fake_cupy), and that the
switch leaves NumPy runs alone."""

import numpy as np
import pytest

from scratchcnn import graph, training
from scratchcnn import model as cnn
from recipe import train_config


def layout(a):
    return graph.matrix_layout(a.shape, a.strides, a.itemsize)


def test_matrix_layouts():
    a = np.zeros((6, 4), np.float32)
    assert layout(a) == ("N", 4)
    assert layout(a.T) == ("T", 4)  # (4, 6) read column-major, 4 apart
    assert layout(a[:, :3]) == ("N", 4)  # rows of 3, a leading dimension of 4
    assert layout(a[:3].T) == ("T", 4)
    assert layout(a[:, ::2]) is None and layout(a[::2, ::2]) is None  # neither: copied first
    assert layout(np.zeros((1, 5), np.float32)[:, ::2]) == ("T", 2)  # one row: any column stride is a layout
    assert layout(np.zeros((5, 1), np.float32)) == ("N", 1)


@pytest.mark.parametrize("ta, tb", [(False, False), (False, True), (True, False), (True, True)])
def test_gemm_arguments_compute_the_row_major_product(ta, tb):
    """The cuBLAS call's arguments, carried out on the raw buffers as cuBLAS reads them
    (column-major), give ``a @ b``."""
    rng = np.random.default_rng(0)
    m, k, n = 5, 3, 4
    a = rng.standard_normal((k, m)).T if ta else rng.standard_normal((m, k))
    b = rng.standard_normal((n, k)).T if tb else rng.standard_normal((k, n))
    c = np.zeros((m, n))
    op1, op2, cm, cn, ck, ld1, ld2, ldc = graph.gemm_arguments(
        graph.matrix_layout(a.shape, a.strides, 8), graph.matrix_layout(b.shape, b.strides, 8), m, n, k, n
    )

    def column_major(arr, rows, cols, ld):  # the memory under ``arr`` as cuBLAS reads it
        base = np.lib.stride_tricks.as_strided(arr, (1,), (8,))  # the first element's address
        return np.lib.stride_tricks.as_strided(base, (rows, cols), (8, 8 * ld))

    first = column_major(b, *((cm, ck) if op1 == "N" else (ck, cm)), ld1)  # cuBLAS's A: our b
    second = column_major(a, *((ck, cn) if op2 == "N" else (cn, ck)), ld2)
    product = (first if op1 == "N" else first.T) @ (second if op2 == "N" else second.T)
    column_major(c, cm, cn, ldc)[...] = product
    np.testing.assert_allclose(c, a @ b, rtol=1e-12)


def test_the_switch_leaves_numpy_runs_alone(monkeypatch):
    monkeypatch.setenv("SCRATCHCNN_GRAPH", "1")
    assert graph.enabled()
    arch = cnn.make_arch(4)
    params, bn = cnn.init_params(arch, 0)
    opt = training.FlatSGD(params)
    steps = training.BatchSteps(opt, bn, np.zeros((8, 32, 32, 3), np.float32), np.zeros(8, np.int64), arch,
                                train_config(batch_size=4), training.EpochSums.zeros(np))  # fmt: skip
    assert steps.graph is None and steps.bn_state is bn
    steps(np.arange(4), 0.01)
    assert steps.bn_state is not bn  # the plain step's new state
    monkeypatch.setenv("SCRATCHCNN_GRAPH", "0")
    assert not graph.enabled()


def test_setting_the_stream_gives_cublas_our_workspace_again():
    """cublasSetStream "unconditionally resets the cuBLAS library workspace back to the default
    workspace pool" (cuBLAS docs): the capture sets the stream, so the fixed workspace the captured
    products are meant to use must be set after it, every time."""
    import types

    calls = []
    lib = types.SimpleNamespace(
        cublasSetStream_v2=lambda handle, stream: calls.append(("stream", stream.value)) or 0,
        cublasSetWorkspace_v2=lambda handle, ptr, size: calls.append(("workspace", ptr.value, size)) or 0,
    )
    cublas = object.__new__(graph._Cublas)  # its parts alone: no GPU, no libcublas
    cublas.lib, cublas.handle = lib, None
    cublas.workspace = types.SimpleNamespace(data=types.SimpleNamespace(ptr=4096))
    cublas.set_stream(77)
    assert calls == [("stream", 77), ("workspace", 4096, graph.WORKSPACE_BYTES)]
