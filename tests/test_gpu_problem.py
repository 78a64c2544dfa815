"""tests/gpu_problem.py's routing of near-tied pooling windows, which the GPU comparisons rely on."""

import copy

import numpy as np
import pytest
from gpu_problem import pooling_choices, route_like
from scratchcnn import layers as L
from scratchcnn import model as cnn


def caches_with_window(values):
    """Forward caches of a small network whose first pooling window (image 0, channel 0, layer 1)
    holds ``values`` (its four batch-norm outputs, row-major), the pooled maximum and ReLU to match."""
    arch = cnn.make_arch(4)
    params, bn = cnn.init_params(arch, 0)
    x = np.random.default_rng(0).random((2, 32, 32, 3), dtype=np.float32)
    caches = cnn.forward(params, bn, x, arch, train=True, momentum=0.9)[1]
    _, relu_out, (h, out, _, _) = caches["bn_relu_pool1"]
    h[0, :2, :2, 0] = np.asarray(values, np.float32).reshape(2, 2)
    out[0, 0, 0, 0] = max(values)
    relu_out[0, 0, 0, 0] = max(max(values), 0)
    return caches


def gradient_at_window(caches):
    dout = np.ones_like(caches["bn_relu_pool1"][1])
    _, relu_cache, pool_cache = caches["bn_relu_pool1"]
    return L.maxpool_backward(L.relu_backward(dout, relu_cache), pool_cache)[0, :2, :2, 0]


def test_a_near_tie_is_routed_as_the_device_did():
    top = np.float32(0.22705135)
    near = np.nextafter(top, np.float32(-1))  # one float32 step below: a near-tie
    ref = caches_with_window([0.1, top, 0.2, near])  # the reference's first maximum: offset 1
    dev = caches_with_window([0.1, near, 0.2, top])  # the device's: offset 3
    assert pooling_choices(ref["bn_relu_pool1"])[0][0, 0, 0, 0] == 1
    assert route_like(ref, dev) == 1
    for a, b in zip(pooling_choices(ref["bn_relu_pool1"]), pooling_choices(dev["bn_relu_pool1"])):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(gradient_at_window(ref), [[0, 0], [0, 1]])
    assert route_like(ref, copy.deepcopy(ref)) == 0  # routed alike already: nothing to change


def test_a_tie_on_the_same_value_goes_to_the_devices_offset_not_the_first():
    ref = caches_with_window([0.5, 0.5, 0.1, 0.1])
    dev = caches_with_window([0.5, 0.5, 0.1, 0.1])
    dev["bn_relu_pool1"][2][0][0, 0, 0, 0] = np.nextafter(np.float32(0.5), np.float32(0))  # device: offset 1
    assert route_like(ref, dev) == 1
    np.testing.assert_array_equal(gradient_at_window(ref), [[0, 1], [0, 0]])


def test_a_real_difference_is_not_routed_away():
    ref = caches_with_window([0.1, 0.9, 0.2, 0.3])
    dev = caches_with_window([0.1, 0.3, 0.2, 0.9])  # a wrong device: 0.3 is far from the maximum 0.9
    with pytest.raises(AssertionError, match="not near its maximum"):
        route_like(ref, dev)


def test_the_relu_is_aligned_only_near_zero():
    tiny = np.float32(1e-9)
    ref = caches_with_window([-0.3, tiny, -0.2, -0.1])  # the maximum just above zero: passes the ReLU
    dev = caches_with_window([-0.3, -tiny, -0.2, -0.1])  # just below: blocked
    assert route_like(ref, dev) == 1
    np.testing.assert_array_equal(gradient_at_window(ref), [[0, 0], [0, 0]])
    far = caches_with_window([-0.3, 0.5, -0.2, -0.1])
    with pytest.raises(AssertionError, match="not near zero"):
        route_like(far, dev)
