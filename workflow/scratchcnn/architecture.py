"""The network as a table of layers: shapes and parameter counts, computed from the model."""

from __future__ import annotations

import numpy as np

from . import model as cnn


def layer_table(arch: dict) -> list[dict]:
    """Every layer's input and output shape (H, W, C) and parameter count.

    ``params`` counts the learnable parameters, ``buffers`` the BN running
    statistics (saved in the checkpoint, not trained). Pure function of ``arch``
    (the ``arch_json`` of a checkpoint); the shapes come from the model itself.
    """
    shapes = {k: tuple(int(v) for v in t) for k, t in cnn.layer_shapes(arch).items()}
    size = {k: int(np.prod(t)) for k, t in cnn.param_shapes(arch).items()}
    k, s = int(arch["kernel_size"]), int(arch.get("stride", 1))
    rows, cur = [], shapes["input"]
    for i in (1, 2):
        conv, pool = shapes[f"conv{i}"], shapes[f"pool{i}"]
        rows += [
            dict(name=f"conv{i}", kind="conv", input=cur, output=conv, params=size[f"W{i}"] + size[f"b{i}"],
                 buffers=0, kernel=k, stride=s, padding=int(arch[f"padding{i}"]), filters=conv[2]),
            dict(name=f"bn{i}", kind="batchnorm", input=conv, output=conv,
                 params=size[f"gamma{i}"] + size[f"beta{i}"],
                 buffers=size[f"running_mean{i}"] + size[f"running_var{i}"]),
            dict(name=f"relu{i}", kind="relu", input=conv, output=conv, params=0, buffers=0),
            dict(name=f"pool{i}", kind="maxpool", input=conv, output=pool, params=0, buffers=0,
                 kernel=int(arch["pool_size"]), stride=int(arch["pool_stride"])),
        ]  # fmt: skip
        cur = pool
    d, n_classes = int(np.prod(cur)), shapes["fc"][0]
    rows += [
        dict(name="flatten", kind="flatten", input=cur, output=(d,), params=0, buffers=0),
        dict(name="fc", kind="affine", input=(d,), output=(n_classes,), params=size["W3"] + size["b3"], buffers=0),
        dict(name="softmax", kind="softmax", input=(n_classes,), output=(n_classes,), params=0, buffers=0),
    ]  # fmt: skip
    return rows
