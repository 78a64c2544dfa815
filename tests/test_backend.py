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
    answers (or whose first matrix product fails with ``answer_error``: CuPy imports without
    cuBLAS and NVRTC and loads them at first use)."""

    def get_count():
        if count_error:
            raise count_error
        return device_count

    class Device:
        def __init__(self, i):
            self.id = i

        def use(self):
            pass

    class Array:
        def __init__(self, a):
            self.a = a

        def reshape(self, *shape):
            return Array(self.a.reshape(*shape))

        def __matmul__(self, other):
            if answer_error:
                raise answer_error
            return Array(self.a @ other.a)

        def __mul__(self, k):
            return Array(self.a * k)

        def sum(self):
            return Array(self.a.sum())

        def __float__(self):
            return float(self.a)

    runtime = types.SimpleNamespace(getDeviceCount=get_count, getDeviceProperties=lambda i: {"name": b"Fake GPU"})
    return types.SimpleNamespace(cuda=types.SimpleNamespace(runtime=runtime, Device=Device), float32=np.float32,
                                 arange=lambda n, dtype: Array(np.arange(n, dtype=dtype)))  # fmt: skip


@pytest.mark.parametrize("cupy", [None, fake_cupy(count_error=RuntimeError("cudaErrorInsufficientDriver")),
                                  fake_cupy(device_count=0)], ids=["not-installed", "no-driver", "no-device"])  # fmt: skip
def test_auto_falls_back_to_numpy_quietly_where_there_is_no_gpu(cupy, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "cupy", cupy)  # None: `import cupy` fails as for a missing package
    with caplog.at_level(logging.INFO):
        assert backend.get_backend("auto").name == "numpy"
    assert caplog.records == []  # the usual CPU machine: nothing to warn about
    with pytest.raises(backend.BackendError, match="device: gpu was requested, but CuPy"):
        backend.get_backend("gpu")


def test_may_use_gpu_is_decided_without_a_gpu(monkeypatch, tmp_path):
    """The pipeline's question (does a job hold a share of --resources gpu?), asked where the jobs
    are scheduled: never on cpu, always on gpu, on auto only where CuPy is installed."""
    settings = ("cpu", "auto", "gpu")
    monkeypatch.setitem(sys.modules, "cupy", None)  # as where CuPy is not installed
    assert [backend.may_use_gpu(d) for d in settings] == [False, False, True]
    (tmp_path / "cupy").mkdir()
    (tmp_path / "cupy" / "__init__.py").write_text("raise ImportError('never imported: found is enough')\n")
    monkeypatch.delitem(sys.modules, "cupy")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert [backend.may_use_gpu(d) for d in settings] == [False, True, True]


def test_auto_without_cupy_on_a_machine_with_an_nvidia_gpu_is_told_it_trains_on_the_cpu(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)  # as where CuPy is not installed
    monkeypatch.setattr(backend.os.path, "exists", lambda p: False)  # no driver file
    monkeypatch.setattr(backend.shutil, "which", lambda name: None)
    assert backend.unused_gpu_warning("auto") is None  # no GPU: nothing to say
    monkeypatch.setattr(backend.shutil, "which", lambda name: f"/usr/bin/{name}")
    said = backend.unused_gpu_warning("auto")
    assert said.startswith("device: auto trains on the CPU here: CuPy is not installed")
    assert "NVIDIA GPU (/usr/bin/nvidia-smi)" in said and "./setup.sh --gpu" in said
    assert backend.unused_gpu_warning("cpu") is None and backend.unused_gpu_warning("gpu") is None
    monkeypatch.setattr(backend.os.path, "exists", lambda p: p == "/proc/driver/nvidia/version")
    assert "NVIDIA GPU (/proc/driver/nvidia/version)" in backend.unused_gpu_warning("auto")
    monkeypatch.setattr(backend, "may_use_gpu", lambda device: True)  # CuPy installed: jobs use the GPU
    assert backend.unused_gpu_warning("auto") is None


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


@pytest.mark.parametrize("error", [ImportError('Failure finding "libcublasLt.so.13 or libcublasLt.so.12"'),
                                   RuntimeError("CUDA_ERROR_UNSUPPORTED_PTX_VERSION")], ids=["no-cublas", "ptx"])  # fmt: skip
def test_auto_warns_when_cupy_lacks_a_library_a_step_needs(monkeypatch, caplog, error):
    """pip's cupy-cuda13x without its [ctk] extra: it imports, then fails at the first product."""
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(answer_error=error))
    with caplog.at_level(logging.INFO):
        assert backend.get_backend("auto").name == "numpy"
    [record] = caplog.records
    assert record.levelname == "WARNING" and str(error) in record.message


def test_a_gpu_that_answers_wrongly_is_not_used(monkeypatch):
    cupy = fake_cupy()
    cupy.arange = lambda n, dtype: type(fake_cupy().arange(1, np.float32))(np.zeros(n, dtype))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    with pytest.raises(backend.BackendError, match="summed to 0.0, not 44"):
        backend.get_backend("gpu")


def test_a_broken_cupy_install_warns(monkeypatch, caplog):
    """An ImportError from inside CuPy (a missing compiled module) is not a machine without CuPy."""
    import builtins

    real_import = builtins.__import__

    def importer(name, *args, **kw):
        if name == "cupy":
            raise ImportError("cannot import name '_core' from partially initialized module", name="cupy._core")
        return real_import(name, *args, **kw)

    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    monkeypatch.setattr(builtins, "__import__", importer)
    with caplog.at_level(logging.INFO):
        assert backend.get_backend("auto").name == "numpy"
    [record] = caplog.records
    assert record.levelname == "WARNING" and "partially initialized" in record.message


def test_host_array_copies_a_cupy_array_with_cupy_not_numpy(monkeypatch):
    """np.asarray refuses a CuPy array (no implicit transfer): the copy goes through cupy.asnumpy."""

    class DeviceArray:
        __module__ = "cupy._core.core"

        def __array__(self, *args, **kw):
            raise TypeError("Implicit conversion to a NumPy array is not allowed")

    cupy = types.SimpleNamespace(asnumpy=lambda a: np.arange(3.0))
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    np.testing.assert_array_equal(backend.host_array(DeviceArray()), np.arange(3.0))
    host = np.ones(2)
    assert backend.host_array(host) is host
