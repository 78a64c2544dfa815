"""benchmarks/gpu_check.sh and its summary, without a GPU: it must fail loudly, never pass by skipping."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_summary  # noqa: E402

ISSUE_KEYS = {"device_name", "date", "commit", "gpu_tests", "epoch_seconds", "launches_per_step", "peak_train_mb",
              "peak_eval_mb", "parity_test_accuracy", "parity_best_val_accuracy"}  # fmt: skip


@pytest.mark.skipif(importlib.util.find_spec("cupy") is not None, reason="CuPy is installed here")
def test_gpu_check_exits_1_at_the_preflight_without_cupy(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work")}
    env.pop("STEPS", None)
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "PREFLIGHT FAILED" in done.stdout and "CuPy cannot be imported" in done.stdout
    results = json.loads((tmp_path / "out" / "gpu_results.json").read_text())
    assert set(results) == ISSUE_KEYS and results["device_name"] is None
    assert "== tests" not in done.stdout  # nothing ran after the preflight


def work_dir(tmp_path, steps, cases):
    (tmp_path / "steps.tsv").write_text("".join(f"{name}\t{rc}\t1\n" for name, rc in steps))
    body = "".join(f'<testcase name="t{i}">{inner}</testcase>' for i, inner in enumerate(cases))
    (tmp_path / "gpu_tests.xml").write_text(f'<testsuites><testsuite errors="0" failures="0">{body}</testsuite></testsuites>')
    (tmp_path / "preflight.json").write_text(json.dumps({"device_name": "NVIDIA H100 80GB HBM3"}))
    (tmp_path / "speed.json").write_text(json.dumps({"rows": [{"filters": 64, "scratchcnn": 2.0, "torch": 2.9,
                                                              "ratio": 0.69}]}))  # fmt: skip
    return tmp_path


def test_summary_has_the_issue_keys_and_passes_only_a_clean_run(tmp_path, capsys):
    work = work_dir(tmp_path, [("preflight", 0), ("tests", 0)], ["", ""])
    out = tmp_path / "gpu_results.json"
    assert gpu_summary.main([str(work), str(out), "--commit", "abc"]) == 0
    results = json.loads(out.read_text())
    assert set(results) == ISSUE_KEYS
    assert results["gpu_tests"] == {"passed": 2, "failed": 0, "skipped": 0}
    assert results["epoch_seconds"] == {"64": {"scratchcnn": 2.0, "torch": 2.9, "ratio": 0.69}}
    assert results["device_name"] == "NVIDIA H100 80GB HBM3" and results["commit"] == "abc"
    assert "ratio at 64 filters <= 1.0 (must): 0.69 met" in capsys.readouterr().out


@pytest.mark.parametrize(
    "steps,cases,problem",
    [
        ([("tests", 0)], ["", '<skipped message="no GPU"/>'], "1 skipped"),
        ([("tests", 1)], ["", '<failure message="x"/>'], "1 failed"),
        ([("tests", 0)], [], "0 passed"),
        ([("tests", 0), ("parity", 124)], [""], "parity exited with 124 (timed out)"),
        ([("tests", 0), ("speed", "no-time")], [""], "speed exited with no-time"),
        ([("preflight", 0), ("tests", 0)], None, "no GPU test report"),
    ],
    ids=["a-skip", "a-failure", "no-tests", "a-timeout", "no-time-left", "no-report"],
)
def test_summary_fails_on_a_skip_a_failure_or_a_step_that_did_not_finish(tmp_path, capsys, steps, cases, problem):
    work = work_dir(tmp_path, steps, cases or [])
    if cases is None:
        (work / "gpu_tests.xml").unlink()
    assert gpu_summary.main([str(work), str(tmp_path / "r.json")]) == 1
    assert problem in capsys.readouterr().out


def test_the_graph_tests_report_adds_to_the_tests_report(tmp_path):
    work = work_dir(tmp_path, [("preflight", 0), ("tests", 0), ("graph-tests", 0)], ["", "", '<skipped message="x"/>'])
    assert gpu_summary.all_test_counts(work) == {"passed": 2, "failed": 0, "skipped": 1}  # no graph report yet
    (work / "gpu_tests_graph.xml").write_text('<testsuites><testsuite errors="0" failures="1"><testcase name="g0"/>'
                                              '<testcase name="g1"><failure message="y"/></testcase></testsuite></testsuites>')  # fmt: skip
    assert gpu_summary.all_test_counts(work) == {"passed": 3, "failed": 1, "skipped": 1}


def test_summary_without_a_tests_step_passes_on_the_steps_that_ran(tmp_path, capsys):
    """device_run.sh's STUDY_ONLY calls run the preflight alone: no test report is then no failure,
    and the issue's bars still read as not measured."""
    work = work_dir(tmp_path, [("preflight", 0)], [])
    (work / "gpu_tests.xml").unlink()
    assert gpu_summary.main([str(work), str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["gpu_tests"] == {"passed": None, "failed": None, "skipped": None}
    assert "all steps passed" in out and "parity test accuracy within 1 point of 70.21 % (CPU): None NOT MET" in out
    (work / "steps.tsv").write_text("preflight\t1\t1\n")
    assert gpu_summary.main([str(work), str(tmp_path / "r.json")]) == 1


def test_device_run_sizes_adds_up_each_calls_carry(tmp_path):
    """benchmarks/device_run.sh --sizes: the tree plus each call's carried folders, against 64 MiB."""
    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks/device_run.sh").write_text((ROOT / "benchmarks/device_run.sh").read_text())
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / ".gitignore").write_text("/.gpudata/\n/.whl/\n")
    (tmp_path / "tracked.bin").write_bytes(b"x" * (1 << 20))
    for part, mib in ((".gpudata/part1", 55), (".whl/1", 6), (".gpudata/part2", 55), (".whl/2", 9), (".gpudata/part3", 55)):
        (tmp_path / part).mkdir(parents=True)
        with open(tmp_path / part / "blob", "wb") as f:
            f.truncate(mib << 20)  # sparse: its apparent size is what travels
    done = subprocess.run(["bash", "benchmarks/device_run.sh", "--sizes"], cwd=tmp_path, capture_output=True, text=True)
    lines = done.stdout.splitlines()
    assert done.returncode == 1, done.stdout + done.stderr  # call 2 is over
    assert lines[0].startswith("call 1: tree 1.") and lines[0].endswith("= 62.0 MiB of 64: ok")
    assert lines[1].endswith("= 65.0 MiB of 64: OVER 64 MiB")
    assert lines[2].endswith("= 56.0 MiB of 64: ok")
    (tmp_path / ".whl/2/blob").unlink()
    (tmp_path / ".whl/2").rmdir()
    done = subprocess.run(["bash", "benchmarks/device_run.sh", "--sizes"], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 1 and "call 2: .whl/2 is missing" in done.stdout


def test_graph_node_types_are_read_by_name_in_both_cuda_bindings_generations():
    import enum

    import gpu_probe

    class IntEnumKind(enum.IntEnum):  # cuda-bindings 12: str() is '0' on Python 3.11+
        CU_GRAPH_NODE_TYPE_KERNEL = 0
        CU_GRAPH_NODE_TYPE_MEMSET = 2

    class FastEnumKind:  # cuda-bindings 13: str() is '<CUgraphNodeType.CU_GRAPH_NODE_TYPE_KERNEL: 0>'
        name = "CU_GRAPH_NODE_TYPE_KERNEL"

        def __str__(self):
            return "<CUgraphNodeType.CU_GRAPH_NODE_TYPE_KERNEL: 0>"

    assert gpu_probe.node_type_name(IntEnumKind.CU_GRAPH_NODE_TYPE_KERNEL) == "kernel"
    assert gpu_probe.node_type_name(IntEnumKind.CU_GRAPH_NODE_TYPE_MEMSET) == "memset"
    assert gpu_probe.node_type_name(FastEnumKind()) == "kernel"


@pytest.mark.parametrize(("events", "device_ms"), [
    ([("gemm", 1500.0), ("bn", 1000.0), ("gemm", 500.0)], 3.0),
    ([("gemm", 0.0), ("bn", 0.0)], None),  # durations present but never filled: no device time, not 0 ms
])  # fmt: skip
def test_step_timing_reports_device_time_only_when_the_profiler_recorded_some(monkeypatch, events, device_ms):
    import gpu_probe

    class Backend:
        syncs = 0

        def synchronize(self):
            self.syncs += 1

    steps = []
    monkeypatch.setattr(gpu_probe, "profile_step", lambda step: (events, "device_time"))
    out = gpu_probe.step_timing(Backend(), lambda: steps.append(1), steps=7)
    assert len(steps) == 5 + 7 and out["wall_ms_per_step"] >= 0
    assert out["device_ms_per_step"] == device_ms
    if device_ms is None:
        assert "busiest_kernels_us" not in out and "no durations" in out["duration_attribute"]
    else:
        assert out["busiest_kernels_us"] == {"gemm": 2000.0, "bn": 1000.0}
        assert out["kernels_in_order_us"] == [["gemm", 1500.0], ["bn", 1000.0], ["gemm", 500.0]]


@pytest.mark.parametrize("launches", [{"kernels": 0, "no_kernels": 0, "method": "CUDA graph"}, None])
def test_summary_fails_when_the_launches_step_counted_nothing(tmp_path, capsys, launches):
    work = work_dir(tmp_path, [("tests", 0), ("launches", 0)], [""])
    (work / "preflight.json").write_text(json.dumps({"device_name": "NVIDIA H100 80GB HBM3", "backend": "cupy"}))
    if launches is not None:
        (work / "launches.json").write_text(json.dumps(launches))
    assert gpu_summary.main([str(work), str(tmp_path / "r.json")]) == 1
    assert "launches per step (kernels)" in capsys.readouterr().out
    (work / "launches.json").write_text(json.dumps({"kernels": 95, "no_kernels": 286, "method": "CUDA graph"}))
    assert gpu_summary.main([str(work), str(tmp_path / "r.json")]) == 0
    (work / "launches.json").write_text(json.dumps({"method": "not applicable on the CPU"}))
    (work / "preflight.json").write_text(json.dumps({"device_name": "a CPU", "backend": "numpy"}))
    assert gpu_summary.main([str(work), str(tmp_path / "r.json")]) == 0  # NumPy counts no launches


def test_the_cuda_graph_timing_is_summarised_and_a_fallback_fails_it(tmp_path, capsys):
    work = work_dir(tmp_path, [("preflight", 0), ("tests", 0), ("speed-graph", 0)], [""])
    (work / "speed_graph.json").write_text(json.dumps({"rows": [{"filters": 64, "scratchcnn": 0.9}]}))
    assert gpu_summary.main([str(work), str(tmp_path / "r.json")]) == 0
    results = json.loads((tmp_path / "r.json").read_text())
    assert results["epoch_seconds"]["64"] == {"scratchcnn": 2.0, "torch": 2.9, "ratio": 0.69, "scratchcnn_graph": 0.9}
    assert "CUDA graph of the step, s / epoch against the plain steps: 64 filters 0.9 vs 2.0" in capsys.readouterr().out
    (work / "speed_graph.json").write_text(json.dumps({"rows": [{"filters": 64, "scratchcnn": 2.0, "graph_failed": "E: x"}]}))
    assert gpu_summary.main([str(work), str(tmp_path / "r.json")]) == 1
    assert "CUDA graph at 64 filters not captured, the plain steps timed: E: x" in capsys.readouterr().out


@pytest.mark.parametrize("setting", ["0", None])
def test_the_callers_kernel_setting_reaches_the_steps_and_the_details(tmp_path, setting):
    """device_run.sh's fallback (SCRATCHCNN_KERNELS=0 before call 3) must not be undone by gpu_check.sh."""
    env = {**os.environ, "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work"), "STEPS": "preflight"}
    env.pop("SCRATCHCNN_KERNELS", None)
    if setting is not None:
        env["SCRATCHCNN_KERNELS"] = setting
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--cpu"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SCRATCHCNN_KERNELS={setting or '1'}" in done.stdout.splitlines()[0]
    details = json.loads((tmp_path / "out" / "gpu_details.json").read_text())
    assert details["scratchcnn_kernels"] == (setting or "1")


def test_a_parity_run_cut_off_still_returns_the_epochs_it_finished(tmp_path):
    import numpy as np
    import pandas as pd

    from scratchcnn.checkpoint import save_train_state
    from scratchcnn.training import HISTORY_COLUMNS, TrainState

    rows = [[e, 0.1, 2.0 / e, 1.9 / e, 0.1, 0.3 * e, 1.8 / e, 0.28 * e, 3.5] for e in (1, 2, 3)]
    (tmp_path / "work" / "parity").mkdir(parents=True)
    save_train_state(tmp_path / "work" / "parity" / "state.npz",
                     TrainState({"W1": np.zeros(3, np.float32)}, {"running_mean1": np.zeros(3, np.float32)}, epoch=3,
                                history=rows), "fingerprint")  # fmt: skip
    env = {**os.environ, "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work"), "STEPS": "none"}
    done = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--cpu"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert "parity cut off after 3 epochs" in done.stdout, done.stdout + done.stderr
    history = pd.read_csv(tmp_path / "out" / "parity_history.csv")
    assert list(history.columns) == list(HISTORY_COLUMNS) and history["val_acc"].tolist() == pytest.approx([0.28, 0.56, 0.84])


