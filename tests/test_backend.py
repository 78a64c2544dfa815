import numpy as np
import pytest

from scratchcnn import backend


def test_cpu_is_numpy():
    be = backend.get_backend("cpu")
    assert be.name == "numpy" and be.xp is np and be.device_name


def test_auto_falls_back_to_numpy_without_cupy(monkeypatch):
    def no_gpu(device_id=None):
        raise backend.BackendError("CuPy cannot be imported")

    monkeypatch.setattr(backend, "_cupy_backend", no_gpu)
    assert backend.get_backend("auto").name == "numpy"
    with pytest.raises(backend.BackendError, match="device: gpu was requested, but CuPy cannot be imported"):
        backend.get_backend("gpu")


def test_unknown_device_is_refused():
    with pytest.raises(backend.BackendError, match="one of auto, cpu, gpu"):
        backend.get_backend("tpu")
