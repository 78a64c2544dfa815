"""Gather the outputs of benchmarks/gpu_check.sh into one summary, gpu_results.json.

    python3 benchmarks/gpu_summary.py WORK_DIR OUT.json --commit SHA
    python3 benchmarks/gpu_summary.py WORK_DIR --study-settings   # call 3's kernels and graph settings

Reads from WORK_DIR: steps.tsv (each step's exit status), preflight.json,
gpu_tests.xml and gpu_tests_graph.xml (pytest's JUnit reports), speed.json, speed_graph.json, launches.json,
memory.json, stages.json and parity/{metrics,test_metrics}.json, whichever exist; a
missing number is null. Prints the summary and what issue 10 asks of it.
Exit status 1 when a step failed, a GPU test failed or was skipped, the
tests step ran no test, the launches step counted none on CuPy, or the CUDA
graph's timing fell back to the plain steps.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

# issue 10's bound: the parity recipe's test accuracy on the CPU, 20 epochs, as the issue states it (a run not
# recorded here; this project's CPU runs of the recipe gave 69.99 % and 70.05 %: benchmarks/NOTES.md, "Accuracy parity")
CPU_PARITY = 0.7021


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _junit(path: Path):
    """The root of a JUnit XML report, or None where there is none to read."""
    try:
        return ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return None


def _outcome(case) -> str:
    if case.find("skipped") is not None:
        return "skipped"
    return "failed" if case.find("failure") is not None or case.find("error") is not None else "passed"


def test_counts(path: Path) -> dict:
    """passed / failed / skipped from a JUnit XML report (errors count as failed)."""
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    if (root := _junit(path)) is None:
        return {k: None for k in counts}
    for case in root.iter("testcase"):
        counts[_outcome(case)] += 1
    for suite in root.iter("testsuite"):  # a collection error has no testcase of its own
        counts["failed"] = max(counts["failed"], int(suite.get("errors", 0)) + int(suite.get("failures", 0)))
    return counts


def all_test_counts(work: Path) -> dict:
    """:func:`test_counts` of the tests step's report (gpu_tests.xml) plus the graph-tests step's
    (gpu_tests_graph.xml, where it ran); None where the tests step left no report."""
    counts = test_counts(work / "gpu_tests.xml")
    graph = test_counts(work / "gpu_tests_graph.xml")
    if counts["passed"] is None or graph["passed"] is None:
        return counts
    return {k: counts[k] + graph[k] for k in counts}


def test_outcomes(path: Path) -> dict[str, str]:
    """Each test case's outcome ("passed", "failed", "skipped") in a JUnit XML report, by name."""
    root = _junit(path)
    return {} if root is None else {case.get("name", ""): _outcome(case) for case in root.iter("testcase")}


def study_settings(work: Path) -> tuple[dict, list[str]]:
    """SCRATCHCNN_KERNELS and SCRATCHCNN_GRAPH for call 3's study, from calls 1 and 2 in ``work``
    (benchmarks/NOTES.md, "The device session"), and why. The kernels go off only where a test
    failed for them: a kernel's own test, or a case failing with the kernels whose twin without
    them passed. The graph goes on only where every test passed, the graph's included, and its
    epoch at 32 filters beat the plain steps'."""
    main, graph = test_outcomes(work / "gpu_tests.xml"), test_outcomes(work / "gpu_tests_graph.xml")
    why = []
    theirs = sorted(name for name, o in main.items() if o == "failed" and (
        "kernel" in name.split("[")[0] or ("-kernels]" in name and main.get(name.replace("-kernels]", "-no-kernels]")) == "passed")))  # fmt: skip
    kernels = "0" if theirs else "1"
    if theirs:
        why.append(f"kernels off: {', '.join(theirs)} failed with them")
    counts = all_test_counts(work)
    plain = {row["filters"]: row.get("scratchcnn") for row in (read_json(work / "speed.json") or {}).get("rows", [])}
    graphed = {row["filters"]: row for row in (read_json(work / "speed_graph.json") or {}).get("rows", [])}
    g32, p32 = graphed.get(32, {}), plain.get(32)
    if kernels == "0":
        use_graph, reason = False, "graph off: the kernels are off"
    elif not graph or counts["failed"] or counts["skipped"] or not counts["passed"]:
        use_graph, reason = False, f"graph off: the tests did not all pass (graph's reported: {bool(graph)}; {counts})"
    elif g32.get("graph_failed") or g32.get("scratchcnn") is None or p32 is None:
        use_graph, reason = False, f"graph off: no timing of it against the plain steps at 32 filters ({g32.get('graph_failed')})"
    else:
        use_graph = g32["scratchcnn"] < p32
        reason = f"graph {'on' if use_graph else 'off'}: {g32['scratchcnn']} s / epoch at 32 filters against {p32} plain"
    why.append(reason)
    return {"SCRATCHCNN_KERNELS": kernels, "SCRATCHCNN_GRAPH": "1" if use_graph else "0"}, why


