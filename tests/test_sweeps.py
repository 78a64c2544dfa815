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


def test_the_points_order_is_the_hyperparameters_not_the_grid_files():
    """The order decides selection's ties (the earlier point wins): lr is the outer axis however
    the grid file lists the keys."""
    want = [(0.1, 1e-4), (0.1, 1e-3), (0.01, 1e-4), (0.01, 1e-3)]
    for spec in ({"reg": [1e-4, 1e-3], "lr": [0.1, 0.01]}, {"lr": [0.1, 0.01], "reg": [1e-4, 1e-3]}):
        assert [(p["lr"], p["reg"]) for p in sweeps.expand(spec, FIXED)] == want


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
    with pytest.raises(sweeps.SelectionError, match=r"all 2 points ended without a usable result \(diverged\)"):
        sweeps.choose_best([row(None, "diverged"), row(0.9, "diverged")])
    with pytest.raises(sweeps.SelectionError, match=r"the only point ended without a usable result \(diverged\)") as exc:
        sweeps.choose_best([row(None, "diverged")])
    # the grid may be any file (sweep.grid): the message names the setting, not the default path
    assert str(exc.value).endswith("lower the learning rates in the grid file (sweep.grid)")


def test_shown_sweep_varies_most_then_has_most_combinations_then_comes_first():
    import pandas as pd  # a dependency of the project: never a reason to skip

    def summary(*sweeps_):  # (name, [(lr, reg, filters), ...]) in the summary's order
        return pd.DataFrame([{"sweep": n, "lr": lr, "reg": reg, "filters": f}
                             for n, pts in sweeps_ for lr, reg, f in pts])  # fmt: skip

    reg_only = ("a", [(0.1, 0.0, 8), (0.1, 1e-3, 8)])
    lr_only = ("b", [(0.1, 0.0, 8), (0.01, 0.0, 8), (0.001, 0.0, 8)])
    both = ("c", [(0.1, 0.0, 8), (0.01, 1e-3, 8)])
    filters = ("d", [(0.1, 0.0, 4), (0.1, 0.0, 8), (0.1, 0.0, 16)])
    assert sweeps.shown_sweep(summary(reg_only, lr_only, both), ("lr", "reg")) == "c"  # varies both
    assert sweeps.shown_sweep(summary(reg_only, lr_only), ("lr", "reg")) == "b"  # three values against two
    assert sweeps.shown_sweep(summary(lr_only, ("e", lr_only[1])), ("lr", "reg")) == "b"  # a tie: the earlier
    assert sweeps.shown_sweep(summary(("e", lr_only[1]), lr_only), ("lr", "reg")) == "e"
    assert sweeps.shown_sweep(summary(reg_only, filters), ("filters",)) == "d"
    # more rows but fewer filter counts: the counts decide (a filters x lr sweep has 4 rows, 2 counts)
    wide = ("f", [(0.1, 0.0, 4), (0.01, 0.0, 4), (0.1, 0.0, 8), (0.01, 0.0, 8)])
    assert sweeps.shown_sweep(summary(wide, filters), ("filters",)) == "d"
    assert sweeps.shown_sweep(summary(filters), ("lr", "reg")) is None


def test_a_points_row_says_how_many_jobs_could_share_its_gpu():
    """The summary's jobs_per_gpu: the run's setting where it trained on a GPU, empty on the CPU
    (where the setting played no part) and where the metrics do not say."""
    on_gpu = {"best_val_acc": 0.5, "status": "ok", "backend": "cupy",
              "provenance": {"settings": {"device": "gpu", "jobs_per_gpu": 4, "threads": 1}}}  # fmt: skip
    point = {"lr": 0.1, "reg": 0.0, "filters": 8}
    assert sweeps.summary_row("s", point, on_gpu)["jobs_per_gpu"] == 4
    assert sweeps.summary_row("s", point, {**on_gpu, "backend": "numpy"})["jobs_per_gpu"] is None
    assert sweeps.summary_row("s", point, {**on_gpu, "provenance": {}})["jobs_per_gpu"] is None
    assert list(sweeps.summary_row("s", point, on_gpu)) == sweeps.SUMMARY_COLUMNS


def test_a_points_row_gives_the_epochs_it_ran_not_those_planned():
    """A point that diverged in its third of ten planned epochs ran 3."""
    metrics = {"best_val_acc": 0.3, "status": "diverged", "epochs_run": 3, "epochs_planned": 10}
    assert sweeps.summary_row("s", {"lr": 0.1, "reg": 0.0, "filters": 8}, metrics)["epochs"] == 3


def test_a_cell_whose_only_point_diverged_has_no_accuracy():
    """The diverged point recorded 0.3 before it diverged: its cell is NaN and marked diverged;
    the finished point's cell keeps 0.6."""
    import pandas as pd  # a dependency of the project: never a reason to skip

    rows = pd.DataFrame([
        {"lr": 0.1, "reg": 0.0, "best_val_acc": 0.3, "seconds_per_epoch": 4.0, "status": "diverged"},
        {"lr": 0.01, "reg": 0.0, "best_val_acc": 0.6, "seconds_per_epoch": 2.0, "status": "ok"},
    ])  # fmt: skip
    table = sweeps.by_value(rows, ["lr", "reg"])
    assert list(table["lr"]) == [0.01, 0.1]
    assert table["best_val_acc"].iloc[0] == 0.6 and pd.isna(table["best_val_acc"].iloc[1])
    assert list(table["diverged"]) == [False, True]
    assert list(table["seconds_per_epoch"]) == [2.0, 4.0]
