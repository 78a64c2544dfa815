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
    fwd = lambda: L.batchnorm_forward(x, gamma, beta, rm, rv, train=train, momentum=0.9)[0]
    dout = randn(*shape)

    def grads():
        _, cache, _ = L.batchnorm_forward(x, gamma, beta, rm, rv, train=train, momentum=0.9)
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


@pytest.mark.parametrize("n,h,w,c,k,stride,pad", [(2, 5, 4, 3, 3, 1, 1), (1, 7, 6, 2, 3, 2, 2), (3, 4, 4, 1, 2, 2, 0)])
def test_im2col_pads_and_col2im_is_its_adjoint(n, h, w, c, k, stride, pad):
    x = randn(n, h, w, c)
    oh, ow = L.conv_output_size(h, k, stride, pad), L.conv_output_size(w, k, stride, pad)
    cols = L.im2col(x, k, k, stride, pad, oh, ow)
    xp = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    for i in range(oh):
        for j in range(ow):
            np.testing.assert_array_equal(cols[:, i, j], xp[:, i * stride : i * stride + k, j * stride : j * stride + k])
    d = randn(*cols.shape)
    back = L.col2im(d, x.shape, stride, pad)
    assert back.shape == x.shape
    # <im2col(x), d> == <x, col2im(d)>: col2im is the transpose of im2col
    assert float((cols * d).sum()) == pytest.approx(float((x * back).sum()), rel=1e-12)


def test_gradient_outputs_are_written_in_place():
    """Backward passes given output arrays fill them (the flat gradient buffer) and return them."""
    x, W, b = randn(2, 5, 5, 3), randn(4, 3, 3, 3), randn(4)
    out, cache = L.conv2d_forward(x, W, b, 1, 1)
    dout = randn(*out.shape)
    want = L.conv2d_backward(dout, cache)
    dW, db = np.full_like(W, np.nan), np.full_like(b, np.nan)
    got = L.conv2d_backward(dout, cache, dW=dW, db=db)
    assert got[1] is dW and got[2] is db
    np.testing.assert_allclose(dW, want[1], rtol=1e-12)
    np.testing.assert_allclose(db, want[2], rtol=1e-12)

    gamma, beta = randn(4), randn(4)
    _, bcache, _ = L.batchnorm_forward(out, gamma, beta, np.zeros(4), np.ones(4), train=True, momentum=0.9)
    want = L.batchnorm_backward(dout, bcache)
    dg, dbeta = np.full(4, np.nan), np.full(4, np.nan)
    got = L.batchnorm_backward(dout, bcache, dgamma=dg, dbeta=dbeta)
    assert got[1] is dg and got[2] is dbeta
    np.testing.assert_allclose(dg, want[1], rtol=1e-12)
    np.testing.assert_allclose(dbeta, want[2], rtol=1e-12)

    Wa, ba = randn(100, 3), randn(3)
    _, acache = L.affine_forward(out, Wa, ba)
    da = randn(2, 3)
    want = L.affine_backward(da, acache)
    dWa, dba = np.full_like(Wa, np.nan), np.full_like(ba, np.nan)
    got = L.affine_backward(da, acache, dW=dWa, db=dba)
    assert got[1] is dWa and got[2] is dba
    np.testing.assert_allclose(dWa, want[1], rtol=1e-12)
    np.testing.assert_allclose(dba, want[2], rtol=1e-12)

    with pytest.raises(ValueError, match="C-contiguous"):
        L.conv2d_backward(dout, cache, dW=np.zeros((3, 3, 3, 4)).transpose(3, 0, 1, 2))


def test_layers_without_cache_give_the_same_outputs():
    x, W, b = randn(2, 5, 5, 3), randn(4, 3, 3, 3), randn(4)
    out, cache = L.conv2d_forward(x, W, b, 1, 1)
    out2, none = L.conv2d_forward(x, W, b, 1, 1, need_cache=False)
    assert none is None
    np.testing.assert_array_equal(out, out2)
    gamma, beta, rm, rv = randn(4), randn(4), randn(4), rng.random(4) + 0.5
    for train in (True, False):
        want = L.batchnorm_forward(out, gamma, beta, rm, rv, train=train, momentum=0.9)
        got = L.batchnorm_forward(out.copy(), gamma, beta, rm, rv, train=train, momentum=0.9, need_cache=False)
        assert got[1] is None
        np.testing.assert_allclose(got[0], want[0], rtol=1e-14)
        np.testing.assert_allclose(got[2][1], want[2][1], rtol=1e-14)
    pooled, none = L.maxpool_forward(out, 2, 2, need_cache=False)
    assert none is None
    np.testing.assert_array_equal(pooled, L.maxpool_forward(out, 2, 2)[0])
    logits, none = L.affine_forward(pooled, randn(16, 3), randn(3), need_cache=False)
    assert none is None and logits.shape == (2, 3)


def test_ones_vectors_are_made_once_and_read_only():
    a = L.ones(np, 7, np.float32)
    assert L.ones(np, 7, np.float32) is a
    assert L.ones(np, 7, np.float64) is not a and L.ones(np, 8, np.float32) is not a
    assert a.dtype == np.float32 and (a == 1).all()
    with pytest.raises(ValueError):
        a[0] = 2.0