def summarise(work: Path, commit: str) -> tuple[dict, list[str]]:
    pre = read_json(work / "preflight.json") or {}
    speed = read_json(work / "speed.json") or {}
    launches = read_json(work / "launches.json") or {}
    memory = read_json(work / "memory.json") or {}
    parity = read_json(work / "parity" / "metrics.json") or {}
    parity_test = read_json(work / "parity" / "test_metrics.json") or {}
    epoch = {
        str(row["filters"]): {"scratchcnn": row.get("scratchcnn"), "torch": row.get("torch"), "ratio": row.get("ratio")}
        for row in speed.get("rows", [])
    }
    graph_rows = (read_json(work / "speed_graph.json") or {}).get("rows", [])
    for row in graph_rows:  # the step as a CUDA graph (SCRATCHCNN_GRAPH=1), beside the plain steps
        epoch.setdefault(str(row["filters"]), {})["scratchcnn_graph"] = row.get("scratchcnn")
    results = {
        "device_name": pre.get("device_name"),
        "date": dt.date.today().isoformat(),
        "commit": commit,
        "gpu_tests": all_test_counts(work),
        "epoch_seconds": epoch,
        "launches_per_step": {k: launches.get(k) for k in ("kernels", "no_kernels", "method")} if launches else None,
        "peak_train_mb": memory.get("peak_train_mb"),
        "peak_eval_mb": memory.get("peak_eval_mb"),
        "parity_test_accuracy": parity_test.get("test_accuracy"),
        "parity_best_val_accuracy": parity.get("best_val_acc"),
    }
    problems, ran = [], set()
    for line in (work / "steps.tsv").read_text().splitlines() if (work / "steps.tsv").exists() else []:
        step, status = line.split("\t")[:2]
        ran.add(step)
        if status != "0":
            problems.append(f"step {step} exited with {status}" + (" (timed out)" if status in ("124", "137") else ""))
    for row in graph_rows:
        if row.get("graph_failed"):
            problems.append(f"CUDA graph at {row['filters']} filters not captured, the plain steps timed: {row['graph_failed']}")
    counted = results["launches_per_step"] or {}
    for mode in ("kernels", "no_kernels"):
        # on CuPy every step launches something (on NumPy nothing is counted)
        if "launches" in ran and pre.get("backend") == "cupy" and not counted.get(mode):
            problems.append(f"launches per step ({mode}): {counted.get(mode)!r}, not a count")
    tests = results["gpu_tests"]
    if tests["passed"] is None:
        if "tests" in ran:  # no step asked for them (STEPS), e.g. device_run.sh's STUDY_ONLY calls
            problems.append("no GPU test report")
    elif tests["failed"] or tests["skipped"] or not tests["passed"]:
        problems.append(f"GPU tests: {tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} skipped")
    return results, problems


def verdict(results: dict) -> list[str]:
    """Issue 10's bars, each met, missed or not measured."""
    lines = []
    r64 = results["epoch_seconds"].get("64", {}).get("ratio")
    lines.append(f"ratio at 64 filters <= 1.0 (must): {r64} " + ("met" if r64 is not None and r64 <= 1.0 else "NOT MET"))
    ratios = [v.get("ratio") for v in results["epoch_seconds"].values()]
    half = bool(ratios) and all(r is not None and r <= 0.5 for r in ratios)
    lines.append(f"ratio <= 0.5 at every filter count (target): {ratios} " + ("met" if half else "not met"))
    for key in ("peak_train_mb", "peak_eval_mb"):
        v = results[key]
        lines.append(f"{key} < 1024: {v} " + ("met" if v is not None and v < 1024 else "NOT MET"))
    graph = {f: (v.get("scratchcnn_graph"), v.get("scratchcnn")) for f, v in results["epoch_seconds"].items()
             if v.get("scratchcnn_graph") is not None}  # fmt: skip
    if graph:
        lines.append("CUDA graph of the step, s / epoch against the plain steps: "
                     + ", ".join(f"{f} filters {g} vs {p}" for f, (g, p) in sorted(graph.items(), key=lambda kv: int(kv[0]))))
    acc = results["parity_test_accuracy"]
    ok = acc is not None and abs(acc - CPU_PARITY) <= 0.01
    lines.append(f"parity test accuracy within 1 point of {100 * CPU_PARITY:.2f} % (CPU): {acc} " + ("met" if ok else "NOT MET"))
    return lines


