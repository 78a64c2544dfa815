"""workflow/scripts/select_best.py: the summary and the choice, and bad inputs refused naming the file."""

import json

import pandas as pd
import pytest

from step_scripts import load_script

select = load_script("select_best")


def point(tmp_path, lr, acc, status="ok", **extra):
    d = tmp_path / f"lr~{lr}"
    d.mkdir()
    metrics = {"hyperparameters": {"lr": lr, "reg": 0.001, "filters": 8}, "best_val_acc": acc, "best_epoch": 2,
               "epochs_run": 3, "seconds": 3.0, "seconds_per_epoch": 1.0, "status": status, **extra}  # fmt: skip
    (d / "metrics.json").write_text(json.dumps(metrics))
    return d / "metrics.json"


def run(tmp_path, *args, out_name="out"):
    out = tmp_path / out_name
    argv = [*args, "--out-summary", str(out / "summary.csv"), "--out-best", str(out / "best.json")]
    return select.main([str(a) for a in argv]), out


def test_a_sweep_is_summarised_and_its_best_point_chosen_never_a_diverged_one(tmp_path):
    paths = [point(tmp_path, 0.1, 0.5), point(tmp_path, 9.0, None, "diverged"), point(tmp_path, 0.01, 0.7)]
    rc, out = run(tmp_path, "--sweep", "lr_reg", "--metrics", *paths)
    assert rc == 0
    table = pd.read_csv(out / "summary.csv")
    assert list(table["lr"]) == [0.1, 9.0, 0.01] and list(table["status"]) == ["ok", "diverged", "ok"]
    assert json.loads((out / "best.json").read_text()) == {"lr": 0.01, "reg": 0.001, "filters": 8, "best_val_acc": 0.7,
                                                           "sweep": "lr_reg", "path": str(paths[2].parent)}  # fmt: skip
    # the sweeps together: their summaries concatenated, the best of all
    other = tmp_path / "other.csv"
    table.assign(sweep="filters", best_val_acc=table["best_val_acc"] / 2).to_csv(other, index=False)
    rc, out2 = run(tmp_path, "--summaries", out / "summary.csv", other, out_name="all")
    assert rc == 0 and len(pd.read_csv(out2 / "summary.csv")) == 6
    assert json.loads((out2 / "best.json").read_text())["sweep"] == "lr_reg"


@pytest.mark.parametrize("extra, said", [
    ({"status": None}, "status None with best_val_acc 0.5"),
    ({"best_val_acc": None}, "status 'ok' with best_val_acc None"),
    ({"hyperparameters": {"lr": "fast", "reg": 0.001, "filters": 8}}, "could not convert string to float: 'fast'"),
    ({"best_val_acc": "high"}, "a hyperparameter or best_val_acc is missing or not a number"),
    ({"hyperparameters": None}, "cannot read grid point"),
])  # fmt: skip
def test_a_bad_metrics_file_is_named_and_nothing_is_written(tmp_path, extra, said):
    good, bad = point(tmp_path, 0.1, 0.6), point(tmp_path, 0.2, 0.5, **extra)
    with pytest.raises(SystemExit, match=f"{bad}.*{said}|{said}.*{bad}") as ei:
        run(tmp_path, "--sweep", "s", "--metrics", good, bad)
    assert str(bad) in str(ei.value) and not (tmp_path / "out").exists()


def test_a_bad_summary_is_named_and_nothing_is_written(tmp_path):
    rc, out = run(tmp_path, "--sweep", "s", "--metrics", point(tmp_path, 0.1, 0.6))
    lacking = tmp_path / "lacking.csv"
    pd.read_csv(out / "summary.csv").drop(columns=["lr"]).to_csv(lacking, index=False)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    for bad, said in ((lacking, f"sweep summary {lacking} lacks the columns lr"),
                      (empty, f"cannot read sweep summary {empty} (EmptyDataError")):  # fmt: skip
        with pytest.raises(SystemExit, match=said.replace("(", r"\(")):
            select.main(["--summaries", str(out / "summary.csv"), str(bad),
                         "--out-summary", str(tmp_path / "s.csv"), "--out-best", str(tmp_path / "b.json")])  # fmt: skip
    header_only = tmp_path / "header.csv"
    header_only.write_text(lacking.read_text().splitlines()[0].replace("sweep,", "sweep,lr,") + "\n")
    assert select.main(["--summaries", str(header_only), "--out-summary", str(tmp_path / "s.csv"),
                        "--out-best", str(tmp_path / "b.json")]) == 1  # fmt: skip
    assert not (tmp_path / "s.csv").exists() and not (tmp_path / "b.json").exists()


def test_a_choice_that_cannot_be_written_leaves_no_summary(tmp_path):
    (tmp_path / "out" / "best.json").mkdir(parents=True)  # the choice's name is taken by a folder
    with pytest.raises(SystemExit, match="cannot write the selection"):
        run(tmp_path, "--sweep", "s", "--metrics", point(tmp_path, 0.1, 0.6))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["best.json"]


def test_an_interrupted_choice_leaves_no_new_summary_and_a_folder_that_cannot_be_written_is_named(tmp_path, monkeypatch):
    def ctrl_c(path, data):
        raise KeyboardInterrupt

    monkeypatch.setattr(select, "write_json_atomic", ctrl_c)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, "--sweep", "s", "--metrics", point(tmp_path, 0.1, 0.6))
    assert list((tmp_path / "out").iterdir()) == []
    monkeypatch.undo()
    blocked = tmp_path / "file"
    blocked.write_text("a file where the output folder should be")
    with pytest.raises(SystemExit, match=f"select: cannot write the selection .*{blocked}"):  # not a traceback from the clean-up
        select.main(["--sweep", "s", "--metrics", str(point(tmp_path, 0.2, 0.6)),
                     "--out-summary", str(blocked / "summary.csv"), "--out-best", str(blocked / "best.json")])  # fmt: skip


def test_a_sweep_summary_from_before_jobs_per_gpu_still_combines(tmp_path):
    """A study updated midway: one sweep's summary rewritten by this version, one from before
    the jobs_per_gpu column; they combine, the old rows' jobs_per_gpu empty."""
    on_gpu = {"backend": "cupy", "provenance": {"settings": {"jobs_per_gpu": 2}}}
    rc, out = run(tmp_path, "--sweep", "new", "--metrics", point(tmp_path, 0.1, 0.6, **on_gpu))
    old = tmp_path / "old.csv"
    pd.read_csv(out / "summary.csv").drop(columns=["jobs_per_gpu"]).assign(sweep="old").to_csv(old, index=False)
    rc, both = run(tmp_path, "--summaries", out / "summary.csv", old, out_name="both")
    table = pd.read_csv(both / "summary.csv")
    assert rc == 0 and list(table["sweep"]) == ["new", "old"]
    assert table["jobs_per_gpu"].iloc[0] == 2 and pd.isna(table["jobs_per_gpu"].iloc[1])