def test_column_sum_and_column_dot():
    a, b = randn(50, 3), randn(50, 3)
    np.testing.assert_allclose(L.column_sum(a), a.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(L.column_dot(a, b), (a * b).sum(axis=0), rtol=1e-12)


def test_softmax_cross_entropy_counts_correct_rows_and_can_skip_the_gradient():
    logits = np.array([[1.0, 3.0, 3.0], [0.0, -1.0, 2.0], [5.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    y = np.array([2, 2, 0, 0])  # row 0: a tie goes to the first maximum (1), so it is wrong
    correct = np.zeros((), np.int64)
    loss, d = L.softmax_cross_entropy(logits, y, need_grad=False, correct=correct)
    assert d is None and int(correct) == 3
    L.softmax_cross_entropy(logits, y, correct=correct)
    assert int(correct) == 6
    assert float(loss) == pytest.approx(float(L.softmax_cross_entropy(logits, y)[0]))


def test_squared_norm_is_the_sum_of_squares():
    a = randn(3, 4, 5)
    assert float(L.squared_norm(a)) == pytest.approx(float((a * a).sum()), rel=1e-12)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("shape,size,stride", [((2, 4, 4, 3), 2, 2), ((1, 5, 7, 2), 2, 2), ((2, 5, 5, 1), 3, 2)])
def test_bn_relu_pool_gradients(shape, size, stride, train):
    c = shape[-1]
    x = rng.permutation(np.prod(shape)).reshape(shape) * 0.01 + randn(*shape) * 1e-4  # distinct values
    gamma, beta, rm, rv = randn(c), randn(c) * 0.1, randn(c), rng.random(c) + 0.5
    kw = dict(train=train, momentum=0.9, size=size, stride=stride)
    out, _, _ = L.bn_relu_pool_forward(x, gamma, beta, rm, rv, **kw)
    dout = randn(*out.shape)

    def grads():
        _, cache, _ = L.bn_relu_pool_forward(x, gamma, beta, rm, rv, **kw)
        dx, dg, db = L.bn_relu_pool_backward(dout, cache)
        return {"x": dx, "gamma": dg, "beta": db}

    check_layer(lambda: L.bn_relu_pool_forward(x, gamma, beta, rm, rv, **kw)[0], grads,
                {"x": x, "gamma": gamma, "beta": beta}, dout)  # fmt: skip
    bn, _, stats = L.batchnorm_forward(x, gamma, beta, rm, rv, train=train, momentum=0.9)
    np.testing.assert_array_equal(out, L.maxpool_forward(L.relu_forward(bn)[0], size, stride)[0])
    np.testing.assert_array_equal(L.bn_relu_pool_forward(x, gamma, beta, rm, rv, **kw)[2][1], stats[1])


@pytest.mark.parametrize("size,stride", [(2, 2), (3, 2)])
def test_bn_relu_pool_is_exactly_bn_then_relu_then_pool_with_ties(size, stride):
    """The sandwich pools before its ReLU (cheaper); with tied maxima and all-negative windows
    it must give bit for bit what batch norm, ReLU and max pooling give one after another."""
    x = rng.integers(-2, 3, (3, 7, 9, 4)).astype(np.float64)  # many equal values in every window
    x[0, :3, :3] = -2  # the first window: its minimum everywhere, so negative after batch norm
    c = x.shape[-1]
    gamma, beta, rm, rv = rng.random(c) + 0.5, randn(c) * 0.1, randn(c), rng.random(c) + 0.5
    for train in (True, False):
        kw = dict(train=train, momentum=0.9)
        out, cache, _ = L.bn_relu_pool_forward(x, gamma, beta, rm, rv, size=size, stride=stride, **kw)
        bn, bn_cache, _ = L.batchnorm_forward(x, gamma, beta, rm, rv, **kw)
        h, relu_cache = L.relu_forward(bn)
        want, pool_cache = L.maxpool_forward(h, size, stride)
        np.testing.assert_array_equal(out, want)
        assert (want == 0).any() and (want > 0).any()
        dout = randn(*out.shape)
        got = L.bn_relu_pool_backward(dout, cache)
        dh = L.relu_backward(L.maxpool_backward(dout, pool_cache), relu_cache)
        for name, g, w in zip(("dx", "dgamma", "dbeta"), got, L.batchnorm_backward(dh, bn_cache)):
            np.testing.assert_array_equal(g, w, err_msg=name)


def test_column_sums_over_blocks_of_rows_are_accurate_in_float32():
    big = rng.standard_normal((5 * L.SUM_BLOCK + 17, 3)).astype(np.float32) + 3  # five blocks and a remainder
    other = big + 1
    got_sum, got_dot = L.column_sum(big), L.column_dot(big, other)
    assert got_sum.dtype == got_dot.dtype == np.float32
    np.testing.assert_allclose(got_sum, big.astype(np.float64).sum(axis=0), rtol=1e-6)
    np.testing.assert_allclose(got_dot, (big.astype(np.float64) * other).sum(axis=0), rtol=1e-6)
    out = np.full(3, np.nan, np.float32)
    assert L.column_sum(big, out=out) is out
    np.testing.assert_array_equal(out, got_sum)


def test_batch_norm_in_training_needs_the_configs_momentum():
    """No default momentum in the layers: the config's model.bn_momentum is its one home."""
    x, gamma, beta = randn(2, 3, 3, 2), randn(2), randn(2)
    for layer in (L.batchnorm_forward, L.bn_relu_pool_forward):
        with pytest.raises(TypeError, match="model.bn_momentum"):
            layer(x, gamma, beta, np.zeros(2), np.ones(2), train=True)
        layer(x, gamma, beta, np.zeros(2), np.ones(2), train=False)  # evaluation uses none
