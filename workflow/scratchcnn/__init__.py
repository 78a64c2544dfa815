"""scratchcnn: the study's three-layer CNN written from scratch on NumPy's API.

The same code runs on NumPy (CPU) or CuPy (GPU): every function takes its array
module from its inputs or from a :class:`scratchcnn.backend.Backend` chosen at
run time, never at import time.

Checkpoint layout (``model.npz``, readable with ``numpy.load`` and no pickle):

========================  =====================  ==========================================
key                       shape                  meaning
========================  =====================  ==========================================
``W1``                    ``(F1, k, k, 3)``      conv1 kernels, (filter, row, column, channel in)
``b1 gamma1 beta1``       ``(F1,)``              conv1 bias, BN1 scale and shift
``running_mean1/var1``    ``(F1,)``              BN1 running statistics (evaluation mode)
``W2``                    ``(F2, k, k, F1)``     conv2 kernels
``b2 gamma2 beta2``       ``(F2,)``              conv2 bias, BN2 scale and shift
``running_mean2/var2``    ``(F2,)``              BN2 running statistics
``W3``                    ``(D, 10)``            fully connected weights, D = H2 * W2 * F2
``b3``                    ``(10,)``              fully connected bias
``arch_json``             0-d str                architecture (JSON)
``meta_json``             0-d str                epoch, validation accuracy, config, versions
========================  =====================  ==========================================

Images are ``(N, H, W, C)`` float32 (image, row, column, channel); the last
pooled map is flattened in (row, column, channel) order before ``W3``, so a
``(N, H2, W2, F2)`` activation ``a`` maps to logits ``a.reshape(N, -1) @ W3 + b3``.
"""

__version__ = "0.1.0"
