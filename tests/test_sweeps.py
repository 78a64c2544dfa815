import pytest

from scratchcnn import sweeps

FIXED = {"lr": 0.01, "reg": 1e-3, "filters": 32}


def test_expand_product_and_fixed_values():
    pts = sweeps.expand({"lr": [0.1, 0.01], "reg": [1e-4, 5e-4, 1e-3]}, FIXED)
    assert len(pts) == 6
    assert pts[0] == {"lr": 0.1, "reg": 1e-4, "filters": 32}
    assert pts[-1] == {"lr": 0.01, "reg": 1e-3, "filters": 32}
    pts = sweeps.expand({"base": "x", "filters": [16, 64]}, FIXED)
    assert pts == [{"lr": 0.01, "reg": 1e-3, "filters": 16}, {"lr": 0.01, "reg": 1e-3, "filters": 64}]


def test_plain_point_casts_numpy_scalars():
    import numpy as np  # a dependency of the project: never a reason to skip
    p = sweeps.plain_point({"lr": np.float64(0.1), "reg": np.float32(0.5), "filters": np.int64(8)})
    assert type(p["lr"]) is float and type(p["reg"]) is float and type(p["filters"]) is int


def test_sweep_order_is_checked():
    sweeps.check_sweep_order({"a": {"lr": [0.1]}, "b": {"base": "a", "filters": [8]}})
    with pytest.raises(ValueError, match="base 'c' is not an earlier sweep"):
        sweeps.check_sweep_order({"a": {"lr": [0.1]}, "b": {"base": "c", "filters": [8]}})
    with pytest.raises(ValueError, match="sweeps nothing"):
        sweeps.check_sweep_order({"a": {"base": None}})


def row(acc, status="ok", lr=0.1):
    return sweeps.summary_row("s", {"lr": lr, "reg": 0.0, "filters": 8},
                              {"best_val_acc": acc, "status": status, "epochs_run": 2})  # fmt: skip


def test_choose_best_ignores_diverged_and_keeps_first_of_ties():
    rows = [row(0.5, lr=1), row(0.9, "diverged", lr=2), row(0.6, lr=3), row(0.6, lr=4)]
    assert sweeps.choose_best(rows)["lr"] == 3


def test_choose_best_fails_clearly_when_all_diverged():
    with pytest.raises(sweeps.SelectionError, match="all 2 points diverged"):
        sweeps.choose_best([row(None, "diverged"), row(0.9, "diverged")])
