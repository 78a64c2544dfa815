import numpy as np
import pytest

from scratchcnn import layers as L
from gradcheck import check_layer, numerical_gradient, rel_error

rng = np.random.default_rng(1)


def randn(*shape):
    return rng.standard_normal(shape)


@pytest.mark.parametrize(
    "n,h,w,c,f,k,stride,pad",
    [
        (1, 5, 5, 3, 2, 3, 1, 1),  # batch of 1
        (2, 6, 4, 3, 3, 3, 1, 0),  # non-square map, no padding
        (2, 7, 5, 1, 4, 3, 2, 1),  # stride 2, odd sizes, one channel
        (3, 4, 6, 5, 2, 3, 1, 2),  # padding 2, odd channel count
        (2, 6, 6, 2, 3, 2, 2, 0),  # even kernel
    ],
)
def test_conv2d_gradients(n, h, w, c, f, k, stride, pad):
    x, W, b = randn(n, h, w, c), randn(f, k, k, c), randn(f)
    out, _ = L.conv2d_forward(x, W, b, stride, pad)
    dout = randn(*out.shape)

    def grads():
        _, cache = L.conv2d_forward(x, W, b, stride, pad)
        dx, dW, db = L.conv2d_backward(dout, cache)
        return {"x": dx, "W": dW, "b": db}

    check_layer(lambda: L.conv2d_forward(x, W, b, stride, pad)[0], grads, {"x": x, "W": W, "b": b}, dout)


def test_conv2d_matches_direct_sum():
    x, W, b = randn(2, 5, 4, 3), randn(2, 3, 3, 3), randn(2)
    out, _ = L.conv2d_forward(x, W, b, stride=2, pad=1)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    assert out.shape == (2, 3, 2, 2)
    for n in range(2):
        for i in range(3):
            for j in range(2):
                for f in range(2):
                    want = (xp[n, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3, :] * W[f]).sum() + b[f]
                    assert out[n, i, j, f] == pytest.approx(want)


def test_conv2d_first_layer_skips_dx():
    x, W, b = randn(2, 4, 4, 3), randn(2, 3, 3, 3), randn(2)
    out, cache = L.conv2d_forward(x, W, b, 1, 1)
    dx, dW, db = L.conv2d_backward(np.ones_like(out), cache, need_dx=False)
    assert dx is None and dW.shape == W.shape and db.shape == b.shape


def test_conv2d_rejects_kernel_larger_than_input():
    with pytest.raises(ValueError, match="does not fit"):
        L.conv2d_forward(randn(1, 2, 2, 1), randn(1, 3, 3, 1), randn(1), 1, 0)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("shape", [(2, 3, 4, 3), (1, 2, 5, 1), (4, 1, 1, 5)])
def test_batchnorm_gradients(train, shape):
    if train and np.prod(shape[:3]) < 2:
        pytest.skip("batch statistics of one value")
    c = shape[-1]
    x, gamma, beta = randn(*shape), randn(c), randn(c)
    rm, rv = randn(c), rng.random(c) + 0.5
    fwd = lambda: L.batchnorm_forward(x, gamma, beta, rm, rv, train=train)[0]
    dout = randn(*shape)

    def grads():
        _, cache, _ = L.batchnorm_forward(x, gamma, beta, rm, rv, train=train)
        dx, dg, db = L.batchnorm_backward(dout, cache)
        return {"x": dx, "gamma": dg, "beta": db}

    check_layer(fwd, grads, {"x": x, "gamma": gamma, "beta": beta}, dout)


def test_batchnorm_train_normalises_and_updates_running_stats():
    x = randn(8, 3, 3, 2) * 3 + 5
    gamma, beta = np.array([2.0, 0.5]), np.array([1.0, -1.0])
    out, _, (rm, rv) = L.batchnorm_forward(x, gamma, beta, np.zeros(2), np.ones(2), train=True, momentum=0.9)
    flat = out.reshape(-1, 2)
    np.testing.assert_allclose(flat.mean(0), beta, atol=1e-12)
    np.testing.assert_allclose(flat.std(0), gamma, rtol=1e-5)
    x2 = x.reshape(-1, 2)
    np.testing.assert_allclose(rm, 0.1 * x2.mean(0))
    np.testing.assert_allclose(rv, 0.9 + 0.1 * x2.var(0))