def test_accuracy_probe_on_the_cupy_stand_in(tmp_path):
    """The device session's accuracy probe, on tests/fake_cupy: every row near float64, pooling routed alike."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("tests/fake_cupy", "workflow", "benchmarks"))}
    done = subprocess.run([sys.executable, "tests/fake_cupy/run_script.py", "benchmarks/gpu_probe.py", "accuracy",
                           "--device", "gpu", "--filters", "8", "--json", str(tmp_path / "a.json")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "a.json").read_text())
    for key in ("numpy_float32", "cupy_kernels_on", "cupy_kernels_off"):
        row = result[key]
        assert max(row[k] for k in ("W1", "W2", "W3", "conv1.product_alone", "conv2.product_alone")) < 1e-5, key
        assert 0 <= row["pooling_routed_differently"] <= 4, key


def test_accuracy_probe_routes_the_float64_reference_as_the_run_it_measures(monkeypatch):
    """Where a run picked the other pixel of a near-tied window, its float64 reference is routed alike."""
    import gpu_probe
    import gpu_problem
    from gpu_problem import pooling_choices
    from scratchcnn.backend import get_backend

    moved = []
    route_like = gpu_problem.route_like

    def recorded(ref, dev):
        moved.append(route_like(ref, dev))
        for name in ("bn_relu_pool1", "bn_relu_pool2"):  # routed alike afterwards
            assert all((a == b).all() for a, b in zip(pooling_choices(ref[name]), pooling_choices(dev[name])))
        return moved[-1]

    monkeypatch.setattr(gpu_problem, "route_like", recorded)
    result = gpu_probe.accuracy(get_backend("cpu"), filters=4, batch=8)
    assert moved == [result["numpy_float32"]["pooling_routed_differently"]]
    assert result["numpy_float32"]["W1"] < 1e-5


def test_stage_probe_times_each_layer_and_part_in_call_order_and_restores_them():
    import gpu_probe
    from scratchcnn import layers, training
    from scratchcnn.backend import get_backend

    originals = {name: layers.__dict__[name] for _, names in gpu_probe.STAGES["parts"] for name in names}
    originals["step"] = training.FlatSGD.__dict__["step"]
    saved = []  # after each filter count: a timeout at the last keeps the others
    result = gpu_probe.stage_times(get_backend("cpu"), [4, 2], batch=8, steps=3, save=lambda partial: saved.append(sorted(partial)))
    assert saved == [sorted({"batch", "steps", "kernels", "4"}), sorted({"batch", "steps", "kernels", "4", "2"})]
    row = result["4"]
    # the model's order: two convolutions and sandwiches forward, the FC layer and the loss, then back
    assert [k.split(" ", 1)[1] for k in row["layers"]["stages"]] == [
        "conv2d_forward", "bn_relu_pool_forward", "conv2d_forward", "bn_relu_pool_forward", "affine_forward",
        "softmax_cross_entropy", "affine_backward", "bn_relu_pool_backward", "conv2d_backward",
        "bn_relu_pool_backward", "conv2d_backward", "step"]  # fmt: skip
    assert list(row["layers"]["stages"])[0] == "01 conv2d_forward" and list(row["layers"]["stages"])[-1] == "12 step"
    assert list(row) == ["step_ms_untimed", "layers", "parts", "products", "column_sums"]
    assert {k: (v["rows"], v["columns"]) for k, v in row["column_sums"].items()} == {
        "conv1.bias": (8 * 32 * 32, 4), "conv2.bias": (8 * 14 * 14, 4), "fc.bias": (8, 10)}
    assert all(v["ms"] > 0 and "cupy_ms" not in v for v in row["column_sums"].values())
    parts = [k.split(" ", 1)[1] for k in row["parts"]["stages"]]
    assert parts.count("im2col") == 2 and parts.count("weight_gradient") == 2 and parts.count("col2im") == 1
    for key in ("layers", "parts"):
        timed = row[key]
        assert all(0 < v["host_ms"] <= v["total_ms"] for v in timed["stages"].values())
        assert timed["step_ms"] == pytest.approx(sum(v["total_ms"] for v in timed["stages"].values()) + timed["outside_ms"], abs=1e-3)
    assert set(row["products"]) >= {"conv1.forward", "conv1.weights", "conv2.forward", "conv2.weights", "conv2.input"}
    # conv1's 27 columns padded to 32; conv2 at 4 filters: 8 * 14 * 14 rows, 9 * 4 columns, 4 outputs, 2 flops each
    assert row["products"]["conv2.forward"]["flops"] == 2 * 8 * 14 * 14 * 36 * 4
    assert row["products"]["conv1.forward_k_padded"]["flops"] == 2 * 8 * 32 * 32 * 32 * 4
    assert all(v["ms"] > 0 and v["transposed_ms"] > 0 for v in row["products"].values())
    assert [k for k, v in row["products"].items() if "per_image_ms" in v] == ["conv1.weights", "conv2.weights"]
    # the timed functions are the originals again
    assert all(layers.__dict__[name] is f for name, f in originals.items() if name != "step")
    assert training.FlatSGD.__dict__["step"] is originals["step"]


def test_stage_probe_on_the_cupy_stand_in(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(ROOT / p) for p in ("tests/fake_cupy", "workflow", "benchmarks"))}
    done = subprocess.run([sys.executable, "tests/fake_cupy/run_script.py", "benchmarks/gpu_probe.py", "stages",
                           "--device", "gpu", "--filters", "4", "--steps", "1", "--json", str(tmp_path / "stages.json")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads((tmp_path / "stages.json").read_text())
    assert result["kernels"] is True
    # with the kernels, the step is also timed with the column sums CuPy's reduction did before
    assert list(result["4"]) == ["step_ms_untimed", "step_ms_untimed_cupy_column_sums", "layers", "parts",
                                 "products", "column_sums"]  # fmt: skip
    assert result["4"]["step_ms_untimed_cupy_column_sums"] > 0
    assert all(v["cupy_ms"] > 0 for v in result["4"]["column_sums"].values())  # against CuPy's own reduction
    lines = gpu_summary.stage_lines(tmp_path)  # what the summary prints of it
    assert len(lines) == 4 and lines[0].startswith("4 filters, layers: step ") and lines[2].startswith("4 filters, products ")
    assert "with CuPy's column sums), slowest" in lines[0]
    assert lines[-1].startswith("4 filters, column sums (ms as the step runs them[/CuPy's reduction]): conv1.bias 65536x4 ")


def test_probe_filters_take_several_values_only_for_the_stages(capsys):
    import gpu_probe

    with pytest.raises(SystemExit):
        gpu_probe.main(["launches", "--device", "cpu", "--filters", "4", "8"])
    assert "launches takes one filter count, not 2" in capsys.readouterr().err


def settings_work(tmp_path, main_cases, graph_cases, plain_32=1.0, graph_row=None):
    """A work folder as calls 1 and 2 leave it: named test cases (name -> "", "fail" or "skip"),
    the plain and the graph's epoch seconds at 32 filters."""
    inner = {"": "", "fail": '<failure message="x"/>', "skip": '<skipped message="x"/>'}

    def report(cases):
        body = "".join(f'<testcase name="{name}">{inner[o]}</testcase>' for name, o in cases.items())
        return f'<testsuites><testsuite errors="0" failures="0">{body}</testsuite></testsuites>'

    (tmp_path / "gpu_tests.xml").write_text(report(main_cases))
    if graph_cases is not None:
        (tmp_path / "gpu_tests_graph.xml").write_text(report(graph_cases))
    (tmp_path / "speed.json").write_text(json.dumps({"rows": [{"filters": 32, "scratchcnn": plain_32}]}))
    if graph_row is not None:
        (tmp_path / "speed_graph.json").write_text(json.dumps({"rows": [{"filters": 32, **graph_row}]}))
    return tmp_path


