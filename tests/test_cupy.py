"""CuPy path against NumPy on the same weights and inputs (run on a machine with a GPU)."""

import numpy as np
import pytest

cp = pytest.importorskip("cupy")

from scratchcnn import model as cnn  # noqa: E402
from scratchcnn.backend import BackendError, get_backend  # noqa: E402

try:
    GPU = get_backend("gpu")
except BackendError as exc:  # CuPy installed but no GPU answers
    pytest.skip(f"no usable GPU: {exc}", allow_module_level=True)

pytestmark = pytest.mark.gpu


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-30))


@pytest.mark.parametrize("filters", [16, 64])
def test_forward_and_gradients_agree(filters):
    arch = cnn.make_arch(filters)
    params, bn = cnn.init_params(arch, seed=0)
    rng = np.random.default_rng(0)
    x = rng.random((16, 32, 32, 3), dtype=np.float32)
    y = rng.integers(0, 10, 16)
    loss_c, _, grads_c, logits_c, bn_c = cnn.loss_and_grads(params, bn, x, y, arch, 1e-3)
    to_gpu = lambda d: {k: cp.asarray(v) for k, v in d.items()}
    loss_g, _, grads_g, logits_g, bn_g = cnn.loss_and_grads(
        to_gpu(params), to_gpu(bn), cp.asarray(x), cp.asarray(y), arch, 1e-3
    )
    assert rel(logits_c, logits_g.get()) < 1e-4
    assert abs(float(loss_c) - float(loss_g)) < 1e-4 * abs(float(loss_c))
    for k in cnn.PARAM_NAMES:
        assert rel(grads_c[k], grads_g[k].get()) < 1e-4, k
    for k in cnn.BN_STATE_NAMES:
        assert rel(bn_c[k], bn_g[k].get()) < 1e-4, k


def test_gpu_checkpoint_predicts_the_same_on_cpu(tmp_path):
    from scratchcnn.checkpoint import load_checkpoint, save_checkpoint

    arch = cnn.make_arch(32)
    params, bn = cnn.init_params(arch, seed=1, backend=GPU)
    save_checkpoint(tmp_path / "m.npz", params, bn, arch, {}, to_host=GPU.to_host)
    ck = load_checkpoint(tmp_path / "m.npz")
    x = np.random.default_rng(1).random((50, 32, 32, 3), dtype=np.float32)
    on_gpu = cnn.predict_logits(ck.params, arch, x, backend=GPU)
    on_cpu = cnn.predict_logits(ck.params, arch, x)
    assert (on_gpu.argmax(1) == on_cpu.argmax(1)).all()
    assert rel(on_gpu, on_cpu) < 1e-4
