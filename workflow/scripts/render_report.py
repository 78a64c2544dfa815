#!/usr/bin/env python
"""Render report/report.tex from the results files and the jinja2 template.

    python workflow/scripts/render_report.py \\
        --template report/report.tex.j2 \\
        --test-metrics results/final/test_metrics.json \\
        --summary results/sweep/summary.csv \\
        --history results/final/seeds/0/history.csv \\
        --best results/sweep/best.json \\
        --final-metrics results/final/seeds/0/metrics.json \\
        --model results/final/seeds/0/model.npz \\
        --data-meta results/data/cifar10.npz \\
        --figures-dir results/figures \\
        --out report/report.tex

Only small parts of the .npz files are read: ``arch_json`` and the parameter
arrays of the checkpoint, and ``meta_json``, ``class_names`` and the array
shapes (from the .npy headers, without loading the images) of the data file.
The figures must exist as ``<figures-dir>/NAME.pdf``; the .tex refers to them
relative to the folder of ``--out`` (where latexmk runs).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import jinja2
import pandas as pd

from scratchcnn import report
from scratchcnn.checkpoint import load_checkpoint
from scratchcnn.data import load_prepared
from scratchcnn.io import InputError, read_input, read_json_object, write_text_atomic
from scratchcnn.logs import exit_on_sigterm
from scratchcnn.provenance import git_commit


def read_data_meta(npz_path) -> dict:
    """``meta_json`` with the class names and every array's shape (no image is loaded)."""
    data = load_prepared(npz_path, arrays=())
    shapes = {name: list(shape) for name, shape in data.shapes.items()}
    return {**data.meta, "class_names": data.class_names, "shapes": shapes}


def main(argv=None) -> int:
    try:
        return render(argv)
    except InputError as exc:
        print(f"render_report: error: {exc}", file=sys.stderr)
        return 1


def render(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--template", required=True, help="the jinja2 template (report/report.tex.j2)")
    ap.add_argument("--test-metrics", required=True, help="the seeds' summary (results/final/test_metrics.json)")
    ap.add_argument("--summary", required=True, help="every grid point (results/sweep/summary.csv)")
    ap.add_argument("--history", required=True, help="history.csv of the final run the figures show")
    ap.add_argument("--best", required=True, help="the chosen point (results/sweep/best.json)")
    ap.add_argument("--final-metrics", required=True, help="metrics.json of that final run")
    ap.add_argument("--model", required=True, help="model.npz of that final run")
    ap.add_argument(
        "--data-meta", required=True, help="results/data/cifar10.npz (meta_json, class_names, shapes)"
    )
    ap.add_argument("--synthetic", action="store_true",
                    help="the data came from the synthetic demo archive (data.synthetic): the report says so")  # fmt: skip
    ap.add_argument("--figures-dir", required=True, help="where the figures' NAME.pdf files are")
    ap.add_argument("--out", required=True, help="the .tex to write")
    ap.add_argument("--study-accuracy", type=float, default=report.STUDY_TEST_ACCURACY,
                    help="the study's test accuracy to compare with (fraction; default %(default)s)")  # fmt: skip
    args = ap.parse_args(argv)

    figures_dir = Path(args.figures_dir)
    missing = [n for n in report.FIGURES if not (figures_dir / f"{n}.pdf").is_file()]
    if missing:
        print(f"render_report: missing figures in {figures_dir}: {', '.join(m + '.pdf' for m in missing)}",
              file=sys.stderr)  # fmt: skip
        return 1
    out = Path(args.out)
    # as LaTeX sees it: latexmk runs in the folder of the .tex
    fig_rel = Path(os.path.relpath(figures_dir.resolve(), out.parent.resolve())).as_posix()

    checkpoint = read_input("--model", args.model, load_checkpoint)
    arch, arrays = checkpoint.arch, checkpoint.params
    inputs = {
        "test_metrics": read_input("--test-metrics", args.test_metrics, read_json_object),
        "summary": read_input("--summary", args.summary, pd.read_csv),
        "history": read_input("--history", args.history, pd.read_csv),
        "best": read_input("--best", args.best, read_json_object),
        "data_meta": {**read_input("--data-meta", args.data_meta, read_data_meta), **({"synthetic": True} if args.synthetic else {})},
        "final_metrics": read_input("--final-metrics", args.final_metrics, read_json_object),
    }  # fmt: skip
    try:
        context = report.build_context(**inputs, arch=arch, figures_dir=fig_rel, param_stats=report.array_stats(arrays),
                                       first_layer=arrays["W1"], study_accuracy=args.study_accuracy,
                                       report_commit=git_commit())  # fmt: skip
    except (KeyError, ValueError, TypeError, IndexError) as exc:  # a key, column or value the results lack
        files = ", ".join(f"--{k.replace('_', '-')} {getattr(args, k)}" for k in inputs)
        raise InputError(f"the results lack or garble a value the report needs ({type(exc).__name__}: {exc}); "
                         f"read from {files}") from exc  # fmt: skip
    try:
        text = report.render(args.template, context)
    except (OSError, jinja2.TemplateError) as exc:
        raise InputError(f"--template {args.template} cannot be rendered ({type(exc).__name__}: {exc})") from exc
    try:
        write_text_atomic(out, text)
    except OSError as exc:
        raise InputError(f"--out {out} cannot be written ({exc})") from exc
    print(f"render_report: wrote {out}", file=sys.stderr)  # the rule sends stderr to its log
    return 0


if __name__ == "__main__":
    exit_on_sigterm()
    sys.exit(main())