PASSING = {"test_training_steps_agree[5.0-kernels]": "", "test_training_steps_agree[5.0-no-kernels]": "",
           "test_fused_sgd_kernel[5.0-0.001]": ""}  # fmt: skip
GRAPH_PASSING = {"test_training_with_the_cuda_graph_follows_the_plain_steps": ""}


@pytest.mark.parametrize("main, graph, graph_row, expected, said", [
    (PASSING, GRAPH_PASSING, {"scratchcnn": 0.8}, ("1", "1"), "graph on: 0.8 s / epoch at 32 filters against 1.0 plain"),
    (PASSING, GRAPH_PASSING, {"scratchcnn": 1.1}, ("1", "0"), "graph off: 1.1 s / epoch at 32 filters against 1.0 plain"),
    (PASSING, GRAPH_PASSING, {"scratchcnn": 1.0, "graph_failed": "capture refused"}, ("1", "0"), "capture refused"),
    (PASSING, None, {"scratchcnn": 0.8}, ("1", "0"), "graph off: the tests did not all pass"),
    ({**PASSING, "test_fused_sgd_kernel[5.0-0.001]": "fail"}, GRAPH_PASSING, {"scratchcnn": 0.8}, ("0", "0"),
     "kernels off: test_fused_sgd_kernel[5.0-0.001] failed with them"),
    ({**PASSING, "test_training_steps_agree[5.0-kernels]": "fail"}, GRAPH_PASSING, {"scratchcnn": 0.8}, ("0", "0"),
     "kernels off: test_training_steps_agree[5.0-kernels] failed"),
    # failing with and without the kernels: not theirs (the first H200 run's near-tie), so they stay on
    ({**PASSING, "test_training_steps_agree[5.0-kernels]": "fail", "test_training_steps_agree[5.0-no-kernels]": "fail"},
     GRAPH_PASSING, {"scratchcnn": 0.8}, ("1", "0"), "graph off: the tests did not all pass"),
    ({**PASSING, "test_tf32_is_off": "skip"}, GRAPH_PASSING, {"scratchcnn": 0.8}, ("1", "0"), "'skipped': 1"),
], ids=["graph-faster", "graph-slower", "graph-not-captured", "no-graph-tests", "a-kernel-test", "kernels-only",
        "both-modes", "a-skip"])  # fmt: skip
def test_call_3_chooses_kernels_and_graph_from_calls_1_and_2(tmp_path, capsys, main, graph, graph_row, expected, said):
    work = settings_work(tmp_path, main, graph, graph_row=graph_row)
    assert gpu_summary.main([str(work), "--study-settings"]) == 0
    out, err = capsys.readouterr()
    assert out == f"SCRATCHCNN_KERNELS={expected[0]} SCRATCHCNN_GRAPH={expected[1]}\n"
    assert said in err, err


def test_call_3_without_any_results_keeps_the_kernels_and_leaves_the_graph_off(tmp_path):
    assert gpu_summary.study_settings(tmp_path)[0] == {"SCRATCHCNN_KERNELS": "1", "SCRATCHCNN_GRAPH": "0"}
