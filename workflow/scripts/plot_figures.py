#!/usr/bin/env python
"""Draw report figures: ``results/figures/NAME.pdf`` and ``NAME.png``.

Each figure needs only some inputs (see ``NEEDS``); a figure can be built on
its own, e.g.::

    python workflow/scripts/plot_figures.py --which loss_curve \\
        --history results/final/history.csv --out-dir results/figures --lang zh
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from scratchcnn.io import setup_logging
from scratchcnn import figures

from scratchcnn.checkpoint import load_checkpoint

# figure -> the input flags it reads
NEEDS: dict[str, tuple[str, ...]] = {
    "loss_curve": ("--history",),
    "val_accuracy": ("--history",),
    "sweep_heatmap": ("--summary",),
    "filters_sweep": ("--summary",),
    "per_class_accuracy": ("--test-metrics",),
    "conv1_kernels": ("--model",),
    "conv2_kernels": ("--model",),
    "fc_weights": ("--model",),  # class names from --test-metrics or --data when given
    "histograms": ("--model",),
    "confusion_matrix": ("--test-metrics",),
    "test_samples": ("--data", "--predictions"),
}
assert set(NEEDS) == set(figures.FIGURES)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--which", nargs="+", required=True, metavar="NAME",
                   choices=list(figures.FIGURES) + ["all"], help="figures to draw (or 'all')")  # fmt: skip
    p.add_argument("--out-dir", type=Path, default=Path("results/figures"))
    p.add_argument("--lang", choices=["zh", "en"], default="zh")
    p.add_argument("--dpi", type=int, default=figures.PNG_DPI, help="PNG resolution")
    p.add_argument("--seed", type=int, default=0, help="which test images test_samples shows")
    p.add_argument("--history", type=Path, help="history.csv of the final run")
    p.add_argument("--summary", type=Path, help="results/sweep/summary.csv")
    p.add_argument("--model", type=Path, help="model.npz of the final run")
    p.add_argument("--test-metrics", type=Path, help="results/final/test_metrics.json")
    p.add_argument("--data", type=Path, help="results/data/cifar10.npz")
    p.add_argument("--predictions", type=Path, help="results/final/predictions.npz")
    args = p.parse_args(argv)
    if "all" in args.which:
        args.which = list(figures.FIGURES)
    for name in args.which:
        for flag in NEEDS[name]:
            if getattr(args, flag[2:].replace("-", "_")) is None:
                p.error(f"figure {name!r} needs {flag}")
    for name in args.which:
        for flag in NEEDS[name]:
            path = getattr(args, flag[2:].replace("-", "_"))
            if not path.exists():
                p.error(f"{flag} {path} does not exist (needed by figure {name!r})")
    return args


class Inputs:
    """Loads each input file once, when a figure first asks for it."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        self._cache: dict = {}

    def _get(self, key, load):
        if key not in self._cache:
            self._cache[key] = load()
        return self._cache[key]

    def history(self) -> pd.DataFrame:
        return self._get("history", lambda: pd.read_csv(self.args.history))

    def summary(self) -> pd.DataFrame:
        return self._get("summary", lambda: pd.read_csv(self.args.summary))

    def params(self) -> dict:
        return self._get("model", lambda: load_checkpoint(self.args.model)).params

    def test_metrics(self) -> dict:
        return self._get("tm", lambda: json.loads(self.args.test_metrics.read_text(encoding="utf-8")))

    def data(self) -> dict:
        def load():
            with np.load(self.args.data, allow_pickle=False) as z:
                meta = json.loads(str(z["meta_json"])) if "meta_json" in z.files else {}
                return {"x_test": z["x_test"], "y_test": z["y_test"],
                        "class_names": [str(c) for c in z["class_names"]], "meta": meta}  # fmt: skip

        return self._get("data", load)

    def predictions(self) -> dict:
        def load():
            with np.load(self.args.predictions, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}

        return self._get("pred", load)

    def class_names(self) -> list[str]:
        if self.args.test_metrics is not None and self.args.test_metrics.exists():
            return list(self.test_metrics()["class_names"])
        if self.args.data is not None and self.args.data.exists():
            return self.data()["class_names"]
        return list(figures.CIFAR10_CLASSES)


def build(name: str, inp: Inputs, lang: str, seed: int = 0):
    if name == "loss_curve":
        return figures.loss_curve(inp.history(), lang)
    if name == "val_accuracy":
        return figures.val_accuracy(inp.history(), lang)
    if name == "sweep_heatmap":
        return figures.sweep_heatmap(inp.summary(), lang)
    if name == "filters_sweep":
        return figures.filters_sweep(inp.summary(), lang)
    if name == "per_class_accuracy":
        return figures.per_class_accuracy(inp.test_metrics(), lang)
    if name == "conv1_kernels":
        return figures.conv1_kernels(inp.params()["W1"], lang)
    if name == "conv2_kernels":
        return figures.conv2_kernels(inp.params()["W2"], lang)
    if name == "fc_weights":
        return figures.fc_weights(inp.params()["W3"], inp.class_names(), lang)
    if name == "histograms":
        return figures.histograms(inp.params(), lang)
    if name == "confusion_matrix":
        tm = inp.test_metrics()
        return figures.confusion_matrix(tm["confusion"], tm["class_names"], lang)
    if name == "test_samples":
        data, pred = inp.data(), inp.predictions()
        if len(pred["y_true"]) != len(data["y_test"]) or not np.array_equal(pred["y_true"], data["y_test"]):
            raise SystemExit(
                f"error: {inp.args.predictions} does not belong to {inp.args.data} "
                "(its y_true differs from y_test)"
            )
        return figures.test_samples(
            data["x_test"], pred["y_true"], pred["y_pred"], data["class_names"], lang,
            standardize=data["meta"].get("standardize"), seed=seed,
        )  # fmt: skip
    raise ValueError(f"unknown figure {name!r}")


def main(argv=None) -> int:
    setup_logging()
    args = parse_args(argv)
    lang = figures.setup_style(args.lang)
    inp = Inputs(args)
    for name in args.which:
        fig = build(name, inp, lang, args.seed)
        for path in figures.save_figure(fig, args.out_dir / name, dpi=args.dpi):
            logging.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
