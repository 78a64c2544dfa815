"""benchmarks/gpu_tables.py: issue 10's results as Markdown, read from gpu_results.json alone."""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_tables  # noqa: E402

RESULTS = {
    "device_name": "NVIDIA H100 80GB HBM3", "date": "2026-12-01", "commit": "0123456789abcdef0123",
    "gpu_tests": {"passed": 73, "failed": 0, "skipped": 0},
    "epoch_seconds": {"256": {"scratchcnn": 2.5, "torch": 3.1, "ratio": 0.806},
                      "64": {"scratchcnn": 1.234, "torch": 2.87, "ratio": 0.43}},
    "launches_per_step": {"kernels": 45, "no_kernels": 240, "method": "CUDA graph of one step"},
    "peak_train_mb": 612.4, "peak_eval_mb": 301.0,
    "parity_test_accuracy": 0.7063, "parity_best_val_accuracy": 0.712,
}  # fmt: skip


def test_every_number_of_the_summary_appears_with_its_card_date_and_commit(tmp_path, capsys):
    path = tmp_path / "gpu_results.json"
    path.write_text(json.dumps(RESULTS))
    assert gpu_tables.main([str(path)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("Measured on NVIDIA H100 80GB HBM3 on 2026-12-01, commit 0123456789ab,")
    rows = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert rows == ["| 64 | 1.23 | 2.87 | 0.43 |", "| 256 | 2.50 | 3.10 | 0.81 |"]  # by filter count, not text
    assert "73 passed, 0 failed, 0 skipped" in text
    assert "45 with the custom kernels, 240 without (CUDA graph of one step)" in text
    assert "training 612 MB (batch 64), evaluation 301 MB" in text
    assert "test accuracy 70.63 % (+0.42 points against the CPU's 70.21 %), best validation accuracy 71.20 %" in text
    assert "A dash" not in text  # every number measured


def test_what_was_not_measured_shows_as_a_dash():
    text = gpu_tables.section({"device_name": None, "date": "2026-12-01", "commit": "abc", "gpu_tests":
                               {"passed": None, "failed": None, "skipped": None}, "epoch_seconds": {},
                               "launches_per_step": None, "peak_train_mb": None, "peak_eval_mb": None,
                               "parity_test_accuracy": None, "parity_best_val_accuracy": None})  # fmt: skip
    assert "on an unnamed card" in text and "– passed, – failed, – skipped" in text
    assert "– with the custom kernels, – without (not measured)" in text
    assert "test accuracy –, best validation accuracy –" in text
    assert text.endswith("- A dash: not measured in that run.\n")


def test_the_cuda_graph_column_appears_where_it_was_measured():
    timed = {**RESULTS, "epoch_seconds": {"64": {"scratchcnn": 1.234, "torch": 2.87, "ratio": 0.43, "scratchcnn_graph": 0.6},
                                          "256": {"scratchcnn": 2.5, "torch": 3.1, "ratio": 0.806}}}  # fmt: skip
    lines = gpu_tables.section(timed).splitlines()
    assert "| filters | scratchcnn s / epoch | PyTorch eager s / epoch | ratio | scratchcnn, CUDA graph |" in lines
    assert "| 64 | 1.23 | 2.87 | 0.43 | 0.60 |" in lines and "| 256 | 2.50 | 3.10 | 0.81 | – |" in lines