def stage_lines(work: Path, top=6) -> list[str]:
    """Where a step goes (the stages step): per filter count the step, its slowest timed layers and
    parts, each product as written against transposed, and the column sums against CuPy's."""
    stages = read_json(work / "stages.json") or {}
    lines = []
    for filters, row in stages.items():
        if not isinstance(row, dict) or "layers" not in row:
            continue
        for key in ("layers", "parts"):
            timed = row[key]
            slowest = sorted(timed["stages"].items(), key=lambda kv: -kv[1]["total_ms"])[:top]
            before = row.get("step_ms_untimed_cupy_column_sums")
            lines.append(f"{filters} filters, {key}: step {timed['step_ms']} ms timed one call at a time "
                         f"({row['step_ms_untimed']} untimed"
                         + (f"; {before} with CuPy's column sums" if before is not None else "") + "), slowest (total/host ms): "
                         + ", ".join(f"{k} {v['total_ms']}/{v['host_ms']}" for k, v in slowest)
                         + f", outside {timed['outside_ms']}")  # fmt: skip
        lines.append(f"{filters} filters, products (ms as written/transposed[/per image], best TFLOPS): "
                     + ", ".join(f"{k} {v['ms']}/{v['transposed_ms']}" + (f"/{v['per_image_ms']}" if "per_image_ms" in v else "")
                                 + f" {v['tflops']}" for k, v in row["products"].items()))  # fmt: skip
        if "column_sums" in row:
            lines.append(f"{filters} filters, column sums (ms as the step runs them[/CuPy's reduction]): "
                         + ", ".join(f"{k} {v['rows']}x{v['columns']} {v['ms']}" + (f"/{v['cupy_ms']}" if "cupy_ms" in v else "")
                                     for k, v in row["column_sums"].items()))  # fmt: skip
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("work", type=Path)
    p.add_argument("out", type=Path, nargs="?")
    p.add_argument("--commit", default="unknown")
    p.add_argument("--details", type=Path, help="also write every raw number gathered here")
    p.add_argument("--study-settings", action="store_true",
                   help="print call 3's SCRATCHCNN_KERNELS=... SCRATCHCNN_GRAPH=... (why on stderr) and stop")
    args = p.parse_args(argv)
    if args.study_settings:
        settings, why = study_settings(args.work)
        print(" ".join(f"{k}={v}" for k, v in settings.items()))
        print("study settings: " + "; ".join(why), file=sys.stderr)
        return 0
    if args.out is None:
        p.error("give OUT.json (or --study-settings)")
    results, problems = summarise(args.work, args.commit)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    if args.details:
        raw = {f.stem: read_json(f) for f in sorted(args.work.glob("*.json"))}
        raw["parity"] = {f.stem: read_json(f) for f in sorted((args.work / "parity").glob("*metrics.json"))}
        steps = (args.work / "steps.tsv").read_text().splitlines() if (args.work / "steps.tsv").exists() else []
        raw["steps"] = [dict(zip(("step", "exit", "seconds"), line.split("\t"))) for line in steps]
        raw["problems"] = problems
        raw["scratchcnn_kernels"] = os.environ.get("SCRATCHCNN_KERNELS", "1")  # "0": the fallback without them
        args.details.write_text(json.dumps(raw, indent=1) + "\n")
    print(json.dumps(results, indent=2))
    print("\n".join(["", "issue 10:"] + ["  " + line for line in verdict(results)]))
    if lines := stage_lines(args.work):
        print("\n".join(["where a step goes:"] + ["  " + line for line in lines]))
    if problems:
        print("FAILED:\n  " + "\n  ".join(problems))
        return 1
    print("all steps passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
