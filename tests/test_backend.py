import logging
import sys
import types

import numpy as np
import pytest

from scratchcnn import backend


def test_cpu_is_numpy():
    be = backend.get_backend("cpu")
    assert be.name == "numpy" and be.xp is np and be.device_name


def fake_cupy(device_count=1, count_error=None, answer_error=None):
    """A ``cupy`` module as _cupy_backend sees it: a device count (or its error) and a GPU that
    answers (or fails with ``answer_error``, as a kernel that will not compile would)."""

    def get_count():
        if count_error:
            raise count_error
        return device_count

    class Device:
        def __init__(self, i):
            self.id = i

        def use(self):
            pass

    class Zeros:
        def sum(self):
            if answer_error:
                raise answer_error
            return np.zeros(1).sum()

    runtime = types.SimpleNamespace(getDeviceCount=get_count, getDeviceProperties=lambda i: {"name": b"Fake GPU"})
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime, Device=Device), zeros=lambda n: Zeros())


@pytest.mark.parametrize("cupy", [None, fake_cupy(count_error=RuntimeError("cudaErrorInsufficientDriver")),
                                  fake_cupy(device_count=0)], ids=["not-installed", "no-driver", "no-device"])  # fmt: skip
def test_auto_falls_back_to_numpy_quietly_where_there_is_no_gpu(cupy, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "cupy", cupy)  # None: `import cupy` fails as for a missing package
    with caplog.at_level(logging.INFO):
        assert backend.get_backend("auto").name == "numpy"
    assert caplog.records == []  # the usual CPU machine: nothing to warn about
    with pytest.raises(backend.BackendError, match="device: gpu was requested, but CuPy"):
        backend.get_backend("gpu")


def test_auto_warns_when_a_gpu_is_there_but_fails(monkeypatch, caplog):
    """CuPy sees a GPU, but a first kernel fails (a CUDA too new for the driver, say): auto still
    runs on NumPy, and says why, once."""
    cupy = fake_cupy(device_count=2, answer_error=RuntimeError("CUDA_ERROR_UNSUPPORTED_PTX_VERSION"))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    with caplog.at_level(logging.INFO):
        assert backend.get_backend("auto").name == "numpy"
    [record] = caplog.records
    assert record.levelname == "WARNING"
    assert "device: auto runs on the CPU (NumPy)" in record.message and "2 CUDA device(s)" in record.message
    assert "CUDA_ERROR_UNSUPPORTED_PTX_VERSION" in record.message and "device: gpu" in record.message
    with pytest.raises(backend.BackendError, match="the GPU does not answer .CUDA_ERROR_UNSUPPORTED_PTX"):
        backend.get_backend("gpu")


def test_a_working_gpu_is_cupy(monkeypatch):
    cupy = fake_cupy()
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    be = backend.get_backend("auto")
    assert (be.name, be.xp, be.device_name, be.device_id) == ("cupy", cupy, "Fake GPU", 0)


def test_a_broken_cupy_install_warns(monkeypatch, caplog):
    """An ImportError from inside CuPy (a missing CUDA library) is not a machine without CuPy."""
    import builtins

    real_import = builtins.__import__

    def importer(name, *args, **kw):
        if name == "cupy":
            raise ImportError("libcublas.so.13: cannot open shared object file", name="cupy_backends.cuda.libs")
        return real_import(name, *args, **kw)

    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(builtins, "__import__", importer)
    with caplog.at_level(logging.INFO):
        assert backend.get_backend("auto").name == "numpy"
    [record] = caplog.records
    assert record.levelname == "WARNING" and "libcublas.so.13" in record.message


def test_unknown_device_is_refused():
    with pytest.raises(backend.BackendError, match="one of auto, cpu, gpu"):
        backend.get_backend("tpu")