def test_batchnorm_eval_uses_running_stats_only():
    x = randn(4, 2, 2, 3)
    gamma, beta, rm, rv = randn(3), randn(3), randn(3), rng.random(3) + 1
    out, _, (rm2, rv2) = L.batchnorm_forward(x, gamma, beta, rm, rv, train=False, eps=1e-5)
    np.testing.assert_allclose(out, (x - rm) / np.sqrt(rv + 1e-5) * gamma + beta)
    assert rm2 is rm and rv2 is rv
    # one image evaluated alone gives the same output as inside the batch
    alone, _, _ = L.batchnorm_forward(x[:1], gamma, beta, rm, rv, train=False)
    np.testing.assert_allclose(alone, out[:1])


def test_relu_gradient():
    x = randn(3, 4, 4, 2)
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink
    dout = randn(*x.shape)
    check_layer(lambda: L.relu_forward(x)[0], lambda: {"x": L.relu_backward(dout, L.relu_forward(x)[1])}, {"x": x}, dout)


@pytest.mark.parametrize("shape,size,stride", [((2, 4, 4, 3), 2, 2), ((1, 5, 7, 2), 2, 2), ((2, 5, 5, 1), 3, 2), ((1, 6, 6, 2), 3, 3)])
def test_maxpool_gradients(shape, size, stride):
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.01 + randn(*shape) * 1e-4  # distinct values
    out, _ = L.maxpool_forward(x, size, stride)
    dout = randn(*out.shape)

    def grads():
        return {"x": L.maxpool_backward(dout, L.maxpool_forward(x, size, stride)[1])}

    check_layer(lambda: L.maxpool_forward(x, size, stride)[0], grads, {"x": x}, dout)


def test_maxpool_values_and_tie_goes_to_one_position():
    x = np.zeros((1, 2, 4, 1))
    x[0, :, :, 0] = [[1, 1, 3, 0], [1, 1, 2, 5]]  # first window: a four-way tie
    out, cache = L.maxpool_forward(x, 2, 2)
    np.testing.assert_array_equal(out[0, :, :, 0], [[1, 5]])
    dx = L.maxpool_backward(np.ones_like(out), cache)
    np.testing.assert_array_equal(dx[0, :, :, 0], [[1, 0, 0, 0], [0, 0, 0, 1]])


def test_affine_gradients():
    x, W, b = randn(3, 2, 2, 2), randn(8, 4), randn(4)
    dout = randn(3, 4)

    def grads():
        dx, dW, db = L.affine_backward(dout, L.affine_forward(x, W, b)[1])
        return {"x": dx, "W": dW, "b": db}

    check_layer(lambda: L.affine_forward(x, W, b)[0], grads, {"x": x, "W": W, "b": b}, dout)


def test_affine_flattens_in_row_column_channel_order():
    x = randn(2, 2, 3, 4)
    W, b = randn(24, 5), randn(5)
    out, _ = L.affine_forward(x, W, b)
    want = np.einsum("nhwc,hwck->nk", x, W.reshape(2, 3, 4, 5)) + b
    np.testing.assert_allclose(out, want)


def test_softmax_cross_entropy_value_and_gradient():
    logits, y = randn(5, 4), np.array([0, 3, 1, 1, 2])
    loss, dlogits = L.softmax_cross_entropy(logits, y)
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    assert float(loss) == pytest.approx(-np.log(p[np.arange(5), y]).mean())
    num = numerical_gradient(lambda: float(L.softmax_cross_entropy(logits, y)[0]), logits)
    assert rel_error(dlogits, num) < 1e-6


def test_softmax_cross_entropy_huge_logits_stay_finite():
    logits = np.array([[1e4, 0.0, -1e4], [0.0, 1e4, 1e4]], dtype=np.float32)
    loss, d = L.softmax_cross_entropy(logits, np.array([0, 0]))
    assert np.isfinite(loss) and np.all(np.isfinite(d))
    # row 0 is certain and right (loss 0); row 1 puts all mass elsewhere (loss 1e4 + log 2)
    assert float(loss) == pytest.approx((0 + 1e4 + np.log(2)) / 2, rel=1e-6)


def test_one_hot():
    np.testing.assert_array_equal(L.one_hot(np.array([2, 0]), 3, np.float32), [[0, 0, 1], [1, 0, 0]])


def test_l2_penalty():
    w1, w2 = np.array([[1.0, 2.0]]), np.array([3.0])
    loss, grads = L.l2_penalty([w1, w2], reg=0.1)
    assert loss == pytest.approx(0.05 * (1 + 4 + 9))
    np.testing.assert_allclose(grads[0], 0.1 * w1)
    np.testing.assert_allclose(grads[1], 0.1 * w2)
